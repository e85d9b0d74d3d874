"""Passes shared between stages (``GroundingConfig.reuse_passes``) give the results of computing each alone.

LRA's first step runs each clip's zero-latent prefix once for all its problems and answers the existence
question on it.  Other batch shapes change float32 rounding only: maps and p_yes agree to 1e-5 and the
tubes are the same.
"""

import numpy as np
import pytest
import torch

from grounding_checks import assert_same_grounding
from stvg_ros.adapters import load_adapter
from stvg_ros.grounding.grounder import Grounder
from stvg_ros.adapters.tiny_models import random_frames

FAMILIES = ("qwen2_5_vl", "llava_onevision", "llava_next_video")


@pytest.fixture(scope="module", params=FAMILIES)
def adapter(request, tiny_model_dir):
    return load_adapter(tiny_model_dir(request.param))


def _count_decoded_rows(adapter):
    """Wrap the adapter's decoder call to record (batch, tokens) of every pass."""
    calls = []
    inner = adapter._decode

    def decode(embeds, positions, past_key_values=None, use_cache=False):
        calls.append((int(embeds.shape[0]), int(embeds.shape[1]), past_key_values is None))
        return inner(embeds, positions, past_key_values=past_key_values, use_cache=use_cache)

    adapter._decode = decode
    return calls


@pytest.mark.parametrize("extra", [dict(use_dsth=True, decomposer="rules"), dict(use_dsth=False),
                                   dict(lra_loss="official", lra_steps=2)], ids=["dsth", "no-dsth", "official"])
def test_shared_first_step_matches_separate_passes(adapter, extra):
    frames = random_frames(8, 56, 72, seed=5)
    stamps = [0.5 * i for i in range(8)]
    query = "the man in red walks to the door"
    cfg = dict(dict(num_frames=6, use_lra=True, lra_steps=1, use_tas=True, keep_relevance=True), **extra)
    results, passes = {}, {}
    for reuse in (True, False):
        calls = _count_decoded_rows(adapter)
        try:
            results[reuse] = Grounder(adapter, dict(cfg, reuse_passes=reuse)).ground(frames, stamps, query)
        finally:
            del adapter._decode
        passes[reuse] = calls
    assert_same_grounding(results[True], results[False], atol=1e-5, box_atol=1e-3)
    # what was shared: prefixes (passes that start from no cache) hold fewer rows in total
    prefix_rows = {k: sum(bs for bs, _, fresh in v if fresh) for k, v in passes.items()}
    assert prefix_rows[True] < prefix_rows[False], passes


def test_off_without_lra_changes_nothing(adapter):
    """Without LRA there is no first step to share: the passes are the same with the switch on or off."""
    frames = random_frames(6, 56, 72, seed=2)
    stamps = [0.5 * i for i in range(6)]
    cfg = dict(num_frames=6, use_lra=False, use_tas=True, use_dsth=False, keep_relevance=True)
    a = Grounder(adapter, cfg).ground(frames, stamps, "a dog")
    b = Grounder(adapter, dict(cfg, reuse_passes=False)).ground(frames, stamps, "a dog")
    assert a.p_yes == b.p_yes
    np.testing.assert_array_equal(a.relevance.spatial, b.relevance.spatial)


def test_lra_moves_every_visual_token_of_a_random_model(adapter):
    """The tests and benchmarks above measure latent-prompted passes only if LRA's latent prompts really
    change the visual tokens: prompts share a prefix when their embeddings are bitwise equal, so latent
    prompts that round away (a random model with a saturated yes/no answer has vanishing gradients) would
    let every latent-prompted prefix collapse into the plain one."""
    from stvg_ros.grounding.grounder import format_question
    from stvg_ros.grounding.lra import optimise_latent_prompts, yes_probability

    frames = random_frames(6, 56, 72, seed=3)
    visual = adapter.encode_frames(frames, stamps=[0.5 * i for i in range(6)])
    cfg = Grounder(adapter, dict(num_frames=6)).config
    question = format_question(cfg.question_template, "the man in red walks to the door")
    p_yes = float(yes_probability(adapter.run(visual, [question]).yes_no_logits)[0])
    assert 1e-3 < p_yes < 1 - 1e-3, p_yes
    delta = optimise_latent_prompts(adapter, [visual], [question], steps=1, lr=cfg.lra_lr).deltas[0]
    tokens = visual.embeds.float()
    assert bool(((tokens + delta) != tokens).all())


@pytest.fixture(scope="module")
def shipped():
    """The shipped model, whose template asks before the video."""
    from pathlib import Path

    return load_adapter(str(Path(__file__).resolve().parents[1] / "models" / "stvg-synth-qwen"))


def test_first_step_is_shared_only_where_the_prefix_is(adapter, shipped):
    """A clip prefix exists only when the template puts the video before the question.  The shipped model's
    template asks first, so its prompts have no common prefix: there LRA's first step runs unshared (one
    batched backward pass, as without ``reuse_passes``) instead of one backward pass per problem through
    a graph that shares nothing, which cost it twice as much; the existence question then runs with the
    attention prompts."""
    from stvg_ros.grounding.lra import optimise_latent_prompts

    questions = ["Is there a red circle in this video?", "Is there something moving left in this video?"]
    exist = "Is there a red circle moving left in this video?"
    for model, shares in ((adapter, True), (shipped, False)):
        frames = random_frames(6, 56, 72, seed=4)
        visual = model.encode_frames(frames, stamps=[0.5 * i for i in range(6)])
        assert model.shares_prefix_under_grad(visual, questions + [exist]) is shares
        backward = []
        inner = torch.autograd.grad

        def counted(*a, **k):
            backward.append(1)
            return inner(*a, **k)

        torch.autograd.grad = counted
        try:
            trace = optimise_latent_prompts(model, [visual, visual], questions, steps=1, lr=8.0,
                                            also_ask=[(visual, exist)])
        finally:
            torch.autograd.grad = inner
        assert len(backward) == (2 if shares else 1)
        assert (trace.zero_logits is not None) is shares
        plain = optimise_latent_prompts(model, [visual, visual], questions, steps=1, lr=8.0, share_first_step=False)
        torch.testing.assert_close(trace.deltas, plain.deltas, rtol=1e-4, atol=1e-7)
