"""The node's parameters: its own (model, preset, QoS, subscriptions, outputs) and one per knob of
:class:`~stvg_ros.config.GroundingConfig`, :class:`~stvg_ros.config.ServingConfig` and
``ProposalConfig``: the top-level ones by their plain name (``found_threshold``, ``proposals_enabled``),
declared at start; the rest as ``grounding.*`` / ``serving.*`` / ``proposals.*``, declared when set
(:class:`UserParams`; old flat names still accepted).  Values resolve by :func:`stvg_ros.presets.resolve`.

Free of rclpy (so in the core, not in ``stvg_ros.ros``): the list, defaults and validation are
testable without ROS, and ``config/stvg.yaml`` is generated from it
(``python -m stvg_ros.node_params > config/stvg.yaml``) and checked against it.
:class:`NodeSettings` is all of them, typed and validated, read once per configure or parameter
change.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Callable, Optional

from stvg_ros.config import ConfigError, GroundingConfig, ProposalConfig, ServingConfig, knob_choices, knob_doc, \
    knob_live, knob_top
from stvg_ros.presets import DEFAULT_PRESET, PRESETS, SECTIONS, canonical, param_name, resolve


@dataclass(frozen=True)
class NodeParam:
    name: str
    default: Any
    description: str
    check: Optional[Callable[[Any], Optional[str]]] = None  # returns the fix when invalid
    live: bool = True  # takes effect without reconfiguring
    also: tuple = ()  # further accepted value types besides the default's (checked by ``check``)
    choices: tuple = ()  # the values allowed (config knobs: declared on the field)
    top: bool = True  # declared at start (the rest: sub-config knobs, declared when set)

    def descriptor_text(self) -> str:
        """The description with the facts a user needs in ``ros2 param describe``."""
        extra = ([f"one of: {', '.join(map(str, self.choices))}"] if self.choices else []) + \
            ([] if self.live else ["applied at configure"])
        return self.description + (f" [{'; '.join(extra)}]" if extra else "")

    def descriptor_fields(self) -> dict[str, Any]:
        """rcl_interfaces ParameterDescriptor's fields (ints are accepted for floats: dynamic typing)."""
        return dict(description=self.descriptor_text(), additional_constraints=", ".join(map(str, self.choices)),
                    dynamic_typing=True)


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
    NodeParam("preset", DEFAULT_PRESET,
              "Recipe of the grounding knobs: " + ", ".join(PRESETS) + " (config/presets/*.yaml) or the path of "
              "a YAML file like them; above the model directory's grounding_defaults.json, below what you set.",
              lambda v: None if v in PRESETS or str(v).endswith((".yaml", ".yml")) else
              f"choose one of {', '.join(PRESETS)} or give a YAML file's path", live=True),
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
    # --- several cameras, one model (issue 32) ---
    NodeParam("cameras", "",
              "Several cameras in one node: their short names, e.g. [front, rear] (or 'front,rear', or with "
              "topics 'front=/front/image_raw,rear=/rear/image_raw'); each one's "
              "settings under camera.<name>.: image_topic (default <name>/image), transport (raw, compressed, "
              "both), reliability, qos_depth, ingest_side, detections_topic (config/two_cameras.yaml). Queries "
              "name a camera or ask all. '' = one camera on image (and the parameters above).",
              lambda v: _camera_names_problem(v), live=False, also=(list, tuple)),
]

NODE_PARAM_BY_NAME = {p.name: p for p in NODE_PARAMS}


def config_params() -> list[NodeParam]:
    """One parameter per knob of the sub-configs (``section.field``, or the plain name of a top-level
    knob), its default, doc, choices and liveness read from the field (:func:`stvg_ros.config.knob`).
    ProposalConfig's ``synonyms`` (a mapping, not a ROS type) is set in a preset file."""
    out = []
    for section, cls in SECTIONS.items():
        defaults = cls()
        for f in fields(cls):
            if f.name == "synonyms":
                continue
            out.append(NodeParam(param_name(section, f.name), getattr(defaults, f.name),
                                 knob_doc(cls, f.name) or f"{cls.__name__}.{f.name}", live=knob_live(cls, f.name),
                                 choices=knob_choices(cls, f.name), top=knob_top(cls, f.name)))
    return out


def declared_params() -> list[NodeParam]:
    """What the node declares at start: its own parameters and the top-level knobs (the rest are
    declared when set: from a params file, ``-p`` or ``ros2 param set``)."""
    return NODE_PARAMS + [p for p in config_params() if p.top]


def all_params() -> list[NodeParam]:
    """Every parameter the node accepts under its current name."""
    params = NODE_PARAMS + config_params()
    names = [p.name for p in params]
    assert len(names) == len(set(names)), "node parameters shadow config knobs"
    return params


def param(name: str) -> Optional[NodeParam]:
    """The parameter a name stands for (an old flat name: the knob's current parameter), or None."""
    if name in NODE_PARAM_BY_NAME:
        return NODE_PARAM_BY_NAME[name]
    if camera_param(name) is not None:
        return camera_param(name)
    c = canonical(name)
    if c is None:
        return None
    current = param_name(c[0], c[1])
    return next((p for p in config_params() if p.name == current), None)


def old_name_note(name: str) -> Optional[str]:
    """For a knob set by its pre-preset flat name (still accepted): the line that names the new one."""
    c = canonical(name)
    if c is None or not c[2]:
        return None
    return (f"parameter {name} is now {param_name(c[0], c[1])} (an advanced knob; set it under "
            f"'{c[0]}:' in your params file or as -p {param_name(c[0], c[1])}:=...); the old name still works "
            f"for now")


def _coerce_node_value(name: str, value: Any) -> Any:
    """A node parameter's value with its default's type (ints accepted for floats), or ConfigError."""
    p = NODE_PARAM_BY_NAME.get(name) or camera_param(name)
    d = p.default
    ok = (isinstance(value, bool) if isinstance(d, bool) else
          isinstance(value, int) and not isinstance(value, bool) if isinstance(d, int) else
          isinstance(value, (int, float)) and not isinstance(value, bool) if isinstance(d, float) else
          isinstance(value, str))
    ok = ok or any(isinstance(value, t) and not isinstance(value, bool) for t in p.also)
    if not ok:
        raise ConfigError(f"invalid {name}={value!r}: expected a value of type {type(d).__name__}, like {d!r}")
    value = float(value) if isinstance(d, float) else value
    problem = check_node_value(name, value) if name in NODE_PARAM_BY_NAME else \
        (f"invalid {name}={value!r}: {p.check(value)}" if p.check and p.check(value) else None)
    if problem:
        raise ConfigError(problem)
    return value


@dataclass(frozen=True)
class NodeSettings:
    """Every parameter of the node, typed and validated (the node reads it once per configure or
    parameter change).  The node's own parameters are fields here; the rest are config objects."""

    model_path: str
    preset: str
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
    notes: tuple = field(default=(), compare=False)  # the override lines of the resolution (log them)
    cameras: tuple = ()  # several cameras: one CameraSettings each (parameter cameras); () = one camera on image

    @classmethod
    def from_values(cls, values: dict[str, Any], model_dir: Any = None) -> "NodeSettings":
        """From what the user set (parameter name → value; old flat knob names too): the node's own
        parameters (missing: their defaults) and the sub-configs resolved by
        :func:`stvg_ros.presets.resolve` (class default < ``model_dir``'s defaults < preset < these
        values).  ConfigError names the fix."""
        own = {p.name: _coerce_node_value(p.name, values[p.name] if p.name in values else p.default)
               for p in NODE_PARAMS}
        own["image_reliability"] = reliability_name(own["image_reliability"])  # 1/2 → reliable/best_effort
        notes: list[str] = []
        own["cameras"] = camera_settings(values, own, notes)
        knobs = {}
        for name, value in values.items():
            if name in NODE_PARAM_BY_NAME or camera_param(name) is not None:
                continue
            if canonical(name) is None:
                raise ConfigError(f"unknown parameter {name!r}: see config/stvg.yaml (python -m stvg_ros.node_params "
                                  f"--all lists every knob)")
            knobs[name] = list(value) if canonical(name)[1] == "layers" and value is not None else value
        r = resolve(knobs, own["preset"], model_dir, log_line=notes.append)
        grounding = r.grounding
        if own["debug_heatmap"] and not grounding.keep_relevance:  # the heatmap needs the maps
            grounding = grounding.replace(keep_relevance=True)
        return cls(**own, serving=r.serving, grounding=grounding, proposals=r.proposals, notes=tuple(notes))


# --- several cameras, one model (issue 32): parameter cameras, settings camera.<name>.<key> ---------------
@dataclass(frozen=True)
class CameraSettings:
    """One camera of a node with several (parameter ``cameras``), its defaults resolved from the node's
    one-camera parameters: topics relative to the node's namespace unless absolute."""

    name: str
    image_topic: str  # sensor_msgs/Image; its CompressedImage sibling is <image_topic>/compressed
    transport: str  # raw, compressed or both
    reliability: str  # best_effort or reliable
    qos_depth: int
    ingest_side: int  # longest side its frames are kept at (0: the node's ingest_max_side)
    detections_topic: str  # stvg_ros/Detections, with use_detections
    depth_topic: str = ""  # 3-D answers: its aligned depth image ('' = none)
    camera_info_topic: str = ""  # and its colour CameraInfo


TRANSPORTS = ("raw", "compressed", "both")

#: camera.<name>.<key>: the per-camera settings (declared when set, like the sub-config knobs)
CAMERA_PARAMS = {p.name: p for p in [
    NodeParam("image_topic", "", "The camera's sensor_msgs/Image topic ('' = <name>/image).", live=False),
    NodeParam("transport", "", "raw (Image), compressed (<image_topic>/compressed) or both; '' = raw, or both "
              "with use_compressed.", lambda v: None if v in ("",) + TRANSPORTS else
              f"choose one of {', '.join(TRANSPORTS)}", live=False),
    NodeParam("reliability", "", "QoS reliability of its image subscriptions ('' = image_reliability).",
              lambda v: None if v == "" else _reliability(v), live=False, also=(int,)),
    NodeParam("qos_depth", 0, "QoS history depth of its image subscriptions (0 = image_depth).", _non_negative,
              live=False),
    NodeParam("ingest_side", 0, "Longest side (pixels) its frames are kept at (0 = serving.ingest_max_side).",
              _non_negative, live=False),
    NodeParam("detections_topic", "", "With use_detections: its stvg_ros/Detections ('' = <name>/detections).",
              live=False),
    NodeParam("depth_topic", "", "3-D answers: its aligned depth image ('' = none; as the node's depth_topic).",
              live=False),
    NodeParam("camera_info_topic", "", "Its colour camera's CameraInfo, with depth_topic.", live=False),
]}


def camera_param(name: str) -> Optional[NodeParam]:
    """The per-camera setting ``camera.<name>.<key>`` stands for, or None."""
    parts = name.split(".")
    if len(parts) != 3 or parts[0] != "camera" or not parts[1] or parts[2] not in CAMERA_PARAMS:
        return None
    from dataclasses import replace

    return replace(CAMERA_PARAMS[parts[2]], name=name, top=False)


def _camera_entries(value: Any) -> list[tuple[str, str]]:
    """(name, image topic or '') per entry of the parameter ``cameras``: a list, or one comma-separated
    string; an entry is ``name`` or ``name=image_topic`` (what a launch argument can say in one line)."""
    items = value.split(",") if isinstance(value, str) else list(value or ())
    out = []
    for item in (str(x).strip() for x in items):
        if item:
            name, _, topic = item.partition("=")
            out.append((name.strip(), topic.strip()))
    return out


def camera_names(value: Any) -> tuple[str, ...]:
    """The parameter ``cameras`` as names ('' = none); ``front=/front/image_raw`` names ``front``."""
    return tuple(name for name, _ in _camera_entries(value))


def _camera_names_problem(value: Any) -> Optional[str]:
    from stvg_ros.stream.multi import stream_names_problem

    names = camera_names(value)
    items = value.split(",") if isinstance(value, str) else list(value or ())
    bare = next((str(x).strip() for x in items if str(x).strip().endswith("=")), "")
    if bare:
        return f"camera {bare!r} names no topic: write {bare}/its/image_topic, or just the name for <name>/image"
    return (stream_names_problem(list(names)) or None) if names else None


def camera_settings(values: dict[str, Any], own: dict[str, Any], notes: list) -> tuple[CameraSettings, ...]:
    """Each camera of ``own['cameras']`` with its ``camera.<name>.*`` values from ``values``; a setting of a
    camera not in the list (a typo, or a camera left out for now) is ignored with a line in ``notes``."""
    entries = _camera_entries(own["cameras"])
    names = tuple(n for n, _ in entries)
    listed_topic = dict(entries)
    for n, topic in entries:
        set_topic = values.get(f"camera.{n}.image_topic", "")
        if topic and set_topic and set_topic != topic:
            notes.append(f"cameras gives {n!r} the topic {topic}; camera.{n}.image_topic {set_topic} wins")
    for key in values:
        if camera_param(key) is not None and key.split(".")[1] not in names:
            notes.append(f"{key} ignored: {key.split('.')[1]!r} is not one of cameras {list(names)} (add it to "
                         f"cameras to use it)")
    out = []
    for n in names:
        v = {k: _coerce_node_value(f"camera.{n}.{k}", values.get(f"camera.{n}.{k}", p.default))
             for k, p in CAMERA_PARAMS.items()}
        out.append(CameraSettings(
            n, v["image_topic"] or listed_topic[n] or f"{n}/image", v["transport"] or ("both" if own["use_compressed"] else "raw"),
            reliability_name(v["reliability"]) if v["reliability"] != "" else own["image_reliability"],
            v["qos_depth"] or own["image_depth"], v["ingest_side"], v["detections_topic"] or f"{n}/detections",
            v["depth_topic"], v["camera_info_topic"]))
    return tuple(out)


#: parameters rclpy itself declares or reads (not ours: never refused, never passed on)
ROS_PARAMS = ("use_sim_time", "start_type_description_service")


def _ros_own(name: str) -> bool:
    return name in ROS_PARAMS or name.startswith("qos_overrides.")


class UserParams:
    """What the user set (params file, ``-p``, ``ros2 param set``), by the name used, in the order set:
    the top layer of :func:`stvg_ros.presets.resolve`.  A parameter the user never set is not here,
    so the model directory's or the preset's value applies to it even where the node declares it."""

    def __init__(self, overrides: dict[str, Any]):
        self.values: dict[str, Any] = {}
        self.notes: list[str] = []  # to log once: unknown names, old names
        self._logged: set[str] = set()
        for name, value in overrides.items():
            if _ros_own(name):
                continue
            if param(name) is None:
                self.notes.append(f"unknown parameter {name!r} ignored: see config/stvg.yaml (python -m "
                                  f"stvg_ros.node_params --all lists every knob)")
                continue
            self.values[param(name).name] = value  # type: ignore[union-attr]  (an old name: the new one)
            self.notes += [n for n in [old_name_note(name)] if n]

    def to_declare(self) -> list[tuple[str, Any, NodeParam]]:
        """(name, value, parameter) the node declares: its own and the top-level knobs, and every other
        knob the user set at start (by its current name, also when set by an old one, with the value set)."""
        out = [(p.name, self.values.get(p.name, p.default), p) for p in declared_params()]
        names = {n for n, _, _ in out}
        return out + [(n, v, param(n)) for n, v in self.values.items() if n not in names]  # type: ignore[misc]

    def merged(self, changes: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        """The user's values with ``changes`` (a parameter set or change not yet applied) on top."""
        out = dict(self.values)
        for name, value in (changes or {}).items():
            if _ros_own(name):
                continue
            name = param(name).name if param(name) is not None else name  # an old name: the new one
            out.pop(name, None)  # the newest setting comes last
            if value is not None:  # None: the parameter was undeclared
                out[name] = value
        return out

    def set(self, changes: dict[str, Any]) -> None:
        self.values = self.merged(changes)
        self.notes += [n for n in map(old_name_note, changes) if n]

    def settings(self, changes: Optional[dict[str, Any]] = None) -> tuple["NodeSettings", list[str]]:
        """The node's settings and the lines to log (override lines and notes not logged yet).  With
        ``changes`` (a change being checked before it is applied): without the model layer (no file
        read on every check) and nothing to log."""
        values = self.merged(changes)
        if changes is not None:
            return NodeSettings.from_values(values), []
        s = NodeSettings.from_values(values, model_dir_of(values))
        return s, self.fresh(s.notes)

    def fresh(self, lines) -> list[str]:
        """Of ``lines`` (and the pending notes), those not logged yet."""
        out = [x for x in list(self.notes) + list(lines) if x not in self._logged]
        self._logged.update(out)
        self.notes = []
        return out


def live_part(new: GroundingConfig, running: GroundingConfig) -> GroundingConfig:
    """``new`` with the fields a running grounder cannot change (``knob(live=False)``) kept as ``running``'s."""
    return new.replace(**{n: getattr(running, n) for n in new.field_names() if not knob_live(GroundingConfig, n)})


def not_live(names) -> list[str]:
    """Of the parameter ``names``, those that take effect only at the next configure."""
    return sorted(n for n in names if param(n) is not None and not param(n).live)


def model_dir_of(values: dict[str, Any]) -> Optional[str]:
    """The model directory ``model_path`` in ``values`` stands for (its defaults are a layer), or None
    when it cannot be told (configure reports why)."""
    from stvg_ros.adapters.default_model import choose_model

    try:
        return choose_model(str(values.get("model_path", "") or "")).directory
    except (OSError, ValueError):
        return None


def check_node_value(name: str, value: Any) -> Optional[str]:
    """The error message for an invalid node-parameter value, or None."""
    p = NODE_PARAM_BY_NAME.get(name)
    if p is None or p.check is None:
        return None
    fix = p.check(value)
    return None if fix is None else f"invalid {name}={value!r}: {fix}"


__all__ = ["NodeParam", "NODE_PARAMS", "NodeSettings", "CameraSettings", "camera_param", "camera_names", "all_params", "declared_params", "config_params", "param",
           "old_name_note", "reliability_name", "check_node_value", "ConfigError"]


def _yaml_value(v: Any) -> str:
    import json

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, float):
        return repr(v)
    return json.dumps(v)


def _comment(p: NodeParam, indent: str) -> list[str]:
    import textwrap

    return [f"{indent}# {chunk}" for chunk in textwrap.wrap(p.descriptor_text(), 96 - len(indent))]


def params_yaml(everything: bool = False) -> str:
    """The text of ``config/stvg.yaml``: the parameters the node declares, with their defaults and a
    comment each, then where the sub-configs' knobs live.  ``everything``: every knob in full
    (``python -m stvg_ros.node_params --all``, a reference to copy from)."""
    lines = [
        "# Parameters of stvg_node: the few a user turns, with their defaults (generated:",
        "# python -m stvg_ros.node_params > config/stvg.yaml).",
        "# Use: ros2 launch stvg_ros stvg.launch.xml params_file:=/path/to/copy/of/this.yaml",
        "# Precedence of every grounding/serving/proposal knob: class default < the model directory's",
        "# grounding_defaults.json < preset < what you set here; the node logs each value a later layer",
        "# overrode.  The file also loads offline with GroundingConfig.from_yaml().",
        "/**:",
        "  ros__parameters:",
    ]
    top = [p for p in config_params() if p.top]
    sections = [("node: model, recipe, input, outputs", NODE_PARAMS), ("the pipeline's main knobs", top)]
    for title, plist in sections:
        lines += ["", f"    # --- {title} " + "-" * max(0, 80 - len(title) - 12)]
        for p in plist:
            lines += _comment(p, "    ") + [f"    {p.name}: {_yaml_value(p.default)}"]
    lines += ["", "    # --- advanced: the recipe behind the preset " + "-" * 36,
              "    # Every other knob is a sub-config's: grounding.* (stvg_ros.config.GroundingConfig), serving.*",
              "    # (ServingConfig) and proposals.* (ProposalConfig, docs/proposals.md).  Set one as a nested",
              "    # section here (or -p grounding.lra_steps:=2, or ros2 param set at run time), e.g.",
              "    #   grounding:",
              "    #     lra_steps: 2",
              "    # Their docs, defaults and choices: python -m stvg_ros.node_params --all.  A whole recipe:",
              "    # preset: a name or a YAML file like config/presets/official.yaml.  Knob names:"]
    advanced = [p for p in config_params() if not p.top]
    for section in SECTIONS:
        names = ", ".join(p.name.split(".", 1)[1] for p in advanced if p.name.startswith(section + "."))
        import textwrap

        for i, chunk in enumerate(textwrap.wrap(f"{section}.*: {names}", 94)):
            lines.append(f"    #   {'' if i == 0 else '  '}{chunk}")
    if everything:
        for section in SECTIONS:
            lines += ["", f"    {section}:"]
            for p in advanced:
                if p.name.startswith(section + "."):
                    key = p.name.split(".", 1)[1]
                    lines += _comment(p, "      ") + [f"      {key}: {_yaml_value(p.default)}"]
    return "\n".join(lines) + "\n"


def yaml_documented_names(text: str) -> set[str]:
    """Parameter names present in a params YAML text, including commented-out ``# name: value`` lines."""
    import re

    plain = re.findall(r"^ {4}([a-z_][a-z0-9_]*):\s", text, flags=re.M)
    commented = re.findall(r"^ {4}# ([a-z_][a-z0-9_]*): .*\(default: ", text, flags=re.M)
    return set(plain) | set(commented)


if __name__ == "__main__":  # regenerate config/stvg.yaml: python -m stvg_ros.node_params > config/stvg.yaml
    import sys

    print(params_yaml(everything="--all" in sys.argv[1:]), end="")
