"""`make demo`'s program: the installed node on the bundled synthetic clip, end to end over DDS,
scored against the clip's ground-truth tube."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import cv2
import pytest

from ros_harness import INSTALL, REPO, node_env, require_ros

#: The demo's vIoU with the shipped model must reach this.  Measured 2026-12-01 with the committed
#: models/stvg-synth-qwen (run N) on the bundled clip (test seed 0, "the big purple triangle that grows"),
#: node defaults, no proposals, boxes from relevance-seeded segmentation (issue 15): vIoU 0.612, tIoU 0.571,
#: mean box IoU 0.98 on the true span's frames (with the token-cell boxes before: vIoU 0.206).  The demo is
#: deterministic on CPU; the bar leaves a margin for BLAS differences between machines.  Re-measure after
#: retraining with ONE command (it prints the number):
#:     make demo | grep "vIoU vs ground truth"
DEMO_VIOU_BAR = 0.55
#: the boxes must fit the target on the frames where both exist
DEMO_BOX_IOU_BAR = 0.8
BOX_FIT_LINE = re.compile(r"box IoU vs ground truth on the tube's frames inside the true span: mean (\d+\.\d{3})")

VIOU_LINE = re.compile(r"vIoU vs ground truth: (\d+\.\d{3})  \(tIoU (\d+\.\d{3})\)")


@pytest.mark.ros
def test_demo_prints_the_tube_its_score_and_writes_the_annotated_png(tmp_path):
    require_ros()
    out = tmp_path / "demo.png"
    env = node_env({"STVG_ROS_CACHE": str(tmp_path / "cache")})
    env.pop("STVG_ROS_DEFAULT_MODEL", None)  # the real default: the shipped synthetic model
    proc = subprocess.run([sys.executable, str(INSTALL / "lib" / "stvg_ros" / "stvg_demo"), "--out", str(out),
                           "--device", "cpu"], env=env, capture_output=True, text=True, timeout=300)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-4000:]
    meta = json.loads((REPO / "data" / "demo" / "clip.json").read_text())
    assert "MEANINGLESS" not in text, text[-3000:]  # the shipped model is trained: no random-model banner
    assert "synthetic-world model" in text and "stvg-synth-qwen" in text  # ...but its limits are stated
    assert f"Tube for query 'demo': '{meta['query']}'" in text
    assert "frame_id=demo_camera" in text
    # the clip's own sub-queries went through GroundingQuery to the node
    assert f"sub-queries (caller): attribute={meta['attribute_query']!r} action={meta['action_query']!r}" in text
    box_lines = [line for line in text.splitlines() if line.strip().startswith("t=")]
    assert box_lines, text[-3000:]
    stamps = {f"{s:8.3f}" for s in meta["stamps"]}
    for line in box_lines:  # every box is stamped with a frame of the clip
        assert line.split("t=")[1].split(" s")[0] in stamps, line
    m = VIOU_LINE.search(text)
    assert m, f"no 'vIoU vs ground truth' line:\n{text[-3000:]}"
    viou, tiou = float(m.group(1)), float(m.group(2))
    assert 0.0 <= tiou <= 1.0 and 0.0 <= viou <= 1.0
    assert viou >= DEMO_VIOU_BAR, f"demo vIoU {viou:.3f} is below the bar {DEMO_VIOU_BAR} (tIoU {tiou:.3f})"
    fit = BOX_FIT_LINE.search(text)
    assert fit and float(fit.group(1)) >= DEMO_BOX_IOU_BAR, text[-3000:]
    assert "existence: found=" in text
    img = cv2.imread(str(out))
    assert img is not None and img.shape[0] > 50 and img.shape[1] > 200


@pytest.mark.ros
def test_random_fallback_prints_the_meaningless_banner(tmp_path):
    """STVG_ROS_DEFAULT_MODEL=tiny: the random model, and the demo says its answer is meaningless."""
    require_ros()
    env = node_env({"STVG_ROS_CACHE": str(tmp_path / "cache"), "STVG_ROS_DEFAULT_MODEL": "tiny"})
    proc = subprocess.run([sys.executable, str(INSTALL / "lib" / "stvg_ros" / "stvg_demo"), "--out",
                           str(tmp_path / "demo.png"), "--device", "cpu"], env=env, capture_output=True, text=True,
                          timeout=300)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-4000:]
    assert "MEANINGLESS" in text and "tiny-qwen2_5_vl" in text
    assert "synthetic-world model" not in text
    assert VIOU_LINE.search(text)  # scored all the same


def test_bundled_clip_is_what_make_demo_clip_writes(tmp_path):
    """data/demo is the generator's clip (regenerate with scripts/make_demo_clip when the world changes),
    and its truth matches the frames' stamps and sizes."""
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "make_demo_clip"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    bundled = REPO / "data" / "demo"
    fresh = json.loads((tmp_path / "clip.json").read_text())
    meta = json.loads((bundled / "clip.json").read_text())
    assert meta == fresh, "data/demo/clip.json is stale: run scripts/make_demo_clip"
    for name in meta["frames"]:
        a, b = cv2.imread(str(bundled / name)), cv2.imread(str(tmp_path / name))
        assert a is not None and b is not None and (a == b).all(), f"{name} is stale: run scripts/make_demo_clip"
    truth = meta["truth"]
    assert len(meta["stamps"]) == len(meta["frames"]) == 20
    assert 0 <= truth["start_frame"] <= truth["end_frame"] < len(meta["frames"])
    assert sorted(map(int, truth["boxes"])) == list(range(truth["start_frame"], truth["end_frame"] + 1))
    h, w = cv2.imread(str(bundled / meta["frames"][0])).shape[:2]
    for x0, y0, x1, y1 in truth["boxes"].values():
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h


@pytest.mark.ros
def test_score_against_truth_maps_stamped_boxes_back_to_frames():
    """The demo's scoring: the true tube as a Tube message scores 1, a half-span tube less, a shifted box 0."""
    require_ros()
    from stvg_ros.msg import Tube, TubeBox
    from stvg_ros.ros.convert import ns_to_stamp
    from stvg_ros.ros.demo import score_against_truth

    meta = json.loads((REPO / "data" / "demo" / "clip.json").read_text())
    truth, stamps = meta["truth"], meta["stamps"]

    def tube(frames, dx=0.0):
        t = Tube()
        for f in frames:
            x0, y0, x1, y1 = truth["boxes"][str(f)]
            t.boxes.append(TubeBox(stamp=ns_to_stamp(round(stamps[f] * 1e9)), center_x=(x0 + x1) / 2 + dx,
                                   center_y=(y0 + y1) / 2, size_x=float(x1 - x0), size_y=float(y1 - y0)))
        t.start, t.end = t.boxes[0].stamp, t.boxes[-1].stamp
        return t

    s, e = truth["start_frame"], truth["end_frame"]
    assert score_against_truth(tube(range(s, e + 1)), truth, stamps) == pytest.approx((1.0, 1.0))
    half = score_against_truth(tube(range(s, s + (e - s) // 2 + 1)), truth, stamps)
    assert 0.0 < half[0] < 1.0 and 0.0 < half[1] < 1.0
    assert score_against_truth(tube(range(s, e + 1), dx=200.0), truth, stamps) == (0.0, 1.0)
    assert score_against_truth(Tube(), truth, stamps) == (0.0, 0.0)
