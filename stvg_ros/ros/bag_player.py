"""Play a rosbag2 file into the live ROS graph with rclpy, for machines without the ``ros2`` CLI.

Bags are read with ``rosbags`` (pure Python) and streamed: messages are read one at a time as they
are due (memory bounded, whatever the bag's length) and published serialized as they are (no
deserialization), keeping the recorded timing divided by ``rate``, optionally looping, and,
with ``--clock`` (opt-in, as ``ros2 bag play --clock``), publishing ``/clock``
(``rosgraph_msgs/Clock``) from the bag's time so that nodes with ``use_sim_time:=true`` follow the
bag.  Playing starts once every played topic has a subscriber (or after ``--wait-timeout``), so the
first frames are not published into the void.  Where the CLI exists, ``ros2 bag play`` plays the
same bags.

Message classes are imported from their generated Python packages (``sensor_msgs.msg``,
``stvg_ros.msg``...): a topic whose type is not importable is skipped with a warning.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence


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


def iter_messages(path: str | Path, topics: Optional[Sequence[str]] = None) -> Iterator[BagMessage]:
    """A bag's messages (serialized) in log-time order, read one at a time."""
    from rosbags.rosbag2 import Reader

    with Reader(path) as reader:
        conns = [c for c in reader.connections if topics is None or c.topic in topics]
        if not conns:  # an empty list would mean "every connection" to rosbags
            return
        for c, t, raw in reader.messages(connections=conns):
            yield BagMessage(c.topic, c.msgtype, t, bytes(raw))


def load_messages(path: str | Path, topics: Optional[Sequence[str]] = None) -> list[BagMessage]:
    """All messages of a bag (serialized), in log-time order (small bags; playing streams them)."""
    return list(iter_messages(path, topics))


def bag_topics(path: str | Path, topics: Optional[Sequence[str]] = None) -> dict[str, tuple[str, int]]:
    """``{topic: (message type, message count)}`` of a bag's played topics, from its index."""
    from rosbags.rosbag2 import Reader

    out: dict[str, tuple[str, int]] = {}
    with Reader(path) as reader:
        for c in reader.connections:
            if topics is None or c.topic in topics:
                n = out.get(c.topic, (c.msgtype, 0))[1] + int(getattr(c, "msgcount", 0) or 0)
                out[c.topic] = (c.msgtype, n)
    return out


class BagPlayer:
    """Publishes a bag's messages on ``node`` with the recorded timing, streaming them from the file.

    ``remap`` renames topics (``{"/camera/image_raw/compressed": "/stvg/image/compressed"}``);
    ``clock_hz`` is how often ``/clock`` is published between messages (as ``ros2 bag play
    --clock``); ``positions`` keeps only those messages (indices in the time-ordered list of the
    played topics' messages); ``on_message`` is called after each publish (tests, progress).
    ``published`` and ``skipped`` count messages by topic (skipped: a type that is not importable).
    """

    def __init__(self, node, bag: str | Path, rate: float = 1.0, loop: bool = False, clock: bool = False,
                 clock_hz: float = 40.0, remap: Optional[dict[str, str]] = None,
                 topics: Optional[Sequence[str]] = None, depth: int = 10,
                 on_message: Optional[Callable[[BagMessage], None]] = None,
                 positions: Optional[Sequence[int]] = None):
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        if rate <= 0:
            raise ValueError(f"invalid rate={rate}: use a positive factor (1.0 = recorded speed)")
        self.node = node
        self.rate = rate
        self.loop = loop
        self.clock_period = 1.0 / clock_hz if clock and clock_hz > 0 else None
        self.on_message = on_message
        self.bag, self.topics = bag, topics
        self.positions = None if positions is None else set(positions)
        self.index = bag_topics(bag, topics)
        self.total = sum(n for _, n in self.index.values())
        if self.positions is not None:
            self.total = len({p for p in self.positions if 0 <= p < self.total})
        if not self.total:
            raise ValueError(f"bag {bag} has no message on {topics or 'any topic'}")
        remap = remap or {}
        qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)
        self.publishers = {}
        for topic, (msgtype, _) in self.index.items():
            cls = message_class(msgtype)
            if cls is None:
                node.get_logger().warning(
                    f"skipping {topic}: message type {msgtype} is not importable (build/source its package)")
                self.publishers[topic] = None
                continue
            self.publishers[topic] = node.create_publisher(cls, remap.get(topic, topic), qos)
        self.clock_pub = None
        if clock:
            from rosgraph_msgs.msg import Clock

            self.clock_pub = node.create_publisher(Clock, "/clock", QoSProfile(depth=10,
                                                                                 reliability=ReliabilityPolicy.RELIABLE))
        self._stop = threading.Event()
        self.published = 0
        self.by_topic: dict[str, int] = {}
        self.skipped: dict[str, int] = {}

    def unmatched(self, topics: Optional[Sequence[str]] = None) -> list[str]:
        """Published topic names without a subscriber, among ``topics`` (bag or remapped names;
        default: every played topic)."""
        pubs = {t: p for t, p in self.publishers.items() if p is not None}
        if topics is not None:
            unknown = [t for t in topics if t not in pubs and t not in {p.topic_name for p in pubs.values()}]
            if unknown:
                raise ValueError(f"not played from this bag: {', '.join(unknown)} (played: "
                                 f"{', '.join(p.topic_name for p in pubs.values())})")
            pubs = {t: p for t, p in pubs.items() if t in topics or p.topic_name in topics}
        return [p.topic_name for p in pubs.values() if p.get_subscription_count() == 0]

    def wait_for_subscribers(self, timeout: float, topics: Optional[Sequence[str]] = None,
                             poll: float = 0.02, settle: float = 0.25) -> list[str]:
        """Wait until each of ``topics`` (default: every played topic) has a matched subscriber, at
        most ``timeout`` seconds; returns the topics still without one ([] = all matched).

        A publisher sees the match before its subscriber has matched it back (until then the
        subscriber drops the samples): ``settle`` seconds are waited after the last match."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            missing = self.unmatched(topics)
            if not missing:
                time.sleep(settle)
                return missing
            if time.monotonic() >= deadline or self._stop.is_set():
                return missing
            time.sleep(poll)

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

    def flush(self, timeout: float = 2.0) -> None:
        """Wait, at most ``timeout`` s in all, until reliable subscribers have acknowledged what was published:
        a player that exits right after its last message would otherwise lose what is still in flight."""
        from rclpy.duration import Duration

        end = time.monotonic() + timeout
        for pub in self.publishers.values():
            wait, left = getattr(pub, "wait_for_all_acked", None), end - time.monotonic()
            if wait is None or left <= 0:
                continue
            try:
                wait(Duration(nanoseconds=int(left * 1e9)))
            except Exception:  # noqa: BLE001 - a publisher whose rmw cannot tell: nothing to wait for
                pass

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

    def _stream(self) -> Iterator[BagMessage]:
        for i, m in enumerate(iter_messages(self.bag, self.topics)):
            if self.positions is None or i in self.positions:
                yield m

    def _play_once(self) -> None:
        t0 = wall0 = None
        for m in self._stream():
            if self._stop.is_set():
                return
            if t0 is None:
                t0, wall0 = m.time_ns, time.monotonic()
                self._publish_clock(t0)
            self._sleep_until(wall0 + (m.time_ns - t0) * 1e-9 / self.rate, t0, wall0)
            if self._stop.is_set():
                return
            self._publish_clock(m.time_ns)
            pub = self.publishers.get(m.topic)
            if pub is None:
                self.skipped[m.topic] = self.skipped.get(m.topic, 0) + 1
                continue
            pub.publish(m.data)  # serialized CDR, exactly as recorded
            self.published += 1
            self.by_topic[m.topic] = self.by_topic.get(m.topic, 0) + 1
            if self.on_message is not None:
                self.on_message(m)

    def summary(self) -> str:
        """What was played and what was not: messages published per topic, skipped (and why)."""
        played = ", ".join(f"{n} on {t}" for t, n in self.by_topic.items()) or "none"
        text = f"published {self.published} messages ({played})"
        if self.skipped:
            text += "; skipped (type not importable: build/source its package): " + \
                ", ".join(f"{n} on {t}" for t, n in self.skipped.items())
        return text


#: the variables naming a Fast DDS XML profile: Fast DDS 3 (Jazzy, Kilted) reads the first, 2.x (Humble) the second
PROFILE_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")


def shipped_profile() -> Optional[Path]:
    """The package's shared-memory Fast DDS profile (``config/fastdds_shm.xml``): source tree or install."""
    import os

    here = Path(__file__).resolve().parents[2] / "config" / "fastdds_shm.xml"
    prefixes = [Path(p) / "share" / "stvg_ros" for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    return next((c for c in [here] + [p / "config" / "fastdds_shm.xml" for p in prefixes] if c.is_file()), None)


def choose_profile(choice: str) -> str:
    """Select the player's Fast DDS profile (before rclpy starts); returns what was chosen, for the log.

    ``shm`` (default): the shipped shared-memory profile, unless a profile is already set in the
    environment: a large raw frame then reaches a node on this host whole (with Fast DDS' default
    transport most 768x576 frames are lost in fragments on the way to a best-effort subscription);
    other hosts and processes without the profile still get the frames over UDP.  ``none``: Fast DDS'
    defaults.  Anything else: the path of your own profile."""
    import os

    if choice == "none":
        return "Fast DDS defaults"
    if choice == "shm":
        if any(os.environ.get(v) for v in PROFILE_VARS):
            return f"the profile in the environment ({os.environ.get(PROFILE_VARS[0]) or os.environ[PROFILE_VARS[1]]})"
        path = shipped_profile()
        if path is None:
            return "Fast DDS defaults (the shipped config/fastdds_shm.xml was not found)"
    else:
        path = Path(choice)
        if not path.is_file():
            raise FileNotFoundError(f"--profile {choice}: no such file (use shm, none or a Fast DDS XML file)")
    major = fastdds_major()  # 3 warns about the older name, 2 reads only the older one
    for v in (PROFILE_VARS[:1] if major == 3 else PROFILE_VARS[1:] if major == 2 else PROFILE_VARS):
        os.environ[v] = str(path)
    return str(path)


def fastdds_major() -> int:
    """Fast DDS' major version: 3 from Kilted on, 2 up to Jazzy; 0 when unknown."""
    import importlib.metadata
    import os

    distro = os.environ.get("ROS_DISTRO", "")
    if distro:
        return 2 if distro in ("humble", "iron", "jazzy") else 3
    for dist in ("ros-fastdds", "ros-fastrtps"):  # the PyPI wheels (this venv: Kilted, .venv-jazzy: Jazzy)
        try:
            return int(importlib.metadata.version(dist).split(".")[0])
        except (importlib.metadata.PackageNotFoundError, ValueError):
            continue
    return 0


def parse_remaps(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for r in items:
        if ":=" not in r:
            raise ValueError(f"invalid remap {r!r}: use /from:=/to")
        a, b = r.split(":=", 1)
        out[a] = b
    return out


def split_ros_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(the player's own arguments, the ``--ros-args ... [--]`` sections for ``rclpy.init``).

    Only ROS arguments go to rcl: our ``--remap /a:=/b`` values would otherwise be read by rcl as
    deprecated remapping rules (and warned about)."""
    own, ros, in_ros = [], [], False
    for a in argv:
        if a == "--ros-args":
            in_ros = True
            ros.append(a)
        elif a == "--" and in_ros:
            in_ros = False
            ros.append(a)
        elif in_ros:
            ros.append(a)
        else:
            own.append(a)
    return own, ros


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="stvg-play-bag", description=__doc__.split("\n\n")[0],
                                 epilog="ROS arguments go after --ros-args (e.g. --ros-args -r __node:=player).")
    ap.add_argument("bag")
    ap.add_argument("--rate", type=float, default=1.0, help="speed factor (2.0 = twice as fast)")
    ap.add_argument("--loop", action="store_true", help="start again at the end (until Ctrl-C)")
    ap.add_argument("--clock", type=float, nargs="?", const=40.0, default=None, metavar="HZ",
                    help="publish /clock from the bag's time, HZ times a second between messages (default 40) "
                         "and at every message, as `ros2 bag play --clock` (for use_sim_time:=true)")
    ap.add_argument("--remap", nargs="*", default=[], metavar="FROM:=TO")
    ap.add_argument("--topics", nargs="*", default=None, help="only these topics")
    ap.add_argument("--wait-for", nargs="*", default=None, metavar="TOPIC",
                    help="topics (bag or remapped names) that must have a subscriber before playing; "
                         "default: every played topic")
    ap.add_argument("--profile", default="shm", metavar="shm|none|PATH",
                    help="Fast DDS profile of the player: shm (default) = the shipped shared-memory profile, so "
                         "large raw frames reach a node on this host whole (unless a profile is set in the "
                         "environment already); none = Fast DDS defaults; or the path of your XML profile")
    ap.add_argument("--wait-timeout", type=float, default=5.0, metavar="S",
                    help="seconds to wait for those subscribers; then play anyway, with a warning (0: no wait)")
    return ap


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``stvg-play-bag BAG [--rate R] [--loop] [--clock [HZ]] [--remap /a:=/b ...] [--topics ...]
    [--wait-for ...] [--wait-timeout S] [--ros-args ...]``."""
    own, ros_args = split_ros_args(list(sys.argv[1:] if argv is None else argv))
    a = build_parser().parse_args(own)
    if a.clock is not None and a.clock <= 0:
        print(f"stvg-play-bag: invalid --clock {a.clock}: use a positive rate in Hz", file=sys.stderr)
        return 2
    try:
        profile = choose_profile(a.profile)
    except FileNotFoundError as e:
        print(f"stvg-play-bag: {e}", file=sys.stderr)
        return 2
    import rclpy

    try:  # our own handlers: rclpy's would invalidate the context while a message is being published
        from rclpy.signals import SignalHandlerOptions

        rclpy.init(args=["stvg-play-bag", *ros_args], signal_handler_options=SignalHandlerOptions.NO)
    except (ImportError, TypeError):
        rclpy.init(args=["stvg-play-bag", *ros_args])
    interrupted: list[str] = []
    player: Optional[BagPlayer] = None

    def on_signal(signum, _frame) -> None:
        interrupted.append(signal.Signals(signum).name)
        if player is not None:
            player.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    node = rclpy.create_node("stvg_bag_player")
    log = node.get_logger()
    try:
        player = BagPlayer(node, a.bag, rate=a.rate, loop=a.loop, clock=a.clock is not None,
                           clock_hz=a.clock or 40.0, remap=parse_remaps(a.remap), topics=a.topics)
        log.info(f"playing {player.total} messages of {a.bag}; transport profile: {profile}")
        if interrupted:
            player.stop()
        missing = player.wait_for_subscribers(a.wait_timeout, a.wait_for)
        if missing and a.wait_timeout > 0 and not interrupted:
            log.warning(
                f"no subscriber on {', '.join(missing)} after {a.wait_timeout:g} s: playing anyway (start the "
                f"subscribing node first, raise --wait-timeout, or choose the topics with --wait-for / --topics)")
        if not interrupted:
            player.play()
            player.flush()
        stopped = f"stopped by {interrupted[0]}; " if interrupted else ""
        log.info(f"{stopped}{player.summary()} from {a.bag}")
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
