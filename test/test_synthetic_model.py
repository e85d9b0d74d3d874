"""The synthetic world's small Qwen2.5-VL: training sees what the grounding sees, one command trains and
saves a loadable model, the benchmark runs, and the shipped model answers held-out questions."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stvg_ros.synthetic.generator import generate_sample
from stvg_ros.synthetic.model import PromptBuilder, build_model, frames_to_pixels, save_model_dir, yes_no_logits

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


def test_action_windows_show_part_of_the_clip():
    """With ``--action-windows``, action questions are asked about 6-10 frames of the clip (3-5 temporal
    slots); without, about the whole clip (10 slots)."""
    from stvg_ros.synthetic.train import _batch

    seeds = np.arange(6)
    _, grid, qs, labels, _, _ = _batch(seeds, "train", ["action"], 2, np.random.default_rng(0), window_share=1.0)
    assert set(grid[:, 0].tolist()) <= {3, 4, 5} and len(qs) == len(labels) > 0
    _, grid, _, _, _, _ = _batch(seeds, "train", ["action"], 2, np.random.default_rng(0))
    assert set(grid[:, 0].tolist()) == {10}


def test_bench_produces_the_table(random_model_dir):
    from stvg_ros.synthetic.bench import METHODS, markdown, run

    base = {k: v for k, v in METHODS.items() if k.startswith("base")}
    table = run(random_model_dir, count=2, methods=base, progress=False)
    assert {"random proposal, full clip", "largest proposal, full clip", "centre box, full clip"} <= set(table)
    for row in table.values():
        assert {"m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5"} <= set(row)
    assert "| method |" in markdown(table, 2)


def _shipped_or_skip():
    if not (SHIPPED / "config.json").is_file():
        pytest.skip(f"no shipped model in {SHIPPED}: train it with "
                    "`python -m stvg_ros.synthetic.train --out models/stvg-synth-qwen`")
    return SHIPPED


#: fixed held-out clips (test split: unseen colour-action pairs) and the rungs the shipped model learned
HELD_OUT_SEEDS = range(12)
LEARNED_RUNGS = ("colour",)
#: the bar: the shipped model answered 24/24 of these colour questions correctly (measured 2026-11-25,
#: model of 5,301 steps); its shape (14/24) and look (15/24) answers are not reliable enough to test,
#: see MODEL_CARD.md
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


@pytest.mark.parametrize("compact", [False, True], ids=["every-difference", "compact"])
def test_priors_at_initialisation_mark_colour_matches_and_change(compact):
    """The disclosed priors do what their docstrings say before any training: the merger's change
    direction separates changing from still visual tokens; at the answer position, layer 1's colour
    collect head puts its top attention on a visual token of the colour the question names, and its
    separate motion collect head on an object that is acting when the question names an action."""
    from stvg_ros.synthetic.model import init_motion_merger

    torch.manual_seed(0)
    model, tok = build_model(seed=0, compact_motion=compact)
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
            ids = torch.tensor([prompts.ids(question)])
            vm = ids == prompts.video_id
            embeds = inner.get_input_embeddings()(ids).masked_scatter(vm.unsqueeze(-1), tokens)
            pos, _ = inner.get_rope_index(ids, vm.int() * 2, video_grid_thw=grid, attention_mask=torch.ones_like(ids),
                                          second_per_grid_ts=torch.tensor([1.0]))
            with torch.no_grad():
                att = inner.language_model(inputs_embeds=embeds, position_ids=pos, output_attentions=True).attentions[1]
            return divmod(int(att[0, head, -1, vm[0]].argmax()), 16)

        target = next(o for o in s["objects"] if o["track_id"] == s["target"])
        same = [o for o in s["objects"] if o["colour"] == target["colour"]]
        on_colour.append(_touches_cell(same, s, *top_cell(f"Is there a {target['colour']} shape in this video?", 1)))
        question = f"Is there the {target['shape']} {target['action']} in this video?"
        on_action.append(_touches_cell(s["objects"], s, *top_cell(question, 2), acting_only=True))
    moving, still = np.array(moving), np.array(still)
    auc = float((moving[:, None] > still[None, :]).mean())
    assert auc > 0.8, auc
    assert np.mean(on_colour) >= 0.8, on_colour
    assert np.mean(on_action) >= 0.8, on_action
