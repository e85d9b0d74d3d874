"""The unattended GPU session (issue 19) works before any GPU is at hand: the time budget's arithmetic, the
benchmark's fail-soft cases, and ``--dry-run`` of the three commands on CPU (same code paths, tiny sizes).

The figures the dry runs print mean nothing (tiny models on a shared CPU); only the runs' shape, their
failure handling and their time limits are checked.
"""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from stvg_ros.synthetic.budget import TimeBudget

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # the benchmarks are the package `bench`


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _env(tmp_path, **extra):
    """The children's environment: this interpreter (the scripts' $PYTHON), one thread, offline, their caches and
    temporary files under ``tmp_path`` (a child killed at its deadline runs no exit handler, so the model directory
    it built would stay in /tmp)."""
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1",
                STVG_ROS_CACHE=str(tmp_path / "cache"), TMPDIR=str(tmp_path / "tmp"), **extra)


# --- the time budget ------------------------------------------------------------------------------------
def test_time_budget_plans_with_the_largest_duration_seen_and_a_margin():
    clock = FakeClock()
    b = TimeBudget(100.0, margin=1.25, clock=clock)
    assert b.left() == 100.0 and b.fits(80.0) and not b.fits(81.0)
    with b.timed("step"):
        clock.now += 10.0
    with b.timed("step"):
        clock.now += 4.0
    assert b.expect("step") == 10.0  # the largest, not the last: a slow step may come again
    assert b.expect("eval", default=3.0) == 3.0 and not b.known("eval")
    assert b.elapsed() == 14.0 and b.left() == 86.0
    assert b.fits(b.expect("step"), 58.8) and not b.fits(b.expect("step"), 59.0)  # 1.25 * 68.8 = 86
    with pytest.raises(RuntimeError):
        with b.timed("eval"):
            clock.now += 2.0
            raise RuntimeError("a failed piece of work still counts")
    assert b.expect("eval") == 2.0
    assert b.summary()["largest_s"] == {"step": 10.0, "eval": 2.0}
    with pytest.raises(ValueError):
        TimeBudget(0)


def test_timed_runs_stop_repeating_when_the_deadline_nears():
    import torch
    from bench.gpu_check import timed_runs

    clock = FakeClock()
    budget = TimeBudget(10.0, margin=1.0, clock=clock)
    calls = []

    def work():  # each run takes 3 s of the fake clock
        clock.now += 3.0
        calls.append(1)
        return len(calls)

    m = timed_runs(work, torch.device("cpu"), budget, warmup=1, repeats=5)
    # warm-up at t=3, runs at 6 and 9; a fourth (to 12) does not fit in 10 s
    assert len(calls) == 3 and m["timed_runs"] == 2 and m["value"] == 3 and len(m["warmup_s"]) == 1
    clock.now += 100.0  # past the deadline: with no warm-up one run still happens (the caller decided)
    m = timed_runs(work, torch.device("cpu"), budget, warmup=0, repeats=3)
    assert m["timed_runs"] == 1


def test_run_case_records_errors_and_skips_and_goes_on():
    import torch
    from bench.gpu_check import run_case

    clock = FakeClock()
    budget = TimeBudget(60.0, clock=clock)
    record, saves = {}, []
    save = lambda: saves.append(dict(record))  # noqa: E731

    def oom():
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    run_case("a", lambda: {"median_s": 1.0}, budget, 1.0, record, save)
    run_case("b", oom, budget, 1.0, record, save)
    run_case("c", lambda: 1 / 0, budget, 1.0, record, save)
    run_case("d", lambda: {"median_s": 2.0}, budget, 1000.0, record, save)  # expected not to fit
    assert record["a"]["status"] == "ok" and record["a"]["median_s"] == 1.0
    assert record["b"]["status"] == "error" and "OutOfMemoryError" in record["b"]["error"]
    assert record["c"]["status"] == "error" and "ZeroDivisionError" in record["c"]["error"]
    assert record["d"]["status"] == "skipped" and "expected 1000.0 s" in record["d"]["reason"]
    assert len(saves) == 4  # written after every case: a killed child keeps what it finished


# --- the three commands' dry runs -----------------------------------------------------------------------
@pytest.mark.slow  # a child process that imports torch and transformers, then hangs until it is killed (~40 s)
def test_gpu_check_dry_run_is_fail_soft_per_case_and_per_model(tmp_path):
    """One case raises, one runs out of memory, the last one hangs: the others are measured, the hanging
    child is killed at its deadline with its finished cases kept, and both files are written."""
    fault = "tiny:qwen2_5_vl:tas:raise,tiny:qwen2_5_vl:lra-step-on:oom,tiny:qwen2_5_vl:ref-full-2:hang"
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--dry-run", "--out", str(tmp_path),
                           "--models", "tiny:qwen2_5_vl", "--budget", "40", "--grace", "1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=200, env=_env(tmp_path, STVG_GPU_CHECK_FAULT=fault))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    md = (tmp_path / "gpu_check.md").read_text()
    assert "DRY RUN" in md and "| floor" in md and "Targets of issue 5" in md
    assert data["wall_s"] <= 40 + 1 + 5
    qwen = data["models"]["tiny:qwen2_5_vl"]
    assert qwen["status"] == "killed at its deadline", qwen.get("status")
    assert qwen["cases"]["tas"]["status"] == "error" and "injected" in qwen["cases"]["tas"]["error"]
    assert "OutOfMemoryError" in qwen["cases"]["lra-step-on"]["error"]
    for case in ("floor", "plain", "full-1", "full-2", "lra-step-off", "ref-plain"):
        assert qwen["cases"][case]["status"] == "ok", case
    assert "ref-full-2" not in qwen["cases"]  # in flight when the child was killed
    assert qwen["cases"]["full-2"]["x_floor"] > 0 and qwen["cases"]["ref-plain"]["maps_equal"] is True


def test_train_gpu_recipe_dry_run_keeps_its_time_limit(tmp_path):
    """``--recipe gpu --dry-run``: data workers, time-based evaluations and checkpoints, and the final
    evaluation and files all inside ``--max-minutes``; the same files and card as the CPU recipe."""
    out = tmp_path / "m"
    proc = subprocess.run([sys.executable, "-m", "stvg_ros.synthetic.train", "--recipe", "gpu", "--dry-run",
                           "--out", str(out), "--max-minutes", "0.3", "--eval-seconds", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, env=_env(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    s = json.loads((out / "synthetic_training.json").read_text())
    assert s["recipe"] == "gpu" and s["device"] == "cpu" and s["workers"] == 2 and s["steps"] >= 1
    assert s["wall_minutes"] <= 0.3 and s["budget"]["elapsed_s"] <= 18.0
    assert s["stopped_by"] == "max_minutes" and set(s["final"]) == {"val", "test"}
    assert set(s["final"]["val"]) == {"colour", "shape", "look", "action"}
    for name in ("model.safetensors", "MODEL_CARD.md", "training_curve.png", "training_log.jsonl", "config.json"):
        assert (out / name).is_file(), name
    card = (out / "MODEL_CARD.md").read_text()
    assert "--recipe gpu" in card and f"{s['steps']} steps" in card


def test_train_max_minutes_in_process_never_overruns(tmp_path):
    """The hard limit without data workers (the CPU path): steps stop when a step, the evaluation due
    after it and the final evaluation would not fit."""
    from stvg_ros.synthetic.train import DRY_RUN, train

    s = train(str(tmp_path / "m"), minutes=10.0, seed=0, clips_per_step=2, val_clips=1, threads=1,
              dims=DRY_RUN["dims"], max_minutes=0.15, eval_seconds=2.0, rungs=("colour", "shape"))
    assert s["stopped_by"] == "max_minutes" and s["wall_minutes"] <= 0.15 and s["workers"] == 0


@pytest.mark.slow  # the wrapper runs both dry runs one after the other (about a minute on 2 shared cores)
def test_gpu_all_dry_run_packs_at_most_8_files_under_16_mib(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_all.sh"), str(out), "--dry-run",
                           "--check-models", "tiny:qwen2_5_vl", "--check-seconds", "60"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=_env(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and all((out / f).stat().st_size < 16 * 2**20 for f in files)
    assert {"summary.md", "gpu_check.json", "gpu_check.md", "synthetic_training.json", "logs.tar.gz",
            "model.tar.gz"} <= set(files)
    summary = (out / "summary.md").read_text()
    assert "DRY RUN" in summary and "Synthetic model" in summary and "| floor" in summary
    with tarfile.open(out / "model.tar.gz") as tar:
        tar.extractall(tmp_path / "unpacked")
    from stvg_ros.adapters import load_adapter

    assert load_adapter(str(tmp_path / "unpacked" / "model")).family == "qwen2_5_vl"
