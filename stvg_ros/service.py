"""The grounding service: a live stream's window, its proposals, and the queries asked about it.

One :class:`GroundingService` is what the ROS node serves (and what an action server or standing
queries build on): it owns the frame window, the proposal source (external detections, the live
detector stage, or none), the admission rules, the query queue and the worker thread that runs
the grounder, the counters, and the one rule for time jumps (:meth:`GroundingService.reset`).
It imports no ROS module, so all of it is tested without DDS (``test/test_service.py``); started with
``threaded=False`` it runs no thread and :meth:`GroundingService.run_pending` does the worker's work on
the caller's thread (deterministic tests, with a test ``clock``).  Its parts are typed by
:mod:`stvg_ros.seams`; every :class:`Answer` carries its tube in the camera's terms (:attr:`Answer.tube`).
Standing queries (:meth:`GroundingService.register`, rules in :mod:`stvg_ros.standing`) are
evaluated by the same worker when no one-shot query waits, within a duty budget.  With
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

import dataclasses
import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from .camera_tube import CameraTube, camera_tube, empty_tube
from .config import ServingConfig, apply_model_serving_defaults
from .memory.recall import MemoryRecall, past_problem
from .memory.store import MemoryStore, store_for
from .proposals import ExternalTracks, subject_phrase
from .proposals.tracks import Detections
from .result import Cancelled, GroundingResult, SubQueries
from .seams import GroundingModel, ProposalStage
from .standing import (APPEARED, DISAPPEARED, ENDED, MAX_FAILURES, MOVED, PREEMPTED, StandingQuery, StandingRequest,
                       StandingScheduler)
from .window import NS, Frame, FrameWindow, RateMeter

#: The one rule for time jumps: an input stamp (frame or detections) this much older than the
#: newest seen means the stream's time went back (a looping bag, a restarted driver): reset.
#: Smaller reorders are late messages and are dropped as stale.
JUMP_BACK_S = 0.5

SHUTTING_DOWN = "the node is shutting down"
#: how long a stop waits for an answer the worker is already publishing (claimed, on_done running)
DELIVERY_GRACE_S = 0.3

#: Answer.status values
ANSWERED, REJECTED, CANCELLED, FAILED = "answered", "rejected", "cancelled", "failed"

#: what the worker's :meth:`GroundingService._take` returns besides a job
_PREENCODE, _STOPPED = "preencode", object()


@dataclass(frozen=True)
class GroundingRequest:
    """One question about the stream: ``start_ns``/``end_ns`` bound the frames (0 = unbounded);
    ``attribute_query``/``action_query`` are optional DSTH sub-queries (both or neither)."""

    query_id: str
    text: str
    start_ns: int = 0
    end_ns: int = 0
    attribute_query: str = ""
    action_query: str = ""

    @property
    def sub_queries(self) -> Optional[SubQueries]:
        a, b = self.attribute_query.strip(), self.action_query.strip()
        return SubQueries(a, b, "caller") if a and b else None


@dataclass
class Answer:
    """The one answer to a request; :attr:`tube` is it in the camera's terms (what a caller uses).
    ``result`` and ``frames`` (the snapshot it was grounded on, in time order: the window's copies, so
    ``result``'s boxes are in their stored pixels and keyed by float seconds) are set when ``status ==
    'answered'``; ``newest`` is the newest window frame when the answer was made (for the header of an
    empty answer); times are seconds.  ``event``: for a standing query, why this answer is published
    (appeared, moved, disappeared, ended); "" for a one-shot query."""

    request: GroundingRequest
    status: str
    reason: str = ""
    result: Optional[GroundingResult] = None
    frames: Sequence[Frame] = ()
    newest: Optional[Frame] = None
    queue_time: float = 0.0
    latency: float = 0.0
    event: str = ""
    alternatives: tuple = ()
    """A query over the past (memory): the other tubes found, best first, as
    :class:`stvg_ros.memory.recall.Alternative` (start_ns, end_ns, score); the answer's own tube first."""

    @property
    def tube(self) -> CameraTube:
        """This answer as the camera sees it: the input frames' nanosecond stamps, boxes in the source
        image's pixels, the frame id (what the node publishes, field for field)."""
        r = self.request
        common: dict = dict(latency=float(self.latency), queue_time=float(self.queue_time), event=self.event)
        if self.result is None or not self.frames:
            return empty_tube(r.query_id, r.text, self.newest, reason=self.reason, **common)
        tube = camera_tube(self.result, self.frames, r.query_id, r.text, **common)
        if self.event and self.newest is not None:  # an event is stamped when it was noticed
            tube = dataclasses.replace(tube, stamp_ns=self.newest.stamp_ns)
        if self.event and self.reason:  # what moved
            tube = dataclasses.replace(tube, reason="; ".join(x for x in (self.reason, tube.reason) if x))
        return tube


@dataclass
class Counters:
    """What the service has seen since it was made (frames and queries), for status reports."""

    frames_received: int = 0
    frames_decimated: int = 0
    frames_stale: int = 0
    frames_rejected: int = 0
    frames_lost: int = 0
    window_resets: int = 0
    queries_received: int = 0
    queries_answered: int = 0
    queries_rejected: int = 0
    queries_cancelled: int = 0
    queries_failed: int = 0
    last_latency: float = 0.0
    last_queue_time: float = 0.0
    last_warning: str = ""
    standing_registered: int = 0
    standing_refused: int = 0
    standing_evaluations: int = 0
    standing_events: int = 0
    standing_preempted: int = 0
    proposal_fallbacks: int = 0
    last_fallback: str = ""


ProgressCallback = Callable[[str, float], None]


class _Job:
    """A queued or running request with its snapshot; answered exactly once."""

    def __init__(self, request: GroundingRequest, frames: list[Frame], arrived: float,
                 on_done: Callable[[Answer], None], on_progress: Optional[ProgressCallback]):
        self.request, self.frames, self.arrived = request, frames, arrived
        self.on_done, self.on_progress = on_done, on_progress
        self.stage = "queued"
        self.standing: Optional[StandingQuery] = None  # set for a standing query's evaluation
        self.started: Optional[float] = None
        self.cancel_reason: Optional[str] = None
        self.past = False  # its time range reaches beyond the window: answered from memory (_recall)
        self.alternatives: tuple = ()
        self.answered = threading.Event()
        """Set once the answer was delivered (``on_done`` returned): a caller about to silence its outputs
        waits for this, not for the claim, or it would drop an answer being published."""
        self.claimed = False
        self._lock = threading.Lock()

    def claim(self) -> bool:
        """True once: the caller then delivers the answer."""
        with self._lock:
            if self.claimed:
                return False
            self.claimed = True
            return True


class QueryHandle:
    """What :meth:`GroundingService.submit` returns: the request's id, its stage, and ``cancel``."""

    def __init__(self, service: "GroundingService", job: _Job):
        self._service, self._job = service, job

    @property
    def query_id(self) -> str:
        return self._job.request.query_id

    @property
    def stage(self) -> str:
        """'queued', a grounding stage (encode, decompose, lra, attention, select) or 'done'."""
        return "done" if self._job.answered.is_set() else self._job.stage

    @property
    def done(self) -> bool:
        return self._job.answered.is_set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        return self._job.answered.wait(timeout)

    def cancel(self, reason: str = "cancelled by the caller") -> bool:
        """Cancel while queued (answered at once) or between grounding stages; False when already done."""
        return self._service._cancel(self._job, reason)


#: numbers the services' streams in this process, so that frame keys are unique across services
_STREAMS = itertools.count(1)


class GroundingService:
    """Frames in, questions in, one answer per question out (see the module docstring).

    ``warn(message, key)`` receives every problem worth telling a user (rejected frames and
    queries, resets, failures); ``key`` groups repeats so the caller can throttle them.  ``clock``
    (monotonic seconds) times queues and latencies.  Thread-safe: frames and queries may come from
    one thread while the worker grounds on its own.
    """

    def __init__(self, config: Optional[ServingConfig] = None, *,
                 warn: Optional[Callable[[str, str], None]] = None, clock: Callable[[], float] = time.monotonic):
        self.config = config or ServingConfig()
        self.window = FrameWindow()
        self.rate_in, self.rate_kept = RateMeter(), RateMeter()
        self.grounder: Optional[GroundingModel] = None
        self.external: Optional[ExternalTracks] = None
        self.stage: Optional[ProposalStage] = None  # e.g. a LiveProposalStage (detector + tracker in the background)
        self._warn_cb = warn
        self._clock = clock
        self._lock = threading.Lock()  # counters, newest stamp, the queue (through _wake)
        self._wake = threading.Condition(self._lock)
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
        self.window.configure(config.window_duration, config.window_max_frames, config.window_rate, side)
        self.memory = store_for(config, self.memory)
        if self.external is not None:
            self.external.hold = config.detection_tolerance
            self.external.window_s = max(config.window_duration, 1.0)

    def start(self, grounder: GroundingModel, *, external_detections: bool = False,
              stage: Optional[ProposalStage] = None, synonyms: Optional[dict] = None, threaded: bool = True) -> None:
        """Serve with ``grounder`` (what :class:`stvg_ros.seams.GroundingModel` declares, e.g. a
        :class:`~stvg_ros.grounder.Grounder`); proposals from external detections (``add_detections``), a
        live stage (:class:`stvg_ros.seams.ProposalStage`), or none.
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

    def _standing_config(self) -> ServingConfig:
        """The config standing queries run by: the grounder's model-calibrated thresholds
        (``Grounder.serving_defaults``) under the fields this service's config leaves at their defaults."""
        model = self.grounder.model_serving_defaults() if self.grounder is not None else {}
        if not model:
            return self.config
        return apply_model_serving_defaults(self.config, model)[0]

    @property
    def running(self) -> bool:
        if self._worker is None:  # started with threaded=False: serving while a grounder is set
            return self.grounder is not None and not self._stopping
        return self._worker.is_alive() and not self._stopping

    def run_pending(self) -> int:
        """Do, on this thread, the work the worker would do now (queued queries, due standing evaluations,
        idle pre-encoding) until none is left; returns how many pieces were done.  For a service started
        with ``threaded=False``; time is the service's ``clock``, so a test steps it without sleeping."""
        if self._worker is not None:
            raise RuntimeError("a worker thread serves this service: start it with threaded=False to step it")
        done = 0
        while True:
            with self._lock:
                work = self._take(self._generation)
            if not isinstance(work, (_Job, str)):
                return done
            self._do(work, self._generation)
            done += 1

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
        text = " ".join(request.text.split())
        if len(text) > self.config.max_query_length:
            shown = text[:80] + "..."
        else:
            shown = text
        job = _Job(GroundingRequest(request.query_id, shown, request.start_ns, request.end_ns,
                                    request.attribute_query, request.action_query), [], arrived, on_done, on_progress)
        handle = QueryHandle(self, job)
        reason = self._admission_problem(request, text)
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
        if not text:
            return "empty query text: say what to look for, e.g. 'the person in a red coat'"
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
        same = [f for f in frames if f.image.shape == frames[-1].image.shape] if frames else []
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

    # -- the worker ---------------------------------------------------------------------------------
    def _serve(self, generation: int) -> None:
        """The worker thread: take the next piece of work (:meth:`_take`) or wait for one."""
        while True:
            with self._lock:
                work = self._take(generation)
                while work is None or isinstance(work, float):  # idle: until woken or a standing query is due
                    self._wake.wait(work)
                    work = self._take(generation)
            if not isinstance(work, (_Job, str)):
                return
            self._do(work, generation)

    def _take(self, generation: int):
        """(lock held) The next piece of work: a one-shot query first, else a due standing evaluation when
        the duty budget allows, else ``PREENCODE`` when idle; when there is none, how long until a standing
        query may be due (seconds, or None: until woken), or ``STOPPED``."""
        while True:
            if self._stopping or generation != self._generation:
                return _STOPPED
            if self._jobs:
                job = self._jobs.popleft()
            else:
                sq, wait = self._standing.next_due(self._clock())
                if sq is None:
                    if self._preencode_due and self.config.preencode_when_idle:
                        self._preencode_due = False
                        return _PREENCODE
                    return None if wait is None else float(wait)
                job = self._standing_job(sq)
                if job is None:  # too few frames: skipped, look again
                    continue
            self._current = job
            return job

    def _do(self, work, generation: int) -> None:
        if work == _PREENCODE:
            self._preencode(generation)
            return
        try:
            if work.standing is not None:
                self._evaluate(work)
            else:
                self._ground(work)
        finally:
            with self._lock:
                self._current = None

    def _preencode(self, generation: int) -> None:
        """The idle worker's lowest-priority work: the window's frames into the grounder's feature cache,
        one unit at a time, stopping before the next unit as soon as a query is queued, a standing
        evaluation is due (and allowed by its budget), or the service stops.  Not a query: no counter,
        no duty time; what it stored and how much of it later queries used is in :meth:`cache_stats`."""
        grounder = self.grounder
        if grounder is None:
            return
        frames, problem = self._snapshot(GroundingRequest("", "pre-encode"))
        if problem:
            return
        stopped = []

        def should_stop() -> bool:
            with self._lock:
                stop = bool(self._jobs) or self._stopping or generation != self._generation or \
                    not self.config.preencode_when_idle or self._standing.next_due(self._clock())[0] is not None
            if stop:
                stopped.append(True)
            return stop

        try:
            grounder.prefetch([f.image for f in frames], self._keys(frames), should_stop=should_stop,
                              stamps=[f.stamp for f in frames])
        except Exception as e:  # noqa: BLE001 - a query will encode them itself; keep serving
            self._warn(f"pre-encoding frames failed: {type(e).__name__}: {e}", "preencode")
            return
        self._forget_gone(grounder, also=self._keys(frames))  # frames the window let go while being encoded
        if self.memory is not None and not stopped:
            self._prefetch_memory(grounder, should_stop)
        if stopped:
            with self._lock:
                self._preencode_due = True  # resume after what stopped it

    def _prefetch_memory(self, grounder: GroundingModel, should_stop: Callable[[], bool]) -> None:
        """After the window's frames: the memory's segments written since the last time (from this service's
        start on: older memory is encoded by the first query that reads it), into at most half of the feature
        cache, so that remembered frames never push out the window's."""
        memory, cache = self.memory, grounder.feature_cache
        recall = MemoryRecall(grounder, memory, self.config.memory_segment_s)
        cell, newest = recall.segment_ns, memory.span()[1]
        if getattr(self, "_memory_prefetched_ns", None) is None:  # segments are cut on a grid of stamps
            self._memory_prefetched_ns = (newest // cell + 1) * cell
        since, until = self._memory_prefetched_ns, (newest // cell) * cell - 1  # whole segments only
        if until <= since:
            return
        try:
            recall.prefetch(since, until, lambda: should_stop() or cache.stats().bytes > cache.max_bytes // 2)
        except Exception as e:  # noqa: BLE001 - a query will encode them itself; keep serving
            self._warn(f"pre-encoding remembered frames failed: {type(e).__name__}: {e}", "preencode")
        self._memory_prefetched_ns = recall.prefetched_ns

    def _checkpoint(self, job: _Job) -> Callable[[str], None]:
        def check(stage: str) -> None:
            if job.cancel_reason is not None:
                raise Cancelled(job.cancel_reason)
            if stage != job.stage:
                self._progress(job, stage)
        return check

    def _ground(self, job: _Job) -> None:
        grounder, r = self.grounder, job.request
        job.started = self._clock()
        check = self._checkpoint(job)
        try:
            check("queued")
            if grounder is None:
                raise Cancelled("no model loaded: configure the node first")
            result = self._recall(grounder, job, check) if job.past else self._grounding(grounder, r, job.frames,
                                                                                         check)
        except Cancelled as e:
            self._finish(job, CANCELLED, str(e))
        except Exception as e:  # noqa: BLE001 - report and keep serving
            self._finish(job, FAILED, f"grounding failed: {type(e).__name__}: {e}")
        else:
            with self._lock:  # a cancel accepted (by _cancel, under this lock) until the claim is honoured
                late = job.cancel_reason
                claimed = late is None and job.claim()
            if late is not None:
                self._finish(job, CANCELLED, late)
            elif claimed:
                try:
                    self._deliver(job, ANSWERED, "", result)
                finally:
                    job.answered.set()

    def _grounding(self, grounder: GroundingModel, r: GroundingRequest, frames: Sequence[Frame],
                   check: Callable[[str], None]) -> GroundingResult:
        subs = r.sub_queries
        subject = subs.attribute if subs else r.text
        proposals = self._proposals(frames, subject)
        result = grounder.ground([f.image for f in frames], [f.stamp for f in frames], r.text,
                                 proposals=proposals or None, sub_queries=subs, checkpoint=check,
                                 frame_keys=self._keys(frames))
        self._note_boxes_from(result, proposals, subject)
        return result

    def _recall(self, grounder: GroundingModel, job: _Job, check: Callable[[str], None]) -> GroundingResult:
        """A request reaching beyond the window: the memory's two stages (:mod:`stvg_ros.memory.recall`) over the
        remembered keyframes and the window's snapshot; the answer's frames become the best tube's."""
        r = job.request
        found = MemoryRecall(grounder, self.memory, self.config.memory_segment_s).answer(
            r.text, r.start_ns, r.end_ns, window=job.frames, window_keys=self._keys(job.frames),
            sub_queries=r.sub_queries, checkpoint=check)
        if found is None:
            raise ValueError("no remembered frames in the requested time range: widen it")
        job.frames, job.alternatives = found.frames, tuple(found.alternatives)
        return found.result

    def _keys(self, frames: Sequence[Frame]) -> list:
        """The frames' identities for the grounder's per-frame cache: (this service's stream, the window's
        ``seq``), never reused in the process (another service's window numbers its frames from 1 too), so
        each kept frame's cached work is found again, evicted with the frame, and never another's."""
        return [(self._stream, f.seq) for f in frames]

    def _forget_gone(self, grounder: GroundingModel, also: Sequence = ()) -> None:
        """Tell ``grounder`` which of this stream's frames (those it was last told of, and ``also``) the window
        let go, so their cached work goes; another service's frames in a shared grounder are not touched."""
        live = set(self._keys(self.window.frames()))
        with self._lock:
            gone = (self._held | set(also)) - live
            self._held = live
        if gone:
            grounder.forget_frames(gone)

    def _note_boxes_from(self, result: Any, proposals: dict, subject: str) -> None:
        """Say where the result's boxes came from; a proposal source that found nothing is a fallback
        to proposal-free boxes, counted and named in the status (``proposal_fallbacks``, ``last_fallback``)."""
        sources = [n for n, s in (("external detections", self.external), (self.stage.kind if self.stage is not None else "", self.stage))
                   if s is not None]
        if not sources:
            return
        if proposals and result.track_id in proposals:
            result.boxes_from = f"{' / '.join(sources)} tracks"
            return
        phrase = self.phrase(subject)
        if self.stage is not None and not self.stage.proposes(phrase):
            why = f"{sources[-1]} proposes no {phrase}"  # hog: people only
        else:
            why = f"{' and '.join(sources)} found no {phrase}" if not proposals else "no proposal track was chosen"
        result.boxes_from = f"proposal-free boxes: {why}"
        with self._lock:
            self._counters.proposal_fallbacks += 1
            self._counters.last_fallback = result.boxes_from

    # -- standing queries ----------------------------------------------------------------------------
    def register(self, request: StandingRequest, on_event: Callable[[Answer], None]) -> bool:
        """Register a standing query (see :mod:`stvg_ros.standing`); True when registered.  Its events
        (``Answer.event``) and finally one ``ended`` go to ``on_event`` (from the worker, or from this
        thread for a refusal, which is its ``ended``).  An id already registered is replaced."""
        text = " ".join(request.text.split())
        shown = text if len(text) <= self.config.max_query_length else text[:80] + "..."
        with self._lock:
            sq = self._standing.make(dataclasses.replace(request, text=shown), on_event)
        one_shot = GroundingRequest(request.query_id, request.text, 0, 0, request.attribute_query,
                                    request.action_query)
        reason, old = request.problem() or self._admission_problem(one_shot, text), None
        if not reason:
            with self._lock:
                reason = self._stop_reason if self._stopping else ""
                if not reason:
                    reason, old = self._standing.add(sq, self._clock())
                    self._cancel_evaluation(old, "replaced by a new registration with the same id")
                    self._wake.notify_all()
        with self._lock:
            if reason:
                self._counters.standing_refused += 1
            else:
                self._counters.standing_registered += 1
        if reason:
            self._warn(f"standing query {request.query_id} refused: {reason}", "query")
            sq.deliver(self._ended(sq, REJECTED, reason), final=True)
            return False
        if old is not None:
            old.deliver(self._ended(old, CANCELLED, "replaced by a new registration with the same id"), final=True)
        return True

    def cancel_standing(self, query_id: str, reason: str = "cancelled by the client") -> bool:
        """End the standing query ``query_id`` (its ``ended`` event says ``reason``); False when none has it."""
        with self._lock:
            sq = self._standing.remove(query_id)
            self._cancel_evaluation(sq, reason)
        if sq is None:
            self._warn(f"no standing query {query_id!r} to cancel", "query")
            return False
        return sq.deliver(self._ended(sq, CANCELLED, reason), final=True)

    def standing(self) -> list[dict]:
        """What each standing query costs and says (``StandingQuery.info``), in registration order."""
        with self._lock:
            return [sq.info() for sq in self._standing.queries.values()]

    def standing_duty(self) -> float:
        """Share of the worker's recent time spent on standing evaluations (see ``standing_duty_budget``)."""
        with self._lock:
            return self._standing.duty(self._clock())

    def _cancel_evaluation(self, sq: Optional[StandingQuery], reason: str) -> None:
        current = self._current  # (under the lock)
        if sq is not None and current is not None and current.standing is sq:
            current.cancel_reason = reason

    def _end_standing(self, reason: str) -> None:
        with self._lock:
            ended = self._standing.clear()
        for sq in ended:
            sq.deliver(self._ended(sq, CANCELLED, reason), final=True)

    def _ended(self, sq: StandingQuery, status: str, reason: str) -> Answer:
        r = sq.request
        return Answer(GroundingRequest(r.query_id, r.text), status, reason, newest=self.window.newest, event=ENDED)

    def _standing_job(self, sq: StandingQuery) -> Optional[_Job]:
        """The evaluation of ``sq`` on the freshest frames (under the lock), or None when too few."""
        r, newest = sq.request, self.window.newest
        start = newest.stamp_ns - int(r.window * NS) if newest is not None and r.window > 0 else 0
        request = GroundingRequest(r.query_id, r.text, start, 0, r.attribute_query, r.action_query)
        frames, problem = self._snapshot(request)
        if problem:
            self._standing.skipped(sq)
            return None
        self._standing.started(sq, frames[-1].stamp_ns)
        job = _Job(request, frames, self._clock(), lambda answer: None, None)
        job.standing = sq
        return job

    def _evaluate(self, job: _Job) -> None:
        """One evaluation of a standing query: the existence probability (cheap first) or the full
        grounding, the hysteresis, and the event when the answer changed.  Stops between stages for
        a one-shot query (preempted: due again) or a cancel."""
        sq, grounder, r, frames = job.standing, self.grounder, job.request, job.frames
        assert sq is not None
        job.started = t0 = self._clock()

        def check(stage: str) -> None:
            if job.cancel_reason is not None:
                raise Cancelled(job.cancel_reason)
            if self._jobs:
                raise Cancelled(PREEMPTED)
            job.stage = stage

        saved = sq.tracker.state()
        preempted, full = False, False
        try:
            check("queued")
            if grounder is None:
                raise Cancelled("no model loaded")
            cheap = sq.request.cheap_first
            result = None
            if cheap:
                p_yes = float(grounder.existence([f.image for f in frames], [f.stamp for f in frames], r.text,
                                                 checkpoint=check, frame_keys=self._keys(frames)))
            else:
                result = self._grounding(grounder, r, frames, check)
                p_yes, full = float(result.p_yes), True
            flipped = sq.tracker.observe(p_yes)
            if cheap and sq.needs_full(flipped):
                result, full = self._grounding(grounder, r, frames, check), True
        except Cancelled as e:
            sq.tracker.restore(saved)
            preempted = str(e) == PREEMPTED
        except Exception as e:  # noqa: BLE001 - report; end the query after MAX_FAILURES in a row
            sq.tracker.restore(saved)
            sq.failures_in_row += 1
            problem = f"standing query {r.query_id}: evaluation failed: {type(e).__name__}: {e}"
            self._warn(problem, "query")
            if sq.failures_in_row >= MAX_FAILURES:
                with self._lock:
                    if self._standing.queries.get(r.query_id) is sq:
                        self._standing.remove(r.query_id)
                sq.deliver(self._ended(sq, FAILED, f"{MAX_FAILURES} evaluations in a row failed: {e}"), final=True)
        else:
            sq.failures_in_row = 0
            self._report(sq, job, p_yes, flipped, result if full else None, self._clock() - t0)
        with self._lock:
            self._standing.finished(sq, self._clock() - t0, self._clock(), preempted)
            self._counters.standing_preempted += int(preempted)

    def _report(self, sq: StandingQuery, job: _Job, p_yes: float, flipped: bool, result: Optional[GroundingResult],
                cost: float) -> None:
        """Count an evaluation and deliver its event, if the answer changed in a way that matters."""
        frames, tracker = job.frames, sq.tracker
        sq.evaluations, sq.p_yes = sq.evaluations + 1, p_yes
        if result is not None:
            sq.full_evaluations, sq.since_full, sq.last_full = sq.full_evaluations + 1, 0, (result, frames)
        elif tracker.found:
            sq.since_full += 1
        event, detail = "", ""
        if flipped:
            event = APPEARED if tracker.found else DISAPPEARED
        elif tracker.found and result is not None:
            detail = tracker.moved(result)
            event = MOVED if detail else ""
        with self._lock:
            self._counters.standing_evaluations += 1
        if not event:
            return
        shown, shown_frames = (result, frames) if result is not None else (sq.last_full or (None, ()))
        if shown is not None:
            if event != DISAPPEARED:
                tracker.report(shown)
            shown = dataclasses.replace(shown, found=tracker.found, p_yes=p_yes)
        # stamped with the newest frame this evaluation saw (a disappearance shows the last full answer's
        # boxes, where the target was last seen, but is noticed now)
        answer = Answer(job.request, ANSWERED, detail, shown, shown_frames if shown is not None else (),
                        frames[-1] if frames else self.window.newest, 0.0, cost, event=event)
        if sq.deliver(answer):
            sq.events += 1
            with self._lock:
                self._counters.standing_events += 1

    def phrase(self, text: str) -> str:
        """The detector phrase of a query's subject (the live stage's class and synonyms apply)."""
        cfg = self.stage.config if self.stage is not None else None
        external = self.external.synonyms if self.external is not None else None
        return subject_phrase(text, cfg.default_class if cfg is not None else "person",
                              (cfg.synonyms if cfg is not None else None) or external)

    def _proposals(self, frames: Sequence[Frame], subject: str) -> dict:
        """Tracks over the snapshot in the stored pixels: external detections first, else the live stage."""
        stamps = [f.stamp for f in frames]
        out: dict = {}
        if self.external is not None:
            by_stamp = {f.stamp: f for f in frames}
            for track in self.external.tracks_for(stamps, self.phrase(subject)):
                out[track.id] = {s: by_stamp[s].box_from_source(b) for s, b in track.boxes.items() if s in by_stamp}
        if not out and self.stage is not None:
            out = self.stage.proposals_for(stamps, self.phrase(subject))
        return {k: v for k, v in out.items() if v}

    # -- answers -------------------------------------------------------------------------------------
    def _progress(self, job: _Job, stage: str) -> None:
        job.stage = stage
        if job.on_progress is not None:
            try:
                job.on_progress(stage, self._clock() - job.arrived)
            except Exception as e:  # noqa: BLE001 - a broken feedback channel must not lose the answer
                self._warn(f"progress report failed for query {job.request.query_id}: {e}", "progress")

    def _finish(self, job: _Job, status: str, reason: str, result: Optional[GroundingResult] = None) -> bool:
        if not job.claim():
            return False
        try:
            self._deliver(job, status, reason, result)
        finally:
            job.answered.set()
        return True

    def _deliver(self, job: _Job, status: str, reason: str, result: Optional[GroundingResult]) -> None:
        if job.standing is not None:  # a standing evaluation: its events are delivered by _evaluate
            return
        now = self._clock()
        started = job.started if job.started is not None else now
        answer = Answer(job.request, status, reason, result, job.frames if result is not None else (),
                        self.window.newest, started - job.arrived, now - job.arrived, alternatives=job.alternatives)
        with self._lock:
            c = self._counters
            if status == ANSWERED:
                c.queries_answered += 1
                c.last_latency, c.last_queue_time = answer.latency, answer.queue_time
            elif status == REJECTED:
                c.queries_rejected += 1
            elif status == CANCELLED:
                c.queries_cancelled += 1
            else:
                c.queries_failed += 1
        if status != ANSWERED:
            self._warn(f"query {job.request.query_id} not served: {reason}", "query")
        try:
            job.on_done(answer)
        except Exception as e:  # noqa: BLE001
            self._warn(f"answer to query {job.request.query_id} not delivered: {type(e).__name__}: {e}", "answer")

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
