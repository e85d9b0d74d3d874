"""Queries over the past: a query whose time range reaches beyond the window, answered in two stages.

1. *Rank*: the remembered keyframes in the range (and the window's frames, as one more segment) are cut
   into segments of ``segment_s`` seconds on a fixed grid of stamps; each gets the model's own existence
   answer (:meth:`Grounder.existence`: one forward pass on the segment's sampled frames, the judgment the
   full method reports as ``p_yes``).
2. *Re-rank*: the ``rerank_k`` (5) best segments are re-ordered by the existence answer on each widened by
   half a segment either way (one more forward pass each, on cached frames).
3. *Ground*: for each of the ``top_k`` best segments, the full method (:meth:`Grounder.ground`) runs on the
   segment widened by half a segment either way (an event across a boundary is whole in it).  The answer
   is the best-ranked segment's tube, in absolute stamps, with the others as ranked alternatives
   ``(start, end, score)``.  (Other rules, compared on validation streams: :class:`MemoryRecall`.)

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

import math
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
    """A tube the second stage found, in absolute stamps; ``score`` is what the answer was chosen by (with the
    default ``choose='rank'``: its segment's existence answer p(yes))."""

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
    """CPU seconds of the stages ('read', 'rank', 'rerank', 'ground') and the counts ('segments', 'grounded')."""
    order: list[tuple[int, int, float]] = field(default_factory=list)
    """The final order of the segments, best first: ``(start_ns, end_ns, score)``, the ``rerank_k`` re-ranked
    ones first (by their re-ranking score, a probability), then the rest by p(yes)."""


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


#: how the second stage picks the window it grounds around a top segment (see :class:`MemoryRecall`)
WINDOWS = ("shift", "widen")
#: how the answer is chosen among the groundings
CHOICES = ("p", "contrast", "rank")


class MemoryRecall:
    """The two-stage answer over ``store`` (and an optional window snapshot) with ``grounder``.

    ``contrast``: a neutral query ("" = none); with it a window's score is the query's existence answer
    against the neutral one's, ``logit p(query) - logit p(contrast)``, so that windows where the model says
    yes to anything stop outranking the one that holds the queried thing (without it: p(yes)).  The neutral
    answer is query-independent: the idle prefetch computes it once per segment, kept in ``neutral``.
    ``window``: what is grounded around each of the ``top_k`` segments: ``shift``, the best-scored of the
    segment and the windows half a segment earlier and later; ``widen``, the segment with half a segment of
    each neighbour (an event across a boundary is whole in it).  ``choose``: which grounding is the answer:
    ``p``, the highest p(yes); ``contrast``, the highest score of its window; ``rank``, the best segment's.
    ``rerank_k``/``rerank_windows``: before grounding, the ``rerank_k`` best segments by the ranking score are
    re-ranked by the mean logit of the query's existence answer over windows around each (``(lo, hi)`` in
    segments added to its start and end, cut from it and its neighbours; ``(0, 0)`` is the segment itself,
    already judged): a false positive of one sampled clip rarely holds when the clip moves, the event does.
    ``rerank_k=0``: no re-ranking (re-ranking uses p(yes), also with a ``contrast``: give 0 to rank by it alone).
    The defaults (10 s, top 3, no contrast, ``widen``, ``rank``, the top 5 re-ranked by their widened window's
    p(yes)) were chosen on validation streams (``bench/select_memory.py``; bench/README.md, 'Memory'): the
    contrast did not rank better than p(yes), the shifted windows clipped the event while choosing by p(yes)
    picked false positives, and the widened window's answer ranked the event first more often than the
    segment's own (recall@1 5/8 against 3/8)."""

    def __init__(self, grounder, store: MemoryStore, segment_s: float = 10.0, top_k: int = 3, contrast: str = "",
                 window: str = "widen", choose: str = "rank", neutral: Optional[dict] = None,
                 rerank_k: int = 5, rerank_windows: Sequence[tuple[float, float]] = ((-0.5, 0.5),)):
        if window not in WINDOWS or choose not in CHOICES:
            raise ValueError(f"window={window!r}, choose={choose!r}: use one of {WINDOWS} and {CHOICES}")
        if rerank_k < 0 or (rerank_k and not rerank_windows):
            raise ValueError(f"rerank_k={rerank_k!r} with rerank_windows={rerank_windows!r}: give rerank_k >= 0, "
                             f"and windows to re-rank by when it is > 0 (e.g. ((0, 0), (-0.5, 0.5)))")
        if any(not -1.0 <= float(x) <= 1.0 for w in rerank_windows for x in w):
            raise ValueError(f"rerank_windows={rerank_windows!r}: offsets are in segments, within [-1, 1] (a window "
                             f"is cut from the segment and its two neighbours)")
        self.rerank_k = int(rerank_k)
        self.rerank_windows = tuple((float(lo), float(hi)) for lo, hi in rerank_windows)
        self.grounder, self.store = grounder, store
        self.segment_ns = int(segment_s * NS)
        self.top_k = int(top_k)
        self.contrast, self.window, self.choose = contrast.strip(), window, choose
        self.neutral = {} if neutral is None else neutral
        """The neutral query's answer per keyed window (query-independent: filled by :meth:`prefetch` and by
        queries, shared by the caller across queries; a float each)."""
        self.prefetched: set[int] = set()  # the segment cells the last prefetch encoded whole

    def score(self, frames: Sequence[Frame], keys: Optional[list], query: str) -> tuple[float, float]:
        """``(score, p_yes)`` of ``query`` on the frames: p(yes), or its logit against the neutral query's."""
        images, stamps = [f.image for f in frames], [f.stamp for f in frames]
        p = self.grounder.existence(images, stamps, query, frame_keys=keys)
        if not self.contrast:
            return p, p
        return _logit(p) - _logit(self.neutral_answer(frames, keys)), p

    def neutral_answer(self, frames: Sequence[Frame], keys: Optional[list]) -> float:
        """p(yes) of the neutral query on the frames, computed once per keyed window (:attr:`neutral`)."""
        key = (self.contrast, tuple(keys)) if keys is not None else None
        p = self.neutral.get(key) if key is not None else None
        if p is None:
            p = self.grounder.existence([f.image for f in frames], [f.stamp for f in frames], self.contrast,
                                        frame_keys=keys)
            if key is not None:
                self.neutral[key] = p
        return p

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
        """``[(score, segment)]`` of every segment in the range, in time order (stage 1; :meth:`score`).
        ``checkpoint`` is called before each segment with the stage ``'rank D/N'`` (D segments of N judged), D
        advancing in steps of 5 % so that progress is reported about 20 times, and may raise to cancel."""
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
            out.append((self.score(seg.frames, seg.keys, query)[0], seg))
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
        order = sorted(range(len(ranked)), key=lambda i: -ranked[i][0])
        rank_score = {i: float(ranked[i][0]) for i in order}
        t0 = time.process_time()
        if self.rerank_k:
            head = order[: self.rerank_k]
            for i in head:
                if checkpoint is not None:
                    checkpoint("rerank")
                rank_score[i] = self.rerank_score(ranked, i, query)
            order = sorted(head, key=lambda i: -rank_score[i]) + order[self.rerank_k:]
        cost["rerank"] = time.process_time() - t0
        final = [(ranked[i][1].start_ns, ranked[i][1].end_ns, rank_score[i]) for i in order]
        order = order[: self.top_k]
        t0 = time.process_time()
        candidates = []  # (segment's score, window's score, frames, keys) of the window grounded around each
        for i in order:
            score, seg = rank_score[i], ranked[i][1]
            if self.window == "widen":
                wide = self._around(ranked, i, -(self.segment_ns // 2), self.segment_ns // 2)
                if checkpoint is not None and self.choose == "contrast":
                    checkpoint("shift")
                judged = self.score(wide.frames, wide.keys, query)[0] if self.choose == "contrast" else score
                candidates.append((score, judged, wide.frames, wide.keys))
                continue
            best = (score, seg.frames, seg.keys)
            for shifted in self._shifted(ranked, i):
                if checkpoint is not None:
                    checkpoint("shift")
                q = self.score(shifted.frames, shifted.keys, query)[0]
                if q > best[0]:
                    best = (q, shifted.frames, shifted.keys)
            candidates.append((score, *best))
        t_shift = time.process_time() - t0
        results = []
        for score, judged, frames, keys in candidates:
            r = self.grounder.ground([f.image for f in frames], [f.stamp for f in frames], query,
                                     proposals=proposals, sub_queries=sub_queries, checkpoint=checkpoint,
                                     frame_keys=keys)
            chosen_by = {"p": r.p_yes, "contrast": judged, "rank": score}[self.choose]
            results.append((chosen_by, r, frames))
        cost.update(shift=t_shift, ground=time.process_time() - t0 - t_shift, grounded=len(results))
        results.sort(key=lambda x: -x[0])
        alternatives = [Alternative(_ns(r.start, fr), _ns(r.end, fr), float(p)) for p, r, fr in results]
        _, best_result, best_frames = results[0]
        ranking = [(seg.start_ns, seg.end_ns, float(p)) for p, seg in ranked]
        return Recollection(best_result, best_frames, alternatives, ranking, cost, final)

    def rerank_score(self, ranked: list, i: int, query: str) -> float:
        """Segment ``i``'s re-ranking score: the mean logit of the query's existence answer over
        :attr:`rerank_windows` around it, as a probability (so it reads like the p(yes) it replaces)."""
        logits = []
        for lo, hi in self.rerank_windows:
            if lo == 0 and hi == 0 and not self.contrast:
                p = float(ranked[i][0])
            else:
                w = self._around(ranked, i, int(lo * self.segment_ns), int(hi * self.segment_ns))
                if len(w.frames) < MIN_SEGMENT_FRAMES:
                    continue
                p = self.grounder.existence([f.image for f in w.frames], [f.stamp for f in w.frames], query,
                                            frame_keys=w.keys)
            logits.append(_logit(p))
        return 1.0 / (1.0 + math.exp(-sum(logits) / len(logits))) if logits else float(ranked[i][0])

    def _shifted(self, ranked: list, i: int) -> list[Segment]:
        """The windows half a segment before and after segment ``i`` (frames of its neighbours)."""
        half = self.segment_ns // 2
        out = [self._around(ranked, i, lo, hi) for j, lo, hi in ((i - 1, -half, -half), (i + 1, half, half))
               if 0 <= j < len(ranked)]
        return [s for s in out if len(s.frames) >= MIN_SEGMENT_FRAMES]

    def _around(self, ranked: list, i: int, lo: int, hi: int) -> Segment:
        """Segment ``i``'s span moved by ``lo`` at its start and ``hi`` at its end, with the frames of it and its
        neighbours in that span."""
        seg = ranked[i][1]
        near = [ranked[j][1] for j in (i - 1, i, i + 1) if 0 <= j < len(ranked)]
        keyed = all(s.keys is not None for s in near)
        pool = sorted(((f, s.keys[n] if keyed else None) for s in near for n, f in enumerate(s.frames)),
                      key=lambda fk: fk[0].stamp_ns)
        picked = [(f, k) for f, k in pool if seg.start_ns + lo <= f.stamp_ns <= seg.end_ns + hi]
        return Segment([f for f, _ in picked], [k for _, k in picked] if keyed else None)

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
            if self.contrast:  # the neutral answer is query-independent too
                self.neutral_answer(seg.frames, seg.keys)
            self.prefetched.add(seg.start_ns // self.segment_ns)
        return units


def _logit(p: float) -> float:
    p = min(max(float(p), 1e-6), 1.0 - 1e-6)
    return math.log(p / (1.0 - p))


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
