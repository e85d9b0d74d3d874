"""Relevance maps: grounding-token attention of a question divided by a caption prompt's.

The paper's relative attention ``A(question) / (A(caption) + eps)`` cancels what every prompt
looks at (attention sinks, salient but unrelated regions) and keeps what the question adds.
Attention arrives from the adapter as ``(B, K, N)``: prompt, grounding-token candidate, visual
token.  This module picks the grounding token, forms the ratio, places visual tokens on the
per-frame token grid (``VisualTokens`` geometry) and upsamples grid maps to image pixels.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..adapters.base import ForwardOutput, VisualTokens
from ..config import ConfigError


def visual_activation(attention: torch.Tensor, grid_mask: torch.Tensor | None = None) -> torch.Tensor:
    """``(K, N)`` candidates' attention → ``(K,)`` peak attention to any single visual token.

    ``grid_mask`` (``(N,)`` bool) restricts the peak to the tokens on the frames' grids: a token that
    shows no image cell (OneVision's newline, an attention sink) cannot make a candidate win, as in the
    official code, which drops it before anything else.

    The paper identifies the grounding token as the candidate with the highest visual
    activation, i.e. the maximum attention to the visual tokens.  We read that as the *peak*
    value of each candidate's map (not its total mass): a token that concentrates attention on
    a region is the one that grounds, whereas the total mass favours tokens that look at the
    whole clip evenly.
    """
    if grid_mask is not None:
        attention = attention[..., grid_mask.to(attention.device)]
    return attention.max(dim=-1).values


def _match_candidate(tokens: list[str], offsets: list[int], token: str, offset: int) -> int | None:
    """Index of the candidate with the same token string (closest offset on ties), else same offset."""
    same = [k for k, t in enumerate(tokens) if t == token]
    if same:
        return min(same, key=lambda k: abs(offsets[k] - offset))
    if offset in offsets:
        return offsets.index(offset)
    return None


def grounding_attention(q_out: ForwardOutput, q_row: int, c_out: ForwardOutput, c_row: int, mode: str,
                        fixed_offset: int, grid_mask: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Grounding-token attention ``(N,)`` of a question prompt and of its caption prompt.

    ``mode`` 'auto' picks the question's candidate with the highest visual activation and uses the
    *same* token (same string, else same offset) in the caption prompt, so that the ratio compares
    one token under two prompts; 'fixed' takes the candidate at ``fixed_offset`` from the prompt's
    end in both (the official code); 'mean' averages all candidates (the paper's no-GTI baseline).
    ``grid_mask`` (``(N,)`` bool, visual tokens on the grid) restricts 'auto''s peak to grid tokens.
    Returns ``(question_attn, caption_attn, chosen token)``.
    """
    for out in (q_out, c_out):
        if out.attention is None:
            raise RuntimeError("the adapter returned no attention; grounding runs must capture attention")
    q_tok, q_off = q_out.candidate_tokens[q_row], q_out.candidate_offsets[q_row]
    c_tok, c_off = c_out.candidate_tokens[c_row], c_out.candidate_offsets[c_row]
    qa = q_out.attention[q_row, : len(q_tok)].float()
    ca = c_out.attention[c_row, : len(c_tok)].float()
    if mode == "mean":
        return qa.mean(0), ca.mean(0), "mean"
    if mode == "fixed":
        if fixed_offset not in q_off or fixed_offset not in c_off:
            raise ConfigError(
                f"invalid grounding_token_offset={fixed_offset}: the prompt's grounding-token candidates sit at "
                f"offsets {q_off} ({q_tok}); choose one of those, 0 for the model's default, or grounding_token='auto'")
        kq, kc = q_off.index(fixed_offset), c_off.index(fixed_offset)
    elif mode == "auto":
        kq = int(torch.argmax(visual_activation(qa, grid_mask)))
        kc = _match_candidate(c_tok, c_off, q_tok[kq], q_off[kq])
        if kc is None:
            kc = int(torch.argmax(visual_activation(ca, grid_mask)))
    else:
        raise ConfigError(f"invalid grounding_token={mode!r}: choose one of auto, fixed, mean")
    return qa[kq], ca[kc], q_tok[kq]


def scaled_eps(eps: float, reference_tokens: int, num_grid_tokens: int) -> float:
    """``eps`` given for ``reference_tokens`` visual tokens, at ``num_grid_tokens`` of them.

    Attention to the visual block spreads over its tokens, so the mean per-token attention falls as
    1/N: scaling eps by ``reference_tokens / N`` keeps it the same fraction of that mean at any frame
    size or pooling.  ``reference_tokens`` 0 = no scaling.
    """
    if not reference_tokens:
        return float(eps)
    return float(eps) * (reference_tokens / max(1, int(num_grid_tokens)))


def relative_attention(question_attn: torch.Tensor, caption_attn: torch.Tensor, eps: float) -> torch.Tensor:
    """The paper's relative attention ``A_q / (A_caption + eps)`` (elementwise)."""
    return question_attn.float() / (caption_attn.float() + eps)


def token_grid_maps(values: torch.Tensor | np.ndarray, visual: VisualTokens) -> np.ndarray:
    """Per-token values ``(N,)`` → per-*frame* maps ``(T, rows, cols)`` on the token grid.

    Tokens with no cell (``slot == -1``, e.g. a newline token) are dropped.  A slot that covers
    several frames (Qwen's temporal patch) gives its map to each of them.  ``visual`` may be a
    time-reversed clip: its ``slot_frames`` still name the original frames, so the maps come out
    in the original frame order.
    """
    values = torch.as_tensor(values).detach().float().cpu()
    if values.shape[0] != visual.num_tokens:
        raise ValueError(f"got {values.shape[0]} values for {visual.num_tokens} visual tokens")
    rows, cols = visual.grid
    slot = visual.slot.cpu()
    keep = slot >= 0
    slot_maps = torch.zeros(visual.num_slots, rows, cols)
    slot_maps[slot[keep], visual.row.cpu()[keep], visual.col.cpu()[keep]] = values[keep]
    frame_slot = visual.slot_of_frame()
    return slot_maps[frame_slot].numpy()


def normalise_per_clip(maps: np.ndarray) -> np.ndarray:
    """Divide a clip's maps by their clip-wide maximum (keeps contrast across frames)."""
    peak = float(maps.max()) if maps.size else 0.0
    return maps / peak if peak > 0 else maps.copy()


def assemble_tas(original: np.ndarray, reversed_back: np.ndarray) -> np.ndarray:
    """TAS's assembly of the original clip's spatial relevance and the reversed clip's (mapped back).

    The rule (the paper gives none): mean of the two maps, each normalised by its own clip-wide
    maximum.  Normalising per clip puts the two runs on one scale (their raw ratios differ with
    the token order) without flattening the contrast between frames, which per-frame
    normalisation would.  The mean keeps what both frame orders agree on and halves what only one
    order produces, notably the positional bias towards late (recent) frames, which the reversal
    moves to the other end of the clip: that is the temporal consistency TAS is for.
    """
    return 0.5 * (normalise_per_clip(original) + normalise_per_clip(reversed_back))


def upsample_maps(maps: np.ndarray, content_box: Sequence[float], image_size: tuple[int, int],
                  max_side: int | None = 256) -> tuple[np.ndarray, float]:
    """Grid maps ``(T, rows, cols)`` → image-aligned maps ``(T, h, w)`` and the pixel scale used.

    The grid is resized bilinearly (pixel-centre aligned, as ``F.interpolate(align_corners=False)``)
    onto ``content_box``; pixels outside it (letterbox, crop) get 0.  ``max_side`` caps the output
    resolution for speed: the returned ``scale`` maps image pixels to map pixels
    (``map_xy = image_xy * scale``); ``None`` keeps the input frame's resolution.
    """
    import cv2

    H, W = image_size
    scale = 1.0 if not max_side else min(1.0, float(max_side) / max(H, W))
    h, w = max(1, int(round(H * scale))), max(1, int(round(W * scale)))
    x0, y0, x1, y1 = (float(v) * scale for v in content_box)
    ix0, iy0 = int(round(x0)), int(round(y0))
    ix1, iy1 = max(ix0 + 1, int(round(x1))), max(iy0 + 1, int(round(y1)))
    out = np.zeros((maps.shape[0], h, w), dtype=np.float32)
    # paste the resized grid where it overlaps the output frame
    cx0, cy0, cx1, cy1 = max(ix0, 0), max(iy0, 0), min(ix1, w), min(iy1, h)
    if cx1 <= cx0 or cy1 <= cy0:
        return out, scale
    for t in range(maps.shape[0]):
        resized = cv2.resize(maps[t].astype(np.float32), (ix1 - ix0, iy1 - iy0), interpolation=cv2.INTER_LINEAR)
        out[t, cy0:cy1, cx0:cx1] = resized[cy0 - iy0: cy1 - iy0, cx0 - ix0: cx1 - ix0]
    return out, scale


def cell_box(row0: int, col0: int, row1: int, col1: int, grid: tuple[int, int],
             content_box: Sequence[float]) -> tuple[float, float, float, float]:
    """Pixel box covering grid cells ``[row0, row1] x [col0, col1]`` (inclusive)."""
    rows, cols = grid
    x0, y0, x1, y1 = (float(v) for v in content_box)
    cw, ch = (x1 - x0) / cols, (y1 - y0) / rows
    return (x0 + col0 * cw, y0 + row0 * ch, x0 + (col1 + 1) * cw, y0 + (row1 + 1) * ch)


def _resized_indicator(lo: float, hi: float, origin: float, size: int, cells: int) -> np.ndarray:
    """A 1-D pixel indicator ``lo <= pixel centre < hi`` over ``size`` pixels starting at ``origin``,
    resized to ``cells`` by bilinear sampling (``F.interpolate(..., 'bilinear', align_corners=False)``,
    no antialias: each cell reads the two pixels around its centre)."""
    centres = origin + np.arange(size) + 0.5
    ind = ((centres >= lo) & (centres < hi)).astype(np.float64)
    src = np.maximum((np.arange(cells) + 0.5) * size / cells - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(int), size - 1)
    i1 = np.minimum(i0 + 1, size - 1)
    frac = src - i0
    return (1.0 - frac) * ind[i0] + frac * ind[i1]


def box_cell_weights(box: Sequence[float], grid: tuple[int, int], content_box: Sequence[float]) -> np.ndarray:
    """``(rows, cols)`` weights of a pixel box on the token grid: the box's pixel mask over ``content_box``
    resized bilinearly to the grid, as the official code resizes a track's mask to score it
    (``F.interpolate(mask, (grid, grid), mode='bilinear', align_corners=False)``).  A box is separable,
    so this is the outer product of its resized column and row indicators, equal to resizing the mask."""
    rows, cols = grid
    x0, y0, x1, y1 = (float(v) for v in content_box)
    w, h = max(1, int(round(x1 - x0))), max(1, int(round(y1 - y0)))
    bx0, by0, bx1, by1 = (float(v) for v in box)
    return np.outer(_resized_indicator(by0, by1, y0, h, rows), _resized_indicator(bx0, bx1, x0, w, cols))
