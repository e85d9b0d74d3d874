"""A query to all cameras grounded as one batch (``ServingConfig.batch_streams``, off by default;
``Grounder.ground_many``): the worker takes the query's parts at the front of every stream's queue together; each camera's answer is what a
grounding of that stream alone gives (a real grounder on a tiny model); a part is cancelled alone; a failing
batch is grounded again one stream at a time; single-camera queries and the off switch keep one grounding per
stream."""

from __future__ import annotations

import numpy as np
import pytest

from fake_grounder import Clock, FakeGrounder
from grounding_checks import assert_same_grounding

from stvg_ros.config import ServingConfig
from stvg_ros.stream.multi import MultiStreamService
from stvg_ros.stream.requests import ANSWERED, CANCELLED, GroundingRequest
from stvg_ros.stream.window import NS

DT = NS // 5
START = {"front": 100 * NS, "rear": 200 * NS, "arm": 300 * NS}


def on_rear(stamp: float):
    return (0.9 if 200 <= stamp < 300 else 0.2), (1.0, 2.0, 3.0, 4.0)


class BatchingFake(FakeGrounder):
    """The fake grounder with ``ground_many``: each clip as ``ground`` answers it, the batch recorded."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.batches: list[int] = []
        self.fail_batch = False

    def ground_many(self, clips, query, proposals=None, sub_queries=None, checkpoint=None, frame_keys=None):
        self.batches.append(len(clips))
        if self.fail_batch:
            raise RuntimeError("out of memory")
        proposals = proposals or [None] * len(clips)
        frame_keys = frame_keys or [None] * len(clips)
        return [self.ground(f, s, query, proposals=p, sub_queries=sub_queries, checkpoint=checkpoint, frame_keys=k)
                for (f, s), p, k in zip(clips, proposals, frame_keys)]


def make(names=("front", "rear"), grounder=None, **config):
    clock = Clock()
    warnings: list = []
    cfg = ServingConfig(**{"window_rate": 0.0, "window_duration": 100.0, "batch_streams": True, **config})
    svc = MultiStreamService(list(names), cfg, warn=lambda m, k: warnings.append((k, m)), clock=clock)
    g = grounder or BatchingFake(on_rear, clock=clock)
    svc.start(g, threaded=False)
    return svc, g, warnings


def feed(svc, name, n, frames=None):
    for k in range(n):
        image = frames[k] if frames is not None else np.zeros((24, 32, 3), np.uint8)
        svc.ingest(name, START[name] + k * DT, lambda f=image: f, f"{name}_cam")


def test_a_query_to_all_is_one_batch():
    svc, g, _ = make(("front", "rear", "arm"))
    for name in START:
        feed(svc, name, 5)
    answers: list = []
    svc.submit(GroundingRequest("q", "the red ball"), answers.append)
    assert svc.run_pending() == 1 and g.batches == [3] and g.grounds == 3
    [a] = answers
    assert a.status == ANSWERED and a.stream == "rear" and [x.stream for x in a.per_stream][0] == "rear"
    assert {x.stream for x in a.per_stream} == {"front", "rear", "arm"}
    c = svc.counters()
    assert all(c[n].queries_answered == 1 for n in START)


def test_off_grounds_each_stream_in_turn():
    assert not ServingConfig().batch_streams  # the default: measured, it saves little on a CPU (bench/README.md)
    svc, g, _ = make(batch_streams=False)
    feed(svc, "front", 5)
    feed(svc, "rear", 5)
    answers: list = []
    svc.submit(GroundingRequest("q", "the red ball"), answers.append)
    assert svc.run_pending() == 2 and g.batches == [] and g.grounds == 2
    assert answers[0].stream == "rear"


def test_only_parts_at_the_front_of_their_queues_come_along():
    """Batching never reorders a stream's queue: front's own query is served first, then the query to all as
    one batch; a query to one camera is never batched."""
    svc, g, _ = make(query_queue_size=8)
    feed(svc, "front", 5)
    feed(svc, "rear", 5)
    done: list = []
    svc.submit(GroundingRequest("f0", "a person", stream="front"), lambda a: done.append(a.request.query_id))
    svc.submit(GroundingRequest("all", "a person"), lambda a: done.append(a.request.query_id))
    svc.run_pending()
    assert done == ["f0", "all"] and g.batches == [2] and g.grounds == 3


def test_a_part_cancelled_during_the_batch_is_answered_cancelled_and_the_rest_goes_on():
    svc, g, _ = make()
    feed(svc, "front", 5)
    feed(svc, "rear", 5)
    answers: list = []
    handle = svc.submit(GroundingRequest("q", "the red ball"), answers.append)
    front_part = handle.handles[0]
    g.on_stage = lambda stage: front_part.cancel("front gave up") if stage == "lra" else None
    svc.run_pending()
    [a] = answers
    assert a.status == ANSWERED and a.stream == "rear"
    assert {x.stream: x.status for x in a.per_stream} == {"rear": ANSWERED, "front": CANCELLED}
    assert svc.counters()["front"].queries_cancelled == 1


def test_cancelling_every_part_stops_the_batch():
    svc, g, _ = make()
    feed(svc, "front", 5)
    feed(svc, "rear", 5)
    answers: list = []
    handle = svc.submit(GroundingRequest("q", "the red ball"), answers.append)
    g.on_stage = lambda stage: handle.cancel("the client left") if stage == "decompose" else None
    svc.run_pending()
    assert [a.status for a in answers] == [CANCELLED] and g.grounds == 0  # stopped at the next stage
    assert g.calls and all(c["kind"] == "ground" for c in g.calls)


def test_a_failing_batch_is_grounded_again_one_stream_at_a_time():
    svc, g, warnings = make()
    g.fail_batch = True
    feed(svc, "front", 5)
    feed(svc, "rear", 5)
    answers: list = []
    svc.submit(GroundingRequest("q", "the red ball"), answers.append)
    svc.run_pending()
    assert g.batches == [2] and g.grounds == 2
    assert answers[0].status == ANSWERED and answers[0].stream == "rear"
    assert any("one at a time" in m for _, m in warnings)


@pytest.mark.parametrize("family", ["qwen2_5_vl", "llava_onevision"])
def test_the_batched_answer_equals_each_stream_grounded_alone(tiny_model_dir, family):
    """A real grounder: the query to all, batched and not, on the same windows gives each camera the same
    grounding (within float rounding), and the batch is one ground_many call."""
    from stvg_ros.adapters import load_adapter
    from stvg_ros.adapters.tiny_models import random_frames
    from stvg_ros.grounding.grounder import Grounder

    grounder = Grounder(load_adapter(tiny_model_dir(family)), dict(num_frames=6, decomposer="rules",
                                                                  keep_relevance=True))
    calls: list = []
    many = grounder.ground_many

    def counted(clips, *a, **k):
        calls.append(len(clips))
        return many(clips, *a, **k)

    grounder.ground_many = counted
    out = {}
    for batch in (True, False):
        svc, _, _ = make(("front", "rear", "arm"), grounder=grounder, batch_streams=batch, ingest_max_side=0)
        for c, name in enumerate(START):
            feed(svc, name, 12, random_frames(12, 96, 128, seed=40 + c))
        answers: list = []
        svc.submit(GroundingRequest("q", "the small red circle that moves left"), answers.append)
        svc.run_pending()
        out[batch] = {x.stream: x for x in answers[0].per_stream}
        assert answers[0].status == ANSWERED
    assert calls == [3, 1, 1, 1]  # batched: one call for the three cameras; off: ground() on each
    for name in START:
        assert_same_grounding(out[True][name].result, out[False][name].result, atol=1e-5, box_atol=1e-3)
