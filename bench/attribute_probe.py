#!/usr/bin/env python3
"""What does the model see of a target's action, shape and size? Its answers against linear probes on its visual
tokens (issues 27, 32).

For synthetic clips whose target acts, an 8-frame window inside the action is shown to the model, which is asked
"Is there a <colour> shape that <action> in this video?" for every action of the world and "Is there a <colour>
<shape> in this video?" for every shape: the one with the highest yes-logit is its answer (and, per action, whether
the true one beats those it is most often taken for, ``questions.CONFUSABLE``).  Linear probes (multinomial
logistic regression, 5-fold) read the same window's visual tokens at the target's box (the vision tower's output,
mean over the temporal slots) for its action, shape and size: where a probe beats the answers, the attribute is in
what the tower gives the language model and the answers do not read it; where the probe is at chance, the tower
does not give it.

Direction (what a hand-set pathway could add): per 14-px patch of the target's token, the x- and y-moments of each
colour channel's frame difference within a temporal pair (``frame_moments``: a linear function of the patch's pixels,
so a patch-embedding filter can compute it; the motion prior's difference filters are plain sums over the patch or
its quadrants, which place a change no finer than a quadrant).  The action probe is run again on the tokens with
these moments and their absolute values (the rectification the merger's motion pairs do) appended: where it gains, a
tower with such filters would hand the language model more of the action.

Shape (what a hand-set pathway would have to compute): probes on rotation-invariant descriptors of the target on
the window's middle frame, from its pixels, no model (``shape_descriptors``): the k-fold symmetry of all its edges'
orientations together, and the same from linear patch filters' brightness moments per 14-px or 7-px cell.

Size (``--sizes N`` seeds, whole 20-frame clips where no object of the target's colour has the other size, so that
the swapped question is a no): "Is there a big red shape?" against "a small red shape?", and the full query
with the size swapped; the share of clips where the true size's yes-logit is the higher (chance 50 %).

    OMP_NUM_THREADS=1 .venv/bin/python bench/attribute_probe.py                   # the shipped model, 400 val clips
    OMP_NUM_THREADS=1 .venv/bin/python bench/attribute_probe.py --model DIR --split train --count 2000
    OMP_NUM_THREADS=1 .venv/bin/python bench/attribute_probe.py --quick                            # 40 clips (CI)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stvg_ros.synthetic.generator import ACTIONS, SHAPES, SIZES, describe, generate_sample, target_object  # noqa: E402
from stvg_ros.synthetic.model import IMAGE_SIZE, MERGE, PATCH, PromptBuilder, frames_to_pixels, yes_no_logits  # noqa: E402
from stvg_ros.synthetic.questions import CONFUSABLE  # noqa: E402

WINDOW = 8  # frames shown: the standing streams' window
TOKEN = PATCH * MERGE  # pixels per merged visual token


def clip_features(model, tok, seed: int, split: str):
    """(the target's action, shape and size indices, its visual tokens' mean, yes-minus-no logit per action, per
    shape), or None when the target does not act or is not visible in the window."""
    frames, s = generate_sample(seed, split, num_frames=20)
    t = target_object(s)
    if not t["action"] or t["span"] is None:
        return None
    a, b = t["span"]
    first = max(0, min(len(frames) - WINDOW, (a + b) // 2 - WINDOW // 2))
    pixels, grid = frames_to_pixels(frames[first:first + WINDOW])
    feats = model.model.get_video_features(pixels, grid, return_dict=True).pooler_output[0]
    side = IMAGE_SIZE // TOKEN
    grid_feats = feats.view(-1, side, side, feats.shape[-1])
    track = s["tracks"][s["target"]]
    tokens, moments = [], []
    for slot in range(grid_feats.shape[0]):
        box = next((track[f] for f in (first + 2 * slot, first + 2 * slot + 1) if f in track), None)
        if box is not None:
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            row, col = min(side - 1, int(cy // TOKEN)), min(side - 1, int(cx // TOKEN))
            tokens.append(grid_feats[slot, row, col])
            pair = frames[first + 2 * slot: first + 2 * slot + 2]
            moments.append(frame_moments(pair[0], pair[-1], row, col))
    if not tokens:
        return None
    middle = first + WINDOW // 2  # the frame of the shape descriptors: the window's middle, else its first with the target
    at = middle if middle in track else next(f for f in range(first, first + WINDOW) if f in track)
    questions = [f"Is there a {t['colour']} shape that {act} in this video?" for act in ACTIONS]
    questions += [f"Is there a {t['colour']} {shape} in this video?" for shape in SHAPES]
    logits = yes_no_logits(model, PromptBuilder(tok, feats.shape[0]), pixels, grid, questions, [0] * len(questions))
    yes = (logits[:, 0] - logits[:, 1]).numpy()
    labels = (ACTIONS.index(t["action"]), SHAPES.index(t["shape"]), list(SIZES).index(t["size"]))
    return (labels, torch.stack(tokens).mean(0).numpy(), yes[:len(ACTIONS)], yes[len(ACTIONS):],
            np.mean(moments, axis=0), shape_descriptors(frames[at], track[at]))


#: the rotation-invariant descriptors of :func:`shape_descriptors`, by name
SHAPE_DESCRIPTORS = ("object edge harmonics", "patch moment harmonics, 14 px", "patch moment harmonics, 7 px")


def _harmonics(weight: np.ndarray, angle: np.ndarray, orders) -> list[float]:
    """|sum w e^(i k angle)| / sum w for each order k: how k-fold symmetric the angles are, whatever the rotation."""
    total = float(weight.sum()) + 1e-9
    return [float(abs((weight * np.exp(1j * k * angle)).sum())) / total for k in orders]


def shape_descriptors(frame: np.ndarray, box) -> dict[str, list[float]]:
    """Rotation-invariant shape descriptors of the object in ``box`` (pixel edges) on one frame (what a hand-set
    shape pathway would have to compute): ``object edge harmonics``, the k-fold symmetry (k = 1-6 of the
    180-degree-periodic edge orientation, each pixel's brightness gradient weighted by its magnitude) of all the
    object's edges together, as a head averaging the object's tokens could gather it if each token carried its
    edges' harmonic components; ``patch moment harmonics``, the same from what linear patch filters give: each
    14-px (or 7-px) cell's brightness moment about its centre (which points across the edge it holds), weighted by
    its length, over the cells the box touches (k = 1-10 of the 360-degree-periodic angle)."""
    import cv2

    grey = frame.astype(np.float32).mean(2) / 255.0
    x0, y0, x1, y1 = (int(v) for v in box)
    ys, xs = slice(max(0, y0 - 1), y1 + 1), slice(max(0, x0 - 1), x1 + 1)
    gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)[ys, xs], cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)[ys, xs]
    out = {SHAPE_DESCRIPTORS[0]: _harmonics(np.hypot(gx, gy).ravel(), 2 * np.arctan2(gy, gx).ravel(), range(1, 7))}
    for name, cell in zip(SHAPE_DESCRIPTORS[1:], (PATCH, PATCH // 2)):
        offset = np.arange(cell) - (cell - 1) / 2
        moments = []
        for r in range(y0 // cell, (y1 - 1) // cell + 1):
            for c in range(x0 // cell, (x1 - 1) // cell + 1):
                p = grey[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell]
                moments.append(((p * offset[None, :]).sum(), (p * offset[:, None]).sum()))
        m = np.array(moments)
        out[name] = _harmonics(np.hypot(m[:, 0], m[:, 1]), np.arctan2(m[:, 1], m[:, 0]), range(1, 11))
    return out


def frame_moments(before: np.ndarray, after: np.ndarray, row: int, col: int) -> np.ndarray:
    """(24,): for each 14-px patch of the merged token at (``row``, ``col``), the x- and y-moments (about the patch's
    centre) of the R, G and B frame difference ``after - before`` (0-1 units): linear in the patch's pixels, like a
    patch-embedding filter, and signed by where in the patch the colour came and went."""
    diff = (after.astype(np.float32) - before.astype(np.float32)) / 255.0
    token = diff[row * TOKEN:(row + 1) * TOKEN, col * TOKEN:(col + 1) * TOKEN]
    offset = np.arange(PATCH) - (PATCH - 1) / 2
    out = []
    for top in (0, PATCH):
        for left in (0, PATCH):
            patch = token[top:top + PATCH, left:left + PATCH]
            out += [(patch * offset[None, :, None]).sum((0, 1)), (patch * offset[:, None, None]).sum((0, 1))]
    return np.concatenate(out)


def size_answers(model, tok, seed: int, split: str):
    """(true size above the other, colour and size only; the same in the full query), or None when an object of
    the target's colour has the other size (the swapped question would be a yes)."""
    frames, s = generate_sample(seed, split, num_frames=20)
    t = target_object(s)
    other = next(z for z in SIZES if z != t["size"])
    if any(o["colour"] == t["colour"] and o["size"] == other for o in s["objects"]):
        return None
    pixels, grid = frames_to_pixels(frames)
    questions = [f"Is there {describe(z, t['colour'], None, None, article='a')} in this video?"
                 for z in (t["size"], other)]
    questions += [f"Is there {describe(z, t['colour'], t['shape'], t['action'], article='the')} in this video?"
                  for z in (t["size"], other)]
    logits = yes_no_logits(model, PromptBuilder(tok, int(grid[0].prod()) // MERGE ** 2), pixels, grid, questions,
                           [0] * len(questions))
    d = (logits[:, 0] - logits[:, 1]).numpy()
    return bool(d[0] > d[1]), bool(d[2] > d[3])


def probe_accuracy(x: np.ndarray, y: np.ndarray, folds: int = 5, l2: float = 1e-2, seed: int = 0) -> float:
    """Held-out accuracy of a multinomial logistic regression on standardised ``x`` (``folds``-fold)."""
    classes = int(y.max()) + 1
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    parts = np.array_split(np.random.default_rng(seed).permutation(len(y)), folds)
    right = 0
    for k, held in enumerate(parts):
        fit = np.concatenate([p for j, p in enumerate(parts) if j != k])
        xt, yt = torch.tensor(x[fit], dtype=torch.float32), torch.tensor(y[fit])
        w = torch.zeros(x.shape[1], classes, requires_grad=True)
        b = torch.zeros(classes, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=200)

        def loss():
            opt.zero_grad()
            v = torch.nn.functional.cross_entropy(xt @ w + b, yt) + l2 * (w ** 2).sum()
            v.backward()
            return v
        opt.step(loss)
        with torch.no_grad():
            right += int(((torch.tensor(x[held], dtype=torch.float32) @ w + b).argmax(1).numpy() == y[held]).sum())
    return right / len(y)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(ROOT / "models" / "stvg-synth-qwen"))
    ap.add_argument("--split", default="val", choices=("train", "val", "test"))
    ap.add_argument("--count", type=int, default=400, help="clips whose target acts")
    ap.add_argument("--sizes", type=int, default=400, help="seeds tried for the size answers (0: none)")
    ap.add_argument("--quick", action="store_true", help="40 clips and 40 size seeds (CI)")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args(argv)
    if a.quick:
        a.count, a.sizes = 40, 40
    from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    torch.set_num_threads(1)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(a.model).eval()
    tok = AutoTokenizer.from_pretrained(a.model)
    t0 = time.process_time()
    labels, xs, answers, shape_answers, moments, descriptors, seed = [], [], [], [], [], [], 0
    with torch.no_grad():
        while len(labels) < a.count:
            got = clip_features(model, tok, seed, a.split)
            seed += 1
            if got is not None:
                labels.append(got[0])
                xs.append(got[1])
                answers.append(got[2])
                shape_answers.append(got[3])
                moments.append(got[4])
                descriptors.append(got[5])
    (y, y_shape, y_size), x, ans = np.array(labels).T, np.array(xs), np.array(answers)
    answered = ans.argmax(1) == y
    beats = np.array([ans[k, y[k]] > max(ans[k, ACTIONS.index(c)] for c in CONFUSABLE[ACTIONS[y[k]]])
                      for k in range(len(y))])  # per clip: the true action's yes above each it is confused with
    per_action = {act: dict(clips=int((y == i).sum()),
                            answered=float(answered[y == i].mean()) if (y == i).any() else None,
                            beats_confusable=float(beats[y == i].mean()) if (y == i).any() else None)
                  for i, act in enumerate(ACTIONS)}
    out = dict(model=a.model, split=a.split, clips=len(y), seeds=seed, chance=1 / len(ACTIONS),
               answered=float(answered.mean()), beats_confusable=float(beats.mean()),
               probe=probe_accuracy(x, y), per_action=per_action,
               shape=dict(answered=float((np.array(shape_answers).argmax(1) == y_shape).mean()),
                          probe=probe_accuracy(x, y_shape), chance=1 / len(SHAPES)))
    vertical = [ACTIONS.index(a) for a in ("moves up", "moves down")]
    directions = np.isin(y, [ACTIONS.index(a) for a in ("moves left", "moves right")] + vertical)
    axis = np.isin(y[directions], vertical).astype(int)
    with_moments = np.hstack([x, np.array(moments), np.abs(moments)])
    out["directions"] = {
        name: dict(all_actions=out["probe"] if f is x else probe_accuracy(f, y),  # the tokens' probe: fitted above
                   four_directions=probe_accuracy(f[directions], y[directions]),
                   axis=probe_accuracy(f[directions], axis))
        for name, f in (("tokens", x), ("tokens_and_frame_moments", with_moments))}
    out["shape"]["descriptors"] = {name: probe_accuracy(np.array([d[name] for d in descriptors]), y_shape)
                                   for name in SHAPE_DESCRIPTORS}
    with torch.no_grad():
        sizes = [r for r in (size_answers(model, tok, k, a.split) for k in range(a.sizes)) if r is not None]
    out["size"] = dict(probe=probe_accuracy(x, y_size))
    if sizes:
        out["size"].update(clips=len(sizes), seeds=a.sizes, colour=float(np.mean([r[0] for r in sizes])),
                           full_query=float(np.mean([r[1] for r in sizes])))
    out["cpu_s"] = round(time.process_time() - t0, 1)
    print(f"{a.model}, {a.split}: {len(y)} clips whose target acts (8-frame windows inside the action)")
    print(f"  the model's answer (the action with the highest yes-logit of {len(ACTIONS)}): {100 * out['answered']:.1f} % "
          f"(chance {100 * out['chance']:.0f} %); the true action above those it is confused with: "
          f"{100 * out['beats_confusable']:.1f} %")
    print(f"  linear probe on the target's visual tokens, 5-fold: {100 * out['probe']:.1f} %")
    print(f"  shape: its answer (of {len(SHAPES)}) {100 * out['shape']['answered']:.1f} %, the probe "
          f"{100 * out['shape']['probe']:.1f} % (chance {100 * out['shape']['chance']:.0f} %); size: the probe "
          f"{100 * out['size']['probe']:.1f} % (chance 50 %)")
    print("  shape, linear probes on rotation-invariant descriptors of the target: " + ", ".join(
        f"{name} {100 * v:.1f} %" for name, v in out["shape"]["descriptors"].items()))
    d = out["directions"]
    print("  linear probes, the tokens / with the frame moments appended: all actions "
          + " / ".join(f"{100 * d[k]['all_actions']:.1f} %" for k in d) + ", the 4 directions "
          + " / ".join(f"{100 * d[k]['four_directions']:.1f} %" for k in d) + ", horizontal or vertical "
          + " / ".join(f"{100 * d[k]['axis']:.1f} %" for k in d))
    print("| action | clips | answered | above its confusable |\n|---|---|---|---|")
    for act, r in per_action.items():
        if r["clips"]:
            print(f"| {act} | {r['clips']} | {100 * r['answered']:.0f} % | {100 * r['beats_confusable']:.0f} % |")
    if sizes:
        z = out["size"]
        print(f"size, {z['clips']} clips: the true size's yes above the other's, colour and size only "
              f"{100 * z['colour']:.1f} %, in the full query {100 * z['full_query']:.1f} % (chance 50 %)")
    print(f"({out['cpu_s']} CPU s)")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
