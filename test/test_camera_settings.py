"""Several cameras, one model (issue 32), without ROS: the node's ``cameras`` / ``camera.<name>.*`` parameters
resolve to typed per-camera settings (the one-camera parameters as their defaults), and ``Stack.build`` builds one
window and one proposal stage per camera around one grounder."""

from __future__ import annotations

import numpy as np
import pytest
from fake_grounder import FakeGrounder

from stvg_ros.config import ConfigError, ProposalConfig, ServingConfig
from stvg_ros.node_params import NodeSettings, UserParams, all_params, camera_param
from stvg_ros.stack import Stack, StackSettings
from stvg_ros.stream.multi import MultiStreamService
from stvg_ros.stream.requests import GroundingRequest
from stvg_ros.stream.window import NS

pytestmark = pytest.mark.unit
DEFAULTS = {p.name: p.default for p in all_params()}


def test_one_camera_by_default_and_the_node_parameters_as_each_cameras_defaults():
    assert NodeSettings.from_values(DEFAULTS).cameras == ()
    s = NodeSettings.from_values({**DEFAULTS, "cameras": ["front", "rear"], "use_compressed": True,
                                  "image_reliability": 1, "image_depth": 7, "camera.rear.image_topic": "/rear/raw",
                                  "camera.rear.transport": "compressed", "camera.rear.reliability": "best_effort",
                                  "camera.rear.qos_depth": 2, "camera.rear.ingest_side": 320,
                                  "camera.rear.detections_topic": "/rear/dets"})
    front, rear = s.cameras
    assert (front.name, front.image_topic, front.transport, front.reliability, front.qos_depth, front.ingest_side,
            front.detections_topic) == ("front", "front/image", "both", "reliable", 7, 0, "front/detections")
    assert (rear.image_topic, rear.transport, rear.reliability, rear.qos_depth, rear.ingest_side,
            rear.detections_topic) == ("/rear/raw", "compressed", "best_effort", 2, 320, "/rear/dets")
    # a comma-separated string names them too (a launch argument), an entry name=topic with its image topic
    assert [c.name for c in NodeSettings.from_values({**DEFAULTS, "cameras": "a, b"}).cameras] == ["a", "b"]
    a, b = NodeSettings.from_values({**DEFAULTS, "cameras": "a=/cam_a/image_raw, b"}).cameras
    assert (a.name, a.image_topic, b.name, b.image_topic) == ("a", "/cam_a/image_raw", "b", "b/image")
    # camera.<name>.image_topic wins over the list's topic, with a note
    s = NodeSettings.from_values({**DEFAULTS, "cameras": ["a=/x"], "camera.a.image_topic": "/y"})
    assert s.cameras[0].image_topic == "/y" and any("camera.a.image_topic /y wins" in n for n in s.notes)


@pytest.mark.parametrize("values, fix", [
    ({"cameras": ["front", "front"]}, "give each camera its own name"),
    ({"cameras": ["all"]}, "other than 'all'"),
    ({"cameras": "front=,rear"}, "names no topic"),
    ({"cameras": "front=/a,front=/b"}, "give each camera its own name"),
    ({"cameras": ["front"], "camera.front.transport": "ftp"}, "raw, compressed, both"),
    ({"cameras": ["front"], "camera.front.reliability": "sometimes"}, "best_effort"),
    ({"cameras": ["front"], "camera.front.qos_depth": -1}, "0 or a positive"),
])
def test_bad_camera_settings_are_refused_naming_the_fix(values, fix):
    with pytest.raises(ConfigError, match=fix):
        NodeSettings.from_values({**DEFAULTS, **values})


def test_a_setting_of_a_camera_not_in_the_list_is_ignored_with_a_note():
    s = NodeSettings.from_values({**DEFAULTS, "cameras": ["front"], "camera.rear.image_topic": "/x"})
    assert [c.name for c in s.cameras] == ["front"]
    assert any("camera.rear.image_topic ignored" in n and "add it to cameras" in n for n in s.notes), s.notes


def test_per_camera_settings_are_declared_when_set_and_unknown_keys_are_noted():
    assert camera_param("camera.front.image_topic").name == "camera.front.image_topic"
    assert camera_param("camera.front.colour") is None and camera_param("cameras") is None
    user = UserParams({"cameras": ["front"], "camera.front.transport": "raw", "camera.front.colour": "red"})
    declared = {name for name, _, _ in user.to_declare()}
    assert "camera.front.transport" in declared and "camera.front.colour" not in declared
    assert any("camera.front.colour" in n for n in user.notes)
    assert user.settings()[0].cameras[0].transport == "raw"


def test_the_stack_builds_one_window_and_stage_per_camera_around_one_grounder():
    settings = NodeSettings.from_values({**DEFAULTS, "cameras": ["front", "rear"], "camera.rear.ingest_side": 200,
                                         "window_rate": 0.0, "proposals_enabled": True, "proposals_source": "motion"})
    grounder = FakeGrounder()
    stack = Stack.build(settings, grounder=grounder, threaded=False)
    try:
        svc = stack.service
        assert isinstance(svc, MultiStreamService) and svc.streams == ["front", "rear"]
        assert all(svc.stream(n).grounder is grounder for n in svc.streams)  # one model
        assert set(stack.stages) == {"front", "rear"} and stack.stages["front"] is not stack.stages["rear"]
        assert svc.stream("front").stage is stack.stages["front"]
        assert svc.stream("rear").window.max_side == 200 and svc.stream("front").window.max_side == 2 * 336
        stack.reconfigure(settings)  # a live change keeps each camera's own side
        assert svc.stream("rear").window.max_side == 200
        for i in range(6):
            svc.ingest("rear", 1000 * NS + i * NS // 4, lambda: np.zeros((48, 64, 3), np.uint8), "rear_cam")
        answers: list = []
        svc.submit(GroundingRequest("q", "the person", stream="all"), answers.append)
        svc.run_pending()
        assert [a.stream for a in answers] == ["rear"] and answers[0].tube.frame_id == "rear_cam"
    finally:
        stack.service.stop(timeout=1.0)


def test_python_users_name_cameras_in_stack_settings():
    stack = Stack.build(StackSettings(serving=ServingConfig(window_rate=0.0), cameras=("left", "right"),
                                      proposals=ProposalConfig(enabled=False)), grounder=FakeGrounder(), threaded=False)
    try:
        assert stack.service.streams == ["left", "right"] and stack.stages == {}
    finally:
        stack.service.stop(timeout=1.0)


def test_the_shipped_two_camera_example_is_valid():
    """config/two_cameras.yaml, flattened as rcl reads a params file (nested keys joined by dots)."""
    from pathlib import Path

    import yaml

    def flat(d, prefix=""):
        for k, v in d.items():
            yield from flat(v, f"{prefix}{k}.") if isinstance(v, dict) else [(f"{prefix}{k}", v)]

    data = yaml.safe_load((Path(__file__).parent.parent / "config" / "two_cameras.yaml").read_text())
    values = dict(flat(data["/**"]["ros__parameters"]))
    front, rear = NodeSettings.from_values({**DEFAULTS, **values}).cameras
    assert (front.name, front.transport, rear.name, rear.transport, rear.ingest_side) == \
        ("front", "raw", "rear", "compressed", 640)
