"""Train the small Qwen2.5-VL of the synthetic world on existence questions, on CPU, in one command.

    python -m stvg_ros.synthetic.train --out models/stvg-synth-qwen --minutes 60 --seed 0

The shipped model (run N in docs/synthetic.md) was trained with the options that docs/synthetic.md
and its model card give: ``--minutes 50 --rungs colour,action --compact-motion --conjunctive-motion
--action-windows 0.7 --colour-action 0.8``.

Why a ladder: from scratch, a tiny multimodal model answering "is there a red star?" about small
objects sits at chance for thousands of steps (see docs/synthetic.md).  Questions therefore climb
rungs (colour → shape → colour+shape → actions over frames); a rung is added to the mix when the
model answers the current one well on validation clips, or when its share of the time budget is
spent, and earlier rungs stay in the mix.  Only yes/no answers are supervised: no box, no span.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from .generator import generate_sample
from .model import PromptBuilder, build_model, frames_to_pixels, motion_pathway_masks, save_model_dir, yes_no_logits
from .questions import RUNGS, action_window, clip_questions


#: distractors per clip on each rung: the first rungs see emptier scenes
DISTRACTORS = {"colour": (0, 1), "shape": (1, 2), "look": (2, 3), "action": (2, 3)}


SECONDS_PER_SLOT = (0.4, 1.0)
#: rungs whose questions are about looks only (no motion needed)
#: frames shown on the rungs about looks, (choices, probabilities): mostly one temporal slot (16
#: visual tokens, the dense signal a from-scratch model needs to start), sometimes more up to the
#: whole clip so that what is learned holds on 160 tokens; the action rung always sees whole clips
STILL_FRAMES = {"colour": ((2, 4, 8, 20), (0.5, 0.25, 0.15, 0.1)),
                "shape": ((2, 4, 8, 20), (0.5, 0.25, 0.15, 0.1)),
                "look": ((4, 8, 20), (0.3, 0.3, 0.4))}
#: frames of the window an action question is asked about instead of the whole clip (``--action-windows``)
WINDOW_FRAMES = (6, 8, 10)


def _batch(seeds, split, rungs, per_answer, rng, still_frames=True, window_share=0.0, colour_action=0.0):
    """Clips (one rung each, drawn from ``rungs``) and their balanced yes/no questions."""
    pixels, grids, questions, labels, clips, qrungs = [], [], [], [], [], []
    for c, seed in enumerate(seeds):
        rung = rungs[int(rng.integers(len(rungs)))]
        frames, sample = generate_sample(int(seed), split, num_distractors=DISTRACTORS[rung])
        objects = sample["objects"]
        count = int(rng.choice(STILL_FRAMES[rung][0], p=STILL_FRAMES[rung][1])) if rung in STILL_FRAMES else 0
        if still_frames and 0 < count < len(frames):
            # questions about looks need no motion: a few frame pairs cost a fraction of the clip
            starts = sorted(rng.choice(np.arange(0, len(frames) - 1, 2), size=count // 2, replace=False))
            keep = [t for a in starts for t in (a, a + 1)]
            frames = frames[keep]
            objects = [o for o in objects if set(o["visible"]) & set(keep)]
        if still_frames and rung == "action" and window_share > 0 and rng.random() < window_share:
            # part of the clip: an action outside the frames shown is a "no" (questions.action_window)
            length = int(rng.choice(WINDOW_FRAMES))
            start = 2 * int(rng.integers(0, (len(frames) - length) // 2 + 1))
            objects = action_window(len(frames), objects, length, start)
            frames = frames[start:start + length]
        px, grid = frames_to_pixels(frames)
        pixels.append(px)
        grids.append(grid)
        for q, a, r in clip_questions(objects, [rung], per_answer, rng, split, colour_action):
            questions.append(q)
            labels.append(0 if a else 1)  # class 0 = "yes", 1 = "no"
            clips.append(c)
            qrungs.append(r)
    return torch.cat(pixels), torch.cat(grids), questions, torch.tensor(labels), clips, qrungs


class ValSet:
    """Fixed validation questions per rung (seeded), so accuracies are comparable across steps."""

    def __init__(self, split: str, clips: int, seed: int):
        rng = np.random.default_rng([seed, 7])
        self.per_rung = {}
        for r in RUNGS:
            seeds = [int(s) for s in rng.integers(0, 10**6, size=clips)]
            self.per_rung[r] = _batch(seeds, split, [r], 1, rng, still_frames=False)  # whole clips

    @torch.no_grad()
    def evaluate(self, model, prompts, rungs=RUNGS) -> dict:
        model.eval()
        out = {}
        for r in rungs:
            px, grid, qs, labels, clips, _ = self.per_rung[r]
            logits = yes_no_logits(model, prompts, px, grid, qs, clips, seconds_per_slot=SECONDS_PER_SLOT[-1])
            pred = logits.argmax(-1)
            out[r] = {"acc": float((pred == labels).float().mean()), "pred_yes": float((pred == 0).float().mean())}
        model.train()
        return out


def draw_curve(log: list[dict], path: Path) -> None:
    """Training curve PNG (loss, train accuracy, validation accuracy per rung) drawn with OpenCV."""
    import cv2

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


def train(out: str, minutes: float, seed: int = 0, clips_per_step: int = 8, per_answer: int = 2,
          lr: float = 2e-4, vision_lr: float = 2e-4, advance_at: float = 0.85, eval_every: int = 100,
          val_clips: int = 32, threads: int = 2, start_rung: int = 0, init: str | None = None,
          rungs: tuple[str, ...] = RUNGS, dims: dict | None = None, tail: int = 6,
          motion_prior: bool = True, compact_motion: bool = False, action_windows: float = 0.0,
          freeze_motion: bool = False, colour_action: float = 0.0, conjunctive_motion: bool = False) -> dict:
    """Run the ladder for ``minutes`` of wall-clock time and save the model directory to ``out``."""
    from tqdm import tqdm

    if (freeze_motion or conjunctive_motion) and not motion_prior:
        raise ValueError("--freeze-motion and --conjunctive-motion need the motion prior: drop --no-motion-prior")
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model, tok = build_model(seed, dims, motion_prior=motion_prior, compact_motion=compact_motion,
                             conjunctive_motion=conjunctive_motion)
    if init:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(Path(init) / "model.safetensors")), strict=False)
    model.train()
    params = dict(model.named_parameters())
    # the hand-set motion pathway held at its initial values (motion_pathway_masks says why)
    frozen = {n: (m, params[n].detach()[m].clone())
              for n, m in motion_pathway_masks(model, tok, compact_motion).items()} if freeze_motion else {}
    prompts = PromptBuilder(tok, num_visual_tokens=160)
    vision = [p for n, p in model.named_parameters() if n.startswith("model.visual.")]
    other = [p for n, p in model.named_parameters() if not n.startswith("model.visual.")]
    opt = torch.optim.AdamW([{"params": vision, "lr": vision_lr}, {"params": other, "lr": lr}],
                            weight_decay=0.01, betas=(0.9, 0.98))
    base_lrs = [g["lr"] for g in opt.param_groups]
    val = ValSet("val", val_clips, seed)
    budget = minutes * 60.0
    t0 = time.time()
    log: list[dict] = []
    rung = start_rung
    rung_started = 0.0
    step = 0
    ema = None
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=int(budget), unit="s", desc="train", mininterval=5)
    while True:
        elapsed = time.time() - t0
        if elapsed >= budget:
            break
        frac = elapsed / budget
        warm = min(1.0, (step + 1) / 50)
        decay = 1.0 if frac < 0.75 else 0.5 * (1 + math.cos(math.pi * (frac - 0.75) / 0.25))
        for g, base in zip(opt.param_groups, base_lrs):
            g["lr"] = base * warm * max(decay, 0.05)
        active = list(rungs[: rung + 1])
        # the current rung gets most questions, earlier rungs stay in the mix
        mix = [active[-1]] * max(1, len(active)) + active
        seeds = rng.integers(0, 2**31 - 1, size=clips_per_step)
        px, grid, qs, labels, clips, _ = _batch(seeds, "train", mix, per_answer, rng, window_share=action_windows,
                                                colour_action=colour_action)
        # the grounder may or may not pass frame times to the adapter: 0.4 s per slot (this world's
        # 5 fps) or the processor's default 1 s; train on both so rotary time positions match either
        seconds = float(rng.choice(SECONDS_PER_SLOT))
        all_logits = yes_no_logits(model, prompts, px, grid, qs, clips, seconds_per_slot=seconds, tail=tail)
        if tail > 1:
            loss = torch.nn.functional.cross_entropy(all_logits.reshape(-1, 2), labels.repeat_interleave(tail))
            logits = all_logits[:, -1]
        else:
            logits = all_logits
            loss = torch.nn.functional.cross_entropy(logits, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for n, (mask, value) in frozen.items():
                params[n][mask] = value
        step += 1
        acc = float((logits.argmax(-1) == labels).float().mean())
        pred_yes = float((logits.argmax(-1) == 0).float().mean())
        ema = (loss.item(), acc) if ema is None else (0.95 * ema[0] + 0.05 * loss.item(), 0.95 * ema[1] + 0.05 * acc)
        log.append({"step": step, "time": round(elapsed, 1), "loss": round(loss.item(), 4), "acc": acc,
                    "pred_yes": pred_yes, "rung": rungs[rung]})
        bar.update(int(time.time() - t0) - bar.n)
        bar.set_postfix(step=step, rung=rungs[rung], loss=f"{ema[0]:.3f}", acc=f"{ema[1]:.2f}", yes=f"{pred_yes:.2f}")
        if step % eval_every == 0:
            res = val.evaluate(model, prompts, rungs[: rung + 2])
            log.append({"step": step, "time": round(time.time() - t0, 1), "val": res, "rung": rungs[rung]})
            tqdm.write(f"step {step} t={time.time() - t0:.0f}s rung={rungs[rung]} "
                       + " ".join(f"{r}:{v['acc']:.2f}(yes {v['pred_yes']:.2f})" for r, v in res.items()))
            # climb when the current rung is answered well, or when its share of the budget is spent
            share = budget * 0.6 / len(rungs)
            if rung + 1 < len(rungs) and (res[rungs[rung]]["acc"] >= advance_at or ema[1] >= advance_at
                                         or time.time() - t0 - rung_started > share):
                rung += 1
                rung_started = time.time() - t0
                tqdm.write(f"-> rung {rungs[rung]}")
            draw_curve(log, out_dir / "training_curve.png")
            save_model_dir(model, tok, out_dir)  # a usable checkpoint at every evaluation
    bar.close()
    final = {"val": val.evaluate(model, prompts, rungs)}
    test = ValSet("test", val_clips, seed + 1)
    final["test"] = test.evaluate(model, prompts, rungs)
    summary = {"steps": step, "minutes": round((time.time() - t0) / 60, 1), "seed": seed, "threads": threads,
               "clips_per_step": clips_per_step, "questions_per_clip": 2 * per_answer, "lr": lr,
               "vision_lr": vision_lr, "final": final, "reached_rung": rungs[rung], "rungs": list(rungs),
               "motion_prior": motion_prior, "compact_motion": compact_motion,
               "action_windows": action_windows, "freeze_motion": freeze_motion,
               "colour_action": colour_action, "conjunctive_motion": conjunctive_motion}
    log.append({"step": step, "time": round(time.time() - t0, 1), "val": final["val"], "rung": rungs[rung]})
    draw_curve(log, out_dir / "training_curve.png")
    summary["params"] = sum(p.numel() for p in model.parameters())
    save_model_dir(model, tok, out_dir, extra=summary)
    from .card import write_model_card

    write_model_card(out_dir, summary, summary["params"],
                     sum(f.stat().st_size for f in out_dir.glob("*.safetensors")))
    (out_dir / "training_log.jsonl").write_text("\n".join(json.dumps(e) for e in log) + "\n")
    print(json.dumps(summary, indent=1))
    return summary


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--minutes", type=float, default=60.0, help="wall-clock training budget")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1 on a shared machine: with 2 threads and one core's worth of CPU, "
                        "OpenMP barriers made steps 10x slower)")
    p.add_argument("--clips", type=int, default=8, help="clips per step (4 questions each)")
    p.add_argument("--lr", type=float, default=2e-4,
                   help="AdamW learning rate of the decoder (higher rates erase the priors)")
    p.add_argument("--vision-lr", type=float, default=2e-4, help="learning rate of the vision tower and merger")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--start-rung", type=int, default=0)
    p.add_argument("--rungs", default=",".join(RUNGS), help="comma-separated ladder")
    p.add_argument("--tail", type=int, default=6,
                   help="supervise the answer at the last N prompt tokens (the video's end to the prompt's end: 6)")
    p.add_argument("--init", default=None, help="start from this model directory's weights")
    p.add_argument("--no-motion-prior", action="store_true",
                   help="leave out the merger's change detector and the verb-matching head (ablation)")
    p.add_argument("--compact-motion", action="store_true",
                   help="the motion prior's change detector reads brightness change per quadrant (32 merger "
                        "units) instead of every difference channel (144)")
    p.add_argument("--action-windows", type=float, default=0.0, metavar="SHARE",
                   help="ask this share of action questions about a window of 6-10 frames, where an action "
                        "outside the window makes a no (teaches when, still with yes/no answers only)")
    p.add_argument("--conjunctive-motion", action="store_true",
                   help="the motion collect heads attend to tokens of the named colour *and* changing, and only "
                        "named colours and verbs write the match markers (needs the motion prior)")
    p.add_argument("--freeze-motion", action="store_true",
                   help="hold the motion prior's hand-set weights at their initial values (needs the motion prior)")
    p.add_argument("--colour-action", type=float, default=0.0, metavar="SHARE",
                   help="this share of action questions names colour and action only ('a red shape that jumps'): "
                        "a conjunction a model that knows colour can learn, and on action windows it needs *when*")
    p.add_argument("--dims", default=None, help='JSON overrides of the model sizes, e.g. {"lm_layers": 2}')
    a = p.parse_args(argv)
    train(a.out, a.minutes, a.seed, clips_per_step=a.clips, lr=a.lr, vision_lr=a.vision_lr,
          eval_every=a.eval_every, threads=a.threads, start_rung=a.start_rung, init=a.init,
          rungs=tuple(a.rungs.split(",")), dims=json.loads(a.dims) if a.dims else None, tail=a.tail,
          motion_prior=not a.no_motion_prior, compact_motion=a.compact_motion,
          action_windows=a.action_windows, freeze_motion=a.freeze_motion,
          colour_action=a.colour_action, conjunctive_motion=a.conjunctive_motion)


if __name__ == "__main__":
    main()
