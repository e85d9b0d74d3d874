"""The node's parameters: its own (model, QoS, subscriptions, outputs), then one per field of
:class:`~stvg_ros.config.ServingConfig` (window, admission), of
:class:`~stvg_ros.config.GroundingConfig` (same names) and of ``ProposalConfig`` (``proposals_*``).

Free of rclpy (so in the core, not in ``stvg_ros.ros``): the list, defaults and validation are
testable without ROS, and ``config/stvg.yaml`` is generated from it
(``python -m stvg_ros.node_params > config/stvg.yaml``) and checked against it.
:class:`NodeSettings` is all of them, typed and validated, read once per configure or parameter
change.
"""

from __future__ import annotations

import ast
import inspect
from dataclasses import dataclass, fields
from typing import Any, Callable, Optional

from stvg_ros.config import ConfigError, GroundingConfig, ProposalConfig, ServingConfig


@dataclass(frozen=True)
class NodeParam:
    name: str
    default: Any
    description: str
    check: Optional[Callable[[Any], Optional[str]]] = None  # returns the fix when invalid
    live: bool = True  # takes effect without reconfiguring
    also: tuple = ()  # further accepted value types besides the default's (checked by ``check``)


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
              _reliability, live=False, also=(int,)),
    NodeParam("image_depth", 20, "QoS history depth of the image subscriptions (frames held while the node is "
              "busy: 5 lost 6-8 % of a replayed 768x576 bag under load, bench/bench_bag_replay.py).",
              _positive, live=False),
    NodeParam("use_compressed", False, "Also subscribe to image/compressed (sensor_msgs/CompressedImage).",
              live=False),
    NodeParam("use_detections", False,
              "Subscribe to detections (stvg_ros/Detections) and use them as proposals.", live=False),
    NodeParam("publish_debug_image", True, "Publish debug_image (the tube drawn on the frames)."),
    NodeParam("debug_heatmap", False, "Overlay the relevance heatmap on the debug image."),
    NodeParam("status_rate", 1.0, "Hz of the status and /diagnostics messages (0 = off).",
              _non_negative, live=False),
    NodeParam("publish_markers", True,
              "After each Tube publish tube_markers (visualization_msgs/ImageMarker, drawn by Foxglove's "
              "Image panel on the camera image) and, where vision_msgs is installed, detections_2d "
              "(vision_msgs/Detection2DArray)."),
    NodeParam("markers_whole_tube", False,
              "tube_markers and detections_2d carry every box of the tube, not only the newest one."),
    NodeParam("action_result_timeout", 300,
              "Seconds the ground action keeps a finished goal's result for its client to fetch (read at "
              "start-up; rclpy's default is 10).", _positive, live=False),


    NodeParam("depth_topic", "",
              "3-D answers: an aligned depth image (sensor_msgs/Image, 16UC1 mm or 32FC1 m, e.g. "
              "/camera/aligned_depth_to_color/image_raw); '' = off. Needs camera_info_topic.", live=False),
    NodeParam("camera_info_topic", "",
              "The colour camera's sensor_msgs/CameraInfo (e.g. /camera/color/camera_info), for 3-D answers.",
              live=False),
    NodeParam("depth_tolerance", 0.05,
              "Seconds between a frame's stamp and the nearest depth image's beyond which the frame has no 3-D "
              "position.", _positive, live=False),
    NodeParam("target_frame", "",
              "Frame the 3-D answers are transformed into with tf2 (e.g. odom, map); '' = the camera's optical "
              "frame. Where tf2_ros is not installed the node says so once and answers in the camera frame.",
              live=False),
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


def serving_params() -> list[NodeParam]:
    """One parameter per ServingConfig field (all take effect at once)."""
    defaults = ServingConfig()
    docs = _config_docs(ServingConfig)
    return [NodeParam(f.name, getattr(defaults, f.name), docs.get(f.name) or f"ServingConfig.{f.name}")
            for f in fields(ServingConfig)]


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
    own = {p.name for p in NODE_PARAMS}
    clash = (own | set(ServingConfig.field_names())) & set(GroundingConfig.field_names()) | \
        own & set(ServingConfig.field_names())
    assert not clash, f"node parameters shadow config fields: {clash}"
    return NODE_PARAMS + serving_params() + grounding_params() + proposal_params()


def _coerce_node_value(name: str, value: Any) -> Any:
    """A node parameter's value with its default's type (ints accepted for floats), or ConfigError."""
    p = NODE_PARAM_BY_NAME[name]
    d = p.default
    ok = (isinstance(value, bool) if isinstance(d, bool) else
          isinstance(value, int) and not isinstance(value, bool) if isinstance(d, int) else
          isinstance(value, (int, float)) and not isinstance(value, bool) if isinstance(d, float) else
          isinstance(value, str))
    ok = ok or any(isinstance(value, t) and not isinstance(value, bool) for t in p.also)
    if not ok:
        raise ConfigError(f"invalid {name}={value!r}: expected a value of type {type(d).__name__}, like {d!r}")
    value = float(value) if isinstance(d, float) else value
    problem = check_node_value(name, value)
    if problem:
        raise ConfigError(problem)
    return value


@dataclass(frozen=True)
class NodeSettings:
    """Every parameter of the node, typed and validated (the node reads it once per configure or
    parameter change).  The node's own parameters are fields here; the rest are config objects."""

    model_path: str
    autostart: bool
    image_reliability: str  # the name: the integers 1/2 are mapped
    image_depth: int
    use_compressed: bool
    use_detections: bool
    publish_debug_image: bool
    debug_heatmap: bool
    status_rate: float
    publish_markers: bool
    markers_whole_tube: bool
    action_result_timeout: int


    depth_topic: str
    camera_info_topic: str
    depth_tolerance: float
    target_frame: str
    serving: ServingConfig
    grounding: GroundingConfig
    proposals: ProposalConfig

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> "NodeSettings":
        """From parameter name → value (every declared parameter); ConfigError names the fix."""
        own = {p.name: _coerce_node_value(p.name, values[p.name]) for p in NODE_PARAMS}
        own["image_reliability"] = reliability_name(own["image_reliability"])  # 1/2 → reliable/best_effort
        grounding = grounding_config(values)
        if own["debug_heatmap"] and not grounding.keep_relevance:  # the heatmap needs the maps
            grounding = grounding.replace(keep_relevance=True)
        return cls(**own, serving=ServingConfig.from_dict(values), grounding=grounding,
                   proposals=proposal_config(values))


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


__all__ = ["NodeParam", "NODE_PARAMS", "NodeSettings", "all_params", "reliability_name", "serving_params",
           "grounding_params", "check_node_value", "grounding_config", "ConfigError", "proposal_params",
           "proposal_config"]


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
    sections = [("node: model, input, outputs", NODE_PARAMS),
                ("serving: window, queries (stvg_ros.config.ServingConfig)", serving_params()),
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


if __name__ == "__main__":  # regenerate config/stvg.yaml: python -m stvg_ros.node_params > config/stvg.yaml
    print(params_yaml(), end="")
