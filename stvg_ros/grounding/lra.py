"""LRA, logit-guided re-attention: latent visual prompts optimised at test time.

A latent prompt ``V`` of the visual tokens' shape is added to the visual embeddings and moved by
gradient steps so that the frozen model answers "yes" to a sub-query's existence question
("Is there {attribute} in this video?").  Raising that answer re-weights the visual tokens the
sub-query depends on, which then shows in the attention of the full query.  Several prompts
(V_s for the attribute, V_t for the action, V_s' for the reversed clip of TAS) are independent
problems; they are optimised together, one batched forward/backward pass per step.

Losses (``config.lra_loss``):

* ``'paper'``: ``L = -exp(p_yes - p_no)``.  ``p`` is the softmax over the two answer logits
  (yes, no): the adapter returns only those two logits, and renormalising over them keeps the
  loss about the yes/no decision rather than about probability mass the answer token puts on
  unrelated words.  The update is a plain gradient step ``V <- V - lr * grad``.
* ``'official'``: the official code's ``L = 1 - (m_sub - m_caption)`` with the margin
  ``m = logit_yes - logit_no`` of the sub-query's question and of the caption prompt (both seeing
  the same ``V``), gradient steps on ``V`` and an EMA ``V_in = beta * V_k + (1 - beta) * V_(k-1)``
  that is what the model sees (and what is returned).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch

from ..adapters.base import ModelAdapter, VisualTokens, add_latent_prompt


def yes_probability(yes_no_logits: torch.Tensor) -> torch.Tensor:
    """``(B, 2)`` logits → ``p_yes`` of the two-way softmax, ``(B,)``."""
    return torch.softmax(yes_no_logits.float(), dim=-1)[:, 0]


def paper_loss(yes_no_logits: torch.Tensor) -> torch.Tensor:
    """Per-prompt ``-exp(p_yes - p_no)`` (lower is better), ``(B,)``."""
    p = torch.softmax(yes_no_logits.float(), dim=-1)
    return -torch.exp(p[:, 0] - p[:, 1])


def official_loss(sub_logits: torch.Tensor, caption_logits: torch.Tensor) -> torch.Tensor:
    """Per-prompt ``1 - (margin_sub - margin_caption)``, ``(B,)``."""
    sub = sub_logits.float()
    cap = caption_logits.float()
    return 1.0 - ((sub[:, 0] - sub[:, 1]) - (cap[:, 0] - cap[:, 1]))


def latent_prompt_kept(tokens: torch.Tensor, delta: torch.Tensor, dtype: torch.dtype) -> dict[str, float]:
    """What of a latent prompt survives the model's precision: the decoder sees ``add_latent_prompt(...)``
    minus the tokens (in ``dtype``) instead of ``delta``.  Returns the prompt's rms relative to the tokens',
    the relative error ``|seen - delta| / |delta|`` and the cosine between them.  A prompt much smaller than
    the tokens falls below their rounding step: bfloat16 keeps 8 significant bits, float16 11."""
    t = tokens.to(dtype).float()
    d = delta.float()
    seen = add_latent_prompt(t, d, dtype).float() - t
    return {"rms_ratio": float(d.pow(2).mean().sqrt() / t.pow(2).mean().sqrt().clamp_min(1e-30)),
            "rel_error": float((seen - d).norm() / d.norm().clamp_min(1e-30)),
            "cosine": float(torch.nn.functional.cosine_similarity(seen.flatten(), d.flatten(), dim=0))}


@dataclass
class LRAResult:
    """Optimised latent prompts and the optimisation's trace."""

    deltas: torch.Tensor
    """``(B, N, D)`` latent prompts, one per problem, in the order given (float32)."""
    losses: list[list[float]] = field(default_factory=list)
    """``losses[step][b]``: loss of problem ``b`` before step ``step``'s update."""
    margins: list[list[float]] = field(default_factory=list)
    """``margins[step][b]``: the sub-query's ``logit_yes - logit_no`` before that update."""
    zero_logits: Optional[torch.Tensor] = None
    """``(E, 2)`` yes/no logits of the ``also_ask`` prompts with no latent prompt, computed in the first step
    on the prefixes it shares with them (None when that step did not run them)."""


def _chunks(n: int, size: int) -> list[slice]:
    size = n if size <= 0 else size
    return [slice(i, min(n, i + size)) for i in range(0, n, size)]


def _shared_first_step(adapter, visuals, questions, loss, caption_prompt, max_batch, also_ask, batch_clips=False):
    """LRA's first step with each clip's zero-latent prefix computed once (see ``share_first_step``):
    ``(losses, sub-query logits, gradients (B, N, D), also_ask logits)``, or None where nothing is shared
    or the adapter cannot.

    One forward pass for all the clips (each clip's problems' questions, one caption prompt for the official
    loss, the ``also_ask`` prompts on it) with ``batch_clips`` (one per number of problems on a clip), else one
    per clip; each clip on its own zero leaf.  A problem's gradient is a backward pass through its own clip's
    graph, and one backward pass serves a problem of every clip of a pass (their losses share no leaf), so
    sharing a prefix costs no backward work beyond the unshared step's.  Where the prompts exceed ``max_batch`` together, or two clips have the same
    tokens (their prefixes would merge, and with them their gradients), one pass per clip."""
    B = len(questions)
    clips: list[VisualTokens] = []
    for v in list(visuals) + [v for v, _ in also_ask]:
        if not any(u is v for u in clips):
            clips.append(v)
    if len(clips) == B + len(also_ask):
        return None  # every prompt on its own clip: nothing to share
    N, D = visuals[0].embeds.shape
    per = torch.zeros(B)
    sub_logits = torch.zeros(B, 2)
    grads = torch.zeros(B, N, D, device=visuals[0].embeds.device)
    extra = torch.zeros(len(also_ask), 2) if also_ask else None
    plans = []
    for clip in clips:
        mine = [i for i in range(B) if visuals[i] is clip]
        asks = [j for j, (v, _) in enumerate(also_ask) if v is clip]
        prompts = [questions[i] for i in mine] + ([caption_prompt] if loss == "official" and mine else []) \
            + [also_ask[j][1] for j in asks]
        if max_batch > 0 and len(prompts) > max_batch:
            return None
        if len(prompts) > 1 and not adapter.shares_prefix_under_grad(clip, prompts):
            return None  # e.g. a template that puts the question before the video: nothing to share
        plans.append((clip, mine, asks, prompts))
    together = batch_clips and (max_batch <= 0 or sum(len(p[3]) for p in plans) <= max_batch) and not any(
        torch.equal(a.embeds, b.embeds) for i, a in enumerate(clips) for b in clips[i + 1:])
    if together:  # one pass per problem count: a backward pass runs over its whole batch, so a clip with fewer
        # problems (TAS's reversed clip: one) batched with clips of more would be differentiated in vain
        parts: dict[int, list] = {}
        for p in plans:
            parts.setdefault(len(p[1]), []).append(p)
        passes = list(parts.values())
    else:
        passes = [[p] for p in plans]
    for part in passes:
        _first_step_pass(adapter, part, loss, per, sub_logits, grads, extra, N, D)
    return per, sub_logits, grads, extra


def _first_step_pass(adapter, plans, loss, per, sub_logits, grads, extra, N, D) -> None:
    """One forward pass of the first step over ``plans`` (clip, its problems, its also_ask prompts, the
    prompts), each clip on its own zero leaf; fills ``per``, ``sub_logits``, ``grads`` and ``extra``."""
    C = len(plans)
    device = plans[0][0].embeds.device
    leaf = torch.zeros(C, N, D, device=device, dtype=torch.float32, requires_grad=True)
    counts = [len(p[3]) for p in plans]
    rounds = max(len(p[1]) for p in plans)
    with torch.enable_grad():
        if C == 1:
            clip_arg = plans[0][0]
            delta = leaf[0].unsqueeze(0).expand(counts[0], N, D)
        else:
            clip_arg = [p[0] for p, n in zip(plans, counts) for _ in range(n)]
            delta = leaf[torch.tensor([c for c, n in enumerate(counts) for _ in range(n)], device=device)]
        out = adapter.run(clip_arg, [q for p in plans for q in p[3]], visual_delta=delta, capture=None,
                          with_grad=rounds > 0, share_prefix=True)
        logits = out.yes_no_logits
        starts = [sum(counts[:c]) for c in range(C)]
        losses = []
        for (clip, mine, asks, prompts), s in zip(plans, starts):
            k = len(mine)
            mine_logits = logits[s:s + k]
            if not k:
                losses.append(None)
            elif loss == "paper":
                losses.append(paper_loss(mine_logits))
            else:
                losses.append(official_loss(mine_logits, logits[s + k:s + k + 1].expand(k, 2)))
            for n, i in enumerate(mine):
                sub_logits[i] = mine_logits[n].detach().float().cpu()
            first = s + k + (1 if loss == "official" and k else 0)
            for n, j in enumerate(asks):
                extra[j] = logits[first + n].detach().float().cpu()
        for r in range(rounds):  # the r-th problem of every clip in one backward pass (their leaves differ)
            took = [(c, plans[c][1][r]) for c in range(C) if len(plans[c][1]) > r]
            total = sum(losses[c][r] for c, _ in took)
            g = torch.autograd.grad(total, leaf, retain_graph=r < rounds - 1)[0]
            for c, i in took:
                grads[i] = g[c].float()
                per[i] = float(losses[c][r].detach())


def optimise_latent_prompts(adapter: ModelAdapter, visuals: Sequence[VisualTokens], questions: Sequence[str],
                            *, steps: int, lr: float, loss: str = "paper", beta: float = 0.5,
                            caption_prompt: str = "Describe this video in details.",
                            max_batch: int = 0, before_step: Optional[Callable[[int], None]] = None,
                            also_ask: Sequence[tuple[VisualTokens, str]] = (), share_first_step: bool = True,
                            batch_clips: bool = False) -> LRAResult:
    """Optimise one latent prompt per ``(visual, question)`` problem, all problems batched.

    ``share_first_step``: every latent prompt is zero before the first update, so problems on the same clip
    see the same clip prefix (system prompt + visual tokens); where the adapter shares it
    (``shares_prefix_under_grad``) it is computed once per clip, and the ``also_ask`` prompts (e.g. the
    existence question, which has no latent prompt) run on it too (:attr:`LRAResult.zero_logits`).  The
    result agrees with the unshared computation within float32 rounding (other batch shapes).
    ``batch_clips``: that first step runs every clip's prompts in one pass (several cameras' clips), rather
    than one pass per clip (a clip and its reversed copy, as a single grounding always did).

    ``before_step(step)``, when given, is called before each step; it may raise to stop the
    optimisation there (a cancelled query need not wait for the remaining steps).

    Only the latent prompts receive gradients: the call runs under ``torch.enable_grad`` with the
    model's parameters untouched (adapters load them frozen), and gradients are taken with
    ``torch.autograd.grad`` on the prompts alone, so nothing accumulates in ``.grad`` of the model.
    Problems may use different clips of the same token count (the original and the reversed one).
    """
    if len(visuals) != len(questions):
        raise ValueError("give one visual clip per question")
    if loss not in ("paper", "official"):
        raise ValueError(f"unknown LRA loss {loss!r}: use 'paper' or 'official'")
    B = len(questions)
    N, D = visuals[0].embeds.shape
    if any(v.embeds.shape != (N, D) for v in visuals):
        raise ValueError("all clips of one LRA batch must have the same number of visual tokens")
    device = visuals[0].embeds.device
    V = torch.zeros(B, N, D, device=device, dtype=torch.float32)
    V_prev = V
    result = LRAResult(deltas=V)
    for step in range(steps):
        if before_step is not None:
            before_step(step)
        V_k = V.detach().requires_grad_(True)
        if loss == "official" and step > 0:
            V_in = beta * V_k + (1.0 - beta) * V_prev
        else:  # first official step: V_k and V_(k-1) are the same tensor, so the EMA is V_k itself
            V_in = V_k
        grad = torch.zeros_like(V)
        step_losses, step_margins = [0.0] * B, [0.0] * B
        # max_batch counts prompts: the official loss runs a caption prompt beside each problem
        per_pass = max_batch if loss == "paper" or max_batch <= 0 else max(1, max_batch // 2)
        shared = _shared_first_step(adapter, visuals, questions, loss, caption_prompt, max_batch, also_ask,
                                    batch_clips) \
            if step == 0 and share_first_step else None
        if shared is not None:
            per, sub_logits, grad, result.zero_logits = shared
            margins = (sub_logits[:, 0] - sub_logits[:, 1]).float().cpu().tolist()
            step_losses, step_margins = [float(v) for v in per], margins
        for part in _chunks(B, per_pass) if shared is None else ():
            idx = list(range(B))[part]
            n = len(idx)
            with torch.enable_grad():
                delta = V_in[part]
                if loss == "paper":
                    out = adapter.run([visuals[i] for i in idx], [questions[i] for i in idx],
                                      visual_delta=delta, capture=None, with_grad=True)
                    sub_logits = out.yes_no_logits
                    per = paper_loss(sub_logits)
                else:
                    out = adapter.run([visuals[i] for i in idx] * 2,
                                      [questions[i] for i in idx] + [caption_prompt] * n,
                                      visual_delta=torch.cat([delta, delta], 0), capture=None, with_grad=True)
                    sub_logits = out.yes_no_logits[:n]
                    per = official_loss(sub_logits, out.yes_no_logits[n:])
                (g,) = torch.autograd.grad(per.sum(), V_k)
            grad += g.float()
            margins = (sub_logits[:, 0] - sub_logits[:, 1]).detach().float().cpu().tolist()
            for j, i in enumerate(idx):
                step_losses[i] = float(per[j].detach())
                step_margins[i] = margins[j]
        result.losses.append(step_losses)
        result.margins.append(step_margins)
        V_prev = V
        V = (V - lr * grad).detach()
    if loss == "official" and steps > 0:
        V = beta * V + (1.0 - beta) * V_prev
    result.deltas = V.detach()
    return result
