"""The node remembers (issue 33), over DDS: a synthetic stream replayed from a bag (compressed frames, 2.5
minutes of stream time at 10x) into the installed node with ``memory`` on; then a ``ground`` goal whose
time range starts at the stream's beginning asks about an event that left the window more than a minute of
stream time earlier, and gets its tube (absolute stamps), the ranked alternatives and 'rank D/N' feedback."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from ros_harness import Client, NodeProcess, last_settled, node_env, require_ros, unique_namespace, wait_for, \
    wait_ready

pytestmark = pytest.mark.ros


def _done(future, timeout):
    event = threading.Event()
    future.add_done_callback(lambda _f: event.set())
    assert event.wait(timeout), "no answer from the node's action server"
    return future.result()


@pytest.mark.slow  # ~40 s on 2 cores: node start-up, a 15 s replay, a query over 15 memory segments
def test_the_node_answers_about_an_event_that_left_its_window(tmp_path):
    require_ros()
    from action_msgs.msg import GoalStatus
    from rclpy.action import ActionClient

    from stvg_ros.evaluation import bags
    from stvg_ros.action import Ground
    from stvg_ros.msg import Status
    from stvg_ros.ros.convert import ns_to_stamp, stamp_to_ns
    from stvg_ros.synthetic.stream import make_stream

    stream = make_stream(11, 150.0, events=1, kind="colour", keep_out_s=70.0)
    event = stream.events[0]
    bag = bags.write_bag(tmp_path / "stream", stream.frames(), [stream.stamp(i) for i in range(stream.num_frames)],
                         storage="mcap", image_format="jpeg")
    memory = tmp_path / "memory"
    proc = NodeProcess(unique_namespace(), {"device": "cpu", "status_rate": 5.0, "use_compressed": True,
                                            "memory": True, "memory_directory": str(memory),
                                            "memory_chunk_s": 10.0}, tmp_path / "node.log")
    client = Client(namespace=proc.namespace)
    try:
        status = client.collect(Status, "status", 10)
        action = ActionClient(client.node, Ground, "ground")
        wait_ready(status, (), proc)
        assert action.wait_for_server(timeout_sec=20), "the ground action server was not discovered"
        play = subprocess.run([sys.executable, "-m", "stvg_ros.ros.bag_player", str(bag), "--rate", "10", "--remap",
                               f"/camera/image_raw/compressed:={proc.namespace}/image/compressed",
                               "--wait-timeout", "30"], env=node_env(), capture_output=True, text=True, timeout=180)
        assert play.returncode == 0, play.stderr[-2000:]
        s = last_settled(status)
        assert s.frames_received >= 0.95 * stream.num_frames, (s.frames_received, stream.num_frames)
        assert sorted(p.name for p in memory.iterdir() if p.name.startswith("memory_")), "chunks on disk"
        assert stream.stamp_ns(event.span[1]) < stream.stamp_ns(stream.num_frames - 1) - 60 * 10**9, \
            "the event left the window more than a minute before the question"
        feedback: list = []
        goal = Ground.Goal(id="past", text=event.query, start=ns_to_stamp(stream.stamp_ns(0)))
        handle = _done(action.send_goal_async(goal, feedback_callback=lambda m: feedback.append(m.feedback)), 30)
        answer = _done(handle.get_result_async(), 240)
        assert answer.status == GoalStatus.STATUS_SUCCEEDED, answer.result.tube.reason
        tube, alternatives = answer.result.tube, answer.result.alternatives
        first, last = stream.index(stamp_to_ns(tube.start)), stream.index(stamp_to_ns(tube.end))
        assert first <= event.span[1] and last >= event.span[0], (first, last, event.span)
        assert tube.boxes and all(stream.stamp_ns(stream.index(stamp_to_ns(b.stamp))) == stamp_to_ns(b.stamp)
                                  for b in tube.boxes), "boxes on the bag's own stamps"
        assert alternatives and stamp_to_ns(alternatives[0].start) == stamp_to_ns(tube.start)
        assert [a.score for a in alternatives] == sorted((a.score for a in alternatives), reverse=True)
        wait_for(lambda: feedback and feedback[-1].stage == "select", 5, "the last feedback", proc)
        ranks = [f.stage for f in feedback if f.stage.startswith("rank ")]
        assert ranks and ranks[0].startswith("rank 0/"), [f.stage for f in feedback]
    finally:
        client.close()
        if proc.alive():
            proc.stop()
