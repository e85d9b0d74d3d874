"""The pins of requirements files that apply on one Python version (their ``python_version`` markers evaluated for
it, not for the interpreter that runs this: pip's ``--python-version`` does not do that).

    python scripts/requirement_pins.py 3.10 requirements/core.txt requirements/test.txt   # one pin per line

Used by scripts/check_requirements.sh (CI) and test/test_requirements.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

from packaging.requirements import Requirement


def requirements(path: str | Path) -> list[Requirement]:
    """Every requirement line of ``path`` (comments and pip options left out)."""
    out = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            out.append(Requirement(line))
    return out


def pins_for(python: str, *paths: str | Path) -> list[Requirement]:
    """The requirements of ``paths`` whose marker holds on Python ``python`` ("3.10")."""
    env = {"python_version": python, "python_full_version": python + ".0"}
    return [r for p in paths for r in requirements(p) if r.marker is None or r.marker.evaluate(env)]


if __name__ == "__main__":
    for req in pins_for(sys.argv[1], *sys.argv[2:]):
        print(f"{req.name}{req.specifier}")
