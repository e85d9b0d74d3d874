"""ROS glue of the memory (issue 33): an answer's alternatives as ``TubeAlternative`` messages for the
``ground`` action's result, and the memory's part of ``Status``.  The memory itself (parameters ``memory``,
``memory_*``) is the core's (:mod:`stvg_ros.memory`), configured with the other serving parameters."""

from __future__ import annotations

from typing import Sequence

from stvg_ros.msg import TubeAlternative
from stvg_ros.ros.convert import ns_to_stamp


def alternative_msgs(alternatives: Sequence) -> list:
    """:class:`stvg_ros.memory.recall.Alternative` values → ``TubeAlternative`` messages, in their order."""
    return [TubeAlternative(start=ns_to_stamp(a.start_ns), end=ns_to_stamp(a.end_ns), score=float(a.score))
            for a in alternatives]


def fill_status(s, info: dict) -> None:
    """``Status``'s memory fields from :meth:`stvg_ros.stream.service.GroundingService.memory_status`."""
    s.memory = bool(info["on"])
    s.memory_chunks, s.memory_keyframes = int(info["chunks"]), int(info["keyframes"])
    s.memory_segments, s.memory_preencoded = int(info["segments"]), int(info["preencoded"])
    s.memory_hours, s.memory_mb = float(info["seconds"] / 3600.0), float(info["nbytes"] / 2**20)
    s.memory_oldest = ns_to_stamp(int(info["oldest_ns"]))
