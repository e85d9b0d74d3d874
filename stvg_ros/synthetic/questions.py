"""Existence questions about a synthetic clip: the only training signal (never boxes or spans).

Questions climb a ladder of rungs, each a kind of description:
``colour`` ("a red shape"), ``shape`` ("a star"), ``look`` (colour + shape, sometimes size) and
``action`` (shape or look + what it does, in the query and the sub-query forms the grounding asks).
Negatives are hard: an existing object's description with one part changed so that nothing in
the clip matches, so the answer cannot come from a single cue.  Action questions are also asked
about a window of the clip (:func:`action_window`): an action that happens outside the frames shown
makes a no, so the answer needs *when* the named object acts, not only whether it ever does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .generator import ACTION_VERB, ACTIONS, COLOURS, HELD_OUT, SHAPES, SIZES, describe, matches

RUNGS = ("colour", "shape", "look", "action")
_FIELDS = {
    "colour": ("colour",),
    "shape": ("shape",),
    "look": ("colour", "shape"),
    "action": ("shape", "action"),
}
_VALUES = {"size": list(SIZES), "colour": list(COLOURS), "shape": list(SHAPES), "action": list(ACTIONS)}
#: for each action, those the shipped model most often takes for it (bench/standing_false_causes.py: opposite
#: directions, a jump for a vertical move, a spin for growing): what a contrasting "no" swaps in
CONFUSABLE = {"moves up": ("moves down", "jumps"), "moves down": ("moves up", "jumps"),
              "moves left": ("moves right",), "moves right": ("moves left",),
              "jumps": ("moves up", "moves down"), "spins": ("grows",), "grows": ("spins",)}


@dataclass(frozen=True)
class QuestionMix:
    """How questions are drawn beyond their rung (``train``'s question options; all 0: the ladder alone).

    ``colour_action``: the share of action questions that name colour and action only ("a red shape that jumps");
    ``contrast_actions``: the share of the action rung's "no" questions made by swapping the object's action for one
    in :data:`CONFUSABLE` (the same window asked with the opposite direction, say), the rest changing a field at
    random; ``size_questions``: the share of questions (yes and no alike) that also name the object's size, their
    "no" made by swapping the size (a "big red shape" where the red one is small: the standing queries name sizes).
    """

    colour_action: float = 0.0
    contrast_actions: float = 0.0
    size_questions: float = 0.0


def _fields(rung: str, rng: np.random.Generator, colour_action: float = 0.0) -> list[str]:
    """The parts of a description a question names; ``colour_action``: the share of action questions
    that name colour and action only ("a red shape that jumps")."""
    if rung == "action" and colour_action > 0 and rng.random() < colour_action:
        return ["colour", "action"]
    fields = list(_FIELDS[rung])
    if rung == "look" and rng.random() < 0.5:
        fields.append("size")
    if rung == "action":
        r = rng.random()
        if r < 0.35:
            fields += ["colour", "size"]  # the full referring query
        elif r < 0.6:
            fields.append("colour")
    return fields


def phrase(desc: dict, rng: np.random.Generator) -> str:
    """The question for a description dict (size/colour/shape/action, missing = None)."""
    if desc.get("action") and not desc.get("colour") and not desc.get("size") and rng.random() < 0.5:
        body = f"the {desc['shape']} {ACTION_VERB[desc['action']]}"  # the action sub-query's form
    else:
        body = describe(desc.get("size"), desc.get("colour"), desc.get("shape"), desc.get("action"),
                        article="the" if rng.random() < 0.5 else "a")
    return f"Is there {body} in this video?"


def _present(objects: list[dict], desc: dict) -> bool:
    return any(matches(o, desc.get("size"), desc.get("colour"), desc.get("shape"), desc.get("action"))
               for o in objects)


def _allowed(desc: dict, split: str) -> bool:
    return split == "test" or not desc.get("colour") or not desc.get("action") \
        or (desc["colour"], desc["action"]) not in HELD_OUT


def make_question(objects: list[dict], rung: str, answer: bool, rng: np.random.Generator,
                  split: str = "train", mix: QuestionMix = QuestionMix()) -> str | None:
    """A question of ``rung`` about a clip whose answer is ``answer`` (None if none can be made), drawn as ``mix``
    says."""
    pool = [o for o in objects if rung != "action" or o["action"]]
    # on a window of the clip (``action_window``), an object whose action happens outside it is asked
    # about with its real action and the answer is no: the action must be seen in the frames shown
    lapsed = [o for o in objects if o.get("action_outside")] if rung == "action" and not answer else []
    if not pool and not lapsed:
        return None
    for _ in range(30):
        if lapsed and (not pool or rng.random() < 0.5):
            obj = lapsed[int(rng.integers(len(lapsed)))]
            fields = _fields(rung, rng, mix.colour_action)
            desc = {f: obj[f] for f in fields}
            desc["action"] = obj["action_outside"]
            if _present(objects, desc) or not _allowed(desc, split):
                continue
            return phrase(desc, rng)
        obj = pool[int(rng.integers(len(pool)))]
        fields = _fields(rung, rng, mix.colour_action)
        sized = mix.size_questions > 0 and rng.random() < mix.size_questions
        if sized and "size" not in fields:
            fields.append("size")
        desc = {f: obj[f] for f in fields}
        if not answer:
            change = "size" if sized else fields[int(rng.integers(len(fields)))]
            options = [v for v in _VALUES[change] if v != obj[change]]
            if not sized and "action" in fields and mix.contrast_actions > 0 and rng.random() < mix.contrast_actions:
                change, options = "action", list(CONFUSABLE[obj["action"]])
            desc[change] = options[int(rng.integers(len(options)))]
        if desc.get("action") == "spins" and desc.get("shape") == "circle":
            continue
        if _present(objects, desc) != answer or not _allowed(desc, split):
            continue
        return phrase(desc, rng)
    return None


def action_window(num_frames: int, objects: list[dict], length: int, start: int) -> list[dict]:
    """The objects as seen in frames ``start .. start+length-1`` of the clip: those visible there, with
    their action kept only if at least one temporal slot (2 frames) of it falls inside, else moved to
    ``action_outside`` (so "Is there the star that jumps?" is a no when the jump is not shown)."""
    window = set(range(start, min(num_frames, start + length)))
    out = []
    for o in objects:
        if not set(o["visible"]) & window:
            continue
        o = dict(o)
        if o["action"] and len(set(range(o["span"][0], o["span"][1] + 1)) & window) < 2:
            o["action_outside"], o["action"], o["span"] = o["action"], None, None
        out.append(o)
    return out


def clip_questions(objects: list[dict], rungs: list[str], per_answer: int, rng: np.random.Generator,
                   split: str = "train", mix: QuestionMix = QuestionMix()) -> list[tuple[str, bool, str]]:
    """Balanced questions for one clip: ``per_answer`` yes and as many no, (question, answer, rung), drawn as
    ``mix`` says."""
    out = []
    for answer in (True, False):
        made = 0
        for _ in range(4 * per_answer):
            rung = rungs[int(rng.integers(len(rungs)))]
            q = make_question(objects, rung, answer, rng, split, mix)
            if q is not None:
                out.append((q, answer, rung))
                made += 1
                if made == per_answer:
                    break
    return out
