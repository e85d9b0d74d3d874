"""Cheap attention capture: sdpa everywhere, plus a few softmax rows where they are needed.

The grounding algorithm needs, for a handful of text positions (the grounding-token candidates),
their attention to the visual tokens, averaged over heads and a range of decoder layers.  Switching
the model to ``eager`` with ``output_attentions=True`` would materialise every layer's full
``(heads, L, L)`` matrix; instead we register one attention function, :data:`CAPTURE_ATTENTION`,
that always returns the normal sdpa output and, only while a :func:`capture_attention` context is
active and only for the requested layers, recomputes ``softmax(q_rows K^T * scale + mask_rows)``
for the requested query rows (``K`` rows instead of ``L``), keeps the visual-token columns and
adds their head-average to a running sum.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch

#: name under which the function is registered with transformers' AttentionInterface
CAPTURE_ATTENTION = "stvg_capture"

_active: contextvars.ContextVar["AttentionCapture | None"] = contextvars.ContextVar("stvg_capture", default=None)


@dataclass
class AttentionCapture:
    """What to capture in one forward pass, and the running result.

    ``rows``: ``(B, K)`` query positions *within this forward's query sequence* (with a KV cache,
    positions of the new tokens).  ``cols``: ``(B, N)`` key positions (absolute, i.e. counting the
    cached prefix) of the visual tokens.  ``layers``: decoder layer indices to average, None = all.
    After the pass, :meth:`result` is the ``(B, K, N)`` float32 mean over heads and captured layers.
    """

    rows: torch.Tensor
    cols: torch.Tensor
    layers: frozenset[int] | None = None
    total: torch.Tensor | None = None
    count: int = 0
    seen_layers: list[int] = field(default_factory=list)

    def wants(self, layer_idx: int | None) -> bool:
        return layer_idx is not None and (self.layers is None or layer_idx in self.layers)

    def add(self, probs: torch.Tensor, layer_idx: int) -> None:
        self.total = probs if self.total is None else self.total + probs
        self.count += 1
        self.seen_layers.append(layer_idx)

    def result(self) -> torch.Tensor | None:
        return None if self.total is None else self.total / self.count


@contextlib.contextmanager
def capture_attention(rows: torch.Tensor, cols: torch.Tensor,
                      layers: Sequence[int] | None = None) -> Iterator[AttentionCapture]:
    """Capture attention from query ``rows`` to key ``cols`` during the forward passes run inside."""
    cap = AttentionCapture(rows=rows, cols=cols, layers=None if layers is None else frozenset(int(i) for i in layers))
    token = _active.set(cap)
    try:
        yield cap
    finally:
        _active.reset(token)


def _row_probabilities(query, key, attention_mask, scaling, rows, cols) -> torch.Tensor:
    """Head-averaged softmax rows ``(B, K, N)`` for query ``rows`` restricted to key ``cols``.

    Full softmax over every key (so the numbers are the model's real attention weights), then the
    visual columns are gathered.  GQA: query head ``h`` reads key head ``h // n_rep``; the query rows of
    a key head's group are stacked instead of repeating the keys, so no ``(B, H, Lk, D)`` copy is made.
    """
    B, H, Lq, D = query.shape
    Hkv, Lk = key.shape[1], key.shape[2]
    K = rows.shape[1]
    n_rep = H // Hkv
    rows = rows.to(query.device)
    q = torch.gather(query, 2, rows.view(B, 1, K, 1).expand(B, H, K, D)).float()
    q = q.reshape(B, Hkv, n_rep * K, D)  # head h = kv * n_rep + r → group kv, rows r*K .. r*K+K-1
    scores = torch.matmul(q, key.float().transpose(-1, -2)) * scaling  # (B, Hkv, n_rep*K, Lk)
    scores = scores.reshape(B, H, K, Lk)
    if attention_mask is not None:
        mask = attention_mask
        if mask.shape[2] == 1:
            mask_rows = mask.expand(B, mask.shape[1], K, mask.shape[-1])
        else:
            mask_rows = torch.gather(mask.expand(B, -1, -1, -1), 2,
                                     rows.view(B, 1, K, 1).expand(B, mask.shape[1], K, mask.shape[-1]))
        mask_rows = mask_rows[..., :Lk]
        if mask_rows.dtype == torch.bool:
            scores = scores.masked_fill(~mask_rows, float("-inf"))
        else:
            scores = scores + mask_rows.float()
    else:  # sdpa's is_causal path: query i sits at absolute position (Lk - Lq) + i
        key_pos = torch.arange(Lk, device=query.device)
        allowed = key_pos.view(1, 1, 1, Lk) <= (rows + (Lk - Lq)).view(B, 1, K, 1)
        scores = scores.masked_fill(~allowed, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    cols = cols.to(query.device)
    vis = torch.gather(probs, 3, cols.view(B, 1, 1, -1).expand(B, H, K, cols.shape[1]))
    return vis.mean(dim=1)


def capture_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                              value: torch.Tensor, attention_mask: torch.Tensor | None, dropout: float = 0.0,
                              scaling: float | None = None, is_causal: bool | None = None, **kwargs):
    """sdpa attention that also records the requested rows when a capture is active."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    out = sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                 is_causal=is_causal, **kwargs)
    cap = _active.get()
    layer_idx = getattr(module, "layer_idx", None)
    if cap is not None and cap.wants(layer_idx):
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        with torch.no_grad():
            cap.add(_row_probabilities(query.detach(), key.detach(), attention_mask, scale,
                                       cap.rows, cap.cols), layer_idx)
    return out


_registered = False


def register() -> str:
    """Register :data:`CAPTURE_ATTENTION` (idempotent); masks are built exactly as for sdpa."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface, sdpa_mask

        AttentionInterface.register(CAPTURE_ATTENTION, capture_attention_forward)
        if CAPTURE_ATTENTION not in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
            AttentionMaskInterface.register(CAPTURE_ATTENTION, sdpa_mask)
        _registered = True
    return CAPTURE_ATTENTION


def set_decoder_attention(language_model: torch.nn.Module, implementation: str) -> None:
    """Point every config inside ``language_model`` (the decoder only) at ``implementation``."""
    configs = {id(language_model.config): language_model.config}
    for m in language_model.modules():
        cfg = getattr(m, "config", None)
        if cfg is not None:
            configs[id(cfg)] = cfg
    for cfg in configs.values():
        cfg._attn_implementation = implementation


def use_capture_attention(language_model: torch.nn.Module) -> None:
    """Make ``language_model`` (the decoder only) dispatch to the capture function.

    The vision tower keeps its own implementation; with no capture active the decoder computes
    exactly what sdpa computes.
    """
    set_decoder_attention(language_model, register())


class null_capture:
    """The capture context of a pass that captures nothing (``with ... as cap`` gives None)."""

    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
