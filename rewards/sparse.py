"""`SparseRows`: relaxed one-hots given as `k` weighted vocabulary entries per position.

When guidance optimises only the model's top-k tokens per position, the relaxed sample has at
most `k` non-zero entries per row. `SparseRows(index, weight, vocab_size)` stands for the dense

    x[b, l, v] = sum_j weight[b, l, j] * (index[b, l, j] == v)

of shape `(B, L, V)` without building it: a reward with a sparse path reads `B * L * k` entries
instead of `B * L * V`, and its gradient with respect to `weight` has the same `B * L * k` size.
Repeated indices are summed (the formula above); `argmax_ids` and `to_dense` agree on that.

Construction runs only O(1) checks (types, shapes, dtypes): the guidance loop builds one per
inner step. `Reward.validate` checks the content (indices in range, weights on the simplex).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["SparseRows"]


@dataclass(frozen=True, eq=False)  # tensors: compare by identity, not elementwise
class SparseRows:
    r"""`x` as `k` weighted vocabulary entries per position (see the module docstring).

    Every `Reward` accepts it in place of a dense `x`; rewards with a sparse path
    (`reward.supports_sparse`) never build the `(B, L, V)` tensor.

    Attributes:
        index (`torch.LongTensor` of shape `(B, L, k)`): vocabulary ids in `[0, vocab_size)`.
            Entries may repeat (the guidance hook pads short supports with weight-0 repeats);
            repeated entries are summed.
        weight (`torch.Tensor` of shape `(B, L, k)`, floating): the weight of each entry, each
            row on the probability simplex; may carry an autograd graph.
        vocab_size (`int`): `V`, the size of the vocabulary the ids index.

    Example:

    ```python
    >>> import torch
    >>> from rewards import SparseRows
    >>> x = SparseRows(torch.tensor([[[2, 0]]]), torch.tensor([[[0.75, 0.25]]]), vocab_size=4)
    >>> x.to_dense()
    tensor([[[0.2500, 0.0000, 0.7500, 0.0000]]])
    >>> x.shape, x.argmax_ids()
    ((1, 1, 4), tensor([[2]]))

    ```
    """

    index: Tensor
    weight: Tensor
    vocab_size: int

    def __post_init__(self) -> None:
        index, weight, V = self.index, self.weight, self.vocab_size
        if not isinstance(V, int) or isinstance(V, bool) or V < 1:
            raise ValueError(
                f"SparseRows `vocab_size` must be a positive int (the vocabulary the ids index), "
                f"got {V!r}."
            )
        if not isinstance(index, Tensor) or index.dtype != torch.long:
            what = index.dtype if isinstance(index, Tensor) else type(index).__name__
            raise ValueError(
                f"SparseRows `index` must be a torch.LongTensor of shape (B, L, k), got {what}. "
                "Convert it with `.long()`."
            )
        if not isinstance(weight, Tensor) or not weight.is_floating_point():
            what = weight.dtype if isinstance(weight, Tensor) else type(weight).__name__
            raise ValueError(
                f"SparseRows `weight` must be a floating-point tensor of shape (B, L, k), got "
                f"{what}. Pass probabilities, e.g. `logits.gather(-1, index).softmax(-1)`."
            )
        if index.ndim != 3 or weight.shape != index.shape or index.shape[-1] < 1:
            raise ValueError(
                f"SparseRows `index` and `weight` must have the same shape (B, L, k) with k >= 1, "
                f"got index {tuple(index.shape)} and weight {tuple(weight.shape)}. Pass one "
                "weight per index, e.g. `torch.topk(logits, k)` gives both."
            )
        if index.device != weight.device:
            raise ValueError(
                f"SparseRows `index` ({index.device}) and `weight` ({weight.device}) must be on "
                "the same device. Move one with `.to(other.device)`."
            )

    @property
    def shape(self) -> tuple[int, int, int]:
        """`(B, L, V)`: the shape of the dense tensor, so shape-based code keeps working."""
        B, L, _ = self.index.shape
        return (B, L, self.vocab_size)

    @property
    def ndim(self) -> int:
        """3, as for the dense `(B, L, V)` tensor."""
        return 3

    @property
    def k(self) -> int:
        """Entries per position."""
        return self.index.shape[-1]

    @property
    def device(self) -> torch.device:
        return self.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of `weight` (what a dense `x` would have)."""
        return self.weight.dtype

    def is_floating_point(self) -> bool:
        """True, as for a dense relaxed `x` (`weight` is floating point by construction)."""
        return True

    def to_dense(self) -> Tensor:
        r"""The dense `x` of shape `(B, L, V)` in `weight`'s dtype, differentiable in `weight`.

        Costs a full `(B, L, V)` tensor: for rewards without a sparse path, and for tests.
        """
        B, L, V = self.shape
        return self.weight.new_zeros(B, L, V).scatter_add(-1, self.index, self.weight)

    def argmax_ids(self) -> Tensor:
        r"""`(B, L)` long: the id of the heaviest entry of each row, equal to
        `to_dense().argmax(-1)`.

        Repeated ids are summed before the comparison and ties go to the smallest id (as
        `torch.argmax` picks the first maximum). Costs `B * L * k^2` comparisons, no gradient.
        """
        with torch.no_grad():
            idx, w = self.index, self.weight
            same = idx[..., :, None] == idx[..., None, :]  # (B, L, k, k)
            total = (same.to(w.dtype) @ w[..., None])[..., 0]  # (B, L, k) summed over repeats
            best = total.amax(-1, keepdim=True)  # (B, L, 1)
            return torch.where(total == best, idx, self.vocab_size).amin(-1)

    def detach(self) -> SparseRows:
        """The same rows with `weight` detached."""
        return SparseRows(self.index, self.weight.detach(), self.vocab_size)

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> SparseRows:
        """Move both tensors to `device`; cast `weight` to `dtype` (differentiably)."""
        return SparseRows(
            self.index.to(device), self.weight.to(device=device, dtype=dtype), self.vocab_size
        )

    def __repr__(self) -> str:
        B, L, V = self.shape
        return (
            f"SparseRows(B={B}, L={L}, k={self.k}, vocab_size={V}, dtype={self.dtype}, "
            f"device={self.device})"
        )
