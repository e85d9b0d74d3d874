"""Where the target is in space: a tube's boxes back-projected with an aligned depth image and the
colour camera's intrinsics.

Why: a robot told "go to the man in the red coat" needs a point it can hand to tf2, not a box.  RGB-D
drivers publish a depth image aligned to the colour image (``16UC1`` millimetres or ``32FC1`` metres,
same or scaled size) and the colour camera's ``CameraInfo``; this module turns one box plus the depth
image nearest its stamp into a :class:`Position3D` in the colour camera's optical frame (REP 103/105:
x right, y down, z forward, metres), or says why it cannot (``valid=False`` with a ``reason``).

The depth of a box is read robustly: only the box's central region (or the object's mask when one is
given), invalid values (0, NaN, inf, negative, beyond ``max_range``) dropped, and of what is left the
*front cluster* (depths within a band behind the nearest few percent) taken, because a box around a
person or a star also holds the wall behind it.  No ROS import: the node feeds it decoded arrays.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .boxes import Box

__all__ = ["CalibrationError", "DepthError", "Intrinsics", "Position3D", "decode_depth", "locate", "DepthBuffer",
           "DEPTH_ENCODINGS"]


class CalibrationError(ValueError):
    """Camera intrinsics that cannot back-project (missing, all zero, non-positive focal length)."""


class DepthError(ValueError):
    """A depth image that cannot be read; the message says what is wrong and what to send instead."""


#: depth encodings read, and the factor to metres
DEPTH_ENCODINGS = {"16UC1": 0.001, "mono16": 0.001, "32FC1": 1.0}


@dataclass(frozen=True)
class Intrinsics:
    """A pinhole camera: focal lengths and principal point in pixels of an image ``width`` x ``height``."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    frame_id: str = ""

    @classmethod
    def from_k(cls, k: Sequence[float], width: int, height: int, frame_id: str = "") -> "Intrinsics":
        """From ``CameraInfo.k`` (row-major 3x3) and the image size it belongs to."""
        k = [float(v) for v in k]
        if len(k) != 9:
            raise CalibrationError(f"camera matrix k has {len(k)} values, want 9 (row-major 3x3)")
        if not all(np.isfinite(k)):
            raise CalibrationError("camera matrix k holds NaN or inf: the camera is not calibrated")
        fx, fy, cx, cy = k[0], k[4], k[2], k[5]
        if fx <= 0 or fy <= 0:
            raise CalibrationError(f"focal lengths fx={fx:g}, fy={fy:g} are not positive (an all-zero CameraInfo is "
                                   "an uncalibrated camera): calibrate it, or publish the driver's factory intrinsics")
        if width <= 0 or height <= 0:
            raise CalibrationError(f"CameraInfo size {width}x{height}: the driver must fill width and height")
        return cls(fx, fy, cx, cy, int(width), int(height), frame_id)

    def scaled(self, width: int, height: int) -> "Intrinsics":
        """The same camera for an image resized to ``width`` x ``height`` (pixel centres kept)."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5,
                          int(width), int(height), self.frame_id)

    def ray(self, u: float, v: float) -> tuple[float, float]:
        """``(x/z, y/z)`` of the point at continuous pixel position ``(u, v)`` (pixel ``i`` spans ``[i, i+1)``)."""
        return (u - 0.5 - self.cx) / self.fx, (v - 0.5 - self.cy) / self.fy


def decode_depth(encoding: str, data, height: int, width: int, step: int = 0, is_bigendian: bool = False) -> np.ndarray:
    """A depth image message's fields → float32 metres (H, W), NaN where there is no depth."""
    if encoding not in DEPTH_ENCODINGS:
        raise DepthError(f"depth encoding {encoding!r} is not read: publish 16UC1 (millimetres) or 32FC1 (metres), "
                         "as RealSense, ZED, OAK and Orbbec drivers do for their aligned depth")
    dtype = np.dtype(np.uint16 if encoding != "32FC1" else np.float32).newbyteorder(">" if is_bigendian else "<")
    height, width = int(height), int(width)
    row = width * dtype.itemsize
    step = int(step) or row
    buf = np.frombuffer(bytes(data) if not isinstance(data, (bytes, bytearray, memoryview, np.ndarray)) else data,
                        dtype=np.uint8)
    if height <= 0 or width <= 0 or step < row or buf.size < step * (height - 1) + row:
        raise DepthError(f"depth image {width}x{height} {encoding} with step {step} needs "
                         f"{step * max(height - 1, 0) + row} bytes, has {buf.size}: header and data disagree")
    rows = np.lib.stride_tricks.as_strided(buf, shape=(height, row), strides=(step, 1))
    depth = np.ascontiguousarray(rows).view(dtype).reshape(height, width).astype(np.float32)
    depth *= DEPTH_ENCODINGS[encoding]
    depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    return depth


@dataclass
class Position3D:
    """The target at one frame, in the colour camera's optical frame (metres); ``valid`` says whether it holds."""

    valid: bool
    reason: str = ""
    x: float = 0.0
    y: float = 0.0
    z: float = 0.0
    size_x: float = 0.0
    size_y: float = 0.0
    size_z: float = 0.0
    confidence: float = 0.0
    """Share of the sampled region whose depth lies on the target's front surface."""
    frame_id: str = ""

    @classmethod
    def invalid(cls, reason: str, frame_id: str = "") -> "Position3D":
        return cls(False, reason, frame_id=frame_id)

    @property
    def xyz(self) -> np.ndarray:
        return np.array([self.x, self.y, self.z])


def _front_cluster(values: np.ndarray, band: float) -> np.ndarray:
    """Depths within ``band`` (relative, plus 5 cm) behind the 5th percentile: the nearest surface in the region."""
    front = float(np.percentile(values, 5))
    return values[values <= front * (1.0 + band) + 0.05]


def locate(box: Box, depth: np.ndarray, intrinsics: Intrinsics, mask: Optional[np.ndarray] = None,
           central: float = 0.5, band: float = 0.1, min_pixels: int = 4, max_range: float = 20.0) -> Position3D:
    """The 3-D position and extent of what ``box`` (pixels of the colour image ``intrinsics`` describes) shows.

    ``depth`` is aligned to the colour image, at its size or scaled (boxes and intrinsics are scaled to
    it); ``mask`` (colour-image size, optional) restricts the pixels to the object's own; otherwise the
    central ``central`` fraction of the box (each side) is read."""
    fid = intrinsics.frame_id
    dh, dw = depth.shape[:2]
    sx, sy = dw / intrinsics.width, dh / intrinsics.height
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x1 > x0 and y1 > y0):
        return Position3D.invalid("empty box", fid)
    if mask is not None:
        import cv2

        m = cv2.resize(mask.astype(np.uint8), (dw, dh), interpolation=cv2.INTER_NEAREST).astype(bool)
        region = depth[m]
    else:
        mx, my = (x1 - x0) * (1 - central) / 2, (y1 - y0) * (1 - central) / 2
        c0 = int(np.clip(np.floor((x0 + mx) * sx), 0, dw - 1))
        c1 = int(np.clip(np.ceil((x1 - mx) * sx), c0 + 1, dw))
        r0 = int(np.clip(np.floor((y0 + my) * sy), 0, dh - 1))
        r1 = int(np.clip(np.ceil((y1 - my) * sy), r0 + 1, dh))
        region = depth[r0:r1, c0:c1].ravel()
    if region.size == 0:
        return Position3D.invalid("the box lies outside the depth image", fid)
    values = region[np.isfinite(region) & (region > 0) & (region <= max_range)]
    if values.size < min_pixels:
        return Position3D.invalid(f"no valid depth in the box ({values.size} of {region.size} pixels valid)", fid)
    front = _front_cluster(values, band)
    z = float(np.median(front))
    rx, ry = intrinsics.ray((x0 + x1) / 2, (y0 + y1) / 2)
    size_z = float(np.percentile(front, 90) - np.percentile(front, 10)) if front.size > 1 else 0.0
    return Position3D(True, "", rx * z, ry * z, z, (x1 - x0) * z / intrinsics.fx, (y1 - y0) * z / intrinsics.fy,
                      size_z, front.size / region.size, fid)


class DepthBuffer:
    """Depth images by stamp (nanoseconds), bounded, with the intrinsics current at each; the nearest within
    ``tolerance_ns`` answers a box's stamp.  Thread-safe: the node's callbacks add, the worker looks up.

    The association is done here, not with ``message_filters`` (not installable everywhere): depth and
    colour rarely share stamps exactly, and a depth frame may arrive after the colour frame it matches."""

    def __init__(self, max_frames: int = 48, tolerance_ns: int = 50_000_000):
        if max_frames < 1:
            raise ValueError(f"max_frames={max_frames}: keep at least one depth frame")
        self.max_frames = int(max_frames)
        self.tolerance_ns = int(tolerance_ns)
        self._frames: OrderedDict[int, tuple[np.ndarray, Optional[Intrinsics]]] = OrderedDict()
        self._stamps: list[int] = []
        self.intrinsics: Optional[Intrinsics] = None
        self.received = self.evicted = self.stale = 0
        self._lock = threading.Lock()

    def set_intrinsics(self, intrinsics: Optional[Intrinsics]) -> None:
        """The colour camera's calibration from now on (None: none or invalid)."""
        with self._lock:
            self.intrinsics = intrinsics

    def add(self, stamp_ns: int, depth: np.ndarray) -> bool:
        """Keep one decoded depth image; False (and counted stale) for a stamp not newer than the oldest kept
        when the buffer is full, or equal to one kept."""
        stamp_ns = int(stamp_ns)
        with self._lock:
            self.received += 1
            if stamp_ns in self._frames or (len(self._stamps) >= self.max_frames and stamp_ns < self._stamps[0]):
                self.stale += 1
                return False
            i = bisect_left(self._stamps, stamp_ns)
            self._stamps.insert(i, stamp_ns)
            self._frames[stamp_ns] = (depth, self.intrinsics)
            while len(self._stamps) > self.max_frames:
                del self._frames[self._stamps.pop(0)]
                self.evicted += 1
            return True

    def reset(self) -> None:
        with self._lock:
            self._frames.clear()
            self._stamps.clear()

    def __len__(self) -> int:
        return len(self._stamps)

    def lookup(self, stamp_ns: int) -> tuple[Optional[np.ndarray], Optional[Intrinsics], str]:
        """``(depth, intrinsics, "")`` of the depth frame nearest ``stamp_ns`` within the tolerance, else
        ``(None, None, reason)``."""
        with self._lock:
            if not self._stamps:
                return None, None, "no depth image received"
            i = bisect_left(self._stamps, int(stamp_ns))
            near = min((s for s in self._stamps[max(i - 1, 0):i + 1]), key=lambda s: abs(s - stamp_ns))
            gap = abs(near - stamp_ns)
            if gap > self.tolerance_ns:
                return None, None, (f"no depth image within {self.tolerance_ns / 1e9:.3f} s of the frame "
                                    f"(nearest {gap / 1e9:.3f} s away)")
            depth, intr = self._frames[near]
            if intr is None:
                return None, None, "no valid CameraInfo for the colour camera"
            return depth, intr, ""

    def locate(self, stamp_ns: int, box: Box, image_size: tuple[int, int], **kwargs) -> Position3D:
        """:func:`locate` for a box on the colour frame stamped ``stamp_ns`` whose pixels are ``image_size``
        (H, W) (the camera's own; intrinsics of another size are scaled to it)."""
        depth, intr, why = self.lookup(stamp_ns)
        if depth is None:
            return Position3D.invalid(why, self.intrinsics.frame_id if self.intrinsics else "")
        h, w = image_size
        if (intr.width, intr.height) != (w, h):
            intr = intr.scaled(w, h)
        return locate(box, depth, intr, **kwargs)
