"""The debug image: the tube drawn on a strip of window frames.

Uses the core's ``stvg_ros.render.render_tube`` when it is available (same look as the
evaluation reports); otherwise draws a plain strip with OpenCV.  No ROS imports.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from stvg_ros.result import GroundingResult
from stvg_ros.window import Frame

STRIP_FRAMES = 6


def _pick(frames: Sequence[Frame], result: GroundingResult, n: int) -> list[Frame]:
    """Up to ``n`` frames spread over the window, always including the tube's first and last."""
    if len(frames) <= n:
        return list(frames)
    idx = set(np.linspace(0, len(frames) - 1, n).round().astype(int).tolist())
    stamps = [f.stamp for f in frames]
    for t in (result.start, result.end):
        idx.add(int(np.argmin([abs(s - t) for s in stamps])))
    return [frames[i] for i in sorted(idx)]


def draw_strip(frames: Sequence[Frame], result: GroundingResult, text: str = "",
               heatmap: bool = False, height: int = 160) -> np.ndarray:
    """An RGB strip of frames with the tube's boxes (green) and a span bar (red: inside the span)."""
    import cv2

    try:  # the core's renderer, when present, draws the same picture as the reports
        from stvg_ros import render  # type: ignore[attr-defined]

        if hasattr(render, "render_tube"):
            out = render.render_tube([f.image for f in frames], [f.stamp for f in frames], result,
                                     heatmap=heatmap)
            if isinstance(out, np.ndarray) and out.ndim == 3:
                return out
    except Exception:  # noqa: BLE001 - fall back to the plain drawing below
        pass
    chosen = _pick(frames, result, STRIP_FRAMES)
    tiles = []
    box_stamps = sorted(result.boxes)
    for f in chosen:
        img = f.image.copy()
        scale = height / img.shape[0]
        img = cv2.resize(img, (max(1, round(img.shape[1] * scale)), height), interpolation=cv2.INTER_AREA)
        inside = bool(box_stamps) and box_stamps[0] - 1e-6 <= f.stamp <= box_stamps[-1] + 1e-6
        if inside:
            near = min(box_stamps, key=lambda s: abs(s - f.stamp))
            x0, y0, x1, y1 = (int(round(v * scale)) for v in result.boxes[near])
            cv2.rectangle(img, (x0, y0), (x1, y1), (0, 255, 0), 2)
        bar = np.zeros((8, img.shape[1], 3), np.uint8)
        bar[:] = (220, 40, 40) if inside else (60, 60, 60)
        cv2.putText(img, f"{f.stamp:.2f}s", (3, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1,
                    cv2.LINE_AA)
        tiles.append(np.vstack([img, bar]))
    strip = np.hstack(tiles) if tiles else np.zeros((height, height, 3), np.uint8)
    caption = np.zeros((22, strip.shape[1], 3), np.uint8)
    label = f"{'FOUND' if result.found else 'not found'} p_yes={result.p_yes:.2f}  {text}"[:160]
    cv2.putText(caption, label, (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return np.vstack([caption, strip])


def save_png(path: str, rgb: np.ndarray) -> Optional[str]:
    import cv2

    ok = cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path if ok else None
