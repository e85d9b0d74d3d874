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
frames (50 = no temporal knowledge).  Metrics are the HC-STVG ones from :mod:`stvg_ros.metrics`
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

from stvg_ros.metrics import score, summarize

from .generator import generate_sample, target_object

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
    from stvg_ros.relevance import upsample_maps
    from stvg_ros.spatial import max_in_box

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


def ground_sample(grounder, frames: np.ndarray, sample: dict, use_sub_queries: bool, kind: str = "dataset"):
    """Run the grounder on one sample with its proposals; tube in frame indices."""
    fps = sample["fps"]
    stamps = [t / fps for t in range(len(frames))]
    proposals = {tid: {stamps[t]: b for t, b in tr.items()} for tid, tr in sample["tracks"].items()}
    subs = sub_queries(sample, kind) if use_sub_queries else None
    res = grounder.ground(list(frames), stamps, sample["query"], proposals=proposals, sub_queries=subs)
    to_frame = {s: i for i, s in enumerate(stamps)}
    boxes = {to_frame[s]: b for s, b in res.boxes.items()}
    return res, (to_frame[res.start], to_frame[res.end]), boxes


def run(model: str | Path, count: int = 100, first_seed: int = 0, threads: int = 1,
        methods: dict[str, dict] | None = None, progress: bool = True, split: str = "test",
        overrides: dict | None = None, sub_query_kind: str = "dataset") -> dict[str, dict]:
    """Every row of the table on ``count`` samples of ``split``; returns row name → summary.

    ``overrides``: GroundingConfig fields applied to every model row (choose them on ``val``);
    ``sub_query_kind``: see :data:`SUB_QUERY_KINDS`."""
    import torch
    from tqdm import tqdm

    from stvg_ros import Grounder, GroundingConfig

    torch.set_num_threads(threads)
    methods = METHODS if methods is None else methods
    samples = [generate_sample(first_seed + k, split) for k in range(count)]
    rows: dict[str, list[dict]] = {}
    rng = np.random.default_rng(0)
    for frames, s in samples:
        for name, r in baselines(s, rng).items():
            rows.setdefault(name, []).append(r)
    full_name = list(methods)[-1]
    for name, switches in methods.items():
        cfg = GroundingConfig(num_frames=samples[0][1]["num_frames"], device="cpu", decomposer="rules",
                              keep_relevance=True,
                              **dict(overrides or {}, **switches))
        grounder = Grounder.from_pretrained(str(model), config=cfg)
        it = tqdm(samples, desc=name, disable=not progress, mininterval=5)
        for frames, s in it:
            t0 = time.perf_counter()
            res, span, boxes = ground_sample(grounder, frames, s, switches.get("use_dsth", False), sub_query_kind)
            rec = _tube_score(boxes, span, s)
            rec["latency"] = time.perf_counter() - t0
            rec["found"] = bool(res.found)
            rec["track_correct"] = res.track_id == s["target"]
            rec["colour_shared"] = _colour_shared(s)
            rec["frame_track"] = frame_track_share(res, s)
            if rec["track_correct"]:  # the frame scores are the chosen track's
                rec["frame_auc"] = frame_auc(res.frame_scores, s)
            rows.setdefault(name, []).append(rec)
            if name == full_name:  # the chosen track with the whole clip: what the span choice adds
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
        if any("track_correct" in r for r in recs):
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


def markdown(table: dict[str, dict], count: int, split: str = "test") -> str:
    cols = ("m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5", "track_acc", "track_acc_colour_shared",
            "frame_track_acc", "frame_auc", "found_rate")
    what = "unseen attribute-action pairs" if split == "test" else "seen attribute-action pairs"
    lines = [f"Synthetic STVG {split} split ({count} queries, {what}), percent",
             "", "| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, s in table.items():
        cells = [f"{s[c]:.1f}" if c in s else "–" for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
    a = p.parse_args(argv)
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
    table = run(a.model, a.count, a.first_seed, a.threads, split=a.split, overrides=overrides,
                sub_query_kind=a.sub_queries)
    md = markdown(table, a.count, a.split)
    if overrides:
        md += "\n\nGroundingConfig overrides: " + ", ".join(f"{k}={v}" for k, v in overrides.items())
    if a.sub_queries != "dataset":
        md += f"\n\nSub-queries: {a.sub_queries}"
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
