"""The proposal stage with real transformers detectors (tiny random ones, built and saved here):
loading through the same path as real checkpoints, detection, the offline command, the benchmark."""

import json

import numpy as np
import pytest

from stvg_ros.proposals import ProposalConfig
from stvg_ros.config import ProposalConfigError
from stvg_ros.proposals.detector import ZeroShotDetector, detector_type_of, load_detector
from stvg_ros.proposals.live import LiveProposalStage
from stvg_ros.proposals.tiny import TINY_KINDS, tiny_detector


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    return {k: tiny_detector(k, tmp_path_factory.mktemp(k)) for k in TINY_KINDS}


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_tiny_detector_loads_like_a_real_checkpoint_and_detects(tiny_dirs, kind):
    path = tiny_dirs[kind]
    assert detector_type_of(path) == kind
    det = load_detector(ProposalConfig(detector_path=path, device="cpu"))
    assert det.kind == kind and not det.model.training
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (72, 96, 3), dtype=np.uint8), rng.integers(0, 255, (90, 60, 3), dtype=np.uint8)]
    out = det.detect(frames, "Person", min_score=0.0)
    assert len(out) == 2 and det.calls == 2
    for dets, frame in zip(out, frames):
        h, w = frame.shape[:2]
        assert dets.boxes.shape[1] == 4 and len(dets.scores) == len(dets.boxes)
        if len(dets):
            assert (dets.boxes[:, [0, 2]] >= 0).all() and (dets.boxes[:, [0, 2]] <= w).all()
            assert (dets.boxes[:, [1, 3]] >= 0).all() and (dets.boxes[:, [1, 3]] <= h).all()
            assert (dets.boxes[:, 2] > dets.boxes[:, 0]).all()
            assert set(dets.labels) == {"person"}
            assert (np.diff(dets.scores) <= 0).all()  # NMS returns best first
    # thresholds are honoured: nothing below box_threshold comes back by default
    for dets in det.detect(frames, "person"):
        assert (dets.scores > det.box_threshold).all()


def test_unknown_or_missing_detector_gives_a_clear_error(tmp_path, tiny_dirs):
    with pytest.raises(ProposalConfigError, match="does not exist"):
        ZeroShotDetector.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "detr"}))
    with pytest.raises(ProposalConfigError, match="Grounding DINO"):
        detector_type_of(tmp_path)
    with pytest.raises(ValueError, match="non-empty phrase"):
        ZeroShotDetector.from_pretrained(tiny_dirs["owlv2"], device="cpu").detect([np.zeros((8, 8, 3), np.uint8)], " ")


def test_live_stage_runs_a_tiny_detector_in_the_background(tiny_dirs):
    cfg = ProposalConfig(enabled=True, detector_path=tiny_dirs["grounding_dino"], device="cpu", detect_every=4,
                         rate_hz=0, max_backlog=50, query_wait_s=30.0)
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(12)]
    with LiveProposalStage.from_config(cfg) as stage:
        stamps = [i / 10 for i in range(12)]
        for f, s in zip(frames, stamps):
            stage.add_frame(f, s)
        tracks = stage.tracks_for(stamps[::3])
        calls = stage.detector.calls
        assert calls == 3  # keyframes 0, 4, 8 detected in the background, nothing more for the query
        assert stage.tracks_for(stamps[::3]) == tracks and stage.detector.calls == calls
        assert stage.stats()["last_error"] == ""
    assert all(set(t.boxes) <= set(stamps[::3]) for t in tracks)


def test_offline_command_writes_a_valid_proposals_file(tmp_path, tiny_dirs, capsys):
    from stvg_ros.evaluation.datasets import load_proposals
    from stvg_ros.proposals.cli import main
    from stvg_ros.video import write_video

    videos = tmp_path / "videos"
    videos.mkdir()
    rng = np.random.default_rng(2)
    sizes = {"a.mp4": 23, "b.mp4": 12}
    for name, n in sizes.items():
        write_video(videos / name, [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(n)], fps=10)
    out = tmp_path / "proposals.json"
    assert main(["--detector", tiny_dirs["grounding_dino"], "--videos", str(videos), "--out", str(out),
                 "--device", "cpu", "--detect-every", "5", "--phrase", "person"]) == 0
    assert "wrote" in capsys.readouterr().out
    table = load_proposals(out)
    assert set(table) == set(sizes)
    raw = json.loads(out.read_text())
    n_tracks = 0
    for key, tracks in table.items():
        for tid, track in tracks.items():
            n_tracks += 1
            frames = sorted(track.boxes)
            assert frames == list(range(frames[0], frames[-1] + 1))  # a box on every frame of its span
            assert 0 <= frames[0] and frames[-1] < sizes[key]
            assert track.label == "person" and 0.0 < track.score <= 1.0
            assert all(0 <= b[0] < b[2] <= 64 and 0 <= b[1] < b[3] <= 48 for b in track.boxes.values())
            assert set(raw[key][tid]) == {"label", "score", "boxes"}
    assert n_tracks > 0  # random weights score boxes high: tracks exist, meaningless but well-formed


def test_benchmark_reports_stage_time_per_frame():
    from stvg_ros.proposals.bench import benchmark

    for kind in TINY_KINDS:
        result = benchmark(kind=kind, frames=10, size=(48, 64), config=ProposalConfig(detect_every=5, rate_hz=0))
        assert result["detector"] == kind
        assert result["detector_ms_per_keyframe"] > 0 and result["stage_ms_per_frame"] > 0
        assert result["tracker_ms_per_keyframe"] >= 0 and result["query_new_phrase_ms"] > 0


def _clipped_valid(boxes, scores, h, w):
    boxes = np.array(boxes, np.float32).reshape(-1, 4).copy()
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
    ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    order = np.argsort(-np.asarray(scores)[ok], kind="stable")
    return boxes[ok][order], np.asarray(scores)[ok][order]


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_our_post_processing_matches_transformers(tiny_dirs, kind):
    """Same boxes and scores as the processor's own post-processing (NMS off, no text threshold)."""
    import torch

    det = ZeroShotDetector.from_pretrained(tiny_dirs[kind], device="cpu", nms_iou=1.0, text_threshold=0.0)
    frame = np.random.default_rng(3).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    ours = det.detect([frame], "person", min_score=0.3)[0]
    with torch.inference_mode():
        if kind == "grounding_dino":
            inputs = det.processor(images=[frame], text=[["person"]], return_tensors="pt")
            outputs = det.model(**inputs)
            ref = det.processor.post_process_grounded_object_detection(
                outputs, inputs["input_ids"], threshold=0.3, text_threshold=0.0, target_sizes=[(60, 80)])[0]
        else:
            text = det.processor.tokenizer(["person"], padding="max_length", max_length=16, return_tensors="pt")
            outputs = det.model(pixel_values=det._owlv2_pixels(frame), **text)
            ref = det.processor.post_process_grounded_object_detection(
                outputs, threshold=0.3, target_sizes=[(60, 80)])[0]
    ref_boxes, ref_scores = _clipped_valid(ref["boxes"].numpy(), ref["scores"].numpy(), 60, 80)
    assert len(ref_boxes) > 0
    np.testing.assert_allclose(ours.boxes, ref_boxes, atol=1e-3)
    np.testing.assert_allclose(ours.scores, ref_scores, atol=1e-5)


def test_offline_command_reads_a_bag_and_takes_the_phrase_from_its_query(tmp_path, tiny_dirs):
    from stvg_ros.evaluation.bags import QuerySpec, write_bag
    from stvg_ros.evaluation.datasets import load_proposals
    from stvg_ros.proposals.cli import main

    rng = np.random.default_rng(4)
    frames = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(9)]
    bag = write_bag(tmp_path / "run1", frames, [10.0 + i / 10 for i in range(9)],
                    queries=[QuerySpec("q", "the red car moving left")])
    out = tmp_path / "p.json"
    assert main(["--detector", tiny_dirs["grounding_dino"], "--bag", str(bag), "--out", str(out),
                 "--device", "cpu", "--detect-every", "4"]) == 0
    tracks = load_proposals(out)["run1"]
    assert tracks and {t.label for t in tracks.values()} == {"car"}
    assert all(0 <= f < 9 for t in tracks.values() for f in t.boxes)


def test_offline_command_over_an_hcstvg_style_dataset(tmp_path, tiny_dirs):
    from stvg_ros.evaluation.datasets import load_dataset, load_proposals, proposals_for_sample
    from stvg_ros.proposals.cli import main
    from stvg_ros.video import write_video

    rng = np.random.default_rng(5)
    (tmp_path / "v1_video").mkdir()
    write_video(tmp_path / "v1_video" / "clip1.mp4",
                [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(15)], fps=10)
    anno = tmp_path / "test_proc.json"
    anno.write_text(json.dumps({"clip1.mp4": {
        "img_size": [48, 64], "img_num": 15, "st_frame": 3, "bbox": [[1, 2, 10, 10]] * 5,
        "English": "The woman in red walks to the car.", "st_time": 0.3, "ed_time": 0.7}}))
    out = tmp_path / "p.json"
    assert main(["--detector", tiny_dirs["grounding_dino"], "--dataset", "hcstvg_v1", "--annotations", str(anno),
                 "--video-root", str(tmp_path), "--out", str(out), "--device", "cpu", "--detect-every", "5"]) == 0
    sample = load_dataset("hcstvg_v1", anno, tmp_path)[0]
    tracks = proposals_for_sample(load_proposals(out), sample)
    assert tracks and {t.label for t in tracks.values()} == {"person"}  # "woman" → person
    assert all(0 <= f < 15 for t in tracks.values() for f in t.boxes)
