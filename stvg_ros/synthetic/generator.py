"""A procedural STVG world: clips of coloured shapes doing actions, with exact ground-truth tubes.

Why: no real MLLM weights can be downloaded here, so the package trains and evaluates a small model
on a world where every box and span is known.  Everything is deterministic given a seed (numpy
``default_rng`` + OpenCV drawing without anti-aliasing, so the drawn pixels are exactly the shapes
whose boxes we report).

Each clip has a *target* object doing an action during ``[st_frame, ed_frame]`` (inclusive) and
distractors that share its colour, its shape or its action (the latter at other times).  The
referring query names size, colour, shape and action ("the small blue star that jumps"), the
attribute sub-query only the look ("the small blue star"), the action sub-query the shape and the
action ("the star jumps").  The tube is the target's boxes during the action; every object's boxes
over the frames where it is visible are offered as proposals.

Boxes are ``(x0, y0, x1, y1)`` in pixel-edge coordinates: ``x1`` is one past the last pixel column the
object covers, so ``w = x1 - x0`` is its width in pixels.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

# --- the world's vocabulary -------------------------------------------------------------------
COLOURS: dict[str, tuple[int, int, int]] = {  # RGB, saturated so that they stand out of backgrounds
    "red": (230, 30, 30),
    "green": (30, 200, 40),
    "blue": (40, 80, 250),
    "yellow": (245, 225, 20),
    "purple": (170, 40, 220),
    "white": (250, 250, 250),
}
SHAPES = ("circle", "square", "triangle", "star")
SIZES = {"small": (8, 10), "big": (14, 17)}  # circumradius range in pixels at 112 px frames
ACTIONS = ("moves left", "moves right", "moves up", "moves down", "jumps", "spins", "grows")
#: the third-person verb phrase of each action, used in sub-queries ("the star jumps")
ACTION_VERB = {a: a for a in ACTIONS}

#: (colour, action) combinations that never occur in the train and val splits (not even on a
#: distractor) and are the targets of every test query: the "unseen combinations" split.
HELD_OUT: frozenset[tuple[str, str]] = frozenset({
    ("red", "jumps"), ("green", "moves left"), ("blue", "spins"), ("yellow", "moves up"),
    ("purple", "grows"), ("white", "moves right"), ("red", "moves down"), ("blue", "moves up"),
})
SPLITS = ("train", "val", "test")
_SPLIT_SEED_OFFSET = {"train": 0, "val": 1_000_003, "test": 2_000_029}

#: backgrounds are dark and unsaturated so that no object colour is confused with them
_BG_KINDS = ("plain", "gradient", "noise", "grid")


@dataclass
class ObjectSpec:
    """One object of a clip: look, action and per-frame geometry (centre, radius, angle, visibility)."""

    track_id: int
    colour: str
    shape: str
    size: str
    action: str | None
    span: tuple[int, int] | None  # inclusive frames of the action
    cx: np.ndarray = field(repr=False, default=None)
    cy: np.ndarray = field(repr=False, default=None)
    radius: np.ndarray = field(repr=False, default=None)
    angle: np.ndarray = field(repr=False, default=None)
    visible: np.ndarray = field(repr=False, default=None)

    @property
    def look(self) -> tuple[str, str, str]:
        return (self.size, self.colour, self.shape)


# --- geometry ---------------------------------------------------------------------------------
def _shape_points(shape: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """Integer polygon vertices of a shape (square, triangle, star); circles have none."""
    if shape == "square":
        base = [math.pi / 4 + k * math.pi / 2 for k in range(4)]
        rad = [r] * 4
    elif shape == "triangle":
        base = [-math.pi / 2 + k * 2 * math.pi / 3 for k in range(3)]
        rad = [r] * 3
    elif shape == "star":
        base = [-math.pi / 2 + k * math.pi / 5 for k in range(10)]
        rad = [r if k % 2 == 0 else r * 0.45 for k in range(10)]
    else:
        raise ValueError(f"unknown shape {shape!r}: use one of {SHAPES}")
    pts = [(cx + rr * math.cos(b + angle), cy + rr * math.sin(b + angle)) for b, rr in zip(base, rad)]
    return np.round(np.array(pts)).astype(np.int32)


def draw_object(canvas: np.ndarray, obj: ObjectSpec, t: int, colour: tuple[int, int, int] | None = None) -> None:
    """Draw object ``obj`` at frame ``t`` onto ``canvas`` (H, W, 3) in place, aliased (exact pixels)."""
    if not obj.visible[t]:
        return
    rgb = colour if colour is not None else COLOURS[obj.colour]
    cx, cy, r, a = float(obj.cx[t]), float(obj.cy[t]), float(obj.radius[t]), float(obj.angle[t])
    if obj.shape == "circle":
        cv2.circle(canvas, (int(round(cx)), int(round(cy))), int(round(r)), rgb, -1, lineType=cv2.LINE_8)
    else:
        cv2.fillPoly(canvas, [_shape_points(obj.shape, cx, cy, r, a)], rgb, lineType=cv2.LINE_8)


def object_box(obj: ObjectSpec, t: int, image_size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The tight pixel-edge box of what :func:`draw_object` draws at frame ``t`` (None when invisible)."""
    if not obj.visible[t]:
        return None
    h, w = image_size
    mask = np.zeros((h, w, 3), np.uint8)
    draw_object(mask, obj, t, colour=(255, 255, 255))
    ys, xs = np.nonzero(mask[:, :, 0])
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


# --- backgrounds ------------------------------------------------------------------------------
def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    kind = _BG_KINDS[int(rng.integers(len(_BG_KINDS)))]
    base = rng.integers(20, 90, size=3).astype(np.float32)
    base = base.mean() + (base - base.mean()) * 0.35  # low saturation
    if kind == "plain":
        img = np.broadcast_to(base, (h, w, 3)).copy()
    elif kind == "gradient":
        other = np.clip(base + rng.uniform(-30, 30, size=3) * 0.4 + rng.uniform(-25, 25), 10, 100)
        ramp = np.linspace(0.0, 1.0, h if rng.random() < 0.5 else w, dtype=np.float32)
        ramp = ramp[:, None, None] if len(ramp) == h else ramp[None, :, None]
        img = np.broadcast_to(base * (1 - ramp) + other * ramp, (h, w, 3)).copy()
    elif kind == "noise":
        coarse = rng.normal(0, 12, size=(h // 8 + 1, w // 8 + 1, 1)).astype(np.float32)
        coarse = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)[:, :, None]
        img = base + coarse + rng.normal(0, 4, size=(h, w, 1)).astype(np.float32)
    else:  # grid
        img = np.broadcast_to(base, (h, w, 3)).copy()
        step = int(rng.integers(12, 24))
        img[::step, :, :] += 18
        img[:, ::step, :] += 18
    return np.clip(img, 0, 110).astype(np.uint8)


# --- motion -----------------------------------------------------------------------------------
def _animate(obj: ObjectSpec, rng: np.random.Generator, n: int, h: int, w: int) -> None:
    """Fill the per-frame centre, radius, angle and visibility of ``obj`` for its action."""
    r0 = float(rng.uniform(*SIZES[obj.size]))
    margin = r0 * 2.0 + 2
    cx0 = float(rng.uniform(margin, w - margin))
    cy0 = float(rng.uniform(margin, h - margin))
    cx = np.full(n, cx0)
    cy = np.full(n, cy0)
    radius = np.full(n, r0)
    angle = np.full(n, float(rng.uniform(0, 2 * np.pi)) if obj.shape != "circle" else 0.0)
    if obj.action is not None:
        s, e = obj.span
        steps = e - s
        prog = np.clip((np.arange(n) - s) / max(steps, 1), 0.0, 1.0)  # 0 before, 1 after the action
        if obj.action in ("moves left", "moves right", "moves up", "moves down"):
            dist = float(rng.uniform(3.0, 4.5)) * steps  # pixels per frame × frames
            horizontal = obj.action in ("moves left", "moves right")
            sign = -1.0 if obj.action in ("moves left", "moves up") else 1.0
            extent = w if horizontal else h
            # start so that the whole move stays in the frame
            lo, hi = (r0 + 1, extent - r0 - 1 - dist) if sign > 0 else (r0 + 1 + dist, extent - r0 - 1)
            if hi < lo:
                dist = max(extent - 2 * r0 - 2, 4.0)
                lo = hi = (r0 + 1) if sign > 0 else (extent - r0 - 1)
            start = float(rng.uniform(lo, hi))
            track = start + sign * dist * prog
            if horizontal:
                cx = track
            else:
                cy = track
        elif obj.action == "jumps":
            height = float(rng.uniform(18, 30))
            cy0 = float(np.clip(cy0, height + r0 + 1, h - r0 - 1))
            cy = cy0 - height * np.sin(np.pi * prog)  # up and back down during the span
            cx = np.full(n, cx0)
        elif obj.action == "spins":
            turns = float(rng.uniform(0.6, 0.9)) * (1 if rng.random() < 0.5 else -1)
            angle = angle + 2 * np.pi * turns * prog
        elif obj.action == "grows":
            r0 = float(SIZES[obj.size][0]) * 0.8
            grow_to = r0 * float(rng.uniform(1.6, 1.9))
            radius = r0 + (grow_to - r0) * prog
            margin = grow_to + 1
            cx = np.full(n, float(np.clip(cx0, margin, w - margin)))
            cy = np.full(n, float(np.clip(cy0, margin, h - margin)))
        else:
            raise ValueError(f"unknown action {obj.action!r}: use one of {ACTIONS}")
    obj.cx, obj.cy, obj.radius, obj.angle = cx, cy, radius, angle
    obj.visible = np.ones(n, dtype=bool)


def _random_span(rng: np.random.Generator, n: int, avoid: tuple[int, int] | None = None) -> tuple[int, int]:
    """An action span that starts and stops inside the clip (never at its first or last frame),
    disjoint from ``avoid`` when possible."""
    for _ in range(50):
        length = int(rng.integers(max(4, n // 4), max(5, n // 2) + 1))
        s = int(rng.integers(1, n - length))
        e = s + length - 1
        if avoid is None or e < avoid[0] or s > avoid[1]:
            return s, e
    return s, e


# --- a sample ---------------------------------------------------------------------------------
def _allowed(colour: str, action: str | None, split: str) -> bool:
    """Train/val never show a held-out (colour, action) pair, on any object."""
    return split == "test" or action is None or (colour, action) not in HELD_OUT


def _pick(rng: np.random.Generator, items: Iterable) -> object:
    items = list(items)
    return items[int(rng.integers(len(items)))]


def generate_sample(seed: int, split: str = "train", num_frames: int = 20, image_size: int = 112,
                    num_distractors: tuple[int, int] = (2, 3), fps: float = 5.0,
                    frames_per_step: int = 1) -> tuple[np.ndarray, dict]:
    """One clip and its annotation, fully determined by ``(seed, split)``.

    ``frames_per_step`` = k > 1 films the same scene (the ``num_frames``-frame clip's objects, actions and
    times) at k times the frame rate: ``num_frames * k`` frames at ``fps * k``, geometry interpolated
    between the steps, spans ``(s * k, e * k)``: a long window at camera rate whose content is known to
    equal the short clip's (what temporal resolution costs, apart from the scene).

    Returns ``frames`` (T, H, W, 3) uint8 RGB and a dict with ``query``, ``attribute``, ``action``,
    ``st_frame``/``ed_frame`` (inclusive), ``boxes`` (frame → xyxy for the tube), ``target`` (track id),
    ``tracks`` (track id → frame → xyxy) and ``objects`` (per track: colour, shape, size, action, span).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: use one of {SPLITS}")
    if not 16 <= num_frames <= 64:
        raise ValueError(f"num_frames={num_frames}: use 16 to 64 frames")
    if frames_per_step < 1:
        raise ValueError(f"frames_per_step={frames_per_step}: use 1 or more frames per step")
    rng = np.random.default_rng([seed, _SPLIT_SEED_OFFSET[split]])
    n, h, w = num_frames, image_size, image_size

    # target: test targets always carry a held-out (colour, action) combination
    if split == "test":
        colour, action = _pick(rng, sorted(HELD_OUT))
    else:
        while True:
            colour, action = _pick(rng, COLOURS), _pick(rng, ACTIONS)
            if (colour, action) not in HELD_OUT:
                break
    shape = _pick(rng, [s for s in SHAPES if not (action == "spins" and s == "circle")])
    size = _pick(rng, SIZES)
    span = _random_span(rng, n)
    objects = [ObjectSpec(0, colour, shape, size, action, span)]

    # distractors: share the colour, the shape, or the action (at another time); never the full description
    kinds = ["colour", "shape", "action"]
    rng.shuffle(kinds)
    count = int(rng.integers(num_distractors[0], num_distractors[1] + 1))
    kinds = (kinds * 2)[:count]
    for kind in kinds:
        for _ in range(100):
            d_colour = colour if kind == "colour" else _pick(rng, COLOURS)
            d_shape = shape if kind == "shape" else _pick(rng, SHAPES)
            d_size = _pick(rng, SIZES)
            if kind == "action":
                d_action, d_span = action, _random_span(rng, n, avoid=span)
            else:
                d_action = _pick(rng, list(ACTIONS) + [None])
                d_span = _random_span(rng, n) if d_action else None
            if d_action == "spins" and d_shape == "circle":
                continue
            if not _allowed(d_colour, d_action, split):
                continue
            # the query must stay unique: no distractor with the target's look doing its action
            if (d_size, d_colour, d_shape) == (size, colour, shape) and d_action == action:
                continue
            if kind == "action" and (d_colour, d_shape) == (colour, shape):
                continue
            objects.append(ObjectSpec(len(objects), d_colour, d_shape, d_size, d_action, d_span))
            break

    for obj in objects:
        _animate(obj, rng, n, h, w)
    _separate(objects, rng, n, h, w)

    # an object may appear late or leave early (never during its action, never the target's tube)
    for obj in objects[1:]:
        if rng.random() < 0.25:
            a_s, a_e = obj.span if obj.span else (n // 2, n // 2)
            if rng.random() < 0.5 and a_s > 2:
                obj.visible[: int(rng.integers(1, a_s))] = False
            elif a_e < n - 3:
                obj.visible[int(rng.integers(a_e + 2, n)):] = False

    if frames_per_step > 1:
        n = _film_denser(objects, n, frames_per_step)
        fps = fps * frames_per_step
        span = (span[0] * frames_per_step, span[1] * frames_per_step)
    frames = np.empty((n, h, w, 3), np.uint8)
    bg = _background(rng, h, w)
    for t in range(n):
        frame = bg.copy()
        for obj in objects:
            draw_object(frame, obj, t)
        frames[t] = frame

    # shuffle track ids so that the target is not always track 0
    perm = rng.permutation(len(objects))
    for obj, new_id in zip(objects, perm):
        obj.track_id = int(new_id)
    objects.sort(key=lambda o: o.track_id)
    target = next(o for o in objects if o.action == action and o.look == (size, colour, shape) and o.span == span)

    tracks = {}
    for obj in objects:
        tracks[obj.track_id] = {t: b for t in range(n) if (b := object_box(obj, t, (h, w))) is not None}
    s, e = span
    sample = {
        "seed": seed,
        "split": split,
        "query": f"the {size} {colour} {shape} that {ACTION_VERB[action]}",
        "attribute": f"the {size} {colour} {shape}",
        "action": f"the {shape} {ACTION_VERB[action]}",
        "st_frame": s,
        "ed_frame": e,
        "boxes": {t: tracks[target.track_id][t] for t in range(s, e + 1)},
        "target": target.track_id,
        "tracks": tracks,
        "objects": [
            {"track_id": o.track_id, "colour": o.colour, "shape": o.shape, "size": o.size,
             "action": o.action, "span": list(o.span) if o.span else None,
             "visible": [int(t) for t in np.nonzero(o.visible)[0]]}
            for o in objects
        ],
        "num_frames": n,
        "image_size": (h, w),
        "fps": fps,
        "_specs": objects,  # the geometry, for rendering tests; not serialised
        "_background": bg,  # the objects' backdrop, for filming the scene with another camera (film_camera)
    }
    return frames, sample


#: how :func:`film_camera` makes a camera-shaped clip of a square scene
FILM_MODES = ("wide", "stretch")


def film_camera(frames: np.ndarray, sample: dict, width: int, height: int,
                mode: str = "wide") -> tuple[np.ndarray, dict]:
    """The same scene seen by a ``width`` x ``height`` camera: what camera-shaped frames cost, apart from the scene.

    ``mode='wide'``: a camera of that aspect with the square clip's vertical field of view: the scene's
    objects, their pixels and motion unchanged, in the middle of a wider view whose sides continue the
    backdrop (mirrored), then scaled to ``height`` (objects keep their shape). ``'stretch'``: the square
    frames resized to ``width`` x ``height`` (objects distorted by the aspect change). Boxes, tracks and
    ``image_size`` follow, in the new frames' pixels (float edges)."""
    if mode not in FILM_MODES:
        raise ValueError(f"mode={mode!r}: use one of {FILM_MODES}")
    n, h, w, _ = frames.shape
    if mode == "wide":
        view_w = int(round(h * width / height))
        if view_w < w:
            raise ValueError(f"{width}x{height} is narrower than the {w}x{h} scene: use a wider camera")
        left = (view_w - w) // 2
        bg = cv2.copyMakeBorder(sample["_background"], 0, 0, left, view_w - w - left, cv2.BORDER_REFLECT)
        wide = np.repeat(bg[None], n, axis=0)
        wide[:, :, left:left + w] = frames
        sx, sy, dx = width / view_w, height / h, float(left)
    else:
        wide, sx, sy, dx = frames, width / w, height / h, 0.0
    out = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA if sy < 1 else cv2.INTER_LINEAR)
                    for f in wide])

    def move(b):
        return ((b[0] + dx) * sx, b[1] * sy, (b[2] + dx) * sx, b[3] * sy)

    filmed = dict(sample, image_size=(height, width),
                  boxes={t: move(b) for t, b in sample["boxes"].items()},
                  tracks={tid: {t: move(b) for t, b in tr.items()} for tid, tr in sample["tracks"].items()})
    filmed.pop("_background", None)
    filmed.pop("_specs", None)  # their geometry is the square scene's
    return out, filmed


def _film_denser(objects: list[ObjectSpec], n: int, k: int) -> int:
    """The objects' geometry at ``k`` frames per step of the ``n``-step scene (linear between steps, the last
    step held), visibility per step, action spans in the new frames; returns the new frame count."""
    steps = np.arange(n * k) / k
    base = np.arange(n)
    for obj in objects:
        obj.cx, obj.cy, obj.radius, obj.angle = (np.interp(steps, base, a) for a in
                                                 (obj.cx, obj.cy, obj.radius, obj.angle))
        obj.visible = obj.visible[np.arange(n * k) // k]
        if obj.span is not None:
            obj.span = (obj.span[0] * k, obj.span[1] * k)
    return n * k


def _separate(objects: list[ObjectSpec], rng: np.random.Generator, n: int, h: int, w: int) -> None:
    """Shift static-position objects so that objects overlap as little as possible (a few tries)."""
    for i, obj in enumerate(objects):
        for _ in range(30):
            clash = False
            for other in objects[:i]:
                d = np.hypot(obj.cx - other.cx, obj.cy - other.cy)
                if np.any(d < obj.radius + other.radius + 2):
                    clash = True
                    break
            if not clash:
                break
            margin = float(obj.radius.max()) + 1
            dx = float(rng.uniform(-w / 3, w / 3))
            dy = float(rng.uniform(-h / 3, h / 3))
            new_cx, new_cy = obj.cx + dx, obj.cy + dy
            # keep the jump's top and every move inside the frame
            if new_cx.min() >= margin and new_cx.max() <= w - margin and new_cy.min() >= margin \
                    and new_cy.max() <= h - margin:
                obj.cx, obj.cy = new_cx, new_cy


# --- existence questions (the training signal: never boxes or spans) ----------------------------
def describe(size: str | None, colour: str | None, shape: str | None, action: str | None,
             article: str = "a") -> str:
    """A noun phrase such as "a small red circle that jumps" (missing parts are left out)."""
    words = [w for w in (size, colour) if w]
    noun = shape or "shape"
    phrase = " ".join([article] + words + [noun])
    if action:
        phrase += f" that {ACTION_VERB[action]}"
    return phrase


def target_object(sample: dict) -> dict:
    """The target's entry in ``sample["objects"]`` (its attributes, action and span)."""
    return next(o for o in sample["objects"] if o["track_id"] == sample["target"])


def matches(obj: dict, size, colour, shape, action) -> bool:
    return ((size is None or obj["size"] == size) and (colour is None or obj["colour"] == colour)
            and (shape is None or obj["shape"] == shape) and (action is None or obj["action"] == action))


def acts_in(obj: dict, first: int, last: int) -> bool:
    """Whether ``obj`` (an entry of ``sample["objects"]``) is seen doing its action in frames ``first .. last``
    (one frame is enough)."""
    if not obj["action"] or obj["span"] is None:
        return False
    return bool(set(range(first, last + 1)) & set(range(obj["span"][0], obj["span"][1] + 1)) & set(obj["visible"]))


# --- writing a split in the HC-STVG v2 style ---------------------------------------------------
def _to_jsonable(sample: dict) -> dict:
    return {k: v for k, v in sample.items() if not k.startswith("_")}


def write_video(path: Path, frames: np.ndarray, fps: float) -> None:
    """Write RGB frames as an mp4 (OpenCV, mp4v)."""
    n, h, w, _ = frames.shape
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}: is opencv-python-headless installed with video support?")
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()


def write_split(out_dir: str | Path, split: str, count: int, first_seed: int = 0, num_frames: int = 20,
                image_size: int = 112, fps: float = 5.0) -> Path:
    """Write ``count`` samples of ``split`` under ``out_dir`` in the HC-STVG v2 layout.

    Files: ``v2_video/{name}.mp4``, ``{split}_proc.json`` (the annotations the evaluation reads; frame
    indices are 0-based, ``bbox`` is [x, y, w, h] per frame from ``st_frame``), ``{split}_subqueries.json``
    (``{video: {decompose_attribute: [..], decompose_action: [..]}}``), ``{split}_proposals.json``
    (``{video: {track id: {frame: [x0, y0, x1, y1]}}}``) and ``{split}_meta.json`` (objects, target).
    """
    out = Path(out_dir)
    (out / "v2_video").mkdir(parents=True, exist_ok=True)
    annotations, subqueries, proposals, meta = {}, {}, {}, {}
    for k in range(count):
        seed = first_seed + k
        frames, sample = generate_sample(seed, split, num_frames=num_frames, image_size=image_size, fps=fps)
        name = f"synth_{split}_{seed:06d}.mp4"
        write_video(out / "v2_video" / name, frames, fps)
        s, e = sample["st_frame"], sample["ed_frame"]
        annotations[name] = {
            "img_size": [image_size, image_size],
            "img_num": num_frames,
            "st_frame": s,
            "bbox": [[b[0], b[1], b[2] - b[0], b[3] - b[1]] for b in (sample["boxes"][t] for t in range(s, e + 1))],
            "English": sample["query"],
            "st_time": s / fps,
            "ed_time": e / fps,
            "fps": fps,
        }
        subqueries[name] = {"decompose_attribute": [sample["attribute"]], "decompose_action": [sample["action"]]}
        proposals[name] = {str(tid): {str(t): list(b) for t, b in track.items()}
                           for tid, track in sample["tracks"].items()}
        meta[name] = {"seed": seed, "target": sample["target"], "objects": sample["objects"]}
    for stem, data in ((f"{split}_proc", annotations), (f"{split}_subqueries", subqueries),
                       (f"{split}_proposals", proposals), (f"{split}_meta", meta)):
        (out / f"{stem}.json").write_text(json.dumps(data))
    return out


def main(argv: list[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(description="Write the synthetic STVG benchmark (HC-STVG v2 layout).")
    p.add_argument("--out", default="data/synthetic", help="output directory")
    p.add_argument("--train", type=int, default=0, help="train samples to write (training makes its own)")
    p.add_argument("--val", type=int, default=200)
    p.add_argument("--test", type=int, default=200)
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--size", type=int, default=112)
    args = p.parse_args(argv)
    for split, count in (("train", args.train), ("val", args.val), ("test", args.test)):
        if count:
            write_split(args.out, split, count, num_frames=args.frames, image_size=args.size)
            print(f"wrote {count} {split} samples to {args.out}")


if __name__ == "__main__":
    main()
