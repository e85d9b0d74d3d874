"""ROS glue of the memory (issue 33): an answer's alternatives as ``TubeAlternative`` messages for the
``ground`` action's result.  The memory itself (parameters ``memory``, ``memory_*``) is the core's
(:mod:`stvg_ros.memory`), configured with the other serving parameters."""

from __future__ import annotations

from typing import Sequence

from stvg_ros.msg import TubeAlternative
from stvg_ros.ros.convert import ns_to_stamp


def alternative_msgs(alternatives: Sequence) -> list:
    """:class:`stvg_ros.memory.recall.Alternative` values → ``TubeAlternative`` messages, in their order."""
    return [TubeAlternative(start=ns_to_stamp(a.start_ns), end=ns_to_stamp(a.end_ns), score=float(a.score))
            for a in alternatives]
