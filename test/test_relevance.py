"""Relevance maps: token placement on the grid, grounding-token choice, pixels, TAS round trip."""

import numpy as np
import pytest
import torch

from fake_adapter import FakeAdapter, clip_with_square
from stvg_ros.adapters.base import ForwardOutput
from stvg_ros.config import ConfigError, GroundingConfig
from stvg_ros.grounding.grounder import Grounder
from stvg_ros.grounding.relevance import (
    assemble_tas, cell_box, grounding_attention, normalise_per_clip, relative_attention, scaled_eps, token_grid_maps,
    upsample_maps
)


def _visual(T=5, grid=(3, 4), frames_per_slot=1):
    frames = [np.full((30, 40, 3), 100, np.uint8) for _ in range(T)]
    return FakeAdapter(grid=grid, frames_per_slot=frames_per_slot).encode_frames(frames)


def _planted_values(visual, frame, r, c, value=5.0):
    """Per-token values: 1 everywhere, ``value`` at the token showing ``frame``'s cell (r, c)."""
    slot_of_frame = visual.slot_of_frame()
    v = torch.ones(visual.num_tokens)
    hit = (visual.slot == slot_of_frame[frame]) & (visual.row == r) & (visual.col == c)
    assert int(hit.sum()) == 1
    v[hit] = value
    return v


def test_token_values_land_on_their_frame_and_cell():
    vis = _visual()
    maps = token_grid_maps(_planted_values(vis, 3, 2, 1), vis)
    assert maps.shape == (5, 3, 4)
    assert np.unravel_index(maps.argmax(), maps.shape) == (3, 2, 1)
    assert maps.max() == 5.0 and np.count_nonzero(maps == 5.0) == 1


def test_slot_covering_two_frames_gives_both_its_map():
    vis = _visual(T=6, frames_per_slot=2)
    maps = token_grid_maps(_planted_values(vis, 2, 0, 3), vis)
    assert maps.shape == (6, 3, 4)
    assert maps[2, 0, 3] == 5.0 and maps[3, 0, 3] == 5.0
    assert np.count_nonzero(maps == 5.0) == 2


def test_reversed_clip_maps_back_to_original_frames():
    vis = _visual()
    rev, perm = vis.reversed_in_time()
    values = _planted_values(vis, 1, 0, 2)
    # attention computed on the reversed sequence is indexed by reversed positions
    rev_values = values[perm]
    maps = token_grid_maps(rev_values, rev)
    assert np.unravel_index(maps.argmax(), maps.shape) == (1, 0, 2)
    np.testing.assert_array_equal(maps, token_grid_maps(values, vis))


def _out(attention, tokens=("<|im_end|>", "assistant", "Ċ"), offsets=(-3, -2, -1)):
    B = attention.shape[0]
    return ForwardOutput(yes_no_logits=torch.zeros(B, 2), attention=attention,
                         candidate_tokens=[list(tokens)] * B, candidate_offsets=[list(offsets)] * B)


def test_auto_picks_highest_peak_and_uses_same_token_for_caption():
    N = 6
    q = torch.full((3, N), 1.0 / N)
    q[2] = torch.tensor([0.0, 0.0, 0.9, 0.1, 0.0, 0.0])  # sharp: the grounding token
    q[0] = torch.tensor([0.3, 0.3, 0.1, 0.1, 0.1, 0.1])  # larger mass on two tokens but lower peak
    c = torch.rand(3, N)
    c[0, 0] = 5.0  # the caption's own highest peak is another candidate: must not be used
    out = _out(torch.stack([q, c]))
    qa, ca, token = grounding_attention(out, 0, out, 1, "auto", 0)
    assert token == "Ċ"
    torch.testing.assert_close(qa, q[2])
    torch.testing.assert_close(ca, c[2])


def test_auto_peak_ignores_non_grid_tokens():
    """A candidate whose peak is on a non-grid token (OneVision's newline) does not win GTI."""
    q = torch.full((3, 5), 0.05)
    q[0, 4] = 0.9  # token 4 is the newline
    q[2, 1] = 0.4  # the highest peak on a grid token
    out = _out(torch.stack([q, q]))
    grid = torch.tensor([True, True, True, True, False])
    assert grounding_attention(out, 0, out, 1, "auto", 0)[2] == "<|im_end|>"
    _, _, token = grounding_attention(out, 0, out, 1, "auto", 0, grid_mask=grid)
    assert token == "Ċ"


def test_eps_scaling():
    assert scaled_eps(1e-4, 720, 720) == 1e-4
    assert scaled_eps(1e-4, 720, 2880) == pytest.approx(2.5e-5)
    assert scaled_eps(1e-4, 0, 2880) == 1e-4


def test_fixed_and_mean_modes():
    att = torch.rand(2, 3, 5)
    out = _out(att)
    qa, ca, token = grounding_attention(out, 0, out, 1, "fixed", -2)
    assert token == "assistant"
    torch.testing.assert_close(qa, att[0, 1])
    torch.testing.assert_close(ca, att[1, 1])
    qa, ca, token = grounding_attention(out, 0, out, 1, "mean", 0)
    torch.testing.assert_close(qa, att[0].mean(0))
    with pytest.raises(ConfigError, match="grounding_token_offset=-7"):
        grounding_attention(out, 0, out, 1, "fixed", -7)


def test_relative_attention_is_ratio_with_eps():
    q = torch.tensor([0.2, 0.0, 0.5])
    c = torch.tensor([0.1, 0.0, 0.5])
    torch.testing.assert_close(relative_attention(q, c, 1e-4), q / (c + 1e-4))


def test_upsampled_peak_is_inside_the_cells_pixels_with_letterbox():
    grid = (3, 4)
    maps = np.zeros((2, *grid), np.float32)
    maps[1, 2, 1] = 1.0
    content = (10.0, 20.0, 90.0, 80.0)  # the grid covers only this part of a 100x120 (HxW) frame
    up, scale = upsample_maps(maps, content, (100, 120), max_side=None)
    assert scale == 1.0 and up.shape == (2, 100, 120)
    y, x = np.unravel_index(up[1].argmax(), up[1].shape)
    x0, y0, x1, y1 = cell_box(2, 1, 2, 1, grid, content)
    assert (x0, y0, x1, y1) == (30.0, 60.0, 50.0, 80.0)
    assert x0 <= x < x1 and y0 <= y < y1
    assert up[1, :, :10].max() == 0 and up[1, :20].max() == 0  # outside the content box
    assert up[0].max() == 0
    small, s = upsample_maps(maps, content, (100, 120), max_side=60)
    assert small.shape == (2, 50, 60) and s == 0.5
    y, x = np.unravel_index(small[1].argmax(), small[1].shape)
    assert x0 * s <= x < x1 * s and y0 * s <= y < y1 * s


def test_tas_assembly_is_mean_of_per_clip_normalised_maps():
    a = np.random.default_rng(0).random((4, 2, 2)) * 7
    b = np.random.default_rng(1).random((4, 2, 2)) * 0.1
    out = assemble_tas(a, b)
    np.testing.assert_allclose(out, 0.5 * (a / a.max() + b / b.max()))
    assert normalise_per_clip(np.zeros((1, 2, 2))).max() == 0


@pytest.mark.parametrize("use_tas", [False, True])
@pytest.mark.parametrize("frames_per_slot", [1, 2])
def test_planted_pattern_comes_out_at_its_frame_and_pixels(use_tas, frames_per_slot):
    """A red square in frame 6, cell (2, 3): the spatial map peaks there, through TAS and back."""
    frames, stamps, box = clip_with_square(num_frames=10, size=64, frames_on=(6,), cell=(2, 3))
    adapter = FakeAdapter(frames_per_slot=frames_per_slot)
    cfg = GroundingConfig(num_frames=10, use_tas=use_tas, keep_relevance=True, decomposer="rules")
    result = Grounder(adapter, cfg).ground(frames, stamps, "the red square")
    spatial = result.relevance.spatial
    t, r, c = np.unravel_index(spatial.argmax(), spatial.shape)
    assert (r, c) == (2, 3)
    assert t in ([6] if frames_per_slot == 1 else [6, 7])
    up, scale = upsample_maps(spatial, result.relevance.content_box, result.relevance.image_size, max_side=None)
    y, x = np.unravel_index(up[6].argmax(), up[6].shape)
    assert box[0] <= x < box[2] and box[1] <= y < box[3]
    assert result.grounding_tokens["spatial"] == "assistant"  # the fake's sharp candidate
    if use_tas:
        assert "tas" in result.grounding_tokens


@pytest.mark.parametrize("family", ["qwen2_5_vl", "llava_onevision", "llava_next_video"])
def test_real_adapter_geometry_round_trips_through_reversal(family, tiny_model_dir):
    """With each real adapter's token layout (Qwen's two-frame slots, OneVision's newline token),
    a value planted at frame k, cell (r, c) comes out there, also from the reversed sequence."""
    from stvg_ros.adapters import load_adapter

    adapter = load_adapter(tiny_model_dir(family), device="cpu")
    frames = [np.random.default_rng(t).integers(0, 255, (48, 64, 3), dtype=np.uint8) for t in range(6)]
    vis = adapter.encode_frames(frames)
    rows, cols = vis.grid
    k, r, c = 4, rows - 1, cols // 2
    values = _planted_values(vis, k, r, c)
    rev, perm = vis.reversed_in_time()
    tas = adapter.encode_reversed(frames, None, vis)  # TAS's clip: re-encoded where slots span frames
    tas_values = torch.ones(tas.num_tokens)
    tas_values[(tas.slot == tas.slot_of_frame()[k]) & (tas.row == r) & (tas.col == c)] = 5.0
    for maps in (token_grid_maps(values, vis), token_grid_maps(values[perm], rev)):
        hot = {tuple(int(i) for i in idx) for idx in np.argwhere(maps == 5.0)}
        same_slot = [f for f in range(6) if vis.slot_of_frame()[f] == vis.slot_of_frame()[k]]
        assert hot == {(f, r, c) for f in same_slot}
    maps = token_grid_maps(tas_values, tas)
    hot = {tuple(int(i) for i in idx) for idx in np.argwhere(maps == 5.0)}
    assert hot == {(f, r, c) for f in range(6) if tas.slot_of_frame()[f] == tas.slot_of_frame()[k]}
    assert (k, r, c) in hot
