"""The proposal stage without neural models: tracker, track evaluation, subjects, config, live stage.

Detections are planted (from the clip's ground truth) or found by a colour detector on a synthetic
clip, since tiny random detectors find nothing meaningful; the model path is tested in
test_proposals_models.py.
"""

import threading
import time

import numpy as np
import pytest

from stvg_ros.proposals import ExternalTracks, ProposalConfig, StaticTracks, to_proposals
from stvg_ros.proposals.tracks import Detections, Track
from stvg_ros.config import ProposalConfigError
from stvg_ros.proposals.live import LiveProposalStage
from stvg_ros.proposals.subject import canonical_class, head_noun, subject_phrase
from stvg_ros.proposals.tracker import ByteTracker, iou_matrix, make_tracker

H, W = 120, 160
RED, BLUE = (220, 40, 40), (40, 40, 220)


def _objects(t: int):
    """Ground truth at frame t: (name, colour, xyxy box).  Two red balls cross paths; a blue box moves left."""
    return [
        ("ball_a", RED, (10 + 3 * t, 50, 30 + 3 * t, 70)),
        ("ball_b", RED, (130 - 3 * t, 60, 150 - 3 * t, 80)),
        ("box", BLUE, (120 - t, 10, 150 - t, 30)),
    ]


def _clip(n: int):
    frames = []
    for t in range(n):
        f = np.full((H, W, 3), 90, np.uint8)
        for _, colour, (x0, y0, x1, y1) in _objects(t):
            f[y0:y1, x0:x1] = colour
        frames.append(f)
    return frames


class ColourDetector:
    """A real (if simple) detector for the synthetic clip: the phrase names a colour class, boxes are
    the connected components of that colour.  Counts the frames it has seen."""

    COLOURS = {"ball": RED, "box": BLUE}

    def __init__(self, score: float = 0.9, delay_s: float = 0.0):
        self.score, self.delay_s = score, delay_s
        self.calls = 0
        self.phrases: list[str] = []
        self.lock = threading.Lock()

    def detect(self, frames, phrase, min_score=None):
        import cv2

        with self.lock:
            self.calls += len(frames)
            self.phrases.append(phrase)
        time.sleep(self.delay_s)
        out = []
        colour = self.COLOURS.get(phrase)
        for f in frames:
            if colour is None:
                out.append(Detections.empty())
                continue
            mask = np.all(np.abs(f.astype(int) - colour) < 30, axis=-1).astype(np.uint8)
            n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
            boxes = [[x, y, x + w, y + h] for x, y, w, h, area in stats[1:] if area >= 20]
            out.append(Detections(boxes, [self.score] * len(boxes), [phrase] * len(boxes)))
        return out


def _planted(t: int, names=("ball_a", "ball_b", "box"), rng=None, score=0.9):
    objs = [o for o in _objects(t) if o[0] in names]
    if rng is not None:
        rng.shuffle(objs)
    boxes = np.array([b for _, _, b in objs], np.float32)
    if rng is not None:
        boxes += rng.normal(0, 1.0, boxes.shape).astype(np.float32)
    return Detections(boxes, [score] * len(objs), ["obj"] * len(objs)), [n for n, _, _ in objs]


def _iou(a, b) -> float:
    return float(iou_matrix(np.array([a], np.float32), np.array([b], np.float32))[0, 0])


# --- tracker ------------------------------------------------------------------------------------

def test_tracker_keeps_ids_of_crossing_objects_stable():
    rng = np.random.default_rng(0)
    tracker = make_tracker("bytetrack", ProposalConfig())
    owner: dict[str, set] = {}
    for t in range(0, 41, 2):  # keyframes every 2 frames; balls a and b cross around t = 20
        dets, names = _planted(t, rng=rng)
        tracker.update(t, dets)
        for track in tracker.tracks():
            if t in track.boxes:
                box = track.boxes[t]
                name = max(names, key=lambda n: _iou(box, dict((o[0], o[2]) for o in _objects(t))[n]))
                owner.setdefault(name, set()).add(track.id)
    assert {k: len(v) for k, v in owner.items()} == {"ball_a": 1, "ball_b": 1, "box": 1}
    assert len(tracker.tracks()) == 3
    assert len({next(iter(v)) for v in owner.values()}) == 3


def test_bytetrack_second_stage_keeps_a_low_score_object():
    cfg = ProposalConfig(box_threshold=0.4, low_threshold=0.2)
    results = {}
    for kind in ("bytetrack", "iou"):
        tracker = make_tracker(kind, cfg)
        for t in range(0, 20, 2):
            dets, _ = _planted(t, names=("box",), score=0.3 if t == 10 else 0.9)
            tracker.update(t, dets)
        results[kind] = tracker.tracks()
    assert len(results["bytetrack"]) == 1 and 10.0 in results["bytetrack"][0].boxes
    assert results["bytetrack"][0].scores[10.0] == pytest.approx(0.3)
    # without the second stage the low-score keyframe is a gap (the id survives it through max_lost)
    assert len(results["iou"]) == 1 and 10.0 not in results["iou"][0].boxes


def test_low_score_detections_never_start_tracks_and_lost_tracks_end():
    tracker = ByteTracker(high=0.5, low=0.1, max_lost=1)
    tracker.update(0, Detections([[0, 0, 10, 10]], [0.3]))
    assert tracker.tracks() == []
    tracker.update(1, Detections([[0, 0, 10, 10]], [0.9]))
    first = tracker.tracks()[0].id
    for t in (2, 3):  # gone for two keyframes > max_lost
        tracker.update(t, Detections.empty())
    tracker.update(4, Detections([[0, 0, 10, 10]], [0.9]))
    ids = sorted(t.id for t in tracker.tracks())
    assert ids == [first, first + 1]
    with pytest.raises(ValueError, match="stamps must increase"):
        tracker.update(4, Detections.empty())


def test_track_interpolates_between_keyframes_and_holds_at_the_ends():
    track = Track(1)
    track.observe(0.0, (0, 0, 10, 10), 0.8)
    track.observe(1.0, (10, 0, 20, 10), 0.6)
    boxes = track.at([-0.6, -0.2, 0.0, 0.25, 1.0, 1.3, 2.0], hold=0.5)
    assert set(boxes) == {-0.2, 0.0, 0.25, 1.0, 1.3}
    assert boxes[0.25] == pytest.approx((2.5, 0, 12.5, 10))
    assert boxes[-0.2] == (0, 0, 10, 10) and boxes[1.3] == (10, 0, 20, 10)
    assert track.at([0.5], interpolate=False)[0.5] == (0, 0, 10, 10)
    assert track.score == pytest.approx(0.7)
    assert to_proposals([track, Track(2)]) == {1: track.boxes}


# --- subject ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, noun, phrase", [
    ("the man in purple clothes", "man", "person"),
    ("The man in purple clothes takes a step forward and sits on the bench.", "man", "person"),
    ("the small blue star that jumps", "star", "star"),
    ("A woman sits", "woman", "person"),
    ("The two dogs run to the car", "dog", "dog"),
    ("the red car parked near the house", "car", "car"),
    ("the traffic light", "traffic light", "traffic light"),
    ("Who is holding the cup?", "who", "person"),
    ("What does the man hold?", None, "person"),
    ("", None, "person"),
])
def test_subject_phrase(text, noun, phrase):
    assert head_noun(text) == noun
    assert subject_phrase(text) == phrase


def test_subject_default_class_and_synonyms_are_configurable():
    assert subject_phrase("what is it", default_class="object") == "object"
    assert subject_phrase("the cyclist on the left", synonyms={"cyclist": "person"}) == "person"
    assert canonical_class("Men.") == "person" and canonical_class("cars") == "car"


# --- config -------------------------------------------------------------------------------------

def test_config_defaults_are_the_papers_and_bad_values_name_the_fix(tmp_path):
    cfg = ProposalConfig()
    assert (cfg.box_threshold, cfg.text_threshold, cfg.detect_every) == (0.4, 0.4, 10)
    with pytest.raises(ProposalConfigError, match="choose one of bytetrack, iou"):
        ProposalConfig(tracker="sort")
    with pytest.raises(ProposalConfigError, match="detector_path"):
        ProposalConfig(enabled=True)
    with pytest.raises(ProposalConfigError, match="low_threshold"):
        ProposalConfig(box_threshold=0.3, low_threshold=0.35)
    with pytest.raises(ProposalConfigError, match="unknown option.*proposals_"):
        ProposalConfig.from_dict({"threshold": 0.5})
    assert ProposalConfig.from_dict({"proposals.detect_every": 5.0, "rate_hz": 3}).detect_every == 5
    params = tmp_path / "params.yaml"
    params.write_text("stvg:\n  ros__parameters:\n    proposals.tracker: iou\n    num_frames: 20\n")
    assert ProposalConfig.from_yaml(params).tracker == "iou"
    nested = tmp_path / "nested.yaml"
    nested.write_text("proposals:\n  max_tracks: 4\n")
    assert ProposalConfig.from_yaml(nested).max_tracks == 4


# --- live stage ---------------------------------------------------------------------------------

def _feed(stage, frames, fps=30.0, start=0.0):
    stamps = [start + i / fps for i in range(len(frames))]
    for f, s in zip(frames, stamps):
        stage.add_frame(f, s)
    return stamps


def _check_tracks_follow_truth(tracks, stamps, names):
    """Every object named has exactly one track, whose boxes at the stamps overlap the truth."""
    fps = 30.0
    for name in names:
        matching = []
        for t in tracks:
            ious = [_iou(b, dict((o[0], o[2]) for o in _objects(round(s * fps)))[name]) for s, b in t.boxes.items()]
            if ious and np.mean(ious) > 0.5:
                matching.append(np.mean(ious))
        assert len(matching) == 1, f"{name}: {len(matching)} tracks follow it"
        assert matching[0] > 0.7


@pytest.mark.parametrize("background", [True, False])
def test_live_stage_serves_the_running_class_without_detecting_again(background):
    detector = ColourDetector()
    cfg = ProposalConfig(default_class="ball", detect_every=5, rate_hz=0, window_s=10.0, max_backlog=100)
    with LiveProposalStage(detector, cfg, background=background) as stage:
        stamps = _feed(stage, _clip(40))
        query_stamps = stamps[::2]  # what the grounder samples
        tracks = stage.tracks_for(query_stamps, "ball")
        calls = detector.calls
        assert calls == 8  # keyframes 0, 5, ..., 35: all detected live, before the query
        again = stage.tracks_for(query_stamps, "")  # empty phrase = the running class
        assert detector.calls == calls
    assert len(tracks) == 2 and {t.label for t in tracks} == {"ball"}
    assert all(set(t.boxes) <= set(query_stamps) for t in tracks)
    # boxes are held one keyframe period past the last detection (t = 35 + 5)
    assert all(len(t.boxes) == 20 for t in tracks)
    _check_tracks_follow_truth(tracks, query_stamps, ["ball_a", "ball_b"])
    assert [t.id for t in again] == [t.id for t in tracks]


def test_live_stage_detects_a_new_phrase_once_and_caches_it():
    detector = ColourDetector()
    cfg = ProposalConfig(default_class="ball", detect_every=5, rate_hz=0, window_s=10.0, max_phrases=2)
    with LiveProposalStage(detector, cfg, background=False) as stage:
        stamps = _feed(stage, _clip(40))
        assert detector.calls == 8
        boxes = stage.tracks_for(stamps, "box")
        assert detector.calls == 16  # the window's 8 keyframes, once, for the new phrase
        assert stage.tracks_for(stamps, "box")[0].boxes == boxes[0].boxes and detector.calls == 16
        _check_tracks_follow_truth(boxes, stamps, ["box"])
        # ten more frames: two keyframes; the cached phrase only detects those
        more = _feed(stage, _clip(50)[40:], start=40 / 30.0)
        stage.tracks_for(stamps + more, "box")
        assert detector.calls == 16 + 2 + 2
        assert stage.cached_phrases() == ["ball", "box"]
        for extra in ("cat", "dog"):  # LRU: two more phrases push "box" out
            stage.tracks_for(stamps, extra)
        assert stage.cached_phrases() == ["ball", "cat", "dog"]
        stats = stage.stats()
    assert stats["keyframes"] == 10 and stats["detector_ms_per_keyframe"] >= 0


def test_live_stage_window_rate_and_clock_jump():
    detector = ColourDetector()
    cfg = ProposalConfig(default_class="ball", rate_hz=7.5, window_s=0.5)
    with LiveProposalStage(detector, cfg, background=False) as stage:
        stamps = _feed(stage, _clip(40))  # 30 fps in, keyframes at 7.5 Hz: every 4th frame
        stats = stage.stats()
        assert stats["frames_in"] == 40 and stats["keyframes"] == 10 and detector.calls == 10
        assert stats["window_keyframes"] == 4  # 0.5 s at 7.5 Hz (+ the newest)
        tracks = stage.tracks_for(stamps, "ball")
        first_kept = min(min(t.boxes) for t in tracks)
        assert first_kept >= stamps[-1] - 0.5 - 0.14  # older observations pruned (one hold period)
        stage.reset()  # a looping bag: time jumps back (the owner, GroundingService, detects it)
        stage.add_frame(_clip(1)[0], 0.0)
        assert stage.stats()["window_keyframes"] == 1
        assert all(min(t.boxes) == 0.0 for t in stage.tracks_for([0.0], "ball"))


def test_live_stage_background_worker_skips_backlog_when_slow():
    detector = ColourDetector(delay_s=0.05)
    cfg = ProposalConfig(default_class="ball", rate_hz=0, detect_every=1, max_backlog=2, batch_size=1,
                         query_wait_s=5.0)
    with LiveProposalStage(detector, cfg, background=True) as stage:
        stamps = _feed(stage, _clip(30))
        tracks = stage.tracks_for(stamps, "ball")  # waits for the worker to reach the newest keyframe
        stats = stage.stats()
    assert stats["skipped_keyframes"] > 0 and stats["stale_queries"] == 0
    assert detector.calls + stats["skipped_keyframes"] == 30
    assert any(stamps[-1] in t.boxes for t in tracks)


# --- external and static tracks -----------------------------------------------------------------

def test_external_tracks_keep_given_ids_and_link_the_rest():
    ext = ExternalTracks(window_s=10.0, hold=0.0)
    for t in range(0, 20, 2):
        s = t / 30.0
        (na, _, a), (nb, _, b), (nc, _, c) = _objects(t)
        ext.add(s, Detections([a, b], [0.9, 0.9], ["person", "person"], ["7", "9"]))
        ext.add(s, Detections([c], [0.8], ["car"]))  # no id: our tracker links it
    people = ext.tracks_for([t / 30.0 for t in range(0, 20, 2)], "man")
    assert sorted(t.id for t in people) == ["7", "9"]  # the caller's ids, as given
    cars = ext.tracks_for([0.0, 2 / 30.0], "car")
    assert len(cars) == 1 and cars[0].label == "car" and len(cars[0].boxes) == 2
    assert len(ext.tracks_for([0.0], "giraffe")) == 3  # no label matches: all tracks


def test_static_tracks_from_a_proposals_file_entry():
    entry = {"3": {0: (0, 0, 10, 10), 10: (10, 0, 20, 10)}, "4": {20: (5, 5, 6, 6)}}
    source = StaticTracks.from_frame_indexed(entry, lambda i: i / 10.0)
    tracks = source.tracks_for([0.0, 0.5, 1.0])
    assert [t.id for t in tracks] == ["3"]
    assert tracks[0].boxes[0.5] == pytest.approx((5, 0, 15, 10))
    assert source.proposals_for([2.0]) == {"4": {2.0: (5.0, 5.0, 6.0, 6.0)}}
    # exact: only observed stamps (no box between keyframes 0 and 10); a frame -> stamp mapping
    # leaves out frames it lacks; boxes scaled.
    exact = StaticTracks.from_frame_indexed(entry, {0: 0.0, 5: 0.5, 20: 2.0}, scale=0.5, exact=True)
    assert exact.proposals_for([0.0, 0.5, 2.0]) == {"3": {0.0: (0.0, 0.0, 5.0, 5.0)}, "4": {2.0: (2.5, 2.5, 3.0, 3.0)}}


def test_live_stage_ignores_late_frames_and_starts_over_after_reset():
    cfg = ProposalConfig(default_class="ball", rate_hz=0, detect_every=1)
    with LiveProposalStage(ColourDetector(), cfg, background=False) as stage:
        frame = _clip(1)[0]
        assert stage.add_frame(frame, 5.0) and stage.add_frame(frame, 5.1)
        assert not stage.add_frame(frame, 5.05) and not stage.add_frame(frame, 5.1)  # late / duplicate
        assert stage.stats()["window_keyframes"] == 2
        assert not stage.add_frame(frame, 2.0)  # a jump back is the owner's to detect...
        stage.reset()  # ...which resets the stage (GroundingService does, test_service.py)
        assert stage.add_frame(frame, 2.0)
        assert stage.stats()["window_keyframes"] == 1
