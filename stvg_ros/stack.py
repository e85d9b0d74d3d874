"""The one place that builds the grounding system from settings, and changes it live.

:meth:`Stack.build` chooses and loads the model (adapter → :class:`~stvg_ros.grounding.grounder.Grounder`), builds
the live proposal stage, sizes the service's window for the model's input and starts the
:class:`~stvg_ros.stream.service.GroundingService`; :meth:`Stack.reconfigure` applies changed settings to the
running system.  The node (:mod:`stvg_ros.ros.node`) only reads its parameters and calls these; the
evaluation runners, the calibration and the benchmarks load their model through :func:`load_model`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Collection, Optional, Protocol

from .config import ConfigError, GroundingConfig, ProposalConfig, ServingConfig
from .stream.seams import GroundingModel, ProposalStage
from .stream.service import GroundingService

if TYPE_CHECKING:
    from .grounding.grounder import Grounder
    from .stream.multi import MultiStreamService

_LOG = logging.getLogger("stvg_ros.stack")


class Log(Protocol):
    """Where the builder tells what it did: a :class:`logging.Logger` or an rclpy node's logger."""

    def info(self, message: str) -> object: ...

    def warning(self, message: str) -> object: ...


class Settings(Protocol):
    """What the stack is built from: the resolved config objects (:class:`StackSettings`, or the node's
    :class:`~stvg_ros.node_params.NodeSettings`, which has the same fields)."""

    @property
    def model_path(self) -> str: ...

    @property
    def grounding(self) -> GroundingConfig: ...

    @property
    def serving(self) -> ServingConfig: ...

    @property
    def proposals(self) -> ProposalConfig: ...

    @property
    def use_detections(self) -> bool: ...


@dataclass(frozen=True)
class StackSettings:
    """Settings for a stack outside the node (evaluation, benchmarks, Python users)."""

    model_path: str = ""  # '' or 'default' = the default model (stvg_ros.adapters.default_model)
    grounding: GroundingConfig = field(default_factory=GroundingConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    proposals: ProposalConfig = field(default_factory=ProposalConfig)
    use_detections: bool = False  # proposals from GroundingService.add_detections
    cameras: tuple = ()  # several cameras: their names (or node_params.CameraSettings); () = one stream


class BuildError(ConfigError):
    """The stack could not be built; the message names the cause.  ``model``: what was chosen before the
    failure (as :attr:`LoadedModel.status`), empty when no model was chosen."""

    def __init__(self, message: str, model: Optional[dict] = None):
        super().__init__(message)
        self.model = model or {}


@dataclass
class LoadedModel:
    """A loaded grounder and what was chosen: ``kind`` 'explicit', 'synthetic' or 'tiny'
    (:class:`~stvg_ros.adapters.default_model.ModelChoice`); ``note``: the caveat of a default model;
    ``uncalibrated``: why its thresholds are not calibrated for it ('' when they are)."""

    grounder: "Grounder"
    directory: str
    kind: str
    note: str = ""
    uncalibrated: str = ""
    load_s: float = 0.0

    @property
    def status(self) -> dict:
        """The model as status and diagnostics report it (:mod:`stvg_ros.ros.status`)."""
        return dict(directory=self.directory, kind=self.kind, note=self.note, uncalibrated=self.uncalibrated)


def choose(model_path: str) -> dict:
    """The model directory for ``model_path`` and its status fields (no loading); raises naming the fix."""
    from .adapters.default_model import calibration_problem, choose_model

    choice = choose_model(model_path)
    # issue 27: thresholds not calibrated for this model (stvg-calibrate) are a /diagnostics warning
    return dict(directory=choice.directory, kind=choice.kind, note=choice.note,
                uncalibrated=calibration_problem(choice.directory) if choice.kind != "tiny" else "")


def load_model(model_path: str, grounding: Optional[GroundingConfig] = None, log: Optional[Log] = None,
               chosen: Optional[dict] = None) -> LoadedModel:
    """Choose (:func:`~stvg_ros.adapters.default_model.choose_model`: '' = the default model) and load a model into
    a :class:`~stvg_ros.grounding.grounder.Grounder` with ``grounding`` (its ``device``; the directory's
    ``grounding_defaults.json`` under it).  ``log``: told the default model's caveat and the loading time
    (nothing is logged without it).  ``chosen``: :func:`choose`'s answer, when the caller already has it."""
    from .grounding.grounder import Grounder

    grounding = grounding or GroundingConfig()
    c = chosen or choose(model_path)
    if c["note"] and log is not None:  # a default model: random (meaningless) or synthetic-world only
        log.warning(c["note"])
    t0 = time.monotonic()
    grounder = Grounder.from_pretrained(c["directory"], device=grounding.device, config=grounding)
    loaded = LoadedModel(grounder, c["directory"], c["kind"], c["note"], c["uncalibrated"], time.monotonic() - t0)
    if log is not None:
        log.info(f"loaded model {loaded.directory} on {grounder.adapter.device} in {loaded.load_s:.1f} s"
                 + "".join(f"; model defaults: {k}={v}" for k, v in sorted(grounder.applied_defaults.items())))
    return loaded


def model_side(grounder: object, grounding: GroundingConfig) -> int:
    """The side (pixels) the model is fed a frame at: ``image_size``, else the adapter's own (0 = unknown);
    the service keeps frames at twice it (``ingest_max_side=0``)."""
    from .grounding.grounder import Grounder

    if grounding.image_size:
        return int(grounding.image_size)
    return int(grounder.adapter.input_side) if isinstance(grounder, Grounder) else 0


def build_stage(proposals: ProposalConfig, serving: ServingConfig) -> ProposalStage:
    """The live proposal stage of ``proposals`` (detector, hog or motion), its tracks kept at least as long
    as the service's window."""
    from .proposals.live import proposal_stage

    stage: ProposalStage = proposal_stage(proposals.replace(window_s=max(proposals.window_s,
                                                                         serving.window_duration)))
    return stage


def load_time_fields() -> frozenset[str]:
    """Grounding fields that shape the loaded model or the grounder's parts (the node parameters not
    ``live``): a change applies at the next :meth:`Stack.build`."""
    from .config import GroundingConfig, knob_live

    return frozenset(n for n in GroundingConfig.field_names() if not knob_live(GroundingConfig, n))


@dataclass
class Stack:
    """A running grounding system: the service, serving with ``grounder`` and the live ``stage`` (None:
    proposals from detections or none); ``model``: :attr:`LoadedModel.status` (empty for a grounder given
    to :meth:`build`)."""

    service: "GroundingService | MultiStreamService"
    grounder: GroundingModel
    stage: Optional[ProposalStage] = None
    model: dict = field(default_factory=dict)
    stages: dict = field(default_factory=dict)  # several cameras: each one's live proposal stage by name

    @classmethod
    def build(cls, settings: Settings, *, service: Optional[GroundingService] = None,
              grounder: Optional[GroundingModel] = None, log: Optional[Log] = None,
              warn: Optional[Callable[[str, str], None]] = None, threaded: bool = True) -> "Stack":
        """Load the model of ``settings.model_path`` (or serve ``grounder``: a model already loaded, or the
        tests' fake), build the proposal stage when ``settings.proposals.enabled``, and start ``service``
        (a new one when None, ``warn`` its problem callback) with them.  ``log``: what was loaded
        (default: the ``stvg_ros.stack`` logger).  ``threaded=False``: no worker thread, the caller steps
        the service (:meth:`GroundingService.run_pending`).  Raises :class:`BuildError` naming the cause;
        nothing is started then."""
        log = log or _LOG
        model: dict = {}
        side = 0
        if grounder is None:
            try:
                model = choose(settings.model_path)
                loaded = load_model(settings.model_path, settings.grounding, log, chosen=model)
            except Exception as e:  # noqa: BLE001 - told as the configure failure, the caller lives on
                problem = str(e) if isinstance(e, ConfigError) else f"cannot load the model: {type(e).__name__}: {e}"
                raise BuildError(problem, model) from e
            grounder, side = loaded.grounder, model_side(loaded.grounder, settings.grounding)
        else:
            side = model_side(grounder, settings.grounding)
        stage = None
        cameras = [getattr(c, "name", c) for c in getattr(settings, "cameras", ())]  # several: a stage, a window each
        stages: dict = {}
        if settings.proposals.enabled:  # the live proposal stage: tracks are ready when a query comes
            try:
                for name in cameras or [""]:
                    stages[name] = stage = build_stage(settings.proposals, settings.serving)
                log.info(f"proposals ({settings.proposals.source}): {stage.description}"  # type: ignore[union-attr]
                         + (f", one stage per camera ({len(cameras)})" if cameras else ""))
            except Exception as e:  # noqa: BLE001 - a bad detector path must leave the caller alive
                raise BuildError(f"proposal stage: {type(e).__name__}: {e}", model) from e
        if cameras:
            return cls._build_cameras(settings, cameras, service, grounder, side, stages, model, warn, threaded)
        service = service if service is not None else GroundingService(settings.serving, warn=warn)
        service.configure(settings.serving, model_side=side)
        service.start(grounder, external_detections=settings.use_detections, stage=stage,
                      synonyms=settings.proposals.synonyms, threaded=threaded)
        return cls(service, grounder, stage, model)

    @classmethod
    def _build_cameras(cls, settings: Settings, cameras: list[str], given: Optional[GroundingService],
                       grounder: GroundingModel, side: int, stages: dict, model: dict,
                       warn: Optional[Callable[[str, str], None]], threaded: bool) -> "Stack":
        """Several cameras: a :class:`MultiStreamService` (``service`` when it serves these names, else a new
        one), one window and proposal stage per camera, the one ``grounder``."""
        from .stream.multi import MultiStreamService

        service = given if isinstance(given, MultiStreamService) and given.streams == cameras else \
            MultiStreamService(cameras, settings.serving, warn=warn)
        service.configure(settings.serving, model_side=side)
        _camera_sides(service, settings)
        service.start(grounder, external_detections=settings.use_detections, stages=stages,
                      synonyms=settings.proposals.synonyms, threaded=threaded)
        return cls(service, grounder, None, model, stages)

    def reconfigure(self, settings: Settings, at_load: Optional[Collection[str]] = None) -> None:
        """Apply changed ``settings`` to the running system: the serving ones at once, the grounding ones
        except ``at_load`` (default :func:`load_time_fields`), which keep their loaded values until the next
        :meth:`build`.  Proposal settings and the model choose what is built: they too wait for it."""
        from .grounding.grounder import Grounder

        self.service.configure(settings.serving)
        _camera_sides(self.service, settings)
        grounder = self.grounder
        if isinstance(grounder, Grounder):
            names = load_time_fields() if at_load is None else at_load
            keep = {n: getattr(grounder.config, n) for n in names}
            grounder.config = settings.grounding.replace(**keep)


def _camera_sides(service: "GroundingService | MultiStreamService", settings: Settings) -> None:
    """Each camera's own ``ingest_side`` (an HD camera kept smaller, say) over the serving one."""
    from .stream.multi import MultiStreamService

    if not isinstance(service, MultiStreamService):
        return
    for c in getattr(settings, "cameras", ()):
        if getattr(c, "ingest_side", 0) and c.name in service.streams:  # new names: at build
            s = service.stream(c.name)
            s.configure(s.config.replace(ingest_max_side=c.ingest_side))
