"""A Tube as annotations other tools draw on the camera image: ImageMarker, Detection2DArray.

Foxglove's Image panel (and RViz's image display plugins) overlay ``visualization_msgs/ImageMarker``
messages on the image whose stamp and frame they carry, so each marker is stamped with the stamp of
the source image its box belongs to (``TubeBox.stamp``) and the camera's ``frame_id``
(``Tube.header.frame_id``). Fixed namespace and ids make each answer replace the previous one's
drawing. visualization_msgs has no array form of ImageMarker (Foxglove's ``ImageMarkerArray`` lives
in foxglove_msgs), so a tube becomes a short list of markers, published one by one.

``vision_msgs/Detection2DArray`` is built only where vision_msgs is importable (a ROS install with
ros-<distro>-vision-msgs); this repository's venv cannot install it, so that conversion is untested
here.
"""

from __future__ import annotations

from typing import Optional, Sequence

from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import ImageMarker

from stvg_ros.boxes import from_centre_size

try:  # optional: not on PyPI, present in ROS installs that have vision_msgs
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose
except ImportError:  # pragma: no cover - depends on the ROS install
    Detection2D = Detection2DArray = ObjectHypothesisWithPose = None

#: marker namespace and ids: a new answer replaces the drawing of the previous one
MARKER_NS = "stvg_tube"
BOX_ID = 0  # the box on the tube's newest frame
TUBE_ID = 1  # every box of the tube (optional)

#: outline colours (RGBA 0-1): the model judged the query to hold, or not (the best tube is still drawn)
FOUND_COLOR = (0.1, 0.9, 0.2, 1.0)
NOT_FOUND_COLOR = (1.0, 0.6, 0.0, 1.0)
TUBE_ALPHA = 0.45  # the whole tube is drawn fainter than the newest box


def _color(rgba: Sequence[float]) -> ColorRGBA:
    r, g, b, a = (float(c) for c in rgba)
    return ColorRGBA(r=r, g=g, b=b, a=a)


def _corners(box) -> list[Point]:
    x0, y0, x1, y1 = (float(v) for v in from_centre_size(box.center_x, box.center_y, box.size_x, box.size_y))
    return [Point(x=x0, y=y0), Point(x=x1, y=y0), Point(x=x1, y=y1), Point(x=x0, y=y1)]


def _marker(tube, stamp, marker_id: int, lifetime: float) -> ImageMarker:
    m = ImageMarker()
    m.header.frame_id = tube.header.frame_id
    m.header.stamp = stamp
    m.ns = MARKER_NS
    m.id = marker_id
    sec = max(0.0, float(lifetime))
    m.lifetime = Duration(sec=int(sec), nanosec=int(round((sec - int(sec)) * 1e9)) % 1_000_000_000)
    return m


def tube_markers(tube, whole_tube: bool = False, line_width: float = 2.0, lifetime: float = 0.0,
                 color: Optional[Sequence[float]] = None) -> list[ImageMarker]:
    """ImageMarkers drawing ``tube`` (a ``stvg_ros/Tube``) on the camera image.

    The first marker outlines the box on the tube's newest frame (a closed POLYGON, stamped with that
    frame's stamp); with ``whole_tube`` a second one (LINE_LIST, fainter, same stamp) outlines every box
    of the tube. A tube without boxes gives REMOVE markers, so the previous answer's drawing goes away.
    ``lifetime`` (s, 0 = until replaced) is how long a viewer keeps them; ``color`` overrides the
    found/not-found colour.
    """
    ids = [BOX_ID, TUBE_ID] if whole_tube else [BOX_ID]
    if not tube.boxes:
        removes = []
        for marker_id in ids:
            m = _marker(tube, tube.header.stamp, marker_id, 0.0)
            m.action = ImageMarker.REMOVE
            removes.append(m)
        return removes
    rgba = tuple(color) if color is not None else (FOUND_COLOR if tube.found else NOT_FOUND_COLOR)
    newest = max(tube.boxes, key=lambda b: (b.stamp.sec, b.stamp.nanosec))
    box = _marker(tube, newest.stamp, BOX_ID, lifetime)
    box.type = ImageMarker.POLYGON
    box.action = ImageMarker.ADD
    box.scale = float(line_width)
    box.outline_color = _color(rgba)
    box.filled = 0
    box.points = _corners(newest)
    out = [box]
    if whole_tube:
        faint = _color(rgba[:3] + (rgba[3] * TUBE_ALPHA,))
        tube_m = _marker(tube, newest.stamp, TUBE_ID, lifetime)
        tube_m.type = ImageMarker.LINE_LIST
        tube_m.action = ImageMarker.ADD
        tube_m.scale = float(line_width) / 2.0
        tube_m.outline_color = faint
        for b in tube.boxes:
            c = _corners(b)
            for i in range(4):  # the four edges as point pairs
                tube_m.points += [c[i], c[(i + 1) % 4]]
        tube_m.outline_colors = [faint] * len(tube_m.points)
        out.append(tube_m)
    return out


def vision_msgs_available() -> bool:
    return Detection2DArray is not None


def tube_detections(tube, whole_tube: bool = False):
    """``vision_msgs/Detection2DArray`` of ``tube``: its newest box (or every box, each stamped with
    its own frame), class_id = the query, score = ``p_yes``, id = the query id. Untested in this
    repository (vision_msgs is not installable here); raises RuntimeError where it is missing."""
    if Detection2DArray is None:
        raise RuntimeError("vision_msgs is not installed: install ros-<distro>-vision-msgs "
                           "(apt) to publish vision_msgs/Detection2DArray")
    out = Detection2DArray()
    out.header.frame_id = tube.header.frame_id
    out.header.stamp = tube.header.stamp
    boxes = sorted(tube.boxes, key=lambda b: (b.stamp.sec, b.stamp.nanosec))
    for b in (boxes if whole_tube else boxes[-1:]):
        d = Detection2D()
        d.header.frame_id = tube.header.frame_id
        d.header.stamp = b.stamp
        d.id = tube.query_id
        # vision_msgs 4 (Humble, Jazzy, Kilted): bbox.center is a vision_msgs/Pose2D with .position
        d.bbox.center.position.x, d.bbox.center.position.y = float(b.center_x), float(b.center_y)
        d.bbox.size_x, d.bbox.size_y = float(b.size_x), float(b.size_y)
        h = ObjectHypothesisWithPose()
        h.hypothesis.class_id = tube.query
        h.hypothesis.score = float(tube.p_yes)
        d.results.append(h)
        out.detections.append(d)
    if boxes:
        out.header.stamp = boxes[-1].stamp
    return out


__all__ = ["tube_markers", "tube_detections", "vision_msgs_available", "MARKER_NS", "BOX_ID", "TUBE_ID"]
