"""The synthetic STVG world: deterministic, its boxes are what it draws, its files read as HC-STVG v2."""

import json

import numpy as np
import pytest

from stvg_ros.synthetic.generator import (COLOURS, HELD_OUT, draw_object, generate_sample, target_object,
                                          write_split)
from stvg_ros.synthetic.questions import RUNGS, QuestionMix, clip_questions


def test_same_seed_same_clip_and_different_seed_differs():
    a_frames, a = generate_sample(3, "train")
    b_frames, b = generate_sample(3, "train")
    c_frames, c = generate_sample(4, "train")
    assert np.array_equal(a_frames, b_frames)
    assert a["query"] == b["query"] and a["boxes"] == b["boxes"] and a["tracks"] == b["tracks"]
    assert not np.array_equal(a_frames, c_frames)
    # splits draw from different streams even for the same seed
    assert not np.array_equal(a_frames, generate_sample(3, "val")[0])


def _colour_mask(frame, rgb):
    return np.all(frame == np.array(rgb, np.uint8), axis=-1)


@pytest.mark.parametrize("seed", range(6))
def test_boxes_match_the_drawn_pixels(seed):
    """Segment each object by its colour in the rendered frame and compare with its track's box.

    Objects whose colour another object shares, or that another object overlaps in a frame, are
    checked on their own rendering instead (the box covers the whole object, as annotators do).
    """
    frames, sample = generate_sample(seed, "test")
    specs = sample["_specs"]
    h, w = sample["image_size"]
    checked = 0
    for spec in specs:
        track = sample["tracks"][spec.track_id]
        same_colour = [o for o in specs if o is not spec and o.colour == spec.colour]
        for t, box in track.items():
            x0, y0, x1, y1 = box
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            alone = np.zeros((h, w, 3), np.uint8)
            draw_object(alone, spec, t)
            ys, xs = np.nonzero(alone.any(-1))
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == box
            if same_colour:
                continue
            mask = _colour_mask(frames[t], COLOURS[spec.colour])
            if not mask.any():
                continue
            ys, xs = np.nonzero(mask)
            seg = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            # pixels of the colour lie inside the box; without occlusion they span it exactly
            assert x0 <= seg[0] and y0 <= seg[1] and seg[2] <= x1 and seg[3] <= y1
            others = np.zeros((h, w), bool)
            for o in specs:
                if o is not spec:
                    tmp = np.zeros((h, w, 3), np.uint8)
                    draw_object(tmp, o, t)
                    others |= tmp.any(-1)
            if not others[y0:y1, x0:x1].any():
                assert seg == box
                checked += 1
    assert checked > 0


@pytest.mark.parametrize("seed", range(10))
def test_sample_is_a_valid_stvg_query(seed):
    frames, s = generate_sample(seed, "train")
    assert frames.shape == (s["num_frames"], *s["image_size"], 3) and frames.dtype == np.uint8
    # the action starts and stops inside the clip, and the tube has a box per frame of its span
    assert 0 < s["st_frame"] <= s["ed_frame"] < s["num_frames"] - 1
    assert sorted(s["boxes"]) == list(range(s["st_frame"], s["ed_frame"] + 1))
    target = target_object(s)
    assert s["query"] == f"the {target['size']} {target['colour']} {target['shape']} that {target['action']}"
    assert s["attribute"] == f"the {target['size']} {target['colour']} {target['shape']}"
    assert s["action"] == f"the {target['shape']} {target['action']}"
    # the query is unique: no other object has the same look doing the same action
    twins = [o for o in s["objects"] if o is not target and o["action"] == target["action"]
             and (o["size"], o["colour"], o["shape"]) == (target["size"], target["colour"], target["shape"])]
    assert not twins
    # train never shows a held-out (colour, action) pair, on any object
    assert all((o["colour"], o["action"]) not in HELD_OUT for o in s["objects"])


def test_test_split_targets_are_unseen_combinations():
    for seed in range(10):
        _, s = generate_sample(seed, "test")
        target = target_object(s)
        assert (target["colour"], target["action"]) in HELD_OUT


def _question_descriptions() -> dict[str, dict]:
    """Every question the ladder can ask → the description it names (parsed back by enumeration)."""
    from itertools import product

    from stvg_ros.synthetic.generator import ACTION_VERB, ACTIONS, SHAPES, SIZES, describe

    out = {}
    for size, colour, shape, action in product([None, *SIZES], [None, *COLOURS], [None, *SHAPES], [None, *ACTIONS]):
        desc = dict(size=size, colour=colour, shape=shape, action=action)
        bodies = [describe(size, colour, shape, action, article) for article in ("a", "the")]
        if action and shape and not colour and not size:
            bodies.append(f"the {shape} {ACTION_VERB[action]}")  # the action sub-query's form
        for body in bodies:
            out[f"Is there {body} in this video?"] = desc
    return out


@pytest.mark.parametrize("colour_action", [0.0, 0.8])
def test_questions_are_balanced_and_answers_true(colour_action):
    """Each clip gets as many yes as no questions, and every answer is what the clip shows: the question,
    parsed back into the description it names, matches one of the clip's objects exactly when it says yes
    (also when most action questions name colour and action only, ``--colour-action``)."""
    from stvg_ros.synthetic.generator import matches

    described = _question_descriptions()
    rng = np.random.default_rng(0)
    shapeless = 0
    for seed in range(20):
        _, s = generate_sample(seed, "train")
        qs = clip_questions(s["objects"], list(RUNGS), 2, rng, mix=QuestionMix(colour_action=colour_action))
        shapeless += sum(r == "action" and described[q]["shape"] is None for q, _, r in qs)
        answers = [a for _, a, _ in qs]
        assert answers.count(True) == answers.count(False)
        for q, a, _ in qs:
            d = described[q]
            assert any(matches(o, d["size"], d["colour"], d["shape"], d["action"]) for o in s["objects"]) == a, q
    assert (shapeless > 0) == (colour_action > 0)


def test_size_questions_name_the_size_and_their_no_swaps_it():
    """``--size-questions``: that share of questions, yes and no alike, names the object's size (so naming a size
    says nothing of the answer), their no is the size swapped, and each answer is still what the clip shows."""
    from stvg_ros.synthetic.generator import matches

    described = _question_descriptions()
    sized = {True: 0, False: 0}
    swapped = 0
    rng = np.random.default_rng(2)
    for seed in range(30):
        _, s = generate_sample(seed, "train")
        for q, a, _ in clip_questions(s["objects"], ["colour", "action"], 2, rng,
                                      mix=QuestionMix(colour_action=0.8, size_questions=1.0)):
            d = described[q]
            assert any(matches(o, d["size"], d["colour"], d["shape"], d["action"]) for o in s["objects"]) == a, q
            assert d["size"] is not None, q
            sized[a] += 1
            # a no describes an object of the clip but for its size
            swapped += not a and any(matches(o, None, d["colour"], d["shape"], d["action"]) for o in s["objects"])
    assert sized[True] >= 40 and sized[False] >= 40 and abs(sized[True] - sized[False]) <= 0.1 * sized[True], sized
    assert swapped == sized[False]


def test_contrasting_no_questions_ask_the_action_the_model_confuses_and_are_still_true():
    """``--contrast-actions``: the action rung's "no" questions swap an object's action for one in CONFUSABLE (the
    opposite direction, say), and each answer is still what the clip shows; without it nothing changes."""
    from stvg_ros.synthetic.generator import ACTIONS, matches
    from stvg_ros.synthetic.questions import CONFUSABLE

    assert set(CONFUSABLE) == set(ACTIONS) and all(set(v) <= set(ACTIONS) - {k} for k, v in CONFUSABLE.items())
    described = _question_descriptions()
    swapped = asked = 0
    for contrast in (0.0, 1.0):
        rng = np.random.default_rng(1)
        for seed in range(30):
            _, s = generate_sample(seed, "train")
            for q, a, _ in clip_questions(s["objects"], ["action"], 2, rng,
                                          mix=QuestionMix(colour_action=0.8, contrast_actions=contrast)):
                d = described[q]
                assert any(matches(o, d["size"], d["colour"], d["shape"], d["action"]) for o in s["objects"]) == a, q
                if a or not contrast:
                    continue
                asked += 1
                # an object the question otherwise describes does an action the asked one is confusable with
                swapped += any(o["action"] and d["action"] in CONFUSABLE[o["action"]]
                               and matches(o, d["size"], d["colour"], d["shape"], None) for o in s["objects"])
    assert asked > 20 and swapped >= 0.9 * asked, (swapped, asked)


def test_written_split_reads_as_hcstvg_v2(tmp_path):
    import cv2

    out = write_split(tmp_path, "val", 3, first_seed=5)
    ann = json.loads((out / "val_proc.json").read_text())
    subq = json.loads((out / "val_subqueries.json").read_text())
    props = json.loads((out / "val_proposals.json").read_text())
    assert len(ann) == 3 and set(ann) == set(subq) == set(props)
    for name, a in ann.items():
        _, s = generate_sample(int(name.split("_")[-1].split(".")[0]), "val")
        assert a["img_size"] == [112, 112] and a["img_num"] == 20 and a["English"] == s["query"]
        assert a["st_frame"] == s["st_frame"] and len(a["bbox"]) == s["ed_frame"] - s["st_frame"] + 1
        x, y, w, h = a["bbox"][0]
        assert (x, y, x + w, y + h) == s["boxes"][s["st_frame"]]
        assert subq[name] == {"decompose_attribute": [s["attribute"]], "decompose_action": [s["action"]]}
        assert props[name][str(s["target"])][str(s["st_frame"])] == list(s["boxes"][s["st_frame"]])
        cap = cv2.VideoCapture(str(out / "v2_video" / name))
        n = 0
        while cap.read()[0]:
            n += 1
        assert n == a["img_num"]


def test_written_split_loads_with_the_evaluation_readers(tmp_path):
    from stvg_ros.evaluation.datasets import load_hcstvg, load_proposals, load_sub_queries

    out = write_split(tmp_path, "test", 2, first_seed=0)
    samples = load_hcstvg(out / "test_proc.json", out, version="v2")
    subq = load_sub_queries(out / "test_subqueries.json")
    props = load_proposals(out / "test_proposals.json")
    assert len(samples) == 2
    for smp in samples:
        _, s = generate_sample(int(smp.key.split("_")[-1].split(".")[0]), "test")
        assert smp.gt_span == (s["st_frame"], s["ed_frame"])
        assert smp.gt_boxes == {t: tuple(float(v) for v in b) for t, b in s["boxes"].items()}
        assert smp.video_path is not None and smp.video_path.is_file()
        assert smp.extra["fps_from_times"] == pytest.approx(s["fps"])
        assert (subq[smp.key].attribute, subq[smp.key].action) == (s["attribute"], s["action"])
        assert props[smp.video][str(s["target"])].boxes[s["st_frame"]] == tuple(s["boxes"][s["st_frame"]])


def test_action_questions_on_a_window_need_the_action_inside_it():
    """On a window of the clip, an object whose action happens outside it is still there but does not
    act: "the star that jumps" is a no there, and a yes on a window that shows the jump."""
    from stvg_ros.synthetic.questions import action_window, make_question

    star = dict(colour="red", shape="star", size="big", action="jumps", span=[2, 6], visible=list(range(20)))
    circle = dict(colour="blue", shape="circle", size="small", action=None, span=None, visible=list(range(20)))
    late = action_window(20, [star, circle], 8, 10)  # frames 10-17: the jump (2-6) is not shown
    assert late[0]["action"] is None and late[0]["action_outside"] == "jumps" and late[1] == circle
    assert star["action"] == "jumps"  # the clip's own objects are not changed
    assert action_window(20, [star], 8, 6)[0]["action"] is None  # one frame of the action: not a slot
    early = action_window(20, [star, circle], 8, 0)
    assert early[0]["action"] == "jumps" and "action_outside" not in early[0]
    rng = np.random.default_rng(0)
    assert make_question(late, "action", True, rng) is None  # nothing acts in the window
    said_no = {make_question(late, "action", False, rng) for _ in range(20)}
    assert any(q and "star" in q and "jumps" in q for q in said_no)
    said_yes = {make_question(early, "action", True, rng) for _ in range(20)}
    assert all("star" in q and "jumps" in q for q in said_yes)


def test_readme_generator_command_prints_no_runtime_warning(tmp_path):
    """``python -m stvg_ros.synthetic.generator`` (docs/synthetic.md) without runpy's 'found in sys.modules' warning."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "stvg_ros.synthetic.generator",
                          "--help"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert out.returncode == 0 and "RuntimeWarning" not in out.stderr, out.stderr


def test_frames_per_step_films_the_same_scene_denser():
    """K frames per step: the same objects, actions and times (every K-th frame is the short clip's frame,
    spans scale by K, fps by K), so long windows can be compared with short clips of the same scenes."""
    for seed, split in ((3, "test"), (8, "val")):
        short, s1 = generate_sample(seed, split)
        dense, s3 = generate_sample(seed, split, frames_per_step=3)
        assert dense.shape[0] == 3 * short.shape[0] and s3["fps"] == 3 * s1["fps"]
        assert all((dense[3 * t] == short[t]).all() for t in range(len(short)))
        assert (s3["st_frame"], s3["ed_frame"]) == (3 * s1["st_frame"], 3 * s1["ed_frame"])
        assert s3["query"] == s1["query"] and s3["target"] == s1["target"]
        assert all(s3["boxes"][3 * t] == b for t, b in s1["boxes"].items())


def test_film_camera_wide_keeps_the_scene_and_moves_its_boxes():
    """A 2:1 camera with the square clip's height (224x112, no scaling): the square scene sits unchanged in
    the middle, the sides continue its backdrop, boxes shift by the margin; at 640x480 they scale too."""
    from stvg_ros.synthetic.generator import film_camera

    frames, sample = generate_sample(5, "val")
    wide, filmed = film_camera(frames, sample, 224, 112)
    assert wide.shape == (20, 112, 224, 3) and filmed["image_size"] == (112, 224)
    assert np.array_equal(wide[:, :, 56:168], frames)
    assert filmed["boxes"] == {t: (b[0] + 56, b[1], b[2] + 56, b[3]) for t, b in sample["boxes"].items()}
    for tid, track in sample["tracks"].items():
        assert filmed["tracks"][tid] == {t: (b[0] + 56, b[1], b[2] + 56, b[3]) for t, b in track.items()}
    # the margins hold no object: they mirror the backdrop, never a drawn object
    assert not any(np.any(np.all(wide[:, :, :56] == np.array(c, np.uint8), -1)) for c in COLOURS.values())
    cam, c = film_camera(frames, sample, 640, 480)
    assert cam.shape == (20, 480, 640, 3)
    s, scale = sample["st_frame"], 480 / 112
    x0, y0, x1, y1 = sample["boxes"][s]
    left = (round(112 * 640 / 480) - 112) // 2
    assert c["boxes"][s] == pytest.approx(((x0 + left) * scale, y0 * scale, (x1 + left) * scale, y1 * scale), rel=0.01)
    stretched, st = film_camera(frames, sample, 640, 480, "stretch")
    assert st["boxes"][s] == pytest.approx((x0 * 640 / 112, y0 * scale, x1 * 640 / 112, y1 * scale))
    with pytest.raises(ValueError, match="narrower"):
        film_camera(frames, sample, 300, 480)
