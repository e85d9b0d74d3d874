#!/usr/bin/env python3
"""A query to all cameras with the clips batched (issue 32, item 3): ``Grounder.ground_many`` on N cameras' clips
against N separate ``ground`` calls, per model and camera count.

Each camera is a synthetic clip of ``--window`` frames (another scene per camera, the first camera's query), as a
live window: the grounder samples ``num_frames`` of them and, with ``tube_frames: refine`` (the default), runs a
second pass on the frames halfway.  Frame keys are given (as the service does), and one untimed warm-up of each
way fills the feature cache, so both ways find every clip's visual tokens encoded, as a warm service does.
Then ``--rounds`` interleaved rounds (the order alternates).  Reported per way, medians over rounds: this
process's CPU (``time.process_time``: the box worker thread included), the model passes' CPU (this thread's
inside the adapter's ``run``/``encode_*`` calls, ``bench_multicam.ModelCPU``, and inside ``torch.autograd.grad``:
LRA's backward passes), the CPU stages (the rest), the
decoder calls and decoded positions; and the largest difference of the answers' p_yes between the two ways.
``--peak``: each way's peak RSS above what the process held before it (one more untimed run each, sampled).

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python bench/bench_batch_clips.py            # ~10 min CPU
    .venv/bin/python bench/bench_batch_clips.py --quick                                     # CI, ~1 min
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's stvg_ros, and `bench` as a package

from bench._util import PeakMemory, machine, table, write_json  # noqa: E402
from bench.bench_multicam import ModelCPU  # noqa: E402

SHIPPED = "models/stvg-synth-qwen"
#: the shipped model was trained on 6-10 frame windows; the small model runs the paper's 20
FRAMES = {SHIPPED: 8}


def clips_of(cameras: int, window: int, size: int) -> tuple[str, list]:
    """The first camera's query and ``cameras`` synthetic clips (one scene each) with their stamps and keys."""
    from stvg_ros.synthetic.generator import generate_sample

    out, query = [], ""
    for c in range(cameras):
        frames, sample = generate_sample(1000 + c, "test", num_frames=window, image_size=size)
        query = query or sample["query"]
        out.append((list(frames), [round(0.2 * i, 6) for i in range(window)], [(c, i) for i in range(window)]))
    return query, out


def measure(model: str, cameras: int, rounds: int, window: int, size: int, num_frames: int,
            with_peak: bool = False) -> dict:
    from bench.model_configs import load_adapter
    from stvg_ros.grounding.grounder import Grounder

    torch.set_num_threads(1)
    adapter, label = load_adapter(model)
    grounder = Grounder(adapter, dict(num_frames=num_frames, decomposer="rules"))
    counter = ModelCPU(adapter)
    torch.autograd.grad = counter._timed(torch.autograd.grad)  # LRA's backward passes are model passes too
    query, clips = clips_of(cameras, window, size)

    def separate():
        return [grounder.ground(f, s, query, frame_keys=k) for f, s, k in clips]

    def batched():
        return grounder.ground_many([(f, s) for f, s, _ in clips], query, frame_keys=[k for _, _, k in clips])

    ways = {"separate": separate, "batched": batched}
    got: dict = {w: dict(cpu=[], model=[], stages=[], decodes=[], positions=[]) for w in ways}
    answers = {w: fn() for w, fn in ways.items()}  # warm-up: the feature cache holds every clip's tokens
    peak = {}
    if with_peak:  # untimed (the sampling thread costs CPU): the RSS a way needs above what is held before it
        for w, fn in ways.items():
            with PeakMemory(torch.device("cpu")) as mem:
                fn()
            peak[w] = (mem.peak - mem.baseline) / 2**20
    for r in range(rounds):
        for w in (("separate", "batched") if r % 2 == 0 else ("batched", "separate")):
            m0, d0, p0 = counter.snapshot()
            t = time.process_time()
            answers[w] = ways[w]()
            cpu = time.process_time() - t
            m1, d1, p1 = counter.snapshot()
            got[w]["cpu"].append(cpu)
            got[w]["model"].append(m1 - m0)
            got[w]["stages"].append(cpu - (m1 - m0))
            got[w]["decodes"].append(d1 - d0)
            got[w]["positions"].append(p1 - p0)
    diff = max(abs(a.p_yes - b.p_yes) for a, b in zip(answers["separate"], answers["batched"]))
    med = {w: {k: statistics.median(v) for k, v in got[w].items()} for w in ways}
    return dict(model=label, cameras=cameras, rounds=rounds, window=window, num_frames=num_frames,
                p_yes_max_diff=diff, raw=got, peak_mib=peak, **{w: med[w] for w in ways},
                ratio_cpu=med["batched"]["cpu"] / med["separate"]["cpu"],
                ratio_model=med["batched"]["model"] / med["separate"]["model"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=f"{SHIPPED},small:qwen2_5_vl")
    ap.add_argument("--cameras", default="2,4")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--window", type=int, default=0, help="frames per camera (0: twice the sampled frames)")
    ap.add_argument("--size", type=int, default=112, help="synthetic frame side (px)")
    ap.add_argument("--num-frames", type=int, default=0, help="frames sampled (0: 8 for the shipped model, else 20)")
    ap.add_argument("--out", "--json", dest="out", default=str(ROOT / "bench" / "results" / "batch_clips.json"))
    ap.add_argument("--peak", action="store_true", help="also each way's peak RSS above its start (one untimed run)")
    ap.add_argument("--quick", action="store_true", help="CI: the shipped model, 2 cameras, 1 round")
    args = ap.parse_args(argv)
    if args.quick:
        args.models, args.cameras, args.rounds = SHIPPED, "2", 1
    rows, runs = [], []
    for model in args.models.split(","):
        T = args.num_frames or FRAMES.get(model, 20)
        for n in (int(c) for c in args.cameras.split(",")):
            r = measure(model, n, args.rounds, args.window or 2 * T, args.size, T, args.peak)
            runs.append(r)
            for w in ("separate", "batched"):
                m = r[w]
                rows.append([r["model"], n, w, f"{m['cpu']:.2f}", f"{m['model']:.2f}", f"{m['stages']:.2f}",
                             int(m["decodes"]), int(m["positions"]),
                             f"{r['ratio_cpu']:.3f}" if w == "batched" else "",
                             f"{r['ratio_model']:.3f}" if w == "batched" else "",
                             f"{r['p_yes_max_diff']:.1e}" if w == "batched" else "",
                             f"{r['peak_mib'][w]:.0f}" if r["peak_mib"] else ""])
            print(f"{r['model']} x{n}: batched/separate CPU {r['ratio_cpu']:.3f}, model passes {r['ratio_model']:.3f}",
                  flush=True)
    print(table(["model", "cameras", "way", "CPU s", "model passes s", "CPU stages s", "decoder calls", "positions",
                 "CPU ratio", "model ratio", "|dp_yes| max", "peak RSS MiB"], rows))
    write_json(args.out, dict(machine=machine(), args=vars(args), runs=runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
