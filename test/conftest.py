"""Shared fixtures: tiny random models of each supported family, built once per session."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest

FAMILIES = ("qwen2_5_vl", "llava_onevision", "llava_next_video")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """``tiny_model_dir(family)`` → directory of a saved tiny random model (built once)."""
    from stvg_ros.tiny_models import tiny_model

    cache = {}

    def get(family: str) -> str:
        if family not in cache:
            cache[family] = tiny_model(family, str(tmp_path_factory.mktemp(family)))
        return cache[family]

    return get
