#!/usr/bin/env python3
"""N different queries over a replayed stream: what a window that remembers saves.

A stream of frames slides through a window (``--window`` frames, ``--frames`` sampled per query);
every ``--slide`` new frames a different query is asked.  Each model and config runs twice on the
same adapter, with the per-frame feature cache (``GroundingConfig.feature_cache_mb``, frames keyed
by their stream index as the node keys them by ``seq``) and without it, queries interleaved so
both see the same machine load.  Reported per run: the first query's time, the median of the later
ones, their ratio, the later queries' median against the uncached run's, the encode stage's share,
cache hit rates, and peak RSS.  Configs with LRA also run with ``reuse_passes`` off (the zero-latent
prefix of LRA's first step and the existence question computed apart, as before it was shared):
"reuse on/off" is the median per-query ratio.  Results are checked equal (p_yes, span, boxes) with and without the
cache.

Examples::

    python bench/bench_feature_cache.py --quick                                 # CI: tiny model, seconds
    nice -n 10 env OMP_NUM_THREADS=1 python bench/bench_feature_cache.py        # small:qwen2_5_vl + shipped model
    python bench/bench_feature_cache.py --models llava-onevision-0.5b --frames 4 --window 8 --allow-cpu-large
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _util import machine, table, write_json  # noqa: E402

QUERIES = ["the man in red walks to the door", "a dog runs across the yard", "the woman opens the fridge",
           "a child throws a ball", "the person in a blue coat sits down", "a car drives past the house",
           "the man picks up a cup", "a cat jumps onto the table", "the woman waves her hand",
           "a person carries a box"]
CONFIGS = {"plain": dict(use_lra=False, use_tas=False), "no-lra": dict(use_lra=False, use_tas=True),
           "full": dict(use_lra=True, use_tas=True)}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="small:qwen2_5_vl,models/stvg-synth-qwen",
                    help="comma list: tiny:/small:<family>, a model directory, or a real size with random "
                         "weights (e.g. llava-onevision-0.5b, needs --allow-cpu-large on CPU)")
    ap.add_argument("--configs", default="plain,no-lra,full", help=f"comma list of {', '.join(CONFIGS)}")
    ap.add_argument("--queries", type=int, default=6)
    ap.add_argument("--window", type=int, default=40, help="frames in the window")
    ap.add_argument("--frames", type=int, default=16, help="frames sampled per query (num_frames)")
    ap.add_argument("--slide", type=int, default=4, help="new frames between queries (0 = same window)")
    ap.add_argument("--frame-size", default="320x240", help="stored frame WxH")
    ap.add_argument("--lra-steps", type=int, default=1)
    ap.add_argument("--decomposer", default="rules", help="GroundingConfig.decomposer (rules or model)")
    ap.add_argument("--allow-cpu-large", action="store_true")
    ap.add_argument("--dsth-probe", action="store_true",
                    help="also ask each model to decompose the queries (DSTH by the model): how many answers are "
                         "usable and what they cost (chooses a model directory's 'decomposer' default)")
    ap.add_argument("--quick", action="store_true", help="CI mode: tiny model, small window, 3 queries")
    ap.add_argument("--json", default="", help="default bench/results/feature-cache-<date>.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.models, args.configs, args.queries = "tiny:qwen2_5_vl,tiny:llava_onevision", "plain,full", 3
        args.window, args.frames, args.slide, args.frame_size = 8, 4, 2, "112x84"
    return args


def load(name: str, args):
    from stvg_ros.adapters import load_adapter

    if name.startswith(("tiny:", "small:")):
        from bench_grounding import SMALL_LM
        from stvg_ros.tiny_models import tiny_model

        kind, family = name.split(":", 1)
        sizes = SMALL_LM if kind == "small" else {}
        path = tiny_model(family, tempfile.mkdtemp(prefix="stvg-bench-"), image_size=224 if sizes else 112, **sizes)
        return load_adapter(path, device="cpu", dtype=torch.float32)
    from model_configs import REAL_SIZES, build_real_size

    if name in REAL_SIZES:
        if not args.allow_cpu_large and not torch.cuda.is_available():
            raise SystemExit(f"{name} at real size on CPU takes minutes per query: pass --allow-cpu-large")
        return build_real_size(name, torch.device("cuda" if torch.cuda.is_available() else "cpu"), torch.float32)
    return load_adapter(str(ROOT / name) if (ROOT / name).is_dir() else name, device="cpu", dtype=torch.float32)


def stream_frames(n: int, size: str):
    from stvg_ros.tiny_models import random_frames

    w, h = (int(v) for v in size.split("x"))
    return random_frames(n, h, w, seed=7)


def run_model(name: str, args) -> dict:
    from stvg_ros.grounder import Grounder

    adapter = load(name, args)
    n_total = args.window + args.slide * (args.queries - 1)
    frames = stream_frames(n_total, args.frame_size)
    stamps = [0.5 * i for i in range(n_total)]
    out = {}
    for cname in args.configs.split(","):
        base = dict(CONFIGS[cname], num_frames=args.frames, lra_steps=args.lra_steps, decomposer=args.decomposer)
        runs = {"cached": Grounder(adapter, base), "uncached": Grounder(adapter, dict(base, feature_cache_mb=0))}
        if base.get("use_lra"):  # the same, passes computed alone (reuse_passes off): what sharing saves
            runs["no_reuse"] = Grounder(adapter, dict(base, reuse_passes=False))
        times = {k: [] for k in runs}
        encode = {k: [] for k in runs}
        same = True
        for q in range(args.queries):
            window = slice(q * args.slide, q * args.slide + args.window)
            results = {}
            for k, g in runs.items():  # interleaved: both see the same load
                t0 = time.perf_counter()
                results[k] = g.ground(frames[window], stamps[window], QUERIES[q % len(QUERIES)],
                                      frame_keys=list(range(n_total))[window])
                times[k].append(time.perf_counter() - t0)
                encode[k].append(results[k].timings["encode"])
            a, b = results["cached"], results["uncached"]
            same &= (a.p_yes, a.start, a.end, a.boxes) == (b.p_yes, b.start, b.end, b.boxes)
            if "no_reuse" in results:  # shared passes: float32 rounding of other batch shapes only
                c = results["no_reuse"]
                same &= abs(a.p_yes - c.p_yes) < 1e-4 and (a.start, a.end, a.found) == (c.start, c.end, c.found)
        row = {}
        for k in runs:
            t = times[k]
            later = statistics.median(t[1:]) if len(t) > 1 else t[0]
            row[k] = {"first_s": t[0], "later_median_s": later, "later_over_first": later / t[0],
                      "encode_first_s": encode[k][0],
                      "encode_later_median_s": statistics.median(encode[k][1:]) if len(t) > 1 else encode[k][0],
                      "times_s": t}
        stats = runs["cached"].cache_stats().as_dict()
        row["cache"] = stats
        row["later_cached_over_uncached"] = row["cached"]["later_median_s"] / row["uncached"]["later_median_s"]
        if "no_reuse" in runs:
            row["per_query_over_no_reuse"] = statistics.median(
                a / b for a, b in zip(times["cached"], times["no_reuse"]))
        row["results_equal"] = bool(same)
        out[cname] = row
    if args.dsth_probe:
        out["dsth_probe"] = dsth_probe(adapter)
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


PROBE_EXTRA = ["the red circle moves to the left", "a blue square that grows", "the green triangle spins",
               "a small yellow ball rolls right", "the purple star bounces"]


def dsth_probe(adapter) -> dict:
    """The model's few-shot decompositions of the benchmark's and some synthetic-world queries."""
    from stvg_ros.dsth import Decomposer

    dec = Decomposer(adapter.generate_text, use_model=True)
    queries = QUERIES + PROBE_EXTRA
    t0 = time.perf_counter()
    accepted = sum(dec(q).source == "model" for q in queries)
    return {"queries": len(queries), "accepted": accepted, "s_per_query": (time.perf_counter() - t0) / len(queries)}


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.manual_seed(0)
    data = {"machine": machine(), "args": vars(args), "models": {}}
    rows = []
    for name in args.models.split(","):
        res = data["models"][name] = run_model(name, args)
        for cname, r in res.items():
            if cname in ("peak_rss_bytes", "dsth_probe"):
                continue
            c, u, s = r["cached"], r["uncached"], r["cache"]
            vis = s["by_kind"].get("visual", {"hits": 0, "misses": 0})
            pix = s["by_kind"].get("pixels", {"hits": 0, "misses": 0})
            rate = lambda d: d["hits"] / max(1, d["hits"] + d["misses"])  # noqa: E731
            rows.append([name, cname, f"{u['first_s']:.3f}", f"{u['later_median_s']:.3f}",
                         f"{c['first_s']:.3f}", f"{c['later_median_s']:.3f}", f"{c['later_over_first']:.2f}",
                         f"{r['later_cached_over_uncached']:.2f}",
                         f"{r['per_query_over_no_reuse']:.2f}" if "per_query_over_no_reuse" in r else "-",
                         f"{u['encode_later_median_s']:.3f} -> {c['encode_later_median_s']:.3f}",
                         f"{rate(pix):.0%}", f"{rate(vis):.0%}", f"{s['bytes'] / 2**20:.1f}",
                         f"{res['peak_rss_bytes'] / 2**20:.0f}", r["results_equal"]])
    print(table(["model", "config", "first (off)", "later (off)", "first (on)", "later (on)", "later/first (on)",
                 "later on/off", "reuse on/off", "encode later off->on", "pixel hits", "visual hits", "cache MiB", "peak RSS MiB",
                 "equal"], rows))
    path = args.json or str(ROOT / "bench" / "results" / f"feature-cache-{time.strftime('%Y%m%d-%H%M')}.json")
    write_json(path, data)
    for name, res in data["models"].items():
        if "dsth_probe" in res:
            p = res["dsth_probe"]
            print(f"DSTH by {name}: {p['accepted']} of {p['queries']} answers usable, {p['s_per_query']:.3f} s each")
    print(f"wrote {path}")
    return 0 if all(r["results_equal"] for m in data["models"].values() for k, r in m.items()
                    if k not in ("peak_rss_bytes", "dsth_probe")) else 1


if __name__ == "__main__":
    raise SystemExit(main())
