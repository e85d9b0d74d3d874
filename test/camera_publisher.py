"""A camera of a "robot" in its own process, for the several-camera DDS tests: publishes ``--frames`` frames (a
moving red square) on one topic, raw (sensor_msgs/Image) or JPEG (CompressedImage), once the node subscribes.

    python test/camera_publisher.py TOPIC --kind compressed --width 320 --height 240 --frames 30 --start 1000

Run with the test's environment (``ros_harness.node_env``; add FASTDDS_DEFAULT_PROFILES_FILE and FASTRTPS_DEFAULT_PROFILES_FILE for shared memory).
Prints ``published N`` and exits 0, or exits 2 when no subscriber came."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

NS = 1_000_000_000


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("topic")
    ap.add_argument("--kind", choices=("raw", "compressed"), default="raw")
    ap.add_argument("--width", type=int, default=160)
    ap.add_argument("--height", type=int, default=120)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--start", type=float, default=1000.0, help="stamp of the first frame (s)")
    ap.add_argument("--frame-id", default="camera")
    ap.add_argument("--reliability", choices=("reliable", "best_effort"), default="best_effort")
    a = ap.parse_args()

    from ros_harness import prepare_process

    prepare_process()
    import cv2
    import numpy as np
    import rclpy
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image

    from stvg_ros.ros.convert import ns_to_stamp

    rclpy.init()
    node = rclpy.create_node("camera_publisher")
    qos = QoSProfile(depth=a.frames, history=HistoryPolicy.KEEP_LAST,
                     reliability=ReliabilityPolicy.RELIABLE if a.reliability == "reliable"
                     else ReliabilityPolicy.BEST_EFFORT)
    pub = node.create_publisher(Image if a.kind == "raw" else CompressedImage, a.topic, qos)
    deadline = time.monotonic() + 60
    while pub.get_subscription_count() == 0:
        if time.monotonic() > deadline:
            print(f"no subscriber on {a.topic}", file=sys.stderr)
            return 2
        time.sleep(0.05)
    time.sleep(0.5)  # discovery completes both ways
    for i in range(a.frames):
        img = np.full((a.height, a.width, 3), 40, np.uint8)
        side = max(8, a.width // 12)
        x = (i * max(1, a.width // 40)) % max(1, a.width - side)
        img[a.height // 3:a.height // 3 + side, x:x + side] = (230, 40, 40)
        stamp = ns_to_stamp(int(round(a.start * NS)) + i * int(NS / a.rate))
        if a.kind == "raw":
            msg = Image(height=a.height, width=a.width, encoding="rgb8", is_bigendian=0, step=a.width * 3,
                        data=img.tobytes())
        else:
            msg = CompressedImage(format="jpeg",
                                  data=cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))[1].tobytes())
        msg.header.stamp, msg.header.frame_id = stamp, a.frame_id
        pub.publish(msg)
        time.sleep(1.0 / a.rate)
    time.sleep(1.0)  # the last frames leave before the participant goes
    print(f"published {a.frames}", flush=True)
    # Seen once in CI on Jazzy (Fast DDS 2, a reliable writer): "published 30" came out at interpreter exit and
    # the process then hung past 90 s in the finalisation of the DDS objects.  The frames are out: tear down
    # within a bound on a daemon thread, then leave without the interpreter's finalisation.
    done = threading.Event()

    def teardown():
        node.destroy_node()
        rclpy.try_shutdown()
        done.set()

    threading.Thread(target=teardown, daemon=True).start()
    if not done.wait(10.0):
        print("teardown took over 10 s; exiting without it", file=sys.stderr, flush=True)
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
