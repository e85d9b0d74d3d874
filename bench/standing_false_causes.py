"""Where a standing query's false appearances come from, on the synthetic world's standing streams.

A false appearance is an ``appeared`` event in a window the target's action does not touch.  This script replays
stored traces (``stvg-calibrate --traces``; no model pass) through the node's own standing rules at the given
thresholds and, for each false appearance and for every window outside the target's action, asks the generator
what acts in that window: an object of the target's colour doing the target's action (another shape or size),
one of the target's colour doing another action, or nothing of the target's colour.  The share of such windows
whose p_yes reaches ``found_on`` says what the model confuses; the false appearances' causes say what a better
rule on p_yes could not remove.  Usage::

    OMP_NUM_THREADS=1 .venv/bin/python bench/standing_false_causes.py                     # the shipped model, val
    OMP_NUM_THREADS=1 .venv/bin/python bench/standing_false_causes.py TRACES.json --on 0.61 --off 0.59 --confirm 5
    OMP_NUM_THREADS=1 .venv/bin/python bench/standing_false_causes.py --quick             # 40 streams (CI)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stvg_ros.evaluation.calibration import (SYNTHETIC_EVERY, SYNTHETIC_STREAM, SYNTHETIC_WINDOW, Trace,  # noqa: E402
                                             appearances)
from stvg_ros.stream.standing import StandingRules  # noqa: E402
from stvg_ros.synthetic.generator import acts_in, generate_sample, target_object  # noqa: E402

DEFAULT_TRACES = ROOT / "bench" / "results" / "calibration-synth-val600-traces-runT.json"
DEFAULTS = ROOT / "models" / "stvg-synth-qwen" / "grounding_defaults.json"
#: what acts in a window outside the target's action, most confusable first
CAUSES = ("same colour, same action", "same colour, other action", "nothing of its colour acting")


def _acting(objects: list[dict], target: dict, first: int, last: int) -> list[dict]:
    return [o for o in objects if o is not target and o["colour"] == target["colour"] and acts_in(o, first, last)]


def what_acts(objects: list[dict], target: dict, first: int, last: int) -> str:
    """What of ``target``'s colour, other than the target itself, acts in frames ``first .. last`` of a clip with
    ``objects``: one of :data:`CAUSES` (the most confusable that applies)."""
    return _cause(_acting(objects, target, first, last), target)


def _cause(acting: list[dict], target: dict) -> str:
    if any(o["action"] == target["action"] for o in acting):
        return CAUSES[0]
    return CAUSES[1] if acting else CAUSES[2]


def what_differs(acting: list[dict], target: dict) -> str:
    """How the objects of the first of :data:`CAUSES` (the target's colour and action) differ from the target: "size",
    "shape" or "size and shape" (the most different of them), what a model must see to tell them apart."""
    same = [o for o in acting if o["action"] == target["action"]]
    size = any(o["size"] != target["size"] for o in same)
    shape = any(o["shape"] != target["shape"] for o in same)
    return "size and shape" if size and shape else "size" if size else "shape"


def analyse(traces: list[Trace], on: float, off: float, confirm: int) -> dict:
    """Per cause: windows outside the action, those with p_yes >= ``on``, and false appearances; when each false
    appearance comes (before or after the target's action); for the false appearances of the first cause, what the
    model would have had to see (:func:`what_differs`); for the windows of the second, each (target's action, the
    other object's action) pair: windows and those with p_yes >= ``on`` (which actions the model confuses)."""
    rules = StandingRules(found_on=on, found_off=off, confirm=confirm)
    windows, high, false, when, differs = Counter(), Counter(), Counter(), Counter(), Counter()
    pairs: dict[str, list[int]] = {}
    for tr in traces:
        if not tr.window_p:
            continue
        split, seed = tr.clip.split("/")
        _, sample = generate_sample(int(seed), split, num_frames=SYNTHETIC_STREAM)
        target = target_object(sample)
        events = set(appearances(tr, rules))
        first_in = tr.window_span.index(0) if 0 in tr.window_span else None
        for i, (p, span) in enumerate(zip(tr.window_p, tr.window_span)):
            event = i in events
            if span >= 0:
                continue
            first, last = i * SYNTHETIC_EVERY, i * SYNTHETIC_EVERY + SYNTHETIC_WINDOW - 1
            acting = _acting(sample["objects"], target, first, last)
            c = _cause(acting, target)
            windows[c] += 1
            high[c] += p >= on
            if c == CAUSES[1]:
                for action in sorted({o["action"] for o in acting}):
                    k = pairs.setdefault(f"{target['action']} / {action}", [0, 0])
                    k[0], k[1] = k[0] + 1, k[1] + (p >= on)
            if event:
                false[c] += 1
                when["before the action" if first_in is None or i < first_in else "after the action"] += 1
                if c == CAUSES[0]:
                    differs[what_differs(acting, target)] += 1
    return dict(on=on, off=off, confirm=confirm, streams=sum(1 for t in traces if t.window_p),
                causes={c: dict(windows=windows[c], high=high[c], false=false[c]) for c in CAUSES}, when=dict(when),
                same_action_differs=dict(differs),
                action_pairs=dict(sorted(pairs.items(), key=lambda kv: (-kv[1][1], kv[0]))))


def table(r: dict, top: int = 8) -> str:
    """The causes table, what the same-action ones differ in, and the ``top`` action pairs most often scored >= on."""
    total = sum(v["false"] for v in r["causes"].values())
    lines = [f"{r['streams']} streams, thresholds {r['on']:.2f} / {r['off']:.2f} / confirm {r['confirm']}: "
             f"{total} false appearances ({total / max(r['streams'], 1):.3f} per stream); "
             + ", ".join(f"{k} {v}" for k, v in sorted(r["when"].items())),
             "| in the window (outside the target's action) | windows | p_yes >= on | false appearances |",
             "|---|---|---|---|"]
    for c, v in r["causes"].items():
        share = v["high"] / v["windows"] if v["windows"] else 0.0
        lines.append(f"| {c} | {v['windows']} | {v['high']} ({100 * share:.1f} %) | {v['false']} |")
    if r["same_action_differs"]:
        lines.append(f"\nfalse appearances from the same colour and action, the other object differs from the target "
                     "in: " + ", ".join(f"{k} {v}" for k, v in sorted(r["same_action_differs"].items())))
    if r["action_pairs"]:
        lines += ["\n| the target's action / the other object's (same colour) | windows | p_yes >= on |", "|---|---|---|"]
        lines += [f"| {k} | {n} | {h} ({100 * h / n:.0f} %) |" for k, (n, h) in list(r["action_pairs"].items())[:top]]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("traces", nargs="*", default=[str(DEFAULT_TRACES)], help="trace files of synthetic standing streams")
    ap.add_argument("--on", type=float, help="standing_found_on (default: the shipped model's)")
    ap.add_argument("--off", type=float, help="standing_found_off (default: the shipped model's)")
    ap.add_argument("--confirm", type=int, help="standing_confirm (default: the shipped model's)")
    ap.add_argument("--quick", action="store_true", help="the first 40 streams of each file")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args(argv)
    d = json.loads(DEFAULTS.read_text())
    on = a.on if a.on is not None else d["standing_found_on"]
    off = a.off if a.off is not None else d["standing_found_off"]
    confirm = a.confirm if a.confirm is not None else d["standing_confirm"]
    out = {}
    for path in a.traces:
        traces = [Trace(**t) for t in json.loads(Path(path).read_text()) if t.get("window_p")]
        if a.quick:
            traces = traces[:40]
        r = analyse(traces, on, off, confirm)
        print(f"## {Path(path).name}\n{table(r)}\n")
        out[Path(path).name] = r
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
