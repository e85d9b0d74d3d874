"""MODEL_CARD.md of a trained synthetic model and its training-curve figure, written from what training and the
benchmark measured."""

from __future__ import annotations

import json
import math
import os
import platform
import textwrap
from pathlib import Path

import numpy as np

from .generator import ACTIONS, COLOURS, HELD_OUT, SHAPES, SIZES
from .model import IMAGE_SIZE, MODEL_DIMS

_BENCH_START = "<!-- bench:start -->"
_BENCH_END = "<!-- bench:end -->"


def _acc_table(final: dict) -> str:
    rungs = list(next(iter(final.values())))
    lines = ["| split | " + " | ".join(rungs) + " |", "|---" * (len(rungs) + 1) + "|"]
    for split, res in final.items():
        cells = [f"{100 * res[r]['acc']:.1f} (yes {100 * res[r]['pred_yes']:.0f}%)" for r in rungs]
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs (shared with other jobs), {platform.system()}"


_MOTION = """  Motion prior: pairs of patch-merger units rectify the
  patch embedding's signed frame differences into one "change" direction, and head 2 of layer 0 starts as
  a match head from that direction to the verbs "moves", "jumps", "spins", "grows", writing its own "moved"
  direction that head 2 of the later layers collects (a pathway separate from colour's)."""
_CONJUNCTIVE = """  Conjunctive motion collect: head 2 of the
  later layers keys on "matched" *plus* "moved", so under "a red shape that jumps" it attends to tokens that
  are red and changing; the marker and word directions are cleared from every other word and from the
  merger's output, so that only a named colour or verb writes a marker."""
_SHAPE = """  Shape prior: the patch embedding's 7-px quadrant
  brightness moments, an angle-tuned population in the first vision block and merger units hand the decoder,
  per token, how k-fold symmetric its edges are (k = 1-6), on directions of their own (`--shape-prior`)."""
_FROZEN = """  The motion prior's hand-set weights were held at
  their initial values during training (`--freeze-motion`)."""


def _signal(summary: dict) -> str:
    """The training-signal paragraph for the rungs and question options this run used."""
    rungs = summary.get("rungs", ["colour", "shape", "look", "action"])
    kinds = {"colour": 'colour ("a red shape")', "shape": 'shape ("a star")',
             "look": "look (colour + shape, sometimes size)",
             "action": 'action (shape or look + action, including the sub-query form "the star jumps")'}
    text = "Questions \"Is there a/the … in this video?\" on a ladder of rungs: " + ", ".join(kinds[r] for r in rungs) + "."
    if summary.get("colour_action"):
        text += (f"  {100 * summary['colour_action']:.0f} % of the action questions name colour and action only "
                 "(\"a red shape that jumps\").")
    if summary.get("action_windows"):
        text += (f"  {100 * summary['action_windows']:.0f} % of the action rung's clips are cut to a window of "
                 "6–10 frames, where an object whose action falls outside the window does not act (\"… that jumps\" "
                 "is then a no): the answer depends on *when*, still with yes/no answers only.")
    pairs = [st["standing_pairs"] for st in stages(summary) if st.get("standing_pairs")]
    if pairs:
        text += ("  Later stages replace part of the action rung's clips by *standing pairs*: two 8-frame windows "
                 "of one 48-frame clip asked the same query (the full description, or colour and action), yes where the target's action overlaps the "
                 "window, no where it does not touch it (what a standing query asks of the newest frames).")
        if any(st.get("standing_no") for st in stages(summary) if st.get("standing_pairs")):
            text += ("  From the stages marked so, the no window is also one where nothing the question names acts "
                     "(a same-coloured distractor doing the action makes \"a red shape that jumps\" true).")
    return textwrap.fill(text, 108)


#: the options of the later stages, each as (summary key, the train flag that sets it, what the recipe's stage line
#: says of it): the command and the stage line both read this table
_STAGE_OPTIONS = (
    ("standing_pairs", "--standing-pairs",
     lambda st: f"standing pairs {100 * st['standing_pairs']:.0f} % of the action rung's clips"
                + (" (each no a window where nothing named acts)" if st.get("standing_no") else "")),
    ("crowded_colour", "--crowded-colour",
     lambda st: f"{100 * st['crowded_colour']:.0f} % of the colour rung's clips crowded"),
    ("hard_negatives", "--hard-negatives",
     lambda st: f"{100 * st['hard_negatives']:.0f} % of the pairs' no from a window where a same-coloured object acts"),
    ("contrast_actions", "--contrast-actions",
     lambda st: f"{100 * st['contrast_actions']:.0f} % of the action rung's no asking a confusable action"),
    ("size_questions", "--size-questions",
     lambda st: f"{100 * st['size_questions']:.0f} % of the questions naming the size (their no the other size)"),
    ("train_only", "--train-only", lambda st: f"only the {st['train_only']} trained (attention weights unchanged)"),
)


def _active(summary: dict, key: str) -> bool:
    """Whether a stage option was set away from its default (0, or 'all' for ``train_only``)."""
    return bool(summary.get(key)) and summary.get(key) != "all"


def train_command(summary: dict) -> str:
    """The one command that reproduces a training run from its summary."""
    from .questions import RUNGS

    if summary.get("recipe") == "gpu":  # the recipe sets every other option (train.GPU_RECIPE)
        return (f"python -m stvg_ros.synthetic.train --recipe gpu --device {summary.get('device', 'cuda')} "
                f"--out models/stvg-synth-qwen "
                f"--seed {summary['seed']} --max-minutes {summary.get('max_minutes', 6):g}"
                + (" --shape-prior" if summary.get("shape_prior") else ""))
    cmd = (f"python -m stvg_ros.synthetic.train --out models/stvg-synth-qwen --minutes {round(summary['minutes'])} "
           f"--seed {summary['seed']}")
    if tuple(summary.get("rungs", RUNGS)) != tuple(RUNGS):
        cmd += " --rungs " + ",".join(summary["rungs"])
    if summary.get("vision_lr", 2e-4) != 2e-4:
        cmd += f" --vision-lr {summary['vision_lr']:g}"
    if summary.get("lr", 2e-4) != 2e-4:
        cmd += f" --lr {summary['lr']:g}"
    if summary.get("motion_prior") is False:
        cmd += " --no-motion-prior"
    if summary.get("compact_motion"):
        cmd += " --compact-motion"
    if summary.get("conjunctive_motion"):
        cmd += " --conjunctive-motion"
    if summary.get("shape_prior"):
        cmd += " --shape-prior"
    if summary.get("freeze_motion"):
        cmd += " --freeze-motion"
    if summary.get("action_windows"):
        cmd += f" --action-windows {summary['action_windows']:g}"
    if summary.get("colour_action"):
        cmd += f" --colour-action {summary['colour_action']:g}"
    if summary.get("start_rung"):
        cmd += f" --start-rung {summary['start_rung']}"
    for key, flag, _ in _STAGE_OPTIONS:
        if _active(summary, key):
            value = summary[key]
            cmd += f" {flag} {value:g}" if isinstance(value, float) else f" {flag} {value}"
    return cmd


def stages(summary: dict) -> list[dict]:
    """The training runs that made this model, first to last (a run started ``--init`` from an earlier
    model directory records that run's summary as ``init_from``)."""
    chain = [summary]
    while isinstance(chain[0].get("init_from"), dict):
        chain.insert(0, chain[0]["init_from"])
    return chain


def train_commands(summary: dict) -> list[str]:
    """The commands that reproduce a model, one per stage; each later stage starts from the one before
    (``--init``), and only the last writes ``models/stvg-synth-qwen``."""
    chain = stages(summary)
    out = []
    for k, stage in enumerate(chain):
        cmd = train_command(stage)
        if k < len(chain) - 1:
            cmd = cmd.replace("--out models/stvg-synth-qwen", f"--out stage-{k + 1}")
        if k > 0:
            cmd += f" --init stage-{k}"
        out.append(cmd)
    return out


def _stages_text(summary: dict) -> str:
    """The recipe's lines for a model trained in several stages ('' for one)."""
    chain = stages(summary)
    if len(chain) == 1:
        return ""
    lines = [f"- Trained in {len(chain)} stages, each starting from the one before's weights "
             f"({sum(s['steps'] for s in chain)} steps in {sum(s['minutes'] for s in chain):.1f} minutes in all):"]
    for k, st in enumerate(chain):
        extra = "".join(f", {describe(st)}" for key, _, describe in _STAGE_OPTIONS if _active(st, key))
        lines.append(f"  {k + 1}. seed {st['seed']}, {st['steps']} steps in {st['minutes']} minutes, lr {st['lr']:g}"
                     f" (vision {st['vision_lr']:g}), rungs {' → '.join(st.get('rungs', []))}"
                     f"{' from rung ' + str(st['start_rung']) if st.get('start_rung') else ''}{extra}")
    return "\n".join(lines) + "\n"


def write_model_card(out_dir: str | Path, summary: dict, params: int, size_bytes: int) -> Path:
    """Write ``MODEL_CARD.md`` in ``out_dir`` from the training summary (keeps a benchmark section)."""
    out = Path(out_dir)
    card = out / "MODEL_CARD.md"
    bench = ""
    if card.is_file():
        text = card.read_text()
        if _BENCH_START in text:
            bench = text[text.index(_BENCH_START):text.index(_BENCH_END) + len(_BENCH_END)]
    held = ", ".join(f"{c} {a}" for c, a in sorted(HELD_OUT))
    d = dict(MODEL_DIMS, **summary.get("dims", {}))
    gpu = summary.get("gpu")
    where = f"on one GPU ({gpu})" if gpu else "on CPU"
    compute = (f"one {gpu}, {summary.get('workers', 0)} data worker processes" if gpu else
               f"{summary['threads']} CPU thread{'s' if summary['threads'] != 1 else ''}")
    text = f"""# stvg-synth-qwen: a small Qwen2.5-VL trained on the synthetic STVG world

A `Qwen2_5_VLForConditionalGeneration` ({params / 1e6:.2f} M parameters, {size_bytes / 1e6:.1f} MB of
safetensors) trained from scratch, {where}, to answer yes/no existence questions about procedurally
generated clips (`stvg_ros.synthetic`).  It exists so that the package's demo and tests ground queries
with a model that has learned something, on machines that cannot download real MLLM weights.  It is
**not** a general video model: it knows {len(COLOURS)} colours, {len(SHAPES)} shapes, {len(SIZES)} sizes and
{len(ACTIONS)} actions, on {IMAGE_SIZE} px frames.

## Architecture
- Vision tower: depth {d['vision_depth']}, hidden {d['vision_hidden']}, {d['vision_heads']} heads, 14 px patches,
  temporal patch 2, 2×2 merge → a 4×4 token grid per 2 frames ({IMAGE_SIZE} px frames); a 20-frame clip is
  160 visual tokens.
- Decoder: {d['lm_layers']} layers, hidden {d['lm_hidden']}, {d['lm_heads']} heads, MLP {d['lm_intermediate']},
  3-D rotary positions (mrope), word-level ChatML tokenizer from `stvg_ros.adapters.tiny_models.build_tokenizer`.
- Prompt layout: the chat template (`chat_template.jinja`) puts the user's text *before* the video
  ("question first"), so the question's words cannot see the frames and the only path from the pixels to
  the answer is the answer positions' own attention to the visual tokens, which is what the paper's
  grounding reads.  The adapter takes its grounding-token candidates after the video block.
- Loads with `stvg_ros.Grounder.from_pretrained(<this directory>)` like any Qwen2.5-VL checkpoint.

## Data
Clips of 20 frames at 5 fps, {IMAGE_SIZE}×{IMAGE_SIZE}, made on the fly by `generate_sample(seed, split)`: a target
doing an action during part of the clip, 0–3 distractors sharing its colour, shape or action (at other
times), varied dark backgrounds.  Test split: targets with (colour, action) pairs that never occur in train
or validation, on any object: {held}.

## Training signal (only yes/no; never boxes or time spans)
{_signal(summary)}
Each clip gets as many yes as no questions; negatives change one part of a real object's
description so that nothing matches.  The answer is supervised at the last 6 prompt tokens (from the
end of the video block through the generation prompt).

## Recipe
- {"Last stage: seed" if len(stages(summary)) > 1 else "Seed"} {summary['seed']}, {summary['steps']} steps in {summary['minutes']} minutes, {compute},
  {summary['clips_per_step']} clips × {summary['questions_per_clip']} questions per step, AdamW
  (lr {summary['lr']}, vision {summary['vision_lr']}, betas 0.9/0.98, weight decay 0.01, warm-up 50 steps,
  cosine decay over the last quarter), gradient clipping 1.0.
- Ladder ({' → '.join(summary.get('rungs', ['colour', 'shape', 'look', 'action']))}): colour and shape rungs see
  {"2–20 frames, whole clips 40 % of the time" if summary.get('still_frames') == 'gpu' else "mostly one temporal slot (2 frames, 16 visual tokens)"}, look 4–20 frames, action whole clips (or windows);
  a rung is added when its accuracy reaches 0.85 or its time share is spent; earlier rungs stay in the
  mix.  Reached rung: **{summary['reached_rung']}**.
- Initialisation (no labels involved; disclosed because it matters): colour-opponent, quadrant and
  frame-difference filters in the patch embedding; one "recent tokens" head per decoder layer (constant
  rotary query/key bias); colour words' embeddings start on their own orthogonal directions, head 1 of
  layer 0 starts as a "match" head (a visual token attends to the question's word of its own colour and
  writes a common "matched" direction) and head 1 of the later layers as a "collect" head (every position
  attends to tokens carrying "matched").{_MOTION if summary.get('motion_prior', False) else ''}{
  _CONJUNCTIVE if summary.get('conjunctive_motion') else ''}{_SHAPE if summary.get('shape_prior') else ''}{
  _FROZEN if summary.get('freeze_motion') else ''}  This uses the
  generator's colour table as a prior on what colour names mean{
  " and that the verbs mean change" if summary.get('motion_prior', False) else ""}; shapes, sizes,
  conjunctions and which action is which are learned.  Without priors and with a higher learning rate, from-scratch runs stayed
  at chance (see docs/synthetic.md).
{_stages_text(summary)}- Machine: {_machine()}{"; GPU: " + gpu if gpu else ""}.
- Command{"s, in order" if len(stages(summary)) > 1 else ""}: {"; ".join(f"`{c}`" for c in train_commands(summary))}

## Yes/no accuracy (balanced questions, whole 20-frame clips, per rung; share of "yes" predictions)
{_acc_table(summary['final'])}

`val`: held-out seeds of the training distribution; `test`: clips whose targets carry unseen
(colour, action) pairs (the questions about colour/shape/look there are about any object).

## Grounding benchmark
{bench or _BENCH_START + chr(10) + "(run `python -m stvg_ros.synthetic.bench --card` to fill this section)" + chr(10) + _BENCH_END}

## Limits
Answers about anything outside this world (other words, real images) are meaningless; the tokenizer
knows only this world's words.  Trained {sum(st['minutes'] for st in stages(summary)):g} minutes {"on " + gpu if gpu else "on a shared CPU"}: the accuracies above are
what it reached, not what the architecture can reach.  See the benchmark section for what its grounding
achieves and docs/synthetic.md for the runs that led here.
"""
    card.write_text(text)
    return card


def write_bench_section(out_dir: str | Path, markdown_table: str, command: str) -> None:
    """Replace the grounding-benchmark section of the card with a measured table."""
    card = Path(out_dir) / "MODEL_CARD.md"
    text = card.read_text() if card.is_file() else f"# model card\n\n{_BENCH_START}\n{_BENCH_END}\n"
    section = f"{_BENCH_START}\nMeasured with `{command}`:\n\n{markdown_table}\n{_BENCH_END}"
    if _BENCH_START in text:
        text = text[:text.index(_BENCH_START)] + section + text[text.index(_BENCH_END) + len(_BENCH_END):]
    else:
        text += "\n" + section + "\n"
    card.write_text(text)


def draw_curve(log: list[dict], path: Path) -> None:
    """Training curve PNG (loss, train accuracy, validation accuracy per rung) drawn with OpenCV."""
    import cv2

    from .questions import RUNGS

    w, h, pad = 900, 420, 50
    img = np.full((h, w, 3), 255, np.uint8)
    steps = [e["step"] for e in log if "loss" in e]
    if not steps:
        return
    smax = max(steps[-1], 1)

    def xy(step, value, lo, hi):
        return int(pad + (w - 2 * pad) * step / smax), int(h - pad - (h - 2 * pad) * (value - lo) / (hi - lo))

    cv2.rectangle(img, (pad, pad), (w - pad, h - pad), (0, 0, 0), 1)
    for v in (0.5, 0.75, 1.0):
        y = xy(0, v, 0, 1)[1]
        cv2.line(img, (pad, y), (w - pad, y), (220, 220, 220), 1)
        cv2.putText(img, f"{v:.2f}", (5, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    colours = {"loss": (0, 0, 0), "colour": (0, 0, 220), "shape": (0, 160, 0), "look": (220, 0, 0),
               "action": (200, 0, 200)}
    train = [e for e in log if "loss" in e]
    smooth, pts = None, []
    for e in train:  # smoothed loss / (1.2 ln 2): chance sits at 0.83 on this axis
        smooth = e["loss"] if smooth is None else 0.97 * smooth + 0.03 * e["loss"]
        pts.append(xy(e["step"], min(smooth / math.log(2), 1.2) / 1.2, 0, 1))
    for a, b in zip(pts, pts[1:]):
        cv2.line(img, a, b, colours["loss"], 1)
    val = [e for e in log if "val" in e]
    for r in RUNGS:
        pts = [xy(e["step"], e["val"][r]["acc"], 0, 1) for e in val if r in e["val"]]
        for a, b in zip(pts, pts[1:]):
            cv2.line(img, a, b, colours[r], 2)
        for a in pts:
            cv2.circle(img, a, 3, colours[r], -1)
    shown = ["loss"] + [r for r in RUNGS if any(r in e["val"] for e in val)]  # the rungs this run had
    for i, name in enumerate(shown):
        c = colours[name]
        label = "loss/ln2 (scaled)" if name == "loss" else f"val acc: {name}"
        cv2.putText(img, label, (pad + 10 + 160 * i, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.45, c, 1)
    cv2.putText(img, f"step (max {smax})", (w // 2 - 40, h - 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    cv2.imwrite(str(path), img)


def main(argv=None) -> None:
    import argparse

    p = argparse.ArgumentParser(description="Rewrite MODEL_CARD.md from a model directory's training summary.")
    p.add_argument("model")
    a = p.parse_args(argv)
    out = Path(a.model)
    summary = json.loads((out / "synthetic_training.json").read_text())
    size = sum(f.stat().st_size for f in out.glob("*.safetensors"))
    write_model_card(out, summary, summary.get("params", 0), size)
    log_path = out / "training_log.jsonl"
    if log_path.is_file():
        draw_curve([json.loads(line) for line in log_path.read_text().splitlines() if line.strip()],
                   out / "training_curve.png")


if __name__ == "__main__":
    main()
