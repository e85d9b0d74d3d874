"""Tracking by detection: link each keyframe's detections into tracks with stable ids.

Why our own: the well-kept libraries do not fit this environment.  ``supervision`` 0.31 no longer
ships ByteTrack (it moved to ``trackers``), ``trackers`` requires ``opencv-python`` (a second
OpenCV build next to ``opencv-python-headless``), and ``norfair`` pins ``numpy<2``.  This is a
compact ByteTrack-style tracker (Zhang et al., ECCV 2022): confident detections are matched first
to every live track, then the remaining recently seen tracks take the low-score detections (so an
occluded, low-confidence object keeps its id), and only confident detections start tracks.  Motion
is a constant-velocity prediction in box space per second, so keyframes may be irregular; matching
is greedy on IoU (few objects per frame; Hungarian gains nothing measurable there).  Because the
paper detects only every 10th frame, a last stage links a still-unmatched confident detection to a
still-unmatched track when their centres are close relative to the box size (fast objects leave
their predicted box between keyframes before the velocity is known).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .tracks import Detections, Track
from ..config import ProposalConfig


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes (N, 4) × (M, 4)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def center_shift(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise centre distance of xyxy boxes in units of ``a``'s size (mean of width and height),
    infinite where the areas differ by more than a factor 2 (another object, not a moved one)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    ca, cb = (a[:, :2] + a[:, 2:]) / 2, (b[:, :2] + b[:, 2:]) / 2
    size = np.maximum((a[:, 2] - a[:, 0] + a[:, 3] - a[:, 1]) / 2, 1e-6)
    dist = np.linalg.norm(ca[:, None] - cb[None], axis=-1) / size[:, None]
    area_a = np.maximum((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]), 1e-6)
    area_b = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-6)
    ratio = area_b[None, :] / area_a[:, None]
    return np.where((ratio > 0.5) & (ratio < 2.0), dist, np.inf)


def greedy_match(iou: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """Pairs (row, col) taken by decreasing IoU, each row and column once, IoU >= ``min_iou``."""
    pairs: list[tuple[int, int]] = []
    if iou.size == 0:
        return pairs
    iou = iou.copy()
    while True:
        r, c = np.unravel_index(int(np.argmax(iou)), iou.shape)
        if iou[r, c] < min_iou or iou[r, c] <= 0:
            return pairs
        pairs.append((int(r), int(c)))
        iou[r, :] = -1.0
        iou[:, c] = -1.0


@dataclass
class _Live:
    track: Track
    box: np.ndarray
    stamp: float
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))
    lost: int = 0

    def predict(self, stamp: float) -> np.ndarray:
        return self.box + self.velocity * (stamp - self.stamp)


class ByteTracker:
    """Keyframe detections in, tracks with stable ids out.

    ``update(stamp, detections)`` must be called with increasing stamps (seconds or frame indices).
    Detections scoring ``high`` or more are confident; with ``two_stage`` those between ``low`` and
    ``high`` may extend tracks seen on the previous keyframe.  A track missing more than ``max_lost``
    keyframes ends; ended tracks stay in :meth:`tracks` until pruned.
    """

    def __init__(self, high: float = 0.4, low: float = 0.2, match_iou: float = 0.3, max_lost: int = 3,
                 two_stage: bool = True, label: str = "", id_prefix: str = "", velocity_smoothing: float = 0.5,
                 max_center_shift: float = 1.0):
        self.high, self.low, self.match_iou, self.max_lost = high, low, match_iou, max_lost
        self.max_center_shift = max_center_shift
        self.two_stage, self.label, self.id_prefix = two_stage, label, id_prefix
        self.velocity_smoothing = velocity_smoothing
        self.reset()

    def reset(self) -> None:
        self._live: list[_Live] = []
        self._ended: list[Track] = []
        self._next_id = 0
        self._last_stamp = -np.inf

    def _new_id(self):
        self._next_id += 1
        return f"{self.id_prefix}{self._next_id}" if self.id_prefix else self._next_id

    def update(self, stamp: float, detections: Detections) -> list[Track]:
        """Link one keyframe's detections; returns the tracks observed on it."""
        stamp = float(stamp)
        if stamp <= self._last_stamp:
            raise ValueError(f"tracker stamps must increase ({stamp} after {self._last_stamp}): reset() on a time jump")
        self._last_stamp = stamp
        boxes, scores = detections.boxes, detections.scores
        high = np.flatnonzero(scores >= self.high)
        low = np.flatnonzero((scores >= self.low) & (scores < self.high)) if self.two_stage else np.zeros(0, int)
        predicted = np.array([t.predict(stamp) for t in self._live], np.float32).reshape(-1, 4)
        matched: dict[int, int] = {}  # live index → detection index
        # stage 1: confident detections against every live track (lost ones included)
        for r, c in greedy_match(iou_matrix(predicted, boxes[high]), self.match_iou):
            matched[r] = int(high[c])
        # stage 2: low-score detections only for tracks seen on the previous keyframe
        recent = [i for i, t in enumerate(self._live) if i not in matched and t.lost == 0]
        if len(low) and recent:
            for r, c in greedy_match(iou_matrix(predicted[recent], boxes[low]), self.match_iou):
                matched[recent[r]] = int(low[c])
        # stage 3: sparse keyframes let fast objects move out of their predicted box; a confident
        # detection of similar size whose centre is within max_center_shift box sizes still continues
        rest = [i for i in range(len(self._live)) if i not in matched]
        free = [int(d) for d in high if int(d) not in matched.values()]
        if rest and free and self.max_center_shift > 0:
            shift = center_shift(predicted[rest], boxes[free])
            score = np.where(shift <= self.max_center_shift, 1.0 / (1.0 + shift), 0.0)
            for r, c in greedy_match(score, 1.0 / (1.0 + self.max_center_shift)):
                matched[rest[r]] = free[c]
        observed: list[Track] = []
        still_live: list[_Live] = []
        for i, live in enumerate(self._live):
            if i in matched:
                d = matched[i]
                box = boxes[d].astype(np.float32)
                dt = stamp - live.stamp
                if dt > 0 and len(live.track.boxes) > 0:
                    v = (box - live.box) / dt
                    a = self.velocity_smoothing if len(live.track.boxes) > 1 else 0.0
                    live.velocity = a * live.velocity + (1.0 - a) * v
                live.box, live.stamp, live.lost = box, stamp, 0
                live.track.observe(stamp, box, float(scores[d]))
                observed.append(live.track)
                still_live.append(live)
            else:
                live.lost += 1
                if live.lost <= self.max_lost:
                    still_live.append(live)
                else:
                    self._ended.append(live.track)
        used = set(matched.values())
        for d in high:
            if int(d) in used:
                continue
            label = detections.labels[int(d)] or self.label
            track = Track(self._new_id(), label=label)
            track.observe(stamp, boxes[d], float(scores[d]))
            still_live.append(_Live(track, boxes[d].astype(np.float32), stamp))
            observed.append(track)
        self._live = still_live
        return observed

    def tracks(self) -> list[Track]:
        """Every track not pruned yet, live and ended."""
        return self._ended + [t.track for t in self._live]

    def prune_before(self, stamp: float) -> None:
        """Drop observations older than ``stamp`` and the tracks left empty (the window slid)."""
        for t in self.tracks():
            t.prune_before(stamp)
        self._ended = [t for t in self._ended if t.boxes]
        self._live = [t for t in self._live if t.track.boxes]


def make_tracker(kind: str = "bytetrack", config: Optional[ProposalConfig] = None, label: str = "",
                 id_prefix: Optional[str] = None) -> ByteTracker:
    """The tracker ``kind`` names ('bytetrack' or 'iou': one stage, confident detections only)."""
    cfg = config or ProposalConfig()
    if kind not in ("bytetrack", "iou"):
        raise ValueError(f"unknown tracker {kind!r}: choose bytetrack or iou")
    prefix = id_prefix if id_prefix is not None else (f"{label}#" if label else "")
    return ByteTracker(high=cfg.box_threshold, low=cfg.low_threshold, match_iou=cfg.match_iou,
                       max_lost=cfg.max_lost, two_stage=kind == "bytetrack", label=label, id_prefix=prefix,
                       max_center_shift=cfg.max_center_shift)
