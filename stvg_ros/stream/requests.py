"""A question about the live stream and its one answer: :class:`GroundingRequest`, :class:`Answer` (with
:attr:`Answer.tube`, the answer in the camera's terms), the job that carries a request through the service's
queue and worker, the caller's :class:`QueryHandle`, and the service's :class:`Counters`."""

from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from ..query import query_text
from .camera_tube import CameraTube, camera_tube, empty_tube
from ..grounding.result import GroundingResult, SubQueries
from .standing import StandingQuery
from .window import NS, Frame

#: Answer.status values
ANSWERED, REJECTED, CANCELLED, FAILED = "answered", "rejected", "cancelled", "failed"


@dataclass(frozen=True)
class GroundingRequest:
    """One question about the stream: ``start_ns``/``end_ns`` bound the frames (0 = unbounded);
    ``attribute_query``/``action_query`` are optional DSTH sub-queries (both or neither).  To a
    :class:`~stvg_ros.stream.multi.MultiStreamService`: ``stream`` names the camera asked ("" or "all": every
    stream with frames, answered with the best tube), ``each_stream`` asks for one tube per camera
    (:attr:`Answer.tubes`); a one-stream service ignores both."""

    query_id: str
    text: str
    start_ns: int = 0
    end_ns: int = 0
    attribute_query: str = ""
    action_query: str = ""
    stream: str = ""
    each_stream: bool = False
    # -- issue 33 (memory): "the last N seconds" ------------------------------------------------------
    last_s: float = 0.0
    """Search only the last ``last_s`` seconds of the images' clock: before ``end_ns``, or before the stream's
    newest frame when ``end_ns`` is 0 (0 = unset).  Give it or ``start_ns``, not both; with memory on it reaches
    beyond the window (e.g. 600 = the last 10 minutes)."""

    def __post_init__(self):
        object.__setattr__(self, "text", query_text(self.text))  # the one trusted value from here on

    def last_problem(self) -> str:
        """Why ``last_s`` cannot be used, naming the fix ("" when it can or is unset)."""
        if not self.last_s:
            return ""
        if not math.isfinite(self.last_s) or self.last_s < 0:
            return f"last_s={self.last_s}: give a finite number of seconds >= 0 (e.g. 600 = the last 10 minutes)"
        if self.start_ns:
            return "give either start or last_s, not both (last_s counts back from end, or from the newest frame)"
        return ""

    def absolute(self, newest_ns: int) -> "GroundingRequest":
        """This request with ``last_s`` turned into ``start_ns`` (``newest_ns``: the stream's newest stamp, 0 when
        none), so the rest of the service sees an absolute range; unchanged when ``last_s`` is unset or invalid."""
        until = self.end_ns or newest_ns
        if self.last_problem() or not self.last_s or not until:
            return self
        return dataclasses.replace(self, start_ns=max(1, until - int(round(self.last_s * NS))))

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
    (appeared, moved, disappeared, ended); "" for a one-shot query.  ``stream``: the camera it was made on
    (a multi-stream service's name; "" for a one-stream service or an answer about no one stream);
    ``per_stream``: an answer to every stream asked, each stream's own answer, the best first."""

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
    stream: str = ""
    per_stream: tuple["Answer", ...] = ()

    @property
    def tubes(self) -> tuple[CameraTube, ...]:
        """What to publish: :attr:`tube`, or one tube per camera (the best first) when the request asked
        for each stream's (``GroundingRequest.each_stream``)."""
        if self.request.each_stream and self.per_stream:
            return tuple(a.tube for a in self.stream_answers)
        return (self.tube,)

    @property
    def stream_answers(self) -> tuple["Answer", ...]:
        """Each stream's answer, best first, as part of this one (its tube then carries its camera margin); ()
        for an answer about one stream."""
        return tuple(dataclasses.replace(a, per_stream=self.per_stream) for a in self.per_stream)

    def camera_margin(self, stream: str) -> Optional[float]:
        """An answer to several streams: ``stream``'s p_yes minus the highest p_yes of the other streams that
        answered (how far the best is ahead; negative for the others); None when fewer than two answered."""
        p = {a.stream: float(a.result.p_yes) for a in self.per_stream if a.status == ANSWERED and a.result is not None}
        if stream not in p or len(p) < 2:
            return None
        return p[stream] - max(v for s, v in p.items() if s != stream)

    @property
    def tube(self) -> CameraTube:
        """This answer as the camera sees it: the input frames' nanosecond stamps, boxes in the source
        image's pixels, the frame id (what the node publishes, field for field)."""
        r = self.request
        common: dict = dict(latency=float(self.latency), queue_time=float(self.queue_time), event=self.event,
                            stream=self.stream)
        common["alternatives"] = tuple(self.alternatives)  # issue 33: on the topic answer too
        common["camera_margin"] = self.camera_margin(self.stream)
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
