"""Visual tokens and decoder cost per family and visual-token setting, at the released shapes (issue 16).

Token counts are measured: each family's adapter encodes 20 frames of 640x480 on a random model with
the released vision geometry (patch 14, tower input 336 / 384, Qwen's patch merge and 2-frame slots;
tiny widths, so it runs in seconds on a CPU).  Decoder cost is computed from the released decoder
shapes (bench/model_configs.py): one prefill of ``visual + text`` tokens, dense matmuls plus causal
attention, in TFLOPs (2 FLOPs per multiply-add); the grounding runs one such prefill per prompt.

    .venv/bin/python bench/token_cost.py [--frames 20] [--text-tokens 60] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.model_configs import REAL_SIZES  # noqa: E402

#: (label, family, real size for the decoder, tower input px, GroundingConfig options)
CASES = [
    ("LLaVA-NeXT-Video-7B, model pooling", "llava_next_video", "llava-next-video-7b", 336, {}),
    ("LLaVA-NeXT-Video-7B, paper pooling", "llava_next_video", "llava-next-video-7b", 336, {"visual_tokens": "paper"}),
    ("LLaVA-OneVision-7B, model pooling", "llava_onevision", "llava-onevision-7b", 384, {}),
    ("LLaVA-OneVision-7B, paper pooling", "llava_onevision", "llava-onevision-7b", 384, {"visual_tokens": "paper"}),
    ("Qwen2.5-VL-7B, 224 (paper, frame_fit resize)", "qwen2_5_vl", "qwen2.5-vl-7b", 224, {"frame_fit": "resize"}),
    ("Qwen2.5-VL-7B, 224, frame_fit short (node default)", "qwen2_5_vl", "qwen2.5-vl-7b", 224, {}),
    ("Qwen2.5-VL-7B, processor resize", "qwen2_5_vl", "qwen2.5-vl-7b", 224, {"frame_resize": "processor"}),
    # frame_resize 'fine' (issue 26): grids fine enough for a person on a real frame (LLaVA: 2x2 tiles per frame)
    ("Qwen2.5-VL-7B, frame_resize fine", "qwen2_5_vl", "qwen2.5-vl-7b", 224, {"frame_resize": "fine"}),
    ("LLaVA-NeXT-Video-7B, model pooling, frame_resize fine", "llava_next_video", "llava-next-video-7b", 336,
     {"frame_resize": "fine"}),
    ("LLaVA-NeXT-Video-7B, paper pooling, frame_resize fine", "llava_next_video", "llava-next-video-7b", 336,
     {"frame_resize": "fine", "visual_tokens": "paper"}),
    ("LLaVA-OneVision-7B, model pooling, frame_resize fine", "llava_onevision", "llava-onevision-7b", 384,
     {"frame_resize": "fine"}),
]


def prefill_tflops(text: dict, tokens: int) -> float:
    """Dense + causal-attention FLOPs of one decoder prefill over ``tokens`` positions."""
    d, ff, layers = text["hidden_size"], text["intermediate_size"], text["num_hidden_layers"]
    d_kv = d // text["num_attention_heads"] * text["num_key_value_heads"]
    dense = 2 * tokens * (2 * d * d + 2 * d * d_kv + 3 * d * ff)
    attention = 2 * tokens * tokens * d  # QK^T and AV over the causal half
    return layers * (dense + attention) / 1e12


def measure_tokens(family: str, side: int, options: dict, frames: int) -> tuple[int, int, tuple[int, int]]:
    """(grid tokens, all visual tokens, per-slot grid) of ``frames`` 640x480 frames."""
    from stvg_ros.adapters import load_adapter
    from stvg_ros.adapters.base import AdapterOptions
    from stvg_ros.adapters.tiny_models import RELEASED_PROCESSOR_CONFIGS, tiny_model

    proc = None
    if family == "qwen2_5_vl":
        proc = dict(RELEASED_PROCESSOR_CONFIGS["qwen2_5_vl"])
    with tempfile.TemporaryDirectory() as tmp:
        adapter = load_adapter(tiny_model(family, tmp, image_size=side, processor_config=proc))
        adapter.configure(AdapterOptions(**options))
        clip = [np.zeros((480, 640, 3), np.uint8)] * frames
        visual = adapter.encode_frames(clip)
    return int((visual.slot >= 0).sum()), visual.num_tokens, visual.grid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--text-tokens", type=int, default=60, help="prompt tokens besides the video (system, question)")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    rows = []
    for label, family, size, side, options in CASES:
        grid_n, n, grid = measure_tokens(family, side, options, args.frames)
        text = REAL_SIZES[size][1]
        rows.append(dict(case=label, tokens_per_slot=grid[0] * grid[1], grid=list(grid), visual_tokens=n,
                         grid_tokens=grid_n, prefill_tflops=prefill_tflops(text, n + args.text_tokens),
                         eps_scale=720 / grid_n))
    print(f"| case | grid per slot | visual tokens ({args.frames} frames) | prefill TFLOPs / prompt | "
          "x the paper setting | relevance_eps scale (720 / N) | decoder context |")
    print("|---|---|---|---|---|---|---|")
    for r, (_, family, _, _, options) in zip(rows, CASES):
        # the paper's setting of the family: paper pooling (LLaVA), 224 stretched (Qwen: fixed, frame_fit resize)
        base = next(b for b, c in zip(rows, CASES) if c[1] == family and (
            c[4].get("visual_tokens") == "paper" or (family.startswith("qwen") and c[4] == {"frame_fit": "resize"})))
        context = REAL_SIZES[next(c[2] for c in CASES if c[0] == r["case"])][1].get("max_position_embeddings", 0)
        fits = "within" if r["visual_tokens"] + args.text_tokens <= context else "**past it**"
        print(f"| {r['case']} | {r['grid'][0]}x{r['grid'][1]} | {r['visual_tokens']} | {r['prefill_tflops']:.1f} | "
              f"{r['prefill_tflops'] / base['prefill_tflops']:.2f} | {r['eps_scale']:.3f} | {context:,}: {fits} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
