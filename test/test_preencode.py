"""Pre-encode when idle: frames encoded ahead of a query are exactly what the query would compute,
the work yields to queries between units, and it leaves with the frames."""

from __future__ import annotations

import numpy as np
import pytest

from fake_grounder import FakeGrounder
from grounding_checks import assert_same_grounding

from stvg_ros.adapters import load_adapter
from stvg_ros.config import ServingConfig
from stvg_ros.adapters.feature_cache import FeatureCache
from stvg_ros.grounding.grounder import Grounder, sample_indices
from stvg_ros.stream.requests import GroundingRequest
from stvg_ros.stream.service import GroundingService
from stvg_ros.adapters.tiny_models import random_frames

FAMILIES = ("qwen2_5_vl", "llava_onevision", "llava_next_video")
NS = 10**9


@pytest.fixture(scope="module", params=FAMILIES)
def adapter(request, tiny_model_dir):
    return load_adapter(tiny_model_dir(request.param))


def test_prefetch_counts_apart_and_its_hits_once():
    cache = FeatureCache(10_000)
    with cache.prefetching():
        assert cache.get("visual", 1) is None
        cache.put("visual", 1, np.zeros(10, np.float32), frames=(1,))
        cache.put("visual", 2, np.zeros(10, np.float32), frames=(2,))
        assert cache.get("visual", 1) is not None
    s = cache.stats()
    assert (s.hits, s.misses, s.prefetched, s.prefetch_hits) == (0, 0, {"visual": 2}, {})
    cache.get("visual", 1)
    cache.get("visual", 1)
    s = cache.stats()
    assert (s.hits, s.prefetch_hits) == (2, {"visual": 1})  # a prefetched entry counts as used once
    cache.forget({2})  # entry 2 left with its frame, never used
    cache.get("visual", 2)
    assert cache.stats().prefetch_hits == {"visual": 1} and cache.stats().as_dict()["prefetched"] == {"visual": 2}


@pytest.mark.parametrize("full", [False, True], ids=["plain", "full"])
def test_a_query_after_prefetch_hits_every_unit_and_is_unchanged(adapter, full):
    """prefetch() then ground(): every visual lookup of the query hits, and maps, p_yes and the tube are
    those of a grounder without any cache (TAS included: Qwen's reversed pairs are pre-encoded too)."""
    # the sampled clip's pass only: tube_frames' second pass (halfway frames) is not pre-encoded
    cfg = dict(num_frames=5, use_lra=full, lra_steps=1, use_tas=full, use_dsth=False, keep_relevance=True,
               tube_frames="sampled")
    warm, fresh = Grounder(adapter, cfg), Grounder(adapter, dict(cfg, feature_cache_mb=0))
    frames, stamps, keys = random_frames(9, 56, 72, seed=7), [0.5 * i for i in range(9)], list(range(100, 109))
    units = warm.prefetch(frames, keys)
    per_frame = all(len(u) == 1 for u in adapter.encode_units(5))
    assert units == (9 if per_frame else 3 * (2 if full else 1))  # every frame / the sampled clip's pairs
    assert warm.cache_stats().misses == 0 and warm.prefetch(frames, keys) == 0  # uncounted; nothing twice
    a = warm.ground(frames, stamps, "the red ball", frame_keys=keys)
    s = warm.cache_stats()
    assert s.by_kind["visual"]["misses"] == 0 and s.by_kind["visual"]["hits"] > 0
    assert s.prefetch_hits["visual"] == (5 if per_frame else units)
    assert_same_grounding(a, fresh.ground(frames, stamps, "the red ball"))
    assert fresh.prefetch(frames, keys) == 0  # no cache, nothing to do


def test_prefetch_stops_before_the_next_unit(adapter):
    g = Grounder(adapter, dict(num_frames=4, use_lra=False, use_tas=False, use_dsth=False))
    frames = random_frames(6, 48, 64, seed=2)
    asked = []
    assert g.prefetch(frames, list(range(6)), should_stop=lambda: asked.append(1) or len(asked) > 1) == 1
    assert g.prefetch(frames, list(range(6)), should_stop=lambda: True) == 0


def _service(grounder, **cfg) -> GroundingService:
    """A service without a worker thread: the test does its work with ``run_pending`` (no waiting)."""
    service = GroundingService(ServingConfig(window_rate=0.0, window_duration=100.0, **cfg))
    service.start(grounder, threaded=False)
    return service


def _feed(service, frames, first=1):
    for i, f in enumerate(frames):
        service.ingest((first + i) * NS, lambda f=f: f)


def test_service_pre_encodes_when_idle_and_the_answer_is_unchanged(tiny_model_dir):
    """Frames arrive, the idle worker encodes them; the query then computes no visual token, answers
    exactly as a service without pre-encode, and the window's evictions take pre-encoded frames along."""
    adapter = load_adapter(tiny_model_dir("llava_onevision"))
    # the sampled clip's pass only (tube_frames' second pass looks up the halfway frames as well)
    cfg = dict(num_frames=4, use_lra=False, use_tas=False, use_dsth=False, keep_relevance=True,
               tube_frames="sampled")
    on, off = Grounder(adapter, cfg), Grounder(adapter, cfg)
    with_pre = _service(on, preencode_when_idle=True, window_max_frames=6)
    without = _service(off, window_max_frames=6)
    frames = random_frames(8, 48, 64, seed=4)
    try:
        for service in (with_pre, without):
            _feed(service, frames[:6])
            service.run_pending()
        assert with_pre.cache_stats()["prefetched"].get("visual", 0) == 6
        assert without.cache_stats()["entries"] == 0  # off by default: nothing computed before a query
        assert with_pre.counters().queries_received == 0  # not a query
        answers = {}
        for name, service in (("on", with_pre), ("off", without)):
            service.submit(GroundingRequest("q", "the red ball"), lambda a, n=name: answers.__setitem__(n, a))
            assert service.run_pending() == 1
        assert answers["on"].status == answers["off"].status == "answered"
        assert_same_grounding(answers["on"].result, answers["off"].result)
        s = with_pre.cache_stats()
        assert s["by_kind"]["visual"] == {"hits": 4, "misses": 0} and s["prefetch_hits"]["visual"] == 4
        _feed(with_pre, frames[6:], first=7)  # two frames leave the window, two new ones are pre-encoded
        with_pre.run_pending()
        assert with_pre.cache_stats()["prefetched"].get("visual", 0) == 8
        live = set(with_pre._keys(with_pre.window.frames()))  # (its stream, the window's seq)
        held = {k[0] for (kind, k) in on.feature_cache._entries if kind in ("pixels", "visual")}
        assert held == live
    finally:
        with_pre.stop()
        without.stop()


class UnitGrounder(FakeGrounder):
    """The tests' fake grounder, pre-encoding in units; ``on_unit(u)`` runs inside unit ``u`` (e.g. a query
    arrives): shows when the service stops between units."""

    def __init__(self, units=5):
        super().__init__()
        self.units, self.done, self.started_with = units, [], []
        self.on_unit = None
        self.stopped_at = None

    def prefetch(self, frames, frame_keys, should_stop=None, stamps=None):
        for u in range(len(self.done), self.units):  # what earlier passes did stays done
            if should_stop():
                self.stopped_at = len(self.done)
                return len(self.done)
            self.entered.set()
            if self.on_unit is not None:
                self.on_unit(u)
            self.done.append(u)
        return self.units

    def ground(self, frames, stamps, query, **kw):
        self.started_with.append(len(self.done))  # units finished when the query started
        return super().ground(frames, stamps, query, **kw)


def test_a_query_interrupts_pre_encoding_after_one_unit_and_it_resumes_after():
    g = UnitGrounder()
    service = _service(g, preencode_when_idle=True)
    answers = []
    g.on_unit = lambda u: u == 0 and service.submit(GroundingRequest("q", "the red ball"), answers.append)
    _feed(service, random_frames(3, 24, 32))
    service.run_pending()
    assert answers[0].status == "answered"
    assert g.started_with == [1] and g.stopped_at == 1  # the unit in flight finished; none started before the query
    assert len(g.done) == g.units  # resumed once the worker was idle again
    c = service.counters()
    assert (c.queries_received, c.queries_answered) == (1, 1)
    service.stop()


def test_a_due_standing_evaluation_and_stop_interrupt_pre_encoding_too():
    from stvg_ros.stream.standing import StandingRequest

    g = UnitGrounder()
    service = _service(g, preencode_when_idle=True)
    events = []
    g.on_unit = lambda u: u == 0 and service.register(
        StandingRequest("s", "the red ball", period=1.0, cheap_first=False), events.append)
    _feed(service, random_frames(3, 24, 32))
    service.run_pending()
    assert g.started_with[0] == 1 and g.stopped_at == 1  # the standing evaluation ran after the unit in flight
    service.stop()

    g = UnitGrounder()
    service = _service(g, preencode_when_idle=True)
    g.on_unit = lambda u: u == 1 and service.stop()
    _feed(service, random_frames(3, 24, 32))
    assert service.run_pending() == 1  # the pre-encoding, stopped after its second unit; nothing after it
    assert g.stopped_at == 2 and g.done == [0, 1]


def test_off_by_default():
    assert ServingConfig().preencode_when_idle is False
    g = UnitGrounder()
    service = _service(g)
    _feed(service, random_frames(3, 24, 32))
    answers = []
    service.submit(GroundingRequest("q", "x"), answers.append)
    service.run_pending()
    assert answers[0].status == "answered" and not g.entered.is_set()
    service.stop()


def test_units_cover_the_sampled_clip(adapter):
    idx = sample_indices(11, 5)
    units = adapter.encode_units(len(idx))
    assert sorted(i for u in units for i in u) == list(range(len(idx)))


@pytest.mark.model  # the benchmark on tiny models in a child process
def test_bench_preencode_quick(tmp_path):
    """The benchmark runs in quick mode, its answers equal with and without pre-encode (figures: bench/)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "preencode.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, str(root / "bench" / "bench_preencode.py"), "--quick", "--json", str(out)],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "on/off" in proc.stdout and "pre-encoded units used" in proc.stdout
    for model in json.loads(out.read_text())["models"].values():
        for run in model.values():
            first = run["first_query"]
            assert first["results_equal"] is True and first["query_visual_misses"] == 0
            # process CPU, every case once per round; a query's model passes and box stage apart
            assert first["clock"] == "process CPU"
            assert len(set(map(len, first["rounds_s"].values()))) == 1
            assert first["model_off_s"] > 0 and first["box_off_s"] >= 0
            assert abs(first["model_off_s"] + first["box_off_s"] - first["off_s"]) <= 0.5 * first["off_s"]
            assert 0 < run["speculative"]["stream_prefetched_used"] <= run["speculative"]["stream_prefetched_units"]


@pytest.mark.ros
def test_diagnostics_report_what_was_pre_encoded_and_used():
    from ros_harness import require_ros

    require_ros()
    from stvg_ros.msg import Status
    from stvg_ros.ros.status import diagnostics

    cache = dict(FeatureCache(1000).stats().as_dict(), prefetched={"visual": 6}, prefetch_hits={"visual": 4})
    status = diagnostics("stvg", Status(state="active"), "", [], cache=cache).status[0]
    values = {kv.key: kv.value for kv in status.values}
    assert values["feature_cache_prefetched"] == "{'visual': 6}"
    assert values["feature_cache_prefetch_hits"] == "{'visual': 4}"
