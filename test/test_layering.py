"""The ROS boundary is drawn by imports, both ways: the core never imports the ROS layer, and the
ROS layer (``stvg_ros/ros/``) holds only modules that do import ROS.  A static walk over every
import of every module, inside functions too (run-time imports count), relative imports resolved."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "stvg_ros"
#: the ROS layer and what only a ROS installation provides (the core must run after `pip install .`).
#: (``default_model`` may look the shipped model up through ament_index_python, a pure-Python
#: optional lookup guarded by ``except``: not listed.)
ROS_ONLY = ("stvg_ros.ros", "stvg_ros.msg", "rclpy", "rcl_interfaces", "builtin_interfaces", "std_msgs",
            "sensor_msgs", "diagnostic_msgs", "rosgraph_msgs", "visualization_msgs", "launch", "launch_ros")


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path = PKG.parent) -> set[str]:
    """Absolute names of every module ``path`` imports (``from x import y`` gives x and x.y)."""
    mod = _module_name(path, root)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            out.add(name)
            out.update(f"{name}.{a.name}" for a in node.names)
    return out


def core_modules() -> list[Path]:
    return [p for p in PKG.rglob("*.py") if "ros" not in p.relative_to(PKG).parts[:-1]]


def test_no_core_module_imports_ros():
    bad = {}
    for path in core_modules():
        hits = sorted(m for m in imports_of(path) if any(m == r or m.startswith(r + ".") for r in ROS_ONLY))
        if hits:
            bad[str(path.relative_to(PKG.parent))] = hits
    assert not bad, f"core modules importing the ROS layer or ROS packages: {bad}"


def ros_layer_modules() -> list[Path]:
    return [p for p in (PKG / "ros").rglob("*.py") if p.name != "__init__.py"]


def test_every_ros_layer_module_imports_ros():
    """A module of ``stvg_ros/ros/`` imports rclpy or a message package itself (not through another
    module of the layer); one that does not belongs in the core, where both sides can use it."""
    ros_packages = tuple(r for r in ROS_ONLY if r != "stvg_ros.ros")
    assert ros_layer_modules(), "no ROS layer found"
    ros_free = sorted(str(p.relative_to(PKG.parent)) for p in ros_layer_modules()
                      if not any(m == r or m.startswith(r + ".") for m in imports_of(p) for r in ros_packages))
    assert not ros_free, (f"{ros_free} import neither rclpy nor a message package (stvg_ros.msg, sensor_msgs, ...): "
                          f"git mv them into stvg_ros/ (the core) and update their imports")


def test_the_walk_sees_relative_and_function_level_imports(tmp_path):
    """The checker itself: it resolves ``from .ros.x import y`` inside a function."""
    names = imports_of(PKG / "evaluate.py")
    assert "stvg_ros.metrics" in names and "stvg_ros.config.ConfigError" in names  # from . import metrics
    (tmp_path / "stvg_ros" / "sub").mkdir(parents=True)
    probe = tmp_path / "stvg_ros" / "sub" / "probe.py"
    probe.write_text("def f():\n    from ..ros.eval_node_loop import NodeRunner\n")
    assert "stvg_ros.ros.eval_node_loop.NodeRunner" in imports_of(probe, tmp_path)
