#!/usr/bin/env python3
"""The memory (issue 33) on long synthetic streams: does a query over the past find the event, and what
does it cost against grounding every segment?

Per stream (``stvg_ros.synthetic.stream.make_stream``: distractor clips of the synthetic world at 2 Hz, with
``--events`` events of known tubes inserted at random frames, each query with one answer in the stream):

1. the stream goes through :class:`~stvg_ros.memory.store.MemoryStore` as the service feeds it (10 s
   window, 2 Hz keyframes, 30 s chunks): CPU time to write, disk per hour, the store's peak RAM;
2. a restart: the index rebuilt from the chunks on disk (seconds, wall clock: it is file reads);
3. idle work: :meth:`MemoryRecall.prefetch` encodes every remembered frame into the feature cache (the
   query-independent work), CPU time per hour of memory;
4. each event's query answered by :meth:`MemoryRecall.answer` (rank every segment, ground the best window
   around the top 3), warm (after the idle work) and cold (cache cleared; the first event of each stream):
   recall@1/@3 of a segment overlapping the event's tube, m_vIoU of the answer, and m_vIoU of grounding the
   event's own window directly (the oracle segment, same remembered pixels), with the paired difference;
5. cost per query (CPU seconds, model passes apart from reading/decoding the memory) against grounding
   every segment (segments x the mean CPU seconds of one grounding of a segment, measured in this run).

Queries: ``--kind colour`` ("the red shape": the world's colour rung, which the shipped model answers
well) and ``--kind full`` (size, colour, shape and action, whose existence answer the model has barely
learned; reported as the limitation it is).  Shipped model (models/stvg-synth-qwen), CPU, one thread.

``--colour-answers``: instead, each 10 s segment of each stream is asked "the <colour> shape" for the world's
6 colours, and the yes answers (p_yes > 0.5) are counted where the colour is in view and where it is not: the
model's colour false positives, which decide whether a distractor segment outranks the event.

Examples::

    nice env OMP_NUM_THREADS=1 .venv/bin/python bench/bench_memory.py --quick
    nice env OMP_NUM_THREADS=1 .venv/bin/python bench/bench_memory.py --minutes 10 60 --streams 3 --events 4
    nice env OMP_NUM_THREADS=1 .venv/bin/python bench/bench_memory.py --minutes 240 --streams 1 --events 2 --no-warm
    nice env OMP_NUM_THREADS=1 .venv/bin/python bench/bench_memory.py --colour-answers --minutes 4 --streams 8 \
        --first-seed 5 --events 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stvg_ros.config import GroundingConfig  # noqa: E402
from stvg_ros.adapters.default_model import shipped_model_dir  # noqa: E402
from stvg_ros.memory.recall import MemoryRecall  # noqa: E402
from stvg_ros.memory.store import MemoryStore  # noqa: E402
from stvg_ros.evaluation.metrics import score  # noqa: E402
from stvg_ros.synthetic.bench import bootstrap_ci  # noqa: E402
from stvg_ros.synthetic.stream import CLIP_FRAMES, make_stream  # noqa: E402
from stvg_ros.stream.window import NS, Frame  # noqa: E402
from stvg_ros.stack import load_model  # noqa: E402


def tube_score(result, stream, event) -> dict:
    """tIoU / vIoU of a result (boxes keyed by seconds) against the event's tube, in stream frame indices."""
    boxes = {stream.index(round(t * NS)): b for t, b in result.boxes.items()}
    span = (stream.index(round(result.start * NS)), stream.index(round(result.end * NS)))
    return score(boxes, event.boxes, span, event.span, inclusive=True)


def overlaps(a: int, b: int, stream, event) -> bool:
    return a <= stream.stamp_ns(event.span[1]) and b >= stream.stamp_ns(event.span[0])


def run_stream(grounder, seed: int, minutes: float, events: int, kind: str, warm: bool, tmp: Path,
               rules: dict, baseline: bool = False, cold: bool = True) -> dict:
    stream = make_stream(seed, minutes * 60.0, events=events, kind=kind)
    directory = tmp / f"mem-{kind}-{minutes}-{seed}"
    store = MemoryStore(directory, rate=stream.fps, window_s=10.0, chunk_seconds=30.0, hours=0, mb=0)
    t_gen = t_write = 0.0
    peak_ram = 0
    t0 = time.process_time()
    for i, f in enumerate(stream.frames()):
        t1 = time.process_time()
        t_gen += t1 - t0
        store.add(Frame(stream.stamp_ns(i), f, 1.0, f.shape[:2], "camera"))
        t0 = time.process_time()
        t_write += t0 - t1
        held = store.ram_bytes + sum(x.image.nbytes for x in store._waiting)
        peak_ram = max(peak_ram, held)
    store.close()
    hours = stream.num_frames / stream.fps / 3600.0
    disk = store.nbytes
    again = MemoryStore(directory, rate=stream.fps, window_s=10.0, chunk_seconds=30.0, hours=0, mb=0)
    assert again.stamps() == store.stamps(), "the rebuilt index differs"
    row = dict(seed=seed, minutes=minutes, kind=kind, frames=stream.num_frames, chunks=len(again.chunks),
               write_cpu_s=t_write, write_cpu_s_per_hour=t_write / hours, disk_mb=disk / 2**20,
               disk_mb_per_hour=disk / 2**20 / hours, store_peak_ram_mb=peak_ram / 2**20,
               rebuild_s=again.rebuild_s, events=[])
    recall = MemoryRecall(grounder, again, **rules)
    # the rules compared, paired (``--baseline``): before validation (p(yes) ranking, best of three shifted
    # windows, answer by p(yes)), or the previous defaults (widened windows, best-ranked, no re-ranking)
    before = MemoryRecall(grounder, again, segment_s=10.0, top_k=3, contrast="", window="shift", choose="p") \
        if baseline in (True, "before") else MemoryRecall(grounder, again, segment_s=10.0, top_k=3, contrast="",
                                                           window="widen", choose="rank", rerank_k=0)
    grounder.feature_cache.clear()
    if warm:
        t = time.process_time()
        row["prefetch_units"] = recall.prefetch()
        row["prefetch_cpu_s"] = time.process_time() - t
        row["prefetch_cpu_s_per_hour"] = row["prefetch_cpu_s"] / hours
        row["cache_mb"] = grounder.feature_cache.stats().bytes / 2**20
    for k, event in enumerate(stream.events):
        ev = {"query": event.query, "first": event.first, "span": list(event.span)}
        runs = (["cold"] if (k == 0 and cold) or not warm else []) + (["warm"] if warm else []) + \
            (["baseline"] if warm and baseline else [])
        for mode in runs:
            if mode == "cold":
                grounder.feature_cache.clear()
            t = time.process_time()
            found = (before if mode == "baseline" else recall).answer(event.query)
            total = time.process_time() - t
            if mode == "cold" and warm:
                recall.prefetch()  # back to warm for the next events
            order = found.order  # the final order, re-ranked head first
            ranks = [i for i, (a, b, _) in enumerate(order) if overlaps(a, b, stream, event)]
            ev[mode] = dict(cost=dict(found.cost, total=total), rank=ranks[0] if ranks else None,
                            score=tube_score(found.result, stream, event),
                            alternatives=[(stream.index(a.start_ns), stream.index(a.end_ns), a.score)
                                          for a in found.alternatives])
        # the oracle: the event's own window of remembered frames, grounded directly
        frames = again.frames(stream.stamp_ns(event.first), stream.stamp_ns(event.first + CLIP_FRAMES - 1))
        images, stamps = [f.image for f in frames], [f.stamp for f in frames]
        t = time.process_time()
        direct = grounder.ground(images, stamps, event.query)  # no frame keys: nothing cached (cold)
        ev["direct"] = dict(cpu_s=time.process_time() - t, score=tube_score(direct, stream, event))
        if warm:  # its frames' work cached by the idle prefetch, as every segment's would be
            t = time.process_time()
            grounder.ground(images, stamps, event.query, frame_keys=[again.key(f.stamp_ns) for f in frames])
            ev["direct"]["warm_cpu_s"] = time.process_time() - t
        ev["segments"] = len(found.ranking)
        row["events"].append(ev)
    return row


def colour_answers(grounder, seed: int, minutes: float, events: int, tmp: Path) -> dict:
    """Stream ``seed``'s segments asked "the <colour> shape" for every colour of the world: yes answers (p_yes >
    0.5) where the colour is in view in the segment (any of its frames) and where it is not, with the false
    ones listed (colour, first and last stream frame, p_yes)."""
    from stvg_ros.synthetic.generator import COLOURS

    stream = make_stream(seed, minutes * 60.0, events=events, kind="colour")
    store = MemoryStore(tmp / f"colours-{seed}", rate=stream.fps, window_s=10.0, chunk_seconds=30.0, hours=0, mb=0)
    in_view = []
    for i, (f, objects) in enumerate(stream.frames_with_objects()):
        store.add(Frame(stream.stamp_ns(i), f, 1.0, f.shape[:2], "camera"))
        in_view.append({o["colour"] for o in objects})
    store.close()
    recall = MemoryRecall(grounder, store, segment_s=10.0)
    out = dict(seed=seed, yes_present=0, present=0, yes_absent=0, absent=0, false=[])
    for colour in COLOURS:
        for p, seg in recall.rank(f"the {colour} shape"):
            a, b = stream.index(seg.start_ns), stream.index(seg.end_ns)
            here = any(colour in in_view[k] for k in range(a, min(b, len(in_view) - 1) + 1))
            key = "present" if here else "absent"
            out[key] += 1
            out[f"yes_{key}"] += int(p > 0.5)
            if p > 0.5 and not here:
                out["false"].append((colour, a, b, round(float(p), 3)))
    return out


def summarize(rows: list[dict], mode: str) -> dict:
    evs = [e for r in rows for e in r["events"] if mode in e]
    if not evs:
        return {}
    ranks = [e[mode]["rank"] for e in evs]
    r1 = [float(x is not None and x < 1) for x in ranks]
    r3 = [float(x is not None and x < 3) for x in ranks]
    viou = [e[mode]["score"]["viou"] for e in evs]
    direct = [e["direct"]["score"]["viou"] for e in evs]
    diff = [a - b for a, b in zip(viou, direct)]
    ground_cost = statistics.mean([e["direct"]["warm_cpu_s" if mode in ("warm", "baseline") else "cpu_s"]
                                   for r in rows for e in r["events"]])
    every = [e["segments"] * ground_cost for e in evs]
    totals = [e[mode]["cost"]["total"] for e in evs]
    model = [e[mode]["cost"]["rank"] + e[mode]["cost"].get("rerank", 0.0) + e[mode]["cost"]["shift"] +
             e[mode]["cost"]["ground"] for e in evs]
    read = [e[mode]["cost"]["read"] for e in evs]
    found_direct = [e for e in evs if e["direct"]["score"]["viou"] > 0]
    return dict(
        queries=len(evs), segments=statistics.mean(e["segments"] for e in evs),
        recall1=statistics.mean(r1), recall1_ci=bootstrap_ci(r1), recall3=statistics.mean(r3),
        recall3_ci=bootstrap_ci(r3),
        recall3_where_direct_finds=statistics.mean(float(e[mode]["rank"] is not None and e[mode]["rank"] < 3)
                                                   for e in found_direct) if found_direct else None,
        m_viou=statistics.mean(viou), m_viou_ci=bootstrap_ci(viou), m_viou_direct=statistics.mean(direct),
        m_viou_direct_ci=bootstrap_ci(direct), viou_diff=statistics.mean(diff), viou_diff_ci=bootstrap_ci(diff),
        cpu_per_query=statistics.mean(totals), model_cpu_per_query=statistics.mean(model),
        read_cpu_per_query=statistics.mean(read), ground_one_segment=ground_cost,
        every_segment_cpu=statistics.mean(every),
        cost_ratio=statistics.mean(t / e for t, e in zip(totals, every)),
        **_versus_baseline(evs, mode))


def _versus_baseline(evs: list[dict], mode: str) -> dict:
    """The paired differences against the ``--baseline`` rules, same queries."""
    pairs = [e for e in evs if mode == "warm" and "baseline" in e]
    if not pairs:
        return {}
    dv = [e["warm"]["score"]["viou"] - e["baseline"]["score"]["viou"] for e in pairs]
    r3 = [float(e["warm"]["rank"] is not None and e["warm"]["rank"] < 3) -
          float(e["baseline"]["rank"] is not None and e["baseline"]["rank"] < 3) for e in pairs]
    r1 = [float(e["warm"]["rank"] == 0) - float(e["baseline"]["rank"] == 0) for e in pairs]
    return dict(viou_vs_baseline=statistics.mean(dv), viou_vs_baseline_ci=bootstrap_ci(dv),
                recall1_vs_baseline=statistics.mean(r1), recall1_vs_baseline_ci=bootstrap_ci(r1),
                recall3_vs_baseline=statistics.mean(r3), recall3_vs_baseline_ci=bootstrap_ci(r3))


def markdown(summary: dict) -> str:
    lines = ["| stream | kind | mode | queries | segments | recall@1 | recall@3 | m_vIoU | m_vIoU direct | "
             "diff [95% CI] | CPU s/query (model + read) | every segment CPU s | ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, s in summary.items():
        minutes, kind, mode = key.split("|")
        if not s:
            continue
        lines.append(
            f"| {minutes} min | {kind} | {mode} | {s['queries']} | {s['segments']:.0f} | {100 * s['recall1']:.0f} "
            f"[{100 * s['recall1_ci'][0]:.0f}, {100 * s['recall1_ci'][1]:.0f}] | {100 * s['recall3']:.0f} "
            f"[{100 * s['recall3_ci'][0]:.0f}, {100 * s['recall3_ci'][1]:.0f}] | {100 * s['m_viou']:.1f} | "
            f"{100 * s['m_viou_direct']:.1f} | {100 * s['viou_diff']:+.1f} [{100 * s['viou_diff_ci'][0]:+.1f}, "
            f"{100 * s['viou_diff_ci'][1]:+.1f}] | {s['cpu_per_query']:.2f} ({s['model_cpu_per_query']:.2f} + "
            f"{s['read_cpu_per_query']:.2f}) | {s['every_segment_cpu']:.1f} | {s['cost_ratio']:.3f} |")
    return "\n".join(lines)


def storage_markdown(rows: list[dict]) -> str:
    lines = ["| stream | kind | frames | chunks | disk MB/h | write CPU s/h | store peak RAM MB | rebuild s | "
             "idle prefetch CPU s/h | feature cache MB |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pre = f"{r['prefetch_cpu_s_per_hour']:.1f}" if "prefetch_cpu_s_per_hour" in r else "-"
        cache = f"{r['cache_mb']:.0f}" if "cache_mb" in r else "-"
        lines.append(f"| {r['minutes']:g} min #{r['seed']} | {r['kind']} | {r['frames']} | {r['chunks']} | "
                     f"{r['disk_mb_per_hour']:.1f} | {r['write_cpu_s_per_hour']:.1f} | {r['store_peak_ram_mb']:.2f} | "
                     f"{r['rebuild_s']:.3f} | {pre} | {cache} |")
    return "\n".join(lines)


def print_summary(summary: dict, baseline: str) -> None:
    """The summary table, then each row's paired differences against the ``baseline`` rules (same queries)."""
    print(markdown(summary))
    for key, s in summary.items():
        if s and "viou_vs_baseline" in s:
            print(f"{key}: vs the {baseline} rules, same queries: m_vIoU {100 * s['viou_vs_baseline']:+.1f} "
                  f"[{100 * s['viou_vs_baseline_ci'][0]:+.1f}, {100 * s['viou_vs_baseline_ci'][1]:+.1f}], recall@3 "
                  f"{100 * s['recall3_vs_baseline']:+.0f} [{100 * s['recall3_vs_baseline_ci'][0]:+.0f}, "
                  f"{100 * s['recall3_vs_baseline_ci'][1]:+.0f}], recall@1 {100 * s['recall1_vs_baseline']:+.0f} "
                  f"[{100 * s['recall1_vs_baseline_ci'][0]:+.0f}, {100 * s['recall1_vs_baseline_ci'][1]:+.0f}] points")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, nargs="+", default=[10.0, 60.0])
    ap.add_argument("--streams", type=int, default=3)
    ap.add_argument("--events", type=int, default=4)
    ap.add_argument("--kind", nargs="+", default=["colour"], choices=["colour", "full", "look"])
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--no-warm", action="store_true", help="skip the idle prefetch (cold queries only)")
    ap.add_argument("--no-cold", action="store_true", help="warm queries only (no cold first query per stream)")
    ap.add_argument("--cache-mb", type=float, default=1024.0, help="the grounder's feature_cache_mb")
    ap.add_argument("--model", default="", help="model directory (default: the shipped model)")
    ap.add_argument("--quick", action="store_true", help="one 5-minute stream, 2 events (seconds)")
    ap.add_argument("--segment-s", type=float, default=None, help="segment length (default: the service's)")
    ap.add_argument("--top-k", type=int, default=None, help="segments grounded (default: the service's)")
    ap.add_argument("--contrast", default=None, help="neutral query of the ranking score ('' = p(yes))")
    ap.add_argument("--window", default=None, choices=["shift", "widen"])
    ap.add_argument("--choose", default=None, choices=["p", "contrast", "rank"])
    ap.add_argument("--baseline", nargs="?", const="before", default="", choices=["before", "previous"],
                    help="also answer each warm query with other rules (paired differences): 'before' validation "
                         "(the default when given alone) or the 'previous' defaults (no re-ranking)")
    ap.add_argument("--rerank-k", type=int, default=None, help="segments re-ranked (default: the service's)")
    ap.add_argument("--rerank-windows", type=float, nargs="+", default=None,
                    help="re-ranking windows as lo hi pairs in segments (default: the service's)")
    ap.add_argument("--colour-answers", action="store_true",
                    help="only count the model's yes answers to 'the <colour> shape' on every segment, where the "
                         "colour is in view and where it is not (the first of --minutes; --streams from --first-seed)")
    ap.add_argument("--json", "--out", dest="out", default="",
                    help="JSON results (default bench/results/memory-<time>.json)")
    ap.add_argument("--summarize", default="", help="comma-separated result JSON files (finished or .partial.json): "
                                                    "print their tables together, run nothing")
    a = ap.parse_args(argv)
    if a.summarize:
        rows = [r for f in a.summarize.split(",") for r in json.loads(Path(f).read_text())["rows"]]
        print(storage_markdown(rows) + "\n")
        summary = {}
        for minutes, kind in sorted({(r["minutes"], r["kind"]) for r in rows}):
            group = [r for r in rows if (r["minutes"], r["kind"]) == (minutes, kind)]
            for mode in ("cold", "warm", "baseline"):
                summary[f"{minutes:g}|{kind}|{mode}"] = summarize(group, mode)
        print_summary(summary, "baseline")
        return 0
    if a.quick:
        a.minutes, a.streams, a.events = [5.0], 1, 2
    torch.set_num_threads(1)
    model = a.model or shipped_model_dir()
    if model is None:
        print("bench_memory: the shipped model models/stvg-synth-qwen is missing (or give --model)", file=sys.stderr)
        return 2
    grounder = load_model(str(model), GroundingConfig(feature_cache_mb=a.cache_mb)).grounder
    windows = None if a.rerank_windows is None else list(zip(a.rerank_windows[::2], a.rerank_windows[1::2]))
    rules = {k: v for k, v in dict(segment_s=a.segment_s, top_k=a.top_k, contrast=a.contrast, window=a.window,
                                   choose=a.choose, rerank_k=a.rerank_k, rerank_windows=windows).items()
             if v is not None}
    if a.colour_answers:
        with tempfile.TemporaryDirectory() as tmp:
            rows = []
            for seed in range(a.first_seed, a.first_seed + a.streams):
                rows.append(colour_answers(grounder, seed, a.minutes[0], a.events, Path(tmp)))
                r = rows[-1]
                print(f"# seed {seed}: yes where the colour is in view {r['yes_present']}/{r['present']}, where it "
                      f"is not {r['yes_absent']}/{r['absent']} {r['false'][:6]}", flush=True)
        total = {k: sum(r[k] for r in rows) for k in ("yes_present", "present", "yes_absent", "absent")}
        print(f"\n| model | yes where the colour is not in view | yes where it is |\n|---|---|---|\n| {model} | "
              f"{total['yes_absent']} / {total['absent']} ({100 * total['yes_absent'] / max(1, total['absent']):.1f} %)"
              f" | {total['yes_present']} / {total['present']} |")
        if a.out:
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            Path(a.out).write_text(json.dumps({"args": vars(a), "model": str(model), "total": total, "rows": rows},
                                              indent=1, default=str))
        return 0
    rows, summary = [], {}
    t_all = time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        for kind in a.kind:
            for minutes in a.minutes:
                group = []
                for s in range(a.streams):
                    row = run_stream(grounder, a.first_seed + s, minutes, a.events, kind, not a.no_warm, Path(tmp),
                                     rules, a.baseline, not a.no_cold)
                    group.append(row)
                    partial = Path(a.out).with_suffix(".partial.json") if a.out else None
                    if partial is not None:  # a long run stopped early keeps its finished streams
                        partial.parent.mkdir(parents=True, exist_ok=True)
                        partial.write_text(json.dumps({"args": vars(a), "rows": rows + group}, default=str))
                    print(f"# {minutes:g} min {kind} stream {s}: ranks "
                          f"{[e.get('warm', e.get('cold'))['rank'] for e in row['events']]}", flush=True)
                rows += group
                for mode in ("cold", "warm", "baseline"):
                    summary[f"{minutes:g}|{kind}|{mode}"] = summarize(group, mode)
    print(storage_markdown(rows))
    print()
    print_summary(summary, a.baseline)
    shown = {k: getattr(MemoryRecall(grounder, None, **rules), k) for k in ("segment_ns", "top_k", "contrast", "window",
                                                                             "choose", "rerank_k", "rerank_windows")}
    print(f"\nrules {shown}; total CPU {time.process_time() - t_all:.0f} s; model {model}; torch threads 1")
    out = Path(a.out) if a.out else ROOT / "bench" / "results" / f"memory-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(a), "rules": shown, "summary": summary, "rows": rows}, indent=1,
                              default=str))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
