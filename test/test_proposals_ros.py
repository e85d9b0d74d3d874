"""The node with its live proposal stage on (a tiny random Grounding DINO), over real DDS.

Random detector weights still score boxes, so tracks exist and the grounder must choose one of them:
the Tube's ``track_id`` names it (it is "" on the proposal-free path).
"""

from __future__ import annotations

import ast
import time

import pytest

from ros_harness import Client, NodeProcess, image_msg, require_ros, unique_namespace, wait_for, wait_ready

pytestmark = pytest.mark.ros

NS = 1_000_000_000
T0 = 2_000 * NS
DT = 100_000_000  # 10 Hz


@pytest.fixture(scope="module")
def detector_dir(tmp_path_factory):
    from stvg_ros.proposals.tiny import tiny_detector

    return tiny_detector("grounding_dino", tmp_path_factory.mktemp("gdino"))


def _start(tiny_model_dir, tmp_path_factory, params):
    base = {"model_path": tiny_model_dir("qwen2_5_vl"), "device": "cpu", "window_rate": 0.0,
            "window_duration": 30.0, "window_max_frames": 32, "num_frames": 4, "lra_steps": 1,
            "status_rate": 10.0, "image_depth": 50}
    return NodeProcess(unique_namespace(), {**base, **params}, tmp_path_factory.mktemp("node") / "stvg_node.log")


def test_node_grounds_on_live_proposals(tiny_model_dir, tmp_path_factory, detector_dir):
    require_ros()
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from stvg_ros.msg import GroundingQuery, Status, Tube

    proc = _start(tiny_model_dir, tmp_path_factory, {
        "proposals_enabled": True, "proposals_detector_path": detector_dir, "proposals_device": "cpu",
        "proposals_rate_hz": 0.0, "proposals_detect_every": 1})
    client = Client(namespace=proc.namespace)
    try:
        tubes = client.collect(Tube, "tube", 50)
        status = client.collect(Status, "status", 10)
        diagnostics = client.collect(DiagnosticArray, "/diagnostics", 50)
        cam = client.node.create_publisher(Image, "image", qos_profile_sensor_data)
        ask = client.node.create_publisher(GroundingQuery, "query_request", 10)
        wait_ready(status, (cam, ask), proc)
        for i in range(8):
            cam.publish(image_msg(T0 + i * DT, 96, 72, seed=i))
            time.sleep(0.02)
        wait_for(lambda: status[-1].window_frames >= 6, 20, "frames in the window", proc)
        ask.publish(GroundingQuery(id="p1", text="the man walking to the right"))
        tube = wait_for(lambda: next((t for t in tubes if t.query_id == "p1"), None), 120, "the tube", proc)
        assert tube.reason == "", tube.reason
        assert tube.track_id != "", "the tube should come from one of the live tracks"
        assert tube.boxes
        assert "proposals (detector): grounding_dino" in proc.log()

        def stage_stats():
            for array in reversed(diagnostics):
                for st in array.status:
                    if proc.namespace in st.name:
                        return next((v.value for v in st.values if v.key == "proposals"), None)
            return None

        stats = wait_for(stage_stats, 10, "the stage's numbers on /diagnostics", proc)
        numbers = ast.literal_eval(stats)
        assert numbers["keyframes"] >= 6 and numbers["detector_ms_per_keyframe"] > 0  # every kept frame detected
        assert numbers["last_error"] == ""
    finally:
        client.close()
        if proc.alive():
            proc.stop()


def test_missing_detector_fails_configure_with_the_fix_and_the_node_lives(tiny_model_dir, tmp_path_factory):
    require_ros()
    proc = _start(tiny_model_dir, tmp_path_factory, {
        "proposals_enabled": True, "proposals_detector_path": "/nonexistent/detector"})
    try:
        wait_for(lambda: "configure failed: proposal stage" in proc.log(), 120, "the configure failure", proc)
        assert "proposals_detector_path" in proc.log()
        time.sleep(0.5)
        assert proc.alive()
    finally:
        if proc.alive():
            proc.stop()
