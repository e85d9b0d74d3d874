"""The benchmark metrics on hand-computed cases (official HC-STVG / VidSTG evaluator semantics)."""

import math

import pytest

from stvg_ros.evaluation import metrics
from stvg_ros.evaluation.metrics import summarize, tiou, viou


def test_tiou_uses_end_minus_start():
    # inter = 8 - 4 = 4; union = (10 - 2) + (8 - 4) - 4 = 8
    assert tiou((4, 8), (2, 10)) == pytest.approx(0.5)
    # partial overlap: pred (0, 6), gt (3, 9): inter 3, union 6 + 6 - 3 = 9
    assert tiou((0, 6), (3, 9)) == pytest.approx(3 / 9)
    assert tiou((3, 9), (3, 9)) == 1.0


def test_no_overlap_and_touching_spans():
    assert tiou((0, 3), (5, 9)) == 0.0
    assert tiou((0, 5), (5, 9)) == 0.0  # min_end <= max_start
    gt = {f: (0, 0, 10, 10) for f in range(5, 10)}
    pred = {f: (0, 0, 10, 10) for f in range(0, 4)}
    assert viou(pred, gt, (0, 3), (5, 9)) == 0.0
    assert viou(pred, gt, (0, 3), (5, 9), inclusive=False) == 0.0


def test_viou_inclusive_hcstvg():
    # gt frames 2..6 (5 frames), pred 4..8; union 2..8 = 7 frames, intersection 4..6 = 3 frames
    gt = {f: (0, 0, 10, 10) for f in range(2, 7)}
    pred = {f: (0, 0, 10, 10) for f in range(4, 9)}
    pred[5] = (5, 0, 15, 10)  # IoU 1/3 on frame 5
    expected = (1 + 1 / 3 + 1) / 7
    assert viou(pred, gt, (4, 8), (2, 6), inclusive=True) == pytest.approx(expected)


def test_viou_exclusive_vidstg():
    # same boxes, exclusive counting: union range(2, 8) = 6 frames, intersection range(4, 6) = frames 4, 5
    gt = {f: (0, 0, 10, 10) for f in range(2, 7)}
    pred = {f: (0, 0, 10, 10) for f in range(4, 9)}
    pred[5] = (5, 0, 15, 10)
    assert viou(pred, gt, (4, 8), (2, 6), inclusive=False) == pytest.approx((1 + 1 / 3) / 6)


def test_viou_missing_prediction_frame_counts_zero():
    gt = {f: (0, 0, 10, 10) for f in range(0, 4)}
    pred = {0: (0, 0, 10, 10), 1: (0, 0, 10, 10), 3: (0, 0, 10, 10)}  # frame 2 missing
    assert viou(pred, gt, (0, 3), (0, 3)) == pytest.approx(3 / 4)
    assert metrics.gt_viou(pred, gt) == pytest.approx(3 / 4)


def test_viou_on_sampled_frames_only():
    # The paper code's per-clip score: union and intersection are counted over the sampled frames.
    gt = {f: (0, 0, 10, 10) for f in range(10, 31)}
    pred = {0: (0, 0, 10, 10), 10: (0, 0, 10, 10), 20: (5, 0, 15, 10)}
    frames = [0, 10, 20, 30, 40]
    # pred span 0..20, gt 10..30: union sampled {0, 10, 20, 30} = 4, inter {10, 20}: 1 + 1/3
    assert viou(pred, gt, (0, 20), (10, 30), frames=frames) == pytest.approx((1 + 1 / 3) / 4)
    assert metrics.gt_viou(pred, gt, frames=frames) == pytest.approx((1 + 1 / 3 + 0) / 3)


def test_not_found_prediction_scores_zero_but_counts():
    gt = {f: (0, 0, 10, 10) for f in range(0, 5)}
    s = metrics.score(None, gt, None, (0, 4))
    assert s == {"tiou": 0.0, "viou": 0.0, "gt_viou": 0.0}
    assert tiou(None, (0, 4)) == 0.0 and viou({}, gt, None, (0, 4)) == 0.0
    ok = metrics.score(gt, gt, (0, 4), (0, 4))
    summary = summarize([{**ok, "latency": 1.0}, {**s, "latency": 3.0}])
    assert summary["count"] == 2
    assert summary["m_vIoU"] == pytest.approx(50.0) and summary["m_tIoU"] == pytest.approx(50.0)
    assert summary["mean_latency_s"] == pytest.approx(2.0)


def test_time_spans_to_frames():
    # 25 fps: 1.0 s → frame 25, 2.0 s → frame 50 (exclusive end: 51); with stamps: the nearest frame
    assert metrics.time_span_to_frames((1.0, 2.0), fps=25) == (25, 50)
    assert metrics.time_span_to_frames((1.0, 2.0), fps=25, inclusive=False) == (25, 51)
    stamps = [0.0, 0.4, 0.8, 1.2, 1.6]
    assert metrics.time_span_to_frames((0.45, 1.5), stamps=stamps) == (1, 4)
    assert metrics.time_to_frame(-1.0, stamps=stamps) == 0 and metrics.time_to_frame(9.0, stamps=stamps) == 4
    with pytest.raises(ValueError, match="fps"):
        metrics.time_to_frame(1.0)
    # A span given in seconds scores like the same span in frames once converted.
    gt = {f: (0, 0, 10, 10) for f in range(25, 51)}
    pred_s = {1.0 + k / 25: (0, 0, 10, 10) for k in range(0, 26)}
    pred = metrics.frame_boxes_from_stamps(pred_s, fps=25)
    assert viou(pred, gt, metrics.time_span_to_frames((1.0, 2.0), fps=25), (25, 50)) == pytest.approx(1.0)


def test_summarize_thresholds_are_strict_and_per_qtype():
    rows = [
        {"tiou": 0.5, "viou": 0.3, "gt_viou": 0.6, "qtype": "declar"},   # exactly 0.3: not counted at 0.3
        {"tiou": 1.0, "viou": 0.5, "gt_viou": 0.5, "qtype": "declar"},   # exactly 0.5: counted at 0.3 only
        {"tiou": 0.0, "viou": 0.7, "gt_viou": 0.9, "qtype": "inter"},
    ]
    s = summarize(rows)
    assert s["count"] == 3
    assert s["vIoU@0.3"] == pytest.approx(200 / 3) and s["vIoU@0.5"] == pytest.approx(100 / 3)
    assert s["m_vIoU"] == pytest.approx(50.0) and s["m_tIoU"] == pytest.approx(50.0)
    assert s["gt_vIoU"] == pytest.approx(200 / 3)
    d, i = s["per_qtype"]["declar"], s["per_qtype"]["inter"]
    assert d["count"] == 2 and d["vIoU@0.3"] == pytest.approx(50.0) and d["vIoU@0.5"] == pytest.approx(0.0)
    assert i["count"] == 1 and i["m_vIoU"] == pytest.approx(70.0) and i["vIoU@0.5"] == pytest.approx(100.0)
    md = metrics.summary_markdown(s, "t")
    assert "| declar | 2 |" in md and "| all | 3 |" in md
    assert summarize([]) == {"count": 0}


def test_single_frame_spans_follow_the_official_code():
    # The official tIoU uses end - start: a one-frame prediction on a one-frame truth gives 0 tIoU,
    # while inclusive vIoU still counts the one shared frame.
    gt = {5: (0, 0, 10, 10)}
    assert tiou((5, 5), (5, 5)) == 0.0
    assert viou(gt, gt, (5, 5), (5, 5), inclusive=True) == 1.0
    assert math.isclose(viou(gt, gt, (5, 6), (5, 6), inclusive=False), 1.0)
