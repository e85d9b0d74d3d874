"""Standing queries: questions the service re-asks as the window slides, reporting only changes.

A client registers a :class:`StandingRequest` (:meth:`stvg_ros.stream.service.GroundingService.register`).
The service re-evaluates it on the freshest window every ``period`` seconds of stream time or every
``every_n_frames`` kept frames, when its worker has no one-shot query to serve and the duty budget
allows (:class:`StandingScheduler`), and reports an event only when the answer changes in a way a
user cares about (:class:`ChangeTracker`): the target *appeared*, its box *moved*, it
*disappeared*.  ``found`` has hysteresis: two thresholds on p_yes and a number of consecutive
evaluations past them; with ``standing_change_on`` > 0 an appearance also needs the grounded tube
to *change* (:func:`grounded_change`: the target acts, which a model's p_yes may tell poorly).  With
``cheap_first`` an evaluation is the existence probability alone (one forward pass), and the full
grounding runs only when it is needed (when p_yes reaches ``found_on`` while the change is asked for,
on appearance, and every ``standing_refresh_every``-th evaluation while the target is present, to
follow it).

Every registration ends with exactly one *ended* event (refused, cancelled, replaced, failed, or the
service stopped); none comes after it.  Plain logic without threads or clocks of its own: the
service holds the lock, runs the evaluations and passes the time in.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
from ..config import ServingConfig
from ..query import query_text
from .window import NS

#: events of a standing query (the Tube's ``event``); one-shot answers have ""
APPEARED, MOVED, DISAPPEARED, ENDED = "appeared", "moved", "disappeared", "ended"
EVENTS = (APPEARED, MOVED, DISAPPEARED, ENDED)

#: the reason a standing evaluation stops for a one-shot query (it runs again later)
PREEMPTED = "preempted by a one-shot query"
#: consecutive failed evaluations after which a standing query is ended
MAX_FAILURES = 3
#: seconds of worker time over which the duty used is reported
DUTY_HORIZON_S = 30.0


@dataclass(frozen=True)
class StandingRequest:
    """A question to keep asking.  ``period`` (seconds of stream time) and ``every_n_frames`` (kept
    frames) say how often, whichever comes first; both 0 = ``standing_period``.  ``window``: seconds
    of the newest frames evaluated (0 = the whole window).  ``cheap_first``: the existence
    probability each time, the full grounding only when needed.  ``stream``: to a multi-stream service, the
    camera to watch ("" or "all": every one, events naming theirs)."""

    query_id: str
    text: str
    attribute_query: str = ""
    action_query: str = ""
    period: float = 0.0
    every_n_frames: int = 0
    window: float = 0.0
    cheap_first: bool = False
    stream: str = ""

    def __post_init__(self):
        object.__setattr__(self, "text", query_text(self.text))  # the one trusted value from here on

    def problem(self) -> str:
        """What is wrong with the schedule, naming the fix ("" = nothing)."""
        if not self.query_id.strip():
            return "a standing query needs an id (to cancel it and to match its events)"
        for name in ("period", "window"):
            if getattr(self, name) < 0:
                return f"{name}={getattr(self, name)} is negative: use 0 (the default) or a positive number of seconds"
        if self.every_n_frames < 0:
            return f"every_n_frames={self.every_n_frames} is negative: use 0 (off) or a positive frame count"
        return ""


@dataclass(frozen=True)
class StandingRules:
    """When ``found`` flips and what counts as a move (from :class:`ServingConfig`'s ``standing_*``)."""

    found_on: float = 0.6
    found_off: float = 0.4
    confirm: int = 1
    move_box: float = 0.5
    refresh_every: int = 4
    change_on: float = 0.0  # grounded change (grey levels) an appearance needs besides p_yes (0 = none)
    move_confirm: int = 2  # full evaluations in a row the box must be away before `moved` (1 = at once)

    @classmethod
    def from_config(cls, c: ServingConfig) -> "StandingRules":
        return cls(c.standing_found_on, c.standing_found_off, c.standing_confirm, c.standing_move_box,
                   c.standing_refresh_every, c.standing_change_on, c.standing_move_confirm)

    def wants_change(self, found: bool, p_yes: float) -> bool:
        """Whether an evaluation with this p_yes needs :func:`grounded_change` (the full grounding's
        boxes) to decide: only while absent and p_yes reaches ``found_on``."""
        return self.change_on > 0 and not found and p_yes >= self.found_on


class ChangeTracker:
    """Hysteresis on ``found`` and change detection against the last tube reported."""

    def __init__(self, rules: StandingRules):
        self.rules = rules
        self.found = False
        self._streak = 0
        self.reported: Optional[tuple[Optional[tuple]]] = None  # (newest box,) of the last tube reported
        self._away = 0  # full evaluations in a row whose box was away from the reported one

    def observe(self, p_yes: float, change: Optional[float] = None) -> bool:
        """One evaluation's p_yes (and grounded change, when :meth:`StandingRules.wants_change`); True
        when ``found`` flips: p_yes at or above ``found_on`` and the change at or above ``change_on``
        (while absent) or p_yes below ``found_off`` (while present) for ``confirm`` evaluations in a row."""
        r = self.rules
        if self.found:
            against = p_yes < r.found_off
        else:
            against = p_yes >= r.found_on and (r.change_on <= 0 or (change is not None and change >= r.change_on))
        self._streak = self._streak + 1 if against else 0
        if self._streak < r.confirm:
            return False
        self.found, self._streak = not self.found, 0
        return True

    def state(self) -> tuple[bool, int]:
        return self.found, self._streak

    def restore(self, state: tuple[bool, int]) -> None:
        """Undo :meth:`observe` of an evaluation that did not complete."""
        self.found, self._streak = state

    def moved(self, result) -> str:
        """Why the target of ``result`` moved since the last tube reported ("" = it did not): its
        newest box's centre shifted by more than ``move_box`` times the box's size (the square root
        of its area, the mean of the two boxes').  Only the box counts: a new track id (trackers
        renumber a still object), a span that starts elsewhere or a box that grows or shrinks in
        place is no move.  Measured against the last *reported* box, so a slow drift is reported
        once it adds up.  The box must be away for ``move_confirm`` evaluations in a row (each one
        away from the reported box, wherever it went): a box that flickers to another object for one
        evaluation and back is no move, a target that moves on or stays where it went is."""
        if self.reported is None:
            return "first tube"
        box, new_box = self.reported[0], _newest_box(result)
        if box is None or new_box is None:
            return ""
        shift = box_shift(box, new_box)
        self._away = self._away + 1 if shift > self.rules.move_box else 0
        if self._away < self.rules.move_confirm:
            return ""
        confirmed = f", {self._away} evaluations in a row" if self.rules.move_confirm > 1 else ""
        return (f"box moved by {shift:.2f} of its size since the last report (more than {self.rules.move_box:g}"
                f"{confirmed})")

    def report(self, result) -> None:
        """``result`` was reported: later moves are measured against its newest box."""
        self.reported, self._away = (_newest_box(result),), 0


def grounded_change(images, stamps, boxes: dict) -> float:
    """How much the grounded target changed over a window: the mean absolute pixel difference (grey
    levels, 0-255, over the colour channels) between consecutive frames inside the union of their two
    boxes, averaged over the frame pairs that both have a box in ``boxes`` (stamp → box, a
    :class:`~stvg_ros.grounding.result.GroundingResult`'s); 0 with fewer than two.  An action (moving,
    turning, growing) changes the target's pixels; a still target changes only by the camera's noise.
    A few hundred microseconds of CPU per 8-frame window, no model pass."""
    diffs = []
    for i in range(1, len(images)):
        a, b = boxes.get(stamps[i - 1]), boxes.get(stamps[i])
        if a is None or b is None:
            continue
        h, w = images[i].shape[:2]
        x0, y0 = max(0, int(min(a[0], b[0]))), max(0, int(min(a[1], b[1])))
        x1, y1 = min(w, int(math.ceil(max(a[2], b[2]))) + 1), min(h, int(math.ceil(max(a[3], b[3]))) + 1)
        if x1 <= x0 or y1 <= y0:
            continue
        before = np.asarray(images[i - 1][y0:y1, x0:x1], dtype=np.float32)
        diffs.append(float(np.abs(np.asarray(images[i][y0:y1, x0:x1], dtype=np.float32) - before).mean()))
    return float(np.mean(diffs)) if diffs else 0.0


def _newest_box(result) -> Optional[tuple]:
    return result.boxes[max(result.boxes)] if result.boxes else None


def box_shift(a: tuple, b: tuple) -> float:
    """Distance between the centres of boxes ``a`` and ``b`` (x1, y1, x2, y2) in units of their size
    (the mean of the square roots of their areas); inf when both are empty."""
    size = 0.5 * (math.sqrt(max(0.0, (a[2] - a[0]) * (a[3] - a[1]))) + math.sqrt(max(0.0, (b[2] - b[0]) * (b[3] - b[1]))))
    d = math.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2)
    return d / size if size > 0 else (0.0 if d == 0 else math.inf)


class StandingQuery:
    """One registered standing query: its request, change tracker, schedule and cost."""

    def __init__(self, request: StandingRequest, on_event: Callable, rules: StandingRules, period_ns: int,
                 every_n: int):
        self.request, self.on_event = request, on_event
        self.tracker = ChangeTracker(rules)
        self.period_ns, self.every_n = period_ns, every_n
        self.last_stamp_ns: Optional[int] = None  # newest frame of the last evaluation (None: due at the next frame)
        self.frames_since = 0
        self.due_since: Optional[float] = None  # when it became due (None: not due)
        self.evaluations = self.full_evaluations = self.events = self.preempted = 0
        self.failures_in_row = 0
        self.since_full = 0
        self.cost = 0.0
        self.p_yes = 0.0
        self.last_full: Optional[tuple[Any, list]] = None  # (result, frames) of the last full grounding
        self._ended = False
        self._lock = threading.Lock()

    @property
    def query_id(self) -> str:
        return self.request.query_id

    @property
    def ended(self) -> bool:
        return self._ended

    def needs_full(self, flipped: bool) -> bool:
        """Cheap-first: whether this evaluation also runs the full grounding (on appearance, and
        every ``refresh_every``-th evaluation while present)."""
        if not self.tracker.found:
            return False
        every = self.tracker.rules.refresh_every
        return flipped or (every > 0 and self.since_full + 1 >= every)

    def deliver(self, answer, final: bool = False) -> bool:
        """Hand ``answer`` to the client unless the query has ended (``final``: this is its end)."""
        with self._lock:
            if self._ended:
                return False
            self._ended = final
            self.on_event(answer)
            return True

    def info(self) -> dict:
        r = self.request
        return dict(query_id=r.query_id, text=r.text, period=self.period_ns / NS, every_n_frames=self.every_n,
                    window=r.window, cheap_first=r.cheap_first, evaluations=self.evaluations,
                    full_evaluations=self.full_evaluations, events=self.events,
                    mean_cost=self.cost / self.evaluations if self.evaluations else 0.0,
                    found=self.tracker.found, p_yes=self.p_yes)


class StandingScheduler:
    """The registered standing queries, which is due, and the duty budget.  Not thread-safe: the
    service calls it under its lock.  Times (``now``) are the service clock's seconds."""

    def __init__(self, config: ServingConfig, now: float = 0.0):
        self.configure(config)
        self.queries: dict[str, StandingQuery] = {}
        self._not_before = 0.0
        self._busy: deque[tuple[float, float]] = deque()  # (end, seconds) of recent evaluations
        self._since = now

    def configure(self, config: ServingConfig) -> None:
        self.config = config
        self.rules = StandingRules.from_config(config)

    # -- registry ----------------------------------------------------------------------------
    def make(self, request: StandingRequest, on_event: Callable) -> StandingQuery:
        period, every = request.period, request.every_n_frames
        if period <= 0 and every <= 0:
            period = self.config.standing_period
        return StandingQuery(request, on_event, self.rules, int(round(period * NS)), every)

    def add(self, sq: StandingQuery, now: float) -> tuple[str, Optional[StandingQuery]]:
        """Register ``sq`` (due at once): ("", the query it replaced, if one had its id) or (why not, None)."""
        old = self.queries.get(sq.query_id)
        cap = self.config.max_standing_queries
        if old is None and len(self.queries) >= cap:
            return (f"{len(self.queries)} standing queries registered, max_standing_queries={cap}: cancel one "
                    f"by its id or raise max_standing_queries" if cap else
                    "standing queries are off (max_standing_queries=0): raise max_standing_queries"), None
        self.queries[sq.query_id] = sq
        sq.due_since = now
        return "", old

    def remove(self, query_id: str) -> Optional[StandingQuery]:
        return self.queries.pop(query_id, None)

    def clear(self) -> list[StandingQuery]:
        out, self.queries = list(self.queries.values()), {}
        return out

    def reset(self) -> None:
        """The stream restarted: every query is due at its next frame (trackers keep their state)."""
        for sq in self.queries.values():
            sq.last_stamp_ns, sq.frames_since = None, 0

    # -- schedule ----------------------------------------------------------------------------
    def on_frame(self, stamp_ns: int, now: float) -> bool:
        """A frame was kept; True when a query became due."""
        woke = False
        for sq in self.queries.values():
            sq.frames_since += 1
            if sq.due_since is not None:
                continue
            last = sq.last_stamp_ns
            if last is None or (sq.every_n and sq.frames_since >= sq.every_n) or \
                    (sq.period_ns and stamp_ns - last >= sq.period_ns - 1_000_000):
                sq.due_since, woke = now, True
        return woke

    def next_due(self, now: float) -> tuple[Optional[StandingQuery], Optional[float]]:
        """The query to evaluate now (the longest due), or (None, seconds until the budget allows one;
        None when none is due)."""
        due = [sq for sq in self.queries.values() if sq.due_since is not None]
        if not due:
            return None, None
        if now < self._not_before:
            return None, self._not_before - now
        return min(due, key=lambda sq: sq.due_since), None

    def started(self, sq: StandingQuery, newest_ns: int) -> None:
        sq.last_stamp_ns, sq.frames_since, sq.due_since = newest_ns, 0, None

    def skipped(self, sq: StandingQuery) -> None:
        """No evaluation possible now (too few frames): try again at the next frame."""
        sq.last_stamp_ns, sq.due_since = None, None

    def finished(self, sq: StandingQuery, seconds: float, now: float, preempted: bool = False) -> None:
        """An evaluation of ``sq`` took ``seconds`` of worker time.  The next may start only after
        ``seconds * (1 / budget - 1)`` more, so that standing evaluations use at most the budget's
        share of the worker; a preempted one is due again at once (its time still counts)."""
        sq.cost += seconds
        budget = self.config.standing_duty_budget
        self._not_before = now + seconds * (1.0 / budget - 1.0)
        self._busy.append((now, seconds))
        if preempted:
            sq.preempted += 1
            sq.due_since = now

    def duty(self, now: float) -> float:
        """Share of the last DUTY_HORIZON_S seconds (or since the scheduler was made) spent on standing
        evaluations."""
        start = now - DUTY_HORIZON_S
        while self._busy and self._busy[0][0] < start:
            self._busy.popleft()
        busy = sum(min(s, end - start) for end, s in self._busy)
        span = min(DUTY_HORIZON_S, now - self._since)
        return min(1.0, busy / span) if span > 0 else 0.0


__all__ = ["StandingRequest", "StandingRules", "StandingQuery", "StandingScheduler", "ChangeTracker", "box_shift", "grounded_change", "EVENTS",
           "APPEARED", "MOVED", "DISAPPEARED", "ENDED", "PREEMPTED", "MAX_FAILURES"]
