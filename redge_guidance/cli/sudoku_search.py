"""`redge-guidance sudoku --search METHOD`: the Sudoku solver's pieces run through
:func:`redge_guidance.search.search`.

The shipped prior (digit-only denoiser), its pipeline and the constraint reward come from
:class:`~redge_guidance.sudoku.SudokuSolver`; each batch of puzzles is one search call, with
the batch's generator drawn as the plain solver draws it (so `--resume` is unchanged).
Refinement remasks the cells that break a rule (:func:`conflicting_cells`) instead of ranking
positions by confidence.
"""

from __future__ import annotations

import logging
from typing import Any

from .search import SearchSettings

__all__ = ["conflicting_cells", "make_search_solver"]

logger = logging.getLogger("redge_guidance.cli")


def conflicting_cells(sequences: Any, rewards: Any = None) -> Any:
    """The generated cells that break a rule: `(B, 163)` bool, True at a solution cell holding
    no digit or a digit repeated in one of its units (row, column, box). The search keeps clues
    fixed whatever this says. `rewards` is unused (the `remask_fn` signature)."""
    import torch
    import torch.nn.functional as F

    from rewards import sudoku_unit_matrix

    from ..sudoku import layout as sl

    digits = sl.decode_solutions(sequences)  # (B, 81), 0 = no digit
    units = sudoku_unit_matrix().to(sequences.device)  # (27, 81)
    onehot = F.one_hot(digits, 10)[..., 1:].float()  # (B, 81, 9)
    counts = torch.einsum("uc,bcd->bud", units, onehot)  # (B, 27, 9): digit d in unit u
    repeated = (counts > 1).float()
    bad = torch.einsum("uc,bud,bcd->bc", units, repeated, onehot) > 0  # (B, 81)
    out = torch.zeros_like(sequences, dtype=torch.bool)
    out[:, sl.SOLUTION_START :] = bad | (digits == 0)
    return out


class _Spent:
    """Running sums of the searches' `spent`, for the summary line."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.totals: dict[str, float] = {}

    def add(self, spent: Any) -> None:
        for key, value in spent.to_dict().items():
            self.totals[key] = self.totals.get(key, 0.0) + value

    def format(self) -> str:
        t = self.totals
        if not t:
            return f"search {self.method}: nothing run (every batch was already written)"
        return (
            f"search {self.method}: {t['denoiser_forwards']:.0f} denoiser forwards, "
            f"{t['reward_forwards']:.0f} reward forwards ({t['reward_backwards']:.0f} with "
            f"backward), {t['cpu_seconds']:.1f} CPU s"
        )


def make_search_solver(args: Any, guidance: Any, settings: SearchSettings):
    """`(solve, spent)`: `solve(batch, generator)` searches one batch of puzzles and returns a
    :class:`~redge_guidance.sudoku.SudokuResult`; `spent` sums what the searches cost."""
    import time

    import torch

    from ..search import search
    from ..sudoku import layout as sl
    from ..sudoku._defaults import SOLVER
    from ..sudoku.results import puzzles_to_tensor, score_grids
    from ..sudoku.solver import SudokuSolver
    from .sudoku import sampler_options

    logger.info("loading the Sudoku prior")
    steps = SOLVER.num_inference_steps if args.steps is None else args.steps
    solver = SudokuSolver.from_pretrained(
        guidance=guidance,
        num_inference_steps=steps,
        restarts=0,
        **sampler_options(args),
        device=args.resolved_device,
    )
    if getattr(args, "ranking", "proposal") == "prior":  # `--ranking prior`
        from pipelines import MaskedDiffusionScheduler

        config = solver.pipeline.scheduler.config
        solver.pipeline.scheduler = MaskedDiffusionScheduler.from_config(config, ranking="prior")
    remask = conflicting_cells if settings.method == "refine" else None
    spent = _Spent(settings.method)

    def solve(batch: list[Any], generator: Any):
        start = time.perf_counter()
        grid = puzzles_to_tensor(batch)  # (B, 81)
        # The batch's one draw from the run's generator, as `SudokuSolver.solve` makes it.
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        result = search(
            solver.pipeline,
            solver.reward,
            sl.encode_puzzles(grid),
            settings.config,
            guidance=guidance,
            fixed_mask=sl.fixed_positions(grid),
            num_inference_steps=steps,
            budget=settings.budget,
            generator=torch.Generator().manual_seed(seed),
            remask_fn=remask,
        )
        spent.add(result.spent)
        solutions = sl.decode_solutions(result.sequences).cpu()
        return score_grids(grid, solutions, result.rewards, time.perf_counter() - start, 1)

    return solve, spent
