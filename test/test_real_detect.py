"""Motion and HOG proposals on real video (test/data/real/vtest.avi, hand-checked boxes), at their defaults.

Floors are recall of the true boxes (one-to-one IoU matching) on the annotated frames 40, 60, ..., 160;
the code before issue 26 measured (bench/bench_real_detect.py): HOG 0.24 at full size and 0 at the node's
224 px, motion blobs 0.40 / 0.52 (IoU 0.5 / 0.3), and on a handheld camera 0.33 with 9.7 false boxes a frame.
"""

from pathlib import Path

import cv2
import numpy as np
import pytest

from moving_camera import camera_path, warp_clip, warp_frames
from stvg_ros.config import ProposalConfig
from stvg_ros.proposals.annotated import iter_frames, load_annotations, proposal_recall
from stvg_ros.proposals.hog import HogPeopleDetector, hog_available
from stvg_ros.proposals.motion import MotionBlobs

DATA = Path(__file__).parent / "data" / "real"
needs_hog = pytest.mark.skipif(not hog_available(), reason="this OpenCV build has no cv2.HOGDescriptor "
                               "(OpenCV 5 keeps it in opencv-contrib-python-headless)")


@pytest.fixture(scope="module")
def vtest():
    clip = next(c for c in load_annotations(DATA / "annotations.json") if c.name == "vtest.avi")
    return clip, list(iter_frames(clip.path, max(clip.frames) + 1))


def _blob_boxes(frames, clip, config):
    blobs = MotionBlobs(config)
    out = {}
    for i, f in frames:
        det = blobs.apply(f)
        if i in clip.boxes:
            out[i] = det.boxes.tolist()
    return out, blobs


class _Counting:
    """Stands for a ``cv2.HOGDescriptor`` and counts its ``detectMultiScale`` calls (one per searched crop)."""

    def __init__(self, hog):
        self.hog, self.calls = hog, 0

    def detectMultiScale(self, *args, **kwargs):  # noqa: N802 (OpenCV's name)
        self.calls += 1
        return self.hog.detectMultiScale(*args, **kwargs)


def _hog_boxes(frames, clip, side=0):
    """HOG at its defaults on the CLI's keyframes (every 10th frame), boxes in the clip's pixels; the
    detector's small-person pass counts its crops (``det.small_hog.calls``)."""
    det = HogPeopleDetector(ProposalConfig(source="hog"))
    det.small_hog = _Counting(det.small_hog)
    out = {}
    for i, f in frames:
        if i % 10:
            continue
        scale = side / max(f.shape[:2]) if side else 1.0
        if side:
            f = cv2.resize(f, (round(f.shape[1] * scale), round(f.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        boxes = det.detect([f], "person")[0].boxes / scale
        if i in clip.boxes:
            out[i] = boxes.tolist()
    return out, det


@needs_hog
def test_hog_finds_the_people_at_the_clis_full_size(vtest):
    clip, frames = vtest
    boxes, det = _hog_boxes(frames, clip)
    r = proposal_recall(boxes, clip, 0.5)
    assert r["recall"] >= 0.75, r  # 0.74 before hog_person_small
    assert r["false_per_frame"] <= 1.0, r
    assert det.scanned_area / det.calls < 0.8, "between whole-frame scans only the moving parts are searched"


@needs_hog
def test_hog_finds_the_small_walker_around_what_moves(vtest):
    """g walks along the top of vtest 32-40 px tall, under ``hog_person_min`` (58 px): the main pyramid
    never sees them; ``hog_person_small`` searches enlarged crops around the moving parts."""
    clip, frames = vtest
    g = clip.__class__(clip.name, clip.path, {f: [b for b in bs if b.id == "g"] for f, bs in clip.boxes.items()
                                              if any(b.id == "g" for b in bs)})
    boxes, det = _hog_boxes(frames, g)
    assert proposal_recall(boxes, g, 0.5)["recall"] >= 0.4
    # issue 26: the moving parts of people the main pass found (legs, arms) get no crop of their own; before,
    # 5.9 crops a keyframe and 1.2x the cost of the main pass alone (over the 0.5 core at 3 Hz), now 2.0
    assert det.small_hog.calls <= 3 * det.calls, det.small_hog.calls / det.calls
    off = HogPeopleDetector(ProposalConfig(source="hog", hog_person_small=0))
    assert off.small_hog is None


@needs_hog
def test_hog_finds_the_people_at_the_nodes_224_px(vtest):
    clip, frames = vtest
    r = proposal_recall(_hog_boxes(frames, clip, side=224)[0], clip, 0.5)
    assert r["recall"] >= 0.66, r  # people 9-34 px tall here; 0.64 before hog_person_small
    assert r["false_per_frame"] <= 1.5, r


def test_motion_blobs_box_people_of_every_size_on_a_still_camera(vtest):
    clip, frames = vtest
    boxes, blobs = _blob_boxes(frames, clip, ProposalConfig(source="motion"))
    r5, r3 = proposal_recall(boxes, clip, 0.5), proposal_recall(boxes, clip, 0.3)
    assert r5["recall"] >= 0.55 and r3["recall"] >= 0.65, (r5, r3)
    assert r5["false_per_frame"] <= 2.0, r5
    assert blobs.camera_moved <= 0.05 * len(frames), "a fixed camera is not reported as moving"


@needs_hog
def test_motion_people_proposes_the_two_who_stand_still_from_the_first_frame(vtest):
    """``motion_people`` (on by default): HOG's people where no blob is, proposed only once seen at one place
    on two keyframes with something stirring in the box.  Before, it proposed every HOG box: blobs 0.70 at
    1.1 false boxes a frame, tracks 11.7; now blobs 0.72 at 0.86 (and 0.60 at 1.14 without it)."""
    clip, frames = vtest
    still = clip.__class__(clip.name, clip.path, {f: [b for b in bs if b.id in ("a", "b")] for f, bs in clip.boxes.items()})
    plain, _ = _blob_boxes(frames, clip, ProposalConfig(source="motion", motion_people=False))
    assert proposal_recall(plain, still, 0.5)["recall"] <= 0.15, "no motion, no blob: the background has them"
    boxes, blobs = _blob_boxes(frames, clip, ProposalConfig(source="motion"))
    assert proposal_recall(boxes, still, 0.5)["recall"] >= 0.5
    r = proposal_recall(boxes, clip, 0.5)
    assert r["recall"] >= 0.68 and r["false_per_frame"] <= 1.0, r
    assert blobs._hog.calls <= len(frames) / 10 + 1, "HOG runs on keyframes only"


@needs_hog
def test_motion_people_never_proposes_what_hog_mistakes_for_a_person_but_never_stirs(vtest):
    """HOG finds a 'person' in the railings at the top right ([687, 35, 712, 108]) on several keyframes,
    at one place: it is confirmed as still, but nothing ever moves in it, so it is never proposed."""
    from stvg_ros.proposals.tracker import iou_matrix

    clip, frames = vtest
    blobs = MotionBlobs(ProposalConfig(source="motion"))
    railing = np.array([[687, 35, 712, 108]], np.float32)
    seen = proposed = 0
    for i, f in frames:
        det = blobs.apply(f)
        people = det.boxes[[label == "person" for label in det.labels]]
        proposed += int(len(people) > 0 and iou_matrix(railing, people).max() >= 0.5)
        seen += int(any(iou_matrix(railing, c.box[None].astype(np.float32))[0, 0] >= 0.5 for c in blobs._still))
    assert seen > 0, "HOG takes it for a person (else this test checks nothing)"
    assert proposed == 0


@pytest.mark.slow
def test_motion_blobs_survive_a_handheld_camera(vtest):
    clip, frames = vtest
    h, w = frames[0][1].shape[:2]
    path = camera_path(len(frames), "handheld", seed=1)
    moved = list(warp_frames(frames, path))
    boxes, blobs = _blob_boxes(moved, warp_clip(clip, (h, w), path), ProposalConfig(source="motion"))
    r = proposal_recall(boxes, warp_clip(clip, (h, w), path), 0.5)
    assert r["recall"] >= 0.5 and r["false_per_frame"] <= 3.0, r
    assert blobs.camera_moved >= 0.5 * len(frames), "the camera's motion is noticed"
    fixed, _ = _blob_boxes(moved, clip, ProposalConfig(source="motion", motion_camera="fixed"))
    r_fixed = proposal_recall(fixed, warp_clip(clip, (h, w), path), 0.5)
    assert r_fixed["false_per_frame"] > r["false_per_frame"], "without compensation the shake makes false boxes"


@needs_hog
def test_a_proposal_source_that_finds_nothing_is_named_in_the_answer_and_the_status():
    """Issue 26: HOG in the node found no person and the node fell back to proposal-free boxes silently."""
    from fake_grounder import FakeGrounder
    from test_service import Answers, stamps

    from stvg_ros.config import ServingConfig
    from stvg_ros.proposals.live import proposal_stage
    from stvg_ros.stream.requests import ANSWERED, GroundingRequest
    from stvg_ros.stream.service import GroundingService

    svc = GroundingService(ServingConfig(window_rate=0.0, ingest_max_side=224))
    svc.start(FakeGrounder(), stage=proposal_stage(ProposalConfig(enabled=True, source="hog", rate_hz=0,
                                                                      detect_every=1), background=False))
    for s in stamps(4):
        svc.ingest(s, lambda: np.full((168, 224, 3), 128, np.uint8))  # a blank wall: nobody there
    answers = Answers()
    svc.submit(GroundingRequest("q", "the man in a red coat"), answers)
    svc.submit(GroundingRequest("r", "the red car"), answers)
    a, b = answers.wait("q"), answers.wait("r")
    assert a.status == ANSWERED and a.result.boxes_from == "proposal-free boxes: hog found no person"
    assert b.result.boxes_from == "proposal-free boxes: hog proposes no car"
    c = svc.counters()
    assert c.proposal_fallbacks == 2 and c.last_fallback == b.result.boxes_from
    assert a.result.to_dict()["boxes_from"] == a.result.boxes_from
    svc.stop()


def test_the_tube_says_where_its_boxes_came_from_on_the_wire():
    from stvg_ros.evaluation import bags
    from stvg_ros.tube_messages import make_tube

    store = bags.typestore()
    tube = make_tube(store.types.__getitem__, "q", "the man", boxes_from="proposal-free boxes: hog found no person")
    back = store.deserialize_cdr(store.serialize_cdr(tube, "stvg_ros/msg/Tube"), "stvg_ros/msg/Tube")
    assert back.boxes_from == "proposal-free boxes: hog found no person"


@pytest.mark.ros
def test_the_ros_tube_and_status_carry_the_fallback():
    from ros_harness import require_ros

    require_ros()
    from stvg_ros.msg import Status
    from stvg_ros.ros.convert import ROS_TYPES
    from stvg_ros.tube_messages import make_tube

    assert make_tube(ROS_TYPES, "q", "x", boxes_from="hog tracks").boxes_from == "hog tracks"
    fields = Status.get_fields_and_field_types()
    assert fields["proposal_fallbacks"] == "uint64" and fields["last_fallback"] == "string"


@pytest.mark.slow
def test_motion_tracks_on_a_handheld_camera_leave_out_the_flickers(vtest):
    """``stvg-proposals --source motion``'s tracks on vtest shaken and panned by hand (seed 1; the
    benchmark's is seed 0): flicker tracks (``motion_min_frames``) are not proposed.  Before: recall 0.73
    at 19.1 false boxes a frame; then 0.75 at 7.6; with an object's pieces left out and tracks held one frame
    past their ends (the hand-held cup's fixes), 0.79 at 3.0."""
    from stvg_ros.proposals.cli import propose_motion

    clip, frames = vtest
    h, w = frames[0][1].shape[:2]
    path = camera_path(len(frames), "handheld", seed=1)
    moved = warp_clip(clip, (h, w), path)
    tracks = propose_motion(warp_frames(frames, path), ProposalConfig(source="motion"), len(frames))
    boxes = {f: [t.boxes[float(f)] for t in tracks if float(f) in t.boxes] for f in moved.boxes}
    r = proposal_recall(boxes, moved, 0.5)
    assert r["recall"] >= 0.7 and r["false_per_frame"] <= 5.0, r


@pytest.mark.slow
def test_motion_on_the_hand_held_cup_proposes_the_cup_not_the_arms_pieces():
    """Issue 26's hand-held target on cup.mp4 (a hand moves a black cup before a white wall; the boxed object is
    the cup without the hand): recall@0.5 >= 0.5 at <= 3 false boxes a frame, for the blobs and for
    ``stvg-proposals --source motion``'s tracks.  Before: blobs 0.53 at 7.1 false a frame, tracks 0.67 at 30.6
    (the camera's auto exposure turned the wall into foreground streaks, the arm fell into a dozen pieces, each
    a track held ``detect_every`` frames past its ends); now 0.73 at 2.5 and 0.73 at 2.4."""
    from stvg_ros.proposals.cli import propose_motion

    clip = next(c for c in load_annotations(DATA / "annotations.json") if c.name == "cup.mp4")
    frames = list(iter_frames(clip.path, max(clip.frames) + 1))
    boxes, blobs = _blob_boxes(frames, clip, ProposalConfig(source="motion"))
    r = proposal_recall(boxes, clip, 0.5)
    assert r["recall"] >= 0.6 and r["false_per_frame"] <= 3.0, r
    tracks = propose_motion(iter(frames), ProposalConfig(source="motion"), len(frames))
    by_frame = {f: [t.boxes[float(f)] for t in tracks if float(f) in t.boxes] for f in clip.boxes}
    r = proposal_recall(by_frame, clip, 0.5)
    assert r["recall"] >= 0.6 and r["false_per_frame"] <= 3.0, r


def test_motion_blobs_ignore_a_change_of_exposure():
    """A camera's auto exposure brightens the whole view by a few per cent (cup.mp4's wall: 220 → 231 of 255
    while the dark cup fills the frame): the background model, nearly noise-free on a plain wall, took that for
    foreground everywhere.  The frame is now scaled back to the model's brightness; a real mover still shows."""
    rng = np.random.default_rng(0)
    wall = np.clip(200 + rng.normal(0, 1.5, (120, 160, 3)), 0, 255).astype(np.uint8)
    wall[:, :, 0] = np.clip(wall[:, :, 0].astype(int) + np.linspace(-20, 20, 160).astype(int), 0, 255)
    blobs = MotionBlobs(ProposalConfig(source="motion", motion_people=False, motion_camera="fixed"))
    for _ in range(30):
        blobs.apply(wall)
    brighter = np.clip(wall.astype(np.float32) * 1.06, 0, 255).astype(np.uint8)
    assert np.count_nonzero(blobs.mask(brighter)) < 0.01 * wall.shape[0] * wall.shape[1]
    assert abs(blobs.gain - 1.06) < 0.01
    moved = brighter.copy()
    moved[40:80, 60:90] = 20  # a dark object enters
    assert len(blobs.apply(moved)) == 1
