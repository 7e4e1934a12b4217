"""`redge-guidance sudoku`: solve Sudoku puzzles from a file with the shipped prior and guidance.

    redge-guidance sudoku puzzles.txt --output solutions.txt

Input: one puzzle per line, 81 characters, digits 1-9 for clues and `0` or `.` for blanks. Blank
lines and lines starting with `#` are skipped.

Output: exactly one line per input line, so that `paste puzzles.txt solutions.txt` lines them up:
- a puzzle line -> its 81-digit grid (the solver's answer; the summary says which were not solved);
- a bad puzzle line (wrong length, invalid characters, contradictory clues) -> `# error: REASON`,
  and `line N: REASON` on stderr; the other puzzles still run;
- a blank or `#` comment line -> copied unchanged.

The summary (stderr) gives solved / total, mean violations per grid and the wall time. Exit
status 0 when every puzzle line was valid, 1 when some line was bad (the others were still solved
and written), 2 for a usage error (missing file, bad option).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from .io import UsageError, int_at_least

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "sudoku",
        help="solve Sudoku puzzles from a file (shipped prior + guidance)",
        description=(
            "Solve Sudoku puzzles from a file with the shipped masked-diffusion prior, steered by\n"
            "the constraint reward. Output: one line per input line (the 81-digit grid,\n"
            "'# error: REASON' for a bad line, or the copied blank/comment line). Exit status 1\n"
            "when some puzzle line was bad (the others are still solved), 2 on a usage error."
        ),
    )
    p.add_argument("puzzles", help="file with one 81-character puzzle per line ('0' or '.' blanks)")
    p.add_argument("--output", required=True, help="where to write one 81-digit solution per line")
    p.add_argument("--seed", type=int, default=0, help="seed of the whole run (default 0)")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="denoising steps (prior calls); default 12 (ignored with --no-prior)",
    )
    p.add_argument(
        "--n-opt-steps",
        type=int,
        default=None,
        help="Adam steps of the guidance per denoising step (default 20; 0 = the prior alone), "
        "or in total with --no-prior (default 2000)",
    )
    p.add_argument(
        "--estimator",
        default=None,
        help="relaxation: straight_through (default), gumbel_softmax, reinmax, redge, reindge, "
        "redge_cov",
    )
    p.add_argument(
        "--restarts",
        type=int_at_least(0),
        default=4,
        help="re-solve grids that still break a rule up to this many times (default 4; 0 = one "
        "pass; ignored with --no-prior)",
    )
    p.add_argument("--no-prior", action="store_true", help="optimise the logits directly, no prior")
    p.add_argument(
        "--batch-size", type=int_at_least(1), default=256, help="puzzles per batch (default 256)"
    )
    p.add_argument(
        "--threads", type=int_at_least(1), default=1, help="torch CPU threads (default 1)"
    )
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bar, only errors and summary")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    if not os.path.isfile(args.puzzles):  # before the slow imports
        raise UsageError(f"puzzle file {args.puzzles!r} does not exist; pass a text file path")
    import torch

    from redge_guidance.sudoku.data import Puzzle, parse_puzzle_file
    from redge_guidance.sudoku.solver import SudokuSolver, default_guidance, solve_without_prior

    torch.set_num_threads(args.threads)
    with open(args.puzzles, encoding="utf-8") as fh:
        lines = [line.rstrip("\n") for line in fh]  # the numbering of parse_puzzle_file
    parsed = parse_puzzle_file(args.puzzles)

    out_lines = list(lines)  # blank and comment lines are copied as they are
    good: list[tuple[int, Puzzle]] = []
    n_bad = 0
    for n, item in parsed:
        if isinstance(item, Puzzle):
            good.append((n, item))
        else:
            n_bad += 1
            out_lines[n - 1] = f"# error: {item}"
            print(f"line {n}: {item}", file=sys.stderr)

    start = time.perf_counter()
    solved_lines: list[int] = []
    unsolved_lines: list[int] = []
    mean_viol = 0.0
    if good:
        generator = torch.Generator().manual_seed(args.seed)
        puzzles = [p for _, p in good]
        try:
            if args.no_prior:
                result = solve_without_prior(
                    puzzles,
                    estimator=args.estimator or "straight_through",
                    n_steps=2000 if args.n_opt_steps is None else args.n_opt_steps,
                    generator=generator,
                    batch_size=args.batch_size,
                    device=args.device,
                )
            else:
                n_opt = 20 if args.n_opt_steps is None else args.n_opt_steps
                overrides = {"n_opt_steps": n_opt}
                if args.estimator:
                    overrides["estimator"] = args.estimator
                guidance = default_guidance(**overrides) if n_opt > 0 else None
                solver = SudokuSolver.from_pretrained(
                    guidance=guidance,
                    num_inference_steps=12 if args.steps is None else args.steps,
                    restarts=args.restarts,
                    device=args.device,
                )
                result = solver.solve(
                    puzzles,
                    generator=generator,
                    batch_size=args.batch_size,
                    progress=not args.quiet,
                )
        except ValueError as err:
            raise UsageError(str(err)) from None
        for (n, _), grid, ok in zip(good, result.solution_strings(), result.solved, strict=True):
            out_lines[n - 1] = grid
            (solved_lines if ok else unsolved_lines).append(n)
        mean_viol = result.mean_violations

    Path(args.output).write_text("".join(line + "\n" for line in out_lines), encoding="utf-8")
    seconds = time.perf_counter() - start
    total = len(good)
    summary = (
        f"solved {len(solved_lines)}/{total} puzzles"
        + (f" ({len(solved_lines) / total:.1%})" if total else "")
        + f", {mean_viol:.2f} violations per grid, {seconds:.1f} s"
        + (f"; {n_bad} bad line(s) skipped" if n_bad else "")
    )
    print(summary, file=sys.stderr)
    if unsolved_lines:
        shown = ", ".join(map(str, unsolved_lines[:20])) + (
            " ..." if len(unsolved_lines) > 20 else ""
        )
        print(f"not solved (grid written anyway): line(s) {shown}", file=sys.stderr)
    return 1 if n_bad else 0
