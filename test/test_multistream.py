"""Several cameras, one grounder (stvg_ros.stream.multi) without ROS: routing, per-stream windows and counters,
"all" answers naming the best camera, standing queries on one stream or all, fair scheduling (deterministic:
``threaded=False`` + ``run_pending`` and the fake grounder, no sleeps)."""

from __future__ import annotations

import numpy as np
import pytest

from fake_grounder import Clock, FakeGrounder

from stvg_ros.config import ServingConfig
from stvg_ros.stream.multi import MultiStreamService, stream_names_problem
from stvg_ros.stream.requests import ANSWERED, CANCELLED, REJECTED, GroundingRequest
from stvg_ros.stream.service import SHUTTING_DOWN
from stvg_ros.stream.standing import APPEARED, ENDED, StandingRequest
from stvg_ros.stream.window import NS

DT = NS // 10
#: each stream's stamps live in their own range, so the fake grounder's script (newest stamp → p_yes) can tell
#: the cameras apart: the target is seen on "rear" only
START = {"front": 100 * NS, "rear": 200 * NS, "arm": 300 * NS}


def on_rear(stamp: float):
    return (0.9 if 200 <= stamp < 300 else 0.2), (1.0, 2.0, 3.0, 4.0)


def make(names=("front", "rear"), grounder=None, **config):
    clock = Clock()
    warnings: list = []
    cfg = ServingConfig(**{"window_rate": 0.0, "window_duration": 100.0, **config})
    svc = MultiStreamService(list(names), cfg, warn=lambda m, k: warnings.append((k, m)), clock=clock)
    g = grounder or FakeGrounder(on_rear, clock=clock)
    svc.start(g, threaded=False)
    return svc, g, warnings


def feed(svc, name, n, first=0, size=(24, 32)):
    return [svc.ingest(name, START[name] + (first + k) * DT, lambda: np.zeros(size + (3,), np.uint8), f"{name}_cam")
            for k in range(n)]


def stream_of(svc, call) -> str:
    """Which stream's frames a grounder call was given (the frame keys' stream number)."""
    numbers = {s._stream: name for name, s in svc.services.items()}
    names = {numbers[k[0]] for k in call["frame_keys"]}
    assert len(names) == 1, f"one call mixed the frames of streams {names}"
    return names.pop()


def test_a_query_to_all_answers_with_the_best_camera_and_names_it():
    svc, g, _ = make()
    feed(svc, "front", 5)
    feed(svc, "rear", 5)
    answers: list = []
    svc.submit(GroundingRequest("q", "the red ball"), answers.append)
    assert answers == []  # queued on both streams
    assert svc.run_pending() == 2 and g.grounds == 2  # one model, grounded on each stream's clip
    [a] = answers
    assert a.status == ANSWERED and a.stream == "rear" and a.result.found
    tube = a.tube
    assert tube.stream == "rear" and tube.frame_id == "rear_cam" and tube.found
    assert tube.start_ns == START["rear"] and tube.end_ns == START["rear"] + 4 * DT  # the rear camera's own stamps
    assert [x.stream for x in a.per_stream] == ["rear", "front"] and not a.per_stream[1].result.found
    assert a.tubes == (tube,)  # the best tube only, unless asked for each camera's
    assert tube.camera_margin == pytest.approx(0.9 - 0.2)  # how far the best camera's p_yes is ahead of the other's


def test_one_tube_per_camera_when_asked():
    svc, g, _ = make()
    feed(svc, "front", 5)
    feed(svc, "rear", 5)
    answers: list = []
    svc.submit(GroundingRequest("q", "the red ball", each_stream=True), answers.append)
    svc.run_pending()
    tubes = answers[0].tubes
    assert [(t.stream, t.frame_id, t.found) for t in tubes] == [("rear", "rear_cam", True), ("front", "front_cam", False)]
    assert [t.camera_margin for t in tubes] == pytest.approx([0.7, -0.7])  # each against the best of the others


def test_a_query_to_one_camera_grounds_that_stream_only():
    svc, g, _ = make()
    feed(svc, "front", 5)
    feed(svc, "rear", 5)
    answers: list = []
    svc.submit(GroundingRequest("q", "the red ball", stream="front"), answers.append)
    svc.run_pending()
    assert g.grounds == 1 and stream_of(svc, g.calls[0]) == "front"
    [a] = answers
    assert a.status == ANSWERED and a.stream == "front" and a.tube.stream == "front" and not a.result.found
    assert a.per_stream == () and a.tube.camera_margin is None  # one camera asked: no margin


def test_all_grounds_only_streams_with_frames_and_unknown_or_empty_is_refused_with_the_fix():
    svc, g, _ = make(("front", "rear", "arm"))
    answers: list = []
    svc.submit(GroundingRequest("q0", "the red ball"), answers.append)
    assert answers[0].status == REJECTED and "no frames on any stream" in answers[0].reason
    svc.submit(GroundingRequest("q1", "the red ball", stream="left"), answers.append)
    assert answers[1].status == REJECTED and "no stream 'left'" in answers[1].reason and "front, rear, arm" in \
        answers[1].reason
    feed(svc, "front", 5)
    feed(svc, "arm", 5)
    svc.submit(GroundingRequest("q2", "the red ball", stream="all"), answers.append)
    svc.run_pending()
    assert sorted(stream_of(svc, c) for c in g.calls) == ["arm", "front"]
    assert sorted(a.stream for a in answers[2].per_stream) == ["arm", "front"]
    with pytest.raises(ValueError, match="no stream 'left'"):
        svc.ingest("left", 1, lambda: np.zeros((4, 4, 3), np.uint8))


def test_all_answers_once_even_when_some_streams_refuse():
    svc, g, _ = make(min_frames=4)
    feed(svc, "front", 2)  # too few frames
    feed(svc, "rear", 5)
    answers: list = []
    svc.submit(GroundingRequest("q", "the red ball"), answers.append)
    svc.run_pending()
    [a] = answers
    assert a.status == ANSWERED and a.stream == "rear"
    assert [(x.stream, x.status) for x in a.per_stream] == [("rear", ANSWERED), ("front", REJECTED)]
    assert a.tube.camera_margin is None  # one camera answered: nothing to be ahead of
    svc2, _, _ = make(min_frames=9)
    feed(svc2, "front", 2)
    feed(svc2, "rear", 3)
    more: list = []
    svc2.submit(GroundingRequest("q", "the red ball"), more.append)
    [b] = more
    assert b.status == REJECTED and "front: 2 frame(s)" in b.reason and "rear: 3 frame(s)" in b.reason


def test_cancelling_a_query_to_all_answers_it_once():
    svc, g, _ = make()
    feed(svc, "front", 5)
    feed(svc, "rear", 5)
    answers: list = []
    handle = svc.submit(GroundingRequest("q", "the red ball"), answers.append)
    assert handle.stage == "queued" and not handle.done
    assert handle.cancel()
    assert handle.done and [a.status for a in answers] == [CANCELLED]
    assert svc.run_pending() == 0 and g.grounds == 0


def test_windows_counters_and_cache_keys_are_per_stream():
    svc, g, _ = make(window_max_frames=4)
    feed(svc, "front", 6)
    feed(svc, "rear", 3)
    c = svc.counters()
    assert (c["front"].frames_received, c["rear"].frames_received) == (6, 3)
    assert (len(svc.stream("front").window), len(svc.stream("rear").window)) == (4, 3)
    svc.submit(GroundingRequest("q", "the red ball"), lambda a: None)
    svc.run_pending()
    keys = {stream_of(svc, call): set(call["frame_keys"]) for call in g.calls}
    assert not keys["front"] & keys["rear"]  # both windows number their frames 1, 2, ...: the keys still differ
    assert [k[1] for k in sorted(keys["rear"])] == [1, 2, 3]
    feed(svc, "front", 2, first=6)  # front's window lets frames go: only front's cached work goes with them
    assert g.forgotten and all(k not in keys["rear"] for gone in g.forgotten for k in gone)
    c = svc.counters()
    assert (c["front"].queries_answered, c["rear"].queries_answered) == (1, 1)
    svc.count_lost("rear", 3)
    assert svc.counters()["rear"].frames_lost == 3 and svc.counters()["front"].frames_lost == 0
    assert svc.problems() == ["rear: frames lost in transport"]


def test_a_busy_camera_cannot_starve_another():
    """Round-robin over the streams' queues: rear's one query is served second, not after front's backlog."""
    svc, g, _ = make(query_queue_size=8)
    feed(svc, "front", 5)
    feed(svc, "rear", 5)
    done: list = []
    for k in range(5):
        svc.submit(GroundingRequest(f"f{k}", "a person", stream="front"), lambda a: done.append(a.request.query_id))
    svc.submit(GroundingRequest("r0", "a person", stream="rear"), lambda a: done.append(a.request.query_id))
    svc.run_pending()
    assert done == ["f0", "r0", "f1", "f2", "f3", "f4"]
    assert [stream_of(svc, c) for c in g.calls] == ["front", "rear"] + ["front"] * 4


def test_queues_are_served_in_turn():
    svc, g, _ = make(("front", "rear", "arm"))
    for name in ("front", "rear", "arm"):
        feed(svc, name, 5)
    done: list = []
    for name in ("front", "rear", "arm"):
        for k in range(2):
            svc.submit(GroundingRequest(f"{name}{k}", "a person", stream=name), lambda a: done.append(a.request.query_id))
    svc.run_pending()
    assert done == ["front0", "rear0", "arm0", "front1", "rear1", "arm1"]


def test_a_query_on_another_camera_preempts_a_standing_evaluation():
    svc, g, _ = make()
    feed(svc, "front", 5)
    feed(svc, "rear", 5)
    events, answers = [], []
    assert svc.register(StandingRequest("s", "the red ball", stream="front"), events.append)

    def ask(stage):
        if stage == "lra" and not answers and g.grounds == 0:
            g.on_stage = None
            svc.submit(GroundingRequest("q", "the red ball", stream="rear"), answers.append)
    g.on_stage = ask
    svc.run_pending()
    assert svc.counters()["front"].standing_preempted == 1
    assert [stream_of(svc, c) for c in g.calls] == ["front", "rear", "front"]  # preempted, then again
    assert answers[0].stream == "rear" and [e.event for e in events] == []  # front: not found, no event


def test_standing_on_all_streams_names_the_camera_and_ends_once():
    svc, g, _ = make()
    feed(svc, "front", 5)
    feed(svc, "rear", 5)
    events: list = []
    assert svc.register(StandingRequest("s", "the red ball"), events.append)
    svc.run_pending()
    assert [(e.event, e.stream, e.tube.stream) for e in events] == [(APPEARED, "rear", "rear")]
    assert sorted(x["stream"] for x in svc.standing()) == ["front", "rear"]
    assert svc.cancel_standing("s")
    assert [e.event for e in events] == [APPEARED, ENDED] and events[-1].status == CANCELLED
    assert not svc.cancel_standing("s")


def test_standing_on_one_camera_watches_that_stream_and_ids_are_one_across_streams():
    svc, g, _ = make()
    feed(svc, "front", 5)
    feed(svc, "rear", 5)
    old, new = [], []
    assert svc.register(StandingRequest("s", "the red ball", stream="front"), old.append)
    svc.run_pending()
    assert [stream_of(svc, c) for c in g.calls] == ["front"]
    assert svc.register(StandingRequest("s", "the red ball", stream="rear"), new.append)  # replaces front's
    assert [(e.event, e.status) for e in old] == [(ENDED, CANCELLED)] and "replaced" in old[0].reason
    svc.run_pending()
    assert [stream_of(svc, c) for c in g.calls] == ["front", "rear"]
    assert [(e.event, e.stream) for e in new] == [(APPEARED, "rear")]


def test_standing_on_all_refused_on_one_stream_is_refused_with_one_ended():
    svc, g, _ = make(max_standing_queries=0)
    events: list = []
    assert not svc.register(StandingRequest("s", "the red ball"), events.append)
    assert [(e.event, e.status) for e in events] == [(ENDED, REJECTED)] and "max_standing_queries" in events[0].reason
    svc2, _, _ = make()
    svc2.stream("rear").configure(ServingConfig(window_rate=0.0, window_duration=100.0, max_standing_queries=0))
    more: list = []
    assert not svc2.register(StandingRequest("s", "the red ball"), more.append)
    assert [(e.event, e.status) for e in more] == [(ENDED, REJECTED)] and "max_standing_queries" in more[0].reason
    assert svc2.standing() == []  # front's registration was withdrawn


def test_stop_answers_every_stream_and_ends_standing_queries_once():
    svc, g, _ = make()
    feed(svc, "front", 5)
    feed(svc, "rear", 5)
    answers, events = [], []
    svc.submit(GroundingRequest("all", "the red ball"), answers.append)
    svc.submit(GroundingRequest("one", "the red ball", stream="front"), answers.append)
    svc.register(StandingRequest("s", "the red ball"), events.append)
    svc.stop()
    assert sorted((a.request.query_id, a.status) for a in answers) == [("all", CANCELLED), ("one", CANCELLED)]
    assert [(e.event, e.reason) for e in events] == [(ENDED, SHUTTING_DOWN)]
    assert svc.run_pending() == 0


def test_a_threaded_worker_serves_every_stream():
    clock = Clock()
    svc = MultiStreamService(["front", "rear"], ServingConfig(window_rate=0.0, window_duration=100.0), clock=clock)
    svc.start(FakeGrounder(on_rear), threaded=True)
    try:
        feed(svc, "front", 5)
        feed(svc, "rear", 5)
        handles = [svc.submit(GroundingRequest(f"q{k}", "the red ball", stream=s), lambda a: None)
                   for k, s in enumerate(("front", "rear", "all"))]
        assert all(h.wait(10.0) for h in handles)
        with pytest.raises(RuntimeError, match="threaded=False"):
            svc.run_pending()
    finally:
        svc.stop()
    assert not svc.running


@pytest.mark.parametrize("names, fix", [([], "name at least one"), (["front", ""], "non-empty"),
                                        (["all"], "other than 'all'"), (["a", "a"], "its own name")])
def test_stream_names_are_checked(names, fix):
    assert fix in stream_names_problem(names)
    with pytest.raises(ValueError, match=fix):
        MultiStreamService(names)


def test_each_camera_remembers_in_its_own_directory(tmp_path):
    """With memory on, two cameras never write, roll over or rebuild each other's chunks: each stream's store
    lives in its own sub-directory of ``memory_directory``, and a live change keeps it so."""
    svc, _, _ = make(memory=True, memory_directory=str(tmp_path), window_duration=1.0, memory_chunk_s=1.0)
    dirs = {name: svc.stream(name).memory.settings["directory"] for name in svc.streams}
    assert dirs == {"front": tmp_path / "front", "rear": tmp_path / "rear"}
    feed(svc, "front", 40)
    feed(svc, "rear", 40)
    svc.stop(timeout=0.5)
    assert any((tmp_path / "front").iterdir()) and any((tmp_path / "rear").iterdir())
    assert not [p for p in tmp_path.iterdir() if p.name not in ("front", "rear")]
    svc.configure(svc.config.replace(memory_mb=100.0))
    assert svc.stream("rear").memory.settings["directory"] == tmp_path / "rear"
