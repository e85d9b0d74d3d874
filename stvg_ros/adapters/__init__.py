"""Model adapters: one per multimodal LLM family, chosen from the directory's ``config.json``.

``load_adapter(path)`` is the only entry point the grounding algorithm needs; it never branches on
model names itself.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import torch

from .base import CaptureSpec, ForwardOutput, ModelAdapter, VisualTokens
from .base import AdapterError

#: config.json ``model_type`` → "module:class" of the adapter
ADAPTERS = {
    "qwen2_5_vl": "stvg_ros.adapters.qwen:QwenVLAdapter",
    "qwen2_vl": "stvg_ros.adapters.qwen:Qwen2VLAdapter",
    "llava_onevision": "stvg_ros.adapters.llava:LlavaOnevisionAdapter",
    "llava_next_video": "stvg_ros.adapters.llava:LlavaNextVideoAdapter",
}


def adapter_class(model_type: str) -> type[ModelAdapter]:
    if model_type not in ADAPTERS:
        raise ValueError(f"unsupported model_type {model_type!r}: supported are {', '.join(sorted(ADAPTERS))}")
    module, name = ADAPTERS[model_type].split(":")
    return getattr(importlib.import_module(module), name)


def model_type_of(path: str | Path) -> str:
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"model directory {str(p)!r} does not exist: pass the local directory of a "
                                "downloaded model (models are never fetched from the network)")
    cfg = p / "config.json"
    if not cfg.is_file():
        raise FileNotFoundError(f"{str(p)!r} has no config.json: pass the directory that holds the model's "
                                "config.json, weights and tokenizer")
    model_type = json.loads(cfg.read_text()).get("model_type")
    if not model_type:
        raise ValueError(f"{cfg} has no model_type: is this a transformers model directory?")
    return model_type


def load_adapter(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | str | None = None,
                 image_size: int | None = None) -> ModelAdapter:
    """Load the model in local directory ``path`` behind the adapter of its family.

    ``device``: "cpu", "cuda", "cuda:N" or "auto" (cuda when available); ``dtype`` None/"auto" =
    bfloat16 on cuda, float32 on cpu; ``image_size`` overrides the per-frame resolution (0/None = default).
    """
    cls = adapter_class(model_type_of(path))
    return cls.from_pretrained(str(path), device=device, dtype=dtype, image_size=image_size or None)


__all__ = ["ADAPTERS", "AdapterError", "CaptureSpec", "ForwardOutput", "ModelAdapter", "VisualTokens", "adapter_class",
           "load_adapter", "model_type_of"]
