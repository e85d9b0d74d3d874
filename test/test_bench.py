"""The benchmark scripts run as plain commands in quick mode and produce their table and JSON (they must not rot).

Only the output's shape is checked here; what the numbers mean is in bench/README.md, and the
equality of our relevance maps with the official path is tested for real in test_official_path.py.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.model  # each runs a benchmark script on tiny models in a child process

ROOT = Path(__file__).resolve().parent.parent


def _run(script: str, *args: str, tmp_path: Path) -> tuple[str, dict]:
    out = tmp_path / (Path(script).stem + ".json")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               STVG_ROS_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--quick", "--json", str(out), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


@pytest.mark.parametrize("family", ["qwen2_5_vl", "llava_next_video"])
def test_bench_grounding_quick(tmp_path, family):
    stdout, data = _run("bench_grounding.py", "--model", f"tiny:{family}", tmp_path=tmp_path)
    assert "| case" in stdout and "| floor" in stdout
    cases = data["cases"]
    assert set(cases) == {"floor", "plain", "lra", "tas", "full", "ref-plain", "ref-full"}
    for m in cases.values():
        assert m["median_s"] > 0 and m["peak_bytes"] > 0 and m["x_floor"] > 0
        # model passes and the box stage apart, every case timed in the same rounds as the floor
        assert len(m["times_s"]) == len(cases["floor"]["times_s"]) and m["model_s"] > 0 and m["box_s"] >= 0
        assert m["model_x_floor"] > 0 and m["clock"] == "process CPU"
    assert cases["floor"]["box_s"] == 0 and all(cases[c]["box_s"] > 0 for c in cases if c != "floor")
    assert "x_ours" in cases["ref-full"] and "model_x_ours" in cases["ref-full"]
    assert cases["ref-full"]["maps_equal"] is True
    assert data["visual_tokens"] > 0 and data["sequence_length"] > data["visual_tokens"]


def test_bench_grounding_refuses_real_size_on_cpu(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_grounding.py"), "--model", "qwen2.5-vl-7b",
                           "--device", "cpu", "--json", str(tmp_path / "x.json")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "--allow-cpu-large" in proc.stderr + proc.stdout


def test_bench_node_quick(tmp_path):
    stdout, data = _run("bench_node.py", tmp_path=tmp_path)
    assert "| measurement" in stdout and "query CPU" in stdout
    assert len(data["ingest"]) >= 2 and all(r["cpu_percent_of_one_core"] > 0 for r in data["ingest"])
    assert all(w["bounded"] for w in data["window"])
    assert [q["label"] for q in data["queries"]] == ["default config", "no LRA, no TAS"]
    for q in data["queries"]:
        assert q["queries"] >= 1 and q["p95_s"] >= q["p50_s"] > 0 and q["clock"] == "process CPU"
        # every query a round: each config and the floor on the same window; model passes and box stage apart
        assert len(q["cpu_s"]) == len(q["floor_cpu_s"]) == len(q["model_cpu_s"]) == len(q["box_cpu_s"])
        assert all(abs(m + b - t) < 1e-9 for t, m, b in zip(q["cpu_s"], q["model_cpu_s"], q["box_cpu_s"]))
        assert q["model_median_s"] > 0 and q["box_median_s"] > 0 and q["floor_median_s"] > 0
        assert q["x_floor"] > q["model_x_floor"] > 0


def test_bench_stream_quick(tmp_path):
    """The streaming benchmark (issue 20) in CI: every section runs and its JSON holds real figures."""
    stdout, data = _run("bench_stream.py", tmp_path=tmp_path)
    assert "| model" in stdout and "later/first (on)" in stdout and "| mode" in stdout and "| duty budget" in stdout
    assert "| target" in stdout
    for name, model in data["oneshot"].items():
        assert model["peak_rss_bytes"] > 0
        for cname in ("no-lra", "full"):
            assert set(model["configs"][cname]) == {"slide 2", "same"}
            for scenario, run in model["configs"][cname].items():
                # the caches are exact; unshared passes agree within float32 rounding
                assert run["results_equal"] is True and run["results_close_to_today"] is True
                assert run["runs"]["on"]["first_s"] > 0 and run["runs"]["off"]["later_median_s"] > 0
                # the floor timed in the same rounds; the box stage apart from the model passes
                assert len(run["floor_cpu_s"]) == len(run["runs"]["on"]["cpu_s"]) and min(run["floor_cpu_s"]) > 0
                on = run["runs"]["on"]
                assert len(on["box_cpu_s"]) == len(on["cpu_s"]) and on["model_later_x_floor"] > 0
                assert on["box_later_x_floor"] >= 0
                assert run["cache"]["entries"] > 0 and run["cache"]["bytes"] <= run["cache"]["max_bytes"]
                assert {"pixels", "visual"} <= set(run["later_hit_rates"])
                if scenario == "same":  # unchanged frames: every later lookup of a frame hits
                    assert run["later_hit_rates"]["pixels"] == run["later_hit_rates"]["visual"] == 1.0
            assert "on_over_today" in model["configs"]["full"]["same"]
        # the full method is measured with latent prompts that really move the visual tokens
        assert model["lra_latent"]["tokens_changed"] > 0.5 and model["lra_latent"]["rms_ratio"] > 0
        units = model["cost_model"]["units_s"]
        assert all(units[k] > 0 for k in ("E", "F", "A", "L"))
        assert all(p["on"] > 0 for p in model["cost_model"]["predicted_s"].values())
        for mode in ("full", "cheap-first"):  # the standing query's cost per evaluation, through the service
            assert model["standing_cost"][mode]["evaluations"] == 2 and model["standing_cost"][mode]["mean_cost"] > 0
            assert model["standing_cost"][mode]["cpu_per_evaluation"] > 0  # process CPU
    modes = data["standing"]["modes"]
    assert set(modes) == {"full", "cheap-first"}
    assert modes["cheap-first"]["full"] < modes["cheap-first"]["evaluations"] == modes["full"]["evaluations"] > 0
    assert 0 < modes["cheap-first"]["cost_ratio"] < 1 and modes["full"]["cost_ratio"] == 1.0
    assert modes["full"]["mean_cost"] > 0
    assert all(0 <= d["duty"] <= 1 and d["evaluations"] > 0 for d in data["duty"])
    assert data["targets"] and all({"target", "goal", "measured", "passed"} <= set(t) for t in data["targets"])


def test_bench_photo_pans_runs(tmp_path):
    """The panning-photo check of carried GrabCut colour models (docs/proposals.md) prints both kinds of cut."""
    from stvg_ros.adapters.tiny_models import photo_dir

    if photo_dir("astronaut.png") is None:
        pytest.skip("scikit-image is not installed: `pip install --no-deps -r requirements/test.txt`")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_photo_pans.py"), "--steps", "8", "--frames", "3"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| 8 |")]
    assert [r.split("|")[2].strip() for r in rows] == ["cold", "chain"], proc.stdout
    assert "carried" in rows[1] and "carried" not in rows[0]


def test_bench_memory_quick(tmp_path):
    stdout, data = _run("bench_memory.py", tmp_path=tmp_path)
    assert "| stream | kind | mode" in stdout and "disk MB/h" in stdout
    warm = data["summary"]["5|colour|warm"]
    assert warm["queries"] == 2 and 0 <= warm["recall3"] <= 1 and warm["every_segment_cpu"] > 0
    assert warm["cost_ratio"] > 0 and data["rows"][0]["disk_mb_per_hour"] > 0 and data["rows"][0]["chunks"] > 0


def test_bench_memory_colour_answers_quick(tmp_path):
    """The model's colour answers on every memory segment: each segment asked once per colour of the world,
    counted where the colour is in view and where it is not, with the shipped model (which knows colour)."""
    stdout, data = _run("bench_memory.py", "--colour-answers", tmp_path=tmp_path)
    assert "| yes where the colour is not in view" in stdout
    [row] = data["rows"]
    assert row["present"] + row["absent"] == 6 * 30  # 6 colours x the 5-minute stream's 10 s segments
    assert row["yes_present"] >= 0.8 * row["present"] and row["yes_absent"] <= 0.2 * row["absent"]
    assert len(row["false"]) == row["yes_absent"]


def test_calibration_cv_quick(tmp_path):
    """Issue 27: the standing-threshold rules cross-validated on the shipped model's validation traces; every fold's
    choice is a grid point of its family, and the rates are rates."""
    stdout, data = _run("calibration_cv.py", "--smooth", "2", tmp_path=tmp_path)
    assert "| margin (stvg-calibrate) | confirm 1-5 |" in stdout and "| edge (before) | confirm 1-3 |" in stdout
    rows = {(r["rule"], r["grid"]): r for r in data["rows"]}
    assert len(rows) == 6 and all(0 <= r["found"] <= 1 and r["false_per_stream"] >= 0 for r in rows.values())
    assert rows[("margin (stvg-calibrate)", "confirm 1-3")]["chosen"][2] <= 3
    assert rows[("margin (stvg-calibrate)", "mean of 2, confirm 1-3")]["chosen"][2] <= 3


def test_standing_false_causes_quick(tmp_path):
    """Issue 27: every false appearance of the shipped thresholds on the stored val traces is attributed to one
    cause, and they add up to the calibrator's own count on the same streams and thresholds."""
    from stvg_ros.evaluation.calibration import Trace, standing_rates

    stdout, data = _run("standing_false_causes.py", tmp_path=tmp_path)
    r = data["calibration-synth-val600-traces-runT.json"]
    assert "| same colour, same action |" in stdout and r["streams"] == 40
    stored = json.loads((ROOT / "bench" / "results" / "calibration-synth-val600-traces-runT.json").read_text())
    traces = [Trace(**t) for t in stored if t.get("window_p")][:40]
    rates = standing_rates(traces, r["on"], r["off"], r["confirm"])
    assert sum(c["false"] for c in r["causes"].values()) == rates["false"] == sum(r["when"].values())
    outside = sum(1 for t in traces for s in t.window_span if s < 0)
    assert sum(c["windows"] for c in r["causes"].values()) == outside
    assert all(c["high"] <= c["windows"] for c in r["causes"].values())
    same, other = r["causes"]["same colour, same action"], r["causes"]["same colour, other action"]
    assert sum(r["same_action_differs"].values()) == same["false"]
    assert set(r["same_action_differs"]) <= {"size", "shape", "size and shape"}
    # each other-action window counts once per distinct other action of the target's colour acting in it
    assert sum(n for n, _ in r["action_pairs"].values()) >= other["windows"] > 0
    assert all(" / " in k and h <= n for k, (n, h) in r["action_pairs"].items())


def test_attribute_probe_quick(tmp_path):
    """Issues 27 and 32: the shipped model's answers about which action and shape a clip shows, against linear probes
    on its visual tokens, on 40 validation clips whose target acts, and its answer about the target's size."""
    from stvg_ros.synthetic.generator import ACTIONS

    stdout, data = _run("attribute_probe.py", tmp_path=tmp_path)
    assert "linear probe" in stdout and data["clips"] == 40 and data["seeds"] >= 40
    assert 0 <= data["answered"] <= 1 and 0 <= data["probe"] <= 1 and 0 <= data["beats_confusable"] <= 1
    assert set(data["per_action"]) == set(ACTIONS)
    assert sum(r["clips"] for r in data["per_action"].values()) == 40
    size = data["size"]  # and which size: the true size's yes above the other's, where the other is absent
    assert 0 < size["clips"] <= size["seeds"] == 40 and 0 <= size["colour"] <= 1 and 0 <= size["full_query"] <= 1
    assert 0 <= size["probe"] <= 1 and 0 <= data["shape"]["answered"] <= 1 and 0 <= data["shape"]["probe"] <= 1
    assert "true size's yes above" in stdout
    descriptors = data["shape"]["descriptors"]  # the rotation-invariant shape descriptors' probes
    assert len(descriptors) == 3 and all(0 <= v <= 1 for v in descriptors.values())
    assert descriptors["object edge harmonics"] > 0.5  # 85 % on these 40 clips: the edges tell the shape
    for probes in data["directions"].values():  # the action probes with and without the frame moments
        assert set(probes) == {"all_actions", "four_directions", "axis"} and all(0 <= v <= 1 for v in probes.values())


def test_bench_multicam_quick(tmp_path):
    """Several cameras, one model (issue 32): which-camera accuracy and the cost of a query to all, with the
    shipped model, in CI."""
    stdout, data = _run("bench_multicam.py", tmp_path=tmp_path)
    assert "| rule (which camera is best)" in stdout and "| to all cameras" in stdout
    assert len(data["scenes"]) == 3 and data["cameras"] == ["front", "rear"]
    for row in data["scenes"]:
        assert set(row["p_yes"]) == {"front", "rear"} and row["answered_camera"] in ("front", "rear")
        assert row["right"] == (row["answered_camera"] == row["target_camera"])
        other = ({"front", "rear"} - {row["target_camera"]}).pop()
        assert set(row["distractor_acts"]) == {other}  # what of the target's colour acts in the other camera's clip
    by_acts = data["accuracy"]["by_distractor_acts"]
    assert sum(v["scenes"] for v in by_acts.values()) == data["accuracy"]["counted"]
    s = data["cost_summary"]
    assert s["all"]["passes"] == s["separate"]["passes"] == 2 and s["ratio_all_over_separate"] > 0


def test_bench_batch_clips_quick(tmp_path):
    """A query to all cameras with the clips batched (issue 32): ground_many against separate groundings, model
    passes and CPU stages apart, the same answers."""
    stdout, data = _run("bench_batch_clips.py", "--peak", tmp_path=tmp_path)
    assert "| model " in stdout and "| batched " in stdout
    [r] = data["runs"]
    assert r["cameras"] == 2 and r["p_yes_max_diff"] < 1e-4
    assert r["batched"]["decodes"] < r["separate"]["decodes"] and r["ratio_cpu"] > 0 and r["ratio_model"] > 0
    assert set(r["peak_mib"]) == {"separate", "batched"}


def test_bench_multicam_memory_quick(tmp_path):
    """Several cameras, one model (issue 32): RSS per stream count in fresh subprocesses, queueing delay under
    load and all vs separate, with the shipped model, in CI (1 and 2 streams, 30-frame windows)."""
    stdout, data = _run("bench_multicam_memory.py", tmp_path=tmp_path)
    assert "| RSS windows full MiB" in stdout and "| queueing delay per stream, CPU s" in stdout
    one, two = data["cases"]
    assert (one["streams"], two["streams"]) == (1, 2)
    for c in (one, two):
        assert set(c["window_frames"].values()) == {30} and c["stored_side"] == 224  # twice the model's 112 px
        assert c["rss_loaded_mib"] <= c["rss_windows_mib"] <= c["rss_peak_mib"]
        assert c["load"]["passes"] == c["streams"] == c["all"]["passes"] == c["separate"]["passes"]
        assert set(c["load"]["per_stream"]) == set(c["window_frames"])
    # one worker serves the streams in turn: the second stream's grounding waits for the first one's CPU
    delays = sorted(p["queue_cpu_s"] for p in two["load"]["per_stream"].values())
    assert delays[0] < delays[1]


def test_standing_contrast_quick(tmp_path):
    """Issue 27: the action-contrast scores for standing queries, chosen on val streams and counted on test; the
    query's own logit is the existence judgment a standing query uses (the stored calibration traces' p_yes)."""
    from stvg_ros.evaluation.calibration import Trace

    stdout, data = _run("standing_contrast.py", "--logits", str(tmp_path / "logits"), tmp_path=tmp_path)
    assert "| p_yes (the node's) " in stdout
    rows = data["rows"]
    assert len(rows) >= 2 and all(r["test_streams"] == 12 and 0 <= r["test_found"]["rate"] <= 1 for r in rows)
    assert "paired_vs_p_yes" not in rows[0] and all("paired_vs_p_yes" in r for r in rows[1:])
    val = json.loads((tmp_path / "logits" / "contrast-val-12.json").read_text())
    stored = [Trace(**t) for t in json.loads((ROOT / "bench" / "results" /
                                              "calibration-synth-val600-traces-runT.json").read_text()) if t["window_p"]]
    for row, trace in zip(val, stored[:12]):
        assert row["clip"] == trace.clip and row["truth"] == trace.window_truth
        own = [1 / (1 + math.exp(-w[row["action"]])) for w in row["logits"]]
        assert own == pytest.approx(trace.window_p, abs=2e-4)
