"""The evaluation configs reproduce the settings table of docs/evaluation.md ("The paper's setting")."""

import re
from pathlib import Path

import pytest
import yaml

from stvg_ros.config import GroundingConfig
from stvg_ros.evaluation.evaluate import load_config

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ("hcstvg_v1", "hcstvg_v2", "vidstg")
COLUMNS = {"paper": 0, "official": 1, "default": 2}


def settings_table() -> dict[str, list[list]]:
    """field → per column (paper, official, default) the values written in backticks."""
    text = (ROOT / "docs" / "evaluation.md").read_text()
    section = text.split("### The paper's setting", 1)[1].split("\n### ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) < 4 or not re.fullmatch(r"`\w+`", cells[0]):
            continue
        rows[cells[0].strip("`")] = [[yaml.safe_load(v) for v in re.findall(r"`([^`]*)`", c)] for c in cells[1:4]]
    return rows


def test_table_covers_what_the_configs_set():
    table = settings_table()
    assert len(table) >= 15
    for name in DATASETS:
        for path in (ROOT / "config" / "eval" / f"{name}.yaml", ROOT / "config" / "eval" / "official" / f"{name}.yaml"):
            data = yaml.safe_load(path.read_text())["grounding"]
            set_fields = set(data) - {"device", "dtype", "grounding_token_offset", "lra_beta", "span_topk_fraction",
                                      "span_grow_fraction", "use_dsth", "use_lra"}
            assert set_fields <= set(table), f"{path.name}: fields missing from the docs table: " \
                                             f"{sorted(set_fields - set(table))}"


@pytest.mark.parametrize("column", ["paper", "official"])
@pytest.mark.parametrize("dataset", DATASETS)
def test_eval_configs_match_the_table(column, dataset):
    path = ROOT / "config" / "eval" / ("official" if column == "official" else "") / f"{dataset}.yaml"
    grounding, evaluation = load_config(str(path))
    assert evaluation.dataset == dataset
    for field, cells in settings_table().items():
        values = cells[COLUMNS[column]]
        want = values[-1] if dataset == "vidstg" else values[0]
        assert getattr(grounding, field) == want, f"{path}: {field}={getattr(grounding, field)!r}, docs say {want!r}"


def test_node_defaults_match_the_table():
    defaults = GroundingConfig()
    for field, cells in settings_table().items():
        assert getattr(defaults, field) == cells[COLUMNS["default"]][0], field


def test_paper_settings_follow_the_paper_and_the_code():
    """The values the paper and the code fix, independently of the table."""
    paper, _ = load_config(str(ROOT / "config" / "eval" / "hcstvg_v1.yaml"))
    official, _ = load_config(str(ROOT / "config" / "eval" / "official" / "vidstg.yaml"))
    assert (paper.num_frames, paper.lra_steps, paper.lra_lr, paper.relevance_eps) == (20, 1, 8.0, 1e-4)
    assert (paper.visual_tokens, paper.answer_tokens, paper.prompt_style, paper.relevance_eps_tokens) == \
        ("paper", "official", "official", 0)
    assert (official.layers, official.grounding_token, official.lra_loss, official.lra_steps, official.span_rule,
            official.inference_query, official.caption_prompt, official.query_format) == \
        ([-26, -6], "fixed", "official", 2, "grow", "sub", "please describe this video", "words")
