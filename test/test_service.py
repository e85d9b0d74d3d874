"""The grounding service without ROS: admission, snapshot at arrival, time jumps, cancel, shutdown, counters.

Most tests use the tests' one fake grounder (``fake_grounder.FakeGrounder``: no model, it records what
it was given and can be held inside a stage); the checkpoint tests run the real :class:`~stvg_ros.Grounder` on the fake adapter.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from fake_grounder import Clock, FakeGrounder

from stvg_ros.config import ProposalConfig, ServingConfig
from stvg_ros.proposals.tracks import Detections
from stvg_ros.grounding.result import GroundingResult, SubQueries
from stvg_ros.stream.requests import ANSWERED, CANCELLED, FAILED, REJECTED, GroundingRequest
from stvg_ros.stream.service import JUMP_BACK_S, SHUTTING_DOWN, GroundingService
from stvg_ros.stream.window import NS

T0 = 100 * NS
DT = NS // 10


class Answers:
    def __init__(self):
        self.items, self.changed = [], threading.Condition()

    def __call__(self, answer):
        with self.changed:
            self.items.append(answer)
            self.changed.notify_all()

    def of(self, qid):
        return [a for a in self.items if a.request.query_id == qid]

    def wait(self, qid, timeout=10.0):
        with self.changed:
            if not self.changed.wait_for(lambda: self.of(qid), timeout):
                raise AssertionError(f"no answer to {qid}")
            return self.of(qid)[0]


def make(grounder=None, threaded=True, clock=time.monotonic, **config) -> tuple[GroundingService, list]:
    """A started service; ``threaded=False``: no worker thread, the test steps it with ``run_pending``."""
    warnings: list = []
    cfg = ServingConfig(**{"window_rate": 0.0, "window_duration": 100.0, **config})
    svc = GroundingService(cfg, warn=lambda m, k: warnings.append((k, m)), clock=clock)
    svc.start(grounder or FakeGrounder(), threaded=threaded)
    return svc, warnings


def feed(svc, stamps, size=(24, 32), frame_id="cam"):
    return [svc.ingest(s, lambda: np.zeros(size + (3,), np.uint8), frame_id) for s in stamps]


def stamps(n, t0=T0, dt=DT):
    return [t0 + i * dt for i in range(n)]


# --- admission ----------------------------------------------------------------------------------

@pytest.mark.parametrize("request_, reason", [
    (GroundingRequest("a", ""), "empty query text"),
    (GroundingRequest("b", "   \n "), "empty query text"),
    (GroundingRequest("c", "x" * 2000), "max_query_length=1000"),
    (GroundingRequest("d", "the man", attribute_query="the man"), "both attribute_query and action_query"),
    (GroundingRequest("e", "the man", start_ns=T0 + 5 * DT, end_ns=T0), "start is after its end"),
    (GroundingRequest("f", "the man", start_ns=T0 + 50 * DT), "0 frame(s) in the requested time range"),
])
def test_bad_requests_are_answered_at_once_with_the_fix(request_, reason):
    svc, warnings = make()
    feed(svc, stamps(5))
    answers = Answers()
    handle = svc.submit(request_, answers)
    assert handle.done  # on the caller's thread, before submit returns
    (a,) = answers.items
    assert a.status == REJECTED and reason in a.reason, a.reason
    assert len(a.request.text) < 100  # an overlong text is not echoed whole
    assert a.newest is not None and a.newest.frame_id == "cam"  # the header of the empty answer
    assert any(k == "query" and reason in m for k, m in warnings)
    c = svc.counters()
    assert (c.queries_received, c.queries_rejected, c.queries_answered) == (1, 1, 0)
    svc.stop()


def test_no_frames_no_model_and_too_few_frames():
    answers = Answers()
    svc = GroundingService(ServingConfig(window_rate=0.0, min_frames=3))
    svc.submit(GroundingRequest("nomodel", "the man"), answers)
    assert "no model loaded" in answers.wait("nomodel").reason
    svc.start(FakeGrounder())
    svc.input_name = "/cam/image"
    svc.submit(GroundingRequest("empty", "the man"), answers)
    assert "no frames in the window yet" in answers.wait("empty").reason and "/cam/image" in answers.wait("empty").reason
    feed(svc, stamps(2))
    svc.submit(GroundingRequest("few", "the man"), answers)
    assert "2 frame(s) in the window, 3 needed (min_frames)" in answers.wait("few").reason
    svc.stop()
    assert svc.counters().queries_received == 3 and svc.counters().queries_rejected == 3


def test_a_resolution_change_says_so_instead_of_miscounting():
    svc, _ = make(min_frames=3)
    feed(svc, stamps(6), size=(24, 32))
    feed(svc, stamps(1, T0 + 6 * DT), size=(48, 64))  # the camera switched resolution
    answers = Answers()
    svc.submit(GroundingRequest("q", "the man"), answers)
    reason = answers.wait("q").reason
    assert "1 frame(s) of the newest size 64x48" in reason and "changed resolution" in reason
    svc.stop()


def test_queue_full_is_refused_and_the_rest_served_in_order():
    g = FakeGrounder()
    g.hold("encode")
    svc, _ = make(g, query_queue_size=2)
    feed(svc, stamps(5))
    answers = Answers()
    for i in range(5):
        svc.submit(GroundingRequest(f"q{i}", "the man"), answers)
        if i == 0:
            assert g.entered.wait(5)  # q0 is running, q1 and q2 wait, q3 and q4 are refused
    assert [a.request.query_id for a in answers.items] == ["q3", "q4"]
    assert all("query queue full (2 pending)" in a.reason for a in answers.items)
    g.release.set()
    for q in ("q0", "q1", "q2"):
        assert answers.wait(q).status == ANSWERED
    c = svc.counters()
    assert (c.queries_received, c.queries_answered, c.queries_rejected) == (5, 3, 2)
    svc.stop()


# --- snapshot at arrival ------------------------------------------------------------------------

def test_a_waiting_query_is_grounded_on_the_frames_present_at_its_arrival():
    g, clock = FakeGrounder(), Clock()
    svc, _ = make(g, threaded=False, clock=clock, window_duration=0.95)  # 10 frames at 10 Hz
    first = stamps(10)
    feed(svc, first)
    answers = Answers()
    svc.submit(GroundingRequest("waits", "the woman"), answers)
    later = stamps(10, T0 + 10 * DT)
    feed(svc, later)  # the window slides past every frame "waits" was asked about
    assert [f.stamp_ns for f in svc.window.frames()] == later and not answers.items
    clock.now += 0.05
    assert svc.run_pending() == 1
    (a,) = answers.items
    assert a.status == ANSWERED
    assert [f.stamp_ns for f in a.frames] == first
    assert g.calls[0]["stamps"] == [s / NS for s in first]
    assert a.queue_time == pytest.approx(0.05) and a.latency == pytest.approx(0.05)
    svc.stop()


def test_time_range_is_cut_at_arrival():
    svc, _ = make()
    all_ = stamps(10)
    feed(svc, all_)
    answers = Answers()
    svc.submit(GroundingRequest("r", "the man", start_ns=all_[2], end_ns=all_[5]), answers)
    assert [f.stamp_ns for f in answers.wait("r").frames] == all_[2:6]
    svc.stop()


# --- input: decimation, stale, malformed, time jumps ---------------------------------------------

def test_every_frame_is_accounted_for():
    svc, warnings = make(window_rate=5.0)
    outcomes = feed(svc, stamps(30, dt=NS // 30))  # 30 Hz for 1 s into a 5 Hz window
    outcomes += feed(svc, [T0 + NS // 30 * 24])  # a duplicate of the last kept frame
    outcomes.append(svc.ingest(T0 + 2 * NS, lambda: np.zeros((4, 4, 3), np.uint8), problem="data holds 9 bytes"))
    outcomes.append(svc.ingest(T0 + 3 * NS, lambda: (_ for _ in ()).throw(ValueError("cannot decode png"))))
    c = svc.counters()
    assert c.frames_received == 33
    assert outcomes.count("keep") == 5 and c.frames_decimated == outcomes.count("decimate") == 25
    assert c.frames_stale == outcomes.count("stale") == 1
    assert c.frames_rejected == outcomes.count("rejected") == 2
    assert c.frames_received == 5 + c.frames_decimated + c.frames_stale + c.frames_rejected
    assert [k for k, _ in warnings].count("frame") == 2 and "cannot decode png" in c.last_warning
    svc.stop()


def test_a_malformed_frame_is_rejected_even_when_decimation_would_skip_it():
    svc, _ = make(window_rate=4.0)
    feed(svc, [T0])
    # 10 ms later: decimation would skip it, but the header problem is counted first
    assert svc.ingest(T0 + NS // 100, lambda: None, problem="the header does not describe the data") == "rejected"
    assert svc.counters().frames_rejected == 1 and svc.counters().frames_decimated == 0
    svc.stop()


def test_one_rule_for_time_jumps_resets_window_tracks_and_rates():
    svc, warnings = make()
    svc.start(FakeGrounder(), external_detections=True)
    feed(svc, stamps(10))
    svc.add_detections(T0 + 9 * DT, Detections([[0, 0, 4, 4]], [0.9], ["thing"], ["7"]))
    assert len(svc.external) == 1
    late = T0 + 9 * DT - int(JUMP_BACK_S * NS) + 1  # within the rule: a late frame, dropped as stale
    assert feed(svc, [late]) == ["stale"] and svc.counters().window_resets == 0
    back = stamps(3, T0 - 500 * NS)  # a looping bag starts over
    assert feed(svc, back) == ["keep"] * 3
    c = svc.counters()
    assert c.window_resets == 1 and [f.stamp_ns for f in svc.window.frames()] == back
    assert len(svc.external) == 0 and svc.rate_in.rate == pytest.approx(10.0)
    assert any(k == "reset" and "jumped back" in m for k, m in warnings)
    # detections can lead the jump: the first of the new loop resets, the frames then fit in
    svc.add_detections(T0 - 900 * NS, Detections([[0, 0, 4, 4]], [0.9], ["thing"], ["8"]))
    assert svc.counters().window_resets == 2 and len(svc.window) == 0 and len(svc.external) == 1
    assert feed(svc, [T0 - 900 * NS]) == ["keep"] and len(svc.external) == 1
    svc.stop()


def test_reset_resets_the_live_stage_too():
    class Stage:  # a ProposalStage that proposes nothing
        resets, frames = 0, []
        config = ProposalConfig()

        def proposals_for(self, stamps, phrase=""):
            return {}

        def reset(self):
            Stage.resets += 1

        def add_frame(self, image, stamp):
            Stage.frames.append(stamp)

        def close(self, timeout=0.0):
            pass

    svc = GroundingService(ServingConfig(window_rate=0.0))
    svc.start(FakeGrounder(), stage=Stage())
    before = Stage.resets
    feed(svc, stamps(3))
    svc.reset("the ROS clock jumped back")
    assert Stage.resets == before + 1 and len(svc.window) == 0 and svc.counters().window_resets == 1
    assert Stage.frames == [s / NS for s in stamps(3)]
    svc.stop()


def test_external_detections_become_proposals_in_stored_pixels():
    g = FakeGrounder()
    svc = GroundingService(ServingConfig(window_rate=0.0, ingest_max_side=100, detection_tolerance=0.001))
    svc.start(g, external_detections=True)
    st = stamps(4)
    for i, s in enumerate(st):
        boxes = [[10 + 10 * i, 10, 50 + 10 * i, 50], [150, 60, 190, 90]]  # no ids: our tracker links them
        ids = ["", ""]
        if i != 2:
            boxes.append([0, 0, 20, 20])
            ids.append("person-7")
        svc.add_detections(s, Detections(boxes, [0.9] * len(boxes), ["ball", "box", ""][:len(boxes)], ids))
        svc.ingest(s, lambda: np.zeros((100, 200, 3), np.uint8))  # stored at half size
    answers = Answers()
    svc.submit(GroundingRequest("d", "the ball"), answers)
    assert answers.wait("d").status == ANSWERED
    props = g.calls[0]["proposals"]
    assert "person-7" in props  # the caller's own track id, kept (no label: offered for any phrase)
    assert not any(k.startswith("box") for k in props)  # another class than the query's subject
    secs = [s / NS for s in st]
    assert props["person-7"][secs[0]] == pytest.approx((0, 0, 10, 10))  # halved: the stored pixels
    ball = next(t for k, t in props.items() if k != "person-7" and t[secs[0]][0] < 20)
    assert len(ball) == 4 and ball[secs[3]] == pytest.approx((20, 5, 40, 25))
    svc.stop()


# --- cancel, failure, shutdown -------------------------------------------------------------------

def test_cancel_while_queued_and_between_stages():
    g = FakeGrounder()
    g.hold("lra")
    svc, _ = make(g)
    feed(svc, stamps(5))
    answers, stages = Answers(), []
    running = svc.submit(GroundingRequest("run", "the man"), answers, lambda st, t: stages.append(st))
    assert g.entered.wait(5) and running.stage == "lra"
    queued = svc.submit(GroundingRequest("wait", "the man"), answers)
    assert queued.stage == "queued" and queued.cancel("the client gave up")
    assert answers.wait("wait").status == CANCELLED and answers.wait("wait").reason == "the client gave up"
    assert running.cancel()
    a = answers.wait("run")
    assert a.status == CANCELLED and a.reason == "cancelled by the caller" and not a.frames
    assert stages == ["queued", "encode", "decompose", "lra"]
    assert not running.cancel() and running.done
    c = svc.counters()
    assert (c.queries_received, c.queries_cancelled, c.queries_answered) == (2, 2, 0)
    assert len(answers.items) == 2  # exactly one answer each
    svc.stop()


def test_a_grounding_error_is_answered_and_the_worker_keeps_serving():
    g = FakeGrounder()
    g.fail = True
    svc, _ = make(g)
    feed(svc, stamps(5))
    answers = Answers()
    svc.submit(GroundingRequest("boom", "the man"), answers)
    a = answers.wait("boom")
    assert a.status == FAILED and "grounding failed: RuntimeError: out of memory" in a.reason
    g.fail = False
    svc.submit(GroundingRequest("fine", "the man"), answers)
    assert answers.wait("fine").status == ANSWERED
    assert svc.counters().queries_failed == 1
    svc.stop()


@pytest.mark.parametrize("check_every", [0.01, 0.0])
def test_shutdown_answers_in_flight_and_queued_queries_and_returns_fast(check_every):
    """check_every=0: the grounder never reaches a checkpoint (one long forward pass): stop() answers
    for it after its timeout instead of waiting."""
    g = FakeGrounder()
    g.hold("lra", check_every=check_every)
    svc, _ = make(g)
    feed(svc, stamps(5))
    answers = Answers()
    svc.submit(GroundingRequest("flight", "the man"), answers)
    assert g.entered.wait(5)
    svc.submit(GroundingRequest("queued", "the man"), answers)
    worker = svc._worker
    t0 = time.monotonic()
    svc.stop(timeout=0.5)
    took = time.monotonic() - t0
    assert took < 1.0, took
    for q in ("flight", "queued"):
        a = answers.wait(q, timeout=0.1)
        assert a.status == CANCELLED and a.reason == SHUTTING_DOWN
    svc.submit(GroundingRequest("after", "the man"), answers)
    assert answers.wait("after").reason == SHUTTING_DOWN
    g.release.set()
    worker.join(5)  # the abandoned grounding ends
    assert not worker.is_alive()
    assert len(answers.items) == 3  # the worker's late result is not a second answer
    assert svc.counters().queries_cancelled == 2 and svc.counters().queries_received == 3


def test_cancel_all_returns_only_after_the_running_answer_was_delivered():
    """A deactivating node silences its publishers right after cancel_all: the worker's answer, claimed
    at the checkpoint and still being published, must be out before cancel_all returns (it was lost)."""
    g = FakeGrounder()
    g.hold("lra")
    svc, _ = make(g)
    feed(svc, stamps(5))
    publishing, returned, early = threading.Event(), threading.Event(), []

    def slow_publish(answer):  # the worker inside on_done: building and publishing the Tube and its markers
        publishing.set()
        early.append(returned.wait(0.3))  # cancel_all must still be waiting for this answer

    svc.submit(GroundingRequest("flight", "the man"), slow_publish)
    assert g.entered.wait(5)
    svc.cancel_all("the node was deactivated", timeout=2.0)
    returned.set()
    assert publishing.is_set() and early == [False], "cancel_all returned while the answer was still being published"
    svc.stop()


def test_restart_after_stop_serves_again_with_one_worker():
    def workers():
        return {t for t in threading.enumerate() if t.name == "stvg_grounding" and t.is_alive()}

    before = workers()
    svc, _ = make()
    feed(svc, stamps(5))
    svc.stop()
    svc.start(FakeGrounder())
    feed(svc, stamps(3, T0 + NS))
    answers = Answers()
    for i in range(3):
        svc.submit(GroundingRequest(f"q{i}", "the man"), answers)
    for i in range(3):
        assert answers.wait(f"q{i}").status == ANSWERED
    assert len(workers() - before) == 1
    svc.stop()


# --- the real grounder's checkpoint ----------------------------------------------------------------

def test_grounder_checkpoint_sees_every_stage_and_lra_step_and_changes_nothing():
    from fake_adapter import FakeAdapter, clip_with_square

    from stvg_ros import Grounder
    from stvg_ros.config import GroundingConfig

    frames, st, _ = clip_with_square(num_frames=6)
    grounder = Grounder(FakeAdapter(), GroundingConfig(num_frames=6, lra_steps=3))
    plain = grounder.ground(frames, st, "the red square")
    seen: list[str] = []
    hooked = grounder.ground(frames, st, "the red square", checkpoint=seen.append)
    # select: once as the stage starts, then before each sampled frame's segmentation (box_method auto)
    assert seen == ["encode", "decompose", "lra", "lra", "lra", "lra", "attention"] + ["select"] * (1 + 6)
    assert (hooked.start, hooked.end, hooked.p_yes, hooked.boxes) == (plain.start, plain.end, plain.p_yes, plain.boxes)


def test_grounder_stops_between_frames_of_select():
    """A cancel during the segmentation of ``select`` (most of a grounding's CPU time on CPU) stops it at
    the next frame instead of finishing the stage."""
    from fake_adapter import FakeAdapter, clip_with_square

    from stvg_ros import Grounder
    from stvg_ros.config import GroundingConfig
    from stvg_ros.grounding.result import Cancelled

    frames, st, _ = clip_with_square(num_frames=8)
    grounder = Grounder(FakeAdapter(), GroundingConfig(num_frames=8, lra_steps=0, box_method="grabcut",
                                                       box_grabcut_chain=8))  # one chain: frames in order
    seen: list[str] = []

    def check(stage: str) -> None:
        seen.append(stage)
        if seen.count("select") == 3:  # the stage's start, the first frame, then cancel before the second
            raise Cancelled("cancelled in select")

    with pytest.raises(Cancelled, match="in select"):
        grounder.ground(frames, st, "the red square", checkpoint=check)
    assert seen.count("select") == 3


def test_cancel_accepted_after_the_last_checkpoint_is_honoured():
    """A cancel the service accepts while the grounder runs past its last checkpoint ends the query
    cancelled, not answered (the action server has told its client the cancel was accepted)."""
    grounder = FakeGrounder()
    grounder.hold("select", check_every=0)  # no checkpoint while held
    svc, _ = make(grounder)
    feed(svc, stamps(8))
    answers = Answers()
    handle = svc.submit(GroundingRequest("q", "x"), answers)
    assert grounder.entered.wait(5)
    assert handle.cancel("by the test"), "the running query's cancel is accepted"
    grounder.release.set()
    a = answers.wait("q")
    assert a.status == CANCELLED and a.reason == "by the test"
    svc.stop()


def test_grounder_stops_between_lra_steps():
    from fake_adapter import FakeAdapter, clip_with_square

    from stvg_ros import Grounder
    from stvg_ros.config import GroundingConfig
    from stvg_ros.grounding.result import Cancelled

    frames, st, _ = clip_with_square(num_frames=6)
    adapter = FakeAdapter()
    grounder = Grounder(adapter, GroundingConfig(num_frames=6, lra_steps=5))
    count = {"lra": 0}

    def stop_at_second_step(stage):
        if stage == "lra":
            count["lra"] += 1
            if count["lra"] == 3:  # stage start, step 0, then before step 1
                raise Cancelled("stop")

    with pytest.raises(Cancelled):
        grounder.ground(frames, st, "the red square", checkpoint=stop_at_second_step)
    assert sum(c["with_grad"] for c in adapter.calls) == 1  # one LRA step ran, not five


def test_problems_report_missing_frames_and_losses():
    now = [1000.0]
    svc = GroundingService(ServingConfig(window_rate=0.0, frame_timeout=5.0), clock=lambda: now[0])
    assert svc.problems(since=1000.0) == [] and svc.frame_age() == -1.0
    now[0] = 1006.0
    assert svc.problems(since=1000.0) == ["no frame for 6 s"]
    feed(svc, [T0])
    assert svc.problems() == [] and svc.frame_age() == 0.0
    svc.count_lost(7)
    assert svc.counters().frames_lost == 7 and svc.problems() == ["frames lost in transport"]
    now[0] = 1020.0
    assert svc.problems() == ["no frame for 14 s"]


def test_detections_far_from_every_frame_are_not_used():
    g = FakeGrounder()
    svc = GroundingService(ServingConfig(window_rate=0.0, min_frames=1, detection_tolerance=0.001))
    svc.start(g, external_detections=True)
    feed(svc, [T0])
    svc.add_detections(T0 + 50_000_000, Detections([[0, 0, 5, 5]], [0.9], ["a"], ["far"]))  # 50 ms off
    answers = Answers()
    svc.submit(GroundingRequest("q", "the a"), answers)
    assert answers.wait("q").status == ANSWERED and g.calls[0]["proposals"] is None
    svc.stop()


def test_frames_decoded_for_the_window_keep_the_published_size():
    """The node's decode (``image_messages.decode_for_window``) returns (rgb already shrunk, published (H, W)):
    the stored frame maps boxes back to the published pixels."""
    import cv2

    from stvg_ros.image_messages import decode_for_window

    svc = GroundingService(ServingConfig(window_rate=0.0, ingest_max_side=100))
    rgb = np.random.default_rng(2).integers(0, 256, (400, 800, 3), dtype=np.uint8)
    ok, jpg = cv2.imencode(".jpg", rgb)
    msg = type("CompressedImage", (), {"format": "jpeg", "data": jpg.tobytes()})()
    assert svc.ingest(T0, lambda: decode_for_window(msg, svc.window.max_side)) == "keep"
    frame = svc.window.newest
    assert frame.image.shape == (50, 100, 3) and frame.source_size == (400, 800) and frame.scale == pytest.approx(8)
    assert frame.box_to_source((0, 0, 100, 50)) == pytest.approx((0, 0, 800, 400))


# --- answers in the camera's terms -------------------------------------------------------------------

def test_a_python_caller_gets_the_answer_in_the_cameras_terms():
    """Frames downscaled at ingest (800x400 kept at 100x50) and stamps that float seconds cannot hold
    exactly: the answer's tube has the input stamps (ns, exact), boxes in the published pixels, the frame id;
    the grounder saw the stored frames."""
    g = FakeGrounder()  # a box (0, 0, 1, 1) in the pixels it is given, at every stamp
    svc, _ = make(g, threaded=False, ingest_max_side=100)
    st = [1_700_000_000_123_456_789 + i * 33_333_333 for i in range(5)]
    for s in st:
        assert svc.ingest(s, lambda: np.zeros((400, 800, 3), np.uint8), "camera_optical") == "keep"
    answers = Answers()
    svc.submit(GroundingRequest("q", "the man"), answers)
    svc.run_pending()
    (a,) = answers.items
    assert a.result.boxes[g.calls[0]["stamps"][0]] == (0.0, 0.0, 1.0, 1.0)  # the grounder's pixels
    assert g.calls[0]["frame_keys"] == svc._keys(a.frames)
    t = a.tube
    assert (t.query_id, t.text, t.frame_id, t.stamp_ns, t.found) == ("q", "the man", "camera_optical", st[-1], True)
    assert (t.start_ns, t.end_ns) == (st[0], st[-1]) and [ns for ns, _, _ in t.boxes] == st
    assert all(b == pytest.approx((0.0, 0.0, 8.0, 8.0)) for b in t.boxes_by_stamp.values())
    assert t.latency == a.latency and t.event == "" and t.reason == ""
    svc.stop()


def test_an_answer_without_a_result_is_stamped_with_the_newest_frame():
    svc, _ = make(threaded=False, min_frames=3)
    st = [1_700_000_000_123_456_789, 1_700_000_000_156_790_122]
    feed(svc, st, frame_id="cam")
    answers = Answers()
    svc.submit(GroundingRequest("few", "the man"), answers)
    t = answers.items[0].tube
    assert (t.frame_id, t.stamp_ns, t.found, t.boxes) == ("cam", st[-1], False, ())
    assert "min_frames" in t.reason
    svc.stop()
