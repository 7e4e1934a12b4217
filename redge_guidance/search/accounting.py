"""Compute accounting: a counting wrapper around the reward, a meter and the budget test."""

from __future__ import annotations

import time
from typing import Any

import torch

from .config import Budget
from .result import ComputeSpent

__all__ = ["CountingReward", "Meter"]


class CountingReward:
    """The reward, counting what it is asked to do. Forwards count sequences (``x.shape[0]``); a
    forward whose input requires a gradient (with autograd on) counts as a backward too: every
    such call in this library (pathwise guidance, gradient selection) is followed by exactly one
    backward. Reads through ``vocab_size``, ``differentiable`` and ``validate``."""

    def __init__(self, reward: Any, meter: Meter) -> None:
        self.reward = reward
        self.meter = meter

    @property
    def vocab_size(self) -> int | None:
        return getattr(self.reward, "vocab_size", None)

    @property
    def differentiable(self) -> bool:
        return getattr(self.reward, "differentiable", True)

    @property
    def name(self) -> str:
        return type(self.reward).__name__

    def validate(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> None:
        validate = getattr(self.reward, "validate", None)
        if callable(validate):
            validate(x) if attention_mask is None else validate(x, attention_mask)

    def __call__(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        n = int(x.shape[0])
        self.meter.spent.reward_forwards += n
        if torch.is_grad_enabled() and x.requires_grad:
            self.meter.spent.reward_backwards += n
        if attention_mask is None:
            return self.reward(x)
        return self.reward(x, attention_mask=attention_mask)


class Meter:
    """Counts and clocks one search; ``done()`` fills in the seconds."""

    def __init__(self, budget: Budget | None) -> None:
        self.budget = budget or Budget()
        self.spent = ComputeSpent()
        self._wall = time.perf_counter()
        self._cpu = time.process_time()
        self.exhausted = False

    def elapsed(self) -> float:
        return time.perf_counter() - self._wall

    def can_spend(self, denoiser: int = 0, reward: int = 0) -> bool:
        """Whether a unit costing about ``denoiser`` and ``reward`` forwards still fits; records
        that the budget stopped the search when it does not."""
        b, s = self.budget, self.spent
        limits = (
            (b.max_denoiser_forwards, s.denoiser_forwards + denoiser),
            (b.max_reward_forwards, s.reward_forwards + reward),
        )
        over = any(limit is not None and need > limit for limit, need in limits)
        over = over or (b.max_seconds is not None and self.elapsed() >= b.max_seconds)
        self.exhausted = self.exhausted or over
        return not over

    def done(self) -> ComputeSpent:
        self.spent.wall_seconds = self.elapsed()
        self.spent.cpu_seconds = time.process_time() - self._cpu
        return self.spent
