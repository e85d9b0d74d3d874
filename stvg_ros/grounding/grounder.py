"""The grounding pipeline: frames + query → tube, with a frozen multimodal LLM and no training.

Stages (paper arXiv 2509.15178; timings per stage go into the result):

1. *encode*: sample ``config.num_frames`` frames uniformly, encode their visual tokens once;
   every later forward pass reuses them.
2. *decompose* (DSTH): attribute and action sub-queries, from the caller, the model or rules.
3. *lra*: latent prompts V_s (attribute), V_t (action) and, for TAS, V_s' on the time-reversed
   clip, optimised together (one batched forward/backward pass per step).
4. *attention*: one batched pass over the grounding prompts: the full query with V_s (spatial),
   with V_t (temporal), on the reversed clip with V_s' (TAS), each with its caption prompt, and
   the plain full question whose yes/no answer is the existence judgment.
5. *select*: relevance maps (question / caption attention of the grounding token), track choice
   (proposals or the attention-built track), time span, boxes.  The box stage (segmentation and track choice)
   needs only the spatial maps: with ``box_overlap`` it starts on a worker thread as soon as the spatial and TAS
   prompts are read, beside the temporal prompts' pass and the refine pass (issue 26).

Where this departs from the official code (``zaiquanyang/LLaVA_Next_STVG``) and why:

* Spatial and temporal inference use the *full* query with V_s / V_t (as the paper says); the
  official code asks the attribute / action sub-query itself at inference (``inference_query='sub'``).
* Grounding token: per prompt, the candidate with the highest peak attention to a visual token
  (the paper's GTI); the official fixed index is ``grounding_token='fixed'``.  The caption prompt
  uses the same token as its question so the ratio compares like with like.
* LRA's default loss is the paper's (softmax over the yes/no logits only, since that is what a
  forward pass returns cheaply); the official margin loss with EMA is ``lra_loss='official'``.
  Yes/no token ids come from the tokenizer, never hard-coded (``answer_tokens``; 'official' = the
  code's lowercase pieces).
* Prompts: the model's own chat template and the paper's caption prompt by default;
  ``prompt_style='official'``, ``query_format`` and ``caption_prompt`` give the official code's.
* TAS: the reversed clip is what the model sees for ``frames[::-1]`` (re-encoded for Qwen's 2-frame
  slots).  V_s' starts from zero and is optimised on the reversed clip in the same batch as V_s and
  V_t (one pass per step); maps are assembled by the mean of per-clip-normalised maps
  (see :func:`stvg_ros.grounding.relevance.assemble_tas`; the paper gives no rule, the code has none).
* Span: 'topk' is the paper's rule made contiguous (best K-frame window); 'grow' is the
  official rule.  Gaps inside a track are scored with interpolated boxes (the official code
  scores 0 there); boxes are filled for every frame of the span.
* Proposal-free boxes (no detector) are our addition; the official code needs proposals: segments of
  the frames seeded by the relevance peaks, linked over time (:mod:`stvg_ros.grounding.spatial`).
* Frames are sampled uniformly with rounding (the official code truncates), first and last kept.
"""

from __future__ import annotations

import logging
import os
import re
import time
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..adapters.base import AdapterOptions, CaptureSpec, ForwardOutput, ModelAdapter, VisualTokens
from ..query import query_problem, query_text
from ..boxes import fill_boxes, fill_interior
from ..config import MODEL_DEFAULTS_FILE, ConfigError, GroundingConfig, load_model_defaults, load_model_serving_defaults
from ..presets import layered_grounding
from .dsth import Decomposer
from ..adapters.feature_cache import CacheStats, FeatureCache
from .lra import optimise_latent_prompts, yes_probability
from .relevance import (assemble_tas, grounding_attention, relative_attention, scaled_eps, token_grid_maps,
                        upsample_maps)
from .result import Cancelled, GroundingResult, Proposals, RelevanceMaps, SubQueries
from .spatial import choose_track, tracks_from_proposals
from .temporal import choose_span, frame_scores

log = logging.getLogger("stvg_ros.grounding.grounder")

_ARTICLES = {"The": "the", "A": "a", "An": "an"}
_WORDS = re.compile(r"(\W+)")


def format_question(template: str, query: str, query_format: str = "article") -> str:
    """``template`` with ``{query}``: trailing period and extra spaces dropped, then per ``query_format``
    'article': a leading article lower-cased ("The man walks." → "Is there the man walks in this video?");
    'lower': the whole sentence lower-cased (the official HC-STVG loader); 'words': lower-cased words
    with punctuation dropped ("The man's hat, red." → "the man s hat red"; the official VidSTG loader);
    'keep': nothing more (the official code's sub-queries)."""
    q = query_text(query).rstrip(".").strip()
    if query_format == "keep":
        pass
    elif query_format == "lower":
        q = q.lower()
    elif query_format == "words":
        q = " ".join(w.lower() for w in _WORDS.split(q) if re.search(r"[A-Za-z]", w))
    else:
        first, _, rest = q.partition(" ")
        if first in _ARTICLES:
            q = _ARTICLES[first] + (" " + rest if rest else "")
    return template.format(query=q)


def resolve_layers(layers: Sequence[int], num_layers: int) -> list[int] | None:
    """``[first, last)`` as a Python slice of ``num_layers`` decoder layers (negative = from the end) →
    the layer indices; [] → None (all layers).  An empty or out-of-range slice raises, naming the depth."""
    if not layers:
        return None
    first, last = int(layers[0]), int(layers[1])
    out = list(range(num_layers))[first:last]
    if not out or not -num_layers <= first <= num_layers or not -num_layers <= last <= num_layers:
        raise ConfigError(f"invalid layers={list(layers)}: the model has {num_layers} decoder layers; give a slice "
                          f"[first, last) within them (0 <= first < last <= {num_layers}, or negative from the end, "
                          f"e.g. [-{min(26, num_layers)}, -{min(6, num_layers - 1)}]), or [] for all layers")
    return out


def sample_indices(num_input: int, num_frames: int, stamps: Sequence[float] | None = None) -> list[int]:
    """Frame indices uniform in time, first and last included (all frames when there are few).

    Each of ``num_frames`` evenly spaced times gets the latest frame at or before it (what the camera
    showed then): on evenly spaced frames exactly the paper's loader, ``np.linspace(0, n - 1, num_frames,
    dtype=int)``, which evaluation's core mode samples; with ``stamps`` a thinned or irregular stream (a
    live window) is sampled at the times core mode samples an evenly spaced one."""
    if num_input <= num_frames:
        return list(range(num_input))
    if stamps is None:
        return sorted(set(np.linspace(0, num_input - 1, num_frames, dtype=int).tolist()))
    s = np.asarray(stamps, dtype=np.float64)
    # the fractional index of each target time; its floor is the frame showing at that time
    pos = np.interp(np.linspace(s[0], s[-1], num_frames), s, np.arange(num_input, dtype=np.float64))
    pos = pos.round(6)  # float noise of evenly spaced stamps must not move a frame back
    return sorted(set(np.floor(pos).astype(int).tolist()))


def halfway_indices(num_input: int, idx: Sequence[int], stamps: Sequence[float] | None = None) -> list[int] | None:
    """The frames nearest (in time) halfway between consecutive sampled frames ``idx``, then the last sampled
    frame: ``len(idx)`` frames for ``tube_frames='refine'``'s second pass, or None where the frames are too
    sparse for a distinct, strictly increasing set that adds frames."""
    s = np.asarray(stamps if stamps is not None else range(num_input), dtype=np.float64)
    i = np.asarray(idx)
    mids = (s[i[:-1]] + s[i[1:]]) / 2
    halfway = np.interp(mids, s, np.arange(num_input, dtype=np.float64)).round(6).round().astype(int).tolist()
    out = halfway + [int(i[-1])]
    if len(i) < 2 or any(b <= a for a, b in zip(out, out[1:])) or not set(halfway) - set(i.tolist()):
        return None
    return out


def check_inputs(frames: Sequence[np.ndarray], stamps: Sequence[float], query: str) -> None:
    """Clear errors for what a caller can get wrong."""
    if query_problem(query):
        raise ValueError(query_problem(query))
    if len(frames) == 0:
        raise ValueError("no frames: pass at least one HxWx3 uint8 RGB frame")
    if len(frames) != len(stamps):
        raise ValueError(f"got {len(frames)} frames but {len(stamps)} stamps: pass one stamp (seconds) per frame")
    shape = None
    # a window's lazily decoded images (stvg_ros.stream.window.WindowImages) vouch for their shapes:
    # check the first only, so the frames a grounding does not sample are never decoded
    for i, f in enumerate(frames[:1] if getattr(frames, "uniform", False) else frames):
        if not isinstance(f, np.ndarray) or f.ndim != 3 or f.shape[2] != 3:
            got = getattr(f, "shape", type(f).__name__)
            raise ValueError(f"frame {i} has shape {got}: frames must be HxWx3 RGB numpy arrays")
        if f.dtype != np.uint8:
            raise ValueError(f"frame {i} has dtype {f.dtype}: frames must be uint8 (0..255); "
                             "convert with frame.astype(np.uint8) after scaling")
        if shape is None:
            shape = f.shape
        elif f.shape != shape:
            raise ValueError(f"frame {i} is {f.shape[1]}x{f.shape[0]} but frame 0 is {shape[1]}x{shape[0]}: "
                             "resize all frames of a clip to one size")
    s = np.asarray(stamps, dtype=np.float64)
    if not np.all(np.isfinite(s)):
        raise ValueError("stamps contain NaN or infinity: pass the frames' times in seconds")
    if len(s) > 1 and np.any(np.diff(s) <= 0):
        i = int(np.argmax(np.diff(s) <= 0))
        raise ValueError(f"stamps must increase strictly: stamp {i + 1} ({s[i + 1]}) follows {s[i]}; "
                         "sort the frames by time and drop duplicates")


#: the prompts the spatial maps (all the box stage needs) are read from
SPATIAL_TAGS = ("spatial_q", "spatial_c", "tas_q", "tas_c")

#: the stages of :meth:`Grounder.ground`, in order (progress callbacks receive these names)
STAGES = ("encode", "decompose", "lra", "attention", "select")


class Grounder:
    """Zero-shot spatio-temporal video grounding with a multimodal LLM behind a :class:`ModelAdapter`.

    ``progress``, when given, is called with each stage's name as it starts (:data:`STAGES`) so a
    caller can show progress; stages are also logged at DEBUG level.
    """

    def __init__(self, adapter: ModelAdapter, config: GroundingConfig | dict | str | Path | None = None,
                 progress: Callable[[str], None] | None = None, model_defaults: dict | None = None):
        self.adapter = adapter
        self.model_defaults: dict = dict(model_defaults or {})
        """The model directory's grounding defaults (``grounding_defaults.json``), applied under every
        config this grounder is given (see :attr:`config`)."""
        self.applied_defaults: dict = {}
        """The model defaults that the current config took (fields the caller left at their defaults)."""
        self.serving_defaults: dict = {}  # see model_serving_defaults
        """The model's calibrated standing-query thresholds (``grounding_defaults.json``'s
        ServingConfig fields); a service applies them under its config unless ``use_model_defaults`` is off."""
        self.progress = progress
        self.feature_cache = FeatureCache()  # sized from the config by the setter below (_sync_adapter)
        self._box_worker = None  # the thread that segments boxes during the refine pass (config.box_overlap)
        self.config = config  # the setter layers the model's defaults under it

    @property
    def config(self) -> GroundingConfig:
        """The grounding settings; assigning a new config re-applies :attr:`model_defaults` under it
        (so a caller that sets its own config, e.g. a node's live parameter change, keeps the model's
        defaults for the fields it leaves at GroundingConfig's defaults)."""
        return self._config

    @config.setter
    def config(self, value: GroundingConfig | dict | str | Path | None) -> None:
        cfg, applied = layered_grounding(_as_layered(value), self.model_defaults)
        capture = CaptureSpec(layers=resolve_layers(cfg.layers, self.adapter.num_layers))  # raises naming the depth
        self._config, self.applied_defaults, self.capture = cfg, applied, capture
        self._sync_adapter()
        old = getattr(self, "decomposer", None)
        if old is None or (old.use_model, old.max_new_tokens) != (cfg.decomposer == "model",
                                                                  cfg.decompose_max_new_tokens):
            # a replaced config with the same DSTH settings keeps the decompositions cached by text
            self.decomposer = Decomposer(self.adapter.generate_text, use_model=cfg.decomposer == "model",
                                         max_new_tokens=cfg.decompose_max_new_tokens)

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | None = None,
                        config: GroundingConfig | dict | str | Path | None = None, dtype: str | None = None,
                        progress: Callable[[str], None] | None = None) -> "Grounder":
        """Load the model in a local ``directory`` (never the network) and build a grounder.

        ``config``: a :class:`GroundingConfig`, a dict of its fields or a YAML path.  ``device`` and
        ``dtype`` override the config's (``'auto'``: cuda with bfloat16 when available, else cpu
        with float32).  The directory's ``grounding_defaults.json`` (the values this checkpoint
        needs, e.g. its ``found_threshold``) is a layer under ``config``
        (:func:`stvg_ros.presets.layered_grounding`): a dict's keys win, a config from
        :func:`stvg_ros.presets.resolve` keeps its preset and user layers above it, a plain
        GroundingConfig's non-default fields win; ``use_model_defaults=False`` ignores the file.  What
        was applied is :attr:`applied_defaults` (log it).
        """
        from ..adapters import load_adapter
        from ..adapters.devices import resolve_device

        defaults = load_model_defaults(directory)
        mine = _as_layered(config)
        if device is not None or dtype is not None:
            if isinstance(mine, dict):
                mine = {**mine, **({"device": device} if device else {}), **({"dtype": dtype} if dtype else {})}
            else:
                mine = mine.replace(device=device or mine.device, dtype=dtype or mine.dtype)
        cfg, _ = layered_grounding(mine, defaults)  # what loading needs (image_size, device, dtype)
        adapter = load_adapter(directory, device=resolve_device(cfg.device),
                               dtype=None if cfg.dtype == "auto" else cfg.dtype, image_size=cfg.image_size or None)
        grounder = cls(adapter, mine, progress=progress, model_defaults=defaults)
        grounder.serving_defaults = load_model_serving_defaults(directory)
        if grounder.applied_defaults:
            log.info("model defaults from %s: %s", Path(directory) / MODEL_DEFAULTS_FILE,
                     ", ".join(f"{k}={v}" for k, v in sorted(grounder.applied_defaults.items())))
        return grounder

    # ------------------------------------------------------------------------------------------
    def ground(self, frames: Sequence[np.ndarray], stamps: Sequence[float], query: str,
               proposals: Proposals | None = None,
               sub_queries: SubQueries | tuple[str, str] | dict | None = None,
               checkpoint: Callable[[str], None] | None = None,
               frame_keys: Sequence | None = None) -> GroundingResult:
        """Ground ``query`` in the clip: the best tube, whatever the existence judgment.

        ``frames``: HxWx3 uint8 RGB arrays of one size; ``stamps``: their times (seconds, strictly
        increasing); ``proposals``: optional tracks {track id: {stamp: (x0, y0, x1, y1)}};
        ``sub_queries``: optional (attribute, action) decomposition that skips DSTH's own.
        ``checkpoint(stage)``: called before each stage and before each LRA step (stage 'lra'); it
        may raise (e.g. :class:`Cancelled`) to stop the grounding there, so a caller that shuts down
        never waits for a whole LRA run.  It does not change the result.
        ``frame_keys``: one identity per frame (e.g. the window's ``seq``; the same key must always mean
        the same pixels) so that frames' preprocessing and visual tokens computed for an earlier query
        are reused (``config.feature_cache_mb``); the result is the same without them.
        """
        return self.ground_many([(frames, stamps)], query, proposals=[proposals], sub_queries=sub_queries,
                                checkpoint=checkpoint, frame_keys=[frame_keys])[0]

    def ground_many(self, clips: Sequence[tuple[Sequence[np.ndarray], Sequence[float]]], query: str,
                    proposals: Sequence[Proposals | None] | None = None,
                    sub_queries: SubQueries | tuple[str, str] | dict | None = None,
                    checkpoint: Callable[[str], None] | None = None,
                    frame_keys: Sequence[Sequence | None] | None = None) -> list[GroundingResult]:
        """:meth:`ground` of one query on several clips (e.g. every camera of a query to all), one result per
        ``(frames, stamps)`` clip in order, each what :meth:`ground` gives that clip alone (within float
        rounding: a batch sums in another order).  ``proposals`` and ``frame_keys``: one entry (or None) per
        clip; ``checkpoint`` is called once per stage for all of them.

        Why: the model passes of clips whose visual tokens have one layout (same frame count and size) run as
        one batch: LRA's steps (each clip's latent prompts are independent problems, so one batched step gives
        each its own gradient), the attention and existence passes, and the refine pass.  Clips of other
        layouts run in a batch of their own.  Encoding, DSTH (once: one query) and the select stage stay per
        clip.  A batched stage's time in each result's ``timings`` is the whole batch's; ``timings['clips']``
        (only with more than one) is how many clips the call grounded."""
        cfg = self.config
        query = query_text(query) if isinstance(query, str) else query  # the one trusted value from here on
        n = len(clips)
        if n == 0:
            raise ValueError("no clips: pass at least one (frames, stamps) pair")
        proposals = [None] * n if proposals is None else list(proposals)
        frame_keys = [None] * n if frame_keys is None else list(frame_keys)
        if len(proposals) != n or len(frame_keys) != n:
            raise ValueError(f"got {len(proposals)} proposal sets and {len(frame_keys)} frame-key lists for {n} "
                             "clips: pass one (or None) per clip")
        for frames, stamps in clips:
            check_inputs(frames, stamps, query)
        self._sync_adapter()
        t_start = time.perf_counter()
        timings: dict[str, float] = {}
        runs = [_Clip(frames, [float(s) for s in stamps], keys, props, cfg.num_frames)
                for (frames, stamps), keys, props in zip(clips, frame_keys, proposals)]

        with self._stage("encode", timings, checkpoint), torch.no_grad():
            for c in runs:
                keyed = self._keyed(c.frame_keys, len(c.frames), c.idx)
                c.visual = self.adapter.encode_frames(c.used, stamps=c.used_stamps, **keyed)
                # TAS: the clip as the model sees frames[::-1] (re-encoded where slots span several frames)
                c.reversed_visual = self.adapter.encode_reversed(c.used, c.used_stamps, c.visual, **keyed) \
                    if cfg.use_tas else None
        if any(c.visual.num_tokens == 0 for c in runs):
            raise RuntimeError("the adapter produced no visual tokens for these frames")

        with self._stage("decompose", timings, checkpoint):
            if sub_queries is not None:
                subs = self.decomposer(query, sub_queries)
            elif cfg.use_dsth:
                subs = self.decomposer(query)
            else:
                q = query.rstrip(".")
                subs = SubQueries(attribute=q, action=q, source="none")

        full_q = self._question(query)
        groups = _same_layout(runs)

        with self._stage("lra", timings, checkpoint):
            if cfg.use_lra and cfg.lra_steps > 0:
                for group in groups:
                    # the existence question has no latent prompt: it runs on LRA's zero-latent first step
                    self._optimise(group, subs, query, checkpoint, also_ask=cfg.reuse_passes)

        # the box stage needs only the spatial maps (the spatial and TAS prompts): with box_overlap each clip's
        # starts on a worker as soon as they are read, and the temporal and existence prompts and the refine pass
        # run here meanwhile (OpenCV and torch release the GIL), which takes it off the query's critical path
        for c in runs:
            c.refine = cfg.tube_frames == "refine" and len(c.frames) > len(c.idx)
        any_refine = any(c.refine for c in runs)
        overlap = cfg.box_overlap and cfg.box_method != "cells"
        box_threads = self._box_threads() if overlap else None
        jobs: dict[int, _BoxJob] = {}

        def boxes(c: _Clip, threads=None):  # the box stage: segmentation, tracks, their scores (numpy and OpenCV)
            t, pool_cpu = time.thread_time(), []
            out = self._boxes(c.spatial, c.visual, c.used_stamps, c.stamps, c.size, c.proposals, c.used, checkpoint,
                              threads, pool_cpu)
            # its CPU in every thread it used (this one, and segment threads): benchmarks tell it from model passes
            timings["box_cpu"] = timings.get("box_cpu", 0.0) + time.thread_time() - t + sum(pool_cpu)
            return out

        def spatial_ready(c: _Clip, rows: dict, more: bool):
            """Called with a clip's spatial and TAS prompts' rows; ``more``: prompts still to run."""
            c.spatial = self._spatial_maps(rows, c.visual, c.reversed_visual, len(c.used_stamps), c.tokens)
            if not c.proposals and (more or any_refine):
                jobs[id(c)] = self._start_boxes(lambda: boxes(c, box_threads))

        try:
            with self._stage("attention", timings, checkpoint):
                if cfg.inference_query == "sub":
                    q_s = self._sub_question(subs.attribute, query)
                    q_t = self._sub_question(subs.action, query)
                else:
                    q_s = q_t = full_q
                for group in groups:
                    split = overlap and any(not c.proposals for c in group)  # proposals' boxes need no segmenting
                    self._attention_runs(group, full_q, q_s, q_t, spatial_ready=spatial_ready if split else None)
                for c in runs:
                    if c.spatial is None:
                        c.spatial = self._spatial_maps(c.rows, c.visual, c.reversed_visual, len(c.used_stamps),
                                                       c.tokens)

            with self._stage("select", timings, checkpoint):
                for c in runs:
                    c.temporal_prompt = (q_t, c.v_t if c.v_t is not None else c.v_s)
                    c.temporal, c.p_yes = self._temporal_maps(c.rows, c.visual, len(c.used_stamps), c.tokens)

                def refine_pass():  # timed in its own thread's CPU: benchmarks tell it apart from the box stage
                    t = time.thread_time()
                    out = self._refine_passes(runs)
                    timings["refine_pass_cpu"] = time.thread_time() - t
                    return out

                serial = {id(c): boxes(c) for c in runs if id(c) not in jobs}  # boxes first, then the refine pass
                second = refine_pass() if any_refine else [None] * n
                if jobs:
                    timings["box_beside_cpu"] = time.thread_time() - min(j.started_cpu for j in jobs.values())
                chosen = []
                for c, again in zip(runs, second):
                    job = jobs.pop(id(c), None)
                    best, tracks, reason = self._finish_boxes(job, timings) if job is not None else serial[id(c)]
                    result = self._span_result(best, tracks, reason, c.spatial, c.temporal, c.p_yes,
                                               {k: c.tokens[k] for k in ("spatial", "temporal", "tas")
                                                if k in c.tokens}, c.visual, query, subs, c.used_stamps, c.size)
                    if cfg.tube_frames != "sampled" and len(c.frames) > len(c.idx):
                        t_dense = time.perf_counter()
                        self._dense_tube(result, best, c.stamps, c.idx, c.proposals, c.size, again)
                        timings["dense_tube"] = timings.get("dense_tube", 0.0) + time.perf_counter() - t_dense
                    chosen.append((result, best))
        finally:
            for job in jobs.values():  # this thread failed (or was cancelled): the workers finish before it leaves
                self._abandon_boxes(job)
        timings["total"] = time.perf_counter() - t_start
        if n > 1:
            timings["clips"] = float(n)
        results = []
        for c, (result, _) in zip(runs, chosen):
            result.timings = dict(timings)
            if c.lra_trace is not None:
                log.debug("LRA losses per step %s, margins %s", c.lra_trace.losses, c.lra_trace.margins)
            results.append(result)
        return results

    def existence(self, frames: Sequence[np.ndarray], stamps: Sequence[float], query: str,
                  checkpoint: Callable[[str], None] | None = None, frame_keys: Sequence | None = None) -> float:
        """The existence judgment of :meth:`ground` alone: p(yes) / (p(yes) + p(no)) of the plain
        question on the same sampled frames (one forward pass, no attention captured), the cheap
        check of a standing query.  ``checkpoint`` sees the stages 'encode' and 'exist';
        ``frame_keys`` as in :meth:`ground` (a grounding that follows on the same frames reuses the
        frames' tokens and the clip prefix)."""
        cfg = self.config
        query = query_text(query) if isinstance(query, str) else query  # the one trusted value from here on
        check_inputs(frames, stamps, query)
        self._sync_adapter()
        idx = sample_indices(len(frames), cfg.num_frames, stamps)
        timings: dict[str, float] = {}
        with self._stage("encode", timings, checkpoint), torch.no_grad():
            visual = self.adapter.encode_frames([frames[i] for i in idx], stamps=[float(stamps[i]) for i in idx],
                                                **self._keyed(frame_keys, len(frames), idx))
        with self._stage("exist", timings, checkpoint), torch.no_grad():
            out = self.adapter.run(visual, [format_question(cfg.question_template, query)], capture=None)
        return float(yes_probability(out.yes_no_logits.detach())[0])

    # ------------------------------------------------------------------------------------------
    def model_serving_defaults(self) -> dict:
        """The model directory's calibrated serving fields (``grounding_defaults.json``), unless
        ``config.use_model_defaults`` is off."""
        return dict(self.serving_defaults) if self.config.use_model_defaults else {}

    def forget_frames(self, gone_keys) -> int:
        """Drop cached work of the frames ``gone_keys`` (the window let them go); other frames' stays, so
        services sharing this grounder keep theirs.  Returns the entries dropped."""
        return self.feature_cache.forget(gone_keys)

    def cache_stats(self) -> CacheStats:
        """Entries, bytes, hits and misses of the per-frame cache (for status reports)."""
        return self.feature_cache.stats()

    def prefetch(self, frames: Sequence[np.ndarray], frame_keys: Sequence,
                 should_stop: Callable[[], bool] | None = None, stamps: Sequence[float] | None = None) -> int:
        """Encode into the feature cache, one unit (:meth:`ModelAdapter.encode_units`) at a time, what
        :meth:`ground` with these ``frame_keys`` would encode, so that a later query finds it there (same
        keys, same settings: a hit is exact).  Where every unit is one frame, its tokens ignore the rest of
        the clip, so every frame is encoded (those a query would sample now first, then the newest first);
        where units span frames (Qwen's pairs), only the units of the clip a query would sample now (and
        its reversed clip with TAS, and the second pass's halfway frames with ``tube_frames='refine'``;
        ``stamps`` place both samples in time as :meth:`ground` does) — speculative: a window that slides
        re-pairs the frames.
        ``should_stop()`` is asked before each unit (a query waits for one unit at most).  Returns the
        units computed (0 without a cache or frame-key support)."""
        _check_keys(frame_keys, len(frames))
        self._sync_adapter()
        cache = self.feature_cache
        if not frames or not self._caches_frames():
            return 0
        idx = sample_indices(len(frames), self.config.num_frames, stamps)
        units = self.adapter.encode_units(len(idx))
        if all(len(u) == 1 for u in units):
            sampled = set(idx)
            plan = [[i] for i in idx] + [[i] for i in reversed(range(len(frames))) if i not in sampled]
        else:
            plan = [[idx[j] for j in u] for u in units]
            if self.config.use_tas:  # encode_reversed re-encodes frames[::-1], re-paired
                back = idx[::-1]
                plan += [[back[j] for j in u] for u in units]
            halfway = halfway_indices(len(frames), idx, stamps) if self.config.tube_frames == "refine" \
                and len(frames) > len(idx) else None
            if halfway is not None:  # the second pass of a long window (tube_frames)
                plan += [[halfway[j] for j in u] for u in units]
        before = cache.stats().prefetched.get("visual", 0)
        with cache.prefetching(), torch.no_grad():
            for unit in plan:
                if should_stop is not None and should_stop():
                    break
                held = cache.stats().bytes
                self.adapter.encode_frames([frames[i] for i in unit], keys=[frame_keys[i] for i in unit])
                now = cache.stats().bytes
                if now + (now - held) > cache.max_bytes:  # one more unit would evict what a query may use
                    break
        return cache.stats().prefetched.get("visual", 0) - before

    def _sync_adapter(self) -> None:
        """Give the adapter the config's model-side options (again when the config was replaced live)."""
        cfg = self.config
        limit = int(cfg.feature_cache_mb * 2**20)
        if self.feature_cache.max_bytes != limit:
            self.feature_cache.max_bytes = limit
            self.feature_cache.clear()
        if getattr(self.adapter, "supports_frame_keys", False):
            self.adapter.feature_cache = self.feature_cache
        options = AdapterOptions(visual_tokens=cfg.visual_tokens, answer_tokens=cfg.answer_tokens,
                                 prompt_style=cfg.prompt_style, frame_resize=cfg.frame_resize,
                                 frame_fit=cfg.frame_fit)
        if getattr(self.adapter, "options", None) != options:
            self.adapter.configure(options)

    def _keyed(self, frame_keys: Sequence | None, n: int, idx: Sequence[int]) -> dict:
        """``encode_frames``' ``keys`` argument for the sampled frames ``idx`` (none without a cache)."""
        if frame_keys is None:
            return {}
        _check_keys(frame_keys, n)
        return {"keys": [frame_keys[i] for i in idx]} if self._caches_frames() else {}

    def _caches_frames(self) -> bool:
        """Whether encodes given frame keys reuse per-frame work (the adapter takes keys, the cache is on)."""
        return bool(getattr(self.adapter, "supports_frame_keys", False)) and self.feature_cache.enabled

    def _question(self, text: str) -> str:
        return format_question(self.config.question_template, text, self.config.query_format)

    def _sub_question(self, text: str, query: str) -> str:
        """A sub-query's question (``sub_query_format``); a half that is the full query (a failed or absent
        decomposition) is asked as the full query, as the official code does."""
        fmt = self.config.sub_query_format
        if fmt == "query" or query_text(text).rstrip(".") == query_text(query).rstrip("."):
            fmt = self.config.query_format
        return format_question(self.config.question_template, text, fmt)

    @contextmanager
    def _stage(self, name: str, timings: dict, checkpoint: Callable[[str], None] | None = None):
        """Time a stage (GPU work included) and report it to the progress and checkpoint callbacks."""
        if checkpoint is not None:
            checkpoint(name)
        if self.progress is not None:
            self.progress(name)
        log.debug("stage %s", name)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            device = getattr(self.adapter, "device", None)
            if isinstance(device, torch.device) and device.type == "cuda":
                torch.cuda.synchronize(device)
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0

    def _optimise(self, group: list["_Clip"], subs: SubQueries, query: str,
                  checkpoint: Callable[[str], None] | None = None, also_ask: bool = False) -> None:
        """V_s, V_t (and V_s' on the reversed clip) of every clip of ``group`` (one token layout) in one batched
        optimisation, into each clip's ``v_s``/``v_t``/``v_r``; identical problems (e.g. attribute == action
        without DSTH) are solved once.  ``also_ask``: each clip's existence question, without a latent prompt,
        answered on the first step's shared prefixes (``LRAResult.zero_logits``) into its ``exist``."""
        cfg = self.config
        q_attr = self._sub_question(subs.attribute, query)
        q_act = self._sub_question(subs.action, query)
        full_q = self._question(query)
        problems: list[tuple[VisualTokens, str]] = []

        def slot(vis, q):
            for i, (v, qq) in enumerate(problems):
                if v is vis and qq == q:
                    return i
            problems.append((vis, q))
            return len(problems) - 1

        slots = []
        for c in group:
            i_s = slot(c.visual, q_attr)
            i_t = slot(c.visual, q_act)
            i_r = slot(c.reversed_visual, q_attr) if c.reversed_visual is not None else None
            slots.append((i_s, i_t, i_r))
        trace = optimise_latent_prompts(
            self.adapter, [p[0] for p in problems], [p[1] for p in problems], steps=cfg.lra_steps, lr=cfg.lra_lr,
            loss=cfg.lra_loss, beta=cfg.lra_beta, caption_prompt=cfg.caption_prompt, max_batch=cfg.max_batch,
            before_step=None if checkpoint is None else (lambda step: checkpoint("lra")),
            also_ask=[(c.visual, full_q) for c in group] if also_ask else (), share_first_step=cfg.reuse_passes,
            batch_clips=len(group) > 1)
        d = trace.deltas
        for k, (c, (i_s, i_t, i_r)) in enumerate(zip(group, slots)):
            # V_t identical to V_s (attribute == action): None lets the temporal maps reuse the spatial run
            c.v_s, c.v_t, c.v_r = d[i_s], (d[i_t] if i_t != i_s else None), (d[i_r] if i_r is not None else None)
            c.lra_trace = trace
            if trace.zero_logits is not None:
                c.exist = ForwardOutput(yes_no_logits=trace.zero_logits[k:k + 1], attention=None,
                                        candidate_tokens=[], candidate_offsets=[])

    def _attention_runs(self, group: list["_Clip"], full_q: str, q_s: str, q_t: str,
                        spatial_ready: Callable[["_Clip", dict, bool], None] | None = None) -> None:
        """All grounding prompts of the clips of ``group`` (one token layout) in as few forward passes as
        possible; each clip's ``rows``: tag → (out, row).

        ``q_s`` / ``q_t``: the questions of the spatial (and TAS) / temporal prompts; ``full_q`` is always the
        existence judgment's; a clip's ``exist``: its answer when already computed (LRA's first step).
        ``spatial_ready(clip, rows, more)``: when given, the prompts the spatial maps need (:data:`SPATIAL_TAGS`)
        run first, in passes of their own, and it is called with each clip's rows of them (``more``: whether
        prompts are left) before the rest run (the box stage starts there); without it the rows are the same, in
        fewer passes."""
        cfg = self.config
        cap = cfg.caption_prompt
        prompts: list[tuple[int, str, VisualTokens, str, torch.Tensor | None]] = []  # (clip, tag, clip, text, V)
        for k, c in enumerate(group):
            visual, reversed_visual, v_s, v_t, v_r = c.visual, c.reversed_visual, c.v_s, c.v_t, c.v_r
            mine = [("spatial_q", visual, q_s, v_s), ("spatial_c", visual, cap, v_s)]
            if v_t is not None:
                mine += [("temporal_q", visual, q_t, v_t), ("temporal_c", visual, cap, v_t)]
            elif q_t != q_s:  # a different question without a latent prompt: the caption run is spatial_c's
                mine.append(("temporal_q", visual, q_t, None))
            if reversed_visual is not None:
                mine += [("tas_q", reversed_visual, q_s, v_r), ("tas_c", reversed_visual, cap, v_r)]
            if c.exist is None and (v_s is not None or q_s != full_q):  # the existence judgment: the plain question
                mine.append(("exist", visual, full_q, None))
            prompts += [(k, *p) for p in mine]
        any_delta = any(p[4] is not None for p in prompts)
        if any_delta:  # one batch for every clip's prompts
            groups = [list(range(len(prompts)))]
        else:  # no latent prompts: one call per clip for the caption prompt, which no query changes (the
            # adapter keeps its answer while the sampled frames stay), and one for the questions
            groups = []
            for c in group:
                for vis in (c.visual, c.reversed_visual):
                    for caption in (True, False):
                        g = [i for i, p in enumerate(prompts) if p[2] is vis and (p[3] == cap) == caption]
                        if g:
                            groups.append(g)
        if spatial_ready is not None:  # each group's spatial prompts first, the rest after
            first = [[i for i in g if prompts[i][1] in SPATIAL_TAGS] for g in groups]
            later = [[i for i in g if prompts[i][1] not in SPATIAL_TAGS] for g in groups]
            phases = [[g for g in first if g], [g for g in later if g]]
        else:
            phases = [groups]
        size = cfg.max_batch or len(prompts)
        rows: list[dict] = [{} for _ in group]
        with self.adapter.shared_prefixes():  # a clip's caption call and questions' call share its prefix
            for phase_no, phase in enumerate(phases):
                for part_of in phase:
                    for start in range(0, len(part_of), size):
                        part = part_of[start:start + size]
                        vis = [prompts[i][2] for i in part]
                        shared = all(v is vis[0] for v in vis)
                        delta = None
                        if any(prompts[i][4] is not None for i in part):
                            n, d = group[0].visual.embeds.shape
                            delta = torch.stack([prompts[i][4] if prompts[i][4] is not None
                                                 else torch.zeros(n, d, device=group[0].visual.embeds.device)
                                                 for i in part])
                        with torch.no_grad():
                            out = self.adapter.run(vis[0] if shared else vis, [prompts[i][3] for i in part],
                                                   visual_delta=delta, capture=self.capture, with_grad=False)
                        for row, i in enumerate(part):
                            rows[prompts[i][0]][prompts[i][1]] = (out, row)
                if spatial_ready is not None and phase_no == 0:
                    for c, mine in zip(group, rows):
                        spatial_ready(c, mine, bool(phases[1]))
        for c, mine in zip(group, rows):
            if c.exist is not None:
                mine["exist"] = (c.exist, 0)
            elif "exist" not in mine:
                mine["exist"] = mine["spatial_q"]
            mine.setdefault("temporal_q", mine["spatial_q"])
            mine.setdefault("temporal_c", mine["spatial_c"])
            c.rows = mine

    def _relevance(self, rows: dict, q_tag: str, c_tag: str, vis: VisualTokens, tokens: dict) -> np.ndarray:
        """Grid relevance maps ``(T, rows, cols)`` of one question/caption pair (records the token used)."""
        cfg = self.config
        (q_out, q_row), (c_out, c_row) = rows[q_tag], rows[c_tag]
        offset = cfg.grounding_token_offset or self.adapter.default_grounding_offset
        grid = vis.slot >= 0  # GTI's peak over grid tokens only (not e.g. OneVision's newline), as the official code
        qa, ca, token = grounding_attention(q_out, q_row, c_out, c_row, cfg.grounding_token, offset, grid_mask=grid)
        tokens[q_tag.rsplit("_", 1)[0]] = token
        eps = scaled_eps(cfg.relevance_eps, cfg.relevance_eps_tokens, int(grid.sum()))
        return token_grid_maps(relative_attention(qa, ca, eps), vis)

    def _spatial_maps(self, rows, visual, reversed_visual, T: int, tokens: dict) -> np.ndarray:
        """The spatial grid maps ``(T, rows, cols)`` (TAS-assembled) from the spatial (and TAS) prompts' rows: all
        the box stage needs.  Tensors are read in the thread that ran the passes; the box stage is numpy and
        OpenCV (so on a GPU a box worker never waits on the device's queue)."""
        spatial = self._relevance(rows, "spatial_q", "spatial_c", visual, tokens)[:T]
        if reversed_visual is not None:
            spatial = assemble_tas(spatial, self._relevance(rows, "tas_q", "tas_c", reversed_visual, tokens)[:T])
        return spatial

    def _temporal_maps(self, rows, visual, T: int, tokens: dict) -> tuple[np.ndarray, float]:
        """The temporal grid maps and p(yes) (the existence judgment) from the passes' rows."""
        temporal = self._relevance(rows, "temporal_q", "temporal_c", visual, tokens)[:T]
        exist_out, exist_row = rows["exist"]
        p_yes = float(yes_probability(exist_out.yes_no_logits[exist_row:exist_row + 1].detach())[0])
        return temporal, p_yes

    def _boxes(self, spatial, visual, used_stamps, all_stamps, image_size, proposals, frames=None,
               checkpoint: Callable[[str], None] | None = None, threads: int | None = None,
               pool_cpu: list | None = None):
        """The box stage: the candidate tracks (proposals, else segments of the sampled frames) scored on the
        spatial maps; ``(best, all tracks, reason)``.  ``threads``: segment threads (None: the module's);
        ``pool_cpu`` gets the segment threads' CPU seconds."""
        cfg = self.config
        gaps = np.diff(np.asarray(all_stamps)) if len(all_stamps) > 1 else np.array([1.0])
        tolerance = float(min(1e-3, 0.5 * gaps.min()))
        best, tracks, _, _, reason = choose_track(spatial, visual.grid, visual.content_box, image_size, used_stamps,
                                                  proposals, cfg.box_threshold, tolerance, frames=frames,
                                                  box_method=cfg.box_method, box_seeds=cfg.box_seeds,
                                                  box_iterations=cfg.box_grabcut_iterations,
                                                  box_chain=cfg.box_grabcut_chain, track_score=cfg.track_score,
                                                  check=(lambda: checkpoint("select")) if checkpoint else None,
                                                  threads=threads, pool_cpu=pool_cpu)
        return best, tracks, reason

    def _span_result(self, best, tracks, reason, spatial, temporal, p_yes, tokens, visual, query, subs, used_stamps,
                     image_size) -> GroundingResult:
        """The result on the sampled frames: the chosen track's span on the temporal maps, its boxes."""
        cfg = self.config
        t_maps, t_scale = upsample_maps(temporal, visual.content_box, image_size)
        scores = frame_scores(t_maps, t_scale, fill_interior(best.boxes, used_stamps))
        first, last = choose_span(scores, cfg.span_rule, cfg.span_topk_fraction, cfg.span_grow_fraction)
        boxes = fill_boxes(best.boxes, used_stamps, first, last)
        relevance = None
        if cfg.keep_relevance:
            relevance = RelevanceMaps(spatial=spatial.astype(np.float32), temporal=temporal.astype(np.float32),
                                      content_box=tuple(float(v) for v in visual.content_box),
                                      image_size=tuple(int(v) for v in image_size))
        return GroundingResult(
            query=query, found=p_yes >= cfg.found_threshold, score=float(best.score),
            start=used_stamps[first], end=used_stamps[last],
            boxes={used_stamps[i]: tuple(float(v) for v in b) for i, b in zip(range(first, last + 1), boxes)},
            track_id=best.track_id, sub_queries=subs, p_yes=p_yes, frame_stamps=list(used_stamps),
            frame_scores=[float(s) for s in scores], track_scores={t.track_id: float(t.score) for t in tracks},
            relevance=relevance, reason=reason, grounding_tokens=tokens)

    def _box_threads(self) -> int | None:
        """Segment threads for a box stage that runs beside this thread's passes: on a CPU model the cores torch
        leaves free (at least 1: the worker itself), so the two do not oversubscribe the cores; on a GPU the
        module's default (None)."""
        from . import spatial as _spatial

        device = getattr(self.adapter, "device", None)
        if isinstance(device, torch.device) and device.type != "cpu":
            return None
        if _spatial.SEGMENT_THREADS:
            return _spatial.SEGMENT_THREADS
        return max(1, min(8, (os.cpu_count() or 1) - torch.get_num_threads()))

    def _start_boxes(self, boxes: Callable) -> "_BoxJob":
        """Run ``boxes()`` on the box worker thread from now on (see :meth:`_finish_boxes`)."""
        from concurrent.futures import ThreadPoolExecutor

        if self._box_worker is None:
            self._box_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stvg-boxes")
        return _BoxJob(time.thread_time(), self._box_worker.submit(boxes))

    @staticmethod
    def _finish_boxes(job: "_BoxJob", timings: dict):
        """The box stage's result (its error raises here); ``timings['box_wait']``: how long this thread waited for
        it (wall; 0: it was entirely off the critical path)."""
        t_wait = time.perf_counter()
        got = job.future.result()
        timings["box_wait"] = timings.get("box_wait", 0.0) + time.perf_counter() - t_wait
        return got

    @staticmethod
    def _abandon_boxes(job: "_BoxJob") -> None:
        """This thread failed while the box stage ran: cancel it if it has not started, else wait for it (no
        segmentation outlives the query), leaving this thread's error to propagate."""
        from concurrent.futures import wait

        job.future.cancel()
        wait([job.future])

    def _dense_tube(self, result: GroundingResult, track, stamps: list[float], idx: list[int], proposals, image_size,
                    second=None) -> None:
        """The tube on every given frame (``config.tube_frames``), in place: a box on each frame of the span
        (the chosen proposal's own box there, else interpolated), and with 'refine' the span chosen on the
        first pass's temporal scores merged with a second pass's on the frames halfway (in time) between the
        sampled ones.  The second pass shows the model ``len(idx)`` frames (the first pass's count, so the
        temporal latent prompt's token layout fits) with the temporal prompt and its caption, reusing
        cached frame features; it is skipped where the window is too sparse for distinct halfway frames.
        ``second``: that pass's output (:meth:`_refine_pass`; ground() runs it, beside the boxes where it can).
        ``frame_stamps``/``frame_scores``/relevance stay the first pass's."""
        cfg = self.config
        n = len(stamps)
        gaps = np.diff(np.asarray(stamps))
        tolerance = float(min(1e-3, 0.5 * gaps.min()))
        boxes = [None] * n  # the chosen track on every given frame
        if proposals and track.track_id in proposals:
            got = tracks_from_proposals({track.track_id: proposals[track.track_id]}, stamps, image_size, tolerance)
            boxes = got[0].boxes if got else boxes
        if not any(b is not None for b in boxes):  # the attention-built track: its sampled boxes, interpolated
            for j, i in enumerate(idx):
                boxes[i] = track.boxes[j]
        if not any(b is not None for b in boxes):
            return
        pos = {s: i for i, s in enumerate(stamps)}
        first, last = pos[result.start], pos[result.end]
        if cfg.tube_frames == "refine":
            span = self._refined_span(result, idx, second, fill_interior(boxes, stamps))
            first, last = span or (first, last)
        filled = fill_boxes(boxes, stamps, first, last)
        result.start, result.end = stamps[first], stamps[last]
        result.boxes = {stamps[i]: tuple(float(v) for v in b) for i, b in zip(range(first, last + 1), filled)}

    def _refine_passes(self, runs: list["_Clip"]) -> list:
        """Each clip's refine pass (None where ``c.refine`` is off): the temporal maps on the frames halfway
        between the sampled ones, ``(halfway given-frame indices, (maps upsampled to the frame, their scale))``,
        or ``(False, None)`` where the window is too sparse for distinct halfway frames.  The clips' passes of
        one token layout run as one batch.  Needs no box, so it may run while the boxes are segmented."""
        cfg = self.config
        out: list = [None] * len(runs)
        todo = []
        with torch.no_grad():
            for k, c in enumerate(runs):
                if not c.refine:
                    continue
                idx2 = halfway_indices(len(c.stamps), c.idx, c.stamps)
                if idx2 is None:
                    out[k] = (False, None)
                    continue
                visual = self.adapter.encode_frames([c.frames[i] for i in idx2], stamps=[c.stamps[i] for i in idx2],
                                                    **self._keyed(c.frame_keys, len(c.frames), idx2))
                todo.append((k, idx2, visual))
            per_pass = max(1, cfg.max_batch // 2) if cfg.max_batch else len(todo)
            for group in _same_layout(todo, lambda t: t[2]):
                for start in range(0, len(group), per_pass):
                    part = group[start:start + per_pass]
                    visuals = [v for _, _, v in part for _ in range(2)]
                    questions = [q for k, _, _ in part for q in (runs[k].temporal_prompt[0], cfg.caption_prompt)]
                    deltas = [runs[k].temporal_prompt[1] for k, _, _ in part]
                    d = None
                    if any(x is not None for x in deltas):
                        zero = torch.zeros_like(next(x for x in deltas if x is not None))
                        d = torch.stack([x if x is not None else zero for x in deltas for _ in range(2)])
                    got = self.adapter.run(visuals[0] if len(part) == 1 else visuals, questions, visual_delta=d,
                                           capture=self.capture, with_grad=False)
                    for j, (k, idx2, visual) in enumerate(part):
                        rows = {"temporal_q": (got, 2 * j), "temporal_c": (got, 2 * j + 1)}
                        maps = self._relevance(rows, "temporal_q", "temporal_c", visual, {})[:len(idx2)]
                        out[k] = (idx2, upsample_maps(maps, visual.content_box, runs[k].size))
        return out

    def _refined_span(self, result, idx, refine_pass, boxes) -> tuple[int, int] | None:
        """Inclusive given-frame indices of the span on both passes' scores (None: no distinct halfway frames)."""
        cfg = self.config
        idx2, upsampled = refine_pass
        if idx2 is False:
            return None
        t_maps, t_scale = upsampled
        second = frame_scores(t_maps, t_scale, [boxes[i] for i in idx2])
        merged: dict[int, list[float]] = {}
        for i, v in list(zip(idx, result.frame_scores)) + list(zip(idx2, second)):
            merged.setdefault(i, []).append(float(v))
        grid = sorted(merged)
        first, last = choose_span([float(np.mean(merged[i])) for i in grid], cfg.span_rule, cfg.span_topk_fraction,
                                  cfg.span_grow_fraction)
        return grid[first], grid[last]


@dataclass
class _BoxJob:
    """A box stage running on the worker: this thread's CPU clock when it started, and its future."""

    started_cpu: float
    future: Future


class _Clip:
    """One clip of :meth:`Grounder.ground_many` on its way through the stages (what each stage leaves for the
    next)."""

    def __init__(self, frames, stamps: list[float], frame_keys, proposals, num_frames: int):
        self.frames, self.stamps, self.frame_keys, self.proposals = frames, stamps, frame_keys, proposals
        self.idx = sample_indices(len(frames), num_frames, stamps)
        self.used = [frames[i] for i in self.idx]
        self.used_stamps = [stamps[i] for i in self.idx]
        self.size = tuple(self.used[0].shape[:2])  # (H, W)
        self.visual: VisualTokens | None = None
        self.reversed_visual: VisualTokens | None = None
        self.v_s = self.v_t = self.v_r = None  # latent prompts (LRA)
        self.lra_trace = None
        self.exist: ForwardOutput | None = None  # the existence answer from LRA's first step
        self.rows: dict = {}
        self.temporal_prompt = None
        self.spatial: np.ndarray | None = None  # the spatial grid maps (TAS-assembled): all the box stage needs
        self.temporal: np.ndarray | None = None
        self.p_yes = 0.0
        self.tokens: dict[str, str] = {}  # the grounding token read per map
        self.refine = False


def _same_layout(items: list, visual_of: Callable = lambda c: c.visual) -> list[list]:
    """``items`` grouped by their clip's visual token count, in order of first appearance: the clips one batched
    pass can take (the adapter splices every prompt's clip at one length; positions are per prompt)."""
    groups: dict[int, list] = {}
    for item in items:
        groups.setdefault(visual_of(item).num_tokens, []).append(item)
    return list(groups.values())


def _check_keys(frame_keys: Sequence, n: int) -> None:
    if len(frame_keys) != n:
        raise ValueError(f"got {len(frame_keys)} frame keys for {n} frames: pass one per frame")


def _as_layered(config) -> GroundingConfig | dict:
    """``config`` for :func:`~stvg_ros.presets.layered_grounding`: a dict stays one (its keys are the
    caller's choices, checked here), the rest becomes a GroundingConfig."""
    if isinstance(config, dict):
        GroundingConfig.from_dict(config)  # unknown names and wrong types raise here, naming the fix
        return dict(config)
    return _as_config(config)


def _as_config(config) -> GroundingConfig:
    if config is None:
        return GroundingConfig()
    if isinstance(config, GroundingConfig):
        return config
    if isinstance(config, dict):
        return GroundingConfig.from_dict(config)
    if isinstance(config, (str, Path)):
        path = Path(config)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist: pass a YAML file, a dict or a GroundingConfig")
        return GroundingConfig.from_yaml(path)
    raise ConfigError(f"config of type {type(config).__name__}: pass a GroundingConfig, a dict or a YAML path")
