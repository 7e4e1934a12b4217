"""The support of the variational family: the whole vocabulary, or the model's top tokens.

With ``GuidanceConfig(top_k=k)`` (and/or ``top_p``) φ lives only on the ``K`` most likely tokens
of the model's logits at each editable position; every other token stays impossible, in the
inner loop and in what the sampler receives. All tensors of the inner loop are then ``(N, K)``
instead of ``(N, V)``. The KL stays the KL to the *full* prior:
``KL(q ‖ p) = Σ_{v ∈ S} q_v (log q_v − log p_v)`` with ``log p_v = ℓ_v − logsumexp(ℓ)`` over all V
tokens, i.e. ``KL(q ‖ p_S) − log p(S)``, where ``p_S`` is the prior renormalised on ``S``.
"""

from __future__ import annotations

import torch

__all__ = ["Support"]


class Support:
    """Which vocabulary entries each editable row optimises.

    Args:
        index (`torch.Tensor` of shape `(N, K)`, int64, *optional*): the vocabulary ids of each
            row's support, most likely first; None for the whole vocabulary (dense, ``K = V``).
        vocab_size (`int`): V.
    """

    def __init__(self, index: torch.Tensor | None, vocab_size: int) -> None:
        self.index = index
        self.V = vocab_size
        self.K = vocab_size if index is None else index.shape[-1]

    @property
    def dense(self) -> bool:
        return self.index is None

    @classmethod
    def select(
        cls,
        logits: torch.Tensor,
        editable: torch.Tensor,
        top_k: int | None,
        top_p: float | None,
    ) -> tuple[Support, torch.Tensor]:
        """The support of the editable rows of ``logits`` (B, L, V) and their logits on it,
        (N, K) in the input dtype; entries beyond a row's nucleus are set to the dtype's
        minimum (masked). The sparse case never copies a full-vocabulary row: top-k runs on the
        logits in place and only (N, K) values are kept."""
        V = logits.shape[-1]
        if top_p is None and (top_k is None or top_k >= V):
            return cls(None, V), logits[editable]
        k = V if top_k is None else min(top_k, V)
        values, index = logits.topk(k, dim=-1, sorted=True)  # (B, L, k), most likely first
        values, index = values[editable], index[editable]  # (N, k)
        if top_p is not None:
            lse = torch.logsumexp(logits, dim=-1)[editable].float().unsqueeze(-1)  # (N, 1)
            probs = (values.float() - lse).exp()
            before = probs.cumsum(-1) - probs  # mass of the more likely entries
            keep = before < top_p  # the smallest prefix reaching top_p (at least one entry)
            width = max(int(keep.sum(-1).max()), 1)  # one host sync per guided step
            values, index, keep = values[:, :width], index[:, :width], keep[:, :width]
            values = values.masked_fill(~keep, torch.finfo(values.dtype).min)
        return cls(index, V), values

    def gather(self, rows: torch.Tensor) -> torch.Tensor:
        """Full-vocabulary rows (N, V) -> their support entries (N, K)."""
        return rows if self.index is None else rows.gather(-1, self.index)

    def to_vocab(self, k_index: torch.Tensor) -> torch.Tensor:
        """Positions in the support (N,) or (N, m) -> vocabulary ids."""
        if self.index is None:
            return k_index
        if k_index.dim() == 1:
            return self.index.gather(-1, k_index.unsqueeze(-1)).squeeze(-1)
        return self.index.gather(-1, k_index)

    def scatter(self, values: torch.Tensor, fill: float) -> torch.Tensor:
        """Support rows (N, K) -> full-vocabulary rows (N, V), ``fill`` outside the support."""
        if self.index is None:
            return values
        out = values.new_full((values.shape[0], self.V), fill)
        return out.scatter_(-1, self.index, values)


def row_logsumexp(logits: torch.Tensor, rows: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """``logsumexp`` over the vocabulary of the rows selected by ``rows`` (B, L) bool, (N,),
    a few rows at a time: no full-size temporary."""
    flat = logits.reshape(-1, logits.shape[-1])
    index = rows.flatten().nonzero()[:, 0]
    parts = [
        torch.logsumexp(flat[index[i : i + chunk]], dim=-1) for i in range(0, len(index), chunk)
    ]
    return torch.cat(parts) if parts else logits.new_zeros(0)
