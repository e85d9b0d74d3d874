"""Bags written with rosbags and read back without ROS: bytes, stamps, queries and ground truth."""

import json

import numpy as np
import pytest

from stvg_ros.evaluation import bags, datasets
from stvg_ros import video
from stvg_ros.image_messages import ImageError, decode_message
from stvg_ros.tube_messages import stamp_to_ns


def _frames(n, h=12, w=16, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_round_trip_raw_bytes_and_stamps(tmp_path, storage):
    frames = _frames(6)
    stamps = [1000.0 + i / 7.0 for i in range(6)]
    gt = {stamps[1]: (1.0, 2.0, 9.5, 11.0), stamps[2]: (2.0, 2.0, 10.0, 11.0)}
    q = bags.QuerySpec("q7", "the red ball rolls", gt_boxes=gt, gt_span=(stamps[1], stamps[2]),
                       attribute="the red ball", action="the ball rolls")
    path = bags.write_bag(tmp_path / "b", frames, stamps, [q], storage=storage, image_format="raw",
                          metadata={"dataset": "unit"})
    msgs = list(bags.iter_messages(path))
    images = [(t, m) for topic, _, t, m in msgs if topic == "/camera/image_raw"]
    assert len(images) == 6
    for (t, m), f, s in zip(images, frames, stamps):
        assert m.encoding == "rgb8" and m.step == 16 * 3
        assert bytes(m.data) == f.tobytes()  # bytes equal
        assert stamp_to_ns(m.header.stamp) == t == round(s * 1e9)  # header stamp = log time = video time
    contents = bags.read_bag(path)
    assert [round(s * 1e9) for s in contents.stamps] == [round(s * 1e9) for s in stamps]
    assert all(np.array_equal(contents.frames[i], f) for i, f in enumerate(frames))
    (bq,) = contents.queries
    assert (bq.query_id, bq.text, bq.attribute, bq.action) == ("q7", "the red ball rolls", "the red ball", "the ball rolls")
    # The query comes one frame period after the last frame, so a node has the whole clip.
    assert bq.stamp == pytest.approx(stamps[-1] + 1 / 7.0)
    assert set(round(t * 1e9) for t in bq.gt_boxes) == set(round(t * 1e9) for t in gt)
    for t, b in gt.items():
        got = min(bq.gt_boxes.items(), key=lambda kv: abs(kv[0] - t))[1]
        assert got == pytest.approx(b)
    assert bq.gt_span == pytest.approx((stamps[1], stamps[2]))
    assert contents.metadata["dataset"] == "unit" and contents.frame_id == "camera"


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_a_bag_recorded_with_an_older_tube_definition_reads_with_its_own(tmp_path, monkeypatch, storage):
    """A bag made before a field was added to Tube.msg (here: without camera_margin, in the middle of the message)
    is read with the definitions it carries: the ground truth's boxes and span come back, not misread bytes."""
    old = tmp_path / "old_msg"
    old.mkdir()
    for p in bags.find_msg_dir().glob("*.msg"):
        text = p.read_text()
        if p.stem == "Tube":
            assert "float32 camera_margin\n" in text
            text = text.replace("float32 camera_margin\n", "")
        (old / p.name).write_text(text)
    stamps = [50.0 + i / 5.0 for i in range(4)]
    gt = {stamps[1]: (1.0, 2.0, 9.5, 11.0), stamps[2]: (2.0, 3.0, 10.0, 12.0)}
    q = bags.QuerySpec("q1", "the red ball", gt_boxes=gt, gt_span=(stamps[1], stamps[2]))
    today, make_gt = bags.typestore(), bags.ground_truth_message

    def old_ground_truth(store, *args, **kw):  # what the older package wrote: its Tube, without the new field
        tube, cls = make_gt(today, *args, **kw), store.types["stvg_ros/msg/Tube"]
        return cls(**{f: getattr(tube, f) for f in cls.__dataclass_fields__ if f != "__msgtype__"})

    monkeypatch.setenv("STVG_ROS_MSG_DIR", str(old))
    monkeypatch.setattr(bags, "_TYPESTORE", None)
    monkeypatch.setattr(bags, "ground_truth_message", old_ground_truth)
    path = bags.write_bag(tmp_path / "old", _frames(4), stamps, [q], storage=storage)
    monkeypatch.delenv("STVG_ROS_MSG_DIR")
    monkeypatch.setattr(bags, "_TYPESTORE", None)
    assert "camera_margin" in bags.typestore().generate_msgdef("stvg_ros/msg/Tube")[0]  # today's definitions
    (bq,) = bags.read_bag(path).queries
    assert bq.gt_span == pytest.approx((stamps[1], stamps[2]))
    assert {round(t * 1e9): b for t, b in bq.gt_boxes.items()} == {round(t * 1e9): b for t, b in gt.items()}
    [(_, _, _, tube)] = [m for m in bags.iter_messages(path) if m[1] == "stvg_ros/msg/Tube"]
    assert tube.query == "the red ball" and not hasattr(tube, "camera_margin")


def test_compressed_images_keep_their_bytes(tmp_path):
    frames = _frames(3)
    path = bags.write_bag(tmp_path / "c", frames, [1.0, 1.1, 1.2], image_format="png", storage="mcap")
    (_, _, _, m0), *_ = bags.iter_messages(path)
    assert m0.format == "png"
    store = bags.typestore()
    again = bags.image_message(store, frames[0], 1.0, fmt="png")
    assert bytes(m0.data) == bytes(again.data)
    contents = bags.read_bag(path, frame_positions=2)
    assert sorted(contents.frames) == [0, 2]  # uniform sample of positions
    assert np.array_equal(contents.frames[2], frames[2])  # png is lossless
    assert contents.image_topic == "/camera/image_raw/compressed"


def test_bag_from_dataset_sample(tmp_path):
    vid = tmp_path / "v.avi"
    n = 12
    video.write_video(vid, [np.full((24, 32, 3), i * 20, np.uint8) for i in range(n)], fps=4)
    sample = datasets.Sample(key="k1", video="v.avi", query="the bright square", gt_span=(3, 6),
                             gt_boxes={f: (1.0, 1.0, 10.0 + f, 12.0) for f in range(3, 7)}, num_frames=n, fps=4.0,
                             image_size=(24, 32), inclusive=True, dataset="hcstvg_v1", video_path=vid)
    path = bags.make_bag_from_sample(sample, tmp_path / "bag", storage="sqlite3")
    c = bags.read_bag(path)
    assert len(c.stamps) == n
    assert c.stamps == pytest.approx([bags.DEFAULT_START_TIME + i / 4 for i in range(n)])
    assert [int(round(f.mean() / 20)) for _, f in sorted(c.frames.items())] == list(range(n))
    (q,) = c.queries
    assert q.query_id == "k1" and q.text == "the bright square"
    assert q.gt_span == pytest.approx((bags.DEFAULT_START_TIME + 3 / 4, bags.DEFAULT_START_TIME + 6 / 4))
    assert len(q.gt_boxes) == 4
    assert c.metadata["inclusive"] is True and c.metadata["gt_span"] == [3, 6] and c.metadata["key"] == "k1"


def test_bag_directories_are_not_named_like_videos():
    assert bags.bag_name("12_abc.mp4") == "12_abc" and bags.bag_name("v.AVI") == "v"
    assert bags.bag_name("vidstg/1234:q7") == "vidstg_1234_q7"  # VidSTG-style keys: no video suffix
    assert bags.bag_name("a.b.mkv") == "a.b"


def test_make_bag_command(tmp_path):
    vid = tmp_path / "v.avi"
    video.write_video(vid, [np.full((24, 32, 3), i * 20, np.uint8) for i in range(5)], fps=5)
    out = tmp_path / "cli.mcap.d"
    assert bags.main(["--video", str(vid), "--query", "a thing", "--output", str(out)]) == 0
    c = bags.read_bag(out)
    assert len(c.stamps) == 5 and c.queries[0].text == "a thing" and c.queries[0].gt_boxes is None
    assert bags.main(["--video", str(vid), "--output", str(out)]) == 2  # exists: asks for --overwrite
    assert bags.main(["--video", str(vid), "--output", str(out), "--overwrite", "--image-format", "raw"]) == 0
    assert bags.read_bag(out).image_topic == "/camera/image_raw"


def test_errors(tmp_path):
    with pytest.raises(bags.BagError, match="storage"):
        bags.write_bag(tmp_path / "x", _frames(1), [1.0], storage="zip")
    with pytest.raises(bags.BagError, match="no frame"):
        bags.write_bag(tmp_path / "y", [], [])
    with pytest.raises(bags.BagError, match="does not exist"):
        bags.read_bag(tmp_path / "nope")
    msg = bags.typestore().types["sensor_msgs/msg/Image"](
        header=bags._header(bags.typestore(), 0.0, ""), height=1, width=1, encoding="32FC1", is_bigendian=0,
        step=4, data=np.zeros(4, np.uint8))
    with pytest.raises(ImageError, match="encoding"):
        decode_message(msg)


def test_bgr_and_mono_decoding():
    store = bags.typestore()
    rgb = np.array([[[10, 20, 30], [40, 50, 60]]], np.uint8)
    hdr = bags._header(store, 0.0, "")
    Image = store.types["sensor_msgs/msg/Image"]
    bgr = Image(header=hdr, height=1, width=2, encoding="bgr8", is_bigendian=0, step=8,  # padded rows
                data=np.concatenate([rgb[..., ::-1].reshape(-1), [0, 0]]).astype(np.uint8))
    assert np.array_equal(decode_message(bgr), rgb)
    mono = Image(header=hdr, height=1, width=2, encoding="mono8", is_bigendian=0, step=2,
                 data=np.array([7, 9], np.uint8))
    assert decode_message(mono)[0, 1].tolist() == [9, 9, 9]


def _built_type_descriptions():
    """``share/stvg_ros/msg/*.json`` of a colcon install (rosidl's type hashes), when there is one."""
    import os
    from pathlib import Path

    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        d = Path(prefix) / "share" / "stvg_ros" / "msg"
        if prefix and (d / "Tube.json").is_file():
            return d
    here = Path(__file__).resolve().parent.parent / ".ws" / "install" / "stvg_ros" / "share" / "stvg_ros" / "msg"
    return here if (here / "Tube.json").is_file() else None


@pytest.mark.skipif(_built_type_descriptions() is None,
                    reason="no colcon-built stvg_ros (share/stvg_ros/msg/*.json) to compare the type hashes with")
def test_bag_type_hashes_match_the_built_interfaces():
    """Bags carry the same RIHS01 hashes as the colcon-built messages, so `ros2 bag play` and the
    node accept them."""
    d = _built_type_descriptions()
    store = bags.typestore()
    for name in ("GroundingQuery", "Tube", "TubeBox"):
        hashes = {h["type_name"]: h["hash_string"] for h in json.loads((d / f"{name}.json").read_text())["type_hashes"]}
        assert store.hash_rihs01(f"stvg_ros/msg/{name}") == hashes[f"stvg_ros/msg/{name}"], name
