"""Several cameras, one model (issue 32): the installed stvg_node with parameter ``cameras`` over real DDS.

One node serves three cameras, each fed by its own publisher process: two "robots" (their own namespaces)
publishing JPEG frames on their compressed topics, and an HD camera (1280x720 raw, best effort) on the
shipped shared-memory profile (config/fastdds_shm.xml, node and camera both).  Queries go to one camera (by
name or by topic), to all (the best tube, naming its camera) and to each (one Tube per camera); an unknown
camera is refused naming the cameras; then a bag with two camera topics is replayed into the same node.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ros_harness import REPO, Client, NodeProcess, node_env, require_ros, unique_namespace, wait_for, wait_ready

from stvg_ros.stream.multi import MultiStreamService

pytestmark = [pytest.mark.ros, pytest.mark.slow]  # ~50 s on 2 cores: a node and three publisher processes

HERE = Path(__file__).resolve().parent
# Fast DDS 3 (Kilted) reads FASTDDS_, Fast DDS 2 (Humble, Jazzy) FASTRTPS_: set both, as the launch file does.
SHM = {k: str(REPO / "config" / "fastdds_shm.xml")
       for k in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")}
FRAMES = 30
CAMERAS = ("front", "rear", "hd")
FRAME_IDS = {"front": "robot1_cam", "rear": "robot2_cam", "hd": "hd_cam"}
SIZES = {"front": (320, 240), "rear": (320, 240), "hd": (1280, 720)}


def _publisher(topic: str, kind: str, camera: str, start: float, env: dict | None = None, frames: int = FRAMES,
               reliability: str = "best_effort"):
    w, h = SIZES[camera]
    return subprocess.Popen([sys.executable, str(HERE / "camera_publisher.py"), topic, "--kind", kind, "--width",
                             str(w), "--height", str(h), "--frames", str(frames), "--start", str(start),
                             "--frame-id", FRAME_IDS[camera], "--reliability", reliability],
                            env=node_env(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def multi(tiny_model_dir, tmp_path_factory):
    require_ros()
    from diagnostic_msgs.msg import DiagnosticArray

    from stvg_ros.msg import GroundingQuery, StandingQuery, Status, Tube

    ns = unique_namespace()
    robots = {"front": f"{ns}_robot1/camera/image_raw", "rear": f"{ns}_robot2/camera/image_raw"}
    proc = NodeProcess(ns, {
        "model_path": tiny_model_dir("qwen2_5_vl"), "device": "cpu", "window_rate": 0.0, "window_duration": 30.0,
        "window_max_frames": 16, "num_frames": 4, "lra_steps": 1, "status_rate": 5.0,
        "cameras": "[" + ",".join(CAMERAS) + "]",
        "camera.front.image_topic": robots["front"], "camera.front.transport": "compressed",
        "camera.rear.image_topic": robots["rear"], "camera.rear.transport": "compressed",
        "camera.rear.reliability": "reliable",
        "camera.hd.image_topic": "hd/image", "camera.hd.qos_depth": 5, "camera.hd.ingest_side": 96,
    }, tmp_path_factory.mktemp("cameras") / "stvg_node.log", env=SHM)
    client = Client(namespace=ns)
    client.tubes = client.collect(Tube, "tube", 200)
    client.events = client.collect(Tube, "standing_tube", 50)
    client.status = client.collect(Status, "status", 10)
    client.diagnostics = client.collect(DiagnosticArray, "/diagnostics", 50)
    client.request = client.node.create_publisher(GroundingQuery, "query_request", 100)
    client.standing = client.node.create_publisher(StandingQuery, "standing_query", 10)
    client.robots = robots
    pubs = []
    try:
        wait_ready(client.status, (client.request, client.standing), proc, active_timeout=120)
        pubs = [_publisher(robots["front"] + "/compressed", "compressed", "front", 1000.0),
                _publisher(robots["rear"] + "/compressed", "compressed", "rear", 2000.0, reliability="reliable"),
                _publisher(f"{ns}/hd/image", "raw", "hd", 3000.0, env=SHM)]
        for p in pubs:
            out, _ = p.communicate(timeout=90)
            assert p.returncode == 0 and f"published {FRAMES}" in out, out
        yield proc, client
    finally:
        for p in pubs:
            if p.poll() is None:
                p.kill()
        client.close()
        if proc.alive():
            proc.stop()


def _cameras_settled(client, node):
    def settled():
        s = client.status[-1] if client.status else None
        if s is None or len(s.cameras) != len(CAMERAS):
            return None
        return s if all(c.window_frames >= 4 for c in s.cameras) else None

    wait_for(settled, 30, "frames in every camera's window", node)
    time.sleep(1.0)  # the last frames through the executor
    return client.status[-1]


def _ask(client, node, qid, **fields):
    from stvg_ros.msg import GroundingQuery

    client.request.publish(GroundingQuery(id=qid, text="the red square", **fields))
    wait_for(lambda: any(t.query_id == qid for t in client.tubes), 90, f"the tube of query {qid}", node)
    time.sleep(0.3)  # one Tube per camera: the others follow at once
    return [t for t in client.tubes if t.query_id == qid]


def test_each_camera_has_its_window_counters_and_diagnostics(multi):
    node, client = multi
    s = _cameras_settled(client, node)
    by_name = {c.name: c for c in s.cameras}
    assert set(by_name) == set(CAMERAS)
    for name, c in by_name.items():
        assert c.frame_id == FRAME_IDS[name]
        assert c.frames_received >= 0.8 * FRAMES, (name, c.frames_received, c.frames_lost)  # best effort: few lost
        assert c.frames_rejected == 0, (name, c.last_warning)
    assert by_name["front"].topic == client.robots["front"] + "/compressed"
    assert by_name["hd"].topic == f"{node.namespace}/hd/image"
    assert s.frames_received == sum(c.frames_received for c in s.cameras)  # the node's: the sums
    assert s.window_frames == sum(c.window_frames for c in s.cameras)
    names = lambda: {st.name for a in client.diagnostics for st in a.status}  # noqa: E731
    wait_for(lambda: {f"{node.name}: camera {c}" for c in CAMERAS} <= names(), 10, "a /diagnostics entry per camera")


def test_a_query_to_one_camera_by_name_or_topic(multi):
    node, client = multi
    _cameras_settled(client, node)
    [tube] = _ask(client, node, "one", camera="rear")
    assert (tube.camera, tube.header.frame_id) == ("rear", "robot2_cam")
    assert tube.boxes and all(2000 <= b.stamp.sec < 2010 for b in tube.boxes)  # rear's stamps, nobody else's
    [tube] = _ask(client, node, "by_topic", camera=client.robots["front"])
    assert (tube.camera, tube.header.frame_id) == ("front", "robot1_cam")
    assert tube.boxes and all(1000 <= b.stamp.sec < 1010 for b in tube.boxes)


def test_a_query_to_all_gets_the_best_tube_or_one_per_camera(multi):
    node, client = multi
    _cameras_settled(client, node)
    [best] = _ask(client, node, "all")
    assert best.camera in CAMERAS and best.header.frame_id == FRAME_IDS[best.camera] and best.boxes
    each = _ask(client, node, "each", camera="all", each_camera=True)
    assert sorted(t.camera for t in each) == sorted(CAMERAS)
    for t in each:
        assert t.header.frame_id == FRAME_IDS[t.camera] and t.boxes
        w, h = SIZES[t.camera]  # the boxes in the camera's own pixels (hd kept at 96 px, answered at 1280x720)
        assert all(b.center_x <= w and b.center_y <= h for b in t.boxes)
    assert max(b.center_x + b.size_x / 2 for t in each if t.camera == "hd" for b in t.boxes) > 96


def test_an_unknown_camera_is_refused_naming_the_cameras(multi):
    node, client = multi
    [tube] = _ask(client, node, "left", camera="left")
    assert not tube.found and not tube.boxes
    assert "left" in tube.reason and all(c in tube.reason for c in CAMERAS), tube.reason
    assert node.alive()


def test_the_ground_action_answers_one_tube_per_camera(multi):
    import threading

    from rclpy.action import ActionClient

    from stvg_ros.action import Ground

    node, client = multi
    _cameras_settled(client, node)
    ac = ActionClient(client.node, Ground, "ground")
    assert ac.wait_for_server(timeout_sec=20)

    def wait(future):
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        assert done.wait(90), "no answer from the action server"
        return future.result()

    handle = wait(ac.send_goal_async(Ground.Goal(id="goal_each", text="the red square", each_camera=True)))
    result = wait(handle.get_result_async()).result
    assert sorted(t.camera for t in result.camera_tubes) == sorted(CAMERAS)
    assert result.tube.camera == result.camera_tubes[0].camera
    for t in result.camera_tubes:  # each camera's p_yes against the best of the others', on the wire
        others = max(o.p_yes for o in result.camera_tubes if o.camera != t.camera)
        assert t.camera_margin == pytest.approx(t.p_yes - others, abs=1e-5)
    assert result.camera_tubes[0].camera_margin >= 0
    handle = wait(ac.send_goal_async(Ground.Goal(id="goal_hd", text="the red square", camera="hd")))
    result = wait(handle.get_result_async()).result
    assert (result.tube.camera, result.tube.header.frame_id) == ("hd", "hd_cam") and not result.camera_tubes
    assert math.isnan(result.tube.camera_margin)  # one camera asked


def test_a_standing_query_on_one_camera_names_it(multi):
    from stvg_ros.msg import StandingQuery

    node, client = multi
    client.standing.publish(StandingQuery(id="watch_rear", text="the red square", camera="rear", period=0.5))
    wait_for(lambda: any(q.id == "watch_rear" for q in client.status[-1].standing), 20, "the standing query", node)
    [q] = [q for q in client.status[-1].standing if q.id == "watch_rear"]
    assert q.camera == "rear"
    assert [c.standing_count for c in client.status[-1].cameras if c.name == "rear"] == [1]
    client.standing.publish(StandingQuery(id="watch_rear", cancel=True))
    ended = wait_for(lambda: next((t for t in client.events if t.query_id == "watch_rear" and t.event == "ended"),
                                  None), 20, "the ended event", node)
    assert ended.camera == "rear"
    assert all(t.camera == "rear" for t in client.events if t.query_id == "watch_rear")


def test_a_bag_with_two_camera_topics_replays_into_one_node(multi, tmp_path):
    """A bag recorded on two robots' camera topics (rosbags), played by ``stvg_play_bag`` into the node."""
    import numpy as np
    from rosbags.rosbag2 import Writer

    from stvg_ros.evaluation import bags

    node, client = multi
    before = {c.name: c.frames_received for c in _cameras_settled(client, node).cameras}
    store, n, path = bags.typestore(), 20, tmp_path / "two_cameras"
    topics = {"front": "/bag/front/image_raw/compressed", "rear": "/bag/rear/image_raw/compressed"}
    with Writer(path, version=9) as writer:
        conns = {c: writer.add_connection(t, "sensor_msgs/msg/CompressedImage", typestore=store)
                 for c, t in topics.items()}
        for i in range(n):
            for k, (camera, conn) in enumerate(conns.items()):
                stamp = 5000.0 + 1000 * k + i / 10  # after the live frames: each window moves on
                frame = np.full((240, 320, 3), 40, np.uint8)
                frame[80:110, 8 * i:8 * i + 30] = (230, 40, 40)
                msg = bags.image_message(store, frame, stamp, FRAME_IDS[camera], "jpeg")
                recorded = int((100 + i / 10) * 1e9) + k  # both cameras recorded together: a 2 s bag
                writer.write(conn, recorded, store.serialize_cdr(msg, msg.__msgtype__))
    remaps = [f"{topics[c]}:={client.robots[c]}/compressed" for c in topics]
    play = subprocess.run([sys.executable, "-m", "stvg_ros.ros.bag_player", str(path), "--wait-timeout", "20",
                           "--remap", *remaps], env=node_env(), capture_output=True, text=True, timeout=60)
    assert play.returncode == 0, play.stderr[-2000:]
    assert f"published {2 * n} messages" in play.stderr + play.stdout

    def arrived():
        s = client.status[-1]
        got = {c.name: c.frames_received - before[c.name] for c in s.cameras}
        return got if got["front"] >= n and got["rear"] >= n else None

    got = wait_for(arrived, 20, "the bag's frames in both cameras", node)
    assert got["hd"] == 0, got  # the bag has no hd topic
    [tube] = _ask(client, node, "bag_rear", camera="rear")
    assert tube.boxes and all(6000 <= b.stamp.sec < 6002 for b in tube.boxes)  # the bag's rear frames


def test_a_camera_with_depth_gives_3d_answers_beside_one_without(tiny_model_dir, tmp_path):
    """camera.<name>.depth_topic: the RGB-D camera's boxes carry positions (a plane at a known distance), the
    other camera's do not, in one node."""
    require_ros()
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image

    from ros_harness import image_msg
    from stvg_ros.msg import GroundingQuery, Status, Tube
    from test_ros_depth import DT, T0, Z, _depth, _info, W, H

    ns = unique_namespace()
    proc = NodeProcess(ns, {
        "model_path": tiny_model_dir("qwen2_5_vl"), "device": "cpu", "window_rate": 0.0, "window_duration": 30.0,
        "window_max_frames": 16, "num_frames": 4, "use_lra": False, "status_rate": 5.0, "image_depth": 50,
        "depth_tolerance": 0.02, "cameras": "[rgbd, plain]", "camera.rgbd.depth_topic": "rgbd/depth",
        "camera.rgbd.camera_info_topic": "rgbd/camera_info"}, tmp_path / "stvg_node.log")
    client = Client(namespace=ns)
    client.Image, client.CameraInfo = Image, CameraInfo
    try:
        tubes, status = client.collect(Tube, "tube", 20), client.collect(Status, "status", 10)
        qos = qos_profile_sensor_data
        cams = {n: client.node.create_publisher(Image, f"{n}/image", qos) for n in ("rgbd", "plain")}
        depth = client.node.create_publisher(Image, "rgbd/depth", qos)
        info = client.node.create_publisher(CameraInfo, "rgbd/camera_info", qos)
        request = client.node.create_publisher(GroundingQuery, "query_request", 10)
        wait_ready(status, (*cams.values(), depth, info, request), proc, active_timeout=120)
        for i in range(8):
            s = T0 + i * DT
            info.publish(_info(client, s))
            depth.publish(_depth(client, s + 3_000_000))
            for n, pub in cams.items():
                pub.publish(image_msg(s, W, H, frame_id=f"{n}_optical" if n == "plain" else "test_cam_optical",
                                      seed=i))
            time.sleep(0.02)
        wait_for(lambda: all(c.window_frames >= 6 for c in status[-1].cameras), 20, "frames in both windows", proc)
        answers = {}
        for n in ("rgbd", "plain"):
            request.publish(GroundingQuery(id=n, text="the red square", camera=n))
            answers[n] = wait_for(lambda: next((t for t in tubes if t.query_id == n), None), 60, f"tube {n}", proc)
        assert answers["rgbd"].boxes and answers["rgbd"].position_frame_id == "test_cam_optical"
        for b in answers["rgbd"].boxes:
            assert b.position_valid and b.position.z == pytest.approx(Z, abs=1e-3), b.position_reason
        assert answers["plain"].boxes and not any(b.position_valid for b in answers["plain"].boxes)
        by_name = {c.name: c for c in status[-1].cameras}
        assert by_name["rgbd"].depth_received >= 8 and by_name["rgbd"].depth_problem == ""
        assert by_name["plain"].depth_received == 0
    finally:
        client.close()
        if proc.alive():
            proc.stop()


def test_stvg_query_asks_all_cameras_from_the_cli(multi):
    """README's CLI: ``stvg_query --wait --each-camera`` prints one Tube per camera (``--json``: a list), and
    ``--camera`` asks one."""
    import json

    node, client = multi
    _cameras_settled(client, node)
    run = [sys.executable, "-m", "stvg_ros.ros.query_client", "the red square", "--wait", "--json", "--namespace",
           node.namespace, "--timeout", "90"]
    out = subprocess.run(run + ["--each-camera"], env=node_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    tubes = json.loads(out.stdout)
    assert sorted(t["camera"] for t in tubes) == sorted(CAMERAS) and all(t["boxes"] for t in tubes)
    out = subprocess.run(run + ["--camera", "hd"], env=node_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and json.loads(out.stdout)["camera"] == "hd", out.stderr[-2000:]


def test_cleanup_and_configure_switch_between_several_cameras_and_one(tiny_model_dir):
    """The lifecycle with ``cameras``: configure builds the several-camera service, cleanup goes back to the
    one-camera one, and a changed ``cameras`` takes effect at the next configure (in process, no DDS traffic)."""
    require_ros()
    import rclpy
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from ros_harness import DOMAIN_ID
    from stvg_ros.ros.node import StvgNode
    from stvg_ros.stream.service import GroundingService

    ok = TransitionCallbackReturn.SUCCESS
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=DOMAIN_ID)
    node = StvgNode(context=ctx, start_parameter_services=False, parameter_overrides=[
        Parameter("model_path", value=tiny_model_dir("qwen2_5_vl")), Parameter("device", value="cpu"),
        Parameter("autostart", value=False), Parameter("status_rate", value=0.0),
        Parameter("cameras", value=["left", "right"]), Parameter("camera.right.ingest_side", value=64)])
    try:
        assert node.trigger_configure() == ok
        assert isinstance(node.service, MultiStreamService) and node.service.streams == ["left", "right"]
        assert node.service.stream("right").window.max_side == 64
        assert [c.name for c in node.status().cameras] == ["left", "right"]
        assert node.trigger_activate() == ok and node.status().state == "active"
        assert node.trigger_deactivate() == ok and node.trigger_cleanup() == ok
        assert isinstance(node.service, GroundingService) and node.status().cameras == []
        assert node.set_parameters([Parameter("cameras", value="front,rear,top")])[0].successful
        assert node.trigger_configure() == ok and node.service.streams == ["front", "rear", "top"]
        assert node.trigger_cleanup() == ok
        assert node.set_parameters([Parameter("cameras", value="")])[0].successful
        assert node.trigger_configure() == ok and isinstance(node.service, GroundingService)
        bad = node.set_parameters([Parameter("cameras", value=["a", "a"])])[0]
        assert not bad.successful and "give each camera its own name" in bad.reason
    finally:
        node.shutdown()
        node.destroy_node()
        ctx.try_shutdown()
