"""Video decoding with OpenCV and the paper's uniform frame sampling.

Every decoded frame is tied to its *annotation frame index* (the index the benchmark's boxes and
spans use) and a stamp ``index / fps`` in seconds, so a prediction made on the sampled frames can be
scored against the full-rate ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np


class VideoError(RuntimeError):
    """A video cannot be opened or has fewer frames than requested."""


@dataclass
class Clip:
    """Frames given to the grounder plus where they come from."""

    frames: list[np.ndarray]
    """HxWx3 uint8 RGB."""
    frame_indices: list[int]
    """Annotation frame index of every frame."""
    stamps: list[float]
    """Seconds, ``index / fps`` (plus the bag's start when read from a bag)."""
    fps: float
    size: tuple[int, int] = (0, 0)
    """(H, W) of the frames."""
    extra: dict = field(default_factory=dict)

    def frame_of_stamp(self, stamp: float) -> int:
        """Annotation frame index of one of ``stamps`` (nearest, so float round trips are safe)."""
        i = int(np.argmin(np.abs(np.asarray(self.stamps) - stamp)))
        return self.frame_indices[i]


def uniform_indices(num_frames: int, n: int) -> list[int]:
    """``n`` indices spread uniformly over ``[0, num_frames)`` including both ends, as the paper's
    loader (``np.linspace(0, total - 1, n, dtype=int)``); all frames when the video is shorter."""
    if num_frames <= 0:
        raise VideoError("the video has no frames")
    if num_frames <= n:
        return list(range(num_frames))
    return np.linspace(0, num_frames - 1, n, dtype=int).tolist()


def probe(path: str | Path) -> tuple[int, float, tuple[int, int]]:
    """``(frame_count, fps, (H, W))`` from the container (frame counts may be estimates)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise VideoError(f"cannot open video {path}: check the path and that OpenCV can decode its codec")
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(cap.get(cv2.CAP_PROP_FPS)) or 0.0
        h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    finally:
        cap.release()
    return n, fps, (h, w)


def read_frames(path: str | Path, indices: Sequence[int], offset: int = 0) -> list[np.ndarray]:
    """Decode the frames at ``offset + i`` for ``i`` in ``indices`` (RGB), in the order given.

    Reads sequentially with ``grab()`` (no colour conversion for skipped frames) because seeking with
    ``CAP_PROP_POS_FRAMES`` is frame-inaccurate for many codecs.  If the file ends early (container
    frame counts are often off by a few), the missing frames repeat the last decoded one.
    """
    import cv2

    wanted = sorted({offset + int(i) for i in indices})
    if not wanted:
        return []
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise VideoError(f"cannot open video {path}: check the path and that OpenCV can decode its codec")
    got: dict[int, np.ndarray] = {}
    try:
        pos, k = 0, 0
        last = None
        while k < len(wanted):
            if not cap.grab():
                break
            if pos == wanted[k]:
                ok, bgr = cap.retrieve()
                if ok:
                    last = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                    got[pos] = last
                k += 1
            pos += 1
    finally:
        cap.release()
    if not got:
        raise VideoError(f"decoded no frame of {path} (wanted frames {wanted[0]}..{wanted[-1]})")
    out = []
    latest = None
    for i in indices:
        f = offset + int(i)
        if f in got:
            latest = got[f]
        else:  # past the end: hold the last decoded frame at or before it
            earlier = [p for p in got if p <= f]
            latest = got[max(earlier)] if earlier else got[min(got)]
        out.append(latest)
    return out


def load_clip(path: str | Path, num_frames: int, total_frames: Optional[int] = None,
              fps: Optional[float] = None, offset: int = 0, max_side: int = 0,
              fallback_fps: Optional[float] = None) -> Clip:
    """Sample ``num_frames`` frames uniformly over the annotated video and decode them.

    ``total_frames`` / ``fps`` come from the annotation when it has them (its frame indices are the
    reference), else from the container, else ``fallback_fps``.  ``max_side`` > 0 downsizes frames whose longer side is
    larger (saves memory; boxes are then scaled by the caller -- see ``Clip.extra['scale']``).
    """
    n_file, fps_file, (h, w) = probe(path)
    total = int(total_frames or n_file)
    fps = float(fps or fps_file or fallback_fps or 0.0)
    if fps <= 0:
        raise VideoError(f"{path}: unknown frame rate; give the annotation's fps")
    indices = uniform_indices(total, num_frames)
    frames = read_frames(path, indices, offset)
    scale = 1.0
    if max_side and max(frames[0].shape[:2]) > max_side:
        import cv2

        scale = max_side / max(frames[0].shape[:2])
        size = (round(frames[0].shape[1] * scale), round(frames[0].shape[0] * scale))
        frames = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]
    return Clip(frames=frames, frame_indices=indices, stamps=[i / fps for i in indices], fps=fps,
                size=frames[0].shape[:2], extra={"scale": scale})


def write_video(path: str | Path, frames: Sequence[np.ndarray], fps: float) -> Path:
    """Write RGB frames as an MJPG ``.avi`` / ``mp4v`` ``.mp4`` (tests and demos)."""
    import cv2

    path = Path(path)
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), fourcc, float(fps), (w, h))
    if not vw.isOpened():
        raise VideoError(f"cannot write {path}: OpenCV has no encoder for {path.suffix}; use .avi")
    try:
        for f in frames:
            vw.write(cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2BGR))
    finally:
        vw.release()
    return path
