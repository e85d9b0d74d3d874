"""3-D answers in the node: the depth and CameraInfo subscriptions, each Tube's boxes given a position,
the newest position on ``target_pose`` (``geometry_msgs/PointStamped``) and the tube's path on
``target_markers`` (``visualization_msgs/MarkerArray``: a sphere per frame, a line for the path) for
RViz and Foxglove's 3-D panel.

The geometry is the core's (:mod:`stvg_ros.stream.depth`): here only messages, QoS and tf2.  tf2 is optional
(no Python registry carries it): with ``target_frame`` set and ``tf2_ros`` importable the positions are
transformed with the transform at each box's stamp; without it the node says so once and answers in the
camera's optical frame.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from geometry_msgs.msg import PointStamped
from sensor_msgs.msg import CameraInfo, Image
from visualization_msgs.msg import Marker, MarkerArray

from stvg_ros.boxes import from_centre_size
from stvg_ros.stream.depth import (CalibrationError, DepthBuffer, DepthError, Intrinsics, Position3D, decode_depth,
                                   transform_point)
from stvg_ros.ros.convert import ROS_TYPES
from stvg_ros.ros.events import publish_to, subscribe
from stvg_ros.tube_messages import position_fields, stamp_to_ns

#: the newest depth frames kept at the camera's rate (about half a second at 30 Hz)
RECENT_DEPTH_FRAMES = 16


class DepthInput:
    """The node's 3-D stage: created at configure when ``depth_topic`` is set."""

    def __init__(self, node, settings, warn: Callable[[str, str], None]):
        self.node, self.warn = node, warn
        self.depth_topic, self.info_topic = settings.depth_topic, settings.camera_info_topic
        self.target_frame = settings.target_frame
        self.buffer = DepthBuffer(recent=RECENT_DEPTH_FRAMES, kept=settings.serving.window_max_frames,
                                  tolerance_ns=int(settings.depth_tolerance * 1e9))
        self.rejected = 0
        self.buffer.set_intrinsics(None, "no CameraInfo received" if self.info_topic else
                                   "camera_info_topic is not set: set it to the colour camera's CameraInfo topic")
        self._tf = self._tf_buffer() if self.target_frame else None
        self.pubs = {"target_pose": publish_to(node, PointStamped, "target_pose", 10, warn, lifecycle=True),
                     "target_markers": publish_to(node, MarkerArray, "target_markers", 10, warn, lifecycle=True)}
        self._subs: list = []

    def _tf_buffer(self):
        try:
            import tf2_ros
        except ImportError:
            self.node.get_logger().warning(
                f"target_frame={self.target_frame!r} but tf2_ros is not installed: 3-D answers stay in the "
                "camera's optical frame (install ros-<distro>-tf2-ros)")
            return None
        buf = tf2_ros.Buffer()
        self._tf_listener = tf2_ros.TransformListener(buf, self.node)
        return buf

    # -- inputs ---------------------------------------------------------------------------------
    def subscribe(self, qos) -> list:
        """Subscriptions with the image's QoS (drivers publish depth and info like the colour image)."""
        self._subs = [subscribe(self.node, Image, self.depth_topic, self._on_depth, qos, "depth", self.warn)[0]]
        if self.info_topic:
            self._subs.append(subscribe(self.node, CameraInfo, self.info_topic, self._on_info, qos, "camera_info",
                                        self.warn)[0])
        return self._subs

    def _on_depth(self, msg) -> None:
        try:
            depth = decode_depth(msg.encoding, msg.data, msg.height, msg.width, msg.step, bool(msg.is_bigendian))
            self.buffer.add(stamp_to_ns(msg.header.stamp), depth)
        except DepthError as e:
            self.rejected += 1
            self.warn(f"dropped a depth image on {self.node.resolve_topic_name(self.depth_topic)}: {e} "
                      f"({self.rejected} so far)", "depth")
        except Exception as e:  # noqa: BLE001 - never die on a frame
            self.rejected += 1
            self.warn(f"dropped a depth image: {type(e).__name__}: {e}", "depth")

    def _on_info(self, msg) -> None:
        try:
            intr, problem = Intrinsics.from_k(msg.k, msg.width, msg.height, msg.header.frame_id), ""
        except CalibrationError as e:
            intr, problem = None, f"CameraInfo on {self.node.resolve_topic_name(self.info_topic)} unusable: {e}"
            self.warn(problem, "camera_info")
        self.buffer.set_intrinsics(intr, problem)

    def keep(self, stamp_ns: int) -> None:
        """The window kept the colour frame at ``stamp_ns``: keep its depth for later tubes."""
        self.buffer.keep(stamp_ns)

    # -- outputs --------------------------------------------------------------------------------
    def annotate(self, tube) -> None:
        """Fill each TubeBox's 3-D fields (boxes are in the camera's pixels, stamped with its stamps)."""
        frame = ""
        for b in tube.boxes:
            corners = from_centre_size(b.center_x, b.center_y, b.size_x, b.size_y)
            pos = self.buffer.locate(stamp_to_ns(b.stamp), corners)
            if pos.valid and self._tf is not None:
                pos = self._transform(pos, b.stamp)
            frame = frame or (pos.frame_id if pos.valid else "")
            for k, v in position_fields(ROS_TYPES, pos).items():
                setattr(b, k, v)
        tube.position_frame_id = frame or (self.target_frame if self._tf is not None else tube.header.frame_id)

    def _transform(self, pos: Position3D, stamp) -> Position3D:
        from rclpy.time import Time

        try:
            t = self._tf.lookup_transform(self.target_frame, pos.frame_id, Time.from_msg(stamp))
        except Exception as e:  # noqa: BLE001 - tf2's exceptions: lookup, connectivity, extrapolation
            return Position3D.invalid(f"no transform {pos.frame_id} -> {self.target_frame} at the frame's stamp: "
                                      f"{type(e).__name__}: {e}", pos.frame_id)
        tr, q = t.transform.translation, t.transform.rotation
        x, y, z = transform_point((tr.x, tr.y, tr.z), (q.x, q.y, q.z, q.w), pos.xyz)
        pos.x, pos.y, pos.z, pos.frame_id = float(x), float(y), float(z), self.target_frame
        return pos

    def publish(self, tube) -> None:
        """``target_pose`` (the newest valid position) and ``target_markers`` (every valid one, and the path)."""
        valid = [b for b in tube.boxes if b.position_valid]
        if valid:
            pose = PointStamped()
            pose.header.stamp, pose.header.frame_id = valid[-1].stamp, tube.position_frame_id
            pose.point = valid[-1].position
            _publish(self.node, self.pubs["target_pose"], pose)
        _publish(self.node, self.pubs["target_markers"], path_markers(tube))

    def fill_status(self, status) -> None:
        """The 3-D stage's counters and its current problem in a ``Status``."""
        b = self.buffer
        status.depth_received, status.depth_rejected = b.received + self.rejected, self.rejected
        status.depth_stale, status.depth_unmatched = b.stale, b.unmatched
        status.depth_problem = b.calibration_problem or ("" if b.received else
                                                   f"no depth image on {self.node.resolve_topic_name(self.depth_topic)}")


def path_markers(tube) -> MarkerArray:
    """The tube in space: one sphere per frame with a valid position (sized by the target's width), a line
    through them, and a DELETEALL first so each answer replaces the previous drawing."""
    out = MarkerArray()
    clear = Marker()
    clear.action = Marker.DELETEALL
    out.markers.append(clear)
    valid = [b for b in tube.boxes if b.position_valid]
    green = (0.1, 0.9, 0.2, 0.9) if tube.found else (1.0, 0.6, 0.0, 0.9)
    for i, b in enumerate(valid):
        m = Marker()
        m.header.stamp, m.header.frame_id = b.stamp, tube.position_frame_id
        m.ns, m.id, m.type, m.action = "stvg_target", i, Marker.SPHERE, Marker.ADD
        m.pose.position = b.position
        m.pose.orientation.w = 1.0
        side = max(0.05, min(float(b.extent.x), 2.0))
        m.scale.x = m.scale.y = m.scale.z = side
        m.color.r, m.color.g, m.color.b, m.color.a = green
        out.markers.append(m)
    if len(valid) > 1:
        line = Marker()
        line.header.stamp, line.header.frame_id = valid[-1].stamp, tube.position_frame_id
        line.ns, line.id, line.type, line.action = "stvg_path", 0, Marker.LINE_STRIP, Marker.ADD
        line.pose.orientation.w = 1.0
        line.scale.x = 0.02
        line.color.r, line.color.g, line.color.b, line.color.a = green
        line.points = [b.position for b in valid]
        out.markers.append(line)
    return out


def _publish(node, pub, msg) -> None:
    try:
        pub.publish(msg)
    except Exception as e:  # noqa: BLE001 - publisher destroyed during shutdown
        node.get_logger().debug(f"not published: {e}")
