#!/usr/bin/env bash
# The ROS 2 PyPI wheels were built under /opt/python/cp311-cp311 and their exported CMake files
# point at that prefix's Python and NumPy include directories.  Point them at this venv's, so
# that rosidl's Python type support compiles.  Idempotent.
set -euo pipefail
venv=${1:-.venv}
py="$venv/bin/python"
pyinc=$("$py" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
npinc=$("$py" -c "import numpy; print(numpy.get_include())")
files=$(grep -rl --include='*.cmake' "/opt/python/cp311-cp311" "$venv/share" "$venv/lib" 2>/dev/null || true)
if [ -n "$files" ]; then
  # shellcheck disable=SC2086
  sed -i -e "s#/opt/python/cp311-cp311/include/python3.11#$pyinc#g" \
         -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$npinc#g" $files
fi
left=$(grep -rl --include='*.cmake' "/opt/python/cp311-cp311" "$venv/share" "$venv/lib" 2>/dev/null || true)
if [ -n "$left" ]; then
  echo "fix_ros_wheels: paths to /opt/python remain in: $left" >&2
  exit 1
fi
