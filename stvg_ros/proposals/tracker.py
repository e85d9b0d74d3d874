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

:func:`make_tracker` (every proposal source's) adds what real video needs, for people who cross, hide
and stop (issue 26): a Kalman filter, colour histograms, re-linking of lost tracks, crossers merged
into one blob kept apart, stopped objects held (see :class:`ByteTracker`).
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


def _inside(box: np.ndarray, others: np.ndarray) -> float:
    """The largest share of ``box``'s area that one of ``others`` covers."""
    lt = np.maximum(box[None, :2], others[:, :2])
    rb = np.minimum(box[None, 2:], others[:, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = max(float((box[2] - box[0]) * (box[3] - box[1])), 1e-9)
    return float(inter.max() / area) if len(others) else 0.0


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


class _Kalman:
    """Constant-velocity Kalman filter on a box's centre and size (x = cx, cy, w, h and their rates),
    time in video-frame *steps* (so it does not care whether stamps are seconds or frame indices); noise
    proportional to the box height, as in SORT / DeepSORT."""

    POS, VEL = 1.0 / 20, 1.0 / 160

    def __init__(self, box: np.ndarray):
        cx, cy, w, h = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0], box[3] - box[1]
        self.x = np.array([cx, cy, w, h, 0, 0, 0, 0], np.float64)
        s = max(float(h), 1.0)
        self.P = np.diag(np.r_[[2 * self.POS * s] * 4, [10 * self.VEL * s] * 4] ** 2)

    def predicted(self, steps: float) -> tuple[np.ndarray, np.ndarray]:
        F = np.eye(8)
        F[:4, 4:] = np.eye(4) * steps
        s = max(float(self.x[3]), 1.0)
        Q = np.diag(np.r_[[self.POS * s] * 4, [self.VEL * s] * 4] ** 2) * max(steps, 0.0)
        return F @ self.x, F @ self.P @ F.T + Q

    def box(self, steps: float = 0.0) -> np.ndarray:
        x, _ = self.predicted(steps) if steps else (self.x, self.P)
        w, h = max(x[2], 1.0), max(x[3], 1.0)
        return np.array([x[0] - w / 2, x[1] - h / 2, x[0] + w / 2, x[1] + h / 2], np.float32)

    def update(self, box: np.ndarray, steps: float) -> None:
        x, P = self.predicted(steps)
        z = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0], box[3] - box[1]], np.float64)
        s = max(float(z[3]), 1.0)
        R = np.diag([self.POS * s] * 4) ** 2
        S = P[:4, :4] + R
        K = P[:, :4] @ np.linalg.inv(S)
        self.x = x + K @ (z - x[:4])
        self.P = P - K @ P[:4, :]


def appearance(frame: np.ndarray, box: np.ndarray) -> Optional[np.ndarray]:
    """Hue-saturation histogram (16x8, L1-normalised) of the middle of ``box`` in an RGB frame: the
    colours of a person's clothes, which survive crossings and short occlusions; None when too small."""
    import cv2

    h, w = frame.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    mx, my = 0.2 * (x1 - x0), 0.1 * (y1 - y0)  # the object's middle: less background
    x0, x1 = int(max(0, x0 + mx)), int(min(w, x1 - mx))
    y0, y1 = int(max(0, y0 + my)), int(min(h, y1 - my))
    if x1 - x0 < 3 or y1 - y0 < 3:
        return None
    crop = np.ascontiguousarray(frame[y0:y1, x0:x1])
    hsv = cv2.cvtColor(crop, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [16, 8], [0, 180, 0, 256]).reshape(-1)
    total = hist.sum()
    return hist / total if total > 0 else None


def similarity(a: Optional[np.ndarray], b: Optional[np.ndarray]) -> Optional[float]:
    """Bhattacharyya coefficient of two normalised histograms (1 = same colours), None if one is missing."""
    if a is None or b is None:
        return None
    return float(np.sum(np.sqrt(a * b)))


@dataclass
class _Live:
    track: Track
    box: np.ndarray
    stamp: float
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))
    lost: int = 0
    kalman: Optional[_Kalman] = None
    hist: Optional[np.ndarray] = None
    hits: int = 1
    first_box: Optional[np.ndarray] = None
    held: int = 0
    score: float = 1.0  # the last detection's: coasted and held boxes get half of it

    def predict(self, stamp: float, period: float = 1.0) -> np.ndarray:
        """The box at ``stamp``; ``period``: stamp units per Kalman step (a video frame)."""
        if self.kalman is not None:
            return self.kalman.box((stamp - self.stamp) / period)
        return self.box + self.velocity * (stamp - self.stamp)

    def moved(self) -> float:
        """How far the track's centre has travelled from its first box, in box sizes."""
        if self.first_box is None:
            return 0.0
        a, b = self.first_box, self.box
        size = max((a[2] - a[0] + a[3] - a[1]) / 2, 1e-6)
        return float(np.hypot((b[0] + b[2] - a[0] - a[2]) / 2, (b[1] + b[3] - a[1] - a[3]) / 2) / size)


class ByteTracker:
    """Keyframe detections in, tracks with stable ids out.

    ``update(stamp, detections, frame=None)`` must be called with increasing stamps (seconds or frame
    indices).  Detections scoring ``high`` or more are confident; with ``two_stage`` those between
    ``low`` and ``high`` may extend tracks seen on the previous keyframe.  A track missing more than
    ``max_lost`` keyframes ends; ended tracks stay in :meth:`tracks` until pruned.

    The options below are off by default (the proposal-free box path links its segments with the plain
    tracker) and on in :func:`make_tracker`, for people who cross, hide and stop:

    * ``kalman``: a constant-velocity Kalman filter on box centre and size predicts where a track is
      (time in video frames: ``frames_per_keyframe`` per keyframe period, 1 for motion blobs, the
      detection stride for detectors), instead of the last box moved by a smoothed velocity;
    * ``appearance`` (when ``update`` is given the frame): a hue-saturation histogram per track,
      updated on confident matches; a match must look alike (``min_similarity``) and looks count in
      the association score, so two people who cross keep their own tracks;
    * ``relink_keyframes``: a lost track stays matchable this long (beyond ``max_lost``) by motion
      gating (a gate that widens with the time lost) and appearance: one who was hidden keeps the id;
    * ``hold_static`` (needs frames): a track that moved, stood still and then lost its detections (a
      motion blob fades when someone stops) is held at its box as long as the box still looks like it.
    """

    def __init__(self, high: float = 0.4, low: float = 0.2, match_iou: float = 0.3, max_lost: int = 3,
                 two_stage: bool = True, label: str = "", id_prefix: str = "", velocity_smoothing: float = 0.5,
                 max_center_shift: float = 1.0, kalman: bool = False, appearance: bool = False,
                 relink_keyframes: int = 0, hold_static: bool = False, min_similarity: float = 0.5,
                 appearance_weight: float = 0.5, relink_similarity: float = 0.5,
                 max_gate: float = 4.0, frames_per_keyframe: float = 1.0):
        self.high, self.low, self.match_iou, self.max_lost = high, low, match_iou, max_lost
        self.max_center_shift = max_center_shift
        self.two_stage, self.label, self.id_prefix = two_stage, label, id_prefix
        self.velocity_smoothing = velocity_smoothing
        self.use_kalman, self.use_appearance = kalman, appearance
        self.relink_keyframes, self.hold_static = relink_keyframes, hold_static
        self.min_similarity, self.appearance_weight = min_similarity, appearance_weight
        self.relink_similarity, self.max_gate = relink_similarity, max_gate
        self.frames_per_keyframe = frames_per_keyframe
        self.reset()

    def reset(self) -> None:
        self._live: list[_Live] = []
        self._ended: list[Track] = []
        self._next_id = 0
        self._last_stamp = -np.inf
        self._period = 0.0

    def _new_id(self):
        self._next_id += 1
        return f"{self.id_prefix}{self._next_id}" if self.id_prefix else self._next_id

    # --- association ----------------------------------------------------------------------------
    def _scores(self, rows: list[int], dets: np.ndarray, predicted: np.ndarray, hists: list, lost_steps: np.ndarray,
                boxes: np.ndarray) -> np.ndarray:
        """Association score of live tracks ``rows`` with detections ``dets`` (0 = not allowed): motion
        (IoU with the prediction, or centre proximity within a gate that widens with the time lost)
        blended with appearance when both sides have a histogram."""
        if not rows or not len(dets):
            return np.zeros((len(rows), len(dets)))
        pred = predicted[rows]
        iou = iou_matrix(pred, boxes[dets])
        shift = center_shift(pred, boxes[dets])
        gate = self.max_center_shift * np.minimum(np.sqrt(np.maximum(lost_steps[rows], 1.0)), self.max_gate)[:, None]
        near = np.where(shift <= gate, 0.5 * (1.0 - shift / np.maximum(gate, 1e-6)), 0.0)
        motion = np.where(iou >= self.match_iou, np.maximum(iou, near), near)
        if self.max_center_shift <= 0:
            motion = np.where(iou >= self.match_iou, iou, 0.0)
        score = motion.astype(np.float64)
        for a, r in enumerate(rows):
            for b, d in enumerate(dets):
                if score[a, b] <= 0:
                    continue
                sim = similarity(self._live[r].hist, hists[d])
                if sim is None:
                    continue
                if sim < (self.relink_similarity if self._live[r].lost > self.max_lost else self.min_similarity):
                    score[a, b] = 0.0
                else:
                    score[a, b] = (1 - self.appearance_weight) * score[a, b] + self.appearance_weight * sim
        return score

    def update(self, stamp: float, detections: Detections, frame: Optional[np.ndarray] = None) -> list[Track]:
        """Link one keyframe's detections; returns the tracks observed (or held) on it.  ``frame`` (the
        HxWx3 RGB image the detections were found in) lets ``appearance`` and ``hold_static`` work."""
        stamp = float(stamp)
        if stamp <= self._last_stamp:
            raise ValueError(f"tracker stamps must increase ({stamp} after {self._last_stamp}): reset() on a time jump")
        if np.isfinite(self._last_stamp):
            gap = stamp - self._last_stamp
            self._period = gap if self._period <= 0 else 0.9 * self._period + 0.1 * gap
        self._last_stamp = stamp
        period = self._period if self._period > 0 else 1.0
        frame_period = period / self.frames_per_keyframe  # the Kalman filter steps in video frames
        boxes, scores = detections.boxes, detections.scores
        look = frame is not None and self.use_appearance
        hists = [appearance(frame, b) for b in boxes] if look else [None] * len(boxes)
        high = np.flatnonzero(scores >= self.high)
        low = np.flatnonzero((scores >= self.low) & (scores < self.high)) if self.two_stage else np.zeros(0, int)
        if not self.use_kalman and not self.use_appearance and not self.relink_keyframes:
            return self._update_plain(stamp, boxes, scores, detections, high, low)
        predicted = np.array([t.predict(stamp, frame_period) for t in self._live], np.float32).reshape(-1, 4)
        lost_steps = np.array([(stamp - t.stamp) / period for t in self._live], np.float64)
        matched: dict[int, int] = {}
        # stage 1: confident detections against every live track (lost ones included, their gate wider)
        rows = list(range(len(self._live)))
        for r, c in greedy_match(self._scores(rows, high, predicted, hists, lost_steps, boxes), 1e-6):
            matched[rows[r]] = int(high[c])
        # stage 2: low-score detections only for tracks seen on the previous keyframe
        recent = [i for i, t in enumerate(self._live) if i not in matched and t.lost == 0]
        if len(low) and recent:
            for r, c in greedy_match(self._scores(recent, low, predicted, hists, lost_steps, boxes), self.match_iou):
                matched[recent[r]] = int(low[c])
        swallowed = set(matched.values())
        coast = self._merged(matched, predicted, boxes) if self.use_kalman else {}
        observed: list[Track] = []
        still_live: list[_Live] = []
        matched_boxes = boxes[sorted(swallowed)] if swallowed else np.zeros((0, 4), np.float32)
        limit = max(self.max_lost, self.relink_keyframes)
        for i, live in enumerate(self._live):
            if i in coast:  # inside a blob that holds several tracked objects: each keeps its predicted box
                live.kalman.x, live.kalman.P = live.kalman.predicted((stamp - live.stamp) / frame_period)
                live.box, live.stamp, live.lost = coast[i], stamp, 0
                live.track.observe(stamp, coast[i], 0.5 * live.score)
                observed.append(live.track)
                still_live.append(live)
                continue
            if i in matched:
                d = matched[i]
                box = boxes[d].astype(np.float32)
                steps = (stamp - live.stamp) / frame_period
                if live.kalman is not None:
                    live.kalman.update(box, steps)
                if hists[d] is not None and scores[d] >= self.high:
                    live.hist = hists[d] if live.hist is None else 0.8 * live.hist + 0.2 * hists[d]
                live.box, live.stamp, live.lost, live.held = box, stamp, 0, 0
                live.hits, live.score = live.hits + 1, float(scores[d])
                live.track.observe(stamp, box, float(scores[d]))
                observed.append(live.track)
                still_live.append(live)
                continue
            if look and self.hold_static and self._holds(live, frame, matched_boxes):
                live.stamp, live.lost = stamp, 0
                live.held += 1
                if live.kalman is not None:
                    live.kalman = _Kalman(live.box)  # it stopped: no velocity
                live.track.observe(stamp, live.box, 0.5 * live.score)
                observed.append(live.track)
                still_live.append(live)
                continue
            live.lost += 1
            if live.lost <= limit:
                still_live.append(live)
            else:
                self._ended.append(live.track)
        used = set(matched.values()) | swallowed
        for d in high:
            d = int(d)
            if d in used:
                continue
            if len(matched_boxes) and _inside(boxes[d], matched_boxes) > 0.7:
                continue  # a fragment of an object already matched (a blob split in two), not a new one
            label = detections.labels[d] or self.label
            track = Track(self._new_id(), label=label)
            track.observe(stamp, boxes[d], float(scores[d]))
            box = boxes[d].astype(np.float32)
            still_live.append(_Live(track, box, stamp, kalman=_Kalman(box) if self.use_kalman else None,
                                    hist=hists[d], first_box=box, score=float(scores[d])))
            observed.append(track)
        self._live = still_live
        return observed

    def _merged(self, matched: dict[int, int], predicted: np.ndarray, boxes: np.ndarray) -> dict[int, np.ndarray]:
        """Tracks whose objects merged into one detection (two people crossing or walking together make
        one motion blob): when the predicted boxes of two or more confirmed, recently seen tracks lie
        inside one matched detection much larger than each, none of them takes the detection's box;
        each keeps its predicted box, clipped to the detection (returned by live index; removed from
        ``matched``)."""
        out: dict[int, np.ndarray] = {}
        for d in set(matched.values()):
            box = boxes[d]
            area = float((box[2] - box[0]) * (box[3] - box[1]))
            group = []
            for i, live in enumerate(self._live):
                if live.hits < 3 or (i not in matched and live.lost > self.max_lost) or (i in matched and matched[i] != d):
                    continue
                p = predicted[i]
                if area >= 1.3 * float((p[2] - p[0]) * (p[3] - p[1])) and _inside(p, box[None]) >= 0.7:
                    group.append(i)
            if len(group) >= 2:
                for i in group:
                    p = predicted[i].copy()
                    p[0::2] = np.clip(p[0::2], box[0], box[2])
                    p[1::2] = np.clip(p[1::2], box[1], box[3])
                    out[i] = p
                    matched.pop(i, None)
        return out

    def _holds(self, live: _Live, frame: np.ndarray, matched_boxes: np.ndarray) -> bool:
        """Whether an unmatched track is an object that stopped: it was followed for a while and moved,
        it has not been held for long, no matched detection covers it, and its box still looks like it."""
        if live.hist is None or live.hits < 5 or live.moved() < 0.5:
            return False
        if not live.held:  # its last observed boxes stood still: it stopped, it was not hidden while walking
            last = [live.track.boxes[k] for k in sorted(live.track.boxes)[-3:]]
            a, b = np.asarray(last[0]), np.asarray(last[-1])
            if float(center_shift(a[None], b[None])[0, 0]) > 0.15:
                return False
        if len(matched_boxes) and iou_matrix(live.box[None], matched_boxes).max() > 0.3:
            return False
        sim = similarity(live.hist, appearance(frame, live.box))
        return sim is not None and sim >= max(self.min_similarity, 0.8)

    def _update_plain(self, stamp, boxes, scores, detections, high, low) -> list[Track]:
        """The plain tracker (no Kalman filter, no appearance, no re-linking): the proposal-free path's."""
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
    """The tracker ``kind`` names ('bytetrack' or 'iou': one stage, confident detections only), with the
    Kalman filter, appearance, re-linking and static holding on (see :class:`ByteTracker`)."""
    cfg = config or ProposalConfig()
    if kind not in ("bytetrack", "iou"):
        raise ValueError(f"unknown tracker {kind!r}: choose bytetrack or iou")
    prefix = id_prefix if id_prefix is not None else (f"{label}#" if label else "")
    return ByteTracker(high=cfg.box_threshold, low=cfg.low_threshold, match_iou=cfg.match_iou,
                       max_lost=cfg.max_lost, two_stage=kind == "bytetrack", label=label, id_prefix=prefix,
                       max_center_shift=cfg.max_center_shift, kalman=True, appearance=True,
                       relink_keyframes=cfg.relink_keyframes, hold_static=True,
                       frames_per_keyframe=1.0 if cfg.source == "motion" else float(cfg.detect_every))
