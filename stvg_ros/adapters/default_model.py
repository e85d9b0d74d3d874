"""Which model the node and the demo use when no ``model_path`` is given.

The default is the small Qwen2.5-VL trained on the package's synthetic world
(``models/stvg-synth-qwen``, see docs/synthetic.md), found, in this order:

1. next to the package source (``<repo>/models/stvg-synth-qwen``: a checkout, ``pip install -e`` or a
   ``colcon build --symlink-install``, whose installed modules link back into the source tree);
2. in the package's ament share directory (``share/stvg_ros/models/stvg-synth-qwen``: a plain
   ``colcon build``), through ``ament_index_python`` or else the install prefix this module lies in;
3. otherwise a tiny *random* model of the same family built locally with
   :func:`stvg_ros.adapters.tiny_models.tiny_model` (seconds, no download): the pipeline runs, its answers are
   meaningless, and callers must say so (:data:`MEANINGLESS_WARNING`).

The synthetic model is only meaningful inside its world: callers print :data:`SYNTHETIC_NOTE` for it.
``STVG_ROS_DEFAULT_MODEL=tiny`` forces the random model (tests that need a model with no knowledge);
``auto`` (or unset) is the order above.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple, Optional

from ..config import MODEL_DEFAULTS_FILE

SYNTHETIC_MODEL_NAME = "stvg-synth-qwen"
#: the shipped model in a source tree (checkout, editable install, symlinked colcon install)
REPO_MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / SYNTHETIC_MODEL_NAME
TINY_FAMILY = "qwen2_5_vl"
#: part of the cached tiny model's name: raised whenever :func:`stvg_ros.adapters.tiny_models.tiny_model` builds
#: different weights, so a cache built by an older version is never used (2: the output head scaled by fan-in)
TINY_BUILD = 2
#: environment variable choosing the default: 'auto' (the order above) or 'tiny' (the random model)
DEFAULT_MODEL_ENV = "STVG_ROS_DEFAULT_MODEL"

MEANINGLESS_WARNING = (
    "No trained model is installed: using a tiny RANDOM model, so the tube's boxes and span are "
    "MEANINGLESS (the pipeline runs end to end, nothing more). Set model_path to a real model "
    "directory (see README, 'Real models, GPUs and HD cameras').")

SYNTHETIC_NOTE = (
    "Default model: the small synthetic-world model (models/stvg-synth-qwen). It was trained only on the "
    "package's synthetic world (6 colours, 4 shapes, 2 sizes, 7 actions on 112 px clips); its answers about "
    "anything else (real camera images, other words) are meaningless. Set model_path to a real model "
    "directory for real scenes (see README, 'Real models, GPUs and HD cameras').")


class ModelChoice(NamedTuple):
    """What :func:`choose_model` picked: ``kind`` is 'explicit', 'synthetic' or 'tiny'."""

    directory: str
    kind: str
    meaningless: bool

    @property
    def note(self) -> str:
        """The one-line caveat a caller prints for a default model ('' for an explicit one)."""
        return {"tiny": MEANINGLESS_WARNING, "synthetic": SYNTHETIC_NOTE}.get(self.kind, "")


def cache_dir() -> Path:
    root = os.environ.get("STVG_ROS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "stvg_ros")
    return Path(root)


def _share_model_dirs() -> list[Path]:
    out = []
    try:
        from ament_index_python.packages import get_package_share_directory

        out.append(Path(get_package_share_directory("stvg_ros")) / "models" / SYNTHETIC_MODEL_NAME)
    except Exception:  # noqa: BLE001 - not installed with ament, or the package is not on the index
        pass
    # a plain colcon build puts this module at <prefix>/lib/pythonX.Y/site-packages/stvg_ros/adapters/
    here = Path(os.path.abspath(__file__))
    if here.parents[2].name in ("site-packages", "dist-packages") and len(here.parents) > 5:
        out.append(here.parents[5] / "share" / "stvg_ros" / "models" / SYNTHETIC_MODEL_NAME)
    return out


def shipped_model_dir() -> Optional[Path]:
    """The shipped synthetic model's directory (source tree first, then the share directory), or None."""
    for d in [REPO_MODEL_DIR] + _share_model_dirs():
        if (d / "config.json").is_file():
            return d
    return None


def tiny_model_dir() -> Path:
    """The tiny random model in the cache, built on first use (atomic against concurrent builders)."""
    target = cache_dir() / f"tiny-{TINY_FAMILY}-v{TINY_BUILD}"
    if not (target / "config.json").is_file():
        from stvg_ros.adapters.tiny_models import tiny_model

        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        tiny_model(TINY_FAMILY, str(tmp))
        try:
            tmp.rename(target)
        except OSError:  # another process won the race: use its copy
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return target


def choose_model(model_path: str = "") -> ModelChoice:
    """The model for ``model_path`` ('' or 'default' = the default model, in the order above).

    Raises FileNotFoundError with the fix when an explicit path does not exist, and ValueError for
    an unknown ``STVG_ROS_DEFAULT_MODEL``.
    """
    if model_path and model_path != "default":
        path = Path(model_path).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(
                f"model_path {model_path!r} is not a directory: give the local directory of a "
                f"Qwen2.5-VL, LLaVA-OneVision or LLaVA-NeXT-Video checkpoint, or '' for the default model")
        return ModelChoice(str(path), "explicit", False)
    mode = (os.environ.get(DEFAULT_MODEL_ENV) or "auto").strip().lower()
    if mode not in ("auto", "tiny"):
        raise ValueError(f"{DEFAULT_MODEL_ENV}={mode!r}: use 'auto' (the shipped synthetic model, else the tiny "
                         f"random one) or 'tiny' (always the tiny random model), or unset it")
    if mode == "auto":
        shipped = shipped_model_dir()
        if shipped is not None:
            return ModelChoice(str(shipped), "synthetic", False)
    return ModelChoice(str(tiny_model_dir()), "tiny", True)


def resolve_model(model_path: str = "") -> tuple[str, bool]:
    """``(directory, meaningless)`` for ``model_path``: :func:`choose_model` without the kind."""
    choice = choose_model(model_path)
    return choice.directory, choice.meaningless


#: key of the calibration record in grounding_defaults.json (a comment to the config loader), written by
#: ``stvg-calibrate`` (:mod:`stvg_ros.evaluation.calibration`)
RECORD_KEY = "_calibration"


def calibration_problem(model_dir: str | Path | None) -> str:
    """Why a model's thresholds are not calibrated for it ("" when its grounding_defaults.json holds a
    calibration record with found_threshold and the standing thresholds)."""
    if model_dir is None:
        return ""
    path = Path(model_dir) / MODEL_DEFAULTS_FILE
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        data = {}
    missing = [k for k in ("found_threshold", "standing_found_on", "standing_found_off") if k not in data]
    if isinstance(data.get(RECORD_KEY), dict) and not missing:
        return ""
    return (f"thresholds not calibrated for this model ({', '.join(missing) or 'no calibration record'} "
            f"in {path.name}: generic found_threshold/standing thresholds); run "
            f"`stvg-calibrate {model_dir} --clips your_clips.json`")
