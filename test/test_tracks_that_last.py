"""Tracks that last (issue 26): people who cross, hide or stop keep one track.

Each case is a small synthetic scene whose detections carry the defect the real clips show (one blob
for two crossing people, a gap of a second, a blob that fades when someone stops); the plain tracker
(``ByteTracker`` with its options off, as the proposal-free box path uses it) is the contrast.
"""

import numpy as np

from stvg_ros.proposals import ProposalConfig
from stvg_ros.proposals.tracker import ByteTracker, appearance, make_tracker, similarity
from stvg_ros.proposals.tracks import Detections

H, W = 120, 200
RED, BLUE = (200, 30, 30), (30, 30, 200)


def _scene(boxes_colours):
    f = np.full((H, W, 3), 120, np.uint8)
    for (x0, y0, x1, y1), c in boxes_colours:
        f[int(y0):int(y1), int(x0):int(x1)] = c
    return f


def _ids_by_object(tracker, paths, frames_seen):
    """Which track ids cover each object (IoU >= 0.5 on the frames it was seen)."""
    from stvg_ros.boxes import box_iou

    owners = {k: set() for k in paths}
    for t in tracker.tracks():
        for s, b in t.boxes.items():
            for k, p in paths.items():
                if int(s) in frames_seen[k] and box_iou(b, p(int(s))) >= 0.5:
                    owners[k].add(t.id)
    return owners


def test_two_people_merged_into_one_blob_keep_their_tracks():
    """Two walkers pass each other; for 8 frames the detector gives one box around both (a motion blob)."""
    a = lambda t: (10 + 4 * t, 40, 30 + 4 * t, 90)  # noqa: E731
    b = lambda t: (170 - 4 * t, 40, 190 - 4 * t, 90)  # noqa: E731
    merged = range(16, 24)
    results = {}
    for name, tracker in (("new", make_tracker("bytetrack", ProposalConfig(source="motion"))),
                          ("plain", ByteTracker())):
        for t in range(40):
            if t in merged:
                boxes = [(min(a(t)[0], b(t)[0]), 40, max(a(t)[2], b(t)[2]), 90)]
            else:
                boxes = [a(t), b(t)]
            tracker.update(t, Detections(boxes, [0.9] * len(boxes)))
        from stvg_ros.boxes import box_iou

        apart = {t for t in range(40) if t not in merged and box_iou(a(t), b(t)) < 0.3}  # who is who is clear
        seen = {"a": apart, "b": apart}
        results[name] = _ids_by_object(tracker, {"a": a, "b": b}, seen)
    assert {k: len(v) for k, v in results["new"].items()} == {"a": 1, "b": 1}
    assert results["new"]["a"] != results["new"]["b"]
    assert sum(len(v) for v in results["plain"].values()) > 2  # the old defect: ids broken at the merge


def test_a_person_hidden_for_a_second_gets_the_track_back():
    """Detections every frame (10 fps); the walker is hidden for 10 frames (> max_lost = 3)."""
    p = lambda t: (10 + 3 * t, 40, 30 + 3 * t, 90)  # noqa: E731
    hidden = range(15, 25)
    for name, tracker in (("new", make_tracker("bytetrack", ProposalConfig(source="motion"))),
                          ("plain", ByteTracker())):
        for t in range(40):
            tracker.update(t, Detections([] if t in hidden else [p(t)], [] if t in hidden else [0.9]))
        ids = {t.id for t in tracker.tracks()}
        assert len(ids) == (1 if name == "new" else 2), (name, ids)


def test_colours_keep_the_ids_of_two_crossing_people_apart():
    """A red and a blue walker cross at the same height; detections are jittered and the boxes swap
    order; with the frames given, each track stays on its colour."""
    rng = np.random.default_rng(1)
    red = lambda t: (20 + 5 * t, 40, 40 + 5 * t, 90)  # noqa: E731
    blue = lambda t: (160 - 5 * t, 42, 180 - 5 * t, 92)  # noqa: E731
    tracker = make_tracker("bytetrack", ProposalConfig(source="motion"))
    for t in range(30):
        boxes = [np.array(red(t)) + rng.normal(0, 1.5, 4), np.array(blue(t)) + rng.normal(0, 1.5, 4)]
        frame = _scene([(blue(t), BLUE), (red(t), RED)])
        tracker.update(t, Detections(boxes[::-1] if t % 2 else boxes, [0.9, 0.9]), frame=frame)
    for t in tracker.tracks():
        colours = {("red" if similarity(appearance(_scene([(red(int(s)), RED)]), b),
                                         appearance(_scene([(red(0), RED)]), red(0))) > 0.9 else "other")
                   for s, b in t.boxes.items() if abs(red(int(s))[0] - blue(int(s))[0]) > 25}
        assert len(colours) <= 1, (t.id, colours)
    assert len(tracker.tracks()) == 2


def test_a_person_who_stops_is_held_while_the_box_still_shows_them():
    """A motion blob fades once its object stops; with frames the track is held at the box."""
    p = lambda t: (10 + 4 * min(t, 20), 40, 30 + 4 * min(t, 20), 90)  # noqa: E731
    tracker = make_tracker("bytetrack", ProposalConfig(source="motion"))
    for t in range(60):
        dets = [p(t)] if t <= 22 else []  # stopped at t = 20, blob gone from t = 23
        tracker.update(t, Detections(dets, [0.9] * len(dets)), frame=_scene([(p(t), RED)]))
    (track,) = tracker.tracks()
    assert max(track.boxes) == 59.0  # held to the end ...
    stand = p(59)
    assert np.allclose(track.boxes[59.0], stand, atol=3)  # ... where the person stands
    # while one who walks away is not held where they were
    q = lambda t: (10 + 4 * t, 40, 30 + 4 * t, 90)  # noqa: E731
    tracker = make_tracker("bytetrack", ProposalConfig(source="motion"))
    for t in range(40):
        dets = [q(t)] if t <= 22 else []
        tracker.update(t, Detections(dets, [0.9] * len(dets)), frame=_scene([(q(t), RED)]))
    assert max(max(t.boxes) for t in tracker.tracks()) <= 23.0
