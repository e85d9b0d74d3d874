"""Spatial choice: which object track the query refers to.

With proposals (object tracks from a detector + tracker, as the paper's Grounding DINO + SAM2),
each track is scored by the maximum spatial relevance inside its boxes over the frames the model
saw, and the best track wins (paper and official code).  Without proposals the candidate tracks
are made from the frames themselves (our addition, so that a robot without a detector still gets
an answer): each frame's strongest relevance peaks seed a segmentation of the image
(:mod:`stvg_ros.grounding.regions`), the segments' boxes are linked over time by the package's tracker, and
the tracks are scored like proposals.  Without frames (or ``box_method='cells'``) the track is cut
from the relevance map alone: per frame, the peak's connected cells, smoothed over time.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Callable, Hashable, Sequence

import numpy as np

from ..boxes import Box, clip_box, fill_boxes
from .regions import GRABCUT_CHAIN, GRABCUT_ITERATIONS
from .relevance import box_cell_weights, cell_box, upsample_maps
from .result import Proposals

#: the track id of the proposal-free (attention-built) track
ATTENTION_TRACK = "attention"


@dataclass
class SampledTrack:
    """A proposal restricted to the frames the model saw: ``boxes[i]`` for sampled frame ``i`` (None = no box),
    with its relevance score (a :class:`stvg_ros.proposals.tracks.Track` is the source's whole track)."""

    track_id: Hashable
    boxes: list[Box | None]
    score: float = float("-inf")


def match_stamps(frame_stamps: Sequence[float], track: dict[float, Box], tolerance: float) -> list[Box | None]:
    """Boxes of ``track`` at the sampled stamps (nearest stamp within ``tolerance``)."""
    if not track:
        return [None] * len(frame_stamps)
    keys = np.array(sorted(track), dtype=np.float64)
    out: list[Box | None] = []
    for s in frame_stamps:
        j = int(np.searchsorted(keys, s))
        best = None
        for k in (j - 1, j):
            if 0 <= k < len(keys) and abs(keys[k] - s) <= tolerance:
                if best is None or abs(keys[k] - s) < abs(keys[best] - s):
                    best = k
        out.append(None if best is None else tuple(float(v) for v in track[float(keys[best])]))
    return out


def max_in_box(image_map: np.ndarray, box: Box, scale: float) -> float:
    """Maximum of an upsampled map (``map_xy = image_xy * scale``) inside a pixel box.

    A box thinner than one map pixel still reads the pixel it falls in, so tiny objects score.
    """
    h, w = image_map.shape
    x0, y0, x1, y1 = (v * scale for v in box)
    c0 = min(max(int(np.floor(x0)), 0), w - 1)
    r0 = min(max(int(np.floor(y0)), 0), h - 1)
    c1 = min(max(int(np.ceil(x1)), c0 + 1), w)
    r1 = min(max(int(np.ceil(y1)), r0 + 1), h)
    return float(image_map[r0:r1, c0:c1].max())


def score_tracks(image_maps: np.ndarray, scale: float, tracks: list[SampledTrack]) -> None:
    """Set each track's score: the maximum relevance inside its boxes over all frames (in place)."""
    for track in tracks:
        vals = [max_in_box(image_maps[i], b, scale) for i, b in enumerate(track.boxes) if b is not None]
        track.score = max(vals) if vals else float("-inf")


def score_tracks_on_cells(grid_maps: np.ndarray, grid: tuple[int, int], content_box: Sequence[float],
                          tracks: list[SampledTrack]) -> None:
    """The official code's track score (``track_score='cells'``): the maximum over frames and token cells of
    the grid map times the box's cell weights (:func:`~stvg_ros.grounding.relevance.box_cell_weights`); a frame
    without a box, or a cell the box misses, counts 0 (in place)."""
    for track in tracks:
        vals = [float((grid_maps[i] * box_cell_weights(b, grid, content_box)).max())
                for i, b in enumerate(track.boxes) if b is not None]
        if vals and len(vals) < len(track.boxes):
            vals.append(0.0)
        track.score = max(vals) if vals else float("-inf")


def tracks_from_proposals(proposals: Proposals, frame_stamps: Sequence[float], image_size: tuple[int, int],
                          tolerance: float) -> list[SampledTrack]:
    """Proposals restricted to the sampled frames; tracks with no box there are dropped."""
    out = []
    for track_id, boxes in proposals.items():
        matched = match_stamps(frame_stamps, {float(k): v for k, v in boxes.items()}, tolerance)
        matched = [None if b is None else clip_box(b, image_size) for b in matched]
        if any(b is not None for b in matched):
            out.append(SampledTrack(track_id=track_id, boxes=matched))
    return out


def peak_region_box(grid_map: np.ndarray, threshold: float) -> tuple[int, int, int, int]:
    """Cells ``(row0, col0, row1, col1)`` (inclusive) of the peak's connected region.

    The region: 4-connected cells whose value is at least ``min + threshold * (peak - min)``
    and that connect to the peak cell.  Measured against the frame's range rather than the
    raw peak because relevance ratios sit on a positive baseline (about 1 where question and
    caption agree); a fraction of the raw peak would swallow that baseline.
    """
    import cv2

    lo, hi = float(grid_map.min()), float(grid_map.max())
    r, c = np.unravel_index(int(np.argmax(grid_map)), grid_map.shape)
    if hi <= lo:
        return 0, 0, grid_map.shape[0] - 1, grid_map.shape[1] - 1
    mask = (grid_map >= lo + threshold * (hi - lo)).astype(np.uint8)
    _, labels = cv2.connectedComponents(mask, connectivity=4)
    rows, cols = np.nonzero(labels == labels[r, c])
    return int(rows.min()), int(cols.min()), int(rows.max()), int(cols.max())


def smooth_boxes(boxes: np.ndarray, window: int = 5) -> np.ndarray:
    """Temporal median of box coordinates over a centred window (edge frames use what they have).

    The median links per-frame peak regions into one track: a frame whose peak jumps to another
    object for a moment is outvoted by its neighbours, while a real move of the target survives.
    """
    T = boxes.shape[0]
    half = window // 2
    out = np.empty_like(boxes)
    for t in range(T):
        out[t] = np.median(boxes[max(0, t - half): t + half + 1], axis=0)
    return out


def attention_track(grid_maps: np.ndarray, grid: tuple[int, int], content_box: Sequence[float],
                    image_size: tuple[int, int], threshold: float, window: int = 5,
                    min_prominence: float = 0.25) -> SampledTrack:
    """The proposal-free track: per-frame peak-region boxes, linked over time and median-smoothed.

    Only frames whose map has a clear peak (range ``max - min`` at least ``min_prominence`` of
    the clip's largest) place a box; the others (target absent, flat map) take the box of their
    nearest confident neighbours (interpolated between them), so a flat frame does not vote for
    a whole-frame box.  The median then removes one-frame jumps to another object.
    """
    T = len(grid_maps)
    prominence = grid_maps.reshape(T, -1).max(1) - grid_maps.reshape(T, -1).min(1)
    confident = prominence >= min_prominence * prominence.max() if prominence.max() > 0 else np.ones(T, bool)
    raw: list[Box | None] = [cell_box(*peak_region_box(m, threshold), grid, content_box) if ok else None
                             for m, ok in zip(grid_maps, confident)]
    filled = np.array(fill_boxes(raw, list(range(T)), 0, T - 1), dtype=np.float64)
    smoothed = smooth_boxes(filled, window) if T > 2 else filled
    return SampledTrack(track_id=ATTENTION_TRACK, boxes=[clip_box(b, image_size) for b in smoothed])


#: threads that segment frames in parallel (0 = one per CPU core, at most 8; 1 = in the calling thread)
SEGMENT_THREADS = 0
_POOLS: dict = {}  # threads -> the pool of that size


def _segment_pool(threads: int | None = None):
    n = threads or SEGMENT_THREADS or min(8, os.cpu_count() or 1)
    if n <= 1:
        return None
    if n not in _POOLS:
        from concurrent.futures import ThreadPoolExecutor

        _POOLS[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="stvg-segment")
    return _POOLS[n]


def segment_tracks(frames: Sequence[np.ndarray], grid_maps: np.ndarray, grid: tuple[int, int],
                   content_box: Sequence[float], image_size: tuple[int, int], box_threshold: float,
                   method: str = "auto", seeds: int = 2, min_fraction: float = 0.3,
                   iterations: int = GRABCUT_ITERATIONS, chain: int = GRABCUT_CHAIN,
                   check: Callable[[], None] | None = None, threads: int | None = None,
                   pool_cpu: list | None = None) -> list[SampledTrack]:
    """Proposal-free candidate tracks: per frame, one segment per relevance seed (at most ``seeds``
    local maxima at least ``min_fraction`` of the frame's range), linked over the sampled frames by
    the IoU tracker (one stage, centre-shift fallback for fast movers).  Runs of ``chain`` consecutive
    frames carry GrabCut's colour models from frame to frame (:class:`~stvg_ros.grounding.regions.ColourChain`;
    1 = every cut cold).  ``check()`` is called before each frame's segmentation and may raise (a
    cancel) to stop there: segmentation is most of a grounding's CPU time.  ``threads``: how many segment the
    chains (None: :data:`SEGMENT_THREADS`); the boxes are the same whatever it is.  ``pool_cpu``: gets the CPU
    seconds of each chain segmented on another thread (the caller's thread CPU holds the rest)."""
    import time

    from ..proposals.tracks import Detections
    from ..proposals.tracker import ByteTracker
    from .regions import ColourChain, frame_candidates

    full, _ = upsample_maps(grid_maps, content_box, image_size, max_side=None)
    tracker = ByteTracker(high=0.0, low=0.0, match_iou=0.3, max_lost=3, two_stage=False, max_center_shift=1.0)
    T = len(grid_maps)
    caller = threading.get_ident()

    def candidates(ts):
        c = time.thread_time()
        models = ColourChain() if len(ts) > 1 else None
        out = []
        for t in ts:
            if check is not None:
                check()
            out.append(frame_candidates(frames[t], grid_maps[t], full[t], grid, content_box, method, seeds,
                                        min_fraction, box_threshold, iterations=iterations, chain=models))
        if pool_cpu is not None and threading.get_ident() != caller:
            pool_cpu.append(time.thread_time() - c)
        return out

    # chains are segmented independently (OpenCV releases the GIL, and seeds its RNG per thread): in parallel;
    # fixed-length chains, so the boxes are the same whatever the number of threads
    run = max(1, chain)
    chains = [range(t, min(t + run, T)) for t in range(0, T, run)]
    pool = _segment_pool(threads) if len(chains) > 1 else None
    per_frame = [c for cs in (pool.map(candidates, chains) if pool is not None else map(candidates, chains)) for c in cs]
    for t, cands in enumerate(per_frame):
        boxes = np.array([b for b, _ in cands], np.float32).reshape(-1, 4)
        tracker.update(t, Detections(boxes, np.array([v for _, v in cands], np.float32)))
    out = []
    for k, tr in enumerate(tracker.tracks()):
        boxes = [tr.boxes.get(float(i)) for i in range(T)]
        out.append(SampledTrack(track_id=f"{ATTENTION_TRACK}:{k + 1}",
                                 boxes=[None if b is None else clip_box(b, image_size) for b in boxes]))
    return out


def choose_track(grid_maps: np.ndarray, grid: tuple[int, int], content_box: Sequence[float],
                 image_size: tuple[int, int], frame_stamps: Sequence[float], proposals: Proposals | None,
                 box_threshold: float, tolerance: float, frames: Sequence[np.ndarray] | None = None,
                 box_method: str = "cells", box_seeds: int = 2,
                 box_iterations: int = GRABCUT_ITERATIONS,
                 box_chain: int = GRABCUT_CHAIN, check: Callable[[], None] | None = None,
                 track_score: str = "max", threads: int | None = None,
                 pool_cpu: list | None = None) -> tuple[SampledTrack, list[SampledTrack], np.ndarray, float, str]:
    """Best track for the spatial relevance ``grid_maps`` ``(T, rows, cols)``.

    Without usable proposals: with ``frames`` (the sampled frames) and a segmenting ``box_method``,
    the tracks of :func:`segment_tracks`; otherwise (or when segmentation finds nothing) the
    relevance-only :func:`attention_track`.
    Returns ``(best, all scored tracks, upsampled maps, their scale, reason)``; ``reason`` says
    why the proposal-free path was taken although proposals were given (empty otherwise).
    ``check``, ``threads``, ``pool_cpu``: see :func:`segment_tracks`.
    ``track_score``: 'max' = :func:`score_tracks` (maximum of the upsampled map inside the boxes); 'cells' =
    :func:`score_tracks_on_cells` (the official code's cell weights).
    """
    image_maps, scale = upsample_maps(grid_maps, content_box, image_size)
    reason = ""
    tracks: list[SampledTrack] = []
    if proposals:
        tracks = tracks_from_proposals(proposals, frame_stamps, image_size, tolerance)
        if not tracks:
            reason = "no proposal track has a box in the sampled frames; used the attention-built track"
    if not tracks and frames is not None and box_method != "cells":
        tracks = segment_tracks(frames, grid_maps, grid, content_box, image_size, box_threshold, box_method,
                                box_seeds, iterations=box_iterations, chain=box_chain, check=check, threads=threads,
                                pool_cpu=pool_cpu)
    if not tracks:
        tracks = [attention_track(grid_maps, grid, content_box, image_size, box_threshold)]
    if track_score == "cells":
        score_tracks_on_cells(grid_maps, grid, content_box, tracks)
    else:
        score_tracks(image_maps, scale, tracks)
    best = max(tracks, key=lambda t: t.score)
    return best, tracks, image_maps, scale, reason
