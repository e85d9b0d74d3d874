"""The demo: the real node, fed the bundled clip over DDS, asked one query; prints the tube.

One process holds the node under test (``StvgNode``, exactly as ``stvg_node`` runs it) and a
small client node that plays the clip as ``sensor_msgs/Image`` and sends a ``GroundingQuery``.
Topics live in a private namespace so concurrent runs do not talk to each other.  The annotated
image written is the node's own ``debug_image`` (drawn by :mod:`stvg_ros.render`; none is drawn
instead when it does not come).  When ``clip.json`` carries the ground truth
(``truth``: inclusive frame span and boxes), the tube is scored with :mod:`stvg_ros.evaluation.metrics`
(HC-STVG convention) and ``vIoU vs ground truth: X.XXX  (tIoU Y.YYY)`` is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

REPO_DATA = Path(__file__).resolve().parents[2] / "data" / "demo"
#: seconds the demo waits for the node's debug image once the tube is in
DEBUG_IMAGE_WAIT_S = 10.0


def _find_clip(path: str) -> Path:
    candidates = [Path(path)] if path else []
    candidates += [REPO_DATA]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("stvg_ros")) / "data" / "demo")
    except Exception:  # noqa: BLE001 - not in an ament environment
        pass
    for c in candidates:
        if (c / "clip.json").is_file():
            return c
    raise SystemExit(f"demo clip not found (looked in {', '.join(map(str, candidates))}): "
                     f"run scripts/make_demo_clip or pass --clip DIR")


def score_against_truth(tube, truth: dict, stamps: list[float]) -> tuple[float, float]:
    """``(vIoU, tIoU)`` of a Tube message against ``clip.json``'s ``truth`` (HC-STVG: inclusive spans).

    The tube's stamped boxes and span are mapped back to clip frame indices through the clip's stamps.
    """
    from stvg_ros.evaluation import metrics
    from stvg_ros.tube_messages import stamp_to_ns, tube_boxes
    from stvg_ros.stream.window import NS

    gt_span = (int(truth["start_frame"]), int(truth["end_frame"]))
    gt_boxes = {int(k): tuple(v) for k, v in truth["boxes"].items()}
    boxes = tube_boxes(tube)
    if not boxes:  # nothing to score: a miss, as in the benchmarks
        return 0.0, 0.0
    pred = metrics.frame_boxes_from_stamps({ns / NS: b for ns, b in boxes.items()}, stamps=stamps)
    span = metrics.time_span_to_frames((stamp_to_ns(tube.start) / NS, stamp_to_ns(tube.end) / NS), stamps=stamps)
    return metrics.viou(pred, gt_boxes, span, gt_span, inclusive=True), metrics.tiou(span, gt_span)


def box_fit(tube, truth: dict, stamps: list[float]) -> float | None:
    """Mean IoU of the tube's boxes with the true boxes on the frames both cover (None when none): how
    well the boxes fit the target, apart from the span."""
    from stvg_ros.evaluation import metrics
    from stvg_ros.tube_messages import tube_boxes
    from stvg_ros.stream.window import NS

    pred = metrics.frame_boxes_from_stamps({ns / NS: b for ns, b in tube_boxes(tube).items()}, stamps=stamps)
    gt = {int(k): tuple(v) for k, v in truth["boxes"].items()}
    both = sorted(set(pred) & set(gt))
    if not both:
        return None
    return sum(metrics.box_iou(pred[f], gt[f]) for f in both) / len(both)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="stvg_demo", description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default="", help="clip directory with clip.json (default: the bundled one)")
    ap.add_argument("--query", default="", help="query text (default: the clip's)")
    ap.add_argument("--model-path", default="", help="model directory ('' = the embedded default)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="out/demo.png", help="annotated PNG to write")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the answer")
    args = ap.parse_args(argv)

    import cv2
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from stvg_ros.adapters.default_model import choose_model
    from stvg_ros.msg import GroundingQuery, Tube
    from stvg_ros.ros.convert import ns_to_stamp, stamp_to_ns
    from stvg_ros.image_messages import decode_image, encode_image
    from stvg_ros.render import save_png
    from stvg_ros.ros.node import StvgNode
    from stvg_ros.stream.window import NS

    clip_dir = _find_clip(args.clip)
    meta = json.loads((clip_dir / "clip.json").read_text())
    frames = [cv2.cvtColor(cv2.imread(str(clip_dir / name)), cv2.COLOR_BGR2RGB) for name in meta["frames"]]
    stamps_ns = [int(round(s * NS)) for s in meta["stamps"]]
    query = args.query or meta["query"]

    print(f"stvg_demo: clip {clip_dir} ({len(frames)} frames {frames[0].shape[1]}x{frames[0].shape[0]})")
    choice = choose_model(args.model_path)
    model_dir, meaningless = choice.directory, choice.meaningless
    if meaningless:  # the tiny random fallback: a banner nobody can miss
        print("\n" + "!" * 78 + f"\n{choice.note}\n" + "!" * 78 + "\n")
    elif choice.note:
        print(f"stvg_demo: note: {choice.note}")

    rclpy.init(args=[])
    ns = f"/stvg_demo_{os.getpid()}"
    node = StvgNode(namespace=ns, parameter_overrides=[
        Parameter("model_path", value=model_dir),
        Parameter("device", value=args.device),
        Parameter("image_reliability", value="reliable"),
        Parameter("image_depth", value=len(frames) + 4),
        Parameter("window_rate", value=0.0),
        Parameter("window_max_frames", value=max(64, len(frames))),
        Parameter("window_duration", value=float(len(frames)) + 60.0),
        Parameter("status_rate", value=0.0),
    ])
    client = rclpy.create_node("stvg_demo_client", namespace=ns)
    got: dict = {}
    done, drawn = threading.Event(), threading.Event()
    client.create_subscription(Tube, "tube", lambda m: (got.setdefault("tube", m), done.set()), 10)
    client.create_subscription(Image, "debug_image", lambda m: (got.setdefault("debug", m), drawn.set()), 2)
    cam = client.create_publisher(Image, "image", QoSProfile(depth=len(frames) + 4,
                                                              reliability=ReliabilityPolicy.RELIABLE))
    ask = client.create_publisher(GroundingQuery, "query_request", 10)
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    executor.add_node(client)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    rc = 1
    try:
        t0 = time.monotonic()
        from rclpy.lifecycle import TransitionCallbackReturn

        if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            print("stvg_demo: the node failed to configure (see its log above)", file=sys.stderr)
            return 1
        if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            print("stvg_demo: the node did not activate (see its log above)", file=sys.stderr)
            return 1
        print(f"stvg_demo: model loaded in {time.monotonic() - t0:.1f} s: {model_dir}")
        deadline = time.monotonic() + 10.0
        while cam.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        for img, ns_ in zip(frames, stamps_ns):
            msg = Image()
            encode_image(img, msg)
            msg.header.frame_id = meta["frame_id"]
            msg.header.stamp = ns_to_stamp(ns_)
            cam.publish(msg)
            time.sleep(0.02)
        deadline = time.monotonic() + 10.0
        while len(node.window) < len(frames) and time.monotonic() < deadline:
            time.sleep(0.05)
        print(f"stvg_demo: window holds {len(node.window)} frames; asking: {query!r}")
        q = GroundingQuery(id="demo", text=query)
        if not args.query and meta.get("attribute_query") and meta.get("action_query"):
            q.attribute_query, q.action_query = meta["attribute_query"], meta["action_query"]
        q.header.stamp = client.get_clock().now().to_msg()
        t1 = time.monotonic()
        ask.publish(q)
        if not done.wait(args.timeout):
            print(f"stvg_demo: no answer within {args.timeout:.0f} s", file=sys.stderr)
            return 1
        tube = got["tube"]
        print(f"\nTube for query {tube.query_id!r}: {tube.query!r}  (answered in {time.monotonic() - t1:.1f} s)")
        print(f"  frame_id={tube.header.frame_id}  found={tube.found}  p_yes={tube.p_yes:.3f}  "
              f"score={tube.score:.3f}  track={tube.track_id or '(from attention)'}")
        print(f"  span: {stamp_to_ns(tube.start) / NS:.3f} s .. {stamp_to_ns(tube.end) / NS:.3f} s")
        print(f"  sub-queries ({tube.sub_query_source}): attribute={tube.attribute_query!r} "
              f"action={tube.action_query!r}")
        if tube.reason:
            print(f"  reason: {tube.reason}")
        for b in tube.boxes:
            print(f"  t={stamp_to_ns(b.stamp) / NS:8.3f} s  centre=({b.center_x:6.1f}, {b.center_y:6.1f})  "
                  f"size=({b.size_x:6.1f} x {b.size_y:6.1f})  score={b.score:.3f}")
        if "truth" in meta and not args.query:
            v, t = score_against_truth(tube, meta["truth"], meta["stamps"])
            print(f"\nvIoU vs ground truth: {v:.3f}  (tIoU {t:.3f})")
            fit = box_fit(tube, meta["truth"], meta["stamps"])
            if fit is not None:
                print(f"box IoU vs ground truth on the tube's frames inside the true span: mean {fit:.3f}")
            print(f"existence: found={tube.found} (the clip does show the queried object)")
        if not drawn.wait(DEBUG_IMAGE_WAIT_S):  # the debug image follows the tube
            print(f"stvg_demo: no debug_image from the node within {DEBUG_IMAGE_WAIT_S:g} s after the tube (its log "
                  f"above says why): {args.out} not written", file=sys.stderr)
            return 1
        rgb = decode_image(got["debug"])
        out = save_png(args.out, rgb)
        print(f"\nstvg_demo: wrote {out} ({rgb.shape[1]}x{rgb.shape[0]})")
        if meaningless:
            print("stvg_demo: REMINDER: the default model is random; the tube above is meaningless.")
        rc = 0
    finally:
        executor.shutdown(timeout_sec=2.0)
        node.shutdown()
        node.destroy_node()
        client.destroy_node()
        rclpy.try_shutdown()
    return rc


if __name__ == "__main__":
    sys.exit(main())
