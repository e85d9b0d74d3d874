"""The text before a prompt's video, decoded once for every clip (issue 32: "the text side of a query encoded once
for N clips"; the adapter's ``use_text_prefix_cache``, off by default).  Where the template asks before the video
(the shipped model), each prompt's system turn and question are a prefix that sees no visual token and no latent prompt: their KV is computed once and every clip
asked that question (the cameras of a query to all, TAS's reversed clip, later windows) decodes only its video
and the rest on it.  The results equal a full pass to float tolerance, with gradients too; where the video
comes first the adapter's clip prefix applies instead and this path stays off."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from grounding_checks import assert_same_grounding
from stvg_ros.adapters import load_adapter
from stvg_ros.adapters.base import CaptureSpec
from stvg_ros.adapters.tiny_models import random_frames
from stvg_ros.grounding.grounder import Grounder

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "stvg-synth-qwen"
QUESTION = "Is there the small red circle that moves left in this video?"
CAPTION = "Describe this video in details."


@pytest.fixture()
def shipped():
    return load_adapter(str(SHIPPED))


def clips(adapter, n=2):
    return [adapter.encode_frames(random_frames(8, 112, 112, seed=s), stamps=[0.2 * i for i in range(8)])
            for s in range(n)]


def both(adapter, fn):
    """``fn()`` with the text-prefix cache off, then on (a fresh store)."""
    out = []
    for use in (False, True):
        adapter.use_text_prefix_cache = use
        adapter.__dict__.pop("_text_prefixes", None)
        out.append(fn())
    del adapter.use_text_prefix_cache  # back to the class's default
    return out


def test_answers_and_attention_equal_a_full_pass(shipped):
    a, b = clips(shipped)

    def run():
        one = shipped.run(a, [QUESTION, CAPTION], capture=CaptureSpec())  # two texts on one clip
        two = shipped.run([a, b], [QUESTION, QUESTION], capture=CaptureSpec())  # one text, two clips batched
        return one, two

    (off1, off2), (on1, on2) = both(shipped, run)
    for off, on in ((off1, on1), (off2, on2)):
        torch.testing.assert_close(on.yes_no_logits, off.yes_no_logits, rtol=0, atol=1e-5)
        torch.testing.assert_close(on.attention, off.attention, rtol=0, atol=1e-6)
        assert on.candidate_tokens == off.candidate_tokens and on.candidate_offsets == off.candidate_offsets


def test_gradients_to_the_latent_prompts_equal_a_full_pass(shipped):
    """LRA's steps: the latent prompt sits after the text, so the cached text needs no gradient."""
    a, _ = clips(shipped)

    def step():
        delta = (0.01 * torch.randn(2, *a.embeds.shape, generator=torch.Generator().manual_seed(0))).requires_grad_()
        out = shipped.run(a, [QUESTION, CAPTION], visual_delta=delta, with_grad=True)
        out.yes_no_logits[:, 0].sum().backward()
        return out.yes_no_logits.detach(), delta.grad

    (l_off, g_off), (l_on, g_on) = both(shipped, step)
    torch.testing.assert_close(l_on, l_off, rtol=0, atol=1e-5)
    torch.testing.assert_close(g_on, g_off, rtol=1e-4, atol=1e-6)


def test_one_computation_per_text_for_every_clip(shipped):
    shipped.use_text_prefix_cache = True
    before = dict(shipped.text_prefix_stats)
    for clip in clips(shipped, 3):
        shipped.run(clip, [QUESTION])
    stats = shipped.text_prefix_stats
    assert stats["computed"] - before["computed"] == 1 and stats["reused"] - before["reused"] == 2
    groups = shipped._text_prefix_groups(shipped.prepare(clip, [QUESTION, CAPTION, QUESTION]))
    assert [rows for _, rows in groups] == [[0, 2], [1]]  # one pass per text


def test_off_by_default(shipped):
    """Measured: on the shipped model a pass per text costs more CPU than it saves (bench/README)."""
    shipped.run(clips(shipped, 1)[0], [QUESTION])
    assert shipped.text_prefix_stats == {"computed": 0, "reused": 0}


def test_a_grounding_on_each_camera_is_the_same_with_or_without_sharing(shipped):
    """Whole groundings (LRA, TAS, attention, boxes) on two cameras' clips, as a query to all runs them."""
    cams = [random_frames(12, 96, 128, seed=10 + c) for c in range(2)]
    stamps = [0.2 * i for i in range(12)]
    cfg = dict(num_frames=8, decomposer="rules", keep_relevance=True)

    def ground_all():
        g = Grounder(shipped, cfg)
        return [g.ground(f, stamps, "the small red circle that moves left") for f in cams]

    off, on = both(shipped, ground_all)
    assert shipped.text_prefix_stats["reused"] > 0
    for a, b in zip(on, off):
        assert_same_grounding(a, b, atol=1e-5, box_atol=1e-3)


def test_video_first_templates_keep_their_clip_prefix(tiny_model_dir):
    """Where the video comes first, only the system turn precedes it (a few tokens, no question): that
    template's prompts share the clip prefix (video included) per clip instead, and this path never runs."""
    adapter = load_adapter(tiny_model_dir("qwen2_5_vl"))
    adapter.use_text_prefix_cache = True
    visual = adapter.encode_frames(random_frames(4, 56, 72, seed=1), stamps=[0.5 * i for i in range(4)])
    batch = adapter.prepare(visual, [QUESTION, CAPTION])
    assert adapter._text_prefix_groups(batch) == []
    adapter.run(visual, [QUESTION])
    assert adapter.text_prefix_stats == {"computed": 0, "reused": 0}
