"""The fast attention capture gives the numbers an eager-attention forward gives, for every family."""

import pytest
import torch

from stvg_ros.adapters import load_adapter
from stvg_ros.adapters.base import CaptureSpec
from stvg_ros.adapters.attention import CAPTURE_ATTENTION, set_decoder_attention

from stvg_ros.adapters.tiny_models import CONTRACT_FAMILIES as FAMILIES, random_frames

QUESTIONS = ["Is there a red ball in this video?", "Describe this video in details."]


def eager_reference(adapter, visual, questions, layers, visual_delta=None):
    """Same decoder inputs, eager attention with output_attentions, the same rows/columns averaged."""
    batch = adapter.prepare(visual, questions, visual_delta)
    lm = adapter.language_model
    set_decoder_attention(lm, "eager")
    try:
        with torch.no_grad():
            out = lm(inputs_embeds=batch.embeds, position_ids=batch.positions, output_attentions=True)
    finally:
        set_decoder_attention(lm, CAPTURE_ATTENTION)
    chosen = range(adapter.num_layers) if layers is None else layers
    ref = []
    for b in range(len(questions)):
        per_layer = [out.attentions[i][b][:, batch.rows[b]][:, :, batch.cols[b]].float().mean(0) for i in chosen]
        ref.append(torch.stack(per_layer).mean(0))
    return torch.stack(ref), out.last_hidden_state


@pytest.fixture(scope="module", params=FAMILIES)
def adapter(request, tiny_model_dir):
    return load_adapter(tiny_model_dir(request.param))


@pytest.mark.parametrize("layers", [None, [1]])
@pytest.mark.parametrize("prefix_cache", [True, False])
def test_capture_matches_eager(adapter, layers, prefix_cache):
    visual = adapter.encode_frames(random_frames(4, 96, 128))
    ref, _ = eager_reference(adapter, visual, QUESTIONS, layers)
    adapter.use_prefix_cache = prefix_cache
    try:
        out = adapter.run(visual, QUESTIONS, capture=CaptureSpec(layers=layers))
    finally:
        adapter.use_prefix_cache = True
    assert out.attention.shape == ref.shape == (2, len(out.candidate_tokens[0]), visual.num_tokens)
    assert out.attention.dtype == torch.float32
    torch.testing.assert_close(out.attention, ref, atol=1e-5, rtol=1e-4)
    # attention to the visual block is a real share of each row's mass, not all of it
    assert (out.attention.sum(-1) > 0.01).all() and (out.attention.sum(-1) < 1.0).all()


def test_prefix_groups_match_eager(adapter):
    """Prompts on two distinct prefixes (same clip, two different latent prompts) share KV caches per
    prefix and still give the eager reference's attention and the full forward's logits."""
    visual = adapter.encode_frames(random_frames(4, 96, 128))
    gen = torch.Generator().manual_seed(0)
    delta_a, delta_b = (torch.randn(visual.embeds.shape, generator=gen) * 0.2 for _ in range(2))
    delta = torch.stack([delta_a, delta_a, delta_b])
    questions = QUESTIONS + ["Is there a small blue cube in this video?"]
    assert adapter._prefix_plan(adapter.prepare(visual, questions, delta))[1] == [0, 2]
    ref, _ = eager_reference(adapter, visual, questions, None, delta)
    grouped = adapter.run(visual, questions, visual_delta=delta, capture=CaptureSpec())
    adapter.use_prefix_cache = False
    try:
        full = adapter.run(visual, questions, visual_delta=delta, capture=CaptureSpec())
    finally:
        adapter.use_prefix_cache = True
    torch.testing.assert_close(grouped.attention, ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(grouped.yes_no_logits, full.yes_no_logits, atol=1e-4, rtol=1e-4)


def test_no_capture_changes_nothing(adapter):
    """With no capture active the registered function is plain sdpa: logits equal an sdpa model's."""
    visual = adapter.encode_frames(random_frames(4, 96, 128))
    with_capture = adapter.run(visual, QUESTIONS[:1], capture=CaptureSpec())
    without = adapter.run(visual, QUESTIONS[:1], capture=None)
    assert without.attention is None
    torch.testing.assert_close(with_capture.yes_no_logits, without.yes_no_logits)
    batch = adapter.prepare(visual, QUESTIONS[:1])
    lm = adapter.language_model
    set_decoder_attention(lm, "sdpa")
    try:
        with torch.no_grad():
            h = lm(inputs_embeds=batch.embeds, position_ids=batch.positions).last_hidden_state[0, batch.last[0]]
    finally:
        set_decoder_attention(lm, CAPTURE_ATTENTION)
    torch.testing.assert_close(adapter._answer_logits(h[None]).float(), without.yes_no_logits)


def test_capture_keeps_only_requested_layers(adapter):
    from stvg_ros.adapters.attention import capture_attention

    visual = adapter.encode_frames(random_frames(2, 64, 64))
    batch = adapter.prepare(visual, QUESTIONS[:1])
    with capture_attention(batch.rows, batch.cols, layers=[1]) as cap, torch.no_grad():
        adapter.language_model(inputs_embeds=batch.embeds, position_ids=batch.positions)
    assert cap.seen_layers == [1]
    with pytest.raises(ValueError, match="out of range"):
        adapter.run(visual, QUESTIONS[:1], capture=CaptureSpec(layers=[adapter.num_layers]))
