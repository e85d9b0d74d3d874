"""Real-size model shapes with random weights, for benchmarks without downloads.

Compute and memory of a forward/backward pass do not depend on the weights' values, so a model
built from the released ``config.json`` shapes with random weights times and sizes like the real
one.  The shapes below are the decoder and vision-tower values of the public model cards'
``config.json`` (Qwen/Qwen2.5-VL-3B-Instruct, Qwen/Qwen2.5-VL-7B-Instruct,
llava-hf/llava-onevision-qwen2-0.5b-ov-hf, llava-hf/llava-onevision-qwen2-7b-ov-hf,
llava-hf/LLaVA-NeXT-Video-7B-hf).  The tokenizer is a small one from
:func:`stvg_ros.adapters.tiny_models.build_tokenizer` with the family's template; the embedding table and the
LM head keep the real vocabulary size, so their memory and the head's cost are real.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path

import torch

QWEN_VISION = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, patch_size=14,
                   spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31],
                   tokens_per_second=2, in_chans=3, hidden_act="silu")
SIGLIP_SO400M = dict(model_type="siglip_vision_model", hidden_size=1152, intermediate_size=4304, num_hidden_layers=26,
                     num_attention_heads=16, image_size=384, patch_size=14, hidden_act="gelu_pytorch_tanh",
                     layer_norm_eps=1e-6)
CLIP_L_336 = dict(model_type="clip_vision_model", hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                  num_attention_heads=16, image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu")

#: name → (family, text config, vision config, extra top-level config)
REAL_SIZES: dict[str, tuple[str, dict, dict, dict]] = {
    "qwen2.5-vl-3b": ("qwen2_5_vl",
                      dict(vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                           num_attention_heads=16, num_key_value_heads=2, rms_norm_eps=1e-6,
                           max_position_embeddings=128000, tie_word_embeddings=True,
                           rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                            "mrope_section": [16, 24, 24]}),
                      dict(QWEN_VISION, out_hidden_size=2048), {}),
    "qwen2.5-vl-7b": ("qwen2_5_vl",
                      dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                           num_attention_heads=28, num_key_value_heads=4, rms_norm_eps=1e-6,
                           max_position_embeddings=128000, tie_word_embeddings=False,
                           rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                            "mrope_section": [16, 24, 24]}),
                      dict(QWEN_VISION, out_hidden_size=3584), {}),
    "llava-onevision-0.5b": ("llava_onevision",
                             dict(model_type="qwen2", vocab_size=152000, hidden_size=896, intermediate_size=4864,
                                  num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                                  rms_norm_eps=1e-6, max_position_embeddings=32768, tie_word_embeddings=True,
                                  rope_theta=1000000.0),
                             SIGLIP_SO400M, dict(vision_feature_select_strategy="full", vision_feature_layer=-1)),
    "llava-onevision-7b": ("llava_onevision",
                           dict(model_type="qwen2", vocab_size=152128, hidden_size=3584, intermediate_size=18944,
                                num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                                rms_norm_eps=1e-6, max_position_embeddings=32768, tie_word_embeddings=False,
                                rope_theta=1000000.0),
                           SIGLIP_SO400M, dict(vision_feature_select_strategy="full", vision_feature_layer=-1)),
    "llava-next-video-7b": ("llava_next_video",
                            dict(model_type="llama", vocab_size=32064, hidden_size=4096, intermediate_size=11008,
                                 num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                                 rms_norm_eps=1e-5, max_position_embeddings=4096, tie_word_embeddings=False,
                                 rope_theta=10000.0),
                            CLIP_L_336, dict(vision_feature_select_strategy="default", vision_feature_layer=-2,
                                             spatial_pool_mode="average", spatial_pool_stride=2)),
}


def _scratch_dir(prefix: str) -> str:
    """A temporary directory for a model built here, removed when the process exits (they were left behind:
    140 tiny models, 0.9 MB each, after a day of test runs)."""
    path = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def parameter_count(name: str) -> int:
    """Parameters of a named real-size model, computed on the meta device (no memory)."""
    with torch.device("meta"):
        model = _build(name, _scratch_dir("stvg-meta-"), torch.float32)[0]
    return sum(p.numel() for p in model.parameters())


def _build(name: str, directory: str, dtype: torch.dtype, text_overrides: dict | None = None,
           vision_overrides: dict | None = None):
    from stvg_ros.adapters.tiny_models import build_tokenizer

    if name not in REAL_SIZES:
        raise ValueError(f"unknown model size {name!r}: choose one of {', '.join(REAL_SIZES)} or pass a model directory")
    family, text, vision, extra = REAL_SIZES[name]
    text = dict(text, **(text_overrides or {}))
    vision = dict(vision, **(vision_overrides or {}))
    tok = build_tokenizer([], family)
    ids = tok.convert_tokens_to_ids
    import transformers

    if family == "qwen2_5_vl":
        config = transformers.Qwen2_5_VLConfig(
            text_config=dict(text, bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"),
                             pad_token_id=ids("<|endoftext|>")),
            vision_config=vision, image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
            vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
            tie_word_embeddings=text["tie_word_embeddings"])
        cls = transformers.Qwen2_5_VLForConditionalGeneration
        side = 224
        proc = {"patch_size": 14, "temporal_patch_size": 2, "merge_size": 2, "min_pixels": 56 * 56,
                "max_pixels": 12845056, "image_mean": [0.48145466, 0.4578275, 0.40821073],
                "image_std": [0.26862954, 0.26130258, 0.27577711]}
    elif family == "llava_onevision":
        config = transformers.LlavaOnevisionConfig(
            text_config=dict(text, bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"),
                             pad_token_id=ids("<|endoftext|>")),
            vision_config=vision, image_token_index=ids("<image>"), video_token_index=ids("<video>"),
            image_grid_pinpoints=[[384, 384]], tie_word_embeddings=text["tie_word_embeddings"], **extra)
        cls = transformers.LlavaOnevisionForConditionalGeneration
        side = 384
        proc = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
    else:
        config = transformers.LlavaNextVideoConfig(
            text_config=dict(text, bos_token_id=ids("<s>"), eos_token_id=ids("</s>"), pad_token_id=ids("<pad>")),
            vision_config=vision, image_token_index=ids("<image>"), video_token_index=ids("<video>"),
            image_grid_pinpoints=[[336, 336]], **extra)
        cls = transformers.LlavaNextVideoForConditionalGeneration
        side = 336
        proc = {"image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}
    model = cls._from_config(config, dtype=dtype)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "preprocessor_config.json").write_text(json.dumps(dict(proc, size={"height": side, "width": side})))
    (out / "chat_template.jinja").write_text(tok.chat_template)
    return model, tok, family


def build_real_size(name: str, device: torch.device, dtype: torch.dtype, directory: str | None = None,
                    text_overrides: dict | None = None, vision_overrides: dict | None = None):
    """A frozen adapter around a random-weight model of the named real size, built directly on ``device``.

    ``text_overrides``/``vision_overrides`` change config values (e.g. fewer layers for a per-layer
    measurement on a small machine)."""
    from stvg_ros.adapters import adapter_class
    from stvg_ros.adapters.attention import use_capture_attention

    directory = directory or _scratch_dir(f"stvg-{name}-")
    with torch.device(device):
        model, tok, family = _build(name, directory, dtype, text_overrides, vision_overrides)
    model.to(device=device, dtype=dtype)
    model.eval()
    model.requires_grad_(False)
    model.config._attn_implementation = "sdpa"
    for sub in ("vision_tower", "visual"):
        tower = getattr(model.model, sub, None)
        if tower is not None:
            from stvg_ros.adapters.attention import set_decoder_attention

            set_decoder_attention(tower, "sdpa")
    cls = adapter_class(json.loads((Path(directory) / "config.json").read_text())["model_type"])
    use_capture_attention(cls._language_model_of(model))
    return cls(model, tok, directory, device, dtype)


#: ``small:<family>``: a decoder big enough that compute, not Python overhead, dominates on a CPU
#: (8 layers, hidden 512, GQA 8/2 heads, ~25 M decoder parameters; frames at 224 px)
SMALL_LM = dict(hidden_size=512, intermediate_size=1408, num_hidden_layers=8, num_attention_heads=8,
                num_key_value_heads=2)


def load_adapter(spec: str, device: torch.device | str = "cpu", dtype: torch.dtype | str = torch.float32,
                 image_size: int = 0, allow_cpu_large: bool = False):
    """The benchmarks' one model loader: ``(adapter, label)`` for ``spec``, which is ``tiny:<family>`` or
    ``small:<family>`` (random weights, built in a temporary directory), a name in :data:`REAL_SIZES` (real
    shapes, random weights; on a CPU only with ``allow_cpu_large``), or a model directory (as given or
    relative to the repository).  ``dtype``: a torch dtype or 'auto' (bfloat16 on cuda, float32 on cpu);
    ``image_size``: the per-frame side (0 = the model's).  A grounder on a model directory with a
    :class:`~stvg_ros.config.GroundingConfig` is :func:`stvg_ros.stack.load_model`'s."""
    from stvg_ros import adapters
    from stvg_ros.adapters.common import resolve_dtype
    from stvg_ros.adapters.tiny_models import tiny_model

    device = torch.device(device)
    dt = resolve_dtype(dtype, device)
    kind, _, family = spec.partition(":")
    if kind in ("tiny", "small") and family:
        sizes = SMALL_LM if kind == "small" else {}
        path = tiny_model(family, _scratch_dir("stvg-bench-"), image_size=224 if sizes else 112, **sizes)
        return adapters.load_adapter(path, device=device, dtype=dt, image_size=image_size or None), spec
    if spec in REAL_SIZES:
        if device.type == "cpu" and not allow_cpu_large:
            raise SystemExit(f"{spec} has billions of parameters: on CPU it needs tens of GB and minutes per query. "
                             "Run it on a GPU (--device cuda), or pass --allow-cpu-large to run it anyway.")
        adapter = build_real_size(spec, device, dt)
        if image_size:
            adapter.image_size = image_size
        return adapter, f"{spec} (random weights)"
    root = Path(__file__).resolve().parent.parent
    path = Path(spec) if Path(spec).is_dir() or not (root / spec).is_dir() else root / spec
    return adapters.load_adapter(str(path), device=device, dtype=dt, image_size=image_size or None), path.name or spec
