"""pip installs the ROS-free grounding core and its command-line tools.

`pip install .` gives `import stvg_ros` (Grounder, metrics, datasets, ...) without ROS.  The ROS
node, its messages and launch files are built with colcon (see README, "ROS 2 workspace").
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent

# Command-line tools: one "command = module:function" per line.  Add yours here.
CONSOLE_SCRIPTS = [
    "stvg-tiny-model = stvg_ros.adapters.tiny_models:main",
    "stvg-eval = stvg_ros.evaluation.evaluate:main",
    "stvg-make-bag = stvg_ros.evaluation.bags:main",
    "stvg-proposals = stvg_ros.proposals.cli:main",
    "stvg-calibrate = stvg_ros.evaluation.calibration:main",
]


def requirements() -> list[str]:
    """Core requirements by name (pins live in requirements/core.txt, one per Python where they differ; torch is
    installed apart)."""
    names = []
    for line in (HERE / "requirements" / "core.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name = re.split(r"[=<>!~;\s]", line, maxsplit=1)[0]
            if name != "pytest" and name not in names:
                names.append(name)
    return ["torch>=2.4"] + names


setup(
    name="stvg_ros",
    version="0.1.0",
    description="Zero-shot spatio-temporal video grounding with multimodal LLMs, for ROS 2",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["stvg_ros", "stvg_ros.*"], exclude=["stvg_ros.ros", "stvg_ros.ros.*"]),
    include_package_data=False,
    install_requires=requirements(),
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
