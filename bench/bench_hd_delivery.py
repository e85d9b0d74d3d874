#!/usr/bin/env python3
"""How many HD frames reach the node on one host, per transport set-up (issue 14, item 4).

A publisher process streams 1280x720 ``bgr8`` frames at 30 Hz for ``--seconds`` (60 by default) to
the installed ``stvg_node`` (the colcon build in ``.ws/``, started as a subprocess with the shipped
default model), and the node's own ``Status`` says how many it received (``frames_received``, and
``frames_lost`` where the node counts DDS ``message_lost`` events).  Each configuration changes only
the transport set-up, on both processes, as a user would:

* ``best_effort``: the defaults (sensor-data QoS camera, node ``image_reliability: best_effort``);
* ``reliable``: a reliable camera and ``image_reliability: reliable``;
* ``compressed``: the camera's jpeg ``/compressed`` topic, best effort, node ``use_compressed: true``
  (the frames are encoded once before the stream starts: a real driver pays that encoding);
* ``shm_best_effort`` / ``shm_reliable``: as the first two, both processes started with the Fast DDS
  profile the package ships (``config/fastdds_shm.xml``, what ``fastdds_profile:=shm`` of the launch
  file selects).

Prints a table and writes JSON (default ``bench/results/hd-delivery.json``)::

    python bench/bench_hd_delivery.py                 # 60 s per configuration
    python bench/bench_hd_delivery.py --quick         # 4 s per configuration (smoke)
    python bench/bench_hd_delivery.py --configs best_effort shm_best_effort --seconds 30

The machine's load average is recorded before and after each configuration (other processes share
the CPU: delivery under load is what this measures).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # `bench` (after the installed stvg_ros with its messages)
sys.path.insert(0, str(ROOT / "test"))

from bench._util import machine, table, write_json  # noqa: E402

SHM_PROFILE = ROOT / "config" / "fastdds_shm.xml"
#: both variable names: Fast DDS 3 (Jazzy, Kilted) reads the first, 2.x (Humble) the second
PROFILE_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")

CONFIGS = {
    "best_effort": dict(reliability="best_effort", compressed=False, profile=None),
    "reliable": dict(reliability="reliable", compressed=False, profile=None),
    "compressed": dict(reliability="best_effort", compressed=True, profile=None),
    "shm_best_effort": dict(reliability="best_effort", compressed=False, profile=SHM_PROFILE),
    "shm_reliable": dict(reliability="reliable", compressed=False, profile=SHM_PROFILE),
}


# --- the camera: a separate process, as a driver would be ---------------------------------------

def publish(args) -> int:
    """Publisher mode: wait for the node's subscription, stream, print a JSON line with the counts."""
    import numpy as np
    import rclpy
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image

    from bench.bench_node import scene

    rclpy.init(args=None)
    node = rclpy.create_node("hd_camera")
    qos = QoSProfile(depth=5, history=HistoryPolicy.KEEP_LAST,
                     reliability=ReliabilityPolicy.RELIABLE if args.reliability == "reliable"
                     else ReliabilityPolicy.BEST_EFFORT)
    frames = [scene(7 * i, args.width, args.height)[..., ::-1].copy() for i in range(8)]  # RGB scene → bgr8
    if args.compressed:
        import cv2

        pub = node.create_publisher(CompressedImage, args.topic + "/compressed", qos)
        msgs = []
        for f in frames:
            m = CompressedImage()
            m.format = "jpeg"
            m.data = cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
            msgs.append(m)
    else:
        pub = node.create_publisher(Image, args.topic, qos)
        msgs = []
        for f in frames:
            m = Image()
            m.height, m.width, m.encoding, m.is_bigendian, m.step = args.height, args.width, "bgr8", 0, args.width * 3
            m.data = f.tobytes()
            msgs.append(m)
    deadline = time.monotonic() + 30.0
    while pub.get_subscription_count() == 0:
        if time.monotonic() > deadline:
            print(json.dumps({"error": f"no subscriber on {pub.topic_name} after 30 s"}), flush=True)
            return 2
        time.sleep(0.05)
    time.sleep(1.0)  # the match is seen by the writer first: give the reader's side time too
    n = int(round(args.seconds * args.rate))
    period = 1.0 / args.rate
    late = 0
    t0 = time.monotonic()
    stamp0 = time.time_ns()
    for i in range(n):
        due = t0 + i * period
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        elif now - due > period:
            late += 1
        m = msgs[i % len(msgs)]
        ns = stamp0 + int(i * period * 1e9)
        m.header.stamp.sec, m.header.stamp.nanosec = divmod(ns, 1_000_000_000)
        m.header.frame_id = "hd_camera"
        pub.publish(m)
    wall = time.monotonic() - t0
    nbytes = len(msgs[0].data)
    print(json.dumps({"published": n, "wall_s": wall, "late": late, "bytes_per_frame": nbytes,
                      "rate_hz": n / wall if wall > 0 else 0.0}), flush=True)
    time.sleep(1.0)  # reliable: let the last samples be acknowledged before the writer goes
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


# --- one configuration ---------------------------------------------------------------------------

def profile_env(profile) -> dict:
    if profile is None:
        return {}
    env = {k: str(profile) for k in PROFILE_VARS}
    env["RMW_FASTRTPS_USE_QOS_FROM_XML"] = "0"
    return env


def run_config(name: str, cfg: dict, seconds: float, width: int, height: int, rate: float, workdir: Path) -> dict:
    import ros_harness as H

    extra = profile_env(cfg["profile"])
    ns = f"/hd_{os.getpid()}_{name}"
    params = {"model_path": "default", "device": "cpu", "image_reliability": cfg["reliability"],
              "use_compressed": cfg["compressed"], "publish_debug_image": False, "status_rate": 4.0}
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)  # the node inherits it (node_env copies os.environ)
    try:
        node = H.NodeProcess(ns, params, workdir / f"node-{name}.log")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    client = None
    load_before = os.getloadavg()
    try:
        from stvg_ros.msg import Status

        client = H.Client(f"hd_bench_{name}")
        statuses = client.collect(Status, f"{ns}/status", 10)
        H.wait_for(lambda: statuses and statuses[-1].state == "active", 120, "the node to become active", node)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--publish", "--topic", f"{ns}/image",
               "--reliability", cfg["reliability"], "--seconds", str(seconds), "--width", str(width),
               "--height", str(height), "--rate", str(rate)] + (["--compressed"] if cfg["compressed"] else [])
        pub = subprocess.run(cmd, env=H.node_env(extra), capture_output=True, text=True, timeout=seconds + 120)
        lines = [ln for ln in pub.stdout.splitlines() if ln.startswith("{")]
        if pub.returncode != 0 or not lines:
            raise RuntimeError(f"publisher failed ({pub.returncode}): {pub.stdout[-2000:]}{pub.stderr[-2000:]}")
        sent = json.loads(lines[-1])
        st = H.last_settled(statuses)
    finally:
        if client is not None:
            client.close()
        node.stop()
    lost = getattr(st, "frames_lost", None)
    received = int(st.frames_received)
    return {
        "config": name, "reliability": cfg["reliability"], "compressed": cfg["compressed"],
        "profile": str(cfg["profile"].relative_to(ROOT)) if cfg["profile"] else None,
        "published": sent["published"], "received": received,
        "received_percent": 100.0 * received / max(1, sent["published"]),
        "lost_reported": None if lost is None else int(lost),
        "input_rate_hz": float(st.input_rate), "publisher_rate_hz": sent["rate_hz"],
        "publisher_late_frames": sent["late"], "bytes_per_frame": sent["bytes_per_frame"],
        "seconds": seconds, "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--quick", action="store_true", help="4 s per configuration (a smoke run)")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "hd-delivery.json"))
    # publisher mode (the script runs itself as the camera process)
    ap.add_argument("--publish", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--topic", help=argparse.SUPPRESS)
    ap.add_argument("--reliability", default="best_effort", help=argparse.SUPPRESS)
    ap.add_argument("--compressed", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.publish:
        return publish(args)
    if args.quick:
        args.seconds = 4.0
    import ros_harness as H

    if not (H.PY_DIR / "stvg_ros" / "msg" / "__init__.py").is_file():
        print(f"the colcon install {H.INSTALL} is missing: run `make build` first", file=sys.stderr)
        return 2
    H.prepare_process()
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="hd_bench_") as tmp:
        for name in args.configs:
            r = run_config(name, CONFIGS[name], args.seconds, args.width, args.height, args.rate, Path(tmp))
            results.append(r)
            rows.append([name, r["published"], r["received"], f"{r['received_percent']:.1f}",
                         "-" if r["lost_reported"] is None else r["lost_reported"], f"{r['input_rate_hz']:.1f}",
                         f"{r['load_before'][0]:.2f} / {r['load_after'][0]:.2f}"])
            print(f"{name}: {r['received']}/{r['published']} received ({r['received_percent']:.1f} %)", flush=True)
    print(table(["config", "published", "received", "received %", "lost (reported)", "input Hz",
                 "load 1 min before / after"], rows))
    write_json(args.json, {"machine": machine(), "width": args.width, "height": args.height, "rate_hz": args.rate,
                           "seconds": args.seconds, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
