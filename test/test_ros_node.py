"""The installed stvg_node in a subprocess, driven over real DDS by a test node.

One node process serves the module (model: a tiny random Qwen2.5-VL built by the fixture); the
tests run in file order: the query-before-any-frame check must see an empty window.
"""

from __future__ import annotations

import time

import pytest

from ros_harness import (Client, NodeProcess, image_msg, require_ros, unique_namespace, wait_for, wait_ready)

pytestmark = pytest.mark.ros

NS = 1_000_000_000
T0 = 1_000 * NS  # first frame stamp
DT = 100_000_000  # 10 Hz
W, H = 160, 120


@pytest.fixture(scope="module")
def ros():
    require_ros()
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from stvg_ros.msg import GroundingQuery, Status, Tube

    class Ctx:
        pass

    c = Ctx()
    c.Image, c.String, c.GroundingQuery, c.Tube, c.Status = Image, String, GroundingQuery, Tube, Status
    c.sensor_qos = qos_profile_sensor_data
    return c


@pytest.fixture(scope="module")
def node(ros, tiny_model_dir, tmp_path_factory):
    ns = unique_namespace()
    proc = NodeProcess(ns, {
        "model_path": tiny_model_dir("qwen2_5_vl"),
        "device": "cpu",
        "window_rate": 0.0,
        "window_duration": 30.0,
        "window_max_frames": 32,
        "ingest_max_side": 96,  # forces downscaling: boxes must still come back in camera pixels
        "num_frames": 4,
        "lra_steps": 1,
        "query_queue_size": 2,
        "status_rate": 10.0,
        "image_depth": 50,
        "use_compressed": True,
        "use_detections": True,
    }, tmp_path_factory.mktemp("node") / "stvg_node.log")
    client = Client(namespace=ns)
    client.tubes = client.collect(ros.Tube, "tube", 200)
    client.status = client.collect(ros.Status, "status", 10)
    client.cam = client.node.create_publisher(ros.Image, "image", ros.sensor_qos)
    client.text = client.node.create_publisher(ros.String, "query", 10)
    client.request = client.node.create_publisher(ros.GroundingQuery, "query_request", 100)
    try:
        wait_ready(client.status, (client.cam, client.request), proc, active_timeout=90)
        yield proc, client
    finally:
        client.close()
        if proc.alive():
            proc.stop()


def _publish_frames(client, stamps, frame_id="test_cam", **kw):
    for i, s in enumerate(stamps):
        client.cam.publish(image_msg(s, W, H, frame_id=frame_id, seed=i, **kw))
        time.sleep(0.01)


def _ask(ros, client, qid, text, **fields):
    q = ros.GroundingQuery(id=qid, text=text, **fields)
    client.request.publish(q)


def _answer(client, node, qid, timeout=60):
    return wait_for(lambda: next((t for t in client.tubes if t.query_id == qid), None), timeout,
                    f"the tube of query {qid}", node)


def _latest_status(client):
    n = len(client.status)
    wait_for(lambda: len(client.status) > n, 10, "a fresh status message")
    return client.status[-1]


def test_query_before_any_frame_is_answered_with_reason(ros, node):
    proc, client = node
    _ask(ros, client, "early", "the red square")
    tube = _answer(client, proc, "early")
    assert not tube.found and not tube.boxes
    assert "no frames" in tube.reason
    assert proc.alive()


def test_tube_stamps_are_published_frame_stamps(ros, node):
    from stvg_ros.ros.convert import stamp_to_ns

    proc, client = node
    stamps = [T0 + i * DT for i in range(8)]
    _publish_frames(client, stamps)
    wait_for(lambda: _latest_status(client).window_frames >= 6, 20, "frames in the window", proc)
    _ask(ros, client, "t1", "the red square moving right")
    tube = _answer(client, proc, "t1")
    assert tube.reason == "", tube.reason
    assert tube.header.frame_id == "test_cam"
    held = set(stamps)
    assert stamp_to_ns(tube.header.stamp) in held
    assert stamp_to_ns(tube.start) in held and stamp_to_ns(tube.end) in held
    assert stamp_to_ns(tube.start) <= stamp_to_ns(tube.end)
    assert tube.boxes, "the best tube always carries boxes"
    box_stamps = [stamp_to_ns(b.stamp) for b in tube.boxes]
    assert set(box_stamps) <= held
    assert box_stamps == sorted(box_stamps)
    assert box_stamps[0] == stamp_to_ns(tube.start) and box_stamps[-1] == stamp_to_ns(tube.end)
    for b in tube.boxes:  # in the camera's 160x120 pixels, although the node kept 96 px wide copies
        assert -1e-6 <= b.center_x - b.size_x / 2 and b.center_x + b.size_x / 2 <= W + 1e-6
        assert -1e-6 <= b.center_y - b.size_y / 2 and b.center_y + b.size_y / 2 <= H + 1e-6
    assert tube.sub_query_source in ("model", "rules", "caller", "none")
    assert tube.latency > 0 and tube.processing_time > 0 and 0 <= tube.queue_time < tube.latency
    assert max(b.size_x for b in tube.boxes) > 0


def test_time_range_and_caller_sub_queries(ros, node):
    from stvg_ros.ros.convert import ns_to_stamp, stamp_to_ns

    proc, client = node
    lo, hi = T0 + 2 * DT, T0 + 5 * DT
    _ask(ros, client, "ranged", "the red square moving right", start=ns_to_stamp(lo), end=ns_to_stamp(hi),
         attribute_query="the red square", action_query="the square moving right")
    tube = _answer(client, proc, "ranged")
    assert tube.reason == ""
    assert all(lo <= stamp_to_ns(b.stamp) <= hi for b in tube.boxes)
    assert tube.sub_query_source == "caller" and tube.attribute_query == "the red square"
    # half a decomposition is refused, naming the fix
    _ask(ros, client, "half", "the red square", attribute_query="the red square")
    assert "both" in _answer(client, proc, "half").reason


def test_plain_string_query_from_the_cli(ros, node):
    proc, client = node
    n = len(client.tubes)
    client.text.publish(ros.String(data="the red square"))
    tube = wait_for(lambda: client.tubes[n:] and client.tubes[-1], 60, "the answer to a String query", proc)
    assert tube.query == "the red square" and tube.query_id.startswith("q")


@pytest.mark.parametrize("change, reason", [
    (dict(encoding="weird16"), "unsupported encoding"),
    (dict(step=10), "step"),
    (dict(truncate=True), "truncated"),
    (dict(header=(100, 100)), "the header does not describe the data"),  # a 100x100 header over 160x120 data
])
def test_bad_frames_are_dropped_and_reported(ros, node, change, reason):
    proc, client = node
    before = _latest_status(client)
    msg = image_msg(T0 + 50 * DT, W, H)
    if "encoding" in change:
        msg.encoding = change["encoding"]
    if "step" in change:
        msg.step = change["step"]
    if change.get("truncate"):
        msg.data = bytes(msg.data)[: len(msg.data) // 2]
    if "header" in change:
        msg.width, msg.height = change["header"]
        msg.step = msg.width * 3
    client.cam.publish(msg)
    status = wait_for(lambda: (s := _latest_status(client)).frames_rejected > before.frames_rejected and s, 20,
                      "the bad frame to be counted", proc)
    assert reason in status.last_warning, status.last_warning
    assert proc.alive()


@pytest.mark.parametrize("text, reason", [("", "empty query"), ("   ", "empty query"),
                                          ("x" * 10_000, "max_query_length")])
def test_unservable_query_texts(ros, node, text, reason):
    proc, client = node
    qid = f"bad-{len(text)}"
    _ask(ros, client, qid, text)
    tube = _answer(client, proc, qid)
    assert not tube.found and reason in tube.reason
    assert len(tube.query) < 200
    assert proc.alive()


def test_query_flood_gets_one_answer_each(ros, node):
    proc, client = node
    ids = [f"flood-{i}" for i in range(30)]
    for qid in ids:
        _ask(ros, client, qid, "the red square")
    wait_for(lambda: {t.query_id for t in client.tubes} >= set(ids), 120, "an answer to every flood query", proc)
    answers = {t.query_id: t for t in client.tubes if t.query_id in ids}
    full = [t for t in answers.values() if "queue full" in t.reason]
    served = [t for t in answers.values() if t.reason == ""]
    assert full, "a flood larger than the queue must be refused in part"
    assert served, "the queue must still serve some queries"
    assert max(t.queue_time for t in served) > 0  # those that waited say so
    assert all(t.query_id in ids for t in full)
    # every query received is counted, and is exactly one of answered, rejected, cancelled, failed
    s = wait_for(lambda: (s := _latest_status(client)).queue_depth == 0 and s, 20, "an idle queue", proc)
    assert s.queries_received == s.queries_answered + s.queries_rejected + s.queries_cancelled + s.queries_failed
    assert s.queries_received >= len(ids) + 6  # the flood, and the bad requests before it
    assert proc.alive()


def test_clock_jump_back_resets_the_window(ros, node):
    from stvg_ros.ros.convert import stamp_to_ns

    proc, client = node
    before = _latest_status(client)
    back = [T0 - 500 * NS + i * DT for i in range(5)]  # a looping bag starts over, 500 s earlier
    _publish_frames(client, back)
    status = wait_for(lambda: (s := _latest_status(client)).window_resets > before.window_resets and s, 20,
                      "a window reset", proc)
    wait_for(lambda: _latest_status(client).window_frames >= 4, 20, "the new frames", proc)
    _ask(ros, client, "after-jump", "the red square")
    tube = _answer(client, proc, "after-jump")
    assert tube.reason == ""
    assert {stamp_to_ns(b.stamp) for b in tube.boxes} <= set(back)
    assert status.window_frames <= len(back)


def test_compressed_frames_and_external_detections_as_proposals(ros, node):
    """PNG frames on image/compressed plus tracked detections: the tube follows one of the tracks."""
    import cv2
    import numpy as np
    from sensor_msgs.msg import CompressedImage

    from stvg_ros.msg import Detection, Detections
    from stvg_ros.ros.convert import ns_to_stamp, stamp_to_ns

    proc, client = node
    comp = client.node.create_publisher(CompressedImage, "image/compressed", ros.sensor_qos)
    dets = client.node.create_publisher(Detections, "detections", 50)
    wait_for(lambda: comp.get_subscription_count() and dets.get_subscription_count(), 20, "subscriptions", proc)
    base = T0 + 2000 * DT  # after everything else in the window
    stamps = [base + i * DT for i in range(6)]
    tracks = {"ball": lambda i: (20 + 15 * i, 40, 20, 20), "crate": lambda i: (120, 80, 30, 24)}
    for i, s in enumerate(stamps):
        d = Detections()
        d.header.stamp, d.header.frame_id = ns_to_stamp(s), "test_cam"
        for tid, geo in tracks.items():
            cx, cy, sx, sy = geo(i)
            d.detections.append(Detection(track_id=tid, class_id="thing", score=0.9, center_x=float(cx),
                                          center_y=float(cy), size_x=float(sx), size_y=float(sy)))
        dets.publish(d)
        img = np.full((H, W, 3), 60, np.uint8)
        ok, png = cv2.imencode(".png", img)
        msg = CompressedImage(format="png", data=png.tobytes())
        msg.header.stamp, msg.header.frame_id = ns_to_stamp(s), "test_cam"
        comp.publish(msg)
        time.sleep(0.02)
    # 200 s after the previous frames: the window now holds exactly the compressed ones
    wait_for(lambda: (s := _latest_status(client)).window_frames == len(stamps) and
             abs(s.window_span - 0.5) < 1e-3, 20, "the compressed frames", proc)
    _ask(ros, client, "tracked", "the ball", start=ns_to_stamp(stamps[0]), end=ns_to_stamp(stamps[-1]))
    tube = _answer(client, proc, "tracked")
    assert tube.reason == "", tube.reason
    assert tube.track_id in tracks, tube.track_id
    geo = tracks[tube.track_id]
    for b in tube.boxes:  # the chosen track's own boxes, back in camera pixels
        i = stamps.index(stamp_to_ns(b.stamp))
        assert (b.center_x, b.center_y, b.size_x, b.size_y) == pytest.approx(geo(i), abs=1.0)


def test_clean_fast_shutdown(node):
    proc, _ = node
    assert proc.alive()
    rc, seconds = proc.stop(timeout=15)
    log = proc.log()
    assert rc == 0, log[-3000:]
    assert seconds < 5.0, f"shutdown took {seconds:.1f} s"
    assert "Traceback" not in log, log[-3000:]
