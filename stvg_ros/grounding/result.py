"""What one grounding returns: the tube and how it was found."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable, Optional

import numpy as np

from ..boxes import Box


#: Object tracks offered as proposals: track id → frame stamp (seconds, an element of the
#: ``stamps`` given to ``ground``) → box.  A track may miss frames.
Proposals = dict[Hashable, dict[float, Box]]


@dataclass
class SubQueries:
    """DSTH's decomposition of a query: ``attribute`` drives the spatial prompt, ``action`` the temporal one."""

    attribute: str
    action: str
    source: str = "rules"  # "caller", "model", "rules" or "none"


@dataclass
class RelevanceMaps:
    """Relevance maps on the model's token grid, one per frame the model saw (``GroundingResult.frame_stamps``),
    ``(T, rows, cols)`` float32.  ``spatial`` is after TAS assembly when TAS is on.

    ``content_box`` is the region of the input frame the grid covers, in pixels, so a map can be
    upsampled onto the frame (see ``stvg_ros.render``).
    """

    spatial: np.ndarray
    temporal: np.ndarray
    content_box: tuple[float, float, float, float]
    image_size: tuple[int, int]  # (H, W)


@dataclass
class GroundingResult:
    """The best tube for a query, always filled, whatever the existence judgment.

    ``boxes`` has one entry per stamp in ``[start, end]``: of every given frame when ground() was given
    more frames than it samples (``GroundingConfig.tube_frames``, default), else of the frames used.
    ``found`` is the model's yes/no judgment that the queried thing is in the clip and ``score``
    the chosen track's spatial score; ``p_yes`` the probability behind ``found``.
    """

    query: str
    found: bool
    score: float
    start: float
    end: float
    boxes: dict[float, Box]
    track_id: Optional[Hashable]
    sub_queries: SubQueries
    p_yes: float = 0.0
    frame_stamps: list[float] = field(default_factory=list)
    """Stamps of the frames the model saw (the sampled subset of the input)."""
    frame_scores: list[float] = field(default_factory=list)
    """Temporal relevance per frame in ``frame_stamps`` (inside the chosen track)."""
    track_scores: dict = field(default_factory=dict)
    """Spatial score of every candidate track (proposal-free: the attention-built track)."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per stage (encode, decompose, lra, attention, select, total)."""
    relevance: Optional[RelevanceMaps] = None
    reason: str = ""
    """Why the result is degenerate, when it is (e.g. no proposal overlaps the sampled frames)."""
    grounding_tokens: dict[str, str] = field(default_factory=dict)
    """The grounding token each relevance map used ('spatial', 'temporal', 'tas' → token string)."""
    boxes_from: str = ""
    """Where the boxes came from when a service chose the proposals (e.g. 'hog tracks', or the fallback:
    'proposal-free boxes: hog found no person'); "" when the caller gave the proposals itself."""

    def to_dict(self) -> dict:
        """JSON-friendly view (no relevance maps)."""
        return {
            "query": self.query,
            "found": self.found,
            "score": self.score,
            "p_yes": self.p_yes,
            "start": self.start,
            "end": self.end,
            "boxes": {f"{k:.6f}": list(v) for k, v in sorted(self.boxes.items())},
            "track_id": self.track_id if isinstance(self.track_id, (int, str, type(None))) else str(self.track_id),
            "sub_queries": {"attribute": self.sub_queries.attribute, "action": self.sub_queries.action,
                            "source": self.sub_queries.source},
            "frame_stamps": self.frame_stamps,
            "frame_scores": self.frame_scores,
            "timings": self.timings,
            "reason": self.reason,
            "grounding_tokens": dict(self.grounding_tokens),
            "boxes_from": self.boxes_from,
        }


class Cancelled(Exception):
    """Raised by a ``Grounder.ground(checkpoint=...)`` callback to stop a grounding between stages
    (or LRA steps); the message says why (e.g. "the node is shutting down")."""
