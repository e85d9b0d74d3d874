"""Play a rosbag2 file into the live ROS graph with rclpy, for machines without the ``ros2`` CLI.

Bags are read with ``rosbags`` (pure Python) and their serialized messages published as they are
(no deserialization), keeping the recorded timing divided by ``rate``, optionally looping, and
publishing ``/clock`` (``rosgraph_msgs/Clock``) from the bag's time so that nodes with
``use_sim_time:=true`` follow the bag.  Where the CLI exists, ``ros2 bag play`` plays the same bags.

Message classes are imported from their generated Python packages (``sensor_msgs.msg``,
``stvg_ros.msg``...): a topic whose type is not importable is skipped with a warning.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence


def message_class(msgtype: str):
    """``pkg/msg/Name`` → the generated Python class, or None when the package is not built."""
    pkg, kind, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ImportError, AttributeError):
        return None


@dataclass
class BagMessage:
    topic: str
    msgtype: str
    time_ns: int
    data: bytes


def load_messages(path: str | Path, topics: Optional[Sequence[str]] = None) -> list[BagMessage]:
    """All messages of a bag (serialized), in log-time order."""
    from rosbags.rosbag2 import Reader

    with Reader(path) as reader:
        conns = [c for c in reader.connections if topics is None or c.topic in topics]
        if not conns:  # an empty list would mean "every connection" to rosbags
            return []
        return [BagMessage(c.topic, c.msgtype, t, bytes(raw)) for c, t, raw in reader.messages(connections=conns)]


class BagPlayer:
    """Publishes a bag's messages on ``node`` with the recorded timing.

    ``remap`` renames topics (``{"/camera/image_raw/compressed": "/stvg/image/compressed"}``);
    ``clock_hz`` is how often ``/clock`` is published between messages (as ``ros2 bag play
    --clock``); ``on_message`` is called after each publish (tests, progress).
    """

    def __init__(self, node, bag: str | Path, rate: float = 1.0, loop: bool = False, clock: bool = True,
                 clock_hz: float = 40.0, remap: Optional[dict[str, str]] = None,
                 topics: Optional[Sequence[str]] = None, depth: int = 100,
                 on_message: Optional[Callable[[BagMessage], None]] = None):
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        if rate <= 0:
            raise ValueError(f"invalid rate={rate}: use a positive factor (1.0 = recorded speed)")
        self.node = node
        self.rate = rate
        self.loop = loop
        self.clock_period = 1.0 / clock_hz if clock and clock_hz > 0 else None
        self.on_message = on_message
        self.messages = load_messages(bag, topics)
        if not self.messages:
            raise ValueError(f"bag {bag} has no message on {topics or 'any topic'}")
        remap = remap or {}
        qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)
        self.publishers = {}
        for m in self.messages:
            if m.topic in self.publishers:
                continue
            cls = message_class(m.msgtype)
            if cls is None:
                node.get_logger().warning(
                    f"skipping {m.topic}: message type {m.msgtype} is not importable (build/source its package)")
                self.publishers[m.topic] = None
                continue
            self.publishers[m.topic] = node.create_publisher(cls, remap.get(m.topic, m.topic), qos)
        self.clock_pub = None
        if clock:
            from rosgraph_msgs.msg import Clock

            self.clock_pub = node.create_publisher(Clock, "/clock", QoSProfile(depth=10,
                                                                                 reliability=ReliabilityPolicy.RELIABLE))
        self._stop = threading.Event()
        self.published = 0

    def _publish_clock(self, t_ns: int) -> None:
        if self.clock_pub is None:
            return
        from rosgraph_msgs.msg import Clock

        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = divmod(int(t_ns), 1_000_000_000)
        self.clock_pub.publish(msg)

    def stop(self) -> None:
        self._stop.set()

    def play(self) -> int:
        """Play (blocking) until the end, or forever with ``loop``; returns messages published."""
        while True:
            self._play_once()
            if not self.loop or self._stop.is_set():
                return self.published

    def _sleep_until(self, wall_deadline: float, bag_t0: int, wall_t0: float) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= wall_deadline:
                return
            step = wall_deadline - now
            if self.clock_period is not None:
                step = min(step, self.clock_period)
                self._publish_clock(bag_t0 + int((now - wall_t0) * self.rate * 1e9))
            time.sleep(step)

    def _play_once(self) -> None:
        t0 = self.messages[0].time_ns
        wall0 = time.monotonic()
        self._publish_clock(t0)
        for m in self.messages:
            if self._stop.is_set():
                return
            self._sleep_until(wall0 + (m.time_ns - t0) * 1e-9 / self.rate, t0, wall0)
            self._publish_clock(m.time_ns)
            pub = self.publishers.get(m.topic)
            if pub is not None:
                pub.publish(m.data)  # serialized CDR, exactly as recorded
                self.published += 1
                if self.on_message is not None:
                    self.on_message(m)


def parse_remaps(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for r in items:
        if ":=" not in r:
            raise ValueError(f"invalid remap {r!r}: use /from:=/to")
        a, b = r.split(":=", 1)
        out[a] = b
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``stvg-play-bag BAG [--rate R] [--loop] [--no-clock] [--remap /a:=/b ...] [--topics ...]``."""
    ap = argparse.ArgumentParser(prog="stvg-play-bag", description=__doc__.split("\n\n")[0])
    ap.add_argument("bag")
    ap.add_argument("--rate", type=float, default=1.0, help="speed factor (2.0 = twice as fast)")
    ap.add_argument("--loop", action="store_true", help="start again at the end (until Ctrl-C)")
    ap.add_argument("--no-clock", action="store_true", help="do not publish /clock")
    ap.add_argument("--clock-hz", type=float, default=40.0, help="/clock rate between messages")
    ap.add_argument("--remap", nargs="*", default=[], metavar="FROM:=TO")
    ap.add_argument("--topics", nargs="*", default=None, help="only these topics")
    ap.add_argument("--delay", type=float, default=0.5, help="seconds to wait for subscribers before playing")
    a = ap.parse_args(argv)
    import rclpy

    rclpy.init()
    node = rclpy.create_node("stvg_bag_player")
    try:
        player = BagPlayer(node, a.bag, rate=a.rate, loop=a.loop, clock=not a.no_clock, clock_hz=a.clock_hz,
                           remap=parse_remaps(a.remap), topics=a.topics)
        time.sleep(max(0.0, a.delay))
        n = player.play()
        node.get_logger().info(f"published {n} messages from {a.bag}")
    except (ValueError, FileNotFoundError) as e:
        print(f"stvg-play-bag: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
