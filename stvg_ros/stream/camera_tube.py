"""An answer in the camera's terms: the input frames' own stamps and boxes in the published image's pixels.

The grounder works on the window's copies of the frames (downscaled at ingest, timed in float seconds);
whoever asked, a Python caller of :class:`stvg_ros.stream.service.GroundingService` or the ROS node, gets the
tube back in what the camera published: the integer-nanosecond stamps of the input frames, boxes in
the source image's pixels, and the frames' ``frame_id``.  This is the one place that maps the one to
the other (used by :attr:`stvg_ros.stream.requests.Answer.tube`); its fields are those of the ``Tube`` message,
so the ROS conversion is a field copy (:func:`stvg_ros.tube_messages.make_tube`).
"""

from __future__ import annotations

import bisect
import dataclasses
from dataclasses import dataclass
from typing import Optional, Sequence

from ..boxes import Box
from ..grounding.result import GroundingResult
from .window import Frame


@dataclass(frozen=True)
class CameraTube:
    """One answer as the camera sees it.  ``stamp_ns``/``frame_id``: the newest frame the answer was made
    on (a standing query's event: the frame at which it was noticed); ``start_ns``/``end_ns`` and each box's
    stamp are input frames' stamps, exactly; ``boxes``: ``(stamp_ns, (x_min, y_min, x_max, y_max) in the
    source image's pixels, temporal score)`` in time order.  An answer without a result (rejected, cancelled,
    failed, ended) has ``found`` false, no boxes, and ``reason``.  ``stream``: the camera's name in a
    multi-stream service ("" with one stream)."""

    query_id: str
    text: str
    frame_id: str = ""
    stamp_ns: int = 0
    found: bool = False
    p_yes: float = 0.0
    score: float = 0.0
    start_ns: int = 0
    end_ns: int = 0
    boxes: tuple[tuple[int, Box, float], ...] = ()
    track_id: str = ""
    attribute_query: str = ""
    action_query: str = ""
    sub_query_source: str = ""
    latency: float = 0.0
    processing_time: float = 0.0
    queue_time: float = 0.0
    reason: str = ""
    event: str = ""
    boxes_from: str = ""
    stream: str = ""
    alternatives: tuple = ()
    """A query over the past (memory, issue 33): the tubes its second stage found, best first, as
    :class:`stvg_ros.memory.recall.Alternative` (start_ns, end_ns, score); () for a query about the window."""
    camera_margin: Optional[float] = None
    """A query to several streams: this stream's p_yes minus the highest of the other streams that answered (how
    far the best camera is ahead; negative for the others); None when one stream answered."""

    @property
    def boxes_by_stamp(self) -> dict[int, Box]:
        """``boxes`` as input stamp (ns) → box in source pixels."""
        return {ns: box for ns, box, _ in self.boxes}

    def fields(self) -> dict:
        """Every field by name (the keywords of :func:`stvg_ros.tube_messages.make_tube`)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


class _Frames:
    """The float stamps handed to the grounder → the window frames they came from (exact, else nearest)."""

    def __init__(self, frames: Sequence[Frame]):
        self.frames = list(frames)
        self.stamps = [f.stamp for f in self.frames]
        self._exact = {s: f for s, f in zip(self.stamps, self.frames)}

    def at(self, stamp: float) -> Frame:
        f = self._exact.get(stamp)
        if f is not None:
            return f
        i = bisect.bisect_left(self.stamps, stamp)
        near = [j for j in (i - 1, i) if 0 <= j < len(self.frames)]
        return self.frames[min(near, key=lambda j: abs(self.stamps[j] - stamp))]


def _nearest_score(stamp: float, stamps: Sequence[float], scores: Sequence[float]) -> float:
    if not stamps or len(stamps) != len(scores):
        return 0.0
    j = min(range(len(stamps)), key=lambda k: abs(stamps[k] - stamp))
    return float(scores[j])


def camera_tube(result: GroundingResult, frames: Sequence[Frame], query_id: str, text: str,
                **answer: object) -> CameraTube:
    """``result`` (grounded on ``frames``, the window's copies) in the camera's terms; ``answer``: the other
    :class:`CameraTube` fields (latency, queue_time, event, ...)."""
    index = _Frames(frames)
    boxes = sorted(result.boxes.items())
    first, last = (boxes[0][0], boxes[-1][0]) if boxes else (result.start, result.end)
    in_source, seen = [], set()
    for stamp, box in boxes:
        frame = index.at(stamp)
        if frame.stamp_ns in seen:
            continue
        seen.add(frame.stamp_ns)
        in_source.append((frame.stamp_ns, frame.box_to_source(box),
                          _nearest_score(stamp, result.frame_stamps, result.frame_scores)))
    newest = index.frames[-1]
    sq = result.sub_queries
    fields: dict = dict(
        frame_id=newest.frame_id, stamp_ns=newest.stamp_ns, found=bool(result.found), p_yes=float(result.p_yes),
        score=float(result.score), start_ns=index.at(first).stamp_ns, end_ns=index.at(last).stamp_ns,
        boxes=tuple(in_source), track_id="" if result.track_id is None else str(result.track_id),
        attribute_query=sq.attribute if sq is not None else "", action_query=sq.action if sq is not None else "",
        sub_query_source=sq.source if sq is not None else "",
        processing_time=float(result.timings.get("total", 0.0)) if result.timings else 0.0, reason=result.reason,
        boxes_from=result.boxes_from)
    fields.update(answer)
    return CameraTube(query_id, text, **fields)


def empty_tube(query_id: str, text: str, newest: Optional[Frame], **answer: object) -> CameraTube:
    """The answer without a result, stamped with the newest window frame when there is one."""
    fields: dict = dict(frame_id=newest.frame_id, stamp_ns=newest.stamp_ns) if newest is not None else {}
    fields.update(answer)
    return CameraTube(query_id, text, **fields)
