"""The Ground action over DDS: goal, feedback per stage, result (a Tube), cancel while queued.

A minimal server in the test process (its own rclpy context, so the client reaches it over DDS as
it would another process) proves the generated action types and rclpy's action transport on this
distribution: goal fields in, one feedback per stage with the elapsed time, the Tube back, and a
cancel honoured between stages.  The node's own server uses the same types.
"""

from __future__ import annotations

import threading
import time

import pytest

from ros_harness import DOMAIN_ID, Client, require_ros, unique_namespace, wait_for

pytestmark = pytest.mark.ros

TIMEOUT = 20.0


class StageServer:
    """Answers each goal as the node will: ``queued`` until released, then the grounder's stages."""

    def __init__(self, namespace: str):
        import rclpy
        from rclpy.action import ActionServer, CancelResponse
        from rclpy.callback_groups import ReentrantCallbackGroup
        from rclpy.executors import MultiThreadedExecutor

        from stvg_ros.action import Ground

        self.release = threading.Event()
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=DOMAIN_ID)
        self.node = rclpy.create_node("ground_server", namespace=namespace, context=self.context)
        F = Ground.Feedback
        self.stages = [F.STAGE_ENCODE, F.STAGE_DECOMPOSE, F.STAGE_LRA, F.STAGE_ATTENTION, F.STAGE_SELECT]
        self.server = ActionServer(self.node, Ground, "ground", self._execute,
                                   cancel_callback=lambda _goal: CancelResponse.ACCEPT,
                                   callback_group=ReentrantCallbackGroup())
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def _execute(self, goal_handle):
        from stvg_ros.action import Ground
        from stvg_ros.msg import Tube, TubeBox

        t0 = time.monotonic()
        goal = goal_handle.request
        tube = Tube(query_id=goal.id or "g1", query=goal.text)

        def feedback(stage: str) -> None:
            goal_handle.publish_feedback(Ground.Feedback(stage=stage, elapsed=time.monotonic() - t0))

        feedback(Ground.Feedback.STAGE_QUEUED)
        self.release.wait(TIMEOUT)
        for stage in self.stages:
            if goal_handle.is_cancel_requested:
                goal_handle.canceled()
                tube.reason = "canceled"
                return Ground.Result(tube=tube)
            feedback(stage)
            time.sleep(0.02)
        tube.found, tube.p_yes = True, 0.9
        tube.boxes.append(TubeBox(stamp=goal.end, center_x=5.0, center_y=6.0, size_x=2.0, size_y=3.0))
        goal_handle.succeed()
        return Ground.Result(tube=tube)

    def close(self) -> None:
        self.release.set()
        self.executor.shutdown(timeout_sec=1.0)
        self.server.destroy()
        self.node.destroy_node()
        self.context.try_shutdown()


@pytest.fixture
def action_pair():
    require_ros()
    ns = unique_namespace()
    server = StageServer(ns)
    client = Client("ground_client", ns)
    try:
        yield server, client
    finally:
        client.close()
        server.close()


def _send(server, client, goal, feedback: list):
    from rclpy.action import ActionClient

    from stvg_ros.action import Ground

    ac = ActionClient(client.node, Ground, "ground")
    assert ac.wait_for_server(timeout_sec=TIMEOUT), "the Ground action server was not discovered"
    # The client found the server; the server must also have found the client's readers, or under load
    # its goal response is dropped ("failed to send response (timeout)") and the goal is never answered.
    wait_for(lambda: server.node.count_subscribers("ground/_action/feedback") > 0, TIMEOUT,
             "the server to discover the client")
    done = threading.Event()
    fut = ac.send_goal_async(goal, feedback_callback=lambda m: feedback.append(m.feedback))
    fut.add_done_callback(lambda _f: done.set())
    assert done.wait(TIMEOUT), "the goal was not answered"
    handle = fut.result()
    assert handle.accepted
    return handle


def _wait(future):
    done = threading.Event()
    future.add_done_callback(lambda _f: done.set())
    assert done.wait(TIMEOUT), "no answer from the action server"
    return future.result()


def test_goal_feedback_and_result(action_pair):
    from action_msgs.msg import GoalStatus
    from builtin_interfaces.msg import Time

    from stvg_ros.action import Ground

    server, client = action_pair
    feedback: list = []
    goal = Ground.Goal(id="a1", text="the red square", end=Time(sec=12, nanosec=5))
    handle = _send(server, client, goal, feedback)
    server.release.set()
    answer = _wait(handle.get_result_async())
    assert answer.status == GoalStatus.STATUS_SUCCEEDED
    tube = answer.result.tube
    assert (tube.query_id, tube.query, tube.found) == ("a1", "the red square", True)
    assert len(tube.boxes) == 1 and (tube.boxes[0].stamp.sec, tube.boxes[0].stamp.nanosec) == (12, 5)
    # feedback may still be in flight when the result lands
    wait_for(lambda: len(feedback) == 6, TIMEOUT, "six feedback messages")
    assert [f.stage for f in feedback] == ["queued", "encode", "decompose", "lra", "attention", "select"]
    elapsed = [f.elapsed for f in feedback]
    assert elapsed == sorted(elapsed) and elapsed[0] >= 0.0


def test_cancel_while_queued(action_pair):
    from action_msgs.msg import GoalStatus

    from stvg_ros.action import Ground

    server, client = action_pair
    feedback: list = []
    handle = _send(server, client, Ground.Goal(text="the blue circle"), feedback)
    wait_for(lambda: feedback, TIMEOUT, "the queued feedback")
    cancel = _wait(handle.cancel_goal_async())
    assert len(cancel.goals_canceling) == 1
    server.release.set()
    answer = _wait(handle.get_result_async())
    assert answer.status == GoalStatus.STATUS_CANCELED
    assert answer.result.tube.reason == "canceled" and not answer.result.tube.found
    assert [f.stage for f in feedback] == ["queued"]
