#!/usr/bin/env bash
# Do the pinned requirements install on every Python the package supports?  Humble runs Python 3.10,
# Kilted 3.11 (this repository's venv), Jazzy 3.12 (Ubuntu 24.04); a pin that has no wheel for one of
# them (transformers 5.21+, NumPy 2.3+ and Pillow 13 need 3.11) breaks README's `pip install -r
# requirements/core.txt` there.  For each Python this asks pip to fetch the core and test pins as that
# Python would (wheels only, no dependencies, nothing installed; torch is left out: README installs it
# apart, and PyPI has it for all three).  Exit 1 naming the Python and the pin that fails.
#
#   bash scripts/check_requirements.sh [PIP]        # PIP: default .venv/bin/pip, else pip
set -uo pipefail
cd "$(dirname "$0")/.."
pip=${1:-.venv/bin/pip}
[ -x "$pip" ] || pip=pip
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
rc=0
python=$(dirname "$pip")/python
[ -x "$python" ] || python=python3
for py in 3.10 3.11 3.12; do
    log="$out/$py.log"
    "$python" scripts/requirement_pins.py "$py" requirements/core.txt requirements/test.txt > "$out/req-$py.txt" || exit 1
    if "$pip" download --quiet --no-deps --only-binary :all: --python-version "$py" --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
            --platform manylinux2014_x86_64 --platform linux_x86_64 \
            -d "$out/wheels-$py" -r "$out/req-$py.txt" > "$log" 2>&1; then
        echo "check_requirements: Python $py: every pin of requirements/core.txt and test.txt has a wheel"
    else
        echo "check_requirements: Python $py: a pin has no wheel there:"
        grep -E "ERROR|No matching|Requires-Python" "$log" | cut -c1-300 | head -5
        rc=1
    fi
done
exit $rc
