"""Several cameras served by one grounder: one :class:`GroundingService` per named stream, one model, one worker.

Why this shape: a :class:`~stvg_ros.stream.service.GroundingService` already is everything one stream needs
(window, time-jump rule, admission, queue, standing queries, proposal stage, counters) and its worker's
:meth:`_take`/:meth:`_do` split lets another scheduler drive it.  So a multi-stream service is a thin layer
over N of them that share the grounder (one model in memory) and one lock/condition (any stream's frame or
query wakes the one worker), with the one-stream API untouched as the one-stream case.  What it adds:

* **routing**: frames, detections and losses go to the named stream; a request or standing query names its
  stream, or none / ``"all"``;
* **"all"**: a one-shot query is grounded on every stream whose window holds frames (one job in each
  stream's queue, each on that stream's snapshot) and answered once, with the best tube
  (:func:`rank`: ``found``, then ``p_yes``) naming its camera, every stream's answer in
  ``Answer.per_stream``; a standing query on all is one per stream, whose events name their camera, and
  ends with exactly one ``ended`` once every stream's has ended;
* **fair scheduling**: the worker takes one-shot queries round-robin over the streams (a camera with a
  long queue cannot starve another's), then due standing evaluations round-robin, then idle pre-encoding;
  a standing evaluation on one stream is preempted by a query on any; the standing duty budget is shared.
* **one batch for "all"** (``ServingConfig.batch_streams``, off by default): when the worker takes a stream's part of a query to
  all, the same query's parts at the front of the other streams' queues come with it, and the grounder's
  ``ground_many`` grounds them together (their model passes batched where the clips' token layouts agree),
  each answer the same as alone; a part is cancelled alone (answered cancelled, the batch goes on), and a
  batch that fails is grounded again one stream at a time, so each part gets its own answer.

Frame keys for the grounder's cache are ``(stream number, seq)`` with a process-wide stream number per
:class:`GroundingService`, so two cameras' frames never share cached work.  Queue size, ``min_frames`` and
``max_standing_queries`` apply per stream.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ..config import ServingConfig
from ..grounding.result import Cancelled
from ..proposals.tracks import Detections
from .requests import ANSWERED, CANCELLED, FAILED, REJECTED, Answer, Counters, GroundingRequest, ProgressCallback, _Job
from .seams import GroundingModel, ProposalStage
from .service import SHUTTING_DOWN, GroundingService
from .standing import ENDED, StandingRequest
from .window import images_of
from .worker import _STOPPED

#: what ``stream`` says to ask every camera
ALL = "all"


def rank(answer: Answer) -> tuple:
    """How good an answer to "which camera" is: the model's ``found`` first, then its probability ``p_yes``
    (comparable across clips), then the chosen track's spatial ``score`` (only comparable within a clip, so a
    tie-break); an answer without a result ranks last."""
    r = answer.result
    if answer.status != ANSWERED or r is None:
        return (False, -1.0, -1.0)
    return (bool(r.found), float(r.p_yes), float(r.score))


def _stream_config(config: ServingConfig, name: str) -> ServingConfig:
    """Stream ``name``'s serving settings: ``config`` with the memory (when on) in its own sub-directory, so that
    two cameras never write into, roll over or rebuild each other's chunks."""
    if not config.memory:
        return config
    from ..memory.store import default_directory

    base = Path(config.memory_directory).expanduser() if config.memory_directory else default_directory()
    return config.replace(memory_directory=str(base / name))


class MultiStreamService:
    """Named streams (e.g. ``["front", "rear"]``), one grounder, one worker (see the module docstring).
    ``warn(message, key)`` gets each stream's warnings prefixed with its name."""

    def __init__(self, streams: Sequence[str], config: Optional[ServingConfig] = None, *,
                 warn: Optional[Callable[[str, str], None]] = None, clock: Callable[[], float] = time.monotonic):
        names = [str(s) for s in streams]
        problem = stream_names_problem(names)
        if problem:
            raise ValueError(problem)
        self._wake = threading.Condition(threading.Lock())
        self._clock = clock
        self.config = config or ServingConfig()
        self.services: dict[str, GroundingService] = {}
        for name in names:
            s = GroundingService(_stream_config(self.config, name), warn=_prefixed(warn, name), clock=clock, name=name,
                                 wake=self._wake)
            s.input_name = f"the {name!r} stream's image topic"
            s.queries_waiting = self._queries_waiting
            self.services[name] = s
        self._order = list(self.services.values())
        self._next = 0  # round-robin position
        self._worker: Optional[threading.Thread] = None
        self._stopping = False
        self._warn_cb = warn

    @property
    def streams(self) -> list[str]:
        return list(self.services)

    def stream(self, name: str) -> GroundingService:
        """The service of stream ``name`` (its window, counters, ...); ValueError naming the streams."""
        s = self.services.get(name)
        if s is None:
            raise ValueError(f"no stream {name!r}: use one of {', '.join(self.services)} (or {ALL!r})")
        return s

    # -- set-up ---------------------------------------------------------------------------------------
    def configure(self, config: ServingConfig, model_side: Optional[int] = None) -> None:
        self.config = config
        for name, s in self.services.items():
            s.configure(_stream_config(config, name), model_side)

    def start(self, grounder: GroundingModel, *, external_detections: bool = False,
              stages: Optional[dict[str, ProposalStage]] = None, synonyms: Optional[dict] = None,
              threaded: bool = True) -> None:
        """Serve every stream with the one ``grounder``; ``stages``: a live proposal stage per stream name.
        ``threaded=False``: no thread, :meth:`run_pending` does the work (as for one stream)."""
        self.stop(timeout=0.5)
        stages = stages or {}
        for name, s in self.services.items():
            s.start(grounder, external_detections=external_detections, stage=stages.get(name), synonyms=synonyms,
                    threaded=False)
        with self._wake:
            self._stopping = False
        if threaded:
            self._worker = threading.Thread(target=self._serve, name="stvg_grounding_streams", daemon=True)
            self._worker.start()

    @property
    def grounder(self) -> Optional[GroundingModel]:
        return self._order[0].grounder

    @property
    def running(self) -> bool:
        if self._worker is None:
            return all(s.running for s in self._order)
        return self._worker.is_alive() and not self._stopping

    def stop(self, reason: str = SHUTTING_DOWN, timeout: float = 1.0) -> None:
        """Every stream's queued, in-flight and standing queries answered with ``reason``; the worker stopped
        within about ``timeout`` s."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        deadline = time.monotonic() + timeout
        for s in self._order:
            s.stop(reason, timeout=max(0.05, (deadline - time.monotonic()) / 2))
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))

    def cancel_all(self, reason: str, timeout: Optional[float] = None) -> None:
        for s in self._order:
            s.cancel_all(reason, timeout)

    # -- input ----------------------------------------------------------------------------------------
    def ingest(self, stream: str, stamp_ns: int, decode: Callable[[], np.ndarray], frame_id: str = "",
               problem: str = "", source: str = "") -> str:
        """One frame of ``stream`` (see :meth:`GroundingService.ingest`)."""
        return self.stream(stream).ingest(stamp_ns, decode, frame_id, problem, source or f"stream {stream!r}")

    def add_detections(self, stream: str, stamp_ns: int, detections: Detections) -> None:
        self.stream(stream).add_detections(stamp_ns, detections)

    def count_lost(self, stream: str, n: int) -> None:
        self.stream(stream).count_lost(n)

    def reset(self, stream: str, reason: str = "") -> None:
        self.stream(stream).reset(reason)

    # -- queries ----------------------------------------------------------------------------------------
    def _targets(self, name: str) -> tuple[list[GroundingService], str]:
        if name.strip() in ("", ALL):
            return list(self._order), ""
        s = self.services.get(name)
        if s is None:
            return [], f"no stream {name!r}: ask one of {', '.join(self.services)}, or {ALL!r}"
        return [s], ""

    def submit(self, request: GroundingRequest, on_done: Callable[[Answer], None],
               on_progress: Optional[ProgressCallback] = None):
        """A query to ``request.stream`` (one camera, answered by its service), or to every stream whose window
        holds frames (:class:`_AllStreams`); exactly one ``on_done(answer)`` either way.  Returns a handle
        (``query_id``, ``stage``, ``done``, ``wait``, ``cancel``)."""
        targets, problem = self._targets(request.stream)
        if len(targets) == 1 and request.stream.strip() not in ("", ALL):
            return targets[0].submit(request, on_done, on_progress)
        if not problem:
            targets = [s for s in targets if len(s.window)]
            if not targets:
                problem = f"no frames on any stream yet: are cameras publishing on {', '.join(self.services)}?"
        all_streams = _AllStreams(request, len(targets), on_done, self._warn)
        if problem:
            self._warn(f"query {request.query_id} not served: {problem}", "query")
            all_streams.answer_now(Answer(request, REJECTED, problem))
            return all_streams
        for s in targets:
            progress = None if on_progress is None else _progress_of(on_progress, s.name)
            all_streams.handles.append(s.submit(request, all_streams.collect, progress))
        return all_streams

    # -- standing queries --------------------------------------------------------------------------------
    def register(self, request: StandingRequest, on_event: Callable[[Answer], None]) -> bool:
        """A standing query on ``request.stream`` or on every stream (each stream's events name it; one final
        ``ended`` once every stream's has ended).  Its id is one across streams: a registration replaces the
        id on every stream.  Refused on one stream, it is refused on all (one ``ended`` with the reason)."""
        targets, problem = self._targets(request.stream)
        if problem:
            self._warn(f"standing query {request.query_id} refused: {problem}", "query")
            on_event(Answer(GroundingRequest(request.query_id, request.text), REJECTED, problem, event=ENDED))
            return False
        for s in self._order:  # the id registered elsewhere before: replaced
            if s not in targets and s._has_standing(request.query_id):
                s.cancel_standing(request.query_id, "replaced by a new registration with the same id")
        if len(targets) == 1:
            return targets[0].register(request, on_event)
        ends = _OneEnded(on_event, len(targets))
        registered: list[GroundingService] = []
        for i, s in enumerate(targets):
            if not s.register(request, ends):
                ends.never(len(targets) - i - 1)
                for r in registered:
                    r.cancel_standing(request.query_id, "refused on another stream")
                return False
            registered.append(s)
        return True

    def cancel_standing(self, query_id: str, reason: str = "cancelled by the client") -> bool:
        """End the standing query ``query_id`` on every stream it watches; False when none has it."""
        found = [s for s in self._order if s._has_standing(query_id)]
        if not found:
            self._warn(f"no standing query {query_id!r} to cancel", "query")
            return False
        return any([s.cancel_standing(query_id, reason) for s in found])

    def standing(self) -> list[dict]:
        """Each stream's standing queries (``StandingQuery.info`` with its ``stream``)."""
        return [dict(info, stream=s.name) for s in self._order for info in s.standing()]

    # -- status ------------------------------------------------------------------------------------------
    def counters(self) -> dict[str, Counters]:
        """Each stream's counters (a query to all counts in every stream it was grounded on)."""
        return {name: s.counters() for name, s in self.services.items()}

    def problems(self, since: Optional[float] = None) -> list[str]:
        """Each stream's health problems (:meth:`GroundingService.problems`), named by stream."""
        return [f"{name}: {p}" for name, s in self.services.items() for p in s.problems(since)]

    def note(self, message: str) -> None:
        """A problem of the whole node (frames lost, told in a summary line): noted on every stream."""
        for s in self._order:
            s.note(message)

    @property
    def queue_depth(self) -> int:
        with self._wake:
            return sum(len(s._jobs) for s in self._order)

    def cache_stats(self) -> Optional[dict]:
        return self._order[0].cache_stats()

    def _warn(self, message: str, key: str) -> None:
        if self._warn_cb is not None:
            self._warn_cb(message, key)

    # -- the one worker -------------------------------------------------------------------------------------
    def _queries_waiting(self) -> bool:
        return any(s._jobs for s in self._order)

    def _rotation(self) -> list[tuple[int, GroundingService]]:
        n = len(self._order)
        return [((self._next + k) % n, self._order[(self._next + k) % n]) for k in range(n)]

    def _take(self):
        """(lock held) ``(service, work)``: one-shot queries round-robin over the streams, then due standing
        evaluations round-robin, then idle pre-encoding; or ``(None, seconds to wait or None)``, or
        ``(None, STOPPED)``."""
        if self._stopping:
            return None, _STOPPED
        now = self._clock()
        passes = (lambda s: bool(s._jobs), lambda s: s._standing.next_due(now)[0] is not None, lambda s: True)
        waits = []
        for wanted in passes:
            for i, s in self._rotation():
                if not wanted(s):
                    continue
                work = s._take(s._generation)
                if isinstance(work, (_Job, str)):
                    self._next = (i + 1) % len(self._order)
                    together = self._together(s, work) if isinstance(work, _Job) else None
                    return s, together or work
                if isinstance(work, float):
                    waits.append(work)
        return None, (min(waits) if waits else None)

    def _together(self, s: GroundingService, job: _Job) -> "Optional[_Batch]":
        """(lock held) ``job``'s siblings: the same query to all at the front of the other streams' queues,
        taken with it (``batch_streams``; a grounder with ``ground_many``); None when there are none."""
        group = getattr(job.on_done, "__self__", None)
        if not self.config.batch_streams or not isinstance(group, _AllStreams) or job.past or job.standing is not None \
                or not hasattr(s.grounder, "ground_many"):
            return None
        parts = [(s, job)]
        for _, x in self._rotation():
            if x is s or not x._jobs or x.grounder is not s.grounder or x._stopping:
                continue
            head = x._jobs[0]
            if getattr(head.on_done, "__self__", None) is group and not head.past and head.standing is None:
                x._jobs.popleft()
                x._current = head
                parts.append((x, head))
        return _Batch(parts) if len(parts) > 1 else None

    def _do(self, s: GroundingService, work) -> None:
        if isinstance(work, _Batch):
            try:
                self._ground_together(work.parts)
            finally:
                with self._wake:
                    for x, _ in work.parts:
                        x._current = None
            return
        s._do(work, s._generation)
        if isinstance(work, _Job) and work.standing is not None:  # one duty budget for all streams
            with self._wake:
                not_before = max(x._standing._not_before for x in self._order)
                for x in self._order:
                    x._standing._not_before = not_before

    def _ground_together(self, parts: list) -> None:
        """One query's parts on several streams, grounded in one ``ground_many`` call and answered each by its
        stream (as :meth:`Worker._ground` answers one)."""
        s0, first = parts[0]
        grounder, r = s0.grounder, first.request
        subs = r.sub_queries
        subject = subs.attribute if subs else r.text
        for s, job in parts:
            job.started = s._clock()

        def check(stage: str) -> None:  # the batch stops when every part was cancelled
            live = [(s, job) for s, job in parts if job.cancel_reason is None]
            if not live:
                raise Cancelled(first.cancel_reason or "cancelled")
            for s, job in live:
                if stage != job.stage:
                    s._progress(job, stage)

        try:
            check("queued")
            if grounder is None:
                raise Cancelled("no model loaded: configure the node first")
            proposals = [s._proposals(job.frames, subject) for s, job in parts]
            results = grounder.ground_many([(images_of(job.frames), [f.stamp for f in job.frames]) for _, job in parts],
                                           r.text, proposals=[p or None for p in proposals], sub_queries=subs,
                                           checkpoint=check, frame_keys=[s._keys(job.frames) for s, job in parts])
        except Cancelled as e:
            for s, job in parts:
                s._finish(job, CANCELLED, job.cancel_reason or str(e))
            return
        except Exception as e:  # noqa: BLE001 - each part gets its own answer: ground them one at a time
            self._warn(f"query {r.query_id}: grounding the cameras together failed ({type(e).__name__}: {e}); "
                       "grounding them one at a time", "query")
            for s, job in parts:
                s._ground(job)
            return
        for (s, job), p, result in zip(parts, proposals, results):
            s._note_boxes_from(result, p, subject)
            s._conclude(job, result)

    def run_pending(self) -> int:
        """Do the worker's work on this thread until none is left (a service started with ``threaded=False``)."""
        if self._worker is not None:
            raise RuntimeError("a worker thread serves these streams: start them with threaded=False to step them")
        done = 0
        while True:
            with self._wake:
                s, work = self._take()
            if s is None:
                return done
            self._do(s, work)
            done += 1

    def _serve(self) -> None:
        while True:
            with self._wake:
                s, work = self._take()
                while s is None and work is not _STOPPED:
                    self._wake.wait(work)
                    s, work = self._take()
            if s is None:
                return
            self._do(s, work)


def stream_names_problem(names: Sequence[str]) -> str:
    """What is wrong with a list of stream names, naming the fix ("" = nothing)."""
    if not names:
        return "no streams: name at least one (e.g. ['front'])"
    for n in names:
        if not n.strip() or n.strip() == ALL:
            return f"stream name {n!r}: use a short non-empty name other than {ALL!r} (e.g. 'front', 'rear')"
    if len(set(names)) != len(names):
        return f"stream names {names} repeat: give each camera its own name"
    return ""


def _prefixed(warn: Optional[Callable[[str, str], None]], name: str) -> Optional[Callable[[str, str], None]]:
    if warn is None:
        return None
    return lambda message, key: warn(f"{name}: {message}", f"{name}/{key}")


def _progress_of(on_progress: ProgressCallback, name: str) -> ProgressCallback:
    return lambda stage, seconds: on_progress(f"{name}: {stage}", seconds)


class _AllStreams:
    """A query to every stream with frames: collects each stream's answer and, with the last, answers once
    with the best (:func:`rank`), every stream's answer in ``per_stream``.  Also the caller's handle."""

    def __init__(self, request: GroundingRequest, expected: int, on_done: Callable[[Answer], None],
                 warn: Callable[[str, str], None]):
        self.request, self.expected, self.on_done, self._warn = request, expected, on_done, warn
        self.handles: list = []
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._done = threading.Event()

    def collect(self, answer: Answer) -> None:
        with self._lock:
            self.answers.append(answer)
            last = len(self.answers) == self.expected
        if last:
            self.answer_now(self._combined())

    def _combined(self) -> Answer:
        ranked = tuple(sorted(self.answers, key=rank, reverse=True))  # stable: ties in stream order
        request = self.request
        latency = max(a.latency for a in ranked)
        best = ranked[0]
        if best.status == ANSWERED:
            return dataclasses.replace(best, request=request, latency=latency, per_stream=ranked)
        statuses = {a.status for a in ranked}
        status = next(s for s in (CANCELLED, FAILED, REJECTED) if s in statuses)
        reason = "; ".join(f"{a.stream}: {a.reason}" for a in ranked if a.reason)
        newest = max((a.newest for a in ranked if a.newest is not None), key=lambda f: f.stamp_ns, default=None)
        return Answer(request, status, reason, newest=newest, latency=latency, per_stream=ranked)

    def answer_now(self, answer: Answer) -> None:
        try:
            self.on_done(answer)
        except Exception as e:  # noqa: BLE001
            self._warn(f"answer to query {self.request.query_id} not delivered: {type(e).__name__}: {e}", "answer")
        finally:
            self._done.set()

    # -- the handle ---------------------------------------------------------------------------------------
    @property
    def query_id(self) -> str:
        return self.request.query_id

    @property
    def stage(self) -> str:
        if self._done.is_set():
            return "done"
        return next((h.stage for h in self.handles if not h.done), "done")

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        return self._done.wait(timeout)

    def cancel(self, reason: str = "cancelled by the caller") -> bool:
        """Cancel every stream's part (queued: at once; running: at its next stage)."""
        return any([h.cancel(reason) for h in self.handles])


class _Batch:
    """The worker's work of one query's parts on several streams (``(service, job)`` pairs), grounded together."""

    def __init__(self, parts: list):
        self.parts = parts


class _OneEnded:
    """A standing query on several streams: forwards each stream's events, and one ``ended`` (the first
    stream's reason) once every stream's registration has ended."""

    def __init__(self, on_event: Callable[[Answer], None], expected: int):
        self.on_event, self.left = on_event, expected
        self.first: Optional[Answer] = None
        self._lock = threading.Lock()

    def __call__(self, answer: Answer) -> None:
        if answer.event != ENDED:
            self.on_event(answer)
            return
        with self._lock:
            self.first = self.first or answer
            self.left -= 1
            last = self.left == 0
        if last:
            self.on_event(dataclasses.replace(self.first, stream=""))

    def never(self, n: int) -> None:
        """``n`` streams were never registered (a refusal came first): expect no ``ended`` from them."""
        with self._lock:
            self.left -= n
            last = self.left == 0 and self.first is not None
        if last:
            self.on_event(dataclasses.replace(self.first, stream=""))


__all__ = ["MultiStreamService", "ALL", "rank", "stream_names_problem"]
