"""The small Qwen2.5-VL of the synthetic world: architecture, tokenizer, preprocessing, yes/no forward.

Why a real Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration``) and not a custom net: the shipped
checkpoint must load through the same adapter as a real model (``Grounder.from_pretrained``), so the
grounding stays the paper's zero-shot method on an off-the-shelf architecture, only smaller.

Training feeds the frames exactly as the adapter does at inference: one video, frames resized to
``IMAGE_SIZE`` square, 14 px patches, temporal patch 2, 2×2 merge, CLIP mean/std normalisation, and
the model's own chat template (``question <video>``, see ``QUESTION_FIRST_TEMPLATE``) with the
generation prompt appended.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .generator import ACTIONS, COLOURS, SHAPES, SIZES

IMAGE_SIZE = 112
FPS = 5.0
#: rotary time positions advance tokens_per_second × seconds per slot: 5 × 0.4 s = 2 per slot at the
#: generator's 5 fps (an integer step, since Qwen truncates temporal positions to integers)
TOKENS_PER_SECOND = 5
PATCH = 14
TEMPORAL_PATCH = 2
MERGE = 2
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)

#: every word the questions, sub-queries and the pipeline's prompts use
WORDS = sorted(set(
    list(COLOURS) + list(SHAPES) + list(SIZES)
    + " ".join(ACTIONS).split()
    + "Is there a the that shape in this video Describe details please describe yes no".split()
))

#: the verbs of ``ACTIONS`` (their first words): what the motion prior links to change
MOTION_VERBS = tuple(dict.fromkeys(a.split()[0] for a in ACTIONS))

MODEL_DIMS = dict(
    lm_hidden=128, lm_layers=3, lm_heads=4, lm_kv_heads=4, lm_intermediate=384,
    vision_hidden=96, vision_depth=2, vision_heads=4, vision_intermediate=192,
)


#: the model's chat template: Qwen's ChatML, except that a user turn's text comes *before* its images
#: and videos ("question first").  Why: with the video after the question, the only path from the
#: pixels to the answer runs through the answer position's own attention to the visual tokens (the
#: question's words cannot see the video), which is where the paper's grounding reads; with the video
#: first, a small model answers through the question words' attention instead (docs/synthetic.md).
QUESTION_FIRST_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% for part in message['content'] %}{% if part['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif part['type'] == 'video' %}"
    "<|vision_start|><|video_pad|><|vision_end|>{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer(question_first: bool = True):
    """The ChatML word-level tokenizer of ``stvg_ros.adapters.tiny_models``, with the question-first template."""
    from stvg_ros.adapters.tiny_models import build_tokenizer as _build

    tok = _build(WORDS, "qwen2_5_vl")
    if question_first:
        tok.chat_template = QUESTION_FIRST_TEMPLATE
    return tok


def build_model(seed: int = 0, dims: dict | None = None, priors: bool = True, question_first: bool = True,
                motion_prior: bool = True, compact_motion: bool = False, conjunctive_motion: bool = False,
                shape_prior: bool = False):
    """A freshly initialised small Qwen2.5-VL and its tokenizer (deterministic by ``seed``).

    ``priors`` applies the three initialisations below (colour patch filters, recency heads, colour
    word prior); without them the model is a plain random init (for ablations).  ``shape_prior`` (with
    ``priors``, question first) adds :func:`init_shape_pathway`.
    """
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from stvg_ros.adapters.tiny_models import qwen_config_common

    d = dict(MODEL_DIMS, **(dims or {}))
    tok = build_tokenizer(question_first)
    lm = dict(vocab_size=len(tok), hidden_size=d["lm_hidden"], intermediate_size=d["lm_intermediate"],
              num_hidden_layers=d["lm_layers"], num_attention_heads=d["lm_heads"],
              num_key_value_heads=d["lm_kv_heads"], max_position_embeddings=1024, rms_norm_eps=1e-6,
              tie_word_embeddings=False)
    config = Qwen2_5_VLConfig(
        **qwen_config_common(tok, lm),
        vision_config=dict(
            depth=d["vision_depth"], hidden_size=d["vision_hidden"], intermediate_size=d["vision_intermediate"],
            num_heads=d["vision_heads"], patch_size=PATCH, spatial_merge_size=MERGE,
            temporal_patch_size=TEMPORAL_PATCH, window_size=IMAGE_SIZE, fullatt_block_indexes=[d["vision_depth"] - 1],
            out_hidden_size=d["lm_hidden"], tokens_per_second=TOKENS_PER_SECOND),
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    if priors:
        init_colour_patch_filters(model, seed, motion=question_first and motion_prior)
        init_recency_heads(model)
        if question_first:
            motion = init_motion_merger(model, compact=compact_motion) if motion_prior else None
            if shape_prior:
                init_shape_pathway(model, first_merger_unit=_motion_units(compact_motion) if motion_prior else 0,
                                   avoid=motion)
            init_match_and_collect(model, tok, motion=motion, conjunctive=conjunctive_motion)
        else:
            init_colour_word_prior(model, tok)
    return model, tok


def _word_ids(tok, word: str) -> list[int]:
    """Token ids of ``word`` alone and after a space (its "Ġ"-prefixed piece): the two forms it takes."""
    return [tok.convert_tokens_to_ids(piece) for piece in (word, "Ġ" + word)]


def _place_words(model, tok, names, directions: torch.Tensor) -> None:
    """Start each word (and its "Ġ"-prefixed piece) on its direction, at the embeddings' usual norm."""
    cfg = model.config.text_config
    emb = model.model.get_input_embeddings().weight
    scale = emb.std() * cfg.hidden_size ** 0.5
    for name, w in zip(names, directions):
        for i in _word_ids(tok, name):
            emb[i] = w * scale + emb[i] * 0.1


def _quiet_head(att, rows: slice) -> None:
    """Shrink one head's random projections so that a hand-set circuit written on top dominates it."""
    for proj in (att.q_proj, att.k_proj, att.v_proj):
        proj.weight[rows] *= 0.05
        proj.bias[rows] = 0.0
    att.o_proj.weight[:, rows] *= 0.05


@torch.no_grad()
def colour_directions(model, tok):
    """(visual colour directions, colour word directions), both (n_colours, hidden), unit rows.

    The visual direction of a colour is the (background-centred) visual token the freshly
    initialised tower gives a patch of that colour; word directions are orthonormal and orthogonal
    to them, so a colour word is never mistaken for a visual token of its colour.
    """
    inner = model.model
    cfg = model.config.text_config

    def visual_mean(rgb):  # RMS-normalised, as the decoder's first norm sees a visual token
        frames = np.broadcast_to(np.array(rgb, np.uint8), (2, IMAGE_SIZE, IMAGE_SIZE, 3))
        px, grid = frames_to_pixels(frames)
        v = inner.get_video_features(px, grid, return_dict=True).pooler_output[0].mean(0)
        return v / v.pow(2).mean().sqrt()

    rng = np.random.default_rng(0)
    backgrounds = torch.stack([visual_mean(rng.integers(20, 100, size=3)) for _ in range(8)])
    b = backgrounds.mean(0)
    b = b / b.norm()
    dirs = torch.stack([visual_mean(COLOURS[c]) for c in COLOURS])
    dirs = dirs - (dirs @ b)[:, None] * b[None]  # blind to the background's direction
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    gen = torch.Generator().manual_seed(1)
    raw = torch.cat([dirs.T, torch.randn(cfg.hidden_size, 2 * len(COLOURS) + 1, generator=gen)], dim=1)
    basis = torch.linalg.qr(raw)[0][:, len(COLOURS):].T
    words, spare = basis[:len(COLOURS)], basis[len(COLOURS):]
    _place_words(model, tok, COLOURS, words)
    return dirs, words, spare


def _hand_head(att, head: int, head_dim: int, keys: list[tuple[int, torch.Tensor | float, torch.Tensor]],
               reads: torch.Tensor, writes: torch.Tensor, carry: float) -> None:
    """Set one head as a hand-made lookup on top of its quieted random weights.

    ``keys``: (rotary dim, query, key) triples on the slowest rotary dimensions, where the query is a
    residual direction (the query projection reads it) or a constant (a bias: every position asks the
    same); the head then copies ``reads`` (a residual direction) from the positions it attends to and
    writes it out as ``writes``.
    """
    rows = slice(head * head_dim, (head + 1) * head_dim)
    _quiet_head(att, rows)
    e = torch.zeros(head_dim)
    e[head_dim // 2 - 1] = 1.0
    for dim, query, key in keys:
        if isinstance(query, torch.Tensor):
            att.q_proj.weight[head * head_dim + dim] = query
        else:
            att.q_proj.bias[head * head_dim + dim] = query
        att.k_proj.weight[head * head_dim + dim] = key
    att.v_proj.weight[rows] += carry * e[:, None] * reads[None, :]
    att.o_proj.weight[:, rows] += carry * writes[:, None] * e[None, :]


@torch.no_grad()
def init_match_and_collect(model, tok, head: int = 1, match: float = 1.5, carry: float = 1.0,
                           collect: float = 6.0, motion: torch.Tensor | None = None,
                           motion_head: int = 2, conjunctive: bool = False) -> None:
    """The question-first prior: visual tokens look up the question's words, the answer collects matches.

    A hand-set initialisation, disclosed in the model card (no box, span or answer is involved):
    - layer 0, head ``head`` ("match"): a visual token attends to the question's colour word of its
      own colour (query = the token's visual colour direction, key = the word's direction) and writes
      a "matched" direction into its residual;
    - later layers, head ``head`` ("collect"): every position attends to tokens that carry the
      "matched" direction (constant query, key = that direction) and copies it.
    - with ``motion`` (the merger's change direction, :func:`init_motion_merger`), head ``motion_head``
      is a second, separate pathway of the same kind: at layer 0 a visual token that changes attends
      to the question's verb ("moves", "jumps", "spins", "grows") and writes its own "moved"
      direction, which head ``motion_head`` of the later layers collects.  Colour and change get
      different directions and heads, so a verb in the question does not pull the colour pathway
      towards every moving object (a shared "matched" direction did; docs/synthetic.md).
    - ``conjunctive`` (with ``motion``): the motion collect heads key on "matched" *plus* "moved", so
      under "a red shape that jumps" they attend to tokens that are red *and* changing (the attention
      logits add, the weights multiply), and read both markers; and the marker and word directions are
      first cleared from every other word's embedding and from the merger's output, so that only a
      named colour or verb writes a marker (without that, a changing token's sharp query picked the
      caption prompt's word with the largest random projection and marked itself "moved" anyway).
    So "Is there a red shape?" starts with the answer position attending to red visual tokens, and
    "... that jumps" to changing ones; shapes, conjunctions and which change is which are learned on top.
    """
    cfg = model.config.text_config
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    dirs, words, spare = colour_directions(model, tok)
    matched, moved = spare[0], spare[-1]  # the residual directions a matched visual token gets
    slow = list(range(head_dim // 2 - len(COLOURS), head_dim // 2))  # the slowest rotary frequencies
    layers = model.model.language_model.layers

    def pathway(h: int, match_keys: list, match_reads: torch.Tensor, marker: torch.Tensor,
                collected: torch.Tensor | None = None) -> None:
        """Head ``h``: at layer 0 a match head (``match_keys``) that writes ``marker``, later a collect head
        that attends to and reads ``collected`` (default: the marker) and writes the marker."""
        collected = marker if collected is None else collected
        _hand_head(layers[0].self_attn, h, head_dim, match_keys, match_reads, marker, carry)
        for layer in layers[1:]:
            collect_keys = [(dim, collect, collected) for dim in slow[-2:]]
            _hand_head(layer.self_attn, h, head_dim, collect_keys, collected, marker, carry)

    pathway(head, [(dim, match * dirs[j], match * words[j]) for j, dim in enumerate(slow)], words.sum(0), matched)
    if motion is None:
        return
    assert len(spare) > len(MOTION_VERBS) + 1, "not enough spare directions for the motion pathway"
    verbs = spare[1:1 + len(MOTION_VERBS)]
    _place_words(model, tok, MOTION_VERBS, verbs)
    if conjunctive:
        _clear_directions(model, tok, torch.cat([words, spare]), keep=list(COLOURS) + list(MOTION_VERBS))
    pathway(motion_head, [(dim, match * motion, match * verbs.sum(0)) for dim in slow[-2:]], verbs.sum(0), moved,
            collected=matched + moved if conjunctive else None)


@torch.no_grad()
def _clear_directions(model, tok, directions: torch.Tensor, keep: list[str]) -> None:
    """Remove ``directions`` (rows) from every word embedding except ``keep`` (and their "Ġ" pieces) and
    from the merger's output (its last layer's weight and bias), so that at initialisation only the
    kept words carry them."""
    basis = torch.linalg.qr(directions.T)[0]  # (hidden, k) orthonormal
    emb = model.model.get_input_embeddings().weight
    kept = {i for w in keep for i in _word_ids(tok, w)}
    rows = torch.tensor([i for i in range(emb.shape[0]) if i not in kept])
    emb[rows] -= (emb[rows] @ basis) @ basis.T
    out = model.model.visual.merger.mlp[2]
    out.weight -= basis @ (basis.T @ out.weight)
    out.bias -= basis @ (basis.T @ out.bias)


@torch.no_grad()
def init_motion_merger(model, strength: float = 2.0, compact: bool = False) -> torch.Tensor:
    """Let the patch merger report *how much* changed between the two frames of a temporal patch.

    Initialisation, not supervision: the patch embedding's temporal-difference channels are signed
    (an edge moving right is the opposite of one moving left), so no single direction of the fresh
    tower separates moving from still patches (measured: AUC 0.51).  Pairs of merger units read
    a difference with opposite signs, the GELU rectifies them, and the output layer writes their sum
    on one direction of the decoder's space: a "motion" feature that is ~0 on still content (the
    generator's backgrounds and resting objects do not change) and grows with change.
    Every difference channel of every merged patch gets a pair (144 of the merger's 384 units), or,
    ``compact``, only the brightness change of each quadrant of each patch (R+G+B of the quadrant
    differences: 32 units), which leaves the rest of the merger to colour and shape.
    Returns that unit direction (hidden,).
    """
    merger = model.model.visual.merger
    fc1, fc2 = merger.mlp[0], merger.mlp[2]
    width = fc1.in_features // (MERGE * MERGE)  # channels per patch
    gen = torch.Generator().manual_seed(2)
    direction = torch.randn(fc2.out_features, generator=gen)
    direction /= direction.norm()
    if compact:  # channel groups: the R, G and B difference of each quadrant (init_colour_patch_filters)
        reads = [[QUADRANT_DIFF_CHANNELS[c * 4 + q] for c in range(3)] for q in range(4)]
    else:
        reads = [[ch] for ch in DIFF_CHANNELS]
    row = 0
    for patch in range(MERGE * MERGE):
        for channels in reads:
            for sign in (1.0, -1.0):
                fc1.weight[row] = 0.0
                for ch in channels:
                    fc1.weight[row, patch * width + ch] = sign * strength / len(channels) ** 0.5
                fc1.bias[row] = 0.0
                fc2.weight[:, row] = direction * (strength / len(reads))
                row += 1
    return direction


@torch.no_grad()
def init_colour_word_prior(model, tok, head: int = 1, strength: float = 1.5) -> None:
    """The video-first prior (ablation; the shipped model is question-first): colour words look up the
    visual tokens of their colour.

    Head ``head`` of every decoder layer starts as a similarity head from the colour word directions
    (query side) to the visual colour directions (key side), on the slowest rotary dimensions so that
    distance barely matters; "red" then attends to red visual tokens from step 0.
    """
    cfg = model.config.text_config
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    dirs, words, _ = colour_directions(model, tok)
    slow = list(range(head_dim // 2 - len(COLOURS), head_dim // 2))  # the slowest rotary frequencies
    for layer in model.model.language_model.layers:
        att = layer.self_attn
        rows = slice(head * head_dim, (head + 1) * head_dim)
        for proj in (att.q_proj, att.k_proj):
            proj.weight[rows] *= 0.05
            proj.bias[rows] = 0.0
        for j, dim in enumerate(slow):
            att.q_proj.weight[head * head_dim + dim] = strength * words[j]
            att.k_proj.weight[head * head_dim + dim] = strength * dirs[j]


def init_recency_heads(model, heads: int = 1, strength: float = 25.0) -> None:
    """Start one head per decoder layer as a "look at the last few tokens" head.

    Initialisation, not supervision: the head's query and key get the same constant bias on
    mid-frequency rotary dimensions, so q·k depends only on the distance (largest for the nearest
    tokens, fading over about ten) and the words of the question reach the answer position from
    the first step.  A random init leaves near-uniform attention, where the one word that matters
    is diluted among ~190 tokens and training sits at chance.
    """
    cfg = model.config.text_config
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    dims = [3, 4, 5, 6]  # rotary frequencies 0.18 .. 0.03 rad per token (theta 1e4, head_dim 32)
    a = torch.zeros(head_dim)
    for i in dims:
        a[i] = a[i + head_dim // 2] = (strength / (2 * len(dims))) ** 0.5
    with torch.no_grad():
        for layer in model.model.language_model.layers:
            att = layer.self_attn
            for h in range(heads):
                rows = slice(h * head_dim, (h + 1) * head_dim)
                for proj in (att.q_proj, att.k_proj):
                    proj.weight[rows] *= 0.1
                    proj.bias[rows] = a


def motion_pathway_masks(model, tok, compact: bool, head: int = 2) -> dict[str, torch.Tensor]:
    """Boolean masks (parameter name → mask of its shape) of every weight the motion prior sets by hand:
    the patch embedding's temporal-difference filters and their ``ln_q`` gains, the merger's change
    detector units (:func:`init_motion_merger`), head ``head`` of every decoder layer (the verb match
    head and the "moved" collect heads) and the verbs' embeddings.

    Why: on yes/no answers the pathway decays (an action question on a whole clip is about an object
    that acts at *some* time, so "does it change" rarely decides an answer), so ``train --freeze-motion``
    holds these entries at their initial values.  That does not keep the behaviour, because the residual
    stream the frozen heads read moves (the measurements: docs/synthetic.md).
    """
    params = dict(model.named_parameters())
    masks = {n: torch.zeros_like(p, dtype=torch.bool) for n, p in params.items()}
    vis = "model.visual."
    masks[vis + "patch_embed.proj.weight"][list(DIFF_CHANNELS)] = True
    masks[vis + "merger.ln_q.weight"][list(DIFF_CHANNELS)] = True
    units = _motion_units(compact)
    masks[vis + "merger.mlp.0.weight"][:units] = True
    masks[vis + "merger.mlp.0.bias"][:units] = True
    masks[vis + "merger.mlp.2.weight"][:, :units] = True
    cfg = model.config.text_config
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    rows = slice(head * head_dim, (head + 1) * head_dim)
    for i in range(cfg.num_hidden_layers):
        att = f"model.language_model.layers.{i}.self_attn."
        for proj in ("q_proj", "k_proj", "v_proj"):
            masks[att + proj + ".weight"][rows] = True
            masks[att + proj + ".bias"][rows] = True
        masks[att + "o_proj.weight"][:, rows] = True
    ids = [i for verb in MOTION_VERBS for i in _word_ids(tok, verb)]
    masks["model.language_model.embed_tokens.weight"][ids] = True
    return {n: m for n, m in masks.items() if m.any()}


def readout_parameters(model) -> set[str]:
    """Names of the parameters that act after the last decoder layer's attention weights: its value and output
    projections, its MLP and norm after attention, the final norm and the LM head.

    Why: the grounding reads attention weights (every layer's, at the answer position), and those depend only on
    the query and key projections and on what the earlier layers write; training these alone (``train
    --train-only readout``) changes what the answer makes of the tokens it attends to, never where it attends.
    """
    last = model.config.text_config.num_hidden_layers - 1
    layer = f"model.language_model.layers.{last}."
    keep = (layer + "self_attn.v_proj.", layer + "self_attn.o_proj.", layer + "post_attention_layernorm.",
            layer + "mlp.", "model.language_model.norm.", "lm_head.")
    return {n for n, _ in model.named_parameters() if n.startswith(keep)}


def _motion_units(compact: bool) -> int:
    """The merger units :func:`init_motion_merger` takes (the first ones): a pair per difference read per patch."""
    return MERGE * MERGE * (4 if compact else len(DIFF_CHANNELS)) * 2


#: the shape pathway (:func:`init_shape_pathway`): patch-embedding channels of the brightness moments of each 7-px
#: quadrant of a patch (x then y, quadrants in init_colour_patch_filters' order), the k-fold symmetries it measures,
#: and the residual channels where the first vision block writes their components (cos, sin per k)
SHAPE_MOMENT_CHANNELS = tuple(range(44, 52))
SHAPE_HARMONICS = (1, 2, 3, 4, 5, 6)
SHAPE_HARMONIC_CHANNELS = tuple(range(52, 52 + 2 * len(SHAPE_HARMONICS)))
#: directions per quadrant of the first block's rectified moment population, and per harmonic of the merger's
SHAPE_DIRECTIONS = 8
#: per harmonic, the gain of its magnitude in the decoder's space: about 0.5 on an object's tokens for each (the
#: 1st and 2nd harmonics of a token's edges are 10-30 times the 3rd-5th; measured at initialisation on val clips)
SHAPE_OUTPUT_GAINS = (0.2, 0.5, 5.0, 2.0, 5.0, 0.5)


@torch.no_grad()
def init_shape_pathway(model, first_merger_unit: int = 32, moment_scale: float = 4.0, gain: float = 40.0,
                       threshold: float = 0.15, write_gain: float = 0.05, merger_gain: float = 200.0,
                       output_gains: Sequence[float] = SHAPE_OUTPUT_GAINS, avoid: torch.Tensor | None = None,
                       seed: int = 3) -> torch.Tensor:
    """Let the tower hand the language model how k-fold symmetric the edges in each token are (k = 1-6).

    Initialisation, not supervision.  The shapes differ in the symmetry of their outlines (a square's edges point 4
    ways, a triangle's 3, a star's 5, a circle's every way), whatever their rotation; a linear probe reads the shape
    from the magnitudes of those orientation harmonics of an object's edges 92 % of the time, and from the plain
    tower's tokens 33-36 % (chance 25 %; ``bench/attribute_probe.py``, docs/synthetic.md).  No linear patch filter
    gives them, so:

    - patch embedding: the brightness moment (x, y) of each 7-px quadrant of a patch, which points across the edge
      the quadrant holds (``SHAPE_MOMENT_CHANNELS``);
    - first vision block's MLP: per quadrant, ``SHAPE_DIRECTIONS`` units tuned to the moment's angle (SiLU above a
      threshold: a narrow tuning, so that the population has odd harmonics too), whose outputs sum into the cos and
      sin component of each harmonic (``SHAPE_HARMONIC_CHANNELS``; nothing else writes to those channels or to the
      moments');
    - merger: per harmonic, units that project the 2x2 patches' summed component on ``SHAPE_DIRECTIONS`` angles; the
      GELU rectifies them, and their sum, about the component's magnitude, goes to one direction of the decoder's
      space per harmonic (cleared from every other merger unit's output), at ``SHAPE_OUTPUT_GAINS``.

    The pathway's channels are written small (``write_gain``) so that they do not change the RMS that the blocks'
    and the merger's norms divide every channel of a patch by (colour's among them).

    ``avoid`` (rows): directions the pathway's must be orthogonal to (the motion prior's change direction: an edge
    must not read as a change).  Returns the pathway's directions (len(SHAPE_HARMONICS), hidden).  Which magnitudes
    make which shape is left to training.
    """
    vis = model.model.visual
    w = vis.patch_embed.proj.weight  # (hidden, 3, 2, P, P)
    half = PATCH // 2
    offset = torch.arange(half, dtype=torch.float32) - (half - 1) / 2
    ch = iter(SHAPE_MOMENT_CHANNELS)
    for top, left in ((0, 0), (0, half), (half, 0), (half, half)):
        for along in (offset[None, :].expand(half, half), offset[:, None].expand(half, half)):
            f = torch.zeros(w.shape[1:])
            f[:, :, top:top + half, left:left + half] = along
            w[next(ch)] = f / f.norm() * moment_scale
    pathway = list(SHAPE_MOMENT_CHANNELS + SHAPE_HARMONIC_CHANNELS)
    w[list(SHAPE_HARMONIC_CHANNELS)] = 0.0
    for block in vis.blocks:
        for out in (block.attn.proj, block.mlp.down_proj):
            out.weight[pathway] = 0.0
            out.bias[pathway] = 0.0
    mlp = vis.blocks[0].mlp
    angles = [2 * math.pi * j / SHAPE_DIRECTIONS for j in range(SHAPE_DIRECTIONS)]
    row = 0
    for q in range(4):
        mx, my = SHAPE_MOMENT_CHANNELS[2 * q], SHAPE_MOMENT_CHANNELS[2 * q + 1]
        for a in angles:
            mlp.gate_proj.weight[row] = 0.0
            mlp.gate_proj.weight[row, mx], mlp.gate_proj.weight[row, my] = gain * math.cos(a), gain * math.sin(a)
            mlp.gate_proj.bias[row] = -gain * threshold
            mlp.up_proj.weight[row] = 0.0
            mlp.up_proj.bias[row] = 1.0
            mlp.down_proj.weight[:, row] = 0.0
            for i, k in enumerate(SHAPE_HARMONICS):
                mlp.down_proj.weight[SHAPE_HARMONIC_CHANNELS[2 * i], row] = write_gain * math.cos(k * a)
                mlp.down_proj.weight[SHAPE_HARMONIC_CHANNELS[2 * i + 1], row] = write_gain * math.sin(k * a)
            row += 1
    fc1, fc2 = vis.merger.mlp[0], vis.merger.mlp[2]
    width = fc1.in_features // (MERGE * MERGE)
    units = range(first_merger_unit, first_merger_unit + len(SHAPE_HARMONICS) * SHAPE_DIRECTIONS)
    gen = torch.Generator().manual_seed(seed)
    draw = torch.randn(fc2.out_features, len(SHAPE_HARMONICS), generator=gen)
    fixed = torch.zeros(fc2.out_features, 0) if avoid is None else avoid.reshape(-1, fc2.out_features).T
    directions = torch.linalg.qr(torch.cat([fixed, draw], 1))[0][:, fixed.shape[1]:].T
    others = [u for u in range(fc2.weight.shape[1]) if u not in units]
    fc2.weight[:, others] -= directions.T @ (directions @ fc2.weight[:, others])
    fc2.bias -= directions.T @ (directions @ fc2.bias)
    unit = iter(units)
    for i in range(len(SHAPE_HARMONICS)):
        re, im = SHAPE_HARMONIC_CHANNELS[2 * i], SHAPE_HARMONIC_CHANNELS[2 * i + 1]
        for a in angles:
            u = next(unit)
            fc1.weight[u] = 0.0
            fc1.bias[u] = 0.0
            for patch in range(MERGE * MERGE):
                fc1.weight[u, patch * width + re] = merger_gain * math.cos(a)
                fc1.weight[u, patch * width + im] = merger_gain * math.sin(a)
            fc2.weight[:, u] = directions[i] * output_gains[i] / merger_gain
    return directions


#: patch-embedding channels that ``init_colour_patch_filters(motion=True)`` sets to temporal differences
DIFF_CHANNELS = tuple(range(26, 44))
#: of those, the per-quadrant differences: R of quadrants 0-3, then G, then B
QUADRANT_DIFF_CHANNELS = DIFF_CHANNELS[6:]


def init_colour_patch_filters(model, seed: int = 0, motion: bool = True) -> None:
    """Initialise the patch embedding with fixed, sensible features instead of noise.

    Initialisation, not supervision: the first channels are colour-opponent means over the whole
    patch and over its four quadrants (where in the patch the colour sits), and frame differences
    (what moved between the two frames of a temporal patch; also per quadrant with ``motion``, for the
    motion prior); the rest stay random.  A tiny tower
    trained from scratch otherwise spends thousands of steps discovering that colour matters.
    """
    w = model.model.visual.patch_embed.proj.weight  # (hidden, 3, 2, P, P)
    hidden = w.shape[0]
    gen = torch.Generator().manual_seed(seed)
    filters = []
    opponents = [torch.tensor(v, dtype=torch.float32) for v in
                 ([1, 0, 0], [0, 1, 0], [0, 0, 1], [1, -1, 0], [-0.5, -0.5, 1], [1, 1, 1])]
    half = PATCH // 2
    quadrants = [(slice(0, half), slice(0, half)), (slice(0, half), slice(half, PATCH)),
                 (slice(half, PATCH), slice(0, half)), (slice(half, PATCH), slice(half, PATCH))]
    for c in opponents:  # whole-patch colour, both frames
        f = torch.zeros(3, 2, PATCH, PATCH)
        f[:] = c.view(3, 1, 1, 1) / (2 * PATCH * PATCH) ** 0.5
        filters.append(f)
    for c in opponents[:5]:  # colour per quadrant
        for ys, xs in quadrants:
            f = torch.zeros(3, 2, PATCH, PATCH)
            f[:, :, ys, xs] = c.view(3, 1, 1, 1) / (2 * half * half) ** 0.5
            filters.append(f)
    for c in opponents:  # temporal difference: second frame minus first
        f = torch.zeros(3, 2, PATCH, PATCH)
        f[:, 1] = c.view(3, 1, 1) / (2 * PATCH * PATCH) ** 0.5
        f[:, 0] = -c.view(3, 1, 1) / (2 * PATCH * PATCH) ** 0.5
        filters.append(f)
    for c in opponents[:3] if motion else ():  # temporal difference per quadrant (an edge moving inside the patch)
        for ys, xs in quadrants:
            f = torch.zeros(3, 2, PATCH, PATCH)
            f[:, 1, ys, xs] = c.view(3, 1, 1) / (2 * half * half) ** 0.5
            f[:, 0, ys, xs] = -c.view(3, 1, 1) / (2 * half * half) ** 0.5
            filters.append(f)
    fixed = torch.stack(filters)[:hidden] * 4.0
    with torch.no_grad():
        rest = torch.randn((hidden - len(fixed),) + tuple(w.shape[1:]), generator=gen) / (w[0].numel() ** 0.5)
        w.copy_(torch.cat([fixed, rest]) if len(fixed) < hidden else fixed)


# --- preprocessing (the adapter's layout, numpy only) ------------------------------------------------
def frames_to_pixels(frames: np.ndarray | Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, H, W, 3) uint8 RGB frames → Qwen's flattened patches and ``grid_thw`` (1, 3).

    Frames are resized to ``IMAGE_SIZE`` when needed (OpenCV area/cubic), an odd count repeats the last
    frame to fill the temporal patch, and patches are ordered as Qwen2-VL's processor orders them
    (merge windows contiguous).
    """
    import cv2

    arr = np.asarray(frames)
    if arr.shape[1:3] != (IMAGE_SIZE, IMAGE_SIZE):
        arr = np.stack([cv2.resize(f, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_CUBIC) for f in arr])
    if len(arr) % TEMPORAL_PATCH:
        arr = np.concatenate([arr, arr[-1:].repeat(TEMPORAL_PATCH - len(arr) % TEMPORAL_PATCH, 0)])
    x = (arr.astype(np.float32) / 255.0 - CLIP_MEAN) / CLIP_STD  # (T, H, W, C)
    x = x.transpose(0, 3, 1, 2)  # (T, C, H, W)
    t, c, h, w = x.shape
    gt, gh, gw = t // TEMPORAL_PATCH, h // PATCH, w // PATCH
    x = x.reshape(gt, TEMPORAL_PATCH, c, gh // MERGE, MERGE, PATCH, gw // MERGE, MERGE, PATCH)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    x = x.reshape(gt * gh * gw, c * TEMPORAL_PATCH * PATCH * PATCH)
    return torch.from_numpy(np.ascontiguousarray(x)), torch.tensor([[gt, gh, gw]])


class PromptBuilder:
    """Token ids of prompts in the tokenizer's chat template, the video placeholder expanded."""

    def __init__(self, tokenizer, num_visual_tokens: int):
        self.tok = tokenizer
        self.video_id = tokenizer.convert_tokens_to_ids("<|video_pad|>")
        self.pad_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
        self.num_visual_tokens = num_visual_tokens
        # the answer tokens the adapters read ("Yes"/"No" first, as real Qwen models answer)
        for yes, no in (("Yes", "No"), ("yes", "no")):
            a, b = (tokenizer.encode(w, add_special_tokens=False) for w in (yes, no))
            if len(a) == 1 and len(b) == 1:
                self.yes_id, self.no_id = a[0], b[0]
                break
        self._cache: dict[str, list[int]] = {}

    def ids(self, question: str, num_visual_tokens: int | None = None) -> list[int]:
        n = num_visual_tokens or self.num_visual_tokens
        key = (question, n)
        if key not in self._cache:
            messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
            text = self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            ids = self.tok.encode(text, add_special_tokens=False)
            unk = self.tok.convert_tokens_to_ids("<unk>")
            if unk in ids:
                raise ValueError(f"question {question!r} has words outside the synthetic vocabulary")
            k = ids.index(self.video_id)
            self._cache[key] = ids[:k] + [self.video_id] * n + ids[k + 1:]
        return self._cache[key]


def yes_no_logits(model, prompts: PromptBuilder, pixels: torch.Tensor, grid: torch.Tensor,
                  questions: Sequence[str], clip_of_question: Sequence[int],
                  seconds_per_slot: float = TEMPORAL_PATCH / FPS, tail: int = 1) -> torch.Tensor:
    """(B, 2) logits of "yes"/"no" as the first answer token, the vision tower run once per clip.

    ``pixels``/``grid`` hold several clips (concatenated patches, one grid row per clip); question
    ``b`` is asked about clip ``clip_of_question[b]``.  Prompts are right-padded, which leaves every
    real token's causal attention unchanged, and the logits are read at each prompt's last token.
    ``tail > 1`` returns (B, tail, 2): the logits at the last ``tail`` tokens (training asks every
    token from the question mark on for the answer; the grounding reads only the last).
    """
    inner = model.model
    feats = inner.get_video_features(pixels, grid, return_dict=True).pooler_output  # tuple per clip
    w = model.lm_head.weight[[prompts.yes_id, prompts.no_id]]
    # clips of different lengths run as separate decoder batches, so that short clips are not
    # padded to the longest prompt of the step
    groups: dict[int, list[int]] = {}
    for b, c in enumerate(clip_of_question):
        groups.setdefault(int(feats[c].shape[0]), []).append(b)
    out = [None] * len(questions)
    for members in groups.values():
        logits = _decode_group(inner, prompts, feats, grid, [questions[b] for b in members],
                               [clip_of_question[b] for b in members], seconds_per_slot, tail, w)
        for row, b in enumerate(members):
            out[b] = logits[row]
    return torch.stack(out)


def _decode_group(inner, prompts, feats, grid, questions, clips, seconds_per_slot, tail, w):
    seqs = [prompts.ids(q, int(feats[c].shape[0])) for q, c in zip(questions, clips)]
    length = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), length), prompts.pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), length), dtype=torch.long)
    for b, s in enumerate(seqs):
        input_ids[b, :len(s)] = torch.tensor(s)
        mask[b, :len(s)] = 1
    device = w.device  # built on the CPU, moved once (training on a GPU)
    input_ids, mask = input_ids.to(device), mask.to(device)
    embeds = inner.get_input_embeddings()(input_ids)
    video_mask = input_ids == prompts.video_id
    visual = torch.cat([feats[c] for c in clips]).to(embeds.dtype)
    embeds = embeds.masked_scatter(video_mask.unsqueeze(-1), visual)
    position_ids, _ = inner.get_rope_index(input_ids, video_mask.int() * 2, video_grid_thw=grid[list(clips)],
                                           attention_mask=mask,
                                           second_per_grid_ts=torch.full((len(seqs),), seconds_per_slot,
                                                                         device=device))
    out = inner.language_model(inputs_embeds=embeds, position_ids=position_ids, attention_mask=mask)
    last = mask.sum(1) - 1
    rows = torch.arange(len(seqs), device=device)
    if tail == 1:
        return out.last_hidden_state[rows, last] @ w.T
    idx = (last.unsqueeze(1) - torch.arange(tail - 1, -1, -1, device=device)).clamp(min=0)  # (B, tail), last = last token
    hidden = out.last_hidden_state[rows.unsqueeze(1), idx]
    return hidden @ w.T


def save_model_dir(model, tokenizer, out: str | Path, extra: dict | None = None) -> Path:
    """Write a directory that ``Grounder.from_pretrained`` loads: safetensors weights, tokenizer,
    chat template and the preprocessor configs the adapter reads (112 px frames)."""
    from stvg_ros.adapters.tiny_models import _qwen_processor_config

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    proc = _qwen_processor_config(IMAGE_SIZE)
    for name in ("preprocessor_config.json", "video_preprocessor_config.json"):
        (out / name).write_text(json.dumps(proc, indent=2) + "\n")
    (out / "chat_template.jinja").write_text(tokenizer.chat_template)
    if extra:
        (out / "synthetic_training.json").write_text(json.dumps(extra, indent=2) + "\n")
    return out
