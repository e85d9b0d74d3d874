"""LLaVA-OneVision and LLaVA-NeXT-Video: a fixed-size vision tower per frame, pooled per frame.

Frames are resized to the tower's square input (the whole frame, no crop, so every pixel of the
camera image can be grounded, as the official code feeds them; the HF processors of NeXT-Video
center-crop instead).  ``visual_tokens='model'`` encodes them with the model's own
``get_video_features`` (transformers' pooling: NeXT-Video pools 2x2 *before* the projector, 144
tokens per 336 px frame; OneVision interpolates to ceil(27/2)² = 196 per 384 px frame, then one
newline token).  ``visual_tokens='paper'`` is the official code's setting: tower → projector → pooling
of the projected grid (NeXT-Video: 4x4 average, 6x6 = 36 per frame; OneVision: bilinear to
ceil(27/5)² = 6x6 = 36 per frame, then the one newline token).  ``frame_resize='fine'``: each frame is
fitted to :data:`FINE_TILES` x the tower's side and cut into :data:`FINE_TILES`² tiles of the tower's size, each
encoded as a frame is, their grids joined into one grid per frame (row-major over the whole frame, as the
families' own image tiling lays its tiles out): twice the grid's resolution at 4x the visual tokens.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from .feature_cache import ClipKey
from .base import VisualTokens
from .base import AdapterError
from .common import HFAdapter, check_frames, fit_content_box, fit_frame, log, normalise

_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


#: ``frame_resize='fine'``: tiles per side of a frame (a NeXT-Video frame 24x24 tokens instead of 12x12, a
#: OneVision frame 28x28 instead of 14x14: fine enough for a person on a real frame, bench/bench_real_boxes.py)
FINE_TILES = 2


def llava_tiles(frame_resize: str) -> int:
    """Tiles per side a frame is cut into under ``frame_resize``: :data:`FINE_TILES` for 'fine', else 1 (the
    tower's one square input: 'fixed' and 'processor' are the same here).  A function of the option alone, so
    benchmarks can lay the grid without a model."""
    return FINE_TILES if frame_resize == "fine" else 1


def _square_grids(tokens: int, num_frames: int) -> bool:
    """Whether ``tokens`` split into ``num_frames`` equal square grids."""
    per_frame, rem = divmod(tokens, num_frames)
    side = int(round(per_frame ** 0.5)) if per_frame > 0 else 0
    return rem == 0 and side > 0 and side * side == per_frame


class _LlavaVideoAdapter(HFAdapter):
    default_mean = _CLIP_MEAN
    default_std = _CLIP_STD
    #: tokens after the frames' grids that belong to no cell (OneVision's newline)
    trailing_tokens = 0
    #: the official code's pooling of the projected per-frame grid (``visual_tokens='paper'``): mode, stride
    paper_pooling: tuple[str, int] = ("average", 4)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._context_warned: set = set()
        self._tower_side()  # reject an unusable image_size at load time

    def _tower_side(self) -> int:
        side = int(self.model.config.vision_config.image_size)
        if self.image_size and int(self.image_size) != side:
            raise AdapterError(f"image_size={self.image_size} is not supported by {self.path}: its vision tower "
                               f"takes {side}x{side} frames; use image_size 0 (the default) or {side}")
        return side

    @property
    def _tiles(self) -> int:
        return llava_tiles(self.options.frame_resize)

    @property
    def input_side(self) -> int:
        """The per-frame side (pixels) the tower is fed (all tiles together under 'fine'): the node keeps
        frames at twice it."""
        return self._tower_side() * self._tiles

    def _with_trailing_tokens(self, feats: torch.Tensor, num_frames: int) -> torch.Tensor:
        """The video's tokens including those after the grids (none here; OneVision overrides)."""
        return feats

    @property
    def _fit(self) -> str:
        """``frame_fit`` on a tower of one square size: 'short' (the short side at the input side) is what
        'resize' does here, since the long side can get no more tokens."""
        return "resize" if self.options.frame_fit == "short" else self.options.frame_fit

    def _normalised(self, arr: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) uint8 → (T, 3, S, S) float32 at :attr:`input_side` (the tower's side x the tiles),
        fitted (:attr:`_fit`: stretched or letterboxed) and standardised (per frame, so cacheable)."""
        side = self.input_side
        resized = np.stack([fit_frame(f, side, side, self._fit) for f in arr])
        cfg = self.processor_config
        return normalise(resized, cfg.get("image_mean", self.default_mean), cfg.get("image_std", self.default_std))

    def pixel_values(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(self._normalised(check_frames(frames)))[None]  # (1, T, 3, S, S)

    def _features(self, pixels: torch.Tensor, T: int) -> torch.Tensor:
        """(1, T, 3, S, S) → the video's tokens ``(T * per_frame + trailing_tokens, D)``; under 'fine' the
        frames' tiles go through the tower and pooling as frames, and each frame's tiles are joined again."""
        n = self._tiles
        if n > 1:
            side = self._tower_side()
            pixels = (pixels.reshape(1, T, pixels.shape[2], n, side, n, side).permute(0, 1, 3, 5, 2, 4, 6)
                      .reshape(1, T * n * n, pixels.shape[2], side, side))
        feats = self._tower_features(pixels, T * n * n)
        return self._joined_tiles(feats, T, n) if n > 1 else feats

    def _joined_tiles(self, feats: torch.Tensor, T: int, n: int) -> torch.Tensor:
        """Tile-major tokens (frame, tile row, tile col, row, col) → one row-major grid per frame."""
        grid = feats[:feats.shape[0] - self.trailing_tokens]
        D = grid.shape[-1]
        g = math.isqrt(grid.shape[0] // (T * n * n))
        grid = grid.reshape(T, n, n, g, g, D).permute(0, 1, 3, 2, 4, 5).reshape(-1, D)
        return torch.cat([grid, feats[grid.shape[0]:]])

    def _tower_features(self, pixels: torch.Tensor, T: int) -> torch.Tensor:
        """(1, T, 3, S, S) at the tower's side → ``(T * per_frame + trailing_tokens, D)``."""
        cfg = self.model.config
        with torch.no_grad():
            if self.options.visual_tokens == "paper":
                feats = self._paper_features(pixels.to(self.device, self.dtype))
            else:
                out = self.model.model.get_video_features(
                    pixels.to(self.device, self.dtype), vision_feature_layer=cfg.vision_feature_layer,
                    vision_feature_select_strategy=cfg.vision_feature_select_strategy)
                feats = out.pooler_output if hasattr(out, "pooler_output") else out
                if isinstance(feats, (tuple, list)):  # transformers 5.17 (the GPU image's): one tensor per video
                    feats = torch.cat([f.reshape(-1, f.shape[-1]) for f in feats])
                feats = self._with_trailing_tokens(feats.reshape(-1, feats.shape[-1]), T)
        return feats.reshape(-1, feats.shape[-1])

    def _cached_features(self, frames: np.ndarray, keys: Sequence) -> torch.Tensor:
        """The clip's tokens from per-frame cache entries: the tower, projector and pooling see one
        frame at a time, so a frame's tokens are the same wherever it sits in a clip; the trailing
        token(s) are the model's constant (OneVision's newline), cached once per setting."""
        cache = self.feature_cache
        T, H, W = frames.shape[:3]
        setting = (self.options, (H, W))
        x = self._cached_pixels(frames, keys, setting, self._normalised)
        got = [cache.get("visual", (k, setting)) for k in keys]
        trailing = cache.get("visual-trailing", setting) if self.trailing_tokens else None
        missing = [i for i, v in enumerate(got) if v is None]
        if missing or (self.trailing_tokens and trailing is None):
            todo = missing or [0]
            feats = self._features(torch.from_numpy(x[todo])[None], len(todo))
            n = self.trailing_tokens
            grid, trailing = (feats[:-n], feats[-n:]) if n else (feats, None)
            if n:
                trailing = trailing.clone()
                cache.put("visual-trailing", setting, trailing)
            for i, chunk in zip(todo, grid.chunk(len(todo))):
                if got[i] is None:
                    got[i] = chunk = chunk.clone()  # its own storage: the byte count is what it holds
                    cache.put("visual", (keys[i], setting), chunk, frames=(keys[i],))
        return torch.cat(got + ([trailing] if self.trailing_tokens else []))

    def encode_frames(self, frames: Sequence[np.ndarray], stamps: Sequence[float] | None = None,
                      keys: Sequence | None = None) -> VisualTokens:
        """``stamps`` is accepted for interface symmetry with Qwen and unused (no time positions);
        ``keys``: the frames' identities, to reuse cached frames (``stvg_ros.adapters.feature_cache``)."""
        frames = check_frames(frames)
        T, H, W = frames.shape[:3]
        keyed = self._uses_feature_cache(keys)
        if keyed:
            feats = self._cached_features(frames, keys)
        else:
            feats = self._features(self.pixel_values(frames), T)
        feats = feats.reshape(-1, feats.shape[-1])
        per_frame, rem = divmod(feats.shape[0] - self.trailing_tokens, T)
        side = int(round(per_frame ** 0.5))
        if rem or side * side != per_frame:
            raise RuntimeError(f"{feats.shape[0]} video tokens for {T} frames do not form square per-frame grids")
        self._warn_past_context(feats.shape[0], T)
        n_grid = T * per_frame
        idx = torch.arange(n_grid)
        minus = torch.full((self.trailing_tokens,), -1, dtype=torch.long)
        slot = torch.cat([idx // per_frame, minus])
        row = torch.cat([(idx % per_frame) // side, minus])
        col = torch.cat([idx % side, minus])
        return VisualTokens(
            embeds=feats.to(self.dtype), slot=slot.to(self.device), row=row.to(self.device), col=col.to(self.device),
            grid=(side, side), slot_frames=[[t] for t in range(T)], image_size=(int(H), int(W)),
            content_box=fit_content_box(H, W, self.input_side, self.input_side, self._fit),
            extras={"clip_key": ClipKey(tuple(keys), (self.options, (H, W)))} if keyed else {})

    def _warn_past_context(self, tokens: int, frames: int) -> None:
        """Log once per setting when a clip's visual tokens alone fill the language model's trained context
        (``max_position_embeddings``, e.g. LLaVA-NeXT-Video-7B's 4,096: 20 frames at 'fine' are 11,520): past it
        the positions are ones the model never saw."""
        limit = getattr(getattr(self.model.config, "text_config", None), "max_position_embeddings", None)
        key = (self.options, frames)
        if not limit or tokens < limit or key in self._context_warned:
            return
        self._context_warned.add(key)
        log.warning(f"{frames} frames give {tokens} visual tokens ({tokens // frames} per frame, frame_resize="
                    f"{self.options.frame_resize!r}, visual_tokens={self.options.visual_tokens!r}), at or past "
                    f"{self.path}'s context of {limit} positions: lower num_frames, or use frame_resize 'fixed' "
                    f"or visual_tokens 'paper'")

    def _paper_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """The official code's video tokens: the model's tower and feature layer, its projector, then
        :attr:`paper_pooling` on each frame's projected grid (the official ``get_2dPool``), then the
        trailing newline token(s) of the family."""
        import torch.nn.functional as F

        cfg = self.model.config
        inner = self.model.model
        frames = pixels.flatten(0, 1)
        out = inner.vision_tower(frames, output_hidden_states=True, return_dict=True)
        layer = cfg.vision_feature_layer
        if isinstance(layer, int):
            feats = out.hidden_states[layer]
        else:
            feats = torch.cat([out.hidden_states[i] for i in layer], dim=-1)
        if cfg.vision_feature_select_strategy == "default":
            feats = feats[:, 1:]
        feats = inner.multi_modal_projector(feats)
        T, P, D = feats.shape
        side = math.isqrt(P)
        grid = feats.view(T, side, side, D).permute(0, 3, 1, 2)
        mode, stride = self.paper_pooling
        if mode == "average":
            grid = F.avg_pool2d(grid, stride)
        else:
            grid = F.interpolate(grid, size=[math.ceil(side / stride)] * 2, mode="bilinear")
        feats = grid.permute(0, 2, 3, 1).reshape(-1, D)
        if self.trailing_tokens:
            feats = torch.cat([feats, inner.image_newline[None].to(feats.dtype).expand(self.trailing_tokens, D)])
        return feats


class LlavaOnevisionAdapter(_LlavaVideoAdapter):
    """LLaVA-OneVision: SigLIP tower, projector, bilinear pooling to ceil(P/2)², one newline token
    appended after the video (slot = row = col = -1)."""

    family = "llava_onevision"
    model_class_name = "LlavaOnevisionForConditionalGeneration"
    default_grounding_offset = -3  # ChatML: '<|im_start|>' of the assistant turn
    default_mean = (0.5, 0.5, 0.5)
    default_std = (0.5, 0.5, 0.5)
    trailing_tokens = 1
    paper_pooling = ("bilinear", 5)
    #: the official code's ``qwen_1_5`` conversation (its system prompt; the video on its own line)
    official_conversation = (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{video}\n{question}<|im_end|>\n",
        "<|im_start|>assistant\n")

    def _with_trailing_tokens(self, feats: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Append the newline when ``get_video_features`` left it out: transformers 5.17 (the GPU image's)
        appends it in the model's forward, later releases in ``get_video_features``."""
        if not _square_grids(feats.shape[0] - 1, num_frames) and _square_grids(feats.shape[0], num_frames):
            feats = torch.cat([feats, self.model.model.image_newline[None].to(feats)])
        return feats


class LlavaNextVideoAdapter(_LlavaVideoAdapter):
    """LLaVA-NeXT-Video: CLIP tower, the model's spatial pooler (``spatial_pool_stride``), projector;
    frame-major tokens, no newline token (Vicuna-style "USER: ... ASSISTANT:" template)."""

    family = "llava_next_video"
    model_class_name = "LlavaNextVideoForConditionalGeneration"
    default_grounding_offset = -5  # Vicuna: '▁A' of " ASSISTANT:"
    paper_pooling = ("average", 4)
    #: the official code's ``vicuna_v1`` conversation (its system prompt)
    official_conversation = (
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
        "detailed, and polite answers to the user's questions. USER: {video}\n{question} ",
        "ASSISTANT:")
