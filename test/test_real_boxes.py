"""Proposal-free boxes on real video: the fine frame geometry and `auto`'s boxes from relevance peaks
planted on the hand-boxed people and cup of test/data/real (bench/bench_real_boxes.py measures the same)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from stvg_ros.adapters.base import AdapterOptions
from stvg_ros.adapters.qwen import QWEN_VIDEO_PIXELS, qwen_frame_size
from stvg_ros.config import ConfigError, GroundingConfig

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import bench_real_boxes as real  # noqa: E402  (the benchmark's planting and measure: one definition)


@pytest.fixture(scope="module")
def real_frames():
    return real.load_frames(real.DEFAULT_ANNOTATIONS)


def test_fine_frame_size_keeps_a_person_sized_grid_at_any_camera_resolution():
    cells = lambda h, w: tuple(v // 28 for v in qwen_frame_size(h, w, "fine", 224, QWEN_VIDEO_PIXELS))  # noqa: E731
    assert cells(480, 640) == cells(576, 768) == (17, 23)  # 391 tokens per 2-frame slot
    assert cells(720, 1280) == (15, 27)
    assert cells(1080, 1920) == (15, 27)  # the processor would give 1,196 tokens per slot at 1280x720
    assert tuple(v // 28 for v in qwen_frame_size(576, 768, "fixed", 224, QWEN_VIDEO_PIXELS)) == (7, 9)
    # never above the processor's own max pixels (the shipped synthetic model's 112²: as 'fixed')
    assert qwen_frame_size(480, 640, "fine", 112, (56 * 56, 112 * 112)) == \
        qwen_frame_size(480, 640, "fixed", 112, (56 * 56, 112 * 112))
    assert GroundingConfig(frame_resize="fine").frame_resize == "fine"
    AdapterOptions(frame_resize="fine")
    with pytest.raises(ConfigError, match="fine"):
        GroundingConfig(frame_resize="finest")


def test_fine_frame_resize_reaches_the_qwen_adapter(tiny_model_dir):
    from stvg_ros.adapters import load_adapter

    qwen = load_adapter(tiny_model_dir("qwen2_5_vl"))
    qwen.configure(AdapterOptions(frame_resize="fine"))
    lo, hi = qwen._processor_pixels()
    assert qwen.target_size(480, 640) == qwen_frame_size(480, 640, "fine", qwen._target_side(), (lo, hi))
    assert qwen.input_side <= int(hi ** 0.5)


def test_auto_boxes_whole_people_from_peaks_on_a_fine_grid(real_frames):
    """Centred peaks on the fine grid (23x17 tokens): `auto` must box the whole object, not one garment.
    Before: mean IoU 0.58 with 12 part boxes of 65 (region growing stopped at a shirt or trousers); at
    Qwen's default 224 px frames (9x7 tokens) 0.38."""
    row, = real.measure(real_frames, ["qwen-fine"], ["auto"], placements={"centred": (0.0, 0.0)})
    assert row["n_centred"] == 65
    assert row["iou_centred"] >= 0.60, row
    assert row["parts_centred"] <= 7, row
    assert row["per_clip"]["vtest.avi centred"] >= 0.5, row  # the people alone
