"""People from OpenCV's HOG detector (Dalal & Triggs 2005): person proposals with no download.

The linear SVM over HOG features ships inside OpenCV (``HOGDescriptor.getDefaultPeopleDetector``),
so nothing is fetched.  OpenCV 5 moved ``HOGDescriptor`` out of the main modules: the plain
``opencv-python-headless`` 5.x wheel lacks it, ``opencv-contrib-python-headless`` (same version, a
superset) has it; :func:`hog_available` tells which one is installed.

:class:`HogPeopleDetector` has the detector interface of
:class:`~stvg_ros.proposals.detector.ZeroShotDetector` (``detect(frames, phrase, min_score)``), so the
live stage and ``stvg-proposals`` run it like the transformers detectors; a phrase whose class is
not ``person`` (:mod:`stvg_ros.proposals.subject`) gets no detections, and the grounder then draws its
own proposal-free boxes.  The detector was trained on upright, whole pedestrians at least ~100 px
tall (INRIA): seated, partly visible, small or lying people are mostly missed.
"""

from __future__ import annotations

import math
import time
from typing import Optional, Sequence

import cv2
import numpy as np

from .tracks import Detections
from ..config import ProposalConfig, ProposalConfigError
from .subject import canonical_class

#: the 64x128 INRIA training window shows a person about 32 x 96 px in its centre: detections are
#: shrunk to that part (16 px margins on each side of the window), which is the person's box
_WINDOW = (64, 128)
_MARGIN = (16, 16)
#: the person's height in the window (128 - 2 * 16 px)
_PERSON_PX = _WINDOW[1] - 2 * _MARGIN[1]
#: the motion model that picks the regions between whole-frame scans sees frames at about this size (px)
_MOTION_SIDE = 192
#: frames (calls) that model remembers
_MOTION_HISTORY = 50
PERSON = "person"
#: pyramid step of the small-person pass (hog_person_small): it spans only hog_person_small..hog_person_min
_SMALL_STEP = 1.2
#: a moving part at least this much inside a person the main pass found is that person's (no small-pass crop)
_HELD = 0.5


def hog_available() -> bool:
    """Whether this OpenCV build has ``cv2.HOGDescriptor`` (opencv-contrib-python-headless does)."""
    return hasattr(cv2, "HOGDescriptor")


class HogPeopleDetector:
    """``detect(frames, phrase, min_score)`` → one :class:`Detections` per RGB frame; only for person
    phrases (others: empty).  Scores are ``1 - exp(-margin)`` of the SVM margin, in [0, 1).

    The window sees a person about 96 px tall, so each frame is first enlarged so that a person of
    ``hog_person_min`` of the frame height fills it, and the pyramid stops at ``hog_person_max``: the
    people searched are a share of the frame whatever its size (the node's downscaled frames and the
    CLI's full-size ones alike).  To stay cheap, the whole frame is scanned every ``hog_scan_every``-th
    frame (and on the first, after a resize or a scene change); in between only around what moved
    since the last frame (a small MOG2 model of the frames given) and around the last detections.
    So call it in time order per stream, and :meth:`reset` between streams (the live stage does)."""

    kind = "hog"

    def __init__(self, config: Optional[ProposalConfig] = None):
        if not hog_available():
            raise ProposalConfigError(
                f"proposals_source=hog needs cv2.HOGDescriptor, which this OpenCV ({cv2.__version__}) lacks: "
                "OpenCV 5 keeps it in the contrib build; replace opencv-python-headless by "
                "opencv-contrib-python-headless of the same version (never install both)")
        self.config = config or ProposalConfig(source="hog")
        cfg = self.config
        levels = max(1, math.ceil(math.log(cfg.hog_person_max / cfg.hog_person_min) / math.log(cfg.hog_scale)) + 1)
        # (winSize, blockSize, blockStride, cellSize, nbins, derivAperture, winSigma, histogramNormType,
        #  L2HysThreshold, gammaCorrection, nlevels): OpenCV's defaults but for the pyramid's depth
        self.hog = cv2.HOGDescriptor(_WINDOW, (16, 16), (8, 8), (8, 8), 9, 1, -1.0, 0, 0.2, True, levels)
        self.hog.setSVMDetector(cv2.HOGDescriptor.getDefaultPeopleDetector())
        self.small_hog = None  # hog_person_small: the pyramid from that size up to hog_person_min
        if 0 < cfg.hog_person_small < cfg.hog_person_min:
            levels = max(1, math.ceil(math.log(cfg.hog_person_min / cfg.hog_person_small) / math.log(_SMALL_STEP)) + 1)
            self.small_hog = cv2.HOGDescriptor(_WINDOW, (16, 16), (8, 8), (8, 8), 9, 1, -1.0, 0, 0.2, True, levels)
            self.small_hog.setSVMDetector(cv2.HOGDescriptor.getDefaultPeopleDetector())
        self.box_threshold = self.config.box_threshold
        self.calls = 0
        self.small_crops = 0
        """Enlarged crops the small-person pass (``hog_person_small``) has searched so far."""
        self.seconds = 0.0
        self.scanned_area = 0.0
        """Share of the frames' area scanned so far, summed over frames (whole-frame scans count 1)."""
        self.reset()

    def reset(self) -> None:
        """Forget the previous frames (a new stream): the next frame is scanned whole."""
        self._motion = None
        self._shape: Optional[tuple[int, int]] = None
        self._last = np.zeros((0, 4), np.float32)
        self._until_scan = 0
        self._small: list[tuple[int, int, int, int]] = []  # moving parts where small people may walk (hog_person_small)

    def applies_to(self, phrase: str) -> bool:
        return canonical_class(phrase or PERSON, self.config.synonyms) == PERSON

    def upscale(self, height: int) -> float:
        """The factor a frame ``height`` px tall is resized by: ``hog_upscale``, else (0) the one that
        makes a person of ``hog_person_min`` of the height as tall as the window's person."""
        cfg = self.config
        return cfg.hog_upscale or _PERSON_PX / (cfg.hog_person_min * height)

    def detect(self, frames: Sequence[np.ndarray], phrase: str = PERSON,
               min_score: Optional[float] = None) -> list[Detections]:
        if not self.applies_to(phrase):
            return [Detections.empty() for _ in frames]
        min_score = self.box_threshold if min_score is None else min_score
        t0 = time.perf_counter()
        out = [self._one(f, min_score) for f in frames]
        self.calls += len(frames)
        self.seconds += time.perf_counter() - t0
        return out

    def detect_in(self, frame: np.ndarray, regions: Sequence[tuple[int, int, int, int]],
                  min_score: Optional[float] = None) -> Detections:
        """People inside the given pixel rectangles of one RGB frame only (the caller chooses where to
        look: ``motion_people`` re-checks its candidates); the stream's state is left as it is."""
        min_score = self.box_threshold if min_score is None else min_score
        t0 = time.perf_counter()
        last = self._last
        out = self._one(frame, min_score, [tuple(int(v) for v in r) for r in regions])
        self._last = last
        self.calls += 1
        self.seconds += time.perf_counter() - t0
        return out

    def _one(self, frame: np.ndarray, min_score: float,
             regions: Optional[Sequence[tuple[int, int, int, int]]] = None) -> Detections:
        cfg = self.config
        h, w = frame.shape[:2]
        gray = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
        moving: list = []
        if regions is None:
            regions = self._regions(gray)
            moving = self._small if self.small_hog is not None else []
        found_boxes, found_margins = [], []
        passes = [(self.hog, self.upscale(h), regions, np.inf)]
        if moving:  # people shorter than hog_person_min, searched only where something moved
            passes.append((self.small_hog, _PERSON_PX / (cfg.hog_person_small * h), moving,
                           1.2 * cfg.hog_person_min * h))
        for k, (hog, scale, where, tallest) in enumerate(passes):
            step = _SMALL_STEP if k else cfg.hog_scale
            big = np.concatenate(found_boxes) if k and found_boxes else np.zeros((0, 4), np.float32)
            if k:  # small people are not parts of the larger ones found: neither are the moving parts inside them
                where = self._small_regions(where, big, h, w)
                self.small_crops += len(where)
            for x0, y0, x1, y1 in where:
                crop = gray[y0:y1, x0:x1]
                size = (round((x1 - x0) * scale), round((y1 - y0) * scale))
                if size[0] < _WINDOW[0] or size[1] < _WINDOW[1]:
                    continue  # smaller than one window: hog_person_min is too large for this frame
                image = cv2.resize(crop, size, interpolation=cv2.INTER_LINEAR) if scale != 1.0 else crop
                rects, weights = hog.detectMultiScale(image, winStride=(8, 8), padding=(8, 8), scale=step)
                if len(rects):
                    rects = np.asarray(rects, np.float32).reshape(-1, 4)
                    mx, my = rects[:, 2] * _MARGIN[0] / _WINDOW[0], rects[:, 3] * _MARGIN[1] / _WINDOW[1]
                    boxes = np.stack([rects[:, 0] + mx, rects[:, 1] + my, rects[:, 0] + rects[:, 2] - mx,
                                      rects[:, 1] + rects[:, 3] - my], 1) / scale + (x0, y0, x0, y0)
                    keep = boxes[:, 3] - boxes[:, 1] <= tallest
                    if len(big):
                        from .tracker import _inside

                        keep &= np.array([_inside(b, big) < 0.3 for b in boxes], bool)
                    found_boxes.append(boxes[keep])
                    found_margins.append(np.asarray(weights, np.float32).reshape(-1)[keep])
        self.scanned_area += sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in regions) / float(h * w)
        if not found_boxes:
            self._last = np.zeros((0, 4), np.float32)
            return Detections.empty()
        boxes, margins = np.concatenate(found_boxes).astype(np.float32), np.concatenate(found_margins)
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
        scores = 1.0 - np.exp(-np.maximum(margins, 0.0))
        keep = _nms(boxes, scores, cfg.nms_iou) if len(boxes) > 1 else np.arange(len(boxes))
        keep = [i for i in keep if scores[i] >= min_score]
        self._last = boxes[keep]
        return Detections(boxes[keep], scores[keep], [PERSON] * len(keep))

    def _regions(self, gray: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Pixel rectangles of the frame to scan: all of it, or around motion and the last detections."""
        cfg = self.config
        h, w = gray.shape
        step = max(1, round(max(h, w) / _MOTION_SIDE))
        small = gray[::step, ::step]
        if self._shape != (h, w):
            self.reset()
            self._shape = (h, w)
            self._motion = cv2.createBackgroundSubtractorMOG2(_MOTION_HISTORY, 16.0, False)
        fg = self._motion.apply(small)
        changed = np.count_nonzero(fg) > 0.5 * fg.size
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
        n, _, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
        boxes = [(x * step, y * step, (x + bw) * step, (y + bh) * step) for x, y, bw, bh, _ in stats[1:n]]
        # hog_person_small: around moving parts no taller than the smallest person of the main pass, reaching
        # one small person beyond them
        self._small = []
        if self.small_hog is not None and not changed:
            self._small = [b for b in boxes if b[3] - b[1] <= cfg.hog_person_min * h]
        # the first frame, every hog_scan_every-th, and one where most pixels changed (a scene change or a
        # moving camera) are scanned whole
        if self._until_scan <= 0 or changed:
            self._until_scan = cfg.hog_scan_every - 1
            return [(0, 0, w, h)]
        self._until_scan -= 1
        boxes += [tuple(b) for b in self._last.tolist()]
        # a region must hold a whole person of the smallest size (a moving part may be a leg or an arm)
        # and reach half a person beyond what moved; overlapping regions are merged
        reach = cfg.hog_person_min * h
        grown = [(x0 - reach, y0 - reach, x1 + reach, y1 + reach) for x0, y0, x1, y1 in boxes]
        return [(max(0, int(x0)), max(0, int(y0)), min(w, int(math.ceil(x1))), min(h, int(math.ceil(y1))))
                for x0, y0, x1, y1 in _merge(grown)]


    def _small_regions(self, moving: list, big: np.ndarray, h: int, w: int) -> list[tuple[int, int, int, int]]:
        """The small-person pass's crops: around the moving parts that no person of the main pass holds
        (a leg or an arm of one: about half of vtest's moving parts), reaching one small person beyond them."""
        if len(big):
            from .tracker import _inside

            moving = [b for b in moving if _inside(np.asarray(b, np.float32), big) < _HELD]
        reach = self.config.hog_person_small * h
        return [(max(0, int(x0 - reach)), max(0, int(y0 - reach)), min(w, int(x1 + reach)), min(h, int(y1 + reach)))
                for x0, y0, x1, y1 in _merge(moving)]


def _merge(boxes: list[tuple[float, float, float, float]]) -> list[tuple[float, float, float, float]]:
    """Union of overlapping rectangles, repeated until none overlap."""
    boxes = list(boxes)
    merged = True
    while merged:
        merged = False
        out: list[tuple[float, float, float, float]] = []
        for b in boxes:
            for k, o in enumerate(out):
                if b[0] < o[2] and o[0] < b[2] and b[1] < o[3] and o[1] < b[3]:
                    out[k] = (min(b[0], o[0]), min(b[1], o[1]), max(b[2], o[2]), max(b[3], o[3]))
                    merged = True
                    break
            else:
                out.append(b)
        boxes = out
    return boxes


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    from .tracker import iou_matrix

    order = list(np.argsort(-scores))
    overlaps = iou_matrix(boxes, boxes)
    keep: list[int] = []
    for i in order:
        if all(overlaps[i, k] <= iou for k in keep):
            keep.append(int(i))
    return keep
