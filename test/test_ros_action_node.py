"""The real node's ``ground`` action and ``tube_markers`` over DDS (the installed stvg_node in a
subprocess, the shipped default model): goal → feedback per stage → result Tube (also on ``tube``,
drawn on ``tube_markers``); cancel while queued; a goal in flight at deactivate, a goal while
inactive, a goal in flight at SIGINT: each gets exactly one result with the Tube's reason.
The tests run in file order on one node.  The round-trip time is printed (run with -s)."""

from __future__ import annotations

import threading
import time

import pytest

from ros_harness import Client, NodeProcess, image_msg, require_ros, unique_namespace, wait_for, wait_ready

pytestmark = pytest.mark.ros

TIMEOUT = 60.0
T0, DT = 1_000_000_000_000, 100_000_000


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    require_ros()
    from rclpy.action import ActionClient
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from visualization_msgs.msg import ImageMarker

    from stvg_ros.action import Ground
    from stvg_ros.msg import GroundingQuery, Status, Tube

    # LRA with 64 steps: a grounding of seconds on CPU (8 steps took 0.5 s on CI), so a second request is
    # reliably queued behind it and a deactivate or a signal reliably lands mid-grounding
    proc = NodeProcess(unique_namespace(), {"device": "cpu", "window_rate": 0.0, "status_rate": 20.0,
                                            "image_depth": 50, "lra_steps": 64, "query_queue_size": 4},
                       tmp_path_factory.mktemp("action") / "node.log")
    client = Client(namespace=proc.namespace)
    try:
        client.tubes = client.collect(Tube, "tube", 50)
        client.markers = client.collect(ImageMarker, "tube_markers", 50)
        client.status = client.collect(Status, "status", 10)
        client.ask = client.node.create_publisher(GroundingQuery, "query_request", 10)
        client.action = ActionClient(client.node, Ground, "ground")
        cam = client.node.create_publisher(Image, "image", qos_profile_sensor_data)
        wait_ready(client.status, (cam, client.ask), proc, what="subscriptions")
        assert client.action.wait_for_server(timeout_sec=20), "the ground action server was not discovered"
        for i in range(24):
            cam.publish(image_msg(T0 + i * DT, 112, 112, seed=i))
            time.sleep(0.01)
        wait_for(lambda: client.status[-1].window_frames >= 20, 20, "frames in the window", proc)
        yield proc, client
    finally:
        client.close()
        if proc.alive():
            proc.stop()


def _done(future, timeout=TIMEOUT):
    event = threading.Event()
    future.add_done_callback(lambda _f: event.set())
    assert event.wait(timeout), "no answer from the node's action server"
    return future.result()


def _send(client, text, feedback, goal_id=""):
    from stvg_ros.action import Ground

    goal = Ground.Goal(id=goal_id, text=text)
    handle = _done(client.action.send_goal_async(goal, feedback_callback=lambda m: feedback.append(m.feedback)))
    assert handle.accepted, "every goal is accepted (a refusal is its result, with the reason)"
    return handle


def _change(client, proc, transition_id):
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    req = ChangeState.Request()
    req.transition = Transition(id=transition_id)
    assert client.call(ChangeState, f"{proc.name}/change_state", req, timeout=30).success


def test_goal_feedback_result_tube_and_markers(node):
    from action_msgs.msg import GoalStatus

    from stvg_ros.ros.convert import stamp_to_ns

    proc, client = node
    feedback: list = []
    t0 = time.monotonic()
    handle = _send(client, "the red square", feedback, "g1")
    answer = _done(handle.get_result_async())
    round_trip = time.monotonic() - t0
    assert answer.status == GoalStatus.STATUS_SUCCEEDED, answer.result.tube.reason
    tube = answer.result.tube
    assert tube.query_id == "g1" and tube.query == "the red square" and tube.reason == "" and tube.boxes
    print(f"\nground action round trip: {round_trip:.2f} s (node latency {tube.latency:.2f} s)")
    wait_for(lambda: feedback and feedback[-1].stage == "select", 5, "the select feedback", proc)
    stages = [f.stage for f in feedback]
    order = ["queued", "encode", "decompose", "lra", "attention", "select"]
    assert stages[0] == "queued" and "encode" in stages and "lra" in stages, stages
    assert stages == sorted(stages, key=order.index) and len(set(stages)) == len(stages), stages
    elapsed = [f.elapsed for f in feedback]
    assert elapsed == sorted(elapsed) and 0.0 <= elapsed[-1] <= tube.latency + 0.01
    # the action's answer is also the query's one Tube on `tube`, and is drawn on `tube_markers`
    on_topic = wait_for(lambda: [t for t in client.tubes if t.query_id == "g1"], 10, "g1 on tube", proc)
    assert len(on_topic) == 1 and on_topic[0].boxes == tube.boxes
    marker = wait_for(lambda: next((m for m in client.markers if m.action == m.ADD), None), 10, "a marker", proc)
    newest = max(tube.boxes, key=lambda b: stamp_to_ns(b.stamp))
    assert marker.header.frame_id == tube.header.frame_id == "test_cam"
    assert stamp_to_ns(marker.header.stamp) == stamp_to_ns(newest.stamp)
    x0, y0 = newest.center_x - newest.size_x / 2, newest.center_y - newest.size_y / 2
    assert marker.type == marker.POLYGON and len(marker.points) == 4
    assert marker.points[0].x == pytest.approx(x0) and marker.points[0].y == pytest.approx(y0)
    assert marker.points[2].x == pytest.approx(x0 + newest.size_x)


def test_cancel_while_queued(node):
    from action_msgs.msg import GoalStatus

    from stvg_ros.msg import GroundingQuery
    from stvg_ros.ros.action_server import CANCELED_BY_CLIENT

    proc, client = node
    client.ask.publish(GroundingQuery(id="long", text="the red square"))  # the worker is busy with it
    wait_for(lambda: client.status[-1].queries_received >= 2, 10, "the topic query", proc, step=0.005)
    feedback: list = []
    handle = _send(client, "the blue circle", feedback)
    wait_for(lambda: feedback, 10, "the queued feedback", proc)
    cancel = _done(handle.cancel_goal_async())
    assert len(cancel.goals_canceling) == 1
    answer = _done(handle.get_result_async())
    assert answer.status == GoalStatus.STATUS_CANCELED
    assert answer.result.tube.reason == CANCELED_BY_CLIENT and not answer.result.tube.found
    assert [f.stage for f in feedback] == ["queued"]
    long = wait_for(lambda: [t for t in client.tubes if t.query_id == "long"], TIMEOUT, "the long query's Tube",
                    proc)
    assert long[0].reason == "", "cancelling the goal left the query ahead of it alone"


def test_deactivate_answers_the_goal_in_flight_then_goals_are_refused(node):
    from action_msgs.msg import GoalStatus
    from lifecycle_msgs.msg import Transition

    proc, client = node
    feedback: list = []
    handle = _send(client, "the red square", feedback, "inflight")
    wait_for(lambda: any(f.stage != "queued" for f in feedback), 20, "the goal to be grounding", proc, step=0.005)
    _change(client, proc, Transition.TRANSITION_DEACTIVATE)
    answer = _done(handle.get_result_async())
    assert answer.status == GoalStatus.STATUS_ABORTED
    assert answer.result.tube.reason == "the node was deactivated"
    # delivered on `tube` before the lifecycle publishers went quiet
    wait_for(lambda: [t for t in client.tubes if t.query_id == "inflight"], 10, "the in-flight Tube on tube", proc)
    late = _done(_send(client, "the red square", [], "late").get_result_async())
    assert late.status == GoalStatus.STATUS_ABORTED
    assert "inactive" in late.result.tube.reason and "activate" in late.result.tube.reason
    time.sleep(0.3)
    assert not [t for t in client.tubes if t.query_id == "late"], "inactive: nothing on tube"
    _change(client, proc, Transition.TRANSITION_ACTIVATE)


def test_sigint_answers_the_goal_in_flight(node):
    from action_msgs.msg import GoalStatus

    proc, client = node
    wait_for(lambda: client.status[-1].state == "active", 10, "the node to be active again", proc)
    feedback: list = []
    handle = _send(client, "the red square", feedback, "at_exit")
    result = handle.get_result_async()
    wait_for(lambda: any(f.stage != "queued" for f in feedback), 20, "the goal to be grounding", proc, step=0.005)
    rc, seconds = proc.stop(timeout=15)
    answer = _done(result, 5)
    assert answer.status == GoalStatus.STATUS_ABORTED and answer.result.tube.reason == "the node is shutting down"
    assert rc == 0 and seconds < 4.0, (seconds, proc.log()[-3000:])
    assert "Traceback" not in proc.log()
