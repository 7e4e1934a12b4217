"""Gradients of the reward term of the inner objective with respect to φ.

Both functions take the :class:`~redge_guidance.guidance.inner.InnerProblem` (which holds the
estimator, the reward, the fixed context and the private generator), the leaf ``phi`` of shape
``(N, K)`` (K = V, or the support's size) and the reward's input buffer ``(S·B, L, V)``, whose
editable rows they overwrite. They return the gradient of ``−mean_s reward`` with respect to
``phi`` and the per-sample mean reward ``(B,)``; the KL term is added by the caller. Gradients are
taken with respect to the reward's *input* only, never its parameters nor the denoiser.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..estimators.base import check_logits, compute_dtype
from ..estimators.buffers import BufferPool
from ..estimators.chain import chain_forward, chain_vjp
from ..estimators.diffusion import ReDGE, ReinDGE
from ..estimators.sampling import draw_row_uniforms, sample_from_probs
from .compiled import chain_grad, chain_sample, compiled

if TYPE_CHECKING:  # pragma: no cover
    from .inner import InnerProblem

__all__ = [
    "choose",
    "pathwise",
    "chain_pathwise",
    "compiled_pathwise",
    "score_function",
    "check_first_scores",
]


def choose(problem: InnerProblem):
    """The gradient of the problem's configuration: score function, the compiled ReDGE /
    ReinDGE path (``compile=True``), ReDGE / ReinDGE's chain kept from forward to backward,
    or pathwise through the estimator."""
    if problem.score_function:
        return score_function
    if isinstance(problem.estimator, (ReDGE, ReinDGE)):
        return compiled_pathwise if problem.config.compile else chain_pathwise
    return pathwise


def pathwise(
    problem: InnerProblem, phi: torch.Tensor, buffer: torch.Tensor, *, check: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pathwise gradient through the relaxation: ``x̃ = estimator(φ).hard`` carries the
    relaxation's gradient; the reward's gradient with respect to its input is pulled back
    through it. ``S`` relaxed draws are batched as ``S·B`` reward inputs."""
    p = problem
    S = p.S
    N, V = phi.shape
    phi_w = phi.to(p.work_dtype)  # bf16 under mixed precision (φ itself is the master copy)
    phi_s = phi_w.unsqueeze(0).expand(S, N, V) if S > 1 else phi_w.unsqueeze(0)
    hard = p.estimator(phi_s, generator=p.generator).hard  # (S, N, V)
    with torch.no_grad():
        p.write_rows(buffer, hard.detach())
    g_hard, reward_b = _reward_gradient(p, buffer, check)
    (grad,) = torch.autograd.grad(hard, phi, grad_outputs=-g_hard.to(hard.dtype))
    p.clock.lap("relaxation")
    return grad, reward_b


def chain_pathwise(
    problem: InnerProblem, phi: torch.Tensor, buffer: torch.Tensor, *, check: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`pathwise` for ReDGE / ReinDGE, bit for bit, without autograd: the chain's softmax
    outputs are kept from the forward to the gradient, so the noise is drawn once and the chain
    runs once per inner step (the estimator, which keeps only the logits for its backward,
    draws the noise again and reruns the chain). Keeps ``n_steps - 1`` tensors of φ's size
    through the reward call, fewer than the gradient itself then allocates."""
    p = problem
    S = p.S
    N, K = phi.shape
    est = p.estimator
    phi_w = phi.detach().to(p.work_dtype)  # what the estimator is called with (S = 1)
    phi_s = phi_w.unsqueeze(0).expand(S, N, K) if S > 1 else phi_w.unsqueeze(0)
    check_logits(phi_s)  # as the estimator's call does
    uniforms = draw_row_uniforms(phi_s, p.generator)  # (S, N), drawn before the noise
    theta = phi_s.to(compute_dtype(p.work_dtype))
    pool = p.workspace  # the chain's buffers, reused from one inner step to the next
    index, outputs = chain_forward(theta, uniforms, est.schedule, p.generator, pool)
    del theta
    with torch.no_grad():
        p.write_draws(buffer, index)
    g_hard, reward_b = _reward_gradient(p, buffer, check, pool)
    # −g: read_rows returns a tensor of our own, negated in place.
    g = g_hard.to(p.work_dtype).neg_()
    del g_hard
    grad = chain_vjp(outputs, index, g, None, est.schedule, est._reinmax_last, pool)  # takes g
    del g
    # What autograd does after the estimator: the S draws' sum, then φ's dtype.
    u = grad
    grad = grad.to(p.work_dtype)
    grad = grad.sum(0) if S > 1 else grad.squeeze(0)
    grad = grad.to(phi.dtype)
    if grad.untyped_storage().data_ptr() != u.untyped_storage().data_ptr():
        pool.give(u)
    p.clock.lap("relaxation")
    return grad, reward_b


def _reward_gradient(
    p: InnerProblem, buffer: torch.Tensor, check: bool, pool: BufferPool | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean reward `(B,)` of the S samples written in `buffer`, and its gradient with
    respect to their rows, `(S, N, K)`. With `pool`, its free buffers are dropped first and the
    gradient's rows are read in place (see `InnerProblem.read_rows`)."""
    # A fresh leaf on the buffer's storage (the previous step's graph is already freed).
    x = buffer.detach().requires_grad_(True)
    if pool is not None:
        # The free buffers go back before the reward makes its (S·B, L, V) gradient, whose
        # editable rows then become the gradient in place: at the peak only φ's state, the
        # context and the chain's outputs are held beside it.
        pool.clear()
    p.clock.lap("relaxation")
    scores = p.reward_call(p.reward_input(x), p.reward_mask, p.S * p.B)
    if check:
        check_first_scores(p, scores, differentiable=True)
    reward_b = scores.view(p.S, p.B).mean(0)  # (B,)
    (g_x,) = torch.autograd.grad(reward_b.sum(), x)
    p.clock.lap("reward")
    return p.read_rows(g_x, consume=pool is not None), reward_b.detach()


def compiled_pathwise(
    problem: InnerProblem, phi: torch.Tensor, buffer: torch.Tensor, *, check: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`pathwise` for ReDGE / ReinDGE with the chain compiled: the same draws from the
    same generator (uniforms first, then the chain's noise), the chain's forward and its
    gradient as two compiled graphs (:mod:`.compiled`), the reward eager in between."""
    p = problem
    S = p.S
    N, K = phi.shape
    est = p.estimator
    sched = est.schedule
    cdt = compute_dtype(p.work_dtype)
    # What the eager estimator computes in: φ rounded to the working dtype, then upcast.
    theta = phi.detach().to(p.work_dtype).to(cdt).unsqueeze(0).expand(S, N, K)
    uniforms = draw_row_uniforms(theta, p.generator)  # (S, N)
    noise = None
    if not sched.is_straight_through:
        noise = torch.randn(theta.shape, generator=p.generator, dtype=cdt, device=theta.device)
    index = compiled(chain_sample)(theta, noise, uniforms, sched)  # (S, N)
    with torch.no_grad():
        p.write_draws(buffer, index)
    g_hard, reward_b = _reward_gradient(p, buffer, check)
    with torch.no_grad():
        grad = compiled(chain_grad)(theta, noise, index, -g_hard, sched, est._reinmax_last)
    p.clock.lap("relaxation")
    return grad.to(p.work_dtype).to(phi.dtype), reward_b


def score_function(
    problem: InnerProblem, phi: torch.Tensor, buffer: torch.Tensor, *, check: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """REINFORCE gradient with a leave-one-out baseline over ``S >= 2`` exact categorical
    draws from softmax φ (inverse-CDF draws in float64: rare tokens are not biased). The reward
    is called without gradient: it may be a black box."""
    p = problem
    S, B = p.S, p.B
    N, V = phi.shape
    logq = torch.log_softmax(phi, dim=-1)  # (N, V)
    with torch.no_grad():
        probs = logq.detach().exp().unsqueeze(0).expand(S, N, V)
        idx = sample_from_probs(probs, draw_row_uniforms(probs, p.generator))  # (S, N)
        draws = torch.zeros(S, N, V, dtype=buffer.dtype, device=buffer.device)
        draws.scatter_(-1, idx.unsqueeze(-1), 1.0)  # (S, N, K) one-hots on the support
        p.write_rows(buffer, draws)
        x = p.reward_input(buffer)
    p.clock.lap("relaxation")
    with torch.no_grad():
        scores = p.reward_call(x, p.reward_mask, S * B)
        if check:
            check_first_scores(p, scores, differentiable=False)
        scores = scores.view(S, B).to(phi.dtype)
    p.clock.lap("reward")
    logq_draws = logq.gather(-1, idx.T)  # (N, S) log q of each draw, per position
    logq_b = torch.zeros(B, S, dtype=phi.dtype, device=phi.device)
    logq_b = logq_b.index_add(0, p.batch_idx, logq_draws).T  # (S, B)
    baseline = (scores.sum(0, keepdim=True) - scores) / (S - 1)  # leave-one-out, (S, B)
    surrogate = ((scores - baseline) * logq_b).mean(0)  # (B,)
    (grad,) = torch.autograd.grad(-surrogate.sum(), phi)
    p.clock.lap("relaxation")
    return grad, scores.mean(0)


def check_first_scores(problem: InnerProblem, scores: torch.Tensor, *, differentiable: bool):
    """Once per generation (a host synchronisation): the reward's scores on relaxed inputs are
    finite and, for the pathwise gradient, carry a gradient."""
    name = problem.reward_name
    if not bool(torch.isfinite(scores).all()):
        raise ValueError(
            f"Reward {name} returned non-finite scores {scores.detach().flatten()[:8].tolist()} "
            "on the first inner step. Check the reward on one-hot inputs."
        )
    if differentiable and not scores.requires_grad:
        raise ValueError(
            f"Reward {name} has `differentiable=True` but its output carries no gradient with "
            "respect to its input. Set `differentiable=False` on the reward (REINFORCE is then "
            "used) or pass `score_function='always'`."
        )
