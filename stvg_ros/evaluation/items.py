"""What one evaluated query needs (:class:`Item`: query, ground truth, how to load its clip, proposals),
from a dataset's annotation files or from a set of bags."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ..config import ConfigError
from .datasets import Sample, proposals_for_sample, with_full_query
from ..boxes import Box
from ..proposals.tracks import Track
from ..grounding.result import SubQueries
from ..video import Clip


# --- items: what one query needs, from a dataset or a bag ---------------------------------------

@dataclass
class Item:
    key: str
    query: str
    gt_span: tuple[int, int]
    gt_boxes: dict[int, Box]
    inclusive: bool
    num_frames: int
    dataset: str
    video: str
    qtype: Optional[str] = None
    sub_queries: Optional[SubQueries] = None
    tracks: Optional[dict[str, Track]] = None
    load: Optional[Callable[[int, int], Clip]] = None
    """``load(num_frames, max_side)`` → the sampled clip."""
    bag: Optional[str] = None
    query_id: str = ""


def dataset_items(samples: Sequence[Sample], proposals: Optional[dict]) -> list[Item]:
    from ..video import VideoError, load_clip

    items = []
    for s in samples:
        def load(n, max_side, s=s):
            if s.video_path is None:
                raise VideoError(f"no video file for {s.video!r}: check --videos")
            return load_clip(s.video_path, n, s.num_frames, s.fps or None, s.frame_offset, max_side,
                             fallback_fps=s.extra.get("fps_from_times"))

        items.append(Item(key=s.key, query=s.query, gt_span=s.gt_span, gt_boxes=s.gt_boxes, inclusive=s.inclusive,
                          num_frames=s.num_frames, dataset=s.dataset, video=s.video, qtype=s.qtype,
                          sub_queries=s.sub_queries,
                          tracks=proposals_for_sample(proposals, s) if proposals else None, load=load))
    return items


def find_bags(paths: Sequence[str]) -> list[Path]:
    """Bag directories (holding ``metadata.yaml``) or single ``.mcap``/``.db3`` files, sorted."""
    out = []
    for p in map(Path, paths):
        if (p / "metadata.yaml").is_file() or p.suffix in (".mcap", ".db3"):
            out.append(p)
        elif p.is_dir():
            out += sorted(d for d in p.iterdir() if (d / "metadata.yaml").is_file())
        else:
            raise ConfigError(f"{p} is neither a bag nor a directory of bags")
    if not out:
        raise ConfigError(f"no bag found in {list(paths)}")
    return out


def bag_items(paths: Sequence[Path], proposals: Optional[dict], sub_queries: Optional[dict]) -> list[Item]:
    """One item per (bag, query with ground truth); annotation frames = image positions in the bag."""
    from .bags import read_bag

    items = []
    for path in paths:
        head = read_bag(path, frame_positions=[])
        meta = head.metadata
        stamps = np.asarray(head.stamps)
        if len(stamps) == 0:
            continue

        def nearest(t: float) -> int:
            return int(np.argmin(np.abs(stamps - t)))

        inclusive = bool(meta.get("inclusive", True))
        for q in head.queries:
            if q.gt_boxes is None:
                continue
            gt_boxes = {nearest(t): b for t, b in q.gt_boxes.items()}
            if meta.get("gt_span") and meta.get("num_frames") == len(stamps):
                gt_span = tuple(int(v) for v in meta["gt_span"])
            else:
                gt_span = (nearest(q.gt_span[0]), nearest(q.gt_span[1]))  # (first, last) as the readers
            video = str(meta.get("video") or path.stem)
            key = str(meta.get("key") or q.query_id) if len(head.queries) == 1 else f"{path.stem}:{q.query_id}"
            sq = SubQueries(q.attribute, q.action, "caller") if q.attribute and q.action else None
            if sq is None and sub_queries:
                sq = sub_queries.get(key) or sub_queries.get(video)
                sq = with_full_query(sq, q.text) if sq is not None else None
            tracks = None
            if proposals:
                tracks = proposals.get(key) or proposals.get(video) or proposals.get(path.stem)

            def load(n, max_side, path=path):
                return bag_clip(path, n, max_side)

            items.append(Item(key=key, query=q.text, gt_span=gt_span, gt_boxes=gt_boxes, inclusive=inclusive,
                              num_frames=len(stamps), dataset=str(meta.get("dataset", "bag")), video=video,
                              qtype=meta.get("qtype"), sub_queries=sq, tracks=tracks, load=load, bag=str(path),
                              query_id=q.query_id))
    return items


def bag_clip(path, n: int, max_side: int = 0) -> Clip:
    """The paper's uniform sample of a bag's frames; frame indices are image positions."""
    from .bags import read_bag

    c = read_bag(path, frame_positions=n)
    pos = sorted(c.frames)
    frames = [c.frames[i] for i in pos]
    scale = 1.0
    if max_side and max(frames[0].shape[:2]) > max_side:
        import cv2

        scale = max_side / max(frames[0].shape[:2])
        frames = [cv2.resize(f, (round(f.shape[1] * scale), round(f.shape[0] * scale)), interpolation=cv2.INTER_AREA)
                  for f in frames]
    fps = float(c.metadata.get("fps") or (1.0 / np.median(np.diff(c.stamps)) if len(c.stamps) > 1 else 1.0))
    return Clip(frames=frames, frame_indices=pos, stamps=[c.stamps[i] for i in pos], fps=fps,
                size=frames[0].shape[:2], extra={"scale": scale, "all_stamps": c.stamps})
