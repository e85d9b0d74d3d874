#!/usr/bin/env python3
"""The node's own overhead: frame ingestion CPU, window memory at any resolution, query latency on a replayed bag.

Three measurements, each on the node's own code paths (``stvg_ros.image_messages`` decoding, the
``stvg_ros.window.FrameWindow`` the node keeps, ``Grounder.ground`` as the node's worker calls it),
without a ROS graph, so it runs anywhere:

1. ``ingest``: a 640x480 ``bgr8`` stream at 30 Hz through the node's per-frame path (offer → decode →
   add), CPU time by ``time.process_time`` (all threads of the process) over N frames, as a percentage
   of one core: ``cpu_seconds / stream_seconds * 100``.  Measured with the node's defaults (window
   rate 4 Hz: decimated frames are not decoded) and with every frame kept (rate 0, the worst case);
   then again starting from serialized bytes through rclpy's ``deserialize_message`` (what the
   executor does per message before the callback), when rclpy is importable.
2. ``window``: 4K frames (3840x2160) fed for longer than the window; the window's bytes stay below
   ``max_frames x max_side^2 x 3`` whatever the input size.
3. ``queries``: a bag (written here with jpeg frames at 30 Hz, or ``--bag``) replayed message by message
   in log order; every query message is answered on the window as it is at that moment, and the
   latency of ``ground`` (16 sampled frames by default) is reported as p50/p95.

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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import machine, mib, percentile, rss_bytes, table, write_json  # noqa: E402

NS = 1_000_000_000


def node_defaults() -> dict:
    """The node's window parameters (``stvg_ros.config.ServingConfig``) and its ingest side rule."""
    from dataclasses import asdict

    from stvg_ros.config import ServingConfig

    d = {k: v for k, v in asdict(ServingConfig()).items()
         if k in ("window_duration", "window_max_frames", "window_rate", "ingest_max_side")}
    # GroundingService.configure: ingest_max_side 0 = auto = twice the model's per-frame size, which the node
    # reads from the adapter (``input_side``): 224 for Qwen2.5-VL (the shipped model), 384 / 336 for LLaVA
    d["max_side"] = d["ingest_max_side"] or 2 * 224
    return d


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
    """The node's ``_ingest`` for one Image message, without ROS: offer, decode, add."""
    from stvg_ros.image_messages import decode_image

    stamp_ns = msg.header.stamp.sec * NS + msg.header.stamp.nanosec
    if window.offer(stamp_ns) == "keep":
        window.add(stamp_ns, decode_image(msg), frame_id=msg.header.frame_id)


def bench_ingest(frames: int, width: int, height: int, rate: float, defaults: dict) -> dict:
    import cv2

    from stvg_ros.window import FrameWindow

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
    """The same, starting from serialized CDR bytes: rclpy's ``deserialize_message`` into a real
    ``sensor_msgs/Image`` (what the executor does for every message, decimated or not) + the node's path.

    Middleware transport (DDS) is not included.  None when rclpy or sensor_msgs are not importable.
    """
    try:
        from rclpy.serialization import deserialize_message, serialize_message
        from sensor_msgs.msg import Image
    except ImportError:
        return None
    import cv2

    from stvg_ros.window import FrameWindow

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
        msg = deserialize_message(blobs[i % len(blobs)], Image)
        stamp = (i + 1) * period_ns  # the pool repeats: stamp each message as the camera would
        msg.header.stamp.sec, msg.header.stamp.nanosec = stamp // NS, stamp % NS
        ingest(window, msg)
    cpu = time.process_time() - cpu0
    return {"frames": frames, "size": [width, height], "window_rate": rate, "cpu_s": cpu, "path": "rclpy",
            "cpu_percent_of_one_core": 100.0 * cpu / (frames / 30.0), "cpu_ms_per_frame": 1000.0 * cpu / frames,
            "kept": len(window), "decimated": window.decimated}


def _restamp(msg, stamp_ns: int):
    return SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=stamp_ns // NS, nanosec=stamp_ns % NS),
                                                  frame_id=msg.header.frame_id),
                           height=msg.height, width=msg.width, encoding=msg.encoding, is_bigendian=0, step=msg.step,
                           data=msg.data)


def bench_window(frames: int, width: int, height: int, rate: float, defaults: dict) -> dict:
    import cv2

    from stvg_ros.window import FrameWindow

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
    from stvg_ros.bags import QuerySpec, write_bag

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


def bench_queries(bag: Path, model: str, num_frames: int, defaults: dict, decomposer: str, config: dict) -> dict:
    from stvg_ros.bags import iter_messages
    from stvg_ros.grounder import Grounder
    from stvg_ros.image_messages import decode_compressed, decode_image
    from stvg_ros.window import FrameWindow

    cfg = dict(config, num_frames=num_frames, decomposer=decomposer, device="cpu")
    t0 = time.perf_counter()
    grounder = Grounder.from_pretrained(model, config=cfg)
    load_s = time.perf_counter() - t0
    window = FrameWindow(defaults["window_duration"], defaults["window_max_frames"], defaults["window_rate"],
                         defaults["max_side"])
    latencies, stages, frames_used = [], [], []
    for topic, msgtype, _, msg in iter_messages(bag):
        if msgtype in ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"):
            stamp_ns = int(msg.header.stamp.sec) * NS + int(msg.header.stamp.nanosec)
            if window.offer(stamp_ns) == "keep":
                rgb = decode_image(msg) if msgtype.endswith("/Image") else decode_compressed(msg)
                window.add(stamp_ns, rgb)
        elif msgtype == "stvg_ros/msg/GroundingQuery" and len(window) >= 2:
            held = window.frames()
            t = time.perf_counter()
            result = grounder.ground([f.image for f in held], [f.stamp for f in held], msg.text)
            latencies.append(time.perf_counter() - t)
            stages.append(dict(result.timings))
            frames_used.append(min(len(held), num_frames))
    if not latencies:
        raise SystemExit(f"{bag} has no query after at least 2 frames: nothing to time")
    return {"model": model, "config": cfg, "model_load_s": load_s, "queries": len(latencies),
            "frames_per_query": frames_used, "latency_s": latencies,
            "p50_s": percentile(latencies, 50), "p95_s": percentile(latencies, 95),
            "stage_median_s": {k: float(np.median([s.get(k, 0.0) for s in stages])) for k in stages[0]}}


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
    args = ap.parse_args(argv)
    if args.quick:
        args.frames, args.seconds, args.query_every = 60, 3.0, 1.0

    from stvg_ros.default_model import MEANINGLESS_WARNING, resolve_model

    defaults = node_defaults()
    results: dict = {"machine": machine(), "node_defaults": defaults}
    print(f"# node overhead, window defaults {defaults}", flush=True)

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

    model, meaningless = resolve_model(args.model)
    if meaningless:
        print(f"note: {MEANINGLESS_WARNING}", flush=True)
    with tempfile.TemporaryDirectory(prefix="stvg-bench-node-") as tmp:
        bag = Path(args.bag) if args.bag else Path(tmp) / "stream"
        if not args.bag:
            write_stream_bag(bag, args.seconds, 640, 480, args.query_every, first_query=min(2.0, args.seconds / 2))
        runs = [("default config", {}), ("no LRA, no TAS", {"use_lra": False, "use_tas": False})]
        if args.quick:
            runs = runs[:1]
        results["queries"] = []
        for label, cfg in runs:
            q = bench_queries(bag, model, args.num_frames, defaults, "rules", cfg)
            q["label"] = label
            q["meaningless_model"] = meaningless
            results["queries"].append(q)

    rows = []
    for r in results["ingest"]:
        via = " (rclpy deserialize + node path)" if r.get("path") == "rclpy" else " (node path)"
        rows.append([f"ingest 640x480 bgr8 @30 Hz, window_rate {r['window_rate']:g}{via}",
                     f"{r['cpu_percent_of_one_core']:.2f} % of one core ({r['cpu_ms_per_frame']:.3f} ms CPU/frame)"])
    for r in results["window"]:
        rows.append([f"window at 3840x2160, window_rate {r['window_rate']:g}",
                     f"peak {mib(r['peak_window_bytes'])} MiB <= bound {mib(r['bound_bytes'])} MiB: "
                     f"{'yes' if r['bounded'] else 'NO'} ({r['frames_held']} frames of {r['stored_frame_shape']})"])
    for q in results["queries"]:
        rows.append([f"query latency ({q['label']}, {args.num_frames} frames)",
                     f"p50 {q['p50_s']:.3f} s, p95 {q['p95_s']:.3f} s over {q['queries']} queries"])
    text = table(["measurement", "result"], rows)
    print(text)
    results["table"] = text
    out = args.json or str(Path(__file__).resolve().parent / "results" / "node.json")
    write_json(out, results)
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
