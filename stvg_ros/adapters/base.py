"""The one small interface between the grounding algorithm and a model family.

Everything that differs between Qwen2.5-VL, LLaVA-OneVision and LLaVA-NeXT-Video (frame
preprocessing, where visual tokens sit in the prompt, chat template, rotary positions, answer
token ids) lives behind :class:`ModelAdapter`.  The algorithm in ``stvg_ros.grounding.grounder`` only
sees :class:`VisualTokens` and :class:`ForwardOutput` and never branches on model names.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import torch


class AdapterError(ValueError):
    """The model directory or a call's inputs cannot be used; the message says how to fix it."""


def add_latent_prompt(tokens: torch.Tensor, delta: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``tokens + delta`` as the decoder receives it: summed in float32 and rounded once to ``dtype`` (a
    latent prompt smaller than the tokens' rounding step is lost either way: ``lra.latent_prompt_kept``)."""
    return (tokens.float() + delta.float()).to(dtype)


@dataclass
class VisualTokens:
    """A clip's visual tokens in the language model's embedding space, with their geometry.

    ``slot`` is the token's time slot (one per input frame for most models; Qwen's temporal
    patch of 2 makes one slot cover two frames), ``row``/``col`` its cell on the per-slot token
    grid; tokens that belong to no cell (e.g. a newline token) have ``slot == row == col == -1``.
    ``slot_frames[s]`` lists the input frame indices that slot ``s`` covers.  ``content_box``
    is the region ``(x0, y0, x1, y1)`` of the *original* frame (in pixels) that the token grid
    spans, so that grid cells map back to image pixels.
    """

    embeds: torch.Tensor  # (N, D), post-projector, the LM's dtype and device
    slot: torch.Tensor  # (N,) long
    row: torch.Tensor  # (N,) long
    col: torch.Tensor  # (N,) long
    grid: tuple[int, int]  # (rows, cols) of the per-slot token grid
    slot_frames: list[list[int]]
    image_size: tuple[int, int]  # (H, W) of the original frames
    content_box: tuple[float, float, float, float]
    extras: dict = field(default_factory=dict)  # adapter-private (e.g. grid_thw for rotary positions)

    @property
    def num_tokens(self) -> int:
        return int(self.embeds.shape[0])

    @property
    def num_slots(self) -> int:
        return len(self.slot_frames)

    @property
    def num_frames(self) -> int:
        return 1 + max(f for frames in self.slot_frames for f in frames)

    def slot_of_frame(self) -> list[int]:
        """Input frame index → the slot that carries it."""
        out = [0] * self.num_frames
        for s, frames in enumerate(self.slot_frames):
            for f in frames:
                out[f] = s
        return out

    def reversed_in_time(self) -> tuple["VisualTokens", torch.Tensor]:
        """The same clip with its slots in reverse order.

        This is what the model would see for ``frames[::-1]`` only when every slot holds one frame;
        TAS goes through :meth:`ModelAdapter.encode_reversed`, which re-encodes otherwise.

        Returns the new tokens and ``perm`` such that ``new.embeds == old.embeds[perm]``.
        Tokens keep their cell; slot ``s`` becomes ``S - 1 - s``; non-grid tokens stay where they
        are relative to the end of the token block.  ``slot_frames`` is rewritten so that
        ``new.slot_frames[S-1-s] == old.slot_frames[s]`` (the frames a slot shows do not change,
        only their order in the sequence).
        """
        S = self.num_slots
        order = []
        for s in reversed(range(S)):
            order.extend(torch.nonzero(self.slot == s).flatten().tolist())
        order.extend(torch.nonzero(self.slot < 0).flatten().tolist())
        perm = torch.tensor(order, dtype=torch.long, device=self.slot.device)
        new_slot = self.slot[perm].clone()
        grid_mask = new_slot >= 0
        new_slot[grid_mask] = S - 1 - new_slot[grid_mask]
        new = replace(
            self,
            embeds=self.embeds[perm],
            slot=new_slot,
            row=self.row[perm],
            col=self.col[perm],
            slot_frames=[list(self.slot_frames[S - 1 - s]) for s in range(S)],
            extras=dict(self.extras),
        )
        return new, perm


#: ``AdapterOptions`` field → the values it takes (GroundingConfig validates against this table too)
ADAPTER_OPTION_CHOICES = {
    "visual_tokens": ("model", "paper"),
    "prompt_style": ("template", "official"),
    "frame_resize": ("fixed", "processor", "fine"),
    "frame_fit": ("resize", "pad", "short"),
}


@dataclass(frozen=True)
class AdapterOptions:
    """How a family turns frames and questions into decoder inputs (``GroundingConfig`` fields of the same names).

    ``visual_tokens``: 'model' = the family's visual tokens as transformers computes them; 'paper' =
    the official code's per-family setting (e.g. fewer, more pooled tokens per frame).
    ``answer_tokens``: which vocabulary entries are the yes/no answer: 'auto' (capitalised answer words
    as the tokenizer encodes them, lowercase as a fallback), 'official' (the vocabulary pieces ``yes`` /
    ``no``, the official code's ids) or two pieces ``"YES,NO"`` written as in the vocabulary.
    ``prompt_style``: 'template' = the model's own chat template; 'official' = the official code's
    conversation (its system prompt and layout) where the family has one.
    ``frame_resize``: 'fixed' = the adapter's own frame size (``image_size``); 'processor' = the size the
    model's own processor would choose; 'fine' = a token grid fine enough for a person on a real frame
    (Qwen: about 20x20 tokens per frame area; LLaVA: each frame cut into 2x2 tiles of the tower's one size, twice
    the grid's resolution at 4x the tokens; 'processor' is 'fixed' there).
    ``frame_fit``: how a frame whose aspect differs from the tower input's gets there: 'resize' = stretched
    to it (LLaVA: a 4:3 frame squeezed into the square; Qwen: the aspect rounded to its 28 px grid, 4:3 at
    112² → 5:3); 'pad' = scaled to fit with its aspect kept, centred, the rest padded (letterbox; the token grid
    then spans past the frame's edges, ``VisualTokens.content_box``); 'short' = Qwen: the frame's short side
    gets the input side and the long side as many tokens as its aspect needs (more tokens per frame, objects
    at the scale a square frame gives them), padded to the grid; LLaVA (one square size): as 'resize', whose
    short side keeps its scale.
    """

    visual_tokens: str = "model"
    answer_tokens: str = "auto"
    prompt_style: str = "template"
    frame_resize: str = "fixed"
    frame_fit: str = "short"

    def __post_init__(self) -> None:
        for name, allowed in ADAPTER_OPTION_CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"invalid {name}={getattr(self, name)!r}: choose one of {', '.join(allowed)}")


@dataclass
class CaptureSpec:
    """Which attention to capture during a forward pass.

    ``layers``: decoder layer indices whose attention is averaged (None = all layers).
    Rows captured are always the prompt's grounding-token candidates (see
    :meth:`ModelAdapter.run`); columns are the visual tokens.
    """

    layers: Sequence[int] | None = None


@dataclass
class ForwardOutput:
    """What one batched forward pass gives the algorithm.

    ``yes_no_logits[b] = (logit_yes, logit_no)`` of the first answer token of prompt ``b``
    (keeps the autograd graph when the call asked for gradients).  ``attention[b, k, n]`` is the
    attention of prompt ``b``'s ``k``-th grounding-token candidate to visual token ``n``,
    averaged over heads and the captured layers (float32; None when nothing was captured).
    ``candidate_tokens[b]`` are those candidates' token strings and ``candidate_offsets[b]``
    their positions counted from the prompt's end (-1 = last prompt token).
    """

    yes_no_logits: torch.Tensor  # (B, 2)
    attention: torch.Tensor | None  # (B, K, N) float32
    candidate_tokens: list[list[str]]
    candidate_offsets: list[list[int]]


class ModelAdapter(ABC):
    """A multimodal LLM family, seen the way the grounding algorithm needs it."""

    #: registry key, e.g. "qwen2_5_vl"; also the ``family`` argument of ``stvg_ros.adapters.tiny_models.tiny_model``
    family: str = ""
    #: the official code's fixed grounding-token offset from the prompt's end for this template
    default_grounding_offset: int = -1

    model: torch.nn.Module
    device: torch.device
    dtype: torch.dtype
    options: AdapterOptions = AdapterOptions()
    #: per-frame preprocessing and visual features reused across clips (``stvg_ros.adapters.feature_cache``);
    #: adapters that support it set it from the grounder, None = encode every clip from scratch
    feature_cache = None
    #: whether ``encode_frames`` takes ``keys`` (frame identities) to use :attr:`feature_cache`
    supports_frame_keys: bool = False

    def encode_units(self, count: int) -> list[list[int]]:
        """The frame indices of a ``count``-frame clip grouped into the units the encoder computes
        independently of the rest of the clip (what :attr:`feature_cache` keeps one entry for): one frame
        each here; families whose slots span several frames override (Qwen's 2-frame temporal patches).
        Encoding a unit's frames alone, with their keys, stores exactly what encoding the clip would."""
        return [[i] for i in range(count)]

    def configure(self, options: AdapterOptions) -> None:
        """Apply ``options`` to later calls (clips encoded before keep their tokens)."""
        self.options = options

    @property
    def input_side(self) -> int:
        """The per-frame side (pixels) the vision tower is fed (the service keeps frames at twice it);
        0 = not known, the service then keeps them at its default side.  Families override it."""
        return 0

    @classmethod
    @abstractmethod
    def from_pretrained(cls, path: str, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                        image_size: int | None = None) -> "ModelAdapter":
        """Load model and tokenizer from a local directory (``local_files_only=True``), frozen, eval mode.

        ``image_size`` overrides the adapter's default per-frame input resolution (pixels, square side
        or the budget the family uses), None keeps the model's own default.
        """

    @abstractmethod
    def encode_frames(self, frames: Sequence[np.ndarray], stamps: Sequence[float] | None = None) -> VisualTokens:
        """HxWx3 uint8 RGB frames (all of one size) → visual tokens, without torchvision.

        ``stamps`` (seconds) let families with time-aware positions (Qwen2.5-VL) space them as the
        frames really are; other families ignore them."""

    def encode_reversed(self, frames: Sequence[np.ndarray], stamps: Sequence[float] | None = None,
                        visual: VisualTokens | None = None, keys: Sequence | None = None) -> VisualTokens:
        """The clip in reverse time order exactly as the model sees ``frames[::-1]`` (TAS's augmentation).

        ``slot_frames`` keep naming the *original* frame indices, so maps of the reversed clip come out
        in the original frame order.  ``visual`` (this clip's encoding) lets encoders that see one frame
        per slot reorder its tokens instead of re-encoding (per-frame towers give identical tokens for a
        frame wherever it sits); encoders whose slots span several frames (Qwen's 2-frame temporal
        patches) re-encode, because reversal re-forms the pairs and reverses time inside each
        (``keys``, the frames' identities, let that re-encode use the feature cache).
        """
        if visual is not None and all(len(f) == 1 for f in visual.slot_frames):
            rev = visual.reversed_in_time()[0]
            if "clip_key" in visual.extras:  # the same frames in another order: another clip
                rev.extras["clip_key"] = replace(visual.extras["clip_key"], reversed=True)
            return rev
        T = len(frames)
        rev_stamps = None if stamps is None else [-float(s) for s in reversed(list(stamps))]
        if keys is not None and self.supports_frame_keys:
            rev = self.encode_frames(list(frames)[::-1], stamps=rev_stamps, keys=list(keys)[::-1])
        else:
            rev = self.encode_frames(list(frames)[::-1], stamps=rev_stamps)
        return replace(rev, slot_frames=[[T - 1 - f for f in fr] for fr in rev.slot_frames])

    @abstractmethod
    def run(self, visual: VisualTokens | Sequence[VisualTokens], questions: Sequence[str],
            visual_delta: torch.Tensor | None = None, capture: CaptureSpec | None = None,
            with_grad: bool = False) -> ForwardOutput:
        """One batched forward pass of ``len(questions)`` prompts, each ``video + question``.

        Each prompt is built in the model's own chat template with the video before the question
        and the generation prompt appended, so that the last position predicts the first answer
        token.  ``visual`` is one clip shared by all prompts, or one per prompt.  ``visual_delta``
        (``(N, D)`` shared or ``(B, N, D)`` per prompt) is added to the visual embeddings (LRA's
        latent prompts); gradients flow to it only when ``with_grad``.  ``capture=None`` captures no
        attention (the fast path for LRA steps).
        """

    def shares_prefix_under_grad(self, visual: VisualTokens, questions: Sequence[str]) -> bool:
        """Whether ``run(visual, questions, with_grad=True, share_prefix=True)`` computes the clip's prefix once
        for all the prompts (LRA's first step shares it only then; the default shares nothing)."""
        return False

    def shared_prefixes(self):
        """A context in which several ``run`` calls on one clip may share its prefix computation (adapters
        that can override it; the default shares nothing)."""
        return contextlib.nullcontext()

    @abstractmethod
    def generate_text(self, prompt: str, max_new_tokens: int = 64) -> str:
        """Greedy text-only answer to a user message (used by DSTH to decompose queries)."""

    @property
    @abstractmethod
    def answer_token_ids(self) -> tuple[int, int]:
        """Ids of the yes and no answers (first answer token), resolved per ``options.answer_tokens``."""

    @property
    @abstractmethod
    def num_layers(self) -> int:
        """Decoder layers of the language model (for layer-range configuration)."""
