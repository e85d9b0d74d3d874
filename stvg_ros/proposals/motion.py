"""Moving-object tracks for a still camera: background subtraction, blobs, our tracker.

No weights and no object class: whatever moves becomes a track, so ``tracks_for`` ignores the
phrase (the MLLM chooses among the movers).  OpenCV's MOG2 or KNN subtractor keeps a per-pixel
background model; its foreground mask (shadows -- darker copies of the background -- dropped) is
opened (specks) and closed (holes), its connected blobs above ``motion_min_area`` become boxes, and
:class:`~stvg_ros.proposals.tracker.ByteTracker` links them frame to frame.

A camera's auto exposure (a dark object filling the view brightens the wall) is undone first: the frame is
scaled to the background model's brightness.  On each frame, a blob under ``_FRAGMENT`` of the largest one or
lying inside a larger one is a piece of that mover (an arm's pieces, its shadow's edges), and a track that is
such a piece on half its frames is not proposed (:meth:`MotionTracks.lasting`).

What it cannot do, by construction: a camera that moves or shakes turns the whole image into
foreground; an object that stands still for about ``motion_history`` frames fades into the
background (its track ends, held ``hold_keyframes`` periods); an object present from the first
frame and never moving is never seen (people excepted: ``motion_people``); where it starts to move the uncovered background shows as a
second blob (a "ghost") until the model learns it; touching movers merge into one box.
"""

from __future__ import annotations

import threading
import time
from typing import Optional, Sequence

import cv2
import numpy as np

from . import ProposalSource, _rank
from .tracks import Detections, Track
from ..config import ProposalConfig
from .tracker import make_tracker

#: OpenCV's default foreground thresholds (MOG2 varThreshold, KNN dist2Threshold)
_DEFAULT_THRESHOLD = {"mog2": 16.0, "knn": 400.0}
#: a frame whose foreground covers more than this share of the image yields no blobs: the camera moved,
#: the light changed, or the model is still warming up (KNN marks everything for its first frames)
GLOBAL_CHANGE = 0.5
#: camera motion is estimated on frames about this many pixels on their longer side
_CAMERA_SIDE = 320
#: a view that moved less than this (pixels at _CAMERA_SIDE) counts as a still camera
_STILL_PX = 0.5
#: corners that agree on a motion must span this share of the frame's width and height to be the camera's
_SPREAD = 0.5
#: a HOG person overlapping a moving blob this much (IoU) is that blob (motion_people)
_SAME_OBJECT_IOU = 0.3
#: motion_people: a HOG person found again this close (IoU) on a later keyframe is the same still person
_STILL_IOU = 0.5
#: motion_people: a frame on which this share of a candidate's box is foreground counts as "it stirs"
#: (a standing person turns, gestures, shifts weight; a pole or a door frame HOG mistakes for one never does)
_STIRS = 0.01
#: motion_people: frames over which the share of stirring frames is averaged (exponential memory)
_STIR_MEMORY = 20
#: motion_people: a still person is proposed while at least this share of recent frames stirred
_MIN_STIR = 0.15
#: motion_people: a still person's box must look like them (Bhattacharyya coefficient of the colours HOG
#: saw there) to be proposed: someone walking in front hides them, and one who walked off leaves pavement
_LOOKS_ALIKE = 0.8
#: motion_people: a moving blob lying more than half inside a proposed still person's box is that person
#: stirring (or starting to walk: the blob then takes over their track once the box no longer looks like them)
_STIRRING_BLOB = 0.5
#: an object as wide as motion_split of its height is split where its foreground's column count drops under this share of its fullest column
_SPLIT_VALLEY = 0.25
#: the background model starts again when the view has moved this share of the frame's shorter side
_REANCHOR = 0.25
#: exposure: a frame whose brightness differs from the background model's by more than this share (a camera's
#: auto exposure or white balance following a dark object into view) is scaled back to the model's first
_GAIN_STEP = 0.01
#: exposure: a change of brightness beyond this share is no exposure step but a new light or view (left to
#: GLOBAL_CHANGE: no blobs)
_GAIN_MAX = 0.25
#: exposure: frames the background model learns before its exposure is compared (its image is noise before)
_GAIN_WARMUP = 5
#: a blob under this share of the frame's largest blob's box area is a fragment of a mover (pieces of an arm, its
#: shadow's edge, registration noise of a hand-held camera), not an object of its own
_FRAGMENT = 0.05
#: a blob whose box lies this much inside a larger blob's box is a part of that object
_NESTED = 0.8
#: a track under this share of the largest concurrent track's box area is a fragment of it (see _PART_OF)
_PART_FRAGMENT = 0.1
#: a track that is a fragment or a part (as above) of a larger track on at least this share of its frames is
#: not proposed: a hand's or arm's pieces next to the held object
_PART_OF = 0.5


class MotionBlobs:
    """Frames in, one :class:`Detections` of moving blobs per frame out (stateful: call in time order)."""

    def __init__(self, config: Optional[ProposalConfig] = None):
        self.config = config or ProposalConfig()
        self.reset()

    def reset(self) -> None:
        cfg = self.config
        threshold = cfg.motion_threshold or _DEFAULT_THRESHOLD[cfg.motion_method]
        if cfg.motion_method == "mog2":
            self.subtractor = cv2.createBackgroundSubtractorMOG2(cfg.motion_history, threshold, cfg.motion_shadows)
        else:
            self.subtractor = cv2.createBackgroundSubtractorKNN(cfg.motion_history, threshold, cfg.motion_shadows)
        k = int(cfg.motion_kernel)
        self.kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)) if k > 1 else None
        self._prev: Optional[np.ndarray] = None  # the previous frame, small and grey (camera motion)
        self._to_ref = np.eye(3)  # this frame's pixels → the background model's (the reference view)
        self.camera_moved = 0
        """Frames on which the camera was found to move (``motion_camera: compensate``)."""
        self.camera_shift = 0.0
        """How far the last frame's view moved from the previous one, in pixels (the largest corner shift)."""
        self._hog = None  # motion_people: HOG, made on the first keyframe
        self._still: list[_StillPerson] = []  # motion_people: HOG's candidates where nothing moves
        self._people_stamp = -np.inf
        self._keyframes = 0
        self._frames = 0
        self._step: Optional[np.ndarray] = None  # the camera's motion since the previous frame (3x3), if any
        self._fg: Optional[np.ndarray] = None  # the previous frame's cleaned mask (movers kept out of the exposure)
        self._learned = 0  # frames the current background model has learned
        self.gain = 1.0
        """The last frame's brightness over the background model's (1: none measured or needed)."""

    def _camera(self, frame: np.ndarray) -> Optional[np.ndarray]:
        """The camera's motion since the previous frame as a 3x3 similarity (previous → this frame's
        pixels), from corners tracked on a small grey copy (movers are RANSAC's outliers); None when
        it cannot be told (too few corners)."""
        h, w = frame.shape[:2]
        step = max(1, round(max(h, w) / _CAMERA_SIDE))
        small = cv2.cvtColor(np.ascontiguousarray(frame[::step, ::step]), cv2.COLOR_RGB2GRAY)
        prev, self._prev = self._prev, small
        if prev is None or prev.shape != small.shape:
            return None
        pts = cv2.goodFeaturesToTrack(prev, 200, 0.01, 5)
        if pts is None or len(pts) < 8:
            return None
        nxt, ok, _ = cv2.calcOpticalFlowPyrLK(prev, small, pts, None, winSize=(15, 15), maxLevel=2)
        ok = ok.reshape(-1).astype(bool)
        if ok.sum() < 8:
            return None
        m, inliers = cv2.estimateAffinePartial2D(pts[ok], nxt[ok], method=cv2.RANSAC, ransacReprojThreshold=1.0)
        if m is None or inliers is None or inliers.sum() < 6:
            return None
        spread = pts[ok][inliers.reshape(-1).astype(bool)].reshape(-1, 2)
        extent = (spread.max(0) - spread.min(0)) / (small.shape[1], small.shape[0])
        if extent.min() < _SPREAD:  # the corners that agree are one object (a plain background): no camera
            return None
        m[:, 2] *= step
        return np.vstack([m, [0, 0, 1]])

    def mask(self, frame: np.ndarray) -> np.ndarray:
        """The cleaned foreground mask (uint8 0/255) of one HxWx3 RGB frame; updates the background.

        ``motion_camera: compensate``: the frame is first warped into the background model's view by the
        camera motion since that view was taken (pixels the model never saw are not foreground); when
        less than ``1 - _REANCHOR`` of the view is shared, the model starts again from this frame."""
        frame = np.ascontiguousarray(frame)
        h, w = frame.shape[:2]
        moved = None
        self._step = None
        if self.config.motion_camera == "compensate":
            step = self._camera(frame)
            self._step = step
            if step is not None:
                corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64)
                self.camera_shift = float(np.abs(corners @ step.T - corners).max())
                if self.camera_shift > _STILL_PX * max(h, w) / _CAMERA_SIDE:  # below: noise of a still camera
                    self.camera_moved += 1
                    self._to_ref = self._to_ref @ np.linalg.inv(step)
                shifted = corners @ self._to_ref.T
                if np.abs(shifted - corners).max() > _REANCHOR * min(h, w):
                    self._restart()
                elif not np.allclose(self._to_ref, np.eye(3), atol=1e-3):
                    moved = self._to_ref[:2]
        if moved is not None:
            seen = cv2.warpAffine(np.full((h, w), 255, np.uint8), moved, (w, h), flags=cv2.INTER_NEAREST)
            frame = cv2.warpAffine(frame, moved, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        frame = self._exposure_matched(frame, moved)
        raw = self.subtractor.apply(frame)
        self._learned += 1
        fg = np.where(raw == 255, 255, 0).astype(np.uint8)  # shadows (127) are not objects
        if moved is not None:  # back to this frame's pixels; what the model never saw is no object
            fg[cv2.erode(seen, np.ones((5, 5), np.uint8)) == 0] = 0
            fg = cv2.warpAffine(fg, cv2.invertAffineTransform(moved), (w, h), flags=cv2.INTER_NEAREST)
        if self.kernel is not None:
            fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, self.kernel)
            fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, self.kernel)
        self._fg = fg
        return fg

    def _exposure_matched(self, frame: np.ndarray, moved: Optional[np.ndarray]) -> np.ndarray:
        """The (already registered) frame scaled to the background model's brightness.  A camera's auto
        exposure brightens or darkens the whole view when a dark or bright object fills part of it; a plain
        wall's model, nearly noise-free, then turns to foreground in streaks.  The gain is the median
        brightness ratio over the pixels that were background on the previous frame (movers left out)."""
        if self._learned < _GAIN_WARMUP:
            return frame
        bg = self.subtractor.getBackgroundImage()
        if bg is None or bg.shape != frame.shape:
            return frame
        s = 4  # every 4th pixel each way: plenty for one median
        now = frame[::s, ::s].astype(np.float32).sum(2)
        was = bg[::s, ::s].astype(np.float32).sum(2)
        ok = (was > 60) & (now > 30)  # dark pixels' ratios are noise
        if self._fg is not None and self._fg.shape == frame.shape[:2]:
            fg = self._fg if moved is None else cv2.warpAffine(self._fg, moved, self._fg.shape[::-1],
                                                               flags=cv2.INTER_NEAREST)
            ok &= fg[::s, ::s] == 0
        if np.count_nonzero(ok) < 0.1 * ok.size:
            return frame
        self.gain = float(np.median(now[ok] / was[ok]))
        if not _GAIN_STEP <= abs(self.gain - 1.0) <= _GAIN_MAX:
            return frame
        return np.clip(frame.astype(np.float32) * (1.0 / self.gain), 0, 255).astype(np.uint8)

    def _restart(self) -> None:
        """A new background model from the current view (the camera left the old one)."""
        kept = {k: getattr(self, k) for k in ("_prev", "camera_moved", "camera_shift", "_hog", "_still",
                                                "_people_stamp", "_keyframes", "_frames", "_step")}
        self.reset()
        for k, v in kept.items():
            setattr(self, k, v)

    def apply(self, frame: np.ndarray, stamp: Optional[float] = None) -> Detections:
        """Boxes (pixel-edge xyxy) of the frame's moving blobs, score 1 (blobs carry no confidence), and
        with ``motion_people`` the people who stand still where no blob is (label 'person', HOG's score;
        see :meth:`_still_people`)."""
        fg = self.mask(frame)
        boxes = [] if np.count_nonzero(fg) > GLOBAL_CHANGE * fg.size else self.blobs(fg)
        moving = Detections(np.array(boxes, np.float32).reshape(-1, 4), np.ones(len(boxes), np.float32),
                            ["moving"] * len(boxes))
        if not self.config.motion_people:
            return moving
        people = self._still_people(frame, fg, moving.boxes, stamp)
        if len(people) and len(moving):
            from .tracker import _inside

            moving = moving.subset([_inside(b, people.boxes) < _STIRRING_BLOB for b in moving.boxes])
        return Detections(np.concatenate([moving.boxes, people.boxes]),
                          np.concatenate([moving.scores, people.scores]), moving.labels + people.labels)

    def _still_people(self, frame: np.ndarray, fg: np.ndarray, moving: np.ndarray,
                      stamp: Optional[float]) -> Detections:
        """People who stand still, whom the background model has absorbed (there from the first frame, or
        stopped).  HOG looks on keyframes (``rate_hz`` a second of ``stamp``, else every ``detect_every``-th
        frame): the whole frame every ``hog_scan_every``-th keyframe, in between only around its
        candidates.  A person HOG finds where no blob is becomes a candidate; it is proposed once HOG
        found it at the same place (IoU ``_STILL_IOU``) on two keyframes and something stirs in its box
        (foreground on ``_MIN_STIR`` of recent frames: HOG's false people -- poles, door frames -- are
        still for good), and dropped when HOG has missed it for more than ``max_lost`` keyframes and it
        no longer stirs.  Its box follows the camera's motion."""
        from .tracker import appearance, similarity

        cfg = self.config
        h, w = fg.shape
        for c in self._still:
            if self._step is not None:
                c.box = _moved_box(c.box, self._step, w, h)
            x0, y0, x1, y1 = (int(round(v)) for v in c.box)
            area = max((x1 - x0) * (y1 - y0), 1)
            stirs = np.count_nonzero(fg[max(y0, 0):y1, max(x0, 0):x1]) >= _STIRS * area
            c.stir += (float(stirs) - c.stir) / _STIR_MEMORY
            sim = similarity(c.hist, appearance(frame, c.box))
            c.looks = sim is not None and sim >= _LOOKS_ALIKE
        self._frames += 1
        due = (stamp is None or cfg.rate_hz <= 0) and (self._frames - 1) % cfg.detect_every == 0 or \
            (stamp is not None and cfg.rate_hz > 0 and stamp - self._people_stamp >= 1.0 / cfg.rate_hz - 1e-6)
        if due:
            self._people_stamp = -np.inf if stamp is None else float(stamp)
            if self._hog is None:
                from .hog import HogPeopleDetector, hog_available

                if not hog_available():
                    import warnings

                    warnings.warn("proposals_motion_people needs cv2.HOGDescriptor (OpenCV's contrib build): "
                                  "people standing still are not proposed; set it false to silence this")
                    self._hog = False
                else:
                    self._hog = HogPeopleDetector(cfg)
            if self._hog is False:
                return Detections.empty()
            whole = self._keyframes % cfg.hog_scan_every == 0
            self._keyframes += 1
            if whole:
                found = self._hog.detect_in(frame, [(0, 0, w, h)])
            elif self._still:
                regions = []
                for c in self._still:
                    x0, y0, x1, y1 = c.box
                    grow = 0.5 * max(y1 - y0, cfg.hog_person_min * h)
                    regions.append((max(0, int(x0 - grow)), max(0, int(y0 - grow)), min(w, int(x1 + grow) + 1),
                                    min(h, int(y1 + grow) + 1)))
                from .hog import _merge

                found = self._hog.detect_in(frame, [tuple(int(v) for v in r) for r in _merge(regions)])
            else:
                found = Detections.empty()
            self._update_still(frame, found, moving)
        out = [c for c in self._still if c.hits >= 2 and c.stir >= _MIN_STIR and c.looks]
        return Detections(np.array([c.box for c in out], np.float32).reshape(-1, 4),
                          np.array([c.score for c in out], np.float32), ["person"] * len(out))

    def _update_still(self, frame: np.ndarray, found: Detections, moving: np.ndarray) -> None:
        """Match one keyframe's HOG people to the still candidates; the others become candidates unless
        a moving blob already boxes them (a walker); a candidate that HOG missed more than ``max_lost``
        keyframes running and that no longer stirs or looks like itself is dropped (one HOG missed
        twice, before it was confirmed)."""
        from .tracker import appearance, greedy_match, iou_matrix

        boxes = np.array([c.box for c in self._still], np.float32).reshape(-1, 4)
        matched = dict(greedy_match(iou_matrix(boxes, found.boxes), _STILL_IOU))
        kept: list[_StillPerson] = []
        for r, c in enumerate(self._still):
            if r in matched:
                d = matched[r]
                c.box = 0.5 * (c.box + found.boxes[d])
                c.score = 0.5 * (c.score + float(found.scores[d]))
                c.hits, c.missed = c.hits + 1, 0
                seen = appearance(frame, c.box)
                if seen is not None:
                    c.hist = seen if c.hist is None else 0.8 * c.hist + 0.2 * seen
            else:
                c.missed += 1
            if c.hits < 2 and c.missed > 1:
                continue
            if c.hits >= 2 and c.missed > self.config.max_lost and (c.stir < _MIN_STIR or not c.looks):
                continue
            kept.append(c)
        fresh = np.array([d for d in range(len(found)) if d not in set(matched.values())], int)
        if len(fresh) and len(moving):  # a person a blob already boxes is a mover, not a still one
            fresh = fresh[iou_matrix(found.boxes[fresh], moving).max(1) < _SAME_OBJECT_IOU]
        kept += [_StillPerson(found.boxes[d].astype(np.float64), float(found.scores[d]),
                              appearance(frame, found.boxes[d])) for d in fresh]
        self._still = kept

    def blobs(self, fg: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Boxes of a foreground mask's objects: pieces closer than ``motion_merge`` of the frame height
        (a person's head, torso and legs, split where the clothes match the background) are one object;
        objects smaller than ``motion_min_area`` of the frame are dropped."""
        cfg = self.config
        h, w = fg.shape
        n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
        if n <= 1:
            return []
        group = np.arange(n)
        gap = int(round(cfg.motion_merge * h))
        if gap > 0:  # pieces whose masks meet once grown up and down by half the gap belong together
            k = np.ones((gap | 1, 1), np.uint8)  # vertical: a person stands; side by side are two people
            _, grouped = cv2.connectedComponents(cv2.dilate(fg, k), connectivity=8)
            ys, xs = np.nonzero(fg)
            first = np.full(n, -1)
            first[labels[ys, xs][::-1]] = grouped[ys, xs][::-1]  # any pixel of a piece names its group
            group = first
        out = []
        for g in np.unique(group[1:]):
            members = np.flatnonzero(group == g)
            members = members[members > 0]
            area = stats[members, cv2.CC_STAT_AREA].sum()
            if area < max(cfg.motion_min_area * h * w, 1):
                continue
            x0 = stats[members, cv2.CC_STAT_LEFT].min()
            y0 = stats[members, cv2.CC_STAT_TOP].min()
            x1 = (stats[members, cv2.CC_STAT_LEFT] + stats[members, cv2.CC_STAT_WIDTH]).max()
            y1 = (stats[members, cv2.CC_STAT_TOP] + stats[members, cv2.CC_STAT_HEIGHT]).max()
            out.extend(_split_side_by_side(fg, (int(x0), int(y0), int(x1), int(y1)), cfg.motion_split))
        return [out[k] for k in np.flatnonzero(~_parts(np.array(out, np.float32).reshape(-1, 4)))]


def _parts(boxes: np.ndarray, fragment: float = _FRAGMENT) -> np.ndarray:
    """Which of one frame's boxes are fragments or parts of a larger one: under ``fragment`` of the largest
    box's area, or at least ``_NESTED`` inside a larger box."""
    from .tracker import _inside

    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    out = np.zeros(len(boxes), bool)
    if len(boxes) < 2:
        return out
    out |= area < fragment * area.max()
    for k in np.flatnonzero(~out):
        larger = boxes[area > area[k]]
        out[k] = len(larger) > 0 and _inside(boxes[k], larger) >= _NESTED
    return out


class _StillPerson:
    """motion_people: one place where HOG saw a person no blob covers."""

    def __init__(self, box: np.ndarray, score: float, hist: Optional[np.ndarray]):
        self.box, self.score, self.hist = box, score, hist
        self.looks = True
        self.hits, self.missed = 1, 0
        # the share of recent frames on which something moved inside the box; it starts at the bar, so a
        # candidate in which nothing stirs until HOG's second look has fallen under it by then
        self.stir = _MIN_STIR


def _moved_box(box: np.ndarray, step: np.ndarray, w: int, h: int) -> np.ndarray:
    """The box's corners moved by a 3x3 camera motion; their bounding box, clipped to the frame."""
    x0, y0, x1, y1 = box
    pts = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]], np.float64) @ step.T
    return np.array([np.clip(pts[:, 0].min(), 0, w), np.clip(pts[:, 1].min(), 0, h),
                     np.clip(pts[:, 0].max(), 0, w), np.clip(pts[:, 1].max(), 0, h)], np.float64)


def _split_side_by_side(fg: np.ndarray, box: tuple[int, int, int, int], width: float) -> list[tuple[int, int, int, int]]:
    """An object at least ``width`` times as wide as tall whose foreground thins to under ``_SPLIT_VALLEY``
    of its fullest column somewhere in its middle is two objects side by side (people walking together).
    A uniformly coloured mover whose interior the model has absorbed looks the same (two edges): set
    ``motion_split`` 0 for such scenes."""
    x0, y0, x1, y1 = box
    if width <= 0 or x1 - x0 < width * (y1 - y0) or x1 - x0 < 6:
        return [box]
    cols = np.count_nonzero(fg[y0:y1, x0:x1], axis=0).astype(np.float32)
    lo, hi = int(0.25 * len(cols)), int(0.75 * len(cols))
    cut = lo + int(np.argmin(cols[lo:hi]))
    if cols[cut] > _SPLIT_VALLEY * cols.max():
        return [box]
    out = []
    for a, b in ((x0, x0 + cut), (x0 + cut + 1, x1)):
        rows = np.flatnonzero(np.count_nonzero(fg[y0:y1, a:b], axis=1))
        if len(rows):
            out.extend(_split_side_by_side(fg, (a, y0 + int(rows[0]), b, y0 + int(rows[-1]) + 1), width))
    return out or [box]


class MotionTracks(ProposalSource):
    """The live stage for ``source: motion``: every frame given to :meth:`add_frame` updates the
    background model and the tracker; ``tracks_for`` returns the movers of the window, whatever the
    phrase.  Same methods as :class:`~stvg_ros.proposals.live.LiveProposalStage` (the node uses
    either); synchronous (a frame costs a few ms) and thread-safe."""

    kind = "motion"

    def __init__(self, config: Optional[ProposalConfig] = None):
        self.config = config or ProposalConfig(source="motion")
        self.blobs = MotionBlobs(self.config)
        self.tracker = make_tracker(self.config.tracker, self.config, label="moving", id_prefix="moving#")
        self._lock = threading.Lock()
        self._stamps: list[float] = []
        self._frames = 0
        self._seconds = 0.0

    @classmethod
    def from_config(cls, config: ProposalConfig) -> "MotionTracks":
        return cls(config)

    @property
    def running_class(self) -> str:
        return "moving"

    def proposes(self, phrase: str) -> bool:
        """Movers of any class: every phrase."""
        return True

    @property
    def description(self) -> str:
        cfg = self.config
        return f"moving blobs ({cfg.motion_method}, history {cfg.motion_history} frames), any subject"

    def reset(self) -> None:
        with self._lock:
            self.blobs.reset()
            self.tracker.reset()
            self._stamps.clear()

    def close(self, timeout: float = 0.0) -> None:
        """Nothing runs in the background."""

    def add_frame(self, frame: np.ndarray, stamp: float) -> bool:
        """Update the background and the tracks with one HxWx3 uint8 RGB frame; False when it is not
        newer than the last one (ignored)."""
        stamp = float(stamp)
        with self._lock:
            if self._stamps and stamp <= self._stamps[-1]:
                return False
            t0 = time.perf_counter()
            self.tracker.update(stamp, self.blobs.apply(frame, stamp), frame=frame)
            self._stamps.append(stamp)
            start = stamp - self.config.window_s
            while self._stamps and self._stamps[0] < start:
                self._stamps.pop(0)
            self.tracker.prune_before(start)
            self._frames += 1
            self._seconds += time.perf_counter() - t0
        return True

    def _hold_seconds(self) -> float:
        """``hold_keyframes`` keyframe periods (1 / rate_hz, else ``detect_every`` frame gaps)."""
        cfg = self.config
        if cfg.rate_hz > 0:
            return cfg.hold_keyframes / cfg.rate_hz
        gaps = np.diff(self._stamps)
        return cfg.hold_keyframes * cfg.detect_every * float(np.median(gaps)) if len(gaps) else 0.0

    def tracks_for(self, stamps: Sequence[float], phrase: str = "") -> list[Track]:
        """The moving objects' tracks at ``stamps`` (``phrase`` ignored: motion has no class)."""
        with self._lock:
            hold = self._hold_seconds()
            interpolate = self.config.propagation == "interpolate"
            tracks = [t.sampled(stamps, hold, interpolate) for t in self.lasting()]
        return _rank(tracks, self.config.max_tracks)

    def lasting(self) -> list[Track]:
        """The tracker's tracks seen on ``motion_min_frames`` frames or more (the others are flickers), less
        those that are a fragment or a part of a larger track on ``_PART_OF`` of their frames or more (see
        :func:`_parts`: a hand's and an arm's pieces around a held object; people walking apart are never parts)."""
        tracks = [t for t in self.tracker.tracks() if len(t.boxes) >= self.config.motion_min_frames]
        if len(tracks) < 2:
            return tracks
        stamps = sorted({s for t in tracks for s in t.boxes})
        index = {s: i for i, s in enumerate(stamps)}
        boxes = np.full((len(tracks), len(stamps), 4), np.nan, np.float32)
        for r, t in enumerate(tracks):  # over its span (interpolated), as it is proposed
            for s, b in t.at(stamps).items():
                boxes[r, index[s]] = b
        part = np.zeros(len(tracks))
        for c in range(len(stamps)):
            rows = np.flatnonzero(~np.isnan(boxes[:, c, 0]))
            if len(rows) > 1:
                part[rows] += _parts(boxes[rows, c], _PART_FRAGMENT)
        seen = (~np.isnan(boxes[:, :, 0])).sum(1)
        return [t for t, p, n in zip(tracks, part, seen) if p < _PART_OF * n]

    def stats(self) -> dict:
        with self._lock:
            return {"frames_in": self._frames, "stage_ms_per_frame": 1000.0 * self._seconds / max(self._frames, 1),
                    "tracks": len(self.tracker.tracks()), "running_class": self.running_class}


def motion_tracks(frames: Sequence[np.ndarray], config: Optional[ProposalConfig] = None,
                  stamps: Optional[Sequence[float]] = None) -> list[Track]:
    """Offline: the movers of a clip, evaluated at every frame (stamps default to frame indices)."""
    cfg = config or ProposalConfig(source="motion")
    stamps = list(range(len(frames))) if stamps is None else list(stamps)
    source = MotionTracks(cfg.replace(window_s=float("inf")) if np.isfinite(cfg.window_s) else cfg)
    for f, s in zip(frames, stamps):
        source.add_frame(f, s)
    return source.tracks_for(stamps)
