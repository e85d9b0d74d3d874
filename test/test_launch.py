"""launch/stvg.launch.xml: which parameter values and environment the node really gets.

The ``launch`` package cannot be installed here, so the XML is evaluated by a small interpreter of
the constructs the file uses, with launch_ros's rules: ``$(var)``, ``$(find-pkg-share)``,
``$(eval)`` (a Python expression), ``<let>``, ``if``/``unless`` on actions and groups, and a node's
``<param>`` elements passed to it in document order, a later one overriding an earlier one
(launch_ros ≥ 0.10, every supported distribution).  The checks: a user's params file wins over the
launch arguments' values, the arguments fill what the file leaves out, exactly one node runs, and
``fastdds_profile`` sets the Fast DDS profile variables.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
LAUNCH = REPO / "launch" / "stvg.launch.xml"
SHARE = "/opt/ws/install/stvg_ros/share/stvg_ros"  # what $(find-pkg-share stvg_ros) resolves to


def _substitute(text: str, scope: dict) -> str:
    text = re.sub(r"\$\(var (\w+)\)", lambda m: scope[m.group(1)], text)
    text = text.replace("$(find-pkg-share stvg_ros)", SHARE)

    def ev(m):
        value = eval(m.group(1).replace("\\'", "'"), {"__builtins__": {}}, {})  # noqa: S307 - our own file
        return str(value).lower() if isinstance(value, bool) else str(value)

    text = re.sub(r"\$\(eval '(.*)'\)", ev, text)
    assert "$(" not in text, f"substitution the test cannot evaluate: {text}"
    return text


def _active(el: ET.Element, scope: dict) -> bool:
    if el.get("if") is not None:
        return _substitute(el.get("if"), scope) in ("true", "1")
    if el.get("unless") is not None:
        return _substitute(el.get("unless"), scope) not in ("true", "1")
    return True


def run_launch(**given) -> tuple[list[dict], dict]:
    """(parameters of each node that would run, environment set), for ``ros2 launch ... k:=v``."""
    root = ET.parse(LAUNCH).getroot()
    scope = {a.get("name"): a.get("default") for a in root.findall("arg")}
    unknown = set(given) - set(scope)
    assert not unknown, f"not launch arguments: {unknown}"
    scope.update({k: str(v) for k, v in given.items()})
    nodes, env = [], {}

    def walk(parent):
        for el in parent:
            if not _active(el, scope):
                continue
            if el.tag == "let":
                scope[el.get("name")] = _substitute(el.get("value"), scope)
            elif el.tag == "set_env":
                env[el.get("name")] = _substitute(el.get("value"), scope)
            elif el.tag == "group":
                walk(el)
            elif el.tag == "node":
                params = {}
                for p in el.findall("param"):  # document order = command-line order: later wins
                    if p.get("from") is not None:
                        data = yaml.safe_load(Path(_substitute(p.get("from"), scope)).read_text())
                        params.update(data["/**"]["ros__parameters"])
                    else:
                        value = _substitute(p.get("value"), scope)  # '' stays '' (launch_ros >= 0.11.7)
                        params[p.get("name")] = yaml.safe_load(value) if value else ""
                nodes.append({"params": params, "ns": _substitute(el.get("namespace"), scope),
                              "remaps": {r.get("from"): _substitute(r.get("to"), scope) for r in el.findall("remap")}})

    walk(root)
    return nodes, env


def _params_file(tmp_path, **values) -> Path:
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": values}}))
    return path


def test_without_params_file_the_arguments_apply():
    (node,), env = run_launch()
    assert {k: node["params"][k] for k in ("model_path", "device", "use_sim_time")} == \
        {"model_path": "default", "device": "auto", "use_sim_time": False}
    assert node["remaps"] == {"image": "/camera/image_raw", "image/compressed": "/camera/image_raw/compressed"}
    assert node["ns"] == "stvg" and env == {}
    (node,), _ = run_launch(model_path="/models/m", device="cuda", use_sim_time="true", image_topic="/cam")
    assert (node["params"]["model_path"], node["params"]["device"], node["params"]["use_sim_time"]) == \
        ("/models/m", "cuda", True)
    assert node["remaps"]["image"] == "/cam"


def test_the_cameras_argument_names_each_camera_and_its_topic(tmp_path):
    """``cameras:=front=/f/image_raw,rear`` gives the node two cameras, front on its topic and rear on
    <namespace>/rear/image; without it the node has one camera; a params file's cameras wins."""
    from stvg_ros.node_params import NodeSettings, all_params

    defaults = {p.name: p.default for p in all_params()}
    (node,), _ = run_launch()
    own = {k: v for k, v in node["params"].items() if k != "use_sim_time"}  # rclpy's, not ours
    assert own["cameras"] == "" and NodeSettings.from_values({**defaults, **own}).cameras == ()
    (node,), _ = run_launch(cameras="front=/f/image_raw,rear")
    front, rear = NodeSettings.from_values({**defaults, "cameras": node["params"]["cameras"]}).cameras
    assert (front.name, front.image_topic, rear.name, rear.image_topic) == ("front", "/f/image_raw", "rear", "rear/image")
    (node,), _ = run_launch(cameras="front,rear", params_file=str(_params_file(tmp_path, cameras=["left"])))
    assert node["params"]["cameras"] == ["left"]


def test_a_users_params_file_wins_over_the_launch_arguments(tmp_path):
    mine = _params_file(tmp_path, model_path="/models/from_yaml", device="cpu", use_sim_time=True, window_rate=0.0)
    for given in ({}, {"model_path": "/models/from_cli", "device": "cuda", "use_sim_time": "false"}):
        (node,), _ = run_launch(params_file=str(mine), **given)
        p = node["params"]
        assert (p["model_path"], p["device"], p["use_sim_time"], p["window_rate"]) == \
            ("/models/from_yaml", "cpu", True, 0.0), given


def test_the_arguments_fill_what_the_params_file_leaves_out(tmp_path):
    mine = _params_file(tmp_path, window_rate=0.0)
    (node,), _ = run_launch(params_file=str(mine), model_path="/models/m", device="cuda")
    assert (node["params"]["model_path"], node["params"]["device"], node["params"]["window_rate"]) == \
        ("/models/m", "cuda", 0.0)


def test_the_shipped_params_file_as_params_file_gives_the_node_defaults():
    shipped = REPO / "config" / "stvg.yaml"
    (node,), _ = run_launch(params_file=str(shipped), model_path="/ignored")
    assert node["params"]["model_path"] == "" and node["params"]["device"] == "auto"  # the file's values


@pytest.mark.parametrize("profile,expected", [
    ("shm", f"{SHARE}/config/fastdds_shm.xml"),
    ("/etc/my_fastdds.xml", "/etc/my_fastdds.xml"),
])
def test_fastdds_profile_sets_both_profile_variables(profile, expected):
    _, env = run_launch(fastdds_profile=profile)
    assert env == {"FASTDDS_DEFAULT_PROFILES_FILE": expected, "FASTRTPS_DEFAULT_PROFILES_FILE": expected}


def test_shipped_fastdds_profile_is_installed_and_sized_for_hd_frames():
    xml = REPO / "config" / "fastdds_shm.xml"
    root = ET.parse(xml).getroot()
    ns = {"d": "http://www.eprosima.com"}
    shm = [t for t in root.iterfind(".//d:transport_descriptor", ns) if t.findtext("d:type", namespaces=ns) == "SHM"]
    assert len(shm) == 1
    segment = int(shm[0].findtext("d:segment_size", namespaces=ns))
    assert segment >= 8 * 1280 * 720 * 3  # several HD bgr8 frames in flight
    participant = root.find(".//d:participant", ns)
    assert participant.get("is_default_profile") == "true"  # applies without code changes
    used = [t.text for t in participant.iterfind(".//d:userTransports/d:transport_id", ns)]
    assert shm[0].findtext("d:transport_id", namespaces=ns) in used
    assert any(t.findtext("d:type", namespaces=ns) == "UDPv4" for t in root.iterfind(".//d:transport_descriptor", ns)), \
        "keep UDP: other hosts must still reach the node"
    cmake = (REPO / "CMakeLists.txt").read_text()
    assert re.search(r"install\(DIRECTORY [^)]*\bconfig\b", cmake), "config/ must be installed to share/"
