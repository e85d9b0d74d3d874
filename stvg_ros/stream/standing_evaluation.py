"""Standing queries evaluated by the service: registration, cancel and replacement, the evaluation job the
worker runs when one is due, and the events it reports; the rules themselves (schedule, duty budget,
hysteresis on ``found``, change detection) are in :mod:`stvg_ros.stream.standing`.

:class:`StandingEvaluation` is a part of :class:`~stvg_ros.stream.service.GroundingService` and works on
its state.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

from ..config import ServingConfig
from ..presets import apply_model_serving_defaults
from ..grounding.result import Cancelled, GroundingResult
from .standing import (APPEARED, DISAPPEARED, ENDED, MAX_FAILURES, MOVED, PREEMPTED, StandingQuery, StandingRequest,
                       grounded_change)
from .window import NS
from .requests import ANSWERED, CANCELLED, FAILED, REJECTED, Answer, GroundingRequest, _Job


class StandingEvaluation:
    """Standing queries of a :class:`~stvg_ros.stream.service.GroundingService` (see the module docstring)."""

    # -- standing queries ----------------------------------------------------------------------------
    def _standing_config(self) -> ServingConfig:
        """The config standing queries run by: the grounder's model-calibrated thresholds
        (``Grounder.serving_defaults``) under the fields this service's config leaves at their defaults."""
        model = self.grounder.model_serving_defaults() if self.grounder is not None else {}
        if not model:
            return self.config
        return apply_model_serving_defaults(self.config, model)[0]

    def register(self, request: StandingRequest, on_event: Callable[[Answer], None]) -> bool:
        """Register a standing query (see :mod:`stvg_ros.stream.standing`); True when registered.  Its events
        (``Answer.event``) and finally one ``ended`` go to ``on_event`` (from the worker, or from this
        thread for a refusal, which is its ``ended``).  An id already registered is replaced."""
        text = request.text  # trusted: normalised when the request was made (stvg_ros.query)
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

    def _has_standing(self, query_id: str) -> bool:
        with self._lock:
            return query_id in self._standing.queries

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
        return Answer(GroundingRequest(r.query_id, r.text), status, reason, newest=self.window.newest, event=ENDED,
                      stream=self.name)

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
            if self.queries_waiting():
                raise Cancelled(PREEMPTED)
            job.stage = stage

        saved = sq.tracker.state()
        preempted, full = False, False
        try:
            check("queued")
            if grounder is None:
                raise Cancelled("no model loaded")
            cheap, rules = sq.request.cheap_first, sq.tracker.rules
            result = None
            if cheap:
                p_yes = float(grounder.existence([f.image for f in frames], [f.stamp for f in frames], r.text,
                                                 checkpoint=check, frame_keys=self._keys(frames)))
            if not cheap or rules.wants_change(sq.tracker.found, p_yes):  # the change needs the tube's boxes
                result = self._grounding(grounder, r, frames, check)
                p_yes = p_yes if cheap else float(result.p_yes)
                full = True
            change = None
            if result is not None and rules.wants_change(sq.tracker.found, p_yes):
                change = grounded_change([f.image for f in frames], [f.stamp for f in frames],
                                        result.boxes)
            flipped = sq.tracker.observe(p_yes, change)
            if cheap and result is None and sq.needs_full(flipped):
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
                        frames[-1] if frames else self.window.newest, 0.0, cost, event=event, stream=self.name)
        if sq.deliver(answer):
            sq.events += 1
            with self._lock:
                self._counters.standing_events += 1
