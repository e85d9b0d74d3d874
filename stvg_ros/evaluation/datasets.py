"""Readers for the STVG benchmarks' annotation files, sub-query files and proposal files.

Formats (see docs/evaluation.md for the full field list):

* HC-STVG v1/v2 ``{split}_proc.json`` -- a dict keyed by video file name; per video ``img_size``
  [H, W], ``img_num``, ``st_frame``, ``bbox`` ([x, y, w, h] per frame from ``st_frame``),
  ``English``, ``st_time``/``ed_time``.  Spans are counted inclusively.
* VidSTG ``{split}_proc.json`` -- a dict keyed by pair id (or a list); per query ``vid``, ``width``,
  ``height``, ``frame_count``, ``fps``, ``st_frame``/``ed_frame`` (or ``temp_gt.begin_fid/end_fid``),
  ``target_bboxs`` ({xmin, ymin, xmax, ymax} per frame from ``st_frame``), ``qtype``,
  ``sentence`` {description, type, target_id}, ``target_category``.  Spans are counted exclusively.
* Sub-queries (the paper's GPT-4o decomposition):
  ``{video: {"decompose_attribute": [...], "decompose_action": [...]}}``.
* Proposals: ``{video: {track_id: {frame_index: [x_min, y_min, x_max, y_max]}}}``, a track may
  also be ``{"label": str, "score": float, "boxes": {frame_index: box}}``.

Everything here is plain JSON + pathlib: no ROS, no torch.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Optional

from ..boxes import Box, clip_box
from ..proposals.tracks import Track
from ..grounding.result import SubQueries


class DatasetError(ValueError):
    """An annotation, sub-query or proposal file is malformed; the message names the file and fix."""


@dataclass
class Sample:
    """One query of a benchmark with its ground truth, in annotation frame indices."""

    key: str
    """Unique id of the query (HC-STVG: the video name; VidSTG: the pair id)."""
    video: str
    """Video key used for the proposals and sub-queries files."""
    query: str
    gt_span: tuple[int, int]
    gt_boxes: dict[int, Box]
    num_frames: int
    """Frames of the annotated video (annotation frame indices are 0..num_frames-1)."""
    fps: float
    image_size: tuple[int, int]
    """(H, W)."""
    inclusive: bool
    """Span counting: True for HC-STVG (end frame included), False for VidSTG."""
    dataset: str
    video_path: Optional[Path] = None
    qtype: Optional[str] = None
    frame_offset: int = 0
    """File frame of annotation frame 0 (VidSTG's ``used_segment.begin_fid``)."""
    category: Optional[str] = None
    sub_queries: Optional[SubQueries] = None
    extra: dict = field(default_factory=dict)


def _load_json(path: str | Path, what: str):
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{what} file {path} does not exist: check the path")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{what} file {path} is not valid JSON ({e})") from None


def _entries(data) -> Iterable[tuple[str, dict]]:
    if isinstance(data, dict):
        return ((str(k), v) for k, v in data.items())
    if isinstance(data, list):
        return ((str(v.get("id", i)), v) for i, v in enumerate(data))
    raise DatasetError("the annotation file must hold a JSON object or list")


def _find_video(root: Optional[Path], names: Iterable[str], subdirs: Iterable[str]) -> Optional[Path]:
    if root is None:
        return None
    names = list(names)
    for sub in subdirs:
        base = root / sub if sub else root
        for name in names:
            for cand in (name, name + ".mp4", name + ".mkv", name + ".avi", name + ".webm"):
                p = base / cand
                if p.is_file():
                    return p
    return None


def load_hcstvg(anno_path: str | Path, video_root: str | Path | None = None, version: str = "v1",
                fps: float = 0.0) -> list[Sample]:
    """HC-STVG v1 or v2 ``{split}_proc.json``.

    Videos are looked up under ``video_root``, ``video_root/v1_video`` or ``video_root/v2_video``.
    The tube runs from ``st_frame`` to ``st_frame + len(bbox) - 1`` (clipped to ``img_num - 1``);
    boxes are converted from [x, y, w, h] to xyxy clipped to the image, as the official loader.
    ``fps``: the annotation gives none; when 0 the video file's rate is used when the clip is
    loaded (``extra['fps_from_times']``, derived from ``st_time``/``ed_time``, is the fallback).
    Stamps only order the frames for the grounder: scoring uses frame indices.
    """
    data = _load_json(anno_path, "HC-STVG annotation")
    root = Path(video_root) if video_root else None
    samples = []
    for key, a in _entries(data):
        try:
            h, w = (int(v) for v in a["img_size"])
            n = int(a["img_num"])
            st = max(0, int(a["st_frame"]))
            bboxes = a["bbox"]
            query = a["English"]
        except (KeyError, TypeError, ValueError) as e:
            raise DatasetError(
                f"{anno_path}: entry {key!r} lacks a valid HC-STVG field ({e!r}); expected img_size, img_num, "
                "st_frame, bbox, English") from None
        if not bboxes:
            warnings.warn(f"{anno_path}: {key!r} has no boxes; skipped")
            continue
        ed = min(st + len(bboxes) - 1, n - 1)
        boxes = {}
        for i, (x, y, bw, bh) in enumerate(bboxes[: ed - st + 1]):
            boxes[st + i] = clip_box((x, y, x + bw, y + bh), (h, w))
        extra = {k: a[k] for k in ("st_time", "ed_time") if k in a}
        if a.get("ed_time") is not None and a.get("st_time") is not None:
            dt = float(a["ed_time"]) - float(a["st_time"])
            if dt > 0 and len(bboxes) > 1:
                extra["fps_from_times"] = (len(bboxes) - 1) / dt
        name = str(a.get("vid", key))
        stem = name.rsplit(".", 1)[0] if "." in name else name
        samples.append(Sample(
            key=str(key), video=name, query=str(query).strip(), gt_span=(st, ed), gt_boxes=boxes, num_frames=n,
            fps=float(fps), image_size=(h, w), inclusive=True, dataset=f"hcstvg_{version}",
            video_path=_find_video(root, [name, stem], ["", f"{version}_video", "v1_video", "v2_video", "videos"]),
            extra=extra,
        ))
    return samples


def load_vidstg(anno_path: str | Path, video_root: str | Path | None = None,
                segment_offset: bool = True) -> list[Sample]:
    """VidSTG ``{split}_proc.json``.

    The ground truth covers ``st_frame..ed_frame`` with one ``target_bboxs`` entry per frame (``ed``
    clipped to ``frame_count - 1`` as the official loader); spans are scored with exclusive
    counting.  Annotation frames are relative to ``used_segment.begin_fid``; with
    ``segment_offset`` the video file is read from that frame (the videos are the full VidOR ones).
    """
    data = _load_json(anno_path, "VidSTG annotation")
    root = Path(video_root) if video_root else None
    samples = []
    for key, a in _entries(data):
        try:
            vid = str(a["vid"])
            h, w = int(a["height"]), int(a["width"])
            n = int(a["frame_count"])
            if "st_frame" in a:
                st, ed = int(a["st_frame"]), int(a["ed_frame"])
            else:
                st, ed = int(a["temp_gt"]["begin_fid"]), int(a["temp_gt"]["end_fid"])
            sentence = a["sentence"]
            query = sentence["description"] if isinstance(sentence, dict) else str(sentence)
            raw_boxes = a["target_bboxs"]
        except (KeyError, TypeError, ValueError) as e:
            raise DatasetError(
                f"{anno_path}: entry {key!r} lacks a valid VidSTG field ({e!r}); expected vid, width, height, "
                "frame_count, st_frame/ed_frame, sentence.description, target_bboxs") from None
        st = max(0, st)
        ed = min(ed, n - 1)
        boxes = {}
        last = None
        for i, b in enumerate(raw_boxes[: ed - st + 1]):
            if b:  # official data has {} for frames where the target is unlabelled: hold the previous box
                last = clip_box((b["xmin"], b["ymin"], b["xmax"], b["ymax"]), (h, w))
            if last is not None:
                boxes[st + i] = last
        begin = int(a.get("used_segment", {}).get("begin_fid", 0)) if segment_offset else 0
        samples.append(Sample(
            key=str(a.get("id", key)), video=vid, query=str(query).strip(), gt_span=(st, ed), gt_boxes=boxes,
            num_frames=n, fps=float(a.get("fps") or 0.0), image_size=(h, w), inclusive=False, dataset="vidstg",
            video_path=_find_video(root, [vid, vid.split("/")[-1]], ["", "video", "videos"]),
            qtype=a.get("qtype"), frame_offset=begin, category=a.get("target_category"),
            extra={"sentence_type": sentence.get("type") if isinstance(sentence, dict) else None},
        ))
    return samples


DATASETS = ("hcstvg_v1", "hcstvg_v2", "vidstg")


def load_dataset(name: str, anno_path: str | Path, video_root: str | Path | None = None,
                 sub_queries: str | Path | None = None) -> list[Sample]:
    """Read a benchmark by name (``hcstvg_v1``, ``hcstvg_v2``, ``vidstg``), attaching sub-queries."""
    if name in ("hcstvg_v1", "hcstvg_v2", "hcstvg"):
        samples = load_hcstvg(anno_path, video_root, version="v2" if name.endswith("v2") else "v1")
    elif name == "vidstg":
        samples = load_vidstg(anno_path, video_root)
    else:
        raise DatasetError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    if sub_queries:
        attach_sub_queries(samples, load_sub_queries(sub_queries))
    return samples


# --- sub-queries --------------------------------------------------------------------------------

# GPT-4o's answer when it could not split a query (the official code then asks the full query for that half)
DECOMPOSE_FAILED = "please describe this video"


def _sub_query_text(v) -> str:
    """One half of a decomposition as the official code reads it: the LAST entry of a list (a string is
    one entry); an entry containing the failure marker, or no entry, gives "" (= ask the full query)."""
    entries = [v] if isinstance(v, str) else list(v) if isinstance(v, (list, tuple)) else []
    text = ""
    for entry in entries:
        entry = str(entry).strip()
        text = "" if DECOMPOSE_FAILED in entry.lower() else entry
    return text


def load_sub_queries(path: str | Path) -> dict[str, SubQueries]:
    """``{key: {"decompose_attribute": [...], "decompose_action": [...]}}`` → ``{key: SubQueries}``.

    Read as the official loader and ``prepare_instructions`` do: a list's last entry is the sub-query; a
    half that is empty or contains "please describe this video" (GPT-4o's failed split) is "" here and
    becomes the full query when attached to a sample (:func:`with_full_query`).
    """
    data = _load_json(path, "sub-queries")
    if not isinstance(data, dict):
        raise DatasetError(f"sub-queries file {path} must map video names to objects")
    out = {}
    for key, v in data.items():
        if not isinstance(v, dict):
            raise DatasetError(f"sub-queries file {path}: {key!r} must be an object with decompose_attribute "
                               "and decompose_action")
        attr = _sub_query_text(v.get("decompose_attribute", v.get("attribute", "")))
        act = _sub_query_text(v.get("decompose_action", v.get("action", "")))
        out[str(key)] = SubQueries(attribute=attr, action=act, source="caller")
    return out


def with_full_query(sub_queries: SubQueries, query: str) -> SubQueries:
    """A failed half ("") replaced by the full query, as the official code asks it."""
    q = " ".join(query.split())
    return SubQueries(attribute=sub_queries.attribute or q, action=sub_queries.action or q, source=sub_queries.source)


def _lookup(table: Mapping[str, object], sample: Sample):
    stem = sample.video.rsplit(".", 1)[0] if "." in sample.video else sample.video
    for k in (sample.key, sample.video, stem):
        if k in table:
            return table[k]
    return None


def attach_sub_queries(samples: list[Sample], table: Mapping[str, SubQueries]) -> int:
    """Set ``sample.sub_queries`` from the table (by query key, then video name); returns how many."""
    hits = 0
    for s in samples:
        sq = _lookup(table, s)
        if sq is not None:
            s.sub_queries = with_full_query(sq, s.query)
            hits += 1
    return hits


# --- proposals ----------------------------------------------------------------------------------

def _parse_box(box, where: str) -> Box:
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        raise DatasetError(f"{where}: a box must be [x_min, y_min, x_max, y_max]")
    x0, y0, x1, y1 = (float(v) for v in box)
    return (x0, y0, x1, y1)


def load_proposals(path: str | Path) -> dict[str, dict[str, Track]]:
    """Read a proposals file: ``{video: {track_id: {frame_index: box}}}`` or with track objects
    ``{"label", "score", "boxes"}``; frame indices are annotation frame indices of the video, and
    each :class:`~stvg_ros.proposals.tracks.Track` is keyed by them (int; every box with the track's score)."""
    data = _load_json(path, "proposals")
    if not isinstance(data, dict):
        raise DatasetError(f"proposals file {path} must map video keys to tracks")
    out: dict[str, dict[str, Track]] = {}
    for video, tracks in data.items():
        if not isinstance(tracks, dict):
            raise DatasetError(f"proposals file {path}: {video!r} must map track ids to tracks")
        parsed = {}
        for tid, t in tracks.items():
            where = f"proposals file {path}, video {video!r}, track {tid!r}"
            if isinstance(t, dict) and "boxes" in t and isinstance(t["boxes"], dict):
                label, score_, boxes = str(t.get("label", "")), float(t.get("score", 1.0)), t["boxes"]
            elif isinstance(t, dict):
                label, score_, boxes = "", 1.0, t
            else:
                raise DatasetError(f"{where}: a track must be {{frame_index: box}} or {{label, score, boxes}}")
            parsed_boxes = {}
            for f, b in boxes.items():
                try:
                    frame = int(f)
                except ValueError:
                    raise DatasetError(f"{where}: frame keys must be integer annotation frame indices, "
                                       f"got {f!r}") from None
                parsed_boxes[frame] = _parse_box(b, where)
            parsed[str(tid)] = Track(str(tid), parsed_boxes, {f: score_ for f in parsed_boxes}, label)
        out[str(video)] = parsed
    return out


def _file_score(track: Track) -> float:
    """A file track's one score: the score every box carries, else their mean."""
    values = set(track.scores.values())
    return float(values.pop()) if len(values) == 1 else float(track.score)


def save_proposals(path: str | Path, proposals: Mapping[str, Mapping[str, Track]]) -> Path:
    """Write proposals in the documented format (track objects with label, score and boxes)."""
    path = Path(path)
    data = {
        str(v): {str(tid): {"label": t.label, "score": _file_score(t),
                            "boxes": {str(f): [float(x) for x in b] for f, b in sorted(t.boxes.items())}}
                 for tid, t in tracks.items()}
        for v, tracks in proposals.items()
    }
    path.write_text(json.dumps(data))
    return path


def proposals_for_sample(table: Mapping[str, Mapping[str, Track]], sample: Sample) -> Optional[dict[str, Track]]:
    """The sample's tracks from a loaded proposals table (by query key, video name or stem)."""
    return _lookup(table, sample)
