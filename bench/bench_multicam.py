#!/usr/bin/env python3
"""Several cameras, one model (issue 32): what a query to all cameras costs, and whether it names the right camera.

A synthetic multi-camera scene: ``--cameras`` N streams, each one clip of the synthetic world
(:mod:`stvg_ros.synthetic.generator`); the query is one clip's target description, that clip plays on one
camera (a different one per scene, in turn) and the other cameras play clips of the same split in which no
object matches the description (their objects share colours, shapes or actions: distractors).  Every clip is
ingested into its stream of a :class:`stvg_ros.stream.multi.MultiStreamService` serving the shipped model
(``models/stvg-synth-qwen``), one grounder for all.

* **which camera**: the query to all (``stream=""``) answers with the best camera (``found``, then ``p_yes``).
  Counted where the single-stream method finds the target: the target camera's own answer (its entry in
  ``per_stream``: the same frames and grounder as a one-stream service) says ``found``.  Mean with a 95 %
  bootstrap CI; the rules of :data:`CAMERA_RULES` (from each camera's answer and :func:`judgments`, one extra
  pass per camera) with paired differences against the service's rank, to be chosen on ``--split val``.
* **cost**: on the first ``--cost-scenes`` scenes, the CPU time (``time.process_time``, this process) of the
  query to all against N separate queries (one per camera, ``stream=name``) on the same streams, and of the
  query to all with the question's text shared across clips (the adapter's ``use_text_prefix_cache``) against
  without it, and with the cameras' clips grounded one at a time (``batch_streams`` off, the default) against
  batched (every other case), run interleaved (order rotated) after one untimed warm-up; groundings, decoder calls, decoded
  positions and the model passes' CPU (:class:`ModelCPU`) apart from the CPU stages (the rest).

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python bench/bench_multicam.py              # ~3-4 min CPU
    .venv/bin/python bench/bench_multicam.py --quick                                       # CI, ~15 s
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's stvg_ros, and `bench` as a package

from bench._util import machine, table, write_json  # noqa: E402
from bench.standing_contrast import questions as action_questions  # noqa: E402
from bench.standing_false_causes import CAUSES, what_acts  # noqa: E402
from stvg_ros.synthetic.generator import ACTIONS  # noqa: E402

NS = 1_000_000_000
SHIPPED = "models/stvg-synth-qwen"
CLIP_FRAMES = 16
MODEL_FRAMES = 8  # the shipped model was trained on 6-10 frame windows
FPS = 5.0


#: the cost case "a query to all with the text-prefix cache off" (what sharing the question's KV saves)
NOT_SHARED = "all (text not shared)"  # the adapter's default; "all" and "separate" are timed with it on
#: the cost case "a query to all with the clips grounded one at a time" (``batch_streams`` off: what batching the
#: cameras' clips in one pass saves; every other cost case runs batched)
NOT_BATCHED = "all (clips not batched)"

#: other rules for "which camera" computed from the same answers (the service ranks by found, then p_yes,
#: i.e. by p_yes): a comparison, chosen between on the val split only
RULES = {"p_yes (the service's rank)": lambda p, s: p, "spatial score": lambda p, s: s,
         "p_yes x score": lambda p, s: p * s}


def load_grounder(model: str):
    from stvg_ros.config import GroundingConfig
    from stvg_ros.stack import load_model

    torch.set_num_threads(1)
    return load_model(model, GroundingConfig(num_frames=MODEL_FRAMES, decomposer="rules", device="cpu")).grounder


def absent_clip(target: dict, split: str, seed: int) -> tuple[np.ndarray, dict]:
    """The first clip from ``seed`` on whose objects none matches ``target``'s full description."""
    from stvg_ros.synthetic.generator import generate_sample, matches

    while True:
        frames, sample = generate_sample(seed, split, num_frames=CLIP_FRAMES)
        if not any(matches(o, target["size"], target["colour"], target["shape"], target["action"])
                   for o in sample["objects"]):
            return frames, sample
        seed += 1


KINDS = ("size", "colour", "shape", "action")


def closest(target: dict, sample: dict) -> int:
    """How many of the target's four attributes (size, colour, shape, action) the clip's closest object shares."""
    return max(sum(o[k] == target[k] for k in KINDS) for o in sample["objects"])


def scene(k: int, cameras: list[str], split: str) -> tuple[str, str, dict[str, np.ndarray], dict[str, int],
                                                           dict[str, str]]:
    """Scene ``k``: (query, the target's camera, camera → clip, other camera → :func:`closest`, other camera →
    what of the target's colour acts in its clip (:func:`bench.standing_false_causes.what_acts`))."""
    from stvg_ros.synthetic.generator import generate_sample, target_object

    frames, sample = generate_sample(k, split, num_frames=CLIP_FRAMES)
    where = cameras[k % len(cameras)]
    target = target_object(sample)
    clips, near, acts, other = {}, {}, {}, 100_000 + 97 * k
    for name in cameras:
        if name == where:
            clips[name] = frames
        else:
            clips[name], s = absent_clip(target, split, other)
            near[name] = closest(target, s)
            acts[name] = what_acts(s["objects"], target, 0, CLIP_FRAMES - 1)
            other = s["seed"] + 1
    return sample["query"], where, clips, near, acts


def logit(p: float) -> float:
    p = min(max(float(p), 1e-6), 1 - 1e-6)
    return float(np.log(p / (1 - p)))


#: "which camera" rules computed from each camera's answer and the judgments of :func:`judgments` (higher =
#: better; ``f`` a camera's features): compared on the val split, the best reported on test against the
#: service's rank (``found``, then ``p_yes``)
CAMERA_RULES = {
    "found, p_yes (the service's rank)": lambda f: (f["found"], f["p_yes"]),
    "p_yes": lambda f: f["p_yes"],
    "logit p_yes - logit p(neutral)": lambda f: logit(f["p_yes"]) - logit(f["p_neutral"]),
    "min(p_yes, p_attribute, p_action)": lambda f: min(f["p_yes"], f["p_attribute"], f["p_action"]),
    "sum of logits (full, attribute, action)": lambda f: logit(f["p_yes"]) + logit(f["p_attribute"])
    + logit(f["p_action"]),
    "sum of logits (full, attr, action) - 3 logit p(neutral)": lambda f: logit(f["p_yes"])
    + logit(f["p_attribute"]) + logit(f["p_action"]) - 3 * logit(f["p_neutral"]),
    "min(p_attribute, p_action)": lambda f: min(f["p_attribute"], f["p_action"]),
    "p_yes x track concentration": lambda f: f["p_yes"] * f["concentration"],
    "p_yes x mean frame relevance in the tube": lambda f: f["p_yes"] * f["frame_relevance"],
    "found, then sum of logits (full, attribute, action)": lambda f: (
        f["found"], logit(f["p_yes"]) + logit(f["p_attribute"]) + logit(f["p_action"])),
    "p_yes on the tube's frames": lambda f: f["p_tube"],
    "logit p_yes + logit p_yes on the tube's frames": lambda f: logit(f["p_yes"]) + logit(f["p_tube"]),
    "max(p_yes, p_yes on the tube's frames)": lambda f: max(f["p_yes"], f["p_tube"]),
    "max p_yes over consecutive-frame windows": lambda f: max(f["p_windows"]),
    "found, then max p_yes over windows": lambda f: (f["found"], max(f["p_windows"])),
    "logit p_yes + max window logit": lambda f: logit(f["p_yes"]) + max(logit(p) for p in f["p_windows"]),
    "mean p_yes over windows": lambda f: float(np.mean(f["p_windows"])),
    "action contrast: logit p(query) - logsumexp of the other actions'": lambda f: action_contrast(f),
    "found, then action contrast": lambda f: (f["found"], action_contrast(f)),
}


def action_contrast(f: dict) -> float:
    """The query's yes-logit against the same description doing each other action of the synthetic world (its
    yes-logit minus the log-sum-exp of theirs, on the same frames, no latent prompt): is it *this* action the model
    sees?  A query without one of the world's actions gives its plain logit."""
    logits = f.get("action_logits")
    if not logits:
        return logit(f["p_yes"])
    own, others = logits[f["action_index"]], [x for i, x in enumerate(logits) if i != f["action_index"]]
    m = max(others)
    return own - (m + float(np.log(sum(np.exp(x - m) for x in others))))

#: the windows of the window rules: WINDOW consecutive frames every WINDOW_STEP frames (the shipped model's
#: standing pairs were 8-frame windows of consecutive generator frames: what a standing query asks)
WINDOW, WINDOW_STEP = 8, 4

#: the fewest frames the question on the tube's frames sees (the shipped model was trained on 6-10 frame windows)
TUBE_WINDOW = 6

#: the neutral question of the contrast rule: the synthetic world's every clip holds shapes
NEUTRAL = "a shape"


def judgments(grounder, answer) -> dict:
    """A camera's features for :data:`CAMERA_RULES`: its answer's ``found``, ``p_yes``, ``score``, the chosen
    track's share of all tracks' spatial scores (``concentration``), the tube's mean per-frame relevance, and
    p(yes) of the query's DSTH halves (attribute, action: the grounder's own sub-questions) and of a neutral
    question, on the same sampled frames, no latent prompt (one extra forward pass of 3 prompts)."""
    from stvg_ros.grounding.grounder import format_question, sample_indices
    from stvg_ros.grounding.lra import yes_probability

    r = answer.result
    stamps = [f.stamp for f in answer.frames]
    idx = sample_indices(len(stamps), grounder.config.num_frames, stamps)
    adapter = grounder.adapter
    with torch.no_grad():
        visual = adapter.encode_frames([answer.frames[i].image for i in idx], stamps=[stamps[i] for i in idx])
        questions = [grounder._sub_question(r.sub_queries.attribute, r.query),
                     grounder._sub_question(r.sub_queries.action, r.query),
                     format_question(grounder.config.question_template, NEUTRAL)]
        p = yes_probability(adapter.run(visual, questions).yes_no_logits).tolist()
        # the query with its action swapped for each of the world's actions (the action contrast rule)
        try:
            swapped, action_index = action_questions(r.query)
        except ValueError:
            swapped, action_index = [], -1
        action_logits = []
        if swapped:
            yn = adapter.run(visual, [format_question(grounder.config.question_template, q)
                                      for q in swapped[:len(ACTIONS)]]).yes_no_logits.float()
            action_logits = (yn[:, 0] - yn[:, 1]).tolist()
        # the query asked again on the frames of the answer's span, widened to TUBE_WINDOW frames around it
        inside = [i for i, t in enumerate(stamps) if r.start - 1e-6 <= t <= r.end + 1e-6] or [len(stamps) - 1]
        a, b = inside[0], inside[-1]
        while b - a + 1 < min(TUBE_WINDOW, len(stamps)):
            a, b = (a - 1, b) if (b - a) % 2 and a > 0 or b == len(stamps) - 1 else (a, b + 1)
        tube = list(range(a, b + 1))
        if len(tube) > grounder.config.num_frames:
            tube = [tube[i] for i in sample_indices(len(tube), grounder.config.num_frames)]
        seen = adapter.encode_frames([answer.frames[i].image for i in tube], stamps=[stamps[i] for i in tube])
        p_tube = float(yes_probability(adapter.run(seen, [format_question(grounder.config.question_template,
                                                                          r.query)]).yes_no_logits)[0])
        # the query asked on each window of consecutive frames (the frames a standing query sees)
        starts = list(range(0, max(1, len(stamps) - WINDOW + 1), WINDOW_STEP))
        if starts[-1] + WINDOW < len(stamps):
            starts.append(len(stamps) - WINDOW)
        p_windows = []
        for s0 in starts:
            w = list(range(s0, min(len(stamps), s0 + WINDOW)))
            v = adapter.encode_frames([answer.frames[i].image for i in w], stamps=[stamps[i] for i in w])
            p_windows.append(float(yes_probability(adapter.run(v, [format_question(
                grounder.config.question_template, r.query)]).yes_no_logits)[0]))
    scores = [max(0.0, float(v)) for v in r.track_scores.values()]
    return dict(found=bool(r.found), p_yes=float(r.p_yes), score=float(r.score), p_attribute=p[0], p_action=p[1],
                p_neutral=p[2], concentration=(max(0.0, float(r.score)) / sum(scores)) if sum(scores) > 0 else 0.0,
                frame_relevance=float(np.mean(r.frame_scores)) if r.frame_scores else 0.0, p_tube=p_tube,
                p_windows=p_windows, action_logits=[round(x, 4) for x in action_logits], action_index=action_index)


def serve(grounder, cameras: list[str], clips: dict[str, np.ndarray]):
    from stvg_ros.config import ServingConfig
    from stvg_ros.stream.multi import MultiStreamService

    svc = MultiStreamService(cameras, ServingConfig(window_rate=0.0, window_duration=100.0,
                                                    window_max_frames=CLIP_FRAMES, ingest_max_side=0))
    svc.start(grounder, threaded=False)
    for c, name in enumerate(cameras):  # each camera its own clock
        t0 = (10 + 100 * c) * NS
        for i, frame in enumerate(clips[name]):
            svc.ingest(name, t0 + int(i * NS / FPS), lambda f=frame: f, f"{name}_optical_frame")
    return svc


class Calls:
    """Counts the grounder's calls (model passes of a query: one grounding per clip)."""

    def __init__(self, grounder):
        self.grounder, self.n = grounder, 0

    def __getattr__(self, name):
        return getattr(self.grounder, name)

    def ground(self, *a, **kw):
        self.n += 1
        return self.grounder.ground(*a, **kw)

    def ground_many(self, clips, *a, **kw):
        self.n += len(clips)
        return self.grounder.ground_many(clips, *a, **kw)


class ModelCPU:
    """What the model passes cost: this thread's CPU inside the adapter's outermost ``run``/``encode_frames``/
    ``encode_reversed`` calls (the rest of a query's CPU is the CPU stages), the decoder's calls and the
    token positions they decoded (batch x length)."""

    def __init__(self, adapter):
        self.cpu, self.decodes, self.positions, self._depth = 0.0, 0, 0, 0
        for name in ("run", "encode_frames", "encode_reversed"):
            setattr(adapter, name, self._timed(getattr(adapter, name)))
        decode = adapter._decode

        def counted(embeds, *a, **kw):
            self.decodes += 1
            self.positions += int(embeds.shape[0]) * int(embeds.shape[1])
            return decode(embeds, *a, **kw)

        adapter._decode = counted

    def _timed(self, fn):
        def timed(*a, **kw):
            self._depth += 1
            t = time.thread_time()
            try:
                return fn(*a, **kw)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self.cpu += time.thread_time() - t
        return timed

    def snapshot(self) -> tuple[float, int, int]:
        return self.cpu, self.decodes, self.positions


def ask(svc, requests) -> tuple[list, float]:
    answers: list = []
    t = time.process_time()
    for r in requests:
        svc.submit(r, answers.append)
    svc.run_pending()
    return answers, time.process_time() - t


def text_sharing_real(cameras: int, layers: int, rounds: int = 3) -> dict:
    """The text side shared across clips on a compute-bound decoder: the Qwen2.5-VL-3B widths of
    :mod:`bench.model_configs` (``layers`` decoder and vision layers, random weights, float32) given the shipped
    model's question-first template; one grounding's attention-stage call (4 prompts: question, caption, the two
    DSTH halves; attention captured) on each camera's clip (4 frames at 224 px), with and without sharing,
    interleaved; CPU s of this process."""
    from bench.model_configs import build_real_size
    from stvg_ros.adapters.base import CaptureSpec
    from stvg_ros.adapters.tiny_models import random_frames
    from stvg_ros.synthetic.model import QUESTION_FIRST_TEMPLATE

    a = build_real_size("qwen2.5-vl-3b", torch.device("cpu"), torch.float32,
                        text_overrides=dict(num_hidden_layers=layers),
                        vision_overrides=dict(depth=layers, fullatt_block_indexes=[layers - 1]))
    a.chat_template, a._layout_cache = QUESTION_FIRST_TEMPLATE, {}
    clips = [a.encode_frames(random_frames(4, 224, 224, seed=c), stamps=[0.2 * i for i in range(4)])
             for c in range(cameras)]
    qs = ["Is there the man in red clothes who walks to the door in this video?", "Describe this video in details.",
          "Is there the man in red clothes in this video?", "Is there the man walks to the door in this video?"]
    cpu: dict = {True: [], False: []}
    for r in range(rounds):
        for use in ((True, False) if r % 2 == 0 else (False, True)):
            a.use_text_prefix_cache = use
            a.__dict__.pop("_text_prefixes", None)
            t = time.process_time()
            for v in clips:
                a.run(v, qs, capture=CaptureSpec())
            cpu[use].append(time.process_time() - t)
    b = a.prepare(clips[0], qs)
    text = sum(P for P, _ in a._text_prefix_groups(b))
    return dict(cameras=cameras, layers=layers, visual_tokens=clips[0].num_tokens,
                positions_per_clip=int(sum(b.lengths)), text_positions_per_clip=text,
                shared_cpu_s=statistics.median(cpu[True]), not_shared_cpu_s=statistics.median(cpu[False]))


def main(argv=None) -> int:
    from stvg_ros.stream.requests import ANSWERED, GroundingRequest
    from stvg_ros.synthetic.bench import bootstrap_ci

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=SHIPPED)
    ap.add_argument("--cameras", type=int, default=3)
    ap.add_argument("--scenes", type=int, default=40)
    ap.add_argument("--cost-scenes", type=int, default=4)
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", "--json", dest="out", default=str(ROOT / "bench" / "results" / "multicam.json"))
    ap.add_argument("--quick", action="store_true", help="CI: 2 cameras, 3 scenes, 1 timed")
    ap.add_argument("--text-sharing-real", type=int, default=0, metavar="LAYERS",
                    help="only measure the text shared across --cameras clips on the real widths at LAYERS layers")
    args = ap.parse_args(argv)
    if args.text_sharing_real:
        torch.set_num_threads(1)
        r = text_sharing_real(args.cameras, args.text_sharing_real)
        print(table(["cameras", "decoder layers", "visual tokens per clip", "positions per clip (4 prompts)",
                     "of them text before the video", "CPU s shared", "CPU s not shared", "shared / not shared"],
                    [[r["cameras"], r["layers"], r["visual_tokens"], r["positions_per_clip"],
                      r["text_positions_per_clip"], f"{r['shared_cpu_s']:.2f}", f"{r['not_shared_cpu_s']:.2f}",
                      f"{r['shared_cpu_s'] / r['not_shared_cpu_s']:.3f}"]]))
        write_json(args.out, dict(machine=machine(), args=vars(args), text_sharing_real=r))
        return 0
    if args.quick:
        args.cameras, args.scenes, args.cost_scenes = 2, 3, 1
    cameras = ["front", "rear", "left", "right", "arm", "head"][:args.cameras]
    grounder = Calls(load_grounder(args.model))
    adapter = grounder.grounder.adapter
    model = ModelCPU(adapter)

    rows, cost = [], []
    for k in range(args.scenes):
        query, where, clips, near, acts = scene(k, cameras, args.split)
        svc = serve(grounder, cameras, clips)
        if k < args.cost_scenes:
            if k == 0:
                ask(svc, [GroundingRequest("warm", query)])  # untimed warm-up
            def run(kind):
                # each timed query starts without kept text prefixes: what one query shares across its clips
                adapter.use_text_prefix_cache = kind not in (NOT_SHARED, NOT_BATCHED)
                adapter.__dict__.pop("_text_prefixes", None)
                svc.config = svc.config.replace(batch_streams=kind != NOT_BATCHED)
                if kind == "separate":
                    return ask(svc, [GroundingRequest(f"q-{c}", query, stream=c) for c in cameras])
                return ask(svc, [GroundingRequest("all", query)])

            kinds = ["all", "separate", NOT_SHARED, NOT_BATCHED]
            for kind in kinds[k % 4:] + kinds[:k % 4]:  # interleaved, the order rotated per scene
                before, m0 = grounder.n, model.snapshot()
                _, seconds = run(kind)
                m1 = model.snapshot()
                cost.append(dict(scene=k, kind=kind, cpu_s=seconds, passes=grounder.n - before,
                                 model_cpu_s=m1[0] - m0[0], decoder_calls=m1[1] - m0[1],
                                 decoded_positions=m1[2] - m0[2]))
            adapter.__dict__.pop("use_text_prefix_cache", None)  # the adapter's default for the rest
            svc.config = svc.config.replace(batch_streams=type(svc.config)().batch_streams)  # the default for the rest
        [answer], _ = ask(svc, [GroundingRequest("all", query)])
        svc.stop()
        assert answer.status == ANSWERED, answer.reason
        own = next(a for a in answer.per_stream if a.stream == where)
        features = {a.stream: judgments(grounder.grounder, a) for a in answer.per_stream}
        rows.append(dict(scene=k, query=query, target_camera=where, answered_camera=answer.stream,
                         single_found=bool(own.result.found), right=answer.stream == where,
                         distractor_shares=near, distractor_acts=acts,
                         p_yes={a.stream: round(float(a.result.p_yes), 4) for a in answer.per_stream},
                         score={a.stream: round(float(a.result.score), 4) for a in answer.per_stream},
                         features=features))
        print(f"scene {k:3d} {where:>5} -> {answer.stream:>5}  single found={own.result.found!s:5}  "
              f"p_yes {rows[-1]['p_yes']}", flush=True)

    counted = [r for r in rows if r["single_found"]]
    right = [float(r["right"]) for r in counted]
    acc = 100 * statistics.fmean(right) if right else float("nan")
    lo, hi = (100 * x for x in bootstrap_ci(right))
    all_rows = [r for r in rows]
    acc_all = 100 * statistics.fmean(float(r["right"]) for r in all_rows)
    lo_all, hi_all = (100 * x for x in bootstrap_ci([float(r["right"]) for r in all_rows]))
    rules = {name: [float(max(r["p_yes"], key=lambda c: rule(r["p_yes"][c], r["score"][c])) == r["target_camera"])
                    for r in counted] for name, rule in RULES.items()}
    print(table(["rule (which camera is best)", "right camera where single-stream finds (95 % CI)"],
                [[name, f"{100 * statistics.fmean(v):.1f} % [{100 * bootstrap_ci(v)[0]:.1f}, "
                        f"{100 * bootstrap_ci(v)[1]:.1f}]"] for name, v in rules.items() if v]))
    camera_rules = {name: [float(max(r["features"], key=lambda c: rule(r["features"][c])) == r["target_camera"])
                           for r in counted] for name, rule in CAMERA_RULES.items()}
    base = camera_rules[next(iter(CAMERA_RULES))]
    rule_rows, rule_summary = [], {}
    for name, v in camera_rules.items():
        if not v:
            continue
        diff = [a - b for a, b in zip(v, base)]
        ci, dci = bootstrap_ci(v), bootstrap_ci(diff)
        rule_summary[name] = dict(right_pct=100 * statistics.fmean(v), ci=[100 * ci[0], 100 * ci[1]],
                                  paired_diff=100 * statistics.fmean(diff), diff_ci=[100 * dci[0], 100 * dci[1]])
        rule_rows.append([name, f"{100 * statistics.fmean(v):.1f} % [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]",
                          f"{100 * statistics.fmean(diff):+.1f} [{100 * dci[0]:+.1f}, {100 * dci[1]:+.1f}]"])
    print()
    print(table([f"camera rule ({args.split}, {len(counted)} scenes where single-stream finds)",
                 "right camera (95 % CI)", "paired difference vs the service's rank (95 % CI)"], rule_rows))
    by_near = {}
    for r in counted:
        by_near.setdefault(max(r["distractor_shares"].values()), []).append(float(r["right"]))
    print()
    print(table(["closest distractor shares (of 4 attributes)", "scenes", "right camera"],
                [[n, len(v), f"{100 * statistics.fmean(v):.1f} %"] for n, v in sorted(by_near.items())]))
    by_acts = {}
    for r in counted:  # the most confusable of the other cameras' clips
        by_acts.setdefault(min(r["distractor_acts"].values(), key=CAUSES.index), []).append(r)
    missed_on = Counter(r["distractor_acts"][r["answered_camera"]] for r in counted if not r["right"])
    print()
    print(table(["in another camera's clip, an object of the target's colour", "scenes (the most confusable camera)",
                 "right camera there", "misses that answered a camera showing it"],
                [[c, len(by_acts[c]), f"{100 * statistics.fmean(float(r['right']) for r in by_acts[c]):.1f} %",
                  missed_on[c]] for c in CAUSES if c in by_acts]))
    print()
    print(table(["scenes", "cameras", "single-stream finds the target", "right camera there (95 % CI)",
                 "right camera, every scene (95 % CI)", "target >= 95 %"],
                [[len(rows), len(cameras), f"{len(counted)}/{len(rows)}", f"{acc:.1f} % [{lo:.1f}, {hi:.1f}]",
                  f"{acc_all:.1f} % [{lo_all:.1f}, {hi_all:.1f}]", "pass" if acc >= 95 else "fail"]]))
    summary = {}
    if cost:
        for kind in ("all", "separate", NOT_SHARED, NOT_BATCHED):
            xs = [c for c in cost if c["kind"] == kind]
            summary[kind] = {f: statistics.median(c[f] for c in xs) for f in
                             ("cpu_s", "passes", "model_cpu_s", "decoder_calls", "decoded_positions")}
            summary[kind]["cpu_stages_s"] = statistics.median(c["cpu_s"] - c["model_cpu_s"] for c in xs)
        pairs = [(a, b) for a in cost if a["kind"] == "all" for b in cost
                 if b["kind"] == NOT_SHARED and b["scene"] == a["scene"]]
        summary["shared_over_not_shared"] = {f: statistics.median(a[f] / b[f] for a, b in pairs)
                                             for f in ("cpu_s", "model_cpu_s", "decoded_positions")}
        ratio = statistics.median(a["cpu_s"] / s["cpu_s"] for a, s in zip(
            [c for c in cost if c["kind"] == "all"], [c for c in cost if c["kind"] == "separate"]))
        summary["ratio_all_over_separate"] = ratio

        def paired(a_kind, b_kind, field):
            return statistics.median(a[field] / b[field] for a in cost if a["kind"] == a_kind for b in cost
                                     if b["kind"] == b_kind and b["scene"] == a["scene"])

        summary["batched"] = {f"batched_over_{name}": {f: paired(NOT_SHARED, other, f) for f in
                                                      ("cpu_s", "model_cpu_s", "decoder_calls")}
                              for name, other in (("not_batched", NOT_BATCHED), ("separate", "separate"))}
        for name, r in summary["batched"].items():
            print(f"{name}: " + ", ".join(f"{f} {v:.3f}" for f, v in r.items()))
        print()
        print(table(["query", "model passes (median)", "CPU s (median)", "all / separate (median of pairs)"],
                    [["to all cameras", summary["all"]["passes"], f"{summary['all']['cpu_s']:.2f}", f"{ratio:.3f}"],
                     [f"{len(cameras)} separate", summary["separate"]["passes"], f"{summary['separate']['cpu_s']:.2f}",
                      "1"]]))
        print()
        sh = summary["shared_over_not_shared"]
        print(table(["query (medians over scenes)", "groundings", "decoder calls", "decoded positions",
                     "model CPU s", "CPU stages s", "total CPU s"],
                    [[name, summary[kind]["passes"], summary[kind]["decoder_calls"], summary[kind]["decoded_positions"],
                      f"{summary[kind]['model_cpu_s']:.3f}", f"{summary[kind]['cpu_stages_s']:.3f}",
                      f"{summary[kind]['cpu_s']:.3f}"]
                     for name, kind in (("to all, text shared across clips", "all"),
                                        (f"{len(cameras)} separate", "separate"),
                                        ("to all, text not shared", NOT_SHARED),
                                        ("to all, clips not batched", NOT_BATCHED))]
                    + [["shared / not shared (median of pairs)", "", "", f"{sh['decoded_positions']:.3f}",
                        f"{sh['model_cpu_s']:.3f}", "", f"{sh['cpu_s']:.3f}"]]))
    write_json(args.out, dict(machine=machine(), args=vars(args), cameras=cameras, accuracy=dict(
        counted=len(counted), scenes=len(rows), right_pct=acc, ci=[lo, hi], right_pct_every_scene=acc_all,
        ci_every_scene=[lo_all, hi_all], camera_rules=rule_summary,
        rules={k: 100 * statistics.fmean(v) for k, v in rules.items() if v},
        by_closest_distractor={n: dict(scenes=len(v), right_pct=100 * statistics.fmean(v))
                               for n, v in by_near.items()},
        by_distractor_acts={c: dict(scenes=len(v), right_pct=100 * statistics.fmean(float(r["right"]) for r in v),
                                    misses_answered_there=missed_on[c]) for c, v in by_acts.items()}),
        cost=cost, cost_summary=summary, scenes=rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
