"""Helpers for the ROS tests: find the colcon install, run the installed node, talk DDS to it.

The source tree's ``stvg_ros`` has no ``msg`` (rosidl generates it into the install space): the install
space is on ``sys.path`` (``make test``'s PYTHONPATH, or ``test/conftest.py``), where ``stvg_ros/__init__.py``
finds it; the test process preloads the package's type-support libraries (what ``source
install/setup.bash`` would do through LD_LIBRARY_PATH).  Each test run uses its own ROS_DOMAIN_ID, localhost-only discovery and a unique
namespace, so runs of other engineers on the same machine cannot cross-talk.
"""

from __future__ import annotations

import ctypes
import glob
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import pytest

REPO = Path(__file__).resolve().parent.parent
INSTALL = Path(os.environ.get("STVG_ROS_INSTALL", REPO / ".ws" / "install" / "stvg_ros"))
PY_DIR = INSTALL / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
DOMAIN_ID = int(os.environ.get("STVG_TEST_DOMAIN_ID", 1 + os.getpid() % 100))


def require_ros() -> None:
    """Skip (with the reason) unless rclpy and the colcon-built package are available."""
    try:
        import rclpy  # noqa: F401
    except ImportError as e:
        pytest.skip(f"rclpy is not installed ({e}): run `make setup`")
    if not (PY_DIR / "stvg_ros" / "msg" / "__init__.py").is_file():
        pytest.skip(f"the colcon install space {INSTALL} is missing: run `make setup` (or set STVG_ROS_INSTALL)")
    prepare_process()


_prepared = False


def prepare_process() -> None:
    global _prepared
    if _prepared:
        return
    for lib in sorted(glob.glob(str(INSTALL / "lib" / "lib*.so"))):
        ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    _prepared = True


def node_env(extra: Optional[dict] = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PY_DIR)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["LD_LIBRARY_PATH"] = os.pathsep.join([str(INSTALL / "lib")] +
                                             [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p])
    env["AMENT_PREFIX_PATH"] = os.pathsep.join([str(INSTALL), sys.prefix])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["ROS_DOMAIN_ID"] = str(DOMAIN_ID)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["PYTHONUNBUFFERED"] = "1"
    env["RCUTILS_LOGGING_BUFFERED_STREAM"] = "0"
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra or {})
    return env


_counter = [0]


def unique_namespace() -> str:
    _counter[0] += 1
    return f"/stvg_test_{os.getpid()}_{_counter[0]}"


class NodeProcess:
    """The installed ``stvg_node`` executable in a subprocess, its output in a log file."""

    def __init__(self, namespace: str, params: dict, log_path: Path, params_file: Optional[Path] = None,
                 env: Optional[dict] = None):
        self.namespace = namespace
        self.log_path = log_path
        args = [str(INSTALL / "lib" / "stvg_ros" / "stvg_node"), "--ros-args", "-r", f"__ns:={namespace}"]
        if params_file is not None:
            args += ["--params-file", str(params_file)]
        for k, v in params.items():
            if isinstance(v, bool):
                v = "true" if v else "false"
            args += ["-p", f"{k}:={v}"]
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen([sys.executable] + args, env=node_env(env), stdout=self._log,
                                     stderr=subprocess.STDOUT)

    @property
    def name(self) -> str:
        return f"{self.namespace}/stvg_node"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGINT) -> tuple[int, float]:
        """``sig`` (SIGINT), then wait; returns (exit code, seconds to exit).  Kills after ``timeout``."""
        t0 = time.monotonic()
        if self.alive():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode, time.monotonic() - t0


class Client:
    """A test-side rclpy node in its own context, spun in a background thread."""

    def __init__(self, name: str = "stvg_test_client", namespace: str = "/"):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=DOMAIN_ID)
        self.node = rclpy.create_node(name, namespace=namespace, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - context shut down
            pass

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self.context.try_shutdown()

    def collect(self, msg_type, topic: str, qos=10) -> list:
        box: list = []
        self.node.create_subscription(msg_type, topic, box.append, qos)
        return box

    def call(self, srv_type, name: str, request, timeout: float = 20.0):
        cli = self.node.create_client(srv_type, name)
        if not cli.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {name} not available")
        fut = cli.call_async(request)
        done = threading.Event()
        fut.add_done_callback(lambda f: done.set())
        if not done.wait(timeout):
            raise TimeoutError(f"service {name} did not answer")
        return fut.result()


def wait_for(predicate: Callable[[], object], timeout: float, what: str, node: Optional[NodeProcess] = None,
             step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if node is not None and not node.alive():
            raise AssertionError(f"the node died while waiting for {what}:\n{node.log()[-4000:]}")
        time.sleep(step)
    extra = f"\nnode log:\n{node.log()[-4000:]}" if node is not None else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{extra}")


def last_settled(status: list, timeout: float = 15.0, quiet: float = 1.5):
    """The newest collected ``Status`` once ``frames_received`` has not changed for ``quiet`` s (the last frames
    are through the node's executor), or after ``timeout`` s; None when no status came."""
    last, stable_since, end = None, time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < end:
        cur = status[-1].frames_received if status else None
        if cur != last:
            last, stable_since = cur, time.monotonic()
        elif time.monotonic() - stable_since > quiet:
            break
        time.sleep(0.1)
    return status[-1] if status else None


def wait_ready(status: list, publishers, node: NodeProcess, active_timeout: float = 120.0,
               what: str = "the node's subscriptions") -> None:
    """Wait until the node reports ``active`` on ``status`` and subscribes to each of ``publishers``."""
    wait_for(lambda: status and status[-1].state == "active", active_timeout, "the node to become active", node)
    wait_for(lambda: all(p.get_subscription_count() > 0 for p in publishers), 20, what, node)


def image_msg(stamp_ns: int, width: int = 64, height: int = 48, frame_id: str = "test_cam", seed: int = 0,
              encoding: str = "rgb8"):
    """A sensor_msgs/Image with a moving bright square (deterministic)."""
    import numpy as np
    from sensor_msgs.msg import Image

    from stvg_ros.ros.convert import ns_to_stamp

    img = np.full((height, width, 3), 40, np.uint8)
    x = (seed * 5) % max(1, width - 12)
    img[height // 3:height // 3 + 12, x:x + 12] = (230, 40, 40)
    msg = Image()
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.header.frame_id = frame_id
    msg.height, msg.width, msg.encoding, msg.is_bigendian = height, width, encoding, 0
    msg.step = width * 3
    msg.data = img.tobytes()
    return msg
