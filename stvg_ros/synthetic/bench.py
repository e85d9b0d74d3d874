"""The paper's ablation table in the synthetic world, on the test split (unseen attribute–action pairs).

    python -m stvg_ros.synthetic.bench [--model models/stvg-synth-qwen] [--count 100]

Rows: baselines that use no model (a random proposal, the largest proposal, a centred box — each
over the whole clip), the trained model's grounding-token attention alone, +DSTH (the sub-queries
without latent prompts, so that the next row shows what LRA adds), +DSTH/LRA, +TAS, the full
method, and two diagnostics of its span: its track with the whole clip as span ("full-clip span")
and with a span of the same length centred in the clip ("centred span"), which says what the
temporal relevance adds beyond the span rule's length.  ``track_acc`` is the share of queries whose
chosen track is the target (``track_acc_colour_shared``: on the queries where another track has the
target's colour, so that colour alone cannot choose; about 50 for a model that knows only colour, see
``--ceilings``); ``frame_track_acc`` the share of frames in which the target's box holds the highest
spatial relevance (temporal consistency of the spatial map, TAS's aim); ``frame_auc`` (on the queries
with the right track) how well the temporal scores rank the target's action frames above its other
frames (50 = no temporal knowledge).  Metrics are the HC-STVG ones from :mod:`stvg_ros.evaluation.metrics`
(inclusive spans, every frame counted), in percent.
Samples are generated in memory from fixed seeds, so the table is reproducible; nothing here is
tuned on the test split.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from stvg_ros.evaluation.metrics import score, summarize

from .generator import ACTION_VERB, ACTIONS, COLOURS, FILM_MODES, SHAPES, film_camera, generate_sample, target_object

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "stvg-synth-qwen"

#: GroundingConfig switches of each model row (the rest stays at the paper's defaults)
METHODS = {
    "base (grounding-token attention)": dict(use_dsth=False, use_lra=False, use_tas=False),
    # the decomposition alone: what LRA's latent prompts add on top of it is the next row's difference
    # (with inference_query='full' the sub-queries only feed LRA, so this row equals the base row)
    "+DSTH (no LRA)": dict(use_dsth=True, use_lra=False, use_tas=False),
    "+DSTH/LRA": dict(use_dsth=True, use_lra=True, use_tas=False),
    "+TAS": dict(use_dsth=False, use_lra=False, use_tas=True),
    "full method (DSTH/LRA + TAS)": dict(use_dsth=True, use_lra=True, use_tas=True),
}
FULL_METHOD = "full method (DSTH/LRA + TAS)"

#: the full method without proposals (``with_proposals=False``): what a detector-less node and the demo do
PROPOSAL_FREE = {
    "full method, no proposals: token cells": dict(use_dsth=True, use_lra=True, use_tas=True, box_method="cells"),
    "full method, no proposals: segmented boxes": dict(use_dsth=True, use_lra=True, use_tas=True,
                                                       box_method="auto"),
}


def right_object_ious(boxes: dict[int, tuple], sample: dict) -> list[float]:
    """IoU with the target's box on the tube's frames whose box overlaps the target most of all objects
    (the frames where the right object is chosen): how well the boxes fit, apart from the choice."""
    from stvg_ros.grounding.regions import _iou

    out = []
    for t, b in boxes.items():
        ov = {tid: _iou(b, tr[t]) for tid, tr in sample["tracks"].items() if t in tr}
        if ov and max(ov, key=ov.get) == sample["target"] and ov[sample["target"]] > 0:
            out.append(ov[sample["target"]])
    return out


def _tube_score(boxes: dict[int, tuple], span: tuple[int, int], sample: dict) -> dict:
    gt_span = (sample["st_frame"], sample["ed_frame"])
    return score(boxes, sample["boxes"], span, gt_span, inclusive=True)


def baselines(sample: dict, rng: np.random.Generator) -> dict[str, dict]:
    """Model-free tubes over the whole clip: random proposal, largest proposal, centred box."""
    n = sample["num_frames"]
    h, w = sample["image_size"]
    tracks = sample["tracks"]
    full = (0, n - 1)
    ids = sorted(tracks)
    rand = tracks[ids[int(rng.integers(len(ids)))]]
    largest = max(ids, key=lambda i: np.mean([(b[2] - b[0]) * (b[3] - b[1]) for b in tracks[i].values()]))
    centre = (w / 4, h / 4, 3 * w / 4, 3 * h / 4)
    return {
        "random proposal, full clip": _tube_score(rand, full, sample),
        "largest proposal, full clip": _tube_score(tracks[largest], full, sample),
        "centre box, full clip": _tube_score({t: centre for t in range(n)}, full, sample),
    }


def frame_auc(frame_scores, sample: dict) -> float | None:
    """How well the temporal scores rank the target's action frames above its other visible frames
    (ROC AUC, ties count half; None when either set is empty): does the temporal relevance carry the
    action, whatever span rule then turns it into a span?"""
    track = sample["tracks"][sample["target"]]
    inside = [frame_scores[t] for t in track if sample["st_frame"] <= t <= sample["ed_frame"]]
    outside = [frame_scores[t] for t in track if not sample["st_frame"] <= t <= sample["ed_frame"]]
    if not inside or not outside:
        return None
    a, b = np.array(inside)[:, None], np.array(outside)[None, :]
    return float(((a > b) + 0.5 * (a == b)).mean())


def frame_track_share(result, sample: dict) -> float | None:
    """Share of the frames showing two or more tracks in which the target's box holds the highest spatial
    relevance (None when there is no such frame): how consistently *over time* the spatial map singles out
    the target, which is what TAS is meant to improve (the track choice itself takes one maximum over
    all frames and hides it)."""
    from stvg_ros.grounding.relevance import upsample_maps
    from stvg_ros.grounding.spatial import max_in_box

    rel = result.relevance
    maps, scale = upsample_maps(rel.spatial, rel.content_box, rel.image_size)
    hits = []
    for frame_map, stamp in zip(maps, result.frame_stamps):
        t = int(round(stamp * sample["fps"]))
        scores = {tid: max_in_box(frame_map, track[t], scale) for tid, track in sample["tracks"].items() if t in track}
        if len(scores) > 1:
            hits.append(max(scores, key=scores.get) == sample["target"])
    return float(np.mean(hits)) if hits else None


#: what a track chooser may know of the target in :func:`choice_ceilings`, from least to most
CHOICE_KNOWLEDGE = {
    "colour": ("colour",),
    "colour + size": ("colour", "size"),
    "colour + shape": ("colour", "shape"),
    "colour + action": ("colour", "action"),
    "look (size, colour, shape)": ("size", "colour", "shape"),
    "look + action": ("size", "colour", "shape", "action"),
}


def _colour_shared(sample: dict) -> bool:
    """Whether another track has the target's colour (then colour alone cannot choose it)."""
    colour = target_object(sample)["colour"]
    return sum(o["colour"] == colour for o in sample["objects"]) > 1


def choice_ceilings(samples: list[dict]) -> dict[str, float]:
    """Expected track accuracy (percent) of a chooser that knows only some of the target's attributes
    and picks uniformly among the tracks that share them: what a model that learned only colour can
    reach at best, and what each further attribute would add.  Uses no model."""
    out = {}
    for name, keys in CHOICE_KNOWLEDGE.items():
        hits = []
        for s in samples:
            target = target_object(s)
            same = [o for o in s["objects"] if all(o[k] == target[k] for k in keys)]
            hits.append(1.0 / len(same))
        out[name] = 100.0 * float(np.mean(hits))
    return out


#: ``--sub-queries``: the dataset's decomposition, or sub-queries phrased the way the model's yes/no
#: answers were trained (colour; colour + action), to tell whether LRA is limited by what its yes/no
#: logits know (docs/synthetic.md, "LRA and TAS")
SUB_QUERY_KINDS = ("dataset", "colour")


def sub_queries(sample: dict, kind: str = "dataset") -> tuple[str, str]:
    """(attribute, action) sub-queries of ``sample``: the dataset's ("the big purple triangle", "the
    triangle grows"), or with ``kind='colour'`` ("a purple shape", "a purple shape that grows")."""
    if kind == "dataset":
        return sample["attribute"], sample["action"]
    if kind != "colour":
        raise ValueError(f"sub-query kind {kind!r}: use one of {SUB_QUERY_KINDS}")
    target = target_object(sample)
    return f"a {target['colour']} shape", f"a {target['colour']} shape that {target['action']}"


#: kinds of absent query in the found/absent table: the referring query with one part swapped for a
#: value that no object of the clip has
ABSENT_KINDS = ("colour", "shape", "action")


def absent_queries(sample: dict) -> dict[str, str]:
    """The sample's query with its colour, shape or action replaced by one that no object in the clip has
    (a kind is left out when every value occurs): what ``found`` must reject."""
    t = target_object(sample)
    objs = sample["objects"]
    out = {}
    for kind, values in (("colour", COLOURS), ("shape", SHAPES), ("action", ACTIONS)):
        used = {o[kind] for o in objs}
        free = [v for v in values if v not in used and not (kind == "shape" and v == "circle" and t["action"] == "spins")]
        if not free:
            continue
        v = free[sample["seed"] % len(free)]
        parts = {"size": t["size"], "colour": t["colour"], "shape": t["shape"], "action": t["action"], kind: v}
        out[kind] = f"the {parts['size']} {parts['colour']} {parts['shape']} that {ACTION_VERB[parts['action']]}"
    return out


def found_table(grounder, samples: list[tuple[np.ndarray, dict]], thresholds=None) -> dict:
    """p_yes of the present query and of each absent kind per sample, and the found rates at the
    grounder's ``found_threshold``: ``{"threshold", "present": rate, kind: rejected rate, "auc": {kind: AUC},
    "p_yes": {"present": [...], kind: [...]}}`` (rates and AUC in percent)."""
    p = {"present": []} | {k: [] for k in ABSENT_KINDS}
    for frames, s in samples:
        stamps = [t / s["fps"] for t in range(len(frames))]
        queries = {"present": s["query"], **absent_queries(s)}
        for kind, q in queries.items():
            p[kind].append(float(grounder.ground(list(frames), stamps, q).p_yes))
    return found_rates(p, grounder.config.found_threshold)


def found_rates(p_yes: dict[str, list[float]], threshold: float) -> dict:
    """Found rate of the present queries and rejection rate of each absent kind at ``threshold``, with AUC."""
    present = np.array(p_yes["present"])
    out = {"threshold": threshold, "present": 100.0 * float(np.mean(present >= threshold)), "auc": {},
           "p_yes": p_yes}
    for kind in ABSENT_KINDS:
        a = np.array(p_yes.get(kind, []))
        if a.size:
            out[kind] = 100.0 * float(np.mean(a < threshold))
            out["auc"][kind] = 100.0 * float(((present[:, None] > a[None]) + 0.5 * (present[:, None] == a[None])).mean())
    return out


def choose_found_threshold(p_yes: dict[str, list[float]]) -> float:
    """The threshold (a p_yes value seen, rounded to 0.01) maximising the mean of the present found rate
    and the mean absent rejection rate over the kinds: choose it on VALIDATION."""
    cands = sorted({round(v, 2) for vs in p_yes.values() for v in vs if 0.0 < round(v, 2) <= 1.0})

    def balanced(t):
        r = found_rates(p_yes, t)
        return 0.5 * r["present"] + 0.5 * float(np.mean([r[k] for k in ABSENT_KINDS if k in r]))
    return max(cands, key=lambda t: (balanced(t), -abs(t - 0.5)))


#: ``--proposals motion``: moving-blob tracks (no weights) instead of the generator's; settings chosen on
#: the val split (docs/proposals.md, "Motion"): KNN, no morphology (112 px noiseless frames), 3 frames held
MOTION_BENCH = dict(source="motion", motion_method="knn", motion_kernel=0, hold_keyframes=3.0, detect_every=1,
                    motion_split=0.0,  # uniform shapes: their absorbed interior is no gap between two objects
                    motion_min_frames=2)  # 20-frame clips, one step a frame: a 3-4 frame track is an object


def motion_proposals(frames: np.ndarray) -> dict:
    """Moving-object tracks of a clip (frame index → box), as the generator's ``tracks``."""
    from stvg_ros.proposals import ProposalConfig
    from stvg_ros.proposals.cli import propose_motion

    tracks = propose_motion(enumerate(frames), ProposalConfig(**MOTION_BENCH), len(frames))
    return {t.id: {int(f): b for f, b in t.boxes.items()} for t in tracks}


def live_window_frames(num_frames: int, fps: float, serving=None) -> list[int]:
    """The clip's frames that the node's window holds when a query arrives one frame period after the last
    frame: the clip played at its own rate into a :class:`stvg_ros.stream.window.FrameWindow` set up as the
    node's ``serving`` settings (default: the node's defaults) set it."""
    from stvg_ros.config import ServingConfig
    from stvg_ros.stream.window import NS, FrameWindow

    cfg = serving or ServingConfig()
    window = FrameWindow(cfg.window_duration, cfg.window_max_frames, cfg.window_rate, cfg.ingest_max_side)
    pixel = np.zeros((1, 1, 3), np.uint8)
    for t in range(num_frames):
        stamp = int(round(t * NS / fps))
        if window.offer(stamp) == "keep":
            window.add(stamp, pixel)
    return [int(round(f.stamp_ns * fps / NS)) for f in window.frames()]


def ground_sample(grounder, frames: np.ndarray, sample: dict, use_sub_queries: bool, kind: str = "dataset",
                  with_proposals: bool = True, tracks: dict | None = None, live: bool = False):
    """Run the grounder on one sample, with its proposals (``tracks``, default the generator's) unless
    ``with_proposals`` is false; tube in frame indices.  ``live``: on the frames the node's window holds
    (:func:`live_window_frames`), as a query to the node would be."""
    fps = sample["fps"]
    stamps = [t / fps for t in range(len(frames))]
    tracks = sample["tracks"] if tracks is None else tracks
    proposals = {tid: {stamps[t]: b for t, b in tr.items()} for tid, tr in tracks.items()} \
        if with_proposals else None
    subs = sub_queries(sample, kind) if use_sub_queries else None
    kept = live_window_frames(len(frames), fps) if live else range(len(frames))
    res = grounder.ground([frames[t] for t in kept], [stamps[t] for t in kept], sample["query"],
                          proposals=proposals, sub_queries=subs)
    to_frame = {s: i for i, s in enumerate(stamps)}
    boxes = {to_frame[s]: b for s, b in res.boxes.items()}
    return res, (to_frame[res.start], to_frame[res.end]), boxes


def run(model: str | Path, count: int = 100, first_seed: int = 0, threads: int = 1,
        methods: dict[str, dict] | None = None, progress: bool = True, split: str = "test",
        overrides: dict | None = None, sub_query_kind: str = "dataset",
        proposals: str = "generator", frames_per_step: int = 1, live: bool = False,
        frame_size: tuple[int, int] | None = None, film: str = "wide") -> dict[str, dict]:
    """Every row of the table on ``count`` samples of ``split``; returns row name → summary.

    ``overrides``: GroundingConfig fields applied to every model row (choose them on ``val``);
    ``sub_query_kind``: see :data:`SUB_QUERY_KINDS`; ``proposals``: 'generator' (the world's exact tracks)
    or 'motion' (:func:`motion_proposals`; rows then report box IoU, not track accuracy);
    ``frames_per_step``: the same scenes filmed at that many frames per step (60-frame clips at 3);
    ``live``: every query on the frames the node's default window holds (:func:`live_window_frames`);
    ``frame_size``: ``(width, height)``: the same scenes filmed by a camera of that shape (:func:`film_camera`,
    ``film`` its mode)."""
    import torch
    from tqdm import tqdm

    from stvg_ros import GroundingConfig
    from stvg_ros.stack import load_model

    torch.set_num_threads(threads)
    methods = dict(METHODS, **PROPOSAL_FREE) if methods is None else methods
    samples = [generate_sample(first_seed + k, split, frames_per_step=frames_per_step) for k in range(count)]
    if frame_size:
        samples = [film_camera(frames, s, frame_size[0], frame_size[1], film) for frames, s in samples]
    rows: dict[str, list[dict]] = {}
    rng = np.random.default_rng(0)
    for frames, s in samples:
        for name, r in baselines(s, rng).items():
            rows.setdefault(name, []).append(r)
    full_name = FULL_METHOD if FULL_METHOD in methods else list(methods)[-1]
    if proposals not in ("generator", "motion"):
        raise ValueError(f"proposals={proposals!r}: use 'generator' or 'motion'")
    motion = {s["seed"]: motion_proposals(frames) for frames, s in samples} if proposals == "motion" else None
    for name, switches in methods.items():
        cfg = GroundingConfig(num_frames=samples[0][1]["num_frames"] // frames_per_step, device="cpu",
                              decomposer="rules", keep_relevance=True,
                              **dict(overrides or {}, **switches))
        grounder = load_model(str(model), cfg).grounder
        with_proposals = name not in PROPOSAL_FREE
        it = tqdm(samples, desc=name, disable=not progress, mininterval=5)
        for frames, s in it:
            t0, c0 = time.perf_counter(), time.process_time()
            tracks = motion[s["seed"]] if motion is not None else None
            res, span, boxes = ground_sample(grounder, frames, s, switches.get("use_dsth", False), sub_query_kind,
                                             with_proposals=with_proposals, tracks=tracks, live=live)
            rec = _tube_score(boxes, span, s)
            rec["seed"] = s["seed"]
            rec["cpu_s"] = time.process_time() - c0
            if not with_proposals or motion is not None:
                rec["box_ious"] = right_object_ious(boxes, s)
                rec["select_s"] = res.timings.get("select", 0.0)
            rec["latency"] = time.perf_counter() - t0
            rec["found"] = bool(res.found)
            rec["track_correct"] = res.track_id == s["target"] if with_proposals and motion is None else None
            rec["colour_shared"] = _colour_shared(s)
            rec["frame_track"] = frame_track_share(res, s)
            if rec["track_correct"] and len(res.frame_scores) == len(frames):  # the chosen track's, every frame
                rec["frame_auc"] = frame_auc(res.frame_scores, s)
            rows.setdefault(name, []).append(rec)
            if name == full_name and motion is None:  # the chosen track with the whole clip: what the span choice adds
                full_boxes = {t: b for t, b in s["tracks"][res.track_id].items()} if res.track_id in s["tracks"] \
                    else boxes
                rows.setdefault("full method's track, full-clip span", []).append(
                    _tube_score(full_boxes, (0, s["num_frames"] - 1), s))
                # the same track and span length, the span centred in the clip: what the temporal
                # relevance adds beyond the span rule's length
                length = span[1] - span[0] + 1
                start = (s["num_frames"] - length) // 2
                rows.setdefault("full method's track, centred span", []).append(
                    _tube_score(full_boxes, (start, start + length - 1), s))
    table = {}
    for name, recs in rows.items():
        summary = summarize(recs)
        ious = [v for r in recs for v in r.get("box_ious", [])]
        if any("box_ious" in r for r in recs):
            summary["box_iou_median"] = 100.0 * float(np.median(ious)) if ious else 0.0
            summary["select_ms_per_frame"] = 1000.0 * float(np.mean([r["select_s"] for r in recs])) / \
                samples[0][1]["num_frames"]
        lo, hi = bootstrap_ci([r["viou"] for r in recs])
        summary["m_vIoU_ci"] = (100.0 * lo, 100.0 * hi)
        if all("seed" in r for r in recs):  # for paired differences between runs (bench_paired)
            summary["viou_by_seed"] = {int(r["seed"]): float(r["viou"]) for r in recs}
            summary["cpu_s_mean"] = float(np.mean([r["cpu_s"] for r in recs]))
        if any(r.get("track_correct") is not None for r in recs):
            summary["track_acc"] = 100.0 * np.mean([r["track_correct"] for r in recs])
            shared = [r["track_correct"] for r in recs if r.get("colour_shared")]
            if shared:
                summary["track_acc_colour_shared"] = 100.0 * float(np.mean(shared))
        shares = [r["frame_track"] for r in recs if r.get("frame_track") is not None]
        if shares:
            summary["frame_track_acc"] = 100.0 * float(np.mean(shares))
        aucs = [r["frame_auc"] for r in recs if r.get("frame_auc") is not None]
        if aucs:
            summary["frame_auc"] = 100.0 * float(np.mean(aucs))
        table[name] = summary
    return table


def bootstrap_ci(values, rounds: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (queries resampled with replacement)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return (float("nan"), float("nan"))
    means = v[np.random.default_rng(seed).integers(0, v.size, (rounds, v.size))].mean(1)
    return float(np.quantile(means, (1 - level) / 2)), float(np.quantile(means, (1 + level) / 2))


def paired_differences(table: dict[str, dict], earlier: dict[str, dict], rounds: int = 2000,
                       seed: int = 0) -> dict[str, dict]:
    """Per row present in both runs: the mean vIoU difference (this run − ``earlier``, percent points) over
    the seeds both scored, with its percentile bootstrap interval (seeds resampled with replacement)."""
    out = {}
    for name, s in table.items():
        a, b = s.get("viou_by_seed"), (earlier.get(name) or {}).get("viou_by_seed")
        if not a or not b:
            continue
        seeds = sorted(set(map(int, a)) & set(map(int, b)))
        d = 100.0 * np.array([float(_by(a, k)) - float(_by(b, k)) for k in seeds])
        lo, hi = bootstrap_ci(d, rounds, seed=seed)
        out[name] = {"n": len(seeds), "diff": float(d.mean()) if d.size else float("nan"), "ci": (lo, hi)}
    return out


def _by(by_seed: dict, seed: int):
    """A ``viou_by_seed`` entry, keyed by int (in memory) or str (read back from JSON)."""
    return by_seed[seed] if seed in by_seed else by_seed[str(seed)]


def found_markdown(found: dict, count: int, split: str) -> str:
    """The found/absent table: present targets found, absent queries rejected per kind, AUC of p_yes."""
    kinds = [k for k in ABSENT_KINDS if k in found]
    lines = [f"Existence judgment, {split} split ({count} clips; found_threshold {found['threshold']:g}), percent", "",
             "| query | judged | rate | AUC of p_yes vs present |", "|---|---|---|---|",
             f"| present target | found | {found['present']:.1f} | – |"]
    for k in kinds:
        lines.append(f"| absent {k} | rejected | {found[k]:.1f} | {found['auc'][k]:.1f} |")
    return "\n".join(lines)


def markdown(table: dict[str, dict], count: int, split: str = "test") -> str:
    cols = ("m_tIoU", "m_vIoU", "m_vIoU 95% CI", "vIoU@0.3", "vIoU@0.5", "box_iou_median", "track_acc",
            "track_acc_colour_shared", "frame_track_acc", "frame_auc", "found_rate")
    what = "unseen attribute-action pairs" if split == "test" else "seen attribute-action pairs"
    lines = [f"Synthetic STVG {split} split ({count} queries, {what}), percent",
             "", "| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, s in table.items():
        cells = [(f"[{s['m_vIoU_ci'][0]:.1f}, {s['m_vIoU_ci'][1]:.1f}]" if "m_vIoU_ci" in s else "–")
                 if c == "m_vIoU 95% CI" else (f"{s[c]:.1f}" if c in s else "–") for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def found_report(model: str | Path, count: int, first_seed: int, split: str, threads: int = 1,
                 overrides: dict | None = None) -> str:
    """The found/absent table at the model's found_threshold (its grounding_defaults.json, else the
    config's); on the val split also the threshold that balances found and rejected rates."""
    import torch

    from stvg_ros import GroundingConfig
    from stvg_ros.stack import load_model

    torch.set_num_threads(threads)
    samples = [generate_sample(first_seed + k, split) for k in range(count)]
    # the existence judgment asks the plain full question, whatever DSTH/LRA/TAS do: the cheapest row
    cfg = GroundingConfig(num_frames=samples[0][1]["num_frames"], device="cpu", decomposer="rules",
                          **dict(overrides or {}, use_dsth=False, use_lra=False, use_tas=False, box_method="cells"))
    grounder = load_model(str(model), cfg).grounder
    found = found_table(grounder, samples)
    text = found_markdown(found, count, split)
    if split == "val":
        best = choose_found_threshold(found["p_yes"])
        text += "\n\n" + found_markdown(found_rates(found["p_yes"], best), count, split)
        text += f"\n\nfound_threshold balancing found and rejected rates on val: {best:g}"
    return text


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="trained synthetic model directory")
    p.add_argument("--count", type=int, default=100, help="test queries")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="also write the table as JSON here")
    p.add_argument("--card", action="store_true", help="write the table into the model's MODEL_CARD.md")
    p.add_argument("--split", default="test", choices=("val", "test"), help="choose settings on val, report test")
    p.add_argument("--ceilings", action="store_true",
                   help="only print the track-choice ceilings of choosers that know some attributes (no model)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="GroundingConfig overrides for every model row, e.g. layers=[1,3] (YAML values)")
    p.add_argument("--sub-queries", default="dataset", choices=SUB_QUERY_KINDS,
                   help="DSTH rows' sub-queries: the dataset's, or 'colour' ('a red shape', 'a red shape that "
                        "jumps'), phrased as the model's yes/no training questions (an LRA diagnostic)")
    p.add_argument("--proposals", default="generator", choices=("generator", "motion"),
                   help="the proposal rows' tracks: the generator's exact ones, or moving-blob tracks (no weights)")
    p.add_argument("--methods", nargs="*", default=None, metavar="ROW",
                   help="only these model rows (names as in the table; default all)")
    p.add_argument("--found-only", action="store_true",
                   help="only the found/absent table (present query and absent colour / shape / action queries); "
                        "on --split val it also prints the found_threshold that balances them (for grounding_defaults.json)")
    p.add_argument("--frames-per-step", type=int, default=1, metavar="K",
                   help="the same scenes filmed at K frames per step (K x 20 frames, K x 5 fps): long windows")
    p.add_argument("--frame-size", default=None, metavar="WxH",
                   help="the same scenes filmed by a WxH camera (e.g. 640x480, 640x360; --film how)")
    p.add_argument("--film", default="wide", choices=FILM_MODES,
                   help="'wide': the square scene's objects in a wider view (shapes kept); 'stretch': the square "
                        "frames resized to WxH")
    p.add_argument("--compare", default=None, metavar="JSON",
                   help="a --json file of an earlier run on the same seeds: paired vIoU differences per row")
    p.add_argument("--live", action="store_true",
                   help="ground on the frames the node's default window keeps of each clip played at its rate")
    a = p.parse_args(argv)
    if a.found_only:
        print(found_report(a.model, a.count, a.first_seed, a.split, a.threads))
        return
    if a.ceilings:
        samples = [generate_sample(a.first_seed + k, a.split)[1] for k in range(a.count)]
        print(f"Track accuracy (percent) of a chooser that knows only ... of the target, {a.split} split, "
              f"{a.count} queries (uniform among the tracks that share it)")
        for name, value in choice_ceilings(samples).items():
            print(f"  {name:28s} {value:5.1f}")
        return
    if not (Path(a.model) / "config.json").is_file():
        raise SystemExit(f"no model in {a.model}: train one with "
                         "`python -m stvg_ros.synthetic.train --out models/stvg-synth-qwen` or pass --model")
    import yaml

    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in a.set)}
    rows = dict(METHODS, **PROPOSAL_FREE)
    methods = {k: rows[k] for k in a.methods} if a.methods else None
    frame_size = None
    if a.frame_size:
        try:
            frame_size = tuple(int(v) for v in a.frame_size.lower().split("x"))
            assert len(frame_size) == 2 and min(frame_size) > 0
        except (ValueError, AssertionError):
            raise SystemExit(f"--frame-size {a.frame_size!r}: write WIDTHxHEIGHT, e.g. 640x480") from None
    table = run(a.model, a.count, a.first_seed, a.threads, methods=methods, split=a.split, overrides=overrides,
                sub_query_kind=a.sub_queries, proposals=a.proposals, frames_per_step=a.frames_per_step,
                live=a.live, frame_size=frame_size, film=a.film)
    md = markdown(table, a.count, a.split)
    if frame_size:
        md += f"\n\nFrames: {frame_size[0]}x{frame_size[1]} ({a.film})"
    if a.compare:
        diffs = paired_differences(table, json.loads(Path(a.compare).read_text()))
        md += f"\n\nPaired m_vIoU differences, this run - {a.compare} (same seeds), 95% bootstrap CI\n"
        md += "".join(f"\n| {name} | {d['diff']:+.1f} | [{d['ci'][0]:+.1f}, {d['ci'][1]:+.1f}] | n={d['n']} |"
                      for name, d in diffs.items())
    if a.frames_per_step == 1 and not a.live and not frame_size:
        md += "\n\n" + found_report(a.model, a.count, a.first_seed, a.split, a.threads, overrides)
    elif a.frames_per_step != 1 or a.live:
        md += f"\n\nClips: {a.frames_per_step} frames per step" + (", the node's live window" if a.live else "")
    if overrides:
        md += "\n\nGroundingConfig overrides: " + ", ".join(f"{k}={v}" for k, v in overrides.items())
    if a.sub_queries != "dataset":
        md += f"\n\nSub-queries: {a.sub_queries}"
    if a.proposals != "generator":
        md += f"\n\nProposals: {a.proposals} ({MOTION_BENCH})"
    print(md)
    if a.card:
        from .card import write_bench_section

        sets = (" --set " + " ".join(a.set)) if a.set else ""
        sets += f" --sub-queries {a.sub_queries}" if a.sub_queries != "dataset" else ""
        write_bench_section(a.model, md, f"python -m stvg_ros.synthetic.bench --count {a.count} --split {a.split}{sets}")
    if a.json:
        Path(a.json).write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
