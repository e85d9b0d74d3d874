#!/usr/bin/env python3
"""Does contrasting a standing query with the same description doing other actions cut false appearances?

A third of the shipped model's false appearances come from windows where an object of the target's colour does
*another* action (bench/README, "Where the false appearances come from").  This script asks, on every window of the
synthetic world's standing streams, the query and the same description with its action swapped for each other
action of the world ("the big red square that moves left" ... "that grows"), in one batched pass on the window's
sampled frames (no latent prompt, as a standing query's existence check), and the attribute alone ("the big red
square").  Scores built from those yes-logits replace p_yes; each is chosen on the val streams by the calibrator's
own rule (:func:`~stvg_ros.evaluation.calibration.choose_standing`: the largest margin of the worse target, 80 %
found and at most 0.1 false appearances per stream, confirm 1-5), cross-validated there, and counted on held-out
test streams, paired against p_yes at its own chosen thresholds (bootstrap over streams).  The query's own logit
is the existence judgment a standing query uses (the stored calibration traces hold the same p_yes).  Usage::

    OMP_NUM_THREADS=1 .venv/bin/python bench/standing_contrast.py --count 600 --logits /tmp/contrast   # ~17 CPU min
    OMP_NUM_THREADS=1 .venv/bin/python bench/standing_contrast.py --quick                                # CI
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._util import machine, table, write_json  # noqa: E402
from stvg_ros.evaluation import calibration as C  # noqa: E402
from stvg_ros.synthetic.generator import ACTIONS  # noqa: E402

SHIPPED = ROOT / "models" / "stvg-synth-qwen"
#: threshold values tried for every score (the scores below stay in 0-1; some sit lower than p_yes)
ONS = [round(float(x), 2) for x in np.arange(0.05, 0.951, 0.01)]
GAPS = (0.0, 0.02, 0.05, 0.1)


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def _lse(a: np.ndarray) -> np.ndarray:
    m = a.max(1, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(1, keepdims=True)))[:, 0]


#: window scores from the yes-logits L (windows x (7 actions, attribute)) and the query's action a; "p_yes" is the
#: node's standing score
SCORES = {
    "p_yes (the node's)": lambda L, a: _sig(L[:, a]),
    "p_yes x its share of the 7 actions (softmax at T=2)":
        lambda L, a: _sig(L[:, a]) * np.exp(L[:, a] / 2 - _lse(L[:, :len(ACTIONS)] / 2)),
    "logit - 0.5 x the strongest other action's (if > 0)":
        lambda L, a: _sig(L[:, a] - 0.5 * np.maximum(np.delete(L[:, :len(ACTIONS)], a, 1).max(1), 0)),
    "logit - 0.5 x (log-sum-exp of the others - log 6)":
        lambda L, a: _sig(L[:, a] - 0.5 * (_lse(np.delete(L[:, :len(ACTIONS)], a, 1)) - np.log(len(ACTIONS) - 1))),
    "sqrt(p_yes x p against the strongest other at T=2)":
        lambda L, a: np.sqrt(_sig(L[:, a]) * _sig((L[:, a] - np.delete(L[:, :len(ACTIONS)], a, 1).max(1)) / 2)),
    "logit - 0.3 x the attribute's logit": lambda L, a: _sig(L[:, a] - 0.3 * L[:, len(ACTIONS)]),
}


def questions(query: str) -> tuple[list[str], int]:
    """The query with each action of the world, then its attribute alone; the index of the query's own action."""
    m = re.match(r"(.*) that (%s)$" % "|".join(ACTIONS), query)
    if not m:
        raise ValueError(f"{query!r}: not '<description> that <action>'")
    return [f"{m.group(1)} that {a}" for a in ACTIONS] + [m.group(1)], ACTIONS.index(m.group(2))


def measure(model_dir: str, split: str, count: int, first: int = 0, log=print) -> list[dict]:
    """Per stream: its windows' yes-minus-no logits of :func:`questions` (the model passes), labels as the
    calibrator's traces."""
    from stvg_ros.config import GroundingConfig
    from stvg_ros.grounding.grounder import format_question, sample_indices
    from stvg_ros.stack import load_model

    g = load_model(model_dir, GroundingConfig(device="cpu")).grounder
    cfg, rows, t0 = g.config, [], time.process_time()
    for clip in C.synthetic_clips(split, count, first, "standing"):
        q = clip.queries[0]
        texts, action = questions(q.text)
        prompts = [format_question(cfg.question_template, x) for x in texts]
        logits, truth, span = [], [], []
        for a, b in C.window_ends(clip.stamps, clip.window_s, clip.every_s):
            frames, stamps = clip.frames[a:b + 1], clip.stamps[a:b + 1]
            idx = sample_indices(len(frames), cfg.num_frames, stamps)
            with torch.no_grad():
                visual = g.adapter.encode_frames([frames[i] for i in idx], stamps=[float(stamps[i]) for i in idx])
                yn = g.adapter.run(visual, prompts, capture=None).yes_no_logits.detach().float()
            logits.append([round(float(x), 4) for x in yn[:, 0] - yn[:, 1]])
            s = next((k for k, (lo, hi) in enumerate(q.present) if clip.stamps[a] <= hi and clip.stamps[b] >= lo), -1)
            truth.append(s >= 0)
            span.append(s)
        rows.append(dict(clip=clip.name, query=q.text, action=action, logits=logits, truth=truth, span=span,
                         spans=len(q.present)))
        if len(rows) % 50 == 0:
            log(f"{split}: {len(rows)}/{count} streams, {time.process_time() - t0:.0f} CPU s")
    return rows


def traces(rows: list[dict], score) -> list[C.Trace]:
    return [C.Trace(r["clip"], r["query"], True, None, [float(x) for x in score(np.array(r["logits"]), r["action"])],
                    r["truth"], r["span"], r["spans"]) for r in rows]


def compare(val: list[dict], test: list[dict], repeats: int = 3) -> list[dict]:
    """Each score chosen on ``val`` (calibrator's rule), cross-validated there, counted on ``test``, paired there
    against the first score (p_yes) at its own choice; and the best val curve point's false rate at 80 % found."""
    out, base = [], None
    for name, score in SCORES.items():
        tv, tt = traces(val, score), traces(test, score)
        grid, counts = C.replay_grid(tv, ons=ONS, gaps=GAPS)
        chosen = C.choose_standing(grid)
        cv = C.cross_validate(tv, grid, counts=counts, repeats=repeats)
        rule = (chosen["found_on"], chosen["found_off"], chosen["confirm"])
        held = C.standing_rates(tt, *rule)
        per = C._per_stream(tt, *rule)
        at80 = [g["false_per_stream"] for g in C.pareto(grid) if (g["found"]["rate"] or 0) >= 0.8]
        row = dict(score=name, chosen=rule, val_found=chosen["found"]["rate"], val_false=chosen["false_per_stream"],
                   cv_found=cv["found"] if cv else None, cv_false=cv["false_per_stream"] if cv else None,
                   test_found=held["found"], test_false=held["false_per_stream"], test_streams=held["streams"],
                   val_false_at_80=min(at80) if at80 else None)
        if base is None:
            base = per
        else:
            spans = np.array([t.windowed_spans for t in tt if t.window_p], dtype=float)
            row["paired_vs_p_yes"] = C.paired_counts(per, base, spans)
        out.append(row)
    return out


def _cached(path: Path | None, compute) -> list[dict]:
    if path is not None and path.is_file():
        return json.loads(path.read_text())
    rows = compute()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rows, separators=(",", ":")))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(SHIPPED))
    ap.add_argument("--count", type=int, default=600, help="streams per split (seeds 0..count-1)")
    ap.add_argument("--logits", default=None, help="folder keeping each split's window logits (reused when there)")
    ap.add_argument("--out", "--json", dest="out", default=str(ROOT / "bench" / "results" / "standing-contrast-runT.json"))
    ap.add_argument("--quick", action="store_true", help="CI: 12 streams per split")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        args.count = 12
    folder = Path(args.logits) if args.logits else None
    rows = {split: _cached(folder / f"contrast-{split}-{args.count}.json" if folder else None,
                           lambda split=split: measure(args.model, split, args.count))
            for split in ("val", "test")}
    result = compare(rows["val"], rows["test"], repeats=1 if args.quick else 3)

    def pct(x):
        return "-" if x is None else f"{100 * x:.1f} %"

    def per(x):
        return "-" if x is None else f"{x:.3f}"

    print(table(["score", "chosen on val (on / off / confirm)", "val found / false per stream",
                 "cross-validated (val)", f"held-out test ({args.count} streams): found (95 % CI) / false per stream",
                 "paired vs p_yes on test: found / false per stream", "val curve: fewest false at >= 80 % found"],
                [[r["score"], " / ".join(str(v) for v in r["chosen"]), f"{pct(r['val_found'])} / {per(r['val_false'])}",
                  f"{pct(r['cv_found'])} / {per(r['cv_false'])}",
                  f"{pct(r['test_found']['rate'])} [{100 * r['test_found']['ci'][0]:.1f}, "
                  f"{100 * r['test_found']['ci'][1]:.1f}] / {per(r['test_false'])}",
                  "-" if "paired_vs_p_yes" not in r else
                  "{:+.1f} [{:+.1f}, {:+.1f}] / {:+.3f} [{:+.3f}, {:+.3f}]".format(
                      100 * r["paired_vs_p_yes"]["found"], *(100 * v for v in r["paired_vs_p_yes"]["found_ci"]),
                      r["paired_vs_p_yes"]["false_per_stream"], *r["paired_vs_p_yes"]["false_ci"]),
                  per(r["val_false_at_80"])] for r in result]))
    write_json(args.out, dict(machine=machine(), args=vars(args), actions=list(ACTIONS), rows=result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
