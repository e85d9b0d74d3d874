"""`moved` events of a standing query on a still target and on a moving one (issue 29, item 4).

The shipped model on its own world, through the real service in lock step (bench_stream.replay: each
frame waits for the evaluation it makes due), full groundings (the box every evaluation), the target's
look as the query ("the small red circle"), found thresholds 0.5/0.5 so that `appeared` is not what is
measured.  Streams: ``generate_sample(seed, 'test', 48)`` at 5 fps, windows of 8 frames every 2.

* still: the clip's first frame repeated 48 times (nothing moves) with fresh sensor noise on every frame
  (``--noise``, Gaussian, grey levels), as a camera gives it: the boxes jitter, trackers renumber;
* moving: the clips whose target moves left/right/up/down, as generated (it moves during its action
  span and stands still before and after).

Per stream: `moved` events, and for moving streams whether one came while the target moved (its window
overlaps the action) and how many came while it stood still.  ``--json`` keeps the per-stream events.

    OMP_NUM_THREADS=1 nice .venv/bin/python bench/bench_standing_moved.py --streams 12
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's stvg_ros, and `bench` as a package

FPS, WINDOW, EVERY = 5.0, 8, 2
MOVES = ("moves left", "moves right", "moves up", "moves down")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(ROOT / "models" / "stvg-synth-qwen"))
    ap.add_argument("--streams", type=int, default=12, help="still streams, and moving streams")
    ap.add_argument("--noise", type=float, default=3.0, help="sensor noise (std of grey levels) on every frame")
    ap.add_argument("--feature-cache-mb", type=int, default=0,
                    help="the grounder's feature cache (0: off; one grounder serves every stream's new service)")
    ap.add_argument("--move-confirm", type=int, default=None,
                    help="full evaluations in a row the box must be away before `moved` (default: the config's)")
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)

    import torch

    from bench.bench_stream import replay
    from stvg_ros.config import GroundingConfig, ServingConfig
    from stvg_ros.stack import load_model
    from stvg_ros.stream.standing import StandingRules
    from stvg_ros.synthetic.generator import generate_sample, target_object

    torch.set_num_threads(1)
    grounder = load_model(args.model, GroundingConfig(num_frames=WINDOW, decomposer="rules", device="cpu",
                                                      feature_cache_mb=args.feature_cache_mb)).grounder
    move_confirm = ServingConfig().standing_move_confirm if args.move_confirm is None else args.move_confirm
    rules = StandingRules(found_on=0.5, found_off=0.5, move_confirm=move_confirm)
    out = dict(still=[], moving=[])
    seed = 0
    t0 = time.process_time()
    while len(out["still"]) < args.streams or len(out["moving"]) < args.streams:
        frames, s = generate_sample(seed, "test", num_frames=48)
        seed += 1
        action = target_object(s)["action"]
        kinds = ["still"] * (len(out["still"]) < args.streams)
        if action in MOVES and len(out["moving"]) < args.streams:
            kinds.append("moving")
        for kind in kinds:
            stream = [frames[0]] * len(frames) if kind == "still" else list(frames)
            rng = np.random.default_rng(seed)
            stream = [np.clip(f + rng.normal(0.0, args.noise, f.shape), 0, 255).astype(np.uint8) if args.noise else f
                      for f in stream]
            events, _ = replay(grounder, stream, FPS, s["attribute"], WINDOW, EVERY, False, rules)
            moved = [e for k, e in events if k == "moved"]
            st, ed = s["st_frame"], s["ed_frame"]
            during = [e for e in moved if e - WINDOW + 1 <= ed and e >= st]
            out[kind].append(dict(seed=seed - 1, query=s["attribute"], action=action, span=[st, ed],
                                  events=events, moved=len(moved),
                                  moved_while_moving=len(during) if kind == "moving" else 0,
                                  moved_while_still=len(moved) - (len(during) if kind == "moving" else 0),
                                  appeared=sum(k == "appeared" for k, _ in events)))
    still, moving = out["still"], out["moving"]
    print(f"\n`moved` events, {args.model}, full groundings, {args.streams} streams each, noise {args.noise:g}, "
          f"feature_cache_mb {args.feature_cache_mb}, move_confirm {move_confirm} ({time.process_time() - t0:.0f} CPU s)\n")
    print("| streams | found (appeared) | `moved` events | per stream | streams with a `moved` while the target "
          "moved | `moved` while it stood still |")
    print("|---|---|---|---|---|---|")
    for name, rows in (("still (first frame repeated)", still), ("moving (moves left/right/up/down)", moving)):
        n = len(rows)
        print(f"| {name} | {sum(r['appeared'] > 0 for r in rows)}/{n} | {sum(r['moved'] for r in rows)} | "
              f"{sum(r['moved'] for r in rows) / n:.2f} | "
              f"{sum(r['moved_while_moving'] > 0 for r in rows) if name.startswith('moving') else '-'}"
              f"{'/' + str(n) if name.startswith('moving') else ''} | {sum(r['moved_while_still'] for r in rows)} |")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
