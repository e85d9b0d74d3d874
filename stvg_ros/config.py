"""Every knob of the grounding pipeline, in one typed place, with the paper's defaults.

The ROS node declares one parameter per field (same name) and ``config/stvg.yaml`` documents
them; evaluation commands load the same fields from YAML.  Invalid values raise
:class:`ConfigError` with a message that names the fix.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration value a user set is invalid; the message says how to fix it."""


@dataclass
class GroundingConfig:
    # --- clip -----------------------------------------------------------------------------
    num_frames: int = 20
    """Frames sampled uniformly from the clip given to ``ground`` (paper: 20)."""
    image_size: int = 0
    """Per-frame input resolution in pixels; 0 = the model family's default (LLaVA: 336, Qwen: 224)."""

    # --- attention and grounding tokens ------------------------------------------------------
    layers: list[int] = field(default_factory=list)
    """Decoder layers [first, last) whose attention is averaged; empty = all (paper). Official code: [6, 26]."""
    grounding_token: str = "auto"
    """'auto': per sample the candidate with the highest visual activation (paper's GTI);
    'fixed': the token at ``grounding_token_offset`` (official code); 'mean': average of all
    candidates (the paper's no-GTI baseline)."""
    grounding_token_offset: int = 0
    """With grounding_token='fixed': offset from the prompt's end (-1 = last); 0 = the adapter's default."""
    question_template: str = "Is there {query} in this video?"
    caption_prompt: str = "Describe this video in details."
    relevance_eps: float = 1e-4
    """Added to the caption prompt's attention before dividing (paper: 1e-4)."""

    # --- DSTH -------------------------------------------------------------------------------
    use_dsth: bool = True
    """Decompose the query into attribute (spatial) and action (temporal) sub-queries."""
    decomposer: str = "model"
    """'model': ask the loaded MLLM (few-shot, text only) with rule fallback; 'rules': rules only."""
    decompose_max_new_tokens: int = 48

    # --- LRA --------------------------------------------------------------------------------
    use_lra: bool = True
    lra_loss: str = "paper"
    """'paper': -exp(p_yes - p_no), p the softmax over the yes/no logits, plain gradient steps;
    'official': 1 - (margin_sub - margin_caption), margin = logit_yes - logit_no, with the EMA below."""
    lra_steps: int = 1
    """Gradient steps per latent prompt (paper: 1; official code: 2)."""
    lra_lr: float = 8.0
    lra_beta: float = 0.5
    """EMA factor of the official update (V = beta*V_new + (1-beta)*V_prev); unused by 'paper'."""

    # --- TAS --------------------------------------------------------------------------------
    use_tas: bool = True
    """Assemble the spatial relevance of the original and the time-reversed clip."""

    # --- time span --------------------------------------------------------------------------
    span_rule: str = "topk"
    """'topk': the paper's top-K frames, made contiguous as the K-frame window with the largest total
    score; 'grow': the official code's run grown from the peak towards the higher neighbour."""
    span_topk_fraction: float = 0.35
    """K as a fraction of the frames, rounded half up (paper: 7 of 20)."""
    span_grow_fraction: float = 0.55
    """Maximum run length as a fraction of the frames (official code: 11 of 20)."""

    # --- existence and proposal-free boxes ---------------------------------------------------
    found_threshold: float = 0.5
    """p(yes) / (p(yes) + p(no)) above which the target is judged present."""
    box_threshold: float = 0.5
    """Proposal-free boxes: the peak's connected region of cells whose relevance is above
    ``min + box_threshold * (peak - min)`` of their frame forms the box."""

    # --- runtime ----------------------------------------------------------------------------
    device: str = "auto"
    """'auto' (cuda when available), 'cuda', 'cuda:N' or 'cpu'."""
    dtype: str = "auto"
    """'auto' (bfloat16 on GPU, float32 on CPU), 'float32', 'bfloat16' or 'float16'."""
    keep_relevance: bool = False
    """Keep the relevance maps in the result (for rendering and reports)."""
    max_batch: int = 0
    """Most prompts per forward pass (LRA steps and attention runs); 0 = all in one pass.
    Lower it when GPU memory is short: results are the same, only slower."""

    # ------------------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def bad(name: str, value: Any, fix: str) -> ConfigError:
            return ConfigError(f"invalid {name}={value!r}: {fix}")

        if self.num_frames < 2:
            raise bad("num_frames", self.num_frames, "use at least 2 frames (the paper uses 20)")
        if self.image_size < 0:
            raise bad("image_size", self.image_size, "use 0 for the model's default or a positive pixel size")
        if self.layers and (len(self.layers) != 2 or self.layers[0] < 0 or self.layers[1] <= self.layers[0]):
            raise bad("layers", self.layers, "give [first, last) with 0 <= first < last, or [] for all layers")
        choices = {
            "grounding_token": ("auto", "fixed", "mean"),
            "decomposer": ("model", "rules"),
            "lra_loss": ("paper", "official"),
            "span_rule": ("topk", "grow"),
            "dtype": ("auto", "float32", "bfloat16", "float16"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise bad(name, getattr(self, name), f"choose one of {', '.join(allowed)}")
        if "{query}" not in self.question_template:
            raise bad("question_template", self.question_template, "it must contain the placeholder {query}")
        try:
            self.question_template.format(query="x")
        except (KeyError, IndexError, ValueError):
            raise bad("question_template", self.question_template,
                      "use {query} as its only placeholder (write other braces as {{ and }})") from None
        if self.max_batch < 0:
            raise bad("max_batch", self.max_batch, "use 0 (one pass for all prompts) or a positive batch size")
        if self.relevance_eps <= 0:
            raise bad("relevance_eps", self.relevance_eps, "use a small positive value (the paper uses 1e-4)")
        if self.lra_lr <= 0:
            raise bad("lra_lr", self.lra_lr, "use a positive learning rate (the paper uses 8.0)")
        if self.decompose_max_new_tokens < 8:
            raise bad("decompose_max_new_tokens", self.decompose_max_new_tokens,
                      "use at least 8 tokens so the model can answer two lines")
        if not self.caption_prompt.strip():
            raise bad("caption_prompt", self.caption_prompt, "give a captioning prompt, e.g. 'Describe this video in details.'")
        if self.lra_steps < 0:
            raise bad("lra_steps", self.lra_steps, "use 0 or more steps")
        if not 0.0 <= self.lra_beta <= 1.0:
            raise bad("lra_beta", self.lra_beta, "use a value in [0, 1]")
        for name in ("span_topk_fraction", "span_grow_fraction", "found_threshold", "box_threshold"):
            v = getattr(self, name)
            if not 0.0 < v <= 1.0:
                raise bad(name, v, "use a value in (0, 1]")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise bad("device", self.device, "use auto, cpu, cuda or cuda:N")

    # ------------------------------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "GroundingConfig":
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ConfigError(
                f"unknown grounding option(s) {unknown}: valid options are {', '.join(cls.field_names())}")
        kwargs = {}
        for f in fields(cls):
            if f.name not in values:
                continue
            v = values[f.name]
            default = getattr(cls(), f.name)
            try:
                if isinstance(default, bool):
                    if not isinstance(v, bool):
                        raise TypeError
                elif isinstance(default, int):
                    if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
                        raise TypeError
                    v = int(v)
                elif isinstance(default, float):
                    if isinstance(v, bool):
                        raise TypeError
                    v = float(v)
                elif isinstance(default, list):
                    v = [int(x) for x in v]
                elif isinstance(default, str):
                    if not isinstance(v, str):
                        raise TypeError
            except (TypeError, ValueError):
                raise ConfigError(
                    f"invalid {f.name}={v!r}: expected a value of type {type(default).__name__}") from None
            kwargs[f.name] = v
        return cls(**kwargs)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "GroundingConfig":
        """Read the fields from a YAML file: either flat, or under ``grounding:`` /
        a ROS params file's ``<node>: ros__parameters:`` (other keys there are ignored)."""
        import yaml

        data = yaml.safe_load(Path(path).read_text()) or {}
        if "grounding" in data:
            data = data["grounding"]
        else:
            for value in data.values():
                if isinstance(value, dict) and "ros__parameters" in value:
                    params = value["ros__parameters"]
                    data = {k: v for k, v in params.items() if k in cls.field_names()}
                    break
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "GroundingConfig":
        return dataclasses.replace(self, **changes)
