"""The window's lossless frame codec (``ServingConfig.window_codec``, issue 32 item 5): the same pixels and the
same answers as arrays, fewer bytes held per frame, and only the frames a grounding samples decoded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stvg_ros.config import ConfigError, GroundingConfig, ServingConfig
from stvg_ros.stream import window as window_mod
from stvg_ros.stream.requests import GroundingRequest
from stvg_ros.stream.service import GroundingService
from stvg_ros.stream.window import NS, FrameWindow, WindowImages, images_of

CUP = Path(__file__).resolve().parent / "data" / "real" / "cup.mp4"


def camera_frames(n: int) -> list[np.ndarray]:
    """``n`` RGB 640x480 frames of the real cup clip (camera noise, not a synthetic flat image)."""
    cv2 = pytest.importorskip("cv2")
    cap = cv2.VideoCapture(str(CUP))
    out = []
    while len(out) < n:
        ok, f = cap.read()
        if not ok:
            break
        out.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
    assert len(out) == n, f"{CUP} gave {len(out)} frames"
    return out


def fill(codec: str, frames, max_side=224) -> FrameWindow:
    w = FrameWindow(duration=100, max_frames=1000, max_side=max_side, codec=codec)
    for i, f in enumerate(frames):
        assert w.offer((10 + i) * NS // 30) == "keep"
        w.add((10 + i) * NS // 30, f, frame_id="cam")
    return w


def test_png_window_returns_bit_identical_frames_and_holds_fewer_bytes():
    frames = camera_frames(12)
    raw, png = fill("none", frames), fill("png", frames)
    a, b = raw.frames(), png.frames()
    assert [(f.stamp_ns, f.seq, f.scale, f.source_size, f.frame_id, f.shape) for f in a] == \
        [(f.stamp_ns, f.seq, f.scale, f.source_size, f.frame_id, f.shape) for f in b]
    for fa, fb in zip(a, b):
        assert fb.image.dtype == np.uint8 and np.array_equal(fa.image, fb.image)  # lossless
        assert fb.shape == fa.image.shape == (168, 224, 3)
    # bytes held, counted (not RSS): each frame is its 224x168x3 array raw; PNG keeps well under half of it
    assert raw.nbytes == 12 * 224 * 168 * 3 == sum(f.nbytes for f in a)
    assert png.nbytes == sum(f.nbytes for f in b) < 0.5 * raw.nbytes
    assert all(fb.nbytes < fa.nbytes for fa, fb in zip(a, b))


def test_only_indexed_frames_are_decoded(monkeypatch):
    w = fill("png", camera_frames(10))
    calls = []
    real = window_mod.unpack
    monkeypatch.setattr(window_mod, "unpack", lambda d: calls.append(1) or real(d))
    images = images_of(w.frames())
    assert isinstance(images, WindowImages) and images.uniform and len(images) == 10 and not calls
    assert np.array_equal(images[3], w.frames()[3].image) and len(calls) == 2
    # arrays are handed over as they are
    assert isinstance(images_of(fill("none", camera_frames(2)).frames()), list)


def test_codec_is_checked_and_switches_only_new_frames():
    with pytest.raises(ValueError, match="window codec 'zip'"):
        FrameWindow(codec="zip")
    with pytest.raises(ConfigError, match="window_codec"):
        ServingConfig(window_codec="jpeg")
    frames = camera_frames(2)
    w = fill("none", frames[:1])
    w.configure(100, 1000, 0.0, 224, "png")
    w.add(20 * NS, frames[1])
    old, new = w.frames()
    assert isinstance(old._data, np.ndarray) and isinstance(new._data, bytes)
    assert isinstance(images_of([old, new]), WindowImages)


@pytest.mark.parametrize("tube_frames", ["sampled", "refine", "all"])
def test_a_service_answers_the_same_with_the_png_window(monkeypatch, tube_frames):
    """The real Grounder (fake adapter) on 24 frames of the cup clip, 6 sampled: the answer from a PNG window
    equals the one from arrays, and the grounding decoded only some of the 24 (with 'sampled': the 6 it sampled)."""
    from fake_adapter import FakeAdapter

    from stvg_ros import Grounder

    frames = camera_frames(24)
    results, decoded = {}, {}
    for codec in ("none", "png"):
        grounder = Grounder(FakeAdapter(), GroundingConfig(num_frames=6, lra_steps=2, tube_frames=tube_frames))
        svc = GroundingService(ServingConfig(window_duration=100.0, window_codec=codec, ingest_max_side=128))
        svc.start(grounder, threaded=False)
        for i, f in enumerate(frames):
            assert svc.ingest((10 + i) * NS // 30, lambda f=f: f, "cam") == "keep"
        answers = []
        calls = []
        real = window_mod.unpack
        monkeypatch.setattr(window_mod, "unpack", lambda d: calls.append(1) or real(d))
        svc.submit(GroundingRequest("q", "the red square"), answers.append)
        svc.run_pending()
        monkeypatch.setattr(window_mod, "unpack", real)
        (a,) = answers
        t = a.tube
        results[codec] = (t.found, t.start_ns, t.end_ns, t.boxes, a.result.p_yes)
        decoded[codec] = len(calls)
        svc.stop()
    assert results["png"] == results["none"]
    assert decoded["png"] < len(frames) == decoded["none"]  # arrays: every frame read (no decoding)
    if tube_frames == "sampled":
        assert decoded["png"] == 6 + 1  # the sampled frames and frame 0's shape check


def test_the_debug_picture_decodes_only_the_frames_it_draws(monkeypatch):
    """The node's ``debug_image`` of a 30-frame packed window decodes the ≤ 8 frames the strip shows (it
    decoded all 30 to check their shapes), and draws the same picture as from arrays."""
    from stvg_ros.grounding.result import GroundingResult, SubQueries
    from stvg_ros.render import render_tube

    frames = camera_frames(30)
    w, raw = fill("png", frames), fill("none", frames)
    stamps = [f.stamp for f in w.frames()]
    result = GroundingResult(query="the cup", found=True, score=1.0, start=stamps[5], end=stamps[20],
                             boxes={s: (20.0, 10.0, 100.0, 90.0) for s in stamps[5:21]}, track_id=1,
                             sub_queries=SubQueries("the cup", "the cup"), p_yes=0.9, frame_stamps=stamps[::2],
                             frame_scores=[1.0] * len(stamps[::2]))
    calls = []
    real = window_mod.unpack
    monkeypatch.setattr(window_mod, "unpack", lambda d: calls.append(1) or real(d))
    picture = render_tube(images_of(w.frames()), stamps, result, heatmap=False)
    assert 0 < len(calls) <= 8
    assert np.array_equal(picture, render_tube(images_of(raw.frames()), stamps, result, heatmap=False))
