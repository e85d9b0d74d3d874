#!/usr/bin/env python3
"""Several cameras, one model (issue 32): resident memory for 1, 2, 4 streams and query latency under load.

Each (model, streams) case runs in a **fresh subprocess** (so one case's heap never inflates another's RSS):

1. load the model (one grounder for every stream), RSS ``loaded``;
2. a :class:`~stvg_ros.stream.multi.MultiStreamService` with ``streams`` cameras, each window filled to the
   default bounds (``window_duration`` 10 s of a 30 Hz 640x480 camera = ``window_max_frames`` 300 frames, kept at
   the node's ingest size: twice the model's input side), distinct random frames per camera; RSS ``windows``;
3. **load**: one query on every stream at once (``stream=<name>``, submitted together to the threaded worker),
   then one query to all (``stream=""``), then N separate queries again serially for the cost of "all";
   RSS ``after`` and the process's peak (``ru_maxrss``, includes the queries' activations).

Figures per case: RSS in MiB, ratios to the one-stream case of the same model (target < 1.2x at 4 streams);
per stream under load its queueing delay (submitted → its grounding starts: this process's CPU s, and wall s from
``Answer.queue_time``) and latency;
the CPU time of the load (``time.process_time``, all threads) per query; model passes (grounder calls) and
CPU of "all" vs N separate queries.

Models: ``shipped`` (``models/stvg-synth-qwen``, the defaults it ships with) and ``real``: the Qwen2.5-VL-3B
shapes of :mod:`bench.model_configs` (random weights, float32, as the CPU runs it: real widths, hidden 2048,
16/2 heads, MLP 11008, vocabulary 151936 with its real embedding table; vision tower width 1280) with **reduced
depth** (``--real-layers`` decoder layers, default 2 of 36, and the same number of vision blocks of 32), because the full
3B (15 GB in float32, 7.5 in bf16, its LRA step more) does not fit beside six other developers on the shared
24 GiB machine.
Only the weights scale with depth, and they are the same in every case of a model, so the ratio at 4 streams is
an upper bound for the full model (its one-stream figure is larger, the streams' share the same).  The real
shape grounds 4 frames per clip at 224 px (``image_size``; ~10 s CPU per grounding here, so by default its cases
measure memory and one query to all only, ``--latency-models``).

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python bench/bench_multicam_memory.py        # ~5 min CPU
    .venv/bin/python bench/bench_multicam_memory.py --quick                                 # CI, ~20 s
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's stvg_ros, and `bench` as a package

from bench._util import machine, release_freed_memory, rss_bytes, table, write_json  # noqa: E402

NS = 1_000_000_000
MIB = 2**20
SHIPPED = "models/stvg-synth-qwen"
CAMERAS = ["front", "rear", "left", "right"]
QUERY = "the small red circle that moves left"


def load(model: str, real_layers: int):
    """(grounder, grounding config, label) for ``model``: 'shipped' or 'real' (see the module docstring)."""
    import torch

    from stvg_ros.config import GroundingConfig

    torch.set_num_threads(1)
    if model == "shipped":
        from stvg_ros.stack import load_model

        cfg = GroundingConfig(device="cpu")
        return load_model(str(ROOT / SHIPPED), cfg).grounder, cfg, "shipped (stvg-synth-qwen)"
    from bench.model_configs import build_real_size
    from stvg_ros.grounding.grounder import Grounder

    adapter = build_real_size("qwen2.5-vl-3b", torch.device("cpu"), torch.float32,
                              text_overrides=dict(num_hidden_layers=real_layers),
                              vision_overrides=dict(depth=real_layers, fullatt_block_indexes=[real_layers - 1]))
    cfg = GroundingConfig(device="cpu", num_frames=4, image_size=224, decomposer="rules")
    params = sum(p.numel() for p in adapter.model.parameters())
    return (Grounder(adapter, cfg), cfg,
            f"Qwen2.5-VL-3B widths, {real_layers}+{real_layers} layers ({params / 1e6:.0f} M params, float32)")


def camera_frames(pixels: str, camera: int, count: int, rng):
    """``count`` 640x480 RGB frames for camera number ``camera``: ``random`` noise (incompressible, the worst case
    for ``window_codec: png``) or ``camera``: the real 640x480 clip test/data/real/cup.mp4 (217 frames, looped),
    mirrored differently per camera (none, left-right, up-down, both) so no two cameras hold the same pixels."""
    if pixels == "random":
        for _ in range(count):
            yield rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
        return
    import cv2

    cap = cv2.VideoCapture(str(ROOT / "test" / "data" / "real" / "cup.mp4"))
    clip = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        f = cv2.cvtColor(f, cv2.COLOR_BGR2RGB)
        clip.append(f if camera % 4 == 0 else cv2.flip(f, (None, 1, 0, -1)[camera % 4]))
    for i in range(count):
        yield clip[i % len(clip)]


def child(model: str, streams: int, frames: int, real_layers: int, latency: bool = True, codec: str = "none",
          pixels: str = "camera") -> dict:
    """One case, in this (fresh) process: what the module docstring lists (without ``latency``: only the query
    to all, for the peak)."""
    from stvg_ros.config import ServingConfig
    from stvg_ros.stack import model_side
    from stvg_ros.stream.multi import MultiStreamService
    from stvg_ros.stream.requests import ANSWERED, GroundingRequest

    out: dict = dict(model=model, streams=streams, frames_per_stream=frames, rss_start_mib=rss_bytes() / MIB,
                     window_codec=codec, pixels=pixels)
    grounder, gcfg, label = load(model, real_layers)
    passes = [0]
    starts: list[tuple[int, float]] = []  # (the grounding's stream number, process CPU s when it started)
    ground = grounder.ground

    inside = [False]  # Grounder.ground is ground_many of one clip: count that clip once

    def counted(*a, frame_keys=None, **kw):
        passes[0] += 1
        starts.append((frame_keys[0][0] if frame_keys else -1, time.process_time()))
        inside[0] = True
        try:
            return ground(*a, frame_keys=frame_keys, **kw)
        finally:
            inside[0] = False

    grounder.ground = counted
    ground_many = grounder.ground_many

    def counted_many(clips, *a, frame_keys=None, **kw):  # a query to all, the cameras' clips batched
        if not inside[0]:
            passes[0] += len(clips)
            now = time.process_time()
            starts.extend((keys[0][0] if keys else -1, now) for keys in (frame_keys or [None] * len(clips)))
        return ground_many(clips, *a, frame_keys=frame_keys, **kw)

    grounder.ground_many = counted_many
    release_freed_memory()
    out.update(label=label, rss_loaded_mib=rss_bytes() / MIB)

    cameras = CAMERAS[:streams]
    serving = ServingConfig(window_codec=codec)  # the node's defaults: 10 s, at most 300 frames, every frame kept
    svc = MultiStreamService(cameras, serving)
    svc.configure(serving, model_side=model_side(grounder, gcfg))
    svc.start(grounder, threaded=True)
    rng = np.random.default_rng(streams)
    ingest_cpu = 0.0  # ingest() alone (downscale + the codec), not making the frames
    for c, name in enumerate(cameras):  # each camera its own clock, 30 Hz, distinct pixels
        t0 = (10 + 1000 * c) * NS
        for i, frame in enumerate(camera_frames(pixels, c, frames, rng)):
            t = time.process_time()
            svc.ingest(name, t0 + int(i * NS / 30), lambda f=frame: f, f"{name}_optical_frame")
            ingest_cpu += time.process_time() - t
    out.update(ingest_cpu_ms_per_frame=1e3 * ingest_cpu / (frames * streams),
               window_bytes_mib={n: svc.stream(n).window.nbytes / MIB for n in cameras})
    release_freed_memory()
    out.update(rss_windows_mib=rss_bytes() / MIB, window_frames={n: len(svc.stream(n).window) for n in cameras},
               stored_side=max(svc.stream(cameras[0]).window.frames()[0].shape[:2]))

    number = {svc.stream(n)._stream: n for n in cameras}  # the stream numbers the frame keys carry

    def ask(requests) -> tuple[list, float]:
        answers, left = {}, len(requests)
        t = time.process_time()
        ask.t0, ask.first = t, len(starts)
        handles = [svc.submit(r, lambda a: answers.__setitem__(a.request.query_id, a)) for r in requests]
        for h in handles:
            h.wait(600)
        assert len(answers) == left, "an answer went missing"
        return [answers[r.query_id] for r in requests], time.process_time() - t

    if latency:
        ask([GroundingRequest("warm", QUERY, stream=cameras[0])])  # untimed: first-call costs (imports, allocator)
    if latency:
        n0 = passes[0]
        load_answers, load_cpu = ask([GroundingRequest(f"load-{c}", QUERY, stream=c) for c in cameras])
        assert all(a.status == ANSWERED for a in load_answers), [a.reason for a in load_answers]
        queued_cpu = {number.get(k, "?"): cpu - ask.t0 for k, cpu in starts[ask.first:]}
        out["load"] = dict(cpu_s=load_cpu, passes=passes[0] - n0, per_stream={
            a.stream: dict(queue_s=a.queue_time, latency_s=a.latency, queue_cpu_s=queued_cpu[a.stream])
            for a in load_answers})
    n0 = passes[0]
    [every], all_cpu = ask([GroundingRequest("all", QUERY)])
    assert every.status == ANSWERED, every.reason
    out["all"] = dict(cpu_s=all_cpu, passes=passes[0] - n0, latency_s=every.latency)
    if latency:
        n0 = passes[0]
        sep_cpu = 0.0
        for c in cameras:  # one after the other: what a client asking each camera in turn pays
            _, cpu = ask([GroundingRequest(f"sep-{c}", QUERY, stream=c)])
            sep_cpu += cpu
        out["separate"] = dict(cpu_s=sep_cpu, passes=passes[0] - n0)
    svc.stop()
    release_freed_memory()
    out.update(rss_after_mib=rss_bytes() / MIB,
               rss_peak_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # Linux: KiB
    return out


def run_case(model: str, streams: int, frames: int, real_layers: int, latency: bool, codec: str = "none",
             pixels: str = "camera") -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    proc = subprocess.run([sys.executable, __file__, "--child", model, str(streams), str(frames), str(real_layers),
                           str(int(latency)), codec, pixels],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"case {model} x{streams} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="shipped,real", help="comma-separated: shipped, real")
    ap.add_argument("--streams", default="1,2,4")
    ap.add_argument("--frames", type=int, default=300, help="frames per stream's window (default: a full window)")
    ap.add_argument("--real-layers", type=int, default=2)
    ap.add_argument("--latency-models", default="shipped",
                    help="models whose cases also measure latency under load and all vs separate (the real shape's "
                         "grounding costs ~10 s CPU here, so by default it measures memory and one query to all)")
    ap.add_argument("--out", "--json", dest="out", default=str(ROOT / "bench" / "results" / "multicam_memory.json"))
    ap.add_argument("--quick", action="store_true", help="CI: shipped model, 1 and 2 streams, 30 frames")
    ap.add_argument("--codec", default=None, choices=("none", "png"),
                    help="ServingConfig.window_codec (default: the config's default)")
    ap.add_argument("--pixels", default="camera", choices=("camera", "random"),
                    help="window frames: the real 640x480 cup clip, mirrored per camera, or random noise")
    ap.add_argument("--child", nargs=7, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        m, n, f, k, lat, codec, pixels = args.child
        print(json.dumps(child(m, int(n), int(f), int(k), bool(int(lat)), codec, pixels)))
        return 0
    if args.codec is None:
        from stvg_ros.config import ServingConfig

        args.codec = ServingConfig().window_codec
    if args.quick:
        args.models, args.streams, args.frames = "shipped", "1,2", 30
    models = [m for m in args.models.split(",") if m]
    counts = [int(n) for n in args.streams.split(",")]
    cases = []
    for m in models:
        for n in counts:
            cases.append(run_case(m, n, args.frames, args.real_layers, m in args.latency_models.split(","),
                                  args.codec, args.pixels))
            c = cases[-1]
            print(f"{c['label']} x{n}: loaded {c['rss_loaded_mib']:.0f} MiB, windows {c['rss_windows_mib']:.0f}, "
                  f"after {c['rss_after_mib']:.0f}, peak {c['rss_peak_mib']:.0f}; window_codec {args.codec}: "
                  f"{c['ingest_cpu_ms_per_frame']:.2f} ms CPU per ingested frame, window bytes "
                  f"{max(c['window_bytes_mib'].values()):.1f} MiB per camera", flush=True)

    rows = []
    for c in cases:
        one = next(x for x in cases if x["model"] == c["model"] and x["streams"] == counts[0])
        rows.append([c["label"], c["streams"], f"{c['frames_per_stream']} @ {c['stored_side']} px",
                     f"{c['rss_loaded_mib']:.0f}", f"{c['rss_windows_mib']:.0f}", f"{c['rss_after_mib']:.0f}",
                     f"{c['rss_peak_mib']:.0f}", f"{c['rss_after_mib'] / one['rss_after_mib']:.3f}",
                     f"{c['rss_peak_mib'] / one['rss_peak_mib']:.3f}"])
    print()
    print(table(["model", "streams", "window frames @ stored side", "RSS loaded MiB", "RSS windows full MiB",
                 "RSS after queries MiB", "peak RSS MiB", f"after / {counts[0]} stream", f"peak / {counts[0]} stream"],
                rows))
    lat = []
    for c in (c for c in cases if "load" in c):
        ld = c["load"]
        per = ld["per_stream"]
        lat.append([c["label"], c["streams"], ld["passes"], f"{ld['cpu_s'] / c['streams']:.2f}",
                    " / ".join(f"{per[s]['queue_cpu_s']:.2f}"
                               for s in sorted(per, key=lambda s: per[s]['queue_cpu_s'])),
                    f"{max(p['queue_cpu_s'] for p in per.values()) / (ld['cpu_s'] / c['streams']):.2f}",
                    " / ".join(f"{per[s]['queue_s']:.2f}" for s in sorted(per, key=lambda s: per[s]['queue_s']))])
    print()
    print(table(["model", "streams (one query on each at once)", "model passes", "CPU s per query",
                 "queueing delay per stream, CPU s (served order)", "longest delay / CPU per query",
                 "queueing delay per stream, wall s"], lat))
    cost = [[c["label"], c["streams"], c["all"]["passes"], c["separate"]["passes"], f"{c['all']['cpu_s']:.2f}",
             f"{c['separate']['cpu_s']:.2f}", f"{c['all']['cpu_s'] / c['separate']['cpu_s']:.3f}"]
            for c in cases if c["streams"] > 1 and "separate" in c]
    if cost:
        print()
        print(table(["model", "streams", "passes: all", "passes: N separate", "CPU s: all", "CPU s: N separate",
                     "all / separate"], cost))
    write_json(args.out, dict(machine=machine(), args=vars(args), cases=cases))
    return 0


if __name__ == "__main__":
    sys.exit(main())
