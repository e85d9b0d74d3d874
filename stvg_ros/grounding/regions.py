"""Object boxes from the relevance map without a detector: segmentation seeded by relevance peaks.

A multimodal LLM's token grid is coarse (Qwen2.5-VL: one token per 28x28 pixels), so the peak
cell says *where* the target is, not how far it extends.  The image says that: the object is the
region around the peak that differs from its surroundings.  For each sampled frame the strongest
local maxima of the relevance map seed a segmentation of the pixels around them (GrabCut: colour
models of object and background, initialised from the relevance, refined by a graph cut); each
segment gives a box, the boxes are linked over time into tracks by the package's tracker, and the
tracks are then chosen among exactly as detector proposals are (:mod:`stvg_ros.grounding.spatial`).

Nothing here knows the synthetic world: no palette, background or shape; only colour statistics
and the relevance map.  OpenCV only, no weights.  How the method was chosen: docs/proposals.md,
"Proposal-free boxes".
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..boxes import Box
from ..config import GroundingConfig

#: GrabCut's iterations unless a caller says (the config's default: one place)
GRABCUT_ITERATIONS = GroundingConfig.box_grabcut_iterations
#: consecutive frames whose cuts carry their colour models (:class:`ColourChain`) unless a caller says
GRABCUT_CHAIN = GroundingConfig.box_grabcut_chain
#: how the relevance prior is shrunk to a working size (cv2.INTER_LINEAR = 1: the map is smooth, bilinear from
#: the token grid, so sampling it gives what averaging does at a thirtieth of the CPU)
PRIOR_RESIZE = 1
#: region growing's working size (pixels, long side of its ROI; 0: full resolution)
FLOOD_SIDE = 128
#: a frame that region growing took (``auto``) passes the colour models of the cut before it on to the next frame
CARRY_PAST_FLOOD = True
#: region growing retried on every frame of a coarse grid after failing on the chain's previous frame, whatever its
#: ROI (before issue 26's fourth pass; fine grids skip it since its third).  False: retried only where the ROI fits
#: ``FLOOD_SIDE`` as it is (cheap: the synthetic world's 112 px frames, where a retry often succeeds: skipping there
#: cost 0.7 m_vIoU on the test split); on a camera's frames the failed tries were ~17 % of the shipped model's box
#: stage (4x5 grid over cup.mp4; bench/README.md)
RETRY_FLOOD_ON_COARSE_GRIDS = False
#: the working size (pixels, long side) of a cut with carried colour models (a cold cut's: ``work_side``, 96)
CARRIED_SIDE = 80

#: a further part of an object stands out of the background at least this fraction as much as its first part
PART_CONTRAST = 0.7

#: token grids at least this many cells on their long side resolve a real object's parts (a person's
#: garments): ``auto`` joins them there (bench/bench_real_boxes.py; LLaVA's 12x12 and 14x14 grids, Qwen's 'fine')
FINE_GRID_CELLS = 12

#: seed methods :func:`segment_box` knows
SEGMENT_METHODS = ("auto", "grabcut", "flood", "cells")


def relevance_seeds(grid_map: np.ndarray, max_seeds: int, min_fraction: float) -> list[tuple[int, int, float]]:
    """Local maxima ``(row, col, value)`` of a grid map (8-neighbourhood), best first.

    Only maxima at least ``min + min_fraction * (max - min)`` of the frame count; at most ``max_seeds``.
    """
    import cv2

    m = grid_map.astype(np.float32)
    lo, hi = float(m.min()), float(m.max())
    if hi <= lo:
        return []
    dil = cv2.dilate(m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
    rows, cols = np.nonzero((m >= dil) & (m >= lo + min_fraction * (hi - lo)))
    order = np.argsort(-m[rows, cols], kind="stable")
    return [(int(rows[i]), int(cols[i]), float(m[rows[i], cols[i]])) for i in order[:max_seeds]]


def seed_region(grid_map: np.ndarray, row: int, col: int, threshold: float) -> tuple[int, int, int, int]:
    """Cells ``(row0, col0, row1, col1)`` (inclusive) of the seed's connected region above
    ``value(seed) - threshold * (value(seed) - min)`` (4-connected)."""
    import cv2

    lo, v = float(grid_map.min()), float(grid_map[row, col])
    mask = (grid_map >= v - threshold * (v - lo)).astype(np.uint8)
    _, labels = cv2.connectedComponents(mask, connectivity=4)
    rr, cc = np.nonzero(labels == labels[row, col])
    return int(rr.min()), int(cc.min()), int(rr.max()), int(cc.max())


def _cells_to_pixels(cells: tuple[int, int, int, int], grid: tuple[int, int], content_box: Sequence[float]) -> Box:
    rows, cols = grid
    x0, y0, x1, y1 = (float(v) for v in content_box)
    cw, ch = (x1 - x0) / cols, (y1 - y0) / rows
    r0, c0, r1, c1 = cells
    return (x0 + c0 * cw, y0 + r0 * ch, x0 + (c1 + 1) * cw, y0 + (r1 + 1) * ch)


def _roi(rect: Box, margin: float, size: tuple[int, int]) -> tuple[int, int, int, int]:
    H, W = size
    x0, y0, x1, y1 = rect
    return (max(0, int(np.floor(x0 - margin))), max(0, int(np.floor(y0 - margin))),
            min(W, int(np.ceil(x1 + margin))), min(H, int(np.ceil(y1 + margin))))


def _component_box(fg: np.ndarray, weight: np.ndarray, offset: tuple[int, int]) -> Box | None:
    """Box of the foreground component holding the most ``weight`` (relevance), in image pixels."""
    import cv2

    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
    if n <= 1:
        return None
    mass = np.bincount(labels.ravel(), weights=weight.ravel(), minlength=n)[1:]
    k = int(np.argmax(mass)) + 1
    x, y, w, h = (int(v) for v in stats[k, :4])
    ox, oy = offset
    return (float(ox + x), float(oy + y), float(ox + x + w), float(oy + y + h))


class ColourChain:
    """GrabCut's colour models carried from one frame's cuts to the next frame's.

    A cold cut starts its two colour models (object, background: 5 Gaussians each) from k-means on
    the ROI's pixels, then runs ``iterations`` rounds of re-learning and graph cut.  On the next frame
    of a video the same object has nearly the same colours, so a seed whose region overlaps a cut on
    the previous frame takes that cut's models as they are and runs one graph cut with them (no
    k-means, no re-learning: about a third of a cold cut's CPU; fits as well on panned photographs,
    docs/proposals.md).  Only cuts that kept a segment pass their models on (on texture the colour
    models cannot separate, every cut stays cold instead of trying the carried models first).  A
    chain is one run of consecutive frames segmented in order; chains are independent, so the boxes
    do not depend on how many threads segment them."""

    #: seed regions overlapping at least this much (IoU) on consecutive frames are taken for the same object
    MATCH_IOU = 0.3
    #: else a seed region of similar size (area within 2x) whose centre moved at most this many region sizes
    MAX_SHIFT = 1.0

    def __init__(self):
        self._previous: list[tuple[Box, np.ndarray, np.ndarray]] = []
        self._current: list[tuple[Box, np.ndarray, np.ndarray]] = []
        # seed regions where ``auto``'s region growing failed (or was skipped after failing) on the previous
        # frame / this one: it is not tried again for the same object in the chain
        self._no_flood_previous: list[Box] = []
        self._no_flood_current: list[Box] = []

    def start(self, rect: Box) -> tuple[np.ndarray, np.ndarray] | None:
        """Copies of the models of the previous frame's cut whose seed region best overlaps ``rect``
        (``None``: cut cold)."""
        best, found = self.MATCH_IOU, None
        for r, bgd, fgd in self._previous:
            v = _iou(r, rect)
            if v >= best:
                best, found = v, (bgd, fgd)
        if found is None and self._previous and self.MAX_SHIFT > 0:  # a fast mover: the same colours, moved
            from ..proposals.tracker import center_shift

            shift = center_shift(np.array([r for r, _, _ in self._previous], np.float32), np.array([rect], np.float32))
            k = int(np.argmin(shift[:, 0]))
            if shift[k, 0] <= self.MAX_SHIFT:
                found = self._previous[k][1:]
        return None if found is None else (found[0].copy(), found[1].copy())

    def keep(self, rect: Box, bgd: np.ndarray, fgd: np.ndarray) -> None:
        """The models a cut of this frame ended with, for the next frame."""
        self._current.append((rect, bgd, fgd))

    def flood_failed(self, rect: Box) -> bool:
        """Whether region growing failed on the previous frame's seed region that overlaps ``rect``
        (IoU at least :attr:`MATCH_IOU`): the same object, whose parts it could not delimit then either."""
        return any(_iou(r, rect) >= self.MATCH_IOU for r in self._no_flood_previous)

    def no_flood(self, rect: Box) -> None:
        """Region growing failed on (or skipped) this frame's seed region ``rect``."""
        self._no_flood_current.append(rect)

    def next_frame(self) -> None:
        self._previous, self._current = self._current, []
        self._no_flood_previous, self._no_flood_current = self._no_flood_current, []


def grabcut_box(image: np.ndarray, prior: np.ndarray, rect: Box, margin: float, iterations: int = GRABCUT_ITERATIONS,
                expand: float = 0.75, work_side: int = 96, min_fill: float = 0.15, core: float = 0.95,
                chain: ColourChain | None = None, carried_side: int | None = None) -> Box | None:
    """GrabCut seeded by the relevance: the object may extend well beyond the seed cells.

    The ROI is ``rect`` (the seed's cells) grown by ``expand`` times its size on each side (at least
    ``margin`` pixels), worked on at most ``work_side`` pixels for speed.  Inside ``rect`` pixels whose
    ``prior`` (the relevance upsampled to the image, 0..1) is at least half start as probable object and
    those at its peak as object; the rest of the ROI starts as probable background and the ROI's
    outer edge as background.  The graph cut then grows or shrinks the object along colour edges;
    the foreground component holding the most relevance gives the box.  With ``chain`` the cut may
    start from the previous frame's colour models (:class:`ColourChain`) and leaves its own there; such a
    carried cut learns nothing, so it is worked on at most ``carried_side`` pixels (default
    :data:`CARRIED_SIDE`; its graph cut's CPU goes with the pixels)."""
    import cv2

    H, W = image.shape[:2]
    x0, y0, x1, y1 = rect
    grow = max(margin, expand * max(x1 - x0, y1 - y0))
    ax0, ay0, ax1, ay1 = _roi(rect, grow, (H, W))
    if ax1 - ax0 < 4 or ay1 - ay0 < 4:
        return None

    def prepare(side):
        """The ROI worked on at most ``side`` pixels: ``(scale, RGB ROI, prior, trimap, seeded cells)``, or None."""
        s = min(1.0, side / max(ax1 - ax0, ay1 - ay0))
        w, h = max(4, int(round((ax1 - ax0) * s))), max(4, int(round((ay1 - ay0) * s)))
        # resized first, channels swapped after (resizing works per channel: the same pixels, without copying the
        # full-resolution ROI)
        roi = np.ascontiguousarray(cv2.resize(image[ay0:ay1, ax0:ax1], (w, h), interpolation=cv2.INTER_AREA)[:, :, ::-1])
        pri = cv2.resize(prior[ay0:ay1, ax0:ax1].astype(np.float32, copy=False), (w, h), interpolation=PRIOR_RESIZE)
        mask = np.full((h, w), cv2.GC_PR_BGD, np.uint8)
        inside = np.zeros((h, w), bool)
        ix0, iy0 = int(np.floor((x0 - ax0) * s)), int(np.floor((y0 - ay0) * s))
        ix1, iy1 = int(np.ceil((x1 - ax0) * s)), int(np.ceil((y1 - ay0) * s))
        inside[max(iy0, 0):max(iy1, 0), max(ix0, 0):max(ix1, 0)] = True
        peak = float(pri[inside].max()) if inside.any() else 0.0
        if peak <= 0:
            return None
        mask[inside & (pri >= 0.5 * peak)] = cv2.GC_PR_FGD
        if core < 1.0:
            mask[inside & (pri >= core * peak)] = cv2.GC_FGD
        edge = np.zeros((h, w), bool)  # the ROI's outer edge (where it is not the image's edge)
        edge[0, :], edge[-1, :] = ay0 > 0, ay1 < H
        edge[:, 0] |= ax0 > 0
        edge[:, -1] |= ax1 < W
        mask[edge & ~inside] = cv2.GC_BGD
        return s, roi, pri, mask, inside & (pri >= 0.5 * peak)

    def cut(start, work):
        """The cut's box in ROI pixels (``None``: only a sliver, or nothing), the models it used and the seeded
        cells' extent (``work`` = :func:`prepare`'s)."""
        s, roi, pri, mask, seeded = work
        ys, xs = np.nonzero(seeded)
        extent = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        trimap = mask.copy()
        try:
            if start is not None:  # one graph cut with the previous frame's models: no k-means, no re-learning
                bgd, fgd = start
                cv2.grabCut(roi, trimap, None, bgd, fgd, 1, cv2.GC_EVAL_FREEZE_MODEL)
            else:
                bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
                cv2.setRNGSeed(0)  # k-means on OpenCV's global RNG (per thread): same input, same box
                cv2.grabCut(roi, trimap, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
        except cv2.error:  # a degenerate ROI (e.g. one colour): no segment
            return None, None, extent
        fg = (trimap == cv2.GC_FGD) | (trimap == cv2.GC_PR_FGD)
        got = _component_box(fg, pri + 1e-3, (0, 0))
        if got is None or (got[2] - got[0]) * (got[3] - got[1]) < min_fill * (extent[2] - extent[0]) * (extent[3] - extent[1]):
            got = None  # the cut kept only a sliver (texture the colour models could not separate)
        return got, (bgd, fgd), extent

    start = chain.start(rect) if chain is not None else None
    box = small = None
    if start is not None:
        small = prepare(min(work_side, CARRIED_SIDE if carried_side is None else carried_side))
        if small is None:
            return None
        box, models, extent = cut(start, small)
        scale = small[0]
    if box is None:  # no carried models, or they did not fit this frame (e.g. a scene cut): cold
        work = small if small is not None and small[0] >= min(1.0, work_side / max(ax1 - ax0, ay1 - ay0)) \
            else prepare(work_side)
        if work is None:
            return None
        box, models, extent = cut(None, work)
        scale = work[0]
    if models is None:
        return None
    if chain is not None and box is not None:  # models that segmented nothing are not worth carrying
        chain.keep(rect, *models)
    bx0, by0, bx1, by1 = box if box is not None else extent  # else the relevance's own extent
    return (ax0 + bx0 / scale, ay0 + by0 / scale, ax0 + bx1 / scale, ay0 + by1 / scale)


def flood_box(image: np.ndarray, prior: np.ndarray, rect: Box, margin: float, tolerance: float = 0.35,
              clean_only: bool = False, min_fill: float = 0.15, lab: np.ndarray | None = None) -> Box | None:
    """Region growing: from the pixel of ``rect`` most unlike the ROI's edge (the background's
    colours), grow over pixels whose Lab colour is within ``tolerance`` of the seed-to-background
    contrast (``lab``: the ROI's Lab pixels where the caller has them, :func:`_roi_lab`)."""
    H, W = image.shape[:2]
    ax0, ay0, ax1, ay1 = _roi(rect, margin, (H, W))
    if ax1 - ax0 < 4 or ay1 - ay0 < 4:
        return None
    import cv2

    if lab is None:
        lab = _roi_lab(image, (ax0, ay0, ax1, ay1))
    edge = np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])
    bg = np.median(edge, axis=0)
    x0, y0, x1, y1 = (int(round(v)) for v in rect)
    inner = lab[max(y0 - ay0, 0):max(y1 - ay0, 1), max(x0 - ax0, 0):max(x1 - ax0, 1)]
    r, c = np.unravel_index(int(np.argmax(_squared_distance(inner, bg))), inner.shape[:2])
    contrast = float(np.sqrt(_squared_distance(inner[r, c], bg)))
    if contrast < 8.0:  # nothing stands out of the background here
        return None
    seed = lab[max(y0 - ay0, 0) + r, max(x0 - ax0, 0) + c]
    near = _squared_distance(lab, seed) <= (tolerance * contrast) ** 2
    n, labels = cv2.connectedComponents(near.astype(np.uint8), connectivity=8)
    k = labels[max(y0 - ay0, 0) + r, max(x0 - ax0, 0) + c]
    ys, xs = np.nonzero(labels == k)
    if clean_only:  # only a region of one colour that ends inside the ROI and fills a fair part of the seed
        touches = ys.min() == 0 or xs.min() == 0 or ys.max() == lab.shape[0] - 1 or xs.max() == lab.shape[1] - 1
        area = float((xs.max() + 1 - xs.min()) * (ys.max() + 1 - ys.min()))
        if touches or area < min_fill * max(1.0, (x1 - x0) * (y1 - y0)):
            return None
    return (float(ax0 + xs.min()), float(ay0 + ys.min()), float(ax0 + xs.max() + 1), float(ay0 + ys.max() + 1))


def flood_parts_box(image: np.ndarray, prior: np.ndarray, rect: Box, margin: float, tolerance: float = 0.15,
                    min_fill: float = 0.3, part_fill: float = 0.05, max_parts: int = 4,
                    part_contrast: float = PART_CONTRAST) -> Box | None:
    """Region growing that does not stop at one part of an object (``auto``'s first try).

    A clean region of one colour (:func:`flood_box` with ``clean_only``) is often only a part of a real
    object: one garment of a person.  Where the relevance's core (the seed cells whose relevance is at least
    half their peak) still holds pixels outside the regions found so far that stand out of the background,
    the one most unlike it seeds the next region; a next region that is clean, fills at least ``part_fill``
    of the seed cells and touches the box so far joins it; one that touches it but cannot be delimited leaves the
    object to GrabCut.  On an object of one colour the core outside it is background, so nothing joins.
    (:func:`segment_box` searches for parts only on grids fine enough to resolve them.)"""
    import cv2

    H, W = image.shape[:2]
    ax0, ay0, ax1, ay1 = _roi(rect, margin, (H, W))
    lab = _roi_lab(image, (ax0, ay0, ax1, ay1)) if ax1 - ax0 >= 4 and ay1 - ay0 >= 4 else None
    first = flood_box(image, prior, rect, margin, tolerance=tolerance, clean_only=True, min_fill=min_fill, lab=lab)
    if first is None or max_parts <= 1:
        return first
    edge = np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])
    far = np.sqrt(_squared_distance(lab, np.median(edge, axis=0)))
    pri = prior[ay0:ay1, ax0:ax1]
    x0, y0, x1, y1 = (int(round(v)) for v in rect)
    core = np.zeros(lab.shape[:2], bool)
    sl = (slice(max(y0 - ay0, 0), max(y1 - ay0, 1)), slice(max(x0 - ax0, 0), max(x1 - ax0, 1)))
    core[sl] = pri[sl] >= 0.5 * float(pri[sl].max()) if pri[sl].size else False
    taken = np.zeros_like(core)
    inner = far[sl]
    first_contrast = float(inner.max()) if inner.size else 0.0  # the first region's seed (flood_box's choice)
    box = first
    rect_area = max(1.0, float((x1 - x0) * (y1 - y0)))
    for _ in range(max_parts - 1):
        bx0, by0, bx1, by1 = (int(round(v)) for v in box)
        taken[max(by0 - ay0, 0):max(by1 - ay0, 0), max(bx0 - ax0, 0):max(bx1 - ax0, 0)] = True
        left = core & ~taken
        if not left.any():
            break
        score = np.where(left, far, -1.0)
        r, c = np.unravel_index(int(np.argmax(score)), score.shape)
        contrast = float(far[r, c])
        if contrast < max(8.0, part_contrast * first_contrast):  # the rest of the core is background
            break
        near = _squared_distance(lab, lab[r, c]) <= (tolerance * contrast) ** 2
        _, labels = cv2.connectedComponents(near.astype(np.uint8), connectivity=8)
        ys, xs = np.nonzero(labels == labels[r, c])
        clean = not (ys.min() == 0 or xs.min() == 0 or ys.max() == lab.shape[0] - 1 or xs.max() == lab.shape[1] - 1)
        part = (ax0 + xs.min(), ay0 + ys.min(), ax0 + xs.max() + 1, ay0 + ys.max() + 1)
        touches = part[0] <= box[2] + 2 and box[0] <= part[2] + 2 and part[1] <= box[3] + 2 and box[1] <= part[3] + 2
        if not touches:  # a region apart from the box so far (another object): look past it
            taken[ys, xs] = True
            continue
        if not (clean and (part[2] - part[0]) * (part[3] - part[1]) >= part_fill * rect_area):
            return None  # more of the object than region growing can delimit: leave it to GrabCut
        box = (float(min(box[0], part[0])), float(min(box[1], part[1])), float(max(box[2], part[2])),
               float(max(box[3], part[3])))
    return box


def _roi_lab(image: np.ndarray, roi: tuple[int, int, int, int]) -> np.ndarray:
    """The ROI's pixels in Lab (float32): region growing's colour space, converted once per seed."""
    import cv2

    ax0, ay0, ax1, ay1 = roi
    return cv2.cvtColor(np.ascontiguousarray(image[ay0:ay1, ax0:ax1]), cv2.COLOR_RGB2LAB).astype(np.float32)


def _squared_distance(pixels: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance of each pixel's colour (last axis) to ``colour``: comparisons on it need
    no square root (flood_box runs on every seed, at every query)."""
    d = pixels - colour
    return np.einsum("...k,...k->...", d, d)


def _fits(side: int, image: np.ndarray, rect: Box, margin: float) -> bool:
    """Whether region growing's ROI around ``rect`` fits ``side`` pixels as it is (:func:`_at_most` does not shrink it)."""
    ax0, ay0, ax1, ay1 = _roi(rect, margin, image.shape[:2])
    return not side or max(ax1 - ax0, ay1 - ay0) <= side


def _at_most(side: int, fn, image: np.ndarray, prior: np.ndarray, rect: Box, margin: float, **options) -> Box | None:
    """``fn``'s box (a region-growing function of ``(image, prior, rect, margin)``) with its ROI worked on at most
    ``side`` pixels (long side): its CPU goes with the ROI's pixels, and a real camera's object spans hundreds.
    ROIs that fit (the synthetic world's 112 px frames) are worked on as they are."""
    import cv2

    H, W = image.shape[:2]
    ax0, ay0, ax1, ay1 = _roi(rect, margin, (H, W))
    s = side / max(ax1 - ax0, ay1 - ay0, 1)
    if not side or s >= 1.0:
        return fn(image, prior, rect, margin, **options)
    w, h = max(4, int(round((ax1 - ax0) * s))), max(4, int(round((ay1 - ay0) * s)))
    sx, sy = w / (ax1 - ax0), h / (ay1 - ay0)
    small = cv2.resize(image[ay0:ay1, ax0:ax1], (w, h), interpolation=cv2.INTER_AREA)
    pri = cv2.resize(prior[ay0:ay1, ax0:ax1].astype(np.float32, copy=False), (w, h), interpolation=PRIOR_RESIZE)
    x0, y0, x1, y1 = rect
    got = fn(small, pri, ((x0 - ax0) * sx, (y0 - ay0) * sy, (x1 - ax0) * sx, (y1 - ay0) * sy), margin * min(sx, sy),
             **options)
    if got is None:
        return None
    return (ax0 + got[0] / sx, ay0 + got[1] / sy, ax0 + got[2] / sx, ay0 + got[3] / sy)


def segment_box(method: str, image: np.ndarray, prior: np.ndarray, rect: Box, margin: float,
                fine_grid: bool = False, **options) -> Box | None:
    """The object box around a seed ``rect`` (pixels) by ``method`` (see :data:`SEGMENT_METHODS`).

    ``fine_grid``: the token grid resolves an object's parts (:data:`FINE_GRID_CELLS`), so ``auto``'s region
    growing looks for the object's other parts (:func:`flood_parts_box`); on a coarse grid a region touching
    the first is as likely another object (the synthetic world's 4x4 grid), and one clean region is the box.
    With a ``chain``, region growing is not tried again on an object it failed on in the chain's previous frame
    (:meth:`ColourChain.flood_failed`; on a coarse grid where its ROI is larger than :data:`FLOOD_SIDE`, see
    :data:`RETRY_FLOOD_ON_COARSE_GRIDS`): GrabCut takes it."""
    if method == "auto":
        chain = options.get("chain")
        once = fine_grid or not (RETRY_FLOOD_ON_COARSE_GRIDS or _fits(FLOOD_SIDE, image, rect, margin))
        if once and chain is not None and chain.flood_failed(rect):
            box = None  # it failed on this object's previous frame (cup.mp4: on every frame, 13-17 % of the stage)
        else:
            box = _at_most(FLOOD_SIDE, flood_parts_box, image, prior, rect, margin, max_parts=4 if fine_grid else 1)
        if box is None:
            if once and chain is not None:
                chain.no_flood(rect)
            return grabcut_box(image, prior, rect, margin, **options)
        if chain is not None and CARRY_PAST_FLOOD:  # region growing took this frame: GrabCut's models skip it
            models = chain.start(rect)
            if models is not None:
                chain.keep(rect, *models)
        return box
    if method == "grabcut":
        return grabcut_box(image, prior, rect, margin, **options)
    if method == "flood":
        return _at_most(FLOOD_SIDE, flood_box, image, prior, rect, margin)
    if method == "cells":
        return rect
    raise ValueError(f"unknown segmentation method {method!r}: choose one of {', '.join(SEGMENT_METHODS)}")


class _Normalised:
    """A frame's relevance map scaled to 0..1, ``(map - lo) / (hi - lo)`` (0 where flat), computed only for the
    slices read: segmentation reads its seeds' ROIs, a small part of a camera frame's pixels."""

    def __init__(self, image_map: np.ndarray, lo: float, hi: float):
        self._map, self._lo, self._hi = image_map, lo, hi

    def __getitem__(self, key) -> np.ndarray:
        part = self._map[key]
        return (part - self._lo) / (self._hi - self._lo) if self._hi > self._lo else np.zeros_like(part)


def frame_candidates(image: np.ndarray, grid_map: np.ndarray, image_map: np.ndarray, grid: tuple[int, int],
                     content_box: Sequence[float], method: str, max_seeds: int, min_fraction: float,
                     region_threshold: float, iterations: int = GRABCUT_ITERATIONS,
                     chain: ColourChain | None = None) -> list[tuple[Box, float]]:
    """Boxes ``(box, seed value)`` of one frame: one segment per relevance seed, duplicates dropped
    (``iterations``: GrabCut's, where the method runs it; ``chain``: the colour models carried from the
    previous frame of the same chain, advanced to this frame's)."""
    rows, cols = grid
    cell = min((content_box[2] - content_box[0]) / cols, (content_box[3] - content_box[1]) / rows)
    lo, hi = float(image_map.min()), float(image_map.max())
    prior = _Normalised(image_map, lo, hi)
    out: list[tuple[Box, float]] = []
    for r, c, v in relevance_seeds(grid_map, max_seeds, min_fraction):
        rect = _cells_to_pixels(seed_region(grid_map, r, c, region_threshold), grid, content_box)
        box = segment_box(method, image, prior, rect, margin=0.5 * cell, fine_grid=max(grid) >= FINE_GRID_CELLS,
                          iterations=iterations, chain=chain)
        if box is None or box[2] - box[0] < 2 or box[3] - box[1] < 2:
            continue
        if any(_iou(box, b) > 0.7 for b, _ in out):
            continue
        out.append((box, v))
    if chain is not None:
        chain.next_frame()
    return out


def _iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
