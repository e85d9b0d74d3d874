"""Readers of the benchmarks' files, the proposals / sub-queries formats, and frame sampling."""

import json

import numpy as np
import pytest

from stvg_ros.evaluation import datasets, evaluate
from stvg_ros import video
from stvg_ros.evaluation.datasets import DatasetError


def frame_with_index(i, h=48, w=64):
    """A frame whose mean brightness encodes its index (survives MJPG compression)."""
    return np.full((h, w, 3), (i * 9) % 250, dtype=np.uint8)


def index_of(frame):
    return int(round(float(frame.mean()) / 9))


@pytest.fixture
def hcstvg(tmp_path):
    root = tmp_path / "hcstvg"
    (root / "v1_video").mkdir(parents=True)
    video.write_video(root / "v1_video" / "1_abc.avi", [frame_with_index(i) for i in range(25)], fps=5)
    anno = {
        "1_abc.avi": {"img_size": [48, 64], "img_num": 25, "st_frame": 4,
                      "bbox": [[10, 5, 20, 30]] * 5 + [[50, 30, 30, 30]],  # the last box leaves the image
                      "English": "The man in purple clothes sits down.", "st_time": 0.8, "ed_time": 1.8},
        "2_missing.mp4": {"img_size": [48, 64], "img_num": 10, "st_frame": 0, "bbox": [[0, 0, 5, 5]],
                          "English": "A woman walks.", "st_time": 0.0, "ed_time": 0.0},
    }
    path = root / "test_proc.json"
    path.write_text(json.dumps(anno))
    return path, root


def test_hcstvg_reader(hcstvg):
    path, root = hcstvg
    s1, s2 = datasets.load_dataset("hcstvg_v1", path, root)
    assert s1.key == "1_abc.avi" and s1.query == "The man in purple clothes sits down."
    assert s1.gt_span == (4, 9) and s1.inclusive and s1.dataset == "hcstvg_v1"
    assert sorted(s1.gt_boxes) == list(range(4, 10))
    assert s1.gt_boxes[4] == (10.0, 5.0, 30.0, 35.0)  # [x, y, w, h] → xyxy
    assert s1.gt_boxes[9] == (50.0, 30.0, 64.0, 48.0)  # clipped to the image
    assert s1.image_size == (48, 64) and s1.num_frames == 25
    assert s1.fps == 0.0  # none in the file: the video's own rate is used when it is decoded
    assert s1.extra["fps_from_times"] == pytest.approx(5.0)  # fallback, from st_time/ed_time over 6 frames
    assert s1.video_path == root / "v1_video" / "1_abc.avi"
    assert s2.video_path is None  # reported when the clip is loaded, not at reading time


def test_hcstvg_bad_entry(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"v.mp4": {"img_size": [1, 1], "st_frame": 0, "bbox": [], "English": "x"}}))
    with pytest.raises(DatasetError, match="img_num"):
        datasets.load_hcstvg(p)
    with pytest.raises(DatasetError, match="does not exist"):
        datasets.load_hcstvg(tmp_path / "nope.json")
    with pytest.raises(DatasetError, match="unknown dataset"):
        datasets.load_dataset("hcstvg_v3", p)


def test_vidstg_reader(tmp_path):
    boxes = [{"xmin": 1, "ymin": 2, "xmax": 11, "ymax": 12}, {}, {"xmin": 3, "ymin": 4, "xmax": 70, "ymax": 14},
             {"xmin": 0, "ymin": 0, "xmax": 5, "ymax": 5}]
    anno = {
        "0": {"vid": "0000/2401075277", "width": 64, "height": 48, "frame_count": 30, "fps": 29.97,
              "st_frame": 5, "ed_frame": 8, "target_bboxs": boxes, "qtype": "declar",
              "sentence": {"description": "there is a dog on the sofa.", "type": "", "target_id": 1},
              "target_category": "dog", "used_segment": {"begin_fid": 100, "end_fid": 129}},
        "1": {"vid": "0000/2401075277", "width": 64, "height": 48, "frame_count": 30, "fps": 29.97,
              "temp_gt": {"begin_fid": 27, "end_fid": 40}, "target_bboxs": [boxes[0]] * 14, "qtype": "inter",
              "sentence": {"description": "what is on the sofa?", "type": "", "target_id": 1},
              "target_category": "dog"},
    }
    p = tmp_path / "test_proc.json"
    p.write_text(json.dumps(anno))
    a, b = datasets.load_dataset("vidstg", p)
    assert a.gt_span == (5, 8) and not a.inclusive and a.qtype == "declar" and a.category == "dog"
    assert a.gt_boxes[5] == (1.0, 2.0, 11.0, 12.0)
    assert a.gt_boxes[6] == a.gt_boxes[5]  # an unlabelled frame holds the previous box
    assert a.gt_boxes[7] == (3.0, 4.0, 64.0, 14.0)  # clipped
    assert a.frame_offset == 100 and a.fps == pytest.approx(29.97)
    assert b.gt_span == (27, 29) and sorted(b.gt_boxes) == [27, 28, 29]  # end clipped to frame_count - 1
    assert b.qtype == "inter" and b.frame_offset == 0
    # A list-shaped file reads the same.
    p2 = tmp_path / "list_proc.json"
    p2.write_text(json.dumps([anno["0"]]))
    assert datasets.load_vidstg(p2)[0].gt_span == (5, 8)


def test_sub_queries(tmp_path, hcstvg):
    path, root = hcstvg
    sq = tmp_path / "sq.json"
    sq.write_text(json.dumps({
        "1_abc.avi": {"decompose_attribute": ["the man in purple clothes."],
                      "decompose_action": ["The man sits down."]},
        "other": {"decompose_attribute": "", "decompose_action": ["x"]},
    }))
    table = datasets.load_sub_queries(sq)
    assert set(table) == {"1_abc.avi", "other"}
    assert table["other"].attribute == ""  # a missing half: the full query is asked for it (the official code)
    s1, s2 = datasets.load_dataset("hcstvg_v1", path, root, sub_queries=sq)
    assert s1.sub_queries.attribute == "the man in purple clothes." and s1.sub_queries.action == "The man sits down."
    assert s1.sub_queries.source == "caller" and s2.sub_queries is None


def test_proposals_both_track_forms(tmp_path):
    p = tmp_path / "props.json"
    p.write_text(json.dumps({
        "1_abc": {"0": {"0": [0, 0, 10, 10], "12": [1, 1, 11, 11]},
                  "7": {"label": "person", "score": 0.8, "boxes": {"12": [5, 5, 9, 9], "24": [1, 2, 3, 4]}}},
    }))
    table = datasets.load_proposals(p)
    tracks = table["1_abc"]
    assert tracks["0"].boxes == {0: (0.0, 0.0, 10.0, 10.0), 12: (1.0, 1.0, 11.0, 11.0)} and tracks["0"].label == ""
    assert tracks["7"].label == "person" and tracks["7"].score == pytest.approx(0.8)
    # Looked up by video stem, re-keyed from frame indices to the sampled frames' stamps.
    sample = datasets.Sample(key="1_abc.avi", video="1_abc.avi", query="q", gt_span=(0, 1), gt_boxes={},
                             num_frames=25, fps=5, image_size=(48, 64), inclusive=True, dataset="hcstvg_v1")
    mine = datasets.proposals_for_sample(table, sample)
    clip = video.Clip(frames=[], frame_indices=[0, 12, 24], stamps=[0.0, 2.4, 4.8], fps=5.0)
    props = evaluate.clip_proposals(mine, clip, scale=0.5)
    assert list(props) == ["0", "7"]  # the file's order
    assert props == {"0": {0.0: (0.0, 0.0, 5.0, 5.0), 2.4: (0.5, 0.5, 5.5, 5.5)},
                     "7": {2.4: (2.5, 2.5, 4.5, 4.5), 4.8: (0.5, 1.0, 1.5, 2.0)}}
    # Round trip through the writer.
    out = datasets.save_proposals(tmp_path / "again.json", table)
    assert datasets.load_proposals(out)["1_abc"]["7"].boxes == tracks["7"].boxes
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"v": {"0": {"x": [0, 0, 1, 1]}}}))
    with pytest.raises(DatasetError, match="integer"):
        datasets.load_proposals(bad)
    bad.write_text(json.dumps({"v": {"0": {"3": [0, 0, 1]}}}))
    with pytest.raises(DatasetError, match="x_min"):
        datasets.load_proposals(bad)


def test_uniform_sampling_maps_to_annotation_frames(hcstvg):
    path, root = hcstvg
    s1 = datasets.load_hcstvg(path, root)[0]
    assert video.uniform_indices(25, 20) == np.linspace(0, 24, 20, dtype=int).tolist()
    assert video.uniform_indices(5, 20) == [0, 1, 2, 3, 4]
    clip = video.load_clip(s1.video_path, 6, s1.num_frames, s1.fps or None)
    assert clip.frame_indices == [0, 4, 9, 14, 19, 24]
    assert clip.stamps == pytest.approx([i / 5 for i in clip.frame_indices])
    # Every decoded frame is the annotated frame with that index.
    assert [index_of(f) for f in clip.frames] == clip.frame_indices
    assert clip.frame_of_stamp(1.8000001) == 9
    # An offset (VidSTG's used segment) shifts the file frames, not the annotation indices.
    shifted = video.load_clip(s1.video_path, 3, 10, 5.0, offset=10)
    assert shifted.frame_indices == [0, 4, 9] and [index_of(f) for f in shifted.frames] == [10, 14, 19]
    small = video.load_clip(s1.video_path, 2, max_side=32)
    assert small.frames[0].shape == (24, 32, 3) and small.extra["scale"] == pytest.approx(0.5)


def test_video_errors(tmp_path):
    with pytest.raises(video.VideoError, match="cannot open"):
        video.probe(tmp_path / "none.avi")
