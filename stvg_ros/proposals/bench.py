"""Cost of the proposal stage per frame: detector, tracker, and a query's wait for tracks.

    python -m stvg_ros.proposals.bench                       # tiny random Grounding DINO, CPU
    python -m stvg_ros.proposals.bench --kind owlv2 --frames 60
    python -m stvg_ros.proposals.bench --detector /models/grounding-dino-tiny --device cuda --size 640x480

Frames are a synthetic clip at ``--fps`` fed through :class:`LiveProposalStage` synchronously, so
the numbers are the stage's own cost (the node runs it on a background thread).  ``benchmark()``
returns the same numbers as a dict for the benchmark scripts.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from typing import Optional, Sequence

import numpy as np

from ..config import ProposalConfig


def synthetic_frames(n: int, size: tuple[int, int] = (480, 640), seed: int = 0) -> list[np.ndarray]:
    """``n`` frames (H, W) of two coloured rectangles moving over noise."""
    rng = np.random.default_rng(seed)
    h, w = size
    frames = []
    for i in range(n):
        f = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
        for k, colour in enumerate(((220, 40, 40), (40, 40, 220))):
            x = int((0.1 + 0.6 * i / max(n - 1, 1)) * w) if k == 0 else int((0.7 - 0.5 * i / max(n - 1, 1)) * w)
            y = int((0.2 + 0.4 * k) * h)
            f[y:y + h // 5, x:x + w // 6] = colour
        frames.append(f)
    return frames


def benchmark(detector_dir: Optional[str] = None, kind: str = "grounding_dino", frames: int = 30,
              size: tuple[int, int] = (480, 640), fps: float = 30.0, config: Optional[ProposalConfig] = None,
              device: str = "cpu") -> dict:
    """Run the stage over a synthetic clip; ms per frame of each part and query latencies."""
    from .detector import ZeroShotDetector
    from .live import LiveProposalStage
    from .tiny import tiny_detector

    cfg = (config or ProposalConfig()).replace(device=device)
    with tempfile.TemporaryDirectory() as tmp:
        path = detector_dir or tiny_detector(kind, tmp)
        t0 = time.perf_counter()
        detector = ZeroShotDetector.from_pretrained(path, cfg)
        load_s = time.perf_counter() - t0
    clip = synthetic_frames(frames, size)
    stamps = [i / fps for i in range(frames)]
    detector.detect(clip[:1], cfg.default_class)  # warm-up (first call allocates)
    detector.calls, detector.seconds = 0, 0.0
    stage = LiveProposalStage(detector, cfg, background=False)
    t0 = time.perf_counter()
    for f, s in zip(clip, stamps):
        stage.add_frame(f, s)
    ingest_s = time.perf_counter() - t0
    stats = stage.stats()  # before the queries: the new phrase's detection is not live cost
    t0 = time.perf_counter()
    stage.tracks_for(stamps, cfg.default_class)
    running_query_ms = 1000 * (time.perf_counter() - t0)
    t0 = time.perf_counter()
    stage.tracks_for(stamps, "car")
    new_phrase_query_ms = 1000 * (time.perf_counter() - t0)
    tracks = len(stage.tracks_for(stamps, cfg.default_class))
    stage.close()
    return {
        "detector": detector.kind, "detector_path": detector_dir or f"tiny random {kind}",
        "device": str(detector.device), "frames": frames, "size": f"{size[1]}x{size[0]}",
        "keyframes": stats["keyframes"], "load_s": round(load_s, 3),
        "detector_ms_per_keyframe": round(stats["detector_ms_per_keyframe"], 3),
        "tracker_ms_per_keyframe": round(stats["tracker_ms_per_keyframe"], 3),
        "stage_ms_per_frame": round(stats["stage_ms_per_frame"], 3),
        "ingest_ms_per_frame": round(1000 * ingest_s / frames, 3),
        "query_running_class_ms": round(running_query_ms, 3),
        "query_new_phrase_ms": round(new_phrase_query_ms, 3),
        "tracks": tracks,
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stvg_ros.proposals.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--detector", help="local detector directory (default: a tiny random one)")
    p.add_argument("--kind", default="grounding_dino", choices=("grounding_dino", "owlv2"))
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--size", default="640x480", help="WxH of the synthetic frames")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--detect-every", type=int, default=10, help="keyframe stride (used when --rate-hz is 0)")
    p.add_argument("--rate-hz", type=float, default=3.0, help="detection keyframes per second (0: --detect-every)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="also write the numbers to this file")
    args = p.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    result = benchmark(args.detector, args.kind, args.frames, (h, w), args.fps,
                       ProposalConfig(detect_every=args.detect_every, rate_hz=args.rate_hz), args.device)
    width = max(len(k) for k in result)
    for k, v in result.items():
        print(f"{k:<{width}}  {v}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
