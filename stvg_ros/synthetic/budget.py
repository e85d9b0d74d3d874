"""A wall-clock budget that work is planned against: before each piece of work, does it still fit?

Why: the GPU runs (``bench/gpu_check.py``, ``python -m stvg_ros.synthetic.train --max-minutes``) go
unattended on a machine that is lent for a fixed time, so they must end inside it with their results
written, not be killed halfway.  Each kind of work (a training step, an evaluation, a checkpoint, a
benchmark case) records how long it took; the next one starts only if the largest duration seen so far
for it, plus whatever must still follow it, fits in what is left (with a safety ``margin``).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator


class TimeBudget:
    """``seconds`` of wall-clock time from construction (``clock`` is injectable for tests)."""

    def __init__(self, seconds: float, margin: float = 1.2, clock: Callable[[], float] = time.monotonic):
        if seconds <= 0:
            raise ValueError(f"a time budget needs seconds > 0, got {seconds}")
        self.seconds = float(seconds)
        self.margin = margin
        self.clock = clock
        self.start = clock()
        self._cost: dict[str, float] = {}

    def elapsed(self) -> float:
        return self.clock() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()

    def record(self, kind: str, seconds: float) -> None:
        """Remember that one piece of work of ``kind`` took ``seconds`` (the largest one is kept)."""
        self._cost[kind] = max(self._cost.get(kind, 0.0), float(seconds))

    def known(self, kind: str) -> bool:
        return kind in self._cost

    def expect(self, kind: str, default: float = 0.0) -> float:
        """What the next piece of work of ``kind`` is expected to take: the largest seen, else ``default``."""
        return self._cost.get(kind, default)

    def fits(self, *seconds: float) -> bool:
        """Whether work expected to take ``sum(seconds)`` (times the margin) ends inside the budget."""
        return self.margin * sum(seconds) <= self.left()

    @contextmanager
    def timed(self, kind: str) -> Iterator[None]:
        """Time the ``with`` block and :meth:`record` it under ``kind`` (also when it raises)."""
        t = self.clock()
        try:
            yield
        finally:
            self.record(kind, self.clock() - t)

    def summary(self) -> dict:
        return {"budget_s": self.seconds, "elapsed_s": round(self.elapsed(), 2),
                "largest_s": {k: round(v, 3) for k, v in self._cost.items()}}
