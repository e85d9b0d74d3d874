"""rosbag2 files without ROS: write evaluation bags and read them back, with the ``rosbags`` library.

A bag made here holds, with the video's own timing:

* camera frames as ``sensor_msgs/msg/CompressedImage`` (JPEG/PNG) or ``sensor_msgs/msg/Image``
  (``rgb8``) -- log time = header stamp = ``start_time + frame_index / fps``;
* the query as ``stvg_ros/msg/GroundingQuery`` one frame period after the last frame (so a node
  has the whole clip in its window when the question arrives);
* the ground truth as ``stvg_ros/msg/Tube`` on a separate topic at the same time;
* evaluation facts (dataset, query key, span counting, fps) in the bag's ``custom_data``.

Such bags play with ``ros2 bag play`` as well as with ``stvg-play-bag`` (rclpy).  Every bag starts
at the same ``start_time`` so that playing bags one after another makes the clock jump back, which
resets the node's window between videos.

The ``stvg_ros`` message definitions are read from the package's ``msg/*.msg`` files, so the
bags carry the same definitions and hashes as the colcon-built interfaces.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

import numpy as np

from ..image_messages import ImageError, decode_message
from ..boxes import Box
from ..tube_messages import make_tube, stamp_to_ns, time_message, tube_boxes
from ..stream.window import NS

DEFAULT_START_TIME = 1000.0
"""Seconds; the same for every bag (see module docstring). Non-zero: a zero stamp means 'unset'."""


@dataclass
class Topics:
    image: str = "/camera/image_raw"
    """Raw images go here, compressed ones to ``image + '/compressed'`` (image_transport naming)."""
    query: str = "/stvg/query_request"
    ground_truth: str = "/stvg/ground_truth"
    tube: str = "/stvg/tube"
    """Where the node answers (read by node-mode evaluation, not written into bags)."""

    depth: str = "/camera/aligned_depth_to_color/image_raw"
    """Depth aligned to the colour image (16UC1 millimetres), RealSense naming; only with depth frames."""
    camera_info: str = "/camera/color/camera_info"
    """The colour camera's CameraInfo; only with depth frames."""

    @property
    def compressed(self) -> str:
        return self.image.rstrip("/") + "/compressed"


class BagError(RuntimeError):
    """A bag cannot be written or read; the message says why and what to do."""


# --- message types ------------------------------------------------------------------------------

def find_msg_dir() -> Path:
    """Where ``GroundingQuery.msg`` / ``Tube.msg`` live: ``$STVG_ROS_MSG_DIR``, the source tree, or
    an installed ``share/stvg_ros/msg`` (ament prefixes, then this Python's prefix)."""
    candidates = []
    if os.environ.get("STVG_ROS_MSG_DIR"):
        candidates.append(Path(os.environ["STVG_ROS_MSG_DIR"]))
    candidates.append(Path(__file__).resolve().parents[2] / "msg")
    candidates.append(Path(__file__).resolve().parents[1] / "msg_definitions")
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / "stvg_ros" / "msg")
    candidates.append(Path(sys.prefix) / "share" / "stvg_ros" / "msg")
    for c in candidates:
        if (c / "Tube.msg").is_file() and (c / "GroundingQuery.msg").is_file():
            return c
    raise BagError("cannot find the stvg_ros message definitions (msg/Tube.msg): run from the source tree, "
                   "source the colcon install, or set STVG_ROS_MSG_DIR to the msg/ directory")


_TYPESTORE = None


def _base_store():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(getattr(Stores, "ROS2_KILTED" if hasattr(Stores, "ROS2_KILTED") else "LATEST"))


def _package_types() -> dict:
    """This package's message types as rosbags parses them from ``msg/*.msg`` (parsed once per directory: every
    bag read compares the definitions it carries with these)."""
    return dict(_parse_msg_dir(find_msg_dir()))


@functools.lru_cache(maxsize=4)
def _parse_msg_dir(msg_dir: Path) -> dict:
    from rosbags.typesys import get_types_from_msg

    types = {}
    for p in sorted(msg_dir.glob("*.msg")):
        types.update(get_types_from_msg(p.read_text(), f"stvg_ros/msg/{p.stem}"))
    return types


def typestore():
    """A rosbags typestore with the standard ROS 2 types plus ``stvg_ros/msg/*`` (cached)."""
    global _TYPESTORE
    if _TYPESTORE is None:
        store = _base_store()
        store.register(_package_types())
        _TYPESTORE = store
    return _TYPESTORE


def _store_for(connections) -> Any:
    """The typestore to read a bag with: :func:`typestore`, or, for a bag recorded with older definitions of this
    package's messages (a field added since, e.g. Tube.camera_margin, would misread every message after it), one
    that reads those with the definitions the bag carries."""
    from rosbags.typesys import get_types_from_msg

    ours, recorded = _package_types(), {}
    for c in connections:
        data = getattr(getattr(c, "msgdef", None), "data", "") or ""
        if not c.msgtype.startswith("stvg_ros/") or not data.strip():
            continue
        try:
            theirs = get_types_from_msg(data, c.msgtype)
        except Exception:  # noqa: BLE001 - a definition rosbags cannot parse: read with ours
            continue
        recorded.update({k: v for k, v in theirs.items() if k.startswith("stvg_ros/") and ours.get(k) != v})
    if not recorded:
        return typestore()
    store = _base_store()
    store.register({**ours, **recorded})
    return store


def _time(store, seconds: float):
    return time_message(store.types.__getitem__, int(round(seconds * NS)))


def _header(store, seconds: float, frame_id: str):
    return store.types["std_msgs/msg/Header"](stamp=_time(store, seconds), frame_id=frame_id)


def stamp_seconds(t) -> float:
    """``builtin_interfaces/Time`` → seconds."""
    return stamp_to_ns(t) / NS


# --- messages from Python values ----------------------------------------------------------------

def image_message(store, frame: np.ndarray, stamp: float, frame_id: str = "camera", fmt: str = "jpeg",
                  quality: int = 90):
    """An RGB frame as ``CompressedImage`` (``fmt`` jpeg/png) or ``Image`` (``fmt='raw'``, rgb8)."""
    frame = np.ascontiguousarray(frame, dtype=np.uint8)
    header = _header(store, stamp, frame_id)
    if fmt == "raw":
        h, w = frame.shape[:2]
        return store.types["sensor_msgs/msg/Image"](
            header=header, height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3,
            data=frame.reshape(-1).copy())
    import cv2

    ext = {"jpeg": ".jpg", "jpg": ".jpg", "png": ".png"}.get(fmt)
    if ext is None:
        raise BagError(f"unknown image format {fmt!r}: use jpeg, png or raw")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if ext == ".jpg" else []
    ok, buf = cv2.imencode(ext, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise BagError(f"OpenCV could not encode a frame as {fmt}")
    return store.types["sensor_msgs/msg/CompressedImage"](
        header=header, format="jpeg" if ext == ".jpg" else "png", data=buf.reshape(-1))


def depth_message(store, depth_m: np.ndarray, stamp: float, frame_id: str = "camera"):
    """Depth in metres (0/NaN = no reading) as a RealSense-style ``16UC1`` millimetre ``Image``."""
    mm = np.nan_to_num(np.asarray(depth_m, np.float32) * 1000.0, nan=0.0, posinf=0.0, neginf=0.0)
    mm = np.clip(np.round(mm), 0, 65535).astype(np.uint16)
    h, w = mm.shape
    return store.types["sensor_msgs/msg/Image"](
        header=_header(store, stamp, frame_id), height=h, width=w, encoding="16UC1", is_bigendian=0, step=w * 2,
        data=mm.view(np.uint8).reshape(-1).copy())


def camera_info_message(store, intrinsics, stamp: float, frame_id: str = "camera"):
    """A pinhole ``CameraInfo`` (no distortion) of :class:`~stvg_ros.stream.depth.Intrinsics`."""
    i = intrinsics
    k = np.array([i.fx, 0, i.cx, 0, i.fy, i.cy, 0, 0, 1], np.float64)
    p = np.array([i.fx, 0, i.cx, 0, 0, i.fy, i.cy, 0, 0, 0, 1, 0], np.float64)
    T = store.types
    return T["sensor_msgs/msg/CameraInfo"](
        header=_header(store, stamp, frame_id), height=i.height, width=i.width, distortion_model="plumb_bob",
        d=np.zeros(5, np.float64), k=k, r=np.eye(3).reshape(-1), p=p, binning_x=0, binning_y=0,
        roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


def query_message(store, stamp: float, query_id: str, text: str, attribute: str = "", action: str = "",
                  frame_id: str = ""):
    zero = _time(store, 0.0)
    return store.types["stvg_ros/msg/GroundingQuery"](
        header=_header(store, stamp, frame_id), id=query_id, text=text, start=zero, end=zero,
        attribute_query=attribute, action_query=action,
        camera="", each_camera=False,  # several cameras: ask all (a one-camera node ignores them)
        last_s=0.0)  # the whole window


def ground_truth_message(store, stamp: float, query_id: str, text: str, boxes: Mapping[float, Box],
                         span: Optional[tuple[float, float]] = None, frame_id: str = "camera"):
    """The ground truth as a ``Tube`` (found, scores 1) with one box per stamp (seconds) in ``boxes``."""
    if span is None:
        span = (min(boxes), max(boxes)) if boxes else (0.0, 0.0)
    return make_tube(store.types.__getitem__, query_id, text, frame_id=frame_id, stamp_ns=round(stamp * NS),
                     found=True, p_yes=1.0, score=1.0, start_ns=round(span[0] * NS), end_ns=round(span[1] * NS),
                     boxes=[(round(t * NS), b, 1.0) for t, b in sorted(boxes.items())], sub_query_source="none")


# --- writing ------------------------------------------------------------------------------------

@dataclass
class QuerySpec:
    """A query to put into a bag and, optionally, its ground-truth tube (stamps in seconds)."""

    query_id: str
    text: str
    stamp: Optional[float] = None
    """When the query is published; None = one frame period after the last frame."""
    gt_boxes: Optional[dict[float, Box]] = None
    gt_span: Optional[tuple[float, float]] = None
    attribute: str = ""
    action: str = ""


def write_bag(path: str | Path, frames: Iterable[np.ndarray], stamps: Sequence[float],
              queries: Sequence[QuerySpec] = (), storage: str = "sqlite3", image_format: str = "jpeg",
              topics: Topics = Topics(), frame_id: str = "camera", metadata: Optional[dict] = None,
              jpeg_quality: int = 90, overwrite: bool = False, depth: Optional[Iterable[np.ndarray]] = None,
              intrinsics=None) -> Path:
    """Write frames (an iterable, consumed lazily so long videos stream) with their stamps, then the
    queries and ground-truth tubes.  ``storage``: ``sqlite3`` or ``mcap``.  ``depth`` (metres, one per
    frame, aligned) with ``intrinsics`` adds an RGB-D camera's depth and CameraInfo topics."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    path = Path(path)
    if path.exists():
        if not overwrite:
            raise BagError(f"{path} exists: choose another output path or pass overwrite=True (--overwrite)")
        import shutil

        shutil.rmtree(path)
    plugins = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
    if storage not in plugins:
        raise BagError(f"unknown storage {storage!r}: use sqlite3 or mcap")
    store = typestore()
    stamps = list(stamps)
    raw = image_format == "raw"
    with Writer(path, version=9, storage_plugin=plugins[storage]) as writer:
        img_conn = writer.add_connection(topics.image if raw else topics.compressed,
                                         "sensor_msgs/msg/Image" if raw else "sensor_msgs/msg/CompressedImage",
                                         typestore=store)
        q_conn = writer.add_connection(topics.query, "stvg_ros/msg/GroundingQuery", typestore=store) if queries else None
        gt_conn = (writer.add_connection(topics.ground_truth, "stvg_ros/msg/Tube", typestore=store)
                   if any(q.gt_boxes is not None for q in queries) else None)
        if depth is not None and intrinsics is None:
            raise BagError("depth frames need the camera's intrinsics (intrinsics=...) for its CameraInfo")
        d_conn = writer.add_connection(topics.depth, "sensor_msgs/msg/Image", typestore=store) if depth is not None \
            else None
        i_conn = writer.add_connection(topics.camera_info, "sensor_msgs/msg/CameraInfo", typestore=store) \
            if depth is not None else None
        depth_it = iter(depth) if depth is not None else None
        n = 0
        for frame, stamp in zip(frames, stamps):
            t_ns = int(round(stamp * 1e9))
            if depth_it is not None:  # CameraInfo and depth first: a driver publishes them with the frame
                info = camera_info_message(store, intrinsics, stamp, frame_id)
                writer.write(i_conn, t_ns, store.serialize_cdr(info, info.__msgtype__))
                dm = depth_message(store, next(depth_it), stamp, frame_id)
                writer.write(d_conn, t_ns, store.serialize_cdr(dm, dm.__msgtype__))
            msg = image_message(store, frame, stamp, frame_id, image_format, jpeg_quality)
            writer.write(img_conn, t_ns, store.serialize_cdr(msg, msg.__msgtype__))
            n += 1
        if n == 0:
            raise BagError("no frame to write: the video is empty or unreadable")
        period = (stamps[n - 1] - stamps[0]) / (n - 1) if n > 1 else 0.1
        default_q_stamp = stamps[n - 1] + period
        for q in queries:
            t = default_q_stamp if q.stamp is None else q.stamp
            qm = query_message(store, t, q.query_id, q.text, q.attribute, q.action, frame_id)
            writer.write(q_conn, int(round(t * 1e9)), store.serialize_cdr(qm, qm.__msgtype__))
            if q.gt_boxes is not None:
                gm = ground_truth_message(store, t, q.query_id, q.text, q.gt_boxes, q.gt_span, frame_id)
                writer.write(gt_conn, int(round(t * 1e9)), store.serialize_cdr(gm, gm.__msgtype__))
        meta = dict(metadata or {})
        meta.setdefault("frames", n)
        writer.set_custom_data("stvg_ros", json.dumps(meta))
    return path


def video_stream(path: str | Path, offset: int = 0, count: Optional[int] = None,
                 max_side: int = 0) -> Iterator[np.ndarray]:
    """Frames ``offset .. offset+count-1`` of a video, decoded one at a time (RGB)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise BagError(f"cannot open video {path}: check the path and that OpenCV can decode its codec")
    try:
        pos = 0
        while count is None or pos < offset + count:
            ok = cap.grab()
            if not ok:
                break
            if pos >= offset:
                ok, bgr = cap.retrieve()
                if not ok:
                    break
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                if max_side and max(rgb.shape[:2]) > max_side:
                    s = max_side / max(rgb.shape[:2])
                    rgb = cv2.resize(rgb, (round(rgb.shape[1] * s), round(rgb.shape[0] * s)),
                                     interpolation=cv2.INTER_AREA)
                yield rgb
            pos += 1
    finally:
        cap.release()


def make_bag_from_video(video: str | Path, out: str | Path, query: str = "", query_id: str = "q0",
                        fps: float = 0.0, start_time: float = DEFAULT_START_TIME, **kwargs) -> Path:
    """A bag of a whole video (timing from ``fps`` or the container) with an optional query."""
    from ..video import probe

    n, file_fps, _ = probe(video)
    fps = fps or file_fps
    if fps <= 0:
        raise BagError(f"{video}: unknown frame rate; pass fps (--fps)")
    stamps = [start_time + i / fps for i in range(max(n, 1) + 10_000)]  # container counts may be short
    queries = [QuerySpec(query_id, query)] if query else []
    return write_bag(out, video_stream(video), stamps, queries, metadata={"fps": fps, "start_time": start_time},
                     **kwargs)


def make_bag_from_sample(sample, out: str | Path, start_time: float = DEFAULT_START_TIME,
                         max_side: int = 0, **kwargs) -> Path:
    """A bag of one benchmark query: every annotated frame of its video at the annotation's frame
    rate, the query (with the sample's sub-queries when known) and its ground-truth tube."""
    from ..video import probe

    if sample.video_path is None:
        raise BagError(f"no video file found for {sample.key!r} ({sample.video}): pass the videos directory")
    fps = sample.fps or probe(sample.video_path)[1] or sample.extra.get("fps_from_times", 0.0)
    if fps <= 0:
        raise BagError(f"{sample.video_path}: unknown frame rate")
    stamps = [start_time + i / fps for i in range(sample.num_frames)]
    scale = 1.0
    if max_side and max(sample.image_size) > max_side:
        scale = max_side / max(sample.image_size)
    gt = {start_time + f / fps: tuple(v * scale for v in b) for f, b in sample.gt_boxes.items()}
    sq = sample.sub_queries
    q = QuerySpec(query_id=str(sample.key), text=sample.query, gt_boxes=gt,
                  gt_span=(start_time + sample.gt_span[0] / fps, start_time + sample.gt_span[1] / fps),
                  attribute=sq.attribute if sq else "", action=sq.action if sq else "")
    meta = {"dataset": sample.dataset, "key": sample.key, "video": sample.video, "fps": fps,
            "start_time": start_time, "inclusive": sample.inclusive, "qtype": sample.qtype,
            "num_frames": sample.num_frames, "gt_span": list(sample.gt_span), "scale": scale}
    frames = video_stream(sample.video_path, sample.frame_offset, sample.num_frames, max_side)
    return write_bag(out, frames, stamps, [q], metadata=meta, **kwargs)


# --- reading ------------------------------------------------------------------------------------

@dataclass
class BagQuery:
    query_id: str
    text: str
    stamp: float
    attribute: str = ""
    action: str = ""
    gt_boxes: Optional[dict[float, Box]] = None
    gt_span: Optional[tuple[float, float]] = None


@dataclass
class BagContents:
    """What evaluation needs from a bag: image stamps (sorted), the chosen frames, the queries."""

    path: Path
    image_topic: str
    stamps: list[float]
    frames: dict[int, np.ndarray]
    """Decoded frames by position in ``stamps`` (only those asked for)."""
    queries: list[BagQuery]
    metadata: dict = field(default_factory=dict)
    frame_id: str = ""


def iter_messages(path: str | Path, topics: Optional[Sequence[str]] = None):
    """``(topic, msgtype, log_time_ns, message)`` for every message (deserialized), in log order."""
    from rosbags.rosbag2 import Reader

    with Reader(path) as reader:
        store = _store_for(reader.connections)
        conns = [c for c in reader.connections if topics is None or c.topic in topics]
        if not conns:
            return
        for conn, t, raw in reader.messages(connections=conns):
            yield conn.topic, conn.msgtype, t, store.deserialize_cdr(raw, conn.msgtype)


def read_bag(path: str | Path, frame_positions=None, image_topic: Optional[str] = None) -> BagContents:
    """Read a bag into frames, queries and ground truth, without any ROS graph.

    ``frame_positions``: which images to decode -- ``None`` for all, an int N for N frames sampled
    uniformly (the paper's sampling), or a list of positions.  The image topic is the only
    ``Image``/``CompressedImage`` topic unless ``image_topic`` names one.
    """
    from rosbags.rosbag2 import Reader

    from ..video import uniform_indices

    path = Path(path)
    if not path.exists():
        raise BagError(f"bag {path} does not exist")
    with Reader(path) as reader:
        store = _store_for(reader.connections)
        image_conns = [c for c in reader.connections
                       if c.msgtype in ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")]
        if image_topic:
            image_conns = [c for c in image_conns if c.topic == image_topic]
        if len({c.topic for c in image_conns}) != 1:
            found = sorted({c.topic for c in image_conns})
            raise BagError(f"{path}: expected one image topic, found {found}: pick one with image_topic (--image-topic)")
        topic = image_conns[0].topic
        raw_meta = {}
        custom = getattr(getattr(reader.storage, "metadata", None), "custom", None) or {}
        try:
            raw_meta = json.loads(custom.get("stvg_ros", "{}"))
        except ValueError:
            pass
        # Pass 1: stamps only (log times; header stamps are read for the decoded frames).
        log_times = [t for _, t, _ in reader.messages(connections=image_conns)]
        n = len(log_times)
        if frame_positions is None:
            wanted = set(range(n))
        elif isinstance(frame_positions, int):
            wanted = set(uniform_indices(n, frame_positions)) if n else set()
        else:
            wanted = {int(p) for p in frame_positions}
        frames: dict[int, np.ndarray] = {}
        header_stamps = [t * 1e-9 for t in log_times]
        frame_id = ""
        for i, (conn, t, raw) in enumerate(reader.messages(connections=image_conns)):
            if i in wanted:
                msg = store.deserialize_cdr(raw, conn.msgtype)
                header_stamps[i] = stamp_seconds(msg.header.stamp)
                frame_id = msg.header.frame_id
                try:
                    frames[i] = decode_message(msg)
                except ImageError as e:
                    raise BagError(f"{path}: image {i} on {topic} cannot be decoded: {e}") from None
        queries: dict[str, BagQuery] = {}
        gts = {}
        other = [c for c in reader.connections if c.msgtype in ("stvg_ros/msg/GroundingQuery", "stvg_ros/msg/Tube")]
        for conn, t, raw in (reader.messages(connections=other) if other else ()):  # [] would mean "all"
            msg = store.deserialize_cdr(raw, conn.msgtype)
            if conn.msgtype == "stvg_ros/msg/GroundingQuery":
                queries[msg.id] = BagQuery(msg.id, msg.text, stamp_seconds(msg.header.stamp),
                                           msg.attribute_query, msg.action_query)
            else:
                gts[msg.query_id] = msg
    for qid, g in gts.items():
        q = queries.setdefault(qid, BagQuery(qid, g.query, stamp_seconds(g.header.stamp)))
        q.gt_boxes = {ns / NS: b for ns, b in tube_boxes(g).items()}
        q.gt_span = (stamp_seconds(g.start), stamp_seconds(g.end))
    order = np.argsort(header_stamps, kind="stable")
    if np.any(order != np.arange(n)):  # keep positions in stamp order
        remap = {int(old): new for new, old in enumerate(order)}
        frames = {remap[i]: f for i, f in frames.items()}
        header_stamps = [header_stamps[i] for i in order]
    return BagContents(path=path, image_topic=topic, stamps=header_stamps, frames=frames,
                       queries=sorted(queries.values(), key=lambda q: q.stamp), metadata=raw_meta,
                       frame_id=frame_id)


# --- command line: stvg-make-bag ----------------------------------------------------------------

#: video file extensions dropped from a sample key to name its bag (a bag is a directory, not a video)
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov")


def bag_name(key: str) -> str:
    """The bag directory name for a dataset sample key: the key without a video extension (HC-STVG keys
    are file names such as ``12_abc.mp4``), characters other than letters, digits, ``-_.`` as ``_``."""
    stem = key[: -len(key.rsplit(".", 1)[-1]) - 1] if key.lower().endswith(VIDEO_SUFFIXES) else key
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``stvg-make-bag``: a bag from a video (+ query), or one bag per benchmark query."""
    import argparse

    ap = argparse.ArgumentParser(prog="stvg-make-bag", description="Write rosbag2 files for stvg_ros evaluation "
                                 "(frames with the video's timing, the query, the ground-truth tube).")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--video", help="a video file")
    src.add_argument("--dataset", help="hcstvg_v1, hcstvg_v2 or vidstg (with --annotations/--videos)")
    ap.add_argument("--query", default="", help="with --video: the query to put in the bag")
    ap.add_argument("--fps", type=float, default=0.0, help="with --video: override the container's frame rate")
    ap.add_argument("--annotations", help="the dataset's {split}_proc.json")
    ap.add_argument("--videos", help="the dataset's video directory")
    ap.add_argument("--sub-queries", default="", help="sub-queries file to embed in the GroundingQuery")
    ap.add_argument("--keys", nargs="*", default=None, help="only these query keys")
    ap.add_argument("--limit", type=int, default=0, help="at most this many queries")
    ap.add_argument("--output", "-o", required=True,
                    help="the bag path (--video) or a directory receiving one bag per query (--dataset)")
    ap.add_argument("--storage", choices=("sqlite3", "mcap"), default="mcap")
    ap.add_argument("--image-format", choices=("jpeg", "png", "raw"), default="jpeg",
                    help="CompressedImage jpeg/png or sensor_msgs/Image rgb8 (raw)")
    ap.add_argument("--jpeg-quality", type=int, default=90)
    ap.add_argument("--max-side", type=int, default=0, help="downscale frames to this longer side (0 = keep)")
    ap.add_argument("--image-topic", default=Topics.image)
    ap.add_argument("--query-topic", default=Topics.query)
    ap.add_argument("--gt-topic", default=Topics.ground_truth)
    ap.add_argument("--frame-id", default="camera")
    ap.add_argument("--start-time", type=float, default=DEFAULT_START_TIME, help="stamp of the first frame (s)")
    ap.add_argument("--overwrite", action="store_true")
    a = ap.parse_args(argv)
    topics = Topics(image=a.image_topic, query=a.query_topic, ground_truth=a.gt_topic)
    common = dict(storage=a.storage, image_format=a.image_format, topics=topics, frame_id=a.frame_id,
                  jpeg_quality=a.jpeg_quality, overwrite=a.overwrite)
    try:
        if a.video:
            p = make_bag_from_video(a.video, a.output, a.query, fps=a.fps, start_time=a.start_time, **common)
            print(p)
            return 0
        from tqdm import tqdm

        from .datasets import load_dataset

        if not a.annotations:
            ap.error("--dataset needs --annotations")
        samples = load_dataset(a.dataset, a.annotations, a.videos, a.sub_queries or None)
        if a.keys:
            samples = [s for s in samples if s.key in set(a.keys)]
        if a.limit:
            samples = samples[: a.limit]
        out = Path(a.output)
        out.mkdir(parents=True, exist_ok=True)
        for s in tqdm(samples, desc="stvg-make-bag", unit="bag"):
            name = bag_name(s.key)
            make_bag_from_sample(s, out / name, start_time=a.start_time, max_side=a.max_side, **common)
        print(f"{len(samples)} bag(s) in {out}")
        return 0
    except (BagError, ValueError, OSError) as e:
        print(f"stvg-make-bag: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
