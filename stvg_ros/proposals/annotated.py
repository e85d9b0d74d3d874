"""Annotated real clips: the box file format, a one-pass frame reader, and the proposal metrics.

The format (``test/data/real/annotations.json`` is one)::

    {"videos": {"<file name>": {"frames": [{"frame": 40, "boxes": [{"id": "a", "box": [x0, y0, x1, y1],
                                                                     "flags": ["small"]}, ...]}, ...]}}}

Boxes are pixel edges of the decoded frame (``x1``, ``y1`` exclusive), ``frame`` the 0-based index in
OpenCV's decode order, ids stable within a video.  Any clip set written this way can be measured
with ``bench/bench_real_video.py``: a user's own camera included.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Optional, Sequence

import numpy as np

from ..boxes import Box, box_iou

__all__ = ["AnnotatedBox", "AnnotatedClip", "load_annotations", "iter_frames", "match_frame",
           "proposal_recall"]


@dataclass(frozen=True)
class AnnotatedBox:
    """One hand-checked box of one object on one frame."""

    id: str
    box: Box
    flags: tuple[str, ...] = ()


@dataclass
class AnnotatedClip:
    """A video file and its boxes by frame index."""

    name: str
    path: Path
    boxes: dict[int, list[AnnotatedBox]] = field(default_factory=dict)
    note: str = ""

    @property
    def frames(self) -> list[int]:
        """The annotated frame indices, ascending."""
        return sorted(self.boxes)

    def ids(self) -> list[str]:
        """Every object id, in order of first appearance."""
        seen: dict[str, None] = {}
        for f in self.frames:
            for b in self.boxes[f]:
                seen.setdefault(b.id, None)
        return list(seen)


def load_annotations(path: str | Path, video_dir: Optional[str | Path] = None) -> list[AnnotatedClip]:
    """Clips of an annotation file; videos are looked up in ``video_dir`` (default: the file's folder).

    Raises ``ValueError`` naming the entry for a malformed file and ``FileNotFoundError`` naming the
    video for one that is missing, so a user's own file fails with what to fix."""
    path = Path(path)
    root = Path(video_dir) if video_dir is not None else path.parent
    data = json.loads(path.read_text())
    videos = data.get("videos") if isinstance(data, Mapping) else None
    if not isinstance(videos, Mapping):
        raise ValueError(f"{path}: expected {{'videos': {{'<file>': {{'frames': [...]}}}}}} (see stvg_ros.proposals.annotated)")
    clips = []
    for name, entry in videos.items():
        video = root / name
        if not video.exists():
            raise FileNotFoundError(f"{path}: video {name!r} not found in {root}: pass the folder that holds it")
        clip = AnnotatedClip(name=name, path=video, note=str(entry.get("note", "")))
        for item in entry.get("frames", []):
            try:
                frame = int(item["frame"])
                boxes = [AnnotatedBox(str(b["id"]), tuple(float(v) for v in b["box"]), tuple(b.get("flags", ())))
                         for b in item["boxes"]]
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}: {name} frame entry {item!r:.80}: {exc}") from exc
            for b in boxes:
                if len(b.box) != 4 or b.box[2] <= b.box[0] or b.box[3] <= b.box[1]:
                    raise ValueError(f"{path}: {name} frame {frame} box {b.id}: want [x0, y0, x1, y1] with x1 > x0, y1 > y0")
            clip.boxes.setdefault(frame, []).extend(boxes)
        clips.append(clip)
    return clips


def iter_frames(path: str | Path, stop: Optional[int] = None) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, RGB frame)`` in decode order, one pass, up to frame ``stop`` (exclusive).

    A file that stops decoding before its container's frame count (or before ``stop``) ends the
    iteration there with a warning naming it: what decoded is used, nothing is re-read."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise OSError(f"cannot open video {path}: check the path and that OpenCV can decode its codec")
    declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    i = 0
    try:
        while stop is None or i < stop:
            ok, bgr = cap.read()
            if not ok:
                want = declared if stop is None else min(stop, declared) if declared > 0 else stop
                if want and i < want:
                    warnings.warn(f"{path}: decoding stopped at frame {i} of {want} declared; using the {i} that decoded",
                                  RuntimeWarning, stacklevel=2)
                break
            yield i, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            i += 1
    finally:
        cap.release()


def match_frame(proposed: Sequence[Sequence[float]], truth: Sequence[Sequence[float]], iou: float) -> tuple[int, int]:
    """``(true boxes matched, proposed boxes unmatched)`` at one frame, one-to-one, greedy by IoU."""
    pairs = sorted(((box_iou(p, t), i, j) for i, p in enumerate(proposed) for j, t in enumerate(truth)), reverse=True)
    used_p, used_t = set(), set()
    for v, i, j in pairs:
        if v < iou:
            break
        if i in used_p or j in used_t:
            continue
        used_p.add(i)
        used_t.add(j)
    return len(used_t), len(proposed) - len(used_p)


def proposal_recall(proposed: Mapping[int, Sequence[Sequence[float]]], clip: AnnotatedClip,
                    iou: float = 0.5) -> dict:
    """Recall of the clip's boxes and false boxes per annotated frame, matching one-to-one at ``iou``."""
    hit = total = false = 0
    for f in clip.frames:
        truth = [b.box for b in clip.boxes[f]]
        m, fp = match_frame(list(proposed.get(f, [])), truth, iou)
        hit, total, false = hit + m, total + len(truth), false + fp
    n = max(len(clip.frames), 1)
    return {"recall": hit / total if total else float("nan"), "matched": hit, "boxes": total,
            "false_per_frame": false / n}
