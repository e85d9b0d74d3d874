"""A real clip replayed from a bag by the package's player reaches the node whole, both at their
defaults: 100 raw 768x576 frames of ``test/data/real/vtest.avi`` (a bag written with ``rosbags``),
``stvg_play_bag`` in its own process, the installed node with no parameter but the device.  Before
the fix 17 % of such frames arrived (the rest lost in fragments on the best-effort subscription);
the whole clip's figures: bench/bench_bag_replay.py."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from ros_harness import Client, NodeProcess, node_env, require_ros, unique_namespace, wait_for, wait_ready

pytestmark = pytest.mark.ros

CLIP = Path(__file__).parent / "data" / "real" / "vtest.avi"
FRAMES = 100


@pytest.mark.slow  # ~40 s on 2 cores: node start-up, a 10 s replay of 130 MB of frames
def test_real_clip_replayed_at_defaults_loses_nothing(tmp_path):
    require_ros()
    from stvg_ros.evaluation import bags
    from stvg_ros.msg import Status

    stamps = [bags.DEFAULT_START_TIME + i / 10.0 for i in range(FRAMES)]
    bag = bags.write_bag(tmp_path / "vtest_raw", bags.video_stream(CLIP, count=FRAMES), stamps, image_format="raw")
    proc = NodeProcess(unique_namespace(), {"device": "cpu", "status_rate": 5.0}, tmp_path / "node.log")
    client = Client(namespace=proc.namespace)
    try:
        status = client.collect(Status, "status", 10)
        wait_ready(status, (), proc)
        play = subprocess.run([sys.executable, "-m", "stvg_ros.ros.bag_player", str(bag), "--remap",
                               f"/camera/image_raw:={proc.namespace}/image", "--wait-timeout", "30"],
                              env=node_env(), capture_output=True, text=True, timeout=180)
        assert play.returncode == 0, play.stderr[-2000:]
        assert f"published {FRAMES} messages" in play.stderr + play.stdout
        deadline, last, since = time.monotonic() + 15, -1, time.monotonic()
        while time.monotonic() < deadline:  # the count settles once the executor is through the last frames
            cur = status[-1].frames_received
            last, since = (cur, time.monotonic()) if cur != last else (last, since)
            if time.monotonic() - since > 1.5:
                break
            time.sleep(0.1)
        s = status[-1]
        print(f"\n{s.frames_received} of {FRAMES} frames received, {s.frames_lost} reported lost")
        assert s.frames_received >= 0.99 * FRAMES, (s.frames_received, s.frames_lost)
    finally:
        client.close()
        if proc.alive():
            proc.stop()
