"""Presets and the one precedence (class default < model directory < preset < user), issue 28 item 3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from stvg_ros.config import (MODEL_DEFAULTS_FILE, ConfigError, GroundingConfig, ProposalConfig, ServingConfig,
                             knob_choices, load_model_defaults)
from stvg_ros.adapters.default_model import REPO_MODEL_DIR
from stvg_ros.presets import PRESETS, apply_model_defaults, layered_grounding, param_name, preset_yaml, resolve

ROOT = Path(__file__).resolve().parent.parent
#: what the eval configs set that depends on the dataset (query_format) or the device (dtype, device)
NOT_IN_PRESETS = {"query_format", "dtype", "device"}


@pytest.fixture
def model(tmp_path):
    (tmp_path / MODEL_DEFAULTS_FILE).write_text(json.dumps(
        {"found_threshold": 0.4, "span_rule": "grow", "standing_found_on": 0.7, "standing_found_off": 0.3,
         "standing_confirm": 2}))
    return tmp_path


def test_setting_nothing_gives_todays_configuration():
    """No preset, no model, nothing set: the class defaults; with the shipped model: what the old
    'model defaults under the config' rule gave."""
    r = resolve()
    assert (r.grounding, r.serving, r.proposals) == (GroundingConfig(), ServingConfig(), ProposalConfig())
    assert r.notes == [] and r.sources == {}
    old, _ = apply_model_defaults(GroundingConfig(), load_model_defaults(REPO_MODEL_DIR))
    assert resolve(model_dir=REPO_MODEL_DIR).grounding == old
    from stvg_ros.node_params import NodeSettings

    s = NodeSettings.from_values({}, REPO_MODEL_DIR)
    assert s.grounding == old and s.proposals == ProposalConfig() and s.preset == "default"


def test_a_user_value_equal_to_the_class_default_beats_the_model_directory(model):
    """The bug of issue 28: found_threshold 0.5 set explicitly used to give the model's 0.4."""
    lines = []
    r = resolve({"found_threshold": 0.5}, model_dir=model, log_line=lines.append)
    assert r.grounding.found_threshold == 0.5 and r.grounding.span_rule == "grow"
    assert lines == ["found_threshold: 0.4 from model directory overridden by user: 0.5"]
    assert r.sources["grounding.found_threshold"] == "user" and r.sources["grounding.span_rule"] == "model directory"
    # the library: a dict's keys are the caller's; a plain config's non-default fields are
    cfg, applied = layered_grounding({"found_threshold": 0.5}, load_model_defaults(model))
    assert cfg.found_threshold == 0.5 and applied == {"span_rule": "grow"}
    cfg, applied = layered_grounding(GroundingConfig(), load_model_defaults(model))
    assert cfg.found_threshold == 0.4 and applied == {"found_threshold": 0.4, "span_rule": "grow"}


def test_layers_in_order_with_a_line_for_every_override(model):
    lines = []
    r = resolve({"grounding.span_rule": "topk", "lra_steps": 3}, "official", model, log_line=lines.append)
    g = r.grounding
    assert (g.span_rule, g.lra_steps, g.lra_loss, g.found_threshold) == ("topk", 3, "official", 0.4)
    assert set(lines) == {"grounding.lra_steps: 2 from preset official overridden by user: 3",
                          "grounding.span_rule: 'grow' from preset official overridden by user: 'topk'"}
    # a preset over the model: the official span rule was the model's already (same value: no line)
    assert r.sources["grounding.span_rule"] == "user" and r.sources["grounding.lra_loss"] == "preset official"
    # use_model_defaults false (here from the user) drops the model layer, serving thresholds included
    r = resolve({"grounding": {"use_model_defaults": False}}, None, model)
    assert r.grounding.found_threshold == 0.5 and r.serving == ServingConfig()


def test_the_models_standing_thresholds_go_as_a_whole(model):
    r = resolve({}, None, model)
    assert (r.serving.standing_found_on, r.serving.standing_found_off, r.serving.standing_confirm) == (0.7, 0.3, 2)
    r = resolve({"serving.standing_found_on": 0.6}, None, model)  # one set by the user: none of the model's
    assert (r.serving.standing_found_on, r.serving.standing_found_off, r.serving.standing_confirm) == (0.6, 0.4, 1)
    assert r.grounding.found_threshold == 0.4  # the grounding defaults still apply


def test_names_old_and_new_and_errors():
    r = resolve({"lra_steps": 2, "proposals_tracker": "iou", "proposals.max_tracks": 3, "window_rate": 2})
    assert (r.grounding.lra_steps, r.proposals.tracker, r.proposals.max_tracks, r.serving.window_rate) == \
        (2, "iou", 3, 2.0)
    assert param_name("grounding", "lra_steps") == "grounding.lra_steps"
    assert param_name("grounding", "found_threshold") == "found_threshold"
    assert param_name("proposals", "enabled") == "proposals_enabled"
    with pytest.raises(ConfigError, match="unknown option 'lra_stepz'"):
        resolve({"lra_stepz": 2})
    with pytest.raises(ConfigError, match="choose one of paper, official"):
        resolve({"grounding.lra_loss": "mine"})
    with pytest.raises(ConfigError, match="unknown preset 'quick'.*default, paper, official, fast"):
        resolve({}, "quick")


def test_a_preset_file_is_a_preset(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(preset_yaml("official").replace("lra_steps: 2", "lra_steps: 4"))
    r = resolve({}, str(path))
    assert r.grounding.lra_steps == 4 and r.grounding.span_rule == "grow"
    assert r.sources["grounding.lra_steps"] == "preset mine.yaml"


def _eval_grounding(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())["grounding"]
    base = GroundingConfig()
    return {k: v for k, v in data.items() if k not in NOT_IN_PRESETS and v != getattr(base, k)}


@pytest.mark.parametrize("dataset", ["hcstvg_v1", "hcstvg_v2", "vidstg"])
def test_paper_and_official_presets_are_the_eval_configs(dataset):
    """The presets hold what config/eval/{,official/}*.yaml set, less the dataset's and the device's fields."""
    assert PRESETS["paper"][1]["grounding"] == _eval_grounding(ROOT / "config" / "eval" / f"{dataset}.yaml")
    assert PRESETS["official"][1]["grounding"] == \
        _eval_grounding(ROOT / "config" / "eval" / "official" / f"{dataset}.yaml")
    assert PRESETS["default"][1] == {}  # the node's defaults: no benchmark figure moves


def test_eval_config_with_a_preset_gives_the_same_settings(tmp_path):
    """stvg-eval resolves like the node: preset: official + the dataset's fields = the official config."""
    from stvg_ros.evaluation.evaluate import load_config

    official = ROOT / "config" / "eval" / "official" / "vidstg.yaml"
    data = yaml.safe_load(official.read_text())
    short = {"preset": "official", "eval": data["eval"],
             "grounding": {k: data["grounding"][k] for k in ("query_format", "dtype")}}
    path = tmp_path / "short.yaml"
    path.write_text(yaml.safe_dump(short))
    assert load_config(str(path))[0] == load_config(str(official))[0]
    assert load_config(str(path), "fast")[0].use_lra is False  # --preset wins over the file's


def test_preset_files_are_current():
    for name in PRESETS:
        path = ROOT / "config" / "presets" / f"{name}.yaml"
        assert path.is_file() and path.read_text() == preset_yaml(name), \
            f"{path} is out of date: regenerate with python -m stvg_ros.presets"
        assert resolve({}, str(path)).grounding == resolve({}, name).grounding


def test_choices_are_declared_once_beside_the_field():
    """Validation, the node's parameter descriptions and the CLIs read the choices from the field."""
    from stvg_ros.node_params import config_params
    from stvg_ros.proposals.cli import build_parser

    assert knob_choices(GroundingConfig, "span_rule") == ("topk", "grow")
    with pytest.raises(ConfigError, match="choose one of topk, grow"):
        GroundingConfig(span_rule="mine")
    p = next(p for p in config_params() if p.name == "grounding.span_rule")
    assert p.choices == ("topk", "grow") and "one of: topk, grow" in p.descriptor_text() and p.live
    p = next(p for p in config_params() if p.name == "grounding.dtype")
    assert not p.live and "applied at configure" in p.descriptor_text()
    actions = {a.dest: a.choices for a in build_parser()._actions}
    assert tuple(actions["source"]) == knob_choices(ProposalConfig, "source")
    assert tuple(actions["tracker"]) == knob_choices(ProposalConfig, "tracker")
    # no hand-written list of choices left in the config module's validation
    text = (ROOT / "stvg_ros" / "config.py").read_text()
    assert '"topk", "grow"' in text and text.count('"topk", "grow"') == 1


def test_node_user_params_old_names_and_notes(model):
    """The node's top layer: what the user set, by the name used; old flat names work and are named."""
    from stvg_ros.node_params import UserParams, declared_params

    u = UserParams({"lra_steps": 2, "grounding.span_rule": "topk", "found_threshold": 0.5, "use_sim_time": True,
                    "typo_knob": 1, "qos_overrides./image.subscription.depth": 5})
    declared = [n for n, _, _ in u.to_declare()]
    assert declared[:len(declared_params())] == [p.name for p in declared_params()]
    assert declared[len(declared_params()):] == ["grounding.lra_steps", "grounding.span_rule"]  # current names
    assert [v for n, v, _ in u.to_declare() if n in ("grounding.lra_steps", "found_threshold")] == [0.5, 2]
    s, lines = u.settings()
    assert (s.grounding.lra_steps, s.grounding.span_rule, s.grounding.found_threshold) == (2, "topk", 0.5)
    assert any("lra_steps is now grounding.lra_steps" in x for x in lines)
    assert any("unknown parameter 'typo_knob'" in x for x in lines)
    assert u.settings()[1] == []  # each line once
    u.set({"grounding.lra_steps": 3})  # the newer name, set later, wins
    assert u.settings()[0].grounding.lra_steps == 3
    with pytest.raises(ConfigError, match="unknown parameter 'grounding_lra_steps'"):
        u.settings({"grounding_lra_steps": 1})


def test_the_grounder_keeps_the_layers_of_what_it_is_given(model):
    """The library: a dict set explicitly beats the model's defaults (old code: the model's 0.4 won);
    a resolved config keeps its layers through ``replace`` (a node's live change)."""
    from fake_adapter import FakeAdapter

    from stvg_ros import Grounder

    defaults = load_model_defaults(model)
    g = Grounder(FakeAdapter(), {"found_threshold": 0.5}, model_defaults=defaults)
    assert g.config.found_threshold == 0.5 and g.config.span_rule == "grow"
    assert g.applied_defaults == {"span_rule": "grow"}
    g = Grounder(FakeAdapter(), None, model_defaults=defaults)
    assert g.config.found_threshold == 0.4
    r = resolve({"found_threshold": 0.5}, {"grounding": {"lra_loss": "official"}}, model)  # (4 fake layers)
    g.config = r.grounding.replace(lra_steps=3)
    assert (g.config.found_threshold, g.config.lra_steps, g.config.lra_loss) == (0.5, 3, "official")
    # a config resolved without its model (stvg-eval's): the model's layer goes under its preset and user
    r = resolve({"found_threshold": 0.5}, {"grounding": {"span_rule": "topk"}})
    g.config = r.grounding
    assert (g.config.found_threshold, g.config.span_rule) == (0.5, "topk")
    g.config = resolve({}, None).grounding
    assert (g.config.found_threshold, g.config.span_rule) == (0.4, "grow")
