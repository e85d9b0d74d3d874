"""The ``ground`` action keeps its promises (the installed node over DDS, the shipped model, 20 real
768x576 frames of ``test/data/real/vtest.avi``, where ``select``'s segmentation is most of a goal's
time): a cancel accepted during ``select`` ends the goal *canceled*, soon; a finished goal's result
can still be fetched after rclpy's default ``result_timeout`` (10 s).  Latencies print with -s."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from ros_harness import Client, NodeProcess, require_ros, unique_namespace, wait_for, wait_ready

pytestmark = pytest.mark.ros

CLIP = Path(__file__).parent / "data" / "real" / "vtest.avi"
T0, DT = 1_000_000_000_000, 100_000_000


def _frames(n: int) -> list:
    import cv2

    cap = cv2.VideoCapture(str(CLIP))
    out = []
    while len(out) < n:
        ok, bgr = cap.read()
        assert ok, f"{CLIP} has fewer than {n} frames"
        out.append(bgr)
    return out


def _done(future, timeout=60.0):
    event = threading.Event()
    future.add_done_callback(lambda _f: event.set())
    assert event.wait(timeout), "no answer from the node's action server"
    return future.result()


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    require_ros()
    from rclpy.action import ActionClient
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from stvg_ros.action import Ground
    from stvg_ros.msg import Status
    from stvg_ros.ros.convert import ns_to_stamp

    proc = NodeProcess(unique_namespace(), {"device": "cpu", "window_rate": 0.0, "status_rate": 10.0,
                                            "image_reliability": "reliable", "image_depth": 30},
                       tmp_path_factory.mktemp("promises") / "node.log")
    client = Client(namespace=proc.namespace)
    try:
        client.status = client.collect(Status, "status", 10)
        client.action = ActionClient(client.node, Ground, "ground")
        cam = client.node.create_publisher(Image, "image", QoSProfile(depth=30,
                                                                      reliability=ReliabilityPolicy.RELIABLE))
        wait_ready(client.status, (cam,), proc, what="the image subscription")
        assert client.action.wait_for_server(timeout_sec=20)
        for i, bgr in enumerate(_frames(20)):
            msg = Image(height=bgr.shape[0], width=bgr.shape[1], encoding="bgr8", step=bgr.shape[1] * 3,
                        data=bgr.tobytes())
            msg.header.stamp, msg.header.frame_id = ns_to_stamp(T0 + i * DT), "cam"
            cam.publish(msg)
            time.sleep(0.02)
        wait_for(lambda: client.status[-1].window_frames >= 20, 30, "20 frames in the window", proc)
        yield proc, client
    finally:
        client.close()
        if proc.alive():
            proc.stop()


def _send(client, text: str, feedback: list, goal_id: str = ""):
    from stvg_ros.action import Ground

    handle = _done(client.action.send_goal_async(Ground.Goal(id=goal_id, text=text),
                                                 feedback_callback=lambda m: feedback.append(m.feedback)))
    assert handle.accepted
    return handle


def test_cancel_during_select_is_honoured(node):
    from action_msgs.msg import GoalStatus

    from stvg_ros.ros.action_server import CANCELED_BY_CLIENT

    proc, client = node
    feedback: list = []
    handle = _send(client, "the man in a dark coat", feedback, "sel")
    result = handle.get_result_async()
    wait_for(lambda: any(f.stage == "select" for f in feedback), 60, "the select stage", proc, step=0.005)
    t0 = time.monotonic()
    cancel = _done(handle.cancel_goal_async())
    assert len(cancel.goals_canceling) == 1, "the cancel is accepted"
    answer = _done(result)
    latency = time.monotonic() - t0
    print(f"\ncancel in select: result {answer.status} {latency:.2f} s after the cancel request")
    assert answer.status == GoalStatus.STATUS_CANCELED, (answer.status, answer.result.tube.reason)
    assert answer.result.tube.reason == CANCELED_BY_CLIENT and not answer.result.tube.boxes


def test_result_retrievable_after_rclpy_default_timeout(node):
    from action_msgs.msg import GoalStatus

    proc, client = node
    handle = _send(client, "the man in a dark coat", [], "kept")
    first = _done(handle.get_result_async())
    assert first.status == GoalStatus.STATUS_SUCCEEDED, first.result.tube.reason
    time.sleep(12.0)  # past rclpy's default result_timeout of 10 s
    again = _done(handle.get_result_async(), 20)
    assert again.status == GoalStatus.STATUS_SUCCEEDED, "the result expired (STATUS_UNKNOWN = 0)"
    assert again.result.tube.query_id == "kept" and again.result.tube.boxes == first.result.tube.boxes


def _sourced(command: str, timeout: float = 120.0):
    """``command`` in a shell set up as README says for a venv user (the venv, then the overlay)."""
    import subprocess
    import sys

    from ros_harness import INSTALL, node_env

    setup = INSTALL.parent / "setup.bash"
    script = f"source {Path(sys.prefix) / 'bin' / 'activate'} && source {setup} && {command}"
    return subprocess.run(["bash", "-c", script], env=node_env(), capture_output=True, text=True, timeout=timeout)


def test_executables_on_path_after_the_documented_source_lines():
    require_ros()
    out = _sourced("for e in stvg_node stvg_query stvg_play_bag stvg_eval stvg_demo; do command -v $e; done")
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(out.stdout.split()) == 5, out.stdout


def test_stvg_query_prints_the_tube(node):
    """The venv user's way to ask (no ros2 CLI): ``stvg_query TEXT --wait`` prints the Tube, exit 0;
    without --wait the query goes to ``query_request`` and its Tube comes on ``tube``."""
    from stvg_ros.msg import Tube

    proc, client = node
    tubes = client.collect(Tube, "tube", 10)
    out = _sourced(f"stvg_query 'the man in a dark coat' --wait --id cli1 --namespace {proc.namespace}")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Tube 'cli1': 'the man in a dark coat'" in out.stdout and "found=" in out.stdout
    assert "t=" in out.stdout, "the boxes are printed"
    assert "select" in out.stderr, "the stages are shown as they pass"
    sent = _sourced(f"stvg_query 'the man in a dark coat' --id cli2 --namespace {proc.namespace}")
    assert sent.returncode == 0, sent.stderr
    assert f"the Tube comes on {proc.namespace}/tube" in sent.stderr
    wait_for(lambda: any(t.query_id == "cli2" for t in tubes), 60, "cli2's Tube on tube", proc)
    nobody = _sourced("stvg_query 'x' --wait --timeout 2 --namespace /nobody_here")
    assert nobody.returncode == 1 and "no ground action server at /nobody_here/ground" in nobody.stderr
