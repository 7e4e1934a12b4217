"""ReDGE, ReinDGE and ReDGE-Cov: categorical relaxations through a deterministic DDIM chain with
an exact denoiser (Gourevitch et al., arXiv 2601.00781; the maths as implemented here is in
docs/method.md).

For one-hot x0 ~ Cat(softmax θ) noised as x_t = α_t x0 + σ_t ε, the posterior mean is
``softmax(θ + α_t x_t / σ_t²)``. ReDGE runs DDIM with it from x ~ N(0, I) down to t_1, takes
``soft = softmax(θ + α_1 x_1 / σ_1²)`` and draws ``D ~ Cat(soft)``; the gradient is the pathwise
derivative of `soft` through the whole chain.

ReDGE and ReinDGE run as one :class:`torch.autograd.Function` that saves only the logits and the
generator state of the Gaussian draw, and recomputes the chain in backward: the memory kept for
backward is one copy of the logits whatever `n_steps`, where a plain autograd graph keeps
`n_steps - 1` softmax outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .base import Estimator, RelaxedSample, check_n_steps, check_t_1, compute_dtype
from .chain import Schedule, _chain, _NoiseReplay, chain_vjp
from .sampling import draw_row_uniforms, one_hot, sample_from_probs

__all__ = ["Schedule", "ReDGE", "ReinDGE", "ReDGECov", "redge"]

# Variance floor of ReDGE-Cov's moment-matched reference noise (the reference code's MIN_VAR).
COV_MIN_VAR = 0.1


class _ReDGEFunction(torch.autograd.Function):
    """(logits, uniforms) -> (hard, soft, index) for ReDGE (`reinmax_last=False`) or ReinDGE.

    Saves the logits, the sampled ids and the noise's generator state; backward recomputes the
    chain. `soft` gets the exact pathwise derivative (this is what `gradcheck` verifies); `hard`
    gets the same for ReDGE, and for ReinDGE the path term plus ReinMax's direct term
    ``½ (J(p̂) g + ⟨g, D - p̂⟩ (D - p̂))`` in place of ``J(p̂) g`` (docs/method.md, ReinDGE).
    """

    @staticmethod
    def forward(
        ctx: Any,
        logits: Tensor,
        uniforms: Tensor,
        sched: Schedule,
        reinmax_last: bool,
        generator: torch.Generator | None,
    ):
        ctx.set_materialize_grads(False)  # an unused output costs nothing in backward
        cdt = compute_dtype(logits.dtype)
        theta = logits.to(cdt)
        noise = None
        if sched.is_straight_through:
            soft = torch.softmax(theta, dim=-1)
        else:
            noise, z = _NoiseReplay.draw(
                logits.shape, cdt, logits.device, generator, replayable=ctx.needs_input_grad[0]
            )
            soft = _chain(theta, z, sched, keep=None)  # overwrites z
            del z
        index = sample_from_probs(soft, uniforms)
        hard = one_hot(index, logits.shape[-1], logits.dtype)
        ctx.save_for_backward(logits, index)
        ctx.noise, ctx.sched, ctx.reinmax_last = noise, sched, reinmax_last
        ctx.mark_non_differentiable(index)
        return hard, soft.to(logits.dtype), index

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_hard: Tensor | None, grad_soft: Tensor | None, _grad_index: Any):
        if grad_hard is None and grad_soft is None:
            return None, None, None, None, None
        logits, index = ctx.saved_tensors
        sched: Schedule = ctx.sched
        cdt = compute_dtype(logits.dtype)
        theta = logits.to(cdt)
        kept: list[Tensor] = []  # p_{n-1}, ..., p_2
        if ctx.noise is None:
            p1 = torch.softmax(theta, dim=-1)
        else:
            p1 = _chain(theta, ctx.noise.again(), sched, keep=kept)
        del theta
        kept.append(p1)
        del p1
        grad = chain_vjp(kept, index, grad_hard, grad_soft, sched, ctx.reinmax_last)
        return grad.to(logits.dtype), None, None, None, None


class _ChainEstimator(Estimator):
    """Shared validation and schedule of the DDIM-chain estimators (fields live in subclasses)."""

    def __post_init__(self) -> None:
        n_steps = check_n_steps(self.n_steps)  # type: ignore[attr-defined]
        t_1 = check_t_1(self.t_1)  # type: ignore[attr-defined]
        object.__setattr__(self, "n_steps", n_steps)
        object.__setattr__(self, "t_1", t_1)
        object.__setattr__(self, "_schedule", Schedule(n_steps, t_1))

    @property
    def schedule(self) -> Schedule:
        """The time grid built from `n_steps` and `t_1`."""
        return self._schedule  # type: ignore[attr-defined]

    # ReinMax's direct term on the last step (ReinDGE) instead of the straight-through one (ReDGE)
    _reinmax_last: ClassVar[bool] = False

    def _relax(self, logits: Tensor, generator: torch.Generator | None) -> RelaxedSample:
        uniforms = draw_row_uniforms(logits, generator)  # drawn first: same ids as ST at t_1=1
        hard, soft, index = _ReDGEFunction.apply(
            logits, uniforms, self.schedule, self._reinmax_last, generator
        )
        return RelaxedSample(hard=hard, soft=soft, index=index)


@dataclass(frozen=True, kw_only=True)
class ReDGE(_ChainEstimator):
    """ReDGE: straight-through coupling of a categorical draw with a DDIM relaxation.

    ``soft = p̂(x_{t_1})`` after `n_steps - 2` DDIM moves from Gaussian noise, ``D ~ Cat(soft)``,
    ``hard = D + (soft - soft.detach())``. `n_steps=2, t_1=1` (in fact `t_1=1` for any `n_steps`)
    is exactly Straight-Through: same draws under the same generator, same gradient.

    The hard draw is *not* an exact sample of ``softmax(logits)``: with few steps and small `t_1`
    it is colder (total variation 0.47 at `n_steps=3, t_1=0.1`, 0.01 at `t_1=0.5`, K=10).

    Args:
        n_steps (`int`, defaults to 3):
            time-grid points including the clean one (`n_steps - 1` softmax calls); >= 2.
        t_1 (`float`, defaults to 0.5):
            first non-zero time of the grid, in (0, 1]; acts as a temperature (larger: smoother,
            lower-variance, more biased gradients).
    """

    name = "redge"
    # Defaults of the reference repository's sampler config (n_steps 3, t_1 0.5).
    n_steps: int = 3
    t_1: float = 0.5


@dataclass(frozen=True, kw_only=True)
class ReinDGE(_ChainEstimator):
    """ReinDGE: ReDGE with ReinMax's second-order correction on the last step, without hooks.

    Same forward as :class:`ReDGE` (same draws under the same generator). The gradient of `hard`
    is the path term through the DDIM states plus ``½ (J(p̂) g + ⟨g, D - p̂⟩ (D - p̂))`` for the
    last denoiser's direct dependence on the logits, ``J(q) = diag(q) - q qᵀ``; `soft` keeps the
    plain ReDGE gradient. At `t_1=1` it is exactly ReinMax with `tau=1`. Works under
    `torch.no_grad()`, for any leading shape and any order of autograd calls.

    Args:
        n_steps (`int`, defaults to 5): time-grid points including the clean one; >= 2.
        t_1 (`float`, defaults to 0.5): first non-zero time, in (0, 1].
    """

    name = "reindge"
    # Defaults of the reference repository's ReinDGE config.
    n_steps: int = 5
    t_1: float = 0.5
    _reinmax_last: ClassVar[bool] = True


def _cov_chain(theta: Tensor, z: Tensor, sched: Schedule) -> Tensor:
    """ReDGE-Cov's soft output (plain autograd: gradients also flow through π and v)."""
    probs = torch.softmax(theta, dim=-1)
    var = (probs * (1 - probs)).clamp_min(COV_MIN_VAR)
    inv_var = var.reciprocal()
    x = probs + var.sqrt() * z
    for k in range(sched.n_steps - 1, 0, -1):
        # log N(x; α e_j + σ π, σ² v) up to terms constant in j: α (x_j - σ π_j - α/2) / (σ² v_j)
        h = theta + sched.c[k] * (x - sched.sigmas[k] * probs - 0.5 * sched.alphas[k]) * inv_var
        p = torch.softmax(h, dim=-1)
        if k == 1:
            return p
        x = sched.A[k] * p + sched.B[k] * x
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True, kw_only=True)
class ReDGECov(_ChainEstimator):
    """ReDGE-Cov: ReDGE with moment-matched reference noise (docs/method.md, ReDGE-Cov).

    The chain starts from ``N(π, diag v)``, ``π = softmax(θ)``, ``v = max(π (1 - π), 0.1)``, and
    the denoiser's likelihood uses the per-class variance v:
    ``p̂ = softmax(θ + α (x - σ π - α/2) / (σ² v))``. Gradients flow through π and v as well.
    Runs in plain autograd, so it keeps several tensors of the logits' size per step for backward.

    Args:
        n_steps (`int`, defaults to 5): time-grid points including the clean one; >= 2.
        t_1 (`float`, defaults to 0.5): first non-zero time, in (0, 1]; `t_1=1` is Straight-Through.
    """

    name = "redge_cov"
    # Defaults of the reference repository's ReDGE-Cov config.
    n_steps: int = 5
    t_1: float = 0.5

    def _relax(self, logits: Tensor, generator: torch.Generator | None) -> RelaxedSample:
        cdt = compute_dtype(logits.dtype)
        uniforms = draw_row_uniforms(logits, generator)
        theta = logits.to(cdt)
        if self.schedule.is_straight_through:
            p1 = torch.softmax(theta, dim=-1)
        else:
            z = torch.randn(logits.shape, generator=generator, dtype=cdt, device=logits.device)
            p1 = _cov_chain(theta, z, self.schedule)
        index = sample_from_probs(p1, uniforms)
        soft = p1.to(logits.dtype)
        hard = one_hot(index, logits.shape[-1], logits.dtype) + (soft - soft.detach())
        return RelaxedSample(hard=hard, soft=soft, index=index)


def redge(
    logits: Tensor,
    n_steps: int = 3,
    t_1: float = 0.5,
    hard: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Drop-in functional ReDGE (the reference package's `redge(logits, n_steps, t_1, hard)`).

    Args:
        logits (`torch.Tensor` of shape `(..., V)`): unnormalised log-probabilities.
        n_steps (`int`, defaults to 3): time-grid points including the clean one; >= 2.
        t_1 (`float`, defaults to 0.5): first non-zero time, in (0, 1].
        hard (`bool`, defaults to `True`): return the straight-through one-hot sample (`True`) or
            the soft relaxation (`False`).
        generator (`torch.Generator`, *optional*): source of every random draw.

    Returns:
        `torch.Tensor` of shape `(..., V)` in `logits.dtype`. Use `ReDGE(...)(logits)` to get both
        tensors and the ids as a [`RelaxedSample`].
    """
    if not isinstance(hard, bool):
        raise ValueError(f"`hard` must be True or False, got {hard!r}.")
    sample = ReDGE(n_steps=n_steps, t_1=t_1)(logits, generator=generator)
    return sample.hard if hard else sample.soft
