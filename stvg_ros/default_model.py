"""Which model the node and the demo use when no ``model_path`` is given.

Until a trained model ships with the package, the default is a tiny *random* model of the
Qwen2.5-VL family built locally with :func:`stvg_ros.testing.tiny_model` (seconds, no download):
the whole pipeline runs, but its answers are meaningless.  Callers must say so to the user when
:func:`resolve_model` reports ``meaningless=True``.
"""

from __future__ import annotations

import os
from pathlib import Path

#: where a shipped model would live (a model directory loadable by Grounder.from_pretrained)
SHIPPED_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "default"
TINY_FAMILY = "qwen2_5_vl"


def cache_dir() -> Path:
    root = os.environ.get("STVG_ROS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "stvg_ros")
    return Path(root)


def resolve_model(model_path: str = "") -> tuple[str, bool]:
    """``(directory, meaningless)`` for ``model_path`` ('' or 'default' = the embedded default).

    Raises FileNotFoundError with the fix when an explicit path does not exist.
    """
    if model_path and model_path != "default":
        path = Path(model_path).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(
                f"model_path {model_path!r} is not a directory: give the local directory of a "
                f"Qwen2.5-VL, LLaVA-OneVision or LLaVA-NeXT-Video checkpoint, or '' for the default model")
        return str(path), False
    if (SHIPPED_MODEL_DIR / "config.json").is_file():
        return str(SHIPPED_MODEL_DIR), False
    target = cache_dir() / f"tiny-{TINY_FAMILY}"
    if not (target / "config.json").is_file():
        from stvg_ros.testing import tiny_model

        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        tiny_model(TINY_FAMILY, str(tmp))
        try:
            tmp.rename(target)
        except OSError:  # another process won the race: use its copy
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return str(target), True


MEANINGLESS_WARNING = (
    "No trained model is installed: using a tiny RANDOM model, so the tube's boxes and span are "
    "MEANINGLESS (the pipeline runs end to end, nothing more). Set model_path to a real model "
    "directory (see README, 'Pointing at a real model').")
