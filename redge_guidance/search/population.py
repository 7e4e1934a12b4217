"""The weighted particle population of SMC: log-weights, the potential's memory, the evidence,
and the ESS / resampling history, for B prompts of K particles. Host-independent: the callback
of each host pipeline feeds it the step's log-potential increments and applies the ancestors it
returns to the host's own state."""

from __future__ import annotations

import torch

from . import resampling
from .config import SMCConfig

__all__ = ["Population", "log_potential"]


def log_potential(
    config: SMCConfig, r: torch.Tensor, memory: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Incremental log-potential of a step from its predicted reward ``r`` (B, K), and the
    potential's new memory (the last ``r̂`` for ``"difference"``, the best for ``"max"``)."""
    lam, kind = config.temperature, config.potential
    if kind == "sum":
        return r / lam, None
    if kind == "difference":  # r̂_0 = 0: the product telescopes to exp(R(x) / λ)
        return (r - (memory if memory is not None else 0.0)) / lam, r
    best = r if memory is None else torch.maximum(memory, r)
    return (best - (memory if memory is not None else 0.0)) / lam, best


class Population:
    """Weights of ``B × K`` particles (float64, on ``device``) and their history."""

    def __init__(
        self, config: SMCConfig, num_prompts: int, generator: torch.Generator, device
    ) -> None:
        self.cfg, self.generator = config, generator
        self.B, self.K = num_prompts, config.num_particles
        self.log_w = torch.zeros(self.B, self.K, dtype=torch.float64, device=device)
        self.log_z = torch.zeros(self.B, dtype=torch.float64, device=device)
        self.memory: torch.Tensor | None = None  # (B, K) potential memory
        self.rewards: torch.Tensor | None = None  # (B, K) the last predicted rewards
        self.ess: list[torch.Tensor] = []  # (B,) per step
        self.resampled: list[torch.Tensor] = []  # (B,) bool per step
        self.steps = 0

    def reweight(self, r: torch.Tensor, log_extra: torch.Tensor | None = None) -> None:
        """Add a step's potential (from predicted rewards ``r`` (B, K)) and any other log-weight
        increment (the proposal correction, (B, K)); record the ESS."""
        log_g, self.memory = log_potential(self.cfg, r, self.memory)
        if log_extra is not None:
            log_g = log_g + log_extra
        self.log_w = self.log_w + log_g
        self.rewards = r
        self.ess.append(resampling.effective_sample_size(self.log_w))
        self.steps += 1

    def resample(self, allowed: bool = True) -> torch.Tensor | None:
        """Resample the prompts whose ESS is low (or all, on the ``resample_every`` period);
        returns flat ancestor indices ``(B·K,)`` into the host's rows, or None when ``allowed``
        is False (the last step). Resampled prompts restart from uniform weights."""
        ess = self.ess[-1]
        need = ess < self.cfg.ess_threshold * self.K
        every = self.cfg.resample_every
        if not allowed:
            need = torch.zeros_like(need)
        elif every > 0 and self.steps % every == 0:
            need = torch.ones_like(need)
        self.resampled.append(need)
        if not allowed:
            return None
        B, K = self.B, self.K
        drawn = resampling.resample(self.log_w, self.cfg.scheme, self.generator)
        keep = torch.arange(K, device=drawn.device).expand(B, K)
        ancestors = torch.where(need.unsqueeze(-1), drawn, keep)  # (B, K)
        gain = torch.where(need, resampling.log_mean_weight(self.log_w), 0.0)
        self.log_z = self.log_z + gain
        self.log_w = torch.where(need.unsqueeze(-1), 0.0, self.log_w)
        if self.memory is not None:
            self.memory = self.memory.gather(1, ancestors)
        self.rewards = self.rewards.gather(1, ancestors)
        return (ancestors + K * torch.arange(B, device=drawn.device).unsqueeze(-1)).flatten()

    def weights(self) -> torch.Tensor:
        """Normalised weights (B, K), float64."""
        return resampling.normalised_weights(self.log_w)

    def evidence(self) -> torch.Tensor:
        """``log Ẑ`` per prompt: the resampling steps' log mean weights plus the final one."""
        return self.log_z + resampling.log_mean_weight(self.log_w)

    def pick(self) -> torch.Tensor:
        """Index (B,) of the returned particle of each prompt, by ``config.pick``."""
        if self.cfg.pick == "weight":
            return self.log_w.argmax(dim=-1)
        if self.cfg.pick == "reward":
            return self.rewards.argmax(dim=-1)
        return resampling.resample(self.log_w, "multinomial", self.generator)[:, 0]
