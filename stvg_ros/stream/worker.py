"""The service's worker: one scheduler for its three kinds of work, in this order of priority: the queued
one-shot queries, the standing evaluations that are due (:mod:`stvg_ros.stream.standing_evaluation`) and,
with ``preencode_when_idle``, pre-encoding the kept frames when idle; and how a query is grounded and
answered (proposals, progress, the one delivery of each answer).

:class:`Worker` is a part of :class:`~stvg_ros.stream.service.GroundingService` and works on its state (lock,
queue, window, grounder, counters); it runs on the worker thread, or on the caller's with
:meth:`Worker.run_pending` for a service started with ``threaded=False``.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from ..grounding.result import Cancelled, GroundingResult
from ..memory.recall import MemoryRecall
from .seams import GroundingModel
from .window import NS, Frame, images_of
from .requests import ANSWERED, CANCELLED, FAILED, REJECTED, Answer, GroundingRequest, _Job

#: what the worker's :meth:`GroundingService._take` returns besides a job
_PREENCODE, _STOPPED = "preencode", object()


class Worker:
    """The worker of a :class:`~stvg_ros.stream.service.GroundingService` (see the module docstring)."""

    # -- the worker ---------------------------------------------------------------------------------
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

    def _take(self, generation: int) -> "_Job | str | float | object | None":
        """(lock held) The next piece of work: a one-shot query first, else a due standing evaluation when
        the duty budget allows, else ``PREENCODE`` when idle; when there is none, how long until a standing
        query may be due (seconds, or None: until woken), or ``STOPPED``."""
        while True:
            if self._stopping or generation != self._generation:
                return _STOPPED
            if self._jobs:
                job: Optional[_Job] = self._jobs.popleft()
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

    def _do(self, work: "_Job | str", generation: int) -> None:
        if isinstance(work, str):  # _PREENCODE
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
        if problem and self.memory is None:
            return
        stopped = []

        def should_stop() -> bool:
            with self._lock:
                stop = self.queries_waiting() or self._stopping or generation != self._generation or \
                    not self.config.preencode_when_idle or self._standing.next_due(self._clock())[0] is not None
            if stop:
                stopped.append(True)
            return stop

        if not problem:  # no window yet (a restart before the camera): the memory alone
            try:
                grounder.prefetch(images_of(frames), self._keys(frames), should_stop=should_stop,
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
        """After the window's frames: the memory's whole segments not yet encoded, newest first (those written
        since the last idle moment, then older ones: after a restart, those already on disk), into at most half
        of the feature cache, so that remembered frames never push out the window's."""
        memory, cache = self.memory, grounder.feature_cache
        recall = self._memory_recall(grounder)
        cell, (oldest, newest) = recall.segment_ns, memory.span()
        done, neutral = self._memory_prefetched[2:]
        done.difference_update([c for c in done if c < oldest // cell])  # rolled over
        for key in [k for k in neutral if k[1][0] != memory.key(k[1][0][-1]) or k[1][0][-1] < oldest]:
            del neutral[key]  # windows rolled over, or of the live window (their keys are not the memory's)
        until = (newest // cell) * cell - 1  # whole segments only (the newest one is still being written)
        if until <= 0:
            return
        try:
            recall.prefetch(0, until, lambda: should_stop() or cache.stats().bytes > cache.max_bytes // 2,
                            newest_first=True, skip=done)
        except Exception as e:  # noqa: BLE001 - a query will encode them itself; keep serving
            self._warn(f"pre-encoding remembered frames failed: {type(e).__name__}: {e}", "preencode")
        done.update(recall.prefetched)

    def _memory_recall(self, grounder: GroundingModel) -> MemoryRecall:
        """The memory's two stages with this service's settings.  What outlives a query (the segments the idle
        worker encoded, the neutral answers: query-independent) is kept per store and segment grid."""
        memory, cell = self.memory, int(self.config.memory_segment_s * NS)
        store, segment_ns, _, _ = self._memory_prefetched
        if store is not memory or segment_ns != cell:  # another store or grid: start again
            self._memory_prefetched = (memory, cell, set(), {})
        return MemoryRecall(grounder, memory, self.config.memory_segment_s, neutral=self._memory_prefetched[3])

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
            self._conclude(job, result)

    def _conclude(self, job: _Job, result: GroundingResult) -> None:
        """Answer ``job`` with its grounding ``result``, or as cancelled when a cancel came in while it ran."""
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
        result = grounder.ground(images_of(frames), [f.stamp for f in frames], r.text,
                                 proposals=proposals or None, sub_queries=subs, checkpoint=check,
                                 frame_keys=self._keys(frames))
        self._note_boxes_from(result, proposals, subject)
        return result

    def _recall(self, grounder: GroundingModel, job: _Job, check: Callable[[str], None]) -> GroundingResult:
        """A request reaching beyond the window: the memory's two stages (:mod:`stvg_ros.memory.recall`) over the
        remembered keyframes and the window's snapshot; the answer's frames become the best tube's."""
        r = job.request
        found = self._memory_recall(grounder).answer(
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
                        self.window.newest, started - job.arrived, now - job.arrived, alternatives=job.alternatives,
                        stream=self.name)
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
