"""The default model when no model_path is given (no ROS): the shipped synthetic model first, in the source
tree, then in the share directory, else the tiny random one; and the shipped one loads and grounds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stvg_ros.adapters import default_model as dm


def _fake_model(d: Path) -> Path:
    d.mkdir(parents=True)
    (d / "config.json").write_text("{}")
    return d


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No shipped model anywhere, a private cache, the env var unset."""
    monkeypatch.setattr(dm, "REPO_MODEL_DIR", tmp_path / "repo" / "models" / dm.SYNTHETIC_MODEL_NAME)
    monkeypatch.setattr(dm, "_share_model_dirs", lambda: [tmp_path / "share" / "models" / dm.SYNTHETIC_MODEL_NAME])
    monkeypatch.setenv("STVG_ROS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(dm.DEFAULT_MODEL_ENV, raising=False)
    return tmp_path


def test_source_tree_model_comes_first_then_the_share_directory(isolated):
    share = _fake_model(isolated / "share" / "models" / dm.SYNTHETIC_MODEL_NAME)
    choice = dm.choose_model("")
    assert (choice.directory, choice.kind, choice.meaningless) == (str(share), "synthetic", False)
    repo = _fake_model(isolated / "repo" / "models" / dm.SYNTHETIC_MODEL_NAME)
    assert dm.choose_model("default").directory == str(repo)
    assert dm.resolve_model("") == (str(repo), False)
    assert "synthetic world" in dm.choose_model("").note and "model_path" in dm.choose_model("").note


@pytest.mark.model  # builds the tiny random model
def test_falls_back_to_the_tiny_random_model_when_nothing_is_shipped(isolated):
    choice = dm.choose_model("")
    assert choice.kind == "tiny" and choice.meaningless
    assert Path(choice.directory).parent == isolated / "cache"
    assert (Path(choice.directory) / "config.json").is_file()
    assert choice.note == dm.MEANINGLESS_WARNING and "MEANINGLESS" in choice.note


def test_env_var_forces_the_tiny_model_and_rejects_unknown_values(isolated, monkeypatch):
    _fake_model(isolated / "repo" / "models" / dm.SYNTHETIC_MODEL_NAME)
    monkeypatch.setenv(dm.DEFAULT_MODEL_ENV, "tiny")
    assert dm.choose_model("").kind == "tiny"
    monkeypatch.setenv(dm.DEFAULT_MODEL_ENV, "auto")
    assert dm.choose_model("").kind == "synthetic"
    monkeypatch.setenv(dm.DEFAULT_MODEL_ENV, "big")
    with pytest.raises(ValueError, match="'auto'.*'tiny'"):
        dm.choose_model("")


def test_explicit_path_wins_and_a_missing_one_names_the_fix(isolated):
    explicit = _fake_model(isolated / "mine")
    assert dm.choose_model(str(explicit)) == (str(explicit), "explicit", False)
    assert dm.choose_model(str(explicit)).note == ""
    with pytest.raises(FileNotFoundError, match="not a directory.*'' for the default model"):
        dm.choose_model(str(isolated / "nope"))


def test_the_note_describes_the_world_the_model_was_trained_on():
    from stvg_ros.synthetic import generator as g

    counts = f"{len(g.COLOURS)} colours, {len(g.SHAPES)} shapes, {len(g.SIZES)} sizes, {len(g.ACTIONS)} actions"
    assert counts in dm.SYNTHETIC_NOTE
    pre = json.loads((dm.REPO_MODEL_DIR / "preprocessor_config.json").read_text())
    side = int(round(pre["max_pixels"] ** 0.5))  # the model's square input size
    assert f"{side} px" in dm.SYNTHETIC_NOTE


def test_the_shipped_model_is_the_default_here_and_survives_words_it_never_saw():
    """In this checkout the default is the shipped model; a query outside its vocabulary (<unk> tokens)
    still grounds, and DSTH falls back to the rules when the model's decomposition is unusable."""
    if not (dm.REPO_MODEL_DIR / "config.json").is_file():
        pytest.skip("models/stvg-synth-qwen is not in this checkout")
    from stvg_ros import Grounder
    from stvg_ros.synthetic.generator import generate_sample

    choice = dm.choose_model("")
    assert choice.kind == "synthetic" and Path(choice.directory) == dm.REPO_MODEL_DIR
    grounder = Grounder.from_pretrained(choice.directory, device="cpu")
    query = "the man in the red coat walking to the car"
    ids = grounder.adapter.tokenizer(query)["input_ids"]
    assert grounder.adapter.tokenizer.unk_token_id in ids  # the premise: some words are unknown
    frames, _ = generate_sample(0, "test")
    stamps = [100.0 + i / 5.0 for i in range(len(frames))]
    result = grounder.ground(list(frames), stamps, query)
    assert result.sub_queries.source in ("model", "rules")
    assert result.sub_queries.attribute and result.sub_queries.action
    assert result.boxes and min(result.boxes) >= stamps[0] and max(result.boxes) <= stamps[-1]
    assert 0.0 <= result.p_yes <= 1.0 and np.isfinite(result.score)
