"""Node-in-the-loop evaluation: play each bag into a running ``stvg_node`` and score its ``Tube``.

``stvg_eval`` (``ros2 run stvg_ros stvg_eval``, ``python -m stvg_ros.ros.eval_node_loop``) is
``stvg-eval`` with this module's :class:`NodeRunner` for ``--mode node``; the core's evaluation
never imports it.

Node mode runs the node's own window settings (``window_rate``, ``window_max_frames``: not forced; with
the defaults every frame is kept, see docs/evaluation.md): per bag, every frame is played at the bag's
rate, as a camera would send it, into that window, whose ``window_duration`` is raised to cover the bag
and ``ingest_max_side`` set to the core's frame size; the grounder then samples from the window what
core mode samples from the bag (the paper's sampling, uniform in time); no
proposals (external or live); ``use_sim_time``; the grounding parameters of the evaluation's
``grounding:`` settings.  Live parameters are set through the node's parameter service
(and restored at the end); one applied only at configure that differs is refused with the
``-p name:=value`` to restart the node with.  The frames go to ``<ns>/image`` (or
``<ns>/image/compressed``) with ``/clock`` from the bag, then the item's query (with its
sub-queries) to ``<ns>/query_request``; the bag's own query and ground-truth topics are not played.
Every bag starts at the same stamp, so the clock jumps back between bags and the node resets its
window.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import fields
from typing import Any, Optional, Sequence

import numpy as np

from ..config import ConfigError, GroundingConfig
from ..evaluation.scoring import base_record, score_tube
from ..tube_messages import stamp_to_ns, tube_boxes
from ..stream.window import NS
from .bag_player import BagPlayer, message_class

#: grounding fields that do not change what is computed (only where)
NOT_COMPARED = {"device"}
#: the node parameter of ServingConfig.ingest_max_side (a sub-config knob)
INGEST = "serving.ingest_max_side"
WINDOW_MARGIN_S = 1.0


class NodeRunner:
    """One rclpy context, clients of the node's parameter services and a subscription to its answers."""

    def __init__(self, gcfg: GroundingConfig, ev, service_timeout: float = 20.0):
        try:
            import rclpy
            from rclpy.context import Context
            from rclpy.executors import SingleThreadedExecutor
            from rclpy.qos import QoSProfile, ReliabilityPolicy
        except ImportError:
            raise ConfigError("node mode needs rclpy: install ROS 2 (or the ros-rclpy wheels) and source it") from None
        Tube = message_class("stvg_ros/msg/Tube")
        self.Query = message_class("stvg_ros/msg/GroundingQuery")
        if Tube is None or self.Query is None:
            raise ConfigError("node mode needs the built stvg_ros messages: colcon build the package and source "
                              "install/setup.bash")
        if ev.proposals:
            raise ConfigError("node mode cannot give the node a proposals file: its proposals come from its "
                              "detections topic or live stage; evaluate with --proposals '' or use --mode core")
        self.gcfg, self.ev = gcfg, ev
        self.ns = "/" + ev.node_namespace.strip("/") if ev.node_namespace.strip("/") else ""
        self.node_name = f"{self.ns}/{ev.node_name}"
        self.service_timeout = service_timeout
        self.ctx = Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node("stvg_eval_loop", context=self.ctx)
        self._tubes: dict[str, tuple[object, float]] = {}
        self._cv = threading.Condition()
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(Tube, f"{self.ns}/tube", self._on_tube, qos)
        self.query_pub = self.node.create_publisher(self.Query, f"{self.ns}/query_request", qos)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        self._original: dict[str, Any] = {}  # parameters we changed → their value before
        self._current: dict[str, Any] = {}
        self._state = ""
        Status = message_class("stvg_ros/msg/Status")
        self.node.create_subscription(Status, f"{self.ns}/status", self._on_status, 5)
        try:
            self._wait_active(max(ev.node_timeout, service_timeout))
            self._configure_node()
        except BaseException:
            self.close()
            raise

    # --- the node's parameters ---------------------------------------------------------------

    def _on_status(self, msg) -> None:
        with self._cv:
            self._state = msg.state
            self._cv.notify_all()

    def _wait_active(self, timeout: float) -> None:
        """Until the node says it is active (a node still loading its model answers no service)."""
        with self._cv:
            if not self._cv.wait_for(lambda: self._state == "active", timeout=timeout):
                seen = f"it is {self._state!r}" if self._state else f"no status on {self.ns}/status"
                raise ConfigError(f"{self.node_name} is not active after {timeout:g} s ({seen}): start stvg_node in "
                                  f"namespace {self.ns or '/'} first (or pass --node-namespace / --node-name; "
                                  f"status_rate must be > 0)")

    def _call(self, srv_type, service: str, request):
        cli = self.node.create_client(srv_type, f"{self.node_name}/{service}")
        try:
            if not cli.wait_for_service(timeout_sec=self.service_timeout):
                raise ConfigError(f"no node {self.node_name} answers (service {service}): start stvg_node in "
                                  f"namespace {self.ns or '/'} first (or pass --node-namespace / --node-name)")
            for _ in range(3):  # a request sent before the server has matched the client back is lost: resend
                fut = cli.call_async(request)
                done = threading.Event()
                fut.add_done_callback(lambda _: done.set())
                if done.wait(self.service_timeout):
                    return fut.result()
                cli.remove_pending_request(fut)
            raise ConfigError(f"{self.node_name}/{service} did not answer (3 tries of {self.service_timeout:g} s)")
        finally:
            self.node.destroy_client(cli)

    def get_parameters(self, names: Sequence[str]) -> dict[str, Any]:
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        res = self._call(GetParameters, "get_parameters", GetParameters.Request(names=list(names)))
        return {n: parameter_value_to_python(v) for n, v in zip(names, res.values)}

    def set_parameters(self, values: dict[str, Any]) -> None:
        """Set live parameters (each typed as the node declares it); refusals raise ConfigError."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        if not values:
            return
        msgs = []
        for name, value in values.items():
            cur = self._current.get(name)
            if isinstance(cur, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            msgs.append(Parameter(name, value=value).to_parameter_msg())
        res = self._call(SetParameters, "set_parameters", SetParameters.Request(parameters=msgs))
        bad = [f"{m.name}: {r.reason}" for m, r in zip(msgs, res.results) if not r.successful]
        if bad:
            raise ConfigError(f"{self.node_name} refused the evaluation's settings: {'; '.join(bad)}")
        for name, value in values.items():
            self._original.setdefault(name, self._current.get(name))
            self._current[name] = value

    def _configure_node(self) -> None:
        """Check the configure-time settings, set the live ones that change what the grounder sees."""
        from ..config import knob_live
        from ..presets import param_name

        names = ["use_sim_time", "image_reliability", "use_detections", "proposals_enabled",
                 "window_duration", INGEST] + \
                [param_name("grounding", f.name) for f in fields(GroundingConfig) if f.name not in NOT_COMPARED]
        self._current = self.get_parameters(names)
        want = {f.name: getattr(self.gcfg, f.name) for f in fields(GroundingConfig) if f.name not in NOT_COMPARED}
        want["layers"] = list(want["layers"] or [])
        to_set, refuse, defaults = {}, [], GroundingConfig()
        live = {param_name("grounding", f): knob_live(GroundingConfig, f) for f in want}
        want = {param_name("grounding", f): v for f, v in want.items()}
        for name, value in want.items():
            cur = self._current.get(name)
            if cur is None:  # a sub-config knob the node was not given: its default (the model's, if any, in both)
                cur = getattr(defaults, name.rsplit(".", 1)[-1])
            cur = list(cur) if name.endswith("layers") and cur is not None else cur
            if cur == value or (isinstance(value, float) and isinstance(cur, (int, float)) and float(cur) == value):
                continue
            if live.get(name, True):
                to_set[name] = value
            else:
                refuse.append(f"-p {name}:={_ros_value(value)} (node has {cur!r})")
        if self._current.get("image_reliability") != "reliable":
            refuse.append("-p image_reliability:=reliable (best effort may drop frames, and the node would ground "
                          "on other frames than core mode)")
        for name in ("use_detections", "proposals_enabled"):
            if self._current.get(name):
                refuse.append(f"-p {name}:=false (core mode grounds without proposals here)")
        if refuse:
            raise ConfigError(f"{self.node_name} is not set up as core mode for these settings; they apply at "
                              f"configure, so restart it with " + " ".join(refuse))
        to_set["use_sim_time"] = True
        self.set_parameters({k: v for k, v in to_set.items() if self._current.get(k) != v})

    def _cover(self, span_s: float, side: int) -> None:
        """A window long enough for the whole bag, frames at the core's resolution (the node's own
        window_rate and window_max_frames stay: they are what is measured)."""
        need = {}
        if self._current["window_duration"] < span_s + WINDOW_MARGIN_S:
            need["window_duration"] = float(np.ceil(span_s + WINDOW_MARGIN_S))
        if (self._current.get(INGEST) or 0) != side:
            need[INGEST] = int(side)
        self.set_parameters(need)

    # --- one bag -----------------------------------------------------------------------------

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def _on_tube(self, msg) -> None:
        with self._cv:
            self._tubes[msg.query_id] = (msg, time.monotonic())
            self._cv.notify_all()

    def _image_target(self, image_topic: str) -> str:
        target = self.ev.image_topic or f"{self.ns}/image"
        if image_topic.endswith("/compressed") and not target.endswith("/compressed"):
            target += "/compressed"
        return target

    def evaluate(self, item) -> tuple[dict, None, None]:
        """Play ``item``'s frames, ask its query, wait for the Tube answering it, score it."""
        from ..evaluation.bags import read_bag
        from .convert import ns_to_stamp

        contents = read_bag(item.bag, frame_positions=[0])
        stamps = contents.stamps
        # every frame, as a camera sends them: what the node's window keeps of them, and what the grounder
        # samples from that, is what is measured (core mode's sample of the same bag, with the defaults)
        side = self.ev.max_side or max(contents.frames[0].shape[:2])
        self._cover(stamps[-1] - stamps[0], side)
        target = self._image_target(contents.image_topic)
        with self._cv:
            self._tubes.pop(item.query_id, None)
        player = BagPlayer(self.node, item.bag, rate=self.ev.rate, clock=True,
                           remap={contents.image_topic: target}, topics=[contents.image_topic])
        try:
            missing = player.wait_for_subscribers(10.0)
            if missing:
                raise RuntimeError(f"no node subscribes to {target}: start stvg_node "
                                   f"(image_reliability:=reliable{', use_compressed:=true' if 'compressed' in target else ''}) "
                                   f"in namespace {self.ns or '/'}")
            t0 = time.monotonic()
            player.play()
            period = (stamps[-1] - stamps[0]) / max(1, len(stamps) - 1)  # the bag's frame period
            time.sleep(max(0.05, period / self.ev.rate))  # as a bag asks: one frame period after the last frame
            q = self.Query()
            q.id, q.text = item.query_id or item.key, item.query
            q.header.stamp = ns_to_stamp(int(round((stamps[-1] + period) * 1e9)))
            if item.sub_queries is not None:
                q.attribute_query, q.action_query = item.sub_queries.attribute, item.sub_queries.action
            self.query_pub.publish(q)
            with self._cv:
                ok = self._cv.wait_for(lambda: q.id in self._tubes, timeout=self.ev.node_timeout)
                got = self._tubes.pop(q.id, None)
        finally:
            for pub in player.publishers.values():
                if pub is not None:
                    self.node.destroy_publisher(pub)
            if player.clock_pub is not None:
                self.node.destroy_publisher(player.clock_pub)
        if not ok or got is None:
            raise TimeoutError(f"no Tube for query {q.id!r} within {self.ev.node_timeout} s "
                               f"(raise --node-timeout or check the node's log)")
        tube, arrived = got
        rec = score_node_tube(item, tube, stamps, wall=arrived - t0, protocol=self.ev.protocol)
        rec["frames_played"] = int(player.published)  # the bag's frames sent to the node (every one)
        return rec, None, None

    def close(self) -> None:
        if self._original:
            try:  # leave the node as we found it
                restore = {k: v for k, v in self._original.items() if v is not None}
                self._original = {}
                self.set_parameters(restore)
            except Exception as e:  # noqa: BLE001 - the results are written; say what was left
                print(f"stvg_eval: could not restore {self.node_name}'s parameters: {e}", file=sys.stderr)
        self._stop.set()
        self._thread.join(2)
        self.executor.shutdown()
        self.node.destroy_node()
        import rclpy

        rclpy.try_shutdown(context=self.ctx)


def _ros_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ",".join(map(str, v)) + "]"
    return str(v)


def score_node_tube(item, tube, bag_stamps, wall: float, protocol: str) -> dict:
    """A node's ``Tube`` → the per-query record (frames = image positions in the bag)."""
    stamps = np.asarray(bag_stamps)

    def pos(ns: int) -> int:
        return int(np.argmin(np.abs(stamps - ns / NS)))

    boxes = {pos(ns): b for ns, b in tube_boxes(tube).items()}
    start = pos(stamp_to_ns(tube.start)) if boxes else None
    end = pos(stamp_to_ns(tube.end)) if boxes else None
    rec = base_record(item)
    rec.update(score_tube(item, sorted(boxes), start, end, boxes, tube.track_id or None, protocol))
    rec.update({
        "found": bool(tube.found), "p_yes": float(tube.p_yes), "score": float(tube.score),
        "track_id": tube.track_id, "latency": float(tube.latency) or wall, "wall_s": wall,
        "timings": {"processing": float(tube.processing_time)}, "reason": tube.reason,
        "sub_queries": {"attribute": tube.attribute_query, "action": tube.action_query,
                        "source": tube.sub_query_source},
        "frame_indices": sorted(boxes),
        "pred_boxes": {str(f): [round(float(v), 2) for v in b] for f, b in sorted(boxes.items())},
    })
    if not boxes and tube.reason:
        rec["error"] = f"node answered without a tube: {tube.reason}"
    return rec


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``stvg_eval``: ``stvg-eval`` whose ``--mode node`` plays bags into a running node."""
    from ..evaluation import evaluate

    return evaluate.main(argv, runners={"node": NodeRunner})


if __name__ == "__main__":
    sys.exit(main())
