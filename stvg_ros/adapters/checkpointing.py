"""Activation checkpointing for LRA's backward pass, so that a 7B model fits a 24 GB GPU at 20 frames.

LRA differentiates the yes/no logits with respect to the visual tokens only (the weights are
frozen, so no weight gradients), but autograd still keeps every decoder layer's activations for
the backward pass: for a 7B decoder with ~750 tokens per prompt and three prompts that is ~10 GB in
bfloat16, on top of ~15-17 GB of weights.  With checkpointing only each layer's input is kept and
the layer is recomputed during the backward pass: activations drop to one layer's worth, at the
price of about one extra forward pass per LRA step.

We reuse transformers' own per-layer checkpointing (``GradientCheckpointingLayer``), switched on
only inside :func:`checkpointed_layers` and only on the decoder layers (their submodules stay in
eval mode, so nothing else changes).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Iterator

import torch
from torch.utils.checkpoint import checkpoint


def decoder_layers(language_model: torch.nn.Module) -> list[torch.nn.Module]:
    """The modules transformers can checkpoint one by one (its ``GradientCheckpointingLayer``)."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [m for m in language_model.modules() if isinstance(m, GradientCheckpointingLayer)]


@contextlib.contextmanager
def checkpointed_layers(language_model: torch.nn.Module) -> Iterator[int]:
    """Recompute each decoder layer in the backward pass instead of storing its activations.

    Yields the number of layers switched.  transformers checkpoints a layer only when its
    ``training`` flag is set: we set that flag on the layer object alone (not ``.train()``, which
    would reach the attention and MLP submodules), and restore everything on exit.
    """
    layers = decoder_layers(language_model)
    saved = [(m, m.gradient_checkpointing, m.training, m.__dict__.get("_gradient_checkpointing_func")) for m in layers]
    func = functools.partial(checkpoint, use_reentrant=False)
    try:
        for m in layers:
            m.gradient_checkpointing = True
            m._gradient_checkpointing_func = func
            m.training = True
        yield len(layers)
    finally:
        for m, enabled, training, old in saved:
            m.gradient_checkpointing = enabled
            m.training = training
            if old is None:
                m.__dict__.pop("_gradient_checkpointing_func", None)
            else:
                m._gradient_checkpointing_func = old


def activation_bytes_estimate(config, tokens: int, batch: int, dtype: torch.dtype) -> int:
    """Bytes autograd keeps for a decoder forward of ``batch`` prompts of ``tokens`` tokens.

    Per token and layer ``9.7 * hidden + 2.35 * intermediate`` elements: fitted to the bytes autograd saved in
    one LRA step (3 prompts, bf16, sdpa), measured per layer by depth extrapolation at the real widths and
    token counts of Qwen2.5-VL-7B, LLaVA-NeXT-Video-7B and LLaVA-OneVision-7B (bench/lra_memory.py,
    bench/results/lra-memory-*.json; test_checkpointing.py checks it against them).  The former
    ``10 * hidden + 3 * intermediate`` was 13-17 % high on them.  Used to decide whether to checkpoint.
    """
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    per_token_layer = round(9.7 * int(text.hidden_size) + 2.35 * int(text.intermediate_size))
    item = torch.finfo(dtype).bits // 8
    return per_token_layer * item * int(text.num_hidden_layers) * tokens * batch


def should_checkpoint(setting: bool | None, model: torch.nn.Module, device: torch.device, tokens: int, batch: int,
                      dtype: torch.dtype, margin: float = 0.8) -> bool:
    """``setting`` True/False forces it; None (auto) checkpoints on a GPU when the estimated activations
    would take more than ``margin`` of the memory still free, never on CPU (memory is rarely the limit
    there, and recomputation costs time)."""
    if setting is not None:
        return bool(setting)
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return activation_bytes_estimate(model.config, tokens, batch, dtype) > margin * free


class SavedTensorMeter:
    """Counts the bytes autograd saves for backward while active (a deterministic activation-memory measure).

    Tensors saved more than once (or views of one storage) are counted once; the parameters of
    ``exclude`` (a model: its weights are in memory anyway) are not counted.
    """

    def __init__(self, exclude: torch.nn.Module | None = None):
        self.bytes = 0
        self._seen: set[int] = set()
        if exclude is not None:
            self._seen.update(p.untyped_storage().data_ptr() for p in exclude.parameters())

    def _pack(self, t: torch.Tensor):
        try:
            key = t.untyped_storage().data_ptr()
        except (RuntimeError, NotImplementedError):
            key = id(t)
        if key not in self._seen:
            self._seen.add(key)
            self.bytes += t.untyped_storage().nbytes() if t.device.type != "meta" else 0
        return t

    def __enter__(self):
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)
