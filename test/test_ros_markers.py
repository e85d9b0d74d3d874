"""A Tube as visualization_msgs/ImageMarker: what Foxglove's Image panel draws on the camera image.

The content is checked against the Tube (corners, stamps, frame, colours, replacement ids), and one
marker goes over DDS to prove visualization_msgs' type support loads on this distribution.
"""

from __future__ import annotations

import pytest

from ros_harness import Client, require_ros, unique_namespace, wait_for

pytestmark = pytest.mark.ros

STAMPS = [(100, 0), (100, 250_000_000), (100, 500_000_000)]  # three frames, 4 Hz


def _tube(found=True, boxes=True):
    from builtin_interfaces.msg import Time

    from stvg_ros.msg import Tube, TubeBox

    tube = Tube(query_id="q7", query="the red square", found=found, p_yes=0.8 if found else 0.3)
    tube.header.frame_id = "camera_optical"
    tube.header.stamp = Time(sec=100, nanosec=750_000_000)  # the window's newest frame, after the tube
    if boxes:
        for i, (sec, ns) in enumerate(STAMPS):
            tube.boxes.append(TubeBox(stamp=Time(sec=sec, nanosec=ns), center_x=20.0 + 10 * i, center_y=30.0,
                                      size_x=10.0, size_y=6.0, score=0.5))
        tube.start, tube.end = tube.boxes[0].stamp, tube.boxes[-1].stamp
    return tube


def _xy(points):
    return [(p.x, p.y) for p in points]


def test_newest_box_marker_is_stamped_with_its_frame():
    require_ros()
    from visualization_msgs.msg import ImageMarker

    from stvg_ros.ros.markers import BOX_ID, FOUND_COLOR, MARKER_NS, tube_markers

    (box,) = tube_markers(_tube(), line_width=3.0, lifetime=1.5)
    assert isinstance(box, ImageMarker)
    # the newest *box* of the tube (stamp 100.5), on that image, not the window's newest stamp
    assert (box.header.stamp.sec, box.header.stamp.nanosec) == STAMPS[-1]
    assert box.header.frame_id == "camera_optical"
    assert (box.ns, box.id, box.type, box.action) == (MARKER_NS, BOX_ID, ImageMarker.POLYGON, ImageMarker.ADD)
    # centre (40, 30), size 10 x 6: the four corners in pixels, clockwise from the top left
    assert _xy(box.points) == [(35.0, 27.0), (45.0, 27.0), (45.0, 33.0), (35.0, 33.0)]
    assert box.scale == 3.0 and box.filled == 0
    assert (box.lifetime.sec, box.lifetime.nanosec) == (1, 500_000_000)
    c = box.outline_color
    assert pytest.approx((c.r, c.g, c.b, c.a)) == FOUND_COLOR


def test_whole_tube_outlines_every_box_and_not_found_is_coloured_apart():
    require_ros()
    from visualization_msgs.msg import ImageMarker

    from stvg_ros.ros.markers import NOT_FOUND_COLOR, TUBE_ID, tube_markers

    box, whole = tube_markers(_tube(found=False), whole_tube=True)
    assert (whole.id, whole.type) == (TUBE_ID, ImageMarker.LINE_LIST)
    assert whole.header == box.header
    assert len(whole.points) == 8 * len(STAMPS) == len(whole.outline_colors)
    # the first box's four edges as point pairs
    x0, y0, x1, y1 = 15.0, 27.0, 25.0, 33.0
    assert _xy(whole.points[:8]) == [(x0, y0), (x1, y0), (x1, y0), (x1, y1), (x1, y1), (x0, y1), (x0, y1), (x0, y0)]
    c = box.outline_color
    assert pytest.approx((c.r, c.g, c.b, c.a)) == NOT_FOUND_COLOR
    assert whole.outline_color.a < box.outline_color.a  # fainter than the newest box


def test_a_tube_without_boxes_removes_the_previous_drawing():
    require_ros()
    from visualization_msgs.msg import ImageMarker

    from stvg_ros.ros.markers import BOX_ID, TUBE_ID, tube_markers

    removes = tube_markers(_tube(found=False, boxes=False), whole_tube=True)
    assert [(m.id, m.action) for m in removes] == [(BOX_ID, ImageMarker.REMOVE), (TUBE_ID, ImageMarker.REMOVE)]
    assert all(m.header.frame_id == "camera_optical" for m in removes)


def test_detection2d_array_needs_vision_msgs():
    require_ros()
    from stvg_ros.ros.markers import tube_detections, vision_msgs_available

    if vision_msgs_available():
        pytest.skip("vision_msgs is installed: this test covers only the message naming the fix without it")
    with pytest.raises(RuntimeError, match="vision-msgs"):
        tube_detections(_tube())


def test_image_marker_over_dds():
    require_ros()
    from rclpy.qos import QoSDurabilityPolicy, QoSProfile, ReliabilityPolicy
    from visualization_msgs.msg import ImageMarker

    from stvg_ros.ros.markers import tube_markers

    ns = unique_namespace()
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
    pub_side, sub_side = Client("marker_pub", ns), Client("marker_sub", ns)
    try:
        pub = pub_side.node.create_publisher(ImageMarker, "tube_markers", qos)
        got = sub_side.collect(ImageMarker, "tube_markers", qos)
        sent = tube_markers(_tube(), whole_tube=True)
        wait_for(lambda: pub.get_subscription_count() > 0, 20, "the marker subscription")
        for m in sent:
            pub.publish(m)
        wait_for(lambda: len(got) == 2, 20, "two markers")
        assert [(m.id, _xy(m.points)) for m in got] == [(m.id, _xy(m.points)) for m in sent]
    finally:
        pub_side.close()
        sub_side.close()
