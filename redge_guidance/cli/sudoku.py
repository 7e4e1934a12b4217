"""`redge-guidance sudoku`: solve Sudoku puzzles from a file with the shipped prior and guidance.

    redge-guidance sudoku puzzles.txt --output solutions.txt

Input: one puzzle per line, 81 characters, digits 1-9 for clues and `0` or `.` for blanks. Blank
lines and lines starting with `#` are skipped.

Output: exactly one line per input line, so that `paste puzzles.txt solutions.txt` lines them up:
- a puzzle line -> its 81-digit grid (the solver's answer; the summary says which were not solved);
- a bad puzzle line (wrong length, invalid characters, contradictory clues) -> `# error: REASON`,
  and `line N: REASON` on stderr; the other puzzles still run;
- a blank or `#` comment line -> copied unchanged.

Lines are written as batches finish (the file is created by the first one), so an interrupted run
keeps its finished batches: rerun it with `--resume` to write the rest (batch `k` draws the same
noise either way). The input file, the options and the output path are checked before the prior
loads. The summary (stderr) gives solved / total, mean violations per grid and the wall time. Exit
status 0 when every puzzle line was valid, 1 when some line was bad (the others were still solved
and written) or the run failed, 2 for a usage error (one line, nothing written).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..sudoku._defaults import GUIDANCE, NO_PRIOR, SOLVER
from .checks import check_output_path, has_content, resolve_device
from .io import LineWriter, UsageError, repair_trailing_line
from .options import check_estimator, to_flags
from .search import check_search, search_settings
from .sudoku_flags import add_sudoku_flags

__all__ = ["add_parser", "run"]

logger = logging.getLogger("redge_guidance.cli")

_SOLVER_FLAGS = {
    "num_inference_steps": "--steps",
    "n_steps": "--n-opt-steps",
    "batch_size": "--batch-size",
    "restarts": "--restarts",
    "device": "--device",
}


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "sudoku",
        help="solve Sudoku puzzles from a file (shipped prior + guidance)",
        description=(
            "Solve Sudoku puzzles from a file with the shipped masked-diffusion prior, steered by\n"
            "the constraint reward. Output: one line per input line (the 81-digit grid,\n"
            "'# error: REASON' for a bad line, or the copied blank/comment line), written as\n"
            "batches finish. Exit status 1 when some puzzle line was bad (the others are still\n"
            "solved), 2 on a usage error."
        ),
    )
    add_sudoku_flags(p)
    p.set_defaults(run=run)
    return p


# --------------------------------------------------------------------------------- input


@dataclass
class _Input:
    lines: list[str]  # the input lines, without newlines
    out: list[str | None]  # the output line of each input line (None: a puzzle not solved yet)
    good: list[tuple[int, Any]] = field(default_factory=list)  # (line number, Puzzle)
    errors: list[str] = field(default_factory=list)  # "line N: REASON" of each bad line

    @property
    def n_bad(self) -> int:
        return len(self.errors)


def _read_puzzles(path: str) -> _Input:
    """Read and parse the puzzles file; `UsageError` when it is missing, binary or puzzle-free."""
    from ..sudoku.data import Puzzle, PuzzleError, parse_puzzle

    p = Path(path)
    if p.is_dir():
        raise UsageError(f"puzzle file {path!r} is a folder; pass a text file path.")
    if not p.is_file():
        raise UsageError(f"puzzle file {path!r} does not exist; pass a text file path.")
    try:
        data = p.read_bytes()
    except OSError as err:
        raise UsageError(f"puzzle file {path!r} cannot be read ({err.strerror or err}).") from None
    try:
        if b"\0" in data:
            raise UnicodeDecodeError("utf-8", data, data.index(b"\0"), data.index(b"\0") + 1, "")
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UsageError(
            f"puzzle file {path!r} is not a text file (binary data at byte {err.start}); pass a "
            "text file with one 81-character puzzle per line."
        ) from None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the file's final newline
    parsed = _Input(lines=lines, out=list(lines))  # blank and comment lines are copied
    for n, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            puzzle = parse_puzzle(line)
        except PuzzleError as err:
            parsed.errors.append(f"line {n}: {err}")
            parsed.out[n - 1] = f"# error: {err}"
            continue
        assert isinstance(puzzle, Puzzle)
        parsed.good.append((n, puzzle))
        parsed.out[n - 1] = None
    if not parsed.good and not parsed.errors:
        raise UsageError(
            f"puzzle file {path!r} holds no puzzle (it is empty or has only blank and # lines). "
            "Add one 81-character puzzle per line."
        )
    return parsed


def _check_options(args: argparse.Namespace, puzzles: _Input):
    """Estimator, step counts and device, before any work; returns the guidance config or None."""
    default_estimator = NO_PRIOR.estimator if args.no_prior else GUIDANCE["estimator"]
    check_estimator(args.g_estimator or default_estimator)
    n_opt = args.g_n_opt_steps
    if n_opt is not None and n_opt < 0:
        raise UsageError(
            f"`--n-opt-steps` must be an integer >= 0, got {n_opt}. Use `--n-opt-steps 0` to run "
            "the prior alone."
        )
    if args.no_prior and n_opt == 0:
        raise UsageError(
            "`--no-prior` optimises the logits directly, so `--n-opt-steps` must be >= 1 (default "
            f"{NO_PRIOR.n_steps})."
        )
    for flag, given in _backtrack_flags(args):
        if given and args.no_prior:
            raise UsageError(
                f"`{flag}` does not combine with `--no-prior`: with no prior there is nothing to "
                "rank the search's moves. Drop one."
            )
        if given and args.backtrack is False and flag != "--backtrack/--no-backtrack":
            raise UsageError(
                f"`{flag}` sets the backtracking search, got `--no-backtrack`. Drop `{flag}`, "
                "or drop `--no-backtrack`."
            )
    blanks = max((81 - p.num_clues for _, p in puzzles.good), default=0)
    if args.steps is not None and not args.no_prior and 0 < blanks < args.steps:
        raise UsageError(
            f"`--steps` {args.steps} is more than the {blanks} blank cells of the emptiest puzzle: "
            f"each step fills at least one cell, so the extra steps would do nothing. Use "
            f"`--steps {blanks}` or fewer."
        )
    t = args.temperature
    if not math.isfinite(t) or t < 0:
        raise UsageError(
            f"`--temperature` must be a finite number >= 0, got {t}; use 0 for argmax (the "
            "default) or 1 to sample the prior's distribution."
        )
    args.resolved_device = resolve_device(args.device)
    args.search_settings = _check_search(args, puzzles, n_opt)
    if args.no_prior:
        return None
    from ..sudoku.solver import default_guidance

    n_opt = GUIDANCE["n_opt_steps"] if n_opt is None else n_opt
    overrides: dict[str, Any] = {"n_opt_steps": n_opt}
    if args.g_estimator:
        overrides["estimator"] = args.g_estimator
    if n_opt == 0:
        return None
    try:
        with warnings.catch_warnings():  # the solver's own defaults, not the user's input
            warnings.simplefilter("ignore", FutureWarning)
            return default_guidance(**overrides)
    except ValueError as err:
        raise UsageError(to_flags(str(err), _SOLVER_FLAGS)) from None


def _check_search(args: argparse.Namespace, puzzles: _Input, n_opt: int | None):
    """The `--search` settings (None without one) and what they refuse here."""
    settings = search_settings(args)
    if settings is None:
        if args.ranking != "proposal":
            raise UsageError(
                f"`--ranking {args.ranking}` applies to `--search`, got no search. Add e.g. "
                "`--search smc`, or drop `--ranking`."
            )
        return None
    given_flags = (
        ("--no-prior", args.no_prior),
        ("--restarts", args.restarts is not None),
        *_backtrack_flags(args),
    )
    for flag, given in given_flags:
        if given:
            raise UsageError(
                f"`{flag}` does not combine with `--search {settings.method}`: the search "
                "replaces the solver's own passes. Drop one (`--search refine --rounds N` "
                "re-solves the cells that break a rule)."
            )
    check_search(
        settings,
        guided=n_opt != 0,
        handoff="logits",  # the solver's guidance hands its logits to the scheduler
        argmax_flag=("--temperature 0", "--temperature 1") if args.temperature == 0 else None,
        unmasking=args.unmasking,
        ranking=args.ranking,
        steps=SOLVER.num_inference_steps if args.steps is None else args.steps,
        rows=min(args.batch_size, len(puzzles.good)),
    )
    return settings


def _backtrack_flags(args: argparse.Namespace) -> list[tuple[str, bool]]:
    """The backtracking-search flags and whether each was given."""
    return [
        ("--backtrack/--no-backtrack", args.backtrack is not None),
        ("--pruning", args.pruning is not None),
        ("--max-prior-calls", args.max_prior_calls is not None),
    ]


def backtrack_options(args: argparse.Namespace) -> dict[str, Any]:
    """`SudokuSolver`'s search keywords from `--backtrack`, `--pruning`, `--max-prior-calls`."""
    given = {
        "search": None if args.backtrack is None else ("backtrack" if args.backtrack else "none"),
        "pruning": args.pruning,
        "max_prior_calls": args.max_prior_calls,
    }
    return {
        name: getattr(SOLVER, name) if value is None else value for name, value in given.items()
    }


def sampler_options(args: argparse.Namespace) -> dict[str, Any]:
    """`SudokuSolver`'s sampler keywords from `--unmasking` and `--temperature` (0: argmax)."""
    t = args.temperature
    return {
        "unmasking": args.unmasking,
        "decode": "argmax" if t == 0 else "sample",
        "temperature": t if t > 0 else SOLVER.temperature,  # not read by argmax
    }


# --------------------------------------------------------------------------------- output


def _written_lines(args: argparse.Namespace, puzzles: _Input, out: Path) -> int:
    """Refuse an existing output without `--resume`/`--overwrite`; with `--resume`, check that
    its complete lines belong to this puzzles file and return how many there are."""
    if not has_content(out):
        return 0
    if not (args.resume or args.overwrite):
        raise UsageError(
            f"`--output` {str(out)!r} exists; pass `--resume` to complete it or `--overwrite` to "
            "start over."
        )
    if args.overwrite:
        return 0
    written = out.read_bytes().decode("utf-8", errors="replace").split("\n")[:-1]
    clues = {n: p.cells for n, p in puzzles.good}
    for i, line in enumerate(written):
        n = i + 1
        if n in clues:
            ok = len(line) == 81 and line.isdigit()
            ok = ok and all(c == 0 or int(line[j]) == c for j, c in enumerate(clues[n]))
        else:
            ok = n <= len(puzzles.out) and line == puzzles.out[i]
        if not ok:
            raise UsageError(
                f"`--resume`: line {n} of {str(out)!r} does not match line {n} of "
                f"{args.puzzles!r}; the output holds another puzzles file. Use a new `--output` "
                "or `--overwrite`."
            )
    return len(written)


# --------------------------------------------------------------------------------- run


def _make_solver(args: argparse.Namespace, guidance: Any):
    """A function solving one batch of puzzles with the next draw of `generator`."""
    from ..sudoku.solver import SudokuSolver, solve_without_prior

    if args.no_prior:
        n_steps = NO_PRIOR.n_steps if args.g_n_opt_steps is None else args.g_n_opt_steps

        def solve(batch: list[Any], generator: Any):
            return solve_without_prior(
                batch,
                estimator=args.g_estimator or NO_PRIOR.estimator,
                n_steps=n_steps,
                generator=generator,
                batch_size=len(batch),
                device=args.resolved_device,
            )

        return solve
    logger.info("loading the Sudoku prior")
    solver = SudokuSolver.from_pretrained(
        guidance=guidance,
        num_inference_steps=SOLVER.num_inference_steps if args.steps is None else args.steps,
        restarts=SOLVER.restarts if args.restarts is None else args.restarts,
        **sampler_options(args),
        **backtrack_options(args),
        device=args.resolved_device,
    )

    def solve(batch: list[Any], generator: Any):
        return solver.solve(
            batch, generator=generator, batch_size=len(batch), progress=not args.quiet
        )

    return solve


def _solve_batches(args: argparse.Namespace, puzzles: _Input, done: int, solve: Any) -> None:
    """Solve the puzzles in batches of `--batch-size` and append the output lines as they finish.

    Batch `k` gets the `k`-th seed drawn from `--seed` (as one `SudokuSolver.solve` call over every
    puzzle would), so a resumed run redraws the same noise for an unfinished batch."""
    import torch
    from tqdm.auto import tqdm

    generator = torch.Generator().manual_seed(args.seed)
    good, size = puzzles.good, args.batch_size
    batches = [good[i : i + size] for i in range(0, len(good), size)]
    bar = tqdm(total=len(good), unit="puzzle", desc="sudoku", disable=args.quiet, file=sys.stderr)
    with LineWriter(args.output) as writer:
        for batch in batches:
            last = batch[-1][0]  # line number of the batch's last puzzle
            if last <= done:
                torch.randint(0, 2**62, (1,), generator=generator)  # that batch's draw
                bar.update(len(batch))
                continue
            # One batch per call: `solve` draws the batch's seed from `generator` (one draw).
            result = solve([p for _, p in batch], generator)
            for (n, _), grid in zip(batch, result.solution_strings(), strict=True):
                puzzles.out[n - 1] = grid
            writer.write_lines(puzzles.out[done:last])  # type: ignore[arg-type]
            done = last
            bar.update(len(batch))
        writer.write_lines(puzzles.out[done:])  # type: ignore[arg-type]
    bar.close()


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    puzzles = _read_puzzles(args.puzzles)  # before the slow imports
    if args.resume and args.overwrite:
        raise UsageError("pass `--resume` or `--overwrite`, not both.")
    out = check_output_path(args.output, example="solutions.txt")
    guidance = _check_options(args, puzzles)
    done = _written_lines(args, puzzles, out)
    for line in puzzles.errors:  # the input is usable: report its bad lines, then run
        print(line, file=sys.stderr)

    import torch

    from .checks import quiet_libraries

    torch.set_num_threads(args.threads)
    quiet_libraries(args.quiet)
    spent = None
    if args.search_settings is not None:
        from .sudoku_search import make_search_solver

        solve, spent = make_search_solver(args, guidance, args.search_settings)
    else:
        solve = _make_solver(args, guidance)
    if args.overwrite:
        out.unlink(missing_ok=True)
    elif done:
        repair_trailing_line(out)
    try:
        _solve_batches(args, puzzles, done, solve)
    except ValueError as err:
        raise UsageError(to_flags(str(err), _SOLVER_FLAGS)) from None
    _summary(puzzles, out, time.perf_counter() - start)
    if spent is not None:
        print(spent.format(), file=sys.stderr)
    return 1 if puzzles.n_bad else 0


def _summary(puzzles: _Input, out: Path, seconds: float) -> None:
    """Solved / total, mean violations and time, read back from the output (resumed lines too)."""
    from ..sudoku.data import violations

    lines = out.read_text(encoding="utf-8").split("\n")
    solved, unsolved, total_viol = [], [], 0
    for n, puzzle in puzzles.good:
        grid = lines[n - 1]
        viol = violations(grid)
        keeps = all(c == 0 or int(grid[j]) == c for j, c in enumerate(puzzle.cells))
        (solved if viol == 0 and keeps else unsolved).append(n)
        total_viol += viol
    total = len(puzzles.good)
    print(
        f"solved {len(solved)}/{total} puzzles"
        + (f" ({len(solved) / total:.1%})" if total else "")
        + f", {total_viol / max(1, total):.2f} violations per grid, {seconds:.1f} s"
        + (f"; {puzzles.n_bad} bad line(s) skipped" if puzzles.n_bad else ""),
        file=sys.stderr,
    )
    if unsolved:
        shown = ", ".join(map(str, unsolved[:20])) + (" ..." if len(unsolved) > 20 else "")
        print(f"not solved (grid written anyway): line(s) {shown}", file=sys.stderr)
