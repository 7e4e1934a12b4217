"""Best-of-N: N independent (optionally guided) generations per prompt, the best by reward."""

from __future__ import annotations

from typing import Any

import torch

from ._runner import Inputs, StepRecorder, score
from .accounting import CountingReward, Meter
from .config import BestOfNConfig
from .result import SearchResult

__all__ = ["run_best_of_n"]


def run_best_of_n(
    pipe: Any,
    recorder: StepRecorder,
    reward: CountingReward,
    inputs: Inputs,
    config: BestOfNConfig,
    *,
    num_inference_steps: int,
    generator: torch.Generator,
    meter: Meter,
) -> SearchResult:
    """Candidates in pipeline calls of ``batch_size`` per prompt until ``num_candidates`` or the
    budget is reached (the first call always runs: :func:`search` checked that it fits)."""
    B, N = inputs.batch_size, config.num_candidates
    seqs: list[torch.Tensor] = []  # (B, n, L) per call
    rewards: list[torch.Tensor] = []  # (B, n)
    done = 0
    while done < N:
        n = min(config.batch_size, N - done)
        per_candidate = meter.spent.reward_forwards / max(done * B, 1)
        if done and not meter.can_spend(B * n * num_inference_steps, int(per_candidate * B * n)):
            break
        out = pipe(
            **inputs.pipe_kwargs(),
            num_samples=n,
            num_inference_steps=num_inference_steps,
            guidance=recorder,
            generator=generator,
            output_type="ids",
        )
        _, am, _ = inputs.repeat(n)
        r = score(reward, out.sequences, am, recorder.prior.shape[-1])
        seqs.append(out.sequences.view(B, n, -1))
        rewards.append(r.view(B, n))
        done += n
    candidates = torch.cat(seqs, dim=1)  # (B, done, L)
    cand_rewards = torch.cat(rewards, dim=1)  # (B, done)
    best = cand_rewards.argmax(dim=-1)  # first of the best on ties
    rows = torch.arange(B, device=best.device)
    keep = config.return_candidates
    return SearchResult(
        method=config.method,
        sequences=candidates[rows, best],
        rewards=cand_rewards[rows, best].float(),
        spent=meter.spent,
        particles=candidates if keep else None,
        particle_rewards=cand_rewards.float() if keep else None,
        picked=best if keep else None,
        budget_exhausted=done < N,
        config=config.to_dict(),
    )
