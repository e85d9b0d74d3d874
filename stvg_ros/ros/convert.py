"""Between ROS messages and the core's plain types: stamps, boxes, requests, answers, detections."""

from __future__ import annotations

import bisect
from typing import Optional, Sequence

import numpy as np
from builtin_interfaces.msg import Time

from stvg_ros.msg import Tube, TubeBox
from stvg_ros.proposals import Detections
from stvg_ros.result import GroundingResult
from stvg_ros.service import Answer, GroundingRequest
from stvg_ros.standing import StandingRequest
from stvg_ros.window import NS, Frame

Box = tuple[float, float, float, float]


def stamp_to_ns(stamp) -> int:
    return int(stamp.sec) * NS + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Time:
    ns = max(0, int(ns))
    return Time(sec=ns // NS, nanosec=ns % NS)


def centre_size(box: Box) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = box
    return (x0 + x1) / 2.0, (y0 + y1) / 2.0, max(0.0, x1 - x0), max(0.0, y1 - y0)


def xyxy(cx: float, cy: float, sx: float, sy: float) -> Box:
    return cx - sx / 2.0, cy - sy / 2.0, cx + sx / 2.0, cy + sy / 2.0


def detections_from_msg(msg) -> Detections:
    """stvg_ros/Detections → core detections (boxes stay in the published image's pixels)."""
    kept = [d for d in msg.detections if d.size_x > 0 and d.size_y > 0]
    boxes = np.array([xyxy(d.center_x, d.center_y, d.size_x, d.size_y) for d in kept], np.float32).reshape(-1, 4)
    return Detections(boxes, np.array([d.score for d in kept], np.float32), [str(d.class_id) for d in kept],
                      [str(d.track_id) for d in kept])


def request_from_msg(msg, query_id: str) -> GroundingRequest:
    """stvg_ros/GroundingQuery → a core request (``query_id`` when the message has none)."""
    return GroundingRequest(msg.id or query_id, msg.text, stamp_to_ns(msg.start), stamp_to_ns(msg.end),
                            msg.attribute_query, msg.action_query)


def standing_request_from_msg(msg) -> StandingRequest:
    """stvg_ros/StandingQuery → a core standing request."""
    return StandingRequest(msg.id, msg.text, msg.attribute_query, msg.action_query, float(msg.period),
                           int(msg.every_n_frames), float(msg.window), bool(msg.cheap_first))


def tube_from_answer(answer: Answer, frame_id: str = "") -> Tube:
    """The service's answer → Tube (``frame_id``: the camera's, for an answer without frames); a
    standing query's event says why it was published (``event``, and what moved in ``reason``)."""
    r = answer.request
    if answer.result is not None:
        tube = tube_from_result(answer.result, FrameIndex(answer.frames), r.query_id, r.text, answer.latency)
    else:
        newest = answer.newest
        tube = tube_message(r.query_id, r.text, answer.reason, newest.frame_id if newest else frame_id,
                            newest.stamp_ns if newest else 0, answer.latency)
    tube.queue_time = float(answer.queue_time)
    tube.event = answer.event
    if answer.event and answer.result is not None and answer.reason:
        tube.reason = "; ".join(r for r in (answer.reason, tube.reason) if r)
    return tube


class FrameIndex:
    """Maps the float stamps handed to the grounder back to the window frames they came from."""

    def __init__(self, frames: Sequence[Frame]):
        self.frames = list(frames)
        self.stamps = [f.stamp for f in self.frames]
        self._exact = {s: f for s, f in zip(self.stamps, self.frames)}

    def frame(self, stamp: float) -> Frame:
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


def tube_message(query_id: str, text: str, reason: str = "", frame_id: str = "", newest_ns: int = 0,
                 latency: float = 0.0) -> Tube:
    """An empty Tube (found=false) carrying ``reason``: the answer to a query that was not served."""
    tube = Tube()
    tube.header.frame_id = frame_id
    tube.header.stamp = ns_to_stamp(newest_ns)
    tube.query_id = query_id
    tube.query = text
    tube.found = False
    tube.reason = reason
    tube.latency = float(latency)
    return tube


def tube_from_result(result: GroundingResult, index: FrameIndex, query_id: str, text: str,
                     latency: float) -> Tube:
    """The core's result → Tube, with boxes scaled back to the camera's pixels and exact stamps."""
    newest = index.frames[-1]
    tube = tube_message(query_id, text, result.reason, newest.frame_id, newest.stamp_ns, latency)
    tube.found = bool(result.found)
    tube.p_yes = float(result.p_yes)
    tube.score = float(result.score)
    boxes = sorted(result.boxes.items())
    if boxes:
        tube.start = ns_to_stamp(index.frame(boxes[0][0]).stamp_ns)
        tube.end = ns_to_stamp(index.frame(boxes[-1][0]).stamp_ns)
    else:
        tube.start = ns_to_stamp(index.frame(result.start).stamp_ns)
        tube.end = ns_to_stamp(index.frame(result.end).stamp_ns)
    seen = set()
    for stamp, box in boxes:
        frame = index.frame(stamp)
        if frame.stamp_ns in seen:
            continue
        seen.add(frame.stamp_ns)
        cx, cy, sx, sy = centre_size(frame.box_to_source(box))
        tube.boxes.append(TubeBox(stamp=ns_to_stamp(frame.stamp_ns), center_x=cx, center_y=cy, size_x=sx,
                                  size_y=sy, score=_nearest_score(stamp, result.frame_stamps, result.frame_scores)))
    tube.track_id = "" if result.track_id is None else str(result.track_id)
    sq = result.sub_queries
    if sq is not None:
        tube.attribute_query, tube.action_query, tube.sub_query_source = sq.attribute, sq.action, sq.source
    tube.processing_time = float(result.timings.get("total", 0.0)) if result.timings else 0.0
    return tube


def boxes_in_source(tube: Tube) -> dict[int, Box]:
    """A Tube's boxes as stamp (ns) → xyxy in the camera's pixels (for drawing and tests)."""
    return {stamp_to_ns(b.stamp): xyxy(b.center_x, b.center_y, b.size_x, b.size_y) for b in tube.boxes}


def optional_ns(stamp) -> Optional[int]:
    ns = stamp_to_ns(stamp)
    return ns or None
