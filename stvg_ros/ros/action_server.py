"""The ``ground`` action (``stvg_ros/action/Ground``): a GroundingQuery as goal, the grounding
stages as feedback, the Tube as result, cancel while queued or between stages.

Goals never block the executor. Every goal is accepted and handed to the serving layer at once,
through the same admission as a topic query (a refusal is the goal's result, with the Tube's
reason); feedback is published from the worker thread as each stage starts; the goal is executed
(rclpy's execute callback) only when its answer exists, so the callback just sets the terminal
state and returns the result.  A goal stays *accepted* while queued and grounding, and finishes
*succeeded* (answered), *canceled* (cancel requested by the client) or *aborted* (refused, failed,
or ended by deactivate / shutdown), always with a Tube whose ``reason`` says why.
"""

from __future__ import annotations

import threading
from typing import Callable

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup

from stvg_ros.action import Ground
from stvg_ros.msg import Tube
from stvg_ros.ros.convert import request_from_msg
from stvg_ros.ros.memory import alternative_msgs
from stvg_ros.stream.requests import ANSWERED, CANCELLED, REJECTED, Answer, GroundingRequest, QueryHandle

#: the Tube reason of a goal the client canceled
CANCELED_BY_CLIENT = "canceled by the action client"


class GroundActionServer:
    """``ground`` on ``node``: ``submit(request, on_done, on_progress)`` is the service's submit,
    ``publish(answer) -> Tube`` the node's answer fan-out, ``refusal()`` why goals cannot be served
    now ("" when the node is active), ``new_id()`` an id for goals without one; ``result_timeout``: seconds a
    finished goal's result stays retrievable."""

    def __init__(self, node, submit: Callable[..., QueryHandle], publish: Callable[[Answer], Tube],
                 refusal: Callable[[], str], new_id: Callable[[], str], result_timeout: int = 300):
        self._submit, self._publish, self._refusal, self._new_id = submit, publish, refusal, new_id
        self._lock = threading.Lock()
        self._queries: dict[bytes, QueryHandle] = {}  # goals handed to the service, by goal id
        self._results: dict[bytes, tuple[str, Tube, list, list]] = {}  # answered goals awaiting their execute callback
        self._server = ActionServer(node, Ground, "ground", execute_callback=self._execute,
                                    goal_callback=lambda _goal: GoalResponse.ACCEPT,
                                    handle_accepted_callback=self._accepted, cancel_callback=self._cancel,
                                    callback_group=ReentrantCallbackGroup(), result_timeout=int(result_timeout))

    def pending(self) -> int:
        """Goals whose result is not yet set (queued, grounding, or answered and about to execute)."""
        with self._lock:
            return len(self._queries) + len(self._results)

    def destroy(self) -> None:
        self._server.destroy()

    def _accepted(self, goal_handle) -> None:
        key, goal = bytes(goal_handle.goal_id.uuid), goal_handle.request
        request = request_from_msg(goal, "" if goal.id else self._new_id())

        def progress(stage: str, elapsed: float) -> None:
            goal_handle.publish_feedback(Ground.Feedback(stage=stage, elapsed=float(elapsed)))

        def done(answer: Answer) -> None:
            tubes = self._publish(answer)  # several cameras, goal.each_camera: one Tube per camera, best first
            tube, per_camera = (tubes[0], tubes) if isinstance(tubes, list) else (tubes, [])
            with self._lock:
                self._queries.pop(key, None)
                self._results[key] = (answer.status, tube, alternative_msgs(answer.alternatives), per_camera)
            goal_handle.execute()  # schedules _execute on the node's executor (thread-safe)

        refusal = self._refusal()
        if refusal:
            done(Answer(request, REJECTED, refusal))
            return
        with self._lock:  # registered before submit: a rejection answers inside it
            self._queries[key] = None  # type: ignore[assignment]
        handle = self._submit(request, done, progress)
        with self._lock:
            if key in self._queries:
                self._queries[key] = handle

    def _cancel(self, goal_handle) -> CancelResponse:
        with self._lock:
            handle = self._queries.get(bytes(goal_handle.goal_id.uuid))
        return CancelResponse.ACCEPT if handle is not None and handle.cancel(CANCELED_BY_CLIENT) \
            else CancelResponse.REJECT

    def _execute(self, goal_handle) -> Ground.Result:
        with self._lock:
            status, tube, alternatives, per_camera = self._results.pop(bytes(goal_handle.goal_id.uuid),
                                                                       (CANCELLED, Tube(), [], []))
        if status == ANSWERED:
            goal_handle.succeed()
        elif status == CANCELLED and goal_handle.is_cancel_requested:
            goal_handle.canceled()
        else:
            goal_handle.abort()
        return Ground.Result(tube=tube, alternatives=alternatives, camera_tubes=per_camera)


def refusal_reason(state: str, node_name: str, config_error: str = "") -> str:
    """Why a goal is refused in lifecycle ``state`` ("" when active), naming the fix; ``config_error``:
    why the last configure failed (the reason a node stays unconfigured)."""
    if state == "active":
        return ""
    if config_error:
        return f"the node is {state}: {config_error}"
    return (f"the node is {state}: goals are served only while it is active "
            f"(ros2 lifecycle set {node_name} {'activate' if state == 'inactive' else 'configure'})")
