"""Sudoku on *minimal* puzzles (every clue needed), next to the classical solver's limit.

Minimal puzzles come from `redge_guidance.sudoku.data.generate_minimal_puzzles` (greedy clue
removal while the solution stays unique; typically 21-27 clues), data seed 4242, with solution
grids checked disjoint from the prior's training and validation grids. Rows:

- `classical`: a plain backtracking solver (the exact-cover search the data generator uses),
  one puzzle at a time; it solves every valid puzzle, so its row is the limit, and its time the
  yardstick;
- `prior alone`: the shipped prior, 12 denoising steps, confidence order, 4 restarts, sampled
  commits (the best unguided setting of docs/sudoku.md);
- `guided`: the shipped solver, `SudokuSolver.from_pretrained()` with its defaults.

Each row also splits the solve rate by clue count. One seed; the machine and command are in the
results.

    python benchmarks/sudoku_minimal.py            # 100 puzzles (a few minutes on one thread)
    python benchmarks/sudoku_minimal.py --tiny     # 4 puzzles, to /tmp (seconds)

Writes ``benchmarks/results/sudoku_minimal.{json,md}``.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import _common

_common.use_checkout()

import torch  # noqa: E402

DATA_SEED = 4242


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-puzzles", type=int, default=100)
    p.add_argument("--seed", type=int, default=0, help="solver seed (default 0)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tiny", action="store_true", help="4 puzzles, written to /tmp (seconds)")
    p.add_argument("--out", type=Path, default=_common.RESULTS)
    args = p.parse_args(argv)
    if args.n_puzzles < 1:
        p.error(f"--n-puzzles must be >= 1, got {args.n_puzzles}")
    if args.tiny:
        args.n_puzzles, args.out = 4, Path("/tmp/sudoku_minimal_tiny")
    return args


def minimal_puzzles(n: int) -> list[tuple[list[int], list[int]]]:
    from redge_guidance.sudoku import data as sd

    pairs = sd.generate_minimal_puzzles(n, DATA_SEED)
    splits = sd.make_splits(2000, 64, 0, seed=0)  # the prior's training / validation grids
    seen = {tuple(g) for g in splits["train"] + splits["validation"]}
    shared = sum(tuple(s) in seen for _, s in pairs)
    if shared:
        raise SystemExit(f"{shared} minimal-puzzle grids are training grids; change DATA_SEED")
    return pairs


def classical_row(pairs) -> dict:
    from redge_guidance.sudoku import data as sd

    start = time.perf_counter()
    solved = [sd.solve(p) == s for p, s in pairs]
    seconds = time.perf_counter() - start
    return {"method": "classical", "solved": solved, "seconds": seconds}


def solver_row(name: str, pairs, args, **options) -> dict:
    from redge_guidance.sudoku import SudokuSolver

    solver = SudokuSolver.from_pretrained(**options)
    puzzles = torch.tensor([p for p, _ in pairs])
    start = time.perf_counter()
    result = solver.solve(
        puzzles, generator=torch.Generator().manual_seed(args.seed), batch_size=args.batch_size
    )
    seconds = time.perf_counter() - start
    solutions = [s for _, s in pairs]
    solved = [
        bool(ok) and list(map(int, g)) == s
        for ok, g, s in zip(result.solved, result.solutions.tolist(), solutions, strict=True)
    ]
    return {
        "method": name,
        "solved": solved,
        "violations": sum(result.violations) / len(pairs),
        "seconds": seconds,
    }


def render(result: dict) -> str:
    m = result["machine"]
    clue_counts = sorted({c for c in result["clues"]})
    lines = [
        "# Sudoku on minimal puzzles",
        "",
        f"Command: `{result['command']}`. {result['n_puzzles']} minimal puzzles (data seed "
        f"{DATA_SEED}, {min(clue_counts)}-{max(clue_counts)} clues, mean "
        f"{sum(result['clues']) / len(result['clues']):.1f}), solver seed {result['seed']}. "
        f"Machine: {m['processor']}, {m['cpu_count']} cores, torch {m['torch']}, "
        f"{m['torch_threads']} thread(s).",
        "",
    ]
    header = ["method", "solved", "violations / grid", "s / puzzle"]
    groups = [(lo, hi) for lo, hi in ((17, 22), (23, 24), (25, 26), (27, 40))]
    header += [f"solved, {lo}-{hi} clues" for lo, hi in groups]
    rows = []
    for r in result["rows"]:
        by_group = defaultdict(list)
        for ok, c in zip(r["solved"], result["clues"], strict=True):
            for lo, hi in groups:
                if lo <= c <= hi:
                    by_group[(lo, hi)].append(ok)
        cells = [
            f"{100 * sum(v) / len(v):.0f}% (n={len(v)})" if (v := by_group[g]) else "-"
            for g in groups
        ]
        viol = r.get("violations")
        rows.append(
            [
                r["method"],
                f"{100 * sum(r['solved']) / len(r['solved']):.1f}%",
                "-" if viol is None else f"{viol:.2f}",
                f"{r['seconds'] / len(r['solved']):.4f}",
                *cells,
            ]
        )
    lines += _common.md_table(header, rows)
    lines += [
        "",
        "`classical` is the backtracking search of the data generator, one puzzle at a time in "
        "Python; the solvers batch the puzzles. A solve counts when the grid is the puzzle's "
        "unique solution.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    _common.set_threads(args.threads)
    pairs = minimal_puzzles(args.n_puzzles)
    result = {
        "machine": _common.machine_info("cpu"),
        "command": _common.command_line("sudoku_minimal", argv),
        "n_puzzles": len(pairs),
        "seed": args.seed,
        "clues": [sum(1 for d in p if d) for p, _ in pairs],
        "rows": [],
    }
    result["rows"].append(classical_row(pairs))
    prior = {"guidance": None, "decode": "sample"}
    result["rows"].append(
        solver_row("prior alone (sampled commits, 4 restarts)", pairs, args, **prior)
    )
    result["rows"].append(solver_row("guided (the shipped solver's defaults)", pairs, args))
    _common.write_results(args.out, "sudoku_minimal", result, render(result), echo=True)
    return result


if __name__ == "__main__":
    main()
