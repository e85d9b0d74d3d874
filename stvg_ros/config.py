"""Every knob of the grounding pipeline, in one typed place, with the paper's defaults.

Each field's facts (choices, live or not, top-level or not) are declared beside it (:func:`knob`),
its doc is the string after it; the node's parameters, ``config/stvg.yaml`` and the checks derive
from them.  :mod:`stvg_ros.presets` layers the values (class default < model directory < preset <
user).  Invalid values raise :class:`ConfigError` with a message that names the fix.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar


class ConfigError(ValueError):
    """A configuration value a user set is invalid; the message says how to fix it."""


def knob(default: Any, *, choices: tuple = (), live: bool | None = None, top: bool = False) -> Any:
    """A config field with its facts, declared once beside it (its doc is the string literal after it):
    ``choices`` (the values allowed; checked by ``validate``, listed by the node's parameters, the
    generated ``config/stvg.yaml`` and the CLIs), ``live`` (a running node applies a change at once;
    default: the class's ``LIVE_BY_DEFAULT``) and ``top`` (one of the few knobs a user turns: a plain node
    parameter; the rest are ``grounding.*`` / ``serving.*`` / ``proposals.*``, :mod:`stvg_ros.presets`)."""
    meta = {"choices": tuple(choices), "top": top, **({} if live is None else {"live": live})}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def knob_choices(cls, name: str) -> tuple:
    """The values ``cls``'s field ``name`` allows (() = any of its type)."""
    return next(f.metadata.get("choices", ()) for f in fields(cls) if f.name == name)


def knob_live(cls, name: str) -> bool:
    """Whether a running node applies a change of ``cls``'s field ``name`` at once."""
    f = next(f for f in fields(cls) if f.name == name)
    return f.metadata.get("live", getattr(cls, "LIVE_BY_DEFAULT", True))


def knob_top(cls, name: str) -> bool:
    """Whether ``cls``'s field ``name`` is one of the few top-level knobs."""
    return next(f.metadata.get("top", False) for f in fields(cls) if f.name == name)


def knob_doc(cls, name: str) -> str:
    """The one-paragraph doc of ``cls``'s field ``name``: the string literal right after it."""
    return _attribute_docs(cls).get(name, "")


def _attribute_docs(cls) -> dict[str, str]:
    import ast
    import inspect

    cached = cls.__dict__.get("_knob_docs")
    if cached is not None:
        return cached
    docs: dict[str, str] = {}
    try:
        body = ast.parse(inspect.getsource(cls).lstrip()).body[0].body  # type: ignore[attr-defined]
    except (OSError, TypeError, SyntaxError):
        body = []
    for stmt, nxt in zip(body, body[1:] + [None]):
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and isinstance(nxt, ast.Expr) \
                and isinstance(getattr(nxt, "value", None), ast.Constant) and isinstance(nxt.value.value, str):
            docs[stmt.target.id] = " ".join(nxt.value.value.split())
    cls._knob_docs = docs
    return docs


def _check_choices(config, bad) -> None:
    """Raise ``bad(name, value, fix)`` for the first field whose value is not one of its declared choices."""
    for f in fields(config):
        allowed = f.metadata.get("choices")
        if allowed and getattr(config, f.name) not in allowed:
            raise bad(f.name, getattr(config, f.name), f"choose one of {', '.join(allowed)}")


def _replace(config, changes: dict[str, Any]):
    """``dataclasses.replace`` that keeps where a resolved config's values came from (``_sources``,
    :func:`stvg_ros.presets.resolve`): the changed fields are the caller's."""
    new = dataclasses.replace(config, **changes)
    sources = getattr(config, "_sources", None)
    if sources is not None:
        new._sources = {**sources, **{k: "user" for k in changes}}
        new._with_model = getattr(config, "_with_model", False)
    return new


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
    num_frames: int = knob(20, top=True)
    """Frames sampled uniformly from the clip given to ``ground`` (paper: 20)."""
    image_size: int = knob(0, live=False)
    """Per-frame input resolution in pixels; 0 = the model family's default (LLaVA: the vision tower's
    input, 336 for NeXT-Video and 384 for OneVision; Qwen: an area of 224², aspect kept)."""
    frame_resize: str = knob("fixed", choices=("fixed", "processor", "fine"))
    """'fixed': frames resized to ``image_size`` as above; 'processor': to the size the model's own
    processor would pick (Qwen: smart_resize within its min/max pixels, 640x480 → 644x476, 6x more
    tokens than 224); 'fine': a token grid fine enough for a person on a real frame at any camera resolution
    (Qwen: about 560² pixels, 23x17 tokens at 4:3, 3,910 visual tokens per 20 frames against 630 at 224; LLaVA:
    each frame cut into 2x2 tiles of the tower's size, 24x24 / 28x28 tokens, 11,520 / 15,681 per 20 frames against
    2,880 / 3,921, past LLaVA-NeXT-Video-7B's 4,096 positions beyond 7 frames; box IoU on the real clips in
    bench/README.md); 'processor' is 'fixed' on LLaVA's towers of one square size."""
    frame_fit: str = knob("short", choices=("resize", "pad", "short"))
    """A frame whose aspect is not the tower input's (a 4:3 or 16:9 camera): 'short' (Qwen) gives its short side
    the input side and the long side more tokens (LLaVA: as 'resize'); 'resize' stretches it to the input
    (LLaVA's square; Qwen's aspect rounded to 28 px cells: the paper configs); 'pad' letterboxes it (aspect
    kept). Boxes are in the frame's pixels either way; square frames give the same tokens under all three.
    Chosen on the synthetic val split (docs/evaluation.md, "Camera-shaped frames")."""
    visual_tokens: str = knob("model", choices=("model", "paper"))
    """'model': visual tokens as transformers computes them (LLaVA-NeXT-Video 144 per frame,
    LLaVA-OneVision 196 per frame + 1 newline); 'paper': the official code's pooling (both 36 per frame,
    6x6; OneVision keeps its newline).  Qwen: the same either way.  See docs/evaluation.md for the cost."""

    # --- attention and grounding tokens ------------------------------------------------------
    layers: list[int] = knob([], live=False)
    """Decoder layers [first, last) whose attention is averaged, as a Python slice of the model's layers
    (negative = counted from the end); empty = all (paper). Official code: [-26, -6] (layers 6-25 of a
    32-layer model, 2-21 of a 28-layer one)."""
    grounding_token: str = knob("auto", choices=("auto", "fixed", "mean"))
    """'auto': per sample the candidate with the highest visual activation (paper's GTI);
    'fixed': the token at ``grounding_token_offset`` (official code); 'mean': average of all
    candidates (the paper's no-GTI baseline)."""
    grounding_token_offset: int = 0
    """With grounding_token='fixed': offset from the prompt's end (-1 = last); 0 = the adapter's default."""
    question_template: str = "Is there {query} in this video?"
    """Question asked about the clip; {query} is replaced by the query (paper's template)."""
    query_format: str = knob("article", choices=("article", "lower", "words"))
    """How the query is written into ``{query}`` (trailing period and extra spaces dropped in every case):
    'article': a leading article lower-cased; 'lower': the whole sentence lower-cased (the official
    HC-STVG loader); 'words': lower-cased words with punctuation dropped (the official VidSTG loader)."""
    sub_query_format: str = knob("query", choices=("query", "keep", "article", "lower", "words"))
    """How DSTH's sub-queries are written into ``{query}``: 'query' = as ``query_format``; 'keep': as given
    (trailing period and extra spaces dropped; the official code, whose loaders format only the full
    sentence); or one of ``query_format``'s values.  A half equal to the full query is always written as it."""
    caption_prompt: str = "Describe this video in details."
    """The caption prompt whose attention divides the question's (paper; official code:
    'please describe this video')."""
    prompt_style: str = knob("template", choices=("template", "official"))
    """'template': prompts in the model's own chat template; 'official': the official code's conversation
    (LLaVA-NeXT-Video: the vicuna_v1 system prompt; LLaVA-OneVision: qwen_1_5's; Qwen: its own template)."""
    answer_tokens: str = "auto"
    """The yes/no answer ids read by the existence judgment and LRA: 'auto' = 'Yes'/'No' as the tokenizer
    encodes them (lowercase if those are not single tokens); 'official' = the vocabulary pieces 'yes'/'no'
    (the official code's ids, e.g. 9693/2152 on Qwen2 vocabularies); or two pieces 'YES,NO' as written in
    the vocabulary."""
    relevance_eps: float = 1e-4
    """Added to the caption prompt's attention before dividing (paper: 1e-4), at ``relevance_eps_tokens``
    visual tokens."""
    relevance_eps_tokens: int = 0
    """Visual token count at which ``relevance_eps`` applies as given; at N grid tokens the grounder uses
    ``relevance_eps * relevance_eps_tokens / N``, so eps stays the same fraction of the mean per-token
    attention at any frame size or pooling (720 = the paper's 20 frames x 36 tokens; e.g. 0.25x eps at
    LLaVA-NeXT-Video's 2,880 tokens); 0 = no scaling (the default: the shipped model's settings were
    chosen on validation with eps as given)."""

    # --- DSTH -------------------------------------------------------------------------------
    use_dsth: bool = True
    """Decompose the query into attribute (spatial) and action (temporal) sub-queries."""
    decomposer: str = knob("model", choices=("model", "rules"), live=False)
    """'model': ask the loaded MLLM (few-shot, text only) with rule fallback; 'rules': rules only."""
    decompose_max_new_tokens: int = knob(48, live=False)
    """Most tokens the model may generate when decomposing a query (DSTH)."""

    inference_query: str = knob("full", choices=("full", "sub"))
    """What the spatial and temporal grounding prompts ask: 'full' = the whole query with V_s / V_t
    (paper); 'sub' = the attribute sub-query (spatial, TAS) and the action sub-query (temporal), as the
    official code does.  Without DSTH both are the full query."""

    # --- LRA --------------------------------------------------------------------------------
    use_lra: bool = knob(True, top=True)
    """Optimise the latent visual prompts V_s and V_t (logit-guided re-attention) before attending."""
    lra_loss: str = knob("paper", choices=("paper", "official"))
    """'paper': -exp(p_yes - p_no), p the softmax over the yes/no logits, plain gradient steps;
    'official': 1 - (margin_sub - margin_caption), margin = logit_yes - logit_no, with the EMA below."""
    lra_steps: int = 1
    """Gradient steps per latent prompt (paper: 1; official code: 2)."""
    lra_lr: float = 8.0
    """Learning rate of the latent prompts' gradient steps (paper: 8.0)."""
    lra_beta: float = 0.5
    """EMA factor of the official update (V = beta*V_new + (1-beta)*V_prev); unused by 'paper'."""

    # --- TAS --------------------------------------------------------------------------------
    use_tas: bool = True
    """Assemble the spatial relevance of the original and the time-reversed clip."""

    # --- time span --------------------------------------------------------------------------
    span_rule: str = knob("topk", choices=("topk", "grow"))
    """'topk': the paper's top-K frames, made contiguous as the K-frame window with the largest total
    score; 'grow': the official code's run grown from the peak towards the higher neighbour."""
    span_topk_fraction: float = 0.35
    """K as a fraction of the frames, rounded half up (paper: 7 of 20)."""
    span_grow_fraction: float = 0.55
    """Maximum run length as a fraction of the frames (official code: 11 of 20)."""
    tube_frames: str = knob("refine", choices=("sampled", "all", "refine"))
    """When ground() is given more frames than num_frames (a live window at camera rate): 'sampled' =
    span ends and boxes on the sampled frames only (the paper's); 'all' = a box on every given frame of
    the span; 'refine' = 'all', and the span is chosen on the temporal scores of the sampled frames and
    of a second pass (same prompt and latent prompt, num_frames frames) on the frames halfway between
    them, so its ends move in half steps (docs/synthetic.md, "Long windows")."""

    # --- existence and proposal-free boxes ---------------------------------------------------
    found_threshold: float = knob(0.5, top=True)
    """p(yes) / (p(yes) + p(no)) above which the target is judged present."""
    track_score: str = knob("max", choices=("max", "cells"))
    """How a track is scored on the spatial map: 'max' = the maximum of the map upsampled to the frame inside
    its boxes over all sampled frames (the paper's "max inside its mask"); 'cells' = the official code's: the
    token-grid map times each box's mask resized bilinearly to the grid (cells weighted by how much of their
    centre the box covers), maximum over frames and cells."""
    box_threshold: float = 0.5
    """Proposal-free boxes: cells whose relevance is above ``seed - box_threshold * (seed - min)`` of their
    frame and connect to a seed (a relevance peak) form the seed region the segmentation starts from."""
    box_method: str = knob("auto", choices=("auto", "grabcut", "flood", "cells"))
    """Proposal-free boxes: how a seed region becomes an object box. 'auto': region growing on colour when
    it finds one clean region (on token grids of >= 12 cells, with the object's touching parts), else GrabCut;
    'grabcut'; 'flood' (region growing only); 'cells': the seed's token cells themselves (no segmentation, the
    coarse boxes of earlier versions)."""
    box_seeds: int = 2
    """Proposal-free boxes: relevance peaks per frame that seed a candidate box (linked over time into tracks)."""
    box_grabcut_iterations: int = 2
    """Proposal-free boxes: GrabCut's iterations per seed.  It runs on every sampled frame at every query, the
    largest CPU cost of a query whose passes are cached; 2 fit as well as 4 on the synthetic val split and the
    photo boxes at ~60 % of the cost (docs/proposals.md)."""
    box_grabcut_chain: int = 10
    """Proposal-free boxes: consecutive sampled frames whose GrabCuts carry their colour models from frame to
    frame: the first cut of a run starts from k-means and runs ``box_grabcut_iterations``, the next ones run one
    graph cut with the previous frame's models (about a fifth of the CPU; docs/proposals.md).  1: every cut cold;
    10 (was 4, issue 26): two runs per 20-frame query, one per core where two are free."""
    box_overlap: bool = True
    """Proposal-free boxes: segment them on a worker thread as soon as the spatial maps are read (the spatial and
    TAS prompts run in a pass of their own), while the temporal and existence prompts and, on a window longer than
    ``num_frames`` (``tube_frames: refine``), the refine pass run, none of which needs a box: the box stage is off
    the query's critical path where a core or a GPU is free.  The result is the same; False runs one after the
    other (the attention prompts in one pass)."""
    use_model_defaults: bool = True
    """Take the model directory's grounding_defaults.json as a layer (under the preset and what the user
    set, :func:`stvg_ros.presets.resolve`); false: ignore the file."""

    # --- runtime ----------------------------------------------------------------------------
    device: str = knob("auto", top=True, live=False)
    """'auto' (cuda when available), 'cuda', 'cuda:N' or 'cpu'."""
    dtype: str = knob("auto", choices=("auto", "float32", "bfloat16", "float16"), live=False)
    """'auto' (bfloat16 on GPU, float32 on CPU), 'float32', 'bfloat16' or 'float16'."""
    keep_relevance: bool = False
    """Keep the relevance maps in the result (for rendering and reports)."""
    max_batch: int = 0
    """Most prompts per forward pass (LRA steps and attention runs); 0 = all in one pass.
    Lower it when GPU memory is short: results are the same, only slower."""
    reuse_passes: bool = True
    """Compute once what several stages share: LRA's first step runs each clip's zero-latent prefix once for
    all its problems and answers the existence question on it (where the model's template puts the video
    before the question; otherwise there is no clip prefix and the step runs as without it).  Results agree
    within float32 rounding (other batch shapes); False computes every pass on its own (for checks and
    benchmarks)."""
    feature_cache_mb: float = 256.0
    """Memory (MiB) for what queries about a stream share (``stvg_ros.adapters.feature_cache``; used when the caller
    names its frames, as the node does): frames' preprocessed pixels and visual tokens, and, while the
    sampled frames stay the same, each clip's prefix (KV cache, at most half of this) and its caption
    prompt's answer.  Results are identical with or without it.  0 = off."""

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
        if self.layers:
            first, last = (self.layers + [0, 0])[:2]
            if len(self.layers) != 2 or ((first < 0) == (last < 0) and last <= first) or (first < 0 <= last == 0):
                raise bad("layers", self.layers, "give [first, last) as a slice of the decoder layers, e.g. [6, 26] "
                          "or [-26, -6] (negative = from the end), first before last, or [] for all layers")
        if self.relevance_eps_tokens < 0:
            raise bad("relevance_eps_tokens", self.relevance_eps_tokens,
                      "use 0 (no scaling) or the visual token count relevance_eps is meant for (paper: 720)")
        answer = self.answer_tokens
        if answer not in ("auto", "official") and (answer.count(",") != 1 or not all(
                p.strip() for p in answer.split(","))):
            raise bad("answer_tokens", answer, "use auto, official or two vocabulary pieces 'YES,NO'")
        _check_choices(self, bad)
        if "{query}" not in self.question_template:
            raise bad("question_template", self.question_template, "it must contain the placeholder {query}")
        try:
            self.question_template.format(query="x")
        except (KeyError, IndexError, ValueError):
            raise bad("question_template", self.question_template,
                      "use {query} as its only placeholder (write other braces as {{ and }})") from None
        if self.box_seeds < 1:
            raise bad("box_seeds", self.box_seeds, "use 1 or more relevance peaks per frame")
        if self.box_grabcut_iterations < 1:
            raise bad("box_grabcut_iterations", self.box_grabcut_iterations, "use 1 or more GrabCut iterations")
        if self.box_grabcut_chain < 1:
            raise bad("box_grabcut_chain", self.box_grabcut_chain,
                      "use 1 (every frame's GrabCut cold) or more frames per chain of warm-started cuts")
        if not self.feature_cache_mb >= 0:
            raise bad("feature_cache_mb", self.feature_cache_mb, "use 0 (no cache) or a positive size in MiB")
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
        a ROS params file's ``<node>: ros__parameters:`` (its top-level knobs and its ``grounding:``
        section or ``grounding.*`` keys; other keys there are ignored)."""
        import yaml

        data = yaml.safe_load(Path(path).read_text()) or {}
        if "grounding" in data:
            data = data["grounding"]
        else:
            for value in data.values():
                if isinstance(value, dict) and "ros__parameters" in value:
                    params = value["ros__parameters"]
                    nested = params.get("grounding") if isinstance(params.get("grounding"), dict) else {}
                    data = {**{k: v for k, v in params.items() if k in cls.field_names()},
                            **{k[len("grounding."):]: v for k, v in params.items() if k.startswith("grounding.")},
                            **nested}
                    break
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "GroundingConfig":
        return _replace(self, changes)


# ==============================================================================================
# The grounding service (stvg_ros.stream.service): window, admission and queue of a live stream.  The node
# declares one parameter per field (same name).
# ==============================================================================================


@dataclass
class ServingConfig:
    window_duration: float = knob(10.0, top=True)
    """Seconds of stream kept in the sliding window."""
    window_max_frames: int = 300
    """Most frames kept in the window (memory bound: this many frames at the ingest size; 300 holds
    10 s of a 30 Hz camera). More frames within window_duration are thinned evenly in time (older
    history first), so the window keeps its span."""
    window_rate: float = knob(0.0, top=True)
    """Frames per second kept after decimation (0 = keep every frame: the grounder then samples
    from a query's frames what core mode samples from the same stream; any decimation shifts that
    sample and costs accuracy, see docs/evaluation.md)."""
    ingest_max_side: int = 0
    """Longest side in pixels frames are downscaled to on arrival (0 = auto: what the model needs).
    Boxes are reported in the camera's pixels regardless."""
    min_frames: int = 2
    """Frames the window (or the requested time range) must hold when a query arrives."""
    query_queue_size: int = 4
    """Pending queries kept; more are answered found=false."""
    max_query_length: int = 1000
    """Longest query text accepted, in characters."""
    detection_tolerance: float = 0.001
    """External detections: seconds a track's first/last detection is held beyond its stamp (a
    detection this close to a frame's stamp still gives that frame a box)."""
    frame_timeout: float = 5.0
    """Seconds without any frame after which the health check warns (0 = never)."""
    max_standing_queries: int = 4
    """Standing queries (re-evaluated as the window slides) registered at once at most; more are
    refused (0 = standing queries off)."""
    standing_duty_budget: float = 0.5
    """Largest share of the grounding worker's time spent on standing evaluations (one-shot queries
    always go first, and a standing evaluation yields to one between stages)."""
    standing_period: float = 2.0
    """Seconds of stream time between a standing query's evaluations when it sets neither period
    nor every_n_frames."""
    standing_found_on: float = 0.6
    """Standing queries: p_yes at or above which an absent target counts as appeared."""
    standing_found_off: float = 0.4
    """Standing queries: p_yes below which a present target counts as gone (hysteresis)."""
    standing_confirm: int = 1
    """Standing queries: consecutive evaluations past a threshold needed before found flips."""
    standing_change_on: float = 0.0
    """Standing queries: besides p_yes >= standing_found_on, an appearance needs the grounded target to
    change by at least this much over the evaluated window (mean absolute pixel difference inside its
    boxes between consecutive frames, grey levels; 0 = p_yes alone).  For models whose p_yes tells poorly
    *when* an action happens; costs the full grounding on such evaluations (stvg-calibrate chooses it)."""
    standing_move_box: float = 0.5
    """Standing queries: a present target whose newest box's centre moved by more than this times the
    box's size (square root of its area) since the last event is reported as moved (the box only:
    a new track id or span is no move)."""
    standing_move_confirm: int = 2
    """Standing queries: full evaluations in a row whose box is that far from the last reported one
    before `moved` is reported (1 = at once): a box that flickers to another object for one evaluation
    and back is no move."""
    standing_refresh_every: int = 4
    """Cheap-first standing queries: while the target is present, the full grounding runs every N-th
    evaluation to follow it (0 = only on appearance)."""
    preencode_when_idle: bool = False
    """Encode kept frames' visual features while the grounding worker is idle (no query queued or
    running, no standing evaluation due), one frame (a Qwen frame pair) at a time, so the next query
    finds them cached (feature_cache_mb); a query waits for one such unit at most. Off by default: it
    keeps the device busy while nobody asks (every kept frame is encoded)."""
    memory: bool = knob(False, top=True)
    """Remember the stream beyond the window: keyframes (memory_rate) are written, once they leave the
    window, to rosbag2 MCAP chunks in memory_directory, so queries can reach hours back (README, 'Memory')."""
    memory_directory: str = ""
    """Where the memory's chunks live ('' = $STVG_ROS_CACHE or ~/.cache/stvg_ros, then memory/). A restart
    with the same directory remembers what was written before."""
    memory_hours: float = 4.0
    """Memory older than this many hours (of stream time) is deleted, one chunk at a time (0 = no limit)."""
    memory_mb: float = 2048.0
    """The memory's disk budget in MiB: the oldest chunks are deleted beyond it (0 = no limit)."""
    memory_rate: float = 2.0
    """Keyframes per second kept in memory (1-2 Hz: enough for the model's 20-frame clips of 10-20 s)."""
    memory_chunk_s: float = 30.0
    """Seconds of keyframes per chunk file: the most a crash can lose, and the unit of roll-over."""
    memory_segment_s: float = 10.0
    """Seconds of memory per segment ranked by a query over the past (one model clip each)."""
    window_codec: str = "png"
    """How the window keeps frames: 'none' (arrays) or 'png' (lossless, decoded only for the frames a query
    samples: a camera's window takes 1.6-3.4x less RAM for ~2 ms CPU per kept 224 px frame; bench/README.md,
    'Several cameras')."""
    batch_streams: bool = False
    """A query to all cameras: ground the streams' clips together, their model passes batched where the clips'
    token layouts agree (same frame count and size), each answer the same as alone (Grounder.ground_many).
    Off by default: measured on CPU it saves 0-6 % of a query's CPU at 2 cameras and nothing at 4 on a
    compute-bound decoder, while a batch holds N clips' activations at once (peak RSS 2-4x); a GPU, where it
    should pay, was not measured (bench/README.md, "Several cameras")."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def bad(name: str, fix: str) -> ConfigError:
            return ConfigError(f"invalid {name}={getattr(self, name)!r}: {fix}")

        for name in ("window_duration", "window_max_frames", "query_queue_size", "max_query_length"):
            if getattr(self, name) <= 0:
                raise bad(name, "use a positive number")
        for name in ("window_rate", "ingest_max_side", "detection_tolerance", "frame_timeout"):
            if getattr(self, name) < 0:
                raise bad(name, "use 0 or a positive number")
        if self.min_frames < 1:
            raise bad("min_frames", "use 1 or more")
        if self.window_codec not in ("none", "png"):
            raise bad("window_codec", "use 'none' (arrays) or 'png' (lossless, less RAM per camera)")
        if self.max_standing_queries < 0 or self.standing_refresh_every < 0 or self.standing_move_box < 0:
            name = next(n for n in ("max_standing_queries", "standing_refresh_every", "standing_move_box")
                        if getattr(self, n) < 0)
            raise bad(name, "use 0 or a positive number")
        if not 0.0 < self.standing_duty_budget <= 1.0:
            raise bad("standing_duty_budget", "use a share of the worker's time in (0, 1], e.g. 0.5")
        if self.standing_period <= 0:
            raise bad("standing_period", "use a positive number of seconds")
        if self.standing_confirm < 1:
            raise bad("standing_confirm", "use 1 or more evaluations")
        if self.standing_move_confirm < 1:
            raise bad("standing_move_confirm", "use 1 or more evaluations")
        for name in ("standing_found_on", "standing_found_off"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise bad(name, "use a value in [0, 1]")
        if self.standing_found_off > self.standing_found_on:
            raise bad("standing_found_off", f"use a value at most standing_found_on={self.standing_found_on}")
        if self.standing_change_on < 0:
            raise bad("standing_change_on", "use 0 (p_yes alone) or a positive number of grey levels, e.g. 2")
        for name in ("memory_rate", "memory_chunk_s", "memory_segment_s"):
            if getattr(self, name) <= 0:
                raise bad(name, "use a positive number")
        for name in ("memory_hours", "memory_mb"):
            if getattr(self, name) < 0:
                raise bad(name, "use 0 (no limit) or a positive number")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ServingConfig":
        """From a mapping (other keys ignored: a node's whole parameter set may be passed)."""
        names = set(cls.field_names())
        return cls(**_coerce(cls, {k: v for k, v in values.items() if k in names}, ConfigError))

    def replace(self, **changes: Any) -> "ServingConfig":
        return _replace(self, changes)


# ==============================================================================================
# A model directory's own grounding defaults (what a checkpoint needs: found threshold, layers, ...)
# ==============================================================================================

#: the file beside the weights that holds the GroundingConfig values a checkpoint needs
MODEL_DEFAULTS_FILE = "grounding_defaults.json"
#: ServingConfig fields that file may hold too: standing-query thresholds calibrated for the model
#: (``stvg-calibrate``, :mod:`stvg_ros.evaluation.calibration`); applied by the service under its config
MODEL_SERVING_FIELDS = ("standing_found_on", "standing_found_off", "standing_confirm", "standing_change_on")


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
    values = {k: v for k, v in data.items() if not k.startswith("_") and k not in MODEL_SERVING_FIELDS}
    try:
        return _coerce(GroundingConfig, values, ConfigError)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def load_model_serving_defaults(directory: str | Path) -> dict[str, Any]:
    """The :data:`MODEL_SERVING_FIELDS` of ``directory``'s :data:`MODEL_DEFAULTS_FILE` ({} when none)."""
    import json

    path = Path(directory) / MODEL_DEFAULTS_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        values = {k: v for k, v in data.items() if k in MODEL_SERVING_FIELDS}
        return _coerce(ServingConfig, values, ConfigError)
    except (ValueError, AttributeError, ConfigError) as e:
        raise ConfigError(f"{path}: {e}") from None


# ==============================================================================================
# The proposal stage (detector + tracker, issue "Proposals on board"): the node declares these as
# ``proposals_<field>`` parameters; YAML files may hold them under a ``proposals:`` key.
# ==============================================================================================

class ProposalConfigError(ConfigError):
    """A proposal-stage option is invalid; the message says how to fix it."""


@dataclass
class ProposalConfig:
    LIVE_BY_DEFAULT: ClassVar[bool] = False  # they choose and load the detector: applied at configure

    enabled: bool = knob(False, top=True)
    """Run the live stage in the node (off: external detections or the proposal-free path)."""
    source: str = knob("detector", choices=("detector", "motion", "hog"), top=True)
    """What makes the live stage's tracks: 'detector' (the zero-shot detector at ``detector_path``),
    'motion' (moving blobs of a still camera: background subtraction + tracker; any subject; no weights)
    or 'hog' (OpenCV's HOG people detector, only for person subjects; no weights; needs OpenCV's
    contrib build)."""
    detector_path: str = knob("", top=True)
    """Local directory of a transformers zero-shot detector (Grounding DINO, MM-Grounding-DINO, OWLv2)."""
    detector_type: str = knob("auto", choices=("auto", "grounding_dino", "owlv2"))
    """'auto' (from the directory's config.json), 'grounding_dino' (also MM-Grounding-DINO) or 'owlv2'."""
    box_threshold: float = knob(0.4, top=True)
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
    tracker: str = knob("bytetrack", choices=("bytetrack", "iou"))
    """'bytetrack' (two-stage association with constant-velocity prediction) or 'iou' (one stage)."""
    match_iou: float = 0.3
    """Minimum IoU between a track's predicted box and a detection to link them."""
    max_center_shift: float = 1.0
    """Last-resort link of an unmatched track and detection whose centres are this many box sizes
    apart at most (similar size); 0 disables it."""
    max_lost: int = 3
    """Keyframes a track may go undetected before it ends."""
    relink_keyframes: int = 30
    """A lost track stays matchable this many keyframes (if more than ``max_lost``): one who was hidden
    or missed gets their track back when the motion gate (widening with the time lost) and, with frames,
    the colours agree."""
    propagation: str = knob("interpolate", choices=("interpolate", "hold"))
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
    dtype: str = knob("auto", choices=("auto", "float32", "bfloat16", "float16"))
    """'auto' (float32: Grounding DINO loses boxes in half precision), 'float32', 'bfloat16' or 'float16'."""
    synonyms: dict = field(default_factory=dict)
    """Extra head noun → detector class entries (added to the built-in map, e.g. {'guy': 'person'})."""
    motion_method: str = knob("mog2", choices=("mog2", "knn"))
    """source=motion: OpenCV background subtractor, 'mog2' (Gaussian mixture) or 'knn'."""
    motion_history: int = 100
    """source=motion: frames the background model remembers (an object still for about this long fades in)."""
    motion_threshold: float = 0.0
    """source=motion: foreground distance threshold (MOG2 varThreshold, KNN dist2Threshold); 0 = OpenCV's
    default for the method (16 / 400)."""
    motion_min_area: float = 0.0004
    """source=motion: smallest object kept (its pieces together), as a fraction of the frame area (noise
    and specks dropped; 0.0004: a person 6 % of the frame height, 35 px of 576, has blobs of 250-350 px²
    out of 442,000)."""
    motion_merge: float = 0.03
    """source=motion: blobs one above the other closer than this share of the frame height are one object
    (a person's head, torso and legs; side by side stay apart); 0 keeps every blob apart."""
    motion_split: float = 0.7
    """source=motion: an object at least this many times as wide as tall (a standing person: ~0.4) is split
    where its mask thins out in the middle (two people side by side); 0 never splits (uniform shapes whose
    interior the background model absorbed show two edges and would be split)."""
    motion_camera: str = knob("compensate", choices=("compensate", "fixed"))
    """source=motion: 'compensate' (the camera's motion between frames is estimated from tracked corners
    and the frame warped into the background model's view first: a handheld or robot camera) or 'fixed'
    (no estimation: a camera that moves turns the image into foreground)."""
    motion_people: bool = True
    """source=motion: also propose the people who stand still where nothing moves (there from the first
    frame, or stopped): HOG on keyframes (``rate_hz``, else every ``detect_every``-th frame; the whole frame
    every ``hog_scan_every``-th, else only around its candidates), a person proposed once found at the same
    place on two keyframes with something stirring in the box.  Needs OpenCV's contrib build (without it
    this is skipped with a warning)."""
    motion_min_frames: int = 5
    """source=motion: a track seen on fewer frames than this is not proposed (a flicker: a shadow, a leaf,
    a piece of an arm; each would otherwise be held ``hold_keyframes`` and add false boxes); 1 keeps all."""
    motion_kernel: int = 3
    """source=motion: pixels of the morphological open (specks) and close (holes) on the mask; 0 disables."""
    motion_shadows: bool = True
    """source=motion: mark shadows (darker copies of the background) and leave them out of the blobs."""
    hog_scale: float = 1.1
    """source=hog: image pyramid step of the sliding 64x128 window (smaller: slower, finds more sizes)."""
    hog_upscale: float = 0.0
    """source=hog: frames are enlarged by this factor first (the window's person is 96 px tall); 0 = the
    factor that makes a person of ``hog_person_min`` of the frame height 96 px tall."""
    hog_person_min: float = 0.1
    """source=hog: smallest person searched, as a share of the frame height (0.1: 58 px of 576, 17 px of
    a 224x168 frame); smaller finds farther people at the square of the cost."""
    hog_person_max: float = 0.8
    """source=hog: tallest person searched, as a share of the frame height (where the pyramid stops)."""
    hog_person_small: float = 0.06
    """source=hog: people from this share of the frame height up to ``hog_person_min`` are searched too, but
    only around what moved (crops enlarged so such a person fills the window; 0.06: 35 px of 576, 10 px of
    a 224x168 frame); 0 = not searched."""
    hog_scan_every: int = 4
    """source=hog: the whole frame is scanned every N-th frame; in between only around what moved and
    the last detections (1 = always the whole frame)."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def bad(name: str, value: Any, fix: str) -> ProposalConfigError:
            return ProposalConfigError(f"invalid proposals_{name}={value!r}: {fix}")

        _check_choices(self, bad)
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
                     "query_wait_s", "relink_keyframes"):
            if getattr(self, name) < 0:
                raise bad(name, getattr(self, name), "use 0 or more")
        if self.window_s <= 0:
            raise bad("window_s", self.window_s, "use a positive number of seconds")
        if not self.default_class.strip():
            raise bad("default_class", self.default_class, "name an object class, e.g. 'person'")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise bad("device", self.device, "use auto, cpu, cuda or cuda:N")
        if self.motion_history < 1:
            raise bad("motion_history", self.motion_history, "use 1 or more frames")
        if self.motion_min_frames < 1:
            raise bad("motion_min_frames", self.motion_min_frames, "use 1 (every track) or more frames")
        for name in ("motion_threshold", "motion_kernel"):
            if getattr(self, name) < 0:
                raise bad(name, getattr(self, name), "use 0 or more")
        if self.motion_split < 0:
            raise bad("motion_split", self.motion_split, "use 0 (never split) or a width/height ratio, e.g. 0.7")
        if not 0.0 <= self.motion_merge < 1.0:
            raise bad("motion_merge", self.motion_merge, "use a share of the frame height in [0, 1), e.g. 0.03")
        if not 0.0 <= self.motion_min_area < 1.0:
            raise bad("motion_min_area", self.motion_min_area, "use a fraction of the frame area in [0, 1)")
        if self.hog_scale <= 1.0:
            raise bad("hog_scale", self.hog_scale, "use a pyramid step above 1, e.g. 1.05")
        if self.hog_upscale < 0:
            raise bad("hog_upscale", self.hog_upscale, "use a positive factor, e.g. 1 or 2, or 0 (from hog_person_min)")
        if not 0.0 < self.hog_person_min < self.hog_person_max:
            raise bad("hog_person_min", self.hog_person_min,
                      f"use a share of the frame height in (0, hog_person_max={self.hog_person_max}), e.g. 0.1")
        if not 0.0 <= self.hog_person_small < 1.0:
            raise bad("hog_person_small", self.hog_person_small, "use a share of the frame height below hog_person_min, or 0")
        if self.hog_scan_every < 1:
            raise bad("hog_scan_every", self.hog_scan_every, "use 1 (every frame whole) or more")
        if self.enabled and self.source == "detector" and not self.detector_path:
            raise bad("detector_path", self.detector_path,
                      "set proposals_detector_path to a local detector directory, choose proposals_source=motion "
                      "or hog (no weights), or proposals_enabled=false")
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
        return _replace(self, changes)
