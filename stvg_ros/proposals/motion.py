"""Moving-object tracks for a still camera: background subtraction, blobs, our tracker.

No weights and no object class: whatever moves becomes a track, so ``tracks_for`` ignores the
phrase (the MLLM chooses among the movers).  OpenCV's MOG2 or KNN subtractor keeps a per-pixel
background model; its foreground mask (shadows -- darker copies of the background -- dropped) is
opened (specks) and closed (holes), its connected blobs above ``motion_min_area`` become boxes, and
:class:`~stvg_ros.proposals.tracker.ByteTracker` links them frame to frame.

What it cannot do, by construction: a camera that moves or shakes turns the whole image into
foreground; an object that stands still for about ``motion_history`` frames fades into the
background (its track ends, held ``hold_keyframes`` periods); an object present from the first
frame and never moving is never seen; where it starts to move the uncovered background shows as a
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

    def mask(self, frame: np.ndarray) -> np.ndarray:
        """The cleaned foreground mask (uint8 0/255) of one HxWx3 RGB frame; updates the background."""
        raw = self.subtractor.apply(np.ascontiguousarray(frame))
        fg = np.where(raw == 255, 255, 0).astype(np.uint8)  # shadows (127) are not objects
        if self.kernel is not None:
            fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, self.kernel)
            fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, self.kernel)
        return fg

    def apply(self, frame: np.ndarray) -> Detections:
        """Boxes (pixel-edge xyxy) of the frame's moving blobs; score 1 (blobs carry no confidence)."""
        fg = self.mask(frame)
        if np.count_nonzero(fg) > GLOBAL_CHANGE * fg.size:
            return Detections.empty()
        n, _, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
        min_area = self.config.motion_min_area * fg.shape[0] * fg.shape[1]
        boxes = [(x, y, x + w, y + h) for x, y, w, h, area in stats[1:n] if area >= max(min_area, 1)]
        return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.ones(len(boxes), np.float32),
                          ["moving"] * len(boxes))


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
            self.tracker.update(stamp, self.blobs.apply(frame))
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
            tracks = [t.sampled(stamps, hold, interpolate) for t in self.tracker.tracks()]
        return _rank(tracks, self.config.max_tracks)

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
