"""The grounding service: a live stream's window, its proposals, and the queries asked about it.

One :class:`GroundingService` is what the ROS node serves (and what an action server or standing
queries build on): it owns the frame window, the proposal source (external detections, the live
detector stage, or none), the admission rules, the query queue and the worker thread that runs
the grounder, the counters, and the one rule for time jumps (:meth:`GroundingService.reset`).
It imports no ROS module, so all of it is tested without DDS (``test/test_service.py``); started with
``threaded=False`` it runs no thread and :meth:`GroundingService.run_pending` does the worker's work on
the caller's thread (deterministic tests, with a test ``clock``).  Its parts are typed by
:mod:`stvg_ros.stream.seams`; every :class:`~stvg_ros.stream.requests.Answer` carries its tube in the camera's
terms (:attr:`~stvg_ros.stream.requests.Answer.tube`).
Standing queries (:meth:`GroundingService.register`, rules in :mod:`stvg_ros.stream.standing`) are
evaluated by the same worker when no one-shot query waits, within a duty budget.  This module holds the intake
(set-up, frames, detections, admission and the queue, status); the worker's scheduler is
:mod:`stvg_ros.stream.worker`, the standing evaluation :mod:`stvg_ros.stream.standing_evaluation`, requests
and answers :mod:`stvg_ros.stream.requests`.  With
``preencode_when_idle`` the worker, when it has nothing else to do, encodes the kept frames' visual
features ahead of the first query (:meth:`Grounder.prefetch`), one unit at a time, yielding to any
query or due standing evaluation between units.

Guarantees:

* A query is grounded on the frames that were in the window *when it arrived* (or on its time
  range at that moment), however long it waits in the queue.
* Every :meth:`~GroundingService.submit` yields exactly one :class:`Answer` through its
  ``on_done``: grounded, rejected (with the reason and the fix), cancelled, failed, or stopped
  ("the node is shutting down").
* :meth:`~GroundingService.stop` answers the queued and the in-flight queries and returns within
  its timeout: the grounding is stopped between stages and LRA steps, not awaited.
* Every :meth:`~GroundingService.register` leads to events and then exactly one final ``ended``
  event (its refusal, cancel, replacement, or the stop), none after it.
"""


from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from typing import Callable, Optional

import numpy as np

from ..config import ServingConfig
from ..memory.recall import past_problem
from ..memory.store import MemoryStore, store_for
from ..query import query_problem
from ..proposals import ExternalTracks, subject_phrase
from ..proposals.tracks import Detections
from .seams import GroundingModel, ProposalStage
from .standing import StandingScheduler
from .window import NS, Frame, FrameWindow, RateMeter
from .requests import CANCELLED, REJECTED, Answer, Counters, GroundingRequest, ProgressCallback, QueryHandle, _Job
from .standing_evaluation import StandingEvaluation
from .worker import Worker

#: The one rule for time jumps: an input stamp (frame or detections) this much older than the
#: newest seen means the stream's time went back (a looping bag, a restarted driver): reset.
#: Smaller reorders are late messages and are dropped as stale.
JUMP_BACK_S = 0.5

SHUTTING_DOWN = "the node is shutting down"
#: how long a stop waits for an answer the worker is already publishing (claimed, on_done running)
DELIVERY_GRACE_S = 0.3

#: numbers the services' streams in this process, so that frame keys are unique across services
_STREAMS = itertools.count(1)


class GroundingService(StandingEvaluation, Worker):
    """Frames in, questions in, one answer per question out (see the module docstring).

    ``warn(message, key)`` receives every problem worth telling a user (rejected frames and
    queries, resets, failures); ``key`` groups repeats so the caller can throttle them.  ``clock``
    (monotonic seconds) times queues and latencies.  Thread-safe: frames and queries may come from
    one thread while the worker grounds on its own.
    """

    def __init__(self, config: Optional[ServingConfig] = None, *,
                 warn: Optional[Callable[[str, str], None]] = None, clock: Callable[[], float] = time.monotonic,
                 name: str = "", wake: Optional[threading.Condition] = None):
        """``name``: the stream's name in its answers and events (``Answer.stream``; "" for a one-stream service).
        ``wake``: a condition (over a plain lock) shared with other services whose work one worker schedules
        (:class:`stvg_ros.stream.multi.MultiStreamService`); by default this service's own."""
        self.config = config or ServingConfig()
        self.name = name
        self.window = FrameWindow()
        self.rate_in, self.rate_kept = RateMeter(), RateMeter()
        self.grounder: Optional[GroundingModel] = None
        self.external: Optional[ExternalTracks] = None
        self.stage: Optional[ProposalStage] = None  # e.g. a LiveProposalStage (detector + tracker in the background)
        self._warn_cb = warn
        self._clock = clock
        self._wake = wake if wake is not None else threading.Condition(threading.Lock())
        self._lock = self._wake  # counters, newest stamp, the queue (a condition is entered as its lock)
        #: whether a one-shot query waits for this service's worker (a multi-stream worker: on any stream)
        self.queries_waiting: Callable[[], bool] = lambda: bool(self._jobs)
        self._jobs: deque[_Job] = deque()
        self._current: Optional[_Job] = None
        self._worker: Optional[threading.Thread] = None
        self._stopping = False
        self._stop_reason = SHUTTING_DOWN
        self._generation = 0  # a worker serves while its generation is current (start() begins a new one)
        self.input_name = "the image topic"  # named in answers to queries that find no frames
        self._newest_ns: Optional[int] = None
        self._last_frame_at: Optional[float] = None
        self._last_lost_at: Optional[float] = None
        self._counters = Counters()
        self._model_side = 0
        self._preencode_due = False  # kept frames may be uncached: the idle worker pre-encodes them
        self._standing = StandingScheduler(self.config, clock())
        self._stream = next(_STREAMS)
        self._held: set = set()  # frame keys live at the last look (see _forget_gone)
        self.memory: Optional[MemoryStore] = None  # keyframes beyond the window (config.memory)
        # the memory's (store, segment_ns, segment cells the idle worker encoded, neutral answers; see worker.py)
        self._memory_prefetched: tuple = (None, 0, set(), {})
        self.configure(self.config)

    # -- set-up ----------------------------------------------------------------------------------
    def configure(self, config: ServingConfig, model_side: Optional[int] = None) -> None:
        """Apply serving settings (any time): window bounds, queue size, admission limits.
        ``model_side``: the model's input size; frames are kept at twice that (``ingest_max_side=0``)."""
        self.config = config
        self._standing.configure(self._standing_config())
        if config.preencode_when_idle:
            with self._lock:
                self._preencode_due = True
                self._wake.notify_all()
        if model_side is not None:
            self._model_side = model_side
        side = config.ingest_max_side or 2 * (self._model_side or 336)
        self.window.configure(config.window_duration, config.window_max_frames, config.window_rate, side,
                              config.window_codec)
        self.memory = store_for(config, self.memory)
        if self.external is not None:
            self.external.hold = config.detection_tolerance
            self.external.window_s = max(config.window_duration, 1.0)

    def start(self, grounder: GroundingModel, *, external_detections: bool = False,
              stage: Optional[ProposalStage] = None, synonyms: Optional[dict] = None, threaded: bool = True) -> None:
        """Serve with ``grounder`` (what :class:`stvg_ros.stream.seams.GroundingModel` declares, e.g. a
        :class:`~stvg_ros.grounding.grounder.Grounder`); proposals from external detections (``add_detections``), a
        live stage (:class:`stvg_ros.stream.seams.ProposalStage`), or none.
        ``threaded=False``: no worker thread; the caller does the work with :meth:`run_pending` (tests and
        single-threaded hosts: deterministic, no waiting)."""
        self.stop(timeout=0.5)
        self.grounder, self.stage = grounder, stage
        self._standing.configure(self._standing_config())
        self.external = ExternalTracks(window_s=max(self.config.window_duration, 1.0),
                                       hold=self.config.detection_tolerance, max_tracks=0,
                                       synonyms=synonyms) if external_detections else None
        self.reset()
        with self._lock:
            self._stopping = False
            self._generation += 1
            generation = self._generation
        if not threaded:
            return
        self._worker = threading.Thread(target=self._serve, args=(generation,), name="stvg_grounding", daemon=True)
        self._worker.start()

    @property
    def running(self) -> bool:
        if self._worker is None:  # started with threaded=False: serving while a grounder is set
            return self.grounder is not None and not self._stopping
        return self._worker.is_alive() and not self._stopping

    def stop(self, reason: str = SHUTTING_DOWN, timeout: float = 1.0) -> None:
        """Answer every queued and the in-flight query with ``reason``, stop the worker and the live
        stage; returns within about ``timeout`` s whatever the grounder is doing."""
        with self._lock:
            self._stopping, self._stop_reason = True, reason
            pending, current = list(self._jobs), self._current
            self._jobs.clear()
            if current is not None:
                current.cancel_reason = reason
            self._wake.notify_all()
        for job in pending:
            self._finish(job, CANCELLED, reason)
        self._end_standing(reason)
        deadline = time.monotonic() + timeout
        worker = self._worker
        if worker is not None:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))
        if current is not None:  # still in one stage (a long forward pass): answer it from here
            self._answer_now(current, reason, max(DELIVERY_GRACE_S, deadline - time.monotonic()))
        self._worker = None
        stage, self.stage = self.stage, None
        if stage is not None:
            stage.close(timeout=max(0.05, deadline - time.monotonic()))
        self.grounder = None
        if self.memory is not None:  # a clean stop keeps every frame, those still in the window too
            self.memory.close()

    def cancel_all(self, reason: str, timeout: Optional[float] = None) -> None:
        """Cancel the queued queries (answered at once), the running one (at its next stage) and the
        standing queries (ended).  With ``timeout``, the running query is answered before this returns:
        at its next stage, or from here after ``timeout`` s (the worker's late result is then dropped),
        so that a caller about to silence its outputs delivers every answer first."""
        with self._lock:
            pending, current = list(self._jobs), self._current
            self._jobs.clear()
            if current is not None:
                current.cancel_reason = reason
        for job in pending:
            self._finish(job, CANCELLED, reason)
        self._end_standing(reason)
        if timeout is not None and current is not None and current.standing is None:
            if not current.answered.wait(timeout):
                self._answer_now(current, reason, timeout)

    def _answer_now(self, job: _Job, reason: str, grace: float) -> None:
        """Answer ``job`` from this thread, unless the worker already claimed it: then wait (at most
        ``grace`` s) until the worker's answer is delivered."""
        if not self._finish(job, CANCELLED, reason):
            job.answered.wait(grace)

    # -- time --------------------------------------------------------------------------------------
    def reset(self, reason: str = "") -> None:
        """Forget the stream (frames, tracks, rates): its time jumped back.  Queued queries keep
        their snapshots.  The one place every kind of time jump ends up (counted in
        ``window_resets`` when frames were held); ``reason`` is reported when given."""
        with self._lock:
            self._newest_ns = None
            self._standing.reset()
        self.window.reset()
        if self.external is not None:
            self.external.reset()
        if self.stage is not None:
            self.stage.reset()
        self.rate_in.clear()
        self.rate_kept.clear()
        if reason:
            self._warn(f"{reason}: window reset", "reset")

    def _observe(self, stamp_ns: int, what: str) -> None:
        """Apply the time-jump rule to an input stamp."""
        with self._lock:
            newest = self._newest_ns
            jumped = newest is not None and stamp_ns < newest - int(JUMP_BACK_S * NS)
            if not jumped:
                self._newest_ns = stamp_ns if newest is None else max(newest, stamp_ns)
        if jumped:
            self.reset(f"{what} stamps jumped back to {stamp_ns / NS:.3f} s (looping bag or restarted camera)")
            with self._lock:
                self._newest_ns = stamp_ns

    # -- input -------------------------------------------------------------------------------------
    def ingest(self, stamp_ns: int, decode: Callable[[], np.ndarray], frame_id: str = "", problem: str = "",
               source: str = "image") -> str:
        """Offer one frame: 'keep', 'decimate', 'stale' or 'rejected'.

        ``problem``: what a cheap header check found wrong ("" = nothing), so malformed frames are
        counted and reported even when decimation would have skipped them; ``decode()`` is only
        called for frames the window keeps (ValueError/TypeError = undecodable, reported).  It returns
        the RGB frame, or ``(rgb, (H, W) as published)`` when it already shrank it toward
        ``window.max_side`` (``image_messages.decode_for_window``, which decodes a JPEG at reduced scale)."""
        now = self._clock()
        with self._lock:
            self._counters.frames_received += 1
            self._last_frame_at = now
        if problem:
            return self._reject_frame(f"dropped a frame on {source}: {problem}")
        self.rate_in.tick(stamp_ns)
        self._observe(stamp_ns, "image")
        outcome = self.window.offer(stamp_ns)
        if outcome != "keep":
            return outcome
        try:
            rgb = decode()
        except (ValueError, TypeError) as e:
            return self._reject_frame(f"dropped a frame on {source}: {e}")
        rgb, source_size = rgb if isinstance(rgb, tuple) else (rgb, None)
        frame = self.window.add(stamp_ns, rgb, source_size, frame_id=frame_id)
        memory = self.memory
        if memory is not None:  # it stores the frame once the window's span has passed it
            memory.add(frame)
        grounder = self.grounder
        if grounder is not None:  # cached work of frames the window let go goes with them
            self._forget_gone(grounder)
        stage = self.stage
        if stage is not None:  # the stored (downscaled) image: boxes in the pixels the grounder sees
            stage.add_frame(frame.image, frame.stamp)
        self.rate_kept.tick(stamp_ns)
        with self._lock:
            if self._standing.on_frame(stamp_ns, now):
                self._wake.notify_all()
            if self.config.preencode_when_idle:
                self._preencode_due = True
                self._wake.notify_all()
        return "keep"

    def _reject_frame(self, message: str) -> str:
        with self._lock:
            self._counters.frames_rejected += 1
        self._warn(message, "frame")
        return "rejected"

    def count_lost(self, n: int) -> None:
        """Frames the transport lost before they reached us (reported by the middleware)."""
        if n > 0:
            with self._lock:
                self._counters.frames_lost += int(n)
                self._last_lost_at = self._clock()

    def add_detections(self, stamp_ns: int, detections: Detections) -> None:
        """External detections of the image stamped ``stamp_ns`` (boxes in the published pixels)."""
        if self.external is None:
            return
        self._observe(stamp_ns, "detection")
        self.external.add(stamp_ns / NS, detections)

    # -- queries -----------------------------------------------------------------------------------
    def submit(self, request: GroundingRequest, on_done: Callable[[Answer], None],
               on_progress: Optional[ProgressCallback] = None) -> QueryHandle:
        """Admit ``request`` (its snapshot taken now) or answer it at once with the reason; every
        call leads to exactly one ``on_done(answer)``, on this thread (rejected) or the worker's.
        ``on_progress(stage, seconds since arrival)``: 'queued', then the grounding stages."""
        arrived = self._clock()
        with self._lock:
            self._counters.queries_received += 1
        last_problem = request.last_problem()  # "the last N seconds" becomes an absolute start here (issue 33)
        request = request.absolute(max(self._newest_ns or 0, self.memory.span()[1] if self.memory else 0))
        text = request.text  # trusted: normalised when the request was made (stvg_ros.query)
        if len(text) > self.config.max_query_length:
            shown = text[:80] + "..."
        else:
            shown = text
        job = _Job(GroundingRequest(request.query_id, shown, request.start_ns, request.end_ns,
                                    request.attribute_query, request.action_query, request.stream, request.each_stream),
                   [], arrived, on_done, on_progress)
        handle = QueryHandle(self, job)
        reason = last_problem or self._admission_problem(request, text)
        if not reason:
            job.past, reason = past_problem(self.memory, self.window.frames(), request.start_ns, request.end_ns)
            job.frames, problem = (self.window.frames(request.start_ns, request.end_ns), "") if job.past \
                else self._snapshot(request)
            reason = reason or problem
        if not reason:
            with self._lock:
                if self._stopping:
                    reason = self._stop_reason
                elif len(self._jobs) >= self.config.query_queue_size:
                    reason = (f"query queue full ({len(self._jobs)} pending): wait for answers or raise "
                              f"query_queue_size")
                else:
                    self._jobs.append(job)
                    self._wake.notify_all()
        if reason:
            self._finish(job, REJECTED, reason)
        else:
            self._progress(job, "queued")
        return handle

    def _admission_problem(self, r: GroundingRequest, text: str) -> str:
        """Why ``r`` cannot be served, naming the fix ("" when it can)."""
        limit = self.config.max_query_length
        if query_problem(text):
            return query_problem(text)
        if len(text) > limit:
            return f"query of {len(text)} characters is longer than max_query_length={limit}: shorten it or " \
                   f"raise the parameter"
        if bool(r.attribute_query.strip()) != bool(r.action_query.strip()):
            return "give both attribute_query and action_query, or neither"
        if r.end_ns and r.start_ns > r.end_ns:
            return "the time range's start is after its end: swap them or set 0"
        if self._stopping:
            return self._stop_reason
        if self.grounder is None:
            return "no model loaded: configure the node first"
        return ""

    def _snapshot(self, r: GroundingRequest) -> tuple[list[Frame], str]:
        """The frames the request will be grounded on (in its range, of the newest size), or why none."""
        held = len(self.window)
        if held == 0:
            return [], f"no frames in the window yet: is a camera publishing on {self.input_name}?"
        frames = self.window.frames(r.start_ns, r.end_ns)
        ranged = bool(r.start_ns or r.end_ns)
        where = "in the requested time range" if ranged else "in the window"
        same = [f for f in frames if f.shape == frames[-1].shape] if frames else []
        need = self.config.min_frames
        if len(same) >= need:
            return same, ""
        size = f" of the newest size {same[-1].source_size[1]}x{same[-1].source_size[0]} (the camera changed " \
               f"resolution)" if len(same) < len(frames) else ""
        return [], (f"{len(same)} frame(s){size} {where}, {need} needed (min_frames): wait for more frames"
                    + (" or widen the range" if ranged else ""))

    def _cancel(self, job: _Job, reason: str) -> bool:
        with self._lock:
            if job in self._jobs:
                self._jobs.remove(job)
                queued = True
            elif job is self._current and not job.claimed:
                job.cancel_reason = reason
                return True
            else:
                return False
        if queued:
            return self._finish(job, CANCELLED, reason)
        return False

    def phrase(self, text: str) -> str:
        """The detector phrase of a query's subject (the live stage's class and synonyms apply)."""
        cfg = self.stage.config if self.stage is not None else None
        external = self.external.synonyms if self.external is not None else None
        return subject_phrase(text, cfg.default_class if cfg is not None else "person",
                              (cfg.synonyms if cfg is not None else None) or external)

    # -- status --------------------------------------------------------------------------------------
    def _warn(self, message: str, key: str) -> None:
        self.note(message)
        if self._warn_cb is not None:
            self._warn_cb(message, key)

    def note(self, message: str) -> None:
        """Keep ``message`` as the last warning (reported by the owner already)."""
        with self._lock:
            self._counters.last_warning = message

    def counters(self) -> Counters:
        """A consistent snapshot of the counters."""
        with self._lock:
            c = Counters(**vars(self._counters))
        c.frames_decimated, c.frames_stale, c.window_resets = self.window.decimated, self.window.stale, \
            self.window.resets
        return c

    def cache_stats(self) -> Optional[dict]:
        """The grounder's per-frame cache (entries, bytes, max_bytes, hits, misses, ...), None without one."""
        grounder = self.grounder
        return grounder.cache_stats().as_dict() if grounder is not None else None

    def memory_status(self) -> dict:
        """The memory beyond the window (issue 33) for status reports: ``on``, and what the store holds
        (:meth:`~stvg_ros.memory.store.MemoryStore.summary`: chunks, keyframes, segments, seconds, nbytes,
        oldest_ns, newest_ns) with ``preencoded``, the segments the idle worker has encoded."""
        memory = self.memory
        if memory is None:
            return dict(on=False, chunks=0, keyframes=0, segments=0, seconds=0.0, nbytes=0, oldest_ns=0, newest_ns=0,
                        preencoded=0)
        store, _, done, _ = self._memory_prefetched
        return dict(on=True, **memory.summary(int(self.config.memory_segment_s * NS)),
                    preencoded=len(done) if store is memory else 0)

    @property
    def queue_depth(self) -> int:
        with self._lock:
            return len(self._jobs)

    def frame_age(self) -> float:
        """Seconds since the last frame arrived (-1 before the first)."""
        at = self._last_frame_at
        return -1.0 if at is None else self._clock() - at

    def problems(self, since: Optional[float] = None) -> list[str]:
        """What a health report should warn about now: no frames for ``frame_timeout`` s (measured
        from ``since``, e.g. activation, before the first frame), frames lost in the last 10 s."""
        out = []
        timeout = self.config.frame_timeout
        now = self._clock()
        last = self._last_frame_at if self._last_frame_at is not None else since
        if timeout > 0 and last is not None and now - last > timeout:
            out.append(f"no frame for {now - last:.0f} s")
        if self._last_lost_at is not None and now - self._last_lost_at < 10.0:
            out.append("frames lost in transport")
        return out


__all__ = ["GroundingService", "GroundingRequest", "Answer", "QueryHandle", "Counters", "JUMP_BACK_S",
           "SHUTTING_DOWN", "ANSWERED", "REJECTED", "CANCELLED", "FAILED", "ServingConfig", "StandingRequest"]
