"""The node's parameters: its own (model, window, QoS, topics) plus one per GroundingConfig field.

Kept free of rclpy so that the list, defaults and validation are testable without ROS and so
that ``config/stvg.yaml`` can be checked against it.  Every grounding knob is a parameter of the
same name as the :class:`~stvg_ros.config.GroundingConfig` field.
"""

from __future__ import annotations

import ast
import inspect
from dataclasses import dataclass, fields
from typing import Any, Callable, Optional

from stvg_ros.config import ConfigError, GroundingConfig
from stvg_ros.config import ProposalConfig


@dataclass(frozen=True)
class NodeParam:
    name: str
    default: Any
    description: str
    check: Optional[Callable[[Any], Optional[str]]] = None  # returns the fix when invalid
    live: bool = True  # takes effect without reconfiguring


def _positive(v):
    return None if v > 0 else "use a positive number"


def _non_negative(v):
    return None if v >= 0 else "use 0 or a positive number"


#: rclpy.qos.ReliabilityPolicy values (rmw's enum) that yolo_ros-style launch files pass as integers
RELIABILITY_VALUES = {1: "reliable", 2: "best_effort"}


def reliability_name(value: Any) -> str:
    """``image_reliability`` as its name: the strings as given, the integer enum values mapped
    (1 reliable, 2 best_effort); call after the check passed."""
    return RELIABILITY_VALUES[value] if isinstance(value, int) and not isinstance(value, bool) else value


def _reliability(v):
    if isinstance(v, int) and not isinstance(v, bool):
        if v in RELIABILITY_VALUES:
            return None
        return ("use 1 (ReliabilityPolicy.RELIABLE) or 2 (BEST_EFFORT), or the names reliable / best_effort; "
                "0 (SYSTEM_DEFAULT) and 4 (BEST_AVAILABLE) are not accepted: the first depends on the rmw, "
                "the second does not exist on Humble, and either would hide which policy the camera must match")
    return None if v in RELIABILITY_VALUES.values() else "choose one of best_effort, reliable (or 2, 1)"


NODE_PARAMS: list[NodeParam] = [
    NodeParam("model_path", "", "Local model directory ('' or 'default' = the embedded default model).",
              live=False),
    NodeParam("autostart", True, "Configure and activate at start-up (no lifecycle manager needed).",
              live=False),
    NodeParam("image_reliability", "best_effort",
              "QoS reliability of the image subscriptions (best_effort = sensor data, or reliable; the "
              "ReliabilityPolicy integers 2 and 1 are accepted too).",
              _reliability, live=False),
    NodeParam("image_depth", 5, "QoS history depth of the image subscriptions.", _positive, live=False),
    NodeParam("use_compressed", False, "Also subscribe to image/compressed (sensor_msgs/CompressedImage).",
              live=False),
    NodeParam("use_detections", False,
              "Subscribe to detections (stvg_ros/Detections) and use them as proposals.", live=False),
    NodeParam("detection_tolerance", 0.001,
              "Seconds between a detection's stamp and a frame's stamp that still associate them.",
              _non_negative),
    NodeParam("window_duration", 10.0, "Seconds of stream kept in the sliding window.", _positive),
    NodeParam("window_max_frames", 64, "Most frames kept in the window (memory bound).", _positive),
    NodeParam("window_rate", 4.0, "Frames per second kept after decimation (0 = keep every frame).",
              _non_negative),
    NodeParam("ingest_max_side", 0,
              "Longest side in pixels frames are downscaled to on arrival (0 = auto: what the model "
              "needs). Boxes are reported in the camera's pixels regardless.", _non_negative),
    NodeParam("min_frames", 2, "Frames the window must hold before a query is served.",
              lambda v: None if v >= 1 else "use 1 or more"),
    NodeParam("query_queue_size", 4, "Pending queries kept; more are answered found=false.", _positive),
    NodeParam("max_query_length", 1000, "Longest query text accepted, in characters.", _positive),
    NodeParam("publish_debug_image", True, "Publish debug_image (the tube drawn on the frames)."),
    NodeParam("debug_heatmap", False, "Overlay the relevance heatmap on the debug image."),
    NodeParam("status_rate", 1.0, "Hz of the status and /diagnostics messages (0 = off).",
              _non_negative, live=False),
]

NODE_PARAM_BY_NAME = {p.name: p for p in NODE_PARAMS}


def _config_docs(cls: type = GroundingConfig) -> dict[str, str]:
    """Attribute docstrings of a config dataclass (the string literal right after each field)."""
    docs: dict[str, str] = {}
    try:
        tree = ast.parse(inspect.getsource(cls).lstrip())
    except (OSError, TypeError, SyntaxError):
        return docs
    body = tree.body[0].body  # type: ignore[attr-defined]
    for stmt, nxt in zip(body, body[1:] + [None]):
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            if isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant) \
                    and isinstance(nxt.value.value, str):
                docs[stmt.target.id] = " ".join(nxt.value.value.split())
    return docs


#: descriptions of the GroundingConfig fields that carry no docstring there
FIELD_DOCS = {
    "question_template": "Question asked about the clip; {query} is replaced by the query (paper's template).",
    "caption_prompt": "Captioning prompt whose attention normalises the question's (paper: 'Describe this video "
                      "in details.').",
    "decompose_max_new_tokens": "Most tokens the model may generate when decomposing a query (DSTH).",
    "use_lra": "Optimise the latent visual prompts V_s and V_t (logit-guided re-attention) before attending.",
    "lra_lr": "Learning rate of the latent prompts' gradient steps (paper: 8.0).",
}


def grounding_params() -> list[NodeParam]:
    """One parameter per GroundingConfig field, with the config's defaults and docs."""
    defaults = GroundingConfig()
    docs = _config_docs()
    out = []
    for f in fields(GroundingConfig):
        # these shape how the model is loaded or the grounder is built: applied at configure
        live = f.name not in ("device", "dtype", "image_size", "layers", "decomposer", "decompose_max_new_tokens")
        out.append(NodeParam(f.name, getattr(defaults, f.name), docs.get(f.name) or FIELD_DOCS.get(f.name)
                             or f"GroundingConfig.{f.name}",
                             live=live))
    return out


#: node parameters of the live proposal stage are ``proposals_<ProposalConfig field>``
PROPOSAL_PREFIX = "proposals_"


def proposal_params() -> list[NodeParam]:
    """One parameter per ProposalConfig field (``synonyms``, a mapping, is not a ROS type), applied at
    configure: they choose and load the detector."""
    defaults = ProposalConfig()
    docs = _config_docs(ProposalConfig)
    return [NodeParam(PROPOSAL_PREFIX + f.name, getattr(defaults, f.name),
                      docs.get(f.name) or f"ProposalConfig.{f.name}", live=False)
            for f in fields(ProposalConfig) if f.name != "synonyms"]


def proposal_config(values: dict[str, Any]) -> ProposalConfig:
    """ProposalConfig from parameter values (other keys ignored); raises ConfigError naming the fix."""
    return ProposalConfig.from_dict({k: v for k, v in values.items() if k.startswith(PROPOSAL_PREFIX)})


def all_params() -> list[NodeParam]:
    clash = {p.name for p in NODE_PARAMS} & set(GroundingConfig.field_names())
    assert not clash, f"node parameters shadow grounding fields: {clash}"
    return NODE_PARAMS + grounding_params() + proposal_params()


def check_node_value(name: str, value: Any) -> Optional[str]:
    """The error message for an invalid node-parameter value, or None."""
    p = NODE_PARAM_BY_NAME.get(name)
    if p is None or p.check is None:
        return None
    fix = p.check(value)
    return None if fix is None else f"invalid {name}={value!r}: {fix}"


def grounding_config(values: dict[str, Any]) -> GroundingConfig:
    """GroundingConfig from parameter values (extra keys ignored); raises ConfigError naming the fix."""
    names = set(GroundingConfig.field_names())
    picked = {k: (list(v) if k == "layers" and v is not None else v) for k, v in values.items() if k in names}
    if picked.get("layers") is None:
        picked["layers"] = []
    return GroundingConfig.from_dict(picked)


__all__ = ["NodeParam", "NODE_PARAMS", "all_params", "reliability_name", "grounding_params", "check_node_value",
           "grounding_config", "ConfigError", "proposal_params", "proposal_config"]


def _yaml_value(v: Any) -> str:
    import json

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, float):
        return repr(v)
    return json.dumps(v)


def params_yaml() -> str:
    """The text of ``config/stvg.yaml``: every parameter with its default and a comment.

    Parameters whose default is an empty list are written commented out (ROS' YAML parser cannot
    type an empty list) together with an example value.
    """
    import textwrap

    examples = {"layers": [6, 26]}
    lines = [
        "# Parameters of stvg_node (every one it declares), with their defaults.",
        "# Use: ros2 launch stvg_ros stvg.launch.xml params_file:=/path/to/copy/of/this.yaml",
        "# Grounding knobs (second part) are the fields of stvg_ros.config.GroundingConfig; the same",
        "# file also loads offline with GroundingConfig.from_yaml().",
        "/**:",
        "  ros__parameters:",
    ]
    sections = [("node: model, input, window, queries, outputs", NODE_PARAMS),
                ("grounding (stvg_ros.config.GroundingConfig)", grounding_params()),
                ("live proposals (ProposalConfig, docs/proposals.md)", proposal_params())]
    for title, plist in sections:
        lines += ["", f"    # --- {title} " + "-" * max(0, 80 - len(title) - 12)]
        for p in plist:
            note = p.description + ("" if p.live else " [applied at configure]")
            for chunk in textwrap.wrap(note, 92):
                lines.append(f"    # {chunk}")
            if isinstance(p.default, list) and not p.default:
                lines.append(f"    # {p.name}: {_yaml_value(examples.get(p.name, []))}   (default: [])")
            else:
                lines.append(f"    {p.name}: {_yaml_value(p.default)}")
    return "\n".join(lines) + "\n"


def yaml_documented_names(text: str) -> set[str]:
    """Parameter names present in a params YAML text, including commented-out ``# name: value`` lines."""
    import re

    plain = re.findall(r"^ {4}([a-z_][a-z0-9_]*):\s", text, flags=re.M)
    commented = re.findall(r"^ {4}# ([a-z_][a-z0-9_]*): .*\(default: ", text, flags=re.M)
    return set(plain) | set(commented)


if __name__ == "__main__":  # regenerate config/stvg.yaml: python -m stvg_ros.ros.params > config/stvg.yaml
    print(params_yaml(), end="")
