"""Shared by the benchmark scripts: timing with warm-up and medians, peak memory, machine description, tables."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import threading
import time
from pathlib import Path
from typing import Callable

import torch


def synchronize(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def rss_bytes() -> int:
    """Resident set size of this process now, from /proc (no psutil)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def release_freed_memory() -> None:
    """Return freed heap pages to the OS (glibc ``malloc_trim``), so that RSS measured next starts from what
    is really in use and not from an earlier case's high-water mark.  No-op where unavailable."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory while the ``with`` block runs.

    GPU: ``torch.cuda.max_memory_allocated`` after a reset (exact, what the caching allocator handed out).
    CPU: the process RSS sampled every ``interval`` s by a thread, after freed heap pages were returned to
    the OS (a sampled peak: a spike shorter than the interval can be missed; ``resource.getrusage``'s
    ru_maxrss cannot be reset between cases).  RSS includes Python, the libraries and the weights.
    ``peak`` is the absolute peak, ``baseline`` what was in use at entry (weights and the like), so
    ``peak - baseline`` is what the work itself needed.
    """

    def __init__(self, device: torch.device, interval: float = 0.002):
        self.device = device
        self.interval = interval
        self.peak = 0
        self.baseline = 0

    def __enter__(self):
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline = torch.cuda.memory_allocated(self.device)
        else:
            release_freed_memory()
            self.baseline = rss_bytes()
            self.peak = self.baseline
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            self._stop.wait(self.interval)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, rss_bytes())
        return False

    @property
    def extra(self) -> int:
        return max(0, self.peak - self.baseline)


def measure(fn: Callable[[], object], device: torch.device, warmup: int = 1, repeats: int = 3) -> dict:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed (synchronised on GPU).

    Returns median/min/all times, the peak memory over the timed runs, and the last return value.
    """
    for _ in range(warmup):
        fn()
        synchronize(device)
    times = []
    value = None
    with PeakMemory(device) as mem:
        for _ in range(repeats):
            synchronize(device)
            t = time.perf_counter()
            value = fn()
            synchronize(device)
            times.append(time.perf_counter() - t)
    return {"median_s": statistics.median(times), "min_s": min(times), "times_s": times,
            "peak_bytes": mem.peak, "baseline_bytes": mem.baseline, "extra_bytes": mem.extra, "value": value}


def case_clock(device: torch.device) -> Callable[[], float]:
    """The clock cases are compared on: this process's CPU time on a CPU (what other jobs on a shared machine
    do not inflate; all threads counted), wall time after ``torch.cuda.synchronize`` on a GPU."""
    if device.type == "cuda":
        def clock() -> float:
            torch.cuda.synchronize(device)
            return time.perf_counter()
        return clock
    return time.process_time


#: the stage of a grounding that is not a model pass: track choice and box segmentation on the CPU
BOX_STAGE = "select"


def interleaved(cases: dict[str, Callable[[Callable[[str], None]], object]], device: torch.device,
                warmup: int = 1, rounds: int = 3) -> dict[str, dict]:
    """Time ``cases`` in rounds: every round runs each case once (the order rotated from round to round), so
    a slow spell of a shared machine hits all cases alike and the floor is measured in the same rounds as
    what is divided by it.  ``case(mark)`` runs once; it may call ``mark(stage)`` when a stage starts (the
    grounder's ``checkpoint``): the box stage is the grounder's ``timings['box_cpu']`` where it records it (CPU in
    every thread it ran in), else the time from ``mark(BOX_STAGE)`` to the end less the refine pass; the rest the
    model passes.  Clock: :func:`case_clock`.  Memory is measured afterwards, one untimed run per case
    (a sampling thread would add CPU time).  Returns per case the medians (``median_s``, ``model_s``,
    ``box_s``), every round's times, the peak memory and the last return value."""
    clock = case_clock(device)
    names = list(cases)
    runs: dict[str, list] = {n: [] for n in names}
    values: dict[str, object] = {}
    for r in range(warmup + rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            marks: list[tuple[str, float]] = []
            t0 = clock()
            values[name] = cases[name](lambda stage: marks.append((stage, clock())))
            t1 = clock()
            box_start = next((t for stage, t in marks if stage == BOX_STAGE), t1)
            timings = getattr(values[name], "timings", None) or {}
            refine = timings.get("refine_pass_cpu", 0.0)  # a model pass
            box = timings.get("box_cpu", max(0.0, t1 - box_start - refine))  # measured in its threads where run
            if r >= warmup:
                runs[name].append((t1 - t0, box))
    out = {}
    for name in names:
        with PeakMemory(device) as mem:
            cases[name](lambda stage: None)
        total = [t for t, _ in runs[name]]
        box = [b for _, b in runs[name]]
        model = [t - b for t, b in runs[name]]
        out[name] = {"median_s": statistics.median(total), "model_s": statistics.median(model),
                     "box_s": statistics.median(box), "min_s": min(total), "times_s": total, "model_times_s": model,
                     "box_times_s": box, "clock": "cuda-synchronized wall" if device.type == "cuda" else "process CPU",
                     "peak_bytes": mem.peak, "baseline_bytes": mem.baseline, "extra_bytes": mem.extra,
                     "value": values[name]}
    return out


def staged(run: Callable[[Callable[[str], None]], object], clock: Callable[[], float]) -> tuple[object, float, dict]:
    """Run ``run(mark)`` once on ``clock`` (:func:`case_clock`): ``(value, total seconds, seconds per stage)``.
    ``mark(stage)`` is the grounder's ``checkpoint`` (called as each stage starts, and before each LRA step): a
    stage lasts until the next mark of another stage, the last one until the end; the time before the first mark
    is ``'before'``.  Model passes = total - ``stages[BOX_STAGE]`` (the box stage runs to the end, the refine pass
    of a long window included)."""
    marks: list[tuple[str, float]] = []
    t0 = clock()
    value = run(lambda stage: marks.append((stage, clock())))
    t1 = clock()
    stages: dict[str, float] = {}
    for (name, t), (_, t_next) in zip([("before", t0)] + marks, marks + [("", t1)]):
        stages[name] = stages.get(name, 0.0) + t_next - t
    return value, t1 - t0, stages


def box_seconds(stages: dict, result=None) -> float:
    """The box stage's seconds of a grounding timed by :func:`staged`: the grounder's ``timings['box_cpu']`` (CPU
    seconds in every thread it ran in) where recorded, else its ``select`` stage less the refine pass (a model
    pass that runs inside it on a long window; the grounder records its CPU seconds in
    ``result.timings['refine_pass_cpu']``)."""
    timings = getattr(result, "timings", None) or {}
    if "box_cpu" in timings:  # the grounder's own count, in every thread the box stage used (it may start on a
        return timings["box_cpu"]  # worker during the model's last passes: box_overlap)
    return max(0.0, stages.get(BOX_STAGE, 0.0) - timings.get("refine_pass_cpu", 0.0))


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100])."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q / 100.0
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def machine() -> dict:
    info = {"date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu": _cpu_name(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_bytes"] = torch.cuda.get_device_properties(0).total_memory
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mib(n: float) -> str:
    return f"{n / 2**20:.1f}"


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A Markdown table (prints fine in a terminal too)."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in cells])


def write_json(path: str | Path, data: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")


def _jsonable(o):
    if isinstance(o, (torch.device, torch.dtype, Path)):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
