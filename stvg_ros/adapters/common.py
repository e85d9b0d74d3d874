"""What the three transformers families share: loading, the batched decoder pass (prompts in
:mod:`.prompts`, the clip-prefix KV cache in :mod:`.prefix_cache`).

A family adapter only adds frame preprocessing (``encode_frames``) and, for Qwen, rotary
positions (``_positions``).  Everything about prompts is read from the model's own chat
template and tokenizer: the video placeholder, the grounding-token candidates (the question's
last token to the end of the prompt), the official fixed grounding token (the first token of the
template's generation prompt), and the yes/no answer ids.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .attention import capture_attention, null_capture, use_capture_attention
from .checkpointing import checkpointed_layers, should_checkpoint
from .devices import resolve_device
from .base import (AdapterError, AdapterOptions, CaptureSpec, ForwardOutput, ModelAdapter, VisualTokens,
                   add_latent_prompt)
from .prefix_cache import ClipPrefixCache
from .prompts import ChatPrompts, PreparedBatch, PromptLayout

log = logging.getLogger(__name__)


def resolve_dtype(dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype:
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
        if dtype not in table:
            raise AdapterError(f"unknown dtype {dtype!r}: use one of auto, {', '.join(table)}")
        return table[dtype]
    return dtype


def read_processor_config(path: str | Path) -> dict:
    """The saved preprocessing settings: video processor config over image processor config."""
    merged: dict = {}
    for name in ("preprocessor_config.json", "video_preprocessor_config.json"):
        f = Path(path) / name
        if f.is_file():
            merged.update(json.loads(f.read_text()))
    return merged


def load_chat_template(tokenizer, path: str | Path) -> str:
    """The tokenizer's chat template, else the processor's (``chat_template.jinja``/``.json``)."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.chat_template
    p = Path(path)
    if (p / "chat_template.jinja").is_file():
        return (p / "chat_template.jinja").read_text()
    if (p / "chat_template.json").is_file():
        return json.loads((p / "chat_template.json").read_text())["chat_template"]
    raise AdapterError(f"{path} has no chat template (tokenizer_config.json, chat_template.jinja or "
                       "chat_template.json): copy the template file of the released model into the directory")


def resize_rgb(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic resize of an HxWx3 uint8 frame with PIL (what the HF processors use by default)."""
    from PIL import Image

    if frame.shape[0] == height and frame.shape[1] == width:
        return frame
    return np.asarray(Image.fromarray(frame).resize((width, height), resample=Image.BICUBIC))


def frame_placement(height: int, width: int, in_h: int, in_w: int, fit: str) -> tuple[int, int, int, int]:
    """Where a ``height`` x ``width`` frame lands in an ``in_h`` x ``in_w`` tower input: ``(top, left, h, w)``.

    ``fit='resize'``: the whole input (the frame stretched to the input's aspect); ``'pad'`` (and ``'short'``,
    whose input the family sized to the frame's aspect): the frame scaled to fit, aspect kept, centred, the
    rest padding (letterbox / pillarbox), so shapes are what the camera saw."""
    if fit == "resize":
        return 0, 0, in_h, in_w
    scale = min(in_h / height, in_w / width)
    h, w = min(in_h, max(1, int(round(height * scale)))), min(in_w, max(1, int(round(width * scale))))
    return (in_h - h) // 2, (in_w - w) // 2, h, w


def fit_frame(frame: np.ndarray, in_h: int, in_w: int, fit: str) -> np.ndarray:
    """A frame as the tower takes it (:func:`frame_placement`); padding is the frame's mean colour, which
    the processor's normalisation maps near zero for natural images and which adds no edge of its own."""
    H, W = frame.shape[:2]
    top, left, h, w = frame_placement(H, W, in_h, in_w, fit)
    if (h, w) == (in_h, in_w):
        return resize_rgb(frame, in_h, in_w)
    import cv2

    out = np.empty((in_h, in_w, 3), np.uint8)
    out[:] = np.round(cv2.mean(frame)[:3]).astype(np.uint8)  # numpy's mean costs ~80x more on 640x480
    out[top:top + h, left:left + w] = resize_rgb(frame, h, w)
    return out


def fit_content_box(height: int, width: int, in_h: int, in_w: int, fit: str) -> tuple[float, float, float, float]:
    """The region of the frame, in its own pixels, that the whole tower input (and so its token grid)
    spans: ``(0, 0, width, height)`` when stretched; beyond the frame's edges by the padding otherwise."""
    top, left, h, w = frame_placement(height, width, in_h, in_w, fit)
    sx, sy = width / w, height / h  # frame pixels per input pixel
    return (-left * sx, -top * sy, (in_w - left) * sx, (in_h - top) * sy)


def normalise(frames: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(T, H, W, 3) uint8 → (T, 3, H, W) float32 scaled to [0, 1] and standardised per channel."""
    x = frames.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def check_frames(frames: Sequence[np.ndarray]) -> np.ndarray:
    """Validate frames and stack them to (T, H, W, 3) uint8."""
    if isinstance(frames, np.ndarray) and frames.ndim == 4 and frames.shape[-1] == 3 and frames.dtype == np.uint8:
        return frames
    if len(frames) == 0:
        raise AdapterError("encode_frames got no frames: pass at least one HxWx3 uint8 RGB frame")
    arr = [np.asarray(f) for f in frames]
    shape = arr[0].shape
    for f in arr:
        if f.ndim != 3 or f.shape[2] != 3:
            raise AdapterError(f"frames must be HxWx3 RGB arrays, got shape {f.shape}")
        if f.shape != shape:
            raise AdapterError(f"all frames must have one size, got {shape} and {f.shape}: resize them first")
    out = np.stack(arr)
    if out.dtype != np.uint8:
        raise AdapterError(f"frames must be uint8 RGB, got {out.dtype}: convert with frame.astype(np.uint8)")
    return out


class HFAdapter(ChatPrompts, ClipPrefixCache, ModelAdapter):
    """Shared implementation over a transformers ``*ForConditionalGeneration`` model."""

    model_class_name: str = ""
    #: LRA's backward pass: recompute decoder layers instead of keeping their activations
    #: (True/False force it; None = auto: on a GPU when memory would run short, see stvg_ros.adapters.checkpointing)
    activation_checkpointing: bool | None = None
    supports_frame_keys = True

    def __init__(self, model, tokenizer, path: str, device: torch.device, dtype: torch.dtype,
                 image_size: int | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.path = str(path)
        self.device = device
        self.dtype = dtype
        self.image_size = image_size
        self.processor_config = read_processor_config(path)
        self.chat_template = load_chat_template(tokenizer, path)
        self.video_token_id = self._video_token_id()
        self.options = AdapterOptions()
        self._apply_options()

    def configure(self, options: AdapterOptions) -> None:
        """Apply ``options``: answer ids, prompts and the fixed grounding token are resolved again."""
        self.options = options
        self._apply_options()

    def _apply_options(self) -> None:
        self._layout_cache: dict[str, PromptLayout] = {}
        self._yes_no = self._resolve_answer_ids()
        self.default_grounding_offset = self._derive_grounding_offset()

    # ------------------------------------------------------------------ per-frame cache
    def _uses_feature_cache(self, keys: Sequence | None) -> bool:
        """Whether an encode given ``keys`` goes through :attr:`feature_cache` (and its clip gets a ClipKey)."""
        return keys is not None and self.feature_cache is not None and self.feature_cache.enabled

    def _cached_pixels(self, frames: np.ndarray, keys: Sequence, setting, preprocess) -> np.ndarray:
        """``preprocess`` (uint8 frames → per-frame float arrays) with each frame's result cached under its
        key and ``setting``: resize and normalise run once per kept frame (elementwise per frame, so a
        cached frame is what a whole-clip call would compute)."""
        cache = self.feature_cache
        if len(keys) != len(frames):
            raise AdapterError(f"got {len(keys)} frame keys for {len(frames)} frames: pass one key per frame")
        got = [cache.get("pixels", (k, setting)) for k in keys]
        missing = [i for i, v in enumerate(got) if v is None]
        if missing:
            done = preprocess(frames[missing])
            for j, i in enumerate(missing):
                got[i] = done[j].copy()
                cache.put("pixels", (keys[i], setting), got[i], frames=(keys[i],))
        return np.stack(got)

    # ------------------------------------------------------------------ loading
    @classmethod
    def _model_class(cls):
        import transformers

        return getattr(transformers, cls.model_class_name)

    @classmethod
    def from_pretrained(cls, path, device="cpu", dtype=None, image_size=None):
        from transformers import AutoTokenizer

        path = str(path)
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        model = cls._model_class().from_pretrained(path, dtype=dt, attn_implementation="sdpa",
                                                   local_files_only=True)
        model.to(dev)
        model.eval()
        model.requires_grad_(False)
        use_capture_attention(cls._language_model_of(model))
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        return cls(model, tokenizer, path, dev, dt, image_size=image_size)

    @staticmethod
    def _language_model_of(model) -> torch.nn.Module:
        return model.model.language_model

    @property
    def language_model(self) -> torch.nn.Module:
        return self._language_model_of(self.model)

    @property
    def num_layers(self) -> int:
        return int(self.language_model.config.num_hidden_layers)

    def _video_token_id(self) -> int:
        cfg = self.model.config
        for name in ("video_token_id", "video_token_index"):
            v = getattr(cfg, name, None)
            if v is not None:
                return int(v)
        raise AdapterError(f"{self.path}: config.json names no video token id (video_token_id)")

    # ------------------------------------------------------------------ decoder inputs
    def _positions(self, expanded_ids: list[int], placeholder: int, visual: VisualTokens) -> torch.Tensor:
        """Rotary position ids of one prompt: plain 0..L-1 unless the family overrides (Qwen's 3-D)."""
        return torch.arange(len(expanded_ids), device=self.device)

    def prepare(self, visual: VisualTokens | Sequence[VisualTokens], questions: Sequence[str],
                visual_delta: torch.Tensor | None = None) -> PreparedBatch:
        """Embed B prompts with their visual tokens spliced in, right-padded (no attention mask needed:
        with right padding and causal attention no real token ever sees a pad)."""
        questions = list(questions)
        B = len(questions)
        if B == 0:
            raise AdapterError("run() got no questions")
        visuals = [visual] * B if isinstance(visual, VisualTokens) else list(visual)
        if len(visuals) != B:
            raise AdapterError(f"got {len(visuals)} visual clips for {B} questions: pass one clip or one per question")
        n_vis = visuals[0].num_tokens
        if any(v.num_tokens != n_vis for v in visuals):
            raise AdapterError("all clips of one run() must have the same number of visual tokens "
                               "(same frame count and size)")
        if visual_delta is not None and visual_delta.shape[-2] != n_vis:
            raise AdapterError(f"visual_delta has {visual_delta.shape[-2]} tokens, the clip has {n_vis}")
        embed = self.model.get_input_embeddings()
        layouts = [self.layout(q) for q in questions]
        seqs, positions, rows, cols, lengths, cand_tok, cand_off, expanded, starts = [], [], [], [], [], [], [], [], []
        n_cand = min(len(lay.ids) - lay.candidate_start for lay in layouts)
        for b, (lay, vis) in enumerate(zip(layouts, visuals)):
            ids = torch.tensor(lay.ids, device=self.device)
            ph = lay.placeholder
            v = vis.embeds.to(self.device, self.dtype)
            if visual_delta is not None:
                d = visual_delta if visual_delta.dim() == 2 else visual_delta[b]
                v = add_latent_prompt(vis.embeds.to(self.device), d.to(self.device), self.dtype)
            seq = torch.cat([embed(ids[:ph]), v, embed(ids[ph + 1:])], dim=0)
            exp_ids = lay.ids[:ph] + [self.video_token_id] * n_vis + lay.ids[ph + 1:]
            seqs.append(seq)
            expanded.append(exp_ids)
            positions.append(self._positions(exp_ids, ph, vis))
            lengths.append(seq.shape[0])
            first = len(lay.ids) - n_cand
            rows.append([i + n_vis - 1 for i in range(first, len(lay.ids))])
            starts.append(lay.question_start + (n_vis - 1 if lay.question_start > ph else 0))
            cols.append(list(range(ph, ph + n_vis)))
            cand_tok.append(self.tokenizer.convert_ids_to_tokens(lay.ids[first:]))
            cand_off.append([i - len(lay.ids) for i in range(first, len(lay.ids))])
        L = max(lengths)
        D = seqs[0].shape[-1]
        embeds = seqs[0].new_zeros((B, L, D))
        pos_shape = positions[0].shape[:-1]
        pos = torch.zeros((*pos_shape, B, L), dtype=torch.long, device=self.device)
        for b in range(B):
            n = lengths[b]
            embeds[b, :n] = seqs[b]
            pos[..., b, :n] = positions[b]
            if n < L:  # pads continue the positions (never attended by real tokens)
                pos[..., b, n:] = positions[b][..., -1:] + torch.arange(1, L - n + 1, device=self.device)
        return PreparedBatch(
            embeds=embeds, positions=pos,
            last=torch.tensor([n - 1 for n in lengths], device=self.device),
            rows=torch.tensor(rows, device=self.device), cols=torch.tensor(cols, device=self.device),
            candidate_tokens=cand_tok, candidate_offsets=cand_off, lengths=lengths, prompt_ids=expanded,
            question_starts=starts)

    # ------------------------------------------------------------------ forward
    def _decode(self, embeds, positions, past_key_values=None, use_cache=False):
        return self.language_model(inputs_embeds=embeds, position_ids=positions, past_key_values=past_key_values,
                                   use_cache=use_cache)

    def _answer_logits(self, hidden_last: torch.Tensor) -> torch.Tensor:
        """(B, D) final hidden states → (B, 2) logits of yes/no (lm_head on the B rows only)."""
        yes, no = self._yes_no
        weight = self.model.get_output_embeddings().weight[[yes, no]]
        bias = getattr(self.model.get_output_embeddings(), "bias", None)
        out = hidden_last @ weight.T
        if bias is not None:
            out = out + bias[[yes, no]]
        return out

    def _recomputes(self, batch: PreparedBatch) -> bool:
        """Whether a pass with gradients over ``batch`` recomputes the decoder layers (activation checkpointing)."""
        return should_checkpoint(self.activation_checkpointing, self.model, self.device, int(batch.embeds.shape[1]),
                                 len(batch.lengths), self.dtype)

    def run(self, visual, questions, visual_delta=None, capture: CaptureSpec | None = None,
            with_grad: bool = False, share_prefix: bool = False) -> ForwardOutput:
        """See :meth:`ModelAdapter.run`.  ``share_prefix``: prompts whose inputs agree on a prefix that holds
        the whole visual block run on one computation of it even when ``with_grad`` (LRA's first step, where
        every latent prompt is zero: the gradient reaches each clip's latent prompt through its one prefix)."""
        batch = self.prepare(visual, questions, visual_delta)
        layers = None if capture is None or capture.layers is None else list(capture.layers)
        if layers is not None:
            bad = [i for i in layers if not 0 <= int(i) < self.num_layers]
            if bad:
                raise AdapterError(f"capture layers {bad} out of range: the model has {self.num_layers} layers")
        if visual_delta is None and not with_grad and isinstance(visual, VisualTokens) and self.use_prefix_cache:
            P = self._clip_prefix_length(batch)
            if P:  # one clip, no latent prompt: its prefix (and this whole call) may be cached
                return self._run_on_clip(batch, visual, list(questions), capture, layers, P)
        grad_ctx = torch.enable_grad() if with_grad else torch.no_grad()
        with grad_ctx:
            recompute = with_grad and self._recomputes(batch)
            plan = self._shared_plan(batch, with_grad, share_prefix, recompute)
            texts = [] if plan is not None or recompute or not self.use_text_prefix_cache \
                else self._text_prefix_groups(batch)
            if plan is not None:
                hidden_last, attn = self._run_on_prefixes(batch, capture, layers, *plan)
            elif texts:
                hidden_last, attn = self._run_on_text_prefixes(batch, capture, layers, texts)
            else:
                with checkpointed_layers(self.language_model) if recompute else contextlib.nullcontext():
                    hidden_last, attn = self._run_full(batch, capture, layers)
            logits = self._answer_logits(hidden_last).float()
        return ForwardOutput(yes_no_logits=logits, attention=attn, candidate_tokens=batch.candidate_tokens,
                             candidate_offsets=batch.candidate_offsets)

    def _run_full(self, batch: PreparedBatch, capture, layers):
        ctx = capture_attention(batch.rows, batch.cols, layers) if capture is not None else null_capture()
        with ctx as cap:
            out = self._decode(batch.embeds, batch.positions)
        h = out.last_hidden_state
        hidden_last = h[torch.arange(h.shape[0], device=h.device), batch.last]
        attn = cap.result() if cap is not None else None
        return hidden_last, attn

    # ------------------------------------------------------------------ text generation
    def generate_text(self, prompt: str, max_new_tokens: int = 64) -> str:
        messages = [{"role": "user", "content": [{"type": "text", "text": prompt}]}]
        text = self.tokenizer.apply_chat_template(messages, chat_template=self.chat_template, tokenize=False,
                                                  add_generation_prompt=True)
        ids, _ = self._encode(text)
        input_ids = torch.tensor([ids], device=self.device)
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        with torch.no_grad():
            out = self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                      max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos,
                                      pad_token_id=self.tokenizer.pad_token_id or 0)
        return self.tokenizer.decode(out[0, input_ids.shape[1]:], skip_special_tokens=True).strip()
