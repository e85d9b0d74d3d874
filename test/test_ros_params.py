"""config/stvg.yaml and launch/stvg.launch.xml agree with what the node really declares."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from stvg_ros.config import GroundingConfig

REPO = Path(__file__).resolve().parent.parent
YAML = REPO / "config" / "stvg.yaml"
LAUNCH = REPO / "launch" / "stvg.launch.xml"


@pytest.fixture(scope="module")
def declared():
    """Parameter name → value, as declared by a real StvgNode (in-process, its own context)."""
    from ros_harness import require_ros

    require_ros()
    import rclpy

    from stvg_ros.ros.node import StvgNode

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=0)
    node = StvgNode(context=ctx, start_parameter_services=False)
    try:
        names = [n for n in node._parameters if n not in ("use_sim_time", "start_type_description_service")]
        yield node, {n: node.get_parameter(n).value for n in names}
    finally:
        node.destroy_node()
        ctx.try_shutdown()


def test_yaml_documents_exactly_the_declared_parameters(declared):
    from stvg_ros.node_params import yaml_documented_names

    _, params = declared
    text = YAML.read_text()
    documented = yaml_documented_names(text)
    fix = "regenerate it: python -m stvg_ros.node_params > config/stvg.yaml"
    assert documented == set(params), f"config/stvg.yaml is out of date ({fix}): " \
                                      f"missing {set(params) - documented}, unknown {documented - set(params)}"
    from stvg_ros.node_params import declared_params
    from stvg_ros.presets import SECTIONS, param_name

    assert set(params) == {p.name for p in declared_params()}, "the node declares its own and the top-level knobs"
    assert 20 <= len(params) <= 30, f"{len(params)} parameters: a user holds about 25 in their head"
    for section, cls in SECTIONS.items():  # every other knob is named in the file's comments
        for f in cls.field_names():
            name = param_name(section, f)
            assert name in params or f in text.split("# --- advanced", 1)[1] or f == "synonyms", name
    values = yaml.safe_load(text)["/**"]["ros__parameters"]
    for name, value in values.items():
        assert value == params[name], f"{name}: yaml says {value!r}, the node declares {params[name]!r}"
    # every parameter has a comment right above it
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("    ") and ":" in line and not line.strip().startswith("#"):
            assert lines[i - 1].strip().startswith("#"), f"no comment above {line.strip()}"


def test_yaml_loads_as_a_grounding_config():
    cfg = GroundingConfig.from_yaml(YAML)
    assert cfg == GroundingConfig()


def test_launch_file_args_and_params_match_the_node(declared):
    _, params = declared
    root = ET.parse(LAUNCH).getroot()
    assert root.tag == "launch"
    args = {a.get("name"): a.get("default") for a in root.findall("arg")}
    assert set(args) == {"namespace", "image_topic", "model_path", "params_file", "device", "use_sim_time",
                         "fastdds_profile", "cameras"}
    assert all(a.get("description") for a in root.findall("arg"))
    nodes = list(root.iter("node"))  # one per params_file case (test_launch.py checks which one runs)
    assert nodes
    for node in nodes:
        assert (node.get("pkg"), node.get("exec")) == ("stvg_ros", "stvg_node")
        for p in node.findall("param"):
            if p.get("name"):
                assert p.get("name") in params or p.get("name") == "use_sim_time", \
                    f"launch sets unknown {p.get('name')}"
        remaps = {r.get("from") for r in node.findall("remap")}
        assert remaps == {"image", "image/compressed"}
    assert any(p.get("from") == "$(var params_file)" for n in nodes for p in n.findall("param"))
    assert args["params_file"] == ""
    assert args["device"] in ("auto", "cpu", "cuda")
    # every $(var x) used is declared
    import re

    used = set(re.findall(r"\$\(var (\w+)\)", LAUNCH.read_text()))
    assert used <= set(args) | {let.get("name") for let in root.iter("let")}
    # and the launch's model_path default means 'the embedded default'
    from stvg_ros.adapters.default_model import resolve_model

    assert args["model_path"] in ("", "default")
    assert callable(resolve_model)


def test_invalid_values_are_rejected_naming_the_fix(declared):
    from rclpy.parameter import Parameter

    node, _ = declared
    cases = [
        (Parameter("num_frames", value=1), "at least 2"),
        (Parameter("lra_loss", value="mine"), "paper"),
        (Parameter("window_duration", value=-1.0), "positive"),
        (Parameter("image_reliability", value="sometimes"), "best_effort"),
        (Parameter("window_max_frames", value="many"), "expected a value of type int"),
        (Parameter("found_threshold", value=2.0), "(0, 1]"),
    ]
    for param, fix in cases:
        result = node.set_parameters([param])[0]
        assert not result.successful, param.name
        assert param.name in result.reason and fix in result.reason, result.reason
    # valid values pass, ints are accepted for floats, and the window follows at once
    assert node.set_parameters([Parameter("window_duration", value=3)])[0].successful
    assert node.window.duration_ns == 3_000_000_000
    assert node.set_parameters([Parameter("window_rate", value=5.0)])[0].successful
    assert node.window.period_ns == 200_000_000


#: import name → the package.xml key that provides it
ROSDEP_KEYS = {
    "numpy": "python3-numpy", "cv2": "python3-opencv", "yaml": "python3-yaml", "PIL": "python3-pil",
    "tqdm": "python3-tqdm", "torch": "python3-torch", "transformers": "python3-transformers-pip",
    "tokenizers": "python3-tokenizers-pip", "safetensors": "python3-safetensors-pip",
    "rosbags": "python3-rosbags-pip",
}


def _imports(path: Path, top_level_only: bool) -> set[str]:
    import ast

    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    out = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
    return out


def test_package_xml_declares_what_the_code_imports():
    """Every import of the ROS layer, and every module-level import of the core, has its key.

    (Imports inside functions of the core are optional extras and are not required here.)"""
    import sys

    root = ET.parse(REPO / "package.xml").getroot()
    deps = {e.text for e in root if e.tag.endswith("depend")}
    imported = set()
    for path in (REPO / "stvg_ros").rglob("*.py"):
        in_ros = "ros" in path.relative_to(REPO / "stvg_ros").parts[:-1]
        imported |= _imports(path, top_level_only=not in_ros)
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m != "stvg_ros"}
    missing = sorted(m for m in third_party if ROSDEP_KEYS.get(m, m) not in deps)
    assert not missing, f"package.xml lacks exec_depend entries for {missing} (add the rosdep key; " \
                        f"for a pip-only package use python3-<name>-pip, and map it in ROSDEP_KEYS here)"


def test_node_settings_type_every_parameter_without_ros():
    """NodeSettings (read once per configure or change) covers every declared parameter, typed."""
    from dataclasses import fields

    from stvg_ros.config import ConfigError, ProposalConfig, ServingConfig
    from stvg_ros.node_params import NODE_PARAMS, NodeSettings, all_params

    defaults = {p.name: p.default for p in all_params()}
    s = NodeSettings.from_values(defaults)
    own = {f.name for f in fields(NodeSettings)} - {"serving", "grounding", "proposals", "notes"}
    assert own == {p.name for p in NODE_PARAMS}
    assert s.serving == ServingConfig() and s.grounding == GroundingConfig() and s.proposals == ProposalConfig()
    s = NodeSettings.from_values({**defaults, "window_rate": 0, "status_rate": 2, "debug_heatmap": True})
    assert s.serving.window_rate == 0.0 and isinstance(s.serving.window_rate, float) and s.status_rate == 2.0
    assert s.grounding.keep_relevance  # the heatmap needs the relevance maps
    for name, value, fix in [("frame_timeout", -1.0, "0 or a positive"), ("min_frames", 0, "1 or more"),
                             ("image_depth", 0, "positive"), ("query_queue_size", 2.5, "type int")]:
        with pytest.raises(ConfigError, match=fix):
            NodeSettings.from_values({**defaults, name: value})


def test_image_reliability_accepts_names_and_the_qos_enum_integers():
    """yolo_ros-style launch files pass ReliabilityPolicy values (ints); the names still work."""
    from stvg_ros.node_params import check_node_value, reliability_name

    for value, name in [("best_effort", "best_effort"), ("reliable", "reliable"), (2, "best_effort"), (1, "reliable")]:
        assert check_node_value("image_reliability", value) is None, value
        assert reliability_name(value) == name
    for value, words in [("sometimes", "best_effort"), (0, "SYSTEM_DEFAULT"), (4, "BEST_AVAILABLE"), (7, "use 1"),
                         (True, "best_effort")]:
        problem = check_node_value("image_reliability", value)
        assert problem and "image_reliability" in problem and words in problem, (value, problem)


def test_node_settings_take_the_reliability_integers_as_names():
    """The node's type coercion lets 1/2 through for image_reliability (only there) and maps them."""
    from stvg_ros.config import ConfigError
    from stvg_ros.node_params import NodeSettings, all_params

    defaults = {p.name: p.default for p in all_params()}
    for value, name in [(1, "reliable"), (2, "best_effort"), ("reliable", "reliable")]:
        assert NodeSettings.from_values({**defaults, "image_reliability": value}).image_reliability == name
    for name, value, words in [("image_reliability", 0, "SYSTEM_DEFAULT"), ("image_reliability", True, "type str"),
                               ("model_path", 3, "type str")]:
        with pytest.raises(ConfigError, match=words):
            NodeSettings.from_values({**defaults, name: value})


def test_image_reliability_integers_are_rclpys_enum():
    pytest.importorskip("rclpy", reason="rclpy is not installed: run `make setup`")
    from rclpy.qos import ReliabilityPolicy

    from stvg_ros.node_params import RELIABILITY_VALUES

    assert {k: ReliabilityPolicy(k).name.lower() for k in RELIABILITY_VALUES} == RELIABILITY_VALUES


def test_the_node_resolves_what_the_user_set_over_the_model_and_the_preset():
    """A value the user set (even the class default) beats the model directory's; sub-config knobs are
    declared when set (old flat names too, under the new name) and can be set later by their dotted name;
    an unknown name is refused naming where the knobs are."""
    from ros_harness import require_ros

    require_ros()
    import rclpy
    from rclpy.parameter import Parameter

    from stvg_ros.config import load_model_defaults
    from stvg_ros.adapters.default_model import choose_model
    from stvg_ros.ros.node import StvgNode

    model = choose_model("").directory
    if load_model_defaults(model).get("found_threshold", 0.5) == 0.5:
        pytest.skip("the default model directory sets no found_threshold of its own (tiny model)")
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=0)
    node = StvgNode(context=ctx, start_parameter_services=False, parameter_overrides=[
        Parameter("found_threshold", value=0.5), Parameter("preset", value="official"),
        Parameter("lra_steps", value=3), Parameter("proposals.max_tracks", value=5)])
    try:
        s = node._read_settings()
        assert (s.grounding.found_threshold, s.grounding.lra_steps, s.grounding.span_rule, s.proposals.max_tracks) == \
            (0.5, 3, "grow", 5)
        assert s.grounding.decomposer == load_model_defaults(model)["decomposer"]  # the model's, not set by anyone
        assert node.get_parameter("grounding.lra_steps").value == 3 and node.has_parameter("proposals.max_tracks")
        theirs = load_model_defaults(model)["found_threshold"]
        assert any(f"found_threshold: {theirs!r} from model directory overridden by user: 0.5" in n for n in s.notes)
        assert node.set_parameters([Parameter("grounding.tube_frames", value="all")])[0].successful
        assert node._read_settings().grounding.tube_frames == "all"
        result = node.set_parameters([Parameter("grounding.tube_framez", value="all")])[0]
        assert not result.successful and "unknown parameter 'grounding.tube_framez'" in result.reason
        result = node.set_parameters([Parameter("grounding.span_rule", value="sometimes")])[0]
        assert not result.successful and "topk, grow" in result.reason
    finally:
        node.destroy_node()
        ctx.try_shutdown()
