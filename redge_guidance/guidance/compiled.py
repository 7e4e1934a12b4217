"""The inner step as pure functions of tensors, compiled by ``GuidanceConfig(compile=True)``.

Two pieces, each one ``torch.compile(fullgraph=True)`` graph (a graph break is an error):

- :func:`kl_adam_step`: the exact KL and its closed-form gradient, the per-sample gradient
  clipping and an Adam update (torch's defaults: betas (0.9, 0.999), eps 1e-8, no weight decay),
  returning the new φ and Adam state instead of updating them in place, so that an early stop can
  keep the old φ. Used with every estimator and gradient.
- :func:`chain_sample` and :func:`chain_grad`: ReDGE / ReinDGE's forward (the DDIM chain and the
  inverse-CDF draw) and its pathwise gradient, for the pathwise reward gradient.

Random numbers never enter a compiled graph: the uniforms and the chain's noise are drawn eagerly
from the problem's private generator, in the order the eager estimator draws them, and passed in.
The number of editable rows ``N`` changes from one guided step to the next: the first call compiles
for its sizes, the first call with other sizes recompiles once with ``N`` dynamic (torch's
automatic dynamic shapes), and later sizes reuse that graph (sizes 0 and 1 are specialised).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..estimators.chain import Schedule
from ..estimators.sampling import sample_from_probs

__all__ = ["kl_adam_step", "chain_sample", "chain_grad", "compiled", "ADAM_BETAS", "ADAM_EPS"]

#: torch.optim.Adam's defaults, which the eager loop uses.
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def kl_adam_step(
    phi: Tensor,
    grad: Tensor,
    prior_logp: Tensor,
    vmask: Tensor,
    batch_idx: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    scalars: Tensor,
    *,
    B: int,
    use_kl: bool,
    max_grad_norm: float | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One Adam step on ``−objective`` given the reward term's gradient.

    Args:
        phi (`torch.Tensor` of shape `(N, K)`): φ's rows before the step.
        grad (`torch.Tensor` of shape `(N, K)`): gradient of ``−mean_s reward`` with respect to φ.
        prior_logp (`torch.Tensor` of shape `(N, K)`): the prior's log-probabilities.
        vmask (`torch.Tensor` of shape `(N, K)` or `(1, K)`, bool): masked entries (no
            gradient, no move).
        batch_idx (`torch.Tensor` of shape `(N,)`, int64): the sample of each row.
        exp_avg, exp_avg_sq (`torch.Tensor` of shape `(N, K)`): Adam's moments.
        scalars (`torch.Tensor` of shape `(3,)`): ``lr / (1 − β₁ᵗ)``, ``sqrt(1 − β₂ᵗ)`` and
            ``kl_weight`` (a tensor, so that neither the step count nor the hyper-parameters
            recompile).
        B (`int`): batch size. use_kl (`bool`): ``kl_weight > 0``. max_grad_norm: the config's.

    Returns:
        `(phi, exp_avg, exp_avg_sq, kl)`: the new rows and moments, and the per-sample KL
        ``(B,)`` of the rows *before* the step.
    """
    logq = torch.log_softmax(phi, dim=-1)
    q = logq.exp()
    diff = logq - prior_logp
    kl_rows = (q * diff).sum(-1)  # (N,)
    kl = torch.zeros(B, dtype=phi.dtype, device=phi.device).index_add(0, batch_idx, kl_rows)
    if use_kl:
        grad = grad + scalars[2] * q * (diff - kl_rows.unsqueeze(-1))
    if max_grad_norm is not None:
        sq = torch.zeros(B, dtype=phi.dtype, device=phi.device)
        norm = sq.index_add(0, batch_idx, grad.pow(2).sum(-1)).sqrt()  # (B,)
        scale = (max_grad_norm / (norm + 1e-12)).clamp(max=1.0)
        grad = grad * scale[batch_idx].unsqueeze(-1)
    grad = grad.masked_fill(vmask, 0.0)
    beta1, beta2 = ADAM_BETAS
    exp_avg = exp_avg.lerp(grad, 1.0 - beta1)
    exp_avg_sq = exp_avg_sq * beta2 + (1.0 - beta2) * grad * grad
    denom = exp_avg_sq.sqrt() / scalars[1] + ADAM_EPS
    phi = phi - scalars[0] * exp_avg / denom
    return phi, exp_avg, exp_avg_sq, kl


def _softmax_vjp(grad: Tensor, probs: Tensor) -> Tensor:
    """J(p)ᵀ g = p ⊙ (g − ⟨g, p⟩)."""
    return probs * (grad - (grad * probs).sum(-1, keepdim=True))


def _chain(theta: Tensor, noise: Tensor, sched: Schedule) -> tuple[list[Tensor], Tensor]:
    """ReDGE's DDIM chain from ``noise`` at index n-1: the denoiser outputs p_{n-1}, ..., p_2
    and the soft output p_1 (out of place: inductor's CPU code generation rejects the in-place
    version of ``redge_guidance.estimators.diffusion``)."""
    kept, x = [], noise
    for k in range(sched.n_steps - 1, 1, -1):
        p = torch.softmax(theta + sched.c[k] * x, dim=-1)
        kept.append(p)
        x = sched.B[k] * x + sched.A[k] * p
    return kept, torch.softmax(theta + sched.c[1] * x, dim=-1)


def chain_sample(theta: Tensor, noise: Tensor | None, uniforms: Tensor, sched: Schedule) -> Tensor:
    """ReDGE's draw: the ids ``(...)`` sampled from the chain's soft output at ``theta`` (compute
    dtype, ``(..., K)``), started from ``noise`` (None: straight-through), with ``uniforms``."""
    soft = torch.softmax(theta, dim=-1) if noise is None else _chain(theta, noise, sched)[1]
    return sample_from_probs(soft, uniforms)


def chain_grad(
    theta: Tensor,
    noise: Tensor | None,
    index: Tensor,
    grad_hard: Tensor,
    sched: Schedule,
    reinmax_last: bool,
) -> Tensor:
    """The gradient with respect to ``theta`` of ``⟨grad_hard, hard⟩`` for ReDGE (the chain's
    pathwise derivative) or ReinDGE (ReinMax's direct term on the last step), as the estimators'
    autograd Function computes it; summed over the leading axis of relaxed draws:
    ``(S, N, K) -> (N, K)``."""
    if noise is None:
        kept, p1 = [], torch.softmax(theta, dim=-1)
    else:
        kept, p1 = _chain(theta, noise, sched)
    g = grad_hard.to(theta.dtype)
    u = _softmax_vjp(g, p1)  # J(p1) g: direct term and start of the path term
    grad = u
    if reinmax_last:  # ½ (J(p1) g + ⟨g, D − p1⟩ (D − p1)), D = one_hot(index)
        idx = index.unsqueeze(-1)
        dot = g.gather(-1, idx) - (g * p1).sum(-1, keepdim=True)
        grad = (0.5 * u - 0.5 * p1 * dot).scatter_add(-1, idx, 0.5 * dot)
    if kept:  # reverse the moves x_{k-1} = A_k p_k + B_k x_k, p_k = softmax(θ + c_k x_k)
        dx = sched.c[1] * u  # ∂/∂x_1
        for k in range(2, sched.n_steps):
            v = _softmax_vjp(dx, kept[sched.n_steps - 1 - k])  # J(p_k) dx
            grad = grad + sched.A[k] * v
            if k < sched.n_steps - 1:  # x_{n-1} is the noise: no θ beyond it
                dx = sched.B[k] * dx + (sched.A[k] * sched.c[k]) * v
    return grad.sum(0)


@functools.cache
def compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``torch.compile(fn, fullgraph=True)``, built once per function (the compiled code is shared
    by every hook; its guards tell configurations apart)."""
    return torch.compile(fn, fullgraph=True)
