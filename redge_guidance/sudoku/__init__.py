"""Sudoku with a masked-diffusion prior: data, token layout, the shipped prior and the solver.

Modules: `data` (puzzles), `layout` (token layout), `prior` (the shipped masked LM and the
digit-only denoiser), `results` (inputs and scored results), `rules` (the rules as tensor
operations), `search` (backtracking search through the prior), `solver` (guided solving).

from redge_guidance.sudoku import SudokuSolver

puzzle = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79"
SudokuSolver.from_pretrained().solve([puzzle]).solution_strings()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

# public name -> module that defines it (imported on first access)
_LAZY = {
    "SudokuSolver": "redge_guidance.sudoku.solver",
    "SudokuResult": "redge_guidance.sudoku.results",
    "DEFAULT_PRIOR_PATH": "redge_guidance.sudoku.prior",
    "default_guidance": "redge_guidance.sudoku.solver",
    "solve_without_prior": "redge_guidance.sudoku.solver",
    "puzzles_to_tensor": "redge_guidance.sudoku.results",
    "Puzzle": "redge_guidance.sudoku.data",
    "PuzzleError": "redge_guidance.sudoku.data",
    "parse_puzzle": "redge_guidance.sudoku.data",
    "parse_puzzle_file": "redge_guidance.sudoku.data",
    "generate_puzzles": "redge_guidance.sudoku.data",
}

__all__ = [
    "DEFAULT_PRIOR_PATH",
    "Puzzle",
    "PuzzleError",
    "SudokuResult",
    "SudokuSolver",
    "default_guidance",
    "generate_puzzles",
    "parse_puzzle",
    "parse_puzzle_file",
    "puzzles_to_tensor",
    "solve_without_prior",
]

if TYPE_CHECKING:  # pragma: no cover
    from .data import Puzzle, PuzzleError, generate_puzzles, parse_puzzle, parse_puzzle_file
    from .prior import DEFAULT_PRIOR_PATH
    from .results import SudokuResult, puzzles_to_tensor
    from .solver import SudokuSolver, default_guidance, solve_without_prior


__getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY, __all__)
