"""Depth and intrinsics for the synthetic world: every object at a known distance before a background
plane, rendered aligned to the colour frames, optionally with a depth sensor's noise and holes.

Why: the 3-D stage (:mod:`stvg_ros.stream.depth`) needs ground truth in metres, and no RGB-D data set can be
downloaded here.  The world is flat shapes, so each object is a fronto-parallel plate at its own
distance (fixed per object and clip, derived from the seed); the background is a tilted plane (a floor
seen from above: nearer at the bottom of the image), always behind every object.  Objects are drawn in
the colour frames' order, so the depth map shows exactly the surfaces the colour frame shows.
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from ..stream.depth import Intrinsics
from .generator import _shape_points

#: the synthetic camera: a ~60 degree horizontal field of view at any frame size
HFOV_DEG = 60.0
#: object distances (metres) and the background plane's distance at the image's top / bottom row
OBJECT_RANGE = (1.5, 4.5)
BACKGROUND = (9.0, 6.0)


def intrinsics(image_size: tuple[int, int], frame_id: str = "synthetic_camera_optical_frame") -> Intrinsics:
    """The synthetic camera's pinhole model for frames of ``(H, W)``."""
    h, w = image_size
    f = (w / 2) / np.tan(np.radians(HFOV_DEG) / 2)
    return Intrinsics(f, f, (w - 1) / 2, (h - 1) / 2, w, h, frame_id)


def object_distance(sample: dict, track_id: int) -> float:
    """Distance (m) of one object of a clip: fixed per (seed, split, track)."""
    rng = np.random.default_rng([int(sample["seed"]), 7919, int(track_id), len(sample["split"])])
    return float(rng.uniform(*OBJECT_RANGE))


def render_depth(sample: dict, t: int, noise: float = 0.0, holes: float = 0.0,
                 rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Depth (m, float32, H x W) of frame ``t``: 0 where the sensor has no reading.

    ``noise`` is the standard deviation at 1 m of a noise growing with the square of the distance (a
    stereo sensor's; ~0.002-0.005 for RealSense-class cameras); ``holes`` the share of pixels without a
    reading, as speckles and along object edges (where stereo matching fails)."""
    h, w = sample["image_size"]
    top, bottom = BACKGROUND
    depth = np.repeat(np.linspace(top, bottom, h, dtype=np.float32)[:, None], w, axis=1)
    edges = np.zeros((h, w), np.uint8)
    for obj in sample["_specs"]:
        if not obj.visible[t]:
            continue
        z = object_distance(sample, obj.track_id)
        cx, cy, r, a = float(obj.cx[t]), float(obj.cy[t]), float(obj.radius[t]), float(obj.angle[t])
        mask = np.zeros((h, w), np.uint8)
        if obj.shape == "circle":
            cv2.circle(mask, (int(round(cx)), int(round(cy))), int(round(r)), 1, -1, lineType=cv2.LINE_8)
        else:
            cv2.fillPoly(mask, [_shape_points(obj.shape, cx, cy, r, a)], 1, lineType=cv2.LINE_8)
        depth[mask.astype(bool)] = z
        edges |= cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    if noise > 0 or holes > 0:
        rng = rng if rng is not None else np.random.default_rng([int(sample["seed"]), t])
        if noise > 0:
            depth = depth + rng.normal(0.0, 1.0, depth.shape).astype(np.float32) * noise * depth ** 2
        if holes > 0:
            speckle = rng.random((h, w)) < holes / 2
            edge_holes = edges.astype(bool) & (rng.random((h, w)) < min(1.0, holes * 4))
            depth[speckle | edge_holes] = 0.0
    return depth.astype(np.float32)


def true_position(sample: dict, track_id: int, t: int) -> Optional[np.ndarray]:
    """The object's centre in the optical frame (m) at frame ``t``: its box centre at its distance."""
    box = sample["tracks"][track_id].get(t)
    if box is None:
        return None
    cam = intrinsics(sample["image_size"])
    z = object_distance(sample, track_id)
    rx, ry = cam.ray((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    return np.array([rx * z, ry * z, z])


def write_depth_bag(sample: dict, frames: np.ndarray, out, noise: float = 0.004, holes: float = 0.05,
                    start_time: float = 1000.0, frame_id: str = "synthetic_camera_optical_frame", **kwargs):
    """A bag of one synthetic clip as an RGB-D camera records it: raw colour, aligned 16UC1 depth and the
    colour CameraInfo per frame, the query and its ground-truth tube (``kwargs``: :func:`stvg_ros.evaluation.bags.write_bag`'s)."""
    from ..evaluation.bags import QuerySpec, write_bag

    fps = sample["fps"]
    stamps = [start_time + t / fps for t in range(len(frames))]
    q = QuerySpec(f"synthetic-{sample['split']}-{sample['seed']}", sample["query"],
                  gt_boxes={stamps[t]: tuple(float(v) for v in b) for t, b in sample["boxes"].items()},
                  gt_span=(stamps[sample["st_frame"]], stamps[sample["ed_frame"]]),
                  attribute=sample["attribute"], action=sample["action"])
    depth = (render_depth(sample, t, noise, holes) for t in range(len(frames)))
    meta = {"synthetic": True, "seed": sample["seed"], "split": sample["split"], "fps": fps, "start_time": start_time,
            "depth_noise": noise, "depth_holes": holes}
    kwargs.setdefault("image_format", "raw")
    return write_bag(out, list(frames), stamps, [q], frame_id=frame_id, metadata=meta, depth=depth,
                     intrinsics=intrinsics(sample["image_size"], frame_id), **kwargs)


def main(argv=None) -> int:
    """``python -m stvg_ros.synthetic.depth --out DIR``: RGB-D bags of synthetic clips (one per query)."""
    import argparse
    from pathlib import Path

    from .generator import generate_sample

    p = argparse.ArgumentParser(prog="python -m stvg_ros.synthetic.depth", description=main.__doc__)
    p.add_argument("--out", required=True, help="directory for the bags")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--count", type=int, default=5)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--noise", type=float, default=0.004, help="depth noise (m) at 1 m, growing with distance squared")
    p.add_argument("--holes", type=float, default=0.05, help="share of pixels without a depth reading")
    p.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"))
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for k in range(args.count):
        frames, s = generate_sample(args.first_seed + k, args.split)
        path = write_depth_bag(s, frames, out / f"{args.split}_{s['seed']:05d}", args.noise, args.holes,
                               storage=args.storage, overwrite=True)
        print(f"{path}: {s['query']!r}, {len(frames)} frames with depth and CameraInfo")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
