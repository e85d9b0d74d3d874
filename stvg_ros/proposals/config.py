"""Knobs of the proposal stage (detector + tracker), with the paper's defaults.

The node declares them as ``proposals_<field>`` parameters (flat, like its other parameters);
YAML files may hold them under a ``proposals:`` key.  Invalid values raise :class:`ProposalConfigError` naming the fix.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..config import ConfigError

DETECTOR_TYPES = ("auto", "grounding_dino", "owlv2")
TRACKERS = ("bytetrack", "iou")
PROPAGATIONS = ("interpolate", "hold")


class ProposalConfigError(ConfigError):
    """A proposal-stage option is invalid; the message says how to fix it."""


@dataclass
class ProposalConfig:
    enabled: bool = False
    """Run the live stage in the node (off: external detections or the proposal-free path)."""
    detector_path: str = ""
    """Local directory of a transformers zero-shot detector (Grounding DINO, MM-Grounding-DINO, OWLv2)."""
    detector_type: str = "auto"
    """'auto' (from the directory's config.json), 'grounding_dino' (also MM-Grounding-DINO) or 'owlv2'."""
    box_threshold: float = 0.4
    """Minimum box score (paper: 0.4); ByteTrack's high threshold."""
    text_threshold: float = 0.4
    """Grounding DINO: minimum score of the phrase's own tokens (paper: 0.4); unused by OWLv2."""
    low_threshold: float = 0.2
    """ByteTrack's second association stage uses detections between this and ``box_threshold``."""
    nms_iou: float = 0.7
    """Overlapping boxes of one frame above this IoU are merged (1.0 disables)."""
    detect_every: int = 10
    """Offline (and live with rate_hz=0): detection runs on every N-th frame (paper: 10)."""
    rate_hz: float = 3.0
    """Live: detection keyframes per second at most, whatever rate frames arrive at (3 Hz ~ the paper's
    every 10th frame of 30 fps video); 0 = every ``detect_every``-th frame given."""
    batch_size: int = 4
    """Keyframes per detector forward pass when catching up (offline, new phrases)."""
    tracker: str = "bytetrack"
    """'bytetrack' (two-stage association with constant-velocity prediction) or 'iou' (one stage)."""
    match_iou: float = 0.3
    """Minimum IoU between a track's predicted box and a detection to link them."""
    max_center_shift: float = 1.0
    """Last-resort link of an unmatched track and detection whose centres are this many box sizes
    apart at most (similar size); 0 disables it."""
    max_lost: int = 3
    """Keyframes a track may go undetected before it ends."""
    propagation: str = "interpolate"
    """Boxes between keyframes: 'interpolate' linearly or 'hold' the last detection."""
    hold_keyframes: float = 1.0
    """Before its first / after its last detection a track keeps its box for this many keyframe periods."""
    max_tracks: int = 16
    """Tracks offered to the grounder, longest and most confident first (0 = all)."""
    default_class: str = "person"
    """Detector phrase when the query's subject cannot be told (and the live stage's running class)."""
    window_s: float = 30.0
    """Live: seconds of keyframes and tracks kept (match the node's window)."""
    max_phrases: int = 8
    """Live: phrases whose tracks are cached besides the running class (least recently used dropped)."""
    max_backlog: int = 4
    """Live: keyframes the background worker may fall behind before it skips the oldest."""
    query_wait_s: float = 2.0
    """Live: how long a query waits for the background worker to reach its newest frame."""
    device: str = "auto"
    """'auto' (cuda when available), 'cuda', 'cuda:N' or 'cpu'."""
    dtype: str = "auto"
    """'auto' (float32: Grounding DINO loses boxes in half precision), 'float32', 'bfloat16' or 'float16'."""
    synonyms: dict = field(default_factory=dict)
    """Extra head noun → detector class entries (added to the built-in map, e.g. {'guy': 'person'})."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def bad(name: str, value: Any, fix: str) -> ProposalConfigError:
            return ProposalConfigError(f"invalid proposals_{name}={value!r}: {fix}")

        for name, allowed in (("detector_type", DETECTOR_TYPES), ("tracker", TRACKERS),
                              ("propagation", PROPAGATIONS), ("dtype", ("auto", "float32", "bfloat16", "float16"))):
            if getattr(self, name) not in allowed:
                raise bad(name, getattr(self, name), f"choose one of {', '.join(allowed)}")
        for name in ("box_threshold", "text_threshold", "match_iou", "nms_iou"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise bad(name, v, "use a value in [0, 1]")
        if not 0.0 <= self.low_threshold <= self.box_threshold:
            raise bad("low_threshold", self.low_threshold, f"use a value in [0, box_threshold={self.box_threshold}]")
        for name in ("detect_every", "batch_size", "max_backlog"):
            if getattr(self, name) < 1:
                raise bad(name, getattr(self, name), "use 1 or more")
        for name in ("rate_hz", "hold_keyframes", "max_center_shift", "max_lost", "max_tracks", "max_phrases",
                     "query_wait_s"):
            if getattr(self, name) < 0:
                raise bad(name, getattr(self, name), "use 0 or more")
        if self.window_s <= 0:
            raise bad("window_s", self.window_s, "use a positive number of seconds")
        if not self.default_class.strip():
            raise bad("default_class", self.default_class, "name an object class, e.g. 'person'")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise bad("device", self.device, "use auto, cpu, cuda or cuda:N")
        if self.enabled and not self.detector_path:
            raise bad("detector_path", self.detector_path,
                      "set proposals_detector_path to a local detector directory, or proposals_enabled=false")
        if not isinstance(self.synonyms, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.synonyms.items()):
            raise bad("synonyms", self.synonyms, "give a mapping of words to detector classes")

    # ------------------------------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ProposalConfig":
        """Build from a mapping; keys may carry a ``proposals.`` or ``proposals_`` prefix (node parameters)."""
        values = {k[len("proposals."):] if k.startswith(("proposals.", "proposals_")) else k: v
                  for k, v in values.items()}
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ProposalConfigError(
                f"unknown proposals option(s) {unknown}: valid options are {', '.join(cls.field_names())}")
        defaults = cls()
        kwargs = {}
        for name, v in values.items():
            default = getattr(defaults, name)
            try:
                if isinstance(default, bool):
                    if not isinstance(v, bool):
                        raise TypeError
                elif isinstance(default, int):
                    if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
                        raise TypeError
                    v = int(v)
                elif isinstance(default, float):
                    if isinstance(v, bool):
                        raise TypeError
                    v = float(v)
                elif isinstance(default, str):
                    if not isinstance(v, str):
                        raise TypeError
                elif isinstance(default, dict):
                    v = dict(v or {})
            except (TypeError, ValueError):
                raise ProposalConfigError(
                    f"invalid proposals_{name}={v!r}: expected a value of type {type(default).__name__}") from None
            kwargs[name] = v
        return cls(**kwargs)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "ProposalConfig":
        """Fields under a top-level ``proposals:`` key, or ``proposals_*`` keys of a ROS params file."""
        import yaml

        data = yaml.safe_load(Path(path).read_text()) or {}
        if isinstance(data.get("proposals"), dict):
            return cls.from_dict(data["proposals"])
        for value in data.values():
            if isinstance(value, dict) and "ros__parameters" in value:
                params = value["ros__parameters"]
                nested = params.get("proposals")
                if isinstance(nested, dict):
                    return cls.from_dict(nested)
                return cls.from_dict({k: v for k, v in params.items()
                                      if k.startswith(("proposals.", "proposals_"))})
        return cls()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "ProposalConfig":
        return dataclasses.replace(self, **changes)
