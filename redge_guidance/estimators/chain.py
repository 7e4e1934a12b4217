"""ReDGE's DDIM chain and its gradient, the pieces the estimators and the guidance loop share.

:class:`Schedule` is the time grid. :func:`_chain` runs the chain from Gaussian noise to the soft
sample with the exact denoiser ``softmax(θ + c_k x_k)``; :func:`chain_vjp` pulls a gradient back
through it from its outputs. The estimators (:mod:`.diffusion`) save only the logits and the
noise's generator state (:class:`_NoiseReplay`) and rerun the chain in backward; the guidance
loop, which takes the gradient right after the reward, runs it once with :func:`chain_forward`
and keeps its outputs, or beyond four steps on large logits recomputes them
(:class:`_ReplayedOutputs`), so that its memory does not grow with ``n_steps``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .buffers import BufferPool, softmax_into, take_like
from .sampling import sample_from_probs

__all__ = ["Schedule", "chain_forward", "chain_vjp"]

# Last grid point of the reference implementation: alpha at t ~ 1 (almost pure noise).
ALPHA_END = 1e-4


@dataclass(frozen=True)
class Schedule:
    """Flow-matching time grid of ReDGE, index 0 clean.

    ``alphas = [1, linspace(1 - t_1, 1e-4, n_steps - 1)]``, ``sigmas = 1 - alphas``. Per index
    k >= 1: ``c[k] = α_k / σ_k²`` (denoiser weight), and the DDIM move k -> k-1 is
    ``x_{k-1} = A[k] x̂0 + B[k] x_k`` with ``A[k] = α_{k-1} - σ_{k-1} α_k / σ_k``,
    ``B[k] = σ_{k-1} / σ_k``.
    """

    n_steps: int
    t_1: float
    alphas: tuple[float, ...] = field(init=False)
    sigmas: tuple[float, ...] = field(init=False)
    c: tuple[float, ...] = field(init=False)
    A: tuple[float, ...] = field(init=False)
    B: tuple[float, ...] = field(init=False)

    def __post_init__(self) -> None:
        n, a1 = self.n_steps, 1.0 - self.t_1
        if n == 2:
            tail = [a1]
        else:
            tail = [a1 + (ALPHA_END - a1) * i / (n - 2) for i in range(n - 1)]
        alphas = (1.0, *tail)
        sigmas = tuple(1.0 - a for a in alphas)
        c = (0.0, *(alphas[k] / sigmas[k] ** 2 for k in range(1, n)))
        A = (
            0.0,
            0.0,
            *(alphas[k - 1] - sigmas[k - 1] * alphas[k] / sigmas[k] for k in range(2, n)),
        )
        B = (0.0, 0.0, *(sigmas[k - 1] / sigmas[k] for k in range(2, n)))
        for name, value in (("alphas", alphas), ("sigmas", sigmas), ("c", c), ("A", A), ("B", B)):
            object.__setattr__(self, name, value)

    @property
    def is_straight_through(self) -> bool:
        """t_1 = 1: α_1 = 0, so soft = softmax(θ) whatever the chain did (no noise is drawn)."""
        return self.alphas[1] == 0.0


# ----------------------------------------------------------------------------- noise replay


def _default_generator(device: torch.device) -> torch.Generator | None:
    if device.type == "cpu":
        return torch.default_generator
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.cuda.default_generators[index]
    return None


class _NoiseReplay:
    """Reproduces a standard normal draw bit for bit from the generator state taken just before
    it (or keeps the tensor on devices without a known default generator)."""

    def __init__(self, shape: torch.Size, dtype: torch.dtype, device: torch.device) -> None:
        self.shape, self.dtype, self.device = shape, dtype, device
        self.state: Tensor | None = None
        self.kept: Tensor | None = None

    @classmethod
    def draw(
        cls,
        shape: torch.Size,
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator | None,
        replayable: bool,
        out: Tensor | None = None,
    ) -> tuple[_NoiseReplay | None, Tensor]:
        """Draw N(0, I) of `shape` (into `out` when given); also return a replay record when
        `replayable`."""
        if not replayable:
            return None, torch.randn(
                shape, generator=generator, dtype=dtype, device=device, out=out
            )
        replay = cls(shape, dtype, device)
        source = generator if generator is not None else _default_generator(device)
        if source is not None:
            replay.state = source.get_state()
        z = torch.randn(shape, generator=generator, dtype=dtype, device=device, out=out)
        if source is None:
            replay.kept = z.clone()
        return replay, z

    def again(self, out: Tensor | None = None) -> Tensor:
        """The same noise, as a fresh tensor the caller may overwrite (`out` when given)."""
        if self.kept is not None:
            return self.kept.clone() if out is None else out.copy_(self.kept)
        g = torch.Generator(device=self.device)
        g.set_state(self.state)
        return torch.randn(self.shape, generator=g, dtype=self.dtype, device=self.device, out=out)


# Devices whose softmax kernel may write over its input (checked bit for bit against the
# out-of-place kernel): each row's maximum and sum are complete before it is written, and each
# entry is read before it is written.
_SOFTMAX_IN_PLACE = frozenset({"cpu"})


def _chain(
    theta: Tensor,
    x: Tensor,
    sched: Schedule,
    keep: list[Tensor] | None,
    pool: BufferPool | None = None,
    until: int = 1,
) -> Tensor:
    """Run the DDIM chain from x (overwritten) at index n-1 to the soft output at index 1, or
    with ``until = k > 1`` only down to the denoiser output p_k, which it returns.

    `keep`, when given, receives the intermediate denoiser outputs p_{n-1}, ..., p_2. With a
    `pool` (the same values bit for bit): on devices whose softmax may write over its input,
    each p_k is computed in the buffer of its own input and the soft output in x's, so that
    the chain holds no scratch tensor at all, only its n - 1 outputs; elsewhere the
    temporaries come from the pool.
    """
    in_place = pool is not None and x.device.type in _SOFTMAX_IN_PLACE
    tmp = None if in_place else take_like(pool, x)
    for k in range(sched.n_steps - 1, 1, -1):
        h = torch.add(theta, x, alpha=sched.c[k], out=take_like(pool, x) if in_place else tmp)
        p = softmax_into(h, h if in_place else take_like(pool, x))
        if k == until:
            if pool is not None and tmp is not None:
                pool.give(tmp)
            return p
        if keep is not None:
            keep.append(p)
        elif pool is not None:
            pool.give(p)  # read once more below, before the next take
        x = x.mul_(sched.B[k]).add_(p, alpha=sched.A[k])
    if pool is None:
        return torch.softmax(torch.add(theta, x, alpha=sched.c[1]), dim=-1)
    h = torch.add(theta, x, alpha=sched.c[1], out=x)  # x is not read again
    return softmax_into(h, h if in_place else tmp)


# Devices whose softmax-backward kernel may write over its `grad` or `probs` input (checked bit for
# bit against the out-of-place kernel): each row's dot product is complete before it is written.
_VJP_IN_PLACE = frozenset({"cpu"})


def _softmax_vjp(grad: Tensor, probs: Tensor, out: Tensor | None = None) -> Tensor:
    """J(p)ᵀ g = p ⊙ (g - ⟨g, p⟩), the same kernel autograd uses for softmax (into `out`)."""
    if out is None:
        return torch._softmax_backward_data(grad, probs, -1, probs.dtype)
    return torch.ops.aten._softmax_backward_data.out(grad, probs, -1, probs.dtype, grad_input=out)


def chain_forward(
    theta: Tensor,
    uniforms: Tensor,
    sched: Schedule,
    generator: torch.Generator | None,
    pool: BufferPool | None = None,
) -> tuple[Tensor, list[Tensor]]:
    """ReDGE's forward keeping what its gradient needs: for callers that take the gradient right
    after (the guidance loop), so the backward neither redraws the noise nor reruns the chain.

    Same draws and the same values bit for bit as the estimators' forward; keeps
    ``n_steps - 1`` tensors of the logits' size instead of none, or with a `pool`,
    ``n_steps > 4`` and at least 2**24 entries one (the soft sample; the others are recomputed
    in :func:`chain_vjp` from the noise drawn again).

    Args:
        theta (`torch.Tensor` of shape `(..., V)`): the logits in the compute dtype (float32 or
            float64), no gradient.
        uniforms (`torch.Tensor` of shape `(...)`): the float64 row uniforms, drawn before.
        sched (`Schedule`): the time grid.
        generator (`torch.Generator`, *optional*): source of the chain's noise.
        pool (`BufferPool`, *optional*): where the noise, the temporaries and the outputs are
            taken from (the outputs go back to it in :func:`chain_vjp` with the same pool).

    Returns:
        `(index, outputs)`: the sampled ids and the chain's denoiser outputs
        ``p_{n-1}, ..., p_2, p_1`` (``p_1`` alone at `t_1=1`; ``p_1`` is the soft sample), for
        :func:`chain_vjp`.
    """
    kept: list[Tensor] = []
    if sched.is_straight_through:
        p1 = softmax_into(theta, take_like(pool, theta))
    else:
        replay = (
            pool is not None
            and sched.n_steps > _KEEP_UP_TO
            and theta.numel() >= _REPLAY_FROM_ENTRIES
        )
        noise, z = _NoiseReplay.draw(
            theta.shape, theta.dtype, theta.device, generator, replay, out=take_like(pool, theta)
        )
        if noise is not None:  # the other outputs are recomputed from the noise drawn again
            outputs = _ReplayedOutputs(theta, noise, sched, pool)
            outputs.p1 = _chain(theta, z, sched, keep=None, pool=pool)
            return sample_from_probs(outputs.p1, uniforms), outputs  # type: ignore[return-value]
        p1 = _chain(theta, z, sched, keep=kept, pool=pool)  # overwrites z (or is z)
        if pool is not None and p1.data_ptr() != z.data_ptr():
            pool.give(z)
        del z
    kept.append(p1)
    return sample_from_probs(p1, uniforms), kept


# The most chain steps whose outputs the pooled chain keeps from forward to backward: beyond,
# keeping them (n_steps - 1 tensors of the logits' size) would hold more than recomputing them
# from the noise, drawn again, takes (two tensors besides the gradient), so the peak stays
# that of n_steps = 4 whatever n_steps. Recomputing costs time (the hook 1.6x at n_steps = 6,
# 1.9x at 8, with V = 126,464), so it is done only where memory matters: from 2**24 entries
# (64 MiB in float32; 133 rows of a 126,464-token vocabulary).
_KEEP_UP_TO = 4
_REPLAY_FROM_ENTRIES = 1 << 24


class _ReplayedOutputs:
    """The chain's outputs for :func:`chain_vjp` when ``n_steps > _KEEP_UP_TO``: ``p_1`` as
    computed, then ``p_2, p_3, ..., p_{n-1}`` (the order :func:`chain_vjp` pops them in), each
    recomputed from the noise drawn again from the generator's state before the first draw:
    the same ops on the same values, so the same bits. Between forward and backward the chain
    holds one tensor of the logits' size (``p_1``), and its backward two more, whatever
    ``n_steps``; it costs ``(n_steps - 2)(n_steps - 1) / 2`` more softmaxes and ``n_steps - 2``
    more normal draws."""

    def __init__(self, theta: Tensor, noise: _NoiseReplay, sched: Schedule, pool: BufferPool):
        self.theta, self.noise, self.sched, self.pool = theta, noise, sched, pool
        self.p1: Tensor | None = None
        self.k = 2  # the next output to recompute

    def __len__(self) -> int:
        return (self.p1 is not None) + max(self.sched.n_steps - self.k, 0)

    def pop(self) -> Tensor:
        if self.p1 is not None:
            p1, self.p1 = self.p1, None
            return p1
        k, self.k = self.k, self.k + 1
        x = self.noise.again(out=take_like(self.pool, self.theta))
        p = _chain(self.theta, x, self.sched, keep=None, pool=self.pool, until=k)
        self.pool.give(x)
        return p


def chain_vjp(
    kept: list[Tensor],
    index: Tensor,
    grad_hard: Tensor | None,
    grad_soft: Tensor | None,
    sched: Schedule,
    reinmax_last: bool,
    pool: BufferPool | None = None,
) -> Tensor:
    """The gradient with respect to the logits (compute dtype) of ⟨grad_hard, hard⟩ +
    ⟨grad_soft, soft⟩, from the chain's outputs ``p_{n-1}, ..., p_2, p_1`` (`kept`, emptied as
    they are used, so that each is freed as soon as possible, or given back to `pool`, which
    then also provides the temporaries and the result). With a `pool`, `grad_hard` and
    `grad_soft` are handed over too: given back once read.

    ReDGE: the pathwise derivative of `soft` for both; ReinDGE (`reinmax_last`): for `hard`, the
    path term plus ReinMax's direct term on the last step (see :class:`_ReDGEFunction`).
    """
    p1 = kept.pop()
    cdt = p1.dtype
    # Sum in the input dtype first, as autograd would accumulate the two uses of `soft`.
    if grad_hard is None:
        total = grad_soft
    elif grad_soft is None:
        total = grad_hard
    else:
        total = grad_hard + grad_soft
    in_place = pool is not None and p1.device.type in _VJP_IN_PLACE
    # J(p1) g: direct term and start of the path term (the result: the caller gives it back);
    # written over g itself where it is the caller's and read by nothing else.
    total = total.to(cdt)
    over_g = in_place and total is grad_hard and grad_soft is None and not reinmax_last
    u = _softmax_vjp(total, p1, total if over_g else take_like(pool, p1))
    if over_g:
        grad_hard = None  # it is u now: not given back below
    del total
    if reinmax_last and grad_hard is not None:
        g_h = grad_hard.to(cdt)
        idx = index.unsqueeze(-1)
        # ⟨g, D - p1⟩ with D = one_hot(index)
        dot = g_h.gather(-1, idx) - (g_h * p1).sum(-1, keepdim=True)
        grad = u.sub(_softmax_vjp(g_h, p1), alpha=0.5).sub_(p1 * dot, alpha=0.5)
        grad.scatter_add_(-1, idx, 0.5 * dot)
        del g_h
    else:
        grad = u
    if pool is not None:
        pool.give(p1, *(g for g in (grad_hard, grad_soft) if g is not None))
    del p1, grad_hard, grad_soft
    if kept:
        # Path term: reverse the DDIM moves x_{k-1} = A_k p_k + B_k x_k,
        # p_k = softmax(θ + c_k x_k).
        dx = torch.mul(u, sched.c[1], out=take_like(pool, u))  # ∂/∂x_1
        del u
        for k in range(2, sched.n_steps):
            p_k = kept.pop()  # kept was filled from k = n-1 down to 2
            # J(p_k) dx; ∂/∂θ of this step is A_k v_k (over p_k where the kernel allows it)
            v_k = _softmax_vjp(dx, p_k, p_k if in_place else take_like(pool, dx))
            if pool is not None and not in_place:
                pool.give(p_k)
            del p_k
            grad.add_(v_k, alpha=sched.A[k])
            if k < sched.n_steps - 1:  # x_{n-1} is the noise: no θ beyond it
                dx.mul_(sched.B[k]).add_(v_k, alpha=sched.A[k] * sched.c[k])
            if pool is not None:
                pool.give(v_k)
            del v_k
        if pool is not None:
            pool.give(dx)
    return grad
