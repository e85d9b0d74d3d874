"""Several clips grounded in one batch (issue 32: "clips batched where the adapter allows"): ``Grounder.ground_many``
runs the model passes of clips with one token layout together (LRA's steps, the attention and existence passes,
the refine pass) and must answer each clip as ``ground`` does alone, within float rounding (a batch sums in
another order).  Checked on tiny random models of both families (Qwen: per-clip grid_thw and time-scaled rotary
positions; LLaVA: a trailing newline token, TAS by reordering) and the shipped model (its question-first
template, where LRA's first step shares nothing), with the passes counted."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from grounding_checks import assert_same_grounding
from stvg_ros.adapters import load_adapter
from stvg_ros.adapters.tiny_models import random_frames
from stvg_ros.grounding.grounder import Grounder

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "stvg-synth-qwen"
QUERY = "the small red circle that moves left"


def cameras(n: int, count: int = 12, size=(96, 128), step: float = 0.2):
    """``n`` cameras' clips: other pixels each, other frame rates (so Qwen's time positions differ)."""
    return [(random_frames(count, *size, seed=20 + c), [round((step + 0.05 * c) * i, 6) for i in range(count)])
            for c in range(n)]


class Counted:
    """The adapter's ``run`` calls counted (what a batch saves)."""

    def __init__(self, adapter):
        self.calls = 0
        self._run = adapter.run

        def run(*a, **k):
            self.calls += 1
            return self._run(*a, **k)

        adapter.run = run

    def restore(self, adapter):
        adapter.run = self._run


def one_at_a_time_and_batched(adapter, cfg, clips, **kw):
    g = Grounder(adapter, cfg)
    counter = Counted(adapter)
    try:
        alone = [g.ground(f, s, QUERY, **kw) for f, s in clips]
        calls_alone = counter.calls
        counter.calls = 0
        batched = g.ground_many(clips, QUERY, **kw)
        calls_batched = counter.calls
    finally:
        counter.restore(adapter)
    return alone, batched, calls_alone, calls_batched


CONFIGS = {
    "paper": dict(num_frames=8, decomposer="rules", keep_relevance=True),
    "refine": dict(num_frames=6, decomposer="rules", keep_relevance=True, tube_frames="refine"),
    "two-steps-official": dict(num_frames=6, decomposer="rules", keep_relevance=True, lra_steps=2,
                               lra_loss="official"),
    "no-lra": dict(num_frames=6, decomposer="rules", keep_relevance=True, use_lra=False),
}


@pytest.mark.parametrize("family", ["qwen2_5_vl", "llava_onevision"])
@pytest.mark.parametrize("setting", sorted(CONFIGS))
def test_batched_equals_one_at_a_time_on_tiny_models(tiny_model_dir, family, setting):
    adapter = load_adapter(tiny_model_dir(family))
    clips = cameras(3)
    alone, batched, calls_alone, calls_batched = one_at_a_time_and_batched(adapter, CONFIGS[setting], clips)
    assert len(batched) == 3
    for a, b in zip(alone, batched):
        assert_same_grounding(b, a, atol=1e-5, box_atol=1e-3)
        assert b.grounding_tokens == a.grounding_tokens and b.frame_stamps == a.frame_stamps
        assert b.timings["clips"] == 3
    if setting != "no-lra":  # LRA's steps, attention and refine passes: one batch for every clip
        assert calls_batched * 3 <= calls_alone + 2, (calls_batched, calls_alone)
    else:  # no latent prompt: each clip's caption answer is kept per clip, so those calls stay per clip
        assert calls_batched <= calls_alone


def test_shipped_model_batched_equals_one_at_a_time():
    """The shipped model's question-first template: no shared first step, every pass batched."""
    adapter = load_adapter(str(SHIPPED))
    clips = cameras(2, count=24, size=(120, 160), step=0.1)
    alone, batched, calls_alone, calls_batched = one_at_a_time_and_batched(
        adapter, dict(decomposer="rules", keep_relevance=True), clips)
    for a, b in zip(alone, batched):
        assert_same_grounding(b, a, atol=1e-5, box_atol=1e-3)
    assert calls_batched < calls_alone


def test_clips_of_other_layouts_run_in_batches_of_their_own(tiny_model_dir):
    """A camera of another size (another token count) cannot share a pass: its own batch, same answers.  A
    portrait camera has the landscape ones' token count on a transposed grid: it shares their pass, its
    rotary positions from its own grid_thw."""
    adapter = load_adapter(tiny_model_dir("qwen2_5_vl"))
    portrait = (random_frames(12, 128, 96, seed=8), [0.3 * i for i in range(12)])
    clips = cameras(2) + [(random_frames(12, 64, 64, seed=7), [0.25 * i for i in range(12)]), portrait]
    cfg = dict(num_frames=6, decomposer="rules", keep_relevance=True)
    tokens = [adapter.encode_frames(f[:6], stamps=s[:6]) for f, s in (clips[0], clips[2], portrait)]
    assert tokens[0].num_tokens == tokens[2].num_tokens != tokens[1].num_tokens
    assert tokens[0].grid == tokens[2].grid[::-1] != tokens[2].grid
    alone, batched, calls_alone, calls_batched = one_at_a_time_and_batched(adapter, cfg, clips)
    for a, b in zip(alone, batched):
        assert_same_grounding(b, a, atol=1e-5, box_atol=1e-3)
    assert calls_batched * 2 <= calls_alone + 1  # two batches (3 clips and 1), not four groundings


def test_proposals_and_frame_keys_per_clip(tiny_model_dir):
    adapter = load_adapter(tiny_model_dir("llava_onevision"))
    clips = cameras(2)
    props = [{7: {s: (10.0, 10.0, 60.0, 50.0) for s in clips[0][1]}}, None]
    keys = [[("a", i) for i in range(12)], [("b", i) for i in range(12)]]
    cfg = dict(num_frames=6, decomposer="rules", keep_relevance=True)
    g = Grounder(adapter, cfg)
    alone = [g.ground(f, s, QUERY, proposals=p, frame_keys=k) for (f, s), p, k in zip(clips, props, keys)]
    batched = g.ground_many(clips, QUERY, proposals=props, frame_keys=keys)
    for a, b in zip(alone, batched):
        assert_same_grounding(b, a, atol=1e-5, box_atol=1e-3)
    assert batched[0].track_id == 7


def test_bad_calls_name_the_fix(tiny_model_dir):
    g = Grounder(load_adapter(tiny_model_dir("qwen2_5_vl")), dict(num_frames=4, decomposer="rules"))
    with pytest.raises(ValueError, match="at least one"):
        g.ground_many([], QUERY)
    with pytest.raises(ValueError, match="one .* per clip"):
        g.ground_many(cameras(2), QUERY, proposals=[None])
    f, s = cameras(1)[0]
    with pytest.raises(ValueError, match="stamps"):
        g.ground_many([(f, s), (f, s[:-1])], QUERY)


def test_lra_first_step_gradients_per_clip(tiny_model_dir):
    """LRA's shared first step over several clips in one pass: each clip's gradients are its own (the clips'
    losses share no leaf), as one pass per clip gives them; identical clips fall back to a pass each."""
    from stvg_ros.grounding.lra import optimise_latent_prompts

    adapter = load_adapter(tiny_model_dir("qwen2_5_vl"))
    vis = [adapter.encode_frames(f[:6], stamps=s[:6]) for f, s in cameras(3)]
    vis.append(vis[0])  # the same clip object twice: one clip
    vis.append(dataclasses.replace(vis[1]))  # another clip with the same tokens: its prefix would merge with vis[1]'s
    qs = ["Is there a red circle in this video?", "Is there something moving left in this video?"]
    visuals = [v for v in vis for _ in qs]
    questions = qs * len(vis)
    ask = [(v, "Is there the small red circle in this video?") for v in vis[:3] + vis[4:]]
    common = dict(steps=1, lr=1.0, also_ask=ask)
    per_clip = optimise_latent_prompts(adapter, visuals, questions, **common)
    together = optimise_latent_prompts(adapter, visuals, questions, batch_clips=True, **common)
    torch.testing.assert_close(together.deltas, per_clip.deltas, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(together.zero_logits, per_clip.zero_logits, rtol=0, atol=1e-5)
    assert together.zero_logits is not None
