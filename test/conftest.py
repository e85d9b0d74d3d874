"""Shared fixtures: tiny random models of each supported family, built once per session."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import sys

import pytest

from ros_harness import PY_DIR

# The colcon install space (its stvg_ros holds the generated messages) for a run that did not put it on
# PYTHONPATH (`make test` does): last on sys.path, before any test imports stvg_ros, whose __init__ then
# finds stvg_ros.msg there.
if PY_DIR.is_dir() and str(PY_DIR) not in sys.path:
    sys.path.append(str(PY_DIR))

FAMILIES = ("qwen2_5_vl", "llava_onevision", "llava_next_video")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """``tiny_model_dir(family)`` → directory of a saved tiny random model (built once)."""
    from stvg_ros.adapters.tiny_models import tiny_model

    cache = {}

    def get(family: str) -> str:
        if family not in cache:
            cache[family] = tiny_model(family, str(tmp_path_factory.mktemp(family)))
        return cache[family]

    return get


# --- test tiers --------------------------------------------------------------------------------------
# Every test gets exactly one tier marker, so `make test-fast` (-m "unit and not slow") and a CI split
# need no list to keep up to date: a test marked `ros`, `model` or `unit` itself (or its module's
# pytestmark) keeps that; else it is `ros` when it (or a fixture it uses) reaches for the ROS harness,
# rclpy or the ROS layer, `model` when it builds or loads a model (the `tiny_model_dir` fixture, a
# tiny model, an adapter, a model directory), and `unit` otherwise.
TIERS = ("ros", "model", "unit")
_ROS_WORDS = ("require_ros", "ros_harness", "rclpy", "stvg_ros.ros", "stvg_ros.msg")
_MODEL_WORDS = ("tiny_model", "load_adapter", "from_pretrained", "default_model", "load_default_grounder",
                "synthetic.train", "tiny_detector")


def _sources(item) -> str:
    """The test function's source and that of every fixture it uses (what decides its tier)."""
    import inspect

    here = os.path.dirname(os.path.abspath(__file__))
    funcs = [getattr(item, "function", None)]
    info = getattr(item, "_fixtureinfo", None)
    for defs in (info.name2fixturedefs.values() if info is not None else ()):
        funcs += [d.func for d in defs]
    out = []
    for f in funcs:
        try:
            if os.path.dirname(os.path.abspath(inspect.getsourcefile(f) or "")) == here:  # ours, not pytest's
                out.append(inspect.getsource(f))
        except (OSError, TypeError):
            pass
    return "\n".join(out)


def tier_of(item) -> str:
    own = [m.name for m in item.iter_markers() if m.name in TIERS]
    if own:
        return own[0]  # the closest marker: the test's own before its module's
    text = _sources(item)
    if any(w in text for w in _ROS_WORDS):
        return "ros"
    if "tiny_model_dir" in getattr(item, "fixturenames", ()) or any(w in text for w in _MODEL_WORDS):
        return "model"
    return "unit"


def pytest_collection_modifyitems(config, items):
    for item in items:
        tier = tier_of(item)
        if not any(m.name == tier for m in item.iter_markers()):
            item.add_marker(getattr(pytest.mark, tier))
