"""The seams between the service and its parts are typed: what :mod:`stvg_ros.stream.seams` declares is what the real
classes and the tests' fake offer (names, order, kinds and optional-ness of parameters), and the service
calls its grounder and proposal stage through them, never probing with getattr/hasattr."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from stvg_ros.config import ProposalConfig
from stvg_ros.stream.seams import GroundingModel, ProposalStage

ROOT = Path(__file__).resolve().parent.parent


def _methods(protocol) -> list[str]:
    return [n for n, v in vars(protocol).items() if inspect.isfunction(v) and not n.startswith("_")]


def _mismatch(protocol, cls) -> list[str]:
    """How ``cls``'s methods differ from ``protocol``'s: a missing method or parameter, another order or kind,
    a parameter optional in one and required in the other, or an extra required parameter."""
    out = []
    for name in _methods(protocol):
        impl = getattr(cls, name, None)
        if impl is None:
            out.append(f"{cls.__name__}.{name} is missing")
            continue
        want = list(inspect.signature(getattr(protocol, name)).parameters.values())[1:]  # without self
        have = list(inspect.signature(impl).parameters.values())[1:]
        if any(p.kind is p.VAR_KEYWORD for p in have):  # **kw passes everything on (a subclass's override)
            continue
        for i, p in enumerate(want):
            q = next((q for q in have if q.name == p.name), None)
            if q is None:
                out.append(f"{cls.__name__}.{name} lacks parameter {p.name!r}")
            elif have.index(q) != i or q.kind != p.kind:
                out.append(f"{cls.__name__}.{name}: {p.name!r} at {have.index(q)} ({q.kind}), want {i} ({p.kind})")
            elif (q.default is q.empty) != (p.default is p.empty):
                out.append(f"{cls.__name__}.{name}: {p.name!r} optional in one, required in the other")
        names = {p.name for p in want}
        out += [f"{cls.__name__}.{name}: extra required parameter {q.name!r}" for q in have
                if q.name not in names and q.default is q.empty and q.kind not in (q.VAR_POSITIONAL, q.VAR_KEYWORD)]
    return out


def test_the_grounder_and_the_fake_are_grounding_models():
    from fake_grounder import FakeGrounder

    from stvg_ros.grounding.grounder import Grounder

    for cls in (Grounder, FakeGrounder):
        assert _mismatch(GroundingModel, cls) == [], cls
    assert isinstance(FakeGrounder(), GroundingModel)


def test_the_proposal_stages_are_proposal_stages():
    from stvg_ros.proposals.live import LiveProposalStage
    from stvg_ros.proposals.motion import MotionTracks

    for cls in (LiveProposalStage, MotionTracks):
        assert _mismatch(ProposalStage, cls) == [], cls
    for stage in (MotionTracks(ProposalConfig(source="motion")),
                  LiveProposalStage.from_config(ProposalConfig(source="hog"), background=False)):
        try:
            assert isinstance(stage, ProposalStage) and isinstance(stage.config, ProposalConfig)
        finally:
            stage.close(timeout=1.0)


def test_a_changed_signature_is_caught():
    class Drifted:
        def ground(self, frames, stamps, query, proposals=None, sub_queries=None, checkpoint=None):  # no frame_keys
            ...

        def existence(self, frames, stamps, text, checkpoint=None, frame_keys=None):  # renamed
            ...

        def prefetch(self, frames, frame_keys, should_stop):  # now required
            ...

        def forget_frames(self, gone_keys, now):  # an extra required one
            ...

    problems = _mismatch(GroundingModel, Drifted)
    assert len(problems) == 8, problems  # a rename counts twice
    assert "Drifted.prefetch lacks parameter 'stamps'" in problems
    assert "cache_stats is missing" in problems[-2] and "model_serving_defaults is missing" in problems[-1]


@pytest.mark.parametrize("module", ["stvg_ros/stream/service.py", "stvg_ros/stream/worker.py",
                                    "stvg_ros/stream/standing_evaluation.py", "stvg_ros/stream/requests.py"])
def test_the_service_does_not_probe_its_parts(module):
    """The seam is the protocol: no getattr/hasattr in the service (9 probes before issue 28)."""
    tree = ast.parse((ROOT / module).read_text())
    probes = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
              and n.func.id in ("getattr", "hasattr")]
    assert probes == [], f"{module} probes at lines {probes}: declare what it needs in stvg_ros/stream/seams.py"
