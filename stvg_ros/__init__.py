"""stvg_ros: zero-shot spatio-temporal video grounding with multimodal LLMs, for ROS 2.

The grounding core (this package minus ``stvg_ros.ros``) imports no ROS module.  Heavy
imports (torch, transformers) are deferred so that ``import stvg_ros.msg`` in the ROS
layer stays cheap.
"""

__version__ = "0.1.0"

_LAZY = {
    "Grounder": "stvg_ros.grounding.grounder",
    "GroundingConfig": "stvg_ros.config",
    "GroundingResult": "stvg_ros.grounding.result",
    "SubQueries": "stvg_ros.grounding.result",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'stvg_ros' has no attribute {name!r}")


__all__ = list(_LAZY)
