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

from stvg_ros.evaluation.calibration import Trace, _per_stream, choose_standing  # noqa: E402

DEFAULT_TRACES = ROOT / "bench" / "results" / "calibration-synth-val600-traces-runT.json"
ONS = [round(float(x), 2) for x in np.arange(0.30, 0.951, 0.01)]
GAPS = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2)


def smoothed(t: Trace, n: int) -> Trace:
    """The trace with each window's p_yes the mean of its last ``n`` evaluations."""
    p = np.asarray(t.window_p, dtype=float)
    return replace(t, window_p=[float(p[max(0, i - n + 1):i + 1].mean()) for i in range(len(p))])


def replay(traces: list[Trace], confirms, smooth: int = 1):
    """Per grid point and stream: (spans found, false appearances); the points' keys."""
    trs = [smoothed(t, smooth) if smooth > 1 else t for t in traces]
    keys, hits, false = [], [], []
    for c in confirms:
        for gap in GAPS:
            for on in ONS:
                off = round(max(0.0, on - gap), 2)
                per_stream = _per_stream(trs, on, off, c)
                keys.append((on, off, c, smooth))
                hits.append(per_stream[:, 0])
                false.append(per_stream[:, 1])
    return keys, np.array(hits), np.array(false)


def grid_on(idx, keys, hits, false, spans) -> list[dict]:
    """The calibrator's grid entries for the streams ``idx`` (sums of the per-stream replays)."""
    n = int(spans[idx].sum())
    out = []
    for i, (on, off, c, _) in enumerate(keys):
        f = false[i, idx]
        h = int(hits[i, idx].sum())
        out.append(dict(found_on=on, found_off=off, confirm=c, change_on=0.0, streams=len(idx), false=int(f.sum()),
                        false_per_stream=float(f.mean()), false_sd=float(np.std(f, ddof=1)) if len(idx) > 1 else 0.0,
                        found=dict(k=h, n=n, rate=h / n if n else None), index=i))
    return out


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
    keys, hits, false = replay(traces, (1, 2, 3, 4, 5))
    for n in args.smooth:
        k, h, f = replay(traces, (1, 2, 3), n)
        keys, hits, false = keys + k, np.vstack([hits, h]), np.vstack([false, f])
    spans = np.array([len({s for s in t.window_span if s >= 0}) for t in traces])
    print(f"{len(traces)} streams, {len(keys)} grid points replayed ({time.process_time() - t0:.0f} CPU s)")
    families = {"confirm 1-3": lambda k: k[2] <= 3 and k[3] == 1, "confirm 1-5": lambda k: k[3] == 1}
    families.update({f"mean of {n}, confirm 1-3": (lambda n: lambda k: k[3] == n)(n) for n in args.smooth})
    rules = {"edge (before)": lambda g: choose_edge(g, args.min_found, args.max_false),
             "margin (stvg-calibrate)": lambda g: choose_standing(g, args.min_found, args.max_false)}
    rng = np.random.default_rng(0)
    splits = []
    for _ in range(args.repeats):
        folds = np.array_split(rng.permutation(len(traces)), args.folds)
        splits += [(np.concatenate([f for j, f in enumerate(folds) if j != i]), folds[i]) for i in range(args.folds)]
    rows = []
    print(f"\n| rule | grid | held-out folds: found | held-out folds: false / stream | on all: chosen | on all: found, false |")
    print("|---|---|---|---|---|---|")
    for fam, keep in families.items():
        sel = np.array([i for i, k in enumerate(keys) if keep(k)])
        sub = ([keys[i] for i in sel], hits[sel], false[sel])
        for name, rule in rules.items():
            h = f = n = 0
            for train, test in splits:
                i = rule(grid_on(train, *sub, spans))["index"]
                h, f, n = h + sub[1][i, test].sum(), f + sub[2][i, test].sum(), n + spans[test].sum()
            best = rule(grid_on(np.arange(len(traces)), *sub, spans))
            row = dict(rule=name, grid=fam, found=h / n, false_per_stream=f / (args.repeats * len(traces)),
                       chosen=sub[0][best["index"]], found_all=best["found"]["rate"],
                       false_all=best["false_per_stream"])
            rows.append(row)
            on, off, c, sm = row["chosen"]
            print(f"| {name} | {fam} | {100 * row['found']:.1f} % | {row['false_per_stream']:.3f} | {on:.2f} / {off:.2f} "
                  f"/ {c}{f' (mean of {sm})' if sm > 1 else ''} | {100 * row['found_all']:.1f} %, "
                  f"{row['false_all']:.3f} |", flush=True)
    print(f"\n{args.repeats} x {args.folds}-fold; targets: >= {args.min_found:.0%} found, <= {args.max_false:g} false per "
          f"stream ({time.process_time() - t0:.0f} CPU s)")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(args=vars(args), rows=rows), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
