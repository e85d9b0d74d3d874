#!/usr/bin/env python3
"""Does LRA fit a 7B model at 20 frames on a 24 GB GPU?  Memory of one LRA step, with and without checkpointing.

One LRA step is a batched forward of the latent-prompt problems (V_s, V_t and, with TAS, V_s' on the
reversed clip: ``--batch 3``) with gradients to the visual tokens, then the backward pass.

* On a GPU with room for the model: builds the real-size model (random weights, bf16) and measures
  the step's peak ``torch.cuda.max_memory_allocated`` with activation checkpointing off and on.
* Elsewhere (``--per-layer``, the default on CPU): builds the real-size decoder with ``--layers``
  layers only (real hidden sizes, real token count, same dtype), counts the bytes autograd saves for
  the backward pass (``stvg_ros.checkpointing.SavedTensorMeter``), and extrapolates to all layers:
  ``saved(all) ~= saved(k layers) * L / k`` (an upper bound: the embedding and head part is counted
  L/k times).  The prediction for the GPU is ``bf16 weights + saved activations`` plus one layer's
  recomputation when checkpointing; the CUDA allocator's fragmentation and workspace are not in it.

Example::

    python bench/lra_memory.py --model qwen2.5-vl-7b --frames 20           # CPU: per-layer + extrapolation
    python bench/lra_memory.py --model llava-next-video-7b --device cuda   # GPU: direct measurement
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import machine, table, write_json  # noqa: E402
from model_configs import REAL_SIZES, build_real_size, parameter_count  # noqa: E402

GIB = 2**30
QUESTIONS = ["Is there the man in purple clothes in this video?",
             "Is there the man takes a step forward and sits on the bench in this video?",
             "Is there the man in purple clothes in this video?"]


def lra_step(adapter, visual, batch: int, checkpoint: bool, measure_saved: bool) -> dict:
    from stvg_ros.checkpointing import SavedTensorMeter

    adapter.activation_checkpointing = checkpoint
    questions = (QUESTIONS * batch)[:batch]
    delta = torch.zeros(batch, *visual.embeds.shape, device=visual.embeds.device, dtype=torch.float32,
                        requires_grad=True)
    dev = adapter.device
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
        before = torch.cuda.memory_allocated(dev)
    t = time.perf_counter()
    meter = SavedTensorMeter(exclude=adapter.model) if measure_saved else None
    if meter is not None:
        meter.__enter__()
    try:
        out = adapter.run(visual, questions, visual_delta=delta, capture=None, with_grad=True)
    finally:
        if meter is not None:
            meter.__exit__(None, None, None)
    p = torch.softmax(out.yes_no_logits.float(), -1)
    (grad,) = torch.autograd.grad((-torch.exp(p[:, 0] - p[:, 1])).sum(), delta)
    assert torch.isfinite(grad).all()
    res = {"checkpointing": checkpoint, "seconds": time.perf_counter() - t,
           "saved_bytes": meter.bytes if meter is not None else None}
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        res["peak_bytes"] = torch.cuda.max_memory_allocated(dev)
        res["step_extra_bytes"] = res["peak_bytes"] - before
    adapter.activation_checkpointing = None
    return res


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="qwen2.5-vl-7b", choices=list(REAL_SIZES))
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--batch", type=int, default=3, help="LRA problems in one step (V_s, V_t, V_s')")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--per-layer", action="store_true", help="measure a few layers and extrapolate (default on CPU)")
    ap.add_argument("--layers", type=int, default=1, help="decoder layers built for --per-layer")
    ap.add_argument("--budget-gib", type=float, default=24.0)
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)

    from stvg_ros.adapters.common import resolve_device
    from stvg_ros.testing import random_frames

    device = resolve_device(args.device)
    per_layer = args.per_layer or device.type != "cuda"
    family, text, vision, _ = REAL_SIZES[args.model]
    n_layers = int(text["num_hidden_layers"])
    params = parameter_count(args.model)
    weights_bf16 = 2 * params
    dtype = torch.bfloat16
    if per_layer:
        # real widths and token count; few decoder layers; a 1-2 layer tower (its cost is outside LRA's graph);
        # a small vocabulary (the head runs on B rows only; the real tables are counted in weights_bf16)
        vis_over = ({"depth": 1, "fullatt_block_indexes": [0]} if family == "qwen2_5_vl"
                    else {"num_hidden_layers": 2})
        adapter = build_real_size(args.model, device, dtype, text_overrides={"num_hidden_layers": args.layers,
                                                                             "vocab_size": 4096},
                                  vision_overrides=vis_over)
    else:
        adapter = build_real_size(args.model, device, dtype)
    frames = random_frames(args.frames, 480, 640, seed=0)
    with torch.no_grad():
        visual = adapter.encode_frames(frames, stamps=[i * 0.25 for i in range(args.frames)])
    tokens = int(adapter.prepare(visual, QUESTIONS[:1]).embeds.shape[1])
    print(f"# {args.model}: {params / 1e9:.2f} B parameters ({weights_bf16 / GIB:.1f} GiB in bf16), "
          f"{visual.num_tokens} visual tokens, {tokens} tokens per prompt, batch {args.batch}", flush=True)

    runs = [lra_step(adapter, visual, args.batch, ck, measure_saved=per_layer) for ck in (False, True)]
    result = {"machine": machine(), "model": args.model, "parameters": params, "frames": args.frames,
              "visual_tokens": visual.num_tokens, "tokens_per_prompt": tokens, "batch": args.batch,
              "mode": "per-layer extrapolation" if per_layer else "direct", "budget_gib": args.budget_gib,
              "runs": runs}
    rows = []
    for r in runs:
        if per_layer:
            scale = n_layers / args.layers
            saved_all = r["saved_bytes"] * scale
            # with checkpointing the backward recomputes one layer at a time: add one layer's activations
            recompute = (runs[0]["saved_bytes"] / args.layers) if r["checkpointing"] else 0.0
            predicted = weights_bf16 + saved_all + recompute
            r.update(saved_all_layers_bytes=saved_all, predicted_peak_bytes=predicted)
            rows.append([("on" if r["checkpointing"] else "off"), f"{r['saved_bytes'] / 2**20:.0f} MiB / {args.layers}",
                         f"{saved_all / GIB:.2f}", f"{predicted / GIB:.1f}",
                         "yes" if predicted <= args.budget_gib * GIB else "NO"])
        else:
            rows.append([("on" if r["checkpointing"] else "off"), "", f"{r['step_extra_bytes'] / GIB:.2f}",
                         f"{r['peak_bytes'] / GIB:.1f}", "yes" if r["peak_bytes"] <= args.budget_gib * GIB else "NO"])
    text_table = table(["checkpointing", "saved (measured layers)", "activations GiB", "peak GiB",
                        f"fits {args.budget_gib:g} GiB"], rows)
    print(text_table)
    result["table"] = text_table
    out = args.json or str(Path(__file__).resolve().parent / "results" /
                           f"lra-memory-{args.model}-{args.frames}f-{device.type}.json")
    write_json(out, result)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
