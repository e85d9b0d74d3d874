"""Image decoding for the node and bags (sensor_msgs/Image fields → RGB), checked without ROS."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from stvg_ros.image_messages import (ImageError, check_image, decode_compressed, decode_for_window, decode_image,
                                    encode_image, jpeg_size, supported_encodings)
from stvg_ros.stream.window import downscale

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)


def msg(pixels: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False):
    h, w = pixels.shape[:2]
    rows = pixels.reshape(h, -1)
    if pixels.dtype.itemsize > 1:
        rows = pixels.astype(pixels.dtype.newbyteorder(">" if bigendian else "<")).reshape(h, -1).view(np.uint8)
    else:
        rows = rows.view(np.uint8)
    if pad:
        rows = np.hstack([rows, np.full((h, pad), 7, np.uint8)])
    return SimpleNamespace(height=h, width=w, encoding=encoding, step=rows.shape[1], is_bigendian=int(bigendian),
                           data=rows.tobytes())


@pytest.mark.parametrize("pad", [0, 3])
def test_colour_encodings(pad):
    assert np.array_equal(decode_image(msg(RGB, "rgb8", pad)), RGB)
    assert np.array_equal(decode_image(msg(RGB[..., ::-1].copy(), "bgr8", pad)), RGB)
    rgba = np.dstack([RGB, np.full(RGB.shape[:2], 9, np.uint8)])
    assert np.array_equal(decode_image(msg(rgba, "rgba8", pad)), RGB)
    bgra = np.dstack([RGB[..., ::-1], np.full(RGB.shape[:2], 9, np.uint8)])
    assert np.array_equal(decode_image(msg(bgra, "bgra8", pad)), RGB)


def test_mono_and_16_bit_both_endiannesses():
    gray = RGB[..., 0].copy()
    assert np.array_equal(decode_image(msg(gray, "mono8")), np.dstack([gray] * 3))
    deep = gray.astype(np.uint16) * 256 + 17
    for big in (False, True):
        out = decode_image(msg(deep, "mono16", bigendian=big))
        assert np.array_equal(out, np.dstack([gray] * 3)), big
    rgb16 = RGB.astype(np.uint16) * 256
    assert np.array_equal(decode_image(msg(rgb16, "rgb16")), RGB)


def test_bayer_and_yuv_decode_to_the_right_size():
    bayer = RNG.integers(0, 256, (8, 10), dtype=np.uint8)
    assert decode_image(msg(bayer, "bayer_rggb8")).shape == (8, 10, 3)
    yuv = np.full((4, 6, 2), 128, np.uint8)  # grey in UYVY
    out = decode_image(msg(yuv, "yuv422"))
    assert out.shape == (4, 6, 3) and np.all(np.abs(out.astype(int) - 128) < 3)


@pytest.mark.parametrize("mutate, words", [
    (lambda m: setattr(m, "encoding", "32FC1"), "unsupported encoding"),
    (lambda m: setattr(m, "encoding", "weird"), "publish one of"),
    (lambda m: setattr(m, "step", 4), "step 4 is smaller"),
    # a step too large for packed rows names the step, not a truncated message
    (lambda m: setattr(m, "step", m.step + 4), r"does not match the data.*fix the publisher's step \(= 15\)"),
    (lambda m: setattr(m, "data", m.data[:-20]), "truncated"),
    (lambda m: setattr(m, "data", b""), "truncated"),
    (lambda m: setattr(m, "width", 0), "empty image"),
    (lambda m: setattr(m, "height", 10 ** 8), "limit"),
])
def test_bad_frames_raise_a_clear_error(mutate, words):
    m = msg(RGB, "rgb8")
    mutate(m)
    with pytest.raises(ImageError, match=words):
        decode_image(m)


def test_last_row_without_padding_is_accepted():
    m = msg(RGB, "rgb8", pad=3)
    m.data = m.data[:-3]  # some drivers omit the final row's padding
    assert np.array_equal(decode_image(m), RGB)


def test_compressed_png_and_garbage():
    ok, png = cv2.imencode(".png", cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR))
    assert ok
    assert np.array_equal(decode_compressed(SimpleNamespace(format="png", data=png.tobytes())), RGB)
    with pytest.raises(ImageError, match="cannot decode"):
        decode_compressed(SimpleNamespace(format="jpeg", data=b"not a jpeg"))
    with pytest.raises(ImageError, match="no data"):
        decode_compressed(SimpleNamespace(format="jpeg", data=b""))


def test_encode_round_trip():
    m = SimpleNamespace()
    encode_image(RGB, m)
    assert (m.encoding, m.step, m.height, m.width) == ("rgb8", 15, 6, 5)
    assert np.array_equal(decode_image(m), RGB)
    assert "bgr8" in supported_encodings()


# -- decoding straight to the window's size (decode_for_window / max_side) -------------------------------------

def _photo(width: int, height: int) -> np.ndarray:
    """A photograph-like RGB frame: scikit-image's astronaut upscaled when installed, else smooth shading with
    hard-edged shapes (both have the edges and gradients where resampling paths differ)."""
    from stvg_ros.adapters.tiny_models import photo_dir

    data = photo_dir("astronaut.png")
    if data is not None:
        bgr = cv2.imread(str(data / "astronaut.png"))
        if bgr is not None:
            return cv2.cvtColor(cv2.resize(bgr, (width, height), interpolation=cv2.INTER_CUBIC), cv2.COLOR_BGR2RGB)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.dstack([(x / width * 255), (y / height * 255), ((x + y) % 97) * 2.6]).astype(np.uint8)
    for i in range(12):
        cv2.circle(img, (int(width * (i + 0.5) / 12), height // 2), height // 9, (255, 20 * i, 0), -1)
    return img


def _jpeg(rgb: np.ndarray, *flags) -> SimpleNamespace:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90, *flags])
    assert ok
    return SimpleNamespace(format="jpeg", data=data.tobytes())


def _area(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def test_jpeg_decoded_at_reduced_scale_is_the_stored_size_and_close_to_full_decode():
    rgb = _photo(1920, 1080)
    m = _jpeg(rgb)
    small, source = decode_for_window(m, 448)
    assert source == (1080, 1920) and small.shape == (252, 448, 3) and small.dtype == np.uint8
    reference = _area(decode_compressed(m), (448, 252))  # the full decode + one INTER_AREA resize
    assert np.abs(small.astype(int) - reference).mean() < 1.0  # ~0.4 grey levels on photographs
    assert np.array_equal(decode_compressed(m, 448), small)


@pytest.mark.parametrize("shape", [(1001, 667), (668, 1000), (2160, 3840)])
def test_jpeg_reduced_decode_of_any_size_gives_the_full_paths_size(shape):
    rgb = _photo(shape[1], shape[0])
    m = _jpeg(rgb, cv2.IMWRITE_JPEG_PROGRESSIVE, 1)
    assert jpeg_size(np.frombuffer(m.data, np.uint8)) == shape
    small, source = decode_for_window(m, 100)
    expected, _ = downscale(decode_compressed(m), 100)
    assert source == shape and small.shape == expected.shape
    assert np.abs(small.astype(int) - expected).mean() < 1.5


def test_png_and_small_images_decode_as_before():
    rgb = _photo(301, 203)  # odd sizes: one INTER_AREA resize, on BGR before the conversion (exact)
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    m = SimpleNamespace(format="png", data=png.tobytes())
    small, source = decode_for_window(m, 100)
    assert source == (203, 301) and np.array_equal(small, _area(rgb, (100, 67)))
    for side in (0, 301, 1000):  # no shrink needed: the full decode, untouched
        same, source = decode_for_window(m, side)
        assert source == (203, 301) and np.array_equal(same, rgb)
    tiny = _jpeg(RGB)
    assert np.array_equal(decode_compressed(tiny, 64), decode_compressed(tiny))


def test_raw_frames_shrink_before_the_colour_conversion():
    rgb = _photo(1920, 1080)
    bgr = msg(np.ascontiguousarray(rgb[..., ::-1]), "bgr8")
    small, source = decode_for_window(bgr, 448)
    assert source == (1080, 1920) and small.shape == (252, 448, 3)
    # 1080p → 448 halves first (INTER_AREA's 2x2 mean), then one INTER_AREA: close to one direct resize
    assert np.abs(small.astype(int) - _area(rgb, (448, 252))).mean() < 1.0
    odd = rgb[:1001, :1501]  # odd sizes: one direct INTER_AREA, the conversion after it: exact
    for enc, pixels in (("bgr8", odd[..., ::-1]), ("rgb8", odd)):
        out = decode_image(msg(np.ascontiguousarray(pixels), enc, pad=2), 300)
        assert np.array_equal(out, _area(np.ascontiguousarray(odd), (300, 200)))
    gray = np.ascontiguousarray(odd[..., 1])
    assert np.array_equal(decode_image(msg(gray, "mono8"), 300), np.dstack([_area(gray, (300, 200))] * 3))
    bayer = RNG.integers(0, 256, (64, 80), dtype=np.uint8)  # not per pixel: converted first, then shrunk
    assert np.array_equal(decode_image(msg(bayer, "bayer_rggb8"), 40),
                          _area(cv2.cvtColor(bayer, cv2.COLOR_BayerRGGB2RGB), (40, 32)))


def test_malformed_compressed_data_raises_image_error_with_a_target_side():
    for data in (b"not a jpeg", b"\xff\xd8" + b"\x00" * 64, b"\xff\xd8\xff\xc0\x00\x11\x08\x04\x38\x07\x80" + b"\x00" * 8):
        with pytest.raises(ImageError, match="cannot decode compressed image"):
            decode_for_window(SimpleNamespace(format="jpeg", data=data), 448)
    with pytest.raises(ImageError, match="no data"):
        decode_compressed(SimpleNamespace(format="jpeg", data=b""), 448)
    assert jpeg_size(np.frombuffer(b"\xff\xd8\xff\xd9", np.uint8)) is None
    with pytest.raises(ImageError, match="truncated"):
        m = msg(RGB, "bgr8")
        m.data = m.data[:-20]
        decode_for_window(m, 4)


def test_serialized_images_are_read_in_place_like_rclpy_deserializes_them():
    """The node subscribes raw: ``image_from_cdr`` / ``compressed_from_cdr`` must read what rclpy serialized."""
    serialization = pytest.importorskip("rclpy.serialization", reason="rclpy gives the reference serializer")
    sensor = pytest.importorskip("sensor_msgs.msg", reason="sensor_msgs gives the message types")
    from stvg_ros.image_messages import compressed_from_cdr, image_from_cdr

    bgr = np.ascontiguousarray(RGB[..., ::-1])
    for frame_id, pad in (("", 0), ("camera_optical_frame", 3)):  # string lengths move the later alignment
        m = sensor.Image()
        m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id = 1_700_000_000, 123_456_789, frame_id
        raw = msg(bgr, "bgr8", pad)
        m.height, m.width, m.encoding, m.step, m.data = raw.height, raw.width, "bgr8", raw.step, raw.data
        got = image_from_cdr(serialization.serialize_message(m))
        assert (got.header.stamp.sec, got.header.stamp.nanosec, got.header.frame_id) == (1_700_000_000, 123_456_789,
                                                                                        frame_id)
        assert (got.height, got.width, got.encoding, got.step, got.is_bigendian) == (6, 5, "bgr8", 15 + pad, 0)
        assert bytes(got.data) == raw.data and check_image(got) == ""
        out = decode_image(got)
        assert np.array_equal(out, RGB) and out.flags.writeable  # a copy the frame owns, not the message's bytes
    c = sensor.CompressedImage()
    c.header.frame_id, c.format = "cam", "jpeg"
    c.data = _jpeg(_photo(64, 48)).data
    got = compressed_from_cdr(serialization.serialize_message(c))
    assert got.header.frame_id == "cam" and got.format == "jpeg" and bytes(got.data) == bytes(c.data)
    assert np.array_equal(decode_compressed(got), decode_compressed(c))
    for bad in (b"", b"\x00\x01\x00\x00\x05", b"\x00\x99\x00\x00" + bytes(40)):
        with pytest.raises(ImageError, match="CDR|truncated"):
            image_from_cdr(bad)
