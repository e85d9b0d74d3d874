"""The sliding window and the rate meter, without ROS (time jumps and external detections: test_service.py)."""

from __future__ import annotations

import numpy as np
import pytest

from stvg_ros.stream.window import NS, FrameWindow, RateMeter, downscale


def feed(window: FrameWindow, stamps_ns, size=(48, 64)):
    kept = []
    for s in stamps_ns:
        outcome = window.offer(s)
        if outcome == "keep":
            window.add(s, np.zeros(size + (3,), np.uint8))
            kept.append(s)
    return kept


def camera(rate_hz: float, seconds: float, t0: float = 100.0, jitter: float = 0.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = int(round(rate_hz * seconds))
    return [int(round((t0 + i / rate_hz + rng.uniform(-jitter, jitter)) * NS)) for i in range(n)]


@pytest.mark.parametrize("camera_hz, target_hz", [(30, 10), (25, 10), (30, 4), (15, 4), (10, 10)])
def test_decimation_keeps_the_target_rate(camera_hz, target_hz):
    w = FrameWindow(duration=100, max_frames=10_000, rate=target_hz)
    kept = feed(w, camera(camera_hz, 20.0, jitter=0.002))
    rate = (len(kept) - 1) / ((kept[-1] - kept[0]) / NS)
    assert rate == pytest.approx(min(target_hz, camera_hz), rel=0.05)
    gaps = np.diff(kept) / NS
    assert gaps.min() >= 1.0 / target_hz * 0.5  # never bunched up
    assert w.decimated == len(camera(camera_hz, 20.0)) - len(kept)


def test_rate_zero_keeps_every_frame():
    w = FrameWindow(duration=100, max_frames=1000, rate=0)
    stamps = camera(30, 2)
    assert feed(w, stamps) == stamps


def test_duration_and_max_frames_bound_the_window():
    w = FrameWindow(duration=2.0, max_frames=1000, rate=0)
    stamps = camera(10, 10)
    feed(w, stamps)
    held = [f.stamp_ns for f in w.frames()]
    assert held == [s for s in stamps if s >= stamps[-1] - 2 * NS]
    assert w.span <= 2.0
    w2 = FrameWindow(duration=100, max_frames=7, rate=0)
    feed(w2, stamps)
    held = [f.stamp_ns for f in w2.frames()]  # thinned, not cut: first and newest stay, no big hole
    assert len(held) == 7 and held[0] == stamps[0] and held[-1] == stamps[-1] and w2.thinned == len(stamps) - 7
    assert np.diff(held).max() <= 1.5 * (held[-1] - held[0]) / 6


def test_memory_is_bounded_whatever_the_camera_sends():
    w = FrameWindow(duration=100, max_frames=5, rate=0, max_side=64)
    for i, s in enumerate(camera(10, 1.0)):
        assert w.offer(s) == "keep"
        w.add(s, np.full((1080, 1920, 3), i, np.uint8))
    assert len(w) == 5
    assert all(max(f.image.shape[:2]) == 64 for f in w.frames())
    assert w.nbytes <= 5 * 64 * 64 * 3


def test_downscale_and_boxes_map_back_to_camera_pixels():
    img = np.zeros((480, 640, 3), np.uint8)
    small, scale = downscale(img, 160)
    assert small.shape == (120, 160, 3) and scale == pytest.approx(4.0)
    w = FrameWindow(duration=10, max_frames=4, max_side=160)
    f = w.add(NS, img, frame_id="cam")
    assert f.source_size == (480, 640)
    assert f.box_to_source((10, 20, 30, 40)) == pytest.approx((40, 80, 120, 160))
    assert f.box_from_source((40, 80, 120, 160)) == pytest.approx((10, 20, 30, 40))
    assert f.box_to_source((-5, 0, 1000, 1000)) == (0.0, 0.0, 640.0, 480.0)  # clipped to the image
    same, s1 = downscale(img, 0)
    assert same is img and s1 == 1.0


def test_reset_clears_and_reorders_are_dropped_as_stale():
    w = FrameWindow(duration=100, max_frames=100, rate=0)
    stamps = camera(10, 3, t0=100.0)
    feed(w, stamps)
    assert w.offer(stamps[-1]) == "stale"  # duplicate
    assert w.offer(stamps[-2]) == "stale"  # reordered by 0.1 s
    assert w.offer(stamps[0] - 50 * NS) == "stale"  # a jump back is the owner's to detect (GroundingService)
    assert len(w) == len(stamps) and w.stale == 3
    w.reset()  # ...which resets the window
    back = camera(10, 1, t0=50.0)  # looping bag
    assert w.offer(back[0]) == "keep"
    w.add(back[0], np.zeros((4, 4, 3), np.uint8))
    assert [f.stamp_ns for f in w.frames()] == [back[0]] and w.resets == 1
    feed(w, back[1:])
    assert [f.stamp_ns for f in w.frames()] == back
    assert [f.seq for f in w.frames()] == list(range(len(stamps) + 1, len(stamps) + 1 + len(back)))  # never reused


def test_decimation_restarts_after_a_reset_and_a_gap():
    w = FrameWindow(duration=100, max_frames=100, rate=2)
    feed(w, camera(10, 2, t0=100.0))
    w.reset()
    after = feed(w, camera(10, 2, t0=10.0))  # jump back: schedule restarts at the new first frame
    assert after[0] == int(10.0 * NS) and len(after) == 4
    gap = feed(w, camera(10, 1, t0=60.0))  # 48 s gap forward: no burst, first frame kept at once
    assert gap[0] == int(60.0 * NS) and len(gap) == 2


def test_time_range_snapshot():
    w = FrameWindow(duration=100, max_frames=100)
    stamps = camera(10, 2)
    feed(w, stamps)
    sel = w.frames(stamps[3], stamps[7])
    assert [f.stamp_ns for f in sel] == stamps[3:8]
    assert [f.stamp_ns for f in w.frames(stamps[15])] == stamps[15:]


def test_configure_rejects_bad_values_with_the_fix():
    with pytest.raises(ValueError, match="positive number of seconds"):
        FrameWindow(duration=0)
    with pytest.raises(ValueError, match="at least 1"):
        FrameWindow(max_frames=0)
    with pytest.raises(ValueError, match="0 .keep every frame."):
        FrameWindow(rate=-1)


def test_rate_meter_follows_stamps():
    m = RateMeter(horizon=10)
    for s in camera(20, 1):
        m.tick(s)
    assert m.rate == pytest.approx(20, rel=1e-6)
    m.tick(0)  # clock went back
    assert m.rate == 0.0


def test_reduced_decodes_are_stored_like_full_ones():
    """A frame the decoder already shrank (``source_size`` given) gets the full path's size, scale and box mapping."""
    import cv2

    full = np.random.default_rng(1).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    w = FrameWindow(duration=10, max_frames=4, max_side=448)
    a = w.add(NS, full)
    half = cv2.resize(full, (960, 540), interpolation=cv2.INTER_AREA)  # e.g. a JPEG decoded at 1/2 scale
    b = w.add(2 * NS, half, source_size=(1080, 1920))
    assert a.image.shape == b.image.shape == (252, 448, 3) and a.scale == b.scale == pytest.approx(1920 / 448)
    assert a.source_size == b.source_size == (1080, 1920)
    assert np.array_equal(a.image, b.image)  # 1080p halves first (INTER_AREA 2x2 mean) on the full path too
    small = w.add(3 * NS, a.image, source_size=(1080, 1920))  # already at the stored size: kept as is
    assert small.image is not None and np.array_equal(small.image, a.image) and small.scale == a.scale
    assert small.box_to_source((0, 0, 448, 252)) == pytest.approx((0, 0, 1920, 1080))
