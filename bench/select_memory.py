#!/usr/bin/env python3
"""Choosing the memory's settings on VALIDATION streams (issue 33): segment length, the ranking score, top_k,
and which window around a top segment is grounded and which tube is returned.

Why a separate script: ``bench_memory.py`` measures the chosen method on test streams; this one records, on
streams of the generator's *val* split (seeds from ``--first-seed``, 100 by default: never the test streams'),
everything the candidate rules need, so that they are compared offline on the same passes:

1. per segment length ``--lengths`` (segments cut as :class:`~stvg_ros.memory.recall.MemoryRecall` cuts them),
   each segment's existence answer p(yes) for every query of the stream (one colour each: "the red shape")
   and for the neutral prompt ("the shape"), and which events it overlaps;
2. per event, the windows a second stage might ground around the top segments of several ranking rules (the
   segment, shifted by half a segment either way, and widened by half a segment either way), each grounded
   (vIoU against the event's tube, the grounding's p(yes)) and judged with the neutral prompt;
3. per event, its own window grounded directly (the oracle the tube is compared against).

``--analyse FILE`` then prints, for each rule, recall@1/@3 and the m_vIoU of the returned tube against the
oracle, with bootstrap intervals (queries resampled).  ``--rerank K`` records instead the signals for
re-ranking the K best segments (:func:`collect_rerank`), and ``--analyse-rerank FILES`` replays the re-ranking
rules on them offline.  Shipped model, CPU, one thread.

    nice env OMP_NUM_THREADS=1 .venv/bin/python bench/select_memory.py --minutes 60 --streams 4 --events 5
    .venv/bin/python bench/select_memory.py --analyse bench/results/memory-select-val.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_memory import overlaps, tube_score  # noqa: E402
from stvg_ros.adapters.default_model import shipped_model_dir  # noqa: E402
from stvg_ros.config import GroundingConfig  # noqa: E402
from stvg_ros.memory.recall import MemoryRecall  # noqa: E402
from stvg_ros.memory.store import MemoryStore  # noqa: E402
from stvg_ros.stack import load_model  # noqa: E402
from stvg_ros.stream.window import NS, Frame  # noqa: E402
from stvg_ros.synthetic.bench import bootstrap_ci  # noqa: E402
from stvg_ros.synthetic.stream import CLIP_FRAMES, make_stream  # noqa: E402

NEUTRAL = "the shape"


def logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def rank_scores(segs: list[dict], query: str) -> dict[str, list[float]]:
    """Every ranking rule's score of each segment (same order) for ``query`` (``colours``: against the stream's
    other queries, each another colour)."""
    others = [q for q in segs[0]["p"] if q not in (query, NEUTRAL)]
    out = {"p": [s["p"][query] for s in segs],
           "neutral": [logit(s["p"][query]) - logit(s["p"][NEUTRAL]) for s in segs],
           "colours": [logit(s["p"][query]) - statistics.mean(logit(s["p"][q]) for q in others) for s in segs],
           "colours_max": [logit(s["p"][query]) - max(logit(s["p"][q]) for q in others) for s in segs]}
    lg = [logit(s["p"][query]) for s in segs]
    out["neighbours"] = [lg[i] - 0.5 * (lg[max(i - 1, 0)] + lg[min(i + 1, len(lg) - 1)]) for i in range(len(lg))]
    return out


def stored_stream(seed: int, minutes: float, events: int, path: Path):
    """A val-split colour stream of ``minutes`` with ``events`` events, written whole to a memory store at ``path``."""
    stream = make_stream(seed, minutes * 60.0, events=events, kind="colour", split="val")
    store = MemoryStore(path, rate=stream.fps, window_s=10.0, chunk_seconds=30.0, hours=0, mb=0)
    for i, f in enumerate(stream.frames()):
        store.add(Frame(stream.stamp_ns(i), f, 1.0, f.shape[:2], "camera"))
    store.close()
    return stream, store


def collect_stream(grounder, seed: int, minutes: float, events: int, lengths, ground_length: float, tmp: Path,
                   top: int) -> dict:
    stream, store = stored_stream(seed, minutes, events, tmp / f"val-{seed}-{minutes}")
    grounder.feature_cache.clear()
    t0 = time.process_time()
    MemoryRecall(grounder, store, segment_s=10.0).prefetch()
    row = dict(seed=seed, minutes=minutes, prefetch_cpu_s=time.process_time() - t0, lengths={}, events=[])
    prompts = [e.query for e in stream.events] + [NEUTRAL]
    for length in lengths:
        recall = MemoryRecall(grounder, store, segment_s=length)
        segs = []
        t0 = time.process_time()
        for seg in recall.segments(0, 0):
            images, stamps = [f.image for f in seg.frames], [f.stamp for f in seg.frames]
            p = {q: grounder.existence(images, stamps, q, frame_keys=seg.keys) for q in prompts}
            segs.append(dict(start=seg.start_ns, end=seg.end_ns, p=p,
                             events=[k for k, e in enumerate(stream.events) if overlaps(seg.start_ns, seg.end_ns,
                                                                                       stream, e)]))
        row["lengths"][f"{length:g}"] = dict(segments=segs, cpu_s=time.process_time() - t0)
        print(f"#  seed {seed} length {length:g}: {len(segs)} segments, {time.process_time() - t0:.0f} s CPU",
              flush=True)
    frames = store.frames()
    by_ns = {f.stamp_ns: (i, f) for i, f in enumerate(frames)}
    stamps_ns = [f.stamp_ns for f in frames]

    def window(lo: int, hi: int):
        picked = [f for f in frames[_lo(stamps_ns, lo):_lo(stamps_ns, hi + 1)]]
        return picked

    cell = int(ground_length * NS)
    segs = row["lengths"][f"{ground_length:g}"]["segments"]
    for k, event in enumerate(stream.events):
        ev = dict(query=event.query, first=event.first, span=list(event.span), windows={})
        own = store.frames(stream.stamp_ns(event.first), stream.stamp_ns(event.first + CLIP_FRAMES - 1))
        direct = grounder.ground([f.image for f in own], [f.stamp for f in own], event.query,
                                 frame_keys=[store.key(f.stamp_ns) for f in own])
        ev["direct"] = tube_score(direct, stream, event)["viou"]
        wanted = set()
        for name, values in rank_scores(segs, event.query).items():
            order = sorted(range(len(segs)), key=lambda i: -values[i])[:top]
            for i in order:
                s = segs[i]
                half = cell // 2
                for lo, hi in ((s["start"], s["end"]), (s["start"] - half, s["end"] - half),
                               (s["start"] + half, s["end"] + half), (s["start"] - half, s["end"] + half)):
                    wanted.add((lo, hi))
        for lo, hi in sorted(wanted):
            fr = window(lo, hi)
            if len(fr) < 2:
                continue
            images, stamps, keys = [f.image for f in fr], [f.stamp for f in fr], [store.key(f.stamp_ns) for f in fr]
            r = grounder.ground(images, stamps, event.query, frame_keys=keys)
            pn = grounder.existence(images, stamps, NEUTRAL, frame_keys=keys)
            ev["windows"][f"{lo}:{hi}"] = dict(viou=tube_score(r, stream, event)["viou"], p=float(r.p_yes),
                                               p_neutral=pn, score=float(r.score), frames=len(fr),
                                               first=fr[0].stamp_ns, last=fr[-1].stamp_ns)
        row["events"].append(ev)
        print(f"#  seed {seed} event {k} ({event.query}): direct {ev['direct']:.3f}, {len(ev['windows'])} windows",
              flush=True)
    del by_ns
    return row


def _lo(stamps: list[int], t: int) -> int:
    import bisect
    return bisect.bisect_left(stamps, t)


# -- analysis --------------------------------------------------------------------------------------
def analyse(data: dict, top_ks=(1, 2, 3, 5)) -> None:
    rows = data["rows"]
    lengths = sorted(rows[0]["lengths"], key=float)
    print("## Ranking: recall@1 / recall@3 of a segment overlapping the event (all queries; where direct finds)")
    rules = list(rank_scores(rows[0]["lengths"][lengths[0]]["segments"][:3], rows[0]["events"][0]["query"]))
    for length in lengths:
        for rule in rules + ["max_halves"]:
            if rule == "max_halves" and f"{float(length) / 2:g}" not in rows[0]["lengths"]:
                continue
            r1, r3, r3f = [], [], []
            for row in rows:
                segs = row["lengths"][length]["segments"]
                for k, ev in enumerate(row["events"]):
                    values = _rule_values(row, length, rule, ev["query"])
                    order = sorted(range(len(segs)), key=lambda i: -values[i])
                    ranks = [n for n, i in enumerate(order) if k in segs[i]["events"]]
                    rank = ranks[0] if ranks else 10**6
                    r1.append(float(rank < 1))
                    r3.append(float(rank < 3))
                    if ev["direct"] > 0:
                        r3f.append(float(rank < 3))
            print(f"| {length} s | {rule} | {len(r1)} | {100 * statistics.mean(r1):.0f} | "
                  f"{100 * statistics.mean(r3):.0f} "
                  f"[{100 * bootstrap_ci(r3)[0]:.0f}, {100 * bootstrap_ci(r3)[1]:.0f}] | "
                  f"{100 * statistics.mean(r3f) if r3f else float('nan'):.0f} (n={len(r3f)}) |")


def analyse_tubes(data: dict, rules=("p", "neutral"), top_ks=(1, 2, 3)) -> None:
    """The second stage's rules on the grounded windows of ``--ground-length`` segments: which window around a
    top segment is grounded (``seg``: the segment; ``shift_p``/``shift_c``: the best of the segment and the two
    half-shifted windows by p(yes) / by the neutral contrast; ``widen``: the segment widened by half a segment
    either way) and which tube is returned (``p``: the highest grounding p(yes); ``c``: the highest neutral
    contrast of its window; ``rank``: the best-ranked segment's).  ``oracle``: the best vIoU among them."""
    rows = data["rows"]
    length = f"{data.get('args', {}).get('ground_length', 10.0):g}"
    print(f"## Tube: m_vIoU of the returned tube vs the event's own window grounded directly ({length} s segments)")
    print("| rank rule | top_k | window | choose | n | m_vIoU | direct | diff [95% CI] |")
    for rule in rules:
        for k in top_ks:
            for window in ("seg", "shift_p", "shift_c", "widen"):
                for choose in ("p", "c", "rank", "oracle"):
                    got, direct, missing = [], [], 0
                    for row in rows:
                        segs = row["lengths"][length]["segments"]
                        half = int(float(length) * NS) // 2
                        for ev in row["events"]:
                            values = rank_scores(segs, ev["query"])[rule]
                            order = sorted(range(len(segs)), key=lambda i: -values[i])[:k]
                            picks = []
                            for i in order:
                                s = segs[i]
                                cand = {"seg": [(s["start"], s["end"])],
                                        "shift_p": [(s["start"], s["end"]), (s["start"] - half, s["end"] - half),
                                                    (s["start"] + half, s["end"] + half)],
                                        "widen": [(s["start"] - half, s["end"] + half)]}
                                cand["shift_c"] = cand["shift_p"]
                                ws = [ev["windows"].get(f"{lo}:{hi}") for lo, hi in cand[window]]
                                ws = [w for w in ws if w is not None]
                                if not ws:
                                    missing += 1
                                    continue
                                key = (lambda w: w["p"]) if window != "shift_c" else \
                                    (lambda w: logit(w["p"]) - logit(w["p_neutral"]))
                                picks.append(max(ws, key=key))
                            if not picks:
                                got.append(0.0)
                            elif choose == "p":
                                got.append(max(picks, key=lambda w: w["p"])["viou"])
                            elif choose == "c":
                                got.append(max(picks, key=lambda w: logit(w["p"]) - logit(w["p_neutral"]))["viou"])
                            elif choose == "rank":
                                got.append(picks[0]["viou"])
                            else:
                                got.append(max(w["viou"] for w in picks))
                            direct.append(ev["direct"])
                    diff = [a - b for a, b in zip(got, direct)]
                    ci = bootstrap_ci(diff)
                    gone = f" ({missing} missing)" if missing else ""
                    print(f"| {rule} | {k} | {window} | {choose} | {len(got)}{gone} "
                          f"| {100 * statistics.mean(got):.1f} | {100 * statistics.mean(direct):.1f} | "
                          f"{100 * statistics.mean(diff):+.1f} [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}] |")


# -- re-ranking the top segments (issue 33's second round) -----------------------------------------
#: windows judged around a candidate segment, as (start, end) offsets in segments: the segment, shifted by a
#: quarter and a half either way, widened by half a segment either way (what the second stage grounds)
RERANK_WINDOWS = {"seg": (0.0, 0.0), "m50": (-0.5, -0.5), "m25": (-0.25, -0.25), "p25": (0.25, 0.25),
                  "p50": (0.5, 0.5), "wide": (-0.5, 0.5)}


def collect_rerank(grounder, seed: int, minutes: float, events: int, tmp: Path, depth: int,
                   segment_s: float = 10.0) -> dict:
    """Per event, every signal a re-ranking rule might use on the ``depth`` best segments by p(yes), recorded
    once so that rules are compared offline: p(yes) of the query and of the neutral prompt on each window of
    :data:`RERANK_WINDOWS` (built as :class:`MemoryRecall` builds its widened window), the full method on the
    widened window (its p(yes), track score and the runner-up's, temporal scores, vIoU), and which segment
    overlaps the event.  Windows are cut by ``MemoryRecall._around`` itself, so the rules replay exactly."""
    stream, store = stored_stream(seed, minutes, events, tmp / f"rerank-{seed}-{minutes}")
    grounder.feature_cache.clear()
    recall = MemoryRecall(grounder, store, segment_s=segment_s)
    t0 = time.process_time()
    recall.prefetch()
    row = dict(seed=seed, minutes=minutes, prefetch_cpu_s=time.process_time() - t0, events=[])
    cell = recall.segment_ns
    for k, event in enumerate(stream.events):
        t0 = time.process_time()
        ranked = recall.rank(event.query)
        t_rank = time.process_time() - t0
        order = sorted(range(len(ranked)), key=lambda i: -ranked[i][0])
        own = store.frames(stream.stamp_ns(event.first), stream.stamp_ns(event.first + CLIP_FRAMES - 1))
        direct = grounder.ground([f.image for f in own], [f.stamp for f in own], event.query,
                                 frame_keys=[store.key(f.stamp_ns) for f in own])
        ev = dict(query=event.query, first=event.first, span=list(event.span), rank_cpu_s=t_rank,
                  direct=tube_score(direct, stream, event)["viou"], segments=len(ranked),
                  event_ranks=[n for n, i in enumerate(order) if overlaps(ranked[i][1].start_ns, ranked[i][1].end_ns,
                                                                          stream, event)],
                  candidates=[])
        t0 = time.process_time()
        for n, i in enumerate(order[:depth]):
            seg = ranked[i][1]
            cand = dict(rank=n, start=seg.start_ns, end=seg.end_ns, p=ranked[i][0],
                        event=overlaps(seg.start_ns, seg.end_ns, stream, event), win={}, neutral={})
            for name, (lo, hi) in RERANK_WINDOWS.items():
                w = recall._around(ranked, i, int(lo * cell), int(hi * cell))
                if len(w.frames) < 2:
                    continue
                images, stamps = [f.image for f in w.frames], [f.stamp for f in w.frames]
                cand["win"][name] = grounder.existence(images, stamps, event.query, frame_keys=w.keys)
                cand["neutral"][name] = grounder.existence(images, stamps, NEUTRAL, frame_keys=w.keys)
                if name == "wide":
                    t1 = time.process_time()
                    r = grounder.ground(images, stamps, event.query, frame_keys=w.keys)
                    tracks = sorted(r.track_scores.values(), reverse=True)
                    fs = r.frame_scores or [0.0]
                    cand["ground"] = dict(p=float(r.p_yes), score=float(r.score),
                                          second=float(tracks[1]) if len(tracks) > 1 else 0.0,
                                          frame_max=float(max(fs)), frame_mean=float(statistics.mean(fs)),
                                          span_s=float(r.end - r.start), cpu_s=time.process_time() - t1,
                                          **tube_score(r, stream, event))
            ev["candidates"].append(cand)
        ev["candidates_cpu_s"] = time.process_time() - t0
        row["events"].append(ev)
        print(f"#  seed {seed} event {k} ({event.query}): direct {ev['direct']:.3f}, event ranks "
              f"{ev['event_ranks'][:3]}, {time.process_time() - t0:.0f} s CPU for {depth} candidates", flush=True)
    return row


def rerank_scores(cand: dict) -> dict[str, float]:
    """Every re-ranking rule's score of one candidate (higher = better); a rule missing a signal scores -inf."""
    w, nu, g = cand["win"], cand["neutral"], cand.get("ground", {})
    lg = {k: logit(v) for k, v in w.items()}
    shifts = [lg[k] for k in ("m50", "m25", "seg", "p25", "p50") if k in lg]
    best_pair = max((lg[a] + lg[b]) / 2 for a, b in (("m50", "m25"), ("m25", "seg"), ("seg", "p25"),
                                                    ("p25", "p50")) if a in lg and b in lg) if len(lg) > 1 else -1e9
    out = {"rank": logit(cand["p"]),
           "wide": lg.get("wide", -1e9),
           "rank+wide": logit(cand["p"]) + lg.get("wide", -1e9),
           "min(rank,wide)": min(logit(cand["p"]), lg.get("wide", -1e9)),
           "mean shifts": statistics.mean(shifts),
           "mean shifts+wide": statistics.mean(shifts + [lg.get("wide", -1e9)]),
           "median shifts": statistics.median(shifts),
           "best adjacent pair": best_pair,
           "max shifts": max(shifts),
           "wide - neutral": lg.get("wide", -1e9) - logit(nu.get("wide", 0.5)),
           "mean shifts - neutral": statistics.mean(lg[k] - logit(nu[k]) for k in lg if k in nu),
           "rank + neutral": logit(cand["p"]) + logit(nu.get("seg", 0.5)),
           }
    if g:
        out.update({"ground score": g["score"], "ground score gap": g["score"] - g["second"],
                    "ground frame max": g["frame_max"],
                    "rank+wide+score": logit(cand["p"]) + lg.get("wide", -1e9) + 4 * g["score"]})
    return out


def analyse_rerank(data: dict, depths=(3, 5, 8, 10)) -> None:
    """Recall@1/@3 of the re-ranked list (the top ``K`` segments by p(yes) re-ranked by a rule; the rest keep their
    order after them) and the m_vIoU of the widened grounding of the new first, against direct."""
    evs = [e for r in data["rows"] for e in r["events"]]
    rules = list(rerank_scores(evs[0]["candidates"][0]))
    print(f"## Re-ranking the top K segments (n = {len(evs)} queries; event found by direct: "
          f"{sum(e['direct'] > 0 for e in evs)})")
    print("| rule | K | recall@1 | recall@3 [95% CI] | recall@3 where direct finds | m_vIoU | direct | "
          "diff [95% CI] | vs rank, paired [95% CI] | groundings |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    base = None
    for rule in rules:
        for K in depths:
            if rule == "rank" and K != depths[0]:
                continue
            r1, r3, r3f, got, direct = [], [], [], [], []
            for e in evs:
                cands = e["candidates"]
                top = sorted(cands[:K], key=lambda c: -rerank_scores(c)[rule]) + cands[K:]
                hits = [n for n, c in enumerate(top) if c["event"]]
                rank = hits[0] if hits else (min(e["event_ranks"]) if e["event_ranks"] else 10**6)
                r1.append(float(rank < 1))
                r3.append(float(rank < 3))
                if e["direct"] > 0:
                    r3f.append(float(rank < 3))
                got.append(top[0].get("ground", {}).get("viou", 0.0))
                direct.append(e["direct"])
            diff = [a - b for a, b in zip(got, direct)]
            if base is None:
                base = got
            paired = [a - b for a, b in zip(got, base)]
            ci, pci, rci = bootstrap_ci(diff), bootstrap_ci(paired), bootstrap_ci(r3)
            needs = "wide" in rule or "ground" in rule or "score" in rule
            print(f"| {rule} | {K} | {100 * statistics.mean(r1):.0f} | {100 * statistics.mean(r3):.0f} "
                  f"[{100 * rci[0]:.0f}, {100 * rci[1]:.0f}] | {100 * statistics.mean(r3f):.0f} (n={len(r3f)}) | "
                  f"{100 * statistics.mean(got):.1f} | {100 * statistics.mean(direct):.1f} | "
                  f"{100 * statistics.mean(diff):+.1f} [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}] | "
                  f"{100 * statistics.mean(paired):+.1f} [{100 * pci[0]:+.1f}, {100 * pci[1]:+.1f}] | "
                  f"{K if 'ground' in rule or 'score' in rule else 3} |")


def _rule_values(row: dict, length: str, rule: str, query: str) -> list[float]:
    segs = row["lengths"][length]["segments"]
    if rule != "max_halves":
        return rank_scores(segs, query)[rule]
    half = row["lengths"][f"{float(length) / 2:g}"]["segments"]
    values = rank_scores(half, query)["neutral"]
    cell = int(float(length) * NS)
    best: dict[int, float] = {}
    for s, v in zip(half, values):
        c = s["start"] // cell
        best[c] = max(best.get(c, -1e9), v)
    return [best.get(s["start"] // cell, -1e9) for s in segs]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--events", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=100)
    ap.add_argument("--lengths", type=float, nargs="+", default=[5.0, 10.0, 20.0])
    ap.add_argument("--ground-length", type=float, default=10.0)
    ap.add_argument("--top", type=int, default=3, help="segments per rule whose windows are grounded")
    ap.add_argument("--cache-mb", type=float, default=1500.0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "memory-select-val.json"))
    ap.add_argument("--analyse", default="")
    ap.add_argument("--rerank", type=int, default=0, metavar="K",
                    help="record the re-ranking signals of the K best segments per query instead (see collect_rerank)")
    ap.add_argument("--analyse-rerank", default="", help="comma-separated --rerank JSON files to compare rules on")
    a = ap.parse_args(argv)
    if a.analyse:
        parts = [json.loads(Path(f).read_text()) for f in a.analyse.split(",")]
        data = dict(parts[0], rows=[r for d in parts for r in d["rows"]])
        analyse(data)
        analyse_tubes(data)
        return 0
    if a.analyse_rerank:
        files = a.analyse_rerank.split(",")
        analyse_rerank(dict(rows=[r for f in files for r in json.loads(Path(f).read_text())["rows"]]))
        return 0
    torch.set_num_threads(1)
    grounder = load_model(str(shipped_model_dir()), GroundingConfig(feature_cache_mb=a.cache_mb)).grounder
    rows = []
    out = Path(a.out)
    if a.rerank:
        with tempfile.TemporaryDirectory() as tmp:
            for s in range(a.streams):
                rows.append(collect_rerank(grounder, a.first_seed + s, a.minutes, a.events, Path(tmp), a.rerank))
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps({"args": vars(a), "rows": rows}))
        analyse_rerank({"rows": rows})
        print(f"results: {out}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        for s in range(a.streams):
            rows.append(collect_stream(grounder, a.first_seed + s, a.minutes, a.events, a.lengths, a.ground_length,
                                       Path(tmp), a.top))
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"args": vars(a), "rows": rows}))
    analyse({"rows": rows})
    analyse_tubes({"rows": rows, "args": vars(a)})
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
