"""One builder (issue 28): :class:`stvg_ros.stack.Stack` builds the whole grounding system from settings and
applies live changes; the node, the evaluation, the calibration and the benchmarks load through it."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from fake_grounder import FakeGrounder

from stvg_ros.config import GroundingConfig, ProposalConfig, ServingConfig
from stvg_ros.stream.requests import GroundingRequest
from stvg_ros.stream.service import GroundingService
from stvg_ros.stack import BuildError, Stack, StackSettings, load_time_fields
from stvg_ros.stream.window import NS

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_700_000_000 * NS


class Log:
    def __init__(self):
        self.lines: list[tuple[str, str]] = []

    def info(self, message):
        self.lines.append(("info", message))

    def warning(self, message):
        self.lines.append(("warning", message))


def _ask(stack: Stack, n: int = 6) -> list:
    for i in range(n):
        stack.service.ingest(T0 + i * NS // 4, lambda: np.zeros((48, 64, 3), np.uint8), "cam")
    answers: list = []
    stack.service.submit(GroundingRequest("q1", "the person"), answers.append)
    stack.service.run_pending()
    return answers


@pytest.mark.unit
def test_a_given_grounder_is_served_with_the_settings_stage():
    log = Log()
    settings = StackSettings(serving=ServingConfig(window_rate=0.0, window_duration=30.0),
                             proposals=ProposalConfig(enabled=True, source="motion", window_s=5.0))
    stack = Stack.build(settings, grounder=FakeGrounder(), log=log, threaded=False)
    try:
        assert stack.service.grounder is stack.grounder and stack.service.running
        assert stack.stage is stack.service.stage and stack.stage.kind == "motion"
        assert stack.stage.config.window_s == 30.0  # the tracks live as long as the window
        assert ("info", f"proposals (motion): {stack.stage.description}") in log.lines
        assert stack.model == {}  # nothing loaded
        assert stack.service.window.max_side == 2 * 336  # a model of unknown input side: the default
        answers = _ask(stack)
        assert len(answers) == 1 and answers[0].status == "answered" and answers[0].result.found
    finally:
        stack.service.stop(timeout=1.0)


@pytest.mark.unit
def test_image_size_sizes_the_window_and_an_existing_service_is_started():
    service = GroundingService()
    settings = StackSettings(grounding=GroundingConfig(image_size=200), use_detections=True)
    stack = Stack.build(settings, service=service, grounder=FakeGrounder(), threaded=False)
    try:
        assert stack.service is service and service.grounder is stack.grounder
        assert service.window.max_side == 400 and service.external is not None and service.stage is None
    finally:
        service.stop(timeout=1.0)


@pytest.mark.unit
def test_a_failure_names_its_cause_and_starts_nothing(tmp_path):
    service = GroundingService()
    with pytest.raises(BuildError, match="cannot load the model: FileNotFoundError: .*not a directory") as e:
        Stack.build(StackSettings(model_path=str(tmp_path / "none")), service=service)
    assert e.value.model == {} and service.grounder is None
    with pytest.raises(BuildError, match="proposal stage: "):  # a detector directory that is not there
        Stack.build(StackSettings(proposals=ProposalConfig(enabled=True, detector_path=str(tmp_path / "none"))),
                    service=service, grounder=FakeGrounder())
    assert service.grounder is None


@pytest.mark.model
def test_a_model_directory_is_loaded_and_changed_live(tiny_model_dir):
    log = Log()
    directory = tiny_model_dir("qwen2_5_vl")
    settings = StackSettings(model_path=directory, grounding=GroundingConfig(device="cpu", num_frames=4, decomposer="rules"),
                             serving=ServingConfig(window_rate=0.0))
    stack = Stack.build(settings, log=log, threaded=False)
    try:
        grounder = stack.grounder
        assert stack.model["directory"] == directory and stack.model["kind"] == "explicit"
        assert any(k == "info" and m.startswith(f"loaded model {directory} on cpu in ") for k, m in log.lines)
        assert stack.service.window.max_side == 2 * grounder.adapter.input_side > 0
        assert _ask(stack)[0].status == "answered"

        assert "decomposer" in load_time_fields() and "found_threshold" not in load_time_fields()
        changed = StackSettings(model_path=directory,
                                grounding=settings.grounding.replace(found_threshold=0.7, decomposer="model"),
                                serving=settings.serving.replace(window_duration=12.0))
        stack.reconfigure(changed)
        assert stack.grounder is grounder  # nothing reloaded
        assert grounder.config.found_threshold == 0.7  # a live knob: now
        assert grounder.config.decomposer == "rules"  # shapes the grounder: at the next build
        assert stack.service.config.window_duration == 12.0
    finally:
        stack.service.stop(timeout=1.0)


def _loads_outside_the_builder(path: Path) -> list[int]:
    tree = ast.parse(path.read_text())
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr == "from_pretrained" and isinstance(n.func.value, ast.Name)
            and n.func.value.id == "Grounder"]


@pytest.mark.unit
def test_systems_are_built_in_one_place():
    """Nothing but the builder loads a Grounder from a directory: the node, the evaluation, the calibration,
    the synthetic benchmark and the benchmark scripts call :func:`stvg_ros.stack.load_model` / ``Stack.build``."""
    files = sorted((ROOT / "stvg_ros").rglob("*.py")) + sorted((ROOT / "bench").glob("*.py"))
    found = {str(f.relative_to(ROOT)): lines for f in files if f.name not in ("stack.py", "grounder.py")
             for lines in [_loads_outside_the_builder(f)] if lines}
    assert found == {}
    node = (ROOT / "stvg_ros" / "ros" / "node.py").read_text()
    assert "Stack.build(" in node and "proposal_stage(" not in node and ".start(" not in node
