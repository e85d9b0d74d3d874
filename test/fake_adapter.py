"""A deterministic toy ModelAdapter for the algorithm's unit tests (no transformers model).

Visual tokens: one per cell of a ``rows x cols`` grid per slot, embedding = the cell's mean RGB
in [0, 1] plus a constant feature, and one trailing non-grid token (like a newline token).
A question's colour words ("red", "green", "blue", ...) give a direction ``w`` in colour space
(colour-opponent, so grey scores 0); the caption prompt has none.  Candidate ``k`` attends with
``softmax(sharpness_k * <e_n, w>)`` over the visual tokens, so the planted colour draws attention
exactly where it is drawn, and the yes/no margin grows with the attention-weighted colour match:
gradients of the margin flow to ``visual_delta`` through both the scores and the attention,
which is what LRA needs to be tested for real.  A frozen parameter (the colour mixing matrix)
is part of the computation so tests can check that no model gradient is produced.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from stvg_ros.adapters.base import CaptureSpec, ForwardOutput, ModelAdapter, VisualTokens

COLOURS = {
    "red": (1.0, -0.5, -0.5), "green": (-0.5, 1.0, -0.5), "blue": (-0.5, -0.5, 1.0),
    "yellow": (0.5, 0.5, -1.0), "purple": (0.5, -1.0, 0.5),
}
CANDIDATES = ["<|im_end|>", "assistant", "Ċ"]
OFFSETS = [-3, -2, -1]
SHARPNESS = [0.5, 8.0, 2.0]  # candidate 1 ("assistant") concentrates attention: the grounding token


class FakeAdapter(ModelAdapter):
    family = "fake"
    default_grounding_offset = -2

    def __init__(self, grid=(4, 4), frames_per_slot: int = 1, text_answer: str = "", layers: int = 4,
                 recency_bias: float = 0.0):
        self.grid = grid
        self.frames_per_slot = frames_per_slot
        self.text_answer = text_answer
        self._layers = layers
        self.recency_bias = recency_bias
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.model = torch.nn.Module()
        self.mix = torch.nn.Parameter(torch.eye(3), requires_grad=False)
        self.model.register_parameter("mix", self.mix)
        self.calls: list[dict] = []
        self.generate_calls: list[str] = []

    @classmethod
    def from_pretrained(cls, path, device="cpu", dtype=None, image_size=None):
        return cls()

    # ------------------------------------------------------------------ geometry
    def encode_frames(self, frames: Sequence[np.ndarray], stamps: Sequence[float] | None = None) -> VisualTokens:
        frames = np.stack(frames).astype(np.float32) / 255.0
        T, H, W, _ = frames.shape
        R, C = self.grid
        p = self.frames_per_slot
        slot_frames = [list(range(s, min(T, s + p))) for s in range(0, T, p)]
        feats, slot, row, col = [], [], [], []
        for s, fr in enumerate(slot_frames):
            clip = frames[fr].mean(0)
            for r in range(R):
                for c in range(C):
                    cell = clip[r * H // R:(r + 1) * H // R, c * W // C:(c + 1) * W // C]
                    feats.append(list(cell.reshape(-1, 3).mean(0)) + [1.0])
                    slot.append(s), row.append(r), col.append(c)
        feats.append([0.0, 0.0, 0.0, 1.0])  # the non-grid token
        slot.append(-1), row.append(-1), col.append(-1)
        return VisualTokens(embeds=torch.tensor(feats, dtype=torch.float32), slot=torch.tensor(slot),
                            row=torch.tensor(row), col=torch.tensor(col), grid=(R, C), slot_frames=slot_frames,
                            image_size=(H, W), content_box=(0.0, 0.0, float(W), float(H)))

    # ------------------------------------------------------------------ forward
    @staticmethod
    def direction(question: str) -> torch.Tensor:
        w = torch.zeros(3)
        for word in question.lower().replace("?", " ").replace(".", " ").split():
            if word in COLOURS:
                w += torch.tensor(COLOURS[word])
        return w

    def run(self, visual, questions, visual_delta=None, capture: CaptureSpec | None = None,
            with_grad: bool = False) -> ForwardOutput:
        questions = list(questions)
        B = len(questions)
        visuals = [visual] * B if isinstance(visual, VisualTokens) else list(visual)
        assert len(visuals) == B
        self.calls.append({"batch": B, "with_grad": with_grad, "capture": capture is not None,
                           "delta": None if visual_delta is None else tuple(visual_delta.shape),
                           "questions": questions})
        ctx = torch.enable_grad() if with_grad else torch.no_grad()
        logits, atts = [], []
        with ctx:
            for b, (vis, q) in enumerate(zip(visuals, questions)):
                e = vis.embeds
                if visual_delta is not None:
                    e = e + (visual_delta if visual_delta.dim() == 2 else visual_delta[b])
                score = (e[:, :3] @ self.mix) @ self.direction(q)  # (N,)
                if self.recency_bias:
                    score = score + self.recency_bias * vis.slot.clamp(min=0).float() / max(1, vis.num_slots - 1)
                att = torch.stack([torch.softmax(k * score, dim=0) for k in SHARPNESS])  # (K, N)
                margin = 4.0 * (att[1] * score).sum() - 1.0
                logits.append(torch.stack([margin / 2, -margin / 2]))
                atts.append(att)
        attention = torch.stack(atts).detach().float() if capture is not None else None
        return ForwardOutput(yes_no_logits=torch.stack(logits), attention=attention,
                             candidate_tokens=[list(CANDIDATES) for _ in range(B)],
                             candidate_offsets=[list(OFFSETS) for _ in range(B)])

    def generate_text(self, prompt: str, max_new_tokens: int = 64) -> str:
        self.generate_calls.append(prompt)
        return self.text_answer

    @property
    def answer_token_ids(self):
        return (1, 2)

    @property
    def num_layers(self) -> int:
        return self._layers


def clip_with_square(num_frames=10, size=64, colour=(255, 0, 0), frames_on=(3, 4, 5), cell=(1, 2), grid=(4, 4),
                     background=128):
    """Grey frames with a coloured square filling grid ``cell`` in ``frames_on``; returns (frames, stamps, box)."""
    R, C = grid
    r, c = cell
    y0, y1 = r * size // R, (r + 1) * size // R
    x0, x1 = c * size // C, (c + 1) * size // C
    frames = []
    for t in range(num_frames):
        f = np.full((size, size, 3), background, dtype=np.uint8)
        if t in frames_on:
            f[y0:y1, x0:x1] = colour
        frames.append(f)
    stamps = [10.0 + 0.5 * t for t in range(num_frames)]
    return frames, stamps, (float(x0), float(y0), float(x1), float(y1))
