"""Proposal-free boxes on a panning camera: GrabCut cold on every frame vs a chain that carries the colour models.

Each hand-boxed object of scikit-image's bundled photographs (test/data/photo_boxes.json) is followed over
``--frames`` frames while the camera pans ``step`` px a frame; each frame gets a relevance peak planted on
the object (test_regions.pan_ious, planted_map: a Gaussian bump on a 28 px token grid) and one seed.  Cold: every
frame's cut starts from k-means (``box_grabcut_iterations``); chain: runs of ``--chain`` frames
(``box_grabcut_chain``) whose later cuts take the previous frame's models (``ColourChain``).  Prints, per
pan step, the mean box IoU over the frames after the first, the share of those boxes with IoU >= 0.5, the
objects whose mean IoU is >= 0.5, and the CPU milliseconds per GrabCut call by kind.

    python bench/bench_photo_pans.py [--steps 3 8 16] [--frames 8] [--chain 8]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "test"))  # the photo tests' pan: a relevance peak planted on each frame


def main(argv=None) -> int:
    import cv2

    from stvg_ros.config import GroundingConfig
    from stvg_ros.adapters.tiny_models import photo_dir
    from test_regions import DATA, pan_ious

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[3, 8, 16], help="pan, pixels per frame")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--chain", type=int, default=8, help="frames per chain (the default: the whole pan)")
    ap.add_argument("--method", default="auto", help="segmentation method (GroundingConfig.box_method)")
    args = ap.parse_args(argv)
    root = photo_dir("astronaut.png")
    if root is None:
        print("bench_photo_pans: scikit-image's photographs are not installed "
              "(pip install --no-deps -r requirements/test.txt)", file=sys.stderr)
        return 1
    spec = json.loads((DATA / "photo_boxes.json").read_text())
    real, calls = cv2.grabCut, defaultdict(list)

    def timed_grabcut(img, mask, rect, bgd, fgd, iterations, mode):
        c = time.process_time()
        out = real(img, mask, rect, bgd, fgd, iterations, mode)
        calls[mode].append(time.process_time() - c)
        return out

    cv2.grabCut = timed_grabcut
    kinds = {cv2.GC_INIT_WITH_MASK: "cold", cv2.GC_EVAL_FREEZE_MODEL: "carried"}
    print(f"photo pans: {args.frames} frames, chains of {args.chain}, GrabCut {GroundingConfig.box_grabcut_iterations} "
          f"iterations cold, method {args.method}; IoU over frames 2..{args.frames}\n")
    print("| pan px/frame | cuts | mean IoU | IoU >= 0.5 | objects mean >= 0.5 | ms per cut (calls) |")
    print("|---|---|---|---|---|---|")
    for step in args.steps:
        for mode in ("cold", "chain"):
            calls.clear()
            per_object = []
            for name, objects in spec["boxes"].items():
                image = cv2.cvtColor(cv2.imread(str(root / name)), cv2.COLOR_BGR2RGB)
                for box in objects.values():
                    ious = pan_ious(image, box, step, args.frames, args.method,
                                    chain_frames=args.chain if mode == "chain" else 0)
                    per_object.append(ious[1:])
            a = np.array(per_object)
            cost = ", ".join(f"{kinds.get(k, k)} {1000 * np.mean(v):.1f} ({len(v)})" for k, v in sorted(calls.items()))
            print(f"| {step} | {mode} | {a.mean():.3f} | {(a >= 0.5).mean():.2f} | {(a.mean(1) >= 0.5).sum()} / {len(a)} "
                  f"| {cost} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
