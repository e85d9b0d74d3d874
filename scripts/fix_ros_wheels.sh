#!/usr/bin/env bash
# The ROS 2 PyPI wheels were built under /opt/python/cpXY-cpXY (manylinux) and their exported
# CMake files point at that prefix's Python and NumPy include directories.  Point them at this
# venv's, so that rosidl's Python type support compiles.  Works for any cpXY (Kilted and Jazzy
# wheels, Python 3.10-3.12); idempotent; fails loudly when the venv holds no such CMake file at
# all (then the wheels changed their layout, or none is installed, and colcon would fail later
# with an obscure CMake error).
set -euo pipefail
venv=${1:-.venv}
py="$venv/bin/python"
[ -x "$py" ] || { echo "fix_ros_wheels: $py not found: pass the venv directory" >&2; exit 1; }
pyinc=$("$py" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
npinc=$("$py" -c "import numpy; print(numpy.get_include())" 2>/dev/null) \
  || { echo "fix_ros_wheels: NumPy is not installed in $venv (install the requirements first)" >&2; exit 1; }
build_prefix='/opt/python/cp[0-9]+-cp[0-9]+'
files=$(grep -rlE --include='*.cmake' "$build_prefix" "$venv/share" "$venv/lib" 2>/dev/null || true)
if [ -n "$files" ]; then
  # shellcheck disable=SC2086
  sed -i -E -e "s#$build_prefix/lib/python3\.[0-9]+/site-packages/numpy/_core/include#$npinc#g" \
            -e "s#$build_prefix/include/python3\.[0-9]+#$pyinc#g" $files
  echo "fix_ros_wheels: pointed $(echo "$files" | wc -l) CMake file(s) at $pyinc and $npinc"
fi
left=$(grep -rlE --include='*.cmake' "$build_prefix" "$venv/share" "$venv/lib" 2>/dev/null || true)
if [ -n "$left" ]; then
  echo "fix_ros_wheels: paths to /opt/python remain (a layout this script does not know) in:" >&2
  echo "$left" >&2
  exit 1
fi
# Fixed now or by an earlier run: the rosidl Python type-support exports must name this venv's
# include directory.  None at all means there was nothing to fix: say so instead of passing.
fixed=$({ grep -rlF --include='*rosidl_generator_py*Export.cmake' "$pyinc" "$venv/share" 2>/dev/null || true; } | wc -l)
if [ "$fixed" -eq 0 ]; then
  echo "fix_ros_wheels: found no ROS wheel CMake export to fix in $venv (none names /opt/python/cpXY-cpXY" \
       "or $pyinc): are the ROS 2 wheels (ros-rosidl-generator-py, the ros-*-msgs) installed there?" >&2
  exit 1
fi
