"""A plain (copying) `colcon build` works too, not only the symlinked one `make setup` uses, and
`colcon test` runs the package's pytest suite.

The package is copied into a fresh workspace, as a user would clone it into ``ws/src``, and built
(with BUILD_TESTING on, as colcon does by default) against the venv as ROS underlay; then the
install space must hold the messages, the action *and* our Python package (our ``__init__`` merged
over rosidl's), the executables, launch, config, demo clip and the default model, which the
installed code must find there (no source tree next to it).  `colcon test` then runs a small
selection of the suite (PYTEST_ADDOPTS, as a user would select) from the copied sources against
that install; a user's plain `colcon test` runs everything.
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

PACKAGE_FILES = ["package.xml", "CMakeLists.txt", "msg", "action", "stvg_ros", "scripts", "launch", "config",
                 "data/demo", "models/stvg-synth-qwen", "test", "pytest.ini", "bench"]  # tests import bench scripts
#: what `colcon test` runs here: a ROS-free test and DDS tests of the installed messages (~10 s)
COLCON_TEST_SELECTION = "-k 'test_ros_markers or test_image_reliability'"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """(workspace, colcon, environment) after a plain `colcon build` of a copy of the package."""
    require_ros()
    tmp_path = tmp_path_factory.mktemp("colcon")
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
    # drop this run's overlay; without the guard the ROS wheels' bootstrap sets LD_LIBRARY_PATH anew
    for outer in ("PYTHONPATH", "LD_LIBRARY_PATH", "_ROS_WHEELS_BOOTSTRAP_COMPLETE", "STVG_ROS_INSTALL",
                  "PYTEST_ADDOPTS"):
        env.pop(outer, None)
    proc = subprocess.run([str(colcon), "build", "--event-handlers", "console_direct-", "--cmake-args",
                           f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=ON"],
                          cwd=tmp_path / "ws", env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return tmp_path / "ws", colcon, env


def test_plain_colcon_build_installs_a_complete_package(workspace):
    ws, _, env = workspace
    tmp_path = ws.parent
    install = ws / "install" / "stvg_ros"
    py = install / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    copied = py / "stvg_ros" / "stream" / "window.py"
    assert copied.is_file() and not copied.is_symlink()  # copied, not linked
    for rel in ["lib/stvg_ros/stvg_node", "lib/stvg_ros/stvg_demo", "share/stvg_ros/launch/stvg.launch.xml",
                "share/stvg_ros/config/stvg.yaml", "share/stvg_ros/data/demo/clip.json",
                "share/stvg_ros/msg/Tube.msg", "share/stvg_ros/action/Ground.action",
                "share/stvg_ros/models/stvg-synth-qwen/model.safetensors"]:
        assert (install / rel).exists(), rel
    assert os.access(install / "lib/stvg_ros/stvg_node", os.X_OK)
    check = ("import stvg_ros, stvg_ros.msg, stvg_ros.ros.node, stvg_ros.stream.window; "
             "from stvg_ros.action import Ground; assert Ground.Result().tube.query_id == ''; "
             "assert stvg_ros.__file__.startswith(%r), stvg_ros.__file__; "
             "assert stvg_ros.__version__; print(stvg_ros.msg.Tube().header); "
             "from stvg_ros.adapters.default_model import choose_model; c = choose_model(''); "
             "assert c.kind == 'synthetic' and c.directory.startswith(%r), c") % (str(py), str(install / "share"))
    run_env = dict(env, PYTHONPATH=str(py),
                   LD_LIBRARY_PATH=os.pathsep.join(filter(None, [str(install / "lib"), env.get("LD_LIBRARY_PATH")])))
    out = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, env=run_env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]


def test_colcon_test_runs_the_pytest_suite(workspace):
    ws, colcon, env = workspace
    env = dict(env, PYTEST_ADDOPTS=COLCON_TEST_SELECTION)
    proc = subprocess.run([str(colcon), "test", "--packages-select", "stvg_ros", "--return-code-on-test-failure",
                           "--event-handlers", "console_direct-"],
                          cwd=ws, env=env, capture_output=True, text=True, timeout=600)
    log = ws / "build" / "stvg_ros" / "ament_cmake_pytest" / "stvg_ros_pytest.txt"
    output = log.read_text(errors="replace") if log.is_file() else proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    result = subprocess.run([str(colcon), "test-result", "--all", "--verbose"], cwd=ws, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr  # non-zero: a test failed
    # the JUnit file ament writes: the selected tests ran (the suite, not an empty test) and passed
    import xml.etree.ElementTree as ET

    xunit = ws / "build" / "stvg_ros" / "test_results" / "stvg_ros" / "stvg_ros_pytest.xunit.xml"
    cases = ET.parse(xunit).getroot().iter("testcase")
    ran = {c.get("name") for c in cases if not any(ch.tag in ("skipped", "failure", "error") for ch in c)}
    assert {"test_newest_box_marker_is_stamped_with_its_frame", "test_image_marker_over_dds",
            "test_image_reliability_accepts_names_and_the_qos_enum_integers"} <= ran, (ran, output[-3000:])
    assert not any(n.startswith("test_colcon_test") for n in ran), "the selection must not recurse"
