"""Between ROS messages and the core's plain types: stamps, requests, answers, detections.

The message-free parts (a Tube's fields, centre/corner boxes) live in the core
(:mod:`stvg_ros.tube_messages`, :mod:`stvg_ros.boxes`), shared with the bags; this module gives
them the built ``stvg_ros.msg`` classes."""

from __future__ import annotations

from typing import Optional

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Vector3
from std_msgs.msg import Header

from stvg_ros.boxes import from_centre_size
from stvg_ros.msg import Tube, TubeAlternative, TubeBox
from stvg_ros.proposals.tracks import Detections
from stvg_ros.stream.requests import Answer, GroundingRequest
from stvg_ros.stream.standing import StandingRequest
from stvg_ros.tube_messages import make_tube, stamp_to_ns, time_message

_CLASSES = {"stvg_ros/msg/Tube": Tube, "stvg_ros/msg/TubeBox": TubeBox, "std_msgs/msg/Header": Header,
            "builtin_interfaces/msg/Time": Time, "geometry_msgs/msg/Point": Point,
            "geometry_msgs/msg/Vector3": Vector3, "stvg_ros/msg/TubeAlternative": TubeAlternative}
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
                            msg.attribute_query, msg.action_query, stream=msg.camera, each_stream=bool(msg.each_camera),
                            last_s=float(msg.last_s))


def standing_request_from_msg(msg) -> StandingRequest:
    """stvg_ros/StandingQuery → a core standing request."""
    return StandingRequest(msg.id, msg.text, msg.attribute_query, msg.action_query, float(msg.period),
                           int(msg.every_n_frames), float(msg.window), bool(msg.cheap_first), stream=msg.camera)


def tube_from_answer(answer: Answer, frame_id: str = "") -> Tube:
    """The service's answer → Tube: a field copy of :attr:`Answer.tube` (the camera's stamps and pixels;
    ``frame_id``: the camera's, for an answer made before any frame arrived)."""
    fields = answer.tube.fields()
    fields["frame_id"] = fields["frame_id"] or frame_id
    return make_tube(ROS_TYPES, **fields)


def optional_ns(stamp) -> Optional[int]:
    ns = stamp_to_ns(stamp)
    return ns or None
