"""Rendering a tube: the boxes, the span bars and the heatmap land where they should; PNG round trip."""

import numpy as np
import pytest

from fake_adapter import FakeAdapter, clip_with_square
from stvg_ros.config import GroundingConfig
from stvg_ros.grounding.grounder import Grounder
from stvg_ros.render import GT, GT_SPAN, OUT_OF_SPAN, PRED, SPAN, render_tube, save_png
from stvg_ros.grounding.result import GroundingResult, SubQueries


def _result(stamps, start, end, box, relevance=None):
    return GroundingResult(query="the red square", found=True, score=1.0, start=start, end=end,
                           boxes={s: box for s in stamps if start <= s <= end}, track_id=1,
                           sub_queries=SubQueries("the red square", "the red square"), p_yes=0.9,
                           frame_stamps=list(stamps), frame_scores=[float(i) for i in range(len(stamps))],
                           relevance=relevance)


def _has(region, colour, tol=30):
    return bool(np.any(np.all(np.abs(region.astype(int) - np.array(colour)) <= tol, axis=-1)))


def test_boxes_span_and_layout():
    frames = [np.full((100, 200, 3), 255, np.uint8) for _ in range(4)]
    stamps = [0.0, 1.0, 2.0, 3.0]
    result = _result(stamps, 1.0, 2.0, (20.0, 10.0, 100.0, 90.0))
    img = render_tube(frames, stamps, result, gt={0.0: (120.0, 20.0, 180.0, 80.0)}, heatmap=False, height=100)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    tile_w = 200  # height 100 keeps the 2:1 frame
    assert img.shape[1] == 4 * tile_w + 3 * 4
    # locate the strip below the caption: the first row of the first tile's span bar is grey (out of span)
    top = next(y for y in range(img.shape[0]) if np.all(img[y, :tile_w] == OUT_OF_SPAN))
    strip_top = top - 100
    tiles = [img[strip_top:strip_top + 100, i * (tile_w + 4): i * (tile_w + 4) + tile_w] for i in range(4)]
    assert _has(tiles[1], PRED) and _has(tiles[2], PRED)  # in span: predicted box drawn
    assert not _has(tiles[0], PRED) and not _has(tiles[3], PRED)
    assert _has(tiles[0], GT) and not _has(tiles[1], GT)  # ground truth only where given
    # the predicted box's left edge sits at x = 20 in tile 1
    assert _has(tiles[1][:, 19:22], PRED) and not _has(tiles[1][:, 5:15], PRED)
    bars = img[strip_top + 100:strip_top + 110]
    assert _has(bars[:, tile_w + 4: 2 * tile_w + 4], SPAN, tol=3)
    assert _has(bars[:, :tile_w], OUT_OF_SPAN, tol=3)


def test_heatmap_is_hot_where_the_target_is_and_png_round_trip(tmp_path):
    import cv2

    frames, stamps, box = clip_with_square(num_frames=6, size=96, colour=(0, 0, 255), frames_on=(3,), cell=(0, 3),
                                           background=0)
    # black background, blue square at the top-right cell of frame 3: no red anywhere but in the heatmap
    result = Grounder(FakeAdapter(), GroundingConfig(num_frames=6, keep_relevance=True)).ground(
        frames, stamps, "the blue square")
    img = render_tube(frames, stamps, result, heatmap=True, max_frames=6, height=96)
    assert img.shape[1] == 6 * 96 + 5 * 4
    strip_top = img.shape[0] - 34 - 18 - 10 - 96
    tile3 = img[strip_top:strip_top + 96, 3 * 100: 3 * 100 + 96]
    cx, cy = int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)
    assert tile3[cy, cx, 0] > 40  # hot (JET's red end) on the target
    assert tile3[80, 10, 0] < 10  # cold elsewhere
    assert img[strip_top:strip_top + 96, 0:96, 0].max() < 10  # and in frames without the target
    path = save_png(tmp_path / "sub" / "tube.png", img)
    back = cv2.imread(str(path))[..., ::-1]
    np.testing.assert_array_equal(back, img)
    # max_frames limits the strip
    assert render_tube(frames, stamps, result, max_frames=3, heatmap=False, height=96).shape[1] == 3 * 96 + 2 * 4


def test_ground_truth_span_gets_its_own_bar_and_timeline_row():
    frames = [np.full((100, 200, 3), 255, np.uint8) for _ in range(4)]
    stamps = [0.0, 1.0, 2.0, 3.0]
    result = _result(stamps, 1.0, 2.0, (20.0, 10.0, 100.0, 90.0))
    plain = render_tube(frames, stamps, result, heatmap=False, height=100)
    img = render_tube(frames, stamps, result, gt_span=(2.0, 3.0), heatmap=False, height=100, title="key 7")
    assert img.shape[1] == plain.shape[1] and img.shape[0] > plain.shape[0]
    tile_w = 200
    top = next(y for y in range(img.shape[0]) if np.all(img[y, :tile_w] == OUT_OF_SPAN))  # first tile's span bar
    gt_bar = img[top + 10:top + 16]
    assert np.all(gt_bar[:, :tile_w] == OUT_OF_SPAN) and np.all(gt_bar[:, tile_w + 4:2 * tile_w + 4] == OUT_OF_SPAN)
    assert np.all(gt_bar[:, 2 * (tile_w + 4):3 * (tile_w + 4) - 4] == GT_SPAN)
    timeline = img[-8:]
    assert _has(timeline[:, -tile_w:], GT_SPAN, tol=3) and not _has(timeline[:, :tile_w], GT_SPAN, tol=3)


def test_what_cannot_be_drawn_raises_with_the_fix():
    stamps = [0.0, 1.0]
    result = _result(stamps, 0.0, 1.0, (1.0, 1.0, 5.0, 5.0))
    with pytest.raises(ValueError, match="no frames"):
        render_tube([], [], result)
    with pytest.raises(ValueError, match="HxWx3"):
        render_tube([np.zeros((10, 10), np.uint8)] * 2, stamps, result)
    with pytest.raises(ValueError, match="one stamp per frame"):
        render_tube([np.zeros((10, 10, 3), np.uint8)] * 2, [0.0], result)


def test_the_evaluation_picture_is_the_same_renderer_in_node_mode():
    """``stvg-eval``'s PNG without a result (node mode): the record's boxes in green, the ground truth
    in red, both drawn on the frames of the clip."""
    from stvg_ros.evaluation.items import Item
    from stvg_ros.evaluation.reports import report_image
    from stvg_ros.video import Clip

    frames = [np.full((100, 100, 3), 255, np.uint8) for _ in range(4)]
    clip = Clip(frames=frames, frame_indices=[0, 10, 20, 30], stamps=[0.0, 1.0, 2.0, 3.0], fps=10.0, size=(100, 100))
    item = Item(key="v1", query="the dog", gt_span=(10, 20), gt_boxes={10: (60.0, 60.0, 90.0, 90.0)}, inclusive=True,
                num_frames=31, dataset="unit", video="v")
    rec = {"pred_span": [10, 20], "pred_boxes": {"10": [5.0, 5.0, 40.0, 40.0], "20": [5.0, 5.0, 40.0, 40.0]},
           "found": True, "p_yes": 0.8, "score": 0.5, "track_id": None, "viou": 0.1, "tiou": 1.0}
    img = report_image(clip, rec, item, max_frames=4, height=100)
    top = next(y for y in range(img.shape[0]) if np.all(img[y, :100] == OUT_OF_SPAN))
    tiles = [img[top - 100:top, i * 104:i * 104 + 100] for i in range(4)]
    assert _has(tiles[1][:50, :50], PRED) and not _has(tiles[1][:50, :50], GT)  # prediction, green
    assert _has(tiles[1][55:, 55:], GT) and not _has(tiles[0], GT)  # ground truth, red, where annotated
    assert not _has(tiles[0], PRED) and not _has(tiles[3], PRED)  # outside the predicted span: no box
    assert np.all(img[top:top + 10, 104:204] == SPAN) and np.all(img[top + 10:top + 16, 104:204] == GT_SPAN)
    assert np.all(img[top + 10:top + 16, 312:412] == OUT_OF_SPAN)
