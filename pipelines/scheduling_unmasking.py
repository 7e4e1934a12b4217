"""Which positions a [`MaskedDiffusionScheduler`] step commits and remasks: pure functions of the
step's proposals, masks and schedule values (MDLM's random order, MaskGIT / LLaDA's confidence
order, ReMDM remasking).

Under confidence order the positions are ranked by the probability of their proposed token under
*ranking* logits. By default those are the logits the tokens were drawn from; the scheduler's
`ranking="prior"` ranks by other logits (the model's unguided ones when a guidance hook rewrote
the sampler's logits), so that the ranking rule, as a function of the drawn tokens, does not
depend on the guided logits.
"""

from __future__ import annotations

from typing import Any

import torch

from .sampling import uniform as _uniform

__all__ = ["commit_confidence", "commit_random", "proposal_confidence", "remask_sigma"]


def remask_sigma(config: Any, alpha_t: float, alpha_s: float) -> float:
    """ReMDM remasking probability `sigma_t` of a committed token for the step `t -> s`, from the
    scheduler `config`'s `remask` and `remask_eta` (0 with `remask="none"`)."""
    remask = config.remask
    if remask == "none":
        return 0.0
    if not isinstance(remask, str):
        return float(remask) * (1.0 - alpha_s)
    sigma_max = 1.0 if alpha_t <= 0.0 else min(1.0, (1.0 - alpha_s) / alpha_t)
    eta = float(config.remask_eta)
    return min(eta, sigma_max) if remask == "cap" else eta * sigma_max


def proposal_confidence(
    rows: torch.Tensor, pred: torch.LongTensor, masked: torch.BoolTensor
) -> torch.Tensor:
    """`(B, L)` float32: at masked positions the untempered probability of the proposal `pred`
    under `softmax(rows)` (`rows` `(M, V)`, mask-suppressed, one per masked position in row-major
    order); -1 elsewhere, below any probability."""
    confidence = torch.full(pred.shape, -1.0, device=pred.device)  # (B, L)
    if rows.shape[0] > 0:
        row_probs = torch.softmax(rows.float(), dim=-1)  # (M, V)
        confidence[masked] = row_probs.gather(-1, pred[masked].unsqueeze(-1)).squeeze(-1)
    return confidence


def commit_random(
    masked: torch.BoolTensor,
    committed: torch.BoolTensor,
    alpha_t: float,
    alpha_s: float,
    sigma: float,
    last: bool,
    generator: torch.Generator | None,
) -> tuple[torch.BoolTensor, torch.BoolTensor]:
    """`(unmasked, remasked)`, each `(B, L)`, of a random-order step (MDLM; ReMDM when
    `sigma > 0`): each masked position is committed independently of the logits."""
    device = masked.device
    remasked = torch.zeros_like(masked)
    if last:
        unmasked = masked
    else:
        # ReMDM posterior (MDLM when sigma = 0): a masked token is committed with
        # probability (alpha_s - (1 - sigma) alpha_t) / (1 - alpha_t).
        p_unmask = (alpha_s - (1.0 - sigma) * alpha_t) / (1.0 - alpha_t)
        p_unmask = min(max(p_unmask, 0.0), 1.0)
        u = _uniform(masked.shape, generator, device)
        unmasked = masked & (u < p_unmask)
    if sigma > 0.0:
        u = _uniform(masked.shape, generator, device)
        remasked = committed & (u < sigma)
    return unmasked, remasked


def commit_confidence(
    confidence: torch.Tensor,
    masked: torch.BoolTensor,
    committed: torch.BoolTensor,
    fixed_mask: torch.BoolTensor,
    alpha_s: float,
    sigma: float,
    last: bool,
    generator: torch.Generator | None,
) -> tuple[torch.BoolTensor, torch.BoolTensor]:
    """`(unmasked, remasked)`, each `(B, L)`, of a confidence-order step: the `k` masked positions
    of highest `confidence` `(B, L)` (ties to the lower index), `k` leaving
    `round((1 - alpha_s) * n_free)` masks after the step, at least one while masks remain."""
    device = masked.device
    remasked = torch.zeros_like(masked)
    if sigma > 0.0:
        u = _uniform(masked.shape, generator, device)
        remasked = committed & (u < sigma)
    n_masked = masked.sum(dim=-1)  # (B,)
    if last:
        k = n_masked
    else:
        n_free = (~fixed_mask).sum(dim=-1).double()  # (B,) positions generated in this row
        target = torch.round((1.0 - alpha_s) * n_free).long()  # masks left after the step
        k = n_masked + remasked.sum(dim=-1) - target
        k = torch.minimum(torch.maximum(k, n_masked.clamp(max=1)), n_masked)
    ranks = confidence.argsort(dim=-1, descending=True, stable=True).argsort(dim=-1)
    return masked & (ranks < k.unsqueeze(-1)), remasked
