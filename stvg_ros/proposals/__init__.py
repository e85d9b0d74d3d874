"""Object-track proposals: the paper's detector + tracker stage, and the interface every source shares.

The grounding picks one of a clip's object tracks and the time span; the tracks come from a
:class:`ProposalSource`.  Three sources feed the same interface:

* :class:`~stvg_ros.proposals.live.LiveProposalStage` -- an open-vocabulary detector every N frames
  plus a tracker, run as frames arrive (the node's background stage, also used offline);
* :class:`ExternalTracks` -- detections pushed by someone else (the node's ``detections`` topic),
  linked into tracks by our tracker when they carry no track id;
* :class:`StaticTracks` -- tracks known in advance (a proposals JSON file, see ``docs/proposals.md``).

A :class:`~stvg_ros.proposals.tracks.Track` keeps boxes only where they were observed (detection keyframes); :meth:`Track.at`
evaluates it at any stamps (linear interpolation between observations, held for ``hold`` seconds
beyond them), which is how a source answers for the frames the grounder samples.

This module imports neither torch nor transformers; the detector is loaded on demand.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Hashable, Iterable, Mapping, Optional, Sequence

import numpy as np

from ..boxes import Box
from ..grounding.result import Proposals
from ..config import ProposalConfig, ProposalConfigError
from .tracker import make_tracker
from .tracks import Detections, Track

__all__ = [
    "Track", "ProposalSource", "StaticTracks", "ExternalTracks", "ProposalConfig", "ProposalConfigError",
    "Detections", "to_proposals", "subject_phrase",
]


def to_proposals(tracks: Iterable[Track]) -> Proposals:
    """Tracks as the grounder's ``proposals`` argument (track id → stamp → box); empty tracks dropped."""
    return {t.id: dict(t.boxes) for t in tracks if t.boxes}


def subject_phrase(text: str, default_class: str = "person", synonyms: Optional[Mapping[str, str]] = None) -> str:
    """The detector phrase for a query or attribute sub-query (see :mod:`stvg_ros.proposals.subject`)."""
    from .subject import subject_phrase as _subject_phrase

    return _subject_phrase(text, default_class=default_class, synonyms=synonyms)


class ProposalSource(ABC):
    """Where the grounder's candidate tracks come from.

    ``tracks_for(stamps, phrase)`` returns the tracks of the object class ``phrase`` (a detector
    phrase, e.g. from :func:`subject_phrase`) evaluated at exactly ``stamps`` (the frames given to
    ``Grounder.ground``); a track with no box at any of those stamps is left out.  Sources that
    cannot filter by class (precomputed tracks) ignore ``phrase``.
    """

    @abstractmethod
    def tracks_for(self, stamps: Sequence[float], phrase: str = "") -> list[Track]:
        """Tracks of ``phrase`` at ``stamps``, best first."""

    def proposals_for(self, stamps: Sequence[float], phrase: str = "") -> Proposals:
        """:meth:`tracks_for` in the form ``Grounder.ground(..., proposals=...)`` takes."""
        return to_proposals(self.tracks_for(stamps, phrase))


def _rank(tracks: Iterable[Track], max_tracks: int) -> list[Track]:
    """Non-empty tracks, longest and most confident first, at most ``max_tracks`` (0 = all)."""
    ranked = sorted((t for t in tracks if t.boxes), key=lambda t: (len(t.boxes), t.score), reverse=True)
    return ranked[:max_tracks] if max_tracks > 0 else ranked


def _label_matches(label: str, phrase: str, synonyms: Optional[Mapping[str, str]] = None) -> bool:
    from .subject import canonical_class

    if not phrase or not label:
        return True
    return canonical_class(label, synonyms) == canonical_class(phrase, synonyms)


class StaticTracks(ProposalSource):
    """Tracks known in advance (e.g. one video's entry of a proposals file, re-keyed to stamps).

    ``phrase`` is ignored unless ``filter_by_label`` and the tracks carry labels: precomputed
    proposals were made for the query's own subject already.  ``exact``: a track answers only for
    stamps it observed (no interpolation, no hold), for tracks that already hold a box on every
    frame of their span (a proposals file's, see ``stvg-proposals``).
    """

    def __init__(self, tracks: Iterable[Track], hold: float = 0.0, interpolate: bool = True,
                 max_tracks: int = 0, filter_by_label: bool = False, exact: bool = False):
        self.tracks = list(tracks)
        self.hold, self.interpolate, self.max_tracks = hold, interpolate, max_tracks
        self.filter_by_label, self.exact = filter_by_label, exact

    @classmethod
    def from_frame_indexed(cls, tracks: Mapping[Hashable, Mapping[int, Box]] | Mapping[Hashable, object],
                           stamp_of_frame, scale: float = 1.0, **kwargs) -> "StaticTracks":
        """Tracks keyed by frame index (a proposals-file entry: ``{id: {frame: box}}`` or frame-keyed
        :class:`Track` objects, as ``stvg_ros.evaluation.datasets.load_proposals`` reads them) → stamps with
        ``stamp_of_frame(index)`` (e.g. ``i / fps``), or a mapping frame → stamp (frames it lacks are
        left out, e.g. those a clip did not sample); boxes multiplied by ``scale`` (decoded size /
        annotated size)."""
        lookup = stamp_of_frame.get if isinstance(stamp_of_frame, Mapping) else stamp_of_frame
        out = []
        for tid, t in tracks.items():
            boxes = getattr(t, "boxes", t)
            label = str(getattr(t, "label", "") or "")
            scores = getattr(t, "scores", None)
            score = float(getattr(t, "score", 1.0))
            track = Track(tid, label=label)
            for f, b in boxes.items():  # type: ignore[union-attr]
                stamp = lookup(int(f))
                if stamp is not None:
                    track.observe(stamp, [v * scale for v in b], scores.get(f, score) if scores else score)
            out.append(track)
        return cls(out, **kwargs)

    def tracks_for(self, stamps: Sequence[float], phrase: str = "") -> list[Track]:
        chosen = [t for t in self.tracks if not self.filter_by_label or _label_matches(t.label, phrase)]
        if self.exact:
            wanted = [float(s) for s in stamps]
            sampled = (Track(t.id, {s: t.boxes[s] for s in wanted if s in t.boxes},
                             {s: t.scores.get(s, t.score) for s in wanted if s in t.boxes}, t.label) for t in chosen)
        else:
            sampled = (t.sampled(stamps, self.hold, self.interpolate) for t in chosen)
        return _rank(sampled, self.max_tracks)


class ExternalTracks(ProposalSource):
    """Detections from outside (the node's ``detections`` topic), kept for a sliding window.

    Detections with a track id extend that track (the id is kept as given, so answers name the
    caller's own track); those without are linked into tracks by our own tracker (one per label,
    ids ``label#N``).  ``tracks_for`` keeps tracks whose label matches the phrase's class when any
    does, otherwise all of them.  Boxes stay in the pixels they were given in.

    Time only moves forward here: an untracked detection not newer than the last one of its label
    is dropped (the tracker links in time order); a backwards jump of the stream is its owner's to detect,
    which calls :meth:`reset`.  Thread-safe: ``add`` may run on the executor thread.
    """

    def __init__(self, window_s: float = 30.0, hold: float = 0.5, max_tracks: int = 16,
                 tracker: str = "bytetrack", synonyms: Optional[Mapping[str, str]] = None):
        self.window_s, self.hold, self.max_tracks = window_s, hold, max_tracks
        self.synonyms = synonyms
        self._tracker_kind = tracker
        self._make_tracker = make_tracker
        self._tracks: dict[str, Track] = {}
        self._trackers: dict[str, object] = {}
        self._tracked_upto: dict[str, float] = {}
        self._latest = -np.inf
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget every detection and track (the stream's time jumped back)."""
        with self._lock:
            self._tracks.clear()
            self._trackers.clear()
            self._tracked_upto.clear()
            self._latest = -np.inf

    def __len__(self) -> int:
        """Tracks held (given ids and our own)."""
        with self._lock:
            return len(self._tracks) + sum(len(t.tracks()) for t in self._trackers.values())  # type: ignore

    def add(self, stamp: float, detections: Detections) -> None:
        stamp = float(stamp)
        with self._lock:
            self._latest = max(stamp, self._latest)
            ids = detections.track_ids or [""] * len(detections)
            for i, tid in enumerate(ids):
                if tid:
                    track = self._tracks.setdefault(tid, Track(tid, label=detections.labels[i]))
                    track.observe(stamp, detections.boxes[i], float(detections.scores[i]))
            by_label: dict[str, list[int]] = {}
            for i, tid in enumerate(ids):
                if not tid:
                    by_label.setdefault(detections.labels[i], []).append(i)
            for label, idx in by_label.items():
                if stamp <= self._tracked_upto.get(label, -np.inf):
                    continue  # late for our tracker, which links in time order
                self._tracked_upto[label] = stamp
                tracker = self._trackers.get(label)
                if tracker is None:
                    tracker = self._trackers[label] = self._make_tracker(self._tracker_kind, label=label)
                tracker.update(stamp, detections.subset(idx))  # type: ignore[attr-defined]
            self._prune_locked()

    def _prune_locked(self) -> None:
        start = self._latest - self.window_s
        for key in list(self._tracks):
            self._tracks[key].prune_before(start)
            if not self._tracks[key].boxes:
                del self._tracks[key]
        for tracker in self._trackers.values():
            tracker.prune_before(start)  # type: ignore[attr-defined]

    def tracks_for(self, stamps: Sequence[float], phrase: str = "") -> list[Track]:
        with self._lock:
            tracks = list(self._tracks.values())
            for label, tracker in self._trackers.items():
                tracks.extend(tracker.tracks())  # type: ignore[attr-defined]
            matching = [t for t in tracks if _label_matches(t.label, phrase, self.synonyms)]
            chosen = matching if matching else tracks
            return _rank((t.sampled(stamps, self.hold) for t in chosen), self.max_tracks)
