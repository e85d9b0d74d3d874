"""From a tube to scored frames: a grounded tube (sampled frames) densified over the clip's frames and
scored against the ground truth with the benchmarks' metrics (one JSON record per query)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from . import metrics
from ..boxes import Box
from ..proposals.tracks import Track
from .items import Item


# --- from a tube to scored frames ---------------------------------------------------------------

def _interp(a: Box, b: Box, w: float) -> Box:
    return tuple(float(x + (y - x) * w) for x, y in zip(a, b))


def densify(sampled: dict[int, Box], first: int, last: int, track: Optional[Track] = None) -> dict[int, Box]:
    """Boxes for every frame ``first..last``: the chosen proposal track's own box where it has one
    (as the official code writes the track's full-rate boxes), else linear interpolation between
    the predicted boxes of the sampled frames (held constant beyond the outermost ones)."""
    out: dict[int, Box] = {}
    keys = sorted(sampled)
    if not keys:
        return out
    for f in range(first, last + 1):
        if track is not None and f in track.boxes:
            out[f] = tuple(track.boxes[f])
            continue
        i = int(np.searchsorted(keys, f))
        if i < len(keys) and keys[i] == f:
            out[f] = tuple(sampled[f])
        elif i == 0:
            out[f] = tuple(sampled[keys[0]])
        elif i == len(keys):
            out[f] = tuple(sampled[keys[-1]])
        else:
            a, b = keys[i - 1], keys[i]
            out[f] = _interp(sampled[a], sampled[b], (f - a) / (b - a))
    return out


def score_tube(item: Item, clip_frames: Sequence[int], start_frame: Optional[int], end_frame: Optional[int],
               sampled_boxes: dict[int, Box], track_id, protocol: str) -> dict:
    """Per-query metrics of a tube given on the sampled frames (annotation frame indices).

    The predicted span is ``(first, last)`` sampled frame of the tube for both benchmarks, as the
    official code writes it (``sted = [frame_ids[start], frame_ids[end]]``); only the counting of
    the ranges differs (``item.inclusive``), exactly as the ground truth's.
    """
    if start_frame is None or not sampled_boxes:
        return {"pred_span": None, **metrics.score(None, item.gt_boxes, None, item.gt_span, item.inclusive)}
    pred_span = (start_frame, end_frame)
    track = item.tracks.get(str(track_id)) if (item.tracks and track_id is not None) else None
    # Boxes outside the predicted span only matter for gt_vIoU (the spatial-only score), which the
    # official code computes with the chosen track on every ground-truth frame.
    first = min(start_frame, min(item.gt_boxes, default=start_frame))
    last = max(end_frame, max(item.gt_boxes, default=end_frame))
    boxes = densify(sampled_boxes, first, last, track)
    if protocol == "dense":
        s = metrics.score(boxes, item.gt_boxes, pred_span, item.gt_span, item.inclusive)
    else:
        on_clip = {f: boxes[f] for f in clip_frames if f in boxes}
        s = metrics.score(on_clip, item.gt_boxes, pred_span, item.gt_span, item.inclusive, frames=clip_frames)
    return {"pred_span": list(pred_span), **s}


def base_record(item: Item) -> dict:
    return {"key": item.key, "video": item.video, "dataset": item.dataset, "qtype": item.qtype, "query": item.query,
            "inclusive": item.inclusive, "gt_span": list(item.gt_span), "bag": item.bag}
