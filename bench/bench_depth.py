#!/usr/bin/env python3
"""3-D error of the target's position on the synthetic test split (issue: answers a robot can act on).

For each test query the shipped model grounds the clip (full method, with the generator's proposals and
proposal-free); every tube box is back-projected with the synthetic world's depth (an ideal sensor, and
one with stereo-like noise and holes) and compared with the target's true centre at that frame.  Prints
median / 90th-percentile error in metres and relative to the distance, on the frames whose box is right
(IoU >= 0.5 with the target's) and on all tube frames, the share of frames without valid depth, and the
3-D stage's CPU time per tube frame.

    OMP_NUM_THREADS=1 python bench/bench_depth.py --count 100 [--json bench/results/depth-cpu.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stvg_ros.boxes import box_iou  # noqa: E402
from stvg_ros.stream.depth import locate  # noqa: E402
from stvg_ros.synthetic import depth as synth_depth  # noqa: E402
from stvg_ros.synthetic.bench import DEFAULT_MODEL, ground_sample  # noqa: E402
from stvg_ros.synthetic.generator import generate_sample  # noqa: E402

#: (name, noise at 1 m, hole share): an ideal sensor and a RealSense-class one
SENSORS = (("ideal", 0.0, 0.0), ("noisy+holes", 0.004, 0.05))
METHODS = {"with proposals": True, "proposal-free": False}


def measure(model: str, count: int, first_seed: int = 0, split: str = "test") -> dict:
    import torch

    from stvg_ros import GroundingConfig
    from stvg_ros.stack import load_model

    torch.set_num_threads(1)
    samples = [generate_sample(first_seed + k, split) for k in range(count)]
    rows: dict[str, dict] = {}
    for method, with_proposals in METHODS.items():
        cfg = GroundingConfig(num_frames=samples[0][1]["num_frames"], device="cpu", decomposer="rules")
        grounder = load_model(model, cfg).grounder
        recs = {name: [] for name, _, _ in SENSORS}
        stage_s, stage_frames = 0.0, 0
        for frames, s in samples:
            res, _, boxes = ground_sample(grounder, frames, s, True, with_proposals=with_proposals)
            cam = synth_depth.intrinsics(s["image_size"])
            target = s["tracks"][s["target"]]
            for name, noise, holes in SENSORS:
                for t, box in boxes.items():
                    truth = synth_depth.true_position(s, s["target"], t)
                    depth = synth_depth.render_depth(s, t, noise, holes)
                    depth[depth <= 0] = np.nan
                    c0 = time.process_time()
                    pos = locate(box, depth, cam)
                    stage_s += time.process_time() - c0
                    stage_frames += 1
                    iou = box_iou(box, target[t]) if t in target else 0.0
                    rec = {"valid": pos.valid, "iou": iou}
                    if pos.valid and truth is not None:
                        err = float(np.linalg.norm(pos.xyz - truth))
                        rec.update(err=err, rel=err / float(truth[2]))
                    recs[name].append(rec)
        for name, rs in recs.items():
            rows[f"{method}, {name}"] = summarise(rs)
        rows[f"{method}, stage"] = {"ms_per_tube_frame": 1000 * stage_s / max(stage_frames, 1),
                                    "frames": stage_frames}
    return rows


def summarise(recs: list[dict]) -> dict:
    def stats(rs):
        err = np.array([r["err"] for r in rs if "err" in r])
        rel = np.array([r["rel"] for r in rs if "rel" in r])
        if not err.size:
            return {"n": 0}
        return {"n": int(err.size), "median_m": float(np.median(err)), "p90_m": float(np.percentile(err, 90)),
                "median_rel": float(np.median(rel)), "p90_rel": float(np.percentile(rel, 90))}
    right = [r for r in recs if r["iou"] >= 0.5]
    return {"frames": len(recs), "no_valid_depth": sum(not r["valid"] for r in recs),
            "right_box": stats(right), "all": stats(recs)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--split", default="test", choices=("val", "test"))
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    rows = measure(args.model, args.count, split=args.split)
    print(f"| {args.split} split, {args.count} queries | tube frames | no valid depth | right box (IoU>=0.5): "
          "median m / p90 m / median rel / p90 rel | all frames: median m / p90 m / median rel |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        if "ms_per_tube_frame" in r:
            continue
        a, b = r["right_box"], r["all"]
        fmt = (lambda s: f"{s['median_m']:.3f} / {s['p90_m']:.3f} / {100 * s['median_rel']:.2f} % / "
               f"{100 * s['p90_rel']:.2f} %" if s.get("n") else "-")
        fmt_all = (lambda s: f"{s['median_m']:.3f} / {s['p90_m']:.3f} / {100 * s['median_rel']:.2f} %"
                   if s.get("n") else "-")
        print(f"| {name} | {r['frames']} | {r['no_valid_depth']} | {fmt(a)} (n={a.get('n', 0)}) | {fmt_all(b)} |")
    for name, r in rows.items():
        if "ms_per_tube_frame" in r:
            print(f"3-D stage ({name.split(',')[0]}): {r['ms_per_tube_frame']:.3f} ms CPU per tube frame "
                  f"({r['frames']} frames, one core)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
