"""The tests' one grounding model without a model, behind :class:`stvg_ros.stream.seams.GroundingModel`.

It records every call, answers by a script of the stream, and can be held inside a stage, fail, or take
simulated time on the service's test clock, so service tests (one-shot and standing queries) need neither a
model nor sleeps.  ``test/test_seams.py`` checks it has the protocol's signatures.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Hashable, Iterable, Optional, Sequence

import numpy as np

from stvg_ros.adapters.feature_cache import CacheStats
from stvg_ros.grounding.result import GroundingResult, Proposals, SubQueries

GROUND_STAGES = ("encode", "decompose", "lra", "attention", "select")
EXIST_STAGES = ("encode", "exist")


def present(stamp: float) -> tuple[float, tuple[float, float, float, float]]:
    """The default script: the target is there, a 1x1 box at the origin."""
    return 0.9, (0.0, 0.0, 1.0, 1.0)


class FakeGrounder:
    """``script(newest stamp in s) -> (p_yes, box)`` decides every answer (``found`` = p_yes >= 0.5, the box
    on every frame).  ``cost``: seconds of ``clock`` (a test clock with ``now``) each call takes.
    ``on_stage(stage)`` runs after each stage's checkpoint (e.g. a query arriving mid-grounding).
    ``hold(stage)`` keeps the next call inside ``stage`` (any stage: None) until ``release`` is set, calling
    the checkpoint every ``check_every`` s (0: never, like one long forward pass).  ``renumber``: a new track
    id at every grounding (a tracker losing a still object)."""

    def __init__(self, script: Callable[[float], tuple] = present, cost: float = 0.0, clock: Optional[Clock] = None,
                 renumber: bool = False):
        self.script, self.cost, self.clock, self.renumber = script, cost, clock, renumber
        self.calls: list[dict] = []
        self.grounds = self.exists = 0
        self.fail = False
        self.on_stage: Optional[Callable[[str], None]] = None
        self.forgotten: list[set] = []
        self.serving_defaults: dict = {}
        self.release, self.entered = threading.Event(), threading.Event()
        self._hold: tuple | None = None
        self._lock = threading.Lock()

    def hold(self, stage: str | None = None, check_every: float = 0.01, timeout: float = 30.0) -> None:
        self.release.clear()
        self._hold = (stage, check_every, timeout)

    def _stages(self, names: Sequence[str], checkpoint: Optional[Callable[[str], None]]) -> None:
        for stage in names:
            if checkpoint is not None:
                checkpoint(stage)
            if self.on_stage is not None:
                self.on_stage(stage)
            if self._hold is not None and self._hold[0] in (None, stage):
                _, every, timeout = self._hold
                self._hold = None
                self.entered.set()
                deadline = time.monotonic() + timeout
                while not self.release.wait(every or 0.01) and time.monotonic() < deadline:
                    if checkpoint is not None and every:
                        checkpoint(stage)
            if self.cost and self.clock is not None:
                self.clock.now += self.cost / len(names)
        if self.fail:
            raise RuntimeError("out of memory")

    def ground(self, frames: Sequence[np.ndarray], stamps: Sequence[float], query: str,
               proposals: Optional[Proposals] = None, sub_queries: Optional[SubQueries] = None,
               checkpoint: Optional[Callable[[str], None]] = None,
               frame_keys: Optional[Sequence] = None) -> GroundingResult:
        self.calls.append(dict(kind="ground", stamps=list(stamps), query=query, proposals=proposals,
                               sub_queries=sub_queries, frame_keys=frame_keys))
        self._stages(GROUND_STAGES, checkpoint)
        with self._lock:
            self.grounds += 1
        p, box = self.script(stamps[-1])
        return GroundingResult(query=query, found=p >= 0.5, score=1.0, start=stamps[0], end=stamps[-1],
                               boxes={s: tuple(box) for s in stamps}, track_id=self.grounds if self.renumber else None,
                               sub_queries=sub_queries or SubQueries(query, query, "none"), p_yes=p)

    def existence(self, frames: Sequence[np.ndarray], stamps: Sequence[float], query: str,
                  checkpoint: Optional[Callable[[str], None]] = None,
                  frame_keys: Optional[Sequence] = None) -> float:
        self.calls.append(dict(kind="existence", stamps=list(stamps), query=query, frame_keys=frame_keys))
        self._stages(EXIST_STAGES, checkpoint)
        with self._lock:
            self.exists += 1
        return self.script(stamps[-1])[0]

    def prefetch(self, frames: Sequence[np.ndarray], frame_keys: Sequence,
                 should_stop: Optional[Callable[[], bool]] = None, stamps: Optional[Sequence[float]] = None) -> int:
        return 0  # no cache

    def forget_frames(self, gone_keys: Iterable[Hashable]) -> int:
        self.forgotten.append(set(gone_keys))
        return 0

    def model_serving_defaults(self) -> dict:
        return dict(self.serving_defaults)

    def cache_stats(self) -> CacheStats:
        return CacheStats()


class Clock:
    """A service's ``clock`` the test moves (and a fake's ``cost``): time without sleeping."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now
