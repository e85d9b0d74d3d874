"""sensor_msgs/Image and CompressedImage ↔ RGB uint8 arrays, without cv_bridge: the one decoder
of the node (live topics) and of bags (``stvg_ros.bags``, ``stvg-proposals``).

Works on any object with the messages' fields (rclpy messages, rosbags messages), and checks
every field against the data, because a malformed frame must be reported and dropped, never
crash the node.  Imports no ROS module.
"""

from __future__ import annotations

import numpy as np


class ImageError(ValueError):
    """A frame that cannot be decoded; the message says what is wrong with it."""


# encoding → (channels, numpy dtype, OpenCV conversion to RGB or None)
def _table():
    import cv2

    return {
        "rgb8": (3, np.uint8, None),
        "bgr8": (3, np.uint8, cv2.COLOR_BGR2RGB),
        "rgba8": (4, np.uint8, cv2.COLOR_RGBA2RGB),
        "bgra8": (4, np.uint8, cv2.COLOR_BGRA2RGB),
        "mono8": (1, np.uint8, cv2.COLOR_GRAY2RGB),
        "8uc1": (1, np.uint8, cv2.COLOR_GRAY2RGB),
        "8uc3": (3, np.uint8, cv2.COLOR_BGR2RGB),
        "8uc4": (4, np.uint8, cv2.COLOR_BGRA2RGB),
        "rgb16": (3, np.uint16, None),
        "bgr16": (3, np.uint16, cv2.COLOR_BGR2RGB),
        "rgba16": (4, np.uint16, cv2.COLOR_RGBA2RGB),
        "bgra16": (4, np.uint16, cv2.COLOR_BGRA2RGB),
        "mono16": (1, np.uint16, cv2.COLOR_GRAY2RGB),
        "16uc1": (1, np.uint16, cv2.COLOR_GRAY2RGB),
        "bayer_rggb8": (1, np.uint8, cv2.COLOR_BayerRGGB2RGB),
        "bayer_bggr8": (1, np.uint8, cv2.COLOR_BayerBGGR2RGB),
        "bayer_gbrg8": (1, np.uint8, cv2.COLOR_BayerGBRG2RGB),
        "bayer_grbg8": (1, np.uint8, cv2.COLOR_BayerGRBG2RGB),
        "yuv422": (2, np.uint8, cv2.COLOR_YUV2RGB_UYVY),
        "uyvy": (2, np.uint8, cv2.COLOR_YUV2RGB_UYVY),
        "yuv422_yuy2": (2, np.uint8, cv2.COLOR_YUV2RGB_YUY2),
        "yuyv": (2, np.uint8, cv2.COLOR_YUV2RGB_YUY2),
    }


_ENCODINGS = None

#: refuse frames larger than this (bytes), whatever their header says
MAX_IMAGE_BYTES = 256 * 1024 * 1024


def supported_encodings() -> list[str]:
    return sorted(_table_once())


def _table_once() -> dict:
    global _ENCODINGS
    if _ENCODINGS is None:
        _ENCODINGS = _table()
    return _ENCODINGS


def _data(msg):
    return memoryview(msg.data).cast("B") if not isinstance(msg.data, (bytes, bytearray)) else msg.data


def check_image(msg) -> str:
    """What is wrong with a ``sensor_msgs/Image``'s header against its data ("" = consistent).

    Cheap (no decoding), so it runs on every frame, decimated ones included: the encoding is known,
    the size positive, ``step`` holds a row, and ``len(data)`` is what ``step x height`` says (the
    last row's padding may be missing)."""
    encodings = _table_once()
    enc = str(msg.encoding).strip().lower()
    if enc not in encodings:
        return f"unsupported encoding {msg.encoding!r}: publish one of {', '.join(sorted(encodings))}"
    channels, dtype, _ = encodings[enc]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        return f"empty image ({width}x{height})"
    row_bytes = width * channels * np.dtype(dtype).itemsize
    if step < row_bytes:
        return f"step {step} is smaller than width x bytes per pixel = {row_bytes} for {width} px of {msg.encoding}"
    if step * height > MAX_IMAGE_BYTES:
        return f"image of {step * height} bytes exceeds the {MAX_IMAGE_BYTES} byte limit"
    size = len(_data(msg))
    needed = step * (height - 1) + row_bytes
    if size < needed:
        return f"data holds {size} bytes but {height} rows of step {step} need {needed} (truncated message?)"
    if size > step * height:
        return (f"data holds {size} bytes but the header says {width}x{height} {msg.encoding} with step {step} "
                f"= {step * height} bytes: the header does not describe the data (fix the publisher's "
                f"width/height/step)")
    return ""


def check_compressed(msg) -> str:
    """What is wrong with a ``sensor_msgs/CompressedImage`` before decoding ("" = nothing seen)."""
    size = len(_data(msg))
    if size == 0:
        return "compressed image with no data"
    if size > MAX_IMAGE_BYTES:
        return f"compressed image of {size} bytes exceeds the {MAX_IMAGE_BYTES} byte limit"
    return ""


def decode_image(msg) -> np.ndarray:
    """A ``sensor_msgs/Image`` → HxWx3 uint8 RGB (16-bit data is scaled to 8 bits).

    Raises :class:`ImageError` naming the problem (see :func:`check_image`).
    """
    problem = check_image(msg)
    if problem:
        raise ImageError(problem)
    import cv2

    enc = str(msg.encoding).strip().lower()
    channels, dtype, conversion = _table_once()[enc]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    itemsize = np.dtype(dtype).itemsize
    row_bytes = width * channels * itemsize
    data = _data(msg)
    needed = step * (height - 1) + row_bytes
    buf = np.frombuffer(data, dtype=np.uint8, count=step * height if len(data) >= step * height else needed)
    if len(buf) < step * height:  # last row without its padding
        buf = np.concatenate([buf, np.zeros(step * height - len(buf), np.uint8)])
    rows = buf.reshape(height, step)[:, :row_bytes]
    pixels = rows.view(dtype) if itemsize == 1 else np.ascontiguousarray(rows).view(dtype)
    if itemsize > 1:
        big = bool(getattr(msg, "is_bigendian", False))
        if big != (np.little_endian is False):
            pixels = pixels.byteswap()
        pixels = (pixels >> 8).astype(np.uint8)
    if enc.startswith("yuv") or enc in ("uyvy", "yuyv"):
        pixels = pixels.reshape(height, width, 2)
    elif channels == 1:
        pixels = pixels.reshape(height, width)
    else:
        pixels = pixels.reshape(height, width, channels)
    pixels = np.ascontiguousarray(pixels)
    rgb = pixels if conversion is None else cv2.cvtColor(pixels, conversion)
    return np.ascontiguousarray(rgb)


def decode_compressed(msg) -> np.ndarray:
    """A ``sensor_msgs/CompressedImage`` (jpeg/png) → HxWx3 uint8 RGB."""
    import cv2

    problem = check_compressed(msg)
    if problem:
        raise ImageError(problem)
    data = np.frombuffer(_data(msg), dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageError(f"cannot decode compressed image (format {msg.format!r}): publish jpeg or png")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def decode_message(msg) -> np.ndarray:
    """An ``Image`` or a ``CompressedImage`` (the one with a ``format`` field) → HxWx3 uint8 RGB."""
    return decode_compressed(msg) if hasattr(msg, "format") else decode_image(msg)


def encode_image(rgb: np.ndarray, msg) -> None:
    """Fill a ``sensor_msgs/Image``-like ``msg`` with ``rgb`` as rgb8 (header left to the caller)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = "rgb8"
    msg.is_bigendian = 0
    msg.step = int(rgb.shape[1] * 3)
    msg.data = rgb.tobytes()
