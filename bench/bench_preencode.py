#!/usr/bin/env python3
"""Pre-encode when idle (``preencode_when_idle``): what it saves the first query, and what it costs.

Three figures per model and config, measured on one adapter in one run, in CPU seconds of this process
(``time.process_time``, all threads), cases interleaved over rounds (ratios, so that other load on the
machine cancels out); a query's model passes (the refine pass of the long window included) and box stage
(``select``: track choice and segmentation) apart:

* **first query after idle**: a window of ``--window`` frames (``--frames`` sampled), asked once with
  an empty cache (off) and once after :meth:`Grounder.prefetch` ran on the same window (on, what the
  idle worker would have done); one round per ``--repeats`` with new frame keys, the order rotated.  Also the
  prefetch's own time (device time spent while nobody asked) and that the answers are equal.
* **idle work per kept frame**: the window slides one frame, the prefetch runs again: the device time
  the service spends per kept frame when nobody asks (times ``window_rate`` = its duty while idle).
* **speculative hits** (units that span frames, i.e. Qwen's pairs; per-frame families are shown too):
  the window pre-encoded at stream frame t, the query arriving ``k`` kept frames later (the pre-encode
  had not caught up): the share of the query's visual units found cached, for k in ``--lags``; and on
  a stream pre-encoded after every frame with a query every ``--slide`` frames, the share of all
  pre-encoded units a query ever used.

Examples::

    python bench/bench_preencode.py --quick                                      # CI: tiny models, seconds
    nice -n 10 env OMP_NUM_THREADS=1 python bench/bench_preencode.py     # tiny:llava_onevision, small:qwen2_5_vl
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

from bench._util import box_seconds, case_clock, machine, staged, table, write_json  # noqa: E402

QUERIES = ["the man in purple clothes sits on the bench", "a dog runs to the left", "the red car stops",
           "a woman in a white coat opens the door"]
CONFIGS = {"plain": dict(use_lra=False, use_tas=False, use_dsth=False),
           "full": dict(use_lra=True, use_tas=True, use_dsth=False)}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny:llava_onevision,small:qwen2_5_vl",
                    help="comma list of tiny:<family> / small:<family> (random weights, built here)")
    ap.add_argument("--configs", default="plain,full", help=f"comma list of {', '.join(CONFIGS)}")
    ap.add_argument("--window", type=int, default=40, help="frames in the window (10 s at 4 Hz)")
    ap.add_argument("--frames", type=int, default=16, help="frames sampled per query (num_frames)")
    ap.add_argument("--lra-steps", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="first-query timings per case (median)")
    ap.add_argument("--lags", default="1,2,4,8", help="kept frames between the pre-encode and the query")
    ap.add_argument("--slide", type=int, default=8, help="kept frames between queries (2 s at 4 Hz)")
    ap.add_argument("--stream-queries", type=int, default=6, help="queries on the pre-encoded stream")
    ap.add_argument("--json", default="", help="where to write the JSON (default bench/results/preencode-*.json)")
    ap.add_argument("--quick", action="store_true", help="tiny models, few frames (CI)")
    args = ap.parse_args(argv)
    if args.quick:
        args.models, args.configs = "tiny:llava_onevision,tiny:qwen2_5_vl", "plain,full"
        args.window, args.frames, args.lra_steps, args.repeats = 8, 4, 1, 1
        args.lags, args.slide, args.stream_queries = "1,2", 2, 2
    return args


def load(name: str):
    """Only tiny or small random models: the figures compare settings on one machine, not models."""
    from bench.model_configs import load_adapter

    kind, _, family = name.partition(":")
    if kind not in ("tiny", "small") or not family:
        raise SystemExit(f"--models: {name!r} is not tiny:<family> or small:<family>")
    return load_adapter(name)[0]


def frames_for(adapter, n: int):
    """Frames as the node keeps them: twice the model's input side (4:3)."""
    from stvg_ros.adapters.tiny_models import random_frames

    w = 2 * adapter.input_side
    return random_frames(n, w * 3 // 4, w, seed=7)


def visual_counts(grounder) -> tuple[int, int]:
    v = grounder.cache_stats().by_kind.get("visual", {"hits": 0, "misses": 0})
    return v["hits"], v["misses"]


def first_query(adapter, cfg: dict, frames, args) -> dict:
    """Rounds of (the query off, the prefetch, the query on after it), the order rotated from round to round (the
    prefetch always before its query), in CPU time of this process (:func:`_util.case_clock`); the queries' model
    passes and box stage (``select``) apart."""
    from stvg_ros.grounding.grounder import Grounder

    clock = case_clock(torch.device("cpu"))
    stamps = [0.25 * i for i in range(args.window)]
    Grounder(adapter, cfg).ground(frames[:args.window], stamps, QUERIES[0])  # warm-up (not timed)
    got = {k: [] for k in ("off", "on", "prefetch")}  # per round: (total, stages)
    outs = {k: [] for k in got}  # per round: the result (None for the prefetch)
    same = True
    for r in range(args.repeats):
        keys = [(r, i) for i in range(args.window)]  # new frames each repeat: nothing carried over
        query = QUERIES[r % len(QUERIES)]
        off, on = Grounder(adapter, cfg), Grounder(adapter, cfg)
        results = {}

        def case(name):
            if name == "prefetch":
                results[name], t, st = staged(lambda mark: on.prefetch(frames[:args.window], keys), clock)
            else:
                g = off if name == "off" else on
                results[name], t, st = staged(lambda mark: g.ground(frames[:args.window], stamps, query,
                                                                    frame_keys=keys, checkpoint=mark), clock)
            got[name].append((t, st))
            outs[name].append(results[name])

        for name in (("off", "prefetch", "on"), ("prefetch", "on", "off"))[r % 2]:
            case(name)
        a, b = results["off"], results["on"]
        same &= (a.p_yes, a.start, a.end, a.boxes, a.track_id) == (b.p_yes, b.start, b.end, b.boxes, b.track_id)
        hits, misses = visual_counts(on)
    # the idle work per kept frame: the window slides by one, the prefetch runs again
    slide = Grounder(adapter, cfg)
    keys = list(range(args.window + 1))
    slide.prefetch(frames[:args.window], keys[:args.window])
    units, per_frame, _ = staged(lambda mark: slide.prefetch(frames[1:args.window + 1], keys[1:]), clock)
    med = statistics.median
    total = {k: [t for t, _ in v] for k, v in got.items()}
    box = {k: [box_seconds(st, res) for (_, st), res in zip(v, outs[k])] for k, v in got.items()}
    model = {k: [t - b for t, b in zip(total[k], box[k])] for k in got}
    return {"clock": "process CPU", "off_s": med(total["off"]), "on_s": med(total["on"]),
            "on_over_off": med(o / f for o, f in zip(total["on"], total["off"])),
            "model_off_s": med(model["off"]), "model_on_s": med(model["on"]),
            "model_on_over_off": med(o / f for o, f in zip(model["on"], model["off"])),
            "box_off_s": med(box["off"]), "box_on_s": med(box["on"]),
            "encode_off_s": med(st.get("encode", 0.0) for _, st in got["off"]),
            "encode_on_s": med(st.get("encode", 0.0) for _, st in got["on"]), "prefetch_s": med(total["prefetch"]),
            "prefetch_over_off_query": med(p / f for p, f in zip(total["prefetch"], total["off"])),
            "prefetch_over_off_model": med(p / f for p, f in zip(total["prefetch"], model["off"])),
            "rounds_s": {k: total[k] for k in got}, "query_visual_hits": hits, "query_visual_misses": misses,
            "idle_work_per_kept_frame_s": per_frame, "units_per_kept_frame": units, "results_equal": bool(same)}


def speculative(adapter, cfg: dict, frames, args) -> dict:
    """Share of a query's visual units pre-encoded ``k`` frames before it arrived; and on a stream
    pre-encoded after every kept frame, the share of pre-encoded units later used."""
    from stvg_ros.grounding.grounder import Grounder

    W = args.window
    stamps = [0.25 * i for i in range(len(frames))]
    lags = {}
    for k in (int(v) for v in args.lags.split(",")):
        g = Grounder(adapter, cfg)
        keys = list(range(W + k))
        g.prefetch(frames[:W], keys[:W])
        g.ground(frames[k:W + k], stamps[k:W + k], QUERIES[0], frame_keys=keys[k:])
        hits, misses = visual_counts(g)
        lags[k] = hits / max(1, hits + misses)
    g = Grounder(adapter, cfg)
    n = W + args.slide * args.stream_queries
    used = []
    for t in range(W, n + 1):  # frame t-1 just arrived: the idle worker pre-encodes the window
        window = slice(t - W, t)
        g.prefetch(frames[window], list(range(n))[window])
        if (t - W) % args.slide == args.slide - 1:  # a query arrives before the next frame
            g.ground(frames[window], stamps[window], QUERIES[len(used) % len(QUERIES)],
                     frame_keys=list(range(n))[window])
            used.append(visual_counts(g))
    s = g.cache_stats()
    hits, misses = used[-1] if used else (0, 0)
    return {"query_hit_rate_by_lag": lags, "stream_query_hit_rate": hits / max(1, hits + misses),
            "stream_prefetched_units": s.prefetched.get("visual", 0),
            "stream_prefetched_used": s.prefetch_hits.get("visual", 0),
            "stream_used_share": s.prefetch_hits.get("visual", 0) / max(1, s.prefetched.get("visual", 0)),
            "stream_queries": len(used)}


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.manual_seed(0)
    data = {"machine": machine(), "args": vars(args), "models": {}}
    rows, spec_rows = [], []
    for name in args.models.split(","):
        adapter = load(name)
        frames = frames_for(adapter, args.window + max(args.slide * args.stream_queries,
                                                       max(int(v) for v in args.lags.split(","))) + 1)
        res = data["models"][name] = {}
        for cname in args.configs.split(","):
            cfg = dict(CONFIGS[cname], num_frames=args.frames, lra_steps=args.lra_steps)
            r = res[cname] = {"first_query": first_query(adapter, cfg, frames, args),
                              "speculative": speculative(adapter, cfg, frames, args)}
            f, s = r["first_query"], r["speculative"]
            rows.append([name, cname, f"{f['off_s']:.3f} ({f['model_off_s']:.3f} + {f['box_off_s']:.3f})",
                         f"{f['on_s']:.3f} ({f['model_on_s']:.3f} + {f['box_on_s']:.3f})",
                         f"{f['on_over_off']:.2f} ({f['model_on_over_off']:.2f})",
                         f"{f['encode_off_s']:.3f} -> {f['encode_on_s']:.3f}", f"{f['prefetch_s']:.3f}",
                         f"{f['idle_work_per_kept_frame_s']:.3f} ({f['units_per_kept_frame']})", f["results_equal"]])
            spec_rows.append([name, cname, " ".join(f"{k}:{v:.0%}" for k, v in s["query_hit_rate_by_lag"].items()),
                              f"{s['stream_query_hit_rate']:.0%}",
                              f"{s['stream_prefetched_used']}/{s['stream_prefetched_units']} "
                              f"({s['stream_used_share']:.0%})"])
    print("CPU seconds of this process, median over interleaved rounds; a query = model passes + box stage\n")
    print(table(["model", "config", "first query off (model + box)", "on (model + box)", "on/off (model passes)",
                 "encode off -> on", "prefetch (idle)", "idle work per kept frame (units)", "equal"], rows))
    print()
    print(table(["model", "config", "query units cached, pre-encoded k frames before", "stream: query hits",
                 "stream: pre-encoded units used"], spec_rows))
    path = args.json or str(ROOT / "bench" / "results" / f"preencode-{time.strftime('%Y%m%d-%H%M')}.json")
    write_json(path, data)
    print(f"wrote {path}")
    return 0 if all(r["first_query"]["results_equal"] for m in data["models"].values() for r in m.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
