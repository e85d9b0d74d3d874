"""A known camera motion applied to a fixed camera's annotated clip: pan, shake and roll.

Each frame is warped by a per-frame similarity (translation + rotation about the centre) and cropped by
``margin`` px on every side, so no border shows; the clip's true boxes are warped the same way (the
bounding rectangle of the warped corners, clipped to the crop) and a box less than half inside is
dropped.  Used by ``test/test_real_detect.py`` and ``bench/bench_real_detect.py``.
"""

from __future__ import annotations

import math
from typing import Iterable, Iterator

import numpy as np

from stvg_ros.proposals.annotated import AnnotatedBox, AnnotatedClip


def camera_path(n: int, kind: str = "handheld", seed: int = 0, margin: int = 48) -> np.ndarray:
    """``(n, 3)`` per-frame ``(dx, dy, degrees)``: 'pan' (a slow sweep, ``0.9 * margin`` each way, ~1 px a
    frame), 'shake' (independent jitter of up to 6 px and 1 degree) or 'handheld' (both)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    pan = np.zeros((n, 3))
    if kind in ("pan", "handheld"):
        pan[:, 0] = 0.9 * margin * np.sin(2 * math.pi * t / 180.0)
        pan[:, 1] = 0.3 * margin * np.sin(2 * math.pi * t / 260.0)
    shake = np.zeros((n, 3))
    if kind in ("shake", "handheld"):
        shake = np.stack([rng.uniform(-6, 6, n), rng.uniform(-6, 6, n), rng.uniform(-1, 1, n)], 1)
        shake[:, :2] = np.clip(shake[:, :2], -0.1 * margin, 0.1 * margin)
    return pan + shake


def _matrix(size: tuple[int, int], move: np.ndarray, margin: int) -> np.ndarray:
    import cv2

    h, w = size
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), float(move[2]), 1.0)
    m[:, 2] += (float(move[0]) - margin, float(move[1]) - margin)
    return m


def warp_frames(frames: Iterable[tuple[int, np.ndarray]], path: np.ndarray,
                margin: int = 48) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, frame)`` warped by ``path[index]`` and cropped by ``margin`` on each side."""
    import cv2

    for i, f in frames:
        h, w = f.shape[:2]
        m = _matrix((h, w), path[i], margin)
        yield i, cv2.warpAffine(f, m, (w - 2 * margin, h - 2 * margin), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REFLECT)


def warp_clip(clip: AnnotatedClip, size: tuple[int, int], path: np.ndarray, margin: int = 48) -> AnnotatedClip:
    """The clip's boxes as :func:`warp_frames` shows them (``size``: the original frame's (H, W))."""
    h, w = size
    out = AnnotatedClip(clip.name + "+moved", clip.path, {}, clip.note)
    for f, boxes in clip.boxes.items():
        m = _matrix(size, path[f], margin)
        kept = []
        for b in boxes:
            x0, y0, x1, y1 = b.box
            pts = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]], np.float64) @ m.T
            bx0, by0 = pts.min(0)
            bx1, by1 = pts.max(0)
            cx0, cy0 = max(bx0, 0.0), max(by0, 0.0)
            cx1, cy1 = min(bx1, w - 2.0 * margin), min(by1, h - 2.0 * margin)
            if cx1 <= cx0 or cy1 <= cy0 or (cx1 - cx0) * (cy1 - cy0) < 0.5 * (bx1 - bx0) * (by1 - by0):
                continue
            kept.append(AnnotatedBox(b.id, (cx0, cy0, cx1, cy1), b.flags))
        out.boxes[f] = kept
    return out
