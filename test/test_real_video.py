"""Tracks and readers on the real clips of test/data/real (OpenCV's samples, hand-checked boxes).

Floors set between what the plain tracker and reader did (measured with bench/bench_real_video.py) and
what they do now, so that a return of the old defects fails here: tracks broken at every crossing or
short gap, a reader that gives up the whole run on a broken file and re-decodes from frame 0.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from stvg_ros.proposals import ProposalConfig
from stvg_ros.proposals.annotated import AnnotatedBox, AnnotatedClip, load_annotations, track_coverage
from stvg_ros.video import iter_frames, read_frames

REAL = Path(__file__).parent / "data" / "real"
sys.path.append(str(Path(__file__).resolve().parent.parent))  # the benchmarks are the package `bench`


def _clip(boxes: dict) -> AnnotatedClip:
    clip = AnnotatedClip("x", Path("x.avi"))
    for f, items in boxes.items():
        clip.boxes[f] = [AnnotatedBox(o, b) for o, b in items]
    return clip


# --- the metrics ----------------------------------------------------------------------------------

def test_track_coverage_counts_one_track_per_object_and_the_switches():
    a, b = (0, 0, 10, 10), (50, 0, 60, 10)
    clip = _clip({0: [("A", a), ("B", b)], 1: [("A", a), ("B", b)], 2: [("A", a), ("B", b)], 3: [("A", a)]})
    tracks = {
        1: {0: a, 1: a},                # A's first two frames
        2: {2: a, 3: a},                # A again after a switch
        3: {0: b, 1: b, 2: (50, 0, 70, 10)},  # B, but the last box is off (IoU 0.5: still a hit) ...
        4: {1: (200, 0, 210, 10)},      # a false track, matched to nothing
    }
    cov = track_coverage(tracks, clip)
    assert cov["objects"]["A"] == {"frames": 4, "coverage": 0.5, "switches": 1, "tracks": 2}
    assert cov["objects"]["B"] == {"frames": 3, "coverage": 1.0, "switches": 0, "tracks": 1}
    assert cov["coverage_mean"] == pytest.approx(0.75) and cov["coverage_min"] == 0.5
    assert cov["id_switches"] == 1 and cov["tracks_per_object"] == 1.5


def test_track_coverage_matches_one_to_one():
    """One big box over two objects counts for one of them at most."""
    clip = _clip({0: [("A", (0, 0, 10, 10)), ("B", (2, 0, 12, 10))]})
    cov = track_coverage({1: {0: (1, 0, 11, 10)}}, clip)
    assert sorted(o["coverage"] for o in cov["objects"].values()) == [0.0, 1.0]


# --- the tracker on real paths ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def vtest():
    clip = next(c for c in load_annotations(REAL / "annotations.json") if c.name == "vtest.avi")
    frames = [f for _, f in iter_frames(clip.path, stop=max(clip.frames) + 1)]
    return clip, frames


def _track_only(clip, frames, seeds=(0, 1, 2)):
    from bench.bench_real_video import noisy_detections, true_paths

    from stvg_ros.proposals.tracker import make_tracker

    cfg = ProposalConfig(detect_every=1)  # a detection on every frame
    runs = []
    for seed in seeds:
        tracker = make_tracker(cfg.tracker, cfg, label="person")
        for i, det in enumerate(noisy_detections(true_paths(clip), len(frames), seed)):
            tracker.update(i, det, frame=frames[i])
        tracks = {t.id: {int(f): b for f, b in t.sampled(range(len(frames)), cfg.hold_keyframes * cfg.detect_every).boxes.items()}
                  for t in tracker.tracks() if t.boxes}
        runs.append(track_coverage(tracks, clip))
    return float(np.mean([r["coverage_mean"] for r in runs])), float(np.mean([r["id_switches"] for r in runs]))


def test_people_who_cross_hide_and_stop_keep_one_track(vtest):
    """vtest's people on their true paths, boxes jittered, 20 % missed, each hidden for 1 s once: the
    plain tracker covered 0.58 of a person's frames with one track and switched ids 13 times; CSRT from
    the true first box covers 0.65 (bench/README.md, "Real video")."""
    coverage, switches = _track_only(*vtest)
    assert coverage >= 0.8, coverage
    assert switches <= 6, switches


def test_motion_tracks_on_the_fixed_camera(vtest):
    """``stvg-proposals --source motion``'s code path on vtest, the motion blobs and the tracker together:
    before issue 26 they covered a third of each person's frames (0.30 mean one-track coverage, recall@0.5
    0.50, 11 id switches, 2.0 tracks per person, 4.1 false boxes per frame); now 0.78, 0.78, 4, 1.3 and 3.9
    (the blobs find the small and split people, the tracker keeps them: more held boxes, fewer broken ones).
    Then the two who stand still from the first frame (``motion_people``, on by default since) and the
    flicker tracks left out (``motion_min_frames``): 0.854, 0.86, 2, 1.2 and 1.4 (before: 0.775, 0.78, 4,
    1.3, 3.9).  Then exposure matched, an object's pieces left out and a track held one frame, not
    ``detect_every``, past its ends (for the hand-held cup): 0.870, 0.88, 2, 1.2 and 0.57."""
    from stvg_ros.proposals.annotated import proposal_recall
    from stvg_ros.proposals.cli import propose_motion

    clip, frames = vtest
    tracks = {t.id: {int(f): b for f, b in t.boxes.items()}
              for t in propose_motion(enumerate(frames), ProposalConfig(source="motion"), len(frames))}
    cov = track_coverage(tracks, clip)
    proposed: dict = {}
    for boxes in tracks.values():
        for f, b in boxes.items():
            proposed.setdefault(f, []).append(b)
    rec = proposal_recall(proposed, clip)
    assert cov["coverage_mean"] >= 0.85 and rec["recall"] >= 0.85, (cov, rec)  # the targets
    assert cov["id_switches"] <= 3 and cov["tracks_per_object"] <= 1.3, cov
    assert rec["false_per_frame"] <= 1.0, rec
    still = [cov["objects"][o]["coverage"] for o in ("a", "b")]
    assert max(still) >= 0.5, ("one of the two who stand still has one track on half their frames", still)


# --- readers --------------------------------------------------------------------------------------

def test_a_broken_file_is_used_as_far_as_it_decodes_with_a_warning_naming_it():
    path = REAL / "tree.avi"  # the container declares 444 frames; 68 decode
    with pytest.warns(RuntimeWarning, match="tree.avi.*stopped at frame 68"):
        got = [i for i, _ in iter_frames(path, indices=range(0, 444, 10))]
    assert got == list(range(0, 61, 10))
    with pytest.warns(RuntimeWarning, match="tree.avi"):
        frames = read_frames(path, [0, 67, 100])
    assert len(frames) == 3 and frames[2] is frames[1]  # past the end: the last decoded frame


def test_the_cli_writes_every_video_of_a_folder_holding_a_broken_one_in_one_pass(tmp_path, monkeypatch):
    import cv2

    from stvg_ros.proposals.cli import main
    from stvg_ros.video import write_video

    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "tree.avi").symlink_to(REAL / "tree.avi")
    frames = []
    for t in range(40):  # a square crossing a still background
        f = np.full((120, 160, 3), 80, np.uint8)
        f[40:70, 10 + 3 * t:40 + 3 * t] = (230, 230, 230)
        frames.append(f)
    write_video(videos / "square.avi", frames, 10)
    (videos / "unreadable.mp4").write_bytes(b"not a video")
    opened = []
    real_capture = cv2.VideoCapture
    monkeypatch.setattr(cv2, "VideoCapture", lambda p, *a: opened.append(Path(p).name) or real_capture(p, *a))
    out = tmp_path / "p.json"
    with pytest.warns(RuntimeWarning) as record:
        assert main(["--source", "motion", "--videos", str(videos), "--out", str(out)]) == 0
    messages = " ".join(str(w.message) for w in record)
    assert "tree.avi" in messages and "unreadable.mp4" in messages
    data = json.loads(out.read_text())
    assert set(data) == {"square.avi", "tree.avi", "unreadable.mp4"}
    assert data["square.avi"] and data["unreadable.mp4"] == {}
    # tree.avi: tracks only where it decoded (frames < 68 plus the hold)
    assert all(int(f) < 68 + ProposalConfig().detect_every for t in data["tree.avi"].values() for f in t["boxes"])
    assert opened.count("tree.avi") == 2  # the probe and ONE decoding pass
