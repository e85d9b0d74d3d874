"""Proposal-free boxes (relevance-seeded segmentation), a model directory's grounding defaults, and the
existence judgment on present and absent queries."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from stvg_ros import Grounder, GroundingConfig
from stvg_ros.config import MODEL_DEFAULTS_FILE, ConfigError, load_model_defaults
from stvg_ros.presets import apply_model_defaults
from stvg_ros.grounding.regions import _iou, frame_candidates, relevance_seeds
from stvg_ros.grounding.relevance import upsample_maps
from stvg_ros.grounding.spatial import ATTENTION_TRACK, choose_track
from stvg_ros.synthetic.generator import generate_sample
from stvg_ros.adapters.tiny_models import photo_dir

DATA = Path(__file__).parent / "data"
CELL = 28  # Qwen2.5-VL's token cell in pixels


def planted_map(size: tuple[int, int], box, spread: float = 0.25, cell: int = CELL):
    """A token-grid relevance map with a peak planted on ``box``: baseline 1, a Gaussian bump of height 4
    centred on the box with a standard deviation of ``spread`` times its size (at least half a cell), as an
    MLLM's attention concentrates on the object's core; returns (map, grid, content box)."""
    H, W = size
    rows, cols = int(np.ceil(H / cell)), int(np.ceil(W / cell))
    yy, xx = (np.arange(rows) + 0.5) * cell, (np.arange(cols) + 0.5) * cell
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    sx, sy = max(spread * (box[2] - box[0]), cell / 2), max(spread * (box[3] - box[1]), cell / 2)
    g = np.exp(-0.5 * (((xx[None] - cx) / sx) ** 2 + ((yy[:, None] - cy) / sy) ** 2))
    return (1.0 + 4.0 * g).astype(np.float32), (rows, cols), (0.0, 0.0, float(cols * cell), float(rows * cell))


def cell_peak_map(size: tuple[int, int], box, cell: int = CELL):
    """A token-grid map whose one hot cell holds the box's centre (what the synthetic model's 4x4 maps
    look like: the target's cell stands out, its neighbours a little)."""
    H, W = size
    rows, cols = int(np.ceil(H / cell)), int(np.ceil(W / cell))
    m = np.ones((rows, cols), np.float32)
    r, c = int((box[1] + box[3]) / 2 // cell), int((box[0] + box[2]) / 2 // cell)
    m[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2] = 1.5
    m[r, c] = 5.0
    return m, (rows, cols), (0.0, 0.0, float(cols * cell), float(rows * cell))


def _box_from_peak(image, box, method="auto", planted=planted_map, chain=None):
    grid_map, grid, content = planted(image.shape[:2], box)
    full, _ = upsample_maps(grid_map[None], content, image.shape[:2], max_side=None)
    cands = frame_candidates(image, grid_map, full[0], grid, content, method, 1, 0.3, 0.5, chain=chain)
    return cands[0][0] if cands else None


def pan_ious(image, box, step: int, frames: int, method: str = "auto", chain_frames: int = 0) -> list[float]:
    """Box IoU per frame while the camera pans ``step`` px a frame across ``image`` (a ``frames``-frame
    crop sliding right), a peak planted on the moving ``box`` each frame; ``chain_frames``: frames per
    :class:`~stvg_ros.grounding.regions.ColourChain` (0: every cut cold).  bench/bench_photo_pans.py uses it too."""
    from stvg_ros.grounding.regions import ColourChain

    width = image.shape[1] - frames * step
    chain, out = None, []
    for t in range(frames):
        if chain_frames and t % chain_frames == 0:
            chain = ColourChain()
        frame = np.ascontiguousarray(image[:, t * step:t * step + width])
        moved = (box[0] - t * step, box[1], box[2] - t * step, box[3])
        got = _box_from_peak(frame, moved, method, chain=chain)
        out.append(0.0 if got is None else _iou(got, moved))
    return out


def _skimage_data() -> Path | None:
    return photo_dir("astronaut.png")


def test_seeds_are_local_maxima_best_first():
    m = np.ones((4, 4), np.float32)
    m[0, 0], m[2, 3], m[2, 2] = 5.0, 4.0, 3.0
    assert [(r, c) for r, c, _ in relevance_seeds(m, 3, 0.3)] == [(0, 0), (2, 3)]  # (2, 2) is no maximum
    assert relevance_seeds(np.ones((3, 3)), 3, 0.3) == []  # a flat map seeds nothing


@pytest.mark.parametrize("method", ["auto", "grabcut", "flood"])
def test_segment_fits_a_synthetic_object_much_smaller_or_larger_than_a_cell(method):
    """The seed cell is 28 px; the box must follow the object (16..34 px), not the cell."""
    hits = []
    for seed in range(6):
        frames, s = generate_sample(seed, "val")
        t = s["st_frame"]
        box = s["tracks"][s["target"]][t]
        got = _box_from_peak(frames[t], box, method, planted=cell_peak_map)
        hits.append(got is not None and _iou(got, box) >= 0.7)
    assert sum(hits) >= 5, hits


def test_real_photographs_hand_boxes():
    """A relevance peak planted on an object of a real photograph (scikit-image's bundled images) gives a
    box matching the hand-annotated one (IoU >= 0.5) on most objects (measured: 8 of 14; the misses are
    thin or textured parts: the shuttle model, the spoon, the cat's nose, the motorcycle and its parts)."""
    root = _skimage_data()
    if root is None:
        pytest.skip("scikit-image is not installed: `pip install --no-deps -r requirements/test.txt` "
                    "(only its bundled photographs are read)")
    spec = json.loads((DATA / "photo_boxes.json").read_text())
    ious = {}
    for name, objects in spec["boxes"].items():
        image = cv2.cvtColor(cv2.imread(str(root / name)), cv2.COLOR_BGR2RGB)
        for obj, box in objects.items():
            got = _box_from_peak(image, box)
            ious[f"{name}:{obj}"] = 0.0 if got is None else _iou(got, box)
    good = [k for k, v in ious.items() if v >= 0.5]
    assert len(good) > len(ious) / 2, ious
    # the head, the cat's eyes and the cup are clean objects: they must be among the fits
    assert {"astronaut.png:head", "chelsea.png:left eye", "coffee.png:cup"} <= set(good), ious


def test_choose_track_without_proposals_segments_the_frames():
    """No proposals: the track is made of segments of the frames, seeded by the peaks, linked over time."""
    T = 6

    def inside_a_cell(b):  # the peak cell holds the object's centre clearly (not on a cell border)
        cx, cy = (b[0] + b[2]) / 2 % CELL, (b[1] + b[3]) / 2 % CELL
        return 6 <= cx <= CELL - 6 and 6 <= cy <= CELL - 6

    seed = next(k for k in range(100) if all(inside_a_cell(b) for t, b in
                                             generate_sample(k, "val")[1]["tracks"][
                                                 generate_sample(k, "val")[1]["target"]].items() if t < T))
    frames, s = generate_sample(seed, "val")
    target = s["tracks"][s["target"]]
    maps, grids = [], None
    for t in range(T):
        m, grids, content = cell_peak_map((112, 112), target[t])
        maps.append(m)
    maps = np.stack(maps)
    best, tracks, _, _, _ = choose_track(maps, grids, content, (112, 112), list(range(T)), None, 0.5, 1e-3,
                                         frames=list(frames[:T]), box_method="auto", box_seeds=2)
    assert str(best.track_id).startswith(ATTENTION_TRACK + ":")
    assert all(b is not None and _iou(b, target[t]) >= 0.7 for t, b in enumerate(best.boxes)), best.boxes
    cells, *_ = choose_track(maps, grids, content, (112, 112), list(range(T)), None, 0.5, 1e-3,
                             frames=list(frames[:T]), box_method="cells")
    assert cells.track_id == ATTENTION_TRACK  # the relevance-only track of earlier versions
    # frames segmented in parallel threads give exactly the boxes of one thread (GrabCut's RNG is per thread)
    import stvg_ros.grounding.spatial as spatial

    noisy = maps + np.random.default_rng(0).random(maps.shape) * 0.5  # several seeds per frame: GrabCut runs
    runs = []
    for threads in (1, 4):
        spatial.SEGMENT_THREADS = threads
        try:
            runs.append(spatial.segment_tracks(list(frames[:T]), noisy, grids, content, (112, 112), 0.5, "grabcut"))
        finally:
            spatial.SEGMENT_THREADS = 0
    assert [(t.track_id, t.boxes) for t in runs[0]] == [(t.track_id, t.boxes) for t in runs[1]]


# --- a model directory's grounding defaults -------------------------------------------------------

def test_model_defaults_apply_under_the_callers_config(tiny_model_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir("qwen2_5_vl"), model)
    (model / MODEL_DEFAULTS_FILE).write_text(json.dumps(
        {"_about": "test", "found_threshold": 0.3, "span_rule": "grow"}))
    assert load_model_defaults(model) == {"found_threshold": 0.3, "span_rule": "grow"}
    g = Grounder.from_pretrained(model, device="cpu", config={"num_frames": 4})
    assert g.config.found_threshold == 0.3 and g.config.span_rule == "grow" and g.config.num_frames == 4
    assert g.applied_defaults == {"found_threshold": 0.3, "span_rule": "grow"}
    assert g.model_defaults == {"found_threshold": 0.3, "span_rule": "grow"}
    # the caller's explicit (non-default) value wins
    g = Grounder.from_pretrained(model, device="cpu", config={"found_threshold": 0.7})
    assert g.config.found_threshold == 0.7 and g.applied_defaults == {"span_rule": "grow"}
    # a new config (a node's live parameter change) keeps the model's defaults under it
    g.config = GroundingConfig(num_frames=5, device="cpu")
    assert g.config.found_threshold == 0.3 and g.config.num_frames == 5
    # switched off: the class defaults
    g = Grounder.from_pretrained(model, device="cpu", config={"use_model_defaults": False})
    assert g.config.found_threshold == 0.5 and g.applied_defaults == {}
    (model / MODEL_DEFAULTS_FILE).write_text(json.dumps({"found_treshold": 0.3}))
    with pytest.raises(ConfigError, match="grounding_defaults.json.*found_treshold"):
        load_model_defaults(model)


def test_apply_model_defaults_without_a_file_changes_nothing(tmp_path):
    cfg = GroundingConfig()
    assert load_model_defaults(tmp_path) == {}
    assert apply_model_defaults(cfg, {}) == (cfg, {})


# --- the existence judgment of the shipped model ----------------------------------------------------

def test_shipped_model_finds_present_targets_and_rejects_absent_colours():
    """With its own found_threshold (grounding_defaults.json, chosen on validation) the shipped model finds
    present targets and rejects queries naming a colour that is not in the clip (val seeds; the bench
    reports the rates, and that absent shapes and actions are NOT rejected: the model did not learn them)."""
    from stvg_ros.adapters.default_model import REPO_MODEL_DIR
    from stvg_ros.synthetic.bench import absent_queries

    if not (REPO_MODEL_DIR / "config.json").is_file():
        pytest.skip("the shipped model is not in this checkout")
    assert load_model_defaults(REPO_MODEL_DIR)["found_threshold"] < 0.5
    g = Grounder.from_pretrained(REPO_MODEL_DIR, device="cpu",
                                 config={"num_frames": 20, "use_lra": False, "use_tas": False, "use_dsth": False,
                                         "box_method": "cells"})
    present, absent = [], []
    for seed in range(200, 210):
        frames, s = generate_sample(seed, "val")
        stamps = [t / s["fps"] for t in range(len(frames))]
        present.append(g.ground(list(frames), stamps, s["query"]).found)
        absent.append(g.ground(list(frames), stamps, absent_queries(s)["colour"]).found)
    assert sum(present) >= 7, present
    assert sum(absent) <= 1, absent


def _spy_grabcut(monkeypatch) -> list[tuple[int, int]]:
    """Every GrabCut call's ``(mode, iterations)``."""
    seen = []
    real = cv2.grabCut

    def spy(img, mask, rect, bgd, fgd, iterations, mode):
        seen.append((mode, iterations))
        return real(img, mask, rect, bgd, fgd, iterations, mode)

    monkeypatch.setattr(cv2, "grabCut", spy)
    return seen


def test_box_grabcut_iterations_and_chain_reach_grabcut(monkeypatch):
    """The config's GrabCut iterations are the ones every cold cut (k-means) of a grounding runs with; a cut that
    starts from the previous frame's colour models runs one graph cut with them as they are; with
    ``box_grabcut_chain: 1`` every cut is cold, with the default the first frame of each chain only."""
    from fake_adapter import FakeAdapter, clip_with_square

    seen = _spy_grabcut(monkeypatch)
    frames, stamps, _ = clip_with_square(num_frames=6)
    cold, warm = cv2.GC_INIT_WITH_MASK, cv2.GC_EVAL_FREEZE_MODEL
    for iterations in (GroundingConfig.box_grabcut_iterations, 3):
        for chain in (1, GroundingConfig.box_grabcut_chain):
            seen.clear()
            Grounder(FakeAdapter(), GroundingConfig(num_frames=6, use_lra=False, box_method="grabcut",
                                                    box_grabcut_iterations=iterations, box_grabcut_chain=chain)
                     ).ground(frames, stamps, "the red square")
            assert seen and {it for mode, it in seen if mode == cold} == {iterations}
            if chain == 1:
                assert {mode for mode, _ in seen} == {cold}
            else:  # the square moves slowly: its seed region overlaps the previous frame's, so the cut is warm
                assert {it for mode, it in seen if mode == warm} == {1}
                assert 0 < sum(mode == cold for mode, _ in seen) < len(seen)
    for field in ("box_grabcut_iterations", "box_grabcut_chain"):
        with pytest.raises(ConfigError, match=field):
            GroundingConfig(**{field: 0})


def test_colour_chain_fits_a_panning_camera_as_well_as_cold_cuts(monkeypatch):
    """Real photographs, the camera panning 8 px a frame over 6 frames, a relevance peak planted on a clean object
    each frame: cuts that start from the previous frame's colour models (one graph cut, no k-means, no
    re-learning) fit the object on every frame and about as well as cold cuts (docs/proposals.md has the
    figures on all 14 hand boxes)."""
    root = _skimage_data()
    if root is None:
        pytest.skip("scikit-image is not installed: `pip install --no-deps -r requirements/test.txt` "
                    "(only its bundled photographs are read)")
    spec = json.loads((DATA / "photo_boxes.json").read_text())
    seen = _spy_grabcut(monkeypatch)
    step, n = 8, 6
    for name, obj in (("astronaut.png", "head"), ("chelsea.png", "left eye"), ("coffee.png", "cup")):
        image = cv2.cvtColor(cv2.imread(str(root / name)), cv2.COLOR_BGR2RGB)
        box = spec["boxes"][name][obj]
        ious = {"cold": pan_ious(image, box, step, n, "grabcut")}
        seen.clear()
        ious["chain"] = pan_ious(image, box, step, n, "grabcut", chain_frames=n)
        # frames after the first started from the previous frame's models
        assert [m for m, _ in seen] == [cv2.GC_INIT_WITH_MASK] + [cv2.GC_EVAL_FREEZE_MODEL] * (n - 1)
        assert min(ious["chain"]) >= 0.5, (name, obj, ious)
        assert np.mean(ious["chain"]) >= np.mean(ious["cold"]) - 0.05, (name, obj, ious)


def test_grabcut_roi_is_resized_before_its_channels_are_swapped_with_the_same_pixels():
    """grabcut_box shrinks the RGB ROI first and swaps it to BGR after (no full-resolution copy): OpenCV's
    INTER_AREA works per channel, so the pixels equal the swap-then-resize the colour models were tuned on,
    on odd sizes, strided ROIs and upscaling as well."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    for (y0, y1, x0, x1), size in [((13, 301, 7, 250), (96, 80)), ((0, 480, 0, 640), (96, 72)),
                                   ((100, 131, 200, 223), (96, 96)), ((5, 9, 5, 9), (4, 4))]:
        roi = image[y0:y1, x0:x1]
        old = cv2.resize(np.ascontiguousarray(roi[:, :, ::-1]), size, interpolation=cv2.INTER_AREA)
        new = np.ascontiguousarray(cv2.resize(roi, size, interpolation=cv2.INTER_AREA)[:, :, ::-1])
        assert np.array_equal(old, new)


def test_colour_chain_follows_a_fast_mover_but_not_another_object():
    """A seed region that moved further than its size overlaps nothing of the previous frame's (IoU 0), yet it
    is the same object with the same colours: the chain hands it the previous cut's models when the centre moved
    at most ``MAX_SHIFT`` region sizes and the size is within 2x; a region of another size starts cold."""
    from stvg_ros.grounding.regions import ColourChain

    chain = ColourChain()
    bgd, fgd = np.full((1, 65), 1.0), np.full((1, 65), 2.0)
    chain.keep((100.0, 100.0, 140.0, 180.0), bgd, fgd)
    chain.next_frame()
    moved = (145.0, 110.0, 185.0, 190.0)  # 45 px right: no overlap, centre shift 0.75 of the region's size
    assert _iou(moved, (100.0, 100.0, 140.0, 180.0)) == 0.0
    got = chain.start(moved)
    assert got is not None and np.array_equal(got[0], bgd) and np.array_equal(got[1], fgd)
    assert got[0] is not bgd  # a copy: the cut may change it
    assert chain.start((300.0, 100.0, 340.0, 180.0)) is None  # 5 sizes away
    assert chain.start((100.0, 100.0, 220.0, 260.0)) is None  # 6x the area: another object


def test_region_growing_on_a_working_size_is_unchanged_on_small_frames_and_close_on_large_ones():
    """Region growing works on ROIs of at most ``FLOOD_SIDE`` pixels: on the synthetic world's 112 px frames
    every ROI fits and the boxes are the ones of full resolution, bit for bit; on a 640x480 camera frame a
    flat object's box is the full-resolution one within a couple of pixels."""
    from stvg_ros.grounding.regions import FLOOD_SIDE, _at_most, flood_box, flood_parts_box

    small = np.zeros((112, 112, 3), np.uint8)
    small[35:65, 30:60] = (40, 220, 40)
    prior = np.zeros((112, 112), np.float32)
    prior[28:72, 28:72] = 1.0
    rect = (28.0, 28.0, 72.0, 72.0)
    for fn, opts in ((flood_box, {}), (flood_parts_box, {"max_parts": 4})):
        assert _at_most(FLOOD_SIDE, fn, small, prior, rect, 14.0, **opts) == fn(small, prior, rect, 14.0, **opts)
    big = np.full((480, 640, 3), 90, np.uint8)
    big[150:330, 200:390] = (200, 40, 40)
    prior = np.zeros((480, 640), np.float32)
    prior[120:360, 170:420] = 1.0
    full = flood_box(big, prior, (170.0, 120.0, 420.0, 360.0), 60.0)
    fast = _at_most(FLOOD_SIDE, flood_box, big, prior, (170.0, 120.0, 420.0, 360.0), 60.0)
    assert full is not None and fast is not None
    assert max(abs(a - b) for a, b in zip(full, fast)) <= 3.0, (full, fast)


def test_failed_region_growing_is_retried_only_where_its_roi_fits_its_working_size(monkeypatch):
    """Issue 26 item 6, fourth pass: on a coarse grid, region growing that failed on an object in the chain's
    previous frame is tried again only where its ROI fits ``FLOOD_SIDE`` as it is (cheap: the synthetic world's 112 px
    frames, where a retry often succeeds); on a camera's frame GrabCut takes the object (before: retried on every
    frame, whatever the ROI).  Fine grids skip the retry anyway."""
    from stvg_ros.grounding import regions

    tries = []
    monkeypatch.setattr(regions, "flood_parts_box", lambda image, *a, **k: tries.append(image.shape) or None)
    monkeypatch.setattr(regions, "grabcut_box", lambda *a, **k: (1.0, 1.0, 5.0, 5.0))
    for size, fine, want in ((112, False, 3), (640, False, 1), (112, True, 1)):
        tries.clear()
        image, prior = np.zeros((size, size, 3), np.uint8), np.ones((size, size), np.float32)
        rect, chain = (0.25 * size, 0.25 * size, 0.5 * size, 0.5 * size), regions.ColourChain()
        for _ in range(3):
            assert regions.segment_box("auto", image, prior, rect, size / 8, fine_grid=fine, chain=chain) is not None
            chain.next_frame()
        assert len(tries) == want, (size, fine, tries)
    monkeypatch.setattr(regions, "RETRY_FLOOD_ON_COARSE_GRIDS", True)  # before
    tries.clear()
    image, prior, chain = np.zeros((640, 640, 3), np.uint8), np.ones((640, 640), np.float32), regions.ColourChain()
    for _ in range(3):
        regions.segment_box("auto", image, prior, (160.0, 160.0, 320.0, 320.0), 80.0, fine_grid=False, chain=chain)
        chain.next_frame()
    assert len(tries) == 3
