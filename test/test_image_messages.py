"""Image decoding for the node and bags (sensor_msgs/Image fields → RGB), checked without ROS."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from stvg_ros.image_messages import ImageError, decode_compressed, decode_image, encode_image, supported_encodings

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
