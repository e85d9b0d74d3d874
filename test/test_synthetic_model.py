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
#: the bar: the shipped model answered 24/24 of these colour questions correctly (measured 2026-11-25);
#: its shape (17/24) and look (19/24) answers are not reliable enough to test, see MODEL_CARD.md
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
