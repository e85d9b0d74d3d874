"""`make demo`'s program: the installed node on the bundled clip, end to end over DDS."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import pytest

from ros_harness import INSTALL, REPO, node_env, require_ros

pytestmark = pytest.mark.ros


def test_demo_prints_the_tube_and_writes_the_annotated_png(tmp_path):
    require_ros()
    out = tmp_path / "demo.png"
    env = node_env({"STVG_ROS_CACHE": str(tmp_path / "cache")})  # builds the embedded default afresh
    proc = subprocess.run([sys.executable, str(INSTALL / "lib" / "stvg_ros" / "stvg_demo"), "--out", str(out),
                           "--device", "cpu"], env=env, capture_output=True, text=True, timeout=300)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-4000:]
    meta = json.loads((REPO / "data" / "demo" / "clip.json").read_text())
    assert "MEANINGLESS" in text  # the random default model says so plainly
    assert f"Tube for query 'demo': '{meta['query']}'" in text
    assert "frame_id=demo_camera" in text
    box_lines = [line for line in text.splitlines() if line.strip().startswith("t=")]
    assert box_lines, text[-3000:]
    stamps = {f"{s:8.3f}" for s in meta["stamps"]}
    for line in box_lines:  # every box is stamped with a frame of the clip
        assert line.split("t=")[1].split(" s")[0] in stamps, line
    img = cv2.imread(str(out))
    assert img is not None and img.shape[0] > 50 and img.shape[1] > 200
