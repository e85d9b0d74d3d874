"""The node's outputs: its publishers, and one answer fanned out to them (Tube, markers, detections,
debug image, log line).

The answer topics are lifecycle publishers (``create_lifecycle_publisher``; a plain publisher where
an rclpy lacks it): silent while the node is inactive, so the node activates them before it
subscribes and deactivates them only after the last answers are out. ``status`` and
``/diagnostics`` are plain publishers kept for the node's life (:class:`stvg_ros.ros.status.Monitor`):
they report the node's state in every lifecycle state.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from rclpy.duration import Duration
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from visualization_msgs.msg import ImageMarker

from stvg_ros.image_messages import encode_image
from stvg_ros.msg import Tube
from stvg_ros.ros.convert import tube_from_answer
from stvg_ros.ros.events import publish_to
from stvg_ros.ros.markers import tube_detections, tube_markers, vision_msgs_available
from stvg_ros.stream.requests import ANSWERED, Answer

#: the answer topics, held until the node deactivates
ANSWER_TOPICS = ("tube", "standing_tube", "tube_markers", "detections_2d", "debug_image", "target_pose",
                 "target_markers")


def create_outputs(node, warn: Callable[[str, str], None]) -> dict[str, Any]:
    """The answer publishers by topic (``detections_2d`` only where vision_msgs is importable)."""
    reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
    pubs = {"tube": publish_to(node, Tube, "tube", reliable, warn, lifecycle=True),
            "standing_tube": publish_to(node, Tube, "standing_tube", reliable, warn, lifecycle=True),
            "tube_markers": publish_to(node, ImageMarker, "tube_markers", 10, warn, lifecycle=True),
            "debug_image": publish_to(node, Image, "debug_image", 2, warn, lifecycle=True)}
    if vision_msgs_available():  # pragma: no cover - no registry carries vision_msgs
        from vision_msgs.msg import Detection2DArray

        pubs["detections_2d"] = publish_to(node, Detection2DArray, "detections_2d", 10, warn, lifecycle=True)
    return pubs


def destroy_outputs(node, pubs: dict[str, Any], ack_timeout: float) -> None:
    """Wait (at most ``ack_timeout`` s each) until the last Tubes are acknowledged, then drop every publisher."""
    for name in ("tube", "standing_tube"):
        tube = pubs.get(name)
        if tube is not None and hasattr(tube, "wait_for_all_acked"):
            try:
                tube.wait_for_all_acked(Duration(seconds=ack_timeout))
            except Exception:  # noqa: BLE001
                pass
    destroy = getattr(node, "destroy_lifecycle_publisher", None)
    for name, pub in pubs.items():
        if destroy is not None and name.split("@")[0] in ANSWER_TOPICS:  # "<topic>@<camera>": a camera's own
            destroy(pub)
        else:
            node.destroy_publisher(pub)


def _publish(node, pub, msg) -> None:
    if pub is None or msg is None:
        return
    try:
        pub.publish(msg)
    except Exception as e:  # noqa: BLE001 - publisher destroyed during shutdown
        node.get_logger().debug(f"not published: {e}")


def publish_answer(node, pubs: dict[str, Any], answer: Answer, frame_id: str, settings,
                   model_kind: str = "", depth=None) -> Tube:
    """Publish the one Tube of a query (or a standing query's event) with its markers, detections and
    debug image, log the answer, and return the Tube (the action's result); with ``depth`` (the 3-D
    stage, :mod:`stvg_ros.ros.depth_input`) its boxes carry 3-D positions, published as pose and markers too."""
    tube = tube_from_answer(answer, frame_id)
    if depth is not None and tube.boxes:
        try:
            depth.annotate(tube)
            depth.publish(tube)
        except Exception as e:  # noqa: BLE001 - the Tube goes out without 3-D rather than not at all
            node.get_logger().error(f"query {answer.request.query_id}: no 3-D positions: {type(e).__name__}: {e}")
    _publish(node, pubs.get("standing_tube" if answer.event else "tube"), tube)
    whole = bool(settings is not None and settings.markers_whole_tube)
    if settings is None or settings.publish_markers:
        for marker in tube_markers(tube, whole_tube=whole):
            _publish(node, pubs.get("tube_markers"), marker)
        if "detections_2d" in pubs:  # pragma: no cover - no registry carries vision_msgs
            _publish(node, pubs["detections_2d"], tube_detections(tube, whole_tube=whole))
    r, result = answer.request, answer.result
    if answer.status != ANSWERED or result is None:
        return tube
    what = f"standing query {r.query_id} {answer.event}" if answer.event else f"query {r.query_id}"
    node.get_logger().info(
        f"{what} '{r.text[:60]}': found={tube.found} p_yes={tube.p_yes:.2f} span {result.start:.2f}-"
        f"{result.end:.2f} s, {len(tube.boxes)} boxes, {answer.latency:.2f} s ({answer.queue_time:.2f} queued)"
        + (" [random model: meaningless]" if model_kind == "tiny" else ""))
    debug = pubs.get("debug_image")
    if settings is not None and settings.publish_debug_image and debug is not None \
            and debug.get_subscription_count() > 0:
        _publish(node, debug, _debug_image(node, answer, tube, settings.debug_heatmap))
    return tube


def _debug_image(node, answer: Answer, tube: Tube, heatmap: bool) -> Optional[Image]:
    from stvg_ros.render import render_tube
    from stvg_ros.stream.window import images_of

    try:
        picture = render_tube(images_of(answer.frames), [f.stamp for f in answer.frames], answer.result,
                              heatmap=heatmap)
    except Exception as e:  # noqa: BLE001 - the Tube is out; a picture that fails is reported, not replaced
        node.get_logger().error(f"query {answer.request.query_id}: no debug_image, drawing it failed: "
                                f"{type(e).__name__}: {e}")
        return None
    msg = Image()
    encode_image(picture, msg)
    msg.header = tube.header
    return msg
