"""``stvg-eval`` end to end on a handful of queries with a tiny model (core mode), from a dataset
and from bags: the report's numbers are the metrics of the per-query results."""

import json

import numpy as np
import pytest
import yaml

from stvg_ros.evaluation import bags, datasets, evaluate, items, metrics, reports, scoring
from stvg_ros import video
from stvg_ros.proposals.tracks import Track

FPS = 5
N_FRAMES = 15


def _video(path, shift):
    frames = []
    for i in range(N_FRAMES):
        f = np.full((48, 64, 3), 40, np.uint8)
        x = 4 + 2 * i + shift
        f[10:30, x:x + 12] = (220, 30, 30)
        frames.append(f)
    video.write_video(path, frames, FPS)


@pytest.fixture(scope="module")
def hcstvg(tmp_path_factory):
    root = tmp_path_factory.mktemp("hc")
    (root / "v1_video").mkdir()
    anno, props, subq = {}, {}, {}
    for k in range(3):
        name = f"{k}_clip.avi"
        _video(root / "v1_video" / name, shift=k)
        st = 2 + k
        n_box = 6 + k
        anno[name] = {"img_size": [48, 64], "img_num": N_FRAMES, "st_frame": st,
                      "bbox": [[4 + 2 * (st + i) + k, 10, 12, 20] for i in range(n_box)],
                      "English": "the red box moves right.", "st_time": st / FPS, "ed_time": (st + n_box - 1) / FPS}
        if k < 2:  # proposals for two videos: the true track and a distractor
            props[name.split(".")[0]] = {
                "1": {"label": "box", "score": 0.9,
                      "boxes": {str(f): [4 + 2 * f + k, 10, 16 + 2 * f + k, 30] for f in range(N_FRAMES)}},
                "2": {str(f): [40, 30, 60, 46] for f in range(0, N_FRAMES, 2)},
            }
    subq["0_clip.avi"] = {"decompose_attribute": ["the red box."], "decompose_action": ["the box moves right."]}
    (root / "test_proc.json").write_text(json.dumps(anno))
    (root / "props.json").write_text(json.dumps(props))
    (root / "subq.json").write_text(json.dumps(subq))
    return root


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir):
    return tiny_model_dir("qwen2_5_vl")


def _config(tmp_path, root, model, **eval_extra):
    cfg = {
        "grounding": {"num_frames": 6, "device": "cpu", "decomposer": "rules", "lra_steps": 1},
        "eval": {"model": str(model), "dataset": "hcstvg_v1", "annotations": str(root / "test_proc.json"),
                 "videos": str(root), "proposals": str(root / "props.json"),
                 "sub_queries": str(root / "subq.json"), **eval_extra},
    }
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_core_mode_report_equals_per_query_metrics(tmp_path, hcstvg, model_dir):
    out = tmp_path / "dense"
    cfg = _config(tmp_path, hcstvg, model_dir)
    assert evaluate.main(["run", "--config", str(cfg), "--output", str(out), "--visualize", "1", "--no-progress"]) == 0
    recs = _records(out / "results.jsonl")
    assert [r["key"] for r in recs] == ["0_clip.avi", "1_clip.avi", "2_clip.avi"]
    assert not any(r.get("error") for r in recs)
    summary = json.loads((out / "summary.json").read_text())
    expected = metrics.summarize(recs)
    for k in ("count", "m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5", "gt_vIoU", "mean_latency_s"):
        assert summary[k] == pytest.approx(expected[k]), k
    assert summary["count"] == 3 and summary["setup"]["grounding"]["num_frames"] == 6
    md = (out / "summary.md").read_text()
    assert "| all | 3 |" in md and f"{summary['m_vIoU']:.2f}" in md
    # Per query: tIoU follows from the spans; the sampled frames are the paper's uniform sample.
    samples = {s.key: s for s in datasets.load_hcstvg(hcstvg / "test_proc.json", hcstvg)}
    for r in recs:
        s = samples[r["key"]]
        assert r["frame_indices"] == video.uniform_indices(N_FRAMES, 6)
        assert r["gt_span"] == list(s.gt_span)
        assert r["tiou"] == pytest.approx(metrics.tiou(tuple(r["pred_span"]), s.gt_span))
        assert 0.0 <= r["viou"] <= 1.0 and 0.0 <= r["gt_viou"] <= 1.0
        assert r["latency"] > 0 and r["sub_queries"]["attribute"]
    sq = recs[0]["sub_queries"]  # the file's decomposition is used (the grounder may trim punctuation)
    assert sq["source"] == "caller" and sq["attribute"].startswith("the red box")
    assert sq["action"].startswith("the box moves right")
    assert recs[0]["track_id"] in ("1", "2") and recs[2]["track_id"] not in ("1", "2")  # no proposals for clip 2
    # With a proposal track chosen, the dense protocol scores the track's own boxes on every frame.
    r0 = recs[0]
    if r0["track_id"] == "1":
        assert r0["gt_viou"] == pytest.approx(1.0)
    assert len(list((out / "vis").glob("*.png"))) == 1

    # Resumable: a second run computes nothing; a lost line is recomputed.
    assert evaluate.main(["run", "--config", str(cfg), "--output", str(out), "--no-progress"]) == 0
    assert len(_records(out / "results.jsonl")) == 3
    lines = (out / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text("\n".join(lines[:2]) + "\n" + lines[2][:20])  # cut mid-line
    assert evaluate.main(["run", "--config", str(cfg), "--output", str(out), "--no-progress"]) == 0
    again = reports.read_results([out / "results.jsonl"])
    assert sorted(again) == sorted(r["key"] for r in recs)
    assert again["2_clip.avi"]["viou"] == pytest.approx(recs[2]["viou"])  # deterministic recomputation

    # Shards + merge give the single run's summary.
    sh = tmp_path / "sharded"
    for i in range(2):
        assert evaluate.main(["run", "--config", str(cfg), "--output", str(sh), "--shard", f"{i}/2",
                              "--no-progress"]) == 0
    assert (sh / "results.shard0of2.jsonl").is_file() and (sh / "shard1of2" / "summary.json").is_file()
    assert len(_records(sh / "results.shard0of2.jsonl")) == 2 and len(_records(sh / "results.shard1of2.jsonl")) == 1
    assert evaluate.main(["merge", str(sh)]) == 0
    merged = json.loads((sh / "summary.json").read_text())
    assert merged["count"] == 3
    for k in ("m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5", "gt_vIoU"):
        assert merged[k] == pytest.approx(summary[k]), k


def test_sampled_protocol_and_limit(tmp_path, hcstvg, model_dir):
    out = tmp_path / "sampled"
    cfg = _config(tmp_path, hcstvg, model_dir, protocol="sampled")
    assert evaluate.main(["run", "--config", str(cfg), "--output", str(out), "--limit", "2", "--no-progress",
                          "--set", "use_tas=false"]) == 0
    recs = _records(out / "results.jsonl")
    assert len(recs) == 2
    samples = {s.key: s for s in datasets.load_hcstvg(hcstvg / "test_proc.json", hcstvg)}
    for r in recs:
        s = samples[r["key"]]
        pred = {int(f): tuple(b) for f, b in r["pred_boxes"].items()}
        # Recomputed from the stored tube, only the sampled frames count (vIoU only uses the frames
        # inside the predicted span, which are exactly the stored boxes).
        assert r["viou"] == pytest.approx(metrics.viou(pred, s.gt_boxes, tuple(r["pred_span"]), s.gt_span,
                                                       inclusive=True, frames=r["frame_indices"]), abs=1e-4)
        assert set(pred) == {f for f in r["frame_indices"] if r["pred_span"][0] <= f <= r["pred_span"][1]}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["m_vIoU"] == pytest.approx(metrics.summarize(recs)["m_vIoU"])
    assert summary["setup"]["grounding"]["use_tas"] is False


def test_bags_give_the_dataset_numbers(tmp_path, hcstvg, model_dir):
    """The same queries through bags (frames, query and truth read back from the bag) score the same."""
    samples = datasets.load_dataset("hcstvg_v1", hcstvg / "test_proc.json", hcstvg, hcstvg / "subq.json")
    bag_dir = tmp_path / "bags"
    for s in samples:
        bags.make_bag_from_sample(s, bag_dir / s.key.replace(".", "_"), image_format="png", storage="mcap")
    cfg = _config(tmp_path, hcstvg, model_dir)
    ds_out, bag_out = tmp_path / "ds", tmp_path / "bagrun"
    assert evaluate.main(["run", "--config", str(cfg), "--output", str(ds_out), "--no-progress",
                          "--proposals", ""]) == 0
    assert evaluate.main(["run", "--config", str(cfg), "--output", str(bag_out), "--no-progress",
                          "--proposals", "", "--bags", str(bag_dir)]) == 0
    a = reports.read_results([ds_out / "results.jsonl"])
    b = reports.read_results([bag_out / "results.jsonl"])
    assert sorted(a) == sorted(b)
    for k in a:
        assert b[k]["gt_span"] == a[k]["gt_span"] and b[k]["frame_indices"] == a[k]["frame_indices"]
        assert b[k]["sub_queries"] == a[k]["sub_queries"]
        for m in ("tiou", "viou", "gt_viou"):
            assert b[k][m] == pytest.approx(a[k][m], abs=1e-6), (k, m)


def test_vidstg_per_query_type(tmp_path, model_dir):
    root = tmp_path / "vidstg"
    (root / "videos" / "0001").mkdir(parents=True)
    _video(root / "videos" / "0001" / "42.avi", 0)
    box = {"xmin": 10, "ymin": 10, "xmax": 30, "ymax": 30}
    anno = {str(i): {"vid": "0001/42.avi", "width": 64, "height": 48, "frame_count": N_FRAMES, "fps": FPS,
                     "st_frame": 3, "ed_frame": 9, "target_bboxs": [box] * 7, "qtype": qt,
                     "sentence": {"description": d, "type": "", "target_id": 0}, "target_category": "box"}
            for i, (qt, d) in enumerate([("declar", "a red box moves."), ("inter", "what moves right?")])}
    (root / "test_proc.json").write_text(json.dumps(anno))
    gcfg = evaluate.GroundingConfig(num_frames=5, device="cpu", decomposer="rules", use_lra=False)
    ev = evaluate.EvalConfig(model=str(model_dir), dataset="vidstg", annotations=str(root / "test_proc.json"),
                             videos=str(root / "videos"), output=str(tmp_path / "out"))
    summary = evaluate.run(gcfg, ev, progress=False)
    recs = list(reports.read_results([tmp_path / "out" / "results.jsonl"]).values())
    assert all(not r["inclusive"] for r in recs) and not any(r.get("error") for r in recs)
    assert set(summary["per_qtype"]) == {"declar", "inter"}
    for q, block in summary["per_qtype"].items():
        expected = metrics.summarize([r for r in recs if r["qtype"] == q])
        expected.pop("per_qtype")
        assert block == pytest.approx(expected)
    # The span is written as the official code does (first, last frame); only the counting differs.
    for r in recs:
        first, last = r["pred_span"]
        assert first <= last and {first, last} <= set(r["frame_indices"])
        s = datasets.load_vidstg(root / "test_proc.json")[0]
        assert r["tiou"] == pytest.approx(metrics.tiou((first, last), s.gt_span))


def test_failures_are_recorded_not_fatal(tmp_path, hcstvg, model_dir):
    anno = json.loads((hcstvg / "test_proc.json").read_text())
    anno["9_gone.avi"] = dict(anno["0_clip.avi"])
    p = tmp_path / "with_missing.json"
    p.write_text(json.dumps(anno))
    gcfg = evaluate.GroundingConfig(num_frames=4, device="cpu", decomposer="rules", use_lra=False)
    ev = evaluate.EvalConfig(model=str(model_dir), dataset="hcstvg_v1", annotations=str(p), videos=str(hcstvg),
                             output=str(tmp_path / "o"), limit=0)
    summary = evaluate.run(gcfg, ev, progress=False)
    recs = reports.read_results([tmp_path / "o" / "results.jsonl"])
    assert "no video file" in recs["9_gone.avi"]["error"] and recs["9_gone.avi"]["viou"] == 0.0
    assert summary["count"] == 4 and summary["failed"] == 1


def test_failed_queries_make_the_command_exit_1_with_a_summary(tmp_path, hcstvg, model_dir, capsys):
    anno = json.loads((hcstvg / "test_proc.json").read_text())
    anno = {k + "_gone.avi": v for k, v in list(anno.items())[:2]}  # every video missing: every query fails
    p = tmp_path / "missing.json"
    p.write_text(json.dumps(anno))
    rc = evaluate.main(["run", "--model", str(model_dir), "--dataset", "hcstvg_v1", "--annotations", str(p),
                        "--videos", str(hcstvg), "--output", str(tmp_path / "o"), "--num-frames", "4",
                        "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "2 of 2 queries failed (exit code 1)" in err and "1 x " in err and "no video file" in err


def test_core_mode_without_model_uses_the_default_model(tmp_path, hcstvg, capsys):
    from stvg_ros.adapters.default_model import choose_model

    rc = evaluate.main(["run", "--dataset", "hcstvg_v1", "--annotations", str(hcstvg / "test_proc.json"),
                        "--videos", str(hcstvg), "--output", str(tmp_path / "o"), "--num-frames", "4",
                        "--device", "cpu", "--limit", "1", "--set", "use_lra=false", "decomposer=rules",
                        "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert f"no --model: using the default model {choose_model('').directory}" in err


def test_config_errors(tmp_path, capsys):
    assert evaluate.main(["run", "--no-progress"]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"eval": {"modle": "x"}}))
    assert evaluate.main(["run", "--config", str(bad)]) == 2
    assert "unknown eval option" in capsys.readouterr().err
    assert evaluate.main(["run", "--dataset", "vidstg", "--annotations", "a.json", "--model", "m",
                          "--shard", "2/2"]) == 2
    assert "shard" in capsys.readouterr().err
    assert evaluate.main(["merge", str(tmp_path)]) == 2


def test_densify_uses_the_track_then_interpolates():
    track = Track("t", boxes={3: (0, 0, 1, 1)})
    out = scoring.densify({2: (0, 0, 10, 10), 6: (4, 0, 14, 10)}, 1, 7, track)
    assert out[1] == (0, 0, 10, 10) and out[7] == (4, 0, 14, 10)  # held beyond the sampled frames
    assert out[3] == (0, 0, 1, 1)  # the track's own box
    assert out[4] == pytest.approx((2, 0, 12, 10))  # interpolated


# --- node in the loop ---------------------------------------------------------------------------

def _built_messages_available():
    try:
        from stvg_ros.msg import GroundingQuery, Tube  # noqa: F401  (only in the colcon install space)
        import rclpy  # noqa: F401
    except ImportError:
        return False
    return True


def test_node_mode_needs_the_ros_layers_runner(tmp_path, capsys):
    """The core's stvg-eval has no node runner (it never imports ROS): it says where node mode lives."""
    frames = [np.full((24, 32, 3), i, np.uint8) for i in range(4)]
    gt = {50.0 + f / 5: (1.0, 1.0, 5.0, 5.0) for f in range(4)}
    path = bags.write_bag(tmp_path / "b", frames, [50.0 + i / 5 for i in range(4)],
                          [bags.QuerySpec("a", "the thing", gt_boxes=gt, gt_span=(50.0, 50.6))])
    assert evaluate.main(["run", "--mode", "node", "--bags", str(path), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "ros2 run stvg_ros stvg_eval" in err and "pip install" in err
    with pytest.raises(evaluate.ConfigError, match="stvg_eval"):
        evaluate.run(evaluate.GroundingConfig(), evaluate.EvalConfig(mode="node", bags=[str(path)],
                                                                     output=str(tmp_path / "o")))


@pytest.mark.ros
@pytest.mark.skipif(not _built_messages_available(),
                    reason="stvg_ros.msg is not importable: node mode needs the colcon-built package "
                           "(run the tests through `make test`, which puts the install space first)")
def test_node_mode_gives_the_tubes_of_core_mode(tmp_path, hcstvg, model_dir, monkeypatch):
    """The same bags through a node started with its defaults (its own window keeps every frame, 20
    frames, LRA on...) and through core mode: the runner plays every frame of each bag at its rate (as a
    camera would) and sets the grounding settings, not the window; the grounder samples from the node's
    window the frames core mode samples (6 of 15, the paper's sampling), and every tube is the same.
    ``tube_frames: sampled`` keeps the boxes on the sampled frames, so the frame sets are compared."""
    import os
    import subprocess
    import sys
    import time

    from stvg_ros.ros.eval_node_loop import NodeRunner

    # A private DDS domain: other test runs on this machine must not see our frames or /clock.
    domain = str(100 + os.getpid() % 100)
    monkeypatch.setenv("ROS_DOMAIN_ID", domain)
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    samples = datasets.load_dataset("hcstvg_v1", hcstvg / "test_proc.json", hcstvg)
    bag_dir = tmp_path / "bags"
    for s in samples:
        bags.make_bag_from_sample(s, bag_dir / s.key.replace(".", "_"), image_format="raw", storage="mcap")
    gcfg = evaluate.GroundingConfig(num_frames=6, decomposer="rules", lra_steps=1, device="cpu",
                                    tube_frames="sampled")
    log = open(tmp_path / "node.log", "w")
    # Only what applies at configure is given at start-up: the runner sets the rest.
    node = subprocess.Popen(
        [sys.executable, "-m", "stvg_ros.ros.node", "--ros-args", "-r", "__ns:=/stvg",
         "-p", f"model_path:={model_dir}", "-p", "device:=cpu", "-p", "decomposer:=rules",
         "-p", "image_reliability:=reliable", "-p", "image_depth:=50", "-p", "publish_debug_image:=false"],
        stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(), cwd=tmp_path)  # not the source tree
    try:
        ev = evaluate.EvalConfig(mode="node", bags=[str(bag_dir)], output=str(tmp_path / "node"), rate=2.0,
                                 node_timeout=90.0)
        t0 = time.monotonic()
        runner = NodeRunner(gcfg, ev)
        before = dict(runner._original)
        summary = evaluate.run(gcfg, ev, progress=False, runner=runner)
        elapsed = time.monotonic() - t0
        # a setting applied only at configure that differs is refused, naming the restart flag
        with pytest.raises(evaluate.ConfigError, match="-p grounding.decomposer:=model"):
            NodeRunner(gcfg.replace(decomposer="model"), ev)
    finally:
        node.terminate()
        try:
            node.wait(20)
        except subprocess.TimeoutExpired:
            node.kill()
        log.close()
    node_log = (tmp_path / "node.log").read_text()[-3000:]
    assert {"num_frames", "use_sim_time"} <= set(before), before  # it did reconfigure the node's grounding
    assert before["num_frames"] == 20
    assert not {"window_rate", "window_max_frames"} & set(before), before  # not its window: that is measured
    recs = reports.read_results([tmp_path / "node" / "results.jsonl"])
    assert len(recs) == 3 and not any(r.get("error") for r in recs.values()), (recs, node_log)
    assert [r["frames_played"] for r in recs.values()] == [N_FRAMES] * 3  # every frame, not core's sample
    expected = metrics.summarize(list(recs.values()))
    for k in ("count", "m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5", "gt_vIoU", "mean_latency_s"):
        assert summary[k] == pytest.approx(expected[k]), k
    assert elapsed < 180

    core_ev = evaluate.EvalConfig(mode="core", model=str(model_dir), bags=[str(bag_dir)],
                                  output=str(tmp_path / "core"))
    evaluate.run(gcfg, core_ev, progress=False)
    core = reports.read_results([tmp_path / "core" / "results.jsonl"])
    assert set(core) == set(recs)
    for key, c in core.items():
        n = recs[key]
        assert n["pred_span"] == c["pred_span"], key
        assert n["found"] == c["found"] and n["p_yes"] == pytest.approx(c["p_yes"], abs=1e-5), key
        # the same sampled frames: the grounder's pick from all 15 is the paper's 6 (0, 2, 5, 8, 11, 14)
        assert set(c["frame_indices"]) == {0, 2, 5, 8, 11, 14}, key
        assert set(n["pred_boxes"]) == set(c["pred_boxes"]), key
        assert {int(f) for f in c["pred_boxes"]} <= {0, 2, 5, 8, 11, 14}, key
        for f, box in c["pred_boxes"].items():
            assert n["pred_boxes"][f] == pytest.approx(box, abs=0.02), (key, f)  # float32 in the Tube
        assert n["viou"] == pytest.approx(c["viou"], abs=1e-3) and n["tiou"] == pytest.approx(c["tiou"]), key


def test_shipped_benchmark_configs_hold_the_paper_setting():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "config" / "eval"
    seen = {}
    for name in ("hcstvg_v1", "hcstvg_v2", "vidstg"):
        g, e = evaluate.load_config(root / f"{name}.yaml")
        assert e.dataset == name and e.protocol == "dense" and e.proposals and e.sub_queries
        assert (g.num_frames, g.use_lra, g.use_tas, g.use_dsth, g.lra_steps, g.lra_lr) == (20, True, True, True, 1, 8.0)
        assert (g.grounding_token, g.span_rule, g.layers, g.lra_loss) == ("auto", "topk", [], "paper")
        seen[name] = e
    assert "val_proc" in seen["hcstvg_v2"].annotations and "v2_video" in seen["hcstvg_v2"].videos


def test_set_overrides_reach_the_grounding_config():
    assert evaluate._parse_set(["use_tas=false", "layers=[6, 26]", "lra_lr=4"]) == \
        {"use_tas": False, "layers": [6, 26], "lra_lr": 4}
    with pytest.raises(evaluate.ConfigError, match="name=value"):
        evaluate._parse_set(["use_tas"])


def test_bag_items_from_a_plain_bag(tmp_path):
    """A bag written by hand (no dataset metadata): frames are image positions, spans from stamps."""
    frames = [np.full((24, 32, 3), i, np.uint8) for i in range(10)]
    stamps = [50.0 + i / 5 for i in range(10)]
    gt = {stamps[f]: (1.0, 1.0, 5.0, 5.0) for f in range(2, 6)}
    qs = [bags.QuerySpec("a", "the thing", gt_boxes=gt, gt_span=(stamps[2], stamps[5])),
          bags.QuerySpec("b", "no truth here")]
    path = bags.write_bag(tmp_path / "plain", frames, stamps, qs)
    (item,) = items.bag_items([path], None, None)  # only queries with ground truth are scored
    assert item.key == "plain:a" and item.query == "the thing" and item.inclusive  # bag:query, several queries
    assert item.gt_span == (2, 5) and sorted(item.gt_boxes) == [2, 3, 4, 5] and item.num_frames == 10
    clip = item.load(4, 0)
    assert clip.frame_indices == [0, 3, 6, 9] and clip.stamps == pytest.approx([stamps[i] for i in (0, 3, 6, 9)])
    assert [int(f.mean()) for f in clip.frames] == [0, 3, 6, 9]


def test_evaluation_core_imports_no_ros():
    import subprocess
    import sys

    code = ("import sys, stvg_ros.evaluation.evaluate, stvg_ros.evaluation.bags, stvg_ros.evaluation.datasets, stvg_ros.evaluation.metrics, stvg_ros.video; "
            "bad = [m for m in sys.modules if m.startswith(('rclpy', 'sensor_msgs', 'std_msgs', 'stvg_ros.msg', "
            "'stvg_ros.ros'))]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
