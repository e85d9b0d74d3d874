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


def _coerce(cls, values: dict[str, Any], error: type[ConfigError], prefix: str = "") -> dict[str, Any]:
    """Check and convert user-given values to the types of ``cls``'s defaults (YAML and ROS
    parameters give ints for floats and the like); unknown names and wrong types raise ``error``
    naming the option as the user wrote it (``prefix`` + field)."""
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise error(f"unknown option(s) {[prefix + u for u in unknown]}: valid options are "
                    f"{', '.join(prefix + n for n in names)}")
    defaults = cls.__new__(cls)
    for f in fields(cls):
        setattr(defaults, f.name, f.default_factory() if f.default is dataclasses.MISSING else f.default)
    kwargs = {}
    for name, v in values.items():
        default = getattr(defaults, name)
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
            elif isinstance(default, dict):
                v = dict(v or {})
            elif isinstance(default, str):
                if not isinstance(v, str):
                    raise TypeError
        except (TypeError, ValueError):
            raise error(f"invalid {prefix}{name}={v!r}: expected a value of type {type(default).__name__}") from None
        kwargs[name] = v
    return kwargs


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

    inference_query: str = "full"
    """What the spatial and temporal grounding prompts ask: 'full' = the whole query with V_s / V_t
    (paper); 'sub' = the attribute sub-query (spatial, TAS) and the action sub-query (temporal), as the
    official code does.  Without DSTH both are the full query."""

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
    """Proposal-free boxes: cells whose relevance is above ``seed - box_threshold * (seed - min)`` of their
    frame and connect to a seed (a relevance peak) form the seed region the segmentation starts from."""
    box_method: str = "auto"
    """Proposal-free boxes: how a seed region becomes an object box. 'auto': region growing on colour when
    it finds one clean region, else GrabCut; 'grabcut'; 'flood' (region growing only); 'cells': the seed's
    token cells themselves (no segmentation, the coarse boxes of earlier versions)."""
    box_seeds: int = 2
    """Proposal-free boxes: relevance peaks per frame that seed a candidate box (linked over time into tracks)."""
    use_model_defaults: bool = True
    """Apply the model directory's grounding_defaults.json to the fields left at their defaults here."""

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
            "inference_query": ("full", "sub"),
            "box_method": ("auto", "grabcut", "flood", "cells"),
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
        if self.box_seeds < 1:
            raise bad("box_seeds", self.box_seeds, "use 1 or more relevance peaks per frame")
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
        return cls(**_coerce(cls, values, ConfigError))

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


# ==============================================================================================
# A model directory's own grounding defaults (what a checkpoint needs: found threshold, layers, ...)
# ==============================================================================================

#: the file beside the weights that holds the GroundingConfig values a checkpoint needs
MODEL_DEFAULTS_FILE = "grounding_defaults.json"


def load_model_defaults(directory: str | Path) -> dict[str, Any]:
    """The GroundingConfig values of ``directory``'s :data:`MODEL_DEFAULTS_FILE` ({} when there is none).

    The file is a JSON object of GroundingConfig fields; keys starting with '_' are comments (e.g.
    ``_about``: how the values were chosen).  Unknown fields or wrong types raise :class:`ConfigError`
    naming the file."""
    import json

    path = Path(directory) / MODEL_DEFAULTS_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError as e:
        raise ConfigError(f"{path} is not valid JSON ({e}): fix or delete it") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object of GroundingConfig fields")
    values = {k: v for k, v in data.items() if not k.startswith("_")}
    try:
        return _coerce(GroundingConfig, values, ConfigError)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def explicit_fields(config: GroundingConfig) -> set[str]:
    """Fields ``config`` sets to something other than GroundingConfig's default: the caller's choices.

    A value equal to the default cannot be told from an unset one (the node passes every parameter),
    so a caller who wants the class default over a model's sets ``use_model_defaults=False``."""
    base = GroundingConfig()
    return {f.name for f in fields(GroundingConfig) if getattr(config, f.name) != getattr(base, f.name)}


def apply_model_defaults(config: GroundingConfig, defaults: dict[str, Any]) -> tuple[GroundingConfig, dict[str, Any]]:
    """``config`` with ``defaults`` (a model's) applied UNDER it: fields the caller set explicitly win.

    Returns ``(config, the defaults actually applied)``; nothing is applied when
    ``config.use_model_defaults`` is false."""
    if not defaults or not config.use_model_defaults:
        return config, {}
    mine = explicit_fields(config)
    applied = {k: v for k, v in defaults.items() if k not in mine and getattr(config, k) != v}
    return (config.replace(**applied) if applied else config), applied


# ==============================================================================================
# The proposal stage (detector + tracker, issue "Proposals on board"): the node declares these as
# ``proposals_<field>`` parameters; YAML files may hold them under a ``proposals:`` key.
# ==============================================================================================

DETECTOR_TYPES = ("auto", "grounding_dino", "owlv2")
TRACKERS = ("bytetrack", "iou")
PROPAGATIONS = ("interpolate", "hold")


class ProposalConfigError(ConfigError):
    """A proposal-stage option is invalid; the message says how to fix it."""


@dataclass
class ProposalConfig:
    enabled: bool = False
    """Run the live stage in the node (off: external detections or the proposal-free path)."""
    detector_path: str = ""
    """Local directory of a transformers zero-shot detector (Grounding DINO, MM-Grounding-DINO, OWLv2)."""
    detector_type: str = "auto"
    """'auto' (from the directory's config.json), 'grounding_dino' (also MM-Grounding-DINO) or 'owlv2'."""
    box_threshold: float = 0.4
    """Minimum box score (paper: 0.4); ByteTrack's high threshold."""
    text_threshold: float = 0.4
    """Grounding DINO: minimum score of the phrase's own tokens (paper: 0.4); unused by OWLv2."""
    low_threshold: float = 0.2
    """ByteTrack's second association stage uses detections between this and ``box_threshold``."""
    nms_iou: float = 0.7
    """Overlapping boxes of one frame above this IoU are merged (1.0 disables)."""
    detect_every: int = 10
    """Offline (and live with rate_hz=0): detection runs on every N-th frame (paper: 10)."""
    rate_hz: float = 3.0
    """Live: detection keyframes per second at most, whatever rate frames arrive at (3 Hz ~ the paper's
    every 10th frame of 30 fps video); 0 = every ``detect_every``-th frame given."""
    batch_size: int = 4
    """Keyframes per detector forward pass when catching up (offline, new phrases)."""
    tracker: str = "bytetrack"
    """'bytetrack' (two-stage association with constant-velocity prediction) or 'iou' (one stage)."""
    match_iou: float = 0.3
    """Minimum IoU between a track's predicted box and a detection to link them."""
    max_center_shift: float = 1.0
    """Last-resort link of an unmatched track and detection whose centres are this many box sizes
    apart at most (similar size); 0 disables it."""
    max_lost: int = 3
    """Keyframes a track may go undetected before it ends."""
    propagation: str = "interpolate"
    """Boxes between keyframes: 'interpolate' linearly or 'hold' the last detection."""
    hold_keyframes: float = 1.0
    """Before its first / after its last detection a track keeps its box for this many keyframe periods."""
    max_tracks: int = 16
    """Tracks offered to the grounder, longest and most confident first (0 = all)."""
    default_class: str = "person"
    """Detector phrase when the query's subject cannot be told (and the live stage's running class)."""
    window_s: float = 30.0
    """Live: seconds of keyframes and tracks kept (match the node's window)."""
    max_phrases: int = 8
    """Live: phrases whose tracks are cached besides the running class (least recently used dropped)."""
    max_backlog: int = 4
    """Live: keyframes the background worker may fall behind before it skips the oldest."""
    query_wait_s: float = 2.0
    """Live: how long a query waits for the background worker to reach its newest frame."""
    device: str = "auto"
    """'auto' (cuda when available), 'cuda', 'cuda:N' or 'cpu'."""
    dtype: str = "auto"
    """'auto' (float32: Grounding DINO loses boxes in half precision), 'float32', 'bfloat16' or 'float16'."""
    synonyms: dict = field(default_factory=dict)
    """Extra head noun → detector class entries (added to the built-in map, e.g. {'guy': 'person'})."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def bad(name: str, value: Any, fix: str) -> ProposalConfigError:
            return ProposalConfigError(f"invalid proposals_{name}={value!r}: {fix}")

        for name, allowed in (("detector_type", DETECTOR_TYPES), ("tracker", TRACKERS),
                              ("propagation", PROPAGATIONS), ("dtype", ("auto", "float32", "bfloat16", "float16"))):
            if getattr(self, name) not in allowed:
                raise bad(name, getattr(self, name), f"choose one of {', '.join(allowed)}")
        for name in ("box_threshold", "text_threshold", "match_iou", "nms_iou"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise bad(name, v, "use a value in [0, 1]")
        if not 0.0 <= self.low_threshold <= self.box_threshold:
            raise bad("low_threshold", self.low_threshold, f"use a value in [0, box_threshold={self.box_threshold}]")
        for name in ("detect_every", "batch_size", "max_backlog"):
            if getattr(self, name) < 1:
                raise bad(name, getattr(self, name), "use 1 or more")
        for name in ("rate_hz", "hold_keyframes", "max_center_shift", "max_lost", "max_tracks", "max_phrases",
                     "query_wait_s"):
            if getattr(self, name) < 0:
                raise bad(name, getattr(self, name), "use 0 or more")
        if self.window_s <= 0:
            raise bad("window_s", self.window_s, "use a positive number of seconds")
        if not self.default_class.strip():
            raise bad("default_class", self.default_class, "name an object class, e.g. 'person'")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise bad("device", self.device, "use auto, cpu, cuda or cuda:N")
        if self.enabled and not self.detector_path:
            raise bad("detector_path", self.detector_path,
                      "set proposals_detector_path to a local detector directory, or proposals_enabled=false")
        if not isinstance(self.synonyms, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.synonyms.items()):
            raise bad("synonyms", self.synonyms, "give a mapping of words to detector classes")

    # ------------------------------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ProposalConfig":
        """Build from a mapping; keys may carry a ``proposals.`` or ``proposals_`` prefix (node parameters)."""
        values = {k[len("proposals."):] if k.startswith(("proposals.", "proposals_")) else k: v
                  for k, v in values.items()}
        return cls(**_coerce(cls, values, ProposalConfigError, prefix="proposals_"))

    @classmethod
    def from_yaml(cls, path: str | Path) -> "ProposalConfig":
        """Fields under a top-level ``proposals:`` key, or ``proposals_*`` keys of a ROS params file."""
        import yaml

        data = yaml.safe_load(Path(path).read_text()) or {}
        if isinstance(data.get("proposals"), dict):
            return cls.from_dict(data["proposals"])
        for value in data.values():
            if isinstance(value, dict) and "ros__parameters" in value:
                params = value["ros__parameters"]
                nested = params.get("proposals")
                if isinstance(nested, dict):
                    return cls.from_dict(nested)
                return cls.from_dict({k: v for k, v in params.items()
                                      if k.startswith(("proposals.", "proposals_"))})
        return cls()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "ProposalConfig":
        return dataclasses.replace(self, **changes)
