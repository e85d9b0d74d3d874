"""What the grounding service needs of its parts: a grounding model and a live proposal stage.

:class:`stvg_ros.stream.service.GroundingService` calls only what these protocols declare, so anything that
has these methods can serve: :class:`stvg_ros.grounding.grounder.Grounder` and the proposal stages
(:mod:`stvg_ros.proposals.live`, :mod:`stvg_ros.proposals.motion`) do, and so does the tests' one fake
(``test/fake_grounder.py``); ``test/test_seams.py`` compares their signatures with these.
"""

from __future__ import annotations

from typing import Callable, Hashable, Iterable, Optional, Protocol, Sequence, runtime_checkable

import numpy as np

from ..config import ProposalConfig
from ..grounding.result import GroundingResult, Proposals, SubQueries


@runtime_checkable
class GroundingModel(Protocol):
    """Frames + query → tube (:meth:`ground`), its existence judgment alone (:meth:`existence`), and the
    per-frame cache the service fills when idle and empties as its window slides.  ``frame_keys``: one
    identity per frame, the same key always meaning the same pixels (the service's ``(stream, seq)``)."""

    def ground(self, frames: Sequence[np.ndarray], stamps: Sequence[float], query: str,
               proposals: Optional[Proposals] = None, sub_queries: Optional[SubQueries] = None,
               checkpoint: Optional[Callable[[str], None]] = None,
               frame_keys: Optional[Sequence] = None) -> GroundingResult:
        """The best tube; ``checkpoint(stage)`` before each stage may raise to stop it."""

    def existence(self, frames: Sequence[np.ndarray], stamps: Sequence[float], query: str,
                  checkpoint: Optional[Callable[[str], None]] = None,
                  frame_keys: Optional[Sequence] = None) -> float:
        """``ground``'s p(yes) alone, cheaply (a standing query's first look)."""

    def prefetch(self, frames: Sequence[np.ndarray], frame_keys: Sequence,
                 should_stop: Optional[Callable[[], bool]] = None, stamps: Optional[Sequence[float]] = None) -> int:
        """Encode ahead of a query, one unit at a time while ``should_stop()`` is false; units computed.
        ``stamps`` (seconds) place the frames in time, for what a query would sample from them."""

    def forget_frames(self, gone_keys: Iterable[Hashable]) -> int:
        """Drop cached work of the frames ``gone_keys`` (the window let them go), keeping every other
        frame's (another service's too); entries dropped."""

    def cache_stats(self):
        """A :class:`stvg_ros.adapters.feature_cache.CacheStats` of the per-frame cache (for status reports)."""

    def model_serving_defaults(self) -> dict:
        """Serving fields (standing thresholds) the model directory calibrated for this model, to apply under
        what the service's config leaves at its defaults; empty when there are none or they are switched off."""


@runtime_checkable
class ProposalStage(Protocol):
    """Candidate tracks from the live stream, in the stored frames' pixels.  ``config``: a
    :class:`stvg_ros.config.ProposalConfig` (its ``default_class`` and ``synonyms`` make query phrases)."""

    config: ProposalConfig

    @property
    def kind(self) -> str:
        """What proposes, for answers and status: 'motion', 'hog' or the detector's kind."""

    @property
    def description(self) -> str:
        """What runs, in words, for the log line of the stack's builder (:mod:`stvg_ros.stack`)."""

    def proposes(self, phrase: str) -> bool:
        """Whether this stage can propose ``phrase`` at all (HOG: people only), so an empty answer can say why."""

    def add_frame(self, frame: np.ndarray, stamp: float) -> bool:
        """A stored frame (its stamp in seconds); True when the stage took it."""

    def proposals_for(self, stamps: Sequence[float], phrase: str = "") -> Proposals:
        """Tracks of ``phrase`` at exactly ``stamps``, in ``Grounder.ground``'s form."""

    def reset(self) -> None:
        """Forget the stream (its time jumped back)."""

    def close(self, timeout: float = 5.0) -> None:
        """Stop any background work within about ``timeout`` s."""
