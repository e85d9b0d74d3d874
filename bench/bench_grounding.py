#!/usr/bin/env python3
"""Time and peak memory of grounding against the floor (one forward pass) and the official code's way.

Cases, all on the same frames and query:

* ``floor``: encode the clip + one prefill of ``video + question`` with sdpa, no capture
  (what any use of the model for this clip costs at least);
* ``plain``: our grounding without LRA and TAS;  ``lra``: with LRA (``--lra-steps``, default 2);
  ``tas``: with TAS;  ``full``: LRA + TAS (the full method; DSTH sub-queries are given, as the
  paper precomputes them with GPT-4o);
* ``ref-<case>``: the same algorithm computed the way the official code computes it
  (:class:`stvg_ros.adapters.official_path.ReferenceAdapter`: eager attention, ``output_attentions=True``
  keeping every layer, one full prompt per question and per LRA step), plus the check that its
  relevance maps equal ours.

Examples::

    python bench/bench_grounding.py --quick                          # CI: tiny model, seconds
    python bench/bench_grounding.py --model qwen2.5-vl-7b --frames 20 --device cuda
    python bench/bench_grounding.py --model /path/to/LLaVA-NeXT-Video-7B-hf --frames 20
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.append(str(Path(__file__).resolve().parent.parent))  # the repository root: `bench` is a package

from bench._util import interleaved, machine, mib, table, write_json  # noqa: E402
from bench.model_configs import REAL_SIZES, load_adapter  # noqa: E402

QUERY = "The man in purple clothes takes a step forward and sits on the bench."
SUB_QUERIES = ("the man in purple clothes", "The man takes a step forward and sits on the bench")
CASES = {"plain": dict(use_lra=False, use_tas=False), "lra": dict(use_lra=True, use_tas=False),
         "tas": dict(use_lra=False, use_tas=True), "full": dict(use_lra=True, use_tas=True)}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny:qwen2_5_vl",
                    help=f"a model directory, a real size with random weights ({', '.join(REAL_SIZES)}), "
                         "tiny:<family> (default tiny:qwen2_5_vl) or small:<family> (a ~25 M decoder, for CPU runs)")
    ap.add_argument("--frames", type=int, default=20, help="frames per clip (paper: 20)")
    ap.add_argument("--frame-size", default="640x480", help="input frame WxH (camera resolution)")
    ap.add_argument("--image-size", type=int, default=0, help="per-frame model resolution, 0 = family default")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto", help="auto = bfloat16 on GPU, float32 on CPU")
    ap.add_argument("--lra-steps", type=int, default=2)
    ap.add_argument("--max-batch", type=int, default=0, help="GroundingConfig.max_batch (0 = all prompts at once)")
    ap.add_argument("--cases", default="plain,lra,tas,full")
    ap.add_argument("--reference", default="plain,full",
                    help="cases also run the official way (comma list, '' for none)")
    ap.add_argument("--reference-new-tokens", type=int, default=1,
                    help="tokens the reference generates per prompt (official code: 5, 10 in LRA steps); "
                         "1 = prefill only, the cheapest reference")
    ap.add_argument("--checkpointing", choices=("auto", "on", "off"), default="auto",
                    help="activation checkpointing in LRA's backward (auto: on a GPU when memory would run short)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--allow-cpu-large", action="store_true", help="run a real-size model on CPU anyway")
    ap.add_argument("--quick", action="store_true", help="CI mode: tiny model, 4 small frames, 1 repeat")
    ap.add_argument("--json", default="", help="write the results here (default bench/results/grounding-*.json)")
    args = ap.parse_args(argv)
    if args.quick:
        if not args.model.startswith(("tiny:", "small:")):
            ap.error("--quick runs on a tiny model: leave --model out or pass tiny:<family>")
        args.frames, args.frame_size, args.warmup, args.repeats = 4, "112x84", 0, 1
    return args


def floor_fn(adapter, frames, stamps, question):
    """The floor: the vision tower over the clip + one decoder prefill with sdpa, head on the last row."""
    from stvg_ros.adapters.official_path import decoder_attention

    lm = adapter.language_model
    head = adapter.model.get_output_embeddings()

    def run(mark=None):
        with torch.no_grad(), decoder_attention(lm, "sdpa"):
            visual = adapter.encode_frames(frames, stamps=stamps)
            batch = adapter.prepare(visual, [question])
            out = lm(inputs_embeds=batch.embeds, position_ids=batch.positions, use_cache=False)
            return head(out.last_hidden_state[:, -1]).float(), batch.embeds.shape[1], visual.num_tokens
    return run


def grounding_fn(adapter, frames, stamps, config):
    from stvg_ros.grounding.grounder import Grounder
    from stvg_ros.grounding.result import SubQueries

    grounder = Grounder(adapter, config)
    subs = SubQueries(attribute=SUB_QUERIES[0], action=SUB_QUERIES[1], source="given")
    # ``mark`` sees every stage start (the box stage is 'select'): model passes and boxes are timed apart
    return lambda mark=None: grounder.ground(frames, stamps, QUERY, sub_queries=subs, checkpoint=mark)


def map_difference(ours, ref) -> dict:
    """Largest difference between two results' relevance maps, relative to the maps' scale."""
    out = {}
    for name in ("spatial", "temporal"):
        a = np.asarray(getattr(ours.relevance, name), np.float64)
        b = np.asarray(getattr(ref.relevance, name), np.float64)
        scale = max(np.abs(b).max(), 1e-12)
        out[name] = float(np.abs(a - b).max() / scale)
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    from stvg_ros.adapters.devices import resolve_device
    from stvg_ros.config import GroundingConfig
    from stvg_ros.grounding.grounder import format_question
    from stvg_ros.adapters.official_path import ReferenceAdapter
    from stvg_ros.adapters.tiny_models import random_frames

    device = resolve_device(args.device)
    adapter, label = load_adapter(args.model, device, args.dtype, args.image_size, args.allow_cpu_large)
    adapter.activation_checkpointing = {"auto": None, "on": True, "off": False}[args.checkpointing]
    w, h = (int(v) for v in args.frame_size.lower().split("x"))
    frames = random_frames(args.frames, h, w, seed=0)
    stamps = [i * 0.25 for i in range(args.frames)]
    base = dict(num_frames=args.frames, keep_relevance=True, decomposer="rules", lra_steps=args.lra_steps,
                max_batch=args.max_batch, image_size=args.image_size,
                dtype={torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[adapter.dtype])
    cases = [c for c in args.cases.split(",") if c]
    refs = [c for c in args.reference.split(",") if c]
    for c in cases + refs:
        if c not in CASES:
            raise SystemExit(f"unknown case {c!r}: choose from {', '.join(CASES)}")
    tolerance = 2e-3 if adapter.dtype == torch.float32 else 5e-2

    results: dict = {"machine": machine(), "model": label, "device": str(device), "dtype": str(adapter.dtype),
                     "frames": args.frames, "frame_size": [w, h], "lra_steps": args.lra_steps,
                     "checkpointing": args.checkpointing,
                     "repeats": args.repeats, "warmup": args.warmup, "reference_new_tokens": args.reference_new_tokens,
                     "map_tolerance": tolerance, "cases": {}}
    print(f"# {label} on {device} ({adapter.dtype}), {args.frames} frames of {w}x{h}", flush=True)

    question = format_question(GroundingConfig().question_template, QUERY)
    fns = {"floor": floor_fn(adapter, frames, stamps, question)}
    for case in cases:
        fns[case] = grounding_fn(adapter, frames, stamps, dict(base, **CASES[case]))
    reference = ReferenceAdapter(adapter, new_tokens=args.reference_new_tokens)
    for case in refs:
        fns["ref-" + case] = grounding_fn(reference, frames, stamps, dict(base, **CASES[case]))
    # every case once per round, the floor in the same rounds (CPU: process CPU time; GPU: synchronised)
    measured = interleaved(fns, device, args.warmup, args.repeats)
    values = {name: m.pop("value") for name, m in measured.items()}
    _, seq_len, n_visual = values["floor"]
    results.update(sequence_length=seq_len, visual_tokens=n_visual, rounds=args.repeats)
    for name, m in measured.items():
        if name != "floor":
            m["stages_s"] = dict(values[name].timings)
        if name.startswith("ref-"):
            ours = values[name[4:]] if name[4:] in values else fns[name[4:]]() if name[4:] in fns else \
                grounding_fn(adapter, frames, stamps, dict(base, **CASES[name[4:]]))()
            diff = map_difference(ours, values[name])
            m["map_max_relative_difference"] = diff
            m["maps_equal"] = all(v <= tolerance for v in diff.values())
        results["cases"][name] = m

    f = results["cases"]["floor"]
    rows = []
    for name, m in results["cases"].items():
        ours_case = name[4:] if name.startswith("ref-") else None
        m["x_floor"] = m["median_s"] / f["median_s"]
        m["model_x_floor"] = m["model_s"] / f["model_s"]
        m["box_x_floor"] = m["box_s"] / f["model_s"]
        m["peak_x_floor"] = m["peak_bytes"] / max(f["peak_bytes"], 1)
        if ours_case and ours_case in results["cases"]:
            o = results["cases"][ours_case]
            m["x_ours"] = m["median_s"] / o["median_s"]
            m["model_x_ours"] = m["model_s"] / o["model_s"]
        rows.append([name, f"{m['median_s']:.3f}", f"{m['model_s']:.3f}", f"{m['box_s']:.3f}",
                     f"{m['model_x_floor']:.2f}", f"{m['box_x_floor']:.2f}", f"{m['x_floor']:.2f}",
                     f"{m['model_x_ours']:.2f}" if "model_x_ours" in m else "", mib(m["peak_bytes"]),
                     mib(m["extra_bytes"]), {True: "yes", False: "NO"}.get(m.get("maps_equal"), "")])
    clock = "CPU s" if device.type == "cpu" else "GPU s"
    text = table(["case", f"median {clock}", "model passes", "box stage", "model x floor", "box x floor",
                  "total x floor", "ref / ours (model)", "peak MiB", "extra MiB", "maps equal"], rows)
    print(text)
    results["table"] = text
    import resource

    results["process_max_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    out = args.json or str(Path(__file__).resolve().parent / "results" /
                           f"grounding-{label.split()[0].replace(':', '-').replace('/', '_')}-{device.type}.json")
    write_json(out, results)
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
