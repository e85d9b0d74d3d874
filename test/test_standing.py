"""Standing queries without DDS: hysteresis, change detection, schedule, duty budget, cap, cancel, the
one-ended guarantee, preemption by one-shot queries and shutdown (stvg_ros.stream.standing + the service)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from fake_grounder import Clock, FakeGrounder

from stvg_ros.config import ConfigError, ServingConfig
from stvg_ros.grounding.result import GroundingResult, SubQueries
from stvg_ros.stream.requests import ANSWERED, CANCELLED, FAILED, REJECTED, GroundingRequest
from stvg_ros.stream.service import SHUTTING_DOWN, GroundingService
from stvg_ros.stream.standing import (APPEARED, DISAPPEARED, ENDED, MOVED, ChangeTracker, StandingRequest,
                                      StandingRules, StandingScheduler, box_shift, grounded_change)
from stvg_ros.stream.window import NS

T0 = 100 * NS
DT = NS // 10


def result(start=0.0, end=1.0, box=(0, 0, 10, 10), track=None, p_yes=0.9):
    return GroundingResult(query="q", found=True, score=1.0, start=start, end=end, boxes={end: box}, track_id=track,
                           sub_queries=SubQueries("q", "q"), p_yes=p_yes)


# --- hysteresis and change detection ---------------------------------------------------------------

def test_found_has_two_thresholds_and_a_confirmation_count():
    t = ChangeTracker(StandingRules(found_on=0.6, found_off=0.4, confirm=2))
    flips = [t.observe(p) for p in (0.7, 0.3, 0.7, 0.7, 0.5, 0.45, 0.3, 0.5, 0.3, 0.3)]
    # 0.7 once is not enough; a dip resets the count; two in a row flip; between the thresholds
    # (0.45, 0.5) nothing changes; two below 0.4 in a row flip back
    assert flips == [False, False, False, True, False, False, False, False, False, True]
    assert not t.found
    single = ChangeTracker(StandingRules(found_on=0.6, found_off=0.4, confirm=1))
    assert [single.observe(p) for p in (0.59, 0.6, 0.41, 0.39)] == [False, True, False, True]


def test_moves_that_matter():
    t = ChangeTracker(StandingRules(move_box=0.5, move_confirm=1))
    assert t.moved(result()) == "first tube"
    t.report(result(start=5.0, end=8.0, box=(0, 0, 10, 10), track=None))
    assert t.moved(result(start=5.5, end=9.0, box=(1, 0, 11, 10))) == ""  # the span grew, box shifted 1 px
    assert "box moved by 2.00 of its size" in t.moved(result(start=5.0, end=9.0, box=(20, 0, 30, 10)))
    assert t.moved(result(start=7.0, end=9.0)) == ""  # a span that starts later is no move of the target
    assert t.moved(result(box=(-3, -3, 13, 13))) == ""  # a box grown in place is no move
    assert box_shift((0, 0, 10, 10), (4, 3, 14, 13)) == pytest.approx(0.5)


def test_a_still_target_renumbered_by_its_tracker_never_moves():
    """Issue 29: trackers give a still object a new id at almost every evaluation; only the box counts."""
    t = ChangeTracker(StandingRules(move_box=0.5))
    t.report(result(box=(40, 30, 60, 50), track=1))
    jitter = [(41, 30, 61, 51), (39, 29, 60, 50), (40, 31, 59, 50), (42, 30, 61, 49)]
    assert [t.moved(result(box=b, track=2 + k)) for k, b in enumerate(jitter)] == [""] * 4


def test_a_moving_target_is_reported_each_time_it_has_moved_half_its_size():
    """A target crossing the image 3 px per evaluation (box 20 px): a move every 4th evaluation, each
    measured from the last reported box (a slow drift adds up), and the track id plays no part."""
    t = ChangeTracker(StandingRules(move_box=0.5, move_confirm=1))
    t.report(result(box=(0, 0, 20, 20), track=7))
    moves = []
    for k in range(1, 17):
        r = result(box=(3 * k, 0, 3 * k + 20, 20), track=7)
        if t.moved(r):
            moves.append(k)
            t.report(r)
    assert moves == [4, 8, 12, 16]


def test_a_box_that_flickers_to_another_object_and_back_is_no_move():
    """The grounding picks another object for one evaluation now and then (a still scene, two red shapes):
    with ``move_confirm`` 2 only a box that stays away, or keeps going, is a move."""
    t = ChangeTracker(StandingRules(move_box=0.5, move_confirm=2))
    here, there = (40, 30, 60, 50), (90, 30, 110, 50)
    t.report(result(box=here))
    assert [t.moved(result(box=b)) for b in (there, here, there, here, there, here)] == [""] * 6
    assert t.moved(result(box=there)) == ""
    why = t.moved(result(box=there))  # it stays away: a move
    assert "box moved by 2.50 of its size" in why and "2 evaluations in a row" in why
    fast = ChangeTracker(StandingRules(move_box=0.5, move_confirm=2))
    fast.report(result(box=(0, 0, 20, 20)))
    moves = []
    for k in range(1, 9):  # 12 px per evaluation, more than half the box between any two evaluations
        r = result(box=(12 * k, 0, 12 * k + 20, 20))
        if fast.moved(r):
            moves.append(k)
            fast.report(r)
    assert moves == [2, 4, 6, 8], "a target that keeps going is reported, one evaluation later"


# --- schedule and budget (pure, with explicit times) -------------------------------------------------

def _sched(**cfg) -> StandingScheduler:
    return StandingScheduler(ServingConfig(**cfg), now=0.0)


def test_due_by_stream_period_or_by_new_frames():
    s = _sched(standing_period=2.0)
    by_time = s.make(StandingRequest("t", "x"), lambda a: None)  # neither given: the default period
    by_frames = s.make(StandingRequest("f", "x", every_n_frames=3), lambda a: None)
    assert (by_time.period_ns, by_frames.period_ns, by_frames.every_n) == (2 * NS, 0, 3)
    for sq in (by_time, by_frames):
        assert s.add(sq, now=0.0) == ("", None)
        assert sq.due_since == 0.0  # due at once
        s.started(sq, T0)
    due = []
    for i in range(1, 31):  # 10 Hz for 3 s
        s.on_frame(T0 + i * DT, now=float(i))
        for sq in (by_time, by_frames):
            if sq.due_since is not None:
                due.append((sq.query_id, i))
                s.started(sq, T0 + i * DT)
    assert [i for q, i in due if q == "t"] == [20]  # 2 s of stream time
    assert [i for q, i in due if q == "f"] == [3, 6, 9, 12, 15, 18, 21, 24, 27, 30]


def test_duty_budget_spaces_evaluations_and_the_longest_due_goes_first():
    s = _sched(standing_duty_budget=0.25)
    a, b = (s.make(StandingRequest(q, "x", every_n_frames=1), lambda ans: None) for q in "ab")
    s.add(a, now=0.0)
    s.add(b, now=0.5)
    assert s.next_due(1.0) == (a, None)  # a has waited longest
    s.started(a, T0)
    s.finished(a, 1.0, now=2.0)  # 1 s of work at budget 0.25: the next may start 3 s later
    assert s.next_due(2.0) == (None, pytest.approx(3.0))
    assert s.next_due(4.9)[0] is None and s.next_due(5.0) == (b, None)
    assert s.duty(5.0) == pytest.approx(1.0 / 5.0)
    s.started(b, T0)
    s.finished(b, 0.5, now=5.5, preempted=True)  # preempted: due again, its time counted
    assert b.due_since == 5.5 and b.preempted == 1 and s.duty(5.5) == pytest.approx(1.5 / 5.5)
    assert s.duty(100.0) == 0.0  # nothing in the last 30 s
    assert a.info()["mean_cost"] == 0.0 and a.cost == 1.0  # cost counts; mean over completed evaluations


def test_cap_refusal_and_replacement_and_reset():
    s = _sched(max_standing_queries=2)
    first = s.make(StandingRequest("a", "x"), lambda ans: None)
    s.add(first, 0.0)
    s.add(s.make(StandingRequest("b", "x"), lambda ans: None), 0.0)
    reason, _ = s.add(s.make(StandingRequest("c", "x"), lambda ans: None), 0.0)
    assert "2 standing queries registered, max_standing_queries=2: cancel one" in reason
    again = s.make(StandingRequest("a", "y"), lambda ans: None)
    assert s.add(again, 0.0) == ("", first)  # same id: replaces, within the cap
    s.started(again, T0)
    s.reset()
    assert again.last_stamp_ns is None and s.on_frame(T0 - 50 * NS, 1.0)  # due at the first frame after a jump
    assert "standing queries are off" in _sched(max_standing_queries=0).add(first, 0.0)[0]


@pytest.mark.parametrize("change, fix", [(dict(standing_duty_budget=0.0), "(0, 1]"),
                                         (dict(standing_found_on=0.3, standing_found_off=0.5), "at most"),
                                         (dict(standing_confirm=0), "1 or more"),
                                         (dict(standing_period=0.0), "positive")])
def test_config_errors_name_the_fix(change, fix):
    with pytest.raises(ConfigError, match=fix.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        ServingConfig(**change)


# --- the service: the fake grounder's answers follow a script of the stream ---------------------------

class Events:
    def __init__(self):
        self.items, self.lock = [], threading.Lock()

    def __call__(self, answer):
        with self.lock:
            self.items.append(answer)

    def kinds(self):
        return [a.event for a in self.items]


def service(grounder, threaded=False, clock=None, **cfg) -> GroundingService:
    """A service with no worker thread (the test steps it with ``run_pending``) unless ``threaded``."""
    config = ServingConfig(**{"window_rate": 0.0, "window_duration": 100.0, "standing_found_on": 0.6,
                              "standing_found_off": 0.4, "standing_duty_budget": 1.0, **cfg})
    svc = GroundingService(config, clock=clock or Clock())
    svc.start(grounder, threaded=threaded)
    return svc


def frame(svc, i):
    return svc.ingest(T0 + i * DT, lambda: np.zeros((8, 8, 3), np.uint8), "cam")


def evaluations(svc, qid):
    return next((s["evaluations"] for s in svc.standing() if s["query_id"] == qid), -1)


def replay(svc, n, first=0):
    """Feed frames one by one, doing after each the work it makes due (lockstep)."""
    for i in range(first, first + n):
        frame(svc, i)
        svc.run_pending()


def appears(i_on, i_off, x_of=lambda i: 0.0):
    """The target is present for frames [i_on, i_off)."""
    def script(stamp):
        i = round((stamp - T0 / NS) * 10)
        x = x_of(i)
        return (0.9 if i_on <= i < i_off else 0.1), (x, 0.0, x + 4.0, 4.0)
    return script


@pytest.mark.parametrize("cheap_first", [False, True])
def test_events_on_appearance_move_and_disappearance_only(cheap_first):
    g = FakeGrounder(appears(10, 30, x_of=lambda i: 0.0 if i < 20 else 40.0))
    svc = service(g, min_frames=2, standing_refresh_every=2, standing_move_confirm=1)
    events = Events()
    assert svc.register(StandingRequest("s", "the red square", every_n_frames=1, cheap_first=cheap_first), events)
    frame(svc, 0)
    replay(svc, 39, first=1)
    kinds = events.kinds()
    assert kinds == [APPEARED, MOVED, DISAPPEARED], kinds
    appeared, moved, gone = events.items
    assert appeared.result.found and appeared.status == ANSWERED and appeared.frames[-1].stamp_ns == T0 + 10 * DT
    assert "box moved" in moved.reason and moved.frames[-1].stamp_ns in {T0 + i * DT for i in range(20, 22)}
    assert not gone.result.found and gone.result.p_yes == pytest.approx(0.1)
    assert (appeared.tube.event, appeared.tube.stamp_ns, appeared.tube.found) == (APPEARED, T0 + 10 * DT, True)
    assert gone.tube.stamp_ns == gone.newest.stamp_ns and not gone.tube.found  # noticed now, last seen boxes
    info = svc.standing()[0]
    assert info["evaluations"] == 39 and info["events"] == 3 and not info["found"]
    if cheap_first:  # existence every time; full only on appearance and every 2nd evaluation while present
        assert g.exists == 39 and 10 <= g.grounds <= 12 and info["full_evaluations"] == g.grounds
    else:
        assert g.grounds == 39 and g.exists == 0
    assert svc.cancel_standing("s") and events.kinds()[-1] == ENDED and events.items[-1].status == CANCELLED
    assert events.items[-1].reason == "cancelled by the client" and svc.standing() == []
    replay(svc, 5, first=40)
    assert len(events.items) == 4  # nothing after ended
    c = svc.counters()
    assert (c.standing_registered, c.standing_events, c.standing_evaluations) == (1, 3, 39)
    assert c.queries_received == 0  # standing evaluations are not one-shot queries
    svc.stop()


def test_an_appearance_with_change_on_needs_the_grounded_target_to_change():
    """Issue 27: with change_on, p_yes at found_on is not enough while absent; the change is asked for only
    then, and leaving depends on p_yes alone."""
    rules = StandingRules(found_on=0.6, found_off=0.4, confirm=2, change_on=3.0)
    t = ChangeTracker(rules)
    assert not rules.wants_change(False, 0.59) and rules.wants_change(False, 0.6) and not rules.wants_change(True, 0.9)
    assert not StandingRules(found_on=0.6).wants_change(False, 0.9)  # change_on 0: p_yes alone, no grounding
    flips = [t.observe(p, c) for p, c in ((0.9, 0.5), (0.9, None), (0.9, 3.0), (0.9, 1.0), (0.9, 3.0), (0.7, 4.0))]
    assert flips == [False, False, False, False, False, True] and t.found  # two in a row with both
    assert [t.observe(p) for p in (0.3, 0.3)] == [False, True] and not t.found


def test_grounded_change_is_the_pixel_change_inside_the_boxes():
    still = [np.full((20, 20, 3), 50, np.uint8) for _ in range(4)]
    for k, img in enumerate(still):
        img[15:, 15:] = 250 * (k % 2)  # something changes outside the box: it does not count
    boxes = {float(k): (0.0, 0.0, 9.0, 9.0) for k in range(4)}
    assert grounded_change(still, [0.0, 1.0, 2.0, 3.0], boxes) == 0.0
    moving = [np.zeros((20, 20, 3), np.uint8) for _ in range(3)]
    for k, img in enumerate(moving):
        img[2:6, 2 + 2 * k:6 + 2 * k] = 200  # a square moves right by 2 px a frame inside its boxes
    mboxes = {float(k): (2.0 + 2 * k, 2.0, 5.0 + 2 * k, 5.0) for k in range(3)}
    change = grounded_change(moving, [0.0, 1.0, 2.0], mboxes)
    # each pair: the union of the two boxes (ends included) is 6 x 4 px, of which 16 px change by 200
    assert change == pytest.approx(200 * 16 / 24, rel=1e-4)
    assert grounded_change(moving, [0.0, 1.0, 2.0], {0.0: mboxes[0.0]}) == 0.0  # fewer than two boxed frames


@pytest.mark.parametrize("cheap_first", [False, True])
def test_the_service_reports_an_appearance_only_when_the_grounded_target_changes(cheap_first):
    """standing_change_on (issue 27): the target is there all along (p_yes 0.9, its box the top-left corner);
    it acts (its pixels change) from frame 10: the appearance comes then, not at the first evaluation;
    change outside its box does not count.  Cheap-first grounds only where p_yes reaches found_on while absent."""
    g = FakeGrounder(lambda stamp: (0.9, (0.0, 0.0, 3.0, 3.0)))
    svc = service(g, min_frames=2, standing_change_on=5.0, standing_refresh_every=0)
    events = Events()

    def img(i):
        a = np.zeros((8, 8, 3), np.uint8)
        a[5:, 5:] = 200 * (i % 2)  # outside the box: changes all along
        if i >= 10:
            a[:4, :4] = 200 * ((i + 1) % 2)  # the target acts (from frame 10 on: 200, 0, 200, ...)
        return a

    assert svc.register(StandingRequest("s", "the red square", every_n_frames=1, window=0.15,
                                        cheap_first=cheap_first), events)
    for i in range(16):
        svc.ingest(T0 + i * DT, lambda i=i: img(i), "cam")
        svc.run_pending()
    assert events.kinds() == [APPEARED]
    assert events.items[0].frames[-1].stamp_ns == T0 + 10 * DT
    if cheap_first:  # absent: a grounding at every evaluation (p_yes 0.9 >= found_on); none once found (no refresh)
        assert g.grounds == 10 and g.exists == 15
    svc.stop()


@pytest.mark.parametrize("moving, move_confirm, moves", [(False, 1, []), (True, 1, [15, 18, 21, 24, 27]),
                                                         (False, 2, []), (True, 2, [16, 20, 24, 28])])
def test_moved_follows_the_box_not_the_track_id(moving, move_confirm, moves):
    """Issue 29: a still target whose track id changes at every evaluation gives no `moved`; the same
    target moving 1 px a frame (box 4 px: more than half its size every 3 frames) gives one every 3rd
    (every 4th when the box must be away two evaluations in a row)."""
    g = FakeGrounder(appears(5, 30, x_of=lambda i: float(i) if moving and i >= 15 else 0.0), renumber=True)
    svc = service(g, min_frames=2, standing_move_confirm=move_confirm)
    events = Events()
    assert svc.register(StandingRequest("s", "the red square", every_n_frames=1), events)
    frame(svc, 0)
    replay(svc, 39, first=1)
    kinds = events.kinds()
    moved = [a for a in events.items if a.event == MOVED]
    assert kinds[0] == APPEARED and kinds[-1] == DISAPPEARED
    if not moving:
        assert kinds == [APPEARED, DISAPPEARED]
    else:
        stamps = [round((a.frames[-1].stamp_ns - T0) / DT) for a in moved]
        assert stamps == moves  # 2 in a row: one frame later each time
        assert all("box moved" in a.reason for a in moved)
    svc.stop()


def test_refusals_are_the_one_ended_event():
    svc = service(FakeGrounder(appears(0, 0)), max_standing_queries=1)
    events = Events()
    assert not svc.register(StandingRequest("e", "  "), events)
    assert not svc.register(StandingRequest("n", "x", period=-1.0), events)
    assert svc.register(StandingRequest("a", "the red square"), events)
    assert not svc.register(StandingRequest("b", "the red square"), events)
    refused = [a for a in events.items if a.event == ENDED]
    assert [a.request.query_id for a in refused] == ["e", "n", "b"]
    assert all(a.status == REJECTED for a in refused)
    assert "empty query text" in refused[0].reason and "period=-1.0 is negative" in refused[1].reason
    assert "max_standing_queries=1" in refused[2].reason
    assert not svc.cancel_standing("nope")
    assert svc.counters().standing_refused == 3 and svc.counters().standing_registered == 1
    # the same id again replaces it: the old one ends, the new one runs
    assert svc.register(StandingRequest("a", "the blue circle"), events)
    assert events.items[-1].event == ENDED and "replaced" in events.items[-1].reason
    assert [s["text"] for s in svc.standing()] == ["the blue circle"]
    svc.stop()
    assert events.items[-1].event == ENDED and events.items[-1].reason == SHUTTING_DOWN
    assert sum(a.event == ENDED for a in events.items) == 5  # one per registration


def test_one_shot_queries_go_first_and_preempt_a_standing_evaluation():
    g = FakeGrounder(appears(0, 100))
    svc = service(g)
    events, answers = Events(), Events()
    for i in range(5):
        frame(svc, i)
    order = []

    def query_arrives(stage):  # inside the standing evaluation's first stage, a one-shot query arrives
        order.append(stage)
        if stage == "encode" and len(order) == 1:
            svc.submit(GroundingRequest("q", "the red square"), answers)

    g.on_stage = query_arrives
    svc.register(StandingRequest("s", "the red square", every_n_frames=1), events)
    svc.run_pending()
    assert order[:6] == ["encode", "encode", "decompose", "lra", "attention", "select"]  # preempted, q ran
    assert answers.items[0].status == ANSWERED and g.grounds == 2
    c = svc.counters()
    assert c.standing_preempted == 1 and c.standing_evaluations == 1  # the preempted evaluation ran again
    assert events.kinds() == [APPEARED] and evaluations(svc, "s") == 1
    svc.stop()


def test_the_budget_bounds_the_share_of_worker_time():
    clock = Clock()
    g = FakeGrounder(appears(0, 0), cost=0.02, clock=clock)
    svc = service(g, clock=clock, standing_duty_budget=0.25)
    events = Events()
    svc.register(StandingRequest("s", "the red square", every_n_frames=1), events)
    t0 = clock.now
    i = 0
    while clock.now - t0 < 1.0:  # frames at 200 Hz, each making the query due
        frame(svc, i)
        svc.run_pending()
        i += 1
        clock.now += 0.005
    elapsed = clock.now - t0
    info = svc.standing()[0]
    busy = info["mean_cost"] * info["evaluations"]
    assert busy == pytest.approx(0.02 * info["evaluations"])
    assert info["evaluations"] >= 10
    assert 0.2 < busy / elapsed <= 0.25 + 0.02, (busy, elapsed)  # unbounded, it would be ~0.8
    assert 0.2 < svc.standing_duty() <= 0.27
    svc.stop()


def test_stop_ends_standing_queries_fast_with_an_evaluation_in_flight():
    g = FakeGrounder(appears(0, 100))
    svc = service(g, threaded=True)
    events = Events()
    for i in range(3):
        frame(svc, i)
    g.hold()
    svc.register(StandingRequest("s", "the red square"), events)
    assert g.entered.wait(5)
    worker = svc._worker
    t0 = time.monotonic()
    svc.stop(timeout=0.5)
    assert time.monotonic() - t0 < 1.0
    g.release.set()
    worker.join(5)  # the abandoned evaluation ends: it must not add an event after ``ended``
    assert not worker.is_alive()
    assert events.kinds() == [ENDED] and events.items[0].reason == SHUTTING_DOWN


def test_repeated_failures_end_the_query():
    g = FakeGrounder(appears(0, 100))
    g.fail = True
    svc = service(g)
    events = Events()
    svc.register(StandingRequest("s", "the red square", every_n_frames=1), events)
    for i in range(6):
        frame(svc, i)
        svc.run_pending()
    assert g.grounds == 0 and svc.counters().standing_evaluations == 0
    assert events.kinds() == [ENDED] and events.items[0].status == FAILED
    assert "3 evaluations in a row failed: out of memory" in events.items[0].reason and svc.standing() == []
    svc.stop()


def test_time_window_of_a_standing_query():
    g = FakeGrounder(lambda stamp: (0.1, (0.0, 0.0, 4.0, 4.0)))
    svc = service(g)
    for i in range(20):
        frame(svc, i)
    svc.register(StandingRequest("w", "x", window=0.5), Events())
    svc.run_pending()
    assert g.calls[0]["stamps"] == [(T0 + i * DT) / NS for i in range(14, 20)]  # the newest 0.5 s
    svc.stop()


def test_existence_is_the_judgment_of_ground():
    from fake_adapter import FakeAdapter, clip_with_square

    from stvg_ros import Grounder
    from stvg_ros.config import GroundingConfig

    frames, st, _ = clip_with_square(num_frames=8)
    for cfg in (dict(num_frames=6, lra_steps=1), dict(num_frames=6, use_lra=False, use_tas=False)):
        adapter = FakeAdapter()
        grounder = Grounder(adapter, GroundingConfig(**cfg))
        full = grounder.ground(frames, st, "the red square")
        adapter.calls.clear()
        seen: list[str] = []
        p = grounder.existence(frames, st, "the red square", checkpoint=seen.append)
        assert p == pytest.approx(full.p_yes, abs=1e-6)
        assert seen == ["encode", "exist"] and len(adapter.calls) == 1 and not adapter.calls[0]["with_grad"]
