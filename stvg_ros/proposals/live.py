"""The live proposal stage: detection + tracking as frames arrive, so queries find tracks ready.

The node calls :meth:`LiveProposalStage.add_frame` for every frame it keeps and
:meth:`LiveProposalStage.tracks_for` when a query comes.  At most ``rate_hz`` frames per second
(or every ``detect_every``-th frame) become *keyframes*: each is stored for the window and
a background thread runs the detector on it for the *running class* (``default_class``) and links
the detections into tracks.  A query whose subject is the running class is then answered from
those tracks without any detection; another subject runs the detector over the window's stored
keyframes once, and its tracks are cached per phrase and extended with later keyframes only.

ROS-free and thread-safe: ``add_frame`` may be called from the executor thread while
``tracks_for`` runs on the grounding thread.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from . import ProposalSource, _rank
from .tracks import Detections, Track
from ..config import ProposalConfig
from .subject import canonical_class
from .tracker import ByteTracker, make_tracker


@dataclass
class _PhraseTracks:
    """One phrase's tracker and how far through the keyframes it has got."""

    phrase: str
    tracker: ByteTracker
    last_stamp: float = -np.inf
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class StageTimes:
    """Accumulated stage cost (seconds) and counts, for ms/frame reports."""

    frames_in: int = 0
    keyframes: int = 0
    detector_frames: int = 0
    detector_s: float = 0.0
    tracker_updates: int = 0
    tracker_s: float = 0.0
    skipped_keyframes: int = 0
    stale_queries: int = 0
    queries: int = 0
    query_s: float = 0.0

    def summary(self) -> dict:
        per = lambda s, n: 1000.0 * s / n if n else 0.0  # noqa: E731
        return {
            "frames_in": self.frames_in, "keyframes": self.keyframes,
            "detector_ms_per_keyframe": per(self.detector_s, self.detector_frames),
            "tracker_ms_per_keyframe": per(self.tracker_s, self.tracker_updates),
            "stage_ms_per_frame": per(self.detector_s + self.tracker_s, self.frames_in),
            "skipped_keyframes": self.skipped_keyframes, "stale_queries": self.stale_queries,
            "query_ms_mean": per(self.query_s, self.queries),
        }


class LiveProposalStage(ProposalSource):
    """Detector every N frames + tracker, fed frame by frame, queried by phrase.

    ``detector`` is anything with ``detect(frames, phrase, min_score=None) -> list[Detections]``
    (normally :class:`~stvg_ros.proposals.detector.ZeroShotDetector`).  With ``background=False``
    detection runs inside ``add_frame`` (offline use, tests); otherwise on a worker thread that
    skips the oldest keyframes when it falls more than ``max_backlog`` behind.
    """

    def __init__(self, detector, config: Optional[ProposalConfig] = None, background: bool = True):
        self.config = config or ProposalConfig()
        self.detector = detector
        self.background = background
        self.times = StageTimes()
        self._lock = threading.Lock()  # keyframes, counters, phrase cache
        self._detector_lock = threading.Lock()  # one forward pass at a time
        self._new_keyframe = threading.Condition(self._lock)
        self._progress = threading.Condition()
        self._keyframes: collections.deque[tuple[float, np.ndarray]] = collections.deque()
        self._last_key = -np.inf
        self._last_in = -np.inf
        self._generation = 0
        self._since_key = 0
        self._running = self._new_phrase(self.running_class)
        self._cache: collections.OrderedDict[str, _PhraseTracks] = collections.OrderedDict()
        self._closed = False
        self._worker: Optional[threading.Thread] = None
        if background:
            self._worker = threading.Thread(target=self._work, name="stvg-proposals", daemon=True)
            self._worker.start()

    @classmethod
    def from_config(cls, config: ProposalConfig, background: bool = True) -> "LiveProposalStage":
        """Start the stage with the detector ``config.source`` names: the zero-shot detector at
        ``config.detector_path``, or (``source: hog``) OpenCV's HOG people detector."""
        if config.source == "hog":
            from .hog import HogPeopleDetector

            return cls(HogPeopleDetector(config), config, background=background)
        from .detector import load_detector

        return cls(load_detector(config), config, background=background)

    @property
    def kind(self) -> str:
        """The detector's kind ('hog', 'grounding_dino', 'owlv2')."""
        return str(getattr(self.detector, "kind", "") or "detector")

    def proposes(self, phrase: str) -> bool:
        """Whether the detector can propose ``phrase`` (HOG: people only; open-vocabulary detectors: any)."""
        applies = getattr(self.detector, "applies_to", None)
        return True if applies is None else bool(applies(phrase))

    @property
    def description(self) -> str:
        """What runs, for the node's log."""
        where = f" from {self.config.detector_path}" if self.config.source == "detector" else ""
        return (f"{getattr(self.detector, 'kind', type(self.detector).__name__)}{where}, running class "
                f"'{self.running_class}' at {self.config.rate_hz} Hz")

    # ------------------------------------------------------------------------------------------
    @property
    def running_class(self) -> str:
        return canonical_class(self.config.default_class, self.config.synonyms)

    def _new_phrase(self, phrase: str) -> _PhraseTracks:
        return _PhraseTracks(phrase, make_tracker(self.config.tracker, self.config, label=phrase, id_prefix=""))

    def reset(self) -> None:
        """Forget every frame and track (the clock jumped back, e.g. a looping bag)."""
        # lock order is always pipe.lock → self._lock; a pass in flight sees the new generation and stops
        with self._lock:
            self._generation += 1
            self._keyframes.clear()
            self._last_key = self._last_in = -np.inf
            self._since_key = 0
            pipes = [self._running, *self._cache.values()]
        for pipe in pipes:
            with pipe.lock:
                pipe.tracker.reset()
                pipe.last_stamp = -np.inf
        with self._detector_lock:  # a detector that keeps state between frames (hog) starts afresh
            getattr(self.detector, "reset", lambda: None)()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker thread (idempotent); waits at most ``timeout`` s for a detection in flight
        (the thread is a daemon: a shutting-down process need not wait for it)."""
        with self._lock:
            self._closed = True
            self._new_keyframe.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=timeout)
            self._worker = None

    def __enter__(self) -> "LiveProposalStage":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------
    def add_frame(self, frame: np.ndarray, stamp: float) -> bool:
        """Offer one HxWx3 uint8 RGB frame; returns True when it became a keyframe.

        A frame is a keyframe when ``1 / rate_hz`` seconds have passed since the last one (or, with
        ``rate_hz = 0``, every ``detect_every``-th frame); a frame not newer than the newest is ignored.
        When the stream's time jumps back (a looping bag) the owner calls :meth:`reset` first (the
        node's :class:`~stvg_ros.stream.service.GroundingService` does).  Only
        keyframes are stored (copied), so memory is bounded by ``window_s`` whatever the camera rate.
        """
        stamp = float(stamp)
        cfg = self.config
        with self._lock:
            if stamp <= self._last_in:  # a duplicate or a frame that arrived late: not a new instant
                return False
            self._last_in = stamp
            self.times.frames_in += 1
            if cfg.rate_hz > 0:
                is_key = stamp - self._last_key >= 1.0 / cfg.rate_hz - 1e-6
            else:
                is_key = self._since_key % cfg.detect_every == 0
                self._since_key += 1
            if not is_key:
                return False
            self._last_key = stamp
            self._keyframes.append((stamp, np.array(frame, dtype=np.uint8, copy=True)))
            self.times.keyframes += 1
            while self._keyframes and self._keyframes[0][0] < stamp - cfg.window_s:
                self._keyframes.popleft()
            self._new_keyframe.notify_all()
        if not self.background:
            self._advance(self._running, skip_backlog=False)
        return True

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._closed and (not self._keyframes or self._keyframes[-1][0] <= self._running.last_stamp):
                    self._new_keyframe.wait(timeout=0.5)
                if self._closed:
                    return
            try:
                self._advance(self._running, skip_backlog=True)
            except Exception as e:  # keep the stage alive; the node reports it through stats()
                self.last_error = f"{type(e).__name__}: {e}"
                time.sleep(0.5)

    def _advance(self, pipe: _PhraseTracks, upto: float = np.inf, skip_backlog: bool = False) -> None:
        """Run ``pipe``'s phrase over the stored keyframes it has not seen yet (up to ``upto``)."""
        cfg = self.config
        with pipe.lock:
            with self._lock:
                generation = self._generation
                pending = [(s, f) for s, f in self._keyframes if pipe.last_stamp < s <= upto]
                window_start = self._keyframes[-1][0] - cfg.window_s if self._keyframes else -np.inf
                if skip_backlog and len(pending) > cfg.max_backlog:
                    self.times.skipped_keyframes += len(pending) - cfg.max_backlog
                    pending = pending[-cfg.max_backlog:]
            min_score = cfg.low_threshold if cfg.tracker == "bytetrack" else cfg.box_threshold
            for i in range(0, len(pending), cfg.batch_size):
                chunk = pending[i:i + cfg.batch_size]
                t0 = time.perf_counter()
                with self._detector_lock:
                    dets: list[Detections] = self.detector.detect([f for _, f in chunk], pipe.phrase,
                                                                  min_score=min_score)
                t1 = time.perf_counter()
                if generation != self._generation:  # reset() while detecting: these frames are gone
                    return
                for (stamp, frame), det in zip(chunk, dets):
                    pipe.tracker.update(stamp, det, frame=frame)
                    pipe.last_stamp = stamp
                t2 = time.perf_counter()
                with self._lock:
                    self.times.detector_frames += len(chunk)
                    self.times.detector_s += t1 - t0
                    self.times.tracker_updates += len(chunk)
                    self.times.tracker_s += t2 - t1
                with self._progress:
                    self._progress.notify_all()
            pipe.tracker.prune_before(window_start)

    # ------------------------------------------------------------------------------------------
    def _hold_seconds(self) -> float:
        stamps = [s for s, _ in self._keyframes]
        if len(stamps) < 2:
            return 0.0
        gaps = sorted(b - a for a, b in zip(stamps, stamps[1:]))
        return self.config.hold_keyframes * gaps[len(gaps) // 2]  # the median keyframe period

    def tracks_for(self, stamps: Sequence[float], phrase: str = "") -> list[Track]:
        """Tracks of ``phrase`` (default: the running class) evaluated at ``stamps``, best first.

        The running class is served from the background tracks (waiting at most ``query_wait_s``
        for the worker to reach the newest keyframe at or before ``max(stamps)``); another phrase
        runs detection on the keyframes its cache has not seen.
        """
        t0 = time.perf_counter()
        cfg = self.config
        phrase = canonical_class(phrase, cfg.synonyms) if phrase and phrase.strip() else self.running_class
        upto = max(stamps) if len(stamps) else np.inf
        if phrase == self.running_class:
            pipe = self._running
            with self._lock:
                target = max((s for s, _ in self._keyframes if s <= upto), default=-np.inf)
            if self.background:
                deadline = time.monotonic() + cfg.query_wait_s
                with self._progress:
                    while pipe.last_stamp < target and time.monotonic() < deadline:
                        self._progress.wait(timeout=min(0.05, max(0.0, deadline - time.monotonic())))
                if pipe.last_stamp < target:
                    with self._lock:
                        self.times.stale_queries += 1
            else:
                self._advance(pipe, upto)
        else:
            with self._lock:
                pipe = self._cache.pop(phrase, None) or self._new_phrase(phrase)
                self._cache[phrase] = pipe  # most recently used last
                while len(self._cache) > cfg.max_phrases:
                    self._cache.popitem(last=False)
            self._advance(pipe, upto)
        with pipe.lock:
            with self._lock:
                hold = self._hold_seconds()
            tracks = [t.sampled(stamps, hold, cfg.propagation == "interpolate") for t in pipe.tracker.tracks()]
        out = _rank(tracks, cfg.max_tracks)
        with self._lock:
            self.times.queries += 1
            self.times.query_s += time.perf_counter() - t0
        return out

    def cached_phrases(self) -> list[str]:
        """Phrases with tracks ready: the running class first, then the cache (oldest first)."""
        with self._lock:
            return [self.running_class, *self._cache]

    def stats(self) -> dict:
        """Counters and ms per frame / keyframe of the stage so far (for status topics and benchmarks)."""
        with self._lock:
            out = self.times.summary()
            out["window_keyframes"] = len(self._keyframes)
            out["running_class"] = self.running_class
            out["cached_phrases"] = list(self._cache)
            out["last_error"] = getattr(self, "last_error", "")
            return out


def proposal_stage(config: ProposalConfig, background: bool = True):
    """The node's live proposal source for ``config.source``: a :class:`LiveProposalStage` (detector,
    hog) or :class:`~stvg_ros.proposals.motion.MotionTracks` (motion); both take ``add_frame``."""
    if config.source == "motion":
        from .motion import MotionTracks

        return MotionTracks(config)
    return LiveProposalStage.from_config(config, background=background)
