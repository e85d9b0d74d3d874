"""Spatial choice: proposal scoring, stamp matching, the proposal-free attention track."""

import numpy as np

from stvg_ros.grounding.relevance import upsample_maps
from stvg_ros.grounding.spatial import (
    ATTENTION_TRACK, attention_track, choose_track, match_stamps, max_in_box, peak_region_box, smooth_boxes
)

GRID = (4, 4)
CONTENT = (0.0, 0.0, 80.0, 80.0)
SIZE = (80, 80)  # H, W; one cell = 20x20 px


def _maps(T=5, hot=((2, 1, 2, 9.0),)):
    m = np.ones((T, *GRID), np.float32)
    for t, r, c, v in hot:
        m[t, r, c] = v
    return m


def test_match_stamps_within_tolerance_only():
    track = {1.0: (0, 0, 1, 1), 2.0004: (1, 1, 2, 2), 5.0: (2, 2, 3, 3)}
    got = match_stamps([1.0, 2.0, 3.0, 5.0], track, tolerance=1e-3)
    assert got == [(0, 0, 1, 1), (1, 1, 2, 2), None, (2, 2, 3, 3)]
    assert match_stamps([1.0], {}, 1e-3) == [None]


def test_proposal_scoring_picks_the_planted_track():
    stamps = [0.0, 0.5, 1.0, 1.5, 2.0]
    maps = _maps(hot=((2, 1, 2, 9.0), (4, 3, 0, 4.0)))  # strongest at frame 2 cell (1, 2)
    target = {1.0: (40.0, 20.0, 60.0, 40.0), 1.5: (42.0, 22.0, 62.0, 42.0)}  # covers cell (1, 2) at frame 2
    distractor = {s: (0.0, 60.0, 20.0, 80.0) for s in stamps}  # cell (3, 0) all along: max 4
    elsewhere = {7.0: (40.0, 20.0, 60.0, 40.0)}  # no box in the sampled frames: skipped
    best, tracks, _, _, reason = choose_track(maps, GRID, CONTENT, SIZE, stamps,
                                              {"d": distractor, "t": target, "x": elsewhere}, 0.5, 1e-3)
    assert best.track_id == "t" and reason == ""
    assert {t.track_id for t in tracks} == {"d", "t"}
    scores = {t.track_id: t.score for t in tracks}
    assert scores["t"] > scores["d"] > 1.0
    assert best.boxes[0] is None and best.boxes[2] == (40.0, 20.0, 60.0, 40.0)


def test_no_usable_proposal_falls_back_to_the_attention_track():
    stamps = [0.0, 0.5, 1.0, 1.5, 2.0]
    best, tracks, _, _, reason = choose_track(_maps(), GRID, CONTENT, SIZE, stamps, {"x": {9.0: (0, 0, 5, 5)}},
                                              0.5, 1e-3)
    assert best.track_id == ATTENTION_TRACK and len(tracks) == 1 and "no proposal" in reason
    # only frame 2 has a peak: flat frames hold its box instead of voting for the whole frame
    assert all(b == (40.0, 20.0, 60.0, 40.0) for b in best.boxes)


def test_peak_region_is_the_peaks_connected_component():
    m = np.zeros((5, 5), np.float32)
    m[1, 1], m[1, 2], m[2, 2] = 10, 8, 7  # the peak's blob
    m[4, 4] = 9  # above threshold but not connected
    assert peak_region_box(m, 0.5) == (1, 1, 2, 2)
    assert peak_region_box(np.ones((3, 3)), 0.5) == (0, 0, 2, 2)  # flat: the whole grid


def test_threshold_is_relative_to_the_frames_range():
    m = np.full((4, 4), 1.0, np.float32)  # baseline ~1, as relevance ratios are
    m[0, 0], m[0, 1] = 3.0, 2.2  # 2.2 >= 1 + 0.5 * (3 - 1)
    assert peak_region_box(m, 0.5) == (0, 0, 0, 1)


def test_smoothing_outvotes_a_one_frame_jump():
    boxes = np.array([[0, 0, 10, 10]] * 5, dtype=float)
    boxes[2] = [50, 50, 60, 60]
    out = smooth_boxes(boxes, 5)
    np.testing.assert_array_equal(out[2], [0, 0, 10, 10])


def test_attention_track_follows_the_peak_and_stays_in_the_image():
    # the target moves right by one cell at frame 3; frame 5 is flat (absent)
    maps = _maps(T=6, hot=tuple((t, 1, 1 if t < 3 else 2, 9.0) for t in range(5)))
    track = attention_track(maps, GRID, CONTENT, SIZE, 0.5)
    assert track.boxes[:2] == [(20.0, 20.0, 40.0, 40.0)] * 2
    assert track.boxes[3:] == [(40.0, 20.0, 60.0, 40.0)] * 3
    flat = attention_track(np.ones((3, *GRID)), GRID, CONTENT, SIZE, 0.5)
    assert flat.boxes == [(0.0, 0.0, 80.0, 80.0)] * 3


def test_max_in_box_reads_tiny_boxes():
    maps = _maps(T=1, hot=((0, 1, 2, 9.0),))
    up, scale = upsample_maps(maps, CONTENT, SIZE, max_side=None)
    assert max_in_box(up[0], (49.5, 29.5, 50.2, 30.1), scale) > 8.0
    assert max_in_box(up[0], (0, 60, 20, 80), scale) == 1.0
