"""The Sudoku solver's defaults, each set once.

`SudokuSolver` and `SudokuSolver.from_pretrained` take their keyword defaults from
:data:`SOLVER`, :func:`~redge_guidance.sudoku.default_guidance` its settings from :data:`GUIDANCE`,
:func:`~redge_guidance.sudoku.solve_without_prior` its own from :data:`NO_PRIOR`, and the flags of
`redge-guidance sudoku` (their help texts included) read all three. The reasons are in the tuning
of docs/sudoku.md. No torch import here: the CLI reads this module while it builds its parser.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

__all__ = ["GUIDANCE", "NO_PRIOR", "SOLVER"]


@dataclass(frozen=True)
class SolverDefaults:
    """The keyword defaults of `SudokuSolver` (the fields are its keywords, same names)."""

    # One prior call each, the dominant cost on a CPU; with guidance 8 and 16 steps did no better
    # (92.2% and 93.8% vs 95.3% on 64 tuning puzzles).
    num_inference_steps: int = 12
    # The most confident cells first (MaskGIT).
    unmasking: Literal["confidence", "random"] = "confidence"
    # ReMDM remasking did not help on the tuning puzzles.
    remask: Literal["none", "cap", "rescale"] | float = "none"
    remask_eta: float = 0.05  # read only by the "cap" and "rescale" remasking
    decode: Literal["argmax", "sample"] = "argmax"
    temperature: float = 1.0  # read only by decode="sample"
    # Full restarts of the grids that still break a rule: 93.0% -> 96.1% on 128 tuning puzzles.
    restarts: int = 4
    # The backtracking search through the prior solved every tuning puzzle.
    search: Literal["backtrack", "none"] = "backtrack"
    # "units": the only pruning that solved every minimal tuning puzzle.
    pruning: Literal["units", "peers"] = "units"
    # No tuning puzzle needed more than 11; 64 is about the cost of the guided pass it hands to.
    max_prior_calls: int = 64
    # Guided search nodes cost more prior calls, not fewer, and 20 inner steps each.
    search_guidance: bool = False
    device: str = "cpu"


@dataclass(frozen=True)
class NoPriorDefaults:
    """The defaults of `solve_without_prior` (the paper's setting without a denoiser)."""

    estimator: str = "straight_through"
    n_steps: int = 2000  # Adam steps on the logits, the reference's count
    lr: float = 0.05  # tied with 0.2 for straight-through on the tuning puzzles


SOLVER = SolverDefaults()
NO_PRIOR = NoPriorDefaults()

#: The `GuidanceConfig` fields of `default_guidance()` (read-only).
GUIDANCE: Mapping[str, Any] = MappingProxyType(
    {
        # Straight-through: as good as the others at 20-100 inner steps here and the cheapest.
        "estimator": "straight_through",
        # 20 inner steps per denoising step: 100 gained nothing on the tuning puzzles.
        "n_opt_steps": 20,
        "lr": 0.1,
        # Lower than the paper's 1: the reward's signal must beat an already good prior's KL.
        "kl_weight": 0.3,
        # 16 relaxed draws per inner step: one draw gave noisy gradients and confident wrong
        # commits (90.6% -> 95-97% solved on the tuning puzzles); draws are cheap next to the prior.
        "num_relaxed_samples": 16,
        # Hand the guided logits to the scheduler, whose confidence order then uses them.
        "handoff": "logits",
        "record_rewards": False,
    }
)
