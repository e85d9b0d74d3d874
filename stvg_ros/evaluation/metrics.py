"""The STVG benchmarks' metrics, computed the way the official evaluation code computes them.

Conventions (checked against the HC-STVG / VidSTG evaluators used by STCAT, CG-STVG and the
paper's code ``zaiquanyang/LLaVA_Next_STVG``):

* boxes are ``(x_min, y_min, x_max, y_max)`` pixels and IoU has no ``+1`` (continuous areas);
* a span is ``(start, end)`` in *annotation frame indices* of the video;
* ``tIoU = (min_end - max_start) / (gt_len + pred_len - intersection)`` with ``len = end - start``
  (no ``+1`` -- that is what the official code does for both benchmarks), 0 when
  ``min_end <= max_start``;
* ``vIoU = sum(IoU over ground-truth frames in the temporal intersection) / |union|`` where the
  intersection and union are sets of frame indices: HC-STVG counts ``range(a, b + 1)``
  (``inclusive=True``), VidSTG ``range(a, b)`` (``inclusive=False``);
* ``vIoU@R`` counts a query when ``vIoU > R`` (strictly), ``gt_vIoU`` is the mean IoU over all
  ground-truth frames.  Everything is averaged over queries; VidSTG is also reported per query type.

A prediction that produced no tube at all ("not found" in the sense of *nothing to score*: the node
answered with no boxes, or the query failed) is passed as ``pred_span=None`` and scores 0 on every
metric while still counting in the denominators -- the benchmarks always have a target, so a missing
answer is a miss.  The grounder's own ``found=False`` judgment does *not* make a tube "not found":
the tube it always returns is scored as is (the official protocol has no existence judgment).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import Iterable, Mapping, Optional, Sequence

from ..boxes import Box, box_iou

Span = tuple[int, int]

THRESHOLDS = (0.3, 0.5)


def _valid(span) -> bool:
    return span is not None and len(span) == 2 and span[1] >= span[0]


def tiou(pred_span: Optional[Span], gt_span: Span) -> float:
    """Temporal IoU of two frame-index spans; 0 without overlap or without a prediction."""
    if not _valid(pred_span):
        return 0.0
    max_start = max(gt_span[0], pred_span[0])
    min_end = min(gt_span[1], pred_span[1])
    if min_end <= max_start:
        return 0.0
    inter = min_end - max_start
    union = (gt_span[1] - gt_span[0]) + (pred_span[1] - pred_span[0]) - inter
    return float(inter / union)


def _in_span(frame: int, span: Span, inclusive: bool) -> bool:
    return span[0] <= frame <= span[1] if inclusive else span[0] <= frame < span[1]


def viou(pred_boxes: Mapping[int, Box], gt_boxes: Mapping[int, Box], pred_span: Optional[Span],
         gt_span: Span, inclusive: bool = True, frames: Optional[Iterable[int]] = None) -> float:
    """Spatio-temporal IoU of a predicted tube against the ground truth.

    ``frames`` restricts the count to the evaluated frames (e.g. the sampled frames, as the paper's
    own per-clip score and TubeDETR's VidSTG evaluator do); by default every frame index counts, as
    in the official HC-STVG / VidSTG evaluators.  A ground-truth frame without a predicted box
    contributes IoU 0.
    """
    if not _valid(pred_span):
        return 0.0
    max_start = max(gt_span[0], pred_span[0])
    min_end = min(gt_span[1], pred_span[1])
    extra = 1 if inclusive else 0
    if frames is None:
        # Official: |range(min_start, max_end (+1))|; when the spans are disjoint the numerator is 0.
        union = max(gt_span[1], pred_span[1]) - min(gt_span[0], pred_span[0]) + extra
        in_inter = (lambda f: max_start <= f < min_end + extra)
    else:
        fs = set(frames)
        union = sum(1 for f in fs if _in_span(f, gt_span, inclusive) or _in_span(f, pred_span, inclusive))
        in_inter = (lambda f: f in fs and max_start <= f < min_end + extra)
    if union <= 0:
        return 0.0
    total = 0.0
    for f, gt_box in gt_boxes.items():
        if in_inter(f) and f in pred_boxes:
            total += box_iou(pred_boxes[f], gt_box)
    return total / union


def gt_viou(pred_boxes: Mapping[int, Box], gt_boxes: Mapping[int, Box],
            frames: Optional[Iterable[int]] = None) -> float:
    """Mean IoU over the ground-truth frames (missing predictions count 0): the spatial-only score."""
    keys = list(gt_boxes) if frames is None else [f for f in set(frames) if f in gt_boxes]
    if not keys:
        return 0.0
    return sum(box_iou(pred_boxes[f], gt_boxes[f]) for f in keys if f in pred_boxes) / len(keys)


def score(pred_boxes: Optional[Mapping[int, Box]], gt_boxes: Mapping[int, Box], pred_span: Optional[Span],
          gt_span: Span, inclusive: bool = True, frames: Optional[Iterable[int]] = None) -> dict:
    """The per-query numbers ``summarize`` averages: ``{"tiou", "viou", "gt_viou"}`` (fractions)."""
    if pred_boxes is None or not _valid(pred_span):
        return {"tiou": 0.0, "viou": 0.0, "gt_viou": 0.0}
    frames = None if frames is None else list(frames)
    return {
        "tiou": tiou(pred_span, gt_span),
        "viou": viou(pred_boxes, gt_boxes, pred_span, gt_span, inclusive, frames),
        "gt_viou": gt_viou(pred_boxes, gt_boxes, frames),
    }


# --- times vs frame indices ---------------------------------------------------------------------

def time_to_frame(t: float, fps: Optional[float] = None, stamps: Optional[Sequence[float]] = None,
                  offset: float = 0.0) -> int:
    """Annotation frame index of time ``t`` (seconds).

    With ``stamps`` (the time of every annotation frame, sorted) the nearest frame is returned;
    otherwise ``round((t - offset) * fps)``.
    """
    if stamps is not None and len(stamps):
        i = bisect_left(stamps, t)
        if i == 0:
            return 0
        if i == len(stamps):
            return len(stamps) - 1
        return i if stamps[i] - t < t - stamps[i - 1] else i - 1
    if not fps or fps <= 0:
        raise ValueError("time_to_frame needs fps > 0 or the frame stamps; pass fps=<video fps>")
    return int(math.floor((t - offset) * fps + 0.5))


def time_span_to_frames(span: Sequence[float], fps: Optional[float] = None,
                        stamps: Optional[Sequence[float]] = None, offset: float = 0.0,
                        inclusive: bool = True) -> Span:
    """Convert a ``(start_s, end_s)`` time span to a frame-index span.

    Both ends map to their nearest frame; with ``inclusive=False`` (VidSTG counting) the end is made
    exclusive (last frame + 1) so that the converted span covers the same frames.
    """
    start = time_to_frame(span[0], fps, stamps, offset)
    end = time_to_frame(span[1], fps, stamps, offset)
    return (start, end if inclusive else end + 1)


def frame_boxes_from_stamps(boxes: Mapping[float, Box], fps: Optional[float] = None,
                            stamps: Optional[Sequence[float]] = None, offset: float = 0.0) -> dict[int, Box]:
    """Re-key a stamp → box dict (``GroundingResult.boxes``) by annotation frame index."""
    return {time_to_frame(t, fps, stamps, offset): tuple(b) for t, b in boxes.items()}


# --- summary ------------------------------------------------------------------------------------

def _block(rows: list[dict], thresholds: Sequence[float]) -> dict:
    n = len(rows)
    out: dict = {"count": n}
    if n == 0:
        return out
    out["m_tIoU"] = 100.0 * sum(r["tiou"] for r in rows) / n
    out["m_vIoU"] = 100.0 * sum(r["viou"] for r in rows) / n
    for t in thresholds:
        out[f"vIoU@{t:g}"] = 100.0 * sum(1 for r in rows if r["viou"] > t) / n
    out["gt_vIoU"] = 100.0 * sum(r["gt_viou"] for r in rows) / n
    lat = [r["latency"] for r in rows if r.get("latency") is not None]
    if lat:
        out["mean_latency_s"] = sum(lat) / len(lat)
    found = [r["found"] for r in rows if r.get("found") is not None]
    if found:
        out["found_rate"] = 100.0 * sum(bool(f) for f in found) / len(found)
    failed = sum(1 for r in rows if r.get("error"))
    if failed:
        out["failed"] = failed
    return out


def summarize(results: Iterable[Mapping], thresholds: Sequence[float] = THRESHOLDS) -> dict:
    """Average per-query results (dicts with ``tiou``, ``viou``, ``gt_viou``; optional ``qtype``,
    ``latency`` in seconds, ``found``, ``error``) into the benchmark table, in percent.

    Returns ``{"count", "m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5", "gt_vIoU", ["mean_latency_s",
    "found_rate", "failed"], "per_qtype": {qtype: {...same keys...}}}``; ``per_qtype`` is present
    when any result has a ``qtype`` (VidSTG: ``declar`` / ``inter``).
    """
    rows = list(results)
    out = _block(rows, thresholds)
    qtypes = sorted({r["qtype"] for r in rows if r.get("qtype")})
    if qtypes:
        out["per_qtype"] = {q: _block([r for r in rows if r.get("qtype") == q], thresholds) for q in qtypes}
    return out


METRIC_COLUMNS = ("m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5", "gt_vIoU")


def summary_markdown(summary: Mapping, title: str = "") -> str:
    """The summary as a Markdown table (one row overall, one per query type)."""
    cols = ["subset", "count", *METRIC_COLUMNS, "mean latency (s)"]
    lines = [f"### {title}", ""] if title else []
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]

    def row(name: str, block: Mapping) -> str:
        cells = [name, str(block.get("count", 0))]
        cells += [f"{block[c]:.2f}" if c in block else "–" for c in METRIC_COLUMNS]
        cells.append(f"{block['mean_latency_s']:.3f}" if "mean_latency_s" in block else "–")
        return "| " + " | ".join(cells) + " |"

    lines.append(row("all", summary))
    for q, block in summary.get("per_qtype", {}).items():
        lines.append(row(q, block))
    return "\n".join(lines) + "\n"
