"""The memory store: keyframes after they leave the window, MCAP chunks, roll-over, restart, SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from stvg_ros.memory.store import PARTIAL, MemoryStore, read_index
from stvg_ros.stream.window import NS, Frame

REPO = Path(__file__).resolve().parent.parent


def frame(t_s: float, value: int = 0, size: int = 32) -> Frame:
    """A frame whose pixels encode its time (a gradient plus ``value``), so a decoded keyframe is checkable."""
    img = np.full((size, size, 3), (value * 7) % 256, np.uint8)
    img[:, : size // 2, 0] = 200
    return Frame(int(round(t_s * NS)), img, 2.0, (size * 2, size * 2), "cam")


def feed(store: MemoryStore, start: float, seconds: float, fps: float = 10.0) -> list[int]:
    stamps = []
    for i in range(int(seconds * fps)):
        f = frame(start + i / fps, i)
        store.add(f)
        stamps.append(f.stamp_ns)
    return stamps


def test_keyframes_at_the_rate_once_they_leave_the_window(tmp_path):
    s = MemoryStore(tmp_path, rate=2.0, window_s=10.0, chunk_seconds=5.0, hours=0, mb=0)
    feed(s, 100.0, 30.0)  # 30 s at 10 fps; the newest 10 s are still the window's
    kept = s.stamps()
    assert kept, "nothing remembered"
    assert kept[0] == 100 * NS
    assert np.allclose(np.diff(kept), NS // 2), "one keyframe per 0.5 s, on the frames' own stamps"
    assert kept[-1] < (130 - 10) * NS, "frames inside the window's span are not stored yet"
    assert kept[-1] >= (130 - 10 - 0.5 - 0.1) * NS
    assert len(s.chunks) >= 3 and all(c.path.name.startswith("memory_") for c in s.chunks)
    f = s.frames(105 * NS, 107 * NS)
    assert [x.stamp_ns for x in f] == [t for t in kept if 105 * NS <= t <= 107 * NS]
    assert f[0].image.shape == (32, 32, 3) and f[0].source_size == (64, 64) and f[0].scale == 2.0
    assert abs(int(f[0].image[5, 2, 0]) - 200) < 10, "the JPEG keeps the pixels"
    s.close()
    assert s.stamps()[-1] >= 129 * NS, "close stores the frames still in the window"


def test_chunks_are_rosbag2_mcap_bags_of_compressed_images(tmp_path):
    from stvg_ros.evaluation.bags import read_bag

    s = MemoryStore(tmp_path, rate=1.0, window_s=2.0, chunk_seconds=4.0, hours=0, mb=0)
    feed(s, 50.0, 12.0)
    s.close()
    c = s.chunks[0]
    assert list(c.path.glob("*.mcap")) and (c.path / "metadata.yaml").is_file()
    bag = read_bag(c.path)  # the package's own bag reader, i.e. any rosbags / ros2 bag reader
    assert [round(t * NS) for t in bag.stamps] == c.stamps
    assert bag.frames[0].shape == (32, 32, 3)


def test_roll_over_by_age(tmp_path):
    s = MemoryStore(tmp_path, rate=1.0, window_s=1.0, chunk_seconds=60.0, hours=0.1, mb=0)  # 6 minutes
    feed(s, 1000.0, 20 * 60.0, fps=1.0)  # 20 minutes
    oldest, newest = s.span()
    assert (newest - oldest) / NS <= 0.1 * 3600 + 60 + 1, "older than hours + one chunk: deleted"
    assert (newest - oldest) / NS >= 0.1 * 3600 - 1
    assert s.deleted >= 10
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == len(s.chunks), "deleted chunks are gone from disk"
    lines = (tmp_path / "index.jsonl").read_text().splitlines()
    assert len(lines) <= 2 * len(s.chunks) + 16, "the index file is compacted as chunks are deleted"


def test_roll_over_by_size(tmp_path):
    rng = np.random.default_rng(0)
    s = MemoryStore(tmp_path, rate=2.0, window_s=1.0, chunk_seconds=10.0, hours=0, mb=0.2)
    for i in range(600):  # 5 minutes at 2 Hz of incompressible (noise) frames
        img = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
        s.add(Frame(int((10 + i * 0.5) * NS), img, 1.0, (48, 48)))
    assert s.deleted > 0
    assert s.nbytes <= 0.2 * 2**20
    disk = sum(p.stat().st_size for p in tmp_path.rglob("memory_*/*") if p.is_file())
    assert disk == s.nbytes
    assert s.ram_bytes < 0.2 * 2**20, "RAM holds one open chunk at most"


def test_restart_rebuilds_the_index_and_drops_a_partial_chunk(tmp_path):
    s = MemoryStore(tmp_path, rate=2.0, window_s=2.0, chunk_seconds=5.0, hours=0, mb=0)
    feed(s, 10.0, 40.0)
    s.flush()
    before = s.stamps()
    (tmp_path / f"{PARTIAL}memory_junk").mkdir()  # what a kill during a write leaves
    (tmp_path / f"{PARTIAL}memory_junk" / "x_0.mcap").write_bytes(b"\x89MCAP0\r\n garbage")
    again = MemoryStore(tmp_path, rate=2.0, window_s=2.0, chunk_seconds=5.0, hours=0, mb=0)
    assert again.stamps() == before
    assert not (tmp_path / f"{PARTIAL}memory_junk").exists()
    assert again.rebuild_s >= 0
    # it goes on where it was: later frames append, earlier chunks stay readable
    feed(again, 50.0, 10.0)
    again.close()
    assert again.stamps()[: len(before)] == before and again.stamps()[-1] >= 59 * NS
    assert len(again.frames(10 * NS, 20 * NS)) == len([t for t in before if t <= 20 * NS])


def test_restart_reads_the_index_file_and_falls_back_to_the_chunks(tmp_path, monkeypatch):
    import stvg_ros.memory.store as store_module

    s = MemoryStore(tmp_path, rate=2.0, window_s=2.0, chunk_seconds=5.0, hours=0, mb=0)
    feed(s, 10.0, 40.0)
    s.flush()
    before = s.stamps()
    with open(tmp_path / "index.jsonl", "a") as f:
        f.write('{"name": "memory_torn", "stam')  # a line torn by a crash
    calls = []
    monkeypatch.setattr(store_module, "read_index", lambda p: calls.append(p))
    again = MemoryStore(tmp_path, rate=2.0, window_s=2.0, chunk_seconds=5.0, hours=0, mb=0)
    assert again.stamps() == before and not calls, "the index file alone rebuilt the index"
    monkeypatch.undo()
    (tmp_path / "index.jsonl").write_text("\n".join((tmp_path / "index.jsonl").read_text().splitlines()[1:]))
    third = MemoryStore(tmp_path, rate=2.0, window_s=2.0, chunk_seconds=5.0, hours=0, mb=0)
    assert third.stamps() == before, "a chunk missing from the file is read from its own metadata"
    (tmp_path / "index.jsonl").unlink()
    assert MemoryStore(tmp_path, rate=2.0, window_s=2.0, chunk_seconds=5.0, hours=0, mb=0).stamps() == before


WRITER = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    from rosbags.rosbag2 import Writer
    from stvg_ros.memory.store import MemoryStore
    from stvg_ros.stream.window import NS, Frame

    directory, marker, stall_chunk = sys.argv[1], sys.argv[2], int(sys.argv[3])
    s = MemoryStore(directory, rate=2.0, window_s=1.0, chunk_seconds=5.0, hours=0, mb=0)
    original = Writer.write
    def write(self, conn, t, data):  # chunk number stall_chunk + 1 stops 2 s into its messages
        original(self, conn, t, data)
        if len(s.chunks) == stall_chunk and t >= s._open.stamps[0] + 2 * NS:
            open(marker, "w").write(str(t))
            time.sleep(600)
    Writer.write = write
    i = 0
    while True:
        s.add(Frame(int((100 + i * 0.1) * NS), np.full((24, 24, 3), i % 256, np.uint8), 1.0, (24, 24)))
        i += 1
""")


def test_sigkill_mid_write_loses_only_the_unflushed_chunk(tmp_path):
    """A writer process is killed (SIGKILL) while it writes its fourth chunk: a new store (reader) finds
    the three complete chunks with every keyframe decodable, and nothing of the fourth."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    marker = tmp_path / "stalled"
    mem = tmp_path / "mem"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.Popen([sys.executable, str(script), str(mem), str(marker), "3"], env=env)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert p.poll() is None, "the writer died before the kill"
            assert time.monotonic() < deadline, "the writer never reached its fourth chunk"
            time.sleep(0.05)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    partial = [d for d in mem.iterdir() if d.name.startswith(PARTIAL)]
    assert partial, "the kill happened inside a chunk's write"
    reader = MemoryStore(mem, rate=2.0, window_s=1.0, chunk_seconds=5.0, hours=0, mb=0)
    assert len(reader.chunks) == 3
    stamps = reader.stamps()
    assert np.allclose(np.diff(stamps), NS // 2), "every keyframe of the complete chunks, none missing"
    assert stamps[0] == 100 * NS
    frames = reader.frames()
    assert [f.stamp_ns for f in frames] == stamps
    for f in frames:  # the pixels of each keyframe are the frame written at its stamp
        i = round((f.stamp_ns / NS - 100) / 0.1)
        assert abs(int(f.image[12, 12, 0]) - i % 256) <= 3
    stalled_at = int(marker.read_text())
    assert stamps[-1] < stalled_at, "nothing of the chunk being written"
    assert not any(d.name.startswith(PARTIAL) for d in mem.iterdir()), "the reader cleaned the partial chunk"
    for c in reader.chunks:
        assert read_index(c.path) is not None


def test_bad_settings_name_the_fix(tmp_path):
    from stvg_ros.memory.store import MemoryStoreError

    with pytest.raises(MemoryStoreError, match="memory_rate"):
        MemoryStore(tmp_path, rate=0)
    with pytest.raises(MemoryStoreError, match="memory_chunk_s"):
        MemoryStore(tmp_path, chunk_seconds=0)


def test_the_service_remembers_what_leaves_its_window_only_when_asked(tmp_path):
    from stvg_ros.config import ServingConfig
    from stvg_ros.stream.service import GroundingService

    off = GroundingService(ServingConfig())
    assert off.memory is None, "memory is off by default"
    svc = GroundingService(ServingConfig(memory=True, memory_directory=str(tmp_path), memory_chunk_s=5.0))
    img = np.zeros((48, 64, 3), np.uint8)
    for i in range(300):  # 30 s at 10 fps
        svc.ingest(int((200 + i * 0.1) * NS), lambda: img)
    stamps = svc.memory.stamps()
    window_oldest = svc.window.frames()[0].stamp_ns
    assert stamps[0] == 200 * NS and stamps[-1] < window_oldest
    assert np.allclose(np.diff(stamps), NS // 2)
    assert svc.memory.chunks, "chunks were written"
    svc.configure(ServingConfig(memory=True, memory_directory=str(tmp_path), memory_chunk_s=5.0))
    assert svc.memory.stamps() == stamps, "the same settings keep the same store"
    svc.stop()
    assert svc.memory.stamps()[-1] == int((200 + 29.5) * NS), "a clean stop keeps the window's frames too"
    svc.configure(ServingConfig())
    assert svc.memory is None
    again = GroundingService(ServingConfig(memory=True, memory_directory=str(tmp_path), memory_chunk_s=5.0))
    assert again.memory.stamps()[: len(stamps)] == stamps, "a restart remembers"
