"""The clip-prefix KV cache engine of the transformers families: prompts that share a prefix holding the whole
visual block (system turn, video, fixed template text) decode that prefix once into a KV cache and run their
question suffixes on it; on one clip the prefix (and a whole call's output) is kept in the adapter's
feature cache and evicted with the clip's frames.

:class:`ClipPrefixCache` is a part of :class:`~stvg_ros.adapters.common.HFAdapter`; it uses the adapter's
``prepare``, ``_decode``, ``_answer_logits``, ``_recomputes``, ``feature_cache`` and ``device``.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Sequence

import torch

from .attention import capture_attention, null_capture
from .base import ForwardOutput, VisualTokens
from .prompts import PreparedBatch


class ClipPrefixCache:
    """Decoding on shared prefixes: one computation of each distinct prefix, reused by every prompt on it."""

    #: run prompts that share a clip on a KV cache of their common prefix (see ``_run_on_prefixes``)
    use_prefix_cache: bool = True
    #: where the template puts the question before the video: keep the KV of each prompt's text before its
    #: video (system turn + question) and decode only the video and the rest on it, for every clip
    #: (cameras, TAS's reversed clip, later windows) asked that question (see :meth:`_run_on_text_prefixes`).
    #: Exact, but off: measured, a pass per text costs more than the positions it saves (shipped model 1.25x
    #: its model CPU, Qwen2.5-VL-3B widths 1.045x on 4 cameras; bench/README "Several cameras")
    use_text_prefix_cache: bool = False
    #: distinct text prefixes kept (least recently used dropped first)
    text_prefix_entries: int = 32

    def _text_prefix_groups(self, batch: PreparedBatch) -> list[tuple[int, list[int]]]:
        """The batch's prompts grouped by their text before the video, ``[(its length, prompt indices)]``, when
        every prompt's question lies in that text (question-first templates); else ``[]``.  That text's KV
        depends on nothing else (no visual token, no latent prompt, plain positions), so it is exact to
        reuse for any clip."""
        groups: dict[tuple, tuple[int, list[int]]] = {}
        for b, ids in enumerate(batch.prompt_ids):
            ph = int(batch.cols[b, 0])
            if not 0 < batch.question_starts[b] < ph or int(batch.rows[b].min()) <= ph:
                return []
            groups.setdefault(tuple(ids[:ph]), (ph, []))[1].append(b)
        return list(groups.values())

    def _text_prefix_kv(self, batch: PreparedBatch, b: int, P: int):
        """The KV cache of prompt ``b``'s first ``P`` (text) positions, computed once per distinct text."""
        store = self.__dict__.setdefault("_text_prefixes", {})
        key = (tuple(batch.prompt_ids[b][:P]), tuple(batch.positions[..., b, :P].flatten().tolist()), self.dtype)
        kv = store.pop(key, None)
        if kv is None:
            with torch.no_grad():
                kv = self._decode(batch.embeds[b:b + 1, :P].detach(), batch.positions[..., b:b + 1, :P],
                                  use_cache=True).past_key_values
            self.text_prefix_stats["computed"] += 1
        else:
            self.text_prefix_stats["reused"] += 1
        store[key] = kv  # most recent last
        while len(store) > max(0, self.text_prefix_entries):
            store.pop(next(iter(store)))
        return kv

    @property
    def text_prefix_stats(self) -> dict:
        """How often a text prefix's KV was computed and reused (benchmarks, tests)."""
        return self.__dict__.setdefault("_text_prefix_stats", {"computed": 0, "reused": 0})

    def _run_on_text_prefixes(self, batch: PreparedBatch, capture, layers, groups):
        """``run`` on the cached KV of each prompt's text before its video (:meth:`_text_prefix_groups`): per
        group, the video and the rest decoded on it; exactly the full pass's values (the prefix never sees
        what follows), so with gradients too (a latent prompt sits after it)."""
        B = batch.embeds.shape[0]
        hidden_last = attn = None
        for P, idx in groups:
            cache = _fork_cache(self._text_prefix_kv(batch, idx[0], P))
            if len(idx) > 1:
                cache.reorder_cache(torch.zeros(len(idx), dtype=torch.long, device=self.device))
            ix = torch.tensor(idx, device=self.device)
            rows, cols = batch.rows[ix], batch.cols[ix]
            ctx = capture_attention(rows - P, cols, layers) if capture is not None else null_capture()
            with ctx as cap:
                out = self._decode(batch.embeds[ix, P:], batch.positions[..., ix, P:], past_key_values=cache,
                                   use_cache=True)
            h = out.last_hidden_state
            last = h[torch.arange(len(idx), device=h.device), batch.last[ix] - P]
            if hidden_last is None:
                hidden_last = last.new_zeros((B, last.shape[-1]))
            hidden_last = hidden_last.index_copy(0, ix, last)
            if cap is not None:
                a = cap.result()
                if a is not None:
                    attn = a.new_zeros((B, *a.shape[1:])) if attn is None else attn
                    attn[ix] = a
        return hidden_last, attn

    def shares_prefix_under_grad(self, visual: VisualTokens, questions: Sequence[str]) -> bool:
        """Whether ``run(visual, questions, with_grad=True, share_prefix=True)`` decodes the clip's prefix once
        for all the prompts (LRA's first step): the template puts the whole video before the questions and
        memory needs no checkpointing.  Otherwise that call runs every prompt in full, and one backward
        pass per problem through it would cost more than the step it was meant to share."""
        batch = self.prepare(visual, questions)
        plan = self._shared_plan(batch, with_grad=True, share_prefix=True, recompute=self._recomputes(batch))
        return plan is not None

    def _shared_plan(self, batch: PreparedBatch, with_grad: bool, share_prefix: bool, recompute: bool):
        """The prefix plan ``run`` decodes ``batch`` with (see :meth:`_prefix_plan`), or None: under gradients only
        when asked and memory allows keeping every activation."""
        if not self.use_prefix_cache or len(batch.lengths) < 2 or (with_grad and (not share_prefix or recompute)):
            return None
        return self._prefix_plan(batch)

    def _clip_prefix_length(self, batch: PreparedBatch) -> int:
        """Length of the *clip prefix* of a batch on one clip: everything before the first question token
        (system turn, video block, fixed template text), the same for every question; 0 when the template
        puts text of the question before the video or the prompts disagree before their questions."""
        P = min(batch.question_starts)
        if P <= int(batch.cols.max()) or P > int(batch.rows.min()):
            return 0
        head = batch.prompt_ids[0][:P]
        return P if all(ids[:P] == head for ids in batch.prompt_ids) else 0

    @contextlib.contextmanager
    def shared_prefixes(self):
        """Within it, calls on one clip (e.g. the caption prompt's and the questions') decode its prefix once
        even when the clip has no key for the feature cache; nothing is kept after it."""
        outer, self._scoped_prefixes = getattr(self, "_scoped_prefixes", None), {}
        try:
            yield
        finally:
            self._scoped_prefixes = outer

    def _run_on_clip(self, batch: PreparedBatch, visual: VisualTokens, questions: list[str], capture, layers,
                     P: int) -> ForwardOutput:
        """``run`` of prompts on one clip without latent prompts: the clip prefix is decoded once into a KV
        cache (alone, so its values never depend on the batch), the questions run on it.

        With a ``key`` (:class:`stvg_ros.adapters.feature_cache.ClipKey`, set by keyed encodes) the prefix and the whole
        call's output are kept in :attr:`feature_cache` and evicted with the clip's frames: a later call on the
        same sampled frames skips the prefix, and a call it has seen (the caption prompt, which no query
        changes) costs nothing.  Hits return exactly what the computation gives, since the computation of a
        call never depends on what is cached."""
        key = visual.extras.get("clip_key")
        cache = self.feature_cache if key is not None and self.feature_cache is not None else None
        call = (key, tuple(questions), None if capture is None else tuple(layers) if layers is not None else "all")
        if cache is not None:
            done = cache.get("answers", call)
            if done is not None:
                return ForwardOutput(yes_no_logits=done[0], attention=done[1], candidate_tokens=done[2],
                                     candidate_offsets=done[3])
        head = (key, tuple(batch.prompt_ids[0][:P]))
        scoped = getattr(self, "_scoped_prefixes", None) if cache is None else None
        if scoped is not None:  # the entry holds ``visual`` itself: no other clip can take its id within the scope
            kv = scoped.get((id(visual), head[1]), (None, None))[1]
        else:
            kv = cache.get("prefix", head) if cache is not None else None
            kv = None if kv is None else kv[0]
        with torch.no_grad():
            if kv is None:
                out = self._decode(batch.embeds[:1, :P], batch.positions[..., :1, :P], use_cache=True)
                kv = out.past_key_values
                if scoped is not None:
                    scoped[(id(visual), head[1])] = (visual, kv)
                elif cache is not None and hasattr(kv, "layers"):
                    cache.put("prefix", head, (kv, [t for layer in kv.layers for t in (layer.keys, layer.values)]),
                              frames=key.frames)
            B = batch.embeds.shape[0]
            group = torch.zeros(B, dtype=torch.long, device=self.device)
            hidden_last, attn = self._run_on_prefixes(batch, capture, layers, P, None, group, prefix_cache=kv)
            logits = self._answer_logits(hidden_last).float()
        if cache is not None:
            cache.put("answers", call, (logits, attn, batch.candidate_tokens, batch.candidate_offsets),
                      frames=key.frames)
        return ForwardOutput(yes_no_logits=logits, attention=attn, candidate_tokens=batch.candidate_tokens,
                             candidate_offsets=batch.candidate_offsets)

    def _prefix_plan(self, batch: PreparedBatch):
        """Find prompts whose inputs agree on a common prefix that holds the whole visual block.

        Returns ``(P, representatives, group_of_row)`` when fewer distinct prefixes than prompts
        exist (e.g. a question and the caption prompt on the same clip, with or without the same
        latent prompt), else None.  Prefixes are compared on the actual input embeddings and
        positions, so visual deltas are respected.
        """
        ids = batch.prompt_ids
        common, shortest = 0, min(len(x) for x in ids)
        while common < shortest and all(x[common] == ids[0][common] for x in ids):
            common += 1
        P = min(common, int(batch.rows.min()))  # candidate rows must stay in the suffix to be captured
        if P <= int(batch.cols.max()):
            return None
        reps: list[int] = []
        group = []
        for b in range(batch.embeds.shape[0]):
            for g, r in enumerate(reps):
                if torch.equal(batch.embeds[b, :P], batch.embeds[r, :P]) and torch.equal(
                        batch.positions[..., b, :P], batch.positions[..., r, :P]):
                    group.append(g)
                    break
            else:
                group.append(len(reps))
                reps.append(b)
        if len(reps) == len(group):
            return None
        return P, reps, torch.tensor(group, device=self.device)

    def _run_on_prefixes(self, batch: PreparedBatch, capture, layers, P: int, reps: list[int] | None,
                         group: torch.Tensor, prefix_cache=None):
        """Encode each distinct prefix (system + video + ...) once into a KV cache, then run all
        question suffixes on it: the long visual block is processed once per clip, not per prompt.
        ``prefix_cache``: the prefixes' KV cache computed before (``reps`` unused); it is not modified."""
        if prefix_cache is None:
            idx = torch.tensor(reps, device=self.device)
            out = self._decode(batch.embeds[idx, :P], batch.positions[..., idx, :P], use_cache=True)
            cache = out.past_key_values
        else:
            cache = _fork_cache(prefix_cache)
        cache.reorder_cache(group)
        B = batch.embeds.shape[0]
        ctx = capture_attention(batch.rows - P, batch.cols, layers) if capture is not None else null_capture()
        with ctx as cap:
            out = self._decode(batch.embeds[:, P:], batch.positions[..., P:], past_key_values=cache,
                               use_cache=True)
        h = out.last_hidden_state
        hidden_last = h[torch.arange(B, device=h.device), batch.last - P]
        attn = cap.result() if cap is not None else None
        return hidden_last, attn


def _fork_cache(cache):
    """A KV cache that shares ``cache``'s tensors: decoding on it (which replaces, never writes into, a
    layer's tensors) leaves ``cache`` as it was, so one cached prefix serves many calls."""
    new = copy.copy(cache)
    new.layers = [copy.copy(layer) for layer in cache.layers]
    return new
