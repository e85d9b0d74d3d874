"""Model adapters on tiny random models of every family: loading, geometry, prompts, gradients."""

import json

import numpy as np
import pytest
import torch

from stvg_ros.adapters import load_adapter
from stvg_ros.adapters.base import AdapterOptions, CaptureSpec
from stvg_ros.grounding.relevance import token_grid_maps

from stvg_ros.adapters.tiny_models import CONTRACT_FAMILIES as FAMILIES, random_frames

EXPECTED_CANDIDATES = {
    "chatml": ["?", "<|im_end|>", "Ċ", "<|im_start|>", "assistant", "Ċ"],
    "vicuna": ["?", "▁A", "SS", "IST", "ANT", ":"],
}
#: the official code's fixed grounding token for each template style
EXPECTED_FIXED_TOKEN = {"chatml": "<|im_start|>", "vicuna": "▁A"}


def style(family):
    return "vicuna" if family == "llava_next_video" else "chatml"


#: the contract's three families plus Qwen2-VL, which shares the Qwen adapter
ADAPTER_FAMILIES = FAMILIES + ("qwen2_vl",)


@pytest.fixture(scope="module", params=ADAPTER_FAMILIES)
def family_adapter(request, tiny_model_dir):
    return request.param, load_adapter(tiny_model_dir(request.param))


# ---------------------------------------------------------------------------------------- loading
def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_adapter(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_adapter(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="unsupported model_type 'bert'.*llava_next_video.*qwen2_5_vl"):
        load_adapter(tmp_path)


def test_loads_frozen_eval_on_cpu(family_adapter):
    family, adapter = family_adapter
    assert adapter.family == family
    assert adapter.device.type == "cpu" and adapter.dtype == torch.float32
    assert not adapter.model.training
    assert all(not p.requires_grad for p in adapter.model.parameters())
    assert adapter.num_layers == 2


def test_auto_device_and_dtype(tiny_model_dir):
    adapter = load_adapter(tiny_model_dir("qwen2_5_vl"), device="auto")
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert adapter.device.type == want
    assert adapter.dtype == (torch.bfloat16 if want == "cuda" else torch.float32)


# ---------------------------------------------------------------------------------------- prompts
def test_candidates_and_fixed_token(family_adapter):
    family, adapter = family_adapter
    visual = adapter.encode_frames(random_frames(2, 64, 64))
    out = adapter.run(visual, ["Is there a red ball in this video?", "Describe this video in details."])
    want = EXPECTED_CANDIDATES[style(family)]
    assert out.candidate_tokens[0] == want
    assert out.candidate_tokens[1] == ["."] + want[1:]
    assert out.candidate_offsets[0] == list(range(-len(want), 0))
    fixed = out.candidate_offsets[0].index(adapter.default_grounding_offset)
    assert out.candidate_tokens[0][fixed] == EXPECTED_FIXED_TOKEN[style(family)]
    assert adapter.default_grounding_offset == type(adapter).default_grounding_offset
    # the prompt is the model's own template, video before the question, generation prompt last
    text = adapter.render("Is there a red ball in this video?")
    assert text.index("Is there") > text.index("<video>" if "llava" in family else "<|video_pad|>")
    assert text.endswith("ASSISTANT:" if style(family) == "vicuna" else "<|im_start|>assistant\n")


def test_yes_no_ids(family_adapter):
    _, adapter = family_adapter
    yes, no = adapter.answer_token_ids
    toks = adapter.tokenizer.convert_ids_to_tokens([yes, no])
    assert [t.lstrip("▁Ġ") for t in toks] == ["Yes", "No"]


def test_generate_text_is_greedy_and_text_only(family_adapter):
    _, adapter = family_adapter
    prompt = "Describe this video in details."
    a = adapter.generate_text(prompt, max_new_tokens=4)
    assert isinstance(a, str) and a == adapter.generate_text(prompt, max_new_tokens=4)
    # the first generated token is the argmax of a plain forward on the templated text prompt
    text = adapter.tokenizer.apply_chat_template([{"role": "user", "content": [{"type": "text", "text": prompt}]}],
                                                 chat_template=adapter.chat_template, tokenize=False,
                                                 add_generation_prompt=True)
    assert "<video>" not in text and "<|video_pad|>" not in text
    ids, _ = adapter._encode(text)
    with torch.no_grad():
        first = int(adapter.model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
    want = adapter.tokenizer.decode([first], skip_special_tokens=True).strip()
    assert adapter.generate_text(prompt, max_new_tokens=1) == want


def test_image_size_override(tiny_model_dir):
    qwen = load_adapter(tiny_model_dir("qwen2_5_vl"), image_size=56)
    assert qwen.encode_frames(random_frames(2, 112, 112)).grid == (2, 2)  # 56 px = 4 patches = 2 merged
    # the default frame_fit 'short': 112 px on the short side, the long side its share (7 cells); 'resize': an area
    # of about 112², aspect rounded (3x5)
    assert load_adapter(tiny_model_dir("qwen2_5_vl")).encode_frames(random_frames(2, 90, 160)).grid == (4, 7)
    stretched = load_adapter(tiny_model_dir("qwen2_5_vl"))
    stretched.configure(AdapterOptions(frame_fit="resize"))
    assert stretched.encode_frames(random_frames(2, 90, 160)).grid == (3, 5)
    with pytest.raises(ValueError, match="vision tower takes 112x112"):
        load_adapter(tiny_model_dir("llava_next_video"), image_size=336)


# ---------------------------------------------------------------------------------------- geometry
def _cell_box(adapter, frame_hw, row, col, grid):
    """Pixel box of token cell (row, col) when the frame is fed at exactly the tower's input size."""
    h, w = frame_hw
    return (row * h // grid[0], (row + 1) * h // grid[0], col * w // grid[1], (col + 1) * w // grid[1])


@pytest.mark.parametrize("k,row,col", [(0, 0, 0), (3, 2, 1), (2, 3, 3)])
def test_perturbed_region_moves_its_own_token(family_adapter, k, row, col):
    """Change frame k inside token cell (row, col): tokens of other slots do not change at all, and
    within slot(k) the most-changed token is the one at (row, col)."""
    _, adapter = family_adapter
    frames = random_frames(4, 112, 112)  # the tiny towers' native size: no resampling blur
    base = adapter.encode_frames(frames)
    assert base.grid == (4, 4)
    y0, y1, x0, x1 = _cell_box(adapter, (112, 112), row, col, base.grid)
    changed = [f.copy() for f in frames]
    changed[k][y0:y1, x0:x1] = 255 - changed[k][y0:y1, x0:x1]
    pert = adapter.encode_frames(changed)
    diff = (pert.embeds - base.embeds).norm(dim=-1)
    slot = base.slot_of_frame()[k]
    in_slot = base.slot == slot
    assert diff[~in_slot].max() < 1e-5
    target = torch.nonzero(in_slot & (base.row == row) & (base.col == col)).flatten()
    assert len(target) == 1
    assert int(diff.argmax()) == int(target[0])


def test_token_tables_cover_every_cell(family_adapter):
    family, adapter = family_adapter
    visual = adapter.encode_frames(random_frames(5, 90, 120))
    rows, cols = visual.grid
    grid_tokens = visual.slot >= 0
    assert visual.embeds.shape == (visual.num_tokens, adapter.language_model.config.hidden_size)
    assert visual.num_frames == 5 and visual.image_size == (90, 120)
    x0, y0, x1, y1 = visual.content_box  # the frame, plus Qwen's letterbox under frame_fit 'short' (4:3 in 5:4)
    assert (x0, x1) == pytest.approx((0.0, 120.0)) and y0 <= 0 and y1 >= 90 and (y1 - y0) < 90 * 1.1
    cells = {(int(s), int(r), int(c)) for s, r, c in zip(visual.slot[grid_tokens], visual.row[grid_tokens],
                                                          visual.col[grid_tokens])}
    assert len(cells) == int(grid_tokens.sum()) == visual.num_slots * rows * cols
    if family.startswith("qwen"):
        assert visual.slot_frames == [[0, 1], [2, 3], [4]]  # two frames per slot, odd count padded
    else:
        assert visual.slot_frames == [[t] for t in range(5)]
    assert int((~grid_tokens).sum()) == (1 if family == "llava_onevision" else 0)
    if family == "llava_onevision":
        assert int(visual.slot[-1]) == -1  # the newline token closes the video


def test_reversed_in_time_round_trip(family_adapter):
    family, adapter = family_adapter
    frames = random_frames(4, 112, 112)
    visual = adapter.encode_frames(frames)
    rev, perm = visual.reversed_in_time()
    assert torch.equal(rev.embeds, visual.embeds[perm])
    back, perm2 = rev.reversed_in_time()
    assert torch.equal(back.embeds, visual.embeds)
    assert torch.equal(back.slot, visual.slot) and torch.equal(back.row, visual.row)
    assert back.slot_frames == visual.slot_frames


@pytest.mark.parametrize("T", [4, 5])
def test_tas_clip_is_what_the_model_sees_for_reversed_frames(family_adapter, T):
    """TAS's reversed clip equals the encoding of frames[::-1] on every family (Qwen re-forms its
    2-frame slots), its slots name the original frames, and reversing it again gives the clip back."""
    family, adapter = family_adapter
    frames = random_frames(T, 112, 112, seed=3)
    stamps = [0.5 * t for t in range(T)]
    visual = adapter.encode_frames(frames, stamps=stamps)
    rev = adapter.encode_reversed(frames, stamps, visual)
    direct = adapter.encode_frames(frames[::-1], stamps=stamps)
    torch.testing.assert_close(rev.embeds, direct.embeds, atol=1e-6, rtol=0)
    if family.startswith("qwen"):
        assert rev.slot_frames == ([[3, 2], [1, 0]] if T == 4 else [[4, 3], [2, 1], [0]])
        assert rev.extras["second_per_grid_t"] == pytest.approx(visual.extras["second_per_grid_t"])
        # reordering slots is not enough: time runs forward inside each 2-frame patch
        assert not torch.allclose(visual.reversed_in_time()[0].embeds, direct.embeds, atol=1e-3)
    else:
        assert rev.slot_frames == [[t] for t in reversed(range(T))]
    # per original frame, a value planted on the reversed clip's token lands on that frame
    values = torch.arange(rev.num_tokens, dtype=torch.float32)
    maps = token_grid_maps(values, rev)
    for s, fr in enumerate(rev.slot_frames):
        first = int(torch.nonzero(rev.slot == s)[0])
        for f in fr:
            assert maps[f, 0, 0] == values[first]
    again = adapter.encode_reversed(frames[::-1], stamps, rev)
    torch.testing.assert_close(again.embeds, visual.embeds, atol=1e-6, rtol=0)


def test_paper_visual_tokens(tiny_model_dir):
    """visual_tokens='paper': the official pooling of the *projected* grid (NeXT-Video 4x4 average,
    OneVision stride-5 bilinear + its newline); Qwen's tokens do not change."""
    import torch.nn.functional as F

    frames = random_frames(3, 112, 112)
    for family, mode in (("llava_next_video", "average"), ("llava_onevision", "bilinear")):
        adapter = load_adapter(tiny_model_dir(family))
        model_tokens = adapter.encode_frames(frames)
        adapter.configure(AdapterOptions(visual_tokens="paper"))
        paper = adapter.encode_frames(frames)
        assert model_tokens.grid == (4, 4) and paper.grid == (2, 2)  # 8x8 patches: stride 2 / stride 4 or 5
        inner, cfg = adapter.model.model, adapter.model.config
        with torch.no_grad():
            hidden = inner.vision_tower(adapter.pixel_values(frames)[0], output_hidden_states=True).hidden_states
            feats = hidden[cfg.vision_feature_layer]
            feats = feats[:, 1:] if cfg.vision_feature_select_strategy == "default" else feats
            grid = inner.multi_modal_projector(feats).view(3, 8, 8, -1).permute(0, 3, 1, 2)
            pooled = F.avg_pool2d(grid, 4) if mode == "average" else F.interpolate(grid, size=[2, 2], mode="bilinear")
        want = pooled.permute(0, 2, 3, 1).reshape(12, -1)
        if family == "llava_onevision":
            want = torch.cat([want, inner.image_newline[None]])
            assert int(paper.slot[-1]) == -1
        torch.testing.assert_close(paper.embeds, want)
    qwen = load_adapter(tiny_model_dir("qwen2_5_vl"))
    base = qwen.encode_frames(frames)
    qwen.configure(AdapterOptions(visual_tokens="paper"))
    assert torch.equal(qwen.encode_frames(frames).embeds, base.embeds)


def test_answer_tokens_option(tiny_model_dir):
    adapter = load_adapter(tiny_model_dir("llava_onevision"))
    vocab = adapter.tokenizer.get_vocab()
    assert adapter.answer_token_ids == (vocab["Yes"], vocab["No"])
    adapter.configure(AdapterOptions(answer_tokens="official"))
    assert adapter.answer_token_ids == (vocab["yes"], vocab["no"])
    adapter.configure(AdapterOptions(answer_tokens="Ġyes,Ġno"))
    assert adapter.answer_token_ids == (vocab["Ġyes"], vocab["Ġno"])
    # the logits every consumer reads (existence judgment, LRA) are the lm head's at those ids
    visual = adapter.encode_frames(random_frames(2, 64, 64))
    q = "Is there a red ball in this video?"
    ids = torch.tensor([adapter.prepare(visual, [q]).prompt_ids[0]])
    with torch.no_grad():
        full = adapter.model(input_ids=ids, pixel_values_videos=adapter.pixel_values(random_frames(2, 64, 64))).logits
    torch.testing.assert_close(adapter.run(visual, [q]).yes_no_logits[0],
                               full[0, -1, [vocab["Ġyes"], vocab["Ġno"]]], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="no piece"):
        adapter.configure(AdapterOptions(answer_tokens="oui,non"))


def test_official_prompt_style(tiny_model_dir):
    q = "Is there a red ball in this video?"
    nv = load_adapter(tiny_model_dir("llava_next_video"))
    nv.configure(AdapterOptions(prompt_style="official"))
    assert nv.render(q) == ("A chat between a curious user and an artificial intelligence assistant. The assistant "
                            "gives helpful, detailed, and polite answers to the user's questions. USER: <video>\n"
                            f"{q} ASSISTANT:")
    ov = load_adapter(tiny_model_dir("llava_onevision"))
    ov.configure(AdapterOptions(prompt_style="official"))
    assert ov.render(q) == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<video>\n"
                            f"{q}<|im_end|>\n<|im_start|>assistant\n")
    for adapter, fam in ((nv, "llava_next_video"), (ov, "llava_onevision")):
        out = adapter.run(adapter.encode_frames(random_frames(2, 64, 64)), [q])
        assert out.candidate_tokens[0] == EXPECTED_CANDIDATES[style(fam)]
        assert adapter.default_grounding_offset == type(adapter).default_grounding_offset
    qwen = load_adapter(tiny_model_dir("qwen2_5_vl"))
    plain = qwen.render(q)
    qwen.configure(AdapterOptions(prompt_style="official"))
    assert qwen.render(q) == plain  # no official Qwen driver: its own template


def test_processor_frame_resize(tiny_model_dir):
    qwen = load_adapter(tiny_model_dir("qwen2_5_vl"))
    assert qwen.target_size(224, 448) == (112, 224)  # frame_fit 'short': 112 px on the short side
    qwen.configure(AdapterOptions(frame_fit="resize"))
    assert qwen.target_size(224, 448) == (84, 168)  # an area of about 112², aspect kept, sides rounded
    qwen.configure(AdapterOptions(frame_resize="processor"))
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize  # no torchvision

    # the processor floors to stay within its max_pixels (112² here)
    assert qwen.target_size(224, 448) == smart_resize(224, 448, 28, 56 * 56, 112 * 112) == (56, 140)


# ---------------------------------------------------------------------------------------- forward
def test_batched_equals_single(family_adapter):
    _, adapter = family_adapter
    visual = adapter.encode_frames(random_frames(4, 80, 100))
    questions = ["Is there a red ball in this video?", "Describe this video in details.",
                 "Is there a small blue cube on the left in this video?"]
    spec = CaptureSpec()
    batched = adapter.run(visual, questions, capture=spec)
    other = adapter.encode_frames(random_frames(4, 80, 100, seed=1))
    per_prompt = adapter.run([visual, other, visual], questions, capture=spec)
    for b, q in enumerate(questions):
        single = adapter.run(visual, [q], capture=spec)
        torch.testing.assert_close(batched.yes_no_logits[b], single.yes_no_logits[0], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(batched.attention[b], single.attention[0], atol=1e-6, rtol=1e-4)
        assert batched.candidate_tokens[b] == single.candidate_tokens[0]
    for b in (0, 2):
        torch.testing.assert_close(per_prompt.yes_no_logits[b], batched.yes_no_logits[b], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(per_prompt.yes_no_logits[1], batched.yes_no_logits[1])


def test_gradients_reach_visual_delta_only(family_adapter):
    _, adapter = family_adapter
    visual = adapter.encode_frames(random_frames(2, 64, 64))
    delta = torch.zeros_like(visual.embeds, requires_grad=True)
    out = adapter.run(visual, ["Is there a red ball in this video?"], visual_delta=delta, with_grad=True)
    margin = out.yes_no_logits[0, 0] - out.yes_no_logits[0, 1]
    margin.backward()
    assert delta.grad is not None and delta.grad.abs().sum() > 0
    assert all(p.grad is None for p in adapter.model.parameters())
    # a step along the gradient raises the yes-no margin
    with torch.no_grad():
        stepped = adapter.run(visual, ["Is there a red ball in this video?"], visual_delta=delta.grad * 0.05)
    assert (stepped.yes_no_logits[0, 0] - stepped.yes_no_logits[0, 1]) > margin.detach()
    # without with_grad nothing is recorded
    plain = adapter.run(visual, ["Is there a red ball in this video?"], visual_delta=delta)
    assert not plain.yes_no_logits.requires_grad


def test_per_prompt_visual_delta(family_adapter):
    _, adapter = family_adapter
    visual = adapter.encode_frames(random_frames(2, 64, 64))
    q = "Is there a red ball in this video?"
    delta = torch.randn(2, *visual.embeds.shape, generator=torch.Generator().manual_seed(0)) * 0.1
    both = adapter.run(visual, [q, q], visual_delta=delta)
    first = adapter.run(visual, [q], visual_delta=delta[0])
    torch.testing.assert_close(both.yes_no_logits[0], first.yes_no_logits[0], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(both.yes_no_logits[0], both.yes_no_logits[1])


def test_frame_errors(family_adapter):
    _, adapter = family_adapter
    with pytest.raises(ValueError, match="no frames"):
        adapter.encode_frames([])
    with pytest.raises(ValueError, match="one size"):
        adapter.encode_frames([np.zeros((64, 64, 3), np.uint8), np.zeros((32, 64, 3), np.uint8)])
    with pytest.raises(ValueError, match="uint8"):
        adapter.encode_frames([np.zeros((64, 64, 3), np.float32)])


def test_matches_the_models_own_forward(family_adapter):
    """Our spliced embeddings + positions give the logits of the HF model's own multimodal forward
    (input ids with expanded video placeholders + pixel values): same geometry, same rotary positions."""
    family, adapter = family_adapter
    frames = random_frames(3, 90, 120)
    visual = adapter.encode_frames(frames)
    q = "Is there a red ball in this video?"
    ours = adapter.run(visual, [q]).yes_no_logits[0]
    ids = torch.tensor([adapter.prepare(visual, [q]).prompt_ids[0]])
    if family.startswith("qwen"):
        pixels, grid, _ = adapter.pixel_values(frames)
        kwargs = dict(pixel_values_videos=pixels, video_grid_thw=grid,
                      mm_token_type_ids=(ids == adapter.video_token_id).int() * 2)
        if family == "qwen2_5_vl":
            kwargs["second_per_grid_ts"] = torch.tensor([visual.extras["second_per_grid_t"]])
    else:
        kwargs = dict(pixel_values_videos=adapter.pixel_values(frames))
    with torch.no_grad():
        logits = adapter.model(input_ids=ids, **kwargs).logits[0, -1]
    yes, no = adapter.answer_token_ids
    torch.testing.assert_close(ours, torch.stack([logits[yes], logits[no]]).float(), atol=1e-4, rtol=1e-4)
