"""Baseline estimators under the same interface: Straight-Through, Gumbel-Softmax, ReinMax."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .base import Estimator, RelaxedSample, check_bool, check_tau, compute_dtype
from .sampling import draw_row_uniforms, gumbel_noise, one_hot, sample_from_probs

__all__ = ["StraightThrough", "GumbelSoftmax", "ReinMax"]


@dataclass(frozen=True, kw_only=True)
class StraightThrough(Estimator):
    """Straight-Through (Bengio et al. 2013): ``D ~ Cat(softmax θ)`` exactly,
    ``hard = D + (soft - soft.detach())`` with ``soft = softmax(θ)``. No options."""

    name = "straight_through"

    def _relax(self, logits: Tensor, generator: torch.Generator | None) -> RelaxedSample:
        uniforms = draw_row_uniforms(logits, generator)
        probs = torch.softmax(logits.to(compute_dtype(logits.dtype)), dim=-1)
        index = sample_from_probs(probs, uniforms)
        soft = probs.to(logits.dtype)
        hard = one_hot(index, logits.shape[-1], logits.dtype) + (soft - soft.detach())
        return RelaxedSample(hard=hard, soft=soft, index=index)


@dataclass(frozen=True, kw_only=True)
class GumbelSoftmax(Estimator):
    """Gumbel-Softmax / Concrete (Jang et al. 2017; Maddison et al. 2017).

    ``soft = softmax((θ + G) / tau)`` with Gumbel noise G (from float64 uniforms); the draw
    ``index = argmax(θ + G)`` is an exact sample of ``softmax(θ)``.

    Args:
        tau (`float`, defaults to 0.5): temperature, > 0.
        hard (`bool`, defaults to `True`): `True` gives the straight-through Gumbel estimator,
            ``hard = D + (soft - soft.detach())``; `False` gives the plain relaxation, and then
            the `hard` field *is* the soft sample (not one-hot; `index` is still the exact draw).
    """

    name = "gumbel_softmax"
    # The reference repository's sampler config (tau 0.5, straight-through hard sample).
    tau: float = 0.5
    hard: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "tau", check_tau(self.tau))
        object.__setattr__(self, "hard", check_bool("hard", self.hard))

    def _relax(self, logits: Tensor, generator: torch.Generator | None) -> RelaxedSample:
        cdt = compute_dtype(logits.dtype)
        perturbed = logits.to(cdt) + gumbel_noise(logits.shape, generator, logits.device, cdt)
        index = perturbed.detach().argmax(dim=-1)
        soft = torch.softmax(perturbed / self.tau, dim=-1).to(logits.dtype)
        if not self.hard:
            return RelaxedSample(hard=soft, soft=soft, index=index)
        hard = one_hot(index, logits.shape[-1], logits.dtype) + (soft - soft.detach())
        return RelaxedSample(hard=hard, soft=soft, index=index)


class _ReinMaxFunction(torch.autograd.Function):
    """(logits, uniforms) -> (hard, soft, index) with ReinMax's gradient on `hard`.

    ``soft = softmax(θ)`` gets its exact Jacobian (checked by `gradcheck`); `hard` (value
    ``D ~ Cat(softmax θ)``) gets ``2 J(q) g - ½ J(softmax θ) g`` with
    ``q = (softmax(θ / tau) + D) / 2`` and ``J(q) = diag(q) - q qᵀ`` (Liu et al. 2023, Alg. 2).
    Saves only the logits and the ids; backward recomputes the softmaxes.
    """

    @staticmethod
    def forward(ctx: Any, logits: Tensor, uniforms: Tensor, tau: float):
        ctx.set_materialize_grads(False)  # an unused output costs nothing in backward
        probs = torch.softmax(logits.to(compute_dtype(logits.dtype)), dim=-1)
        index = sample_from_probs(probs, uniforms)
        hard = one_hot(index, logits.shape[-1], logits.dtype)
        ctx.save_for_backward(logits, index)
        ctx.tau = tau
        ctx.mark_non_differentiable(index)
        return hard, probs.to(logits.dtype), index

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_hard: Tensor | None, grad_soft: Tensor | None, _grad_index: Any):
        if grad_hard is None and grad_soft is None:
            return None, None, None
        logits, index = ctx.saved_tensors
        cdt = compute_dtype(logits.dtype)
        theta = logits.to(cdt)
        probs = torch.softmax(theta, dim=-1)
        grad = None
        if grad_hard is not None:
            g_h = grad_hard.to(cdt)
            q = torch.softmax(theta / ctx.tau, dim=-1) if ctx.tau != 1.0 else probs.clone()
            q.mul_(0.5).scatter_add_(-1, index.unsqueeze(-1), torch.full_like(q[..., :1], 0.5))
            grad = torch._softmax_backward_data(2 * g_h, q, -1, cdt)
            del q
            g_p = g_h * -0.5  # never write into the incoming gradient
            if grad_soft is not None:
                g_p.add_(grad_soft.to(cdt))
        else:
            g_p = grad_soft.to(cdt)
        direct = torch._softmax_backward_data(g_p, probs, -1, cdt)
        grad = direct if grad is None else grad.add_(direct)
        return grad.to(logits.dtype), None, None


@dataclass(frozen=True, kw_only=True)
class ReinMax(Estimator):
    """ReinMax (Liu et al. 2023): a second-order (Heun) correction of Straight-Through.

    ``D ~ Cat(softmax θ)`` exactly; `soft` is ``softmax(θ)``; the gradient through `hard` is
    ``2 J((softmax(θ/tau) + D)/2) g - ½ J(softmax θ) g``.

    Args:
        tau (`float`, defaults to 1.0): temperature of the correction term only, > 0.
    """

    name = "reinmax"
    # The reference repository's sampler config.
    tau: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "tau", check_tau(self.tau))

    def _relax(self, logits: Tensor, generator: torch.Generator | None) -> RelaxedSample:
        uniforms = draw_row_uniforms(logits, generator)
        hard, soft, index = _ReinMaxFunction.apply(logits, uniforms, self.tau)
        return RelaxedSample(hard=hard, soft=soft, index=index)
