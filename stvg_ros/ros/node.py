"""``stvg_node``: the lifecycle node that answers natural-language queries about the recent stream.

configure loads the model, activate subscribes, deactivate unsubscribes, cleanup frees the model
(and GPU memory).  Frames go into a :class:`~stvg_ros.window.FrameWindow`; queries into a bounded
queue served by one worker thread, so the executor keeps taking frames during inference.  Every
query gets exactly one Tube: the grounding's answer, or ``found=false`` with the reason.  Bad
input is reported (log, ``status.last_warning``, the Tube's reason) and never stops the node.
"""

from __future__ import annotations

import gc
import queue
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.duration import Duration
try:
    from rclpy.event_handler import (PublisherEventCallbacks, SubscriptionEventCallbacks,
                                     qos_policy_name_from_kind)
except ImportError:  # Humble
    from rclpy.qos import qos_policy_name_from_kind
    from rclpy.qos_event import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import (HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data)
from rclpy.clock import JumpThreshold
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String

from stvg_ros.config import ConfigError, GroundingConfig
from stvg_ros.msg import Detections, GroundingQuery, Status, Tube
from stvg_ros.proposals import subject_phrase
from stvg_ros.result import SubQueries
from stvg_ros.ros import params as P
from stvg_ros.ros.convert import (FrameIndex, detections_from_msg, ns_to_stamp, stamp_to_ns,
                                  tube_from_result, tube_message)
from stvg_ros.ros.debug import draw_strip
from stvg_ros.ros.image import ImageError, decode_compressed, decode_image, encode_image
from stvg_ros.window import DetectionBuffer, FrameWindow, RateMeter

#: seconds between repeats of the same kind of warning
THROTTLE_S = 2.0
#: history of the query subscriptions: deep, so that a burst of queries is refused one by one with a
#: reason instead of being overwritten silently in the DDS reader's history
QUERY_DEPTH = 1000


@dataclass
class PendingQuery:
    query_id: str
    text: str
    start_ns: int
    end_ns: int
    sub_queries: Optional[SubQueries]
    received: float  # time.monotonic() at arrival


class StvgNode(LifecycleNode):
    def __init__(self, node_name: str = "stvg_node", **kwargs: Any):
        super().__init__(node_name, **kwargs)
        for p in P.all_params():
            self._declare(p)
        self._grounder = None
        self._config: Optional[GroundingConfig] = None
        self._model_dir = ""
        self._meaningless = False
        self.window = FrameWindow()
        self.detections = DetectionBuffer()
        self._proposals = None  # LiveProposalStage when proposals_enabled (detector + tracker in the background)
        self._rate_in = RateMeter()
        self._rate_kept = RateMeter()
        self._queue: "queue.Queue[Optional[PendingQuery]]" = queue.Queue(maxsize=1)
        self._worker: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._subs: list = []
        self._pubs: dict[str, Any] = {}
        self._status_timer = None
        self._lock = threading.Lock()  # counters and last_* fields
        self._counters = dict(frames_received=0, frames_rejected=0, queries_received=0, queries_answered=0,
                              queries_rejected=0)
        self._last_latency = 0.0
        self._last_warning = ""
        self._warned_at: dict[str, float] = {}
        self._next_query = 0
        self._camera_frame_id = ""
        self._active = False
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

    # -- parameters ----------------------------------------------------------------------------
    def _declare(self, p: P.NodeParam) -> None:
        desc = ParameterDescriptor(description=p.description, dynamic_typing=True)
        self.declare_parameter(p.name, p.default, desc)

    def _value(self, name: str) -> Any:
        return self.get_parameter(name).value

    def _node_values(self, overrides: Optional[dict] = None) -> dict[str, Any]:
        values = {p.name: self._value(p.name) for p in P.all_params()}
        values.update(overrides or {})
        return values

    @staticmethod
    def _coerce(name: str, value: Any) -> Any:
        """Node-parameter value with the default's type (ints accepted for floats), or ConfigError."""
        p = P.NODE_PARAM_BY_NAME[name]
        d = p.default
        ok = (isinstance(value, bool) if isinstance(d, bool) else
              isinstance(value, int) and not isinstance(value, bool) if isinstance(d, int) else
              isinstance(value, (int, float)) and not isinstance(value, bool) if isinstance(d, float) else
              isinstance(value, str))
        if not ok:
            raise ConfigError(f"invalid {name}={value!r}: expected a {type(d).__name__} like {d!r}")
        value = float(value) if isinstance(d, float) else value
        problem = P.check_node_value(name, value)
        if problem:
            raise ConfigError(problem)
        return value

    def _settings(self, overrides: Optional[dict] = None) -> tuple[dict[str, Any], GroundingConfig]:
        """Validated node settings and grounding config from the parameters (ConfigError names the fix)."""
        values = self._node_values(overrides)
        node = {p.name: self._coerce(p.name, values[p.name]) for p in P.NODE_PARAMS}
        cfg = P.grounding_config(values)
        if node["debug_heatmap"] and not cfg.keep_relevance:
            cfg = cfg.replace(keep_relevance=True)
        return node, cfg

    def _on_set_parameters(self, changes) -> SetParametersResult:
        try:
            self._settings({c.name: c.value for c in changes})
            P.proposal_config(self._node_values({c.name: c.value for c in changes}))
        except ConfigError as e:
            self.get_logger().warning(f"parameter change rejected: {e}")
            return SetParametersResult(successful=False, reason=str(e))
        if not self._post_set:
            self._after_set_parameters(changes, {c.name: c.value for c in changes})
        return SetParametersResult(successful=True)

    def _after_set_parameters(self, changes, pending: Optional[dict] = None) -> None:
        node, cfg = self._settings(pending)
        names = {c.name for c in changes}
        if names & {"window_duration", "window_max_frames", "window_rate", "ingest_max_side"}:
            self._configure_window(node, cfg)
        by_name = {p.name: p for p in P.all_params()}
        if names & set(GroundingConfig.field_names()) and self._grounder is not None and self._config is not None:
            # live knobs now; those that shape the loaded model keep their loaded value until configure
            keep = {n: getattr(self._config, n) for n in GroundingConfig.field_names() if not by_name[n].live}
            self._config = cfg.replace(**keep)
            if hasattr(self._grounder, "config"):
                self._grounder.config = self._config
        later = [n for n in names if n in by_name and not by_name[n].live]
        if later:
            self.get_logger().info(f"{', '.join(sorted(later))} take effect at the next configure/activate")

    def _model_side(self, cfg: GroundingConfig) -> int:
        """The model's per-frame input size in pixels (frames are kept at twice that: sharp enough for
        the model and the debug image, bounded whatever the camera sends)."""
        adapter = getattr(self._grounder, "adapter", None)
        for value in (cfg.image_size, getattr(adapter, "image_size", None),
                      getattr(adapter, "default_image_size", None)):
            if isinstance(value, int) and value > 0:
                return value
        return 336

    def _configure_window(self, node: dict, cfg: GroundingConfig) -> None:
        side = node["ingest_max_side"] or 2 * self._model_side(cfg)
        self.window.configure(node["window_duration"], node["window_max_frames"], node["window_rate"], side)
        self.detections.tolerance_ns = int(node["detection_tolerance"] * 1e9)

    # -- lifecycle ------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        log = self.get_logger()
        try:
            node, cfg = self._settings()
        except ConfigError as e:
            log.error(f"configure failed: {e}")
            self._warn_state(str(e))
            return TransitionCallbackReturn.FAILURE
        try:
            from stvg_ros.default_model import choose_model

            choice = choose_model(node["model_path"])
            self._model_dir, self._meaningless = choice.directory, choice.meaningless
            if choice.note:  # a default model: random (meaningless) or synthetic-world only
                log.warning(choice.note)
            from stvg_ros import Grounder

            t0 = time.monotonic()
            self._grounder = Grounder.from_pretrained(self._model_dir, device=cfg.device, config=cfg)
            log.info(f"loaded model {self._model_dir} on {self._device_name()} in {time.monotonic() - t0:.1f} s")
        except Exception as e:  # noqa: BLE001 - any load failure must leave the node alive
            log.error(f"configure failed: cannot load the model: {type(e).__name__}: {e}")
            self._warn_state(f"model load failed: {e}")
            self._grounder = None
            return TransitionCallbackReturn.FAILURE
        self._config = cfg
        self._configure_window(node, cfg)
        self.window.reset()
        self.detections.clear()
        try:  # the live proposal stage (off by default): tracks are ready when a query comes
            pcfg = P.proposal_config(self._node_values())
            if pcfg.enabled:
                from stvg_ros.proposals.live import LiveProposalStage

                pcfg = pcfg.replace(window_s=max(pcfg.window_s, node["window_duration"]))
                self._proposals = LiveProposalStage.from_config(pcfg)
                log.info(f"proposals: {self._proposals.detector.kind} from {pcfg.detector_path}, running class "
                         f"'{self._proposals.running_class}' at {pcfg.rate_hz} Hz")
        except Exception as e:  # noqa: BLE001 - a bad detector path must leave the node alive
            log.error(f"configure failed: proposal stage: {type(e).__name__}: {e}")
            self._warn_state(f"proposal stage failed: {e}")
            self._grounder = None
            return TransitionCallbackReturn.FAILURE
        self._queue = queue.Queue(maxsize=node["query_queue_size"])
        tube_qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        pub_events = PublisherEventCallbacks(incompatible_qos=self._incompatible_pub("tube"))
        self._pubs["tube"] = self.create_publisher(Tube, "tube", tube_qos, event_callbacks=pub_events)
        self._pubs["debug_image"] = self.create_publisher(Image, "debug_image", 2)
        self._pubs["status"] = self.create_publisher(Status, "status", 5)
        self._pubs["diagnostics"] = self.create_publisher(DiagnosticArray, "/diagnostics", 5)
        if node["status_rate"] > 0:
            self._status_timer = self.create_timer(1.0 / node["status_rate"], self._publish_status)
        self._stop.clear()
        self._worker = threading.Thread(target=self._serve, name="stvg_grounding", daemon=True)
        self._worker.start()
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        node, _ = self._settings()
        qos = QoSProfile(
            depth=node["image_depth"], history=HistoryPolicy.KEEP_LAST,
            reliability=(ReliabilityPolicy.BEST_EFFORT if node["image_reliability"] == "best_effort"
                         else ReliabilityPolicy.RELIABLE),
            durability=qos_profile_sensor_data.durability)

        def events(topic):
            return SubscriptionEventCallbacks(incompatible_qos=self._incompatible_sub(topic))

        self._subs = [
            self.create_subscription(Image, "image", self._on_image, qos, event_callbacks=events("image")),
            self.create_subscription(String, "query", self._on_query_text, QUERY_DEPTH,
                                     event_callbacks=events("query")),
            self.create_subscription(GroundingQuery, "query_request", self._on_query_request, QUERY_DEPTH,
                                     event_callbacks=events("query_request")),
        ]
        if node["use_compressed"]:
            self._subs.append(self.create_subscription(CompressedImage, "image/compressed", self._on_compressed,
                                                       qos, event_callbacks=events("image/compressed")))
        if node["use_detections"]:
            self._subs.append(self.create_subscription(Detections, "detections", self._on_detections, 10,
                                                       event_callbacks=events("detections")))
        self._rate_in.clear()
        self._rate_kept.clear()
        self._active = True
        self.get_logger().info(
            f"active: listening on {self.resolve_topic_name('image')} ({node['image_reliability']}, depth "
            f"{node['image_depth']}); ask on {self.resolve_topic_name('query')}")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        self._drain("the node was deactivated")
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def _teardown(self) -> None:
        """Stop the worker, drop publishers and the model, and give GPU memory back."""
        self._stop.set()
        self._drain("the node is shutting down")
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        if self._worker is not None:
            self._worker.join(timeout=5.0)
            self._worker = None
        if self._status_timer is not None:
            self.destroy_timer(self._status_timer)
            self._status_timer = None
        if self._proposals is not None:
            self._proposals.close()
            self._proposals = None
        for pub in self._pubs.values():
            self.destroy_publisher(pub)
        self._pubs = {}
        self._grounder = None
        self.window.reset()
        self.detections.clear()
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    # -- input ----------------------------------------------------------------------------------
    def _warn(self, message: str, kind: str = "") -> None:
        """Log a warning (at most one per THROTTLE_S per ``kind``) and keep it for the status."""
        now = time.monotonic()
        with self._lock:
            self._last_warning = message
            if kind:
                if now - self._warned_at.get(kind, -1e9) < THROTTLE_S:
                    return
                self._warned_at[kind] = now
        self.get_logger().warning(message)

    def _warn_state(self, message: str) -> None:
        with self._lock:
            self._last_warning = message

    def _ingest(self, header, decode) -> None:
        with self._lock:
            self._counters["frames_received"] += 1
        stamp_ns = stamp_to_ns(header.stamp)
        self._rate_in.tick(stamp_ns)
        outcome = self.window.offer(stamp_ns)
        if outcome == "reset":
            self.get_logger().warning(
                f"image stamps jumped back to {stamp_ns / 1e9:.3f} s (looping bag or restarted camera): "
                f"window reset")
            self.detections.clear()
            self._rate_kept.clear()
        if outcome not in ("keep", "reset"):
            return
        try:
            rgb = decode()
        except (ImageError, ValueError, TypeError) as e:
            with self._lock:
                self._counters["frames_rejected"] += 1
            self._warn(f"dropped a frame on {self.resolve_topic_name('image')}: {e}", "frame")
            return
        self._camera_frame_id = header.frame_id
        frame = self.window.add(stamp_ns, rgb, frame_id=header.frame_id)
        stage = self._proposals
        if stage is not None:  # the stored (downscaled) image: boxes in the pixels the grounder sees
            stage.add_frame(frame.image, frame.stamp)
        self._rate_kept.tick(stamp_ns)

    def _on_image(self, msg: Image) -> None:
        try:
            self._ingest(msg.header, lambda: decode_image(msg))
        except Exception as e:  # noqa: BLE001 - never die on a frame
            self._warn(f"dropped a frame: unexpected {type(e).__name__}: {e}", "frame")

    def _on_compressed(self, msg: CompressedImage) -> None:
        try:
            self._ingest(msg.header, lambda: decode_compressed(msg))
        except Exception as e:  # noqa: BLE001
            self._warn(f"dropped a compressed frame: unexpected {type(e).__name__}: {e}", "frame")

    def _on_detections(self, msg: Detections) -> None:
        try:
            self.detections.add(stamp_to_ns(msg.header.stamp), detections_from_msg(msg))
        except Exception as e:  # noqa: BLE001
            self._warn(f"dropped detections: {type(e).__name__}: {e}", "detections")

    def _on_time_jump(self, jump) -> None:
        if jump.clock_change or jump.delta.nanoseconds < 0:
            if len(self.window):
                self.get_logger().warning("the ROS clock jumped back (bag replay looped?): window reset")
            self.window.reset()
            self.detections.clear()
            if self._proposals is not None:
                self._proposals.reset()

    # -- queries --------------------------------------------------------------------------------
    def _new_id(self) -> str:
        with self._lock:
            self._next_query += 1
            return f"q{self._next_query}"

    def _on_query_text(self, msg: String) -> None:
        self._accept(PendingQuery(self._new_id(), msg.data, 0, 0, None, time.monotonic()))

    def _on_query_request(self, msg: GroundingQuery) -> None:
        qid = msg.id or self._new_id()
        attribute, action = msg.attribute_query.strip(), msg.action_query.strip()
        start_ns, end_ns = stamp_to_ns(msg.start), stamp_to_ns(msg.end)
        pending = PendingQuery(qid, msg.text, start_ns, end_ns,
                               SubQueries(attribute, action, "caller") if attribute and action else None,
                               time.monotonic())
        if bool(attribute) != bool(action):
            return self._reject(pending, "give both attribute_query and action_query, or neither")
        if end_ns and start_ns > end_ns:
            return self._reject(pending, "the time range's start is after its end: swap them or set 0")
        self._accept(pending)

    def _accept(self, q: PendingQuery) -> None:
        """Queue a query, or answer it at once with found=false when it cannot be served."""
        try:
            with self._lock:
                self._counters["queries_received"] += 1
            node, _ = self._settings()
            text = q.text.strip()
            if not text:
                return self._reject(q, "empty query text: say what to look for, e.g. 'the person in a red coat'")
            if len(text) > node["max_query_length"]:
                q.text = text[:80] + "..."
                return self._reject(q, f"query of {len(text)} characters is longer than max_query_length="
                                       f"{node['max_query_length']}: shorten it or raise the parameter")
            q.text = text
            if len(self.window) == 0:
                return self._reject(q, f"no frames in the window yet: is a camera publishing on "
                                       f"{self.resolve_topic_name('image')}?")
            if self._grounder is None or self._stop.is_set():
                return self._reject(q, "no model loaded: configure the node first")
            try:
                self._queue.put_nowait(q)
            except queue.Full:
                return self._reject(q, f"query queue full ({self._queue.maxsize} pending): wait for answers or "
                                       f"raise query_queue_size")
        except Exception as e:  # noqa: BLE001 - never die on a query
            self._reject(q, f"query not accepted: {type(e).__name__}: {e}")

    def _reject(self, q: PendingQuery, reason: str) -> None:
        with self._lock:
            self._counters["queries_rejected"] += 1
        frames = self.window.frames()
        newest = frames[-1] if frames else None
        self._warn(f"query {q.query_id} not served: {reason}", "query")
        self._publish_tube(tube_message(q.query_id, q.text, reason, newest.frame_id if newest else
                                        self._camera_frame_id, newest.stamp_ns if newest else 0,
                                        time.monotonic() - q.received))

    def _publish_tube(self, tube: Tube) -> None:
        pub = self._pubs.get("tube")
        if pub is not None:
            try:
                pub.publish(tube)
            except Exception as e:  # noqa: BLE001 - publisher destroyed during shutdown
                self.get_logger().debug(f"tube not published: {e}")

    def _drain(self, reason: str) -> None:
        while True:
            try:
                q = self._queue.get_nowait()
            except queue.Empty:
                return
            if q is not None:
                self._reject(q, reason)

    # -- grounding (worker thread) ----------------------------------------------------------------
    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                q = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if q is None or self._stop.is_set():
                if q is not None:
                    self._reject(q, "the node is shutting down")
                continue
            try:
                self._ground(q)
            except Exception as e:  # noqa: BLE001 - report and keep serving
                self.get_logger().error(f"grounding failed for query {q.query_id}: {type(e).__name__}: {e}")
                self._reject(q, f"grounding failed: {type(e).__name__}: {e}")

    def _ground(self, q: PendingQuery) -> None:
        node, cfg = self._settings()
        grounder = self._grounder
        if grounder is None:
            return self._reject(q, "no model loaded: configure the node first")
        frames = self.window.frames(q.start_ns, q.end_ns)
        if frames:  # the model takes frames of one size: a camera that changed resolution mid-window
            size = frames[-1].image.shape
            frames = [f for f in frames if f.image.shape == size]
        if len(frames) < node["min_frames"]:
            where = "in the requested time range" if (q.start_ns or q.end_ns) else "in the window"
            return self._reject(q, f"{len(frames)} frame(s) {where}, {node['min_frames']} needed (min_frames): "
                                   f"wait for more frames or widen the range")
        index = FrameIndex(frames)
        proposals = self.detections.proposals(frames) if node["use_detections"] else None
        stage = self._proposals
        if not proposals and stage is not None:
            subject = q.sub_queries.attribute if q.sub_queries else q.text
            phrase = subject_phrase(subject, stage.config.default_class, stage.config.synonyms)
            proposals = stage.proposals_for(index.stamps, phrase)
        result = grounder.ground([f.image for f in frames], index.stamps, q.text, proposals=proposals or None,
                                 sub_queries=q.sub_queries)
        latency = time.monotonic() - q.received
        tube = tube_from_result(result, index, q.query_id, q.text, latency)
        self._publish_tube(tube)
        with self._lock:
            self._counters["queries_answered"] += 1
            self._last_latency = latency
        self.get_logger().info(
            f"query {q.query_id} '{q.text[:60]}': found={tube.found} p_yes={tube.p_yes:.2f} span "
            f"{result.start:.2f}-{result.end:.2f} s, {len(tube.boxes)} boxes, {latency:.2f} s"
            + (" [random model: meaningless]" if self._meaningless else ""))
        pub = self._pubs.get("debug_image")
        if node["publish_debug_image"] and pub is not None and pub.get_subscription_count() > 0:
            msg = Image()
            encode_image(draw_strip(frames, result, q.text, heatmap=node["debug_heatmap"]), msg)
            msg.header.frame_id = tube.header.frame_id
            msg.header.stamp = tube.header.stamp
            pub.publish(msg)

    # -- status ---------------------------------------------------------------------------------
    def _device_name(self) -> str:
        g = self._grounder
        dev = getattr(getattr(g, "adapter", None), "device", None) if g is not None else None
        return str(dev) if dev is not None else (self._config.device if self._config else "")

    def status(self) -> Status:
        s = Status()
        s.header.stamp = self.get_clock().now().to_msg()
        s.header.frame_id = self._camera_frame_id
        s.state = "active" if self._active else ("inactive" if self._grounder is not None else "unconfigured")
        s.model = self._model_dir + (" (random: meaningless)" if self._meaningless else "")
        s.device = self._device_name()
        s.window_frames = len(self.window)
        s.window_capacity = self.window.max_frames
        s.window_span = float(self.window.span)
        s.input_rate = float(self._rate_in.rate)
        s.kept_rate = float(self._rate_kept.rate)
        with self._lock:
            c = dict(self._counters)
            s.last_latency = float(self._last_latency)
            s.last_warning = self._last_warning
        s.frames_received = c["frames_received"]
        s.frames_decimated = self.window.decimated
        s.frames_rejected = c["frames_rejected"]
        s.window_resets = self.window.resets
        s.queue_depth = self._queue.qsize()
        s.queue_capacity = self._queue.maxsize
        s.queries_received = c["queries_received"]
        s.queries_answered = c["queries_answered"]
        s.queries_rejected = c["queries_rejected"]
        return s

    def _publish_status(self) -> None:
        try:
            s = self.status()
            if "status" in self._pubs:
                self._pubs["status"].publish(s)
            d = DiagnosticStatus(name=f"{self.get_fully_qualified_name()}: grounding",
                                 hardware_id=s.device or "unknown")
            d.level = DiagnosticStatus.OK if s.state == "active" and not self._meaningless else DiagnosticStatus.WARN
            d.message = f"{s.state}, window {s.window_frames}/{s.window_capacity}, queue {s.queue_depth}/" \
                        f"{s.queue_capacity}" + (", random model" if self._meaningless else "")
            d.values = [KeyValue(key=k, value=str(getattr(s, k))) for k in (
                "model", "window_frames", "window_span", "input_rate", "kept_rate", "frames_received",
                "frames_decimated", "frames_rejected", "window_resets", "queue_depth", "queries_received",
                "queries_answered", "queries_rejected", "last_latency", "last_warning")]
            stage = self._proposals
            if stage is not None:  # the live proposal stage's cost and state (ms per keyframe, skips, phrases)
                d.values.append(KeyValue(key="proposals", value=str(stage.stats())))
            if "diagnostics" in self._pubs:
                self._pubs["diagnostics"].publish(DiagnosticArray(header=s.header, status=[d]))
        except Exception as e:  # noqa: BLE001
            self.get_logger().debug(f"status not published: {e}")

    # -- QoS mismatch warnings ------------------------------------------------------------------
    def _incompatible_sub(self, topic: str):
        def warn(info) -> None:
            policy = qos_policy_name_from_kind(info.last_policy_kind)
            self._warn(
                f"QoS mismatch on {self.resolve_topic_name(topic)}: a publisher's {policy} policy is incompatible "
                f"with this subscription, so its messages are NOT received (total {info.total_count}). For images set "
                f"image_reliability to match the publisher (best_effort publishers need image_reliability:="
                f"best_effort).", "qos")
        return warn

    def _incompatible_pub(self, topic: str):
        def warn(info) -> None:
            policy = qos_policy_name_from_kind(info.last_policy_kind)
            self._warn(f"QoS mismatch on {self.resolve_topic_name(topic)}: a subscriber requests an incompatible "
                       f"{policy} policy (this topic is published reliable).", "qos")
        return warn


def main(argv: Optional[list[str]] = None) -> int:
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    rclpy.init(args=argv if argv is not None else sys.argv)
    node = StvgNode()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    rc = 0
    try:
        if node.get_parameter("autostart").value:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().error("autostart: configure failed (see above); the node stays unconfigured "
                                        "and can be configured again through its lifecycle services")
            elif node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().error("autostart: activate failed")
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        try:
            node._active = False
            node._teardown()
        except Exception as e:  # noqa: BLE001
            print(f"stvg_node: error during shutdown: {e}", file=sys.stderr)
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()
    return rc


if __name__ == "__main__":
    sys.exit(main())
