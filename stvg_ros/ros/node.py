"""``stvg_node``: the lifecycle node that answers natural-language queries about the recent stream.

ROS plumbing around :class:`stvg_ros.stream.service.GroundingService`, which owns the window, the
proposals, the query queue and the worker (and all their rules).  Here: parameters → a typed
:class:`~stvg_ros.node_params.NodeSettings`, messages ↔ core types, publishers and subscriptions,
the lifecycle, status and diagnostics, and middleware events (:mod:`stvg_ros.ros.events`).
"""

from __future__ import annotations

import gc
import signal
import sys
import threading
import time
from typing import Any, Optional

import rclpy
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.clock import JumpThreshold
from rclpy.duration import Duration
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String

from stvg_ros import node_params as P
from stvg_ros.config import ConfigError
from stvg_ros.image_messages import (check_compressed, check_image, compressed_from_cdr, decode_for_window,
                                     image_from_cdr)
from stvg_ros.msg import Detections, GroundingQuery, StandingQuery, Status, Tube
from stvg_ros.ros.action_server import GroundActionServer, refusal_reason
from stvg_ros.ros.cameras import Cameras, read_frame, route
from stvg_ros.ros.depth_input import DepthInput
from stvg_ros.ros.convert import detections_from_msg, request_from_msg, stamp_to_ns, standing_request_from_msg
from stvg_ros.ros.events import Throttle, subscribe
from stvg_ros.ros.outputs import create_outputs, destroy_outputs, publish_answer
from stvg_ros.ros.status import LossSummary, Monitor, diagnostics, status_message
from stvg_ros.stream.service import SHUTTING_DOWN, GroundingService
from stvg_ros.stream.requests import Answer, GroundingRequest
from stvg_ros.stack import BuildError, Stack

#: history of the query subscriptions: deep, so that a burst of queries is refused one by one with a
#: reason instead of being overwritten silently in the DDS reader's history
QUERY_DEPTH = 1000
#: seconds the node waits at shutdown for the grounding to stop and for answers to be acknowledged
STOP_TIMEOUT_S, ACK_TIMEOUT_S = 1.0, 0.3


class StvgNode(LifecycleNode):
    """The grounding service on topics: ``image`` (+ ``image/compressed``, ``detections``),
    ``query``/``query_request`` and ``standing_query`` in; ``tube`` (one per query),
    ``standing_tube`` (standing queries' events), ``tube_markers``, ``debug_image``, ``status`` and
    ``/diagnostics`` out; and the ``ground`` action (:mod:`stvg_ros.ros.action_server`).  configure
    loads the model and starts the worker, activate subscribes, deactivate unsubscribes and answers
    pending queries and goals, cleanup frees the model."""

    def __init__(self, node_name: str = "stvg_node", **kwargs: Any):
        super().__init__(node_name, allow_undeclared_parameters=True, **kwargs)  # sub-config knobs: when set
        self.params = P.UserParams({n: p.value for n, p in getattr(self, "_parameter_overrides", {}).items()})
        for name, value, p in self.params.to_declare():
            self.declare_parameter(name, value, ParameterDescriptor(**p.descriptor_fields()))
        self._throttle = Throttle()
        self.service = GroundingService(warn=self._warn)
        self.settings: Optional[P.NodeSettings] = None  # read at configure and on every parameter change
        self.stack: Optional[Stack] = None  # built at configure (stvg_ros.stack), dropped at cleanup
        self._model = dict(directory="", kind="", note="")
        self._subs: list = []
        self._pubs: dict[str, Any] = {}
        self._config_error = ""  # why the last configure failed, with the fix ("" after a success)
        self._losses = LossSummary()
        self.stop_requested = threading.Event()  # SIGINT/SIGTERM or the lifecycle shutdown: main() exits
        self._lock = threading.Lock()
        self._next_query = 0
        self._camera_frame_id = ""
        self._active = False
        self._active_since: Optional[float] = None
        self._loss_reported = False
        self._depth = None  # the 3-D stage (stvg_ros.ros.depth_input), when depth_topic is set
        self._cams: Optional[Cameras] = None  # several cameras (parameter cameras), from configure to cleanup
        self.actions = GroundActionServer(self, self._submit, self._on_answer,
                                          lambda: refusal_reason(self._state(), self.get_fully_qualified_name(),
                                                                 self._config_error),
                                          self._new_id, self.get_parameter("action_result_timeout").value)
        self.monitor = Monitor(self, self._warn, self._publish_status)  # every state, on wall time
        self.monitor.set_rate(max(0.0, float(self.get_parameter("status_rate").value)))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        # Humble has no post-set callback: there the changes are applied from the validating callback
        self._post_set = hasattr(self, "add_post_set_parameters_callback")
        if self._post_set:
            self.add_post_set_parameters_callback(self._after_set_parameters)
        try:  # a backwards jump of the ROS clock (looping bag with use_sim_time) resets the window
            self._jump_handle = self.get_clock().create_jump_handle(
                JumpThreshold(min_forward=None, min_backward=Duration(nanoseconds=-1), on_clock_change=True),
                post_callback=self._on_time_jump)
        except Exception:  # noqa: BLE001 - clocks without jump support (system/steady)
            self._jump_handle = None

    @property
    def window(self):
        return self.service.window

    # -- parameters ----------------------------------------------------------------------------
    def _read_settings(self, changes: Optional[dict] = None) -> P.NodeSettings:
        s, lines = self.params.settings(changes)  # with changes (being checked): no model layer, nothing to log
        for line in lines:
            self.get_logger().info(line)
        return s

    def _on_set_parameters(self, changes) -> SetParametersResult:
        try:
            self._read_settings({c.name: c.value for c in changes})
        except ConfigError as e:
            self.get_logger().warning(f"parameter change rejected: {e}")
            return SetParametersResult(successful=False, reason=str(e))
        if not self._post_set:
            self._after_set_parameters(changes, {c.name: c.value for c in changes})
        return SetParametersResult(successful=True)

    def _after_set_parameters(self, changes, pending: Optional[dict] = None) -> None:
        self.params.set({c.name: c.value for c in changes})
        self.settings = self._read_settings()
        if self.stack is not None:  # live knobs now; those that shape the model at configure
            self.stack.reconfigure(self.settings)
        else:
            self.service.configure(self.settings.serving)
        later = P.not_live([c.name for c in changes])
        if later:
            self.get_logger().info(f"{', '.join(later)} take effect at the next configure/activate")

    # -- lifecycle ------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.settings = s = self._read_settings()
            self.stack = Stack.build(s, service=self.service, log=self.get_logger(), warn=self._warn)
        except ConfigError as e:  # a bad setting, model or detector path must leave the node alive
            self._model = e.model if isinstance(e, BuildError) and e.model else self._model
            return self._configure_failed(str(e))
        self._model, self.service = self.stack.model, self.stack.service
        self._cams = Cameras(self, s, self.service, self._warn, self._lost) if s.cameras else None
        self.service.input_name = self.resolve_topic_name("image")
        self._pubs = create_outputs(self, self._warn)
        self._depth = DepthInput(self, s, self._warn) if s.depth_topic and not s.cameras else None  # pubs: outputs
        self._pubs.update(self._depth.pubs if self._depth else self._cams.pubs if self._cams else {})
        self.monitor.set_rate(s.status_rate)
        self._config_error = ""
        return TransitionCallbackReturn.SUCCESS

    def _configure_failed(self, problem: str) -> TransitionCallbackReturn:
        self._config_error = (f"configure failed: {problem}. Fix the cause, then configure again "
                              f"(ros2 lifecycle set {self.get_fully_qualified_name()} configure) or restart")
        self.get_logger().error(self._config_error)
        self.service.note(self._config_error)
        return TransitionCallbackReturn.FAILURE

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        s = self.settings
        qos = QoSProfile(depth=s.image_depth, history=HistoryPolicy.KEEP_LAST,
                         reliability=(ReliabilityPolicy.BEST_EFFORT if s.image_reliability == "best_effort"
                                      else ReliabilityPolicy.RELIABLE),
                         durability=qos_profile_sensor_data.durability)
        lost = self._lost
        super().on_activate(state)  # the lifecycle publishers speak before the first query can come
        self._subs = [subscribe(self, String, "query", self._on_query_text, QUERY_DEPTH, "input", self._warn)[0],
                      subscribe(self, GroundingQuery, "query_request", self._on_query_request, QUERY_DEPTH,
                                "input", self._warn)[0],
                      subscribe(self, StandingQuery, "standing_query", self._on_standing_query, QUERY_DEPTH,
                                "input", self._warn)[0]]
        if self._cams is not None:  # several cameras: each one's subscriptions (stvg_ros.ros.cameras)
            cams, self._loss_reported = self._cams.subscribe(s.use_detections)
            self._subs, self._active, self._active_since = self._subs + cams, True, time.monotonic()
            return TransitionCallbackReturn.SUCCESS
        # raw: frames arrive serialized and only their header is read until the window keeps one (see _on_image)
        image, self._loss_reported = subscribe(self, Image, "image", self._on_image, qos, "image", self._warn, lost,
                                               raw=True)
        self._subs.append(image)
        if s.use_compressed:
            self._subs.append(subscribe(self, CompressedImage, "image/compressed", self._on_compressed, qos,
                                        "image", self._warn, lost, raw=True)[0])
        self._subs += self._depth.subscribe(qos) if self._depth else []
        if s.use_detections:
            self._subs.append(subscribe(self, Detections, "detections", self._on_detections, 10, "input",
                                        self._warn)[0])
        self._active, self._active_since = True, time.monotonic()
        self.get_logger().info(
            f"active: listening on {self.resolve_topic_name('image')}"
            f"{' and ' + self.resolve_topic_name('image/compressed') if s.use_compressed else ''}"
            f" ({s.image_reliability}, depth {s.image_depth}"
            f"{'' if self._loss_reported else '; this rmw cannot report lost frames'}); ask on "
            f"{self.resolve_topic_name('query')}")
        return TransitionCallbackReturn.SUCCESS

    def _unsubscribe(self) -> None:
        self._active = False
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._unsubscribe()
        # every answer (the running query's too) goes out before the lifecycle publishers fall silent
        self.service.cancel_all("the node was deactivated", timeout=STOP_TIMEOUT_S)
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown("the node was cleaned up")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.shutdown()
        self.stop_requested.set()  # the process exits (main)
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown("the node had an error")
        return TransitionCallbackReturn.SUCCESS

    def shutdown(self) -> None:
        """Unsubscribe, answer every pending and in-flight query, free the model (also for SIGINT/SIGTERM)."""
        self._unsubscribe()
        self._teardown(SHUTTING_DOWN)

    def _teardown(self, reason: str) -> None:
        """Stop the service (answers published first), drop publishers, the model and the cameras (back to the
        one-camera service until the next configure), free GPU memory."""
        self.service.stop(reason, timeout=STOP_TIMEOUT_S)
        destroy_outputs(self, self._pubs, ACK_TIMEOUT_S / 2)  # the last answers reach their subscribers first
        self._pubs, self._depth, self.stack = {}, None, None
        self.service, self._cams = (GroundingService(warn=self._warn) if self._cams else self.service), None
        self.service.reset()
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    # -- input ----------------------------------------------------------------------------------
    def _warn(self, message: str, key: str) -> None:
        """Log a warning (at most one per THROTTLE_S per ``key``; "" = always)."""
        if not key or self._throttle.allow(key):
            self.get_logger().warning(message)

    def _lost(self, topic: str, n: int, stream: str = "") -> None:
        """Frames the middleware lost: counted now, told in one summary line per interval (LossSummary)."""
        self.service.count_lost(*([stream] if stream else []), n)
        line = self._losses.add(topic, n)
        if line:
            self.get_logger().warning(line)
            (self.service.stream(stream) if stream else self.service).note(line)

    def _ingest(self, msg, problem: str, decode, topic: str) -> None:
        try:
            self._camera_frame_id = msg.header.frame_id
            stamp = stamp_to_ns(msg.header.stamp)
            kept = self.service.ingest(stamp, decode, msg.header.frame_id, problem, self.resolve_topic_name(topic))
            if kept == "keep" and self._depth is not None:
                self._depth.keep(stamp)
        except Exception as e:  # noqa: BLE001 - never die on a frame
            self._warn(f"dropped a frame on {topic}: unexpected {type(e).__name__}: {e}", "frame")

    def _on_image(self, data: bytes) -> None:
        """A serialized Image: its fields read in place (``image_from_cdr``), the pixels decoded only when the
        window keeps the frame; rclpy's deserialization would copy every frame, decimated or not."""
        self._on_serialized(data, image_from_cdr, Image, check_image, "image")

    def _on_compressed(self, data: bytes) -> None:
        self._on_serialized(data, compressed_from_cdr, CompressedImage, check_compressed, "image/compressed")

    def _on_serialized(self, data, read, msg_type, check, topic: str) -> None:
        try:
            msg = read_frame(data, read, msg_type)
        except Exception as e:  # noqa: BLE001 - never die on a frame
            self._warn(f"dropped a frame on {topic}: cannot read the message: {type(e).__name__}: {e}", "frame")
            return
        self._ingest(msg, check(msg), lambda: decode_for_window(msg, self.service.window.max_side), topic)

    def _on_detections(self, msg: Detections) -> None:
        try:
            self.service.add_detections(stamp_to_ns(msg.header.stamp), detections_from_msg(msg))
        except Exception as e:  # noqa: BLE001
            self._warn(f"dropped detections: {type(e).__name__}: {e}", "detections")

    def _on_time_jump(self, jump) -> None:
        if (jump.clock_change or jump.delta.nanoseconds < 0) and self._cams is not None:
            self._cams.reset("the ROS clock jumped back (bag replay looped?)")
        elif jump.clock_change or jump.delta.nanoseconds < 0:
            self.service.reset("the ROS clock jumped back (bag replay looped?)" if len(self.window) else "")

    # -- queries --------------------------------------------------------------------------------
    def _new_id(self) -> str:
        with self._lock:
            self._next_query += 1
            return f"q{self._next_query}"

    def _submit(self, request: GroundingRequest, on_done, on_progress=None):
        return self.service.submit(route(self._cams, request), on_done, on_progress)

    def _on_query_text(self, msg: String) -> None:
        self._submit(GroundingRequest(self._new_id(), msg.data), self._on_answer)

    def _on_query_request(self, msg: GroundingQuery) -> None:
        self._submit(request_from_msg(msg, "" if msg.id else self._new_id()), self._on_answer)

    def _on_standing_query(self, msg: StandingQuery) -> None:
        if msg.cancel:
            self.service.cancel_standing(msg.id)
        else:
            self.service.register(route(self._cams, standing_request_from_msg(msg)), self._on_answer)

    def _on_answer(self, answer: Answer) -> Tube:
        """Publish the one Tube of a query (topic or action goal), or a standing query's event (worker
        thread, or the caller's for rejections); the action's result is this Tube (one per camera: a list)."""
        if self._cams is not None:
            return self._cams.publish(answer, lambda a, frame_id, depth: publish_answer(
                self, self._pubs, a, frame_id, self.settings, self._model["kind"], depth=depth))
        return publish_answer(self, self._pubs, answer, self._camera_frame_id, self.settings, self._model["kind"],
                              depth=self._depth)

    # -- status ---------------------------------------------------------------------------------
    def _state(self) -> str:
        return "active" if self._active else ("inactive" if self.service.grounder is not None else "unconfigured")

    def status(self) -> Status:
        if self._cams is not None:
            return self._cams.status(self._state(), self._model, self._loss_reported, self.get_clock().now().to_msg())
        return status_message(self.service, self._state(), self._model, self._loss_reported, self._camera_frame_id,
                              self.get_clock().now().to_msg(), depth=self._depth)

    def _publish_status(self) -> None:
        try:
            for line in self._losses.due():  # the losses since the last summary line
                self.get_logger().warning(line)
                self.service.note(line)
            s = self.status()
            self.monitor.pubs["status"].publish(s)
            problems = self.service.problems(since=self._active_since) if self._active else []
            problems += [self._model["uncalibrated"]] if self._model.get("uncalibrated") else []
            array = diagnostics(f"{self.get_fully_qualified_name()}: grounding", s, self._model["kind"], problems,
                                getattr(self.service, "stage", None), self.service.cache_stats(), self._config_error)
            if self._cams is not None:  # several cameras: one /diagnostics status per camera too
                array.status += self._cams.diagnostics(self.get_fully_qualified_name(), self._model["kind"],
                                                       self._active_since if self._active else None)
            self.monitor.pubs["diagnostics"].publish(array)
        except Exception as e:  # noqa: BLE001
            self.get_logger().debug(f"status not published: {e}")


def main(argv: Optional[list[str]] = None) -> int:
    """Run the node until SIGINT/SIGTERM; then answer what is pending and exit within ~2 s."""
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    args = argv if argv is not None else sys.argv
    try:  # our own handlers: rclpy's would invalidate the context before the last Tubes are published
        from rclpy.signals import SignalHandlerOptions

        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except (ImportError, TypeError):
        rclpy.init(args=args)
    node = StvgNode()
    stop = node.stop_requested
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stop.set())
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        if node.get_parameter("autostart").value:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().error("autostart: configure failed (see above); the node stays unconfigured "
                                        "and can be configured again through its lifecycle services")
            elif node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().error("autostart: activate failed")
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        t0 = time.monotonic()
        try:
            node.shutdown()
            flush = time.monotonic() + ACK_TIMEOUT_S  # the action results are sent by executor tasks
            while node.actions.pending() and time.monotonic() < flush:
                executor.spin_once(timeout_sec=0.01)
            for _ in range(5):
                executor.spin_once(timeout_sec=0.01)
            node.actions.destroy()
            node.get_logger().info(f"stopped in {time.monotonic() - t0:.2f} s")
        except Exception as e:  # noqa: BLE001
            print(f"stvg_node: error during shutdown: {e}", file=sys.stderr)
        executor.shutdown(timeout_sec=0.5)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
