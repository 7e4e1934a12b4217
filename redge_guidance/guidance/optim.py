"""The optimiser of the inner loop: Adam on φ, eager or compiled, and the per-sample early stop.

Both optimisers split one inner step in two calls around the early-stop test:
``kl = opt.kl(phi, grad)`` adds the KL's gradient to the reward term's and returns the per-sample
KL of the current φ; ``phi = opt.step(phi)`` then moves φ (skipped when every sample has stopped).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from .compiled import ADAM_BETAS, compiled, kl_adam_step
from .config import GuidanceConfig

if TYPE_CHECKING:  # pragma: no cover
    from .inner import InnerProblem

__all__ = ["EagerAdam", "CompiledAdam", "EarlyStop", "make_optimizer"]

# Devices with a fused Adam kernel for float32/float64 parameters.
_FUSED_ADAM = {"cpu": True, "cuda": True}


class EagerAdam:
    """``torch.optim.Adam`` (the fused kernel where there is one) on the leaf ``phi``; the KL's
    gradient in closed form, the per-sample clipping in plain tensor operations."""

    def __init__(self, problem: InnerProblem, phi: torch.Tensor) -> None:
        self.problem = problem
        self.cfg = problem.config
        fused = _FUSED_ADAM.get(phi.device.type, False)
        # The fused kernel: one pass per Adam step instead of about six (CPU and CUDA).
        self.opt = torch.optim.Adam([phi], lr=self.cfg.lr, fused=fused)
        self.grad: torch.Tensor | None = None

    def kl(self, phi: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        kl_b, g_kl = self.problem.kl_and_grad(phi, need_grad=self.cfg.kl_weight > 0)
        if g_kl is not None:
            grad = grad.add_(g_kl, alpha=self.cfg.kl_weight)
            self.problem.workspace.give(g_kl)
        self.grad = grad
        return kl_b

    def step(self, phi: torch.Tensor) -> torch.Tensor:
        p, grad = self.problem, self.grad
        if self.cfg.max_grad_norm is not None:
            norm = p.per_sample(grad.pow(2).sum(-1)).sqrt()  # (B,)
            scale = (self.cfg.max_grad_norm / (norm + 1e-12)).clamp(max=1.0)
            grad = grad * scale[p.batch_idx].unsqueeze(-1)
        if p.any_masked:
            p.zero_masked(grad)
        phi.grad = grad
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.grad = None
        p.workspace.give(grad)  # read by nothing else: the next inner step reuses it
        return phi


class CompiledAdam:
    """The same step as :class:`EagerAdam` (KL, clipping, Adam with torch's defaults) as one
    compiled function, :func:`~redge_guidance.guidance.compiled.kl_adam_step`. ``kl`` computes
    the step; ``step`` adopts it. φ is a fresh tensor after each step (a leaf that requires a
    gradient when the relaxation runs through autograd)."""

    def __init__(self, problem: InnerProblem, phi: torch.Tensor) -> None:
        self.problem = problem
        self.cfg = problem.config
        self.exp_avg = torch.zeros_like(phi, memory_format=torch.contiguous_format)
        self.exp_avg_sq = torch.zeros_like(self.exp_avg)
        self.t = 0
        self.pending: tuple[torch.Tensor, ...] | None = None
        self.fn = compiled(kl_adam_step)

    def kl(self, phi: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        p, cfg = self.problem, self.cfg
        self.t += 1
        beta1, beta2 = ADAM_BETAS
        scalars = torch.tensor(
            [cfg.lr / (1.0 - beta1**self.t), math.sqrt(1.0 - beta2**self.t), cfg.kl_weight],
            dtype=phi.dtype,
            device=phi.device,
        )
        with torch.no_grad():
            out = self.fn(
                phi.detach(),
                grad,
                p.prior_logp,
                p.vmask,
                p.batch_idx,
                self.exp_avg,
                self.exp_avg_sq,
                scalars,
                B=p.B,
                use_kl=cfg.kl_weight > 0,
                max_grad_norm=cfg.max_grad_norm,
            )
        self.pending = out[:3]
        return out[3]

    def step(self, phi: torch.Tensor) -> torch.Tensor:
        new, self.exp_avg, self.exp_avg_sq = self.pending
        self.pending = None
        return new.requires_grad_(phi.requires_grad)


def make_optimizer(problem: InnerProblem, phi: torch.Tensor) -> EagerAdam | CompiledAdam:
    return (CompiledAdam if problem.config.compile else EagerAdam)(problem, phi)


class EarlyStop:
    """Per-sample patience on the inner objective. A stopped sample's φ rows are frozen at the
    value they had when it stopped. Costs one host synchronisation per inner step (the loop's
    exit test), so it exists only when ``patience > 0``."""

    def __init__(self, cfg: GuidanceConfig, B: int, device: torch.device, dtype: Any) -> None:
        self.tol, self.patience = cfg.tol, cfg.patience
        self.best = torch.full((B,), -float("inf"), dtype=dtype, device=device)
        self.stale = torch.zeros(B, dtype=torch.long, device=device)
        self.done = torch.zeros(B, dtype=torch.bool, device=device)
        self.stop_at = torch.full((B,), -1, dtype=torch.long, device=device)
        self.keep: torch.Tensor | None = None

    def update(self, obj: torch.Tensor, phi: torch.Tensor, batch_idx: torch.Tensor, t: int) -> bool:
        """Record step ``t``'s objective; True when every sample has stopped."""
        improved = obj > self.best + self.tol
        self.best = torch.where(improved, obj, self.best)
        self.stale = torch.where(improved, torch.zeros_like(self.stale), self.stale + 1)
        newly = (self.stale >= self.patience) & ~self.done
        if self.keep is None:
            self.keep = phi.detach().clone()
        rows = newly[batch_idx].unsqueeze(-1)
        self.keep = torch.where(rows, phi.detach(), self.keep)
        self.stop_at = torch.where(newly, torch.full_like(self.stop_at, t), self.stop_at)
        self.done = self.done | newly
        return bool(self.done.all())

    def restore(self, phi: torch.Tensor, batch_idx: torch.Tensor) -> None:
        """Put stopped samples' rows back after an Adam step moved them."""
        if self.keep is not None:
            with torch.no_grad():
                phi.copy_(torch.where(self.done[batch_idx].unsqueeze(-1), self.keep, phi))

    def steps_per_sample(self, n_opt_steps: int) -> list[int]:
        return torch.where(self.stop_at >= 0, self.stop_at, n_opt_steps).tolist()
