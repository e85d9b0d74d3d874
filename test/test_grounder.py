"""The pipeline end to end: input checks, sampling, batching, the result contract, config, real tiny models."""

import numpy as np
import pytest
import torch

from fake_adapter import FakeAdapter, clip_with_square
from stvg_ros import Grounder as LazyGrounder
from stvg_ros.config import ConfigError, GroundingConfig
from stvg_ros.grounding.grounder import Grounder, format_question, sample_indices
from stvg_ros.grounding.result import GroundingResult

STAGES = {"encode", "decompose", "lra", "attention", "select", "total"}


def _check_contract(result: GroundingResult, stamps, image_size):
    """The public contract: start/end are input stamps, one box per used stamp in the span (per given stamp
    when more frames were given than used: tube_frames), inside the image."""
    H, W = image_size
    assert result.start in stamps and result.end in stamps and result.start <= result.end
    in_span = [s for s in result.frame_stamps if result.start <= s <= result.end]
    given = [s for s in stamps if result.start <= s <= result.end]
    assert sorted(result.boxes) in (in_span, given) and len(in_span) >= 1
    for x0, y0, x1, y1 in result.boxes.values():
        assert 0 <= x0 <= x1 <= W and 0 <= y0 <= y1 <= H
    assert set(result.frame_stamps) <= set(stamps)
    assert len(result.frame_scores) == len(result.frame_stamps)
    assert STAGES <= set(result.timings)
    assert isinstance(result.found, bool) and 0.0 <= result.p_yes <= 1.0
    result.to_dict()


def test_public_import():
    assert LazyGrounder is Grounder


def test_question_format():
    assert format_question("Is there {query} in this video?", "The man walks.") == \
        "Is there the man walks in this video?"
    assert format_question("Is there {query} in this video?", "  a   red ball ") == "Is there a red ball in this video?"
    # the official loaders: HC-STVG lower-cases the sentence, VidSTG also drops punctuation
    t = "Is there {query} in this video?"
    assert format_question(t, "The man in Red walks to Anna.", "lower") == \
        "Is there the man in red walks to anna in this video?"
    assert format_question(t, "There is a child's toy, red.", "words") == \
        "Is there there is a child s toy red in this video?"


@pytest.mark.parametrize("layers, depth, want", [
    ([-26, -6], 32, list(range(6, 26))), ([-26, -6], 28, list(range(2, 22))), ([-26, -6], 36, list(range(10, 30))),
    ([6, 26], 28, list(range(6, 26))), ([2, -1], 4, [2]), ([], 28, None)])
def test_layer_slices_follow_the_models_depth(layers, depth, want):
    assert Grounder(FakeAdapter(layers=depth), {"layers": layers}).capture.layers == want


def test_layer_slice_errors_name_the_depth():
    with pytest.raises(ConfigError, match="has 4 decoder layers"):
        Grounder(FakeAdapter(layers=4), {"layers": [-26, -6]})
    with pytest.raises(ConfigError, match="has 4 decoder layers"):
        Grounder(FakeAdapter(layers=4), {"layers": [3, -2]})
    for bad in ([-6, 0], [-6, -26], [3], [0, 0]):
        with pytest.raises(ConfigError, match="layers"):
            GroundingConfig(layers=bad)


def test_relevance_eps_is_scaled_by_the_token_count():
    """eps given at relevance_eps_tokens tokens: at N grid tokens the ratio uses eps * tokens / N."""
    frames, stamps, _ = clip_with_square(num_frames=6)
    n_grid = 6 * 16  # FakeAdapter: 4x4 cells per frame (+ one non-grid token, not counted)
    base = dict(num_frames=6, keep_relevance=True, use_lra=False, use_tas=False, decomposer="rules")

    def spatial(**kw):
        return Grounder(FakeAdapter(), dict(base, **kw)).ground(frames, stamps, "the red square").relevance.spatial

    np.testing.assert_allclose(spatial(relevance_eps=0.01, relevance_eps_tokens=n_grid),
                               spatial(relevance_eps=0.01, relevance_eps_tokens=0))
    np.testing.assert_allclose(spatial(relevance_eps=0.01, relevance_eps_tokens=2 * n_grid),
                               spatial(relevance_eps=0.02, relevance_eps_tokens=0))
    assert not np.allclose(spatial(relevance_eps=0.01, relevance_eps_tokens=0),
                           spatial(relevance_eps=0.02, relevance_eps_tokens=0))


def test_grounder_configures_the_adapter():
    adapter = FakeAdapter()
    Grounder(adapter, {"visual_tokens": "paper", "answer_tokens": "official", "prompt_style": "official",
                       "frame_resize": "processor"})
    assert (adapter.options.visual_tokens, adapter.options.answer_tokens, adapter.options.prompt_style,
            adapter.options.frame_resize) == ("paper", "official", "official", "processor")
    # a config replaced live (the node's parameter updates) reaches the adapter at the next query
    grounder = Grounder(adapter, {"num_frames": 6})
    grounder.config = grounder.config.replace(answer_tokens="Yes,No")
    frames, stamps, _ = clip_with_square(num_frames=6)
    grounder.ground(frames, stamps, "the red square")
    assert adapter.options.answer_tokens == "Yes,No"
    for bad in ({"visual_tokens": "few"}, {"answer_tokens": "yes"}, {"prompt_style": "chat"},
                {"query_format": "upper"}, {"relevance_eps_tokens": -1}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            GroundingConfig.from_dict(bad)


@pytest.mark.parametrize("frames, stamps, query, match", [
    ([], [], "a ball", "no frames"),
    ([np.zeros((4, 4, 3), np.uint8)] * 2, [0.0], "a ball", "2 frames but 1 stamps"),
    ([np.zeros((4, 4), np.uint8)], [0.0], "a ball", "HxWx3"),
    ([np.zeros((4, 4, 3), np.float32)], [0.0], "a ball", "uint8"),
    ([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8)], [0.0, 1.0], "a ball", "one size"),
    ([np.zeros((4, 4, 3), np.uint8)] * 2, [1.0, 1.0], "a ball", "increase strictly"),
    ([np.zeros((4, 4, 3), np.uint8)] * 2, [0.0, float("nan")], "a ball", "NaN"),
    ([np.zeros((4, 4, 3), np.uint8)], [0.0], "  ", "empty query text"),
])
def test_bad_inputs_get_clear_errors(frames, stamps, query, match):
    with pytest.raises(ValueError, match=match):
        Grounder(FakeAdapter()).ground(frames, stamps, query)


def test_uniform_sampling_keeps_first_and_last():
    assert sample_indices(5, 20) == [0, 1, 2, 3, 4]
    idx = sample_indices(100, 20)
    assert len(idx) == 20 and idx[0] == 0 and idx[-1] == 99 and idx == sorted(set(idx))


def test_end_to_end_with_proposals_picks_the_target_and_its_span():
    frames, stamps, box = clip_with_square(num_frames=30, size=64, frames_on=range(12, 19), cell=(1, 2))
    adapter = FakeAdapter()
    encoded = []
    orig_encode = adapter.encode_frames
    adapter.encode_frames = lambda f, stamps=None: encoded.append(len(f)) or orig_encode(f, stamps)
    target = {s: box for i, s in enumerate(stamps) if 10 <= i <= 20}  # track starts before the action
    distractor = {s: (0.0, 48.0, 16.0, 64.0) for s in stamps}
    cfg = GroundingConfig(num_frames=10, keep_relevance=True, decomposer="rules", tube_frames="sampled")
    result = Grounder(adapter, cfg).ground(frames, stamps, "the red square moves", proposals={7: distractor, 3: target})
    _check_contract(result, stamps, (64, 64))
    assert encoded == [10]  # visual tokens encoded once for every sub-query
    assert result.track_id == 3 and result.track_scores[3] > result.track_scores[7]
    assert result.found and result.p_yes > 0.5
    assert len(result.frame_stamps) == 10
    on = [s for i, s in enumerate(stamps) if 12 <= i <= 18]
    used_on = [s for s in result.frame_stamps if s in on]
    assert all(result.start <= s <= result.end for s in used_on)
    assert all(b == box for b in result.boxes.values())
    # batching: one LRA pass (V_s, V_t, V_s reversed) and one attention pass for all grounding prompts
    assert [(c["batch"], c["with_grad"], c["capture"]) for c in adapter.calls] == [(3, True, False), (7, False, True)]
    assert result.relevance.spatial.shape == (10, 4, 4)


def test_absent_target_is_not_found_but_still_gets_a_tube():
    frames, stamps, _ = clip_with_square(num_frames=8, colour=(200, 50, 50))
    result = Grounder(FakeAdapter(), GroundingConfig(num_frames=8)).ground(frames, stamps, "the green ball")
    assert not result.found and result.p_yes < 0.5
    _check_contract(result, stamps, (64, 64))


def test_track_missing_frames_gets_interpolated_boxes():
    frames, stamps, box = clip_with_square(num_frames=8, frames_on=range(8))
    x0, y0, x1, y1 = box
    track = {stamps[2]: box, stamps[5]: (x0 + 6, y0, x1 + 6, y1)}
    cfg = GroundingConfig(num_frames=8, span_rule="grow", span_grow_fraction=1.0, use_lra=False)
    result = Grounder(FakeAdapter(), cfg).ground(frames, stamps, "the red square", proposals={"t": track})
    _check_contract(result, stamps, (64, 64))
    # frames 2..5 carry the (interpolated) box; frames outside the track score 0 and stop the run
    assert (result.start, result.end) == (stamps[2], stamps[5])
    assert result.boxes[stamps[3]] == pytest.approx((x0 + 2, y0, x1 + 2, y1))


def test_without_lra_and_tas_only_attention_runs_happen():
    frames, stamps, _ = clip_with_square(num_frames=6)
    adapter = FakeAdapter()
    cfg = GroundingConfig(num_frames=6, use_lra=False, use_tas=False)
    result = Grounder(adapter, cfg).ground(frames, stamps, "the red square")
    # the caption prompt in a call of its own (its answer is the same for every query on these frames,
    # so the adapter may keep it), the question in another
    assert [(c["batch"], c["with_grad"], c["delta"]) for c in adapter.calls] == [(1, False, None), (1, False, None)]
    assert adapter.calls[0]["questions"] == [cfg.caption_prompt]
    _check_contract(result, stamps, (64, 64))


def test_sub_query_inference_asks_the_sub_queries_and_the_caption_once():
    """inference_query='sub' (official code): spatial asks the attribute, temporal the action sub-query,
    the existence judgment the full query; without latent prompts one caption run serves both."""
    frames, stamps, _ = clip_with_square(num_frames=6)
    adapter = FakeAdapter()
    cfg = GroundingConfig(num_frames=6, use_lra=False, use_tas=False, inference_query="sub")
    result = Grounder(adapter, cfg).ground(frames, stamps, "the red square that moves",
                                           sub_queries=("the red square", "the square moves"))
    # with box_overlap (the default) the spatial question runs first, the others beside the box stage
    caption, *calls = adapter.calls
    assert caption["questions"] == [cfg.caption_prompt]
    assert [q for c in calls for q in c["questions"]][0] == format_question(cfg.question_template, "the red square")
    assert sorted(q for c in calls for q in c["questions"]) == sorted([
        format_question(cfg.question_template, "the red square"),
        format_question(cfg.question_template, "the square moves"),
        format_question(cfg.question_template, "the red square that moves")])
    _check_contract(result, stamps, (64, 64))


def test_max_batch_gives_the_same_tube():
    frames, stamps, _ = clip_with_square(num_frames=8)
    ref = Grounder(FakeAdapter(), GroundingConfig(num_frames=8)).ground(frames, stamps, "the red square moves")
    adapter = FakeAdapter()
    small = Grounder(adapter, GroundingConfig(num_frames=8, max_batch=2)).ground(frames, stamps, "the red square moves")
    assert max(c["batch"] for c in adapter.calls) == 2
    assert (small.start, small.end, small.boxes, small.track_id) == (ref.start, ref.end, ref.boxes, ref.track_id)
    assert small.p_yes == pytest.approx(ref.p_yes)


def test_grounding_token_modes_and_progress():
    frames, stamps, _ = clip_with_square(num_frames=6)
    seen = []
    for mode, expected in (("auto", "assistant"), ("fixed", "assistant"), ("mean", "mean")):
        cfg = GroundingConfig(num_frames=6, grounding_token=mode)
        r = Grounder(FakeAdapter(), cfg, progress=seen.append).ground(frames, stamps, "the red square")
        assert r.grounding_tokens["spatial"] == expected
    assert seen[:5] == ["encode", "decompose", "lra", "attention", "select"]
    cfg = GroundingConfig(num_frames=6, grounding_token="fixed", grounding_token_offset=-1)
    assert Grounder(FakeAdapter(), cfg).ground(frames, stamps, "the red square").grounding_tokens["spatial"] == "Ċ"
    cfg = GroundingConfig(num_frames=6, grounding_token="fixed", grounding_token_offset=-9)
    with pytest.raises(ConfigError, match="grounding_token_offset"):
        Grounder(FakeAdapter(), cfg).ground(frames, stamps, "the red square")


def test_config_sources_and_validation(tmp_path):
    assert Grounder(FakeAdapter(), {"num_frames": 6}).config.num_frames == 6
    path = tmp_path / "g.yaml"
    path.write_text("grounding:\n  num_frames: 12\n  span_rule: grow\n")
    assert Grounder(FakeAdapter(), str(path)).config.span_rule == "grow"
    with pytest.raises(ConfigError, match="does not exist"):
        Grounder(FakeAdapter(), str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="4 decoder layers"):
        Grounder(FakeAdapter(layers=4), {"layers": [2, 8]})
    assert Grounder(FakeAdapter(layers=4), {"layers": [1, 3]}).capture.layers == [1, 2]
    for bad, match in (({"span_rule": "hull"}, "span_rule"), ({"num_frames": 1}, "num_frames"),
                       ({"lra_lr": 0}, "lra_lr"), ({"max_batch": -1}, "max_batch"), ({"nope": 1}, "unknown"),
                       ({"use_tas": "yes"}, "use_tas"), ({"question_template": "Is there x?"}, "{query}"),
                       ({"question_template": "Is there {query} in {clip}?"}, "only placeholder"),
                       ({"layers": [5, 2]}, "layers"), ({"relevance_eps": 0}, "relevance_eps")):
        with pytest.raises(ConfigError, match=match):
            GroundingConfig.from_dict(bad)


def test_model_is_left_frozen_and_untouched():
    frames, stamps, _ = clip_with_square(num_frames=6)
    adapter = FakeAdapter()
    before = adapter.mix.detach().clone()
    Grounder(adapter, GroundingConfig(num_frames=6, lra_steps=2)).ground(frames, stamps, "the red square")
    assert adapter.mix.grad is None and torch.equal(adapter.mix, before)


# ------------------------------------------------------------------------ real tiny models
@pytest.mark.parametrize("family", ["qwen2_5_vl", "llava_onevision", "llava_next_video"])
def test_end_to_end_on_tiny_models(family, tiny_model_dir):
    """The user's loading path (Grounder.from_pretrained on a saved model directory), full method."""
    grounder = Grounder.from_pretrained(tiny_model_dir(family), device="cpu",
                                        config={"num_frames": 6, "keep_relevance": True, "lra_steps": 2})
    rng = np.random.default_rng(1)
    H, W = 50, 70
    frames = [rng.integers(0, 255, (H, W, 3), dtype=np.uint8) for _ in range(9)]
    stamps = [100.0 + 0.25 * i for i in range(9)]
    tracks = {"a": {s: (5.0, 5.0, 30.0, 40.0) for s in stamps[:6]}, "b": {s: (35.0, 10.0, 68.0, 48.0) for s in stamps}}
    for proposals in (None, tracks):
        result = grounder.ground(frames, stamps, "the red ball moves to the left", proposals=proposals)
        _check_contract(result, stamps, (H, W))
        assert len(result.frame_stamps) == 6
        assert result.relevance.spatial.shape[0] == 6
        assert np.isfinite(result.relevance.spatial).all() and np.isfinite(result.score)
        if proposals is None:  # a proposal-free track: segments of the frames seeded by the relevance
            assert str(result.track_id).startswith("attention")
        if proposals:
            assert result.track_id in tracks and set(result.track_scores) == {"a", "b"}


def test_tiny_model_single_frame_and_yaml_config(tiny_model_dir, tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("grounding:\n  num_frames: 4\n  use_tas: false\n  decomposer: rules\n")
    grounder = Grounder.from_pretrained(tiny_model_dir("qwen2_5_vl"), config=str(path), device="cpu")
    frame = np.random.default_rng(2).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    result = grounder.ground([frame], [3.5], "a red ball")
    _check_contract(result, [3.5], (32, 32))
    assert result.start == result.end == 3.5


# --- long windows: the tube on every given frame, the span refined between the samples (issue 27) -----

def _long_clip():
    """36 frames, a red square on 13..27; 12 are sampled (0, 3, ..., 31, 35: the paper's sampling), so the
    action's ends fall between samples."""
    frames, stamps, box = clip_with_square(num_frames=36, size=64, frames_on=range(13, 28), cell=(1, 2))
    return frames, stamps, box, {3: {s: box for s in stamps}, 7: {s: (0.0, 48.0, 16.0, 64.0) for s in stamps}}


@pytest.mark.parametrize("mode", ["sampled", "all", "refine"])
def test_long_windows_give_a_box_on_every_frame_and_show_the_model_its_frame_count(mode):
    frames, stamps, box, tracks = _long_clip()
    adapter = FakeAdapter()
    encoded = []
    orig_encode = adapter.encode_frames
    adapter.encode_frames = lambda f, stamps=None: encoded.append(len(f)) or orig_encode(f, stamps)
    cfg = GroundingConfig(num_frames=12, decomposer="rules", tube_frames=mode, span_rule="grow",
                          span_grow_fraction=0.5)
    result = Grounder(adapter, cfg).ground(frames, stamps, "the red square", proposals=tracks)
    _check_contract(result, stamps, (64, 64))
    assert result.track_id == 3 and len(result.frame_stamps) == 12
    used = set(result.frame_stamps)
    if mode == "sampled":
        assert set(result.boxes) <= used
    else:  # every given frame of the span, the proposal's own box there
        assert sorted(result.boxes) == [s for s in stamps if result.start <= s <= result.end]
        assert all(b == box for b in result.boxes.values())
    # the model never sees more than num_frames frames in one pass: the refinement is a second pass
    assert all(n <= 12 for n in encoded)
    assert len(encoded) == (2 if mode == "refine" else 1)


def test_refinement_moves_the_span_ends_between_the_samples():
    """The square is on 13..27: the first pass sees it on samples 15..25 (12 is off), the second (halfway
    frames 14, 17, ..., 26) also on 14; refined ends sit closer to the truth.  The default span rule: the
    fake model scores the second pass's frames alike, and 'grow' stops at a tie (the official rule)."""
    frames, stamps, _, tracks = _long_clip()
    spans = {}
    for mode in ("all", "refine"):
        cfg = GroundingConfig(num_frames=12, decomposer="rules", tube_frames=mode, use_lra=False, use_tas=False,
                              span_rule="topk")
        r = Grounder(FakeAdapter(), cfg).ground(frames, stamps, "the red square", proposals=tracks)
        spans[mode] = (stamps.index(r.start), stamps.index(r.end))
    truth = (13, 27)
    err = {m: abs(s[0] - truth[0]) + abs(s[1] - truth[1]) for m, s in spans.items()}
    assert err["refine"] < err["all"], spans


def test_given_exactly_the_sampled_frames_every_mode_gives_the_same_tube():
    frames, stamps, _, tracks = _long_clip()
    frames, stamps = frames[::3], stamps[::3]
    got = []
    for mode in ("sampled", "all", "refine"):
        cfg = GroundingConfig(num_frames=12, decomposer="rules", tube_frames=mode)
        r = Grounder(FakeAdapter(), cfg).ground(frames, stamps, "the red square", proposals=tracks)
        got.append((r.start, r.end, r.boxes))
    assert got[0] == got[1] == got[2]


# --- the box stage off the critical path: boxes segmented while the refine pass runs (issue 26 item 6) -----

def _overlap_run(monkeypatch, overlap: bool, pass_waits: float = 0.0, fail_pass: bool = False):
    """A proposal-free long-window query; the refine pass (the second encode) waits up to ``pass_waits`` s for
    the segmentation to start.  Returns the result (or the error), whether the pass saw the segmentation
    running, whether the segmentation had finished when ground() returned, and the threads of both."""
    import threading
    import time

    from stvg_ros.grounding import spatial

    frames, stamps, _, _ = _long_clip()
    started, pass_started, log = threading.Event(), threading.Event(), {"segmented": False}
    original = spatial.segment_tracks

    def segment(*args, **kwargs):
        started.set()
        log["segment_thread"] = threading.get_ident()
        log["pass_was_running"] = pass_started.wait(pass_waits)  # the pass started before the boxes were done
        if fail_pass:
            time.sleep(0.2)  # still working when the pass fails
        out = original(*args, **kwargs)
        log["segmented"] = True
        return out

    adapter = FakeAdapter()
    orig_encode, calls = adapter.encode_frames, []

    def encode(f, stamps=None):
        calls.append(len(f))
        if len(calls) == 2:  # the refine pass
            log["pass_thread"] = threading.get_ident()
            log["segmented_before_pass"] = log["segmented"]
            pass_started.set()
            log["saw_segmentation"] = started.wait(pass_waits)
            if fail_pass:
                raise RuntimeError("the refine pass failed")
        return orig_encode(f, stamps)

    adapter.encode_frames = encode
    cfg = GroundingConfig(num_frames=12, decomposer="rules", box_method="grabcut", box_overlap=overlap)
    with monkeypatch.context() as patch:
        patch.setattr(spatial, "segment_tracks", segment)
        try:
            result = Grounder(adapter, cfg).ground(frames, stamps, "the red square")
        except RuntimeError as e:
            result = e
    log["segmented_at_return"] = log["segmented"]
    return result, log


def test_boxes_segmented_during_the_refine_pass_are_the_serial_ones(monkeypatch):
    serial, s_log = _overlap_run(monkeypatch, overlap=False)
    parallel, p_log = _overlap_run(monkeypatch, overlap=True, pass_waits=10.0)
    # the refine pass ran while the boxes were segmented, on another thread
    assert p_log["saw_segmentation"] and p_log["pass_was_running"] and not p_log["segmented_before_pass"]
    assert p_log["segment_thread"] != p_log["pass_thread"]
    # serially (box_overlap: false) the boxes come first, the pass after, in one thread
    assert s_log["segmented_before_pass"] and s_log["segment_thread"] == s_log["pass_thread"]
    assert "box_wait" in parallel.timings and "box_wait" not in serial.timings
    for r in (serial, parallel):
        _check_contract(r, _long_clip()[1], (64, 64))
    assert (parallel.track_id, parallel.start, parallel.end) == (serial.track_id, serial.start, serial.end)
    assert parallel.boxes == serial.boxes and parallel.frame_scores == serial.frame_scores
    assert parallel.track_scores == serial.track_scores and parallel.p_yes == serial.p_yes


def test_a_failed_refine_pass_waits_for_the_box_worker_and_raises_its_own_error(monkeypatch):
    err, log = _overlap_run(monkeypatch, overlap=True, pass_waits=10.0, fail_pass=True)
    assert isinstance(err, RuntimeError) and "refine pass failed" in str(err)
    assert log["segmented_at_return"]  # no segmentation outlives the query


def test_a_cancel_inside_the_overlapped_box_stage_stops_the_query():
    from stvg_ros.grounding.result import Cancelled

    frames, stamps, _, _ = _long_clip()
    seen = []

    def checkpoint(stage):
        seen.append(stage)
        if stage == "select" and seen.count("select") > 1:  # inside the segmentation (the box worker)
            raise Cancelled("stop")

    cfg = GroundingConfig(num_frames=12, decomposer="rules", box_method="grabcut")
    with pytest.raises(Cancelled):
        Grounder(FakeAdapter(), cfg).ground(frames, stamps, "the red square", checkpoint=checkpoint)


# --- the box stage from the spatial maps on (issue 26 item 6, fourth pass) -----------------------------------

def _one_shot_run(monkeypatch, overlap: bool, waits: float = 10.0):
    """A proposal-free query given exactly ``num_frames`` frames (no refine pass) with LRA, TAS and distinct
    attribute and action (so the temporal prompts have their own latent prompt).  Returns the result and what
    the attention passes saw: per pass with attention captured, its batch and whether the segmentation had
    started / finished when it began; the passes after the first wait up to ``waits`` s for the segmentation to
    start, the segmentation waits for a later pass to start (so the test sees them run side by side)."""
    import threading

    from stvg_ros.grounding import spatial

    frames, stamps, _ = clip_with_square(num_frames=10, size=64, frames_on=range(2, 8), cell=(1, 2))
    started, later_pass, log = threading.Event(), threading.Event(), {"segmented": False, "passes": []}
    original = spatial.segment_tracks

    def segment(*args, **kwargs):
        started.set()
        log["segment_thread"] = threading.get_ident()
        log["saw_a_later_pass"] = later_pass.wait(waits)
        out = original(*args, **kwargs)
        log["segmented"] = True
        return out

    adapter = FakeAdapter()
    orig_run = adapter.run

    def run(visual, questions, visual_delta=None, capture=None, with_grad=False):
        if capture is not None and not with_grad:  # an attention pass (LRA's steps take gradients)
            first = not log["passes"]
            if not first:
                later_pass.set()
                started.wait(waits)
            log["passes"].append({"batch": len(list(questions)), "segmenting": started.is_set() and not log["segmented"],
                                  "thread": threading.get_ident()})
        return orig_run(visual, questions, visual_delta=visual_delta, capture=capture, with_grad=with_grad)

    adapter.run = run
    cfg = GroundingConfig(num_frames=10, decomposer="rules", box_method="grabcut", box_overlap=overlap)
    with monkeypatch.context() as patch:
        patch.setattr(spatial, "segment_tracks", segment)
        result = Grounder(adapter, cfg).ground(frames, stamps, "the red square moves",
                                               sub_queries=("the red square", "the square moves"))
    return result, log


def test_the_box_stage_starts_from_the_spatial_maps_beside_the_temporal_prompts_pass(monkeypatch):
    """The box stage needs only the spatial (and TAS) prompts: it starts as soon as they are read and runs while the
    temporal prompts' pass does, with no refine pass to hide behind (before: after all the attention prompts, so a
    query given exactly num_frames frames segmented with nothing beside it).  Same tube, scores and tokens."""
    serial, s_log = _one_shot_run(monkeypatch, overlap=False, waits=0.0)
    parallel, p_log = _one_shot_run(monkeypatch, overlap=True)
    # overlapped: the spatial and TAS prompts (4) in one pass, then the temporal pair and the existence question
    # (this fake has no clip prefix for LRA's first step to answer it on) beside the segmentation
    assert [p["batch"] for p in p_log["passes"]] == [4, 3]
    assert p_log["passes"][1]["segmenting"] and p_log["saw_a_later_pass"]
    assert p_log["segment_thread"] != p_log["passes"][1]["thread"]
    assert parallel.timings["box_beside_cpu"] >= 0.0 and parallel.timings["box_cpu"] > 0.0
    # serially (box_overlap: false) the prompts keep their one pass and the boxes come after it, in this thread
    assert [p["batch"] for p in s_log["passes"]] == [7] and not s_log["passes"][0]["segmenting"]
    assert s_log["segment_thread"] == s_log["passes"][0]["thread"] and "box_wait" not in serial.timings
    for r in (serial, parallel):
        _check_contract(r, serial.frame_stamps, (64, 64))
    assert (parallel.track_id, parallel.start, parallel.end, parallel.boxes) == \
        (serial.track_id, serial.start, serial.end, serial.boxes)
    assert parallel.frame_scores == serial.frame_scores and parallel.track_scores == serial.track_scores
    assert parallel.p_yes == serial.p_yes and parallel.grounding_tokens == serial.grounding_tokens
    assert list(parallel.grounding_tokens) == list(serial.grounding_tokens)


def test_the_box_stage_beside_torch_takes_only_the_cores_torch_leaves(monkeypatch):
    """No oversubscription: beside a CPU model's passes the box stage segments on the cores torch's threads leave
    (at least its own one); beside a GPU model on the module's default."""
    from stvg_ros.grounding import spatial

    g = Grounder(FakeAdapter(), GroundingConfig())
    monkeypatch.setattr(spatial, "SEGMENT_THREADS", 0)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    for torch_threads, want in ((8, 1), (16, 1), (6, 2), (1, 7)):
        monkeypatch.setattr(torch, "get_num_threads", lambda n=torch_threads: n)
        assert g._box_threads() == want
    monkeypatch.setattr(spatial, "SEGMENT_THREADS", 1)
    assert g._box_threads() == 1
    g.adapter.device = torch.device("cuda")
    assert g._box_threads() is None
