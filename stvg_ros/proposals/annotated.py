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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Hashable, Mapping, Optional, Sequence

import numpy as np

from ..boxes import Box, box_iou
from ..video import iter_frames  # the one-pass reader (re-exported: this module's users read clips with it)

__all__ = ["AnnotatedBox", "AnnotatedClip", "load_annotations", "iter_frames", "match_frame",
           "proposal_recall", "match_pairs", "track_coverage"]


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


def match_pairs(proposed: Sequence[Sequence[float]], truth: Sequence[Sequence[float]], iou: float) -> list[tuple[int, int]]:
    """``(proposed index, true index)`` pairs at one frame, one-to-one, greedy by IoU, each IoU >= ``iou``."""
    pairs = sorted(((box_iou(p, t), i, j) for i, p in enumerate(proposed) for j, t in enumerate(truth)), reverse=True)
    used_p, used_t, out = set(), set(), []
    for v, i, j in pairs:
        if v < iou:
            break
        if i in used_p or j in used_t:
            continue
        used_p.add(i)
        used_t.add(j)
        out.append((i, j))
    return out


def match_frame(proposed: Sequence[Sequence[float]], truth: Sequence[Sequence[float]], iou: float) -> tuple[int, int]:
    """``(true boxes matched, proposed boxes unmatched)`` at one frame, one-to-one, greedy by IoU."""
    m = len(match_pairs(proposed, truth, iou))
    return m, len(proposed) - m


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


def track_coverage(tracks: Mapping[Hashable, Mapping[int, Sequence[float]]], clip: AnnotatedClip,
                   iou: float = 0.5) -> dict:
    """How well ``tracks`` (id → frame index → box) follow the clip's objects, for a grounder that picks ONE track.

    At each annotated frame, tracks and true boxes are matched one-to-one (greedy by IoU >= ``iou``).
    Per object: ``coverage`` is the share of its annotated frames matched to its single most
    frequent track (what the best one track gives), ``switches`` how often the matched track id
    changes between its consecutive matched frames, ``tracks`` how many different ids it was matched to.
    Returns those per object and ``coverage_mean`` / ``coverage_min`` / ``id_switches`` /
    ``tracks_per_object`` over objects."""
    ids = list(tracks)
    seq: dict[str, list[Optional[Hashable]]] = {o: [] for o in clip.ids()}
    for f in clip.frames:
        truth = clip.boxes[f]
        present = [k for k in ids if f in tracks[k]]
        owner: dict[int, Hashable] = {j: present[i] for i, j in
                                      match_pairs([tracks[k][f] for k in present], [b.box for b in truth], iou)}
        for j, b in enumerate(truth):
            seq[b.id].append(owner.get(j))
    per: dict[str, dict] = {}
    for o, owners in seq.items():
        hits = [t for t in owners if t is not None]
        best = max((hits.count(t) for t in set(hits)), default=0)
        per[o] = {"frames": len(owners), "coverage": best / len(owners) if owners else float("nan"),
                  "switches": sum(a != b for a, b in zip(hits, hits[1:])), "tracks": len(set(hits))}
    cov = [p["coverage"] for p in per.values()]
    return {"objects": per, "coverage_mean": float(np.mean(cov)) if cov else float("nan"),
            "coverage_min": float(np.min(cov)) if cov else float("nan"),
            "id_switches": sum(p["switches"] for p in per.values()),
            "tracks_per_object": float(np.mean([p["tracks"] for p in per.values()])) if per else float("nan")}
