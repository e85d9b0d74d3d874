"""Open-vocabulary detectors from local transformers checkpoints, without torchvision.

Grounding DINO (and MM-Grounding-DINO, which shares its processor) uses the processor's PIL
image backend (``backend="pil"``), which needs no torchvision.  OWLv2's PIL backend resizes with
scipy, which is not installed here, so its preprocessing (pad to a square, anti-aliasing blur,
bilinear resize, CLIP normalisation -- the steps of transformers' torchvision-backed OWLv2 image
processor) is done in torch below.  Post-processing is ours for both, so that the paper's two thresholds mean what
they meant in Grounding DINO: a box is kept when its best token score passes ``box_threshold``
and the phrase's own tokens pass ``text_threshold``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .tracks import Detections
from ..config import ProposalConfig, ProposalConfigError
from ..adapters.devices import resolve_device

_GROUNDING_DINO_TYPES = ("grounding-dino", "mm-grounding-dino")
_OWLV2_TYPES = ("owlv2",)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    # 'auto' stays float32: Grounding DINO's deformable attention and box refinement lose boxes in fp16
    return {"auto": torch.float32, "float32": torch.float32, "bfloat16": torch.bfloat16,
            "float16": torch.float16}[dtype]


def detector_type_of(path: str | Path) -> str:
    """'grounding_dino' or 'owlv2' from the checkpoint's ``config.json``; a clear error otherwise."""
    cfg_file = Path(path) / "config.json"
    if not cfg_file.is_file():
        raise ProposalConfigError(
            f"proposals_detector_path={str(path)!r} has no config.json: point it at a local transformers "
            "checkpoint of Grounding DINO, MM-Grounding-DINO or OWLv2 (downloaded beforehand; nothing is fetched)")
    model_type = json.loads(cfg_file.read_text()).get("model_type", "")
    if model_type in _GROUNDING_DINO_TYPES:
        return "grounding_dino"
    if model_type in _OWLV2_TYPES:
        return "owlv2"
    raise ProposalConfigError(
        f"detector at {path} is a {model_type!r} model: use Grounding DINO, MM-Grounding-DINO or OWLv2 "
        "(or set proposals_detector_type explicitly if the config is unusual)")


def pairwise_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of xyxy boxes (N, 4) × (M, 4)."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-9)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float) -> torch.Tensor:
    """Greedy non-maximum suppression (torchvision's ``nms`` semantics); indices kept, best first."""
    if iou >= 1.0 or len(boxes) <= 1:
        return torch.argsort(scores, descending=True)
    order = torch.argsort(scores, descending=True)
    overlaps = pairwise_iou(boxes[order], boxes[order])
    keep: list[int] = []
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= overlaps[i].cpu() > iou
    return order[torch.tensor(keep, dtype=torch.long)]


class ZeroShotDetector:
    """Text-prompted detector: ``detect(frames, phrase)`` → one :class:`Detections` per frame.

    Frames are HxWx3 uint8 RGB arrays; boxes come back in their pixels.  ``min_score`` is the lowest
    score returned (ByteTrack also wants the low-score boxes); ``box_threshold`` is what callers
    treat as a confident detection.
    """

    def __init__(self, model, processor, kind: str, device: torch.device, dtype: torch.dtype,
                 box_threshold: float = 0.4, text_threshold: float = 0.4, nms_iou: float = 0.7,
                 batch_size: int = 4):
        self.model, self.processor, self.kind = model, processor, kind
        self.device, self.dtype = device, dtype
        self.box_threshold, self.text_threshold, self.nms_iou = box_threshold, text_threshold, nms_iou
        self.batch_size = batch_size
        self.calls = 0
        """Frames run through the model so far (tests and the benchmark read it)."""
        self.seconds = 0.0
        """Wall time spent in ``detect`` so far."""

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path, config: Optional[ProposalConfig] = None,
                        **overrides) -> "ZeroShotDetector":
        """Load a detector from a local directory (``local_files_only=True``; nothing is downloaded)."""
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

        cfg = (config or ProposalConfig()).replace(**overrides) if overrides else (config or ProposalConfig())
        path = Path(path or cfg.detector_path)
        if not path.is_dir():
            raise ProposalConfigError(
                f"detector directory {str(path)!r} does not exist: set proposals_detector_path (--detector) to "
                "a local Grounding DINO / OWLv2 checkpoint (save_pretrained layout)")
        kind = detector_type_of(path) if cfg.detector_type == "auto" else cfg.detector_type
        device = resolve_device(cfg.device, "proposals_device", ProposalConfigError)
        dtype = resolve_dtype(cfg.dtype, device)
        processor = AutoProcessor.from_pretrained(str(path), local_files_only=True, backend="pil")
        model = AutoModelForZeroShotObjectDetection.from_pretrained(str(path), local_files_only=True, dtype=dtype)
        model.to(device).eval().requires_grad_(False)
        return cls(model, processor, kind, device, dtype, cfg.box_threshold, cfg.text_threshold, cfg.nms_iou,
                   cfg.batch_size)

    # ------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def detect(self, frames: Sequence[np.ndarray], phrase: str, min_score: Optional[float] = None) -> list[Detections]:
        """Detections of ``phrase`` in every frame (batched by ``batch_size``)."""
        if not phrase.strip():
            raise ValueError("detect() needs a non-empty phrase, e.g. 'person'")
        min_score = self.box_threshold if min_score is None else min_score
        t0 = time.perf_counter()
        out: list[Detections] = []
        for i in range(0, len(frames), self.batch_size):
            chunk = [np.ascontiguousarray(f) for f in frames[i:i + self.batch_size]]
            if self.kind == "grounding_dino":
                out.extend(self._grounding_dino(chunk, phrase.strip().lower(), min_score))
            else:
                out.extend(self._owlv2(chunk, phrase.strip().lower(), min_score))
        self.calls += len(frames)
        self.seconds += time.perf_counter() - t0
        return out

    def _finish(self, boxes: torch.Tensor, scores: torch.Tensor, size: tuple[int, int], phrase: str) -> Detections:
        h, w = size
        boxes = boxes.float()
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, scores = boxes[valid], scores[valid].float()
        keep = nms(boxes, scores, self.nms_iou)
        boxes, scores = boxes[keep].cpu().numpy(), scores[keep].cpu().numpy()
        return Detections(boxes, scores, [phrase] * len(boxes))

    def _grounding_dino(self, frames: list[np.ndarray], phrase: str, min_score: float) -> list[Detections]:
        inputs = self.processor(images=frames, text=[[phrase]] * len(frames), return_tensors="pt")
        inputs = {k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device))
                  for k, v in inputs.items()}
        outputs = self.model(**inputs)
        probs = outputs.logits.float().sigmoid()  # (B, queries, text positions); padding positions ~ 0
        ids = inputs["input_ids"]
        tok = self.processor.tokenizer
        ignore = set(tok.all_special_ids) | {tok.convert_tokens_to_ids(".")}
        phrase_tokens = torch.tensor([[t not in ignore for t in row] for row in ids.tolist()], device=probs.device)
        cx, cy, bw, bh = outputs.pred_boxes.float().unbind(-1)  # relative to each image's unpadded extent
        rel = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1)
        results = []
        for b, frame in enumerate(frames):
            h, w = frame.shape[:2]
            p = probs[b, :, : ids.shape[1]]
            score = p.max(-1).values
            text_ok = (p[:, phrase_tokens[b]].max(-1).values > self.text_threshold) if phrase_tokens[b].any() \
                else torch.ones_like(score, dtype=torch.bool)
            keep = (score > min_score) & text_ok
            boxes = rel[b][keep] * torch.tensor([w, h, w, h], device=rel.device, dtype=rel.dtype)
            results.append(self._finish(boxes, score[keep], (h, w), phrase))
        return results

    def _owlv2_pixels(self, frame: np.ndarray) -> torch.Tensor:
        """transformers' OWLv2 preprocessing in torch: rescale, pad bottom/right to a square with 0,
        Gaussian anti-aliasing (sigma = (factor - 1) / 2), bilinear resize, CLIP normalisation."""
        ip = self.processor.image_processor
        size = (int(ip.size["height"]), int(ip.size["width"]))
        x = torch.from_numpy(frame).to(self.device).permute(2, 0, 1).float() / 255.0
        h, w = x.shape[1:]
        side = max(h, w)
        x = F.pad(x, (0, side - w, 0, side - h), value=0.0)[None]
        factors = (side / size[0], side / size[1])
        if max(factors) > 1.0:
            for axis, factor in ((2, factors[0]), (3, factors[1])):
                sigma = max(0.0, (factor - 1.0) / 2.0)
                if sigma <= 0:
                    continue
                radius = int(math.ceil(3 * sigma))
                k = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
                k = torch.exp(-0.5 * (k / sigma) ** 2)
                k = (k / k.sum()).view(1, 1, -1, 1) if axis == 2 else (k / k.sum()).view(1, 1, 1, -1)
                pad = (0, 0, radius, radius) if axis == 2 else (radius, radius, 0, 0)
                x = F.conv2d(F.pad(x.view(3, 1, *x.shape[2:]), pad, mode="reflect"), k).view(1, 3, *x.shape[2:])
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        mean = torch.tensor(ip.image_mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(ip.image_std, device=x.device).view(1, 3, 1, 1)
        return ((x - mean) / std).to(self.dtype)

    def _owlv2(self, frames: list[np.ndarray], phrase: str, min_score: float) -> list[Detections]:
        pixels = torch.cat([self._owlv2_pixels(f) for f in frames])
        max_len = int(self.model.config.text_config.max_position_embeddings)
        text = self.processor.tokenizer([phrase] * len(frames), padding="max_length", max_length=max_len,
                                        truncation=True, return_tensors="pt")
        outputs = self.model(input_ids=text["input_ids"].to(self.device),
                             attention_mask=text["attention_mask"].to(self.device), pixel_values=pixels)
        scores = outputs.logits.float().max(-1).values.sigmoid()  # (B, patches)
        cx, cy, bw, bh = outputs.pred_boxes.float().unbind(-1)  # relative to the padded square
        rel = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1)
        results = []
        for b, frame in enumerate(frames):
            h, w = frame.shape[:2]
            keep = scores[b] > min_score
            results.append(self._finish(rel[b][keep] * max(h, w), scores[b][keep], (h, w), phrase))
        return results


def load_detector(config: ProposalConfig) -> ZeroShotDetector:
    """The detector ``config.detector_path`` names, with the config's thresholds and device."""
    if not config.detector_path:
        raise ProposalConfigError("proposals_detector_path is empty: set it to a local detector directory")
    return ZeroShotDetector.from_pretrained(config.detector_path, config)
