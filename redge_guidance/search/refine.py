"""Reward-driven remasking: after a first pass, remask the positions the reward likes least and
denoise them again (with guidance when given), for a number of rounds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from ._runner import Inputs, StepRecorder, score
from .accounting import CountingReward, Meter
from .config import RefineConfig
from .result import SearchResult

__all__ = ["CommitConfidence", "run_refine"]

#: ``remask_fn(sequences (B, L) int64, rewards (B,)) -> (B, L) bool``: positions to remask.
RemaskFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class CommitConfidence:
    """``callback_on_step_end`` that records, for every position a step commits, the probability
    of its token under the logits it was drawn from (``confidence``, float64 ``(R, L)``)."""

    def __init__(self, recorder: StepRecorder, confidence: torch.Tensor, mask_id: int, tau: float):
        self.recorder, self.confidence = recorder, confidence
        self.mask_id, self.tau = mask_id, tau

    def __call__(self, pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> None:
        after, before = kwargs["sample"], self.recorder.before
        committed = (before == self.mask_id) & (after != self.mask_id)
        logits = self.recorder.guided[committed].double() / self.tau  # (M, V)
        tok = after[committed].unsqueeze(-1)
        prob = torch.softmax(logits, dim=-1).gather(-1, tok).squeeze(-1)
        self.confidence[committed] = prob
        return None


def _gradient_gain(
    reward: CountingReward, seq: torch.Tensor, am: torch.Tensor, V: int, mask_id: int
) -> torch.Tensor:
    """First-order reward gain of the best switch to another real token (never the mask) at
    each position, ``(B, L)``."""
    with torch.enable_grad():
        x = F.one_hot(seq, V).float().requires_grad_(True)
        (g,) = torch.autograd.grad(reward(x, am).sum(), x)
    best = g.detach().index_fill(-1, torch.tensor([mask_id], device=g.device), -float("inf"))
    return best.amax(dim=-1) - g.gather(-1, seq.unsqueeze(-1)).squeeze(-1)


def _choose(badness: torch.Tensor, free: torch.Tensor, fraction: float) -> torch.Tensor:
    """The ``max(1, round(fraction · n_free))`` free positions of each row with the largest
    ``badness`` (B, L)."""
    n = (free.sum(dim=-1).double() * fraction).round().long().clamp_min(1)
    ranked = badness.masked_fill(~free, -float("inf"))
    ranks = ranked.argsort(dim=-1, descending=True, stable=True).argsort(dim=-1)
    return free & (ranks < n.unsqueeze(-1))


def _denoise(pipe, recorder, ids, am, fixed, confidence, steps, generator) -> torch.Tensor:
    mask_id = pipe.mask_token_id
    tau = float(pipe.scheduler.config.temperature) or 1.0
    out = pipe(
        input_ids=ids,
        attention_mask=am,
        fixed_mask=fixed,
        num_inference_steps=steps,
        guidance=recorder,
        generator=generator,
        output_type="ids",
        callback_on_step_end=CommitConfidence(recorder, confidence, mask_id, tau),
        callback_on_step_end_tensor_inputs=["sample"],
    )
    return out.sequences


def run_refine(
    pipe: Any,
    recorder: StepRecorder,
    reward: CountingReward,
    inputs: Inputs,
    config: RefineConfig,
    *,
    num_inference_steps: int,
    generator: torch.Generator,
    meter: Meter,
    remask_fn: RemaskFn | None = None,
) -> SearchResult:
    """A first pass, then ``config.rounds`` remask-and-denoise rounds (see :func:`search`)."""
    ids, am, fixed = inputs.ids, inputs.attention_mask, inputs.fixed
    B = inputs.batch_size
    confidence = torch.ones(ids.shape, dtype=torch.float64, device=ids.device)
    seq = _denoise(pipe, recorder, ids, am, fixed, confidence, num_inference_steps, generator)
    V = recorder.prior.shape[-1]
    r = score(reward, seq, am, V)
    history = [r.clone()]
    steps = config.num_inference_steps or num_inference_steps
    free = ~fixed
    for _ in range(config.rounds):
        per_row = meter.spent.reward_forwards / (B * len(history))  # reward cost of a pass
        if not meter.can_spend(B * steps, int(per_row * B)):
            break
        if remask_fn is not None:
            chosen = _check_remask(remask_fn(seq.clone(), r.float().clone()), seq) & free
        elif config.select == "gradient":
            chosen = _choose(
                _gradient_gain(reward, seq, am, V, pipe.mask_token_id), free, config.fraction
            )
        else:
            chosen = _choose(-confidence, free, config.fraction)
        active = chosen.any(dim=-1)  # rows with something to redo
        if not bool(active.any()):
            break
        rows = active.nonzero().flatten()
        conf_rows = confidence[rows]
        new = _denoise(
            pipe,
            recorder,
            seq[rows].masked_fill(chosen[rows], pipe.mask_token_id),
            am[rows],
            ~chosen[rows],
            conf_rows,
            steps,
            generator,
        )
        new_r = score(reward, new, am[rows], V)
        take = new_r > r[rows] if config.keep_best else torch.ones_like(new_r, dtype=torch.bool)
        upd = rows[take]
        seq[upd], r[upd], confidence[upd] = new[take], new_r[take], conf_rows[take]
        history.append(r.clone())
    return SearchResult(
        method=config.method,
        sequences=seq,
        rewards=r.float(),
        spent=meter.spent,
        round_rewards=torch.stack(history).float(),
        budget_exhausted=meter.exhausted,
        config=config.to_dict(),
    )


def _check_remask(chosen: Any, seq: torch.Tensor) -> torch.Tensor:
    if (
        not isinstance(chosen, torch.Tensor)
        or chosen.shape != seq.shape
        or chosen.dtype != torch.bool
    ):
        got = (
            f"shape {tuple(chosen.shape)} and dtype {chosen.dtype}"
            if isinstance(chosen, torch.Tensor)
            else type(chosen).__name__
        )
        raise ValueError(
            f"`remask_fn` must return a bool tensor of shape {tuple(seq.shape)} (True = remask), "
            f"got {got}."
        )
    return chosen.to(seq.device)
