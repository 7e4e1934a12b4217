"""Draws from logits under the mask-token convention: the mask token is never proposed.

[`suppress_mask_token`] is the one place that sets the mask token's logit to `finfo.min`; the
pipeline applies it to the denoiser's logits, the scheduler to the rows it samples from.
"""

from __future__ import annotations

import torch

__all__ = ["suppress_mask_token"]


def suppress_mask_token(
    logits: torch.Tensor,
    mask_token_id: int,
    *,
    where: torch.BoolTensor | None = None,
    inplace: bool = False,
) -> torch.Tensor:
    r"""
    Set the mask token's logit to `torch.finfo(logits.dtype).min`, so that it gets probability 0
    (a masked diffusion model never proposes the mask as a clean token).

    Args:
        logits (`torch.Tensor` of shape `(..., V)`):
            Floating-point logits over a vocabulary of `V` entries, `mask_token_id < V`.
        mask_token_id (`int`):
            Vocabulary index of the mask token.
        where (`torch.BoolTensor` of shape `logits.shape[:-1]`, *optional*):
            Positions to change; the others keep their mask logit. Default: every position.
        inplace (`bool`, defaults to `False`):
            Write into `logits` (and return it) instead of into a copy.

    Returns:
        `torch.Tensor` of the shape and dtype of `logits`.
    """
    V = logits.shape[-1]  # vocab
    if not 0 <= mask_token_id < V:
        raise ValueError(
            f"`mask_token_id` is {mask_token_id} but the logits have only {V} vocabulary entries. "
            "Use the mask id of the model's tokenizer."
        )
    out = logits if inplace else logits.clone()
    low = torch.finfo(out.dtype).min
    if where is None:
        out[..., mask_token_id] = low
    else:
        out[..., mask_token_id] = out[..., mask_token_id].masked_fill(where, low)
    return out


def masked_rows(logits: torch.Tensor, masked: torch.BoolTensor, mask_token_id: int) -> torch.Tensor:
    """The `(M, V)` rows of `logits` `(B, L, V)` at the `M` positions of `masked` `(B, L)`, in
    row-major order: a copy, half precision read as float32, the mask token suppressed."""
    rows = logits[masked]  # (M, V), a copy
    if rows.dtype in (torch.float16, torch.bfloat16):
        rows = rows.float()
    return suppress_mask_token(rows, mask_token_id, inplace=True)


def uniform(shape, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """U[0, 1) float64 draws on `device`, taken from `generator` on its own device (as diffusers'
    `randn_tensor` does), so a CPU generator also drives a run on an accelerator."""
    source = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=source, dtype=torch.float64).to(device)


def categorical(
    logits: torch.Tensor, temperature: float, generator: torch.Generator | None
) -> torch.LongTensor:
    """One draw per row of `softmax(logits / temperature)` (`logits` `(M, V)`) by inverting the
    float64 CDF with one uniform per row: exact up to float64 rounding, no `(M, V)` noise tensor,
    and entries of probability 0 (the mask token) can never be drawn."""
    weights = logits.to(torch.float64, copy=True)  # (M, V), worked on in place below
    if temperature != 1.0:
        weights /= temperature
    weights -= weights.amax(dim=-1, keepdim=True)
    cdf = weights.exp_().cumsum_(dim=-1)  # unnormalised CDF
    total = cdf[:, -1:]  # (M, 1)
    u = uniform((logits.shape[0], 1), generator, logits.device) * total
    u = torch.minimum(u, torch.nextafter(total, torch.zeros_like(total)))  # keep u < total
    # first index whose cdf exceeds u: the cdf rises there, so its probability is > 0
    return torch.searchsorted(cdf, u, right=True).squeeze(-1)
