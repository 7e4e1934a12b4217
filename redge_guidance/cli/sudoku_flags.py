"""The flags of `redge-guidance sudoku` (its parser; the run is in `sudoku.py`).

The flags that leave a solver option unset default to None, so that the run can tell a given flag
from an absent one; the solver's own defaults fill them in. Those defaults, and the ones the help
texts quote, are read from `redge_guidance.sudoku._defaults`, where each is set once.
"""

from __future__ import annotations

import argparse

from ..sudoku._defaults import GUIDANCE, NO_PRIOR, SOLVER
from .checks import add_run_flags
from .io import int_at_least
from .options import add_guidance_flags
from .search import add_search_flags

__all__ = ["add_sudoku_flags"]

_positive_int = int_at_least(1)
_nonneg_int = int_at_least(0)


def add_sudoku_flags(p: argparse.ArgumentParser) -> None:
    """Every flag of `sudoku`, in the order `--help` lists them."""
    _add_file_args(p)
    _add_sampler_args(p)
    _add_backtrack_args(p)
    _add_machine_args(p)
    add_search_flags(
        p, none_help="the solver's own pass and --restarts", keep_particles=False, ranking=True
    )
    add_run_flags(
        p, quiet_help="no progress bar (weight loading included), only errors and summary"
    )


def _add_file_args(p: argparse.ArgumentParser) -> None:
    """The puzzles file, the output file and the run's seed."""
    p.add_argument("puzzles", help="file with one 81-character puzzle per line ('0' or '.' blanks)")
    p.add_argument(
        "--output", required=True, metavar="FILE", help="where to write one line per input line"
    )
    p.add_argument("--resume", action="store_true", help="keep the lines already in --output")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    p.add_argument(
        "--seed", type=int, default=0, metavar="N", help="seed of the whole run (default 0)"
    )


def _add_sampler_args(p: argparse.ArgumentParser) -> None:
    """The denoising pass: steps, guidance, restarts, which cells each step fills and how."""
    p.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        metavar="N",
        help=f"denoising steps (prior calls); default {SOLVER.num_inference_steps} (ignored with "
        "--no-prior)",
    )
    add_guidance_flags(
        p,
        only=("estimator", "n_opt_steps"),
        defaults=GUIDANCE,
        helps={
            "n_opt_steps": "Adam steps of the guidance per denoising step (default "
            f"{GUIDANCE['n_opt_steps']}; 0 = the prior alone), or in total with --no-prior "
            f"(default {NO_PRIOR.n_steps})"
        },
    )
    p.add_argument(
        "--restarts",
        type=_nonneg_int,
        default=None,
        metavar="N",
        help="re-solve grids that still break a rule up to this many times (default "
        f"{SOLVER.restarts}; 0 = one pass; ignored with --no-prior)",
    )
    p.add_argument(
        "--unmasking",
        choices=("confidence", "random"),
        default=SOLVER.unmasking,
        help="which blank cells each step fills: "
        + _choices_text(
            {"confidence": "the most confident first", "random": "at random"}, "unmasking"
        ),
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=0.0,
        metavar="X",
        help="sampling temperature of each cell's digit (default 0 = argmax, the solver's)",
    )


def _choices_text(words: dict[str, str], option: str) -> str:
    """`words`' values joined by "or", the solver's default for `option` marked "(default)"."""
    default = getattr(SOLVER, option)
    return " or ".join(w + (" (default)" if c == default else "") for c, w in words.items())


def _add_backtrack_args(p: argparse.ArgumentParser) -> None:
    """The backtracking search through the prior, and `--no-prior` (which has none)."""
    p.add_argument(
        "--backtrack",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="search through the prior first, backtracking at dead ends"
        + (" (default)" if SOLVER.search == "backtrack" else "")
        + "; the negated flag runs the denoising passes alone",
    )
    p.add_argument(
        "--pruning",
        choices=("units", "peers"),
        default=None,
        help="rules the backtracking search applies: "
        + _choices_text({"units": "'units'", "peers": "'peers'"}, "pruning"),
    )
    p.add_argument(
        "--max-prior-calls",
        type=_positive_int,
        default=None,
        metavar="N",
        help="prior calls per puzzle before the search hands it to the denoising pass (default "
        f"{SOLVER.max_prior_calls})",
    )
    p.add_argument("--no-prior", action="store_true", help="optimise the logits directly, no prior")


def _add_machine_args(p: argparse.ArgumentParser) -> None:
    """Batch size, CPU threads and device."""
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        default=256,
        metavar="N",
        help="puzzles per batch (default 256)",
    )
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        metavar="N",
        help="torch CPU threads (default 1)",
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu (default), cuda, cuda:1, mps or auto (cuda if available)",
    )
