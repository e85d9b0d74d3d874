#!/usr/bin/env python3
"""Several cameras, one model (issue 32): what a query to all cameras costs, and whether it names the right camera.

A synthetic multi-camera scene: ``--cameras`` N streams, each one clip of the synthetic world
(:mod:`stvg_ros.synthetic.generator`); the query is one clip's target description, that clip plays on one
camera (a different one per scene, in turn) and the other cameras play clips of the same split in which no
object matches the description (their objects share colours, shapes or actions: distractors).  Every clip is
ingested into its stream of a :class:`stvg_ros.stream.multi.MultiStreamService` serving the shipped model
(``models/stvg-synth-qwen``), one grounder for all.

* **which camera**: the query to all (``stream=""``) answers with the best camera (``found``, then ``p_yes``;
  the rule was fixed before this bench ran, nothing tuned, so no validation split is used).  Counted where
  the single-stream method finds the target: the target camera's own answer (its entry in ``per_stream``:
  the same frames and grounder as a one-stream service) says ``found``.  Mean with a 95 % bootstrap CI.
* **cost**: on the first ``--cost-scenes`` scenes, the CPU time (``time.process_time``, this process) of the
  query to all against N separate queries (one per camera, ``stream=name``) on the same streams, run
  interleaved (order alternated) after one untimed warm-up, and the model passes (grounder calls) of each.

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python bench/bench_multicam.py              # ~3-4 min CPU
    .venv/bin/python bench/bench_multicam.py --quick                                       # CI, ~15 s
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's stvg_ros, and `bench` as a package

from bench._util import machine, table, write_json  # noqa: E402

NS = 1_000_000_000
SHIPPED = "models/stvg-synth-qwen"
CLIP_FRAMES = 16
MODEL_FRAMES = 8  # the shipped model was trained on 6-10 frame windows
FPS = 5.0


#: other rules for "which camera" computed from the same answers (the service ranks by found, then p_yes,
#: i.e. by p_yes): a comparison, chosen between on the val split only
RULES = {"p_yes (the service's rank)": lambda p, s: p, "spatial score": lambda p, s: s,
         "p_yes x score": lambda p, s: p * s}


def load_grounder(model: str):
    from stvg_ros.config import GroundingConfig
    from stvg_ros.stack import load_model

    torch.set_num_threads(1)
    return load_model(model, GroundingConfig(num_frames=MODEL_FRAMES, decomposer="rules", device="cpu")).grounder


def absent_clip(target: dict, split: str, seed: int) -> tuple[np.ndarray, dict]:
    """The first clip from ``seed`` on whose objects none matches ``target``'s full description."""
    from stvg_ros.synthetic.generator import generate_sample, matches

    while True:
        frames, sample = generate_sample(seed, split, num_frames=CLIP_FRAMES)
        if not any(matches(o, target["size"], target["colour"], target["shape"], target["action"])
                   for o in sample["objects"]):
            return frames, sample
        seed += 1


KINDS = ("size", "colour", "shape", "action")


def closest(target: dict, sample: dict) -> int:
    """How many of the target's four attributes (size, colour, shape, action) the clip's closest object shares."""
    return max(sum(o[k] == target[k] for k in KINDS) for o in sample["objects"])


def scene(k: int, cameras: list[str], split: str) -> tuple[str, str, dict[str, np.ndarray], dict[str, int]]:
    """Scene ``k``: (query, the target's camera, camera → clip, other camera → :func:`closest`)."""
    from stvg_ros.synthetic.generator import generate_sample, target_object

    frames, sample = generate_sample(k, split, num_frames=CLIP_FRAMES)
    where = cameras[k % len(cameras)]
    target = target_object(sample)
    clips, near, other = {}, {}, 100_000 + 97 * k
    for name in cameras:
        if name == where:
            clips[name] = frames
        else:
            clips[name], s = absent_clip(target, split, other)
            near[name] = closest(target, s)
            other = s["seed"] + 1
    return sample["query"], where, clips, near


def serve(grounder, cameras: list[str], clips: dict[str, np.ndarray]):
    from stvg_ros.config import ServingConfig
    from stvg_ros.stream.multi import MultiStreamService

    svc = MultiStreamService(cameras, ServingConfig(window_rate=0.0, window_duration=100.0,
                                                    window_max_frames=CLIP_FRAMES, ingest_max_side=0))
    svc.start(grounder, threaded=False)
    for c, name in enumerate(cameras):  # each camera its own clock
        t0 = (10 + 100 * c) * NS
        for i, frame in enumerate(clips[name]):
            svc.ingest(name, t0 + int(i * NS / FPS), lambda f=frame: f, f"{name}_optical_frame")
    return svc


class Calls:
    """Counts the grounder's calls (model passes of a query: one grounding per clip)."""

    def __init__(self, grounder):
        self.grounder, self.n = grounder, 0

    def __getattr__(self, name):
        return getattr(self.grounder, name)

    def ground(self, *a, **kw):
        self.n += 1
        return self.grounder.ground(*a, **kw)


def ask(svc, requests) -> tuple[list, float]:
    answers: list = []
    t = time.process_time()
    for r in requests:
        svc.submit(r, answers.append)
    svc.run_pending()
    return answers, time.process_time() - t


def main(argv=None) -> int:
    from stvg_ros.stream.requests import ANSWERED, GroundingRequest
    from stvg_ros.synthetic.bench import bootstrap_ci

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=SHIPPED)
    ap.add_argument("--cameras", type=int, default=3)
    ap.add_argument("--scenes", type=int, default=40)
    ap.add_argument("--cost-scenes", type=int, default=4)
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", "--json", dest="out", default=str(ROOT / "bench" / "results" / "multicam.json"))
    ap.add_argument("--quick", action="store_true", help="CI: 2 cameras, 3 scenes, 1 timed")
    args = ap.parse_args(argv)
    if args.quick:
        args.cameras, args.scenes, args.cost_scenes = 2, 3, 1
    cameras = ["front", "rear", "left", "right", "arm", "head"][:args.cameras]
    grounder = Calls(load_grounder(args.model))

    rows, cost = [], []
    for k in range(args.scenes):
        query, where, clips, near = scene(k, cameras, args.split)
        svc = serve(grounder, cameras, clips)
        if k < args.cost_scenes:
            if k == 0:
                ask(svc, [GroundingRequest("warm", query)])  # untimed warm-up
            one = lambda: ask(svc, [GroundingRequest("all", query)])  # noqa: E731
            sep = lambda: ask(svc, [GroundingRequest(f"q-{c}", query, stream=c) for c in cameras])  # noqa: E731
            for first in ((one, sep) if k % 2 == 0 else (sep, one)):
                before = grounder.n
                _, seconds = first()
                cost.append(dict(scene=k, kind="all" if first is one else "separate", cpu_s=seconds,
                                 passes=grounder.n - before))
        [answer], _ = ask(svc, [GroundingRequest("all", query)])
        svc.stop()
        assert answer.status == ANSWERED, answer.reason
        own = next(a for a in answer.per_stream if a.stream == where)
        rows.append(dict(scene=k, query=query, target_camera=where, answered_camera=answer.stream,
                         single_found=bool(own.result.found), right=answer.stream == where,
                         distractor_shares=near,
                         p_yes={a.stream: round(float(a.result.p_yes), 4) for a in answer.per_stream},
                         score={a.stream: round(float(a.result.score), 4) for a in answer.per_stream}))
        print(f"scene {k:3d} {where:>5} -> {answer.stream:>5}  single found={own.result.found!s:5}  "
              f"p_yes {rows[-1]['p_yes']}", flush=True)

    counted = [r for r in rows if r["single_found"]]
    right = [float(r["right"]) for r in counted]
    acc = 100 * statistics.fmean(right) if right else float("nan")
    lo, hi = (100 * x for x in bootstrap_ci(right))
    all_rows = [r for r in rows]
    acc_all = 100 * statistics.fmean(float(r["right"]) for r in all_rows)
    lo_all, hi_all = (100 * x for x in bootstrap_ci([float(r["right"]) for r in all_rows]))
    rules = {name: [float(max(r["p_yes"], key=lambda c: rule(r["p_yes"][c], r["score"][c])) == r["target_camera"])
                    for r in counted] for name, rule in RULES.items()}
    print(table(["rule (which camera is best)", "right camera where single-stream finds (95 % CI)"],
                [[name, f"{100 * statistics.fmean(v):.1f} % [{100 * bootstrap_ci(v)[0]:.1f}, "
                        f"{100 * bootstrap_ci(v)[1]:.1f}]"] for name, v in rules.items() if v]))
    by_near = {}
    for r in counted:
        by_near.setdefault(max(r["distractor_shares"].values()), []).append(float(r["right"]))
    print()
    print(table(["closest distractor shares (of 4 attributes)", "scenes", "right camera"],
                [[n, len(v), f"{100 * statistics.fmean(v):.1f} %"] for n, v in sorted(by_near.items())]))
    print()
    print(table(["scenes", "cameras", "single-stream finds the target", "right camera there (95 % CI)",
                 "right camera, every scene (95 % CI)", "target >= 95 %"],
                [[len(rows), len(cameras), f"{len(counted)}/{len(rows)}", f"{acc:.1f} % [{lo:.1f}, {hi:.1f}]",
                  f"{acc_all:.1f} % [{lo_all:.1f}, {hi_all:.1f}]", "pass" if acc >= 95 else "fail"]]))
    summary = {}
    if cost:
        for kind in ("all", "separate"):
            xs = [c for c in cost if c["kind"] == kind]
            summary[kind] = dict(cpu_s=statistics.median(c["cpu_s"] for c in xs),
                                 passes=statistics.median(c["passes"] for c in xs))
        ratio = statistics.median(a["cpu_s"] / s["cpu_s"] for a, s in zip(
            [c for c in cost if c["kind"] == "all"], [c for c in cost if c["kind"] == "separate"]))
        summary["ratio_all_over_separate"] = ratio
        print()
        print(table(["query", "model passes (median)", "CPU s (median)", "all / separate (median of pairs)"],
                    [["to all cameras", summary["all"]["passes"], f"{summary['all']['cpu_s']:.2f}", f"{ratio:.3f}"],
                     [f"{len(cameras)} separate", summary["separate"]["passes"], f"{summary['separate']['cpu_s']:.2f}",
                      "1"]]))
    write_json(args.out, dict(machine=machine(), args=vars(args), cameras=cameras, accuracy=dict(
        counted=len(counted), scenes=len(rows), right_pct=acc, ci=[lo, hi], right_pct_every_scene=acc_all,
        ci_every_scene=[lo_all, hi_all], rules={k: 100 * statistics.fmean(v) for k, v in rules.items() if v},
        by_closest_distractor={n: dict(scenes=len(v), right_pct=100 * statistics.fmean(v)) for n, v in by_near.items()}),
        cost=cost, cost_summary=summary, scenes=rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
