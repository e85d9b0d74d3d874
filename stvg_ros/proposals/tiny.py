"""Tiny random detectors written like real checkpoints, for tests and the stage benchmark.

``tiny_detector(kind, directory)`` saves a Grounding DINO or OWLv2 model with a few thousand
parameters, its processor and a small tokenizer with ``save_pretrained``, so that
``ZeroShotDetector.from_pretrained`` (the path real checkpoints take) loads it.  Random weights
detect nothing meaningful; they exercise shapes, preprocessing and post-processing.
"""

from __future__ import annotations

import json
from pathlib import Path

TINY_KINDS = ("grounding_dino", "owlv2")
_WORDS = "a an the of person man woman people car dog cat ball box square circle star red blue green object".split()


def _grounding_dino(out: Path) -> None:
    from transformers import (BertConfig, BertTokenizerFast, GroundingDinoConfig, GroundingDinoForObjectDetection,
                              GroundingDinoProcessor, SwinConfig)
    from transformers.models.grounding_dino.image_processing_pil_grounding_dino import GroundingDinoImageProcessorPil

    backbone = SwinConfig(image_size=64, embed_dim=8, depths=[1, 1], num_heads=[1, 1], window_size=4,
                          out_features=["stage1", "stage2"])
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *_WORDS]
    text = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=64)
    # d_model 32: GroupNorm(32) in the input projections; 2 encoder heads: the text enhancer halves them;
    # 2 decoder layers: the box heads are tied across layers
    config = GroundingDinoConfig(backbone_config=backbone, text_config=text, d_model=32, encoder_layers=1,
                                 decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32, encoder_attention_heads=2,
                                 decoder_attention_heads=2, num_queries=16, num_feature_levels=2, encoder_n_points=1,
                                 decoder_n_points=1, max_text_len=32, two_stage=True)
    model = GroundingDinoForObjectDetection(config)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(str(out / "vocab.txt"))
    image_processor = GroundingDinoImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 96})
    model.save_pretrained(str(out))
    GroundingDinoProcessor(image_processor, tokenizer).save_pretrained(str(out))


def _owlv2(out: Path) -> None:
    from transformers import CLIPTokenizer, Owlv2Config, Owlv2ForObjectDetection, Owlv2Processor
    from transformers.models.owlv2.image_processing_pil_owlv2 import Owlv2ImageProcessorPil

    # the start token must not be id 0: OWLv2 masks out text queries whose first id is 0 (padding)
    vocab = {"!": 0, "<|startoftext|>": 1, "<|endoftext|>": 2}
    for piece in "abcdefghijklmnopqrstuvwxyz.":
        vocab[piece] = len(vocab)
        vocab[piece + "</w>"] = len(vocab)
    config = Owlv2Config(
        text_config=dict(vocab_size=len(vocab), hidden_size=16, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16, bos_token_id=1, eos_token_id=2,
                         pad_token_id=0),
        vision_config=dict(hidden_size=16, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16)
    model = Owlv2ForObjectDetection(config)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(vocab))
    (out / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(out / "vocab.json"), str(out / "merges.txt"), pad_token="!")
    model.save_pretrained(str(out))
    Owlv2Processor(Owlv2ImageProcessorPil(size={"height": 32, "width": 32}), tokenizer).save_pretrained(str(out))


def tiny_detector(kind: str, directory: str | Path, seed: int = 0) -> str:
    """Write a tiny random ``kind`` detector ('grounding_dino' or 'owlv2') to ``directory``; returns it."""
    import torch

    if kind not in TINY_KINDS:
        raise ValueError(f"unknown tiny detector {kind!r}: choose one of {', '.join(TINY_KINDS)}")
    torch.manual_seed(seed)
    out = Path(directory)
    (_grounding_dino if kind == "grounding_dino" else _owlv2)(out)
    return str(out)
