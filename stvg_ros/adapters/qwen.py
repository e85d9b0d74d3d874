"""Qwen2.5-VL and Qwen2-VL: native-resolution patches, 2-frame temporal patches, 3-D rotary positions."""

from __future__ import annotations

import inspect
import math
from typing import Sequence

import numpy as np
import torch

from .feature_cache import ClipKey
from .base import VisualTokens
from .common import HFAdapter, check_frames, fit_content_box, fit_frame, normalise

_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: the released video processor's (min_pixels, max_pixels) where a model's own config sets none
QWEN_VIDEO_PIXELS = (128 * 28 * 28, 768 * 28 * 28)
#: ``frame_resize='fine'``: frames of about this area (a side²): a grid of about 20x20 tokens (23x17 at 4:3),
#: fine enough for a person of a sixth of the frame's height (bench/bench_real_boxes.py)
FINE_SIDE = 560


def qwen_frame_size(height: int, width: int, frame_resize: str, side: int, processor_pixels: tuple[int, int],
                    factor: int = 28, frame_fit: str = "resize") -> tuple[int, int]:
    """``(h, w)`` a Qwen tower is fed for a ``height`` x ``width`` frame: area ≈ ``side``², aspect kept, sides
    multiples of ``factor`` (patch * merge: one token per ``factor`` pixels); ``frame_resize='processor'``:
    the processor's own ``smart_resize`` within ``processor_pixels`` (min, max); ``'fine'``: ``side`` at least
    :data:`FINE_SIDE` (at most the processor's max pixels), whatever the camera's resolution.  A function of the
    numbers alone, so benchmarks can lay the token grid of any frame size without a model.
    ``frame_fit='short'`` (with ``'fixed'``): the short side gets ``side`` and the long side its aspect's share,
    both multiples of ``factor`` (more tokens than a square frame's, not fewer pixels per object); 'processor'
    and 'fine' keep their sizes, aspect kept within them.  The frame is then fitted into the size
    (``adapters.common.fit_frame``)."""
    if frame_fit == "short" and frame_resize == "fixed":
        short = max(factor, int(round(side / factor)) * factor)
        long = max(factor, int(round(max(height, width) * short / min(height, width) / factor)) * factor)
        return (short, long) if height <= width else (long, short)
    if frame_resize == "processor":
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize  # no torchvision

        lo, hi = processor_pixels
        return smart_resize(height, width, factor=factor, min_pixels=lo, max_pixels=hi)
    if frame_resize == "fine":
        side = min(max(side, FINE_SIDE), int(math.sqrt(processor_pixels[1])))
    scale = side / math.sqrt(height * width)
    h = max(factor, int(round(height * scale / factor)) * factor)
    w = max(factor, int(round(width * scale / factor)) * factor)
    return h, w


class QwenVLAdapter(HFAdapter):
    """Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration``).

    Frames are resized (aspect kept, whole frame, no crop) to about ``image_size``² pixels with
    sides a multiple of ``patch * merge`` (28) — the paper's 224 by default, e.g. 640x480 → 252x196,
    63 tokens per 2-frame slot — or, with ``frame_resize='processor'``, to the size the model's own
    processor picks (``smart_resize`` between its min/max pixels: 640x480 → 644x476, 391 tokens per
    slot; ``frame_resize='fine'``: about 560² pixels, 644x476, 391 tokens per slot at any camera resolution).
    They are cut into patches exactly as the HF video processor does
    (``temporal_patch_size`` = 2 frames per slot; an odd count repeats the last frame) and encoded by
    the model's own ``get_video_features``.  One visual token per 2×2 merged patches, slot-major,
    row-major; rotary positions come from the model's own ``get_rope_index``.  ``visual_tokens`` has
    no effect here (the paper's Qwen setting is the frame size); the official code has no Qwen driver,
    so ``prompt_style='official'`` keeps Qwen's own chat template (with its default system prompt).
    """

    family = "qwen2_5_vl"
    model_class_name = "Qwen2_5_VLForConditionalGeneration"
    default_grounding_offset = -3  # ChatML: '<|im_start|>' of the assistant turn
    #: paper setting for Qwen (20 frames at 224 px); capped by the processor's own max_pixels
    default_image_size = 224

    def _geometry(self):
        cfg = self.processor_config
        vcfg = self.model.config.vision_config
        patch = int(cfg.get("patch_size", getattr(vcfg, "patch_size", 14)))
        merge = int(cfg.get("merge_size", getattr(vcfg, "spatial_merge_size", 2)))
        tpatch = int(cfg.get("temporal_patch_size", getattr(vcfg, "temporal_patch_size", 2)))
        return patch, merge, tpatch

    def _target_side(self) -> int:
        if self.image_size:
            return int(self.image_size)
        cfg = self.processor_config
        max_pixels = cfg.get("max_pixels") or (cfg.get("size") or {}).get("longest_edge")
        side = self.default_image_size
        if max_pixels:
            side = min(side, int(math.sqrt(max_pixels)))
        return side

    @property
    def input_side(self) -> int:
        """The per-frame side (pixels, square-equivalent) the tower is fed: the node keeps frames at twice it."""
        if self.options.frame_resize == "processor":
            return int(math.sqrt(self._processor_pixels()[1]))
        if self.options.frame_resize == "fine":
            return min(max(self._target_side(), FINE_SIDE), int(math.sqrt(self._processor_pixels()[1])))
        return self._target_side()

    def _processor_pixels(self) -> tuple[int, int]:
        """(min_pixels, max_pixels) of the saved processor config (the video processor's defaults if unset)."""
        cfg = self.processor_config
        size = cfg.get("size") or {}
        lo = cfg.get("min_pixels") or size.get("shortest_edge") or QWEN_VIDEO_PIXELS[0]
        hi = cfg.get("max_pixels") or size.get("longest_edge") or QWEN_VIDEO_PIXELS[1]
        return int(lo), int(hi)

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """Frame size fed to the tower (:func:`qwen_frame_size`)."""
        patch, merge, _ = self._geometry()
        return qwen_frame_size(height, width, self.options.frame_resize, self._target_side(),
                               self._processor_pixels(), patch * merge, self.options.frame_fit)

    def _normalised(self, arr: np.ndarray, h: int, w: int) -> np.ndarray:
        """(T, H, W, 3) uint8 → (T, 3, h, w) float32, fitted (``frame_fit``) and standardised (per frame, so
        cacheable)."""
        resized = np.stack([fit_frame(f, h, w, self.options.frame_fit) for f in arr])
        cfg = self.processor_config
        return normalise(resized, cfg.get("image_mean", _CLIP_MEAN), cfg.get("image_std", _CLIP_STD))

    def _patches(self, x: np.ndarray, h: int, w: int):
        """(T, 3, h, w) normalised frames → (flattened patches, grid_thw), the processor's video layout
        (``temporal_patch_size`` frames per slot; an odd count repeats the last frame)."""
        patch, merge, tp = self._geometry()
        if x.shape[0] % tp:
            x = np.concatenate([x, np.repeat(x[-1:], tp - x.shape[0] % tp, axis=0)], axis=0)
        C = x.shape[1]
        gt, gh, gw = x.shape[0] // tp, h // patch, w // patch
        p = x.reshape(gt, tp, C, gh // merge, merge, patch, gw // merge, merge, patch)
        p = p.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)  # (t, bh, bw, mh, mw, C, tp, ph, pw)
        flat = np.ascontiguousarray(p.reshape(gt * gh * gw, C * tp * patch * patch))
        return torch.from_numpy(flat), torch.tensor([[gt, gh, gw]])

    def pixel_values(self, frames: Sequence[np.ndarray]):
        """Frames → (flattened patches, grid_thw, frames per slot), the processor's video layout."""
        arr = check_frames(frames)
        _, H, W, _ = arr.shape
        h, w = self.target_size(H, W)
        pixels, grid_thw = self._patches(self._normalised(arr, h, w), h, w)
        return pixels, grid_thw, self._geometry()[2]

    def _tower(self, pixels: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = self.model.model.get_video_features(pixels.to(self.device, self.dtype), grid_thw.to(self.device))
        feats = out.pooler_output if hasattr(out, "pooler_output") else out
        if isinstance(feats, (tuple, list)):
            feats = torch.cat(list(feats), dim=0)
        return feats

    def _cached_features(self, frames: np.ndarray, keys: Sequence) -> tuple[torch.Tensor, torch.Tensor]:
        """The clip's tokens from per-slot cache entries: a slot's tokens depend on its own
        ``temporal_patch_size`` frames only (window and full attention of the tower stay within a
        slot), so a slot keyed by its frames' identities is reused wherever it sits in a clip."""
        cache = self.feature_cache
        T, H, W = frames.shape[:3]
        patch, merge, tp = self._geometry()
        h, w = self.target_size(H, W)
        setting = (self.options, (H, W), (h, w))
        x = self._cached_pixels(frames, keys, setting, lambda a: self._normalised(a, h, w))
        keys = list(keys)
        if T % tp:
            x = np.concatenate([x, np.repeat(x[-1:], tp - T % tp, axis=0)], axis=0)
            keys += [keys[-1]] * (tp - T % tp)
        slots = [tuple(keys[s * tp:(s + 1) * tp]) for s in range(len(keys) // tp)]
        got = [cache.get("visual", (k, setting)) for k in slots]
        missing = [s for s, v in enumerate(got) if v is None]
        if missing:
            sel = np.concatenate([x[s * tp:(s + 1) * tp] for s in missing])
            pixels, grid = self._patches(sel, h, w)
            feats = self._tower(pixels, grid)
            for j, chunk in zip(missing, feats.chunk(len(missing))):
                got[j] = chunk = chunk.clone()  # its own storage: the cache's byte count is what it holds
                cache.put("visual", (slots[j], setting), chunk, frames=slots[j])
        gh, gw = h // patch, w // patch
        return torch.cat(got), torch.tensor([[len(slots), gh, gw]])

    def encode_frames(self, frames: Sequence[np.ndarray], stamps: Sequence[float] | None = None,
                      keys: Sequence | None = None) -> VisualTokens:
        """``stamps`` (optional, seconds) set the time spacing of Qwen2.5-VL's temporal rotary positions;
        without them the HF processor's default of 2 frames per second is assumed.  ``keys``: the
        frames' identities, to reuse cached slots (see :class:`stvg_ros.adapters.feature_cache.FeatureCache`)."""
        frames = check_frames(frames)
        T, H, W = frames.shape[:3]
        _, merge, tp = self._geometry()
        keyed = self._uses_feature_cache(keys)
        if keyed:
            feats, grid_thw = self._cached_features(frames, keys)
        else:
            pixels, grid_thw, tp = self.pixel_values(frames)
            feats = self._tower(pixels, grid_thw)
        gt, gh, gw = (int(v) for v in grid_thw[0])
        rows, cols = gh // merge, gw // merge
        patch = self._geometry()[0]
        n = gt * rows * cols
        if feats.shape[0] != n:
            raise RuntimeError(f"vision tower returned {feats.shape[0]} tokens, expected {n}")
        idx = torch.arange(n)
        slot_frames = [[f for f in range(s * tp, (s + 1) * tp) if f < T] for s in range(gt)]
        if stamps is not None and len(stamps) == T and T > 1 and stamps[-1] > stamps[0]:
            second_per_grid = tp * (float(stamps[-1]) - float(stamps[0])) / (T - 1)
        else:
            second_per_grid = tp / 2.0
        return VisualTokens(
            embeds=feats.to(self.dtype), slot=(idx // (rows * cols)).to(self.device),
            row=((idx % (rows * cols)) // cols).to(self.device), col=(idx % cols).to(self.device),
            grid=(rows, cols), slot_frames=slot_frames, image_size=(int(H), int(W)),
            content_box=fit_content_box(H, W, gh * patch, gw * patch, self.options.frame_fit),
            extras={"video_grid_thw": grid_thw, "second_per_grid_t": second_per_grid,
                    **({"clip_key": ClipKey(tuple(keys), (self.options, (H, W), self.target_size(H, W),
                                                          second_per_grid))} if keyed else {})})

    def encode_units(self, count: int) -> list[list[int]]:
        """Consecutive ``temporal_patch_size`` frames (2): one cached slot each; an odd clip's last frame
        is a unit alone (its slot repeats it)."""
        tp = self._geometry()[2]
        return [list(range(i, min(i + tp, count))) for i in range(0, count, tp)]

    def _positions(self, expanded_ids, placeholder, visual):
        """3-D rotary positions from the model's own ``get_rope_index`` (what its forward computes)."""
        ids = torch.tensor([expanded_ids], device=self.device)
        types = (ids == self.video_token_id).int() * 2  # 0 text, 2 video
        fn = self.model.model.get_rope_index
        kwargs = dict(input_ids=ids, video_grid_thw=visual.extras["video_grid_thw"].to(self.device))
        params = inspect.signature(fn).parameters
        if "mm_token_type_ids" in params:
            kwargs["mm_token_type_ids"] = types
        if "second_per_grid_ts" in params:
            kwargs["second_per_grid_ts"] = torch.tensor([visual.extras.get("second_per_grid_t", 1.0)],
                                                        device=self.device)
        pos, _ = fn(**kwargs)
        return pos[:, 0]  # (3, L)


class Qwen2VLAdapter(QwenVLAdapter):
    """Qwen2-VL (``Qwen2VLForConditionalGeneration``): same layout, no time-scaled positions."""

    family = "qwen2_vl"
    model_class_name = "Qwen2VLForConditionalGeneration"
