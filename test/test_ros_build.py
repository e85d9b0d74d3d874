"""A plain (copying) `colcon build` works too, not only the symlinked one `make setup` uses.

The package is copied into a fresh workspace, as a user would clone it into ``ws/src``, and built
against the venv as ROS underlay; then the install space must hold the messages *and* our Python
package (our ``__init__`` merged over rosidl's), the executables, launch, config, demo clip and the
default model, which the installed code must find there (no source tree next to it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ros_harness import REPO, require_ros

pytestmark = [pytest.mark.ros, pytest.mark.slow]

PACKAGE_FILES = ["package.xml", "CMakeLists.txt", "msg", "stvg_ros", "scripts", "launch", "config", "data/demo",
                 "models/stvg-synth-qwen"]


def test_plain_colcon_build_installs_a_complete_package(tmp_path):
    require_ros()
    venv = Path(sys.prefix)
    colcon = venv / "bin" / "colcon"
    if not colcon.exists():
        pytest.skip("colcon is not installed in this Python environment: run `make setup`")
    src = tmp_path / "ws" / "src" / "stvg_ros"
    for name in PACKAGE_FILES:
        target = src / name
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target)
    env = dict(os.environ, PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
               CMAKE_PREFIX_PATH=str(venv), AMENT_PREFIX_PATH=str(venv))
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([str(colcon), "build", "--event-handlers", "console_direct-", "--cmake-args",
                           f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"],
                          cwd=tmp_path / "ws", env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    install = tmp_path / "ws" / "install" / "stvg_ros"
    py = install / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    assert not (py / "stvg_ros" / "window.py").is_symlink()  # copied, not linked
    for rel in ["lib/stvg_ros/stvg_node", "lib/stvg_ros/stvg_demo", "share/stvg_ros/launch/stvg.launch.xml",
                "share/stvg_ros/config/stvg.yaml", "share/stvg_ros/data/demo/clip.json",
                "share/stvg_ros/msg/Tube.msg", "share/stvg_ros/models/stvg-synth-qwen/model.safetensors"]:
        assert (install / rel).exists(), rel
    assert os.access(install / "lib/stvg_ros/stvg_node", os.X_OK)
    check = ("import stvg_ros, stvg_ros.msg, stvg_ros.ros.node, stvg_ros.window; "
             "assert stvg_ros.__file__.startswith(%r), stvg_ros.__file__; "
             "assert stvg_ros.__version__; print(stvg_ros.msg.Tube().header); "
             "from stvg_ros.default_model import choose_model; c = choose_model(''); "
             "assert c.kind == 'synthetic' and c.directory.startswith(%r), c") % (str(py), str(install / "share"))
    run_env = dict(env, PYTHONPATH=str(py),
                   LD_LIBRARY_PATH=os.pathsep.join(filter(None, [str(install / "lib"), env.get("LD_LIBRARY_PATH")])))
    out = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, env=run_env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
