"""The stream's memory beyond the window: keyframes on disk as rosbag2 MCAP chunks (core, no ROS).

What is kept: every frame the window kept is offered (:meth:`MemoryStore.add`); the store keeps one per
``1/rate`` seconds (a fixed schedule on the frames' own stamps, as the window decimates) and, once the
frame has left the window's time span, JPEG-encodes it (``sensor_msgs/msg/CompressedImage``, the
window's stored pixels, stamp = the camera's) into the *open chunk* in RAM.  Every ``chunk_seconds``
the open chunk is written as one rosbag2 bag (MCAP storage, :func:`stvg_ros.evaluation.bags.typestore` types) in a
hidden directory that is then renamed into place: a chunk on disk is complete or absent, so a crash or
a SIGKILL loses at most the open chunk (and the frames still in the window) and never corrupts a
written one.  A leftover hidden directory is deleted when a store opens the directory again.

Why chunks: old ones are deleted whole when the memory is older than ``hours`` or larger than ``mb``
(roll-over), and each is a bag that ``ros2 bag play`` / ``rosbags`` read as is.  RAM is bounded by the
open chunk (``chunk_seconds x rate`` JPEGs), the frames awaiting their exit from the window
(``window x rate`` references to the window's own arrays) and the index (a few numbers per keyframe).

The index (each chunk's keyframe stamps, the source size and scale of its pixels) is in the bag's own
``custom_data`` (its ``metadata.yaml``) and, one line per chunk, in ``index.jsonl``: a restart reads that
one file (:meth:`MemoryStore.open`), and a chunk's metadata only where the file lacks it or disagrees
with the chunk's size on disk (a crash between a chunk's rename and its line).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from ..config import ConfigError
from ..stream.window import NS, Frame

#: the topic of the keyframes in a memory chunk (image_transport naming of a compressed stream)
MEMORY_TOPIC = "/stvg/memory/image/compressed"
#: the custom_data key of a chunk's index
INDEX_KEY = "stvg_ros_memory"
#: chunk directories: ``memory_<first stamp ns, 20 digits>``; sorting by name sorts by time
PREFIX = "memory_"
#: every chunk's index, one JSON line per chunk written (read at a restart; rebuilt from the chunks when absent)
INDEX_FILE = "index.jsonl"
#: a chunk being written (renamed to its final name when complete)
PARTIAL = ".partial_"
#: a stamp this much older than the newest means the stream's time went back (as the service's rule)
JUMP_BACK_NS = NS // 2


class MemoryStoreError(ConfigError):
    """The memory directory cannot be used; the message names the fix."""


@dataclass
class Chunk:
    """One chunk on disk: its bag directory and its index."""

    path: Path
    stamps: list[int]
    """Keyframe stamps (ns), increasing."""
    sizes: list[tuple[int, int]]
    """Per keyframe: the published ``(H, W)`` its pixels came from."""
    scales: list[float]
    """Per keyframe: source pixels per stored pixel."""
    nbytes: int = 0
    frame_id: str = ""
    replaced: bool = False
    """Written over a chunk of the same first stamp (a replayed stream)."""

    @property
    def start_ns(self) -> int:
        return self.stamps[0]

    @property
    def end_ns(self) -> int:
        return self.stamps[-1]


@dataclass
class _Open:
    """The chunk being filled in RAM: JPEG bytes and their index."""

    stamps: list[int] = field(default_factory=list)
    jpegs: list[bytes] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    scales: list[float] = field(default_factory=list)
    frame_id: str = ""

    def __len__(self) -> int:
        return len(self.stamps)

    @property
    def nbytes(self) -> int:
        return sum(len(j) for j in self.jpegs)


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_chunk(directory: Path, stamps: list[int], jpegs: list[bytes], sizes, scales, frame_id: str = "",
                quality: int = 0) -> Chunk:
    """Write one complete chunk bag (MCAP) atomically: into a hidden directory, synced, then renamed."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from ..evaluation.bags import typestore
    from ..tube_messages import time_message

    store = typestore()
    T = store.types
    name = f"{PREFIX}{stamps[0]:020d}"
    final = directory / name
    tmp = directory / f"{PARTIAL}{name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    with Writer(tmp, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection(MEMORY_TOPIC, "sensor_msgs/msg/CompressedImage", typestore=store)
        for t, data in zip(stamps, jpegs):
            header = T["std_msgs/msg/Header"](stamp=time_message(T.__getitem__, t), frame_id=frame_id)
            msg = T["sensor_msgs/msg/CompressedImage"](header=header, format="jpeg",
                                                       data=np.frombuffer(data, np.uint8))
            writer.write(conn, t, store.serialize_cdr(msg, msg.__msgtype__))
        writer.set_custom_data(INDEX_KEY, json.dumps({
            "stamps": stamps, "sizes": [list(s) for s in sizes], "scales": scales, "frame_id": frame_id,
            "jpeg_quality": quality}))
    for p in tmp.iterdir():  # data and metadata on disk before the chunk becomes visible
        with open(p, "rb") as f:
            os.fsync(f.fileno())
    _fsync_dir(tmp)
    if final.exists():  # the same first stamp again (a replayed stream): the newer chunk wins
        shutil.rmtree(final)
        replaced = True
    else:
        replaced = False
    os.rename(tmp, final)
    _fsync_dir(directory)
    return Chunk(final, list(stamps), [tuple(s) for s in sizes], list(scales), _dir_size(final), frame_id, replaced)


def read_index(path: Path) -> Optional[Chunk]:
    """A chunk's index from its ``metadata.yaml`` (no image read), or None when it is not a memory chunk."""
    from rosbags.rosbag2 import Reader

    try:
        with Reader(path) as reader:
            custom = getattr(getattr(reader.storage, "metadata", None), "custom", None) or {}
            if INDEX_KEY not in custom:  # written by an older version: read the log times
                stamps = [t for _, t, _ in reader.messages()]
                index = {"stamps": stamps, "sizes": [], "scales": []}
            else:
                index = json.loads(custom[INDEX_KEY])
    except Exception:  # noqa: BLE001 - not a bag, or not ours: skipped, never fatal
        return None
    stamps = [int(s) for s in index["stamps"]]
    if not stamps:
        return None
    sizes = [tuple(s) for s in index.get("sizes") or []] or [(0, 0)] * len(stamps)
    scales = [float(s) for s in index.get("scales") or []] or [1.0] * len(stamps)
    return Chunk(path, stamps, sizes, scales, _dir_size(path), index.get("frame_id", ""))


def read_chunk_images(chunk: Chunk, wanted: Optional[set[int]] = None) -> Iterator[tuple[int, bytes]]:
    """``(stamp_ns, jpeg bytes)`` of a chunk's keyframes (those in ``wanted`` only, when given)."""
    from rosbags.rosbag2 import Reader

    from ..image_messages import compressed_from_cdr

    with Reader(chunk.path) as reader:
        conns = [c for c in reader.connections if c.topic == MEMORY_TOPIC]
        if not conns:
            return
        for _, t, raw in reader.messages(connections=conns):
            if wanted is None or t in wanted:
                yield t, bytes(compressed_from_cdr(raw).data)


class MemoryStore:
    """Keyframes after they leave the window, on disk in chunks (see the module docstring). Thread-safe.

    ``window_s``: the window's span (a frame is stored once it is older than the newest by this);
    ``rate``: keyframes per second; ``hours``/``mb``: roll-over limits (0 = none); ``chunk_seconds``: the
    most a crash can lose, and the granularity of roll-over."""

    def __init__(self, directory: str | Path, *, rate: float = 2.0, hours: float = 4.0, mb: float = 1024.0,
                 chunk_seconds: float = 30.0, window_s: float = 10.0, jpeg_quality: int = 85):
        if rate <= 0:
            raise MemoryStoreError(f"memory_rate {rate!r} Hz: use a positive rate of keyframes, e.g. 1 or 2")
        if hours < 0 or mb < 0:
            raise MemoryStoreError(f"memory_hours {hours!r} / memory_mb {mb!r}: use positive limits, or 0 for none")
        if chunk_seconds <= 0:
            raise MemoryStoreError(f"memory_chunk_s {chunk_seconds!r}: use a positive number of seconds")
        self.directory = Path(directory).expanduser()
        self.settings = dict(directory=self.directory, rate=rate, hours=hours, mb=mb, chunk_seconds=chunk_seconds,
                             window_s=window_s)
        self.period_ns = int(round(NS / rate))
        self.max_age_ns = int(hours * 3600 * NS)
        self.max_bytes = int(mb * 2**20)
        self.chunk_ns = int(chunk_seconds * NS)
        self.window_ns = int(window_s * NS)
        self.jpeg_quality = int(jpeg_quality)
        self._lock = threading.RLock()
        self._chunks: list[Chunk] = []
        self._open = _Open()
        self._waiting: list[Frame] = []  # kept keyframes still inside the window's span
        self._next_due: Optional[int] = None
        self._newest: Optional[int] = None
        self.deleted = 0  # chunks removed by roll-over
        self._generation = 0  # raised when a stamp's pixels may change (a chunk replaced by a replayed stream)
        self.rebuild_s = 0.0
        self._index_lines = 0  # lines in index.jsonl
        self.open()

    # -- the index ---------------------------------------------------------------------------------
    def open(self) -> int:
        """(Re)build the index from the chunks on disk (after a restart); deletes partial chunks a
        crash left. Returns the number of chunks found."""
        import time

        t0 = time.perf_counter()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise MemoryStoreError(f"cannot create the memory directory {self.directory}: {e}; set memory_directory "
                              f"to a writable path") from None
        known = self._read_index_file()
        chunks = []
        for p in sorted(self.directory.iterdir()):
            if p.name.startswith(PARTIAL):
                shutil.rmtree(p, ignore_errors=True)  # a chunk that was being written when the process died
            elif p.name.startswith(PREFIX) and p.is_dir():
                c = known.get(p.name)
                if c is None or c.nbytes != _dir_size(p):  # not indexed yet (a crash after the rename), or other
                    c = read_index(p)
                if c is not None:
                    chunks.append(c)
        chunks.sort(key=lambda c: c.start_ns)
        self._write_index_file(chunks)
        with self._lock:
            self._chunks = chunks
            if chunks:
                self._newest = max(c.end_ns for c in chunks)
        self.rebuild_s = time.perf_counter() - t0
        return len(chunks)

    def _read_index_file(self) -> dict[str, Chunk]:
        """The chunks listed in ``index.jsonl`` (one line per chunk written; a torn last line is skipped):
        a restart reads this one file instead of every chunk's metadata."""
        out: dict[str, Chunk] = {}
        try:
            lines = (self.directory / INDEX_FILE).read_text().splitlines()
        except OSError:
            return out
        for line in lines:
            try:
                d = json.loads(line)
                out[d["name"]] = Chunk(self.directory / d["name"], [int(t) for t in d["stamps"]],
                                       [tuple(x) for x in d["sizes"]], [float(x) for x in d["scales"]],
                                       int(d["nbytes"]), d.get("frame_id", ""))
            except (ValueError, KeyError, TypeError):
                continue
        return out

    @staticmethod
    def _index_line(c: Chunk) -> str:
        return json.dumps({"name": c.path.name, "stamps": c.stamps, "sizes": [list(x) for x in c.sizes],
                           "scales": c.scales, "nbytes": c.nbytes, "frame_id": c.frame_id}) + "\n"

    def _write_index_file(self, chunks: list[Chunk]) -> None:
        """Rewrite ``index.jsonl`` with ``chunks`` (atomically: a temporary file renamed over it)."""
        tmp = self.directory / (INDEX_FILE + ".tmp")
        try:
            with open(tmp, "w") as f:
                f.writelines(self._index_line(c) for c in chunks)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.directory / INDEX_FILE)
            self._index_lines = len(chunks)
        except OSError:
            pass  # the chunks' own metadata still rebuild it

    def _append_index_file(self, chunk: Chunk) -> None:
        try:
            with open(self.directory / INDEX_FILE, "a") as f:
                f.write(self._index_line(chunk))
                f.flush()
                os.fsync(f.fileno())
            self._index_lines += 1
        except OSError:
            pass

    @property
    def chunks(self) -> list[Chunk]:
        with self._lock:
            return list(self._chunks)

    @property
    def nbytes(self) -> int:
        """Bytes on disk."""
        with self._lock:
            return sum(c.nbytes for c in self._chunks)

    @property
    def ram_bytes(self) -> int:
        """Bytes held in RAM by the open chunk (the waiting frames are the window's own arrays)."""
        with self._lock:
            return self._open.nbytes

    def stamps(self, start_ns: int = 0, end_ns: int = 0) -> list[int]:
        """Keyframe stamps remembered (on disk and in the open chunk) within the range (0 = unbounded)."""
        with self._lock:
            out = [t for c in self._chunks for t in c.stamps] + list(self._open.stamps)
        return [t for t in out if (not start_ns or t >= start_ns) and (not end_ns or t <= end_ns)]

    def span(self) -> tuple[int, int]:
        """``(oldest, newest)`` keyframe stamp remembered, (0, 0) when empty."""
        s = self.stamps()
        return (s[0], s[-1]) if s else (0, 0)

    def summary(self, segment_ns: int) -> dict:
        """What is remembered, for status reports: chunks on disk, keyframes (the open chunk's too), segments
        (cells of ``segment_ns`` holding a keyframe, as a query over the past ranks them), the stream seconds
        covered, bytes on disk, and the oldest and newest stamps (0 when empty)."""
        with self._lock:
            chunks, nbytes = len(self._chunks), sum(c.nbytes for c in self._chunks)
        stamps = self.stamps()
        oldest, newest = (stamps[0], stamps[-1]) if stamps else (0, 0)
        return dict(chunks=chunks, keyframes=len(stamps), segments=len({t // segment_ns for t in stamps}),
                    seconds=(newest - oldest) / NS, nbytes=nbytes, oldest_ns=oldest, newest_ns=newest)

    def key(self, stamp_ns: int) -> tuple:
        """A remembered keyframe's identity for the grounder's feature cache: this directory, the stamp, and a
        generation raised whenever a stamp's pixels may have changed (a replayed stream replaced a chunk), so
        cached work is found again exactly and never another stream's."""
        return ("memory", str(self.directory), self._generation, int(stamp_ns))

    # -- writing -----------------------------------------------------------------------------------
    def add(self, frame: Frame) -> bool:
        """Offer a frame the window kept; True when it becomes a keyframe. Frames older than the window's
        span are encoded into the open chunk, which is written when it spans ``chunk_seconds``."""
        t = frame.stamp_ns
        with self._lock:
            if self._newest is not None and t < self._newest - JUMP_BACK_NS:
                self._restart_schedule_locked()  # the stream's time went back: store what we have
            elif self._newest is not None and t <= self._newest:
                return False
            self._newest = t
            keep = self._next_due is None or t >= self._next_due - self.period_ns // 100
            if keep:
                due = self._next_due
                if due is None or t >= due + self.period_ns:
                    due = t
                self._next_due = due + self.period_ns
                self._waiting.append(frame)
            while self._waiting and self._waiting[0].stamp_ns < t - self.window_ns:
                self._append_locked(self._waiting.pop(0))
            if self._open and self._open.stamps[-1] - self._open.stamps[0] >= self.chunk_ns:
                self._flush_locked()
            return keep

    def _append_locked(self, frame: Frame) -> None:
        import cv2

        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            return
        o = self._open
        o.stamps.append(frame.stamp_ns)
        o.jpegs.append(buf.tobytes())
        o.sizes.append(tuple(frame.source_size))
        o.scales.append(float(frame.scale))
        o.frame_id = o.frame_id or frame.frame_id

    def _restart_schedule_locked(self) -> None:
        for f in self._waiting:
            self._append_locked(f)
        self._waiting.clear()
        self._flush_locked()
        self._generation += 1  # the stamps to come may repeat remembered ones with other pixels
        self._next_due = None
        self._newest = None

    def flush(self) -> Optional[Chunk]:
        """Write the open chunk now (the frames still in the window stay waiting)."""
        with self._lock:
            return self._flush_locked()

    def close(self) -> None:
        """Store everything, the frames still in the window included (a clean shutdown loses nothing)."""
        with self._lock:
            for f in self._waiting:
                self._append_locked(f)
            self._waiting.clear()
            self._flush_locked()

    def _flush_locked(self) -> Optional[Chunk]:
        o = self._open
        if not o:
            return None
        chunk = write_chunk(self.directory, o.stamps, o.jpegs, o.sizes, o.scales, o.frame_id, self.jpeg_quality)
        self._open = _Open()
        if chunk.replaced:
            self._generation += 1
        self._chunks = [c for c in self._chunks if c.path != chunk.path] + [chunk]
        self._chunks.sort(key=lambda c: c.start_ns)
        self._append_index_file(chunk)
        self._roll_over_locked()
        if self._index_lines > 2 * len(self._chunks) + 16:  # lines of deleted or replaced chunks: compact
            self._write_index_file(self._chunks)
        return chunk

    def _roll_over_locked(self) -> None:
        """Delete the oldest chunks while the memory is older than ``hours`` or larger than ``mb``."""
        if not self._chunks:
            return
        newest = max(c.end_ns for c in self._chunks)
        while len(self._chunks) > 1:
            oldest = self._chunks[0]
            too_old = self.max_age_ns and oldest.end_ns < newest - self.max_age_ns
            too_big = self.max_bytes and sum(c.nbytes for c in self._chunks) > self.max_bytes
            if not (too_old or too_big):
                break
            shutil.rmtree(oldest.path, ignore_errors=True)
            self._chunks.pop(0)
            self.deleted += 1

    # -- reading -----------------------------------------------------------------------------------
    def frames(self, start_ns: int = 0, end_ns: int = 0) -> list[Frame]:
        """The remembered keyframes within the range (0 = unbounded), decoded: :meth:`iter_frames` as a list."""
        return list(self.iter_frames(start_ns, end_ns))

    def iter_frames(self, start_ns: int = 0, end_ns: int = 0) -> Iterator[Frame]:
        """The remembered keyframes within the range (0 = unbounded), decoded one chunk at a time, in time
        order, as window frames (``seq`` 0: their identity is :meth:`key`)."""

        def inside(t: int) -> bool:
            return (not start_ns or t >= start_ns) and (not end_ns or t <= end_ns)

        with self._lock:
            chunks = [c for c in self._chunks if (not end_ns or c.start_ns <= end_ns)
                      and (not start_ns or c.end_ns >= start_ns)]
            o = self._open
            ram = [(t, j, s, k) for t, j, s, k in zip(o.stamps, o.jpegs, o.sizes, o.scales) if inside(t)]
            frame_id = o.frame_id
        last = -1
        for c in chunks:
            meta = {t: (s, k) for t, s, k in zip(c.stamps, c.sizes, c.scales)}
            wanted = {t for t in c.stamps if inside(t)}
            if not wanted:
                continue
            try:
                for t, data in read_chunk_images(c, wanted):
                    if t <= last:  # overlapping chunks (a replayed stream): time order first
                        continue
                    img = _decode(data)
                    size, scale = meta.get(t, ((0, 0), 1.0))
                    last = t
                    yield Frame(t, img, scale, tuple(size) if size != (0, 0) else img.shape[:2], c.frame_id)
            except FileNotFoundError:  # rolled over while we read: that part of the past is gone
                continue
        for t, data, size, scale in ram:
            if t > last:
                yield Frame(t, _decode(data), scale, tuple(size), frame_id)


def _decode(data: bytes) -> np.ndarray:
    import cv2

    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def default_directory() -> Path:
    """``memory_directory`` '' : ``memory/`` in the package's cache directory."""
    from ..adapters.default_model import cache_dir

    return cache_dir() / "memory"


def store_for(config, current: Optional[MemoryStore]) -> Optional[MemoryStore]:
    """The store a :class:`~stvg_ros.config.ServingConfig` asks for: ``current`` when its settings are
    unchanged, a new one (the old one closed) when they changed, None (closed) with ``memory`` off."""
    if not config.memory:
        if current is not None:
            current.close()
        return None
    settings = dict(directory=Path(config.memory_directory or default_directory()).expanduser(),
                    rate=config.memory_rate, hours=config.memory_hours, mb=config.memory_mb,
                    chunk_seconds=config.memory_chunk_s, window_s=config.window_duration)
    if current is not None and current.settings == settings:
        return current
    if current is not None:
        current.close()
    return MemoryStore(**settings)
