"""LLaVA-NeXT-Video on the real Llama-2 vocabulary: answer ids, grounding candidates, the official prompt's ids.

The vocabulary is llama.cpp's ``ggml-vocab-llama-spm.gguf`` (32,000 pieces with scores), test data that the
set-up extracts from the source distribution of the PyPI package ``llama-cpp-python``
(scripts/fetch_test_vocab.sh, pinned in requirements/test.txt), read with transformers' GGUF loader.  The
model around it is small and random (``tiny_models.released_model``); only the text side is under test.
"""

import pytest

from stvg_ros.adapters import tiny_models
from stvg_ros.adapters import load_adapter
from stvg_ros.adapters.base import AdapterOptions

try:
    VOCAB = tiny_models.llama_vocab_path()
except ImportError as exc:  # pragma: no cover - depends on the set-up's download
    pytest.skip(f"{exc}", allow_module_level=True)

Q = "Is there the man in purple clothes in this video?"
SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
          "detailed, and polite answers to the user's questions. USER: ")


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_models.released_tokenizer("llava_next_video")


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    adapter = load_adapter(tiny_models.released_model("llava_next_video", str(tmp_path_factory.mktemp("lnv"))))
    yield adapter
    adapter.configure(AdapterOptions())


def test_the_vocabulary_tokenises_as_llama_cpp(tokenizer):
    """Every reference tokenisation llama.cpp ships with the file (its .inp / .out, without bos)."""
    texts = VOCAB.with_name(VOCAB.name + ".inp").read_text().split("\n__ggml_vocab_test__\n")
    wants = VOCAB.with_name(VOCAB.name + ".out").read_text().split("\n")
    assert len(texts) >= 40
    for text, want in zip(texts, wants):
        assert tokenizer(text, add_special_tokens=False).input_ids == [int(v) for v in want.split()], repr(text)
    assert tokenizer("Hello world").input_ids == [1, 15043, 3186]
    assert (len(tokenizer), tokenizer.convert_tokens_to_ids(["<video>", "<image>"])) == (32002, [32000, 32001])


def test_answer_ids(adapter):
    """'official': the run script's --yes_id 3582 --no_id 1217 are the pieces 'yes' / 'no'; 'auto': what the
    model answers first after 'ASSISTANT:', '▁Yes' / '▁No'."""
    adapter.configure(AdapterOptions(answer_tokens="official"))
    assert adapter.answer_token_ids == (3582, 1217)
    assert adapter.tokenizer.convert_ids_to_tokens([3582, 1217]) == ["yes", "no"]
    adapter.configure(AdapterOptions(answer_tokens="auto"))
    assert adapter.tokenizer.convert_ids_to_tokens(list(adapter.answer_token_ids)) == ["▁Yes", "▁No"]
    assert adapter.answer_token_ids == (3869, 1939)


@pytest.mark.parametrize("style", ["official", "template"])
def test_candidates_and_the_fixed_token(adapter, style):
    """The grounding candidates are the question's '?' and the pieces of ' ASSISTANT:' (Llama splits it
    '▁A SS IST ANT :'); the official --token_idx -5 is '▁A'."""
    adapter.configure(AdapterOptions(prompt_style=style))
    lay = adapter.layout(Q)
    cands = adapter.tokenizer.convert_ids_to_tokens(lay.ids[lay.candidate_start:])
    assert cands == ["?", "▁A", "SS", "IST", "ANT", ":"]
    assert adapter._derive_grounding_offset() == -5
    assert adapter.tokenizer.convert_ids_to_tokens(lay.ids[-5]) == "▁A"


def test_official_prompt_ids_are_tokenizer_image_tokens(adapter, tokenizer):
    """prompt_style='official' gives the official code's ids: bos, the vicuna_v1 system prompt and 'USER: '
    (ending in the piece '▁' 29871 of the space before the image), the video, then the text after it
    tokenised on its own, so that sentencepiece's dummy prefix puts another '▁' before the newline (13)."""
    adapter.configure(AdapterOptions(prompt_style="official"))
    lay = adapter.layout(Q)
    video = adapter.video_token_id
    assert video == 32000 and lay.ids[lay.placeholder] == video
    before = tokenizer(SYSTEM).input_ids           # what tokenizer_image_token takes of the first chunk
    after = tokenizer("\n" + Q + " ASSISTANT:").input_ids[1:]  # later chunks lose their bos
    assert lay.ids == before + [video] + after
    assert before[:4] == [1, 319, 13563, 1546] and before[-1] == 29871          # '<s> ▁A ▁chat ▁between', '▁'
    assert lay.ids[lay.placeholder + 1: lay.placeholder + 5] == [29871, 13, 3624, 727]  # '▁' '\n' 'Is' '▁there'
    assert lay.ids[-6:] == [29973, 319, 1799, 9047, 13566, 29901]                 # '? ▁A SS IST ANT :'
    # the question starts at 'Is' and the candidates start at its '?'
    assert lay.question_start == lay.placeholder + 3
