#!/usr/bin/env python3
"""The node's own overhead: frame ingestion CPU, window memory at any resolution, query latency on a replayed bag.

Three measurements, each on the node's own code paths (``stvg_ros.image_messages`` decoding, the
``stvg_ros.stream.window.FrameWindow`` the node keeps, ``Grounder.ground`` as the node's worker calls it),
without a ROS graph, so it runs anywhere:

1. ``ingest``: a 640x480 ``bgr8`` stream at 30 Hz through the node's per-frame path (offer → decode →
   add), CPU time by ``time.process_time`` (all threads of the process) over N frames, as a percentage
   of one core: ``cpu_seconds / stream_seconds * 100``.  Measured with the node's defaults (window
   rate 4 Hz: decimated frames are not decoded) and with every frame kept (rate 0, the worst case);
   then again starting from serialized bytes, read in place as the node's raw image subscription does
   (``image_from_cdr``), when rclpy is importable.
   ``ingest_1080p``: 1920x1080 photographs (scikit-image's, upscaled) at 30 Hz as ``bgr8`` and as JPEG
   ``CompressedImage``, at the ingest side the node gives each model family, through today's path
   (``decode_for_window``: reduced-scale JPEG decode, shrink before colour conversion, 2x pre-halving)
   and through the previous one (full decode, full-size colour conversion, one ``INTER_AREA`` resize),
   interleaved in one run, with the mean absolute pixel difference between the two paths' kept frames;
   and both from serialized CDR (before: rclpy's ``deserialize_message`` of every frame, after: the raw read).
2. ``window``: 4K frames (3840x2160) fed for longer than the window; the window's bytes stay below
   ``max_frames x max_side^2 x 3`` whatever the input size.
3. ``queries``: a bag (written here with jpeg frames at 30 Hz, or ``--bag``) replayed message by message
   in log order; every query message is answered on the window as it is at that moment (16 sampled frames
   by default), by the default config and without LRA and TAS, and the floor (encode + one prefill of the
   same sampled frames) runs on it too: one round per query, the order rotated, in CPU time of this process
   (``time.process_time``, all threads; wall seconds in the JSON).  Reported: p50/p95 of a query's CPU, its
   model passes and box stage (``select``: track choice and segmentation; the refine pass counts as a model
   pass) apart, each as a multiple of the floor of the same round.

Examples::

    python bench/bench_node.py --quick
    python bench/bench_node.py --model models/default --seconds 60
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.append(str(Path(__file__).resolve().parent.parent))  # the repository root: `bench` is a package

from bench._util import box_seconds, case_clock, machine, mib, percentile, rss_bytes, staged, table, write_json  # noqa: E402

NS = 1_000_000_000


def node_defaults(model_side: int) -> dict:
    """The node's window parameters (``stvg_ros.config.ServingConfig``) and the ingest side it keeps frames
    at for a model whose adapter reports ``input_side`` = ``model_side`` (``GroundingService.configure``)."""
    from dataclasses import asdict

    from stvg_ros.config import ServingConfig

    d = {k: v for k, v in asdict(ServingConfig()).items()
         if k in ("window_duration", "window_max_frames", "window_rate", "ingest_max_side")}
    d["model_side"] = model_side
    d["max_side"] = ingest_side(model_side)
    return d


def ingest_side(model_side: int) -> int:
    """The window's ``max_side`` the node sets for this model side, computed by the node's own code."""
    from stvg_ros.config import ServingConfig
    from stvg_ros.stream.service import GroundingService

    service = GroundingService(ServingConfig())
    service.configure(service.config, model_side=model_side)
    return service.window.max_side


def model_side(model: str, config: dict) -> int:
    """What the node sizes its window by at configure (:meth:`stvg_ros.stack.Stack.build`): ``image_size`` or
    the adapter's ``input_side``."""
    from stvg_ros.config import GroundingConfig
    from stvg_ros.stack import load_model
    from stvg_ros.stack import model_side as side_of

    cfg = GroundingConfig.from_dict(dict(config, device="cpu"))
    return side_of(load_model(model, cfg).grounder, cfg)


#: per-frame input sides of the real checkpoints (no weights here): Qwen2.5-VL at the paper's 224 px
#: (``QwenVLAdapter.default_image_size``; its processor's max_pixels does not cap it), the CLIP-336 tower
#: of LLaVA-NeXT-Video-7B and the SigLIP-384 tower of LLaVA-OneVision (``vision_config.image_size``)
FAMILY_SIDES = {"qwen2_5_vl": 224, "llava_next_video": 336, "llava_onevision": 384}


def scene(i: int, width: int, height: int) -> np.ndarray:
    """A frame with smooth background and two moving boxes (compresses like camera footage, unlike noise)."""
    import cv2

    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = ((x + i) % 256).astype(np.uint8)
    img[..., 1] = ((y * 0.5 + x * 0.5) % 256).astype(np.uint8)
    img[..., 2] = 96
    s = max(8, width // 10)
    cx = int((i * 7) % max(1, width - s))
    cv2.rectangle(img, (cx, height // 3), (cx + s, height // 3 + s), (220, 30, 30), -1)
    cv2.circle(img, (width - cx - s // 2, 2 * height // 3), s // 2, (30, 30, 220), -1)
    return img


def bgr8_message(bgr: np.ndarray, stamp_ns: int):
    """What the node's image callback receives: a sensor_msgs/Image-shaped object (fields only)."""
    h, w = bgr.shape[:2]
    return SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=stamp_ns // NS, nanosec=stamp_ns % NS),
                                                  frame_id="camera"),
                           height=h, width=w, encoding="bgr8", is_bigendian=0, step=w * 3, data=bgr.tobytes())


def ingest(window, msg) -> None:
    """The node's ``_ingest`` for one Image / CompressedImage message, without ROS: offer, decode, add."""
    from stvg_ros.image_messages import decode_for_window

    stamp_ns = msg.header.stamp.sec * NS + msg.header.stamp.nanosec
    if window.offer(stamp_ns) == "keep":
        rgb, source_size = decode_for_window(msg, window.max_side)
        window.add(stamp_ns, rgb, source_size, frame_id=msg.header.frame_id)


def ingest_before(window, msg) -> None:
    """The same as the node did before the reduced decode: full-size decode and colour conversion, then one
    ``INTER_AREA`` resize to the stored size (kept here only to measure against)."""
    import cv2

    from stvg_ros.image_messages import decode_message
    from stvg_ros.stream.window import stored_size

    stamp_ns = msg.header.stamp.sec * NS + msg.header.stamp.nanosec
    if window.offer(stamp_ns) == "keep":
        rgb = decode_message(msg)
        size = stored_size(rgb.shape[0], rgb.shape[1], window.max_side)
        small = rgb if size is None else cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        window.add(stamp_ns, small, rgb.shape[:2], frame_id=msg.header.frame_id)


def photographs(width: int, height: int) -> tuple[list[np.ndarray], str]:
    """RGB photographs upscaled (bicubic) to ``width x height``: scikit-image's sample images, read as files
    (importing skimage is not needed), else the synthetic scene; and where they came from."""
    import cv2

    from stvg_ros.adapters.tiny_models import photo_dir

    names = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png", "retina.jpg")
    out = []
    data = photo_dir()
    if data is not None:
        for name in names:
            bgr = cv2.imread(str(data / name), cv2.IMREAD_COLOR)
            if bgr is not None:
                out.append(cv2.cvtColor(cv2.resize(bgr, (width, height), interpolation=cv2.INTER_CUBIC),
                                        cv2.COLOR_BGR2RGB))
    if out:
        return out, f"{len(out)} scikit-image photographs upscaled to {width}x{height}"
    return [scene(i * 50, width, height) for i in range(4)], "synthetic scenes (scikit-image not installed)"


def jpeg_message(rgb: np.ndarray, stamp_ns: int, quality: int = 90):
    """A sensor_msgs/CompressedImage-shaped object holding ``rgb`` as JPEG."""
    import cv2

    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=stamp_ns // NS, nanosec=stamp_ns % NS),
                                                  frame_id="camera"),
                           format="jpeg", data=data.tobytes())


def bench_ingest_1080p(frames: int, side: int, defaults: dict, pool_rgb: list, rounds: int = 3) -> dict:
    """1080p30 bgr8 and JPEG at ingest side ``side``: CPU share of today's and the previous path, interleaved
    (``rounds`` alternations, the minimum per path, so a neighbour's load spike hits both alike), and the
    mean absolute difference of their kept frames (grey levels of 255)."""
    from stvg_ros.stream.window import FrameWindow

    period_ns = NS // 30
    pools = {"bgr8": [bgr8_message(np.ascontiguousarray(p[..., ::-1]), 0) for p in pool_rgb],
             "jpeg": [jpeg_message(p, 0) for p in pool_rgb]}
    out = {"side": side, "frames": frames, "window_rate": defaults["window_rate"]}
    for fmt, pool in pools.items():
        cpu = {"after": [], "before": []}
        kept = {}
        for _ in range(rounds):
            for label, path in (("after", ingest), ("before", ingest_before)):
                window = FrameWindow(defaults["window_duration"], defaults["window_max_frames"],
                                     defaults["window_rate"], side)
                for i in range(3):  # warm-up
                    path(FrameWindow(1.0, 4, 0, side), _restamp(pool[i % len(pool)], i * period_ns))
                cpu0 = time.process_time()
                for i in range(frames):
                    path(window, _restamp(pool[i % len(pool)], (i + 1) * period_ns))
                cpu[label].append(time.process_time() - cpu0)
                kept[label] = window.frames()
        a, b = kept["after"], kept["before"]
        n_kept = frames - window.decimated - window.stale  # kept over the run (the window holds the last 10 s)
        assert [f.image.shape for f in a] == [f.image.shape for f in b] and [f.scale for f in a] == [f.scale for f in b]
        diff = [np.abs(x.image.astype(np.int16) - y.image.astype(np.int16)) for x, y in zip(a, b)]
        row = {"kept": n_kept, "stored_shape": list(a[-1].image.shape),
               "mean_abs_diff": float(np.mean([d.mean() for d in diff])), "max_abs_diff": int(max(d.max() for d in diff))}
        for label in ("before", "after"):
            c = min(cpu[label])
            row[label] = {"cpu_s": c, "cpu_percent_of_one_core": 100.0 * c / (frames / 30.0),
                          "cpu_ms_per_kept_frame": 1000.0 * c / max(1, n_kept)}
        row["after_over_before"] = row["after"]["cpu_s"] / row["before"]["cpu_s"]
        serialized = _serialized_ingest_cpu(pool, frames, side, defaults)
        if serialized is not None:  # from the bytes the middleware hands over, every frame decimated or not
            row["serialized"] = {k: {"cpu_s": v, "cpu_percent_of_one_core": 100.0 * v / (frames / 30.0)}
                                 for k, v in serialized.items()}
        out[fmt] = row
    return out


def _serialized_ingest_cpu(pool: list, frames: int, side: int, defaults: dict) -> dict | None:
    """CPU seconds from serialized CDR: ``before`` = rclpy's ``deserialize_message`` (what a typed subscription
    runs for every message) + the previous path; ``after`` = the node's raw subscription (``image_from_cdr`` /
    ``compressed_from_cdr``) + today's.  None without rclpy / sensor_msgs."""
    try:
        from rclpy.serialization import deserialize_message, serialize_message
        from sensor_msgs.msg import CompressedImage, Image
    except ImportError:
        return None
    from stvg_ros.image_messages import compressed_from_cdr, image_from_cdr
    from stvg_ros.stream.window import FrameWindow

    blobs, kind = [], None
    for m in pool:
        if hasattr(m, "format"):
            kind, read, r = CompressedImage, compressed_from_cdr, CompressedImage()
            r.format, r.data = m.format, m.data
        else:
            kind, read, r = Image, image_from_cdr, Image()
            r.height, r.width, r.encoding, r.step, r.data = m.height, m.width, m.encoding, m.step, m.data
        blobs.append(serialize_message(r))
    out = {}
    for label, parse, path in (("before", lambda b: deserialize_message(b, kind), ingest_before),
                               ("after", read, ingest)):
        window = FrameWindow(defaults["window_duration"], defaults["window_max_frames"], defaults["window_rate"], side)
        cpu0 = time.process_time()
        for i in range(frames):
            msg = parse(blobs[i % len(blobs)])
            stamp = (i + 1) * (NS // 30)  # the pool repeats: stamp each message as the camera would
            msg.header.stamp.sec, msg.header.stamp.nanosec = stamp // NS, stamp % NS
            path(window, msg)
        out[label] = time.process_time() - cpu0
    return out


def bench_ingest(frames: int, width: int, height: int, rate: float, defaults: dict) -> dict:
    import cv2

    from stvg_ros.stream.window import FrameWindow

    window = FrameWindow(defaults["window_duration"], defaults["window_max_frames"], rate, defaults["max_side"])
    pool = [bgr8_message(cv2.cvtColor(scene(i, width, height), cv2.COLOR_RGB2BGR), 0) for i in range(8)]
    period_ns = NS // 30
    # the messages exist before timing: in the node rclpy builds them, outside the ingestion path
    for i in range(10):  # warm-up (imports, OpenCV's first call)
        ingest(FrameWindow(1.0, 4, 0, defaults["max_side"]), _restamp(pool[i % 8], i * period_ns))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(frames):
        ingest(window, _restamp(pool[i % len(pool)], (i + 1) * period_ns))
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    stream_s = frames / 30.0
    return {"frames": frames, "size": [width, height], "window_rate": rate, "cpu_s": cpu, "wall_s": wall,
            "cpu_percent_of_one_core": 100.0 * cpu / stream_s, "cpu_ms_per_frame": 1000.0 * cpu / frames,
            "kept": len(window), "decimated": window.decimated}


def bench_ingest_rclpy(frames: int, width: int, height: int, rate: float, defaults: dict) -> dict | None:
    """The same, starting from serialized CDR bytes (rclpy's ``serialize_message`` of a real
    ``sensor_msgs/Image``), read as the node's raw subscription does (``image_from_cdr``, every message,
    decimated or not) + the node's path.

    Middleware transport (DDS) is not included.  None when rclpy or sensor_msgs are not importable.
    """
    try:
        from rclpy.serialization import serialize_message
        from sensor_msgs.msg import Image
    except ImportError:
        return None
    import cv2

    from stvg_ros.image_messages import image_from_cdr
    from stvg_ros.stream.window import FrameWindow

    period_ns = NS // 30
    raw = []
    for i in range(8):
        m = Image()
        m.height, m.width, m.encoding, m.step = height, width, "bgr8", width * 3
        m.data = cv2.cvtColor(scene(i, width, height), cv2.COLOR_RGB2BGR).tobytes()
        raw.append(m)
    window = FrameWindow(defaults["window_duration"], defaults["window_max_frames"], rate, defaults["max_side"])
    blobs = [serialize_message(m) for m in raw]
    cpu0 = time.process_time()
    for i in range(frames):
        msg = image_from_cdr(blobs[i % len(blobs)])
        stamp = (i + 1) * period_ns  # the pool repeats: stamp each message as the camera would
        msg.header.stamp.sec, msg.header.stamp.nanosec = stamp // NS, stamp % NS
        ingest(window, msg)
    cpu = time.process_time() - cpu0
    return {"frames": frames, "size": [width, height], "window_rate": rate, "cpu_s": cpu, "path": "rclpy",
            "cpu_percent_of_one_core": 100.0 * cpu / (frames / 30.0), "cpu_ms_per_frame": 1000.0 * cpu / frames,
            "kept": len(window), "decimated": window.decimated}


def _restamp(msg, stamp_ns: int):
    """A shallow copy of an Image- or CompressedImage-shaped message with another stamp (same data object)."""
    header = SimpleNamespace(stamp=SimpleNamespace(sec=stamp_ns // NS, nanosec=stamp_ns % NS),
                             frame_id=msg.header.frame_id)
    return SimpleNamespace(**dict(vars(msg), header=header))


def bench_window(frames: int, width: int, height: int, rate: float, defaults: dict) -> dict:
    import cv2

    from stvg_ros.stream.window import FrameWindow

    window = FrameWindow(defaults["window_duration"], defaults["window_max_frames"], rate, defaults["max_side"])
    big = bgr8_message(cv2.cvtColor(scene(0, width, height), cv2.COLOR_RGB2BGR), 0)
    rss0 = rss_bytes()
    peak_bytes, peak_rss = 0, rss0
    for i in range(frames):
        ingest(window, _restamp(big, (i + 1) * (NS // 30)))
        peak_bytes = max(peak_bytes, window.nbytes)
        peak_rss = max(peak_rss, rss_bytes())
    side = defaults["max_side"]
    bound = defaults["window_max_frames"] * side * side * 3
    stored = window.frames()[-1].image.shape if len(window) else None
    return {"frames_fed": frames, "size": [width, height], "window_rate": rate, "max_side": side,
            "frames_held": len(window), "stored_frame_shape": list(stored) if stored else None,
            "peak_window_bytes": peak_bytes, "bound_bytes": bound, "bounded": peak_bytes <= bound,
            "rss_growth_bytes": peak_rss - rss0}


def write_stream_bag(path: Path, seconds: float, width: int, height: int, query_every: float, first_query: float):
    from stvg_ros.evaluation.bags import QuerySpec, write_bag

    n = int(round(seconds * 30))
    stamps = [100.0 + i / 30.0 for i in range(n)]
    texts = ["the red box moves to the right", "the blue disc on the left", "a red square moves"]
    queries, t, k = [], stamps[0] + first_query, 0
    while t < stamps[-1]:
        queries.append(QuerySpec(query_id=f"q{k}", text=texts[k % len(texts)], stamp=t))
        t += query_every
        k += 1
    write_bag(path, (scene(i, width, height) for i in range(n)), stamps, queries, image_format="jpeg")
    return n, len(queries)


def bench_queries(bag: Path, model: str, num_frames: int, defaults: dict, decomposer: str,
                  configs: dict[str, dict]) -> list[dict]:
    """The bag replayed once; at every query message the window as it is then.  Each query is one round: every
    config in ``configs`` and the floor (encode + one prefill of the sampled frames, :func:`bench_grounding.floor_fn`)
    run on it once, the order rotated from round to round, in CPU time of this process (all threads); a
    grounding's model passes and box stage apart (:func:`_util.staged`).  One adapter for all."""
    from bench.bench_grounding import floor_fn
    from stvg_ros.evaluation.bags import iter_messages
    from stvg_ros.config import GroundingConfig
    from stvg_ros.grounding.grounder import Grounder, format_question, sample_indices
    from stvg_ros.stack import load_model
    from stvg_ros.stream.window import FrameWindow

    clock = case_clock(torch.device("cpu"))
    cfgs = {label: dict(c, num_frames=num_frames, decomposer=decomposer, device="cpu") for label, c in configs.items()}
    first = next(iter(cfgs))
    t0 = time.perf_counter()
    grounders = {first: load_model(model, GroundingConfig.from_dict(cfgs[first])).grounder}
    load_s = time.perf_counter() - t0
    adapter = grounders[first].adapter
    for label, c in cfgs.items():
        if label not in grounders:
            grounders[label] = Grounder(adapter, c, model_defaults=grounders[first].model_defaults)
    window = FrameWindow(defaults["window_duration"], defaults["window_max_frames"], defaults["window_rate"],
                         defaults["max_side"])
    asked = []  # (images, stamps, text) of every query, the window as it was when the query came
    for topic, msgtype, _, msg in iter_messages(bag):
        if msgtype in ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"):
            ingest(window, msg)
        elif msgtype == "stvg_ros/msg/GroundingQuery" and len(window) >= 2:
            held = window.frames()
            asked.append(([f.image for f in held], [f.stamp for f in held], msg.text))
    if not asked:
        raise SystemExit(f"{bag} has no query after at least 2 frames: nothing to time")
    names = list(cfgs) + ["floor"]
    runs = {n: [] for n in names}  # per query: (total, model passes, box stage, wall)
    stages = {n: [] for n in cfgs}
    for q, (images, stamps, text) in enumerate(asked):
        idx = sample_indices(len(images), num_frames, stamps)
        question = format_question(grounders[first].config.question_template, text)
        floor = floor_fn(adapter, [images[i] for i in idx], [stamps[i] for i in idx], question)
        for name in names[q % len(names):] + names[:q % len(names)]:
            w = time.perf_counter()
            if name == "floor":
                _, t, st = staged(lambda mark: floor(), clock)
                runs[name].append((t, t, 0.0, time.perf_counter() - w))
                continue
            g = grounders[name]
            result, t, st = staged(lambda mark: g.ground(images, stamps, text, checkpoint=mark), clock)
            box = box_seconds(st, result)
            runs[name].append((t, t - box, box, time.perf_counter() - w))
            stages[name].append(dict(result.timings))
    med = lambda xs: float(np.median(xs))  # noqa: E731
    floor_s = [r[0] for r in runs["floor"]]
    out = []
    for label in cfgs:
        rs = runs[label]
        total, model_s, box = [r[0] for r in rs], [r[1] for r in rs], [r[2] for r in rs]
        out.append({"label": label, "model": model, "config": cfgs[label], "model_load_s": load_s,
                    "queries": len(rs), "frames_per_query": [min(len(a[0]), num_frames) for a in asked],
                    "clock": "process CPU", "cpu_s": total, "model_cpu_s": model_s, "box_cpu_s": box,
                    "wall_s": [r[3] for r in rs], "floor_cpu_s": floor_s,
                    "p50_s": percentile(total, 50), "p95_s": percentile(total, 95),
                    "model_median_s": med(model_s), "box_median_s": med(box), "floor_median_s": med(floor_s),
                    "x_floor": med([a / f for a, f in zip(total, floor_s)]),
                    "model_x_floor": med([a / f for a, f in zip(model_s, floor_s)]),
                    "box_x_floor": med([a / f for a, f in zip(box, floor_s)]),
                    "stage_median_wall_s": {k: med([s.get(k, 0.0) for s in stages[label]])
                                            for k in stages[label][0]}})
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="", help="model directory ('' = the node's default model)")
    ap.add_argument("--frames", type=int, default=900, help="frames of the 30 Hz ingestion run (900 = 30 s)")
    ap.add_argument("--seconds", type=float, default=30.0, help="length of the replayed stream")
    ap.add_argument("--query-every", type=float, default=2.0, help="seconds between queries in the stream")
    ap.add_argument("--num-frames", type=int, default=16, help="frames sampled per query")
    ap.add_argument("--bag", default="", help="replay this bag instead of writing one")
    ap.add_argument("--quick", action="store_true", help="CI mode: short runs, seconds")
    ap.add_argument("--json", default="", help="write the results here (default bench/results/node.json)")
    ap.add_argument("--queries-only", action="store_true", help="only measurement 3 (the replayed bag's queries)")
    args = ap.parse_args(argv)
    if args.quick:
        args.frames, args.seconds, args.query_every = 60, 3.0, 1.0

    from stvg_ros.adapters.default_model import MEANINGLESS_WARNING, resolve_model

    model, meaningless = resolve_model(args.model)
    if meaningless:
        print(f"note: {MEANINGLESS_WARNING}", flush=True)
    defaults = node_defaults(model_side(model, {}))
    results: dict = {"machine": machine(), "node_defaults": defaults}
    print(f"# node overhead, window defaults {defaults} ({model})", flush=True)

    pool_source = ""
    results["ingest_1080p"], results["ingest"], results["window"] = {"runs": []}, [], []
    if not args.queries_only:
        pool, pool_source = photographs(1920, 1080)
        sides = {f"{Path(model).name} (this run's model)": defaults["max_side"]}
        if not args.quick:
            sides.update({f"{family} (real checkpoints)": ingest_side(s) for family, s in FAMILY_SIDES.items()})
        results["ingest_1080p"] = {"frames": pool_source, "runs": []}
        for label, side in sides.items():
            r = bench_ingest_1080p(args.frames, side, defaults, pool, rounds=1 if args.quick else 3)
            r["label"] = label
            results["ingest_1080p"]["runs"].append(r)

        results["ingest"] = [bench_ingest(args.frames, 640, 480, defaults["window_rate"], defaults),
                             bench_ingest(args.frames, 640, 480, 0.0, defaults)]
        for rate in (defaults["window_rate"], 0.0):
            r = bench_ingest_rclpy(args.frames, 640, 480, rate, defaults)
            if r is None:
                print("note: rclpy/sensor_msgs not importable: the rclpy deserialization rows are skipped", flush=True)
                break
            results["ingest"].append(r)
        results["window"] = [bench_window(args.frames // 3 if args.quick else args.frames, 3840, 2160, 0.0, defaults),
                             bench_window(args.frames // 3 if args.quick else args.frames, 3840, 2160,
                                          defaults["window_rate"], defaults)]

    with tempfile.TemporaryDirectory(prefix="stvg-bench-node-") as tmp:
        bag = Path(args.bag) if args.bag else Path(tmp) / "stream"
        if not args.bag:
            write_stream_bag(bag, args.seconds, 640, 480, args.query_every, first_query=min(2.0, args.seconds / 2))
        runs = {"default config": {}, "no LRA, no TAS": {"use_lra": False, "use_tas": False}}
        results["queries"] = bench_queries(bag, model, args.num_frames, defaults, "rules", runs)
        for q in results["queries"]:
            q["meaningless_model"] = meaningless

    rows = []
    for r in results["ingest"]:
        via = " (serialized CDR + node path)" if r.get("path") == "rclpy" else " (node path)"
        rows.append([f"ingest 640x480 bgr8 @30 Hz, window_rate {r['window_rate']:g}{via}",
                     f"{r['cpu_percent_of_one_core']:.2f} % of one core ({r['cpu_ms_per_frame']:.3f} ms CPU/frame)"])
    for r in results["ingest_1080p"]["runs"]:
        for fmt in ("bgr8", "jpeg"):
            x = r[fmt]
            rows.append([f"ingest 1920x1080 {fmt} @30 Hz, window_rate {r['window_rate']:g}, side {r['side']} "
                         f"({r['label']})",
                         f"{x['before']['cpu_percent_of_one_core']:.1f} % → {x['after']['cpu_percent_of_one_core']:.1f} % "
                         f"of one core ({x['before']['cpu_ms_per_kept_frame']:.1f} → "
                         f"{x['after']['cpu_ms_per_kept_frame']:.1f} ms/kept frame, x{x['after_over_before']:.2f}; "
                         f"mean |diff| {x['mean_abs_diff']:.2f}, max {x['max_abs_diff']})"])
            if "serialized" in x:
                y = x["serialized"]
                rows.append([f"ingest 1920x1080 {fmt} @30 Hz, window_rate {r['window_rate']:g}, side {r['side']} "
                             f"(from serialized CDR: rclpy deserialize → raw read)",
                             f"{y['before']['cpu_percent_of_one_core']:.1f} % → {y['after']['cpu_percent_of_one_core']:.1f} "
                             f"% of one core (x{y['after']['cpu_s'] / y['before']['cpu_s']:.2f})"])
    for r in results["window"]:
        rows.append([f"window at 3840x2160, window_rate {r['window_rate']:g}",
                     f"peak {mib(r['peak_window_bytes'])} MiB <= bound {mib(r['bound_bytes'])} MiB: "
                     f"{'yes' if r['bounded'] else 'NO'} ({r['frames_held']} frames of {r['stored_frame_shape']})"])
    for q in results["queries"]:
        rows.append([f"query CPU ({q['label']}, {args.num_frames} frames)",
                     f"p50 {q['p50_s']:.3f} s, p95 {q['p95_s']:.3f} s over {q['queries']} queries; median model "
                     f"passes {q['model_median_s']:.3f} s ({q['model_x_floor']:.2f}x the floor) + box stage "
                     f"{q['box_median_s']:.3f} s ({q['box_x_floor']:.2f}x); whole {q['x_floor']:.2f}x the floor "
                     f"({q['floor_median_s']:.3f} s, same rounds)"])
    text = table(["measurement", "result"], rows)
    print(text)
    if pool_source:
        print(f"1080p rows: {pool_source}; before → after = the previous path (full decode, one INTER_AREA) → today's "
              f"(decode_for_window), interleaved in this run; diff = their kept frames, grey levels of 255")
    results["table"] = text
    out = args.json or str(Path(__file__).resolve().parent / "results" / "node.json")
    write_json(out, results)
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
