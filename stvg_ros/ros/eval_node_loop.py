"""Node-in-the-loop evaluation: play each bag into a running ``stvg_node`` and score its ``Tube``.

The node must run with ``use_sim_time:=true`` in the namespace given by ``node_namespace`` (default
``/stvg``), with a window long enough for a whole clip (see docs/evaluation.md).  Per bag, the
frames go to ``<ns>/image`` (or ``<ns>/image/compressed``), the query to ``<ns>/query_request``,
``/clock`` follows the bag; the ground-truth topic is not played (the node must not see it).
Every bag starts at the same stamp, so the clock jumps back between bags and the node resets its
window.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from ..config import ConfigError
from .bag_player import BagPlayer, message_class


class NodeLoop:
    """Holds one rclpy context and a subscription to the node's answers across all bags."""

    def __init__(self, ev):
        try:
            import rclpy
            from rclpy.context import Context
            from rclpy.executors import SingleThreadedExecutor
            from rclpy.qos import QoSProfile, ReliabilityPolicy
        except ImportError:
            raise ConfigError("node mode needs rclpy: install ROS 2 (or the ros-rclpy wheels) and source it") from None
        Tube = message_class("stvg_ros/msg/Tube")
        if Tube is None or message_class("stvg_ros/msg/GroundingQuery") is None:
            raise ConfigError("node mode needs the built stvg_ros messages: colcon build the package and source "
                              "install/setup.bash")
        self.ev = ev
        self.ns = "/" + ev.node_namespace.strip("/") if ev.node_namespace.strip("/") else ""
        self.ctx = Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node("stvg_eval_loop", context=self.ctx)
        self._tubes: dict[str, tuple[object, float]] = {}
        self._cv = threading.Condition()
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(Tube, f"{self.ns}/tube", self._on_tube, qos)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def _on_tube(self, msg) -> None:
        with self._cv:
            self._tubes[msg.query_id] = (msg, time.monotonic())
            self._cv.notify_all()

    def _remap(self, contents) -> dict[str, str]:
        image = contents.image_topic
        target = self.ev.image_topic or f"{self.ns}/image"
        if image.endswith("/compressed") and not target.endswith("/compressed"):
            target += "/compressed"
        return {image: target}

    def evaluate(self, item) -> dict:
        """Play ``item``'s bag, wait for the Tube answering its query, score it."""
        from ..bags import read_bag
        from ..evaluate import _base_record, score_tube

        contents = read_bag(item.bag, frame_positions=[])
        remap = self._remap(contents)
        query_topics = sorted({c for c in _query_topics(item.bag)})
        for t in query_topics:
            remap[t] = f"{self.ns}/query_request"
        with self._cv:
            self._tubes.pop(item.query_id, None)
        player = BagPlayer(self.node, item.bag, rate=self.ev.rate, clock=True,
                           remap=remap, topics=[contents.image_topic, *query_topics])
        try:
            image_pub = player.publishers[contents.image_topic]
            deadline = time.monotonic() + 10.0
            while image_pub.get_subscription_count() == 0:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no node subscribes to {remap[contents.image_topic]}: start stvg_node "
                                       f"(use_sim_time:=true{', use_compressed:=true' if 'compressed' in remap[contents.image_topic] else ''}) "
                                       f"in namespace {self.ns or '/'}")
                time.sleep(0.05)
            time.sleep(0.2)  # let the other subscriptions match too
            t0 = time.monotonic()
            player.play()
            with self._cv:
                ok = self._cv.wait_for(lambda: item.query_id in self._tubes, timeout=self.ev.node_timeout)
                got = self._tubes.pop(item.query_id, None)
        finally:
            for pub in player.publishers.values():
                if pub is not None:
                    self.node.destroy_publisher(pub)
            if player.clock_pub is not None:
                self.node.destroy_publisher(player.clock_pub)
        if not ok or got is None:
            raise TimeoutError(f"no Tube for query {item.query_id!r} within {self.ev.node_timeout} s "
                               f"(raise --node-timeout or check the node's log)")
        tube, arrived = got
        return score_node_tube(item, tube, contents.stamps, wall=arrived - t0, protocol=self.ev.protocol,
                               base=_base_record(item), score=score_tube)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.executor.shutdown()
        self.node.destroy_node()
        import rclpy

        rclpy.try_shutdown(context=self.ctx)


def _query_topics(bag) -> list[str]:
    from rosbags.rosbag2 import Reader

    with Reader(bag) as reader:
        return [c.topic for c in reader.connections if c.msgtype == "stvg_ros/msg/GroundingQuery"]


def score_node_tube(item, tube, bag_stamps, wall: float, protocol: str, base: dict, score) -> dict:
    """A node's ``Tube`` → the per-query record (frames = image positions in the bag)."""
    stamps = np.asarray(bag_stamps)

    def pos(t: float) -> int:
        return int(np.argmin(np.abs(stamps - t)))

    def secs(t) -> float:
        return t.sec + t.nanosec * 1e-9

    boxes = {pos(secs(b.stamp)): (b.center_x - b.size_x / 2, b.center_y - b.size_y / 2,
                                  b.center_x + b.size_x / 2, b.center_y + b.size_y / 2) for b in tube.boxes}
    start = pos(secs(tube.start)) if boxes else None
    end = pos(secs(tube.end)) if boxes else None
    rec = dict(base)
    rec.update(score(item, sorted(boxes), start, end, boxes, tube.track_id or None, protocol))
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
