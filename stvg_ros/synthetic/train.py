"""Train the small Qwen2.5-VL of the synthetic world on existence questions, in one command.

    python -m stvg_ros.synthetic.train --out models/stvg-synth-qwen --minutes 60 --seed 0   # CPU
    python -m stvg_ros.synthetic.train --recipe gpu --device cuda --out DIR                 # GPU, <= 6 min
    python -m stvg_ros.synthetic.train --recipe gpu --dry-run --out DIR                     # its code on CPU

The shipped model was trained with the options that its model card gives (docs/synthetic.md records
how they were chosen): ``--minutes 50 --rungs colour,action --compact-motion --conjunctive-motion
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

from ..evaluation.calibration import SYNTHETIC_STREAM, SYNTHETIC_WINDOW
from .card import draw_curve, write_model_card
from .generator import acts_in, describe, generate_sample, matches, target_object
from .model import (MODEL_DIMS, PromptBuilder, build_model, frames_to_pixels, motion_pathway_masks, readout_parameters,
                    save_model_dir, yes_no_logits)
from .questions import RUNGS, QuestionMix, action_window, clip_questions


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
#: standing pairs (``--standing-pairs``) are cut from streams as long as the calibration's standing streams, in
#: windows as long as the ones it evaluates
STANDING_STREAM, STANDING_WINDOW = SYNTHETIC_STREAM, SYNTHETIC_WINDOW
#: ``--crowded-colour``: frames of a crowded colour clip, (choices, probabilities): a standing window or a whole clip,
#: what standing queries and memory segments show
CROWDED_FRAMES = ((8, 20), (0.5, 0.5))

#: ``--recipe gpu``: the frames the look rungs see shift to whole clips (validation asks about whole clips,
#: and run e9 found that what is learned on 2 frames does not transfer to 20); a GPU affords the tokens
STILL_FRAMES_GPU = {"colour": ((2, 4, 8, 20), (0.25, 0.15, 0.2, 0.4)),
                    "shape": ((2, 4, 8, 20), (0.2, 0.15, 0.25, 0.4)),
                    "look": ((4, 8, 20), (0.2, 0.3, 0.5))}
#: ``--recipe gpu``: a larger model (3.8 M parameters, 15 MB of fp32 safetensors: one file under 16 MiB):
#: a wider, deeper vision tower (shape is a vision problem: outlines within and across 14 px patches) and
#: a deeper, wider decoder; head dims stay 32, which the hand-set priors assume
GPU_DIMS = dict(lm_hidden=192, lm_layers=5, lm_heads=6, lm_kv_heads=6, lm_intermediate=384,
                vision_hidden=160, vision_depth=4, vision_heads=5, vision_intermediate=320)
#: ``--recipe gpu``: every rung (colour → shape → look → action), 48 clips × 4 questions per step, the
#: shipped model's motion options, colour-action questions at 0.5 so that half the action
#: questions still need the shape, 64 validation clips per rung, evaluations every 40 s, at most 6 minutes
GPU_RECIPE = dict(dims=GPU_DIMS, clips_per_step=48, rungs=("colour", "shape", "look", "action"), lr=2e-4,
                  vision_lr=3e-4, compact_motion=True, conjunctive_motion=True, action_windows=0.7,
                  colour_action=0.5, val_clips=64, eval_seconds=40.0, still="gpu", max_minutes=6.0)
#: ``--dry-run``: the same recipe's code on CPU, tiny (3 heads: the priors use heads 1 and 2), in seconds,
#: with two data workers and a few evaluations
DRY_RUN = dict(dims=dict(lm_hidden=96, lm_layers=2, lm_heads=3, lm_kv_heads=3, lm_intermediate=192,
                         vision_hidden=64, vision_depth=1, vision_heads=2, vision_intermediate=128),
               clips_per_step=2, val_clips=2, eval_seconds=4.0, max_minutes=0.35, workers=2, device="cpu")


def _standing_pair(seed: int, split: str, rng, hard_negatives: float = 0.0) -> list[tuple[int, np.ndarray, str, bool]]:
    """Two windows of one standing stream (:data:`STANDING_STREAM` frames) and the target's query: a window
    its action overlaps by at least one temporal slot (yes) and one where nothing the query describes acts (no),
    so the only difference between the answers is *when*, as a standing query asks it: (first frame, frames,
    question, answer) each, or [] where one of the windows cannot be cut.

    The query is the full description or, half the time, colour and action only; for the latter a same-coloured
    distractor doing the target's action makes a window a yes, so such windows are never the no (before session 26
    they could be: 15 % of the windows outside the action on 1,500 training streams, so one colour-and-action no
    in seven was wrong).  ``hard_negatives``: the share of pairs whose no is a
    window where an object of the target's colour acts (a different action, or the same one on another look), where
    the stream has one: what a standing query confuses most (bench/README.md, "Where the false appearances come
    from")."""
    frames, sample = generate_sample(int(seed), split, num_frames=STANDING_STREAM)
    s, e = sample["st_frame"], sample["ed_frame"]
    n, w = len(frames), STANDING_WINDOW
    starts = range(0, n - w + 1, 2)
    inside = [a for a in starts if len(set(range(a, a + w)) & set(range(s, e + 1))) >= 2]
    outside = [a for a in starts if a + w - 1 < s or a > e]
    if not inside or not outside:
        return []
    t = target_object(sample)
    q = f"Is there {sample['query']} in this video?"
    named = dict(size=t["size"], colour=t["colour"], shape=t["shape"], action=t["action"])
    if rng.random() < 0.5:
        q = f"Is there {describe(None, t['colour'], None, t['action'], article='a')} in this video?"
        named.update(size=None, shape=None)
    objects = sample["objects"]
    outside = [a for a in outside if not any(matches(o, **named) and acts_in(o, a, a + w - 1) for o in objects)]
    if not outside:
        return []
    hard = [a for a in outside if any(o["colour"] == t["colour"] and acts_in(o, a, a + w - 1) for o in objects)]
    if hard and hard_negatives > 0 and rng.random() < hard_negatives:
        outside = hard
    a, b = int(rng.choice(inside)), int(rng.choice(outside))
    return [(a, frames[a:a + w], q, True), (b, frames[b:b + w], q, False)]


def _batch(seeds, split, rungs, per_answer, rng, still_frames=True, window_share=0.0, mix=QuestionMix(),
           still=None, standing_pairs=0.0, crowded_colour=0.0, hard_negatives=0.0):
    """Clips (one rung each, drawn from ``rungs``) and their balanced yes/no questions; ``still``: the
    frames the look rungs see (default :data:`STILL_FRAMES`); ``standing_pairs``: the share of the action
    rung's clips replaced by a :func:`_standing_pair` (two windows, one question each; ``hard_negatives`` passed on); ``crowded_colour``:
    the share of the colour rung's clips drawn as crowded as the action rung's, 8 or 20 frames
    (:data:`CROWDED_FRAMES`), where two colours side by side must not answer for a third; ``mix``: how the
    questions are drawn (:class:`~stvg_ros.synthetic.questions.QuestionMix`)."""
    still = STILL_FRAMES if still is None else still
    pixels, grids, questions, labels, clips, qrungs = [], [], [], [], [], []
    for seed in seeds:
        rung = rungs[int(rng.integers(len(rungs)))]
        if still_frames and rung == "action" and standing_pairs > 0 and rng.random() < standing_pairs:
            pair = _standing_pair(int(seed), split, rng, hard_negatives)
            for _, frames, q, a in pair:
                px, grid = frames_to_pixels(frames)
                pixels.append(px)
                grids.append(grid)
                questions.append(q)
                labels.append(0 if a else 1)
                clips.append(len(grids) - 1)
                qrungs.append(rung)
            if pair:
                continue
        c = len(grids)
        crowded = still_frames and rung == "colour" and crowded_colour > 0 and rng.random() < crowded_colour
        frames, sample = generate_sample(int(seed), split,
                                         num_distractors=DISTRACTORS["action" if crowded else rung])
        objects = sample["objects"]
        choices = CROWDED_FRAMES if crowded else still.get(rung)
        count = int(rng.choice(choices[0], p=choices[1])) if choices else 0
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
        for q, a, r in clip_questions(objects, [rung], per_answer, rng, split, mix):
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
        device = next(model.parameters()).device
        out = {}
        for r in rungs:
            px, grid, qs, labels, clips, _ = self.per_rung[r]
            logits = yes_no_logits(model, prompts, px.to(device), grid.to(device), qs, clips,
                                   seconds_per_slot=SECONDS_PER_SLOT[-1])
            pred = logits.argmax(-1).cpu()
            out[r] = {"acc": float((pred == labels).float().mean()), "pred_yes": float((pred == 0).float().mean())}
        model.train()
        return out


def _rungs_drawn(rungs, rung: int) -> list[str]:
    """The rungs a step's clips are drawn from, up to the current one: the current rung gets most of them (as many
    entries as all the active rungs together), earlier rungs stay in the mix."""
    active = list(rungs[: rung + 1])
    return [active[-1]] * len(active) + active


class BatchStream(torch.utils.data.IterableDataset):
    """Training batches made by data worker processes (``--workers``), so that a GPU is not left waiting
    for the CPU generator (≈50-70 ms per clip and core, measured on the shared 2-core machine).

    Each worker draws its own seeds (``[seed, worker id]``) and reads the ladder's current rung from
    shared memory (``rung``, set by the training loop), so a climb reaches the batches a few steps later
    (those already queued).  ``torch.utils.data.DataLoader`` moves the tensors through shared memory.
    ``options``: :func:`_batch`'s (the training loop's own batches take the same)."""

    def __init__(self, rung, rungs, seed, clips_per_step, per_answer, **options):
        self.rung, self.rungs, self.seed, self.per_answer = rung, rungs, seed, per_answer
        self.kw = options
        self.clips_per_step = clips_per_step

    def __iter__(self):
        import cv2

        cv2.setNumThreads(1)
        torch.set_num_threads(1)
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, 11, info.id if info else 0])
        while True:
            drawn = _rungs_drawn(self.rungs, self.rung.value)
            seeds = rng.integers(0, 2**31 - 1, size=self.clips_per_step)
            px, grid, qs, labels, clips, _ = _batch(seeds, "train", drawn, self.per_answer, rng, **self.kw)
            yield px, grid, qs, labels, clips, float(rng.choice(SECONDS_PER_SLOT))


def _evaluation_set(pending: dict, split: str, clips: int, seed: int) -> "ValSet":
    """The evaluation set a background process built, or built here if that process failed."""
    try:
        return pending[split].result()
    except Exception as e:  # noqa: BLE001 - the same set, made in this process
        print(f"building the {split} set in the background failed ({type(e).__name__}: {e}); building it here")
        return ValSet(split, clips, seed)


def _data_loader(stream: BatchStream, workers: int, pin: bool):
    # a whole-clip batch of 48 is ~144 MB of float32 patches: 2 per worker in flight bounds the shared memory
    return iter(torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers, prefetch_factor=2,
                                            persistent_workers=True, pin_memory=pin))


def train(out: str, minutes: float, seed: int = 0, clips_per_step: int = 8, per_answer: int = 2,
          lr: float = 2e-4, vision_lr: float = 2e-4, advance_at: float = 0.85, eval_every: int = 100,
          val_clips: int = 32, threads: int = 2, start_rung: int = 0, init: str | None = None,
          rungs: tuple[str, ...] = RUNGS, dims: dict | None = None, tail: int = 6,
          motion_prior: bool = True, compact_motion: bool = False, action_windows: float = 0.0,
          freeze_motion: bool = False, colour_action: float = 0.0, conjunctive_motion: bool = False,
          device: str = "cpu", max_minutes: float | None = None, workers: int = 0, eval_seconds: float = 0.0,
          still: str = "cpu", recipe: str = "cpu", standing_pairs: float = 0.0, crowded_colour: float = 0.0,
          hard_negatives: float = 0.0, contrast_actions: float = 0.0, size_questions: float = 0.0,
          train_only: str = "all", shape_prior: bool = False) -> dict:
    """Run the ladder for ``minutes`` of wall-clock time and save the model directory to ``out``.

    ``max_minutes``: a hard limit on the whole call (building, data, steps, evaluations, checkpoints, the
    final evaluation and the files): a step, with the evaluation and checkpoint due after it, starts only
    if it and the final evaluation are expected to fit (:class:`stvg_ros.synthetic.budget.TimeBudget`, from the
    largest duration seen of each).  ``device``: where the model trains; ``workers``: data worker
    processes (:class:`BatchStream`); ``eval_seconds``: evaluate every so many seconds instead of every
    ``eval_every`` steps; ``still``: ``"gpu"`` shows the look rungs longer clips (:data:`STILL_FRAMES_GPU`);
    ``train_only``: ``"readout"`` trains only :func:`~stvg_ros.synthetic.model.readout_parameters` (every
    attention weight, and so the grounding's maps, stays the init's); ``shape_prior``: the hand-set shape pathway
    (:func:`~stvg_ros.synthetic.model.init_shape_pathway`).
    """
    from tqdm import tqdm

    from stvg_ros.synthetic.budget import TimeBudget

    hard = TimeBudget(max_minutes * 60.0, margin=1.25) if max_minutes else None
    if (freeze_motion or conjunctive_motion) and not motion_prior:
        raise ValueError("--freeze-motion and --conjunctive-motion need the motion prior: drop --no-motion-prior")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device is visible to torch; train on the CPU (--device cpu) "
                             "or check the driver and the CUDA build of torch")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    still_frames = STILL_FRAMES_GPU if still == "gpu" else STILL_FRAMES
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model, tok = build_model(seed, dims, motion_prior=motion_prior, compact_motion=compact_motion,
                             conjunctive_motion=conjunctive_motion, shape_prior=shape_prior)
    if init:
        # through from_pretrained: the checkpoint's names are the saved layout (transformers renames them on save),
        # and strict, so that a directory of another architecture fails here instead of training from scratch
        model.load_state_dict(type(model).from_pretrained(str(init)).state_dict(), strict=True)
    batch_options = dict(window_share=action_windows, mix=QuestionMix(colour_action, contrast_actions, size_questions),
                         still=still_frames, standing_pairs=standing_pairs, crowded_colour=crowded_colour,
                         hard_negatives=hard_negatives)
    stream = pending = None
    if workers > 0:
        # data workers and the two evaluation sets start before CUDA does (they fork) and run beside training
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        shared_rung = mp.Value("i", start_rung)
        stream = _data_loader(BatchStream(shared_rung, rungs, seed, clips_per_step, per_answer, **batch_options),
                              workers, pin=dev.type == "cuda")
        pool = ProcessPoolExecutor(max_workers=2, mp_context=mp.get_context("fork"))
        pending = {"val": pool.submit(ValSet, "val", val_clips, seed), "test": pool.submit(ValSet, "test", val_clips, seed + 1)}
        pool.shutdown(wait=False)
    model.to(dev)
    model.train()
    params = dict(model.named_parameters())
    # the hand-set motion pathway held at its initial values (motion_pathway_masks says why)
    frozen = {n: (m, params[n].detach()[m].clone())
              for n, m in motion_pathway_masks(model, tok, compact_motion).items()} if freeze_motion else {}
    prompts = PromptBuilder(tok, num_visual_tokens=160)
    if train_only not in ("all", "readout"):
        raise ValueError(f"train_only={train_only!r}: use 'all' or 'readout'")
    trained = readout_parameters(model) if train_only == "readout" else set(params)
    for n, p in params.items():
        p.requires_grad_(n in trained)
    vision = [p for n, p in params.items() if n in trained and n.startswith("model.visual.")]
    other = [p for n, p in params.items() if n in trained and not n.startswith("model.visual.")]
    opt = torch.optim.AdamW([g for g in ({"params": vision, "lr": vision_lr}, {"params": other, "lr": lr})
                             if g["params"]], weight_decay=0.01, betas=(0.9, 0.98))
    base_lrs = [g["lr"] for g in opt.param_groups]
    if pending is None:
        t_val = time.time()
        val = ValSet("val", val_clips, seed)
        if hard is not None:
            hard.record("valset", time.time() - t_val)  # the test set, built at the end, costs the same
    else:
        val = None
    budget = minutes * 60.0
    t0 = time.time()
    log: list[dict] = []
    rung = start_rung
    rung_started = 0.0
    step = 0
    ema = None
    stopped_by = "minutes"
    data_error = None
    last_eval = t0
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)

    def step_cost() -> float:  # the first step (CUDA and data-worker start-up) is no guide to the others
        return hard.expect("step", hard.expect("first_step"))

    def eval_rung_cost() -> float:
        """One rung's evaluation; before one was measured (the first step only), a step per step's clips:
        forward only and half the questions per clip, but whole clips (about twice a training clip's tokens)."""
        return hard.expect("eval_rung", step_cost() * val_clips / clips_per_step)

    def final_cost() -> float:
        """Expected seconds of the final evaluation (val and test, every rung), the test set and the files."""
        return 2 * eval_rung_cost() * len(rungs) + hard.expect("save", 2.0) + hard.expect("valset") + 1.0

    bar = tqdm(total=int(budget), unit="s", desc="train", mininterval=5)
    while True:
        elapsed = time.time() - t0
        if elapsed >= budget:
            break
        horizon = budget
        if hard is not None:
            horizon = max(1e-3, min(budget, elapsed + hard.left() - final_cost()))
            # with a hard limit the first evaluation follows the first step: its cost, and the checkpoint's,
            # are then measured, not guessed, long before the final evaluation has to fit
            due = step == 0 or ((time.time() - last_eval >= eval_seconds) if eval_seconds else (step + 1) % eval_every == 0)
            need = step_cost() + final_cost()
            if due:
                need += eval_rung_cost() * len(rungs[: rung + 2]) + hard.expect("save", 2.0)
            if not hard.fits(need):
                stopped_by = "max_minutes"
                break
        t_step = time.time()
        frac = min(1.0, elapsed / horizon)
        warm = min(1.0, (step + 1) / 50)
        decay = 1.0 if frac < 0.75 else 0.5 * (1 + math.cos(math.pi * (frac - 0.75) / 0.25))
        for g, base in zip(opt.param_groups, base_lrs):
            g["lr"] = base * warm * max(decay, 0.05)
        batch = None
        if stream is not None:
            try:
                batch = next(stream)
            except Exception as e:  # noqa: BLE001 - e.g. no shared memory for the workers: go on without them
                data_error = f"{type(e).__name__}: {str(e)[:300]}"
                tqdm.write(f"data workers failed ({data_error}); making batches in this process from now on")
                stream = None
        if batch is not None:
            px, grid, qs, labels, clips, seconds = batch
        else:
            drawn = _rungs_drawn(rungs, rung)
            seeds = rng.integers(0, 2**31 - 1, size=clips_per_step)
            px, grid, qs, labels, clips, _ = _batch(seeds, "train", drawn, per_answer, rng, **batch_options)
            # the grounder may or may not pass frame times to the adapter: 0.4 s per slot (this world's
            # 5 fps) or the processor's default 1 s; train on both so rotary time positions match either
            seconds = float(rng.choice(SECONDS_PER_SLOT))
        if dev.type != "cpu":
            px, grid, labels = (px.to(dev, non_blocking=True), grid.to(dev, non_blocking=True),
                                labels.to(dev, non_blocking=True))
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
        if hard is not None:
            hard.record("step" if step > 1 else "first_step", time.time() - t_step)
        bar.update(int(time.time() - t0) - bar.n)
        bar.set_postfix(step=step, rung=rungs[rung], loss=f"{ema[0]:.3f}", acc=f"{ema[1]:.2f}", yes=f"{pred_yes:.2f}",
                        refresh=False)
        if (hard is not None and step == 1) or (
                (time.time() - last_eval >= eval_seconds) if eval_seconds else step % eval_every == 0):
            t_eval = time.time()
            if val is None:
                val = _evaluation_set(pending, "val", val_clips, seed)
            evaluated = rungs[: rung + 2]
            res = val.evaluate(model, prompts, evaluated)
            if hard is not None:
                hard.record("eval_rung", (time.time() - t_eval) / len(evaluated))
            last_eval = time.time()
            log.append({"step": step, "time": round(time.time() - t0, 1), "val": res, "rung": rungs[rung]})
            tqdm.write(f"step {step} t={time.time() - t0:.0f}s rung={rungs[rung]} "
                       + " ".join(f"{r}:{v['acc']:.2f}(yes {v['pred_yes']:.2f})" for r, v in res.items()))
            # climb when the current rung is answered well, or when its share of the budget is spent
            share = horizon * 0.6 / len(rungs)
            if rung + 1 < len(rungs) and (res[rungs[rung]]["acc"] >= advance_at or ema[1] >= advance_at
                                         or time.time() - t0 - rung_started > share):
                rung += 1
                rung_started = time.time() - t0
                if stream is not None:
                    shared_rung.value = rung
                tqdm.write(f"-> rung {rungs[rung]}")
            t_save = time.time()
            draw_curve(log, out_dir / "training_curve.png")
            save_model_dir(model, tok, out_dir)  # a usable checkpoint at every evaluation
            if hard is not None:
                hard.record("save", time.time() - t_save)
    bar.close()
    train_s = time.time() - t0
    if val is None:
        val = _evaluation_set(pending, "val", val_clips, seed)
    final = {"val": val.evaluate(model, prompts, rungs)}
    test = ValSet("test", val_clips, seed + 1) if pending is None else _evaluation_set(pending, "test", val_clips, seed + 1)
    final["test"] = test.evaluate(model, prompts, rungs)
    summary = {"steps": step, "minutes": round((time.time() - t0) / 60, 1), "seed": seed, "threads": threads,
               "clips_per_step": clips_per_step, "questions_per_clip": 2 * per_answer, "lr": lr,
               "vision_lr": vision_lr, "final": final, "reached_rung": rungs[rung], "rungs": list(rungs),
               "motion_prior": motion_prior, "compact_motion": compact_motion,
               "action_windows": action_windows, "freeze_motion": freeze_motion,
               "colour_action": colour_action, "conjunctive_motion": conjunctive_motion}
    if shape_prior:
        summary["shape_prior"] = True
    if standing_pairs:
        summary["standing_pairs"] = standing_pairs
        summary["standing_no"] = "nothing named acts"  # the no window's rule since session 26 (the card says which)
    if crowded_colour:
        summary["crowded_colour"] = crowded_colour
    if hard_negatives:
        summary["hard_negatives"] = hard_negatives
    if contrast_actions:
        summary["contrast_actions"] = contrast_actions
    if size_questions:
        summary["size_questions"] = size_questions
    if train_only != "all":
        summary["train_only"] = train_only
    if init:
        summary["init"] = str(init)
        earlier = Path(init) / "synthetic_training.json"
        if earlier.is_file():  # the run this one continued (and so on back): the card lists every stage
            summary["init_from"] = json.loads(earlier.read_text())
    if start_rung:
        summary["start_rung"] = start_rung
    # what the GPU recipe added (the CPU recipe's keys above are unchanged)
    summary.update(recipe=recipe, device=str(dev), dims=dict(MODEL_DIMS, **(dims or {})), workers=workers,
                   val_clips=val_clips, still_frames=still, train_minutes=round(train_s / 60, 2),
                   clips_seen=step * clips_per_step, stopped_by=stopped_by)
    if data_error:
        summary["data_workers_error"] = data_error
    if dev.type == "cuda":
        summary["gpu"] = torch.cuda.get_device_name(dev)
    if hard is not None:
        summary["max_minutes"] = max_minutes
    log.append({"step": step, "time": round(time.time() - t0, 1), "val": final["val"], "rung": rungs[rung]})
    draw_curve(log, out_dir / "training_curve.png")
    summary["params"] = sum(p.numel() for p in model.parameters())
    if hard is not None:
        summary["budget"] = hard.summary()  # before the last files: their cost was reserved
        summary["wall_minutes"] = round(hard.elapsed() / 60, 2)
    save_model_dir(model, tok, out_dir, extra=summary)

    write_model_card(out_dir, summary, summary["params"],
                     sum(f.stat().st_size for f in out_dir.glob("*.safetensors")))
    (out_dir / "training_log.jsonl").write_text("\n".join(json.dumps(e) for e in log) + "\n")
    if hard is not None:
        summary["wall_minutes"] = round(hard.elapsed() / 60, 2)
        (out_dir / "synthetic_training.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=1))
    return summary


#: recipe values → the command-line options they set (``--recipe gpu``, ``--dry-run``)
_OPTION = {"clips_per_step": "clips"}


def _option_defaults(recipe: dict) -> dict:
    out = {}
    for key, value in recipe.items():
        if key == "dims":
            value = json.dumps(value)
        elif key == "rungs":
            value = ",".join(value)
        out[_OPTION.get(key, key)] = value
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--recipe", choices=("cpu", "gpu"), default="cpu",
                   help="option defaults: 'cpu' (the shipped model's machine) or 'gpu' (GPU_RECIPE: a larger model, "
                        "every rung, 48 clips per step, data workers, at most 6 minutes); options given win")
    p.add_argument("--dry-run", action="store_true",
                   help="the recipe's code on CPU with a tiny model, 2 data workers and a 21 s limit (CI)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--minutes", type=float, default=None,
                   help="wall-clock training budget (default 60, or --max-minutes when that is given)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="hard limit on the whole command, the final evaluation and the files included: each step, "
                        "evaluation and checkpoint starts only if it is expected to fit (GPU recipe: 6)")
    p.add_argument("--workers", type=int, default=0,
                   help="data worker processes making batches beside training (GPU recipe: CPUs - 2, at most 14)")
    p.add_argument("--eval-seconds", type=float, default=0.0,
                   help="evaluate on validation every so many seconds instead of every --eval-every steps")
    p.add_argument("--val-clips", type=int, default=32, help="validation (and test) clips per rung")
    p.add_argument("--still", choices=("cpu", "gpu"), default="cpu",
                   help="frames the look rungs see: 'cpu' mostly 2, 'gpu' mostly whole clips")
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
    p.add_argument("--standing-pairs", type=float, default=0.0, metavar="SHARE",
                   help="replace this share of the action rung's clips by two 8-frame windows of a 48-frame stream, "
                        "one inside the target's action (yes) and one outside it (no), asked the same query: "
                        "what a standing query asks")
    p.add_argument("--crowded-colour", type=float, default=0.0, metavar="SHARE",
                   help="draw this share of the colour rung's clips as crowded as the action rung's, 8 or 20 frames "
                        "(the colour rung's clips are otherwise nearly empty and mostly 2 frames): colour answers "
                        "on the scenes standing queries and the memory show")
    p.add_argument("--hard-negatives", type=float, default=0.0, metavar="SHARE",
                   help="with --standing-pairs: this share of pairs takes its no from a window where an object of the "
                        "target's colour acts (another action, or the same on another look), where there is one")
    p.add_argument("--contrast-actions", type=float, default=0.0, metavar="SHARE",
                   help="this share of the action rung's no questions swaps the object's action for one the model "
                        "confuses with it (questions.CONFUSABLE: the opposite direction, a jump for a vertical move)")
    p.add_argument("--size-questions", type=float, default=0.0, metavar="SHARE",
                   help="this share of questions also names the object's size, their no swapping it ('a big red "
                        "shape' where the red one is small): the standing queries name sizes")
    p.add_argument("--train-only", choices=("all", "readout"), default="all",
                   help="'readout': train only what the last decoder layer does after its attention weights (value "
                        "and output projections, MLP, norms, LM head), so every attention map the grounding reads "
                        "stays the init's")
    p.add_argument("--shape-prior", action="store_true",
                   help="hand-set a shape pathway in the tower: how k-fold symmetric each token's edges are (k = 1-6), "
                        "on directions of the decoder's space (model.init_shape_pathway)")
    p.add_argument("--dims", default=None, help='JSON overrides of the model sizes, e.g. {"lm_layers": 2}')
    known, _ = p.parse_known_args(argv)
    defaults = {}
    if known.recipe == "gpu":
        import os

        defaults.update(_option_defaults(GPU_RECIPE), workers=min(14, max(0, (os.cpu_count() or 2) - 2)))
    if known.dry_run:
        defaults.update(_option_defaults(DRY_RUN))
    p.set_defaults(**defaults)
    a = p.parse_args(argv)
    if a.dry_run:
        a.device = "cpu"  # the dry run proves the code path on the CPU, whatever else was asked
    minutes = a.minutes if a.minutes is not None else (a.max_minutes or 60.0)
    train(a.out, minutes, a.seed, clips_per_step=a.clips, lr=a.lr, vision_lr=a.vision_lr,
          eval_every=a.eval_every, val_clips=a.val_clips, threads=a.threads, start_rung=a.start_rung, init=a.init,
          rungs=tuple(a.rungs.split(",")), dims=json.loads(a.dims) if a.dims else None, tail=a.tail,
          motion_prior=not a.no_motion_prior, compact_motion=a.compact_motion,
          action_windows=a.action_windows, freeze_motion=a.freeze_motion,
          colour_action=a.colour_action, conjunctive_motion=a.conjunctive_motion,
          device=a.device, max_minutes=a.max_minutes, workers=a.workers, eval_seconds=a.eval_seconds,
          still=a.still, recipe=a.recipe, standing_pairs=a.standing_pairs, crowded_colour=a.crowded_colour,
          hard_negatives=a.hard_negatives, contrast_actions=a.contrast_actions, size_questions=a.size_questions,
          train_only=a.train_only, shape_prior=a.shape_prior)


if __name__ == "__main__":
    main()
