"""Between ROS messages and the core's plain types: stamps, requests, answers, detections.

The message-free parts (a Tube's fields, centre/corner boxes) live in the core
(:mod:`stvg_ros.tube_messages`, :mod:`stvg_ros.boxes`), shared with the bags; this module gives
them the built ``stvg_ros.msg`` classes."""

from __future__ import annotations

import bisect
from typing import Optional, Sequence

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Vector3
from std_msgs.msg import Header

from stvg_ros.boxes import from_centre_size
from stvg_ros.msg import Tube, TubeBox
from stvg_ros.proposals.tracks import Detections
from stvg_ros.result import GroundingResult
from stvg_ros.service import Answer, GroundingRequest
from stvg_ros.standing import StandingRequest
from stvg_ros.tube_messages import make_tube, stamp_to_ns, time_message
from stvg_ros.window import Frame

_CLASSES = {"stvg_ros/msg/Tube": Tube, "stvg_ros/msg/TubeBox": TubeBox, "std_msgs/msg/Header": Header,
            "builtin_interfaces/msg/Time": Time, "geometry_msgs/msg/Point": Point,
            "geometry_msgs/msg/Vector3": Vector3}
#: the built message classes by type name, for :func:`stvg_ros.tube_messages.make_tube`
ROS_TYPES = _CLASSES.__getitem__


def ns_to_stamp(ns: int) -> Time:
    return time_message(ROS_TYPES, ns)


def detections_from_msg(msg) -> Detections:
    """stvg_ros/Detections → core detections (boxes stay in the published image's pixels)."""
    kept = [d for d in msg.detections if d.size_x > 0 and d.size_y > 0]
    boxes = np.array([from_centre_size(d.center_x, d.center_y, d.size_x, d.size_y) for d in kept],
                     np.float32).reshape(-1, 4)
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
        tube = make_tube(ROS_TYPES, r.query_id, r.text, reason=answer.reason,
                         frame_id=newest.frame_id if newest else frame_id, stamp_ns=newest.stamp_ns if newest else 0,
                         latency=answer.latency)
    tube.queue_time = float(answer.queue_time)
    tube.event = answer.event
    if answer.event and answer.newest is not None:  # an event is stamped when it was noticed
        tube.header.stamp = time_message(ROS_TYPES, answer.newest.stamp_ns)
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


def tube_from_result(result: GroundingResult, index: FrameIndex, query_id: str, text: str,
                     latency: float) -> Tube:
    """The core's result → Tube, with boxes scaled back to the camera's pixels and exact stamps."""
    newest = index.frames[-1]
    boxes = sorted(result.boxes.items())
    first, last = (boxes[0][0], boxes[-1][0]) if boxes else (result.start, result.end)
    in_source, seen = [], set()
    for stamp, box in boxes:
        frame = index.frame(stamp)
        if frame.stamp_ns in seen:
            continue
        seen.add(frame.stamp_ns)
        in_source.append((frame.stamp_ns, frame.box_to_source(box),
                          _nearest_score(stamp, result.frame_stamps, result.frame_scores)))
    sq = result.sub_queries
    return make_tube(
        ROS_TYPES, query_id, text, frame_id=newest.frame_id, stamp_ns=newest.stamp_ns, found=result.found,
        p_yes=result.p_yes, score=result.score, start_ns=index.frame(first).stamp_ns,
        end_ns=index.frame(last).stamp_ns, boxes=in_source,
        track_id="" if result.track_id is None else str(result.track_id),
        attribute_query=sq.attribute if sq is not None else "", action_query=sq.action if sq is not None else "",
        sub_query_source=sq.source if sq is not None else "", latency=latency,
        processing_time=float(result.timings.get("total", 0.0)) if result.timings else 0.0, reason=result.reason)


def optional_ns(stamp) -> Optional[int]:
    ns = stamp_to_ns(stamp)
    return ns or None
