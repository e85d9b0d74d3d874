"""Time span rules on hand-made curves and frame scores (boxes over the span: test_boxes.py)."""

import numpy as np
import pytest

from stvg_ros.grounding.temporal import choose_span, frame_scores, span_grow, span_length, span_topk


def test_span_lengths_match_the_paper_and_the_official_code():
    assert span_length(0.35, 20) == 7  # paper: top-7 of 20
    assert span_length(0.55, 20) == 11  # official: 11 frames of 20
    assert span_length(0.35, 1) == 1 and span_length(0.01, 10) == 1 and span_length(1.0, 4) == 4


def test_topk_is_the_best_contiguous_window_of_k():
    scores = [0, 0, 1, 5, 6, 5, 1, 0, 0, 0]
    assert span_topk(scores, 0.3) == (3, 5)
    # a stray spike far from the plateau does not stretch the span (the hull would give 1..7)
    scores = [0, 9, 0, 0, 0, 4, 4, 4, 0, 0]
    assert span_topk(scores, 0.3) == (5, 7)
    assert span_topk([3.0], 0.35) == (0, 0)


def test_grow_follows_the_higher_neighbour_up_to_the_limit():
    scores = [0.1, 0.2, 0.9, 0.5, 1.0, 0.3, 0.2, 0.8, 0.1, 0.0]
    # peak 4; neighbours 0.5 (left) vs 0.3 -> left; then 0.9 vs 0.3 -> left; then 0.2 vs 0.3 -> right
    assert span_grow(scores, 0.4) == (2, 5)
    assert span_grow(scores, 0.1) == (4, 4)
    # reaches the clip's edge, then can only grow to the other side
    assert span_grow([5, 4, 3, 2, 1, 0], 0.5) == (0, 2)


def test_grow_stops_on_a_tie_like_the_official_code():
    assert span_grow([0, 0, 3, 0, 0, 0], 1.0) == (2, 2)


def test_choose_span_dispatch_and_contiguity():
    rng = np.random.default_rng(0)
    for _ in range(50):
        s = rng.random(20)
        for rule in ("topk", "grow"):
            a, b = choose_span(s, rule, 0.35, 0.55)
            assert 0 <= a <= b < 20
    assert choose_span(np.arange(20.0), "topk", 0.35, 0.55) == (13, 19)
    with pytest.raises(ValueError):
        choose_span([1.0], "hull", 0.35, 0.55)


def test_frame_scores_are_max_inside_the_box_and_zero_without_one():
    maps = np.zeros((3, 10, 10), np.float32)
    maps[0, 2, 3] = 5.0
    maps[1, 8, 8] = 7.0  # outside the frame-1 box
    maps[2, 0, 0] = 9.0
    boxes = [(2, 1, 5, 4), (0, 0, 5, 5), None]
    np.testing.assert_allclose(frame_scores(maps, 1.0, boxes), [5.0, 0.0, 0.0])
