"""The Sudoku rules as tensor operations: legal digits, forced cells, dead ends, propagation.

Pure functions on `(B, 81)` digit grids (row-major, 0 = blank), used by the backtracking search
of :mod:`redge_guidance.sudoku.search`. They are the Sudoku reward at infinite weight: a digit
that breaks a rule given the filled cells has probability 0, whatever the prior says.

Two levels, the ``pruning`` option of :class:`~redge_guidance.sudoku.SudokuSolver`:

- ``"peers"``: a digit already held by a peer (same row, column or box) is illegal; a blank cell
  with one legal digit is forced to it; a blank cell with none is a dead end;
- ``"units"``: also, a unit that lacks digit `d` must hold it in one of its blank cells: the only
  legal place of `d` in a unit is forced to `d`, and a unit with no legal place left for a
  missing digit is a dead end.
"""

from __future__ import annotations

from typing import Literal

import torch

__all__ = [
    "PRUNINGS",
    "clashing_cells",
    "forced_digits",
    "is_dead_end",
    "legal_digits",
    "propagate",
]

#: The levels of rule pruning (see the module docstring).
PRUNINGS = ("peers", "units")


def _unit_matrix() -> torch.Tensor:
    """`(27, 81)` float 0/1: rows 0-8 the grid's rows, 9-17 its columns, 18-26 its boxes."""
    cell = torch.arange(81)
    r, c = cell // 9, cell % 9
    unit_of = torch.stack([r, 9 + c, 18 + 3 * (r // 3) + c // 3])  # (3, 81)
    m = torch.zeros(27, 81)
    m[unit_of, cell.expand(3, 81)] = 1.0
    return m


_UNITS = _unit_matrix()  # (27, 81)
_PEERS = ((_UNITS.T @ _UNITS) > 0) & ~torch.eye(81, dtype=torch.bool)  # (81, 81), self excluded


def _one_hot(grid: torch.Tensor) -> torch.Tensor:
    """`(B, 81)` digits -> `(B, 81, 9)` float one-hots, all zero at blanks."""
    g = grid.long()
    is_digit = (g >= 1) & (g <= 9)
    return torch.nn.functional.one_hot(torch.where(is_digit, g, 0), 10)[..., 1:].float()


def legal_digits(grid: torch.Tensor) -> torch.Tensor:
    """Which digits each cell may hold given the digits of its peers.

    Args:
        grid (`torch.LongTensor` of shape `(B, 81)`): digits 1..9, 0 at blank cells.

    Returns:
        `torch.BoolTensor` of shape `(B, 81, 9)`: entry `d - 1` is True when no peer of the cell
        (same row, column or box, the cell itself excluded) holds digit `d`.
    """
    peers = _PEERS.to(grid.device).float()
    return torch.einsum("ij,bjd->bid", peers, _one_hot(grid)) == 0


def clashing_cells(grid: torch.Tensor) -> torch.Tensor:
    """`(B, 81)` bool: filled cells whose digit a peer also holds (both cells of each clash)."""
    one_hot = _one_hot(grid)  # (B, 81, 9)
    taken = torch.einsum("ij,bjd->bid", _PEERS.to(grid.device).float(), one_hot)
    return (one_hot * taken).sum(dim=-1) > 0


def _candidates(grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`(legal, places)`: `(B, 81, 9)` legal digits of blank cells (False at filled ones) and
    `(B, 27, 9)` how many cells of each unit may take each digit."""
    legal = legal_digits(grid) & (grid == 0).unsqueeze(-1)
    places = torch.einsum("uc,bcd->bud", _UNITS.to(grid.device), legal.float())
    return legal, places


def forced_digits(grid: torch.Tensor, pruning: Literal["peers", "units"] = "units") -> torch.Tensor:
    """`(B, 81)`: the digit the rules force on each blank cell, else 0 (see the module docstring;
    a cell forced to two digits at once gets the smaller, and the grid is then a dead end)."""
    legal, places = _candidates(grid)
    forced = legal & (legal.sum(dim=-1, keepdim=True) == 1)
    if pruning == "units":
        single = torch.einsum("uc,bud->bcd", _UNITS.to(grid.device), (places == 1).float()) > 0
        forced |= legal & single
    return torch.where(forced.any(dim=-1), forced.float().argmax(dim=-1) + 1, 0)


def is_dead_end(grid: torch.Tensor, pruning: Literal["peers", "units"] = "units") -> torch.Tensor:
    """`(B,)` bool: the rules rule out every completion of `grid`: a clash, a blank cell with no
    legal digit, or (``"units"``) a unit missing a digit with no legal cell left for it."""
    legal, places = _candidates(grid)
    dead = clashing_cells(grid).any(dim=1) | ((grid == 0) & ~legal.any(dim=-1)).any(dim=1)
    if pruning == "units":
        present = torch.einsum("uc,bcd->bud", _UNITS.to(grid.device), _one_hot(grid)) > 0
        dead |= (~present & (places == 0)).flatten(1).any(dim=1)
    return dead


def propagate(
    grid: torch.Tensor, free: torch.Tensor, pruning: Literal["peers", "units"] = "units"
) -> torch.Tensor:
    """Fill every blank `free` cell the rules force (:func:`forced_digits`), until none is left.

    No prior call: a forced cell has probability 1 under the pruned law. Two cells forced to the
    same digit in one unit are both filled, so the grid shows the clash (:func:`is_dead_end`).

    Args:
        grid (`torch.LongTensor` of shape `(B, 81)`): digits, 0 at blanks.
        free (`torch.BoolTensor` of shape `(B, 81)`): cells that may be filled.
        pruning (`"peers"` or `"units"`): the level of rules applied.

    Returns:
        `torch.LongTensor` of shape `(B, 81)`, a new tensor.
    """
    grid = grid.clone()
    for _ in range(81):  # each round fills at least one cell
        forced = forced_digits(grid, pruning) * free  # (B, 81)
        forced = forced * ~clashing_cells(grid).any(dim=1, keepdim=True)  # stop at a clash
        if not bool(forced.any()):
            break
        grid = torch.where(forced > 0, forced, grid)
    return grid
