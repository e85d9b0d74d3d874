"""Box geometry (stvg_ros.boxes): clipping, IoU, filling a track's boxes over stamps."""

import pytest

from stvg_ros.boxes import box_iou, clip_box, fill_boxes, fill_interior


def test_clip_box_clips_and_orders_the_corners():
    assert clip_box((-5, 10, 200, 5), (80, 80)) == (0.0, 5.0, 80.0, 10.0)
    assert clip_box((10, 20, 30, 40), (100, 50)) == (10.0, 20.0, 30.0, 40.0)  # (height, width): x capped at 50
    assert clip_box((10, 20, 90, 140), (100, 50)) == (10.0, 20.0, 50.0, 100.0)


def test_box_iou_without_plus_one():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    # overlap 5x10 = 50, union 100 + 100 - 50 = 150
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # touching edges: no area
    assert box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0  # degenerate boxes do not divide by zero


def test_fill_boxes_interpolates_and_holds():
    boxes = [None, (0, 0, 10, 10), None, None, (30, 0, 40, 10), None]
    stamps = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    out = fill_boxes(boxes, stamps, 0, 5)
    assert out[0] == (0, 0, 10, 10)  # held from the first box
    assert out[2] == pytest.approx((10, 0, 20, 10)) and out[3] == pytest.approx((20, 0, 30, 10))
    assert out[5] == (30, 0, 40, 10)
    assert len(fill_boxes(boxes, stamps, 2, 3)) == 2


def test_fill_interior_bridges_gaps_but_not_the_ends():
    boxes = [None, (0, 0, 10, 10), None, (20, 0, 30, 10), None]
    out = fill_interior(boxes, [0.0, 1.0, 2.0, 3.0, 4.0])
    assert out[0] is None and out[4] is None
    assert out[2] == pytest.approx((10, 0, 20, 10))
    assert fill_interior([None, None], [0.0, 1.0]) == [None, None]
