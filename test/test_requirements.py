"""The pinned requirements give one version of each package on every Python the package supports (3.10-3.12).

Where Humble's Python (3.10) needs other releases than Kilted's and Jazzy's, requirements/*.txt pin both with
``python_version`` markers; a package pinned twice for one Python, or not at all, would make pip fail or pick
silently.  (Whether each pin has a wheel there is scripts/check_requirements.sh's job: it needs the index.)
"""

import importlib.util
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
PYTHONS = ("3.10", "3.11", "3.12")
_spec = importlib.util.spec_from_file_location("requirement_pins", ROOT / "scripts" / "requirement_pins.py")
pins = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pins)
REQ = ROOT / "requirements"


@pytest.mark.parametrize("name", ["core.txt", "test.txt", "torch.txt"])
@pytest.mark.parametrize("python", PYTHONS)
def test_each_package_is_pinned_once_for_each_python(name, python):
    names = {r.name.lower() for r in pins.requirements(REQ / name)}
    active = pins.pins_for(python, REQ / name)
    counts = {n: sum(r.name.lower() == n for r in active) for n in names}
    # tomli is needed only before 3.11 (mypy reads its config with tomllib from 3.11 on)
    missing = [n for n, c in counts.items() if c == 0 and n != "tomli"]
    assert not missing, f"{name}: nothing pinned for Python {python}: {missing}"
    assert all(c <= 1 for c in counts.values()), f"{name}: pinned twice for Python {python}: {counts}"
    assert all(len(r.specifier) == 1 and next(iter(r.specifier)).operator == "==" for r in active), \
        f"{name}: every requirement is an exact pin"


def test_humbles_python_gets_numpy_1_and_an_opencv_built_for_it():
    """Humble's binaries (cv_bridge) were built against NumPy 1 and fail under NumPy 2; OpenCV 5 needs NumPy 2."""
    versions = {r.name.lower(): next(iter(r.specifier)).version for r in pins.pins_for("3.10", REQ / "core.txt")}
    assert versions["numpy"].startswith("1.")
    assert versions["opencv-contrib-python-headless"].startswith("4.")


def test_setup_requires_each_core_package_once():
    import runpy

    import setuptools

    seen = {}
    real = setuptools.setup
    setuptools.setup = lambda **kw: seen.update(kw)
    try:
        runpy.run_path(str(ROOT / "setup.py"))
    finally:
        setuptools.setup = real
    names = [Requirement(r).name.lower() for r in seen["install_requires"]]
    assert len(names) == len(set(names))
    assert set(names) >= {r.name.lower() for r in pins.requirements(REQ / "core.txt")} - {"pytest"}
