#!/usr/bin/env python3
"""Every GPU measurement of bench/README.md in one unattended, time-boxed, fail-soft run (issue 19).

For each model (real sizes with random weights in bf16, built directly on the GPU), in this order:
Qwen2.5-VL-7B, LLaVA-NeXT-Video-7B, LLaVA-OneVision-7B, LLaVA-OneVision-0.5B, at 20 frames of 640x480:

* ``floor``, ``plain``, ``tas``, ``full-1`` and ``full-2`` (LRA + TAS with 1 and 2 LRA steps): median
  time, ``x floor``, peak memory (``torch.cuda.max_memory_allocated``, weights included), as
  ``bench_grounding.py`` measures them;
* ``lra-step`` with activation checkpointing off and on: the peak memory of one LRA step over 3
  problems (V_s, V_t, V_s'), as ``lra_memory.py --device cuda`` measures it, against a 24 GiB card;
* ``ref-plain`` and ``ref-full-2``: the official code's way (``stvg_ros.adapters.official_path``), its time over
  ours and whether its relevance maps equal ours.

Each model runs in its own child process with a deadline (its share of the time left), so an
out-of-memory error, a crash or a hang in one model costs only that model's remaining cases.  Inside
a child each case is fail-soft (an error is recorded and the next case runs) and time-boxed: a case
starts only if its expected time fits before the deadline (:class:`stvg_ros.synthetic.budget.TimeBudget`; the
first estimate is a multiple of the floor's time, then what the warm-up took), and timed repeats stop
early when the deadline nears.  The child writes its JSON after every case, so a child killed at its
deadline loses only the case in flight.  The parent writes ``gpu_check.json`` and ``gpu_check.md``.

    bench/gpu_check.sh [--out DIR] [--budget SECONDS]       # a GPU; default budget 240 s
    bench/gpu_check.sh --dry-run [--out DIR]                 # the same code on CPU, tiny models, seconds
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent.parent))  # the repository root: `bench` is a package

from bench._util import PeakMemory, machine, synchronize, table, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GIB = 2**30
#: ``name@tokens``: ``visual_tokens`` of the run ('paper': the paper's 6x6 per frame, 720 / 721 tokens at 20
#: frames, where the official path with gradients fits; 'model': the released pooling, 2,880 / 3,921 tokens).
#: Qwen at 224 px is the paper's setting either way.  The ``@model`` runs come last: they run where time is left.
MODELS = ["qwen2.5-vl-7b", "llava-next-video-7b@paper", "llava-onevision-7b@paper", "llava-next-video-7b@model"]
#: the dry run: Qwen's path and both LLaVA paths (OneVision's video tokens with a trailing newline)
DRY_MODELS = ["tiny:qwen2_5_vl", "tiny:llava_onevision@paper", "tiny:llava_next_video@paper"]
#: share of the time each model gets, relative to a 7B model (children run one after another)
WEIGHT = {"llava-onevision-0.5b": 0.4}
#: case → (grounding switches or None, warm-up runs, timed runs, first estimate of one run in floors).
#: Ordered by what matters most if the time runs out.  Repeats: the median of 3 where a run is < ~1 s on a
#: 7B model at 20 frames, of 2 for the full method, 1 (after a warm-up) for the slow reference of it.
CASES = {
    "floor": (None, 1, 3, 1.0),
    "plain": (dict(use_lra=False, use_tas=False), 1, 3, 1.5),
    "tas": (dict(use_lra=False, use_tas=True), 1, 3, 2.5),
    "full-1": (dict(use_lra=True, use_tas=True, lra_steps=1), 1, 2, 12.0),
    "full-2": (dict(use_lra=True, use_tas=True, lra_steps=2), 1, 2, 20.0),
    "lra-step-off": (None, 0, 1, 8.0),
    "lra-step-on": (None, 0, 1, 10.0),
    "ref-plain": (dict(use_lra=False, use_tas=False), 1, 2, 4.0),
    "ref-full-2": (dict(use_lra=True, use_tas=True, lra_steps=2), 1, 1, 40.0),
    "latent": (None, 0, 1, 8.0),
}
#: the latent prompts' case: 2 LRA steps (paper loss, lr 8) on the three problems, the prompts' rms relative to
#: the visual tokens' and what of them survives rounding to bfloat16 / float16 (docs/evaluation.md, Precision)
LATENT_STEPS = 2
CARD_BUDGET_GIB = 23.5  # a 24 GiB card less ~0.5 GiB of CUDA context, as lra_memory.py
#: seconds a child may run past its deadline before it is killed (a case in flight is not interrupted)
GRACE_S = 8.0
#: tests: ``model:case:kind`` (kind raise | oom | hang; model ``*`` = any) makes that case fail that way
FAULT_ENV = "STVG_GPU_CHECK_FAULT"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"), help="folder for gpu_check.json/.md")
    ap.add_argument("--budget", type=float, default=0.0,
                    help="seconds for the whole run (default 240 on a GPU, 150 with --dry-run)")
    ap.add_argument("--models", default="", help="comma list (default: the four real sizes; tiny ones with --dry-run)")
    ap.add_argument("--cases", default=",".join(CASES), help="comma list, in order")
    ap.add_argument("--frames", type=int, default=0, help="frames per clip (default 20; 4 with --dry-run)")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny models, 4 small frames: checks the code path")
    ap.add_argument("--device", default="", help="default cuda (cpu with --dry-run)")
    # a child runs one model until its deadline (epoch seconds) and writes its JSON there
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    ap.add_argument("--deadline", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--json", default="", help=argparse.SUPPRESS)
    ap.add_argument("--grace", type=float, default=GRACE_S, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    a.device = a.device or ("cpu" if a.dry_run else "cuda")
    a.frames = a.frames or (4 if a.dry_run else 20)
    a.budget = a.budget or (150.0 if a.dry_run else 240.0)
    a.models = [m for m in (a.models or ",".join(DRY_MODELS if a.dry_run else MODELS)).split(",") if m]
    a.cases = [c for c in a.cases.split(",") if c]
    unknown = [c for c in a.cases if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}: choose from {', '.join(CASES)}")
    return a


# --- one case, fail-soft and within the deadline ---------------------------------------------------------
def _inject_fault(model: str, case: str) -> None:
    spec = os.environ.get(FAULT_ENV, "")
    for item in filter(None, spec.split(",")):
        m, c, kind = item.rsplit(":", 2)
        if c == case and m in ("*", model):
            if kind == "oom":
                import torch

                raise torch.OutOfMemoryError(f"injected out-of-memory in {case} ({FAULT_ENV})")
            if kind == "hang":
                time.sleep(3600)
            raise RuntimeError(f"injected failure in {case} ({FAULT_ENV})")


def timed_runs(fn, device, budget, warmup: int, repeats: int) -> dict:
    """``warmup`` untimed runs, then up to ``repeats`` timed ones while each still fits in ``budget``.

    At least one run always happens (the caller checked that one is expected to fit); when no timed run
    fits after the warm-up, the warm-up's time stands in (``timed_runs`` 0: an upper bound, since it
    includes first-call costs)."""
    warm_times = []
    value = None
    per_run = 0.0  # on the budget's clock (the reported times are perf_counter's)

    def run_once(into: list) -> None:
        """One synchronised run of ``fn``: its time into ``into``, the longest run so far into per_run."""
        nonlocal value, per_run
        synchronize(device)
        t, c = time.perf_counter(), budget.clock()
        value = fn()
        synchronize(device)
        into.append(time.perf_counter() - t)
        per_run = max(per_run, budget.clock() - c)

    for _ in range(warmup):
        run_once(warm_times)
    times = []
    with PeakMemory(device) as mem:
        while len(times) < repeats and (not times and not warm_times or budget.fits(per_run)):
            run_once(times)
    runs = times or warm_times
    import statistics

    return {"median_s": statistics.median(runs), "min_s": min(runs), "times_s": times, "warmup_s": warm_times,
            "timed_runs": len(times), "peak_bytes": mem.peak, "baseline_bytes": mem.baseline,
            "extra_bytes": mem.extra, "value": value}


def run_case(name: str, work, budget, estimate_s: float, record: dict, save) -> None:
    """Run ``work()`` (returns the case's dict) if ``estimate_s`` fits, recording ok / error / skipped."""
    if not budget.fits(estimate_s):
        record[name] = {"status": "skipped", "reason": f"expected {estimate_s:.1f} s, {budget.left():.1f} s left"}
        print(f"  {name}: skipped (expected {estimate_s:.1f} s, {budget.left():.1f} s left)", flush=True)
        save()
        return
    t = time.perf_counter()
    try:
        res = work()
        res["status"] = "ok"
    except Exception as e:  # noqa: BLE001 - fail soft: record it, free memory, go on with the next case
        res = {"status": "error", "error": f"{type(e).__name__}: {str(e)[:500]}",
               "traceback": traceback.format_exc(limit=6)[-2000:]}
    res["wall_s"] = round(time.perf_counter() - t, 3)
    record[name] = res
    _free()
    shown = (f"{res['median_s']:.3f} s" if "median_s" in res else
             f"peak {res['peak_bytes'] / GIB:.2f} GiB" if "peak_bytes" in res else res.get("error", ""))
    print(f"  {name}: {res['status']} {shown} ({res['wall_s']:.1f} s wall, {budget.left():.0f} s left)", flush=True)
    save()


def _free() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --- a child: one model ------------------------------------------------------------------------------------
def child(a) -> None:
    import torch

    from bench import bench_grounding as bg
    from bench import lra_memory
    from bench.model_configs import load_adapter
    from stvg_ros.adapters.common import resolve_device, resolve_dtype
    from stvg_ros.synthetic.budget import TimeBudget
    from stvg_ros.config import GroundingConfig
    from stvg_ros.grounding.grounder import format_question
    from stvg_ros.adapters.official_path import ReferenceAdapter
    from stvg_ros.adapters.tiny_models import random_frames

    from stvg_ros.adapters.base import AdapterOptions
    from stvg_ros.grounding.lra import latent_prompt_kept, optimise_latent_prompts

    budget = TimeBudget(max(a.deadline - time.time(), 1e-3), margin=1.15)
    name = a.child
    model_name, _, visual_tokens = name.partition("@")
    visual_tokens = visual_tokens or "model"
    out: dict = {"model": name, "status": "running", "cases": {}, "machine": machine()}
    save = lambda: write_json(a.json, out)  # noqa: E731
    device = resolve_device(a.device)
    dtype = resolve_dtype("auto", device)
    print(f"== {name} on {device} ({dtype}), {budget.left():.0f} s", flush=True)
    t = time.perf_counter()
    try:
        adapter, label = load_adapter(model_name, device, dtype)
        adapter.configure(AdapterOptions(visual_tokens=visual_tokens))  # the floor sees the same tokens
    except Exception as e:  # noqa: BLE001
        out.update(status="error", error=f"build: {type(e).__name__}: {str(e)[:500]}",
                   traceback=traceback.format_exc(limit=6)[-2000:])
        save()
        print(f"  build failed: {out['error']}", flush=True)
        return
    synchronize(device)
    out.update(label=label, visual_tokens_setting=visual_tokens, device=str(device), dtype=str(adapter.dtype),
               build_s=round(time.perf_counter() - t, 2),
               parameters=sum(p.numel() for p in adapter.model.parameters()), frames=a.frames,
               weights_bytes=sum(p.numel() * p.element_size() for p in adapter.model.parameters()))
    if device.type == "cuda":
        out["weights_allocated_bytes"] = torch.cuda.memory_allocated(device)
    print(f"  built {out['parameters'] / 1e9:.2f} B parameters in {out['build_s']:.1f} s", flush=True)
    save()

    w, h = (112, 84) if a.dry_run else (640, 480)
    frames = random_frames(a.frames, h, w, seed=0)
    stamps = [i * 0.25 for i in range(a.frames)]
    base = dict(num_frames=a.frames, keep_relevance=True, decomposer="rules", lra_steps=2, visual_tokens=visual_tokens,
                dtype={torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[adapter.dtype])
    tolerance = 2e-3 if adapter.dtype == torch.float32 else 5e-2
    out.update(frame_size=[w, h], map_tolerance=tolerance)
    cases = out["cases"]
    ours = {}
    floor_s = None

    def estimate(case: str) -> float:
        """Expected seconds of the case: its warm-up + timed runs at the floor multiple (a guess before the floor)."""
        switches, warmup, repeats, floors = CASES[case]
        one = floors * (floor_s if floor_s is not None else 1.0)
        return one * (warmup + 1)  # the case is started if its warm-up and one timed run fit

    def latent_case() -> dict:
        """The latent prompts after LRA (2 steps, paper loss, lr 8; V_s, V_t, V_s'): their rms relative to the
        visual tokens', and the relative error / cosine of what the decoder sees of them in bf16 and fp16."""
        from stvg_ros.grounding.grounder import Grounder

        g = Grounder(adapter, dict(base, lra_steps=LATENT_STEPS))
        with torch.no_grad():
            visual = adapter.encode_frames(frames, stamps=stamps)
            rev = adapter.encode_reversed(frames, stamps, visual)
        questions = [format_question(g.config.question_template, q, g.config.query_format) for q in
                     (bg.SUB_QUERIES[0], bg.SUB_QUERIES[1], bg.SUB_QUERIES[0])]
        t0 = time.perf_counter()
        trace = optimise_latent_prompts(adapter, [visual, visual, rev], questions, steps=LATENT_STEPS, lr=g.config.lra_lr,
                                        loss=g.config.lra_loss, caption_prompt=g.config.caption_prompt)
        synchronize(device)
        res = {"seconds": time.perf_counter() - t0, "steps": LATENT_STEPS, "model_dtype": str(adapter.dtype),
               "problems": {}}
        for label_, vis, delta in zip(("V_s", "V_t", "V_s_reversed"), (visual, visual, rev), trace.deltas):
            tokens = vis.embeds.float().cpu()
            d = delta.float().cpu()
            res["problems"][label_] = {
                str(dt).replace("torch.", ""): latent_prompt_kept(tokens, d, dt)
                for dt in (torch.bfloat16, torch.float16)}
        res["rms_ratio"] = max(p["bfloat16"]["rms_ratio"] for p in res["problems"].values())
        return res

    for case in a.cases:
        switches, warmup, repeats, _ = CASES[case]

        def work(case=case, switches=switches, warmup=warmup, repeats=repeats):
            nonlocal floor_s
            _inject_fault(name, case)
            if case == "floor":
                question = format_question(GroundingConfig().question_template, bg.QUERY)
                m = timed_runs(bg.floor_fn(adapter, frames, stamps, question), device, budget, warmup, repeats)
                _, seq_len, n_visual = m.pop("value")
                out.update(sequence_length=int(seq_len), visual_tokens=int(n_visual))
                floor_s = m["median_s"]
                return m
            if case == "latent":
                return latent_case()
            if case.startswith("lra-step"):
                with torch.no_grad():
                    visual = adapter.encode_frames(frames, stamps=stamps)
                r = lra_memory.lra_step(adapter, visual, 3, case.endswith("-on"), measure_saved=False)
                r["visual_tokens"] = int(visual.num_tokens)
                if "peak_bytes" in r:
                    r["fits_24gib_card"] = r["peak_bytes"] <= CARD_BUDGET_GIB * GIB
                return r
            reference = case.startswith("ref-")
            runner = ReferenceAdapter(adapter, new_tokens=1) if reference else adapter
            config = dict(base, **switches)
            ground = bg.grounding_fn(runner, frames, stamps, config)
            boxes = []  # each run's box stage (select), synchronised like the run's total

            def run():
                res = ground()
                boxes.append(float(res.timings.get("select", 0.0)))
                return res

            m = timed_runs(run, device, budget, warmup, repeats)
            result = m.pop("value")
            m["stages_s"] = dict(result.timings)
            # model passes and the CPU box stage apart, run by run
            runs = m["times_s"] or m["warmup_s"]
            box = boxes[-len(runs):] if m["times_s"] else boxes[:len(runs)]
            import statistics

            m["box_s"] = statistics.median(box)
            m["model_s"] = statistics.median([t - b for t, b in zip(runs, box)])
            m["activation_checkpointing"] = adapter.activation_checkpointing
            if reference:
                mine = ours.get(case[4:])
                if mine is None:  # our case was not run: compute it once for the map comparison
                    mine = bg.grounding_fn(adapter, frames, stamps, config)()
                diff = bg.map_difference(mine, result)
                m["map_max_relative_difference"] = diff
                m["maps_equal"] = all(v <= tolerance for v in diff.values())
            else:
                ours[case] = result
            return m

        run_case(case, work, budget, estimate(case), cases, save)
    if device.type == "cuda":
        out["process_max_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
    out["status"] = "done"
    out["budget"] = budget.summary()
    save()
    rosfree = sorted(m for m in ("rclpy", "rosbags", "sensor_msgs") if m in sys.modules)
    if rosfree:
        print(f"  warning: ROS modules imported: {rosfree}", flush=True)


def add_ratios(cases: dict) -> None:
    """``x_floor``, ``peak_x_floor`` and (references) ``x_ours`` of every finished case, from its median."""
    f = cases.get("floor", {})
    for case, m in cases.items():
        if m.get("status") != "ok" or "median_s" not in m or f.get("status") != "ok":
            continue
        m["x_floor"] = m["median_s"] / f["median_s"]
        if "model_s" in m:
            m["model_x_floor"] = m["model_s"] / f["median_s"]
        m["peak_x_floor"] = m["peak_bytes"] / max(f["peak_bytes"], 1)
        mine = cases.get(case[4:]) if case.startswith("ref-") else None
        if mine and mine.get("status") == "ok":
            m["x_ours"] = m["median_s"] / mine["median_s"]
            if "model_s" in m and "model_s" in mine:
                m["model_x_ours"] = m["model_s"] / max(mine["model_s"], 1e-12)


# --- the parent: children one after another, then the tables ---------------------------------------------
def parent(a) -> dict:
    from stvg_ros.synthetic.budget import TimeBudget

    budget = TimeBudget(a.budget, margin=1.0)
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {"machine": machine(), "budget_s": a.budget, "dry_run": a.dry_run, "device": a.device,
              "frames": a.frames, "cases": a.cases, "models": {}}
    weights = [WEIGHT.get(m, 1.0) for m in a.models]
    writing_reserve = 3.0
    for i, name in enumerate(a.models):
        share = (budget.left() - writing_reserve - a.grace) * weights[i] / sum(weights[i:])
        if share < 5.0:
            result["models"][name] = {"model": name, "status": "skipped", "reason": "no time left"}
            print(f"== {name}: skipped, {budget.left():.0f} s left", flush=True)
            continue
        part = out_dir / f".gpu_check-{i}.json"
        part.unlink(missing_ok=True)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--deadline", str(time.time() + share),
               "--json", str(part), "--device", a.device, "--frames", str(a.frames), "--cases", ",".join(a.cases)]
        if a.dry_run:
            cmd.append("--dry-run")
        print(f"== [{i + 1}/{len(a.models)}] {name}: {share:.0f} s of {budget.left():.0f} s left", flush=True)
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT)
        killed = False
        try:
            rc = proc.wait(timeout=share + a.grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
            killed = True
        try:
            rec = json.loads(part.read_text())
        except (OSError, ValueError):
            rec = {"model": name, "status": "error", "cases": {}, "error": "the child wrote no results"}
        part.unlink(missing_ok=True)
        rec["returncode"] = rc
        rec["child_wall_s"] = round(time.perf_counter() - t, 2)
        if killed:
            rec["status"] = "killed at its deadline"
        elif rc != 0 and rec.get("status") != "error":
            rec["status"] = f"crashed (exit {rc})"
        add_ratios(rec.setdefault("cases", {}))  # also for a child killed before its end
        result["models"][name] = rec
        print(f"== {name}: {rec['status']} in {rec['child_wall_s']:.0f} s", flush=True)
        write_results(result, out_dir, budget)  # after every model: a command cut short keeps what finished
    write_results(result, out_dir, budget)
    print(result["markdown"])
    print(f"wrote {out_dir / 'gpu_check.json'} and {out_dir / 'gpu_check.md'} in {result['wall_s']:.0f} s")
    result["ran_ok"], result["not_ok"] = ran_cases(result)
    return result


def write_results(result: dict, out_dir: Path, budget) -> None:
    result["wall_s"] = round(budget.elapsed(), 2)
    result["markdown"] = markdown(result)
    write_json(out_dir / "gpu_check.json", result)
    (out_dir / "gpu_check.md").write_text(result["markdown"] + "\n")


def ran_cases(result: dict) -> tuple[int, list[str]]:
    """How many cases finished ok, and what ran short: ``model:case`` of each case skipped for time, and
    ``model`` for a model where nothing but the floor finished ok (an injected or real error in one case is
    fail-soft and not counted here)."""
    ok, short = 0, []
    for name, rec in result["models"].items():
        cases = rec.get("cases", {})
        done = [c for c in result["cases"] if cases.get(c, {}).get("status") == "ok"]
        ok += len(done)
        short += [f"{name}:{c}" for c in result["cases"] if cases.get(c, {}).get("status") == "skipped"]
        if not [c for c in done if c != "floor"]:
            short.append(f"{name} (nothing beyond the floor finished)")
    return ok, short


def _gib(n) -> str:
    return f"{n / GIB:.2f}" if isinstance(n, (int, float)) else ""


def markdown(result: dict) -> str:
    m0 = result["machine"]
    head = [f"GPU check: {m0.get('gpu', 'no GPU')} ({m0.get('platform', '')}), torch {m0.get('torch')}, "
            f"transformers {m0.get('transformers')}, {m0.get('date_utc')}; {result['frames']} frames; "
            f"budget {result['budget_s']:.0f} s, took {result.get('wall_s', 0):.0f} s"
            + ("; DRY RUN (CPU, tiny models: the figures mean nothing)" if result["dry_run"] else "")]
    rows, lra_rows, targets, models, latent_rows = [], [], [], [], []
    for name, rec in result["models"].items():
        models.append([name, rec.get("status", ""), f"{rec.get('parameters', 0) / 1e9:.2f}",
                       f"{rec['build_s']:.1f}" if "build_s" in rec else "", rec.get("visual_tokens", ""),
                       rec.get("sequence_length", ""), f"{rec.get('child_wall_s', 0):.0f}",
                       rec.get("error", rec.get("reason", ""))[:80]])
        cases = rec.get("cases", {})
        for case, m in cases.items():
            if case.startswith("lra-step"):
                lra_rows.append([name, m.get("visual_tokens", rec.get("visual_tokens", "")),
                                 "on" if case.endswith("on") else "off", _gib(m.get("peak_bytes")),
                                 _gib(m.get("step_extra_bytes")), _gib(m.get("activation_estimate_bytes")),
                                 f"{m['seconds']:.2f}" if "seconds" in m else "",
                                 {True: "yes", False: "NO"}.get(m.get("fits_24gib_card"), ""),
                                 m["status"] if m["status"] == "ok" else f"{m['status']}: {m.get('error', m.get('reason', ''))[:60]}"])
                continue
            if case == "latent":
                for prob, kept in m.get("problems", {}).items():
                    bf, fp = kept["bfloat16"], kept["float16"]
                    latent_rows.append([name, rec.get("dtype", ""), prob, f"{bf['rms_ratio']:.2e}",
                                        f"{bf['rel_error']:.2f} / {bf['cosine']:.2f}",
                                        f"{fp['rel_error']:.2f} / {fp['cosine']:.2f}"])
                if m.get("status") != "ok":
                    latent_rows.append([name, rec.get("dtype", ""), "", "", "", f"{m['status']}: "
                                        f"{m.get('error', m.get('reason', ''))[:60]}"])
                continue
            rows.append([name, case, f"{m['median_s']:.3f}" if "median_s" in m else "",
                         f"{m['model_s']:.3f}" if "model_s" in m else "", f"{m['box_s']:.3f}" if "box_s" in m else "",
                         f"{m['model_x_floor']:.2f}" if "model_x_floor" in m else "",
                         f"{m['x_floor']:.2f}" if "x_floor" in m else "",
                         f"{m['model_x_ours']:.2f}" if "model_x_ours" in m else "",
                         _gib(m.get("peak_bytes")), _gib(m.get("extra_bytes")),
                         f"{m['peak_x_floor']:.2f}" if "peak_x_floor" in m else "",
                         {True: "yes", False: "NO"}.get(m.get("maps_equal"), ""),
                         f"{m.get('timed_runs', '')}+{len(m.get('warmup_s', []))}" if "timed_runs" in m else "",
                         m["status"] if m["status"] == "ok" else f"{m['status']}: {m.get('error', m.get('reason', ''))[:60]}"])

        def ratio(case, key):
            v = cases.get(case, {}).get(key)
            return f"{v:.2f}" if isinstance(v, float) else "n/a"

        lra_fit = {k: cases.get(f"lra-step-{k}", {}).get("fits_24gib_card") for k in ("off", "on")}
        targets.append([name, ratio("plain", "model_x_floor") + " (≤ 1.5)", ratio("tas", "model_x_floor"),
                        ratio("full-1", "model_x_floor"), ratio("full-2", "model_x_floor") + " (≤ 6)",
                        ratio("ref-plain", "model_x_ours") + " / " + ratio("ref-full-2", "model_x_ours") + " (≥ 5)",
                        ratio("full-2", "peak_x_floor") + " (≤ 1.5)",
                        "/".join({True: "yes", False: "no", None: "n/a"}[lra_fit[k]] for k in ("off", "on"))])
    parts = head + ["", "Models:", "",
                    table(["model", "status", "B params", "build s", "visual tokens", "tokens/prompt", "wall s", "note"],
                          models),
                    "", "Grounding (median of the timed runs, synchronised; `model s` / `box s` = medians of each run "
                        "less / of its CPU box stage `select`; `runs` = timed + warm-up; GiB = max_memory_allocated, "
                        "weights included):", "",
                    table(["model", "case", "median s", "model s", "box s", "model x floor", "total x floor",
                           "ref / ours (model)", "peak GiB", "extra GiB", "peak x floor", "maps equal", "runs",
                           "status"], rows),
                    "", f"Latent prompts after {LATENT_STEPS} LRA steps: rms relative to the visual tokens', and "
                        "what the decoder sees of them rounded to bf16 / fp16 (relative error / cosine):", "",
                    table(["model", "model dtype", "prompt", "rms / tokens", "bf16", "fp16"], latent_rows),
                    "", "One LRA step, 3 problems (V_s, V_t, V_s'), peak against a 24 GiB card (23.5 usable):", "",
                    table(["model", "visual tokens", "checkpointing", "peak GiB", "step extra GiB",
                           "estimated activations GiB", "s", "fits 24 GiB", "status"], lra_rows),
                    "", "Targets of issue 5, in model passes (the CPU box stage apart):", "",
                    table(["model", "plain x floor", "tas x floor", "full-1 x floor", "full-2 x floor",
                           "ref / ours (plain / full-2)", "full-2 peak x floor", "LRA fits 24 GiB (ckpt off/on)"],
                          targets)]
    return "\n".join(parts)


def main(argv=None) -> int:
    """Exit status: 1 when no case finished ok; a dry run (which checks the code paths) also fails when a case
    was skipped for time or a model finished nothing beyond the floor."""
    a = parse_args(argv)
    if a.child:
        child(a)
        return 0
    result = parent(a)
    if result["ran_ok"] == 0 or (a.dry_run and result["not_ok"]):
        print(f"gpu_check: FAILED: {result['ran_ok']} case(s) ran ok; ran short: "
              f"{', '.join(result['not_ok']) or 'none'}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
