"""Reused full-size temporaries for loops that allocate the same tensors at every iteration
(the guidance inner loop): :class:`BufferPool`, and the out-of-place kernels written into one."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["BufferPool", "take_like", "softmax_into", "rows_to_front"]


class BufferPool:
    """Tensors of one size handed out again once given back: a loop that allocates the same
    temporaries at every iteration keeps them instead (on CPU a fresh large tensor costs page
    faults on first touch, often more than the operation that fills it)."""

    def __init__(self, limit: int = 8) -> None:
        self.free: list[Tensor] = []
        self.limit = limit  # tensors kept at most; more given back are simply dropped

    def take(self, shape: torch.Size, dtype: torch.dtype, device: torch.device) -> Tensor:
        """An uninitialised tensor of `shape` (a given-back one when the size matches)."""
        numel = math.prod(shape)
        for i, t in enumerate(self.free):
            if t.numel() == numel and t.dtype == dtype and t.device == device:
                return self.free.pop(i).view(shape)
        return torch.empty(shape, dtype=dtype, device=device)

    def give(self, *tensors: Tensor) -> None:
        """Hand back tensors nobody reads any more (any tensor: the pool adopts it). Only a
        contiguous tensor that spans its whole storage is kept: a view into a larger one would
        hold all of it."""
        for t in tensors:
            whole = t.untyped_storage().nbytes() == t.numel() * t.element_size()
            if whole and t.is_contiguous() and len(self.free) < self.limit:
                self.free.append(t.view(-1))

    def clear(self) -> None:
        """Drop the free tensors (they are freed once nothing else holds them)."""
        self.free.clear()


def take_like(pool: BufferPool | None, t: Tensor) -> Tensor | None:
    """A buffer shaped like `t` from `pool`, or None (the kernel then allocates) without one."""
    return None if pool is None else pool.take(t.shape, t.dtype, t.device)


def softmax_into(h: Tensor, out: Tensor | None) -> Tensor:
    """``torch.softmax(h, -1)`` (the same kernel), written into `out` when given."""
    if out is None:
        return torch.softmax(h, dim=-1)
    return torch.ops.aten._softmax.out(h, -1, False, out=out)


def rows_to_front(
    flat: Tensor, rows: Tensor, positions: list[int], block_entries: int = 1 << 20
) -> Tensor:
    """Move rows ``positions`` (ascending; `rows`: the same ids as a tensor) of `flat` (R, C) to
    its first ``len(positions)`` rows, in order, in place, and return those: no copy of them
    beside `flat`. Row i comes from row ``positions[i] >= i``, so a block's sources are never an
    earlier block's destinations; each block of about `block_entries` entries is gathered
    before it is written, and blocks already in place are skipped."""
    n = len(positions)
    block = max(1, block_entries // flat.shape[1])
    for start in range(0, n, block):
        stop = min(start + block, n)
        if positions[start] != start or positions[stop - 1] != stop - 1:
            flat[start:stop] = flat.index_select(0, rows[start:stop])
    return flat[:n]
