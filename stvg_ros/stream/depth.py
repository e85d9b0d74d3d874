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
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ..boxes import Box

__all__ = ["CalibrationError", "DepthError", "Intrinsics", "Position3D", "decode_depth", "locate", "DepthBuffer",
           "DEPTH_ENCODINGS", "transform_point"]


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


def transform_point(translation: Sequence[float], rotation_xyzw: Sequence[float], point: Sequence[float]) -> np.ndarray:
    """``R(q) p + t``: a point carried by a transform (tf2's ``TransformStamped``: translation, unit quaternion)."""
    x, y, z, w = (float(v) for v in rotation_xyzw)
    n = np.sqrt(x * x + y * y + z * z + w * w)
    if n == 0:
        raise CalibrationError("the transform's rotation is a zero quaternion")
    x, y, z, w = x / n, y / n, z / n, w / n
    r = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                  [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                  [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    return r @ np.asarray(point, float) + np.asarray(translation, float)


#: the reason a box has no position while no usable CameraInfo has come
NO_CALIBRATION = "no valid CameraInfo for the colour camera"


class DepthBuffer:
    """Depth images by stamp (nanoseconds) with the intrinsics current at each, bounded; the nearest within
    ``tolerance_ns`` answers a box's stamp.  Thread-safe: the node's callbacks add, the worker looks up.

    Two stores: the ``recent`` depth frames (a ring, at the depth camera's rate), and those *kept* for
    colour frames the window keeps (:meth:`keep`, at most ``kept``; a depth frame that arrives after its
    colour frame is matched when it comes), so a tube over the whole window finds depth for every frame
    while memory stays bounded: kept depth is stored with its longer side at most ``kept_max_side`` pixels
    (nearest-neighbour, so no depth is invented across an edge; the boxes' central regions still hold tens
    to thousands of readings) and as float16 (about 1 mm at 2 m, 4 mm at 8 m: below any depth sensor's
    noise): 150 kB a frame at the default 320, 45 MB for a 300-frame window.  The association is done here, not with
    ``message_filters`` (not installable everywhere): depth and colour rarely share stamps exactly."""

    def __init__(self, recent: int = 16, kept: int = 64, tolerance_ns: int = 50_000_000, kept_max_side: int = 320):
        if recent < 1 or kept < 1:
            raise ValueError(f"recent={recent}, kept={kept}: keep at least one depth frame of each")
        self.recent_max, self.kept_max, self.kept_max_side = int(recent), int(kept), int(kept_max_side)
        self.tolerance_ns = int(tolerance_ns)
        self._recent: OrderedDict[int, tuple[np.ndarray, Optional[Intrinsics]]] = OrderedDict()
        self._kept: OrderedDict[int, tuple[int, np.ndarray, Optional[Intrinsics]]] = OrderedDict()
        self._pending: OrderedDict[int, None] = OrderedDict()  # colour stamps still waiting for their depth
        self.intrinsics: Optional[Intrinsics] = None
        self.calibration_problem = NO_CALIBRATION  # why there are no intrinsics ("" when there are)
        self.received = self.stale = self.unmatched = 0
        self._lock = threading.Lock()

    def set_intrinsics(self, intrinsics: Optional[Intrinsics], problem: str = "") -> None:
        """The colour camera's calibration from now on; None with the ``problem`` (the reason boxes get) when
        there is none or it is unusable."""
        with self._lock:
            self.intrinsics = intrinsics
            self.calibration_problem = "" if intrinsics is not None else (problem or NO_CALIBRATION)

    def add(self, stamp_ns: int, depth: np.ndarray) -> bool:
        """One decoded depth image (metres); False (counted ``stale``) for a stamp not newer than the newest."""
        stamp_ns = int(stamp_ns)
        with self._lock:
            self.received += 1
            if self._recent and stamp_ns <= next(reversed(self._recent)):
                self.stale += 1
                return False
            self._recent[stamp_ns] = (depth, self.intrinsics)
            while len(self._recent) > self.recent_max:
                self._recent.popitem(last=False)
            for colour in list(self._pending):
                if stamp_ns - colour > self.tolerance_ns:  # no later depth can be nearer: settle it
                    self._settle(colour)
            return True

    def keep(self, colour_stamp_ns: int) -> None:
        """The window kept a colour frame at this stamp: keep the depth nearest it (now, or when it arrives)."""
        with self._lock:
            colour = int(colour_stamp_ns)
            newest = next(reversed(self._recent)) if self._recent else None
            if newest is not None and newest - colour > self.tolerance_ns:
                self._settle(colour)
            else:
                self._pending[colour] = None
                while len(self._pending) > self.kept_max:
                    self._settle(next(iter(self._pending)))

    def _settle(self, colour: int) -> None:
        self._pending.pop(colour, None)
        near = self._nearest(self._recent, colour)
        if near is None:
            self.unmatched += 1
            return
        depth, intr = self._recent[near]
        h, w = depth.shape[:2]
        if max(h, w) > self.kept_max_side:
            import cv2

            f = self.kept_max_side / max(h, w)
            depth = cv2.resize(depth, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_NEAREST)
        self._kept[colour] = (near, depth.astype(np.float16), intr)
        while len(self._kept) > self.kept_max:
            self._kept.popitem(last=False)

    def _nearest(self, store, stamp: int) -> Optional[int]:
        if not store:
            return None
        near = min(store, key=lambda s: abs(s - stamp))
        return near if abs(near - stamp) <= self.tolerance_ns else None

    def reset(self) -> None:
        with self._lock:
            self._recent.clear()
            self._kept.clear()
            self._pending.clear()

    def __len__(self) -> int:
        return len(self._recent) + len(self._kept)

    def lookup(self, stamp_ns: int) -> tuple[Optional[np.ndarray], Optional[Intrinsics], str]:
        """``(depth, intrinsics, "")`` for the colour frame at ``stamp_ns``, else ``(None, None, reason)``."""
        stamp_ns = int(stamp_ns)
        with self._lock:
            if stamp_ns in self._pending:
                self._settle(stamp_ns)
            if stamp_ns in self._kept:
                _, depth, intr = self._kept[stamp_ns]
            else:
                near = self._nearest(self._recent, stamp_ns)
                if near is None:
                    if not self._recent and not self._kept:
                        return None, None, "no depth image received"
                    return None, None, f"no depth image within {self.tolerance_ns / 1e9:.3f} s of the frame"
                depth, intr = self._recent[near]
            intr = intr or self.intrinsics  # depth that came before the first CameraInfo uses the current one
            if intr is None:
                return None, None, self.calibration_problem
            return depth, intr, ""

    def locate(self, stamp_ns: int, box: Box, image_size: Optional[tuple[int, int]] = None, **kwargs) -> Position3D:
        """:func:`locate` for a box on the colour frame stamped ``stamp_ns`` whose pixels are ``image_size``
        (H, W; default the intrinsics' own size: the camera's pixels; intrinsics of another size are scaled)."""
        depth, intr, why = self.lookup(stamp_ns)
        if depth is None:
            return Position3D.invalid(why, self.intrinsics.frame_id if self.intrinsics else "")
        if image_size is not None and (intr.width, intr.height) != (image_size[1], image_size[0]):
            intr = intr.scaled(image_size[1], image_size[0])
        return locate(box, depth.astype(np.float32, copy=False), intr, **kwargs)
