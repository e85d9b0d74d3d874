"""How a standing-threshold rule does on streams it was not chosen on: k-fold cross-validation over trace files.

``stvg-calibrate`` chooses the standing thresholds on the streams it measured; this script asks how the choice
fares on others, without measuring anything again: it replays every grid point once per stream (the node's own
:class:`~stvg_ros.stream.standing.ChangeTracker`, via the calibrator's replay), then, for each fold, chooses on the
other folds and counts the appearances found and the false appearances on the held-out one.  Rules compared:

* ``margin``: :func:`~stvg_ros.evaluation.calibration.choose_standing`, the calibrator's (the largest margin of the
  worse target, in standard errors);
* ``edge``: the rule before session 25 (within the false limit, the fewest false at ``min_found`` or above, else the
  most found), kept here as the baseline;

each with ``standing_confirm`` 1-3 and 1-5, and with ``--smooth N``: p_yes replaced by its mean over the last N
evaluations (a further knob, measured, not in the node).  Usage::

    OMP_NUM_THREADS=1 .venv/bin/python bench/calibration_cv.py                    # the shipped model's val traces
    OMP_NUM_THREADS=1 .venv/bin/python bench/calibration_cv.py TRACES.json ... --smooth 2 3 4
    OMP_NUM_THREADS=1 .venv/bin/python bench/calibration_cv.py --quick             # 60 streams, 2 repeats (CI)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stvg_ros.evaluation.calibration import (Trace, choose_standing, cross_validate,  # noqa: E402
                                             replay_grid)

DEFAULT_TRACES = ROOT / "bench" / "results" / "calibration-synth-val600-traces-runT.json"


def smoothed(t: Trace, n: int) -> Trace:
    """The trace with each window's p_yes the mean of its last ``n`` evaluations."""
    p = np.asarray(t.window_p, dtype=float)
    return replace(t, window_p=[float(p[max(0, i - n + 1):i + 1].mean()) for i in range(len(p))])


def choose_edge(grid: list[dict], min_found: float, max_false: float) -> dict:
    """The rule before session 25: within the false limit, the fewest false at ``min_found`` or above (else the
    most found); no point within the limit: the fewest false."""
    ok = [g for g in grid if g["false_per_stream"] <= max_false + 1e-9]
    if not ok:
        return min(grid, key=lambda g: (g["false_per_stream"], -(g["found"]["rate"] or 0)))
    if max(g["found"]["rate"] or 0 for g in ok) >= min_found:
        ok = [g for g in ok if (g["found"]["rate"] or 0) >= min_found]
        return min(ok, key=lambda g: (g["false"], -(g["found"]["rate"] or 0), -(g["found_on"] - g["found_off"]),
                                      g["confirm"]))
    return min(ok, key=lambda g: (-(g["found"]["rate"] or 0), g["false"], -(g["found_on"] - g["found_off"]),
                                  g["confirm"]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("traces", nargs="*", default=[str(DEFAULT_TRACES)], help="trace files (stvg-calibrate --traces)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--min-found", type=float, default=0.8)
    ap.add_argument("--max-false", type=float, default=0.1)
    ap.add_argument("--smooth", type=int, nargs="*", default=[], help="also: p_yes averaged over N evaluations")
    ap.add_argument("--json", default="", help="also write the rows here")
    ap.add_argument("--quick", action="store_true", help="the first 60 streams, 2 repeats (CI)")
    args = ap.parse_args(argv)
    traces = [t for p in args.traces for t in (Trace(**d) for d in json.loads(Path(p).read_text())) if t.window_p]
    if args.quick:
        traces, args.repeats = traces[:60], 2
    if len(traces) < 2 * args.folds:
        raise SystemExit(f"{len(traces)} standing streams: too few for {args.folds} folds")
    t0 = time.process_time()
    families = {"confirm 1-3": (traces, (1, 2, 3)), "confirm 1-5": (traces, (1, 2, 3, 4, 5))}
    families.update({f"mean of {n}, confirm 1-3": ([smoothed(t, n) for t in traces], (1, 2, 3)) for n in args.smooth})
    rules = {"edge (before)": choose_edge, "margin (stvg-calibrate)": choose_standing}
    rows = []
    print("| rule | grid | held-out folds: found | held-out folds: false / stream | on all: chosen | on all: found, false |")
    print("|---|---|---|---|---|---|")
    for fam, (trs, confirms) in families.items():
        grid, counts = replay_grid(trs, confirms=confirms)  # the calibrator's grid, its rates on all the streams
        for name, rule in rules.items():
            cv = cross_validate(trs, grid, args.min_found, args.max_false, args.folds, args.repeats, choose=rule,
                                counts=counts)
            best = rule(grid, args.min_found, args.max_false)
            row = dict(rule=name, grid=fam, found=cv["found"], false_per_stream=cv["false_per_stream"],
                       chosen=[best["found_on"], best["found_off"], best["confirm"]],
                       found_all=best["found"]["rate"], false_all=best["false_per_stream"])
            rows.append(row)
            print(f"| {name} | {fam} | {100 * row['found']:.1f} % | {row['false_per_stream']:.3f} | "
                  f"{best['found_on']:.2f} / {best['found_off']:.2f} / {best['confirm']} | "
                  f"{100 * row['found_all']:.1f} %, {row['false_all']:.3f} |", flush=True)
    print(f"\n{args.repeats} x {args.folds}-fold; targets: >= {args.min_found:.0%} found, <= {args.max_false:g} false per "
          f"stream ({time.process_time() - t0:.0f} CPU s)")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(args=vars(args), rows=rows), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
