"""sensor_msgs/Image and CompressedImage ↔ RGB uint8 arrays, without cv_bridge: the one decoder
of the node (live topics) and of bags (``stvg_ros.evaluation.bags``, ``stvg-proposals``).

Works on any object with the messages' fields (rclpy messages, rosbags messages), and checks
every field against the data, because a malformed frame must be reported and dropped, never
crash the node.  Imports no ROS module.
"""

from __future__ import annotations

from types import SimpleNamespace

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
    if size < needed and size == row_bytes * height:  # packed rows: the header's step is wrong
        return (f"step {step} does not match the data: it holds {height} packed rows of {row_bytes} bytes "
                f"({width} px of {msg.encoding}): fix the publisher's step (= {row_bytes})")
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


def decode_image(msg, max_side: int = 0) -> np.ndarray:
    """A ``sensor_msgs/Image`` → HxWx3 uint8 RGB (16-bit data is scaled to 8 bits).

    ``max_side`` > 0: shrunk as :func:`stvg_ros.stream.window.downscale` does (longer side at most
    ``max_side``), before the colour conversion where that is a per-pixel channel shuffle (bgr8,
    mono8), so it runs on the small image.  Raises :class:`ImageError` naming the problem
    (see :func:`check_image`).
    """
    return _decode_image(msg, max_side)[0]


def decode_compressed(msg, max_side: int = 0) -> np.ndarray:
    """A ``sensor_msgs/CompressedImage`` (jpeg/png) → HxWx3 uint8 RGB.

    ``max_side`` > 0: shrunk as :func:`stvg_ros.stream.window.downscale` does; a JPEG whose sides divide by 2,
    4 or 8 is decoded at that reduced scale (libjpeg's DCT scaling) where that still leaves at least
    twice the stored size (1080p to 448 px: 1/2 scale, the decode and shrink ~3x cheaper, 0.4 grey
    levels mean absolute difference from a full decode + INTER_AREA on photographs)."""
    return _decode_compressed(msg, max_side)[0]


def decode_message(msg, max_side: int = 0) -> np.ndarray:
    """An ``Image`` or a ``CompressedImage`` (the one with a ``format`` field) → HxWx3 uint8 RGB."""
    return decode_for_window(msg, max_side)[0]


def decode_for_window(msg, max_side: int) -> tuple[np.ndarray, tuple[int, int]]:
    """``(rgb, (H, W) as published)``: the frame the window stores (longer side at most ``max_side``,
    0 = full size), decoded as cheaply as that allows; the node's ingestion calls it for kept frames."""
    return _decode_compressed(msg, max_side) if hasattr(msg, "format") else _decode_image(msg, max_side)


#: conversions to RGB that act on each pixel alone and keep 1 or 3 channels: they commute with a resize
_PER_PIXEL = None


def _per_pixel() -> set:
    global _PER_PIXEL
    if _PER_PIXEL is None:
        import cv2

        _PER_PIXEL = {None, cv2.COLOR_BGR2RGB, cv2.COLOR_GRAY2RGB}
    return _PER_PIXEL


def _decode_image(msg, max_side: int) -> tuple[np.ndarray, tuple[int, int]]:
    problem = check_image(msg)
    if problem:
        raise ImageError(problem)
    import cv2

    from .stream.window import downscale

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
    if conversion in _per_pixel():  # shrink first: the conversion then touches the small image only
        pixels = downscale(pixels, max_side)[0]
        rgb = pixels if conversion is None else cv2.cvtColor(pixels, conversion)
    else:
        rgb = downscale(cv2.cvtColor(pixels, conversion), max_side)[0]
    rgb = np.ascontiguousarray(rgb)
    if not rgb.flags.writeable:  # still a view of the message's (read-only) bytes: a frame owns its pixels
        rgb = rgb.copy()
    return rgb, (height, width)


def _decode_compressed(msg, max_side: int) -> tuple[np.ndarray, tuple[int, int]]:
    import cv2

    from .stream.window import downscale, stored_size

    problem = check_compressed(msg)
    if problem:
        raise ImageError(problem)
    data = np.frombuffer(_data(msg), dtype=np.uint8)
    bgr, source = None, None
    header = jpeg_size(data) if max_side > 0 else None
    if header is not None:
        size = stored_size(*header, max_side)
        factor = 1
        # the largest of 2, 4, 8 that divides both sides (so the scaled decode covers the same pixels; libjpeg
        # would round a partial block up and shift the geometry) and leaves at least twice the stored size
        while size is not None and factor < 8 and max(header) >= 2 * factor * 2 * max(size) \
                and header[0] % (2 * factor) == 0 and header[1] % (2 * factor) == 0:
            factor *= 2
        if factor > 1:
            bgr = cv2.imdecode(data, getattr(cv2, f"IMREAD_REDUCED_COLOR_{factor}"))
            if bgr is not None:  # EXIF orientation may swap the axes
                expect = (header[0] // factor, header[1] // factor)
                if bgr.shape[:2] == expect:
                    source = header
                elif bgr.shape[:2] == expect[::-1]:
                    source = header[::-1]
                else:
                    bgr = None
    if bgr is None:
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
        if bgr is None:
            raise ImageError(f"cannot decode compressed image (format {msg.format!r}): publish jpeg or png")
        source = bgr.shape[:2]
    small = downscale(bgr, max_side, source)[0]
    return cv2.cvtColor(small, cv2.COLOR_BGR2RGB), (int(source[0]), int(source[1]))


# JPEG start-of-frame markers (baseline, extended, progressive, lossless, arithmetic): they carry the size
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def jpeg_size(data) -> "tuple[int, int] | None":
    """``(H, W)`` from a JPEG's start-of-frame header without decoding, or None (not a JPEG, or no
    readable header: the caller decodes in full, which reports a broken file)."""
    b = bytes(data[:2])
    if b != b"\xff\xd8":
        return None
    n, i = len(data), 2
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = int(data[i + 1])
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            i += 2
            continue
        length = (int(data[i + 2]) << 8) | int(data[i + 3])
        if marker in _SOF:
            if i + 9 > n or length < 7:
                return None
            h = (int(data[i + 5]) << 8) | int(data[i + 6])
            w = (int(data[i + 7]) << 8) | int(data[i + 8])
            return (h, w) if h > 0 and w > 0 else None
        if marker in (0xD9, 0xDA) or length < 2:  # end of image / start of scan before any frame header
            return None
        i += 2 + length
    return None


# -- serialized messages ------------------------------------------------------------------------------------
# The node subscribes to images raw (rclpy ``raw=True``: the CDR bytes, no deserialization), because rclpy's
# ``deserialize_message`` copies every frame, decimated or not: 1080p bgr8 at 30 Hz spends most of its
# ingestion CPU there.  These read the fields in place; the pixels stay a view of the received bytes.

#: CDR encapsulation ids (big / little endian) of plain CDR and plain XCDR2: for these types (fields of at
#: most 4 bytes, final structs) both lay out the same
_CDR_IDS = {0x0000: ">", 0x0001: "<", 0x0006: ">", 0x0007: "<", 0x000A: ">", 0x000B: "<"}


class _CdrReader:
    def __init__(self, data):
        self.buf = memoryview(data).cast("B")
        if len(self.buf) < 4:
            raise ImageError(f"serialized message of {len(self.buf)} bytes: too short for a CDR header")
        kind = (self.buf[0] << 8) | self.buf[1]
        if kind not in _CDR_IDS:
            raise ImageError(f"unsupported CDR encapsulation 0x{kind:04x}")
        self.order = _CDR_IDS[kind]
        self.pos = 4

    def _take(self, n: int) -> memoryview:
        if self.pos + n > len(self.buf):
            raise ImageError(f"serialized message truncated at byte {self.pos} (needs {n} more)")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def u32(self) -> int:
        self.pos += -(self.pos - 4) % 4  # aligned relative to the body (after the encapsulation header)
        return int.from_bytes(self._take(4), "little" if self.order == "<" else "big")

    def i32(self) -> int:
        v = self.u32()
        return v - (1 << 32) if v >= 1 << 31 else v

    def u8(self) -> int:
        return int(self._take(1)[0])

    def string(self) -> str:
        n = self.u32()
        return bytes(self._take(n)).split(b"\0", 1)[0].decode("utf-8", "replace")

    def blob(self) -> memoryview:
        return self._take(self.u32())

    def header(self):
        sec, nanosec = self.i32(), self.u32()
        return SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=nanosec), frame_id=self.string())


def image_from_cdr(data):
    """Serialized ``sensor_msgs/Image`` (CDR) → an object with its fields; ``data`` is a view, not a copy.
    Raises :class:`ImageError` when the bytes are not one."""
    r = _CdrReader(data)
    header = r.header()
    height, width, encoding = r.u32(), r.u32(), r.string()
    is_bigendian, step = r.u8(), r.u32()
    return SimpleNamespace(header=header, height=height, width=width, encoding=encoding, is_bigendian=is_bigendian,
                           step=step, data=r.blob())


def compressed_from_cdr(data):
    """Serialized ``sensor_msgs/CompressedImage`` (CDR) → an object with its fields (``data`` a view)."""
    r = _CdrReader(data)
    header = r.header()
    return SimpleNamespace(header=header, format=r.string(), data=r.blob())


def encode_image(rgb: np.ndarray, msg) -> None:
    """Fill a ``sensor_msgs/Image``-like ``msg`` with ``rgb`` as rgb8 (header left to the caller)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = "rgb8"
    msg.is_bigendian = 0
    msg.step = int(rgb.shape[1] * 3)
    msg.data = rgb.tobytes()
