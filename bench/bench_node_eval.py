"""Node mode against core mode on the same bags (issue 27, item 2): does the deployed path, fed every frame
at the bag's rate with the node's default window, ground as well as the grounder called on core mode's
sample?

Writes synthetic bags (``generate_sample``, raw frames; ``--frames-per-step 3`` films the same scenes at 3x
the rate: 60 frames at 15 fps), runs ``stvg-eval --mode core`` and ``stvg_eval --mode node`` on them (the
documented commands, in-process; node mode against a ``stvg_node`` this script starts with its defaults)
and prints m_vIoU / m_tIoU with 95 % bootstrap CIs and the paired difference node − core::

    # the colcon install first on PYTHONPATH (node mode needs stvg_ros.msg), e.g. the Makefile's ROS_ENV
    OMP_NUM_THREADS=1 nice python bench/bench_node_eval.py --count 40 --frames-per-step 1 3 --out /tmp/nodeeval
    # the same frames sampled on the long bags, boxes on them only: the tubes must be core mode's
    ... --count 40 --frames-per-step 3 --set tube_frames=sampled --out /tmp/nodeeval_sampled

No proposals (node mode's proposals come from the node's own detections, not a file).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def write_bags(out: Path, split: str, seeds: range, frames_per_step: int) -> Path:
    """One raw-frame bag per synthetic clip, with its query and ground truth (stamps from 1000 s)."""
    from stvg_ros.evaluation.bags import QuerySpec, write_bag
    from stvg_ros.synthetic.generator import generate_sample

    out.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        path = out / f"synth_{split}_{seed:06d}"
        if path.exists():
            continue
        frames, s = generate_sample(seed, split, frames_per_step=frames_per_step)
        fps = 5.0 * frames_per_step
        stamps = [1000.0 + t / fps for t in range(len(frames))]
        q = QuerySpec(f"{split}-{seed}", s["query"],
                      gt_boxes={stamps[t]: tuple(float(v) for v in b) for t, b in s["boxes"].items()},
                      gt_span=(stamps[s["st_frame"]], stamps[s["ed_frame"]]),
                      attribute=s["attribute"], action=s["action"])
        meta = {"dataset": "synthetic", "key": f"{split}-{seed}", "video": path.name, "fps": fps,
                "start_time": 1000.0, "inclusive": True, "num_frames": len(frames),
                "gt_span": [s["st_frame"], s["ed_frame"]]}
        write_bag(path, list(frames), stamps, [q], metadata=meta, image_format="raw", storage="mcap")
    return out


def start_node(model: str, log: Path) -> subprocess.Popen:
    """``stvg_node`` with its defaults, but what node mode requires at configure (reliable images)."""
    return subprocess.Popen(
        [sys.executable, "-m", "stvg_ros.ros.node", "--ros-args", "-r", "__ns:=/stvg",
         "-p", f"model_path:={model}", "-p", "device:=cpu", "-p", "image_reliability:=reliable",
         "-p", "image_depth:=100", "-p", "publish_debug_image:=false"],
        stdout=open(log, "w"), stderr=subprocess.STDOUT, env=os.environ.copy(), cwd=log.parent)


def records(path: Path) -> dict[str, dict]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            out[r["key"]] = r
    return out


def table(core: dict[str, dict], node: dict[str, dict]) -> dict:
    from stvg_ros.synthetic.bench import bootstrap_ci

    keys = sorted(set(core) & set(node))
    c = 100.0 * np.array([core[k]["viou"] for k in keys])
    n = 100.0 * np.array([node[k]["viou"] for k in keys])
    same = sum(core[k]["pred_span"] == node[k]["pred_span"] and abs(core[k]["viou"] - node[k]["viou"]) < 1e-3
               for k in keys)
    return {"n": len(keys), "core": (c.mean(), bootstrap_ci(c)), "node": (n.mean(), bootstrap_ci(n)),
            "diff": ((n - c).mean(), bootstrap_ci(n - c)), "same_tubes": same,
            "core_tiou": 100.0 * np.mean([core[k]["tiou"] for k in keys]),
            "node_tiou": 100.0 * np.mean([node[k]["tiou"] for k in keys]),
            "played": sorted({node[k].get("frames_played") for k in keys}, key=str),
            "failed": [k for k in keys if core[k].get("error") or node[k].get("error")]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(ROOT / "models" / "stvg-synth-qwen"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--count", type=int, default=30)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--frames-per-step", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--rate", type=float, default=1.0, help="playing rate (1 = the bag's own, as a camera)")
    ap.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", help="GroundingConfig fields, both modes")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)

    from stvg_ros.evaluation import evaluate
    from stvg_ros.ros import eval_node_loop

    a.out.mkdir(parents=True, exist_ok=True)
    seeds = range(a.first_seed, a.first_seed + a.count)
    sets = {k: write_bags(a.out / f"bags_x{k}", a.split, seeds, k) for k in a.frames_per_step}
    common = ["--model", a.model, "--device", "cpu", "--no-progress"] + (["--set", *a.set] if a.set else [])
    cpu = {}
    for k, bags in sets.items():
        t = time.process_time()
        rc = evaluate.main(["run", "--bags", str(bags), "--output", str(a.out / f"core_x{k}")] + common)
        cpu[k] = time.process_time() - t
        if rc:
            return rc
    node = start_node(a.model, a.out / "node.log")
    try:
        for k, bags in sets.items():
            rc = eval_node_loop.main(["run", "--mode", "node", "--bags", str(bags), "--rate", str(a.rate),
                                      "--node-timeout", "90", "--output", str(a.out / f"node_x{k}")] + common)
            if rc:
                print((a.out / "node.log").read_text()[-3000:], file=sys.stderr)
                return rc
    finally:
        node.terminate()
        try:
            node.wait(20)
        except subprocess.TimeoutExpired:
            node.kill()

    print(f"\n{a.split} seeds {seeds.start}-{seeds.stop - 1}, no proposals, {' '.join(a.set) or 'defaults'}, "
          f"m_vIoU [95 % CI]; node − core paired\n")
    print("| clips | n | core | node | node − core | identical tubes | m_tIoU core / node | frames played |")
    print("|---|---|---|---|---|---|---|---|")
    for k in sets:
        r = table(records(a.out / f"core_x{k}" / "results.jsonl"), records(a.out / f"node_x{k}" / "results.jsonl"))
        f = lambda m, ci: f"{m:.1f} [{ci[0]:.1f}, {ci[1]:.1f}]"  # noqa: E731
        d, dci = r["diff"]
        print(f"| {20 * k} frames at {5 * k} fps | {r['n']} | {f(*r['core'])} | {f(*r['node'])} | "
              f"{d:+.1f} [{dci[0]:+.1f}, {dci[1]:+.1f}] | {r['same_tubes']}/{r['n']} | "
              f"{r['core_tiou']:.1f} / {r['node_tiou']:.1f} | {r['played']} |")
        if r["failed"]:
            print(f"  failed: {r['failed']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
