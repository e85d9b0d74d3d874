"""Where a standing query's grounded change is read (issue 27 item 4): the tube's span boxes (the shipped
rule) against the relevance map's token-cell boxes on every frame the model saw, from the same grounding
(no model pass) or from a second grounding with LRA off and ``box_method: cells`` (one cheap pass), on
the synthetic standing streams of ``stvg-calibrate``.  The p_yes of each window comes from a
``stvg-calibrate --change`` trace file (the same windows, measured before); each variant is replayed with the
calibration's own grid and choice (:mod:`stvg_ros.evaluation.calibration`).

    OMP_NUM_THREADS=1 python bench/standing_change_variants.py --split val --count 150 \\
        --traces bench/results/calibration-synth-val-change-traces.json --out /tmp/variants.json
    python bench/standing_change_variants.py --analyse bench/results/standing-change-variants-val.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

VARIANTS = {"span": "tube's span boxes (shipped)", "cells_on": "cell boxes, same grounding (no pass)",
            "cells_off": "cell boxes, LRA-off grounding (+1 pass)", "track_off": "LRA-off cells grounding's span"}


def measure(split: str, count: int, first: int, traces: str, out: str) -> None:
    import torch

    from stvg_ros.config import GroundingConfig
    from stvg_ros.evaluation.calibration import CHANGE_FLOOR, synthetic_clips, window_ends
    from stvg_ros.grounding.spatial import attention_track
    from stvg_ros.stack import load_model
    from stvg_ros.stream.standing import grounded_change

    torch.set_num_threads(1)
    stored = {t["clip"]: t for t in json.loads(Path(traces).read_text()) if t["window_p"]}
    g = load_model("models/stvg-synth-qwen", GroundingConfig(device="cpu")).grounder
    on_cfg = g.config.replace(keep_relevance=True)
    off_cfg = on_cfg.replace(use_lra=False, box_method="cells")

    def cell_change(frames, stamps, result, threshold):
        rel = result.relevance
        track = attention_track(rel.spatial, rel.spatial.shape[1:], rel.content_box, rel.image_size, threshold)
        boxes = {s: b for s, b in zip(result.frame_stamps, track.boxes) if b is not None}
        return grounded_change(frames, stamps, boxes)

    rows, cpu = [], dict(on=0.0, off=0.0)
    for clip in synthetic_clips(split, count, first, "standing"):
        t = stored[clip.name]
        wins = window_ends(clip.stamps, clip.window_s, clip.every_s)
        assert len(wins) == len(t["window_p"]), clip.name
        text = clip.queries[0].text
        row = dict(clip=clip.name, window_p=t["window_p"], window_span=t["window_span"],
                   window_truth=t["window_truth"], span=t["window_change"], cells_on=[], cells_off=[], track_off=[])
        for (a, b), p in zip(wins, t["window_p"]):
            if p < CHANGE_FLOOR:
                for k in ("cells_on", "cells_off", "track_off"):
                    row[k].append(None)
                continue
            frames, stamps = clip.frames[a:b + 1], clip.stamps[a:b + 1]
            g.config = on_cfg
            c = time.process_time()
            r = g.ground(frames, stamps, text)
            cpu["on"] += time.process_time() - c
            row["cells_on"].append(round(cell_change(frames, stamps, r, on_cfg.box_threshold), 3))
            g.config = off_cfg
            c = time.process_time()
            r2 = g.ground(frames, stamps, text)
            cpu["off"] += time.process_time() - c
            row["cells_off"].append(round(cell_change(frames, stamps, r2, off_cfg.box_threshold), 3))
            row["track_off"].append(round(grounded_change(frames, stamps, r2.boxes), 3))
        rows.append(row)
        print(clip.name, {k: round(v, 1) for k, v in cpu.items()}, flush=True)
        Path(out).write_text(json.dumps(dict(rows=rows, cpu=cpu)))


def auc(pos, neg) -> float:
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    return float((pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean())


def analyse(files: list[str]) -> None:
    from stvg_ros.evaluation.calibration import Trace, choose_standing, pareto, standing_grid

    rows, cpu = [], dict(on=0.0, off=0.0)
    for f in files:
        d = json.loads(Path(f).read_text())
        rows += d["rows"]
        cpu = {k: cpu[k] + d["cpu"][k] for k in cpu}
    n = max(1, sum(c is not None for r in rows for c in r["cells_on"]))
    print(f"{len(rows)} streams; CPU per grounding: LRA on {cpu['on'] / n:.3f} s, "
          f"LRA off + cells {cpu['off'] / n:.3f} s ({n} windows)")
    print("| change read in | AUC (action in window, p_yes >= 0.4) | in-action windows at 0 "
          "| chosen (<= 0.1 false/stream) | found | false | best curve point found / false per stream |")
    print("|---|---|---|---|---|---|---|")
    for var, name in VARIANTS.items():
        pos = [c for r in rows for c, y in zip(r[var], r["window_truth"]) if c is not None and y]
        neg = [c for r in rows for c, y in zip(r[var], r["window_truth"]) if c is not None and not y]
        trs = [Trace(r["clip"], "", True, None, r["window_p"], r["window_truth"], r["window_span"], 1, r[var])
               for r in rows]
        grid = standing_grid(trs)
        best = choose_standing(grid)
        top = max(pareto(grid), key=lambda g: g["found"]["k"])
        rule = f"{best['found_on']:g} / {best['found_off']:g} / {best['confirm']} / {best['change_on']:g}"
        print(f"| {name} | {auc(pos, neg):.3f} | {np.mean(np.asarray(pos) == 0):.0%} | {rule} "
              f"| {best['found']['k']}/{best['found']['n']} | {best['false']} "
              f"| {top['found']['rate']:.0%} / {top['false_per_stream']:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="val")
    ap.add_argument("--count", type=int, default=40)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--traces", default="bench/results/calibration-synth-val-change-traces.json")
    ap.add_argument("--out", default="/tmp/standing-change-variants.json")
    ap.add_argument("--analyse", nargs="*", default=None, help="measured files to replay (no model pass)")
    args = ap.parse_args()
    if args.analyse:
        analyse(args.analyse)
    else:
        measure(args.split, args.count, args.first_seed, args.traces, args.out)


if __name__ == "__main__":
    main()
