"""What a search returns: :class:`SearchResult` and the compute it spent, :class:`ComputeSpent`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["ComputeSpent", "SearchResult"]


@dataclass
class ComputeSpent:
    """Compute a search spent, counted in sequences (a call on 8 rows counts 8).

    Args:
        denoiser_forwards (`int`): rows passed through the denoiser, summed over steps.
        reward_forwards (`int`): sequences scored by the reward: potentials, final scores,
            selection, and guidance's inner steps (relaxed samples included).
        reward_backwards (`int`): reward forwards whose input carried a gradient (guidance's
            pathwise inner steps, gradient-based selection); each is followed by one backward.
        wall_seconds (`float`): wall-clock time of the whole search.
        cpu_seconds (`float`): CPU time of this process over the search (all its threads).
    """

    denoiser_forwards: int = 0
    reward_forwards: int = 0
    reward_backwards: int = 0
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class SearchResult:
    """The outcome of :func:`~redge_guidance.search.search`.

    Args:
        method (`str`): ``"best-of-n"``, ``"smc"`` or ``"refine"``.
        sequences (`torch.LongTensor` of shape `(B, L)`): the picked sequence per prompt.
        rewards (`torch.Tensor` of shape `(B,)`): their rewards (float32).
        spent (`ComputeSpent`): what the search cost.
        particles (`torch.LongTensor` of shape `(B, K, L)`, *optional*): every final particle
            (SMC) or candidate (best-of-N).
        particle_rewards (`torch.Tensor` of shape `(B, K)`, *optional*): their rewards.
        picked (`torch.LongTensor` of shape `(B,)`, *optional*): index of the returned sequence
            among ``particles`` (SMC, best-of-N), so ``particles[b, picked[b]]`` is
            ``sequences[b]`` and ``weights[b, picked[b]]`` its weight.
        weights (`torch.Tensor` of shape `(B, K)`, *optional*): normalised final weights of the
            particles (SMC; float64, rows sum to 1).
        ess_history (`torch.Tensor` of shape `(N, B)`, *optional*): effective sample size after
            each step's reweighting, before any resampling (SMC).
        resampled (`torch.BoolTensor` of shape `(N, B)`, *optional*): which prompts resampled at
            which step (SMC).
        log_evidence (`torch.Tensor` of shape `(B,)`, *optional*): SMC's estimate of
            ``log E_P[exp(R / λ)]`` (float64), the log normalising constant of the target.
        round_rewards (`torch.Tensor` of shape `(R + 1, B)`, *optional*): kept reward after the
            first pass and each refinement round (refine).
        budget_exhausted (`bool`): True when the budget stopped the search before its config's
            full amount of work.
        config (`dict`): the search config, ``to_dict()``.
    """

    method: str
    sequences: torch.Tensor
    rewards: torch.Tensor
    spent: ComputeSpent
    particles: torch.Tensor | None = None
    particle_rewards: torch.Tensor | None = None
    picked: torch.Tensor | None = None
    weights: torch.Tensor | None = None
    ess_history: torch.Tensor | None = None
    resampled: torch.Tensor | None = None
    log_evidence: torch.Tensor | None = None
    round_rewards: torch.Tensor | None = None
    budget_exhausted: bool = False
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly: tensors as nested lists, ``spent`` as a dict, None kept."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                value = value.tolist()
            elif isinstance(value, ComputeSpent):
                value = value.to_dict()
            out[f.name] = value
        out["resampling_steps"] = self.resampling_steps
        return out

    @property
    def resampling_steps(self) -> list[int]:
        """Steps at which at least one prompt resampled (empty outside SMC)."""
        if self.resampled is None:
            return []
        return self.resampled.any(dim=1).nonzero().flatten().tolist()
