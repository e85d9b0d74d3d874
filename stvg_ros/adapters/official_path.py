"""The official code's way of computing attention maps, on our adapters' models (for benchmarks and tests).

The official driver (``zaiquanyang/LLaVA_Next_STVG``, ``stvg/V_Tuning``) encodes the clip once, then
for every question and every LRA step rebuilds the whole prompt (system + video + question) and
calls ``generate`` on one prompt at a time: LRA steps with gradients and no attention output, the
attention runs with eager attention and ``output_attentions=True``, which keeps every layer's full
``(heads, L, L)`` matrix, before selecting one token row and the visual columns.

:class:`ReferenceAdapter` wraps one of our adapters and answers :meth:`run` that way, so that
``Grounder(ReferenceAdapter(adapter), config)`` is the same algorithm computed the official way.
Benchmarks time it against the fast path; tests check that both give the same relevance maps.
Differences from the official code, on purpose: greedy decoding continues for ``new_tokens - 1``
steps after the prefill only to account for their cost (the official code decodes up to 5 or 10
tokens; answers and maps come from the prefill in both), and those extra steps run without
gradients (the official code keeps the graph through them).
"""

from __future__ import annotations

import contextlib
from typing import Sequence

import torch

from .base import CaptureSpec, ForwardOutput, ModelAdapter, VisualTokens
from .attention import set_decoder_attention


@contextlib.contextmanager
def decoder_attention(language_model: torch.nn.Module, implementation: str):
    """Run the decoder with one of transformers' attention implementations ("eager", "sdpa"), then restore."""
    previous = language_model.config._attn_implementation
    set_decoder_attention(language_model, implementation)
    try:
        yield
    finally:
        set_decoder_attention(language_model, previous)


def eager_attention(language_model: torch.nn.Module):
    """Eager attention: what ``output_attentions=True`` needs (every layer's full matrix)."""
    return decoder_attention(language_model, "eager")


class ReferenceAdapter(ModelAdapter):
    """An adapter that computes like the official code: one prompt per call, full prompt every time,
    eager attention with every layer's attention matrix returned.

    ``new_tokens``: greedy tokens generated per prompt (1 = the prefill only, the cheapest honest
    reference; the official code asks for 5 in attention runs and 10 in LRA steps).
    """

    def __init__(self, inner: ModelAdapter, new_tokens: int = 1):
        if new_tokens < 1:
            raise ValueError("new_tokens must be >= 1 (the prefill produces the first token)")
        self.inner = inner
        self.new_tokens = int(new_tokens)
        self.family = inner.family
        self.default_grounding_offset = inner.default_grounding_offset
        self.model = inner.model
        self.device = inner.device
        self.dtype = inner.dtype

    @classmethod
    def from_pretrained(cls, path, device="cpu", dtype=None, image_size=None) -> "ReferenceAdapter":
        from . import load_adapter

        return cls(load_adapter(path, device=device, dtype=dtype, image_size=image_size))

    def configure(self, options) -> None:
        self.options = options
        self.inner.configure(options)
        self.default_grounding_offset = self.inner.default_grounding_offset

    # the clip is encoded once per video in the official code too
    def encode_frames(self, frames, stamps=None) -> VisualTokens:
        return self.inner.encode_frames(frames, stamps=stamps)

    def generate_text(self, prompt: str, max_new_tokens: int = 64) -> str:
        return self.inner.generate_text(prompt, max_new_tokens=max_new_tokens)

    @property
    def answer_token_ids(self) -> tuple[int, int]:
        return self.inner.answer_token_ids

    @property
    def num_layers(self) -> int:
        return self.inner.num_layers

    def run(self, visual: VisualTokens | Sequence[VisualTokens], questions: Sequence[str],
            visual_delta: torch.Tensor | None = None, capture: CaptureSpec | None = None,
            with_grad: bool = False) -> ForwardOutput:
        questions = list(questions)
        visuals = [visual] * len(questions) if isinstance(visual, VisualTokens) else list(visual)
        logits, attention, tokens, offsets = [], [], [], []
        for b, (vis, question) in enumerate(zip(visuals, questions)):
            delta = None
            if visual_delta is not None:
                delta = visual_delta if visual_delta.dim() == 2 else visual_delta[b]
            one_logits, one_attention, batch = self._run_one(vis, question, delta, capture, with_grad)
            logits.append(one_logits)
            attention.append(one_attention)
            tokens.append(batch.candidate_tokens[0])
            offsets.append(batch.candidate_offsets[0])
        # prompts of different length have different numbers of candidates: keep the common tail,
        # as the fast path does for a batch
        attn = None
        if capture is not None:
            k = min(a.shape[0] for a in attention)
            attn = torch.stack([a[-k:] for a in attention])
            tokens = [t[-k:] for t in tokens]
            offsets = [o[-k:] for o in offsets]
        return ForwardOutput(yes_no_logits=torch.stack(logits), attention=attn, candidate_tokens=tokens,
                             candidate_offsets=offsets)

    def _run_one(self, visual: VisualTokens, question: str, delta, capture, with_grad):
        inner = self.inner
        lm = inner.language_model
        batch = inner.prepare(visual, [question], None if delta is None else delta[None])
        yes, no = inner.answer_token_ids
        head = inner.model.get_output_embeddings()
        want_attn = capture is not None
        with eager_attention(lm), (torch.enable_grad() if with_grad else torch.no_grad()):
            out = lm(inputs_embeds=batch.embeds, position_ids=batch.positions, use_cache=self.new_tokens > 1,
                     output_attentions=want_attn)
            # generate() computes the whole vocabulary's logits of the last position
            vocab_logits = head(out.last_hidden_state[:, -1])
            logits = vocab_logits[0, [yes, no]].float()
            attn = None
            if want_attn:
                layers = range(inner.num_layers) if capture.layers is None else capture.layers
                rows, cols = batch.rows[0], batch.cols[0]
                per_layer = [out.attentions[i][0][:, rows][:, :, cols].float().mean(0) for i in layers]
                attn = torch.stack(per_layer).mean(0).detach()
            if self.new_tokens > 1:
                self._decode_more(lm, head, out, vocab_logits, batch, want_attn)
        return logits, attn, batch

    def _decode_more(self, lm, head, prefill, vocab_logits, batch, want_attn) -> None:
        """Greedy steps after the prefill, on its KV cache, as ``generate`` would run them (cost only)."""
        embed = self.inner.model.get_input_embeddings()
        cache = prefill.past_key_values
        position = batch.positions[..., -1:]
        token = vocab_logits.argmax(-1, keepdim=True)
        with torch.no_grad():
            for _ in range(self.new_tokens - 1):
                position = position + 1
                out = lm(inputs_embeds=embed(token), position_ids=position, past_key_values=cache, use_cache=True,
                         output_attentions=want_attn)
                cache = out.past_key_values
                token = head(out.last_hidden_state[:, -1]).argmax(-1, keepdim=True)
