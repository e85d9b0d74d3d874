"""The memory of the recent stream, as plain Python (no ROS) so it is testable alone.

:class:`FrameWindow` holds the last ``duration`` seconds of camera frames, decimated to a target
rate and downscaled at ingestion, so memory is bounded by ``max_frames x max_side^2 x 3`` bytes
whatever the camera sends.  Time is the frames' own header stamps (integer nanoseconds, kept
exactly so answers quote the stamps the camera published).  What a backwards jump of the stamps
means (a looping bag, a restarted driver) is decided by its owner,
:class:`stvg_ros.stream.service.GroundingService`, which then calls :meth:`FrameWindow.reset`.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from typing import Optional

import numpy as np

from ..boxes import Box

NS = 1_000_000_000


def to_seconds(stamp_ns: int) -> float:
    return stamp_ns / NS


def stored_size(height: int, width: int, max_side: int) -> Optional[tuple[int, int]]:
    """The ``(width, height)`` a ``height x width`` image is stored at, or None when it is kept as is."""
    longest = max(height, width)
    if max_side <= 0 or longest <= max_side:
        return None
    scale = longest / max_side
    return max(1, round(width / scale)), max(1, round(height / scale))


def downscale(image: np.ndarray, max_side: int,
              source_size: Optional[tuple[int, int]] = None) -> tuple[np.ndarray, float]:
    """Shrink ``image`` so its longer side is at most ``max_side`` (0 = keep), with ``INTER_AREA``.

    ``source_size``: the ``(H, W)`` of the frame ``image`` was decoded from when it is already a reduced
    decode of it (a JPEG decoded at 1/2, 1/4, 1/8): the stored size is computed from the source, so it is
    the same as from a full decode.  Returns the image and ``scale`` = source pixels per stored pixel
    (>= 1), so a box found on the stored image maps back to the source by multiplying with ``scale``.

    Large shrinks are cheap: while at least a factor 2 would remain, even-sized images are first halved
    with ``INTER_AREA`` (an exact 2x2 mean, OpenCV's vectorised fast path) and the rest is one
    ``INTER_AREA`` resize; 1080p to 448 px costs ~40 % of one direct resize, and differs from it by
    0.4 grey levels on average (mean absolute difference on photographs; bench/bench_node.py measures it).
    """
    h, w = image.shape[:2]
    src_h, src_w = source_size or (h, w)
    size = stored_size(src_h, src_w, max_side)
    if size is None:
        if (h, w) == (src_h, src_w):
            return image, 1.0
        size = (w, h)  # a reduced decode already at or under max_side: keep it (no upscaling)
    import cv2

    small = image
    while small.shape[0] % 2 == 0 and small.shape[1] % 2 == 0 and small.shape[1] >= 4 * size[0] \
            and small.shape[0] >= 4 * size[1]:
        small = cv2.resize(small, (small.shape[1] // 2, small.shape[0] // 2), interpolation=cv2.INTER_AREA)
    if (small.shape[1], small.shape[0]) != size:
        small = cv2.resize(small, size, interpolation=cv2.INTER_AREA)
    # The exact per-axis factors differ from the longest side's by rounding only; use the width's.
    return small, src_w / size[0]


#: how the window keeps a frame's pixels (``ServingConfig.window_codec``): ``none`` = the array itself;
#: ``png`` = a lossless PNG (fastest zlib level) decoded when a consumer reads ``Frame.image``, so a window
#: costs a third to two thirds of the raw bytes on camera images for ~2 ms of encoding per kept frame at
#: 224x168 (bench/README.md, "Several cameras")
WINDOW_CODECS = ("none", "png")


def pack(image: np.ndarray, codec: str) -> "np.ndarray | bytes":
    """``image`` as the window keeps it under ``codec`` (lossless: :func:`unpack` gives it back bit-exact)."""
    if codec == "none":
        return np.ascontiguousarray(image)
    import cv2

    ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])  # channel order kept as is
    if not ok:
        raise ValueError(f"could not PNG-encode a {image.shape} {image.dtype} frame")
    return buf.tobytes()


def unpack(data: "np.ndarray | bytes") -> np.ndarray:
    if isinstance(data, np.ndarray):
        return data
    import cv2

    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


class Frame:
    """One frame kept in the window: RGB pixels (possibly downscaled) and where they came from.

    ``seq`` numbers the frames a window stored (1, 2, ...; never reused, not even after a reset),
    so caches can key on it; ``stamp_ns`` is the camera's stamp.  ``image`` may be given packed
    (:func:`pack`: then it is decoded on each read of :attr:`image`, and ``shape`` says its size
    without decoding)."""

    __slots__ = ("stamp_ns", "_data", "scale", "source_size", "frame_id", "seq", "shape")

    def __init__(self, stamp_ns: int, image: "np.ndarray | bytes", scale: float, source_size: tuple[int, int],
                 frame_id: str = "", seq: int = 0, shape: Optional[tuple[int, ...]] = None):
        self.stamp_ns = stamp_ns
        self._data = image
        self.scale = scale
        self.source_size = source_size
        self.frame_id = frame_id
        self.seq = seq
        self.shape = tuple(image.shape) if isinstance(image, np.ndarray) else tuple(shape or ())

    @property
    def image(self) -> np.ndarray:
        """HxWx3 uint8 RGB at the stored size (decoded here when the window keeps it packed)."""
        return unpack(self._data)

    @property
    def nbytes(self) -> int:
        """Bytes this frame's pixels take in the window (the packed size when packed)."""
        d = self._data
        return int(d.nbytes) if isinstance(d, np.ndarray) else len(d)

    @property
    def stamp(self) -> float:
        return to_seconds(self.stamp_ns)

    def __repr__(self) -> str:
        return f"Frame(stamp_ns={self.stamp_ns}, shape={self.shape}, seq={self.seq}, frame_id={self.frame_id!r})"

    def box_to_source(self, box: Box) -> Box:
        """A box on the stored image → the same box in the published image's pixels, clipped."""
        h, w = self.source_size
        s = self.scale
        x0, y0, x1, y1 = (float(v) * s for v in box)
        return (min(max(x0, 0.0), w), min(max(y0, 0.0), h), min(max(x1, 0.0), w), min(max(y1, 0.0), h))

    def box_from_source(self, box: Box) -> Box:
        s = self.scale
        return tuple(float(v) / s for v in box)  # type: ignore[return-value]


class WindowImages(Sequence):
    """The images of ``frames`` as a sequence that decodes a packed frame only when it is indexed, so a
    grounder that samples 8 of 300 frames decodes 8.  ``uniform`` = every frame is HxWx3 uint8 of one
    shape (the window checked it), so callers may skip checking each frame."""

    def __init__(self, frames: Sequence[Frame]):
        self._frames = list(frames)
        shapes = {f.shape for f in self._frames}
        self.uniform = len(shapes) == 1 and len(next(iter(shapes))) == 3 and next(iter(shapes))[2] == 3

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [f.image for f in self._frames[i]]
        return self._frames[i].image


def images_of(frames: Sequence[Frame]) -> "Sequence[np.ndarray]":
    """What to hand a grounder for ``frames``: the arrays themselves when none is packed, else a
    :class:`WindowImages` that decodes only the frames it is asked for."""
    if all(isinstance(f._data, np.ndarray) for f in frames):
        return [f.image for f in frames]
    return WindowImages(frames)


class FrameWindow:
    """Sliding window of recent frames; thread-safe (the executor adds, the worker reads).

    ``offer(stamp_ns)`` decides *before decoding* whether a frame is wanted, so decimated frames
    cost nothing; ``add`` stores a decoded frame.  Decimation keeps one frame per ``1/rate``
    seconds on a fixed schedule (a 30 Hz camera at rate 10 keeps every third frame; 25 Hz gives
    an average of 10), so the kept rate does not drift with jitter.

    With ``rate`` 0 (the node's default) every frame is kept, so a query's frames are the stream's
    and the grounder's sample of them (uniform in time, :func:`stvg_ros.grounding.grounder.sample_indices`)
    is exactly what core mode samples from the same stream; any decimation shifts that sample.
    More than ``max_frames`` frames within ``duration`` are *thinned*, not cut: the frame whose
    removal leaves the smallest gap goes (the oldest of equals), so the window keeps its time span,
    recent frames stay dense, older history gets sparser, and the time-uniform sample stays within
    a gap of core mode's.
    """

    #: slack when comparing a stamp with the decimation schedule (1 ms)
    SLACK_NS = 1_000_000

    def __init__(self, duration: float = 10.0, max_frames: int = 64, rate: float = 0.0, max_side: int = 0,
                 codec: str = "none"):
        self.configure(duration, max_frames, rate, max_side, codec)
        self._frames: deque[Frame] = deque()
        self._lock = threading.Lock()
        self._next_due_ns: Optional[int] = None
        self._seq = 0
        self.resets = 0
        self.decimated = 0
        self.stale = 0
        self.thinned = 0

    def configure(self, duration: float, max_frames: int, rate: float, max_side: int,
                  codec: Optional[str] = None) -> None:
        """``codec``: how frames added from now on are kept (:data:`WINDOW_CODECS`; None = unchanged)."""
        if duration <= 0:
            raise ValueError(f"window duration {duration!r} s: use a positive number of seconds")
        if max_frames < 1:
            raise ValueError(f"window max_frames {max_frames!r}: keep at least 1 frame")
        if rate < 0:
            raise ValueError(f"window rate {rate!r} Hz: use 0 (keep every frame) or a positive rate")
        if max_side < 0:
            raise ValueError(f"window max_side {max_side!r}: use 0 (no downscaling) or a positive pixel size")
        if codec is not None and codec not in WINDOW_CODECS:
            raise ValueError(f"window codec {codec!r}: use one of {', '.join(WINDOW_CODECS)}")
        if codec is not None or not hasattr(self, "codec"):
            self.codec = codec or "none"
        self.duration_ns = int(round(duration * NS))
        self.max_frames = int(max_frames)
        self.period_ns = int(round(NS / rate)) if rate > 0 else 0
        self.max_side = int(max_side)

    # ------------------------------------------------------------------------------------------
    def offer(self, stamp_ns: int) -> str:
        """Whether a frame with this stamp should be decoded and added.

        Returns ``"keep"``, ``"decimate"`` (skip: too soon for the target rate) or ``"stale"``
        (skip: not newer than the newest frame, e.g. a duplicate or a reordered message).
        """
        with self._lock:
            if self._frames and stamp_ns <= self._frames[-1].stamp_ns:
                self.stale += 1
                return "stale"
            if self.period_ns and self._next_due_ns is not None and stamp_ns < self._next_due_ns - self.SLACK_NS:
                self.decimated += 1
                return "decimate"
            if self.period_ns:
                due = self._next_due_ns
                if due is None or stamp_ns >= due + self.period_ns:
                    due = stamp_ns  # (re)start the schedule at this frame after a gap or reset
                self._next_due_ns = due + self.period_ns
            return "keep"

    def add(self, stamp_ns: int, image: np.ndarray, source_size: Optional[tuple[int, int]] = None,
            frame_id: str = "") -> Frame:
        """Store a decoded RGB frame (downscaled here to ``max_side``) and evict old ones.

        ``source_size``: the published ``(H, W)`` when ``image`` was already shrunk by the decoder
        (``image_messages.decode_for_window``); boxes map back to it."""
        if source_size is None:
            source_size = (int(image.shape[0]), int(image.shape[1]))
        source_size = (int(source_size[0]), int(source_size[1]))
        small, scale = downscale(image, self.max_side, source_size)
        data = pack(small, self.codec)  # outside the lock: PNG encoding takes milliseconds
        with self._lock:
            self._seq += 1
            frame = Frame(stamp_ns, data, scale, source_size, frame_id, self._seq, small.shape)
            if self._frames and stamp_ns <= self._frames[-1].stamp_ns:
                # offer() said keep, but a newer frame raced in: drop this one quietly
                self.stale += 1
                return frame
            self._frames.append(frame)
            self._evict_locked(stamp_ns)
        return frame

    def _evict_locked(self, newest_ns: int) -> None:
        oldest_allowed = newest_ns - self.duration_ns
        while self._frames and self._frames[0].stamp_ns < oldest_allowed:
            self._frames.popleft()
        while len(self._frames) > self.max_frames:
            self._thin_locked()

    def _thin_locked(self) -> None:
        """Drop the inner frame whose neighbours are closest in time (the oldest of equals); the oldest
        and the newest frame stay, so the window's time span does not shrink."""
        frames = self._frames
        if len(frames) <= 2:
            frames.popleft()
            return
        stamps = np.fromiter((f.stamp_ns for f in frames), dtype=np.int64, count=len(frames))
        merged = stamps[2:] - stamps[:-2]  # the gap left by dropping frame i + 1
        del frames[int(np.argmin(merged)) + 1]
        self.thinned += 1

    def _clear_locked(self) -> None:
        self._frames.clear()
        self._next_due_ns = None

    def reset(self) -> None:
        """Forget every frame (the stream's time jumped back); counted in ``resets`` when any was held."""
        with self._lock:
            if self._frames:
                self.resets += 1
            self._clear_locked()

    # ------------------------------------------------------------------------------------------
    def frames(self, start_ns: int = 0, end_ns: int = 0) -> list[Frame]:
        """A snapshot of the frames with ``start_ns <= stamp <= end_ns`` (0 = unbounded)."""
        with self._lock:
            out = list(self._frames)
        if start_ns:
            out = [f for f in out if f.stamp_ns >= start_ns]
        if end_ns:
            out = [f for f in out if f.stamp_ns <= end_ns]
        return out

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)

    @property
    def newest(self) -> Optional[Frame]:
        with self._lock:
            return self._frames[-1] if self._frames else None

    @property
    def span(self) -> float:
        """Seconds between the oldest and the newest frame held."""
        with self._lock:
            if len(self._frames) < 2:
                return 0.0
            return to_seconds(self._frames[-1].stamp_ns - self._frames[0].stamp_ns)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(f.nbytes for f in self._frames)


class RateMeter:
    """Rate of events over the last ``horizon`` of them, from their stamps (works with sim time)."""

    def __init__(self, horizon: int = 30):
        self._stamps: deque[int] = deque(maxlen=horizon)

    def tick(self, stamp_ns: int) -> None:
        if self._stamps and stamp_ns < self._stamps[-1]:
            self._stamps.clear()  # clock went back
        self._stamps.append(stamp_ns)

    @property
    def rate(self) -> float:
        if len(self._stamps) < 2 or self._stamps[-1] == self._stamps[0]:
            return 0.0
        return (len(self._stamps) - 1) * NS / (self._stamps[-1] - self._stamps[0])

    def clear(self) -> None:
        self._stamps.clear()
