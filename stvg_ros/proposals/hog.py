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
PERSON = "person"


def hog_available() -> bool:
    """Whether this OpenCV build has ``cv2.HOGDescriptor`` (opencv-contrib-python-headless does)."""
    return hasattr(cv2, "HOGDescriptor")


class HogPeopleDetector:
    """``detect(frames, phrase, min_score)`` → one :class:`Detections` per RGB frame; only for person
    phrases (others: empty).  Scores are ``1 - exp(-margin)`` of the SVM margin, in [0, 1)."""

    kind = "hog"

    def __init__(self, config: Optional[ProposalConfig] = None):
        if not hog_available():
            raise ProposalConfigError(
                f"proposals_source=hog needs cv2.HOGDescriptor, which this OpenCV ({cv2.__version__}) lacks: "
                "OpenCV 5 keeps it in the contrib build; replace opencv-python-headless by "
                "opencv-contrib-python-headless of the same version (never install both)")
        self.config = config or ProposalConfig(source="hog")
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor.getDefaultPeopleDetector())
        self.box_threshold = self.config.box_threshold
        self.calls = 0
        self.seconds = 0.0

    def applies_to(self, phrase: str) -> bool:
        return canonical_class(phrase or PERSON, self.config.synonyms) == PERSON

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

    def _one(self, frame: np.ndarray, min_score: float) -> Detections:
        cfg = self.config
        h, w = frame.shape[:2]
        scale = cfg.hog_upscale
        image = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
        if scale != 1.0:
            image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_LINEAR)
        if image.shape[0] < _WINDOW[1] or image.shape[1] < _WINDOW[0]:
            return Detections.empty()  # smaller than one window: raise hog_upscale
        rects, weights = self.hog.detectMultiScale(image, winStride=(8, 8), padding=(8, 8), scale=cfg.hog_scale)
        if len(rects) == 0:
            return Detections.empty()
        rects = np.asarray(rects, np.float32).reshape(-1, 4)
        margins = np.asarray(weights, np.float32).reshape(-1)
        mx, my = rects[:, 2] * _MARGIN[0] / _WINDOW[0], rects[:, 3] * _MARGIN[1] / _WINDOW[1]
        boxes = np.stack([rects[:, 0] + mx, rects[:, 1] + my, rects[:, 0] + rects[:, 2] - mx,
                          rects[:, 1] + rects[:, 3] - my], 1) / scale
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
        scores = 1.0 - np.exp(-np.maximum(margins, 0.0))
        keep = _nms(boxes, scores, cfg.nms_iou) if len(boxes) > 1 else np.arange(len(boxes))
        keep = [i for i in keep if scores[i] >= min_score]
        return Detections(boxes[keep], scores[keep], [PERSON] * len(keep))


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    from .tracker import iou_matrix

    order = list(np.argsort(-scores))
    overlaps = iou_matrix(boxes, boxes)
    keep: list[int] = []
    for i in order:
        if all(overlaps[i, k] <= iou for k in keep):
            keep.append(int(i))
    return keep
