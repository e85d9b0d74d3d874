"""The per-frame cache of a sliding window is exact, bounded and evicted with its frames, per family."""

import numpy as np
import pytest
import torch

from grounding_checks import assert_same_grounding
from stvg_ros.adapters import load_adapter
from stvg_ros.adapters.feature_cache import FeatureCache
from stvg_ros.grounding.grounder import Grounder
from stvg_ros.adapters.tiny_models import random_frames

FAMILIES = ("qwen2_5_vl", "llava_onevision", "llava_next_video")


@pytest.fixture(scope="module", params=FAMILIES)
def adapter(request, tiny_model_dir):
    return load_adapter(tiny_model_dir(request.param))


def _same_tokens(a, b):
    assert torch.equal(a.embeds, b.embeds)
    for name in ("slot", "row", "col"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert (a.grid, a.slot_frames, a.image_size, a.content_box) == (b.grid, b.slot_frames, b.image_size, b.content_box)
    assert set(a.extras) - {"clip_key"} == set(b.extras) - {"clip_key"}  # clip_key: the identity keyed encodes add
    for k in set(a.extras) & set(b.extras):
        va, vb = a.extras[k], b.extras[k]
        assert torch.equal(va, vb) if isinstance(va, torch.Tensor) else va == vb


def test_cached_encode_is_bit_identical(adapter):
    """Frames encoded in one clip, reused at other positions of another clip (odd length: Qwen repeats the
    last frame into its own slot), give exactly the tokens of a fresh whole-clip encode."""
    frames = random_frames(9, 60, 80, seed=3)
    adapter.feature_cache = cache = FeatureCache(64 * 2**20)
    try:
        adapter.encode_frames(frames[:6], keys=list(range(6)))
        first = cache.stats()
        clip, keys = frames[2:9], list(range(2, 9))  # 4 cached frames (2 cached Qwen pairs) + 3 new
        cached = adapter.encode_frames(clip, keys=keys)
        again = cache.stats()
        adapter.feature_cache = None
        _same_tokens(cached, adapter.encode_frames(clip))
        assert again.by_kind["pixels"]["hits"] - first.by_kind["pixels"]["hits"] == 4
        assert again.by_kind["visual"]["hits"] > first.by_kind["visual"]["hits"]
        # the reversed clip of TAS, also through the cache
        adapter.feature_cache = cache
        rev = adapter.encode_reversed(clip, None, cached, keys=keys)
        adapter.feature_cache = None
        _same_tokens(rev, adapter.encode_reversed(clip, None, adapter.encode_frames(clip)))
    finally:
        adapter.feature_cache = None


def _ground(grounder, frames, stamps, keys, query):
    return grounder.ground(frames, stamps, query, frame_keys=keys)


@pytest.mark.parametrize("lra,tas", [(False, False), (False, True), (True, True)], ids=["plain", "no-lra", "full"])
def test_grounding_over_a_sliding_window_is_unchanged(adapter, lra, tas):
    """Queries over overlapping windows: relevance maps, p_yes and tubes equal with and without the cache."""
    cfg = dict(num_frames=6, use_lra=lra, lra_steps=1, use_tas=tas, use_dsth=False, keep_relevance=True)
    cached = Grounder(adapter, cfg)
    fresh = Grounder(adapter, dict(cfg, feature_cache_mb=0))
    stream = random_frames(14, 56, 72, seed=5)
    stamps = [0.5 * i for i in range(14)]
    for start, query in ((0, "the red ball"), (3, "a person walks"), (3, "the red ball"), (6, "a dog")):
        window = slice(start, start + 8)
        a = _ground(cached, stream[window], stamps[window], list(range(14))[window], query)
        b = fresh.ground(stream[window], stamps[window], query)
        assert_same_grounding(a, b)
    stats = cached.cache_stats()
    assert stats.hits > 0 and stats.entries > 0 and 0 < stats.bytes <= stats.max_bytes
    assert fresh.cache_stats().entries == 0


def test_passes_on_unchanged_frames_are_reused_exactly(adapter):
    """Several questions about the same sampled frames: the clip prefix is decoded once per clip (and
    time-reversed clip), the caption prompt's answer computed once; a standing query's existence check
    shares the prefix with the grounding that follows.  Everything equals the uncached run."""
    # tube_frames 'sampled': the counts below are the sampled clip's passes (6 frames given, 4 sampled; the
    # 'refine' pass on the halfway frames would add its own prefix)
    cfg = dict(num_frames=4, use_lra=False, use_tas=True, use_dsth=True, decomposer="rules", keep_relevance=True,
               tube_frames="sampled")
    cached, fresh = Grounder(adapter, cfg), Grounder(adapter, dict(cfg, feature_cache_mb=0))
    frames, stamps, keys = random_frames(6, 56, 72, seed=9), [0.5 * i for i in range(6)], list(range(100, 106))
    p = cached.existence(frames, stamps, "the man in red walks to the door", frame_keys=keys)
    assert p == fresh.existence(frames, stamps, "the man in red walks to the door")
    for query in ("the man in red walks to the door", "a dog runs across the yard", "the woman opens the fridge"):
        a, b = cached.ground(frames, stamps, query, frame_keys=keys), fresh.ground(frames, stamps, query)
        assert_same_grounding(a, b)
    kinds = cached.cache_stats().by_kind
    # each clip's prefix decoded once (the existence check decodes the forward clip's), then found by the
    # other calls: query 1's 3 (captions, questions), the question calls of queries 2 and 3
    assert kinds["prefix"] == {"hits": 3 + 2 + 2, "misses": 2}
    assert kinds["answers"]["hits"] == 2 * 2  # the caption prompt of both clips, for the 2nd and 3rd query
    # a new frame in the sample: the prefixes are decoded again, and the old clip's go with its frame
    cached.ground(list(frames[1:]) + [frames[0]], stamps, "a dog runs across the yard", frame_keys=keys[1:] + [106])
    assert cached.cache_stats().by_kind["prefix"]["misses"] == 4
    cached.forget_frames([keys[0]])  # frame 100 left the window
    assert not [k for (kind, k) in cached.feature_cache._entries if kind == "prefix" and 100 in k[0].frames]


def test_the_refine_pass_on_halfway_frames_is_exact_with_the_cache(adapter):
    """``tube_frames: refine`` grounds a second time on the frames between the sampled ones: with the cache (its
    own prefixes and frames) the tube equals the uncached run's."""
    cfg = dict(num_frames=4, use_lra=False, use_tas=True, use_dsth=True, decomposer="rules", tube_frames="refine")
    cached, fresh = Grounder(adapter, cfg), Grounder(adapter, dict(cfg, feature_cache_mb=0))
    frames, stamps, keys = random_frames(9, 56, 72, seed=4), [0.25 * i for i in range(9)], list(range(200, 209))
    for query in ("the man in red walks to the door", "a dog runs across the yard"):
        a, b = cached.ground(frames, stamps, query, frame_keys=keys), fresh.ground(frames, stamps, query)
        assert (a.p_yes, a.start, a.end, a.boxes, a.found) == (b.p_yes, b.start, b.end, b.boxes, b.found)
    assert cached.cache_stats().by_kind["prefix"]["hits"] > 0


def test_a_query_decodes_each_clip_prefix_once_without_a_cache(adapter, monkeypatch):
    """Unkeyed frames (no cache): the caption call and the questions' call on a clip still share one prefix."""
    prefixes = []
    decode = adapter._decode

    def counting(embeds, positions, past_key_values=None, use_cache=False):
        if past_key_values is None:
            prefixes.append(embeds.shape[1])
        return decode(embeds, positions, past_key_values=past_key_values, use_cache=use_cache)

    monkeypatch.setattr(adapter, "_decode", counting)
    g = Grounder(adapter, dict(num_frames=4, use_lra=False, use_tas=True, use_dsth=True, decomposer="rules",
                               feature_cache_mb=0))
    g.ground(random_frames(4, 56, 72, seed=2), [0.5 * i for i in range(4)], "the man in red walks to the door")
    assert len(prefixes) == 2  # the clip and its time-reversed view, once each


def test_a_shared_prefix_is_never_taken_by_another_clip(adapter):
    """Within one ``shared_prefixes`` scope a clip's prefix is found by the clip's identity; a clip encoded after
    an earlier one was freed may get the freed object's ``id``, and must still get its own prefix (the entry
    keeps its clip alive).  Found by bench_stream: the full method without the cache differed from with it."""
    clips = [random_frames(4, 56, 72, seed=s) for s in (11, 12)]
    alone = [adapter.run(adapter.encode_frames(c), ["Is there a red square?"]).yes_no_logits for c in clips]
    with adapter.shared_prefixes():
        first = adapter.encode_frames(clips[0])
        adapter.run(first, ["Is there a red square?"])
        stale = id(first)
        del first
        for _ in range(20):  # CPython hands a freed object's address to the next one of its size: often at once
            second = adapter.encode_frames(clips[1])
            if id(second) == stale:
                break
        got = adapter.run(second, ["Is there a red square?"]).yes_no_logits
    assert torch.equal(got, alone[1]) and not torch.equal(alone[0], alone[1])


def test_eviction_and_bound():
    cache = FeatureCache(max_bytes=3 * 400 + 40)
    for k in range(5):
        cache.put("pixels", (k, "s"), np.zeros(100, np.float32), frames=(k,))  # 400 bytes each
    s = cache.stats()
    assert s.entries == 3 and s.bytes == 1200 and s.evictions == 2 and s.max_bytes == 1240  # least recently used went first
    assert cache.get("pixels", (0, "s")) is None and cache.get("pixels", (4, "s")) is not None
    cache.put("visual", ((3, 4), "s"), torch.zeros(10), frames=(3, 4))
    assert cache.forget({2, 3}) == 3  # frames 2 and 3 left the window: their entries and the pair's go
    assert cache.stats().entries == 1
    # clip prefixes hold at most half the budget: a new one replaces the oldest prefix, not per-frame entries
    shared = FeatureCache(max_bytes=1000)
    shared.put("visual", "v", np.zeros(100, np.float32))  # 400 bytes
    shared.put("prefix", "p1", np.zeros(100, np.float32))
    shared.put("prefix", "p2", np.zeros(100, np.float32))
    assert shared.get("visual", "v") is not None and shared.get("prefix", "p1") is None
    assert shared.get("prefix", "p2") is not None and shared.stats().bytes == 800
    shared.put("prefix", "big", np.zeros(200, np.float32))  # 800 bytes: more than its share, not kept
    assert shared.get("prefix", "big") is None
    off = FeatureCache(0)
    off.put("pixels", 1, np.zeros(4))
    assert off.stats().entries == 0


def test_cache_option_in_config(tiny_model_dir):
    from stvg_ros.config import ConfigError, GroundingConfig

    with pytest.raises(ConfigError, match="feature_cache_mb"):
        GroundingConfig(feature_cache_mb=-1)


def test_service_keys_frames_and_evicts_with_the_window(tiny_model_dir):
    """The service grounds with (its stream, the window's seq) as frame keys and drops cached frames the window
    let go."""
    from stvg_ros.config import ServingConfig
    from stvg_ros.stream.requests import GroundingRequest
    from stvg_ros.stream.service import GroundingService

    grounder = Grounder(load_adapter(tiny_model_dir("llava_next_video")),
                        dict(num_frames=4, use_lra=False, use_tas=False, use_dsth=False))
    service = GroundingService(ServingConfig(window_duration=100.0, window_max_frames=4, min_frames=2))
    service.start(grounder)
    try:
        frames = random_frames(8, 48, 64, seed=1)
        answers = []
        for i, f in enumerate(frames[:4]):
            service.ingest((i + 1) * 10**9, lambda f=f: f)
        service.submit(GroundingRequest("q1", "the red ball"), answers.append).wait(60)
        seqs = set(service._keys(service.window.frames()))
        stats = service.cache_stats()
        assert stats["entries"] > 0 and stats["misses"] > 0
        for i, f in enumerate(frames[4:6]):
            service.ingest((i + 5) * 10**9, lambda f=f: f)
        live = set(service._keys(service.window.frames()))
        assert live != seqs
        held = {k[0] for (kind, k) in grounder.feature_cache._entries if kind in ("pixels", "visual")}
        assert held <= live  # the two frames that left took their entries with them
        service.submit(GroundingRequest("q2", "the red ball"), answers.append).wait(60)
        assert [a.status for a in answers] == ["answered", "answered"]
        assert service.cache_stats()["hits"] > stats["hits"]
    finally:
        service.stop()


def test_one_grounder_shared_by_two_services_never_reads_the_others_frames(tiny_model_dir):
    """Issue 27: a second service's window numbers its frames from 1 again, as the first's did; with one
    Grounder (and so one feature cache) behind both, the second must not be answered from the first's frames:
    no hit on a frame it never encoded, and the answer a grounder without a cache gives."""
    from stvg_ros.config import ServingConfig
    from stvg_ros.stream.requests import GroundingRequest
    from stvg_ros.stream.service import GroundingService

    adapter = load_adapter(tiny_model_dir("llava_next_video"))
    cfg = dict(num_frames=4, use_lra=False, use_tas=False, use_dsth=False)
    shared = Grounder(adapter, cfg)
    answers, stats = [], []
    for seed in (1, 2):  # two streams, different pixels, the same stamps
        service = GroundingService(ServingConfig(window_duration=100.0, window_max_frames=4, min_frames=2))
        service.start(shared, threaded=False)
        for i, f in enumerate(random_frames(4, 48, 64, seed=seed)):
            service.ingest((i + 1) * 10**9, lambda f=f: f)
        before = shared.cache_stats().by_kind.get("visual", {}).get("hits", 0)
        service.submit(GroundingRequest("q", "the red ball"), answers.append)
        service.run_pending()
        stats.append(shared.cache_stats().by_kind.get("visual", {}).get("hits", 0) - before)
        service.stop()
    assert [a.status for a in answers] == ["answered", "answered"]
    assert stats == [0, 0]  # the second stream's frames were never encoded before
    second = answers[1]
    fresh = Grounder(adapter, dict(cfg, feature_cache_mb=0)).ground(
        [f.image for f in second.frames], [f.stamp for f in second.frames], "the red ball")
    assert second.result.p_yes == fresh.p_yes and second.result.boxes == fresh.boxes


def test_two_services_sharing_a_grounder_keep_each_others_cached_frames(tiny_model_dir):
    """Two cameras served by one Grounder at once: a frame arriving at one service evicts only the frames its own
    window let go, so the other's next query still finds its frames' features."""
    from stvg_ros.config import ServingConfig
    from stvg_ros.stream.requests import GroundingRequest
    from stvg_ros.stream.service import GroundingService

    shared = Grounder(load_adapter(tiny_model_dir("llava_next_video")),
                      dict(num_frames=4, use_lra=False, use_tas=False, use_dsth=False))
    services = [GroundingService(ServingConfig(window_duration=100.0, window_max_frames=4, min_frames=2))
                for _ in range(2)]
    answers = []

    def ask(service):
        before = shared.cache_stats().by_kind.get("visual", {}).get("hits", 0)
        service.submit(GroundingRequest("q", "the red ball"), answers.append)
        service.run_pending()
        return shared.cache_stats().by_kind.get("visual", {}).get("hits", 0) - before

    for service in services:
        service.start(shared, threaded=False)
    a, b = services
    for i, f in enumerate(random_frames(4, 48, 64, seed=1)):
        a.ingest((i + 1) * 10**9, lambda f=f: f)
    assert ask(a) == 0
    for i, f in enumerate(random_frames(6, 48, 64, seed=2)):  # b's window slides: 2 of its own frames leave
        b.ingest((i + 1) * 10**9, lambda f=f: f)
    assert ask(b) == 0
    assert ask(a) == 4  # every frame a samples is still cached
    assert [x.status for x in answers] == ["answered"] * 3
    for service in services:
        service.stop()


def test_input_side_is_what_the_tower_is_fed(adapter):
    """The node keeps frames at twice ``input_side``: Qwen's frame budget side, LLaVA's tower side."""
    side = adapter.input_side
    frames = random_frames(2, side * 2, side * 2)
    if adapter.family == "qwen2_5_vl":
        assert side == adapter._target_side() and adapter.target_size(2 * side, 2 * side)[0] <= side + 28
    else:
        assert side == adapter.model.config.vision_config.image_size
    assert adapter.encode_frames(frames).num_tokens > 0
