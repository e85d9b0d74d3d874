#!/usr/bin/env python3
"""Does LRA fit a 7B model at 20 frames on a 24 GB GPU?  Memory of one LRA step, with and without checkpointing.

One LRA step is a batched forward of the latent-prompt problems (V_s, V_t and, with TAS, V_s' on the
reversed clip: ``--batch 3``) with gradients to the visual tokens, then the backward pass.

* On a GPU with room for the model: builds the real-size model (random weights, bf16) and measures
  the step's peak ``torch.cuda.max_memory_allocated`` with activation checkpointing off and on.
* Elsewhere (``--per-layer``, the default on CPU): builds the real-size decoder with ``k`` and ``k+1``
  layers (``--layers k``; real hidden sizes, real token count, bf16), counts the bytes autograd saves
  for the backward pass (``stvg_ros.adapters.checkpointing.SavedTensorMeter``), takes the difference as one
  layer's share and the rest as the embedding/head part, and extrapolates to all L layers:
  ``saved(all) = rest + L * per_layer``.  The prediction for the GPU is ``bf16 weights + saved
  activations`` plus, with checkpointing, one layer's activations during its recomputation; the CUDA
  allocator's fragmentation and workspaces and the backward's transient gradients are not in it.

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

sys.path.append(str(Path(__file__).resolve().parent.parent))  # the repository root: `bench` is a package

from bench._util import machine, table, write_json  # noqa: E402
from bench.model_configs import REAL_SIZES, build_real_size, parameter_count  # noqa: E402

GIB = 2**30
QUESTIONS = ["Is there the man in purple clothes in this video?",
             "Is there the man takes a step forward and sits on the bench in this video?",
             "Is there the man in purple clothes in this video?"]


def lra_step(adapter, visual, batch: int, checkpoint: bool, measure_saved: bool) -> dict:
    from stvg_ros.adapters.checkpointing import SavedTensorMeter

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
    from stvg_ros.adapters.checkpointing import activation_bytes_estimate

    tokens = max(len(adapter.layout(q).ids) for q in questions) + visual.num_tokens - 1
    res = {"checkpointing": checkpoint, "seconds": time.perf_counter() - t,
           "saved_bytes": meter.bytes if meter is not None else None, "tokens": int(tokens),
           # what the auto rule (stvg_ros.adapters.checkpointing.should_checkpoint) predicts for this step, to compare
           # with the measured saved bytes / peak
           "activation_estimate_bytes": activation_bytes_estimate(adapter.model.config, tokens, batch, adapter.dtype)}
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
    ap.add_argument("--budget-gib", type=float, default=23.5,
                    help="usable memory: a 24 GiB card less ~0.5 GiB of CUDA context")
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)

    from stvg_ros.adapters.devices import resolve_device
    from stvg_ros.adapters.tiny_models import random_frames

    device = resolve_device(args.device)
    per_layer = args.per_layer or device.type != "cuda"
    family, text, vision, _ = REAL_SIZES[args.model]
    n_layers = int(text["num_hidden_layers"])
    params = parameter_count(args.model)
    weights_bf16 = 2 * params
    dtype = torch.bfloat16
    frames = random_frames(args.frames, 480, 640, seed=0)
    stamps = [i * 0.25 for i in range(args.frames)]

    def setup(layers: int | None):
        if layers is None:
            adapter = build_real_size(args.model, device, dtype)
        else:
            # real widths and token count; `layers` decoder layers; a 1-2 layer tower (its cost is outside
            # LRA's graph); a small vocabulary (the head runs on B rows only; the real tables are in weights_bf16)
            vis_over = ({"depth": 1, "fullatt_block_indexes": [0]} if family == "qwen2_5_vl"
                        else {"num_hidden_layers": 2})
            adapter = build_real_size(args.model, device, dtype, vision_overrides=vis_over,
                                      text_overrides={"num_hidden_layers": layers, "vocab_size": 4096})
        with torch.no_grad():
            visual = adapter.encode_frames(frames, stamps=stamps)
        return adapter, visual

    result = {"machine": machine(), "model": args.model, "parameters": params, "frames": args.frames,
              "batch": args.batch, "budget_gib": args.budget_gib,
              "mode": "per-layer extrapolation" if per_layer else "direct"}
    rows = []
    if per_layer:
        # two builds (k and k+1 layers) separate one layer's saved bytes from the embedding/head part
        measured = {}
        for k in (args.layers, args.layers + 1):
            adapter, visual = setup(k)
            measured[k] = [lra_step(adapter, visual, args.batch, ck, measure_saved=True) for ck in (False, True)]
            del adapter
        tokens = int(visual.num_tokens)
        result["runs"] = {str(k): v for k, v in measured.items()}
        for i, ck in enumerate((False, True)):
            a, b = measured[args.layers][i]["saved_bytes"], measured[args.layers + 1][i]["saved_bytes"]
            per = max(b - a, 0)
            base = max(a - args.layers * per, 0)
            saved_all = base + n_layers * per
            # with checkpointing the backward recomputes one layer at a time: add one layer's full activations
            full_layer = measured[args.layers + 1][0]["saved_bytes"] - measured[args.layers][0]["saved_bytes"]
            recompute = max(full_layer, 0) if ck else 0
            predicted = weights_bf16 + saved_all + recompute
            result.setdefault("prediction", {})["on" if ck else "off"] = {
                "per_layer_bytes": per, "base_bytes": base, "saved_all_layers_bytes": saved_all,
                "recompute_bytes": recompute, "predicted_peak_bytes": predicted}
            rows.append(["on" if ck else "off", f"{per / 2**20:.0f} MiB + {base / 2**20:.0f} MiB",
                         f"{saved_all / GIB:.2f}", f"{predicted / GIB:.1f}",
                         "yes" if predicted <= args.budget_gib * GIB else "NO"])
    else:
        adapter, visual = setup(None)
        tokens = int(visual.num_tokens)
        runs = [lra_step(adapter, visual, args.batch, ck, measure_saved=False) for ck in (False, True)]
        result["runs"] = runs
        for r in runs:
            rows.append(["on" if r["checkpointing"] else "off", "", f"{r['step_extra_bytes'] / GIB:.2f}",
                         f"{r['peak_bytes'] / GIB:.1f}", "yes" if r["peak_bytes"] <= args.budget_gib * GIB else "NO"])
    result["visual_tokens"] = tokens
    print(f"# {args.model}: {params / 1e9:.2f} B parameters ({weights_bf16 / GIB:.1f} GiB in bf16), "
          f"{tokens} visual tokens, batch {args.batch}", flush=True)
    text_table = table(["checkpointing", "saved: per layer + rest", "activations GiB", "peak GiB",
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
