"""Activation checkpointing for LRA: same gradients, a fraction of the saved activations, nothing left switched on."""

import pytest
import torch

from stvg_ros.adapters import load_adapter
from stvg_ros.adapters.checkpointing import (
    SavedTensorMeter, activation_bytes_estimate, checkpointed_layers, decoder_layers, should_checkpoint
)
from stvg_ros.adapters.tiny_models import CONTRACT_FAMILIES, random_frames, tiny_model

QUESTIONS = ["Is there a red ball in this video?", "Is there a man in this video?"]


@pytest.fixture(scope="module", params=CONTRACT_FAMILIES)
def adapter(request, tmp_path_factory):
    # 4 decoder layers, so keeping one layer's activations is clearly less than keeping all of them
    path = tiny_model(request.param, str(tmp_path_factory.mktemp(request.param)), num_hidden_layers=4)
    return load_adapter(path)


def _grad_and_saved(adapter, visual, checkpoint: bool):
    adapter.activation_checkpointing = checkpoint
    try:
        delta = torch.zeros(2, *visual.embeds.shape, requires_grad=True)
        with SavedTensorMeter(exclude=adapter.model) as meter:
            out = adapter.run(visual, QUESTIONS, visual_delta=delta, capture=None, with_grad=True)
        (grad,) = torch.autograd.grad((out.yes_no_logits[:, 0] - out.yes_no_logits[:, 1]).sum(), delta)
    finally:
        adapter.activation_checkpointing = None
    return grad, meter.bytes


def test_checkpointing_keeps_gradients_and_saves_memory(adapter):
    visual = adapter.encode_frames(random_frames(4, 56, 56, seed=5))
    plain_grad, plain_bytes = _grad_and_saved(adapter, visual, checkpoint=False)
    ckpt_grad, ckpt_bytes = _grad_and_saved(adapter, visual, checkpoint=True)
    torch.testing.assert_close(ckpt_grad, plain_grad, rtol=1e-5, atol=1e-7)
    assert plain_grad.abs().sum() > 0
    # 4 layers: at most the layers' inputs plus the embedding/head work stay saved
    assert ckpt_bytes < plain_bytes / 3, (ckpt_bytes, plain_bytes)


def test_checkpointing_is_restored_and_scoped_to_decoder_layers(adapter):
    lm = adapter.language_model
    layers = decoder_layers(lm)
    assert len(layers) == 4
    with checkpointed_layers(lm) as n:
        assert n == 4
        assert all(m.gradient_checkpointing and m.training for m in layers)
        assert not any(sub.training for m in layers for sub in m.children())
    assert not any(m.gradient_checkpointing or m.training for m in layers)
    assert not adapter.model.training


def test_auto_policy(adapter):
    cfg = adapter.model.config
    assert activation_bytes_estimate(cfg, 100, 2, torch.bfloat16) * 2 == activation_bytes_estimate(cfg, 100, 2,
                                                                                                   torch.float32)
    assert should_checkpoint(True, adapter.model, torch.device("cpu"), 10, 1, torch.float32)
    assert not should_checkpoint(False, adapter.model, torch.device("cpu"), 10, 1, torch.float32)
    assert not should_checkpoint(None, adapter.model, torch.device("cpu"), 10**6, 8, torch.float32)


def test_real_size_estimate_motivates_checkpointing():
    """The arithmetic behind the default: LRA on a 7B decoder at 20 frames does not fit 24 GB without it."""
    from types import SimpleNamespace

    qwen7b_text = SimpleNamespace(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28)
    tokens = 10 * 64 + 40  # 20 frames at 224 px = 10 temporal slots x 8x8 tokens, plus the prompt
    act = activation_bytes_estimate(qwen7b_text, tokens, 3, torch.bfloat16)  # V_s, V_t, V_s' batched
    weights = 8.29e9 * 2
    assert weights + act > 23.5 * 2**30  # a 24 GiB card less ~0.5 GiB of CUDA context (bench/lra_memory.py)
    kept_with_checkpointing = 3 * tokens * 3584 * 2 * 28
    assert weights + kept_with_checkpointing + act / 28 < 24 * 2**30


@pytest.mark.parametrize("model", ["qwen2.5-vl-7b", "llava-next-video-7b", "llava-onevision-7b"])
def test_estimate_matches_the_measured_activations(model):
    """The auto rule's estimate against the bytes autograd saved in one LRA step (3 prompts, bf16) at the real
    widths and token counts, measured per layer and extrapolated to the full depth (bench/lra_memory.py)."""
    import json
    import sys
    from pathlib import Path
    from types import SimpleNamespace

    root = Path(__file__).resolve().parent.parent
    sys.path.append(str(root))  # the benchmarks are the package `bench`
    from bench.model_configs import REAL_SIZES

    data = json.loads((root / "bench" / "results" / f"lra-memory-{model}-20f-cpu.json").read_text())
    measured = data["prediction"]["off"]["saved_all_layers_bytes"]
    text = SimpleNamespace(**{k: REAL_SIZES[model][1][k] for k in ("hidden_size", "intermediate_size",
                                                                     "num_hidden_layers")})
    tokens = data["visual_tokens"] + 40  # the longest of the step's questions in the family's template
    estimate = activation_bytes_estimate(text, tokens, data["batch"], torch.bfloat16)
    assert 0.95 <= estimate / measured <= 1.05, estimate / measured
