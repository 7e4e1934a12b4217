"""Sudoku inputs and results: puzzles validated into a digit tensor, solved grids scored."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .data import Puzzle, PuzzleError, parse_puzzle

__all__ = ["SudokuResult", "puzzles_to_tensor", "score_grids"]


def puzzles_to_tensor(
    puzzles: Sequence[str | Sequence[int] | Puzzle] | torch.Tensor,
) -> torch.Tensor:
    """Validate puzzles and stack them into a `(B, 81)` int64 tensor of digits (0 = blank).

    Args:
        puzzles (`list[str | list[int] | Puzzle]` or `torch.Tensor` of shape `(B, 81)`):
            81-character strings (`0` or `.` for blanks), lists of 81 digits, parsed
            :class:`Puzzle` objects, or an integer tensor.

    Raises:
        `ValueError` (a :class:`PuzzleError` for a bad puzzle) naming the index of the first bad
        puzzle and the reason.
    """
    if isinstance(puzzles, torch.Tensor):
        if puzzles.ndim != 2 or puzzles.shape[1] != 81 or puzzles.is_floating_point():
            raise ValueError(
                f"`puzzles` must be an integer tensor of shape (B, 81), got shape "
                f"{tuple(puzzles.shape)} and dtype {puzzles.dtype}. Use `grids.reshape(-1, 81)`."
            )
        rows: list[Any] = puzzles.long().cpu().tolist()
    elif isinstance(puzzles, (str, bytes)) or not isinstance(puzzles, Sequence):
        raise ValueError(
            f"`puzzles` must be a list of puzzles or a (B, 81) tensor, got "
            f"{type(puzzles).__name__} {str(puzzles)[:90]!r}. Wrap a single puzzle in a list."
        )
    else:
        rows = list(puzzles)
    if not rows:
        raise ValueError("`puzzles` is empty. Pass at least one puzzle.")
    out = torch.empty(len(rows), 81, dtype=torch.long)
    for i, row in enumerate(rows):
        try:
            if isinstance(row, Puzzle):
                cells = list(row.cells)
            elif isinstance(row, str):
                cells = list(parse_puzzle(row).cells)
            else:
                cells = list(row)
                if len(cells) != 81 or not all(
                    isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 9 for d in cells
                ):
                    raise PuzzleError(
                        f"expected 81 integers in 0..9 (0 = blank), got {str(cells)[:90]}"
                    )
                cells = list(parse_puzzle("".join(map(str, cells))).cells)  # clue consistency
        except PuzzleError as err:
            raise PuzzleError(f"`puzzles[{i}]` is not a valid puzzle: {err}.") from None
        except TypeError:
            raise PuzzleError(
                f"`puzzles[{i}]` must be a string, a list of 81 digits or a Puzzle, got "
                f"{type(row).__name__}."
            ) from None
        out[i] = torch.tensor(cells, dtype=torch.long)
    return out


@dataclass
class SudokuResult:
    """What :meth:`SudokuSolver.solve` and :func:`solve_without_prior` return.

    Args:
        puzzles (`torch.LongTensor` of shape `(B, 81)`): the input puzzles, 0 = blank.
        solutions (`torch.LongTensor` of shape `(B, 81)`): the committed grids, digits 1..9 (0 where
            a cell holds no digit, which the digit-only denoiser never produces).
        solved (`list[bool]`): the grid is complete and valid *and* keeps every clue.
        violations (`list[int]`): rule violations per grid (:func:`rewards.sudoku_violations`:
            repeated digits per unit, blanks counted too); 0 for a valid grid.
        consistent (`list[bool]`): the grid keeps every clue of its puzzle.
        rewards (`torch.Tensor` of shape `(B,)`): the Sudoku reward of each grid (0 = valid).
        seconds (`float`): wall time of the whole call.
        num_samples (`int`): candidates drawn per puzzle (the best by reward was kept).
    """

    puzzles: torch.Tensor
    solutions: torch.Tensor
    solved: list[bool]
    violations: list[int]
    consistent: list[bool]
    rewards: torch.Tensor
    seconds: float
    num_samples: int = 1
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def solve_rate(self) -> float:
        """Fraction of puzzles solved."""
        return sum(self.solved) / max(1, len(self.solved))

    @property
    def mean_violations(self) -> float:
        """Mean violations per grid."""
        return sum(self.violations) / max(1, len(self.violations))

    def solution_strings(self) -> list[str]:
        """Each grid as an 81-digit string."""
        return ["".join(str(int(d)) for d in row) for row in self.solutions.tolist()]


def score_grids(
    puzzles: torch.Tensor,
    solutions: torch.Tensor,
    rewards: torch.Tensor,
    seconds: float,
    num_samples: int,
    extras: dict[str, Any] | None = None,
) -> SudokuResult:
    """A :class:`SudokuResult` for `solutions` `(B, 81)` of `puzzles` `(B, 81)`."""
    from rewards import sudoku_violations

    puzzles, solutions = puzzles.cpu(), solutions.cpu()
    viol = sudoku_violations(solutions)
    consistent = ((puzzles == 0) | (puzzles == solutions)).all(dim=1)
    solved = (viol == 0) & consistent
    return SudokuResult(
        puzzles=puzzles,
        solutions=solutions,
        solved=solved.tolist(),
        violations=viol.tolist(),
        consistent=consistent.tolist(),
        rewards=rewards.detach().float().cpu(),
        seconds=seconds,
        num_samples=num_samples,
        extras=extras or {},
    )
