"""Proposal-free boxes on real video: box IoU from relevance peaks planted on hand-boxed objects.

For every annotated object of the real clips (``test/data/real/annotations.json``, or ``--annotations``
with ``--videos``: any clip set in that format), a relevance peak is planted on the token grid that a
family's geometry lays over the frame (baseline 1, a Gaussian bump of height 4 with a standard deviation of
a quarter of the object's size, averaged over each cell as a token pools its patch), centred on the object
or 25 % of its size off-centre (right and down), and the box stage (:func:`stvg_ros.grounding.regions.frame_candidates`,
one seed, cold cuts) makes a box from it.  Printed per geometry and box method: the grid, the visual tokens of
a 20-frame clip, the mean box IoU (centred / off-centre, per clip), the share >= 0.5, the boxes that kept a
*part* of the object (IoU < 0.5, the box at most 60 % of the object's area and 80 % of it inside the
object: one garment of a person), and the CPU milliseconds per box.

    OMP_NUM_THREADS=1 python bench/bench_real_boxes.py [--geometries qwen-224 qwen-processor ...]
        [--methods cells flood grabcut auto] [--json bench/results/real-boxes.json] [--compare A B ...]
    OMP_NUM_THREADS=1 python bench/bench_real_boxes.py --select   # the select stage's CPU per 20-frame query
    OMP_NUM_THREADS=1 python bench/bench_real_boxes.py --overlap  # the box stage's share of the critical path
    OMP_NUM_THREADS=1 python bench/bench_real_boxes.py --tracks   # the select stage on every annotated object's track

Geometries (``--geometries``; the default: all): ``qwen-<side>`` Qwen2.5-VL/Qwen2-VL with ``frame_resize:
fixed`` and ``image_size: <side>`` (224 is the family's default), ``qwen-processor`` (the released video
processor's pixel limits), ``qwen-fine`` (``frame_resize: fine``), ``nextvideo-model`` / ``nextvideo-paper``
(LLaVA-NeXT-Video 12x12 / 6x6), ``onevision-model`` / ``onevision-paper`` (LLaVA-OneVision 14x14 / 6x6),
``nextvideo-fine`` / ``onevision-fine`` (``frame_resize: fine``, 2x2 tiles: 24x24 / 28x28) and
``nextvideo-paper-fine`` / ``onevision-paper-fine`` (the official pooling, tiled: 12x12); ``square-<n>``: any
n x n grid per frame (which grid a person needs, whatever the family).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_ANNOTATIONS = ROOT / "test" / "data" / "real" / "annotations.json"
#: placements of the planted peak: offset of its centre as a fraction of the object's width and height
PLACEMENTS = {"centred": (0.0, 0.0), "off-centre": (0.25, 0.25)}
FRAMES = 20  # frames per clip, to state the token cost of a query


def geometry(name: str, height: int, width: int) -> tuple[tuple[int, int], int]:
    """``((rows, cols), visual tokens of a FRAMES-frame clip)`` of a named geometry on a frame of that size."""
    from stvg_ros.adapters.qwen import qwen_frame_size, QWEN_VIDEO_PIXELS

    if name.startswith("qwen-"):
        how = name.split("-", 1)[1]
        resize, side = (how, 224) if not how.isdigit() else ("fixed", int(how))
        h, w = qwen_frame_size(height, width, resize, side, QWEN_VIDEO_PIXELS)
        rows, cols = h // 28, w // 28
        return (rows, cols), rows * cols * FRAMES // 2  # one slot (2 frames) per grid of tokens
    from stvg_ros.adapters.llava import llava_tiles

    if name.startswith("square-"):  # a hypothetical n x n grid per frame (a per-frame family's layout)
        side = int(name.split("-", 1)[1])
        return (side, side), side * side * FRAMES
    family, tokens, *fine = name.split("-")
    if tokens == "fine":  # '<family>-fine': the model's tokens, tiled
        tokens, fine = "model", ["fine"]
    side = {("nextvideo", "model"): 12, ("nextvideo", "paper"): 6, ("onevision", "model"): 14,
            ("onevision", "paper"): 6}[(family, tokens)] * llava_tiles("fine" if fine else "fixed")
    return (side, side), side * side * FRAMES + (1 if family == "onevision" else 0)


def planted_grid(box, grid: tuple[int, int], size: tuple[int, int], offset=(0.0, 0.0), spread: float = 0.25,
                 samples: int = 6) -> np.ndarray:
    """The token-grid map of a peak planted on ``box`` (pixels of a ``size`` = (H, W) frame): baseline 1 plus a
    Gaussian of height 4, sd ``spread`` x the object's size, centre moved by ``offset`` x its size, each cell
    the mean over ``samples``² points of its area (a token pools its patch)."""
    rows, cols = grid
    H, W = size
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2 + offset[0] * bw, (y0 + y1) / 2 + offset[1] * bh
    sx, sy = max(spread * bw, 1.0), max(spread * bh, 1.0)
    xs = (np.arange(cols * samples) + 0.5) * W / (cols * samples)
    ys = (np.arange(rows * samples) + 0.5) * H / (rows * samples)
    g = np.exp(-0.5 * (((xs[None] - cx) / sx) ** 2 + ((ys[:, None] - cy) / sy) ** 2))
    g = g.reshape(rows, samples, cols, samples).mean(axis=(1, 3))
    return (1.0 + 4.0 * g).astype(np.float32)


def box_from_peak(image: np.ndarray, grid_map: np.ndarray, method: str):
    """The box the proposal-free stage makes from one planted peak (one seed, cold cuts), and its CPU seconds."""
    from stvg_ros.config import GroundingConfig
    from stvg_ros.grounding.regions import frame_candidates
    from stvg_ros.grounding.relevance import upsample_maps

    cfg = GroundingConfig()
    H, W = image.shape[:2]
    content = (0.0, 0.0, float(W), float(H))
    c = time.process_time()
    full, _ = upsample_maps(grid_map[None], content, (H, W), max_side=None)
    cands = frame_candidates(image, grid_map, full[0], grid_map.shape, content, method, 1, 0.3, cfg.box_threshold,
                             iterations=cfg.box_grabcut_iterations)
    return (cands[0][0] if cands else None), time.process_time() - c


def is_part(box, truth, iou: float) -> bool:
    """A box that kept a part of the object (one garment of a person): small, inside it, IoU < 0.5."""
    if box is None or iou >= 0.5:
        return False
    area = (box[2] - box[0]) * (box[3] - box[1])
    inside = (max(0.0, min(box[2], truth[2]) - max(box[0], truth[0]))
              * max(0.0, min(box[3], truth[3]) - max(box[1], truth[1])))
    return area <= 0.6 * (truth[2] - truth[0]) * (truth[3] - truth[1]) and inside >= 0.8 * area


def load_frames(annotations, videos=None):
    """``[(clip name, frame index, RGB frame, [AnnotatedBox])]`` of every annotated frame (one pass per video)."""
    from stvg_ros.proposals.annotated import iter_frames, load_annotations

    out = []
    for clip in load_annotations(annotations, videos):
        wanted = set(clip.frames)
        for i, frame in iter_frames(clip.path, stop=max(wanted) + 1):
            if i in wanted:
                out.append((clip.name, i, frame, clip.boxes[i]))
    return out


def measure(frames, geometries, methods, placements=PLACEMENTS) -> list[dict]:
    """One row per (geometry, method): IoUs per placement and clip, part boxes, CPU per box."""
    from stvg_ros.boxes import box_iou

    rows = []
    for geo in geometries:
        for method in methods:
            ious, parts, cpu, per_clip = defaultdict(list), defaultdict(int), [], defaultdict(list)
            objects = []  # (clip, placement) per IoU, in ious' order: --compare pairs geometries object by object
            grid_seen, tokens_seen = set(), set()
            for clip, _, image, boxes in frames:
                H, W = image.shape[:2]
                grid, tokens = geometry(geo, H, W)
                grid_seen.add(f"{clip.split('.')[0]} {grid[1]}x{grid[0]}")
                tokens_seen.add(f"{clip.split('.')[0]} {tokens}")
                for b in boxes:
                    for place, off in placements.items():
                        got, t = box_from_peak(image, planted_grid(b.box, grid, (H, W), off), method)
                        v = box_iou(got, b.box) if got is not None else 0.0
                        ious[place].append(v)
                        per_clip[(clip, place)].append(v)
                        objects.append((clip, place))
                        parts[place] += is_part(got, b.box, v)
                        cpu.append(t)
            row = {"geometry": geo, "method": method, "grid": ", ".join(sorted(grid_seen)),
                   "tokens_per_20_frames": ", ".join(sorted(tokens_seen)),
                   "ms_per_box": 1000 * float(np.mean(cpu)), "boxes": len(cpu)}
            for place in placements:
                a = np.array(ious[place])
                row[f"iou_{place}"] = float(a.mean())
                row[f"hit_{place}"] = float((a >= 0.5).mean())
                row[f"parts_{place}"] = int(parts[place])
                row[f"n_{place}"] = len(a)
            row["per_clip"] = {f"{c} {p}": float(np.mean(v)) for (c, p), v in sorted(per_clip.items())}
            row["ious"] = {place: [float(v) for v in ious[place]] for place in placements}
            row["clips"] = [c for c, p in objects if p == next(iter(placements))]
            rows.append(row)
    return rows


def table(rows) -> str:
    clips = sorted({k.rsplit(" ", 1)[0] for r in rows for k in r["per_clip"]})
    head = ("| geometry | grid (cols x rows) | visual tokens / 20 frames | method | mean IoU centred | off-centre | "
            "IoU >= 0.5 | part boxes | " + " | ".join(f"{c} (c / off)" for c in clips) + " | CPU ms / box |")
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        per = " | ".join(f"{r['per_clip'].get(c + ' centred', float('nan')):.2f} / "
                         f"{r['per_clip'].get(c + ' off-centre', float('nan')):.2f}" for c in clips)
        out.append(f"| {r['geometry']} | {r['grid']} | {r['tokens_per_20_frames']} | {r['method']} | "
                   f"{r['iou_centred']:.3f} | {r['iou_off-centre']:.3f} | "
                   f"{r['hit_centred']:.2f} / {r['hit_off-centre']:.2f} | "
                   f"{r['parts_centred']} / {r['parts_off-centre']} of {r['n_centred']} | {per} | "
                   f"{r['ms_per_box']:.1f} |")
    return "\n".join(out)


def compare(rows, pairs) -> str:
    """Paired differences of box IoU, geometry B − A, object by object (the same method), with 95 % percentile
    bootstrap intervals over the objects: all of them and per clip, per placement."""
    from stvg_ros.synthetic.bench import bootstrap_ci

    by = {(r["geometry"], r["method"]): r for r in rows}
    out = ["| A → B | method | objects | placement | A | B | B − A [95 % CI] |", "|---|---|---|---|---|---|---|"]
    for a, b in pairs:
        for method in sorted({m for g, m in by if g == a}):
            ra, rb = by[(a, method)], by[(b, method)]
            clips = np.array(ra["clips"])
            for subset in ["all"] + sorted(set(clips)):
                keep = np.ones(len(clips), bool) if subset == "all" else clips == subset
                for place in ra["ious"]:
                    va, vb = np.array(ra["ious"][place])[keep], np.array(rb["ious"][place])[keep]
                    lo, hi = bootstrap_ci(vb - va)
                    out.append(f"| {a} → {b} | {method} | {subset} ({int(keep.sum())}) | {place} | {va.mean():.3f} | "
                               f"{vb.mean():.3f} | {float((vb - va).mean()):+.3f} [{lo:+.3f}, {hi:+.3f}] |")
    return "\n".join(out)


def select_cost(geometries, methods, annotations=DEFAULT_ANNOTATIONS, clip_name="cup.mp4", frames: int = FRAMES,
                repeats: int = 3) -> list[dict]:
    """CPU seconds of the select stage's proposal-free path as a query runs it (:func:`stvg_ros.grounding.spatial.choose_track`:
    ``box_seeds`` seeds per frame, GrabCut chains, the tracker, the scoring) on ``frames`` frames sampled
    uniformly over the clip's annotated span, a peak planted on the object (its box interpolated between the
    annotated frames), in the calling thread (one core); best of ``repeats``."""
    from stvg_ros.grounding import spatial
    from stvg_ros.config import GroundingConfig
    from stvg_ros.proposals.annotated import iter_frames, load_annotations

    clip = next(c for c in load_annotations(annotations) if c.name == clip_name)
    marks = clip.frames
    idx = np.linspace(marks[0], marks[-1], frames).round().astype(int)
    images = {i: f for i, f in iter_frames(clip.path, stop=int(idx[-1]) + 1) if i in set(idx)}
    ids = clip.ids()[0]
    boxes = {f: next(b.box for b in clip.boxes[f] if b.id == ids) for f in marks}
    truth = [tuple(float(np.interp(i, marks, [boxes[f][k] for f in marks])) for k in range(4)) for i in idx]
    cfg = GroundingConfig()
    rows = []
    spatial.SEGMENT_THREADS, threads = 1, spatial.SEGMENT_THREADS
    try:
        for geo in geometries:
            H, W = images[idx[0]].shape[:2]
            grid, tokens = geometry(geo, H, W)
            maps = np.stack([planted_grid(b, grid, (H, W)) for b in truth])
            for method in methods:
                best = float("inf")
                for _ in range(repeats):
                    c = time.process_time()
                    track, *_ = spatial.choose_track(maps, grid, (0.0, 0.0, float(W), float(H)), (H, W),
                                                     list(range(frames)), None, cfg.box_threshold, 1e-3,
                                                     frames=[images[i] for i in idx], box_method=method,
                                                     box_seeds=cfg.box_seeds, box_iterations=cfg.box_grabcut_iterations,
                                                     box_chain=cfg.box_grabcut_chain)
                    best = min(best, time.process_time() - c)
                from stvg_ros.boxes import box_iou

                iou = float(np.mean([box_iou(b, t) if b is not None else 0.0 for b, t in zip(track.boxes, truth)]))
                rows.append({"geometry": geo, "method": method, "grid": f"{grid[1]}x{grid[0]}",
                             "select_ms": 1000 * best, "mean_iou": iou})
    finally:
        spatial.SEGMENT_THREADS = threads
    return rows


def track_cases(annotations=DEFAULT_ANNOTATIONS, frames: int = FRAMES, min_marks: int = 5):
    """``[(clip, object id, sampled RGB frames, true boxes)]``: for every object annotated on at least ``min_marks``
    frames, ``frames`` frames sampled uniformly over its annotated span, its box interpolated between the
    annotated frames (one decoding pass per clip)."""
    from stvg_ros.proposals.annotated import iter_frames, load_annotations

    out = []
    for clip in load_annotations(annotations):
        spans = {}
        for oid in clip.ids():
            marks = [f for f in clip.frames if any(b.id == oid for b in clip.boxes[f])]
            if len(marks) >= min_marks:
                spans[oid] = (marks, np.linspace(marks[0], marks[-1], frames).round().astype(int))
        if not spans:
            continue
        wanted = {int(i) for _, idx in spans.values() for i in idx}
        images = {i: f for i, f in iter_frames(clip.path, stop=max(wanted) + 1) if i in wanted}
        for oid, (marks, idx) in spans.items():
            boxes = {f: next(b.box for b in clip.boxes[f] if b.id == oid) for f in marks}
            truth = [tuple(float(np.interp(i, marks, [boxes[f][k] for f in marks])) for k in range(4)) for i in idx]
            out.append((clip.name, oid, [images[int(i)] for i in idx], truth))
    return out


def select_quality(geometries, methods, cases, placements=PLACEMENTS, chain=None) -> list[dict]:
    """The select stage's proposal-free path (:func:`stvg_ros.grounding.spatial.choose_track`, the config's seeds,
    iterations and chains unless ``chain``) on every case of :func:`track_cases`, a peak planted on the object in
    every frame (centred / off-centre): per geometry and method the chosen track's mean IoU over the cases' frames
    (per placement, and per clip), its share of frames >= 0.5, the mean over frames of the best IoU among all the
    candidate tracks' boxes there (the segmentation's quality apart from the track choice), and the CPU ms per query
    (one core)."""
    from stvg_ros.boxes import box_iou
    from stvg_ros.config import GroundingConfig
    from stvg_ros.grounding import spatial

    cfg = GroundingConfig()
    rows = []
    spatial.SEGMENT_THREADS, threads = 1, spatial.SEGMENT_THREADS
    try:
        for geo in geometries:
            for method in methods:
                ious, per_clip, cpu, best = defaultdict(list), defaultdict(list), [], defaultdict(list)
                for clip, oid, images, truth in cases:
                    H, W = images[0].shape[:2]
                    grid, _ = geometry(geo, H, W)
                    for place, off in placements.items():
                        maps = np.stack([planted_grid(b, grid, (H, W), off) for b in truth])
                        c = time.process_time()
                        track, tracks, *_ = spatial.choose_track(
                            maps, grid, (0.0, 0.0, float(W), float(H)), (H, W), list(range(len(images))), None,
                            cfg.box_threshold, 1e-3, frames=images, box_method=method, box_seeds=cfg.box_seeds,
                            box_iterations=cfg.box_grabcut_iterations,
                            box_chain=cfg.box_grabcut_chain if chain is None else chain)
                        cpu.append(time.process_time() - c)
                        v = [box_iou(b, t) if b is not None else 0.0 for b, t in zip(track.boxes, truth)]
                        ious[place] += v
                        per_clip[(clip, place)] += v
                        best[place] += [max([box_iou(t.boxes[i], b) for t in tracks if t.boxes[i] is not None],
                                            default=0.0) for i, b in enumerate(truth)]
                row = {"geometry": geo, "method": method, "cases": len(cases), "ms_per_query": 1000 * float(np.mean(cpu))}
                for place in placements:
                    a = np.array(ious[place])
                    row[f"iou_{place}"], row[f"hit_{place}"] = float(a.mean()), float((a >= 0.5).mean())
                    row[f"best_box_{place}"] = float(np.mean(best[place]))
                row["per_clip"] = {f"{c} {p}": float(np.mean(v)) for (c, p), v in sorted(per_clip.items())}
                rows.append(row)
    finally:
        spatial.SEGMENT_THREADS = threads
    return rows


#: ``--overlap``'s cases: (box_overlap, when the box stage starts, region growing retried on a coarse grid).  'refine' = after all the attention passes, beside the refine pass only, 'spatial' = as soon as
#: the spatial maps are read (beside the temporal prompts' pass and the refine pass); the "before" cases are the
#: code before issue 26's fourth pass (its schedule and its retries, :data:`regions.RETRY_FLOOD_ON_COARSE_GRIDS`)
OVERLAP_CASES = {"serial (before)": (False, None, True), "beside refine (before)": (True, "refine", True),
                 "serial": (False, None, False), "overlapped": (True, "spatial", False)}


def overlap_cost(model: str = "small:qwen2_5_vl", clip_name: str = "cup.mp4", window: int = 60, rounds: int = 3,
                 warmup: int = 1, annotations=DEFAULT_ANNOTATIONS, cases=tuple(OVERLAP_CASES)) -> dict:
    """The box stage on the query's critical path (``box_overlap``): a live-window query
    (``window`` frames of the clip at camera rate, 20 sampled, ``tube_frames: refine``, proposal-free ``auto``
    boxes, sub-queries with distinct attribute and action, no frame keys: every pass encodes) in each of
    :data:`OVERLAP_CASES`, interleaved over ``rounds`` with the floor.  Segmentation in the box stage's own thread
    (``spatial.SEGMENT_THREADS = 1``; torch has one thread with OMP_NUM_THREADS=1), so each thread's CPU time
    (``time.thread_time``) is one core's work: the calling thread's CPU is the model passes (+ the boxes when
    serial); ``timings['box_cpu']`` the box stage's in its thread; ``timings['box_beside_cpu']`` the calling
    thread's CPU from the box stage's start to the moment it needs the boxes.  The box stage's share of the
    critical path (the CPU the calling thread waits for, given a free core for the worker) is then the boxes when
    serial, else ``max(0, boxes + other threads' CPU - beside)``, where "other threads" is the process CPU no
    thread above accounts for (OpenCV's own worker threads; conservatively counted as serial to the boxes).
    Wall times on a shared machine say nothing about it and are not used."""
    import threading

    import torch

    from stvg_ros.grounding import grounder as grounder_module
    from stvg_ros.grounding import regions, spatial
    from stvg_ros.config import GroundingConfig
    from stvg_ros.grounding.grounder import Grounder
    from stvg_ros.proposals.annotated import iter_frames, load_annotations
    from stvg_ros.grounding.result import SubQueries

    from bench.bench_grounding import floor_fn  # the floor as the other benches time it
    from bench.model_configs import load_adapter  # the benches' one model loader
    from stvg_ros.grounding.grounder import format_question, sample_indices

    clip = next(c for c in load_annotations(annotations) if c.name == clip_name)
    frames = [f for _, f in iter_frames(clip.path, stop=window)]
    stamps = [i / 27.0 for i in range(len(frames))]
    adapter, label = load_adapter(model, torch.device("cpu"), "float32")
    subs = SubQueries(attribute="the black cup", action="the cup moves", source="given")
    grounders = {name: Grounder(adapter, GroundingConfig(num_frames=FRAMES, decomposer="rules", box_overlap=on))
                 for name, (on, *_) in OVERLAP_CASES.items() if name in cases}
    idx = sample_indices(len(frames), FRAMES, stamps)
    floor = floor_fn(adapter, [frames[i] for i in idx], [stamps[i] for i in idx],
                     format_question(GroundingConfig().question_template, "the black cup"))
    runs = {name: [] for name in list(grounders) + ["floor"]}
    results = {}
    spatial.SEGMENT_THREADS, threads = 1, spatial.SEGMENT_THREADS
    tags, retry = grounder_module.SPATIAL_TAGS, regions.RETRY_FLOOD_ON_COARSE_GRIDS
    try:
        for r in range(warmup + rounds):
            names = list(grounders) + ["floor"]
            names = names[r % len(names):] + names[:r % len(names)]
            for name in names:
                if name == "floor":
                    p0 = time.process_time()
                    floor()  # the floor (encode + one prefill) in the same rounds
                    if r >= warmup:
                        runs["floor"].append(dict(process_cpu=time.process_time() - p0))
                    continue
                # the old schedule: every attention prompt counts as the box stage's input, so it starts after them
                grounder_module.SPATIAL_TAGS = tags if OVERLAP_CASES[name][1] != "refine" else (
                    "spatial_q", "spatial_c", "tas_q", "tas_c", "temporal_q", "temporal_c", "exist")
                regions.RETRY_FLOOD_ON_COARSE_GRIDS = OVERLAP_CASES[name][2]
                assert threading.current_thread() is threading.main_thread()
                p0, t0 = time.process_time(), time.thread_time()
                res = grounders[name].ground(frames, stamps, "the black cup", sub_queries=subs)
                p1, t1 = time.process_time(), time.thread_time()
                grounder_module.SPATIAL_TAGS, regions.RETRY_FLOOD_ON_COARSE_GRIDS = tags, retry
                results[name] = res
                tm = res.timings
                overlapped = "box_wait" in tm
                box = tm["box_cpu"]
                other = max(0.0, (p1 - p0) - (t1 - t0) - (box if overlapped else 0.0))
                beside = tm.get("box_beside_cpu", 0.0)
                on_path = max(0.0, box + other - beside) if overlapped else box + other
                if r >= warmup:
                    runs[name].append(dict(process_cpu=p1 - p0, thread_cpu=t1 - t0, box_cpu=box, other_cpu=other,
                                           beside_cpu=beside, on_path_cpu=on_path,
                                           refine_pass_cpu=tm.get("refine_pass_cpu", 0.0), model_cpu=(p1 - p0) - box - other))
    finally:
        spatial.SEGMENT_THREADS = threads
        grounder_module.SPATIAL_TAGS, regions.RETRY_FLOOD_ON_COARSE_GRIDS = tags, retry
    out = {"model": label, "clip": clip_name, "window": len(frames), "rounds": rounds, "cases": list(grounders)}
    floors = [x["process_cpu"] for x in runs["floor"]]
    for name, rs in runs.items():
        out[name] = {k: float(np.median([x[k] for x in rs])) for k in rs[0]}
        if name != "floor":  # per-round ratios to the same round's floor, then the median
            for k in ("box_cpu", "on_path_cpu"):
                out[name][k + "_x_floor"] = float(np.median([x[k] / f for x, f in zip(rs, floors)]))
        out[name]["rounds_s"] = rs

    def tube(res):
        return res.boxes, res.start, res.end, res.track_id

    same = defaultdict(list)  # cases computing the same boxes: the same retries
    for name in grounders:
        same[OVERLAP_CASES[name][2]].append(tube(results[name]))
    out["same_result"] = {"before" if k else "after": all(v == tubes[0] for v in tubes) for k, tubes in same.items()}
    out["tubes"] = {name: {"start": results[name].start, "end": results[name].end,
                           "boxes": {str(k): v for k, v in results[name].boxes.items()}} for name in grounders}
    return out


ALL_GEOMETRIES = ("qwen-224", "qwen-fine", "qwen-processor", "nextvideo-paper", "nextvideo-model", "nextvideo-fine",
                  "onevision-paper", "onevision-model", "onevision-fine")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--annotations", default=str(DEFAULT_ANNOTATIONS), help="box file (stvg_ros.proposals.annotated)")
    ap.add_argument("--videos", default=None, help="folder of the videos (default: the box file's)")
    ap.add_argument("--geometries", nargs="+", default=list(ALL_GEOMETRIES))
    ap.add_argument("--methods", nargs="+", default=["cells", "flood", "grabcut", "auto"])
    ap.add_argument("--json", default="", help="also write the rows here")
    ap.add_argument("--compare", nargs=2, action="append", metavar=("A", "B"), default=[],
                    help="also print the paired IoU difference of geometry B against A (both in --geometries), "
                         "object by object, with 95 %% bootstrap intervals; repeatable")
    ap.add_argument("--select", action="store_true",
                    help="instead: the select stage's CPU per 20-frame query on cup.mp4 (640x480), one core")
    ap.add_argument("--tracks", action="store_true",
                    help="instead: the select stage on 20 frames of every object annotated on >= 5 frames (tracks of "
                         "planted peaks): chosen track's IoU and CPU per query, one core")
    ap.add_argument("--overlap", action="store_true",
                    help="instead: a live-window query on --model, the box stage serial / beside the refine pass / "
                         "from the spatial maps on (box_overlap), before and after issue 26's fourth pass: its share "
                         "of the critical path, interleaved rounds")
    ap.add_argument("--model", default="small:qwen2_5_vl", help="--overlap's model (as bench_grounding.py's)")
    ap.add_argument("--rounds", type=int, default=3, help="--overlap's timed rounds")
    ap.add_argument("--cases", nargs="+", default=list(OVERLAP_CASES), choices=list(OVERLAP_CASES),
                    help="--overlap's cases")
    args = ap.parse_args(argv)
    if args.overlap:
        out = overlap_cost(args.model, rounds=args.rounds, cases=args.cases)
        print(f"{out['model']}: a {out['window']}-frame window of cup.mp4 (640x480), {FRAMES} sampled, refine pass, "
              f"proposal-free auto boxes; median of {out['rounds']} interleaved rounds (CPU s), boxes in one thread\n")
        f = out["floor"]["process_cpu"]
        print(f"floor (encode + one prefill, same rounds): {f:.3f} CPU s\n")
        print("| case | process CPU (all threads) | model passes | box stage (its thread) | other threads | "
              "calling thread's CPU beside the boxes | box stage on the critical path | boxes / floor | "
              "on the critical path / floor |\n|---|---|---|---|---|---|---|---|---|")
        for name in out["cases"]:
            m = out[name]
            print(f"| {name} | {m['process_cpu']:.3f} | {m['model_cpu']:.3f} | {m['box_cpu']:.3f} | {m['other_cpu']:.3f} | "
                  f"{m['beside_cpu']:.3f} | {m['on_path_cpu']:.3f} | {m['box_cpu_x_floor']:.2f}x | "
                  f"**{m['on_path_cpu_x_floor']:.2f}x** |")
        print(f"\nsame tube for the cases that compute the same boxes: {out['same_result']}")
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=1))
        return 0
    if args.tracks:
        cases = track_cases(args.annotations)
        rows = select_quality(args.geometries, args.methods, cases)
        print(f"select stage on {len(cases)} object tracks of {FRAMES} frames (peaks planted on every frame), one core\n")
        clips = sorted({k.rsplit(" ", 1)[0] for r in rows for k in r["per_clip"]})
        print("| geometry | method | track IoU centred | off-centre | IoU >= 0.5 (c / off) | "
              + " | ".join(f"{c} (c / off)" for c in clips) + " | best box per frame (c / off) | CPU ms / query |\n|"
              + "---|" * (7 + len(clips)))
        for r in rows:
            per = " | ".join(f"{r['per_clip'][c + ' centred']:.3f} / {r['per_clip'][c + ' off-centre']:.3f}" for c in clips)
            print(f"| {r['geometry']} | {r['method']} | {r['iou_centred']:.3f} | {r['iou_off-centre']:.3f} | "
                  f"{r['hit_centred']:.2f} / {r['hit_off-centre']:.2f} | {per} | "
                  f"{r['best_box_centred']:.3f} / {r['best_box_off-centre']:.3f} | {r['ms_per_query']:.0f} |")
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
        return 0
    if args.select:
        rows = select_cost(args.geometries, args.methods)
        print(f"select stage, proposal-free, {FRAMES} frames of cup.mp4 (640x480), one core, best of 3 (CPU ms)\n")
        print("| geometry | grid | method | select CPU ms per query | mean IoU of the chosen track |\n"
              "|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['geometry']} | {r['grid']} | {r['method']} | {r['select_ms']:.0f} | {r['mean_iou']:.3f} |")
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
        return 0
    frames = load_frames(args.annotations, args.videos)
    n = sum(len(b) for *_, b in frames)
    print(f"proposal-free boxes from planted peaks: {n} objects on {len(frames)} annotated frames, "
          f"placements {', '.join(PLACEMENTS)}, one seed, cold cuts\n")
    rows = measure(frames, args.geometries, args.methods)
    print(table(rows))
    if args.compare:
        print("\n" + compare(rows, args.compare))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
