"""The one picture of a tube: the node's ``debug_image``, the demo's PNG (which is that debug
image) and the evaluation's ``vis/*.png`` are all drawn by :func:`render_tube`.

The image (RGB): a caption (optional title line, the query, the judgment and the span), a strip of
frames the model saw, a span bar under each frame, and a timeline over all frames the model saw
(their temporal scores when the result has them).  One colour convention everywhere:

* prediction in **green** (:data:`PRED` box; :data:`SPAN` bar and timeline inside the predicted span);
* ground truth in **red** (:data:`GT` box, 4 px, under the prediction's 2 px; a second bar and
  timeline row inside the ground-truth span);
* **grey** (:data:`OUT_OF_SPAN`) outside a span;
* relevance heatmap (optional) in OpenCV's JET map, blue (cold) to red (hot), scaled over the clip.

Errors (no frames, frames that are not RGB) raise; callers report them (the node logs them and
publishes no debug image, evaluation prints a warning), never draw another picture instead.
OpenCV only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .grounding.relevance import upsample_maps
from .boxes import Box
from .grounding.result import GroundingResult

PRED = (40, 220, 40)
GT = (230, 40, 40)
SPAN = (40, 200, 40)
GT_SPAN = (220, 40, 40)
OUT_OF_SPAN = (90, 90, 90)
LEGEND = "green: prediction, red: ground truth"


def _nearest(stamps: Sequence[float], stamp: float) -> int:
    return int(np.argmin(np.abs(np.asarray(stamps, dtype=np.float64) - stamp)))


def _ascii(text: str) -> str:
    """OpenCV's Hershey fonts draw ASCII only."""
    return text.encode("ascii", "replace").decode("ascii")


def _heat(image: np.ndarray, heat: np.ndarray, lo: float, hi: float, alpha: float = 0.45) -> np.ndarray:
    """Overlay ``heat`` scaled by the clip's range ``[lo, hi]`` (so frames compare by colour)."""
    import cv2

    norm = np.zeros_like(heat) if hi <= lo else np.clip((heat - lo) / (hi - lo), 0.0, 1.0)
    colour = cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    return (image.astype(np.float32) * (1 - alpha) + colour.astype(np.float32) * alpha).astype(np.uint8)


def _box(image: np.ndarray, box: Box, scale: float, colour, thickness: int = 2) -> None:
    import cv2

    x0, y0, x1, y1 = (int(round(v * scale)) for v in box)
    cv2.rectangle(image, (x0, y0), (max(x0 + 1, x1 - 1), max(y0 + 1, y1 - 1)), colour, thickness)


def _wrap(text: str, width_px: int, char_px: int = 9) -> list[str]:
    per_line = max(10, width_px // char_px)
    words, lines, line = text.split(), [], ""
    for w in words:
        if len(line) + len(w) + 1 > per_line and line:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    if line:
        lines.append(line)
    return lines or [""]


def _in(span: tuple[float, float] | None, stamp: float) -> bool:
    return span is not None and span[0] <= stamp <= span[1]


def render_tube(frames: Sequence[np.ndarray], stamps: Sequence[float], result: GroundingResult,
                gt: dict[float, Box] | None = None, heatmap: bool = True, max_frames: int = 8,
                height: int = 180, gt_span: tuple[float, float] | None = None, title: str = "") -> np.ndarray:
    """An RGB image strip of up to ``max_frames`` frames the model saw, annotated with the tube.

    ``frames``/``stamps``: the clip given to ``ground`` (the result's frames are found by stamp);
    ``gt``: optional ground-truth boxes (stamp → box, the frames' pixels) and ``gt_span`` its span
    (seconds, inclusive); ``heatmap``: overlay the spatial relevance when the result kept it
    (``keep_relevance``); ``height``: thumbnail height; ``title``: a first caption line.
    Raises ``ValueError`` naming the problem when the frames cannot be drawn.
    """
    import cv2

    if len(frames) == 0:
        raise ValueError("no frames to render: pass the clip the result was grounded on")
    if len(frames) != len(stamps):
        raise ValueError(f"{len(frames)} frames but {len(stamps)} stamps: pass one stamp per frame")
    pred_span = (result.start, result.end)
    seen = list(result.frame_stamps) or [float(s) for s in stamps]
    pick = sorted(set(np.linspace(0, len(seen) - 1, min(max_frames, len(seen))).round().astype(int).tolist()))
    # only the frames drawn are read: a window that keeps frames packed decodes these, not all of them
    drawn = {i: frames[_nearest(stamps, seen[i])] for i in pick}
    bad = next((np.shape(f) for f in drawn.values() if np.ndim(f) != 3 or np.shape(f)[2] != 3), None)
    if bad is not None:
        raise ValueError(f"frames must be HxWx3 RGB arrays, got shape {bad}")
    H, W = drawn[pick[0]].shape[:2]
    scale = height / H
    tw = max(1, int(round(W * scale)))
    rel = result.relevance if heatmap else None
    tiles = []
    for i in pick:
        stamp = seen[i]
        frame = drawn[i]
        tile = cv2.resize(np.ascontiguousarray(frame), (tw, height), interpolation=cv2.INTER_AREA).copy()
        if rel is not None and i < len(rel.spatial):
            box = [v * scale for v in rel.content_box]
            heat, _ = upsample_maps(rel.spatial[i:i + 1], box, (height, tw), max_side=None)
            tile = _heat(tile, heat[0], float(rel.spatial.min()), float(rel.spatial.max()))
        if gt:
            g = min(gt, key=lambda s: abs(s - stamp))
            if abs(g - stamp) < 1e-3:
                _box(tile, gt[g], scale, GT, thickness=4)
        in_span = _in(pred_span, stamp)
        if in_span and result.boxes:
            b = min(result.boxes, key=lambda s: abs(s - stamp))
            _box(tile, result.boxes[b], scale, PRED)
        bars = [np.full((10, tw, 3), SPAN if in_span else OUT_OF_SPAN, dtype=np.uint8)]
        if gt_span is not None:
            bars.append(np.full((6, tw, 3), GT_SPAN if _in(gt_span, stamp) else OUT_OF_SPAN, dtype=np.uint8))
        label = np.full((18, tw, 3), 255, dtype=np.uint8)
        cv2.putText(label, f"{stamp:.2f}s", (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(np.vstack([tile, *bars, label]))
        tiles.append(np.full((tiles[-1].shape[0], 4, 3), 255, dtype=np.uint8))
    strip = np.hstack(tiles[:-1])
    width = strip.shape[1]

    # every frame the model saw: its temporal score (bar height; flat without scores) coloured by
    # the predicted span, then a row for the ground-truth span
    timeline = np.full((34 + (8 if gt_span is not None else 0), width, 3), 255, dtype=np.uint8)
    scores = np.asarray(result.frame_scores, dtype=np.float64)
    has_scores = len(scores) == len(seen) and len(seen) > 0
    top = scores.max() if has_scores and scores.max() > 0 else 1.0
    cw = width / max(1, len(seen))
    for i, s in enumerate(seen):
        x0, x1 = int(i * cw) + 1, max(int(i * cw) + 1, int((i + 1) * cw) - 2)
        h = int(round(28 * max(0.0, scores[i]) / top)) if has_scores else 4
        cv2.rectangle(timeline, (x0, 32 - h), (x1, 32), SPAN if _in(pred_span, s) else OUT_OF_SPAN, -1)
        if gt_span is not None:
            cv2.rectangle(timeline, (x0, 35), (x1, 40), GT_SPAN if _in(gt_span, s) else OUT_OF_SPAN, -1)

    judgment = "found" if result.found else "not found"
    span = f"span {result.start:.2f}-{result.end:.2f}s" if result.start <= result.end else "no span"
    caption = (f'"{result.query}" | {judgment} (p_yes {result.p_yes:.2f}) | score {result.score:.3g} | '
               f"{span} | track {result.track_id}")
    lines = (_wrap(_ascii(title), width) if title else []) + _wrap(_ascii(caption), width)
    if gt or gt_span is not None:
        lines.append(LEGEND)
    text = np.full((8 + 18 * len(lines), width, 3), 255, dtype=np.uint8)
    for k, line in enumerate(lines):
        cv2.putText(text, line, (4, 18 + 18 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([text, strip, timeline])


def save_png(path: str | Path, image: np.ndarray) -> Path:
    """Write an RGB image as PNG (parent folders created)."""
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1])):
        raise OSError(f"could not write {path}")
    return path
