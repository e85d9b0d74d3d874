"""docs/development.md's package map ("### Package map") lists every module of stvg_ros,
one line each, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAP = REPO / "docs" / "development.md"
ENTRY = re.compile(r"^- `(stvg_ros/[^`]+\.py)`: (.*)$")


def map_lines() -> list[str]:
    text = MAP.read_text()
    assert "### Package map" in text, "docs/development.md lost its '### Package map' section"
    section = text.split("### Package map", 1)[1]
    section = re.split(r"^#{2,3} ", section, maxsplit=1, flags=re.M)[0]
    return section.splitlines()


def test_the_package_map_lists_every_module_once():
    entries: dict[str, str] = {}
    for line in map_lines():
        m = ENTRY.match(line)
        if m:
            assert m.group(1) not in entries, f"docs/development.md package map lists {m.group(1)} twice: remove one line"
            assert m.group(2).strip(), f"docs/development.md package map: say what {m.group(1)} owns after the colon"
            entries[m.group(1)] = line
    files = {str(p.relative_to(REPO)) for p in (REPO / "stvg_ros").rglob("*.py")}
    missing = sorted(files - set(entries))
    stale = sorted(set(entries) - files)
    problems = []
    if missing:
        problems.append("add these lines (what each module owns after the colon) to docs/development.md, section "
                        "'### Package map' (core modules above 'ROS layer', stvg_ros/ros/ ones below):\n"
                        + "\n".join(f"- `{m}`: ..." for m in missing))
    if stale:
        problems.append("remove these lines from docs/development.md, section '### Package map' (no such file):\n"
                        + "\n".join(entries[s] for s in stale))
    assert not problems, "\n".join(problems)
