"""Pixel boxes: the one place for box geometry (type, clipping, IoU, centre/corner form, filling over time).

Boxes are ``(x_min, y_min, x_max, y_max)`` in the input frame's pixels; ``TubeBox`` and
``Detection`` messages carry ``(center_x, center_y, size_x, size_y)``.  Convert here, not inline.
"""

from __future__ import annotations

from typing import Sequence

#: A pixel box ``(x_min, y_min, x_max, y_max)`` in the input frame's coordinates.
Box = tuple[float, float, float, float]


def to_centre_size(box: Box) -> tuple[float, float, float, float]:
    """``(x_min, y_min, x_max, y_max)`` → ``(center_x, center_y, size_x, size_y)`` (sizes never negative)."""
    x0, y0, x1, y1 = box
    return (x0 + x1) / 2.0, (y0 + y1) / 2.0, max(0.0, x1 - x0), max(0.0, y1 - y0)


def from_centre_size(cx: float, cy: float, sx: float, sy: float) -> Box:
    """``(center_x, center_y, size_x, size_y)`` → ``(x_min, y_min, x_max, y_max)``."""
    return cx - sx / 2.0, cy - sy / 2.0, cx + sx / 2.0, cy + sy / 2.0


def clip_box(box: Sequence[float], image_size: tuple[int, int]) -> Box:
    """Box clipped to an image of ``(height, width)``, with ``x_min <= x_max`` and ``y_min <= y_max``."""
    H, W = image_size
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, x1 = sorted((min(max(x0, 0.0), W), min(max(x1, 0.0), W)))
    y0, y1 = sorted((min(max(y0, 0.0), H), min(max(y1, 0.0), H)))
    return (x0, y0, x1, y1)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two boxes, areas without ``+1`` (as ``np_box_iou`` in the official code); 0 for empty boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def fill_boxes(boxes: Sequence[Box | None], stamps: Sequence[float], first: int, last: int) -> list[Box]:
    """Boxes for frames ``first..last``: the track's own, else interpolated in time between its
    nearest boxes before and after, else the nearest one held (a track may miss frames)."""
    have = [i for i, b in enumerate(boxes) if b is not None]
    if not have:
        raise ValueError("the track has no box in any frame")
    out = []
    for i in range(first, last + 1):
        if boxes[i] is not None:
            out.append(tuple(boxes[i]))
            continue
        before = [j for j in have if j < i]
        after = [j for j in have if j > i]
        if before and after:
            a, b = before[-1], after[0]
            w = (stamps[i] - stamps[a]) / (stamps[b] - stamps[a]) if stamps[b] != stamps[a] else 0.5
            out.append(tuple(float((1 - w) * pa + w * pb) for pa, pb in zip(boxes[a], boxes[b])))
        else:
            out.append(tuple(boxes[before[-1] if before else after[0]]))
    return out


def fill_interior(boxes: Sequence[Box | None], stamps: Sequence[float]) -> list[Box | None]:
    """Boxes with the gaps between a track's first and last box interpolated; outside stays None."""
    have = [i for i, b in enumerate(boxes) if b is not None]
    if not have:
        return list(boxes)
    inner = fill_boxes(boxes, stamps, have[0], have[-1])
    return [None] * have[0] + inner + [None] * (len(boxes) - 1 - have[-1])
