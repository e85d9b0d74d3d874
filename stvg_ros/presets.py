"""Named recipes (presets) and the one precedence every caller resolves its settings by.

A setting comes from four layers, each above the one before::

    class default  <  model directory (grounding_defaults.json)  <  preset  <  what the user set

:func:`resolve` applies them and reports (``log``) every value a later layer overrode, e.g.
``grounding.found_threshold: 0.4 from model directory overridden by user: 0.5``.  The node
(:class:`stvg_ros.node_params.NodeSettings`), ``stvg-eval`` and the library (``Grounder``) all
resolve through it.  Knobs are named ``section.field`` (``grounding.lra_steps``); the few top-level
knobs (``knob(..., top=True)`` in :mod:`stvg_ros.config`) also by their plain node parameter name
(``found_threshold``, ``proposals_enabled``).

Presets are below (:data:`PRESETS`); ``config/presets/<name>.yaml`` shows each one
(``python -m stvg_ros.presets``), and a path to a YAML file of the same form is a preset too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from .config import (MODEL_SERVING_FIELDS, ConfigError, GroundingConfig, ProposalConfig, ProposalConfigError,
                     ServingConfig, _coerce, knob_top, load_model_defaults, load_model_serving_defaults)

log = logging.getLogger(__name__)

#: the sub-configs, by the section name their knobs carry (``grounding.lra_steps``)
SECTIONS: dict[str, type] = {"grounding": GroundingConfig, "serving": ServingConfig, "proposals": ProposalConfig}
#: node parameter prefix of the top-level proposal knobs (``proposals_enabled``)
PROPOSAL_PREFIX = "proposals_"
DEFAULT_PRESET = "default"

#: name → (what it is for, {section: {field: value}}).  ``paper`` and ``official`` are the grounding
#: sections of ``config/eval/*.yaml`` and ``config/eval/official/*.yaml`` without what depends on the
#: dataset (``query_format``) or the device (``dtype``) and without the values equal to the class
#: defaults (test_presets.py checks this against those files).
PRESETS: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {
    "default": ("The class defaults (today's behaviour): each model's own chat template, pooling and answer "
                "tokens; the paper's method (DSTH, LRA one step, TAS, top-K span).", {}),
    "paper": ("The paper's setting of the benchmark runs (config/eval/*.yaml, docs/evaluation.md): the official "
              "pooling (36 tokens per frame), conversation and yes/no ids; set query_format for the dataset.",
              {"grounding": {"visual_tokens": "paper", "sub_query_format": "keep", "prompt_style": "official",
                             "answer_tokens": "official", "frame_fit": "resize"}}),
    "official": ("The official code's choices wherever it makes one (config/eval/official/*.yaml): its layer "
                 "slice, fixed grounding token, margin loss with EMA and 2 steps, sub-query inference, grown span.",
                 {"grounding": {"visual_tokens": "paper", "layers": [-26, -6], "grounding_token": "fixed",
                                "sub_query_format": "keep", "caption_prompt": "please describe this video",
                                "prompt_style": "official", "answer_tokens": "official", "inference_query": "sub",
                                "lra_loss": "official", "lra_steps": 2, "track_score": "cells",
                                "span_rule": "grow", "frame_fit": "resize"}}),
    "fast": ("No LRA and no TAS: one forward pass per question instead of LRA's gradient step and the reversed "
             "clip's pass (the 'base' row of docs/synthetic.md's grounding benchmark; the paper reports both "
             "as gains on real models, so this trades accuracy for latency).",
             {"grounding": {"use_lra": False, "use_tas": False}}),
}

#: the layers, lowest first
MODEL_LAYER, USER_LAYER = "model directory", "user"


def param_name(section: str, name: str) -> str:
    """The node parameter of a knob: its plain name when it is a top-level one (``proposals_`` before a
    proposal knob's), else ``section.name``."""
    if knob_top(SECTIONS[section], name):
        return PROPOSAL_PREFIX + name if section == "proposals" else name
    return f"{section}.{name}"


def _field_names(section: str) -> set[str]:
    return {f.name for f in fields(SECTIONS[section])}


def canonical(name: str) -> Optional[tuple[str, str, bool]]:
    """``(section, field, old)`` for an accepted spelling of a knob, or None: ``section.field``, the plain
    name of a top-level knob, or a pre-preset flat name (``lra_steps``, ``proposals_tracker``: ``old``
    True, still accepted; say :func:`param_name` instead)."""
    if "." in name:
        section, _, f = name.partition(".")
        return (section, f, False) if section in SECTIONS and f in _field_names(section) else None
    if name.startswith(PROPOSAL_PREFIX) and name[len(PROPOSAL_PREFIX):] in _field_names("proposals"):
        f = name[len(PROPOSAL_PREFIX):]
        return "proposals", f, not knob_top(ProposalConfig, f)
    for section in ("grounding", "serving"):
        if name in _field_names(section):
            return section, name, not knob_top(SECTIONS[section], name)
    return None


def _flatten(values: Mapping[str, Any] | None, where: str) -> dict[tuple[str, str], Any]:
    """{(section, field): value} from a mapping of knob names or of ``section: {field: value}``."""
    out: dict[tuple[str, str], Any] = {}
    for key, value in (values or {}).items():
        if key in SECTIONS and isinstance(value, Mapping):
            for f, v in value.items():
                if f not in _field_names(key):
                    raise ConfigError(f"{where}: unknown option {key}.{f}: valid options are "
                                      f"{', '.join(sorted(_field_names(key)))}")
                out[(key, f)] = v
            continue
        c = canonical(key)
        if c is None:
            raise ConfigError(f"{where}: unknown option {key!r}: use a top-level knob or section.field "
                              f"(sections: {', '.join(SECTIONS)})")
        out[c[:2]] = value
    return out


def preset_names() -> list[str]:
    return list(PRESETS)


def load_preset(preset: str | Mapping | None) -> tuple[str, dict[tuple[str, str], Any]]:
    """``(label, values)`` of a preset name, a path to a YAML file of ``section: {field: value}``, or
    such a mapping itself."""
    if preset is None or preset == "":
        preset = DEFAULT_PRESET
    if isinstance(preset, Mapping):
        return "preset", _flatten(preset, "preset")
    if preset in PRESETS:
        return f"preset {preset}", _flatten(PRESETS[preset][1], f"preset {preset}")
    path = Path(preset).expanduser()
    if path.suffix in (".yaml", ".yml") and path.is_file():
        import yaml

        data = yaml.safe_load(path.read_text()) or {}
        data = {k: v for k, v in data.items() if k != "about"}
        return f"preset {path.name}", _flatten(data, str(path))
    raise ConfigError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)} or give the path of a YAML "
                      f"file like config/presets/paper.yaml")


@dataclass
class Resolved:
    """The settings after :func:`resolve`: one config per section, where each non-default value came
    from, and the override lines that were logged."""

    grounding: GroundingConfig
    serving: ServingConfig
    proposals: ProposalConfig
    sources: dict[str, str] = field(default_factory=dict)  # "section.field" → layer, for values not the class's
    notes: list[str] = field(default_factory=list)

    def applied(self, layer: str = MODEL_LAYER, section: str = "grounding") -> dict[str, Any]:
        """The values of ``section`` that ``layer`` gave (e.g. the model directory's)."""
        cfg = getattr(self, section)
        return {k.split(".", 1)[1]: getattr(cfg, k.split(".", 1)[1]) for k, src in self.sources.items()
                if src == layer and k.startswith(section + ".")}


def resolve(user: Mapping[str, Any] | None = None, preset: str | Mapping | None = None,
            model_dir: str | Path | None = None, *, model_defaults: Mapping[str, Any] | None = None,
            model_serving_defaults: Mapping[str, Any] | None = None,
            log_line: Callable[[str], None] | None = None) -> Resolved:
    """The settings from the four layers: class default < model directory < preset < ``user``.

    ``user``: what the user set explicitly (knob names, see :func:`canonical`, or ``section: {...}``);
    ``preset``: a name of :data:`PRESETS` (None: ``default``), a YAML path or a mapping;
    ``model_dir``: a model directory whose ``grounding_defaults.json`` is the model layer (or give its
    values as ``model_defaults`` / ``model_serving_defaults``).  ``grounding.use_model_defaults: false``
    (from the preset or the user) drops the model layer.  The model's standing-query thresholds
    (on, off, confirm) were chosen together: a preset or user that sets any of them drops all three.
    Every value a later layer overrode is passed to ``log_line`` (default: this module's INFO log).
    Invalid values raise :class:`ConfigError` naming the option."""
    label, preset_values = load_preset(preset)
    user_values = _flatten(user, "user")
    upper = {**preset_values, **user_values}
    model: dict[tuple[str, str], Any] = {}
    if upper.get(("grounding", "use_model_defaults"), True):
        if model_dir is not None:
            model_defaults = load_model_defaults(model_dir) if model_defaults is None else model_defaults
            if model_serving_defaults is None:
                model_serving_defaults = load_model_serving_defaults(model_dir)
        model.update({("grounding", k): v for k, v in (model_defaults or {}).items()})
        if not any(("serving", k) in upper for k in MODEL_SERVING_FIELDS):
            model.update({("serving", k): v for k, v in (model_serving_defaults or {}).items()})
    values: dict[tuple[str, str], Any] = {}
    sources: dict[str, str] = {}
    notes: list[str] = []
    for layer, layer_values in ((MODEL_LAYER, model), (label, preset_values), (USER_LAYER, user_values)):
        for key, value in layer_values.items():
            name = f"{key[0]}.{key[1]}"
            if key in values and values[key] != value:
                notes.append(f"{param_name(*key)}: {values[key]!r} from {sources[name]} overridden by {layer}: "
                             f"{value!r}")
            values[key], sources[name] = value, layer
    for line in notes:
        (log_line or log.info)(line)
    configs = {}
    for section, cls in SECTIONS.items():
        mine = {f: v for (s, f), v in values.items() if s == section}
        if section == "grounding" and "layers" in mine and mine["layers"] is not None:
            mine["layers"] = list(mine["layers"])
        prefix = PROPOSAL_PREFIX if section == "proposals" else ""
        err = ProposalConfigError if section == "proposals" else ConfigError
        cfg = cls(**_coerce(cls, mine, err, prefix=prefix))
        cfg._sources = {k.split(".", 1)[1]: v for k, v in sources.items() if k.startswith(section + ".")}
        cfg._with_model = model_dir is not None or model_defaults is not None or model_serving_defaults is not None
        configs[section] = cfg
    return Resolved(**configs, sources=sources, notes=notes)


def layered_grounding(config: GroundingConfig | Mapping | None, model_defaults: Mapping[str, Any] | None,
                      log_line: Callable[[str], None] | None = None) -> tuple[GroundingConfig, dict[str, Any]]:
    """A grounder's config with the model's defaults in their layer (what ``Grounder`` runs on), and the
    model defaults it took.  ``config``: a mapping (its keys are the user's), a config from
    :func:`resolve` (its layers kept; as it is when the model layer was resolved already) or a plain
    :class:`GroundingConfig` (its fields that differ from the class default count as the user's: to set
    a value equal to the default over a model's, pass a mapping or resolve)."""
    if config is not None and not isinstance(config, (GroundingConfig, Mapping)):
        raise TypeError(f"config must be a GroundingConfig or a mapping, not {type(config).__name__}")
    sources = getattr(config, "_sources", None)
    if isinstance(config, GroundingConfig) and getattr(config, "_with_model", False):
        return config, {k: getattr(config, k) for k, src in sources.items() if src == MODEL_LAYER}
    if isinstance(config, GroundingConfig):
        if sources is None:
            base = GroundingConfig()
            sources = {f.name: USER_LAYER for f in fields(config) if getattr(config, f.name) != getattr(base, f.name)}
        preset = {k: getattr(config, k) for k, src in sources.items() if src not in (USER_LAYER, MODEL_LAYER)}
        user = {k: getattr(config, k) for k, src in sources.items() if src == USER_LAYER}
        r = resolve({"grounding": user}, {"grounding": preset}, model_defaults=model_defaults or {},
                    log_line=log_line)
    else:
        r = resolve({"grounding": dict(config or {})}, None, model_defaults=model_defaults or {}, log_line=log_line)
    return r.grounding, r.applied()


def preset_yaml(name: str) -> str:
    """The text of ``config/presets/<name>.yaml`` (generated: ``python -m stvg_ros.presets``)."""
    import textwrap

    import yaml

    about, values = PRESETS[name]
    lines = [f"# Preset '{name}' (generated from stvg_ros/presets.py: python -m stvg_ros.presets).",
             "# Use: the node parameter `preset: " + name + "`, or stvg-eval --preset " + name + "; a copy of this",
             "# file given by path is a preset too.  Its values sit above the model directory's",
             "# grounding_defaults.json and below what you set yourself."]
    lines += ["#"] + [f"# {chunk}" for chunk in textwrap.wrap(about, 96)]
    body = yaml.safe_dump(values, sort_keys=False, default_flow_style=None, width=100).strip() if values else "{}"
    return "\n".join(lines) + "\n" + body + "\n"


if __name__ == "__main__":  # regenerate config/presets/*.yaml
    out = Path(__file__).resolve().parent.parent / "config" / "presets"
    out.mkdir(parents=True, exist_ok=True)
    for preset_name in PRESETS:
        (out / f"{preset_name}.yaml").write_text(preset_yaml(preset_name))
        print(out / f"{preset_name}.yaml")


def apply_model_serving_defaults(config: ServingConfig, defaults: dict[str, Any]) -> tuple[ServingConfig, dict]:
    """``config`` with a model's calibrated standing hysteresis in the model layer under it
    (:func:`stvg_ros.presets.resolve`: as a whole, on, off and confirm were chosen together, and only
    when ``config`` sets none of the three); a config resolved with its model already is returned as is."""
    if getattr(config, "_with_model", False) or not defaults:
        return config, {}
    base = ServingConfig()
    mine = {f.name: getattr(config, f.name) for f in fields(config) if getattr(config, f.name) != getattr(base, f.name)}
    r = resolve({"serving": mine}, model_serving_defaults=defaults)
    applied = {k: v for k, v in r.applied(MODEL_LAYER, "serving").items() if getattr(config, k) != v}
    return (r.serving if applied else config), applied


def apply_model_defaults(config: GroundingConfig, defaults: dict[str, Any]) -> tuple[GroundingConfig, dict[str, Any]]:
    """``config`` with ``defaults`` (a model's) in the model layer under it
    (:func:`stvg_ros.presets.layered_grounding`): a plain config's non-default fields win.

    Returns ``(config, the defaults actually applied)``; nothing is applied when
    ``config.use_model_defaults`` is false."""
    if not defaults or not config.use_model_defaults:
        return config, {}
    cfg, applied = layered_grounding(config, defaults)
    applied = {k: v for k, v in applied.items() if getattr(config, k) != v}
    return (cfg if applied else config), applied
