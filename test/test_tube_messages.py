"""One Tube conversion for both message kinds: rosbags' classes (bags) and the built rclpy ones (node)."""

from __future__ import annotations

import math

import pytest

from stvg_ros.boxes import from_centre_size, to_centre_size
from stvg_ros.tube_messages import make_tube, stamp_to_ns, time_message, tube_boxes

from stvg_ros.memory.recall import Alternative

ALTERNATIVES = [Alternative(1_000_000_000_123, 1_000_100_000_000, 0.75), Alternative(900_000_000_000, 901 * 10**9, 0.5)]
BOXES = [(1_000_000_000_123, (10.0, 20.0, 50.0, 80.0), 0.5), (1_000_100_000_000, (12.0, 21.0, 52.0, 81.0), 0.25)]


def _check(tube):
    assert (tube.query_id, tube.query, tube.found, tube.header.frame_id) == ("q1", "the cat", True, "cam")
    assert stamp_to_ns(tube.header.stamp) == 1_000_200_000_000
    assert (stamp_to_ns(tube.start), stamp_to_ns(tube.end)) == (BOXES[0][0], BOXES[1][0])
    b = tube.boxes[0]
    assert (b.center_x, b.center_y, b.size_x, b.size_y) == (30.0, 50.0, 40.0, 60.0)  # centre and size on the wire
    assert b.score == pytest.approx(0.5)
    assert tube_boxes(tube) == {ns: box for ns, box, _ in BOXES}  # corners back, exactly
    assert tube.queue_time == pytest.approx(0.75) and tube.sub_query_source == "caller"
    assert [(stamp_to_ns(a.start), stamp_to_ns(a.end), a.score) for a in tube.alternatives] == \
        [(a.start_ns, a.end_ns, a.score) for a in ALTERNATIVES], "a query over the past's alternatives"
    assert tube.camera_margin == pytest.approx(0.25)


def _tube(types):
    return make_tube(types, "q1", "the cat", frame_id="cam", stamp_ns=1_000_200_000_000, found=True, p_yes=0.9,
                     score=0.4, start_ns=BOXES[0][0], end_ns=BOXES[1][0], boxes=BOXES, track_id="7",
                     sub_query_source="caller", queue_time=0.75, alternatives=ALTERNATIVES, camera_margin=0.25)


def test_corners_and_centres_round_trip():
    box = (3.0, 4.0, 9.0, 16.0)
    assert to_centre_size(box) == (6.0, 10.0, 6.0, 12.0)
    assert from_centre_size(*to_centre_size(box)) == box
    assert to_centre_size((5.0, 5.0, 4.0, 4.0))[2:] == (0.0, 0.0)  # a degenerate box has no negative size


def test_rosbags_classes_and_a_serialisation_round_trip():
    from stvg_ros.evaluation import bags

    store = bags.typestore()
    tube = _tube(store.types.__getitem__)
    _check(tube)
    back = store.deserialize_cdr(store.serialize_cdr(tube, "stvg_ros/msg/Tube"), "stvg_ros/msg/Tube")
    _check(back)
    empty = make_tube(store.types.__getitem__, "q2", "nothing", reason="no frames in the window")
    assert not empty.found and not empty.boxes and empty.reason == "no frames in the window"
    assert not empty.alternatives
    assert math.isnan(empty.camera_margin)  # not a query to several cameras
    assert stamp_to_ns(time_message(store.types.__getitem__, -5)) == 0


@pytest.mark.ros
def test_the_built_rclpy_classes():
    from ros_harness import require_ros

    require_ros()
    from stvg_ros.msg import Tube
    from stvg_ros.ros.convert import ROS_TYPES

    tube = _tube(ROS_TYPES)
    assert isinstance(tube, Tube)
    _check(tube)
