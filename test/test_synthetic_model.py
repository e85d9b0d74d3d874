"""The synthetic world's small Qwen2.5-VL: training sees what the grounding sees, one command trains and
saves a loadable model, the benchmark runs, and the shipped model answers held-out questions."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stvg_ros.synthetic.generator import generate_sample, target_object
from stvg_ros.synthetic.model import PromptBuilder, build_model, frames_to_pixels, save_model_dir, yes_no_logits

pytestmark = pytest.mark.model  # builds, trains or loads the synthetic world's model

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "stvg-synth-qwen"


@pytest.fixture(scope="module")
def random_model_dir(tmp_path_factory):
    torch.manual_seed(0)
    model, tok = build_model(seed=0)
    return str(save_model_dir(model.eval(), tok, tmp_path_factory.mktemp("synth")))


def test_training_forward_equals_the_adapters(random_model_dir):
    """Training's yes/no logits are exactly what the adapter computes at grounding time: same pixels,
    prompt, rotary positions (1 s per slot when the grounder gives no stamps) and answer tokens."""
    from stvg_ros.adapters import load_adapter

    adapter = load_adapter(random_model_dir)
    frames, _ = generate_sample(0, "test")
    questions = ["Is there a red shape in this video?", "Is there the small blue star that jumps in this video?"]
    with torch.no_grad():
        ours = yes_no_logits(adapter.model, PromptBuilder(adapter.tokenizer, 160), *frames_to_pixels(frames),
                             questions, [0, 0], seconds_per_slot=1.0)
        theirs = adapter.run(adapter.encode_frames(list(frames)), questions).yes_no_logits
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_train_command_writes_a_loadable_model(tmp_path):
    from stvg_ros import Grounder, GroundingConfig
    from stvg_ros.synthetic.train import train

    out = tmp_path / "m"
    summary = train(str(out), minutes=0.05, seed=0, clips_per_step=2, val_clips=2, eval_every=1000, threads=1)
    assert summary["steps"] >= 1
    for name in ("model.safetensors", "MODEL_CARD.md", "training_curve.png", "tokenizer.json", "config.json"):
        assert (out / name).is_file(), name
    assert set(summary["final"]) == {"val", "test"}
    grounder = Grounder.from_pretrained(str(out), config=GroundingConfig(num_frames=20, device="cpu",
                                                                         use_lra=False, use_tas=False))
    frames, s = generate_sample(1, "test")
    stamps = [t / s["fps"] for t in range(len(frames))]
    res = grounder.ground(list(frames), stamps, s["query"])
    assert res.start in stamps and res.end in stamps and res.start <= res.end


def test_freeze_motion_holds_the_hand_set_pathway(tmp_path):
    """``--freeze-motion``: every weight the motion prior set by hand is where initialisation put it after
    training steps, while the rest of the model moved."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from stvg_ros.synthetic.model import motion_pathway_masks
    from stvg_ros.synthetic.train import train

    out = tmp_path / "m"
    summary = train(str(out), minutes=0.05, seed=0, clips_per_step=2, val_clips=2, eval_every=1000, threads=1,
                    start_rung=3, compact_motion=True, freeze_motion=True)
    assert summary["steps"] >= 2 and summary["freeze_motion"]
    fresh, tok = build_model(seed=0, compact_motion=True)
    trained = dict(Qwen2_5_VLForConditionalGeneration.from_pretrained(str(out)).named_parameters())
    masks = motion_pathway_masks(fresh, tok, compact=True)
    assert {"model.visual.merger.mlp.0.weight", "model.language_model.layers.1.self_attn.k_proj.weight",
            "model.language_model.embed_tokens.weight"} <= set(masks)
    moved = 0.0
    for name, p0 in fresh.named_parameters():
        diff = (trained[name] - p0).abs().detach()
        if name in masks:
            assert float(diff[masks[name]].max()) == 0.0, name
            moved = max(moved, float(diff[~masks[name]].max()) if (~masks[name]).any() else 0.0)
    assert moved > 0.0  # the free entries of the same tensors did train


def test_readout_training_changes_the_answers_and_no_attention_weight(tmp_path):
    """``--train-only readout``: after training steps every parameter but the readout's is the init's, and the
    attention weights of every layer on a clip (what the grounding reads) are the init model's, while the yes/no
    logits moved."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from stvg_ros.synthetic.model import readout_parameters
    from stvg_ros.synthetic.train import train

    init = tmp_path / "init"
    fresh, tok = build_model(seed=3, compact_motion=True, conjunctive_motion=True)
    save_model_dir(fresh, tok, init)
    out = tmp_path / "m"
    summary = train(str(out), minutes=0.05, seed=0, clips_per_step=2, val_clips=2, eval_every=1000, threads=1,
                    start_rung=1, rungs=("colour", "action"), compact_motion=True, conjunctive_motion=True,
                    lr=3e-3, train_only="readout", size_questions=0.5, init=str(init))
    assert summary["steps"] >= 2 and summary["train_only"] == "readout" and summary["size_questions"] == 0.5
    models = [Qwen2_5_VLForConditionalGeneration.from_pretrained(str(d), attn_implementation="eager").eval()
              for d in (init, out)]
    readout = readout_parameters(models[0])
    before, after = (dict(m.named_parameters()) for m in models)
    assert all(torch.equal(before[n], after[n]) for n in before if n not in readout)
    assert any(not torch.equal(before[n], after[n]) for n in readout)

    frames, s = generate_sample(4, "val")
    pixels, grid = frames_to_pixels(frames)
    prompts = PromptBuilder(tok, 160)
    ids = torch.tensor([prompts.ids(f"Is there {s['query']} in this video?", 160)])
    attentions, answers = [], []
    with torch.no_grad():
        for m in models:
            o = m(input_ids=ids, pixel_values_videos=pixels, video_grid_thw=grid, output_attentions=True)
            attentions.append(o.attentions)
            answers.append(yes_no_logits(m, prompts, pixels, grid, [f"Is there {s['query']} in this video?"], [0]))
    assert len(attentions[0]) == models[0].config.text_config.num_hidden_layers
    for a, b in zip(*attentions):
        assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(answers[0], answers[1], atol=1e-4)


def test_action_windows_show_part_of_the_clip():
    """With ``--action-windows``, action questions are asked about 6-10 frames of the clip (3-5 temporal
    slots); without, about the whole clip (10 slots)."""
    from stvg_ros.synthetic.train import _batch

    seeds = np.arange(6)
    _, grid, qs, labels, _, _ = _batch(seeds, "train", ["action"], 2, np.random.default_rng(0), window_share=1.0)
    assert set(grid[:, 0].tolist()) <= {3, 4, 5} and len(qs) == len(labels) > 0
    _, grid, _, _, _, _ = _batch(seeds, "train", ["action"], 2, np.random.default_rng(0))
    assert set(grid[:, 0].tolist()) == {10}


def test_standing_pairs_ask_the_same_query_inside_and_outside_the_action():
    """``--standing-pairs``: two 8-frame windows of one 48-frame stream asked the same question, yes where the
    target's action overlaps the window by a temporal slot, no where it does not touch it (a standing query)."""
    from stvg_ros.synthetic.train import STANDING_WINDOW, _batch, _standing_pair

    _, grid, qs, labels, clips, _ = _batch(np.arange(4), "train", ["action"], 2, np.random.default_rng(0),
                                           standing_pairs=1.0)
    assert set(grid[:, 0].tolist()) == {STANDING_WINDOW // 2} and len(qs) == len(grid) >= 2
    assert clips == list(range(len(qs)))  # one question per window
    for k in range(0, len(qs), 2):
        assert qs[k] == qs[k + 1] and labels[k:k + 2].tolist() == [0, 1]  # class 0 = yes
    checked = 0
    for seed in range(8):
        frames, s = generate_sample(seed, "train", num_frames=48)
        pair = _standing_pair(seed, "train", np.random.default_rng(seed))
        if not pair:
            continue
        span = set(range(s["st_frame"], s["ed_frame"] + 1))
        for start, window, _, answer in pair:
            assert np.array_equal(window, frames[start:start + STANDING_WINDOW])
            shown = set(range(start, start + STANDING_WINDOW))
            assert (len(shown & span) >= 2) if answer else not (shown & span)
        checked += 1
    assert checked >= 4


def test_standing_pairs_never_label_a_window_no_where_what_the_query_names_acts():
    """A colour-and-action query ("a red shape that jumps") is true in a window where a red distractor jumps: such a
    window is never a pair's no; ``hard_negatives=1`` takes the no from a window where an object of the target's
    colour acts whenever the stream has one (the windows standing queries confuse most)."""
    from stvg_ros.synthetic.generator import acts_in, matches, target_object
    from stvg_ros.synthetic.train import STANDING_WINDOW, _standing_pair

    colour_action = hard = hard_possible = 0
    for seed in range(60):
        _, s = generate_sample(seed, "train", num_frames=48)
        pair = _standing_pair(seed, "train", np.random.default_rng(seed), hard_negatives=1.0)
        if not pair:
            continue
        t = target_object(s)
        (_, _, q, _), (start, _, _, answer) = pair
        assert answer is False
        named = {"colour": t["colour"], "action": t["action"]}
        if "shape that" in q:  # the colour-and-action form
            colour_action += 1
            named.update(size=None, shape=None)
        else:
            named.update(size=t["size"], shape=t["shape"])
        assert not any(matches(o, **named) and acts_in(o, start, start + STANDING_WINDOW - 1) for o in s["objects"])
        same_colour_acts = [o for o in s["objects"] if o["colour"] == t["colour"] and o is not t]
        hard += any(acts_in(o, start, start + STANDING_WINDOW - 1) for o in same_colour_acts)
        nos = [a for a in range(0, 48 - STANDING_WINDOW + 1, 2)
               if (a + STANDING_WINDOW - 1 < s["st_frame"] or a > s["ed_frame"])
               and not any(matches(o, **named) and acts_in(o, a, a + STANDING_WINDOW - 1) for o in s["objects"])]
        hard_possible += any(acts_in(o, a, a + STANDING_WINDOW - 1) for o in same_colour_acts for a in nos)
    assert colour_action >= 10 and hard >= 5
    assert hard == hard_possible  # whenever the stream has one


def test_crowded_colour_clips_are_as_full_as_the_action_rungs_and_8_or_20_frames_long():
    """``--crowded-colour``: colour questions on scenes as crowded as the action rung's, 8 or 20 frames (the colour
    rung's own clips hold 0-1 distractors and mostly 2 frames): the scenes standing queries and the memory ask about."""
    from stvg_ros.synthetic.train import CROWDED_FRAMES, DISTRACTORS, _batch

    _, grid, qs, _, clips, rungs = _batch(np.arange(12), "train", ["colour"], 1, np.random.default_rng(0),
                                          crowded_colour=1.0)
    assert set(rungs) == {"colour"} and set(grid[:, 0].tolist()) <= {n // 2 for n in CROWDED_FRAMES[0]}
    _, plain, _, _, _, _ = _batch(np.arange(12), "train", ["colour"], 1, np.random.default_rng(0))
    assert (plain[:, 0] == 1).sum() > (grid[:, 0] == 1).sum() == 0, "plain colour clips are mostly one frame pair"
    crowded = [len(generate_sample(int(s), "train", num_distractors=DISTRACTORS["action"])[1]["objects"])
               for s in range(12)]
    assert min(crowded) >= 1 + DISTRACTORS["action"][0] > 1 + DISTRACTORS["colour"][1]


def test_init_starts_from_the_model_directory(tmp_path):
    """``--init``: training starts from the directory's weights (read through ``from_pretrained``: the saved
    names differ from the module's), so with a zero learning rate the written model is the one given."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from stvg_ros.synthetic.train import train

    torch.manual_seed(3)
    start, tok = build_model(seed=3)
    init = save_model_dir(start.eval(), tok, tmp_path / "init")
    summary = train(str(tmp_path / "m"), minutes=0.03, seed=0, clips_per_step=2, val_clips=1, eval_every=1000,
                    threads=1, start_rung=3, init=str(init), lr=0.0, vision_lr=0.0)
    assert summary["steps"] >= 1 and summary["init"] == str(init)
    written = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(tmp_path / "m")).state_dict()
    given = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(init)).state_dict()
    fresh = build_model(seed=0)[0].state_dict()
    assert all(torch.equal(written[k], given[k]) for k in given)
    assert not all(torch.equal(written[k], fresh[k]) for k in fresh)  # not the seed's own initialisation


def test_a_model_trained_in_stages_lists_every_stage_and_its_command():
    """A run started from an earlier model (``--init``) keeps that run's summary, so the card gives the whole
    chain: one command per stage, each later one starting from the stage before."""
    from stvg_ros.synthetic.card import _stages_text, stages, train_commands

    first = dict(seed=0, steps=100, minutes=50.0, lr=2e-4, vision_lr=2e-4, rungs=["colour", "action"],
                 compact_motion=True)
    second = dict(first, seed=5, steps=40, minutes=22.0, start_rung=1, standing_pairs=0.3, init_from=first)
    third = dict(second, seed=6, minutes=35.0, standing_pairs=0.6, init_from=second)
    assert [s["seed"] for s in stages(third)] == [0, 5, 6] and stages(first) == [first]
    cmds = train_commands(third)
    assert cmds[0].startswith("python -m stvg_ros.synthetic.train --out stage-1 --minutes 50 --seed 0")
    assert "--init" not in cmds[0] and "--standing-pairs" not in cmds[0]
    assert "--out stage-2" in cmds[1] and cmds[1].endswith("--start-rung 1 --standing-pairs 0.3 --init stage-1")
    assert "--out models/stvg-synth-qwen" in cmds[2] and cmds[2].endswith("--standing-pairs 0.6 --init stage-2")
    assert "3 stages" in _stages_text(third) and "180 steps in 107.0 minutes" in _stages_text(third)
    assert "--shape-prior" not in cmds[0] and "--shape-prior" in train_commands(dict(first, shape_prior=True))[0]
    assert train_commands(first) == [cmds[0].replace("stage-1", "models/stvg-synth-qwen")]
    contrast = dict(third, seed=7, contrast_actions=0.5, init_from=third)  # a flag of session 27's stages
    assert train_commands(contrast)[3].endswith("--standing-pairs 0.6 --contrast-actions 0.5 --init stage-3")
    assert "50 % of the action rung's no asking a confusable action" in _stages_text(contrast)
    readout = dict(third, seed=17, size_questions=0.5, train_only="readout", init_from=third)  # session 28's
    assert train_commands(readout)[3].endswith("--size-questions 0.5 --train-only readout --init stage-3")
    assert "only the readout trained" in _stages_text(readout)


def test_bench_produces_the_table(random_model_dir):
    from stvg_ros.synthetic.bench import METHODS, markdown, run

    base = {k: v for k, v in METHODS.items() if k.startswith("base")}
    table = run(random_model_dir, count=2, methods=base, progress=False)
    assert {"random proposal, full clip", "largest proposal, full clip", "centre box, full clip"} <= set(table)
    for row in table.values():
        assert {"m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5"} <= set(row)
    model_row = table[next(iter(base))]
    assert 0.0 <= model_row["track_acc"] <= 100.0 and 0.0 <= model_row["frame_track_acc"] <= 100.0
    assert "| method |" in markdown(table, 2)


def test_frame_track_share_counts_the_frames_where_the_target_is_the_peak():
    """The temporal-consistency column: per frame, is the target's box the one with the highest spatial
    relevance?  A map on the target's cell in every frame scores (nearly) 1; one that moves to another
    object's cell for the second half of the clip about half that."""
    from stvg_ros.grounding.result import GroundingResult, RelevanceMaps, SubQueries
    from stvg_ros.synthetic.bench import frame_track_share

    _, s = generate_sample(3, "val")
    n = s["num_frames"]
    other = next(tid for tid in s["tracks"] if tid != s["target"])
    stamps = [t / s["fps"] for t in range(n)]

    def share(lit_track):
        spatial = np.zeros((n, 4, 4), np.float32)
        for t in range(n):
            box = s["tracks"][lit_track(t)].get(t)
            if box is not None:
                spatial[t, int((box[1] + box[3]) / 2 // 28), int((box[0] + box[2]) / 2 // 28)] = 1.0
        rel = RelevanceMaps(spatial=spatial, temporal=spatial, content_box=(0.0, 0.0, 112.0, 112.0),
                            image_size=(112, 112))
        res = GroundingResult(query=s["query"], found=True, score=1.0, start=0.0, end=stamps[-1], boxes={},
                              track_id=s["target"], sub_queries=SubQueries("a", "b"), frame_stamps=stamps,
                              relevance=rel)
        return frame_track_share(res, s)

    steady = share(lambda t: s["target"])
    switching = share(lambda t: s["target"] if t < n // 2 else other)
    assert steady >= 0.8 and 0.3 <= switching <= 0.7 and switching < steady, (steady, switching)


def test_sub_query_kinds_name_the_target():
    """The LRA diagnostic's sub-queries name the target's colour (and its action), as the model's yes/no
    training questions do; the default is the dataset's decomposition; anything else is refused."""
    from stvg_ros.synthetic.bench import sub_queries

    _, s = generate_sample(5, "val")
    target = target_object(s)
    assert sub_queries(s) == (s["attribute"], s["action"])
    attribute, action = sub_queries(s, "colour")
    assert attribute == f"a {target['colour']} shape" and action == f"{attribute} that {target['action']}"
    with pytest.raises(ValueError, match="sub-query kind"):
        sub_queries(s, "shape")


def test_choice_ceilings_rise_with_what_the_chooser_knows():
    from stvg_ros.synthetic.bench import choice_ceilings
    from stvg_ros.synthetic.generator import generate_sample

    samples = [generate_sample(k, "val")[1] for k in range(20)]
    c = choice_ceilings(samples)
    # every further attribute can only narrow the tracks that match; look + action names the target alone
    assert c["colour"] <= c["colour + size"] <= c["look (size, colour, shape)"] <= c["look + action"] == 100.0
    assert c["colour"] <= c["colour + action"] <= 100.0
    # the generator gives colour-sharing distractors: colour alone is not enough on this split
    assert c["colour"] < 90.0


def _shipped_or_skip():
    if not (SHIPPED / "config.json").is_file():
        pytest.skip(f"no shipped model in {SHIPPED}: train it with "
                    "`python -m stvg_ros.synthetic.train --out models/stvg-synth-qwen`")
    return SHIPPED


#: fixed held-out clips (test split: unseen colour-action pairs) and the rungs the shipped model learned
HELD_OUT_SEEDS = range(12)
LEARNED_RUNGS = ("colour",)
#: the bar: the shipped model answered 24/24 of these colour questions correctly (measured 2026-11-30,
#: run N, 4,704 steps; the previous model A also 24/24); its whole-clip action answers (13/24) are at
#: chance and not tested, see MODEL_CARD.md
MIN_ACCURACY = 0.9


def test_shipped_model_answers_held_out_questions():
    """Loads offline through Grounder.from_pretrained and answers balanced yes/no questions about
    fixed held-out clips, for the question kinds it was trained to (see MODEL_CARD.md)."""
    from stvg_ros import Grounder, GroundingConfig
    from stvg_ros.synthetic.questions import clip_questions

    grounder = Grounder.from_pretrained(str(_shipped_or_skip()), config=GroundingConfig(device="cpu"))
    adapter = grounder.adapter
    rng = np.random.default_rng(123)
    correct = total = 0
    for seed in HELD_OUT_SEEDS:
        frames, s = generate_sample(seed, "test")
        qs = clip_questions(s["objects"], list(LEARNED_RUNGS), 1, rng, split="test")
        with torch.no_grad():
            logits = adapter.run(adapter.encode_frames(list(frames)), [q for q, _, _ in qs]).yes_no_logits
        said_yes = (logits[:, 0] > logits[:, 1]).tolist()
        correct += sum(int(y == a) for y, (_, a, _) in zip(said_yes, qs))
        total += len(qs)
    assert total == 2 * len(HELD_OUT_SEEDS)
    assert correct / total >= MIN_ACCURACY, f"{correct}/{total} correct"


def test_question_first_template_reads_grounding_tokens_after_the_video(random_model_dir):
    """The synthetic model's template puts the question before the video; the grounding-token
    candidates must then be the tokens after the video block (they are the ones that can see it)."""
    from stvg_ros.adapters import load_adapter

    adapter = load_adapter(random_model_dir)
    frames, _ = generate_sample(0, "test")
    batch = adapter.prepare(adapter.encode_frames(list(frames)), ["Is there a red shape in this video?"])
    assert batch.candidate_tokens[0][0] == "<|vision_end|>"
    assert batch.candidate_tokens[0][-2:] == ["assistant", "Ċ"]
    assert int(batch.rows.min()) > int(batch.cols.max())  # every candidate row sees every visual token


def _touches_cell(objects: list[dict], sample: dict, slot: int, cell: int, acting_only: bool = False) -> bool:
    """Does one of ``objects`` (acting then, with ``acting_only``) overlap a 28 px token cell in slot ``slot``?"""
    x0, y0 = (cell % 4) * 28, (cell // 4) * 28
    for o in objects:
        for f in (2 * slot, 2 * slot + 1):
            box = sample["tracks"][o["track_id"]].get(f)
            if box is None or (acting_only and not (o["action"] and o["span"][0] <= f <= o["span"][1])):
                continue
            if min(box[2], x0 + 28) > max(box[0], x0) and min(box[3], y0 + 28) > max(box[1], y0):
                return True
    return False


def _layer1_attention(inner, prompts, tokens, grid, question: str, head: int) -> torch.Tensor:
    """Attention of layer 1's ``head`` at the last prompt token to each visual token (``tokens`` = the
    clip's merged visual features), for ``question`` (eager attention must be set on ``inner``)."""
    ids = torch.tensor([prompts.ids(question)])
    vm = ids == prompts.video_id
    embeds = inner.get_input_embeddings()(ids).masked_scatter(vm.unsqueeze(-1), tokens)
    pos, _ = inner.get_rope_index(ids, vm.int() * 2, video_grid_thw=grid, attention_mask=torch.ones_like(ids),
                                  second_per_grid_ts=torch.tensor([1.0]))
    with torch.no_grad():
        att = inner.language_model(inputs_embeds=embeds, position_ids=pos, output_attentions=True).attentions[1]
    return att[0, head, -1, vm[0]]


@pytest.mark.parametrize("shape_prior", [False, True], ids=["plain", "shape-prior"])
def test_conjunctive_motion_prior_attends_to_the_named_colour_while_it_acts(shape_prior):
    """``conjunctive_motion`` (also beside the shape pathway): at initialisation, under "a red shape that jumps", layer 1's motion collect
    head puts its top attention on an object of the named colour while it acts; and only a verb marks
    changing tokens: under the action sub-query the head's attention to the target's cell, divided by the
    caption prompt's, is orders of magnitude larger in the slots where the target acts than where it rests."""
    torch.manual_seed(0)
    model, tok = build_model(seed=0, compact_motion=True, conjunctive_motion=True, shape_prior=shape_prior)
    inner = model.model
    inner.language_model.config._attn_implementation = "eager"
    prompts = PromptBuilder(tok, 160)

    def motion_head(question, tokens, grid):
        return _layer1_attention(inner, prompts, tokens, grid, question, head=2)

    on_target, contrast = [], []
    for seed in range(8):
        frames, s = generate_sample(seed, "train")
        px, grid = frames_to_pixels(frames)
        with torch.no_grad():
            tokens = inner.get_video_features(px, grid, return_dict=True).pooler_output[0]
        target = target_object(s)
        att = motion_head(f"Is there a {target['colour']} shape that {target['action']} in this video?", tokens, grid)
        same = [o for o in s["objects"] if o["colour"] == target["colour"]]
        on_target.append(_touches_cell(same, s, *divmod(int(att.argmax()), 16), acting_only=True))
        ratio = motion_head(f"Is there {s['action']} in this video?", tokens, grid) \
            / motion_head("Describe this video in details.", tokens, grid)
        acting, resting = [], []
        for t in range(10):
            box = s["tracks"][s["target"]].get(2 * t)
            if box is not None:
                k = t * 16 + int((box[1] + box[3]) / 2 // 28) * 4 + int((box[0] + box[2]) / 2 // 28)
                (acting if s["st_frame"] <= 2 * t + 1 and 2 * t <= s["ed_frame"] else resting).append(float(ratio[k]))
        contrast.append(np.mean(acting) / np.mean(resting))
    assert np.mean(on_target) >= 0.8, on_target
    assert np.median(contrast) > 100.0, contrast  # measured: about 1e10 (without the clearing: 8)


@pytest.mark.parametrize("compact, shape_prior", [(False, False), (True, False), (True, True)],
                         ids=["every-difference", "compact", "compact-shape-prior"])
def test_priors_at_initialisation_mark_colour_matches_and_change(compact, shape_prior):
    """The disclosed priors do what their docstrings say before any training (also beside the shape pathway): the merger's change
    direction separates changing from still visual tokens; at the answer position, layer 1's colour
    collect head puts its top attention on a visual token of the colour the question names, and its
    separate motion collect head on an object that is acting when the question names an action."""
    from stvg_ros.synthetic.model import init_motion_merger

    torch.manual_seed(0)
    model, tok = build_model(seed=0, compact_motion=compact, shape_prior=shape_prior)
    motion = init_motion_merger(model, compact=compact)  # idempotent: returns the same direction the build used
    inner = model.model
    inner.language_model.config._attn_implementation = "eager"
    prompts = PromptBuilder(tok, 160)
    moving, still, on_colour, on_action = [], [], [], []
    for seed in range(8):
        frames, s = generate_sample(seed, "train")
        px, grid = frames_to_pixels(frames)
        with torch.no_grad():
            tokens = inner.get_video_features(px, grid, return_dict=True).pooler_output[0]
        proj = (tokens @ motion).reshape(10, 16)
        for o in s["objects"]:
            for t in range(10):
                box = s["tracks"][o["track_id"]].get(2 * t)
                if box is None or 2 * t + 1 not in s["tracks"][o["track_id"]]:
                    continue
                cell = int((box[1] + box[3]) / 2 // 28) * 4 + int((box[0] + box[2]) / 2 // 28)
                acting = o["action"] is not None and o["span"][0] <= 2 * t and 2 * t + 1 <= o["span"][1]
                resting = o["action"] is None or 2 * t + 1 < o["span"][0] or 2 * t > o["span"][1]
                (moving if acting else still if resting else []).append(float(proj[t, cell]))

        def top_cell(question: str, head: int) -> tuple[int, int]:
            """(slot, cell) of the visual token that layer 1's ``head`` at the last prompt token attends to most."""
            return divmod(int(_layer1_attention(inner, prompts, tokens, grid, question, head).argmax()), 16)

        target = target_object(s)
        same = [o for o in s["objects"] if o["colour"] == target["colour"]]
        on_colour.append(_touches_cell(same, s, *top_cell(f"Is there a {target['colour']} shape in this video?", 1)))
        question = f"Is there the {target['shape']} {target['action']} in this video?"
        on_action.append(_touches_cell(s["objects"], s, *top_cell(question, 2), acting_only=True))
    moving, still = np.array(moving), np.array(still)
    auc = float((moving[:, None] > still[None, :]).mean())
    assert auc > 0.8, auc
    assert np.mean(on_colour) >= 0.8, on_colour
    assert np.mean(on_action) >= 0.8, on_action


def test_shape_prior_hands_the_language_model_the_symmetry_of_each_tokens_edges():
    """``shape_prior``: at initialisation a linear probe reads the target's shape from its visual tokens better than
    from the plain tower's (the same seed and priors otherwise; 5-fold on 160 val clips, summed over the tokens its box
    touches, mean over the temporal slots), and on the pathway's directions a square's tokens are more 4-fold
    symmetric than a circle's, a triangle's more 3-fold and a star's more 5-fold."""
    from bench.attribute_probe import probe_accuracy
    from stvg_ros.synthetic.generator import SHAPES
    from stvg_ros.synthetic.model import SHAPE_HARMONICS, init_motion_merger, init_shape_pathway

    def tokens_at_target(model, count=160):
        x, y, seed = [], [], 0
        while len(y) < count:
            frames, s = generate_sample(seed, "val", num_frames=16)
            seed += 1
            px, grid = frames_to_pixels(frames[:8])
            with torch.no_grad():
                feats = model.model.get_video_features(px, grid, return_dict=True).pooler_output[0].view(-1, 4, 4, 128)
            track, per_slot = s["tracks"][s["target"]], []
            for slot in range(feats.shape[0]):
                box = track.get(2 * slot)
                if box is not None:
                    r0, r1 = int(box[1] // 28), min(3, int((box[3] - 1) // 28))
                    c0, c1 = int(box[0] // 28), min(3, int((box[2] - 1) // 28))
                    per_slot.append(feats[slot, r0:r1 + 1, c0:c1 + 1].reshape(-1, 128).sum(0))
            if per_slot:
                x.append(torch.stack(per_slot).mean(0).numpy())
                y.append(SHAPES.index(target_object(s)["shape"]))
        return np.array(x), np.array(y)

    plain, _ = build_model(seed=0, compact_motion=True, conjunctive_motion=True)
    shaped, _ = build_model(seed=0, compact_motion=True, conjunctive_motion=True, shape_prior=True)
    x_plain, y = tokens_at_target(plain)
    x_shaped, y_shaped = tokens_at_target(shaped)
    assert (y == y_shaped).all()
    fresh = build_model(seed=0, compact_motion=True)[0]  # the directions the build drew
    motion = init_motion_merger(fresh, compact=True)
    directions = init_shape_pathway(fresh, avoid=motion)
    assert (directions @ motion).abs().max() < 1e-5  # an edge does not read as a change
    assert directions.shape == (len(SHAPE_HARMONICS), 128)
    plain_acc, shaped_acc = probe_accuracy(x_plain, y), probe_accuracy(x_shaped, y)
    print(f"shape probe: plain {plain_acc:.3f}, shape prior {shaped_acc:.3f}")
    assert shaped_acc >= plain_acc + 0.04, (plain_acc, shaped_acc)
    fold = x_shaped @ directions.numpy().T  # clip x harmonic
    by = {shape: fold[y == SHAPES.index(shape)].mean(0) for shape in SHAPES}
    k = {n: SHAPE_HARMONICS.index(n) for n in (3, 4, 5)}
    assert by["square"][k[4]] > 1.5 * by["circle"][k[4]], by  # measured: 0.59 against 0.31
    assert by["triangle"][k[3]] > by["circle"][k[3]] and by["star"][k[5]] > by["circle"][k[5]], by
