"""The official code's readings (issue 30, N1-N5) and the latent prompts' precision (docs/evaluation.md)."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fake_adapter import FakeAdapter, clip_with_square
from stvg_ros.evaluation import datasets
from stvg_ros.config import GroundingConfig
from stvg_ros.evaluation.evaluate import load_config
from stvg_ros.grounding.grounder import Grounder
from stvg_ros.grounding import lra, relevance, spatial
from stvg_ros.grounding.spatial import SampledTrack, choose_track

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ("hcstvg_v1", "hcstvg_v2", "vidstg")


def _configs():
    for name in DATASETS:
        yield "paper", name, load_config(str(ROOT / "config" / "eval" / f"{name}.yaml"))[0]
        yield "official", name, load_config(str(ROOT / "config" / "eval" / "official" / f"{name}.yaml"))[0]


# --- N1: sub-query files read as the official prepare_instructions ------------------------------

def test_sub_queries_take_the_last_entry_and_fall_back_on_failed_halves(tmp_path):
    path = tmp_path / "sq.json"
    path.write_text(json.dumps({
        "ok": {"decompose_attribute": ["the man in red.", "the man in purple clothes."],
               "decompose_action": ["The man sits down."]},
        "failed_attr": {"decompose_attribute": ["Please describe this video."],
                        "decompose_action": ["The woman stands up."]},
        "marker_last": {"decompose_attribute": ["the girl."], "decompose_action": ["x", "please describe this video"]},
        "empty": {"decompose_attribute": [], "decompose_action": "The dog runs."},
    }))
    table = datasets.load_sub_queries(path)
    assert table["ok"].attribute == "the man in purple clothes." and table["ok"].action == "The man sits down."
    assert table["failed_attr"].attribute == "" and table["failed_attr"].action == "The woman stands up."
    assert table["marker_last"].action == ""
    assert table["empty"].attribute == "" and table["empty"].action == "The dog runs."
    full = datasets.with_full_query(table["failed_attr"], "The woman in  white stands up.")
    assert (full.attribute, full.action) == ("The woman in white stands up.", "The woman stands up.")


def test_a_failed_half_asks_the_full_query_as_the_full_query():
    """LRA and inference ask the full question (formatted as the full query) for a failed half, never the marker."""
    frames, stamps, _ = clip_with_square(num_frames=6)
    adapter = FakeAdapter()
    cfg = dict(num_frames=6, use_tas=False, lra_steps=1, query_format="lower", sub_query_format="keep",
               inference_query="sub")
    query = "The Man in red walks."
    Grounder(adapter, cfg).ground(frames, stamps, query, sub_queries=datasets.with_full_query(
        datasets.SubQueries("", "The Man walks.", "caller"), query))
    asked = {q for call in adapter.calls for q in call["questions"]}
    assert "Is there the man in red walks in this video?" in asked  # the failed attribute: the full query, lower
    assert "Is there The Man walks in this video?" in asked         # the action as written (N3)
    assert not any("describe this video" in q.lower() and q.startswith("Is there") for q in asked)


# --- N3: query_format applies to the full sentence only in the configs ---------------------------

@pytest.mark.parametrize("column", ["paper", "official"])
def test_eval_configs_keep_the_sub_queries_as_written(column):
    frames, stamps, _ = clip_with_square(num_frames=6)
    for col, name, cfg in _configs():
        if col != column:
            continue
        adapter = FakeAdapter()
        cfg = cfg.replace(num_frames=6, use_tas=False, lra_steps=1, dtype="auto", device="cpu",
                          visual_tokens="model", prompt_style="template", answer_tokens="auto",
                          grounding_token="auto", layers=[])
        Grounder(adapter, cfg).ground(frames, stamps, "The man in red walks.",
                                      sub_queries=("the man in red.", "The man walks to the Car."))
        asked = {q for call in adapter.calls for q in call["questions"]}
        assert "Is there The man walks to the Car in this video?" in asked, (name, sorted(asked))
        full = "Is there the man in red walks in this video?"
        assert full in asked, (name, sorted(asked))


def test_the_default_formats_sub_queries_as_the_query():
    assert GroundingConfig().sub_query_format == "query"
    frames, stamps, _ = clip_with_square(num_frames=6)
    adapter = FakeAdapter()
    Grounder(adapter, dict(num_frames=6, use_tas=False, lra_steps=1, query_format="lower")).ground(
        frames, stamps, "The man walks.", sub_queries=("the man.", "The Man walks."))
    asked = {q for call in adapter.calls for q in call["questions"]}
    assert "Is there the man walks in this video?" in asked and not any("The Man" in q for q in asked)


# --- N2: precision -----------------------------------------------------------------------------

def _precision_table() -> list[list[float]]:
    text = (ROOT / "docs" / "evaluation.md").read_text()
    section = text.split("### Precision of the latent prompts", 1)[1].split("\n### ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"[0-9.]+", cells[0]):
            rows.append([float(c) for c in cells])
    return rows


def test_precision_table_is_reproduced():
    """docs/evaluation.md's table: what the decoder sees of a latent prompt in bfloat16 and float16."""
    rows = _precision_table()
    assert len(rows) >= 4
    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(720, 4096, generator=g)
    for ratio, bf_err, bf_cos, fp_err, fp_cos in rows:
        delta = torch.randn(720, 4096, generator=g) * ratio
        bf = lra.latent_prompt_kept(tokens, delta, torch.bfloat16)
        fp = lra.latent_prompt_kept(tokens, delta, torch.float16)
        assert bf["rms_ratio"] == pytest.approx(ratio, rel=0.01)
        assert (bf["rel_error"], bf["cosine"]) == (pytest.approx(bf_err, abs=0.01), pytest.approx(bf_cos, abs=0.01))
        assert (fp["rel_error"], fp["cosine"]) == (pytest.approx(fp_err, abs=0.01), pytest.approx(fp_cos, abs=0.01))
        assert lra.latent_prompt_kept(tokens, delta, torch.float32)["rel_error"] < 1e-3


def test_latent_prompt_is_summed_before_rounding():
    """The adapters round tokens + prompt once (``add_latent_prompt``): float32 tokens 1.003 plus a prompt 0.002
    is 1.005, which bfloat16 (step 2^-7 above 1) rounds to 1.0078; rounding each first gives 1.0 + 0.002 -> 1.0."""
    from stvg_ros.adapters.base import add_latent_prompt
    tokens, delta = torch.full((4,), 1.003), torch.full((4,), 0.002)
    once = add_latent_prompt(tokens, delta, torch.bfloat16)
    twice = tokens.to(torch.bfloat16) + delta.to(torch.bfloat16)
    assert once.dtype == torch.bfloat16 and float(once[0]) == 1.0078125 and float(twice[0]) == 1.0


@pytest.mark.parametrize("column", ["paper", "official"])
def test_eval_configs_run_in_float16(column):
    for col, name, cfg in _configs():
        if col == column:
            assert cfg.dtype == "float16", name


# --- N4: the official checkpoint ----------------------------------------------------------------

def test_docs_and_configs_name_the_dpo_checkpoint():
    files = [*sorted((ROOT / "config" / "eval").rglob("*.yaml")), ROOT / "docs" / "evaluation.md"]
    for path in files:
        text = path.read_text()
        assert "/models/LLaVA-NeXT-Video-7B-hf" not in text, path  # the commands run the official checkpoint
    for path in files[:-1]:
        assert "LLaVA-NeXT-Video-7B-DPO-hf" in path.read_text(), path


# --- N5: the official track score ---------------------------------------------------------------

@pytest.mark.parametrize("box,grid,content", [
    ((100.3, 50.0, 260.7, 400.2), (6, 6), (0, 0, 640, 480)),
    ((0, 0, 640, 480), (6, 6), (0, 0, 640, 480)),
    ((300, 200, 310, 215), (6, 6), (0, 0, 640, 480)),
    ((20, 30, 200, 100), (7, 9), (0, 40, 640, 440)),
])
def test_box_cell_weights_equal_the_official_mask_resize(box, grid, content):
    """The official `F.interpolate(mask, (grid, grid), mode='bilinear', align_corners=False)` of the box's mask."""
    x0, y0, x1, y1 = content
    h, w = int(y1 - y0), int(x1 - x0)
    ys, xs = np.mgrid[0:h, 0:w]
    cx, cy = x0 + xs + 0.5, y0 + ys + 0.5
    mask = ((cx >= box[0]) & (cx < box[2]) & (cy >= box[1]) & (cy < box[3])).astype(np.float32)
    want = F.interpolate(torch.from_numpy(mask)[None, None], size=grid, mode="bilinear", align_corners=False)[0, 0]
    np.testing.assert_allclose(relevance.box_cell_weights(box, grid, content), want.numpy(), atol=1e-6)


def test_cells_score_differs_from_max_where_the_official_code_does():
    """A small box over a cell corner: 'max' reads the upsampled peak inside it, 'cells' the cell weights that
    sample the box only near cell centres (a box missing every centre scores 0)."""
    grid = (6, 6)
    maps = np.ones((2, 6, 6), np.float32)
    maps[:, 2, 2] = 10.0                  # a peak in cell (2, 2): pixels 213-320 x 160-240 of 640x480, centre (267, 200)
    corner = (300.0, 225.0, 330.0, 250.0)  # overlaps the peak cell's corner, covers no cell centre
    big = (0.0, 0.0, 640.0, 480.0)
    tracks = [SampledTrack("corner", [corner, corner]), SampledTrack("big", [None, (0, 0, 100, 100)])]
    kw = dict(grid_maps=maps, grid=grid, content_box=(0, 0, 640, 480), image_size=(480, 640), frame_stamps=[0, 1],
              proposals=None, box_threshold=0.5, tolerance=0.1)
    props = {"corner": {0.0: corner, 1.0: corner}, "big": {1.0: (0.0, 0.0, 100.0, 100.0)}}
    best_max = choose_track(**dict(kw, proposals=props))[0]
    best_cells = choose_track(**dict(kw, proposals=props), track_score="cells")[0]
    assert best_max.track_id == "corner" and best_cells.track_id == "big"
    spatial.score_tracks_on_cells(maps, grid, (0, 0, 640, 480), tracks)
    assert tracks[0].score == 0.0 and tracks[1].score == pytest.approx(1.0)
    full = [SampledTrack("full", [big, big])]
    spatial.score_tracks_on_cells(maps, grid, (0, 0, 640, 480), full)
    assert full[0].score == pytest.approx(10.0)


def test_eval_configs_track_score():
    for col, name, cfg in _configs():
        assert cfg.track_score == ("cells" if col == "official" else "max"), (col, name)
