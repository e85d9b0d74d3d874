"""The ``Tube`` message's content without ROS: one conversion for the node and for bags.

rclpy's generated message classes and a rosbags typestore's both take their fields as keywords,
so :func:`make_tube` builds a Tube from whichever classes ``types`` names (``types(name)`` → the
class for ``stvg_ros/msg/Tube``, ``stvg_ros/msg/TubeBox``, ``std_msgs/msg/Header``,
``builtin_interfaces/msg/Time``): the node passes the built ``stvg_ros.msg`` classes
(``stvg_ros.ros.convert``), :mod:`stvg_ros.evaluation.bags` its typestore's.  Every field is always given,
so neither side depends on message defaults.  Boxes go in and come out as corners; the message
carries centre and size (:mod:`stvg_ros.boxes`).  Stamps are integer nanoseconds.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

from .boxes import Box, from_centre_size, to_centre_size
from .stream.window import NS

#: message type name (``pkg/msg/Name``) → its class
MessageTypes = Callable[[str], type]


def stamp_to_ns(stamp) -> int:
    """A ``builtin_interfaces/Time`` (anything with ``sec`` and ``nanosec``) → nanoseconds."""
    return int(stamp.sec) * NS + int(stamp.nanosec)


def time_message(types: MessageTypes, ns: int):
    """Nanoseconds → a ``builtin_interfaces/Time`` (negative stamps become 0)."""
    ns = max(0, int(ns))
    return types("builtin_interfaces/msg/Time")(sec=ns // NS, nanosec=ns % NS)


def make_tube(types: MessageTypes, query_id: str, text: str, *, frame_id: str = "", stamp_ns: int = 0,
              found: bool = False, p_yes: float = 0.0, score: float = 0.0, start_ns: int = 0, end_ns: int = 0,
              boxes: Sequence[tuple[int, Box, float]] = (), track_id: str = "", attribute_query: str = "",
              action_query: str = "", sub_query_source: str = "", latency: float = 0.0,
              processing_time: float = 0.0, queue_time: float = 0.0, reason: str = "", event: str = "",
              boxes_from: str = "", positions: Sequence[Any] = (), position_frame_id: str = "", stream: str = "",
              alternatives: Sequence[Any] = (), camera_margin: Optional[float] = None) -> Any:
    """A ``Tube`` (defaults: the empty answer, ``found`` false); ``boxes``: ``(stamp_ns, corners, score)``;
    ``stream``: the camera's name (a multi-stream answer: the Tube's ``camera``);
    ``positions``: one :class:`~stvg_ros.stream.depth.Position3D` (or None) per box, when there is a 3-D stage;
    ``alternatives``: a query over the past's other tubes (:class:`stvg_ros.memory.recall.Alternative`), best first;
    ``camera_margin``: a query to several cameras, how far this camera's p_yes is ahead of the others' (None: NaN)."""
    TubeBox = types("stvg_ros/msg/TubeBox")
    tube_boxes = []
    for i, (ns, box, box_score) in enumerate(boxes):
        cx, cy, sx, sy = to_centre_size(box)
        tube_boxes.append(TubeBox(stamp=time_message(types, ns), center_x=float(cx), center_y=float(cy),
                                  size_x=float(sx), size_y=float(sy), score=float(box_score),
                                  **position_fields(types, positions[i] if i < len(positions) else None)))
    header = types("std_msgs/msg/Header")(stamp=time_message(types, stamp_ns), frame_id=frame_id)
    return types("stvg_ros/msg/Tube")(
        header=header, query_id=query_id, query=text, event=event, found=bool(found), p_yes=float(p_yes), score=float(score),
        start=time_message(types, start_ns), end=time_message(types, end_ns), boxes=tube_boxes, track_id=track_id,
        attribute_query=attribute_query, action_query=action_query, sub_query_source=sub_query_source,
        latency=float(latency), processing_time=float(processing_time), queue_time=float(queue_time), reason=reason,
        boxes_from=boxes_from, position_frame_id=position_frame_id, camera=stream,
        camera_margin=math.nan if camera_margin is None else float(camera_margin),
        alternatives=[types("stvg_ros/msg/TubeAlternative")(start=time_message(types, a.start_ns),
                                                           end=time_message(types, a.end_ns), score=float(a.score))
                      for a in alternatives])


def position_fields(types: MessageTypes, position: Any = None) -> dict:
    """A TubeBox's 3-D fields from a :class:`~stvg_ros.stream.depth.Position3D` (None: no 3-D stage, all zero)."""
    p = position
    point, vector = types("geometry_msgs/msg/Point"), types("geometry_msgs/msg/Vector3")
    if p is None:
        return dict(position_valid=False, position=point(x=0.0, y=0.0, z=0.0), extent=vector(x=0.0, y=0.0, z=0.0),
                    position_confidence=0.0, position_reason="")
    return dict(position_valid=bool(p.valid), position=point(x=float(p.x), y=float(p.y), z=float(p.z)),
                extent=vector(x=float(p.size_x), y=float(p.size_y), z=float(p.size_z)),
                position_confidence=float(p.confidence), position_reason=p.reason)


def tube_boxes(tube) -> dict[int, Box]:
    """A Tube's boxes as stamp (ns) → corners ``(x_min, y_min, x_max, y_max)``."""
    return {stamp_to_ns(b.stamp): from_centre_size(b.center_x, b.center_y, b.size_x, b.size_y) for b in tube.boxes}
