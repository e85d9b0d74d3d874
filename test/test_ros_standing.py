"""Standing queries over real DDS: the installed node with the shipped synthetic-world model, a replayed
synthetic stream in which the target's action starts mid-stream, events on ``standing_tube``, cancel,
the cap, and Status' report of their cost and duty.

The stream is ``generate_sample(2, 'test', num_frames=48)`` at 5 fps: "the big red star that moves
down" acts during frames 26-37.  On 8-frame windows the shipped model's p_yes (run T) is 0.004-0.22 while the
window ends before frame 23, 0.28-0.56 on the windows ending at frames 23-26 (the star about to move; 0.56 on
the one ending at 25), 0.59-0.92 from frame 27 to 44 and 0.006 once the action has left the window (run S,
the model before: 0.01-0.35, 0.69-0.88, 0.007), so thresholds 0.65 / 0.5 (:data:`ON`, :data:`OFF`) separate
them; the test asserts the appearance is reported after the action started, nothing before, and the
disappearance after it.
"""

from __future__ import annotations

import time

import pytest

from ros_harness import Client, NodeProcess, image_msg, require_ros, unique_namespace, wait_for, wait_ready

pytestmark = pytest.mark.ros

NS = 1_000_000_000
T0 = 2_000 * NS
DT = NS // 5  # 5 fps, the synthetic world's rate
ON, OFF = 0.65, 0.5  # the standing thresholds of this module's node (see the module docstring)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    require_ros()
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    from stvg_ros.msg import GroundingQuery, StandingQuery, Status, Tube
    from sensor_msgs.msg import Image

    ns = unique_namespace()
    proc = NodeProcess(ns, {
        "model_path": "default",  # the shipped synthetic-world model
        "device": "cpu",
        "window_rate": 0.0,
        "window_duration": 20.0,
        "num_frames": 8,
        "decomposer": "rules",
        "image_reliability": "reliable",
        "image_depth": 100,
        "status_rate": 5.0,
        "max_standing_queries": 2,
        "standing_found_on": ON,
        "standing_found_off": OFF,
        "standing_duty_budget": 0.8,
    }, tmp_path_factory.mktemp("standing") / "stvg_node.log")
    client = Client(namespace=ns)
    reliable = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
    client.standing_tubes = client.collect(Tube, "standing_tube", reliable)
    client.tubes = client.collect(Tube, "tube", reliable)
    client.status = client.collect(Status, "status", 10)
    client.cam = client.node.create_publisher(Image, "image", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    client.standing = client.node.create_publisher(StandingQuery, "standing_query", 10)
    client.request = client.node.create_publisher(GroundingQuery, "query_request", 10)
    client.StandingQuery, client.GroundingQuery = StandingQuery, GroundingQuery
    try:
        wait_ready(client.status, (client.cam, client.standing), proc, active_timeout=90)
        yield proc, client
    finally:
        client.close()
        if proc.alive():
            proc.stop()


def _events(client, qid):
    return [t for t in client.standing_tubes if t.query_id == qid]


def _frame_msg(img, stamp_ns):
    msg = image_msg(stamp_ns, img.shape[1], img.shape[0], frame_id="synth_cam")
    msg.data = img.tobytes()
    return msg


def test_appearance_mid_stream_is_reported_once_and_cancel_ends_it(node):
    from stvg_ros.ros.convert import stamp_to_ns
    from stvg_ros.synthetic.generator import generate_sample

    proc, client = node
    frames, sample = generate_sample(2, "test", num_frames=48)
    assert (sample["st_frame"], sample["ed_frame"]) == (26, 37)
    client.standing.publish(client.StandingQuery(id="star", text=sample["query"], every_n_frames=2, window=1.5,
                                                 cheap_first=True))
    wait_for(lambda: client.status[-1].standing_count == 1, 20, "the registration", proc)
    for i, img in enumerate(frames):  # at 1.5x real time; each evaluation sees the newest 8 frames
        client.cam.publish(_frame_msg(img, T0 + i * DT))
        time.sleep(0.13)
    wait_for(lambda: any(t.event == "disappeared" for t in _events(client, "star")), 30, "the disappearance", proc)
    events = _events(client, "star")
    assert [t.event for t in events] in (["appeared", "disappeared"], ["appeared", "moved", "disappeared"]), \
        [(t.event, t.p_yes, t.reason) for t in events]
    appeared = events[0]
    assert appeared.found and appeared.p_yes >= ON and appeared.boxes
    newest = stamp_to_ns(appeared.header.stamp)
    assert T0 + 26 * DT <= newest <= T0 + 40 * DT, (newest - T0) / DT  # after the action started
    assert appeared.header.frame_id == "synth_cam" and appeared.query == sample["query"]
    gone = events[-1]
    assert not gone.found and gone.p_yes < OFF and stamp_to_ns(gone.header.stamp) > newest
    assert gone.boxes  # where it was last seen
    assert not any(t.query_id == "star" for t in client.tubes), "standing events never go to `tube`"
    def reported(s):  # a Status published after the last event (status comes on its own timer)
        return next((q for q in s.standing if q.id == "star" and q.events == len(events)), None)

    s = wait_for(lambda: next((s for s in reversed(client.status) if reported(s)), None), 10,
                 "a Status with every event", proc)
    info = reported(s)
    assert info.cheap_first and info.evaluations >= 10 and 1 <= info.full_evaluations < info.evaluations
    assert info.events == len(events) and info.mean_cost > 0 and not info.found
    assert s.standing_evaluations >= info.evaluations and s.standing_events == len(events)
    client.standing.publish(client.StandingQuery(id="star", cancel=True))
    ended = wait_for(lambda: [t for t in _events(client, "star") if t.event == "ended"], 20, "the ended event", proc)
    assert len(ended) == 1 and ended[0].reason == "cancelled by the client"
    wait_for(lambda: client.status[-1].standing_count == 0, 20, "the cancel in Status", proc)


def _still_scene(seed: int):
    """A test clip's first frame again and again with fresh sensor noise (3 grey levels), and its target's look."""
    import numpy as np

    from stvg_ros.synthetic.generator import generate_sample

    frames, sample = generate_sample(seed, "test", num_frames=48)
    rng = np.random.default_rng(seed)
    return [np.clip(frames[0] + rng.normal(0.0, 3.0, frames[0].shape), 0, 255).astype(np.uint8)
            for _ in range(40)], sample["attribute"]


def _steady_scene():
    """The first still scene (test seeds 1-8) on which the service itself, fed in lock step with the node's
    thresholds, reports the target appeared and whose box never leaves the target: evaluated at every frame
    with ``move_confirm`` 1, no ``moved`` at all.  A scene whose grounding alternates between two objects of
    the target's colour (seeds 1, 5 and 8 with run T) is a real jump of the box, a move, and which frames
    the node's evaluations see depends on its load; bench_standing_moved.py counts those.  The node over
    DDS must then add nothing: no `moved` from tracker renumbering or noise."""
    import sys
    from pathlib import Path

    import torch

    sys.path.append(str(Path(__file__).resolve().parent.parent))  # the benchmarks are the package `bench`
    from bench.bench_stream import replay
    from stvg_ros.adapters.default_model import shipped_model_dir
    from stvg_ros.config import GroundingConfig
    from stvg_ros.stack import load_model
    from stvg_ros.stream.standing import StandingRules

    torch.set_num_threads(1)
    grounder = load_model(str(shipped_model_dir()), GroundingConfig(num_frames=8, decomposer="rules",
                                                                     feature_cache_mb=0)).grounder
    for seed in range(1, 9):
        frames, query = _still_scene(seed)
        events, _ = replay(grounder, frames, 5.0, query, 8, 1, False,
                           StandingRules(found_on=ON, found_off=OFF, move_confirm=1))
        if [k for k, _ in events] == ["appeared"]:
            return frames, query
    raise AssertionError("no still test scene (seeds 1-8) that the service reports appeared and never moved")


def test_a_still_target_is_found_once_and_never_moves(node):
    """Issue 29: a target standing still in a noisy camera stream (the tracker renumbers its box at
    almost every evaluation) is reported appeared and then never moved."""
    proc, client = node
    frames, query = _steady_scene()

    def still(i):
        client.cam.publish(_frame_msg(frames[i], T0 + (200 + i) * DT))
        time.sleep(0.25)  # slower than real time: a full grounding at every other frame

    received = client.status[-1].frames_received
    for i in range(10):  # the still scene first: the query's first evaluation sees only it
        still(i)
    wait_for(lambda: client.status[-1].frames_received >= received + 10, 20, "the still frames", proc)
    client.standing.publish(client.StandingQuery(id="still", text=query, every_n_frames=2, window=1.5))
    try:
        wait_for(lambda: client.status[-1].standing_count == 1, 20, "the registration", proc)
        for i in range(10, 40):
            still(i)
        s = wait_for(lambda: next((q for q in client.status[-1].standing if q.id == "still" and q.evaluations >= 5),
                                  None), 60, "evaluations of the still target", proc)
        events = _events(client, "still")
        assert [t.event for t in events] == ["appeared"], [(t.event, t.reason) for t in events]
        assert s.full_evaluations == s.evaluations  # a box at every evaluation
    finally:  # the next test counts on the cap's two places
        client.standing.publish(client.StandingQuery(id="still", cancel=True))
        wait_for(lambda: client.status[-1].standing_count == 0, 20, "the cancel in Status", proc)


def test_cap_refusal_one_shot_priority_and_shutdown(node):
    proc, client = node
    for qid in ("a", "b", "c"):
        client.standing.publish(client.StandingQuery(id=qid, text="the red square", every_n_frames=1))
        time.sleep(0.2)
    refused = wait_for(lambda: [t for t in _events(client, "c") if t.event == "ended"], 20, "the refusal", proc)
    assert "max_standing_queries=2" in refused[0].reason and not refused[0].found
    for i in range(10):  # frames keep both standing queries busy while a one-shot query comes
        client.cam.publish(image_msg(T0 + (100 + i) * DT, 112, 112, frame_id="synth_cam", seed=i))
        time.sleep(0.05)
    client.request.publish(client.GroundingQuery(id="oneshot", text="the red square"))
    tube = wait_for(lambda: next((t for t in client.tubes if t.query_id == "oneshot"), None), 30, "the one-shot", proc)
    assert tube.reason == "" and tube.event == ""
    s = wait_for(lambda: (s := client.status[-1]).standing_count == 2 and s.standing_evaluations > 0 and s, 20,
                 "standing evaluations", proc)
    assert s.standing_capacity == 2 and s.standing_refused >= 1 and 0.0 < s.standing_duty <= 1.0
    assert s.standing_duty_budget == pytest.approx(0.8)
    rc, seconds = proc.stop(timeout=15)
    assert rc == 0 and seconds < 5.0, proc.log()[-3000:]
    for qid in ("a", "b"):  # the node ends its standing queries before it goes
        ended = wait_for(lambda: [t for t in _events(client, qid) if t.event == "ended"], 5, f"{qid} ended")
        assert ended[0].reason == "the node is shutting down"
