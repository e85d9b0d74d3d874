"""The ROS boundary is drawn by imports, both ways: the core never imports the ROS layer, and the
ROS layer (``stvg_ros/ros/``) holds only modules that do import ROS; and no module imports itself
through others (no import circles).  A static walk over every import of every module, inside
functions too (run-time imports count), relative imports resolved."""

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


def import_statements(path: Path, root: Path = PKG.parent):
    """``(module, names)`` for every import in ``path``: ``import x`` gives ``(x, [])``,
    ``from x import a, b`` gives ``(x, [a, b])``, relative names resolved to absolute ones."""
    mod = _module_name(path, root)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            yield name, [a.name for a in node.names]


def imports_of(path: Path, root: Path = PKG.parent) -> set[str]:
    """Absolute names of every module ``path`` imports (``from x import y`` gives x and x.y)."""
    out = set()
    for name, names in import_statements(path, root):
        out.add(name)
        out.update(f"{name}.{a}" for a in names)
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
    names = imports_of(PKG / "evaluation" / "scoring.py") | imports_of(PKG / "evaluation" / "evaluate.py")
    assert "stvg_ros.evaluation.metrics" in names  # from . import metrics
    assert "stvg_ros.config.ConfigError" in names  # from ..config import ConfigError
    (tmp_path / "stvg_ros" / "sub").mkdir(parents=True)
    probe = tmp_path / "stvg_ros" / "sub" / "probe.py"
    probe.write_text("def f():\n    from ..ros.eval_node_loop import NodeRunner\n")
    assert "stvg_ros.ros.eval_node_loop.NodeRunner" in imports_of(probe, tmp_path)


#: circles known and due to be broken, each with its fix (an entry here that no longer is a circle fails).
KNOWN_CIRCLES: set[frozenset[str]] = set()


def import_graph(root: Path = PKG) -> dict[str, set[str]]:
    """Module -> the package's modules it imports.  ``from pkg import sub`` imports the submodule
    ``sub`` (its package ``pkg`` only when another name of the statement is not a submodule)."""
    paths = {_module_name(p, root.parent): p for p in root.rglob("*.py")}

    def owner(name: str) -> str | None:  # ``pkg.mod.func`` -> ``pkg.mod``
        while name not in paths and "." in name:
            name = name.rsplit(".", 1)[0]
        return name if name in paths else None

    graph = {}
    for mod, path in paths.items():
        deps = set()
        for name, names in import_statements(path, root.parent):
            subs = [f"{name}.{a}" for a in names if f"{name}.{a}" in paths]
            deps.update(subs)
            if len(subs) < len(names) or not names:
                deps.add(owner(name))
        graph[mod] = deps - {mod, None}
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each circle as one path ``a -> b -> ... -> a`` through its strongly connected component."""
    index, low, stack, on_stack, comps = {}, {}, [], set(), []

    def visit(v):  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v), on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w), comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    circles = []
    for comp in comps:  # a shortest way back from the component's first module to itself
        start = min(comp)
        paths, seen = [[start]], {start}
        while paths:
            path = paths.pop(0)
            nxt = sorted(w for w in graph[path[-1]] if w in comp)
            if start in nxt:
                circles.append(path + [start])
                break
            for w in nxt:
                if w not in seen:
                    seen.add(w), paths.append(path + [w])
    return circles


def test_no_import_circles():
    circles = import_circles(import_graph())
    new = [c for c in circles if frozenset(c) not in KNOWN_CIRCLES]
    assert not new, ("import circles (move what both sides need into a module both import, e.g. box "
                     "geometry into stvg_ros/boxes.py): " + "; ".join(" -> ".join(c) for c in new))
    stale = KNOWN_CIRCLES - {frozenset(c) for c in circles}
    assert not stale, f"no longer circles, remove them from KNOWN_CIRCLES: {[sorted(s) for s in stale]}"


def test_the_circle_finder_names_a_circle(tmp_path):
    """The checker itself: a function-level ``from . import`` closes a circle, and it is named."""
    pkg = tmp_path / "stvg_ros"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import f\n")
    (pkg / "b.py").write_text("def f():\n    from . import c\n")
    (pkg / "c.py").write_text("from stvg_ros.a import f\n")
    (pkg / "d.py").write_text("from . import a\n")
    assert import_circles(import_graph(pkg)) == [["stvg_ros.a", "stvg_ros.b", "stvg_ros.c", "stvg_ros.a"]]


#: the layers of the core (issue 28), each importing only those below it: the model runtime knows no method,
#: the method no serving, and nothing that serves a stream imports evaluation or the synthetic world.
LAYER_MAY_NOT_IMPORT = {
    "stvg_ros.adapters": ("stvg_ros.grounding", "stvg_ros.stream", "stvg_ros.evaluation", "stvg_ros.synthetic"),
    "stvg_ros.grounding": ("stvg_ros.stream", "stvg_ros.evaluation", "stvg_ros.synthetic"),
    "stvg_ros.stream": ("stvg_ros.evaluation", "stvg_ros.synthetic"),
}


def test_each_layer_imports_only_the_layers_below_it():
    bad = {}
    for layer, forbidden in LAYER_MAY_NOT_IMPORT.items():
        for path in (PKG.parent / layer.replace(".", "/")).rglob("*.py"):
            hits = sorted(m for m in imports_of(path) if any(m == f or m.startswith(f + ".") for f in forbidden))
            if hits:
                bad[str(path.relative_to(PKG.parent))] = hits
    assert not bad, f"modules importing a layer above their own (move the shared piece down): {bad}"
