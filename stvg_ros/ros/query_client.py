"""``stvg_query``: ask the running node a question from a shell without the ``ros2`` CLI (a venv has none).

``stvg_query "the red car" --wait`` sends the query as a ``ground`` action goal, shows the stages as
they pass (stderr) and prints the Tube (``--json``: as JSON); the exit code is 0 when the goal
succeeded, 1 when it was refused, failed or ran out of time (the Tube's reason says why).  Without
``--wait`` the query is published on ``query_request`` and the answer goes to ``tube`` as for any
topic query.  Ctrl-C while waiting cancels the goal.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
import time
from typing import Optional, Sequence

from stvg_ros.ros.bag_player import split_ros_args

NS = 1_000_000_000


#: seconds the client keeps listening for feedback after the result arrived
LATE_FEEDBACK_S = 0.3


def tube_dict(tube) -> dict:
    """A Tube message as plain data (times in seconds, boxes as centre and size in source pixels)."""
    def t(stamp) -> float:
        return stamp.sec + stamp.nanosec / NS

    return {"query_id": tube.query_id, "query": tube.query, "found": bool(tube.found), "p_yes": float(tube.p_yes),
            "score": float(tube.score), "frame_id": tube.header.frame_id, "start": t(tube.start), "end": t(tube.end),
            "boxes": [{"t": t(b.stamp), "center_x": b.center_x, "center_y": b.center_y, "size_x": b.size_x,
                       "size_y": b.size_y} for b in tube.boxes],
            "track_id": tube.track_id, "attribute_query": tube.attribute_query, "action_query": tube.action_query,
            "sub_query_source": tube.sub_query_source, "latency": float(tube.latency),
            "queue_time": float(tube.queue_time), "reason": tube.reason, "camera": tube.camera,
            "camera_margin": None if math.isnan(tube.camera_margin) else float(tube.camera_margin)}


def format_tube(tube) -> str:
    """The Tube for a person: what was found, when, and the boxes."""
    d = tube_dict(tube)
    lines = [f"Tube {d['query_id']!r}: {d['query']!r}",
             f"  found={d['found']}  p_yes={d['p_yes']:.3f}  score={d['score']:.3f}  frame_id={d['frame_id']}  "
             f"latency={d['latency']:.2f} s"]
    if d["camera_margin"] is not None:
        lines.append(f"  camera_margin={d['camera_margin']:+.3f} (p_yes ahead of the other cameras')")
    if d["reason"]:
        lines.append(f"  reason: {d['reason']}")
    if d["boxes"]:
        lines.append(f"  span: {d['start']:.3f} s .. {d['end']:.3f} s, {len(d['boxes'])} boxes "
                     f"(centre x, y; width x height; source pixels):")
        lines += [f"    t={b['t']:.3f} s  ({b['center_x']:.1f}, {b['center_y']:.1f})  "
                  f"{b['size_x']:.1f} x {b['size_y']:.1f}" for b in d["boxes"]]
    if d["attribute_query"] or d["action_query"]:
        lines.append(f"  sub-queries ({d['sub_query_source']}): attribute={d['attribute_query']!r} "
                     f"action={d['action_query']!r}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="stvg_query", description=__doc__.split("\n\n")[0],
                                 epilog="ROS arguments go after --ros-args.")
    ap.add_argument("text", help="the query, e.g. 'the person in the red coat walking to the car'")
    ap.add_argument("--wait", action="store_true", help="wait for the answer (ground action) and print the Tube")
    ap.add_argument("--namespace", "-n", default="/stvg", help="the node's namespace (default /stvg, as the "
                                                                "launch file and the README's examples)")
    ap.add_argument("--id", default="", help="query id (default: the node numbers it)")
    ap.add_argument("--start", type=float, default=0.0, help="only frames from this stamp (s; 0 = window start)")
    ap.add_argument("--end", type=float, default=0.0, help="only frames up to this stamp (s; 0 = window end)")
    ap.add_argument("--last", type=float, default=0.0,
                    help="only the last N seconds before --end or the newest frame (with memory on: beyond the "
                         "window; not with --start)")
    ap.add_argument("--attribute", default="", help="explicit attribute sub-query (with --action)")
    ap.add_argument("--action", default="", help="explicit action sub-query (with --attribute)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the node and the answer")
    ap.add_argument("--json", action="store_true", help="print the Tube as JSON")
    ap.add_argument("--camera", default="", help="a node with several cameras: the camera's name or image topic "
                    "(default: all, answered with the best tube)")
    ap.add_argument("--each-camera", action="store_true", help="with several cameras: one Tube per camera")
    return ap


def _goal_fields(a) -> dict:
    def stamp(seconds: float):
        from builtin_interfaces.msg import Time

        sec, nsec = divmod(int(round(seconds * NS)), NS)
        return Time(sec=sec, nanosec=nsec)

    return dict(id=a.id, text=a.text, start=stamp(a.start), end=stamp(a.end), attribute_query=a.attribute,
                action_query=a.action, camera=a.camera, each_camera=a.each_camera, last_s=float(a.last))


def main(argv: Optional[Sequence[str]] = None) -> int:
    own, ros_args = split_ros_args(list(sys.argv[1:] if argv is None else argv))
    a = build_parser().parse_args(own)
    if bool(a.attribute) != bool(a.action):
        print("stvg_query: give both --attribute and --action, or neither", file=sys.stderr)
        return 2
    import rclpy

    try:
        from rclpy.signals import SignalHandlerOptions

        rclpy.init(args=["stvg_query", *ros_args], signal_handler_options=SignalHandlerOptions.NO)
    except (ImportError, TypeError):
        rclpy.init(args=["stvg_query", *ros_args])
    interrupted = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: interrupted.set())
    signal.signal(signal.SIGTERM, lambda *_: interrupted.set())
    node = rclpy.create_node("stvg_query", namespace=a.namespace)
    try:
        return _ask(node, a, interrupted)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def _spin_until(node, done, deadline: float, interrupted: threading.Event) -> bool:
    import rclpy

    while not done() and time.monotonic() < deadline and not interrupted.is_set():
        rclpy.spin_once(node, timeout_sec=0.05)
    return bool(done())


def _ask(node, a, interrupted: threading.Event) -> int:
    from stvg_ros.msg import GroundingQuery

    deadline = time.monotonic() + a.timeout
    where = node.resolve_topic_name("query_request")
    if not a.wait:
        pub = node.create_publisher(GroundingQuery, "query_request", 10)
        if not _spin_until(node, lambda: pub.get_subscription_count() > 0, deadline, interrupted):
            print(f"stvg_query: no node subscribes to {where} (is stvg_node running in namespace {a.namespace}? "
                  f"--namespace sets it)", file=sys.stderr)
            return 1
        time.sleep(0.2)  # the subscriber's side of the match
        pub.publish(GroundingQuery(**_goal_fields(a)))
        _spin_until(node, lambda: False, time.monotonic() + 0.3, interrupted)  # let it leave
        print(f"stvg_query: sent to {where}; the Tube comes on {node.resolve_topic_name('tube')} "
              f"(or run with --wait)", file=sys.stderr)
        return 0
    from rclpy.action import ActionClient

    from stvg_ros.action import Ground

    client = ActionClient(node, Ground, "ground")
    if not _spin_until(node, client.server_is_ready, deadline, interrupted):
        print(f"stvg_query: no ground action server at {node.resolve_topic_name('ground')} (is stvg_node running "
              f"in namespace {a.namespace}? --namespace sets it)", file=sys.stderr)
        return 1

    def feedback(msg) -> None:
        print(f"stvg_query: {msg.feedback.stage} ({msg.feedback.elapsed:.1f} s)", file=sys.stderr)

    sent = client.send_goal_async(Ground.Goal(**_goal_fields(a)), feedback_callback=feedback)
    if not _spin_until(node, sent.done, deadline, interrupted):
        print("stvg_query: the goal was not acknowledged", file=sys.stderr)
        return 1
    handle = sent.result()
    result = handle.get_result_async()
    _spin_until(node, result.done, deadline, interrupted)
    if not result.done():
        why = "interrupted" if interrupted.is_set() else f"no answer within {a.timeout:g} s"
        cancel = handle.cancel_goal_async()
        _spin_until(node, cancel.done, time.monotonic() + 2.0, threading.Event())
        print(f"stvg_query: {why}: goal cancelled", file=sys.stderr)
        return 1
    # feedback and result travel on different DDS entities: the last stage's feedback may arrive just after the
    # result (seen on Jazzy once the select stage got short); take it before printing the answer
    _spin_until(node, lambda: False, time.monotonic() + LATE_FEEDBACK_S, interrupted)
    from action_msgs.msg import GoalStatus

    answer = result.result()
    tubes = list(answer.result.camera_tubes) or [answer.result.tube]  # --each-camera: one per camera
    if a.json:
        data = [tube_dict(t) for t in tubes]
        print(json.dumps(data if a.each_camera else data[0], indent=2))
    else:
        print("\n".join((f"camera {t.camera}: " if t.camera else "") + format_tube(t) for t in tubes))
    return 0 if answer.status == GoalStatus.STATUS_SUCCEEDED else 1


if __name__ == "__main__":
    sys.exit(main())
