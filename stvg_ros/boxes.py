"""Pixel boxes: conversions between the corner form the core uses and the centre form messages carry.

Boxes are ``(x_min, y_min, x_max, y_max)`` (:data:`stvg_ros.result.Box`); ``TubeBox`` and
``Detection`` messages carry ``(center_x, center_y, size_x, size_y)``.  This module is where box
code lives; convert here, not inline.
"""

from __future__ import annotations

from .result import Box


def to_centre_size(box: Box) -> tuple[float, float, float, float]:
    """``(x_min, y_min, x_max, y_max)`` → ``(center_x, center_y, size_x, size_y)`` (sizes never negative)."""
    x0, y0, x1, y1 = box
    return (x0 + x1) / 2.0, (y0 + y1) / 2.0, max(0.0, x1 - x0), max(0.0, y1 - y0)


def from_centre_size(cx: float, cy: float, sx: float, sy: float) -> Box:
    """``(center_x, center_y, size_x, size_y)`` → ``(x_min, y_min, x_max, y_max)``."""
    return cx - sx / 2.0, cy - sy / 2.0, cx + sx / 2.0, cy + sy / 2.0
