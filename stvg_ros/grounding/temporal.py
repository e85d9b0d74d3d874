"""Time span: when the query holds, from the temporal relevance inside the chosen track.

Per frame the score is the maximum temporal relevance inside the track's box (the official code
max-pools the upsampled map over the track's mask per frame).  Frames before the track's first or
after its last box score 0, as the official code's empty masks do; a gap *inside* the track (a
detector miss) is scored with the box interpolated across it, where the official code scores 0 and
so would cut the span at every missed detection.  Two span rules, both always contiguous:

* ``'topk'`` (paper): K = round(fraction * T) frames (7 of 20).  The paper keeps the K best
  frames; a tube needs one contiguous span, so we take the contiguous window of exactly K frames
  with the largest total score.  The hull from the earliest to the latest top-K frame would
  stretch to the whole clip whenever one stray frame makes the top K; the best window keeps the
  paper's length and most of its score mass.
* ``'grow'`` (official code): start at the peak frame and repeatedly add the higher-scoring
  neighbour until the run has round(fraction * T) frames (11 of 20); like the official code the
  run stops early when both neighbours score the same (e.g. both outside the track).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..boxes import Box
from .spatial import max_in_box


def frame_scores(image_maps: np.ndarray, scale: float, boxes: Sequence[Box | None]) -> np.ndarray:
    """Per-frame maximum of the (upsampled) temporal relevance inside the track's box; 0 without a box."""
    return np.array([0.0 if b is None else max_in_box(image_maps[i], b, scale) for i, b in enumerate(boxes)],
                    dtype=np.float64)


def span_length(fraction: float, num_frames: int) -> int:
    """fraction * T rounded half up, at least 1 and at most T."""
    return int(min(num_frames, max(1, int(fraction * num_frames + 0.5))))


def span_topk(scores: Sequence[float], fraction: float) -> tuple[int, int]:
    """Inclusive frame indices of the best contiguous window of K = round(fraction*T) frames."""
    s = np.asarray(scores, dtype=np.float64)
    k = span_length(fraction, len(s))
    sums = np.convolve(s, np.ones(k), mode="valid")
    start = int(np.argmax(sums))  # earliest on ties
    return start, start + k - 1


def span_grow(scores: Sequence[float], fraction: float) -> tuple[int, int]:
    """Inclusive frame indices of the run grown from the peak towards the higher neighbour."""
    s = np.asarray(scores, dtype=np.float64)
    T = len(s)
    limit = span_length(fraction, T)
    lo = hi = int(np.argmax(s))
    while hi - lo + 1 < limit:
        left = s[lo - 1] if lo > 0 else -np.inf
        right = s[hi + 1] if hi + 1 < T else -np.inf
        if left > right:
            lo -= 1
        elif right > left:
            hi += 1
        else:
            break
    return lo, hi


def choose_span(scores: Sequence[float], rule: str, topk_fraction: float, grow_fraction: float) -> tuple[int, int]:
    if rule == "topk":
        return span_topk(scores, topk_fraction)
    if rule == "grow":
        return span_grow(scores, grow_fraction)
    raise ValueError(f"unknown span rule {rule!r}: use 'topk' or 'grow'")

