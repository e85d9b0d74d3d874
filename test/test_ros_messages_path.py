"""Python run from the repository root finds the installed messages (issue 28): the source tree's
``stvg_ros`` comes first on ``sys.path`` there, and ``stvg_ros/__init__.py`` (``pkgutil.extend_path``) joins
the install space's copy, which holds rosidl's ``stvg_ros.msg``, to it."""

from __future__ import annotations

import subprocess
import sys

from ros_harness import PY_DIR, REPO, node_env, require_ros

PROBE = ("import stvg_ros, stvg_ros.msg, stvg_ros.action; from stvg_ros.msg import Tube; "
         "from stvg_ros.stream.window import FrameWindow; "
         "print(stvg_ros.stream.window.__file__); print(stvg_ros.msg.__file__); print(type(Tube()).__name__)")


def test_python_from_the_repository_root_imports_the_sources_and_the_installed_messages():
    require_ros()
    env = node_env()  # PYTHONPATH: the install space only; the repository root comes in as the cwd ('')
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    window_file, msg_file, tube = proc.stdout.split()
    assert window_file == str(REPO / "stvg_ros" / "stream" / "window.py")  # the source tree comes first
    assert msg_file.startswith(str(PY_DIR))  # the messages come from the install space
    assert tube == "Tube"
