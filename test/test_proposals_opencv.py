"""Proposal sources that need no download: moving blobs (still camera) and OpenCV's HOG people detector.

Motion is checked on a drawn clip with known boxes and on the synthetic world; HOG needs
``cv2.HOGDescriptor``, which the plain opencv-python-headless 5 wheel lacks (the contrib build has it),
so those tests skip with that reason where it is missing.
"""

import numpy as np
import pytest

from stvg_ros.config import ProposalConfigError
from stvg_ros.proposals import ProposalConfig
from stvg_ros.proposals.hog import HogPeopleDetector, hog_available
from stvg_ros.proposals.live import LiveProposalStage, proposal_stage
from stvg_ros.proposals.motion import MotionBlobs, MotionTracks, motion_tracks
from stvg_ros.proposals.tracker import iou_matrix

H, W = 120, 160
needs_hog = pytest.mark.skipif(not hog_available(), reason="this OpenCV build has no cv2.HOGDescriptor "
                               "(OpenCV 5 keeps it in opencv-contrib-python-headless)")


ENTER = 20  # the background model learns the empty scene first


def _clip(n=40):
    """A textured still background with a static square; from frame ENTER a red square moves right
    4 px per frame with a shadow (a darker copy of the background) below it."""
    rng = np.random.default_rng(0)
    bg = (60 + rng.integers(0, 20, (H, W, 1))).repeat(3, 2).astype(np.uint8)
    frames, boxes = [], []
    for t in range(n):
        f = bg.copy()
        f[80:100, 120:140] = (200, 200, 40)  # never moves: never a track
        x = 10 + 3 * (t - ENTER)
        if t >= ENTER:
            f[40:60, x:x + 20] = (220, 40, 40)
            f[62:70, x:x + 20] = (f[62:70, x:x + 20] * 0.6).astype(np.uint8)  # its shadow: darker background
        frames.append(f)
        boxes.append((x, 40, x + 20, 60))
    return frames, boxes


def test_motion_blobs_box_the_mover_and_drop_shadows_and_static_objects():
    frames, boxes = _clip()
    blobs = MotionBlobs(ProposalConfig(source="motion", motion_method="mog2"))
    hits = []
    for t, f in enumerate(frames):
        det = blobs.apply(f)
        if t >= ENTER + 2:
            assert all(b[3] <= 62 for b in det.boxes), f"frame {t}: the shadow became part of a blob {det.boxes}"
            assert not any(b[0] >= 118 and b[1] >= 78 for b in det.boxes), "the static square is not moving"
            hits.append(iou_matrix(np.array([boxes[t]], np.float32), det.boxes).max(initial=0.0))
    assert np.mean(np.array(hits) >= 0.5) >= 0.8, hits


@pytest.mark.parametrize("method", ["mog2", "knn"])
def test_motion_tracks_follow_the_mover_with_one_id(method):
    frames, boxes = _clip()
    tracks = motion_tracks(frames, ProposalConfig(source="motion", motion_method=method, hold_keyframes=0))
    assert tracks, "no moving track found"
    best = max(tracks, key=lambda t: np.mean([iou_matrix(np.array([boxes[int(s)]], np.float32),
                                                         np.array([b], np.float32))[0, 0]
                                              for s, b in t.boxes.items()]))
    frames_covered = [s for s, b in best.boxes.items() if s >= ENTER
                      and iou_matrix(np.array([boxes[int(s)]], np.float32), np.array([b], np.float32))[0, 0] >= 0.5]
    assert len(frames_covered) >= 16, f"{method}: one track should follow the mover ({len(frames_covered)} frames)"


def test_a_global_change_yields_no_blobs():
    frames, _ = _clip(ENTER)
    blobs = MotionBlobs(ProposalConfig(source="motion"))
    for f in frames:
        blobs.apply(f)
    assert len(blobs.apply(255 - frames[-1])) == 0  # the light changed / the camera moved: no objects


def test_motion_is_selectable_as_the_nodes_stage_and_ignores_the_phrase():
    cfg = ProposalConfig(enabled=True, source="motion")  # no detector_path needed
    stage = proposal_stage(cfg)
    assert isinstance(stage, MotionTracks)
    frames, _ = _clip()
    for t, f in enumerate(frames):
        assert stage.add_frame(f, t / 10)
    assert not stage.add_frame(frames[0], 0.5), "a frame not newer than the last is ignored"
    stamps = [t / 10 for t in range(len(frames))]
    a, b = stage.proposals_for(stamps, "person"), stage.proposals_for(stamps, "dog")
    assert a and a == b
    assert stage.stats()["frames_in"] == len(frames)
    stage.reset()
    assert stage.proposals_for(stamps, "person") == {}
    stage.close()


def test_source_config_names_the_fix():
    with pytest.raises(ProposalConfigError, match="proposals_source"):
        ProposalConfig(source="radar")
    with pytest.raises(ProposalConfigError, match="proposals_source=motion"):
        ProposalConfig(enabled=True)  # a detector source without a detector path
    with pytest.raises(ProposalConfigError, match="motion_method"):
        ProposalConfig(motion_method="gmg")
    with pytest.raises(ProposalConfigError, match="motion_min_area"):
        ProposalConfig(motion_min_area=1.5)
    assert ProposalConfig(enabled=True, source="hog").source == "hog"


def test_motion_proposals_on_the_synthetic_world_find_the_moving_target():
    from stvg_ros.synthetic.bench import motion_proposals
    from stvg_ros.synthetic.generator import generate_sample

    covered = 0
    for seed in range(6):
        frames, s = generate_sample(seed, "val")
        tracks = motion_proposals(frames)
        tube = s["boxes"]
        best = max((np.mean([iou_matrix(np.array([b], np.float32), np.array([tr[t]], np.float32))[0, 0]
                             if t in tr else 0.0 for t, b in tube.items()]) for tr in tracks.values()), default=0)
        covered += best >= 0.5
    assert covered >= 3, f"the target's tube is covered by one motion track in {covered} of 6 clips"


@pytest.mark.skipif(hog_available(), reason="this OpenCV build has cv2.HOGDescriptor")
def test_hog_without_the_contrib_build_names_the_fix():
    with pytest.raises(ProposalConfigError, match="opencv-contrib-python-headless"):
        HogPeopleDetector(ProposalConfig(source="hog"))


@needs_hog
def test_hog_applies_to_person_subjects_only():
    det = HogPeopleDetector(ProposalConfig(source="hog"))
    frame = np.full((256, 256, 3), 120, np.uint8)
    assert det.applies_to("person") and det.applies_to("")
    assert not det.applies_to("dog")
    assert len(det.detect([frame], "dog")[0]) == 0
    assert det.calls == 0, "a non-person phrase runs nothing"
    out = det.detect([frame, frame[:64, :40]], "person", min_score=0.0)
    assert len(out) == 2 and len(out[1]) == 0  # a frame smaller than the window finds nothing


@needs_hog
def test_hog_stage_runs_in_the_live_stage():
    cfg = ProposalConfig(enabled=True, source="hog", rate_hz=0, detect_every=1)
    stage = proposal_stage(cfg, background=False)
    assert isinstance(stage, LiveProposalStage) and stage.detector.kind == "hog"
    frame = np.full((160, 120, 3), 100, np.uint8)
    stage.add_frame(frame, 0.0)
    assert stage.proposals_for([0.0], "dog") == {}
    stage.close()
