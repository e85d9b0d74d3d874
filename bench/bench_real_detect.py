"""Motion and HOG proposals on the real clips: recall, false boxes and CPU cost per clip, at the defaults.

For each clip of an annotation file (default ``test/data/real/annotations.json``) and each source:

* ``motion``: the per-frame blobs (:class:`MotionBlobs`, every frame) and the CLI's tracks
  (``stvg-proposals --source motion``: ``propose_motion``), at the full size and on a synthetic handheld
  camera (vtest warped by a known pan + shake + roll, ``test/moving_camera.py``);
* ``hog``: the detector on every ``detect_every``-th frame (the CLI's keyframes) at or above
  ``box_threshold``, and the CLI's tracks (``propose``), at the full size (the CLI's) and with the longer
  side at ``--ingest`` px (the node's stored frames with a small model; boxes scaled back to the clip's pixels).

Printed per row: recall@0.5 and @0.3 of the hand-checked boxes (one-to-one), false boxes per annotated
frame, CPU ms per processed frame (``time.process_time``: every thread) and, for HOG, CPU seconds per
second of video at the live ``rate_hz``.  Run with ``OMP_NUM_THREADS=1 nice``.  ``STVG_ROOT=/path/to/checkout``
measures another checkout's code (e.g. main's, for a before/after table).

    python bench/bench_real_detect.py [--clips vtest.avi cup.mp4] [--set hog_upscale=2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent.parent
ROOT = Path(os.environ.get("STVG_ROOT", HERE))
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(HERE / "test"))


def _frames(clip, stop, side=0):
    """The clip's frames up to ``stop`` (one pass), downscaled so the longer side is ``side`` (0: as is)."""
    import cv2

    from stvg_ros.proposals.annotated import iter_frames

    out = []
    for i, f in iter_frames(clip.path, stop):
        if side and max(f.shape[:2]) > side:
            s = side / max(f.shape[:2])
            f = cv2.resize(f, (round(f.shape[1] * s), round(f.shape[0] * s)), interpolation=cv2.INTER_AREA)
        out.append((i, f))
    return out


def _scores(proposed, clip, scale=1.0):
    from stvg_ros.proposals.annotated import proposal_recall

    from stvg_ros.proposals.annotated import match_frame

    boxes = {f: [[v / scale for v in b] for b in bs] for f, bs in proposed.items()}
    r5, r3 = proposal_recall(boxes, clip, 0.5), proposal_recall(boxes, clip, 0.3)
    # 95 % bootstrap interval of recall@0.5 over the annotated frames (boxes of one frame resampled together)
    per = np.array([(match_frame(boxes.get(f, []), [b.box for b in clip.boxes[f]], 0.5)[0], len(clip.boxes[f]))
                    for f in clip.frames], float)
    draws = np.random.default_rng(0).integers(0, len(per), (2000, len(per)))
    sums = per[draws].sum(1)
    lo, hi = np.percentile(sums[:, 0] / np.maximum(sums[:, 1], 1), [2.5, 97.5])
    return {"recall@0.5": r5["recall"], "95% CI": f"[{lo:.2f}, {hi:.2f}]", "recall@0.3": r3["recall"],
            "false/frame@0.5": r5["false_per_frame"], "boxes": r5["boxes"]}


def motion_rows(name, clip, frames, cfg):
    from stvg_ros.proposals.cli import propose_motion
    from stvg_ros.proposals.motion import MotionBlobs

    blobs = MotionBlobs(cfg)
    per_frame, t0 = {}, time.process_time()
    for i, f in frames:
        det = blobs.apply(f)
        if i in clip.boxes:
            per_frame[i] = det.boxes.tolist()
    blob_ms = 1000 * (time.process_time() - t0) / len(frames)
    t0 = time.process_time()
    tracks = propose_motion(iter(frames), cfg, len(frames))
    track_ms = 1000 * (time.process_time() - t0) / len(frames)
    by_frame = {f: [t.boxes[float(f)] for t in tracks if float(f) in t.boxes] for f in clip.boxes}
    return [dict(clip=name, source="motion", stage="blobs", **_scores(per_frame, clip), cpu_ms=blob_ms),
            dict(clip=name, source="motion", stage="tracks", **_scores(by_frame, clip), cpu_ms=track_ms)]


class _Recorder:
    """The detector, recording each keyframe's confident boxes and the CPU time of ``detect``."""

    def __init__(self, detector, threshold):
        self.detector, self.threshold, self.seen, self.cpu, self.frames = detector, threshold, [], 0.0, 0

    def detect(self, frames, phrase, min_score=None):
        t0 = time.process_time()
        out = self.detector.detect(frames, phrase, min_score=min_score)
        self.cpu += time.process_time() - t0
        self.frames += len(frames)
        self.seen.extend(d.boxes[d.scores >= self.threshold].tolist() for d in out)
        return out


def hog_rows(name, clip, frames, cfg, scale=1.0, label="full", fps=0.0):
    """HOG on the CLI's keyframes (every ``detect_every``-th frame) or, with ``fps``, on the live
    stage's (``rate_hz`` a second: frame ``round(k * fps / rate_hz)``)."""
    from stvg_ros.proposals.cli import propose
    from stvg_ros.proposals.hog import HogPeopleDetector

    if fps:
        wanted = {round(k * fps / cfg.rate_hz) for k in range(int(len(frames) * cfg.rate_hz / fps) + 1)}
        keys = [(i, f) for i, f in frames if i in wanted]
        label += f"@{cfg.rate_hz:g}Hz"
    else:
        keys = [(i, f) for i, f in frames if i % cfg.detect_every == 0]
        label += f"@every{cfg.detect_every}"
    rec = _Recorder(HogPeopleDetector(cfg), cfg.box_threshold)
    tracks = propose(iter(keys), rec, cfg, "person", len(frames))
    raw = {i: b for (i, _), b in zip(keys, rec.seen) if i in clip.boxes}
    by_frame = {f: [t.boxes[float(f)] for t in tracks if float(f) in t.boxes] for f in clip.boxes}
    ms = 1000 * rec.cpu / max(rec.frames, 1)
    extra = {"cpu_ms": ms, "cpu_s_per_s@rate": ms * cfg.rate_hz / 1000,
             "scanned": getattr(rec.detector, "scanned_area", float("nan")) / max(rec.frames, 1)}
    return [dict(clip=f"{name}@{label}", source="hog", stage="detections", **_scores(raw, clip, scale), **extra),
            dict(clip=f"{name}@{label}", source="hog", stage="tracks", **_scores(by_frame, clip, scale), **extra)]


def main(argv=None) -> int:
    import cv2

    from stvg_ros.config import ProposalConfig
    from stvg_ros.proposals.annotated import load_annotations

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--annotations", default=str(HERE / "test/data/real/annotations.json"))
    ap.add_argument("--videos", help="folder of the videos (default: the annotation file's)")
    ap.add_argument("--clips", nargs="*", help="only these clip names")
    ap.add_argument("--sources", nargs="*", default=["motion", "hog"])
    ap.add_argument("--hog-clips", nargs="*", default=["vtest.avi"], help="clips of people (HOG rows)")
    ap.add_argument("--ingest", type=int, default=224, help="the node's stored longer side for the HOG row (0: skip)")
    ap.add_argument("--no-moving", action="store_true", help="skip the synthetic handheld camera")
    ap.add_argument("--set", nargs="*", default=[], help="ProposalConfig overrides, name=value (YAML values)")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    import yaml

    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    clips = [c for c in load_annotations(args.annotations, args.videos) if not args.clips or c.name in args.clips]
    rows = []
    for clip in clips:
        stop = max(clip.frames) + 1
        frames = _frames(clip, stop)
        h, w = frames[0][1].shape[:2]
        if "motion" in args.sources:
            cfg = ProposalConfig(source="motion").replace(**overrides)
            rows += motion_rows(clip.name, clip, frames, cfg)
            if not args.no_moving and clip.name.startswith("vtest"):
                from moving_camera import camera_path, warp_clip, warp_frames

                path = camera_path(stop, "handheld", seed=0)
                moved = list(warp_frames(frames, path))
                rows += motion_rows(clip.name + "+handheld", warp_clip(clip, (h, w), path), moved, cfg)
        if "hog" in args.sources and clip.name in args.hog_clips:
            cfg = ProposalConfig(source="hog").replace(**overrides)
            fps = cv2.VideoCapture(str(clip.path)).get(cv2.CAP_PROP_FPS) or 10.0
            small = _frames(clip, stop, args.ingest) if args.ingest and max(h, w) > args.ingest else None
            for rate in (0.0, fps):
                rows += hog_rows(clip.name, clip, frames, cfg, fps=rate)
                if small is not None:
                    rows += hog_rows(clip.name, clip, small, cfg, args.ingest / max(h, w), f"{args.ingest}px", rate)
        del frames
    head = ["clip", "source", "stage", "recall@0.5", "95% CI", "recall@0.3", "false/frame@0.5", "boxes", "cpu_ms",
            "cpu_s_per_s@rate", "scanned"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(f"{r[k]:.2f}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in head) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
