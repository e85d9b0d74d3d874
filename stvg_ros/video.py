"""Video decoding with OpenCV and the paper's uniform frame sampling.

Every decoded frame is tied to its *annotation frame index* (the index the benchmark's boxes and
spans use) and a stamp ``index / fps`` in seconds, so a prediction made on the sampled frames can be
scored against the full-rate ground truth.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

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


def iter_frames(path: str | Path, stop: Optional[int] = None, indices: Optional[Iterable[int]] = None,
                offset: int = 0) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, RGB frame)`` in decode order, in ONE pass: every frame up to ``stop`` (exclusive), or
    only those at ``offset + i`` for ``i`` in ``indices`` (yielded as ``i``, ascending).

    Skipped frames are only grabbed (no colour conversion); seeking with ``CAP_PROP_POS_FRAMES`` is
    avoided because it is frame-inaccurate for many codecs.  A file that stops decoding before the
    last frame wanted (or before its container's frame count) ends the iteration there with a
    ``RuntimeWarning`` naming it: what decoded is used, nothing is re-read."""
    import cv2

    wanted = None if indices is None else sorted({int(i) for i in indices})
    if wanted is not None and stop is not None:
        wanted = [i for i in wanted if i < stop]
    if wanted is not None and not wanted:
        return
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise VideoError(f"cannot open video {path}: check the path and that OpenCV can decode its codec")
    declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    last = offset + wanted[-1] if wanted is not None else (stop + offset - 1 if stop is not None else declared - 1)
    pos, k = 0, 0
    try:
        while pos <= last or (wanted is None and stop is None):
            if not cap.grab():
                break
            i = pos - offset
            if i >= 0 and (wanted is None or i == wanted[k]):
                ok, bgr = cap.retrieve()
                if not ok:
                    break
                yield i, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                k += 1
                if wanted is not None and k == len(wanted):
                    return
            pos += 1
    finally:
        cap.release()
    if pos <= last:
        warnings.warn(f"{path}: decoding stopped at frame {pos} of {last + 1} wanted ({declared} declared by the "
                      f"container); using the {pos} that decoded", RuntimeWarning, stacklevel=2)


def read_frames(path: str | Path, indices: Sequence[int], offset: int = 0) -> list[np.ndarray]:
    """Decode the frames at ``offset + i`` for ``i`` in ``indices`` (RGB), in the order given, in one pass
    (:func:`iter_frames`).  If the file ends early (container frame counts are often off, some files
    break), a warning names it and the missing frames repeat the last decoded one."""
    got = dict(iter_frames(path, indices=indices, offset=offset))
    if not got:
        wanted = sorted(int(i) for i in indices)
        if not wanted:
            return []
        raise VideoError(f"decoded no frame of {path} (wanted frames {offset + wanted[0]}..{offset + wanted[-1]})")
    out = []
    for i in indices:
        i = int(i)
        if i not in got:  # past the end: hold the last decoded frame at or before it
            earlier = [p for p in got if p <= i]
            got[i] = got[max(earlier)] if earlier else got[min(got)]
        out.append(got[i])
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
