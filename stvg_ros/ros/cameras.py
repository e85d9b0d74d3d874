"""Several cameras in one ``stvg_node`` (parameter ``cameras``): each camera's subscriptions, queries routed to
a camera or all, answers published per camera, and per-camera Status and /diagnostics.

The node keeps its one-camera code for the one-camera case; with ``cameras`` set it serves a
:class:`~stvg_ros.stream.multi.MultiStreamService` (one window per camera, one model) and hands the parts that
differ to :class:`Cameras`.  A camera is named by its short name or by its image topic.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional

from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage, Image

from stvg_ros.image_messages import ImageError, check_compressed, check_image, compressed_from_cdr, decode_for_window, \
    image_from_cdr
from stvg_ros.msg import CameraStatus, Detections, Status
from stvg_ros.ros.convert import detections_from_msg, stamp_to_ns
from stvg_ros.ros.depth_input import DepthInput
from stvg_ros.ros.events import subscribe
from stvg_ros.ros.status import diagnostics, status_message
from stvg_ros.stream.multi import ALL, MultiStreamService

#: Status fields that are not summed over the cameras: the largest, or the freshest (smallest non-negative)
_LARGEST = ("window_span", "last_latency", "last_queue_time", "standing_duty", "standing_duty_budget")


class Cameras:
    """The cameras of ``settings.cameras`` (:class:`~stvg_ros.node_params.CameraSettings`) served by ``service``."""

    def __init__(self, node, settings, service: MultiStreamService, warn: Callable[[str, str], None],
                 lost: Callable[..., None]):
        self.node, self.service, self.warn, self.lost = node, service, warn, lost
        self.cameras = {c.name: c for c in settings.cameras}
        self.frame_ids = {name: "" for name in self.cameras}
        self.topics: dict[str, list[str]] = {name: [] for name in self.cameras}  # resolved, once subscribed
        self.own: dict[str, Status] = {}  # each camera's Status at the last status()
        for c in settings.cameras:
            service.stream(c.name).input_name = node.resolve_topic_name(c.image_topic)
        # 3-D answers of the cameras with a depth topic (their target_pose/target_markers are the node's)
        self.depth = {c.name: DepthInput(node, dataclasses.replace(settings, depth_topic=c.depth_topic,
                                                                   camera_info_topic=c.camera_info_topic), warn)
                      for c in settings.cameras if c.depth_topic}
        self.pubs = {f"{topic}@{name}": pub for name, d in self.depth.items() for topic, pub in d.pubs.items()}
        if settings.depth_topic:
            node.get_logger().warning(f"depth_topic={settings.depth_topic!r} is for one camera and is not used with "
                                      f"cameras: set camera.<name>.depth_topic (and .camera_info_topic) instead")

    # -- input ------------------------------------------------------------------------------------------
    def subscribe(self, use_detections: bool) -> tuple[list, bool]:
        """Each camera's image (raw and/or compressed, its own QoS) and detections subscriptions; returns them
        and whether the rmw reports lost frames on all of them."""
        subs, reported = [], True
        for c in self.cameras.values():
            qos = QoSProfile(depth=c.qos_depth, history=HistoryPolicy.KEEP_LAST,
                             reliability=(ReliabilityPolicy.BEST_EFFORT if c.reliability == "best_effort"
                                          else ReliabilityPolicy.RELIABLE),
                             durability=qos_profile_sensor_data.durability)
            lost = functools.partial(self.lost, stream=c.name)
            wanted = [(Image, c.image_topic, image_from_cdr, check_image)] if c.transport != "compressed" else []
            wanted += [(CompressedImage, f"{c.image_topic}/compressed", compressed_from_cdr, check_compressed)] \
                if c.transport != "raw" else []
            self.topics[c.name] = [self.node.resolve_topic_name(topic) for _, topic, _, _ in wanted]
            for msg_type, topic, read, check in wanted:
                sub, ok = subscribe(self.node, msg_type, topic,
                                    functools.partial(self._on_frame, c.name, read, msg_type, check, topic), qos,
                                    "image", self.warn, lost, raw=True)
                subs.append(sub)
                reported = reported and ok
            subs += self.depth[c.name].subscribe(qos) if c.name in self.depth else []
            if use_detections:
                subs.append(subscribe(self.node, Detections, c.detections_topic,
                                      functools.partial(self._on_detections, c.name), 10, "input", self.warn)[0])
        self.node.get_logger().info(
            f"active: {len(self.cameras)} cameras, one model: " + "; ".join(
                f"{name} on {' and '.join(topics)} ({self.cameras[name].reliability}, depth "
                f"{self.cameras[name].qos_depth})" for name, topics in self.topics.items())
            + f"{'' if reported else ' (this rmw cannot report lost frames)'}; ask one camera or all on "
            f"{self.node.resolve_topic_name('query_request')}")
        return subs, reported

    def _on_frame(self, name: str, read, msg_type, check, topic: str, data: bytes) -> None:
        """A serialized frame of camera ``name``: read in place, its pixels decoded only when its window keeps it
        (as the one-camera node does)."""
        try:
            msg = read_frame(data, read, msg_type)
            self.frame_ids[name] = msg.header.frame_id
            window, stamp = self.service.stream(name).window, stamp_to_ns(msg.header.stamp)
            kept = self.service.ingest(name, stamp, lambda: decode_for_window(msg, window.max_side),
                                       msg.header.frame_id, check(msg), self.node.resolve_topic_name(topic))
            if kept == "keep" and name in self.depth:
                self.depth[name].keep(stamp)
        except Exception as e:  # noqa: BLE001 - never die on a frame
            self.warn(f"dropped a frame of camera {name} on {topic}: {type(e).__name__}: {e}", f"frame:{name}")

    def _on_detections(self, name: str, msg) -> None:
        try:
            self.service.add_detections(name, stamp_to_ns(msg.header.stamp), detections_from_msg(msg))
        except Exception as e:  # noqa: BLE001
            self.warn(f"dropped detections of camera {name}: {type(e).__name__}: {e}", f"detections:{name}")

    def reset(self, reason: str) -> None:
        """Every camera's window restarts (the ROS clock jumped back)."""
        for name in self.cameras:
            self.service.reset(name, reason if len(self.service.stream(name).window) else "")

    # -- queries ----------------------------------------------------------------------------------------
    def route(self, request):
        """``request`` (one-shot or standing) with its camera named by its short name: an image topic (as
        configured or resolved, raw or compressed) is the camera that listens on it; an unknown name stays, and
        the service refuses it naming the cameras."""
        asked = request.stream.strip()
        if asked in self.cameras or asked in ("", ALL):
            return request
        for name, c in self.cameras.items():
            if asked in self.topics[name] + [c.image_topic, f"{c.image_topic}/compressed",
                                             self.node.resolve_topic_name(c.image_topic)]:
                return dataclasses.replace(request, stream=name)
        return request

    def publish(self, answer, publish_one: Callable[[Any, str, Any], Any]):
        """Publish ``answer`` (``publish_one(answer, fallback frame_id, its camera's 3-D stage or None) -> Tube``):
        one Tube per camera asked, best first, when the query asked for each camera's (the list is returned),
        else the one Tube."""
        def one(a):
            return publish_one(a, self.frame_ids.get(a.stream, ""), self.depth.get(a.stream))

        if answer.request.each_stream and not answer.event:
            return [one(a) for a in answer.stream_answers or (answer,)]
        return one(answer)

    # -- status -----------------------------------------------------------------------------------------
    def status(self, state: str, model: dict, loss_reported: bool, stamp) -> Status:
        """The node's Status: the sums over the cameras, each camera in ``cameras`` (its own Status: ``own``)."""
        self.own = own = {name: status_message(self.service.stream(name), state, model, loss_reported,
                                               self.frame_ids[name], stamp, self.depth.get(name))
                          for name in self.cameras}
        total = Status(state=state, frame_loss_reported=loss_reported)
        total.header.stamp = stamp
        numeric = [k for k, t in Status.get_fields_and_field_types().items() if t.startswith(("uint", "float"))]
        for k in numeric:
            values = [getattr(s, k) for s in own.values()]
            setattr(total, k, type(values[0])(max(values) if k in _LARGEST else sum(values)))
        ages = [s.last_frame_age for s in own.values() if s.last_frame_age >= 0]
        total.last_frame_age = min(ages) if ages else -1.0
        first = next(iter(own.values()))
        total.model, total.device = first.model, first.device
        for k in ("last_warning", "last_fallback", "depth_problem"):
            setattr(total, k, "; ".join(f"{n}: {getattr(s, k)}" for n, s in own.items() if getattr(s, k)))
        for name, s in own.items():
            for q in s.standing:
                q.camera = name
                total.standing.append(q)
            fields = {k: getattr(s, k) for k in CameraStatus.get_fields_and_field_types() if hasattr(s, k)}
            total.cameras.append(CameraStatus(**fields, name=name, topic=", ".join(self.topics[name]),
                                              frame_id=self.frame_ids[name]))
        return total

    def diagnostics(self, node_name: str, model_kind: str, active_since: Optional[float]) -> list[DiagnosticStatus]:
        """One /diagnostics status per camera ("<node>: camera <name>", from the last :meth:`status`): its
        window, input and problems (``active_since``: None while the node is not active)."""
        out = []
        for name, s in self.own.items():
            stream = self.service.stream(name)
            problems = stream.problems(since=active_since) if active_since is not None else []
            out += diagnostics(f"{node_name}: camera {name}", s, model_kind, problems, stream.stage).status
        return out


def read_frame(data: bytes, read, msg_type):
    """A serialized image message: its fields read in place (``read``: ``image_from_cdr``/``compressed_from_cdr``,
    no copy of the pixels), or rclpy's own deserialization for an encapsulation the reader does not know."""
    try:
        return read(data)
    except ImageError:
        return deserialize_message(data, msg_type)


def route(cameras: Optional[Cameras], request):
    """``request`` routed by ``cameras`` (:meth:`Cameras.route`); as it is in a one-camera node (None)."""
    return request if cameras is None else cameras.route(request)


__all__ = ["Cameras", "read_frame", "route"]
