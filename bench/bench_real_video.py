"""Proposals and tracks on real clips with hand-checked boxes, the package's sources next to OpenCV's.

Reads an annotation file in the format of ``test/data/real/annotations.json`` (see
``stvg_ros.proposals.annotated``) and prints, per clip and method:

* proposal recall@0.5 and @0.3 and false boxes per annotated frame (one-to-one matching);
* one-track coverage: per object, the share of its annotated frames on which its ONE best track has
  IoU >= 0.5 (mean and min over objects, with a 95 % bootstrap CI of the mean over objects), id switches,
  tracks per object;
* CPU ms per decoded frame of each stage (detection, tracking; ``time.process_time``).

Methods: the package's sources through the CLI's own code path (``stvg-proposals --source motion|hog``:
``stvg_ros.proposals.cli.propose_motion`` / ``propose``) at their defaults; ``motion-frames``: the same
blobs with the frame handed to the tracker too (see :func:`run_motion_frames`); OpenCV peers: plain MOG2 +
contours, HOG at its defaults (every annotated frame), CSRT / KCF / MIL started from the TRUE first box of
each object (their coverage counts the object's later annotated frames only).  ``track-only``: the
package's tracker fed the true boxes (linearly interpolated between annotated frames), jittered (5 % of
the box size), dropped (20 % of frames, and one 1 s gap per object) and given low scores (20 %), over
``--seeds`` seeds: a tracker figure that does not depend on the detector.

    OMP_NUM_THREADS=1 nice python bench/bench_real_video.py [--annotations FILE --videos DIR] [--json OUT]
        [--methods motion hog mog2 hog-cv trackers track-only]
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stvg_ros.proposals import ProposalConfig  # noqa: E402
from stvg_ros.proposals.annotated import (AnnotatedClip, iter_frames, load_annotations,  # noqa: E402
                                          proposal_recall, track_coverage)
from stvg_ros.proposals.tracks import Detections  # noqa: E402

METHODS = ("motion", "motion-frames", "hog", "mog2", "hog-cv", "trackers", "track-only")


class StageClock:
    """CPU seconds spent inside some methods, by stage name (patched on their classes while active)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def timing(self, targets: dict[str, list[tuple[type, str]]]):
        saved = []

        def wrap(stage: str, fn: Callable):
            def timed(*args, **kwargs):
                t0 = time.process_time()
                try:
                    return fn(*args, **kwargs)
                finally:
                    self.seconds[stage] = self.seconds.get(stage, 0.0) + time.process_time() - t0
            return timed

        for stage, items in targets.items():
            for cls, name in items:
                fn = getattr(cls, name)
                saved.append((cls, name, fn))
                setattr(cls, name, wrap(stage, fn))
        try:
            yield self
        finally:
            for cls, name, fn in reversed(saved):
                setattr(cls, name, fn)


def _frames(clip: AnnotatedClip, stop: int):
    return iter_frames(clip.path, stop=stop)


def _boxes_by_frame(tracks: dict) -> dict[int, list]:
    out: dict[int, list] = {}
    for boxes in tracks.values():
        for f, b in boxes.items():
            out.setdefault(int(f), []).append(b)
    return out


def _bootstrap_mean(values, n: int = 2000, seed: int = 0) -> list[float]:
    v = np.asarray(values, float)
    if len(v) < 2:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), (n, len(v)))].mean(1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def _scores(clip: AnnotatedClip, proposed: dict[int, list], tracks: dict | None, clock: StageClock,
            frames: int) -> dict:
    r5, r3 = proposal_recall(proposed, clip, 0.5), proposal_recall(proposed, clip, 0.3)
    out = {"recall@0.5": r5["recall"], "recall@0.3": r3["recall"], "false_per_frame": r5["false_per_frame"]}
    if tracks is not None:
        cov = track_coverage(tracks, clip)
        out.update({"coverage_mean": cov["coverage_mean"], "coverage_min": cov["coverage_min"],
                    "coverage_ci95": _bootstrap_mean([o["coverage"] for o in cov["objects"].values()]),
                    "id_switches": cov["id_switches"], "tracks_per_object": cov["tracks_per_object"],
                    "coverage_by_object": {k: round(o["coverage"], 3) for k, o in cov["objects"].items()}})
    for stage, s in clock.seconds.items():
        out[f"{stage}_ms_per_frame"] = 1000.0 * s / max(frames, 1)
    return out


def _tracks_of(track_list) -> dict:
    return {t.id: {int(f): b for f, b in t.boxes.items()} for t in track_list}


# --- the package's sources ----------------------------------------------------------------------

def run_motion(clip: AnnotatedClip, n: int) -> dict:
    from stvg_ros.proposals.cli import propose_motion
    from stvg_ros.proposals.motion import MotionBlobs
    from stvg_ros.proposals.tracker import ByteTracker

    clock = StageClock()
    with clock.timing({"detection": [(MotionBlobs, "apply")], "tracking": [(ByteTracker, "update")]}):
        tracks = _tracks_of(propose_motion(_frames(clip, n), ProposalConfig(source="motion"), n))
    return _scores(clip, _boxes_by_frame(tracks), tracks, clock, n)


def run_motion_frames(clip: AnnotatedClip, n: int) -> dict:
    """``motion`` with the frame handed to the tracker too (colours, static hold): what the live stage gives
    once ``MotionTracks.add_frame`` passes its frame to ``tracker.update`` (a one-line change in motion.py)."""
    import inspect as _inspect

    from stvg_ros.proposals.motion import MotionBlobs, MotionTracks
    from stvg_ros.proposals.tracker import ByteTracker

    cfg = ProposalConfig(source="motion")
    source = MotionTracks(cfg.replace(window_s=float("inf"), rate_hz=0.0))
    takes_frame = "frame" in _inspect.signature(ByteTracker.update).parameters
    clock = StageClock()
    with clock.timing({"detection": [(MotionBlobs, "apply")], "tracking": [(ByteTracker, "update")]}):
        for i, frame in _frames(clip, n):
            dets = source.blobs.apply(frame)
            source.tracker.update(i, dets, frame=frame) if takes_frame else source.tracker.update(i, dets)
    hold = cfg.hold_keyframes * cfg.detect_every
    tracks = _tracks_of(t.sampled(range(n), hold) for t in source.tracker.tracks() if t.boxes)
    return _scores(clip, _boxes_by_frame(tracks), tracks, clock, n)


def run_hog(clip: AnnotatedClip, n: int) -> dict:
    from stvg_ros.proposals.cli import propose
    from stvg_ros.proposals.hog import HogPeopleDetector
    from stvg_ros.proposals.tracker import ByteTracker

    cfg = ProposalConfig(source="hog")
    clock = StageClock()
    with clock.timing({"detection": [(HogPeopleDetector, "detect")], "tracking": [(ByteTracker, "update")]}):
        keyframes = iter_frames(clip.path, indices=range(0, n, cfg.detect_every))
        tracks = _tracks_of(propose(keyframes, HogPeopleDetector(cfg), cfg, cfg.default_class, n))
    return _scores(clip, _boxes_by_frame(tracks), tracks, clock, n)


# --- OpenCV peers -------------------------------------------------------------------------------

def run_mog2(clip: AnnotatedClip, n: int, min_area: float = 100.0) -> dict:
    """Plain OpenCV: MOG2 at its defaults, shadows dropped, external contours' bounding boxes >= ``min_area`` px²."""
    import cv2

    sub = cv2.createBackgroundSubtractorMOG2()
    proposed: dict[int, list] = {}
    clock = StageClock()
    wanted = set(clip.frames)
    for i, frame in _frames(clip, n):
        t0 = time.process_time()
        mask = sub.apply(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        _, mask = cv2.threshold(mask, 200, 255, cv2.THRESH_BINARY)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        boxes = [(x, y, x + w, y + h) for x, y, w, h in map(cv2.boundingRect, contours) if w * h >= min_area]
        clock.seconds["detection"] = clock.seconds.get("detection", 0.0) + time.process_time() - t0
        if i in wanted:
            proposed[i] = boxes
    return _scores(clip, proposed, None, clock, n)


def run_hog_cv(clip: AnnotatedClip, n: int) -> dict:
    """Plain OpenCV HOG people detector at its defaults on every annotated frame (ms per annotated frame)."""
    import cv2

    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor.getDefaultPeopleDetector())
    proposed: dict[int, list] = {}
    clock = StageClock()
    for i, frame in iter_frames(clip.path, indices=clip.frames):
        t0 = time.process_time()
        rects, _ = hog.detectMultiScale(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))
        clock.seconds["detection"] = clock.seconds.get("detection", 0.0) + time.process_time() - t0
        proposed[i] = [(x, y, x + w, y + h) for x, y, w, h in np.asarray(rects).reshape(-1, 4)]
    return _scores(clip, proposed, None, clock, len(clip.frames))


def run_trackers(clip: AnnotatedClip, n: int, kinds=("CSRT", "KCF", "MIL")) -> dict:
    """OpenCV's single-object trackers, one per object, started from its TRUE box on its first annotated
    frame; coverage = share of its LATER annotated frames with IoU >= 0.5."""
    import cv2

    from stvg_ros.boxes import box_iou

    first: dict[str, tuple[int, tuple]] = {}
    truth: dict[str, dict[int, tuple]] = {}
    for f in clip.frames:
        for b in clip.boxes[f]:
            first.setdefault(b.id, (f, b.box))
            truth.setdefault(b.id, {})[f] = b.box
    last = {o: max(t) for o, t in truth.items()}
    out = {}
    for kind in kinds:
        live: dict[str, object] = {}
        hits = {o: [] for o in truth}
        seconds, updates = 0.0, 0
        for i, frame in _frames(clip, n):
            bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
            for o, (f0, box) in first.items():
                if i == f0:
                    tr = getattr(cv2, f"Tracker{kind}_create")()
                    x0, y0, x1, y1 = (int(round(v)) for v in box)
                    t0 = time.process_time()
                    tr.init(bgr, (x0, y0, x1 - x0, y1 - y0))
                    seconds += time.process_time() - t0
                    live[o] = tr
                elif o in live and i <= last[o]:
                    t0 = time.process_time()
                    ok, (x, y, w, h) = live[o].update(bgr)
                    seconds += time.process_time() - t0
                    updates += 1
                    if i in truth[o]:
                        hits[o].append(ok and box_iou((x, y, x + w, y + h), truth[o][i]) >= 0.5)
        cov = {o: float(np.mean(h)) for o, h in hits.items() if h}
        vals = list(cov.values())
        out[kind] = {"coverage_mean": float(np.mean(vals)) if vals else float("nan"),
                     "coverage_min": float(np.min(vals)) if vals else float("nan"),
                     "coverage_ci95": _bootstrap_mean(vals),
                     "later_frames_covered": f"{sum(sum(h) for h in hits.values())}/{sum(len(h) for h in hits.values())}",
                     "tracking_ms_per_object_frame": 1000.0 * seconds / max(updates, 1),
                     "coverage_by_object": {k: round(v, 3) for k, v in cov.items()}}
    return out


# --- the tracker alone --------------------------------------------------------------------------

def true_paths(clip: AnnotatedClip) -> dict[str, dict[int, np.ndarray]]:
    """Each object's true box on every frame between its first and last annotated frame (linear in between)."""
    keys: dict[str, dict[int, tuple]] = {}
    for f in clip.frames:
        for b in clip.boxes[f]:
            keys.setdefault(b.id, {})[f] = b.box
    paths = {}
    for o, k in keys.items():
        fs = sorted(k)
        vals = np.array([k[f] for f in fs], float)
        frames = np.arange(fs[0], fs[-1] + 1)
        coords = np.stack([np.interp(frames, fs, vals[:, j]) for j in range(4)], 1)
        paths[o] = {int(f): c for f, c in zip(frames, coords)}
    return paths


def noisy_detections(paths: dict, n: int, seed: int, jitter: float = 0.05, drop: float = 0.2,
                     low: float = 0.2, gap: int = 10) -> list[Detections]:
    """Per frame: the true boxes jittered by ``jitter`` x their size, each dropped with ``drop``, scored
    0.3 (a weak box for the second association stage) with ``low`` else 0.9, every object hidden for
    ``gap`` consecutive frames once (at a random place of its path), boxes shuffled."""
    rng = np.random.default_rng(seed)
    hidden = {}
    for o, p in paths.items():
        fs = sorted(p)
        start = int(rng.integers(fs[0], max(fs[0] + 1, fs[-1] - gap)))
        hidden[o] = range(start, start + gap)
    out = []
    for i in range(n):
        boxes, scores = [], []
        for o, p in paths.items():
            if i not in p or i in hidden[o] or rng.random() < drop:
                continue
            b = p[i].copy()
            size = np.array([b[2] - b[0], b[3] - b[1]] * 2)
            boxes.append(b + rng.normal(0, jitter, 4) * size)
            scores.append(0.3 if rng.random() < low else 0.9)
        order = rng.permutation(len(boxes))
        out.append(Detections(np.array(boxes, np.float32).reshape(-1, 4)[order],
                              np.array(scores, np.float32)[order], ["person"] * len(boxes)))
    return out


def run_track_only(clip: AnnotatedClip, n: int, seeds: int = 5) -> dict:
    """The package's tracker (every frame, defaults, the frame image given when it takes one) on noisy true boxes."""
    from stvg_ros.proposals.tracker import ByteTracker, make_tracker

    cfg = ProposalConfig(detect_every=1)  # a detection on every frame
    takes_frame = "frame" in inspect.signature(ByteTracker.update).parameters
    paths = true_paths(clip)
    frames = [f for _, f in _frames(clip, n)]
    runs, seconds = [], 0.0
    for seed in range(seeds):
        tracker = make_tracker(cfg.tracker, cfg, label="person")
        for i, det in enumerate(noisy_detections(paths, len(frames), seed)):
            t0 = time.process_time()
            tracker.update(i, det, frame=frames[i]) if takes_frame else tracker.update(i, det)
            seconds += time.process_time() - t0
        hold = cfg.hold_keyframes * cfg.detect_every
        tracks = _tracks_of(t.sampled(range(len(frames)), hold) for t in tracker.tracks() if t.boxes)
        runs.append(track_coverage(tracks, clip))
    per_object = [o["coverage"] for r in runs for o in r["objects"].values()]
    by_object = {k: round(float(np.mean([r["objects"][k]["coverage"] for r in runs])), 3) for k in runs[0]["objects"]}
    return {"coverage_mean": float(np.mean([r["coverage_mean"] for r in runs])),
            "coverage_min": float(np.mean([r["coverage_min"] for r in runs])),
            "coverage_ci95": _bootstrap_mean(per_object),
            "id_switches": float(np.mean([r["id_switches"] for r in runs])),
            "tracks_per_object": float(np.mean([r["tracks_per_object"] for r in runs])),
            "tracking_ms_per_frame": 1000.0 * seconds / (seeds * len(frames)), "seeds": seeds,
            "takes_frame": takes_frame, "coverage_by_object": by_object}


def compare(before: dict, after: dict) -> None:
    """Paired differences of per-object coverage (after - before), mean and 95 % bootstrap CI over objects."""
    print("== coverage, paired over objects (this run - the earlier one)")
    for clip, methods in after.items():
        for m, r in methods.items():
            rows = r.items() if m == "trackers" else [(m, r)]
            for name, row in rows:
                old = before.get(clip, {}).get(m, {})
                old = old.get(name, {}) if m == "trackers" else old
                a, b = row.get("coverage_by_object"), old.get("coverage_by_object")
                if not a or not b:
                    continue
                diff = [a[k] - b[k] for k in a if k in b]
                print(f"  {clip} {name:<10} {np.mean(diff):+.3f} {_fmt(_bootstrap_mean(diff))} over {len(diff)} objects")


RUNNERS = {"motion": run_motion, "motion-frames": run_motion_frames, "hog": run_hog, "mog2": run_mog2, "hog-cv": run_hog_cv,
           "trackers": run_trackers, "track-only": run_track_only}


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--annotations", default=str(ROOT / "test/data/real/annotations.json"))
    p.add_argument("--videos", help="folder of the videos (default: the annotation file's)")
    p.add_argument("--clips", nargs="*", help="only these video file names")
    p.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
    p.add_argument("--seeds", type=int, default=5, help="track-only: noise seeds")
    p.add_argument("--json", help="write the numbers to this file")
    p.add_argument("--compare", help="a --json file of an earlier run: paired per-object coverage differences "
                                     "(this run - that one) with 95 %% bootstrap CIs")
    args = p.parse_args(argv)
    results: dict[str, dict] = {}
    for clip in load_annotations(args.annotations, args.videos):
        if args.clips and clip.name not in args.clips:
            continue
        n = max(clip.frames) + 1
        results[clip.name] = {}
        print(f"== {clip.name}: {len(clip.frames)} annotated frames, {len(clip.ids())} objects, frames 0..{n - 1}")
        for m in args.methods:
            r = RUNNERS[m](clip, n, args.seeds) if m == "track-only" else RUNNERS[m](clip, n)
            results[clip.name][m] = r
            for name, row in (r.items() if m == "trackers" else [(m, r)]):
                cells = "  ".join(f"{k}={_fmt(v)}" for k, v in row.items() if k != "coverage_by_object")
                print(f"  {name:<10} {cells}")
                if "coverage_by_object" in row:
                    print(f"  {'':<10} by object: {row['coverage_by_object']}")
            sys.stdout.flush()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if args.compare:
        compare(json.loads(Path(args.compare).read_text()), results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
