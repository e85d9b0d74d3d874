"""The 3-D stage without ROS: decoding depth images, intrinsics, back-projection, association by stamp,
and the synthetic world's depth (a known distance per object)."""

from __future__ import annotations

import numpy as np
import pytest

from stvg_ros.stream.depth import CalibrationError, DepthBuffer, DepthError, Intrinsics, decode_depth, locate


def _cam(w=640, h=480, f=500.0):
    return Intrinsics(f, f, (w - 1) / 2, (h - 1) / 2, w, h, "camera_color_optical_frame")


def _scene(w=640, h=480, box=(300, 200, 360, 320), z=2.5, wall=6.0):
    """A wall at ``wall`` m and a plate at ``z`` m filling ``box``."""
    d = np.full((h, w), wall, np.float32)
    x0, y0, x1, y1 = box
    d[y0:y1, x0:x1] = z
    return d


def test_decode_16uc1_millimetres_and_32fc1_metres_with_invalid_pixels():
    mm = np.array([[0, 1000], [2500, 65535]], np.uint16)
    d = decode_depth("16UC1", mm.tobytes(), 2, 2, 4)
    assert np.isnan(d[0, 0]) and d[0, 1] == pytest.approx(1.0) and d[1, 0] == pytest.approx(2.5)
    m = np.array([[1.5, np.nan], [np.inf, -1.0]], np.float32)
    d = decode_depth("32FC1", m.tobytes(), 2, 2, 8)
    assert d[0, 0] == pytest.approx(1.5) and np.isnan(d[0, 1]) and np.isnan(d[1, 0]) and np.isnan(d[1, 1])
    big = np.array([[1000]], ">u2")
    assert decode_depth("16UC1", big.tobytes(), 1, 1, 2, is_bigendian=True)[0, 0] == pytest.approx(1.0)
    padded = np.zeros((2, 4), np.uint16)  # step 8 bytes for a 1-pixel-wide image: rows padded
    padded[:, 0] = 3000
    assert decode_depth("16UC1", padded.tobytes(), 2, 1, 8).ravel().tolist() == pytest.approx([3.0, 3.0])


def test_decode_refuses_unknown_encodings_and_short_data_with_the_fix():
    with pytest.raises(DepthError, match="16UC1.*32FC1"):
        decode_depth("rgb8", b"\0" * 12, 2, 2, 6)
    with pytest.raises(DepthError, match="header and data disagree"):
        decode_depth("16UC1", b"\0" * 6, 2, 2, 4)


def test_intrinsics_from_camera_info_refuse_an_uncalibrated_camera():
    cam = Intrinsics.from_k([500, 0, 319.5, 0, 500, 239.5, 0, 0, 1], 640, 480, "cam")
    assert (cam.fx, cam.cy, cam.frame_id) == (500, 239.5, "cam")
    with pytest.raises(CalibrationError, match="uncalibrated"):
        Intrinsics.from_k([0] * 9, 640, 480)
    with pytest.raises(CalibrationError, match="width and height"):
        Intrinsics.from_k([500, 0, 319.5, 0, 500, 239.5, 0, 0, 1], 0, 0)
    half = cam.scaled(320, 240)
    # the same ray through the same physical point at both sizes
    assert half.ray(160.0, 120.0) == pytest.approx(cam.ray(320.0, 240.0))


def test_locate_reads_the_plate_not_the_wall_behind_it_and_backprojects_its_centre():
    cam = _cam()
    box = (300, 200, 360, 320)
    d = _scene(box=box)
    # a box 20 % larger than the plate: the wall shows in it, the front cluster must ignore it
    p = locate((294, 188, 366, 332), d, cam)
    assert p.valid and p.z == pytest.approx(2.5, abs=1e-4)
    u, v = 330.0, 260.0
    assert p.x == pytest.approx((u - 0.5 - cam.cx) * 2.5 / cam.fx, abs=1e-3)
    assert p.y == pytest.approx((v - 0.5 - cam.cy) * 2.5 / cam.fy, abs=1e-3)
    assert p.size_x == pytest.approx(72 * 2.5 / 500, rel=1e-6) and p.frame_id == cam.frame_id
    # a depth image at half the colour size (aligned, scaled): the same answer
    small = d[::2, ::2]
    q = locate((294, 188, 366, 332), small, cam)
    assert q.valid and q.z == pytest.approx(2.5, abs=1e-4) and q.x == pytest.approx(p.x, abs=1e-6)


def test_locate_is_robust_to_holes_noise_and_says_why_when_there_is_no_depth():
    rng = np.random.default_rng(0)
    cam = _cam()
    box = (300, 200, 360, 320)
    d = _scene(box=box) + rng.normal(0, 0.01, (480, 640)).astype(np.float32)
    d[rng.random(d.shape) < 0.3] = np.nan
    p = locate(box, d, cam)
    assert p.valid and abs(p.z - 2.5) / 2.5 < 0.01
    empty = np.full((480, 640), np.nan, np.float32)
    q = locate(box, empty, cam)
    assert not q.valid and "no valid depth" in q.reason
    far = _scene(box=box, z=50.0, wall=60.0)
    assert not locate(box, far, cam).valid  # beyond max_range: not a reading to act on


def test_buffer_associates_by_nearest_stamp_within_tolerance_and_stays_bounded():
    buf = DepthBuffer(recent=3, kept=2, tolerance_ns=20_000_000)
    cam = _cam()
    d = _scene()
    assert buf.lookup(0)[2] == "no depth image received"
    buf.add(1_000_000_000, d)
    assert "CameraInfo" in buf.lookup(1_000_000_000)[2]  # depth before any calibration: not usable
    buf.reset()
    buf.set_intrinsics(cam)
    for k in range(5):  # depth at 30 Hz: the ring keeps the newest 3
        buf.add(1_000_000_000 + k * 33_000_000, d + k)
    assert len(buf) == 3
    depth, intr, why = buf.lookup(1_000_000_000 + 4 * 33_000_000 + 5_000_000)
    assert why == "" and float(depth[0, 0]) == pytest.approx(10.0) and intr is cam
    assert "within 0.020 s" in buf.lookup(5_000_000_000)[2]
    assert "within" in buf.lookup(1_000_000_000)[2]  # left the ring, and no colour frame kept it
    assert not buf.add(1_000_000_000, d) and buf.stale == 1  # older than the newest: stale
    # a colour image of another size than CameraInfo's: the intrinsics are scaled to the box's pixels
    p = buf.locate(1_000_000_000 + 4 * 33_000_000, (150, 100, 180, 160), (240, 320))
    assert p.valid and p.z == pytest.approx(2.5 + 4, abs=1e-2)


def test_buffer_keeps_depth_for_the_colour_frames_the_window_keeps():
    """At camera rate the ring forgets quickly; the frames the window keeps (4 Hz) keep their depth, also when
    the depth frame arrives after the colour frame, and no more of them than ``kept``."""
    buf = DepthBuffer(recent=4, kept=3, tolerance_ns=20_000_000)
    buf.set_intrinsics(_cam())
    period = 33_333_333
    kept_colour = []
    for k in range(120):  # 4 s at 30 Hz
        stamp = k * period
        if k % 8 == 0:  # the window keeps every 8th colour frame, announced before its depth arrives
            buf.keep(stamp + 3_000_000)
            kept_colour.append(stamp + 3_000_000)
        buf.add(stamp, _scene(z=1.0 + k * 0.01))
    for colour in kept_colour[-3:]:
        depth, _, why = buf.lookup(colour)
        k = round((colour - 3_000_000) / period)
        assert why == "" and float(depth[130, 165]) == pytest.approx(1.0 + k * 0.01, abs=2e-3)  # stored at half size
    assert "within" in buf.lookup(kept_colour[0])[2]  # more than `kept` ago: evicted
    assert max(buf.lookup(kept_colour[-1])[0].shape) <= buf.kept_max_side  # kept depth is stored small
    p = buf.locate(kept_colour[-1], (300, 200, 360, 320))  # and still reads the plate, not the wall
    assert p.valid and p.z == pytest.approx(1.0 + 112 * 0.01, abs=3e-3)
    assert len(buf) <= 4 + 3 and buf.unmatched == 0


def test_synthetic_depth_puts_each_object_at_its_distance():
    from stvg_ros.synthetic import depth as sd
    from stvg_ros.synthetic.generator import generate_sample

    frames, s = generate_sample(3, "test")
    cam = sd.intrinsics(s["image_size"])
    errors = []
    for tid, track in s["tracks"].items():
        for t, box in track.items():
            d = sd.render_depth(s, t)
            assert d.min() >= sd.OBJECT_RANGE[0] - 1e-6 and d.max() <= sd.BACKGROUND[0] + 1e-6
            p = locate(box, d, cam)
            errors.append(np.linalg.norm(p.xyz - sd.true_position(s, tid, t)) / sd.object_distance(s, tid))
    assert np.median(errors) < 1e-3
    noisy = sd.render_depth(s, 0, noise=0.004, holes=0.05)
    assert 0.01 < float(np.mean(noisy == 0)) < 0.2  # holes are zero readings, as a 16UC1 driver sends them


def test_transform_point_matches_an_optical_to_body_rotation():
    from stvg_ros.stream.depth import transform_point

    # REP 103: the optical frame (z forward, x right, y down) seen from a body frame (x forward, y left, z up)
    q = (-0.5, 0.5, -0.5, 0.5)
    assert transform_point((0, 0, 0), q, (0, 0, 2.0)) == pytest.approx([2.0, 0, 0], abs=1e-9)
    assert transform_point((0, 0, 0), q, (1.0, 0, 0)) == pytest.approx([0, -1.0, 0], abs=1e-9)
    assert transform_point((1.0, 2.0, 0.5), q, (0, 1.0, 0)) == pytest.approx([1.0, 2.0, -0.5], abs=1e-9)
