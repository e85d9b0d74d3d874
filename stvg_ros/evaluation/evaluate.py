"""``stvg-eval``: run the grounding over a benchmark or a set of bags and report the paper's metrics.

Two paths measure the same thing:

* ``--mode core`` runs :class:`stvg_ros.Grounder` directly on the decoded frames (fast, no ROS);
* ``--mode node`` plays each bag into a running ``stvg_node`` and scores the ``Tube`` it publishes,
  so the deployed path is what gets measured.  Its runner lives in the ROS layer
  (``stvg_ros.ros.eval_node_loop``, command ``ros2 run stvg_ros stvg_eval``), which passes itself to
  :func:`main`/:func:`run` as a runner: this module never imports ROS.

A runner grounds one :class:`~stvg_ros.evaluation.items.Item` and scores it (``evaluate(item) -> (record,
result, clip)``, ``close()``); :class:`CoreRunner` is the in-memory one.  The items (from a dataset or bags)
are made in :mod:`stvg_ros.evaluation.items`, scored in :mod:`stvg_ros.evaluation.scoring`, written and
read back in :mod:`stvg_ros.evaluation.reports`.

Output (in ``--output``): ``results[.shardIofN].jsonl`` with one JSON object per query (appended as
it is computed, so an interrupted run resumes where it stopped), ``summary.json`` and
``summary.md`` (the four metrics, counts, mean latency), optional ``vis/*.png``.  ``stvg-eval merge``
joins the shards' results and writes the summary of all of them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Sequence

from ..config import ConfigError, GroundingConfig
from .datasets import load_dataset, load_proposals, load_sub_queries
from ..proposals import StaticTracks
from ..proposals.tracks import Track
from ..video import Clip
from .items import Item, bag_items, dataset_items, find_bags
from .reports import _safe_name, read_results, report_image, results_path, write_summary
from .scoring import base_record, score_tube

@dataclass
class EvalConfig:
    """Evaluation settings (the ``eval:`` section of the YAML file; flags override them)."""

    model: str = ""
    """Local model directory for ``Grounder.from_pretrained`` (core mode)."""
    dataset: str = ""
    """hcstvg_v1, hcstvg_v2 or vidstg (with ``annotations`` and ``videos``)."""
    annotations: str = ""
    videos: str = ""
    bags: list = field(default_factory=list)
    """Bag paths (or directories holding bags) instead of a dataset."""
    proposals: str = ""
    """Proposals file (docs/evaluation.md); empty = the grounder's proposal-free boxes."""
    sub_queries: str = ""
    """Sub-queries file (the paper's GPT-4o decomposition); empty = the grounder decomposes."""
    mode: str = "core"
    protocol: str = "dense"
    """'dense': official evaluators, every annotated frame (predicted boxes filled between the
    sampled frames from the chosen proposal track, else interpolated); 'sampled': only the sampled
    frames count (the paper code's per-clip score)."""
    max_side: int = 0
    """Downscale decoded frames to this longer side before grounding (0 = keep); boxes are scaled back."""
    output: str = "stvg_eval"
    limit: int = 0
    shard: str = "0/1"
    visualize: int = 0
    """Write a PNG for the first N queries of this run (-1: all)."""
    # node mode
    node_namespace: str = "/stvg"
    node_name: str = "stvg_node"
    image_topic: str = ""
    """Where frames are played in node mode; empty = ``<namespace>/image`` (compressed: ``/compressed``)."""
    rate: float = 1.0
    node_timeout: float = 60.0
    """Seconds to wait for the node's Tube after a bag has been played."""

    def validate(self) -> None:
        if self.mode not in ("core", "node"):
            raise ConfigError(f"invalid mode={self.mode!r}: choose core or node")
        if self.protocol not in ("dense", "sampled"):
            raise ConfigError(f"invalid protocol={self.protocol!r}: choose dense or sampled")
        parse_shard(self.shard)
        if not self.bags and not (self.dataset and self.annotations):
            raise ConfigError("nothing to evaluate: give --dataset with --annotations (and --videos), or --bags")
        if self.mode == "node" and not self.bags:
            raise ConfigError("node mode plays bags: make them with stvg-make-bag and pass --bags")


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in str(text).split("/"))
        if not 0 <= i < n:
            raise ValueError
    except ValueError:
        raise ConfigError(f"invalid shard {text!r}: use i/n with 0 <= i < n, e.g. 0/4") from None
    return i, n


def load_config(path: Optional[str], preset: Optional[str] = None) -> tuple[GroundingConfig, EvalConfig]:
    """Read ``{preset: name, grounding: {GroundingConfig fields}, eval: {EvalConfig fields}}`` from YAML; the
    grounding settings resolved as the node's (:func:`stvg_ros.presets.resolve`: ``preset`` or the file's
    under the file's own fields; the model's defaults go under both when it is loaded)."""
    from ..presets import resolve

    if not path:
        return resolve({}, preset).grounding, EvalConfig()
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {path} does not exist")
    data = yaml.safe_load(p.read_text()) or {}
    unknown = sorted(set(data) - {"grounding", "eval", "preset"})
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {unknown}: use 'preset:', 'grounding:' and 'eval:'")
    GroundingConfig.from_dict(data.get("grounding") or {})  # names and types checked as the file's
    gcfg = resolve({"grounding": data.get("grounding") or {}}, preset or data.get("preset")).grounding
    ev = data.get("eval") or {}
    names = {f.name for f in fields(EvalConfig)}
    bad = sorted(set(ev) - names)
    if bad:
        raise ConfigError(f"{path}: unknown eval option(s) {bad}: valid options are {', '.join(sorted(names))}")
    return gcfg, EvalConfig(**ev)


# --- grounding one item (its scoring: stvg_ros.evaluation.scoring) ----------------------------------

def clip_proposals(tracks: dict[str, Track], clip: Clip, scale: float = 1.0):
    """An item's proposal tracks (annotation frame indices) on the clip's sampled frames, in the form
    ``Grounder.ground`` takes: a :class:`~stvg_ros.proposals.StaticTracks` source re-keyed to the
    clip's stamps, boxes scaled to the decoded frames, each track's own box on a sampled frame only
    (``exact``; proposals files hold a box on every frame of a track's span); tracks with no box on
    any sampled frame are left out.  The file's order is kept: the grounder breaks score ties by it."""
    source = StaticTracks.from_frame_indexed(tracks, dict(zip(clip.frame_indices, clip.stamps)), scale=scale,
                                             exact=True)
    found = source.proposals_for(clip.stamps)
    return {tid: found[tid] for tid in tracks if tid in found}


def ground_item(grounder, item: Item, num_frames: int, ev: EvalConfig) -> tuple[dict, Any, Clip]:
    """Core mode: decode the clip, run the grounder, score; returns (record, result, clip)."""
    clip = item.load(num_frames, ev.max_side)
    scale = float(clip.extra.get("scale", 1.0))
    props = clip_proposals(item.tracks, clip, scale) if item.tracks else None
    t0 = time.perf_counter()
    res = grounder.ground(clip.frames, clip.stamps, item.query, proposals=props, sub_queries=item.sub_queries)
    latency = time.perf_counter() - t0
    sampled = {clip.frame_of_stamp(t): tuple(v / scale for v in b) for t, b in res.boxes.items()}
    start = clip.frame_of_stamp(res.start) if res.boxes else None
    end = clip.frame_of_stamp(res.end) if res.boxes else None
    rec = base_record(item)
    rec.update(score_tube(item, clip.frame_indices, start, end, sampled, res.track_id, ev.protocol))
    rec.update({
        "found": bool(res.found), "p_yes": float(res.p_yes), "score": float(res.score),
        "track_id": res.track_id if isinstance(res.track_id, (int, str, type(None))) else str(res.track_id),
        "latency": latency, "timings": dict(res.timings), "reason": res.reason,
        "sub_queries": {"attribute": res.sub_queries.attribute, "action": res.sub_queries.action,
                        "source": res.sub_queries.source} if res.sub_queries else None,
        "frame_indices": list(clip.frame_indices),
        "pred_boxes": {str(f): [round(float(v), 2) for v in b] for f, b in sorted(sampled.items())},
    })
    return rec, res, clip


# --- runners: who grounds an item ---------------------------------------------------------------

class Runner(Protocol):
    """Grounds and scores one item; ``result`` and ``clip`` may be None (no visualisation then)."""

    def evaluate(self, item: Item) -> tuple[dict, Any, Optional[Clip]]: ...

    def close(self) -> None: ...


#: what ``main``/``run`` call to build the runner of a mode: ``factory(gcfg, ev) -> Runner``
RunnerFactory = Callable[[GroundingConfig, EvalConfig], Runner]


class CoreRunner:
    """Core mode: the grounder in this process, on the decoded clip."""

    def __init__(self, gcfg: GroundingConfig, ev: EvalConfig, grounder=None):
        if grounder is None:
            from ..stack import choose, load_model

            cfg = gcfg.replace(keep_relevance=True) if ev.visualize != 0 else gcfg
            chosen = choose(ev.model)  # '' = the node's default too: the shipped model, else the tiny random one
            if not ev.model:
                print(f"stvg-eval: no --model: using the default model {chosen['directory']}"
                      + (f" ({chosen['note']})" if chosen["note"] else ""), file=sys.stderr)
                ev.model = chosen["directory"]
            grounder = load_model(ev.model, cfg, chosen=chosen).grounder
        self.grounder, self.num_frames, self.ev = grounder, gcfg.num_frames, ev

    def evaluate(self, item: Item) -> tuple[dict, Any, Clip]:
        return ground_item(self.grounder, item, self.num_frames, self.ev)

    def close(self) -> None:
        pass


NODE_MODE_FIX = ("--mode node plays bags into a running stvg_node, and its runner is part of the ROS layer: "
                 "run `ros2 run stvg_ros stvg_eval run --mode node ...` (or `python -m stvg_ros.ros.eval_node_loop "
                 "run ...`) with the colcon-built package sourced. A `pip install .` has no ROS layer: build the "
                 "package in a ROS 2 workspace (README, 'ROS 2 workspace')")


# --- the run ------------------------------------------------------------------------------------

def collect_items(ev: EvalConfig) -> list[Item]:
    proposals = load_proposals(ev.proposals) if ev.proposals else None
    if ev.bags:
        subq = load_sub_queries(ev.sub_queries) if ev.sub_queries else None
        return bag_items(find_bags(ev.bags), proposals, subq)
    samples = load_dataset(ev.dataset, ev.annotations, ev.videos or None, ev.sub_queries or None)
    return dataset_items(samples, proposals)


def select(items: list[Item], shard: tuple[int, int], limit: int) -> list[Item]:
    """This shard's items (every n-th, so shards are balanced over the file order), then ``limit``."""
    i, n = shard
    mine = items[i::n]
    return mine[:limit] if limit > 0 else mine


def run(gcfg: GroundingConfig, ev: EvalConfig, grounder=None, progress: bool = True,
        runner: Optional[Runner] = None) -> dict:
    """Evaluate, appending to the results file (skipping queries already done), then summarize
    this shard.  ``runner`` grounds the items (default: a :class:`CoreRunner` in core mode, with
    ``grounder`` if given, else loaded from ``ev.model``); node mode needs the ROS layer's runner."""
    ev.validate()
    if runner is None and ev.mode == "node":
        raise ConfigError(NODE_MODE_FIX)
    shard = parse_shard(ev.shard)
    out = Path(ev.output)
    out.mkdir(parents=True, exist_ok=True)
    items = select(collect_items(ev), shard, ev.limit)
    rpath = results_path(out, shard)
    done = {k for k, r in read_results([rpath]).items() if not r.get("error")}
    todo = [it for it in items if it.key not in done]
    from tqdm import tqdm

    want_rel = ev.visualize != 0
    if runner is None:
        runner = CoreRunner(gcfg, ev, grounder)
    n_vis = 0
    if rpath.is_file() and rpath.stat().st_size:
        with rpath.open("rb") as fh:
            fh.seek(-1, 2)
            cut = fh.read(1) != b"\n"
        if cut:  # an interrupted run left half a line: end it so the next record stays whole
            with rpath.open("a") as fh:
                fh.write("\n")
    try:
        with rpath.open("a") as fh:
            bar = tqdm(todo, desc=f"stvg-eval {ev.mode} [{shard[0]}/{shard[1]}]", unit="query", disable=not progress,
                       initial=len(items) - len(todo), total=len(items))
            for item in bar:
                result, clip = None, None
                try:
                    rec, result, clip = runner.evaluate(item)
                except Exception as e:  # one broken video must not stop a benchmark run
                    rec = base_record(item)
                    rec.update({"pred_span": None, "tiou": 0.0, "viou": 0.0, "gt_viou": 0.0,
                                "error": f"{type(e).__name__}: {e}"})
                fh.write(json.dumps(rec) + "\n")
                fh.flush()
                if want_rel and (ev.visualize < 0 or n_vis < ev.visualize) and not rec.get("error"):
                    try:
                        from ..render import save_png

                        if clip is None:
                            clip = item.load(min(gcfg.num_frames, 10), ev.max_side)
                        save_png(out / "vis" / f"{_safe_name(item.key)}.png", report_image(clip, rec, item, result))
                        n_vis += 1
                    except Exception as e:  # a picture is never worth losing the run
                        print(f"warning: no picture for {item.key} ({type(e).__name__}: {e}); its record is kept",
                              file=sys.stderr)
                bar.set_postfix(viou=f"{100 * rec['viou']:.1f}")
    finally:
        runner.close()
    keys = {it.key for it in items}
    records = [r for k, r in read_results([rpath]).items() if k in keys]
    setup = {"mode": ev.mode, "protocol": ev.protocol, "model": ev.model, "dataset": ev.dataset or "bags",
             "shard": ev.shard, "grounding": gcfg.to_dict()}
    title = f"{ev.dataset or 'bags'} ({ev.mode}, {ev.protocol}, shard {ev.shard})"
    summary_dir = out if shard[1] == 1 else out / f"shard{shard[0]}of{shard[1]}"
    return write_summary(summary_dir, records, title, setup)


def merge(out: str | Path, title: str = "") -> dict:
    """Join every ``results*.jsonl`` in ``out`` and write the overall summary there."""
    out = Path(out)
    paths = sorted(out.glob("results*.jsonl"))
    if not paths:
        raise ConfigError(f"no results*.jsonl in {out}: run stvg-eval run --output {out} first")
    records = list(read_results(paths).values())
    return write_summary(out, records, title or f"{out.name} (merged {len(paths)} file(s))")


# --- command line -------------------------------------------------------------------------------

def _parse_set(pairs: Sequence[str]) -> dict[str, Any]:
    import yaml

    out = {}
    for p in pairs:
        if "=" not in p:
            raise ConfigError(f"invalid --set {p!r}: use --set name=value (a GroundingConfig field)")
        k, v = p.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


FLAG_HELP = {
    "model": "local model directory (core mode; default: the shipped synthetic-world model, as the node's)",
    "dataset": "hcstvg_v1, hcstvg_v2 or vidstg",
    "annotations": "the dataset's {split}_proc.json",
    "videos": "the dataset's video directory",
    "proposals": "proposals JSON (docs/evaluation.md); '' = proposal-free boxes",
    "sub_queries": "sub-queries JSON (the paper's GPT-4o decomposition); '' = the grounder decomposes",
    "mode": "core (Grounder directly) or node (play bags into a running stvg_node)",
    "protocol": "dense (official evaluators: every annotated frame) or sampled (the sampled frames only)",
    "max_side": "downscale decoded frames to this longer side (0 = keep)",
    "output": "output directory (results*.jsonl, summary.md/json, vis/)",
    "limit": "at most this many queries (per shard)",
    "shard": "i/n: this run takes every n-th query from the i-th; join with 'stvg-eval merge'",
    "visualize": "PNGs for the first N queries (-1: all)",
    "node_namespace": "node mode: the node's namespace",
    "node_name": "node mode: the node's name (its parameters are set to measure what core mode measures)",
    "image_topic": "node mode: where frames are played (default <namespace>/image)",
    "rate": "node mode: playback speed factor",
    "node_timeout": "node mode: seconds to wait for the node's Tube",
}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="stvg-eval", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="evaluate a dataset or bags")
    r.add_argument("--config", help="YAML with 'grounding:' (GroundingConfig) and 'eval:' sections")
    for f in fields(EvalConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "bags":
            r.add_argument(flag, nargs="+", default=None, help="bag paths or directories of bags")
        elif f.type in ("int", int):
            r.add_argument(flag, type=int, default=None, help=FLAG_HELP.get(f.name))
        elif f.type in ("float", float):
            r.add_argument(flag, type=float, default=None, help=FLAG_HELP.get(f.name))
        else:
            r.add_argument(flag, default=None, help=FLAG_HELP.get(f.name))
    r.add_argument("--num-frames", type=int, default=None, help="frames sampled per video (paper: 20)")
    r.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N")
    r.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", help="override GroundingConfig fields")
    r.add_argument("--preset", default=None, help="grounding recipe (default, paper, official, fast, or a YAML "
                                                  "path; config/presets/): under --config's fields and --set")
    r.add_argument("--no-progress", action="store_true")
    m = sub.add_parser("merge", help="join shard results and write the overall summary")
    m.add_argument("output")
    m.add_argument("--title", default="")
    return ap


def main(argv: Optional[Sequence[str]] = None, runners: Optional[dict[str, RunnerFactory]] = None) -> int:
    """``stvg-eval run|merge ...``; ``runners`` maps a mode to its runner factory (the ROS layer's
    ``stvg_eval`` passes ``{"node": ...}``; core mode needs none)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "merge":
            summary = merge(args.output, args.title)
            print((Path(args.output) / "summary.md").read_text())
            return 0
        gcfg, ev = load_config(args.config, args.preset)
        for f in fields(EvalConfig):
            v = getattr(args, f.name)
            if v is not None:
                setattr(ev, f.name, v)
        overrides = _parse_set(args.set)
        if args.num_frames is not None:
            overrides["num_frames"] = args.num_frames
        if args.device is not None:
            overrides["device"] = args.device
        if overrides:  # the user's, over the config file's (checked and typed as a whole)
            typed = GroundingConfig.from_dict({**gcfg.to_dict(), **overrides})
            gcfg = gcfg.replace(**{k: getattr(typed, k) for k in overrides})
        ev.validate()
        factory = (runners or {}).get(ev.mode)
        if factory is None and ev.mode == "node":
            raise ConfigError(NODE_MODE_FIX)
        runner = factory(gcfg, ev) if factory is not None else None
        summary = run(gcfg, ev, progress=not args.no_progress, runner=runner)
    except ConfigError as e:
        print(f"stvg-eval: {e}", file=sys.stderr)
        return 2
    shard = parse_shard(ev.shard)
    where = Path(ev.output) if shard[1] == 1 else Path(ev.output) / f"shard{shard[0]}of{shard[1]}"
    print((where / "summary.md").read_text())
    return 1 if report_failures(summary, results_path(Path(ev.output), shard)) else 0


def report_failures(summary: dict, results: Path) -> int:
    """Tell (stderr) how many queries failed and their most common errors; returns that number, which
    makes ``stvg-eval run`` exit 1 (a run that failed queries must not look like a success to a script)."""
    failed = int(summary.get("failed", 0))
    if failed:
        from collections import Counter

        errors = Counter(r["error"] for r in read_results([results]).values() if r.get("error"))
        common = "; ".join(f"{n} x {e}" for e, n in errors.most_common(3))
        print(f"stvg-eval: {failed} of {summary.get('count', '?')} queries failed (exit code 1). Most common: "
              f"{common}. Every error is in 'error' in {results}", file=sys.stderr)
    return failed


if __name__ == "__main__":
    sys.exit(main())
