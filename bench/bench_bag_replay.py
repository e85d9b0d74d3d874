#!/usr/bin/env python3
"""How many frames of a real bag reach the node when ``stvg_play_bag`` replays it, and the player's
memory (issue 29, item 1).

The real clip ``test/data/real/vtest.avi`` (768x576, 10 fps, 795 frames) is written to a bag of raw
``sensor_msgs/Image`` frames with the ``rosbags`` library (``stvg_ros.evaluation.bags.write_bag``); the installed
``stvg_node`` (``.ws/`` of this tree, shipped default model) runs with the parameters given, the
installed player (``python -m stvg_ros.ros.bag_player``) replays the bag into it at the recorded
speed as a separate process, and the node's own ``Status`` says how many frames arrived
(``frames_received``) and how many the middleware reported lost.  The player's peak RSS comes from
the kernel (``wait4``'s ``ru_maxrss``).  Each configuration names the environment of the processes
(``node_env`` / ``player_env``: a Fast DDS profile) and the node's parameters::

    python bench/bench_bag_replay.py                         # the defaults, the whole clip
    python bench/bench_bag_replay.py --frames 300 --configs defaults node_reliable
    python bench/bench_bag_replay.py --sigint                # also: Ctrl-C in a looping player, its exit code

Prints a table and writes JSON (default ``bench/results/bag-replay.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # `bench` (after the installed stvg_ros with its messages)
sys.path.insert(0, str(ROOT / "test"))

from bench._util import machine, table, write_json  # noqa: E402

CLIP = ROOT / "test" / "data" / "real" / "vtest.avi"
SHM = {k: str(ROOT / "config" / "fastdds_shm.xml") for k in ("FASTDDS_DEFAULT_PROFILES_FILE",
                                                              "FASTRTPS_DEFAULT_PROFILES_FILE")}
NO_PROFILE = {"STVG_PLAYER_ARGS": "--profile none"}  # the player's own default profile off (where it has one)

CONFIGS = {
    "defaults": dict(node={}, node_env={}, player_env={}),
    "player_without_profile": dict(node={}, node_env={}, player_env=NO_PROFILE),
    "node_reliable": dict(node={"image_reliability": "reliable"}, node_env={}, player_env=NO_PROFILE),
    "node_depth5": dict(node={"image_depth": 5}, node_env={}, player_env={}),
    "shm_player_only": dict(node={}, node_env={}, player_env=SHM),
    "shm_player_node_depth20": dict(node={"image_depth": 20}, node_env={}, player_env=SHM),
    "shm_both": dict(node={}, node_env=SHM, player_env=SHM),
}


def make_bag(frames: int, out: Path) -> Path:
    from stvg_ros.evaluation import bags

    stamps = [bags.DEFAULT_START_TIME + i / 10.0 for i in range(frames)]
    return bags.write_bag(out, bags.video_stream(CLIP, count=frames), stamps, image_format="raw", storage="sqlite3")


def run_player(bag: Path, topic: str, env_extra: dict, extra_args=(), interrupt_after: float = 0.0,
               timeout: float = 600.0) -> dict:
    import ros_harness as H

    env_extra = dict(env_extra)
    extra_args = [*env_extra.pop("STVG_PLAYER_ARGS", "").split(), *extra_args]
    cmd = [sys.executable, "-m", "stvg_ros.ros.bag_player", str(bag), "--remap", f"/camera/image_raw:={topic}",
           "--wait-timeout", "30", *extra_args]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=H.node_env(env_extra), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            cwd=tempfile.gettempdir())
    if interrupt_after:
        time.sleep(interrupt_after)
        proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pid, status, usage = os.wait4(proc.pid, 0)
    out = proc.stdout.read().decode(errors="replace")
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"rc": proc.returncode, "peak_rss_mb": usage.ru_maxrss / 1024.0, "wall_s": time.monotonic() - t0,
            "traceback": "Traceback" in out, "tail": out.strip().splitlines()[-1:] if out.strip() else []}


def run_config(name: str, cfg: dict, bag: Path, frames: int, workdir: Path) -> dict:
    import ros_harness as H

    ns = f"/bag_{os.getpid()}_{name}"
    saved = {k: os.environ.get(k) for k in cfg["node_env"]}
    os.environ.update(cfg["node_env"])  # the node inherits it (node_env copies os.environ)
    try:
        node = H.NodeProcess(ns, {"device": "cpu", "status_rate": 4.0, "publish_debug_image": False,
                                  **cfg["node"]}, workdir / f"node-{name}.log")
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    client = None
    load_before = os.getloadavg()
    try:
        from stvg_ros.msg import Status

        client = H.Client(f"bag_bench_{name}")
        statuses = client.collect(Status, f"{ns}/status", 10)
        H.wait_for(lambda: statuses and statuses[-1].state == "active", 180, "the node to become active", node)
        player = run_player(bag, f"{ns}/image", cfg["player_env"])
        st = H.last_settled(statuses)
    finally:
        if client is not None:
            client.close()
        node.stop()
    loss_lines = sum("lost on" in line for line in node.log().splitlines())  # warnings about lost frames
    return {"config": name, "frames": frames, "received": int(st.frames_received),
            "received_percent": 100.0 * int(st.frames_received) / frames, "lost_reported": int(st.frames_lost),
            "kept_rate_hz": round(float(st.kept_rate), 2), "player_rc": player["rc"],
            "player_peak_rss_mb": round(player["peak_rss_mb"], 1), "player_wall_s": round(player["wall_s"], 1),
            "node_loss_log_lines": loss_lines, "last_warning": st.last_warning, "player_says": player["tail"], "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=795, help="first N frames of the clip (795 = all)")
    ap.add_argument("--configs", nargs="*", default=["defaults"], choices=sorted(CONFIGS))
    ap.add_argument("--sigint", action="store_true", help="also Ctrl-C a looping player after 3 s (exit code)")
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "bag-replay.json"))
    a = ap.parse_args(argv)
    import ros_harness as H

    H.prepare_process()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        bag = make_bag(a.frames, Path(tmp) / "vtest_raw")
        size_mb = sum(f.stat().st_size for f in bag.rglob("*") if f.is_file()) / 2 ** 20
        print(f"bag: {a.frames} frames of {CLIP.name}, raw 768x576 rgb8, {size_mb:.0f} MiB", flush=True)
        for name in a.configs:
            rows.append(run_config(name, CONFIGS[name], bag, a.frames, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
        sigint = None
        if a.sigint:
            r = run_player(bag, f"/bag_{os.getpid()}_nobody/image", {}, ["--loop", "--wait-timeout", "0"],
                           interrupt_after=3.0, timeout=30)
            sigint = {"rc": r["rc"], "traceback": r["traceback"], "says": r["tail"]}
            print("Ctrl-C in a looping player:", json.dumps(sigint), flush=True)
    cols = ["config", "frames", "received", "received_percent", "lost_reported", "player_peak_rss_mb", "player_rc"]
    print(table(cols, [[r[c] if not isinstance(r[c], float) else round(r[c], 1) for c in cols] for r in rows]))
    write_json(a.json, {"machine": machine(), "bag_mib": round(size_mb, 1), "rows": rows, "sigint": sigint})
    return 0


if __name__ == "__main__":
    sys.exit(main())
