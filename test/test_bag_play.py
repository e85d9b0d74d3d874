"""Playing a bag into a live rclpy graph: every message arrives, with its bytes, stamps, the
recorded timing divided by the rate; /clock follows the bag's time when asked for (opt-in); the
player waits for its subscribers instead of publishing into the void."""

import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python client) is not installed")
pytest.importorskip("sensor_msgs.msg", reason="sensor_msgs Python messages are not installed")
pytest.importorskip("rosgraph_msgs.msg", reason="rosgraph_msgs (for /clock) is not installed")

from stvg_ros.evaluation import bags  # noqa: E402

pytestmark = pytest.mark.ros

FPS = 10.0
N = 8


@pytest.fixture
def raw_bag(tmp_path):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (12, 16, 3), dtype=np.uint8) for _ in range(N)]
    stamps = [bags.DEFAULT_START_TIME + i / FPS for i in range(N)]
    path = bags.write_bag(tmp_path / "raw", frames, stamps, image_format="raw", storage="mcap")
    return path, frames, stamps


@pytest.fixture
def ros_context(monkeypatch):
    import os

    from rclpy.context import Context

    # A private DDS domain: other test runs on this machine must not see our frames or /clock.
    monkeypatch.setenv("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

    ctx = Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.try_shutdown(context=ctx)


def _spin_in_thread(node, ctx):
    from rclpy.executors import SingleThreadedExecutor

    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ex.spin_once(timeout_sec=0.01)

    t = threading.Thread(target=spin, daemon=True)
    t.start()
    return stop, t, ex


def _wait_for_match(pub_node, topic, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pub_node.count_subscribers(topic) > 0:
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("rate", [1.0, 2.0])
def test_play_timing_bytes_and_clock(raw_bag, ros_context, rate):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image

    from stvg_ros.ros.bag_player import BagPlayer

    path, frames, stamps = raw_bag
    sub_node = rclpy.create_node("test_sub", context=ros_context)
    pub_node = rclpy.create_node("test_player", context=ros_context)
    got, clocks = [], []
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    sub_node.create_subscription(Image, "/test/image", lambda m: got.append((time.monotonic(), m)), qos)
    sub_node.create_subscription(Clock, "/clock", lambda m: clocks.append(m.clock.sec * 10**9 + m.clock.nanosec),
                                 QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    stop, thread, ex = _spin_in_thread(sub_node, ros_context)
    try:
        player = BagPlayer(pub_node, path, rate=rate, clock=True, remap={"/camera/image_raw": "/test/image"})
        assert player.wait_for_subscribers(5.0) == []
        assert _wait_for_match(pub_node, "/clock")
        t0 = time.monotonic()
        assert player.play() == N
        wall = time.monotonic() - t0
        deadline = time.monotonic() + 3.0
        while len(got) < N and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join(2)
        ex.shutdown()
        sub_node.destroy_node()
        pub_node.destroy_node()

    assert len(got) == N
    for (_, msg), frame, stamp in zip(got, frames, stamps):
        assert bytes(msg.data) == frame.tobytes()
        assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == round(stamp * 1e9)
    expected = (stamps[-1] - stamps[0]) / rate
    assert expected * 0.9 <= wall <= expected + 0.5
    arrivals = np.array([t for t, _ in got])
    # Recorded spacing divided by the rate, measured at the subscriber (loose: a shared CI machine).
    assert abs((arrivals[-1] - arrivals[0]) - expected) < 0.25
    spacing = (1 / FPS) / rate
    assert abs(float(np.median(np.diff(arrivals))) - spacing) < 0.5 * spacing  # median: robust to a starved CPU
    # /clock follows the bag's time: monotonic, from the first to the last stamp, published between messages.
    assert clocks and clocks == sorted(clocks)
    assert clocks[0] == round(stamps[0] * 1e9) and clocks[-1] == round(stamps[-1] * 1e9)
    assert len(clocks) > N


def test_loop_and_stop(raw_bag, ros_context):
    from stvg_ros.ros.bag_player import BagPlayer

    path, _, _ = raw_bag
    node = rclpy.create_node("test_loop", context=ros_context)
    try:
        seen = []
        player = BagPlayer(node, path, rate=8.0, loop=True, clock=False, on_message=lambda m: seen.append(m.time_ns))
        timer = threading.Timer(0.4, player.stop)  # one pass takes 0.7/8 s: several loops happen
        timer.start()
        player.play()
        timer.join()
    finally:
        node.destroy_node()
    assert len(seen) > 2 * N
    # Every pass replays the bag from its start: time goes back once per loop.
    assert sum(1 for a, b in zip(seen, seen[1:]) if b < a) >= 2


def test_bad_rate(raw_bag, ros_context):
    from stvg_ros.ros.bag_player import BagPlayer

    node = rclpy.create_node("test_bad", context=ros_context)
    try:
        with pytest.raises(ValueError, match="rate"):
            BagPlayer(node, raw_bag[0], rate=0)
    finally:
        node.destroy_node()


def test_clock_is_opt_in(raw_bag, ros_context):
    from stvg_ros.ros.bag_player import BagPlayer

    node = rclpy.create_node("test_no_clock", context=ros_context)
    try:
        player = BagPlayer(node, raw_bag[0], rate=8.0)
        assert player.clock_pub is None and player.clock_period is None
        assert "/clock" not in [name for name, _ in node.get_publisher_names_and_types_by_node(
            "test_no_clock", "/")]
    finally:
        node.destroy_node()


def test_waits_for_a_late_subscriber_and_loses_nothing(raw_bag, ros_context):
    """The subscriber appears 0.7 s after the player is ready: playing starts only then, and every
    message arrives (a fixed sleep lost the first frames when the subscriber was slower)."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from stvg_ros.ros.bag_player import BagPlayer

    path, frames, _ = raw_bag
    pub_node = rclpy.create_node("test_late_player", context=ros_context)
    sub_node = rclpy.create_node("test_late_sub", context=ros_context)
    got = []
    stop, thread, ex = _spin_in_thread(sub_node, ros_context)

    def subscribe_later():
        time.sleep(0.7)
        sub_node.create_subscription(Image, "/late/image", got.append,
                                     QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))

    late = threading.Thread(target=subscribe_later)
    try:
        player = BagPlayer(pub_node, path, rate=4.0, remap={"/camera/image_raw": "/late/image"})
        assert player.wait_for_subscribers(0.2) == ["/late/image"]  # nobody yet: named in the answer
        with pytest.raises(ValueError, match="not played"):
            player.unmatched(["/no/such/topic"])
        t0 = time.monotonic()
        late.start()
        assert player.wait_for_subscribers(10.0) == []
        assert time.monotonic() - t0 >= 0.6
        assert player.play() == N
        deadline = time.monotonic() + 3.0
        while len(got) < N and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        late.join()
        stop.set()
        thread.join(2)
        ex.shutdown()
        sub_node.destroy_node()
        pub_node.destroy_node()
    assert [bytes(m.data) for m in got] == [f.tobytes() for f in frames]


def test_split_ros_args():
    from stvg_ros.ros.bag_player import split_ros_args

    own, ros = split_ros_args(["bag", "--remap", "/a:=/b", "--ros-args", "-r", "__node:=p", "--", "--loop"])
    assert own == ["bag", "--remap", "/a:=/b", "--loop"]
    assert ros == ["--ros-args", "-r", "__node:=p", "--"]
    assert split_ros_args(["bag"]) == (["bag"], [])


def _cli(args, timeout=120):
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "stvg_ros.ros.bag_player", *args], capture_output=True, text=True,
                          timeout=timeout, env=os.environ.copy())


def test_command_line(raw_bag, ros_context, monkeypatch):
    """The CLI waits for the subscriber, plays every message, publishes no /clock unless --clock,
    and rcl sees only ROS arguments (no 'deprecated' remap warning for our --remap)."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image

    sub_node = rclpy.create_node("test_cli_sub", context=ros_context)
    got, clocks = [], []
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    sub_node.create_subscription(Image, "/cli/image", got.append, qos)
    sub_node.create_subscription(Clock, "/clock", clocks.append, qos)
    stop, thread, ex = _spin_in_thread(sub_node, ros_context)
    try:
        r = _cli([str(raw_bag[0]), "--rate", "8", "--remap", "/camera/image_raw:=/cli/image", "--wait-timeout", "20",
                  "--ros-args", "-r", "__node:=cli_player"])
        assert r.returncode == 0, r.stderr
        out = r.stdout + r.stderr
        assert f"published {N} messages" in out and "cli_player" in out
        assert "deprecated" not in out and "no subscriber" not in out
        deadline = time.monotonic() + 3.0
        while len(got) < N and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(got) == N and not clocks
        r = _cli([str(raw_bag[0]), "--rate", "8", "--remap", "/camera/image_raw:=/cli/image", "--clock"])
        assert r.returncode == 0, r.stderr
        deadline = time.monotonic() + 3.0
        while not clocks and time.monotonic() < deadline:
            time.sleep(0.02)
        assert clocks, "--clock publishes /clock"
    finally:
        stop.set()
        thread.join(2)
        ex.shutdown()
        sub_node.destroy_node()


def test_command_line_without_subscriber_and_bad_input(raw_bag, monkeypatch):
    import os

    monkeypatch.setenv("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    r = _cli([str(raw_bag[0]), "--rate", "8", "--remap", "/camera/image_raw:=/nobody/listens", "--wait-timeout", "0.3"])
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    assert "no subscriber on /nobody/listens after 0.3 s: playing anyway" in out
    assert f"published {N} messages" in out
    bad = _cli([str(raw_bag[0]), "--rate", "0"])
    assert bad.returncode == 2 and "rate" in bad.stderr
    bad = _cli([str(raw_bag[0]), "--clock", "0"])
    assert bad.returncode == 2 and "--clock" in bad.stderr
    bad = _cli([str(raw_bag[0]), "--wait-for", "/not/in/bag"])
    assert bad.returncode == 2 and "not played" in bad.stderr


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_ctrl_c_and_sigterm_stop_the_player_cleanly(raw_bag, monkeypatch, tmp_path, sig):
    """Ctrl-C (or a SIGTERM from a launch file) while a looping player publishes: exit code 0, no
    traceback ("publisher's context is invalid" before), and a last line saying what was published."""
    import os
    import signal
    import subprocess
    import sys

    monkeypatch.setenv("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    log = tmp_path / "player.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "stvg_ros.ros.bag_player", str(raw_bag[0]), "--loop",
                                 "--rate", "20", "--wait-timeout", "0"], stdout=out, stderr=subprocess.STDOUT,
                                env=os.environ.copy())
        try:
            deadline = time.monotonic() + 60
            while "playing" not in log.read_text() and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
            time.sleep(0.5)  # mid-play: a loop of the 8-frame bag takes 35 ms at rate 20
            proc.send_signal(getattr(signal, sig))
            rc = proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text()
    assert rc == 0, text
    assert "Traceback" not in text and "context is invalid" not in text
    assert f"stopped by {sig}; published " in text and f"on /camera/image_raw" in text


def test_player_streams_the_bag(raw_bag, ros_context):
    """The player holds no list of the bag's messages: each pass reads them from the file as they are due
    (its memory does not grow with the bag; figures: bench/bench_bag_replay.py)."""
    from stvg_ros.ros import bag_player
    from stvg_ros.ros.bag_player import BagPlayer

    node = rclpy.create_node("test_stream", context=ros_context)
    reads = []
    real = bag_player.iter_messages

    def counting(path, topics=None):
        for m in real(path, topics):
            reads.append(m.time_ns)
            yield m

    try:
        bag_player.iter_messages = counting
        published = []
        player = BagPlayer(node, raw_bag[0], rate=50.0, on_message=lambda m: published.append(len(reads)))
        assert not hasattr(player, "messages") and player.total == N and reads == []
        player.play()
    finally:
        bag_player.iter_messages = real
        node.destroy_node()
    assert published == list(range(1, N + 1)), "message k is published when k messages have been read"
