"""Queries over the past: a query whose time range reaches beyond the window, answered in two stages.

1. *Rank*: the remembered keyframes in the range (and the window's frames, as one more segment) are cut
   into segments of ``segment_s`` seconds on a fixed grid of stamps; each gets the model's own existence
   answer (:meth:`Grounder.existence`: one forward pass on the segment's sampled frames, the judgment the
   full method reports as ``p_yes``).
2. *Ground*: for each of the ``top_k`` best segments, the windows shifted by half a segment either way
   are judged too (an event across a boundary is whole in one of them), and the full method
   (:meth:`Grounder.ground`) runs on the best of the three.  The answer is the tube with the highest
   ``p_yes``, in absolute stamps, with the others as ranked alternatives ``(start, end, score)``.

Query-independent work that any later query reuses exactly (keyed by :meth:`~.store.MemoryStore.key`, held by
the grounder's feature cache within ``feature_cache_mb``, recomputed when evicted):

* every adapter (:class:`~stvg_ros.adapters.common.HFAdapter`: Qwen2.5-VL, Qwen2-VL, LLaVA-OneVision,
  LLaVA-NeXT-Video, the synthetic model): each keyframe's preprocessing and visual tokens;
* where the chat template puts the video before the question (the official Qwen and LLaVA templates),
  also the clip prefix's KV cache of each segment's sampled clip; the synthetic model's template puts the
  question first, so for it only the per-frame work is reusable (:func:`reused_work` measures which).

:meth:`MemoryRecall.prefetch` does that work ahead of queries (the service calls it while idle with
``preencode_when_idle``: every whole segment not yet encoded, newest first, those on disk from before a
restart included, into at most half of the feature cache).  Cancellation: the
``checkpoint`` is asked between segments (and between the grounder's stages), as in a window query.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Collection, Iterator, Optional, Sequence

from ..grounding.result import GroundingResult
from ..stream.window import NS, Frame
from .store import MemoryStore

#: fewest frames a segment needs to be judged (a shorter tail merges into the segment before it)
MIN_SEGMENT_FRAMES = 2


@dataclass
class Segment:
    """Consecutive frames of the past: ``keys`` identify them for the feature cache."""

    frames: list[Frame]
    keys: Optional[list]
    """None: frames with no identity for the cache (a window snapshot given without its keys)."""

    @property
    def start_ns(self) -> int:
        return self.frames[0].stamp_ns

    @property
    def end_ns(self) -> int:
        return self.frames[-1].stamp_ns


@dataclass(frozen=True)
class Alternative:
    """A tube the second stage found, in absolute stamps; ``score`` is its window's existence answer."""

    start_ns: int
    end_ns: int
    score: float


@dataclass
class Recollection:
    """A query over the past answered: the best tube (``result`` on ``frames``), the alternatives (best
    first, the answer's own tube included), every segment's rank score, and what it cost."""

    result: GroundingResult
    frames: list[Frame]
    alternatives: list[Alternative]
    ranking: list[tuple[int, int, float]] = field(default_factory=list)
    """``(start_ns, end_ns, p_yes)`` of every segment judged, in time order."""
    cost: dict = field(default_factory=dict)
    """CPU seconds of the stages ('read', 'rank', 'ground') and the counts ('segments', 'grounded')."""


def _segments(frames: Iterator[Frame], segment_ns: int, key: Callable[[Frame], object]) -> Iterator[Segment]:
    """Frames in time order cut on a fixed grid of ``segment_ns`` (absolute stamps), short tails merged."""
    current: list[Frame] = []
    cell = None
    for f in frames:
        c = f.stamp_ns // segment_ns
        if cell is not None and c != cell and len(current) >= MIN_SEGMENT_FRAMES:
            yield Segment(current, [key(x) for x in current])
            current = []
        cell = c
        current.append(f)
    if current:
        yield Segment(current, [key(x) for x in current])


def reused_work(grounder, frames: Sequence, stamps: Sequence[float]) -> list[str]:
    """Which query-independent kinds of work the grounder's adapter keeps for a keyed clip (e.g.
    ``['pixels', 'visual']``, plus ``'prefix'`` where the template puts the video first): measured by
    asking two different questions about the same keyed frames."""
    keys = [("reused-work-probe", i) for i in range(len(frames))]
    cache = grounder.feature_cache
    before = {k: v.get("hits", 0) for k, v in cache.stats().by_kind.items()}
    grounder.existence(frames, stamps, "the thing", frame_keys=keys)
    grounder.existence(frames, stamps, "another thing", frame_keys=keys)
    after = cache.stats().by_kind
    grounder.forget_frames(keys)
    return sorted(k for k, v in after.items() if v.get("hits", 0) > before.get(k, 0) and k != "answers")


class MemoryRecall:
    """The two-stage answer over ``store`` (and an optional window snapshot) with ``grounder``."""

    def __init__(self, grounder, store: MemoryStore, segment_s: float = 10.0, top_k: int = 3):
        self.grounder, self.store = grounder, store
        self.segment_ns = int(segment_s * NS)
        self.top_k = int(top_k)
        self.prefetched: set[int] = set()  # the segment cells the last prefetch encoded whole

    # -- the frames of a range -----------------------------------------------------------------------
    def segments(self, start_ns: int, end_ns: int, window: Sequence[Frame] = (),
                 window_keys: Sequence = ()) -> Iterator[Segment]:
        """The range's segments: remembered keyframes older than the window's first frame, then the window's
        frames (in the range) as one segment."""
        bounds = [x for x in (end_ns, window[0].stamp_ns - 1 if window else 0) if x > 0]
        stop = min(bounds) if bounds else 0
        key = self.store.key
        yield from _segments(self.store.iter_frames(start_ns, stop), self.segment_ns, lambda f: key(f.stamp_ns))
        if window:
            yield Segment(list(window), list(window_keys) if window_keys else None)

    # -- the answer ----------------------------------------------------------------------------------
    def rank(self, query: str, start_ns: int = 0, end_ns: int = 0, window: Sequence[Frame] = (),
             window_keys: Sequence = (), checkpoint: Optional[Callable[[str], None]] = None,
             cost: Optional[dict] = None) -> list:
        """``[(p_yes, segment)]`` of every segment in the range, in time order (stage 1).  ``checkpoint`` is
        called before each segment with the stage ``'rank D/N'`` (D segments of N judged), D advancing in
        steps of 5 % so that progress is reported about 20 times, and may raise to cancel."""
        cost = {} if cost is None else cost
        total = self._count(start_ns, end_ns, window)
        out = []
        t_read = t_rank = 0.0
        shown = 0
        t0 = time.process_time()
        for seg in self.segments(start_ns, end_ns, window, window_keys):
            t1 = time.process_time()
            t_read += t1 - t0
            if checkpoint is not None:
                if len(out) * 20 // max(total, 1) > shown * 20 // max(total, 1):
                    shown = len(out)
                checkpoint(f"rank {shown}/{max(total, len(out))}")
            p = self.grounder.existence([f.image for f in seg.frames], [f.stamp for f in seg.frames], query,
                                        frame_keys=seg.keys)
            out.append((p, seg))
            t0 = time.process_time()
            t_rank += t0 - t1
        cost.update(read=cost.get("read", 0.0) + t_read, rank=cost.get("rank", 0.0) + t_rank, segments=len(out))
        return out

    def answer(self, query: str, start_ns: int = 0, end_ns: int = 0, window: Sequence[Frame] = (),
               window_keys: Sequence = (), sub_queries=None, proposals=None,
               checkpoint: Optional[Callable[[str], None]] = None) -> Optional[Recollection]:
        """Both stages; None when the range holds no frame.  ``checkpoint``: the stages 'rank D/N' (see
        :meth:`rank`), 'shift' (judging the shifted windows), then each grounding's own."""
        cost: dict = {}
        ranked = self.rank(query, start_ns, end_ns, window, window_keys, checkpoint, cost)
        if not ranked:
            return None
        order = sorted(range(len(ranked)), key=lambda i: -ranked[i][0])[: self.top_k]
        t0 = time.process_time()
        candidates = []  # (p_yes, frames, keys) of the best window around each top segment
        for i in order:
            p, seg = ranked[i]
            best = (p, seg.frames, seg.keys)
            for shifted in self._shifted(ranked, i):
                if checkpoint is not None:
                    checkpoint("shift")
                q = self.grounder.existence([f.image for f in shifted.frames], [f.stamp for f in shifted.frames],
                                            query, frame_keys=shifted.keys)
                if q > best[0]:
                    best = (q, shifted.frames, shifted.keys)
            candidates.append(best)
        t_shift = time.process_time() - t0
        results = []
        for p, frames, keys in candidates:
            r = self.grounder.ground([f.image for f in frames], [f.stamp for f in frames], query,
                                     proposals=proposals, sub_queries=sub_queries, checkpoint=checkpoint,
                                     frame_keys=keys)
            results.append((r.p_yes, r, frames))
        cost.update(shift=t_shift, ground=time.process_time() - t0 - t_shift, grounded=len(results))
        results.sort(key=lambda x: -x[0])
        alternatives = [Alternative(_ns(r.start, fr), _ns(r.end, fr), float(p)) for p, r, fr in results]
        _, best_result, best_frames = results[0]
        ranking = [(seg.start_ns, seg.end_ns, float(p)) for p, seg in ranked]
        return Recollection(best_result, best_frames, alternatives, ranking, cost)

    def _shifted(self, ranked: list, i: int) -> list[Segment]:
        """The windows half a segment before and after segment ``i`` (frames of its neighbours)."""
        seg = ranked[i][1]
        half = self.segment_ns // 2
        out = []
        for j, lo, hi in ((i - 1, seg.start_ns - half, seg.end_ns - half), (i + 1, seg.start_ns + half,
                                                                           seg.end_ns + half)):
            if not 0 <= j < len(ranked):
                continue
            other = ranked[j][1]
            keyed = seg.keys is not None and other.keys is not None
            pool = sorted(zip(seg.frames + other.frames, (seg.keys + other.keys) if keyed else [None] * (
                len(seg.frames) + len(other.frames))), key=lambda fk: fk[0].stamp_ns)
            picked = [(f, k) for f, k in pool if lo <= f.stamp_ns <= hi]
            if len(picked) >= MIN_SEGMENT_FRAMES:
                out.append(Segment([f for f, _ in picked], [k for _, k in picked] if keyed else None))
        return out

    def _count(self, start_ns: int, end_ns: int, window: Sequence[Frame]) -> int:
        stamps = self.store.stamps(start_ns, end_ns)
        if window:
            stamps = [t for t in stamps if t < window[0].stamp_ns]
        return len({t // self.segment_ns for t in stamps}) + (1 if window else 0)

    # -- idle work -----------------------------------------------------------------------------------
    def prefetch(self, start_ns: int = 0, end_ns: int = 0, should_stop: Optional[Callable[[], bool]] = None,
                 newest_first: bool = False, skip: Collection[int] = ()) -> int:
        """Encode the remembered segments' frames into the grounder's feature cache (query-independent
        work, see the module docstring), oldest first (``newest_first``: the recent past, which queries ask
        about most, first); segments whose grid cell (``start // segment_ns``) is in ``skip`` are left out;
        stops when ``should_stop()``.  Returns units encoded; :attr:`prefetched` is then the set of cells
        done whole."""
        units = 0
        self.prefetched = set()
        if newest_first:
            cells = sorted({t // self.segment_ns for t in self.store.stamps(start_ns, end_ns)} - set(skip),
                           reverse=True)
            segments = (s for c in cells for s in self.segments(max(start_ns, c * self.segment_ns),
                                                                 _bound(end_ns, (c + 1) * self.segment_ns - 1)))
        else:
            segments = (s for s in self.segments(start_ns, end_ns) if s.start_ns // self.segment_ns not in skip)
        for seg in segments:
            if should_stop is not None and should_stop():
                break
            units += self.grounder.prefetch([f.image for f in seg.frames], seg.keys, should_stop=should_stop,
                                            stamps=[f.stamp for f in seg.frames])
            if should_stop is not None and should_stop():
                break
            self.prefetched.add(seg.start_ns // self.segment_ns)
        return units


def _bound(end_ns: int, cell_end_ns: int) -> int:
    """The earlier of two range ends (0 = unbounded)."""
    return min(end_ns, cell_end_ns) if end_ns else cell_end_ns


def _ns(seconds: float, frames: Sequence[Frame]) -> int:
    """A result's time (float seconds of one of ``frames``) as that frame's exact stamp."""
    return min(frames, key=lambda f: abs(f.stamp - seconds)).stamp_ns


def past_problem(store: Optional[MemoryStore], window: Sequence[Frame], start_ns: int, end_ns: int) -> tuple[bool, str]:
    """Whether a request's time range reaches beyond the window into ``store`` (its start is older than the
    window's first frame by more than a keyframe period), and why it cannot be served ("" when it can)."""
    if store is None or not start_ns:
        return False, ""
    if window and start_ns >= window[0].stamp_ns - store.period_ns:
        return False, ""
    if store.stamps(start_ns, end_ns) or any(start_ns <= f.stamp_ns and (not end_ns or f.stamp_ns <= end_ns)
                                             for f in window):
        return True, ""
    oldest, newest = store.span()
    held = f"it holds {oldest / NS:.3f} s to {newest / NS:.3f} s" if oldest else "it is empty so far"
    return True, (f"nothing remembered in the requested time range ({start_ns / NS:.3f} s to "
                  f"{'now' if not end_ns else f'{end_ns / NS:.3f} s'}): {held}; widen the range")
