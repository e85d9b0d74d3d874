"""Monitoring that never goes dark (the installed node over DDS): ``status`` and ``/diagnostics`` are
published on wall time in every lifecycle state, with ``use_sim_time`` and no ``/clock`` at all (a bag
not yet playing, paused or ended); a failed configure is an ERROR with the reason and the fix (and the
reason of refused goals); a healthy node is OK; lost frames are summarised in ``last_warning``."""

from __future__ import annotations

import threading
import time

import pytest

from ros_harness import Client, NodeProcess, image_msg, require_ros, unique_namespace, wait_for

pytestmark = pytest.mark.ros


def _diag(client, name_part: str) -> list:
    from diagnostic_msgs.msg import DiagnosticArray

    box: list = []
    client.node.create_subscription(
        DiagnosticArray, "/diagnostics",
        lambda m: box.extend(s for s in m.status if name_part in s.name), 50)
    return box


def _change(client, node: str, transition_id: int) -> bool:
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    req = ChangeState.Request()
    req.transition = Transition(id=transition_id)
    return client.call(ChangeState, f"{node}/change_state", req, timeout=90).success


def test_status_and_diagnostics_on_wall_time_in_every_state(tmp_path):
    """Sim time with no clock: unconfigured WARN, then active and OK with frames (a model of one's own),
    then WARN when frames stop for ``frame_timeout`` (which needs a timer that runs without /clock)."""
    require_ros()
    from diagnostic_msgs.msg import DiagnosticStatus
    from lifecycle_msgs.msg import Transition
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from stvg_ros.adapters.default_model import shipped_model_dir
    from stvg_ros.msg import Status

    model = shipped_model_dir()
    assert model is not None, "the shipped synthetic model is part of the package"
    proc = NodeProcess(unique_namespace(), {"model_path": str(model), "device": "cpu", "autostart": False,
                                            "use_sim_time": True, "status_rate": 5.0, "frame_timeout": 1.5,
                                            "image_reliability": "reliable", "window_rate": 0.0,
                                            "use_compressed": True},
                       tmp_path / "node.log")
    client = Client(namespace=proc.namespace)
    stop = threading.Event()
    try:
        status = client.collect(Status, "status", 10)
        diag = _diag(client, proc.name)
        first = wait_for(lambda: status and status[-1], 30, "status while unconfigured (no /clock)", proc)
        assert first.state == "unconfigured"
        d = wait_for(lambda: diag and diag[-1], 10, "/diagnostics while unconfigured", proc)
        assert d.level == DiagnosticStatus.WARN and "unconfigured" in d.message
        assert _change(client, proc.name, Transition.TRANSITION_CONFIGURE)
        wait_for(lambda: status[-1].state == "inactive", 10, "status while inactive", proc)
        assert _change(client, proc.name, Transition.TRANSITION_ACTIVATE)
        cam = client.node.create_publisher(Image, "image", QoSProfile(depth=10,
                                                                      reliability=ReliabilityPolicy.RELIABLE))
        wait_for(lambda: cam.get_subscription_count(), 20, "the image subscription", proc)

        def stream():
            i = 0
            while not stop.is_set():
                cam.publish(image_msg(1_000_000_000_000 + i * 100_000_000, seed=i))
                i += 1
                time.sleep(0.1)

        threading.Thread(target=stream, daemon=True).start()
        ok = wait_for(lambda: diag and diag[-1].level == DiagnosticStatus.OK and diag[-1], 20,
                      "/diagnostics OK while active with frames", proc)
        assert "window" in ok.message
        stop.set()
        late = wait_for(lambda: diag[-1].level == DiagnosticStatus.WARN and diag[-1], 10,
                        "the frame_timeout warning without /clock", proc)
        assert "no frame for" in late.message
        # the log: the active line names every image topic; no weight-loading progress bar
        assert f"active: listening on {proc.namespace}/image and {proc.namespace}/image/compressed" in proc.log()
        assert "Loading weights" not in proc.log() and "it/s]" not in proc.log()
    finally:
        stop.set()
        client.close()
        if proc.alive():
            proc.stop()


def test_failed_configure_is_an_error_with_the_reason_and_the_fix(tmp_path):
    require_ros()
    from action_msgs.msg import GoalStatus
    from diagnostic_msgs.msg import DiagnosticStatus
    from rclpy.action import ActionClient

    from stvg_ros.action import Ground
    from stvg_ros.msg import Status

    proc = NodeProcess(unique_namespace(), {"model_path": str(tmp_path / "nonexistent"), "status_rate": 5.0},
                       tmp_path / "node.log")
    client = Client(namespace=proc.namespace)
    try:
        status = client.collect(Status, "status", 10)
        diag = _diag(client, proc.name)
        d = wait_for(lambda: diag and diag[-1].level == DiagnosticStatus.ERROR and diag[-1], 60,
                     "an ERROR on /diagnostics after the failed configure", proc)
        assert "configure failed" in d.message and "not a directory" in d.message
        assert "configure again" in d.message and "model_path" in d.message  # the fix
        s = wait_for(lambda: status and status[-1], 10, "status after the failed configure", proc)
        assert s.state == "unconfigured" and "configure failed" in s.last_warning
        action = ActionClient(client.node, Ground, "ground")
        assert action.wait_for_server(timeout_sec=20)
        done = threading.Event()
        fut = action.send_goal_async(Ground.Goal(text="the red car"))
        fut.add_done_callback(lambda _f: done.set())
        assert done.wait(20) and fut.result().accepted
        res_fut = fut.result().get_result_async()
        done.clear()
        res_fut.add_done_callback(lambda _f: done.set())
        assert done.wait(20)
        res = res_fut.result()
        assert res.status == GoalStatus.STATUS_ABORTED
        assert "not a directory" in res.result.tube.reason, "the goal says why the node is unconfigured"
    finally:
        client.close()
        rc, _ = proc.stop()
    assert rc == 0


def test_loss_summary_one_line_per_interval():
    require_ros()
    from stvg_ros.ros.status import LossSummary

    now = [0.0]
    s = LossSummary(period=10.0, clock=lambda: now[0])
    first = s.add("/cam/image", 3)
    assert first and first.startswith("3 frame(s) lost on /cam/image") and "(3 since start)" in first
    lines = []
    for k in range(1, 100):  # a burst every 0.2 s for 20 s
        now[0] = 0.2 * k
        lines += [line for line in [s.add("/cam/image", 2)] if line] + s.due()
    assert len(lines) == 1, lines  # at 10 s; the one due at 20 s comes with the next tick
    assert "in the last 10 s" in lines[0] and "(103 since start)" in lines[0]
    now[0] = 20.0
    (late,) = s.due()
    assert "(201 since start)" in late
    assert s.due() == []
