"""Weights and resampling of K particles per prompt, in log space, batched over prompts.

Pure functions on tensors. Log-weights are ``(B, K)``; ancestors are ``(B, K)`` indices into the
K particles of the same prompt. Every draw comes from the ``generator`` passed in (on its own
device, as the scheduler draws), in float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["RESAMPLERS", "effective_sample_size", "normalised_weights", "resample"]


def normalised_weights(log_w: torch.Tensor) -> torch.Tensor:
    """``softmax(log_w)`` per prompt, float64, rows sum to 1 (log-sum-exp inside)."""
    return torch.softmax(log_w.double(), dim=-1)


def effective_sample_size(log_w: torch.Tensor) -> torch.Tensor:
    """``(Σ w)² / Σ w²`` per prompt, shape (B,), in [1, K]."""
    w = normalised_weights(log_w)
    return 1.0 / w.pow(2).sum(dim=-1)


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device):
    source = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=source, dtype=torch.float64).to(device)


def _invert(w: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Indices of the points ``u`` (B, M) in [0, 1) under the CDF of the rows of ``w`` (B, K)
    (rows need not be normalised; an all-zero row maps everything to 0)."""
    cdf = w.cumsum(dim=-1)
    total = cdf[:, -1:].clamp_min(torch.finfo(cdf.dtype).tiny)
    idx = torch.searchsorted(cdf / total, u, right=True)
    return idx.clamp_max(w.shape[-1] - 1)


def _multinomial(w: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    B, K = w.shape  # prompts, particles
    return _invert(w, _uniform((B, K), generator, w.device))


def _systematic(w: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    B, K = w.shape
    offsets = torch.arange(K, device=w.device, dtype=torch.float64)
    u = (_uniform((B, 1), generator, w.device) + offsets) / K  # one uniform per prompt
    return _invert(w, u)


def _residual(w: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """``floor(K w_k)`` copies of particle k, the remaining slots drawn multinomially from the
    residuals ``K w_k − floor(K w_k)``."""
    B, K = w.shape
    scaled = w * K
    copies = scaled.floor()
    n_fixed = copies.sum(dim=-1, keepdim=True)  # (B, 1) deterministic slots
    slots = torch.arange(K, device=w.device, dtype=torch.float64).expand(B, K)
    # slot j < n_fixed goes to the particle whose cumulative copy count first exceeds j
    fixed = torch.searchsorted(copies.cumsum(dim=-1), slots.contiguous(), right=True)
    drawn = _invert(scaled - copies, _uniform((B, K), generator, w.device))
    return torch.where(slots < n_fixed, fixed.clamp_max(K - 1), drawn)


#: Resampling schemes: ``scheme(weights (B, K) float64, generator) -> ancestors (B, K)``.
RESAMPLERS: dict[str, Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]] = {
    "multinomial": _multinomial,
    "systematic": _systematic,
    "residual": _residual,
}


def resample(
    log_w: torch.Tensor, scheme: str, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Ancestor indices ``(B, K)`` drawn by ``scheme`` from the normalised weights of ``log_w``.

    Every scheme is unbiased: the expected number of copies of particle k is ``K w_k``.
    """
    if scheme not in RESAMPLERS:
        raise ValueError(f"`scheme` must be one of {list(RESAMPLERS)}, got {scheme!r}.")
    if not isinstance(log_w, torch.Tensor) or log_w.ndim != 2 or not log_w.is_floating_point():
        got = (log_w.dtype, tuple(log_w.shape)) if isinstance(log_w, torch.Tensor) else log_w
        raise ValueError(
            f"`log_w` must be a float tensor of shape (B, K) (log-weights of K particles per "
            f"prompt), got {got!r}. Use `log_w[None]` for a single prompt."
        )
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(
            f"`generator` must be a torch.Generator or None, got {generator!r}. Pass e.g. "
            "`torch.Generator().manual_seed(0)`."
        )
    return RESAMPLERS[scheme](normalised_weights(log_w), generator)


def log_mean_weight(log_w: torch.Tensor) -> torch.Tensor:
    """``log (1/K Σ_k w_k)`` per prompt (B,): the evidence increment at a resampling step."""
    return torch.logsumexp(log_w.double(), dim=-1) - math.log(log_w.shape[-1])
