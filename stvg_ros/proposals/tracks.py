"""A frame's detections and one object's track: the data every proposal source, detector and tracker
shares (its own module so the tracker and the sources can build them without importing each other)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable, Iterable, Optional, Sequence

import numpy as np

from ..boxes import Box

__all__ = ["Detections", "Track"]


@dataclass
class Detections:
    """One frame's detections: ``boxes`` (N, 4) xyxy pixels, ``scores`` (N,), ``labels`` (N strings),
    ``track_ids`` (N strings, "" = unknown) when the detector tracks by itself."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: list[str] = field(default_factory=list)
    track_ids: Optional[list[str]] = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if len(self.scores) != len(self.boxes):
            raise ValueError(f"{len(self.boxes)} boxes but {len(self.scores)} scores: give one score per box")
        if not self.labels:
            self.labels = [""] * len(self.boxes)

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))

    def subset(self, keep) -> "Detections":
        idx = np.flatnonzero(np.asarray(keep)) if np.asarray(keep).dtype == bool else np.asarray(keep, int)
        return Detections(self.boxes[idx], self.scores[idx], [self.labels[i] for i in idx],
                          None if self.track_ids is None else [self.track_ids[i] for i in idx])


@dataclass
class Track:
    """One object through time: boxes and scores where it was observed, keyed by stamp (seconds,
    or frame index offline).  ``score`` is the mean observed detection score."""

    id: Hashable
    boxes: dict[float, Box] = field(default_factory=dict)
    scores: dict[float, float] = field(default_factory=dict)
    label: str = ""

    @property
    def score(self) -> float:
        return float(np.mean(list(self.scores.values()))) if self.scores else 0.0

    @property
    def start(self) -> float:
        return min(self.boxes)

    @property
    def end(self) -> float:
        return max(self.boxes)

    def observe(self, stamp: float, box: Sequence[float], score: float = 1.0) -> None:
        self.boxes[float(stamp)] = tuple(float(v) for v in box)  # type: ignore[assignment]
        self.scores[float(stamp)] = float(score)

    def prune_before(self, stamp: float) -> None:
        """Forget observations older than ``stamp`` (the live window slid past them)."""
        for s in [s for s in self.boxes if s < stamp]:
            del self.boxes[s]
            self.scores.pop(s, None)

    def at(self, stamps: Iterable[float], hold: float = 0.0, interpolate: bool = True) -> dict[float, Box]:
        """Boxes at ``stamps``: exact observations, linear interpolation between two observations
        (``interpolate=False``: the latest observation is held), and the first/last observation held
        for up to ``hold`` before/after the track's span.  Stamps outside that get no box."""
        if not self.boxes:
            return {}
        times = np.fromiter((float(s) for s in stamps), dtype=np.float64)
        if times.size == 0:
            return {}
        keys = np.array(sorted(self.boxes), dtype=np.float64)
        values = np.array([self.boxes[k] for k in keys], dtype=np.float64)  # (K, 4)
        near = (times >= keys[0] - hold) & (times <= keys[-1] + hold)
        times = times[near]
        if interpolate:  # np.interp holds the end values outside [first, last]: the hold
            coords = np.stack([np.interp(times, keys, values[:, j]) for j in range(4)], axis=1)
        else:
            coords = values[np.clip(np.searchsorted(keys, times, side="right") - 1, 0, len(keys) - 1)]
        return {float(t): tuple(float(v) for v in c) for t, c in zip(times, coords)}  # type: ignore[misc]

    def sampled(self, stamps: Iterable[float], hold: float = 0.0, interpolate: bool = True) -> "Track":
        """This track evaluated at ``stamps`` (observed scores kept where stamps coincide)."""
        boxes = self.at(stamps, hold, interpolate)
        mean = self.score
        scores = {s: self.scores.get(s, mean) for s in boxes}
        return Track(self.id, boxes, scores, self.label)
