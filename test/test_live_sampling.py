"""Live sampling: what the grounder samples from the node's window equals what core mode samples from the
same stream (issue 27, item 2).  The window is the service's, set up with the node's default settings and
fed at camera rate; the grounder is the real one (on the fake adapter), so its own frame choice is tested."""

from __future__ import annotations

import numpy as np
import pytest

from stvg_ros.config import GroundingConfig, ServingConfig
from stvg_ros.grounding.grounder import sample_indices
from stvg_ros.stream.service import GroundingService
from stvg_ros.stream.window import NS

T0_S = 1000.0


def stream(num_frames: int, fps: float, size: int = 32) -> tuple[list[np.ndarray], list[int]]:
    """A camera's frames (a red square drifting right) and their stamps in ns."""
    frames = []
    for t in range(num_frames):
        f = np.full((size, size, 3), 90, np.uint8)
        x = (t * size) // (2 * num_frames)
        f[8:16, x:x + 8] = (230, 30, 30)
        frames.append(f)
    return frames, [int(round((T0_S + t / fps) * NS)) for t in range(num_frames)]


def live_window(frames, stamps_ns, config: ServingConfig | None = None):
    """The frames a query arriving after the last frame gets from a service with the node's defaults."""
    svc = GroundingService(config or ServingConfig())
    svc.configure(config or ServingConfig(), model_side=112)
    for f, s in zip(frames, stamps_ns):
        svc.ingest(s, lambda f=f: f)
    return svc.window.frames()


def grounder():
    from fake_adapter import FakeAdapter

    from stvg_ros import Grounder

    # the default num_frames (20); no LRA/TAS: only the frame choice matters here
    return Grounder(FakeAdapter(), GroundingConfig(use_lra=False, use_tas=False, use_dsth=False))


@pytest.mark.parametrize("num_frames, fps", [(20, 5.0), (60, 15.0), (300, 30.0)])
def test_grounder_samples_from_the_live_window_what_core_mode_samples(num_frames, fps):
    """A synthetic clip (20 frames at 5 fps), the same scene at 3x the rate, 10 s of a 30 Hz camera: the
    node's window at its default settings holds frames from which the grounder samples exactly core mode's
    frames (the old 4 Hz window kept 16 of 20 frames of the first and sampled other times of every one)."""
    frames, stamps_ns = stream(num_frames, fps)
    core_stamps = [s / NS for s in stamps_ns]
    g = grounder()
    core = g.ground(frames, core_stamps, "the red square")
    kept = live_window(frames, stamps_ns)
    live = g.ground([f.image for f in kept], [f.stamp for f in kept], "the red square")
    assert len(core.frame_stamps) == 20
    assert [round(s * NS) for s in live.frame_stamps] == [round(s * NS) for s in core.frame_stamps]
    # the same frames give the same answer
    assert (live.start, live.end) == pytest.approx((core.start, core.end))
    assert live.boxes.keys() == core.boxes.keys() or \
        [round(s * NS) for s in live.boxes] == [round(s * NS) for s in core.boxes]


def test_a_window_over_its_frame_bound_thins_evenly_and_keeps_its_span():
    """60 Hz for 10 s is twice window_max_frames: memory stays bounded, the window still spans its
    duration, and each sampled frame is within the largest gap of core mode's."""
    cfg = ServingConfig()
    frames, stamps_ns = stream(600, 60.0, size=8)
    kept = live_window(frames, stamps_ns, cfg)
    assert len(kept) == cfg.window_max_frames
    held = np.array([f.stamp_ns for f in kept])
    assert held[-1] == stamps_ns[-1]
    assert (held[-1] - held[0]) / NS >= cfg.window_duration - 0.1
    gaps = np.diff(held) / NS
    assert gaps.max() <= 4 / 60 + 1e-9  # thinned evenly: no hole beyond a few camera periods
    in_range = [s for s in stamps_ns if s >= held[0]]
    core = [in_range[i] for i in sample_indices(len(in_range), 20)]
    live = [int(held[i]) for i in sample_indices(len(held), 20, held / NS)]
    assert len(live) == 20
    assert max(abs(a - b) for a, b in zip(live, core)) / NS < gaps.max() + 1e-9


@pytest.mark.parametrize("n", [15, 21, 25, 37, 60, 61, 99, 300, 601])
def test_time_uniform_sample_equals_core_modes_sample_on_evenly_spaced_stamps(n):
    """Core mode (stvg-eval) samples a clip by the paper's loader, ``np.linspace(0, n - 1, k, dtype=int)``:
    the grounder's pick from every frame of the same stream is that sample (rounding to the nearest
    frame, as before, took e.g. 3 and 6 of 15 frames where the paper takes 2 and 5)."""
    from stvg_ros.video import uniform_indices

    for fps in (5.0, 15.0, 29.97, 30.0):
        stamps = [T0_S + t / fps for t in range(n)]
        for k in (6, 8, 20):
            if n > k:
                assert sample_indices(n, k, stamps) == sample_indices(n, k) == uniform_indices(n, k), (n, k, fps)


def test_time_uniform_sample_takes_the_frame_showing_at_each_time():
    stamps = [0.0, 0.1, 0.2, 3.0, 3.1, 6.0]  # a gap: index sampling would bunch up before it
    assert sample_indices(6, 3, stamps) == [0, 3, 5]
    # at t = 3 s the camera still shows the frame of 2.8 s (the next comes at 3.1 s)
    assert sample_indices(5, 3, [0.0, 0.1, 2.8, 3.1, 6.0]) == [0, 2, 4]
