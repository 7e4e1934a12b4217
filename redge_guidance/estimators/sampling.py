"""Exact categorical draws shared by the estimators.

Categorical draws use inverse-CDF sampling with one float64 uniform per row: the uniforms are
drawn before anything that depends on the probabilities, so two estimators that reach the same
probabilities under the same generator draw the same class (this is what makes ReDGE at
`n_steps=2, t_1=1` reproduce Straight-Through sample for sample). Compared with Gumbel-max it
needs one random number per row instead of one per entry, and it has no float32 noise to bias rare
tokens at large vocabularies.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["draw_row_uniforms", "sample_from_probs", "one_hot", "gumbel_noise"]


def draw_row_uniforms(logits: Tensor, generator: torch.Generator | None) -> Tensor:
    """One float64 uniform in [0, 1) per row of `logits` (shape `logits.shape[:-1]`)."""
    return torch.rand(
        logits.shape[:-1], generator=generator, dtype=torch.float64, device=logits.device
    )


def sample_from_probs(probs: Tensor, uniforms: Tensor) -> Tensor:
    """Inverse-CDF draw from the rows of `probs`.

    Rows are cut into blocks of about sqrt(V) entries: the block is chosen from the block sums
    (a fast reduction) and the class inside it from a float64 cumulative sum of that block only, so
    the cost is one pass over `probs` and the exact law is ``probs / probs.sum(-1)`` up to float64
    rounding. Entries with probability 0 are never returned.

    Args:
        probs (`torch.Tensor` of shape `(..., V)`): non-negative, float32 or float64, each row
            with a positive sum.
        uniforms (`torch.Tensor` of shape `(...)`): float64 uniforms in [0, 1).

    Returns:
        `torch.Tensor` of shape `(...)`, int64 class ids.
    """
    V = probs.shape[-1]
    p = probs.detach().reshape(-1, V)  # (R, V) rows
    u = uniforms.reshape(-1, 1)  # (R, 1)
    if p.shape[0] == 0:
        return torch.zeros(probs.shape[:-1], dtype=torch.long, device=probs.device)
    if V <= _SINGLE_BLOCK_MAX:
        return _inverse_cdf(p.cumsum(-1, dtype=torch.float64), u).reshape(probs.shape[:-1])
    b = math.isqrt(V)  # block size
    nb = V // b  # full blocks
    block_sums = p.unfold(-1, b, b).sum(-1)  # (R, nb); unfold is a view, no copy
    if nb * b < V:
        block_sums = torch.cat([block_sums, p[:, nb * b :].sum(-1, keepdim=True)], dim=-1)
    block_sums = block_sums.to(torch.float64)
    block_cdf = block_sums.cumsum(-1)  # (R, n_blocks)
    j = _inverse_cdf(block_cdf, u)  # (R, 1) chosen block, its sum is > 0
    prev = torch.where(j > 0, block_cdf.gather(-1, (j - 1).clamp_min(0)), 0.0)
    cols = j * b + torch.arange(b, device=p.device)  # (R, b)
    vals = p.gather(-1, cols.clamp_max(V - 1)).to(torch.float64)
    if nb * b < V:
        vals = vals.masked_fill_(cols >= V, 0.0)  # the last block is shorter
    within_cdf = vals.cumsum(-1)  # (R, b)
    # Position inside the block, rescaled from the block sum (a float32 reduction) to this
    # block's float64 cumulative sum so the conditional law inside the block is exact.
    frac = (u * block_cdf[:, -1:] - prev) / block_sums.gather(-1, j)
    k = _inverse_cdf(within_cdf, frac.clamp(0.0, 1.0))
    return (j * b + k).reshape(probs.shape[:-1])


# Up to this vocabulary size one float64 cumulative sum over the whole row is the cheapest.
_SINGLE_BLOCK_MAX = 256


def _inverse_cdf(cdf: Tensor, u: Tensor) -> Tensor:
    """First index whose cumulative mass exceeds ``u * total``: (R, n) cdf, (R, 1) u -> (R, 1).

    The target is kept strictly below the total, so the index is always that of a positive entry
    (a zero entry never raises the cumulative sum above a value its predecessor did not)."""
    total = cdf[:, -1:]
    target = torch.minimum(u * total, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, target, right=True)


def one_hot(index: Tensor, num_classes: int, dtype: torch.dtype) -> Tensor:
    """Exact one-hot vectors of shape `(*index.shape, num_classes)` in `dtype`."""
    out = torch.zeros((*index.shape, num_classes), dtype=dtype, device=index.device)
    return out.scatter_(-1, index.unsqueeze(-1), 1)


def gumbel_noise(
    shape: torch.Size, generator: torch.Generator | None, device: torch.device, dtype: torch.dtype
) -> Tensor:
    """Standard Gumbel noise ``-log(E)``, ``E = -log(U)``, with `U` drawn in float64.

    The float64 uniform keeps the exponential's small values (the Gumbel's right tail, which
    decides whether a rare token wins the argmax) resolved; a float32 uniform truncates the
    Gumbel near 16.6 and biases rare tokens at large vocabularies.
    """
    e = torch.rand(shape, generator=generator, dtype=torch.float64, device=device)
    e = e.log_().neg_().to(dtype)  # Exp(1), > 0 because U < 1
    return e.log_().neg_()
