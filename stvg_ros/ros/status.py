"""The node's health as messages: ``Status`` from the service's counters, and its /diagnostics entry,
published by :class:`Monitor` on wall time in every lifecycle state.

/diagnostics levels (docs/ros-interface.md "Topics" says the same):

* ERROR: the last configure failed (the message gives the reason and the fix); the node is unconfigured.
* WARN: not active (unconfigured or inactive), a meaningless default model (random or synthetic-world),
  no frame for ``frame_timeout`` s while active, or frames lost in transport in the last 10 s.
* OK: active, with a model of your own, and frames arriving.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ClockType

from stvg_ros.msg import StandingQueryStatus, Status
from stvg_ros.ros.events import LOSS_FIX, publish_to
from stvg_ros.ros.memory import fill_status as fill_memory_status

#: what the status says about a default model (default_model.ModelChoice.kind), and the warning
MODEL_NOTES = {"tiny": (" (random: meaningless)", "random model: answers are meaningless"),
               "synthetic": (" (synthetic world only)", "synthetic-world model: meaningless on real images")}
#: seconds between two summary lines about frames lost on one topic
LOSS_SUMMARY_S = 10.0


class Monitor:
    """The ``status`` and ``/diagnostics`` publishers and the timer that calls ``tick`` ``rate`` times a
    second.  Made with the node and kept until it is destroyed, so the node reports in every lifecycle
    state; the timer runs on the steady clock, so with ``use_sim_time`` it fires before a bag plays,
    while it is paused and after it ended (a timer on the ROS clock would not)."""

    def __init__(self, node, warn: Callable[[str, str], None], tick: Callable[[], None]):
        self.pubs = {"status": publish_to(node, Status, "status", 5, warn),
                     "diagnostics": publish_to(node, DiagnosticArray, "/diagnostics", 5, warn)}
        self._node, self._tick, self._timer, self.rate = node, tick, None, 0.0
        self._clock = Clock(clock_type=ClockType.STEADY_TIME)

    def set_rate(self, rate: float) -> None:
        """Tick ``rate`` times a second (0 = off)."""
        if rate == self.rate:
            return
        if self._timer is not None:
            self._node.destroy_timer(self._timer)
            self._timer = None
        self.rate = rate
        if rate > 0:
            self._timer = self._node.create_timer(1.0 / rate, self._tick, clock=self._clock)


class LossSummary:
    """Frames lost in transport, told at most one line per ``period`` s per topic (the first loss at
    once): how many since the last line, how many in all, and the fix."""

    def __init__(self, period: float = LOSS_SUMMARY_S, clock: Callable[[], float] = time.monotonic):
        self.period, self._clock = period, clock
        self._lock = threading.Lock()
        self._pending: dict[str, int] = {}
        self._total: dict[str, int] = {}
        self._last: dict[str, float] = {}

    def add(self, topic: str, n: int) -> Optional[str]:
        """Count ``n`` frames lost on ``topic``; returns the summary line when one is due now."""
        with self._lock:
            self._pending[topic] = self._pending.get(topic, 0) + int(n)
            self._total[topic] = self._total.get(topic, 0) + int(n)
        due = self.due()
        return due[0] if due else None

    def due(self) -> list[str]:
        """The lines due now: each topic with losses not yet told whose period has passed."""
        now, out = self._clock(), []
        with self._lock:
            for topic, n in self._pending.items():
                last = self._last.get(topic)
                if n > 0 and (last is None or now - last >= self.period):
                    since = "" if last is None else f" in the last {now - last:.0f} s"
                    out.append(f"{n} frame(s) lost on {topic} before reaching the node{since} "
                               f"({self._total[topic]} since start): {LOSS_FIX}")
                    self._pending[topic], self._last[topic] = 0, now
        return out

def status_message(service, state: str, model: dict, loss_reported: bool, frame_id: str, stamp,
                   depth=None) -> Status:
    """``service``: a :class:`stvg_ros.stream.service.GroundingService`; ``model``: directory and kind; ``depth``: the
    3-D stage (:class:`stvg_ros.ros.depth_input.DepthInput`) when there is one."""
    s = Status()
    s.header.stamp, s.header.frame_id = stamp, frame_id
    s.state = state
    s.model = model["directory"] + MODEL_NOTES.get(model["kind"], ("", ""))[0]
    s.device = str(getattr(getattr(service.grounder, "adapter", None), "device", "") or "")
    w = service.window
    s.window_frames, s.window_capacity, s.window_span = len(w), w.max_frames, w.span
    s.input_rate, s.kept_rate = service.rate_in.rate, service.rate_kept.rate
    for name, value in vars(service.counters()).items():  # the counters have the fields' names
        setattr(s, name, type(getattr(s, name))(value))
    s.frame_loss_reported = loss_reported
    if depth is not None:
        depth.fill_status(s)
    s.last_frame_age = float(service.frame_age())
    s.queue_depth, s.queue_capacity = service.queue_depth, service.config.query_queue_size
    for info in service.standing():
        q = StandingQueryStatus(id=info["query_id"])
        for name, value in info.items():
            if name != "query_id":
                setattr(q, name, type(getattr(q, name))(value))
        s.standing.append(q)
    s.standing_count, s.standing_capacity = len(s.standing), service.config.max_standing_queries
    s.standing_duty, s.standing_duty_budget = service.standing_duty(), service.config.standing_duty_budget
    fill_memory_status(s, service.memory_status())
    return s


def diagnostics(name: str, s: Status, model_kind: str, problems: list[str], stage: Any = None,
                cache: Any = None, error: str = "") -> DiagnosticArray:
    """ERROR with ``error`` (a failed configure: its reason and fix); else WARN when not active, with a
    meaningless default model, or with the service's ``problems``; else OK (module docstring)."""
    problems = ([error] if error else []) + ([] if s.state == "active" else [s.state]) + \
        ([MODEL_NOTES[model_kind][1]] if model_kind in MODEL_NOTES else []) + list(problems)
    d = DiagnosticStatus(name=name, hardware_id=s.device or "unknown",
                         level=DiagnosticStatus.ERROR if error else
                         DiagnosticStatus.WARN if problems else DiagnosticStatus.OK)
    d.message = "; ".join(problems + [f"window {s.window_frames}/{s.window_capacity}, queue "
                                      f"{s.queue_depth}/{s.queue_capacity}"])
    d.values = [KeyValue(key=k, value=str(getattr(s, k))) for k in Status.get_fields_and_field_types()
                if k not in ("header", "standing", "cameras", "memory_oldest")]  # cameras: one /diagnostics entry each
    d.values += [KeyValue(key=f"standing {q.id}", value=f"{q.evaluations} evaluations, {q.mean_cost:.3f} s each, "
                                                       f"found={q.found}") for q in s.standing]
    if stage is not None:  # the live proposal stage's cost and state (ms per keyframe, skips, phrases)
        d.values.append(KeyValue(key="proposals", value=str(stage.stats())))
    if cache:  # the per-frame feature cache: entries, bytes (of max_bytes), hits, misses
        d.values += [KeyValue(key=f"feature_cache_{k}", value=str(cache[k]))
                     for k in ("entries", "bytes", "max_bytes", "hits", "misses", "hit_rate")]
        # pre-encoded when idle (preencode_when_idle), per kind, and how many of those a query then used
        d.values += [KeyValue(key=f"feature_cache_{k}", value=str(cache[k]))
                     for k in ("prefetched", "prefetch_hits") if k in cache]
    return DiagnosticArray(header=s.header, status=[d])
