"""``stvg-eval``'s files: the per-query results (``results[.shardIofN].jsonl``, read back to resume or merge),
``summary.json``/``summary.md``, and the optional per-query pictures (``vis/*.png``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from . import metrics
from ..grounding.result import GroundingResult, SubQueries
from ..video import Clip
from .items import Item


# --- results files ------------------------------------------------------------------------------

def results_path(out: Path, shard: tuple[int, int]) -> Path:
    i, n = shard
    return out / ("results.jsonl" if n == 1 else f"results.shard{i}of{n}.jsonl")


def read_results(paths: Sequence[Path]) -> dict[str, dict]:
    """Per-query records by key; a later line replaces an earlier one (a retried failure)."""
    out: dict[str, dict] = {}
    for p in paths:
        if not p.is_file():
            continue
        for line in p.read_text().splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by an interrupted run
            out[rec["key"]] = rec
    return out


def write_summary(out: Path, records: Sequence[dict], title: str, extra: Optional[dict] = None) -> dict:
    """``summary.json`` + ``summary.md`` from the per-query records (metrics in percent)."""
    summary = metrics.summarize(records)
    if extra:
        summary["setup"] = extra
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    md = metrics.summary_markdown(summary, title)
    (out / "summary.md").write_text(md)
    return summary


# --- visualisation ------------------------------------------------------------------------------

def report_image(clip: Clip, rec: dict, item: Item, result=None, max_frames: int = 10,
                 height: int = 140) -> np.ndarray:
    """The query's picture (:func:`stvg_ros.render.render_tube`, its colours) with the ground truth,
    both spans and the scores; the prediction is ``result`` (core mode) or the record's boxes and
    span (node mode), drawn on ``clip``'s frames."""
    from ..render import render_tube

    scale = float(clip.extra.get("scale", 1.0))

    def stamp(frame: float) -> float:  # annotation frame index → the clip's time axis
        return float(np.interp(frame, clip.frame_indices, clip.stamps))

    def span_stamps(span) -> tuple[float, float]:  # frame span, counted as the benchmark counts it
        return stamp(span[0]), stamp(span[1] if item.inclusive else span[1] - 1)

    if result is None:
        pred_span = rec.get("pred_span")
        start, end = span_stamps(pred_span) if pred_span else (float("nan"), float("nan"))
        sq = rec.get("sub_queries") or {}
        result = GroundingResult(
            query=item.query, found=bool(rec.get("found")), score=float(rec.get("score", 0.0)), start=start, end=end,
            boxes={stamp(int(f)): tuple(v * scale for v in b) for f, b in (rec.get("pred_boxes") or {}).items()},
            track_id=rec.get("track_id"), p_yes=float(rec.get("p_yes", 0.0)),
            sub_queries=SubQueries(sq.get("attribute", ""), sq.get("action", ""), sq.get("source", "none")))
    gt = {s: tuple(v * scale for v in item.gt_boxes[f])
          for f, s in zip(clip.frame_indices, clip.stamps) if f in item.gt_boxes}
    title = f"{item.key}  vIoU {100 * rec.get('viou', 0):.1f}  tIoU {100 * rec.get('tiou', 0):.1f}"
    return render_tube(clip.frames, clip.stamps, result, gt=gt, gt_span=span_stamps(item.gt_span),
                       max_frames=max_frames, height=height, title=title)


def _safe_name(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in key)[:120]
