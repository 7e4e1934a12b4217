"""Sudoku constraint reward on relaxed digit tokens, and a violation counter for hard grids."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .base import Reward
from .sparse import SparseRows

__all__ = ["SudokuReward", "sudoku_violations", "sudoku_unit_matrix"]


def sudoku_unit_matrix() -> Tensor:
    r"""The `(27, 81)` 0/1 membership matrix of the Sudoku units over row-major cells.

    Rows 0-8 are the rows of the grid, 9-17 the columns, 18-26 the 3x3 boxes (row-major).
    """
    cell = torch.arange(81)
    r, c = cell // 9, cell % 9
    unit_of = torch.stack([r, 9 + c, 18 + 3 * (r // 3) + c // 3])  # (3, 81): each cell's units
    m = torch.zeros(27, 81)
    m[unit_of, cell.expand(3, 81)] = 1.0
    return m


def _int_sequence(values: Sequence[int] | Tensor, n: int, arg: str) -> Tensor:
    t = torch.as_tensor(values)
    if t.shape != (n,) or t.is_floating_point() or t.dtype == torch.bool:
        raise ValueError(
            f"SudokuReward `{arg}` must be {n} integers, got shape {tuple(t.shape)} "
            f"({str(values)[:60]})."
        )
    t = t.long()
    if t.unique().numel() != n or int(t.min()) < 0:
        raise ValueError(
            f"SudokuReward `{arg}` must be {n} distinct non-negative ids/positions, got "
            f"{t.tolist()}."
        )
    return t


class SudokuReward(Reward):
    r"""Penalty on repeated digits in the rows, columns and boxes of a relaxed 9x9 grid.

    With `p[b, c, d] = x[b, cell_positions[c], digit_token_ids[d]]` (the soft count of digit
    `d + 1` in cell `c`), the count of digit `d` in unit `u` is `n[b, u, d] = sum_c U[u, c]
    p[b, c, d]` for the fixed `(27, 81)` unit-membership matrix `U`, and

        reward = - sum_{u, d} (n[b, u, d] - 1)^2.

    It is exactly 0 on a solved grid and strictly negative on any one-hot grid with a repeated
    digit, a missing digit or a non-digit cell. One gather and one einsum; the gradient is exact.
    `attention_mask` is accepted for the protocol and ignored: the cells sit at fixed positions.

    Args:
        cell_positions (`Sequence[int]`): the 81 sequence positions of the cells, row-major.
        digit_token_ids (`Sequence[int]`): the token ids of the digits 1..9, in that order.
        vocab_size (`int`): the generator's vocabulary size.
    """

    def __init__(
        self,
        cell_positions: Sequence[int] | Tensor,
        digit_token_ids: Sequence[int] | Tensor,
        vocab_size: int,
    ):
        super().__init__()
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 9:
            raise ValueError(
                f"SudokuReward `vocab_size` must be an int >= 9 (nine digit tokens), got "
                f"{vocab_size!r}."
            )
        pos = _int_sequence(cell_positions, 81, "cell_positions")
        digits = _int_sequence(digit_token_ids, 9, "digit_token_ids")
        if int(digits.max()) >= vocab_size:
            raise ValueError(
                f"SudokuReward `digit_token_ids` must lie in [0, vocab_size={vocab_size}), got "
                f"{digits.tolist()}."
            )
        self.register_buffer("cell_positions", pos, persistent=False)  # (81,)
        self.register_buffer("digit_token_ids", digits, persistent=False)  # (9,)
        self.register_buffer("units", sudoku_unit_matrix(), persistent=False)  # (27, 81)
        self.vocab_size = vocab_size

    def _check_structure(self, x: Tensor, attention_mask: Tensor | None) -> None:
        super()._check_structure(x, attention_mask)
        L = x.shape[1]
        max_pos = int(self.cell_positions.max())
        if max_pos >= L:
            raise ValueError(
                f"SudokuReward reads cells up to position {max_pos} but `x` has length {L} "
                f"(shape {tuple(x.shape)}). Pass the whole sequence, or fix `cell_positions`."
            )

    def forward(self, x: Tensor, *, attention_mask: Tensor | None = None) -> Tensor:
        # Parameter-free: the index buffers follow `x` to its device.
        pos, digits = self.cell_positions.to(x.device), self.digit_token_ids.to(x.device)
        cells = x[:, pos][..., digits].to(torch.promote_types(x.dtype, torch.float32))  # (B, 81, 9)
        return self._score_cells(cells)

    def forward_sparse(self, x: SparseRows, *, attention_mask: Tensor | None = None) -> Tensor:
        # cells[b, c, d] = sum_j weight[b, c, j] * (index[b, c, j] == digit d): slot 9 collects
        # the non-digit entries and is dropped.
        dev = x.device
        pos = self.cell_positions.to(dev)
        slot = torch.full((x.vocab_size,), 9, dtype=torch.long, device=dev)
        slot[self.digit_token_ids.to(dev)] = torch.arange(9, device=dev)
        index, weight = x.index[:, pos], x.weight[:, pos]  # (B, 81, k)
        dtype = torch.promote_types(x.dtype, torch.float32)
        cells = weight.new_zeros(*index.shape[:2], 10, dtype=dtype)
        cells = cells.scatter_add(-1, slot[index], weight.to(dtype))[..., :9]  # (B, 81, 9)
        return self._score_cells(cells)

    def _score_cells(self, cells: Tensor) -> Tensor:
        counts = torch.einsum(
            "uc,bcd->bud", self.units.to(cells.device, cells.dtype), cells
        )  # (B, 27, 9)
        return -((counts - 1.0) ** 2).sum(dim=(1, 2))

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, digit_token_ids={self.digit_token_ids.tolist()}"


def sudoku_violations(grid: Tensor) -> Tensor:
    r"""Count rule violations of hard Sudoku grids: 0 exactly for a complete, valid grid.

    Per unit (row, column, box): `sum_{d=1..9} max(count_d - 1, 0)` plus the number of
    non-digit cells (0 = blank, or anything outside 1..9), so each blank counts once per unit it
    belongs to, like a duplicate.

    Args:
        grid (`torch.LongTensor` of shape `(B, 81)`): digits 1..9 row-major, 0 for blanks.

    Returns:
        `torch.LongTensor` of shape `(B,)`.
    """
    if not isinstance(grid, Tensor) or grid.ndim != 2 or grid.shape[1] != 81:
        shape = tuple(grid.shape) if isinstance(grid, Tensor) else type(grid).__name__
        raise ValueError(
            f"sudoku_violations expects `grid` of shape (B, 81), got {shape}. Use "
            "`grid.reshape(-1, 81)` for (B, 9, 9) grids."
        )
    if grid.is_floating_point() or grid.dtype == torch.bool:
        raise ValueError(
            f"sudoku_violations expects an integer `grid` of digits 1..9, got dtype {grid.dtype}."
        )
    g = grid.long()
    is_digit = (g >= 1) & (g <= 9)
    # Small integer counts are exact in float32 (integer matmul is missing on CUDA).
    one_hot = torch.nn.functional.one_hot(torch.where(is_digit, g, 0), 10)[..., 1:].float()
    units = sudoku_unit_matrix().to(g.device)  # (27, 81)
    counts = torch.einsum("uc,bcd->bud", units, one_hot)  # (B, 27, 9)
    non_digits = torch.einsum("uc,bc->bu", units, (~is_digit).float())  # (B, 27)
    total = (counts - 1).clamp(min=0).sum(dim=(1, 2)) + non_digits.sum(-1)
    return total.round().long()
