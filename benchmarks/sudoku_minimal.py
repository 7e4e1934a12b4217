"""Sudoku search through the prior on minimal and standard puzzles, next to the classical solver.

Two test sets, each split by clue count:

- `minimal`: `--n-minimal` (default 100) *minimal* puzzles (every clue needed) from
  `redge_guidance.sudoku.data.generate_minimal_puzzles`, data seed 4242 (typically 22-28 clues);
- `standard`: `--n-standard` puzzles generated as the test set of `benchmarks/sudoku.py` (data
  seed 2026, 26-38 clues; the default 500 is that test set).

Solution grids are checked disjoint from the prior's training and validation grids and from the
tuning puzzles. Rows:

- `classical`: a plain backtracking solver (the exact-cover search the data generator uses), one
  puzzle at a time: it solves every valid puzzle, so its row is the limit and its time the
  yardstick;
- `rules alone`: the rule propagation of the search (`redge_guidance.sudoku.rules.propagate`,
  forced cells only), no prior and no search: what the rules solve by themselves;
- `prior alone`: the shipped prior, 12 denoising steps, confidence order, 4 restarts, sampled
  commits (the best unguided setting of docs/sudoku.md), no search;
- `best-of-N`: N unguided sampled passes per puzzle (no restarts, no search), the best by reward
  kept, N the smallest whose time reaches the new default's;
- `old default`: the guided solver as shipped before the search (`search="none"`);
- `new default`: `SudokuSolver.from_pretrained()` (backtracking search through the prior, the
  guided pass for what it leaves);
- `search, uniform prior`: the same search with no learned ranking (`SudokuSolver(None)`: the
  search then branches on the cell with the fewest legal digits, digits in increasing order).
  `--tuning` adds the other candidates: `pruning="peers"`, guided search nodes, a smaller
  `max_prior_calls`.

The pass-based rows (prior alone, best-of-N, old default) run on the first `--n-costly` puzzles of
each set. `--tuning` runs the search candidates on the tuning puzzles instead (minimal: data seed
9001; standard: the tuning puzzles of benchmarks/sudoku.py, seed 777) and writes
`sudoku_search_tuning`. One solver seed; the machine, its load and the command are recorded.

    python benchmarks/sudoku_minimal.py --tuning    # choose the default (tuning puzzles only)
    python benchmarks/sudoku_minimal.py             # the test sets, once, after tuning
    python benchmarks/sudoku_minimal.py --tiny      # 4 puzzles per set, to /tmp (seconds)

Writes ``benchmarks/results/sudoku_minimal.{json,md}`` (after every row, so a stopped run keeps
what it finished).
"""

from __future__ import annotations

import argparse
import math
import time
from collections import defaultdict
from pathlib import Path

import _common

_common.use_checkout()

import torch  # noqa: E402

DATA_SEED = 4242  # minimal test puzzles
TUNING_MINIMAL_SEED = 9001  # minimal tuning puzzles
STANDARD_SEED, TUNING_STANDARD_SEED = 2026, 777  # as in benchmarks/sudoku.py
CLUE_GROUPS = {
    "minimal": [(17, 22), (23, 24), (25, 26), (27, 40)],
    "standard": [(26, 28), (29, 31), (32, 35), (36, 38)],
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", nargs="+", choices=["minimal", "standard"], default=None)
    p.add_argument("--n-minimal", type=int, default=100)
    p.add_argument("--n-standard", type=int, default=500)
    p.add_argument("--n-costly", type=int, default=100, help="puzzles of the pass-based rows")
    p.add_argument("--seed", type=int, default=0, help="solver seed (default 0)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tuning", action="store_true", help="search candidates on tuning puzzles")
    p.add_argument("--tiny", action="store_true", help="4 puzzles per set, to /tmp (seconds)")
    p.add_argument("--out", type=Path, default=_common.RESULTS)
    args = p.parse_args(argv)
    for name in ("n_minimal", "n_standard", "n_costly"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    args.sets = args.sets or ["minimal", "standard"]
    if args.tuning and args.n_minimal == 100 and args.n_standard == 500:
        args.n_minimal = args.n_standard = 64
    if args.tiny:
        args.n_minimal = args.n_standard = args.n_costly = 4
        args.out = Path("/tmp/sudoku_minimal_tiny")
    return args


def puzzle_set(name: str, n: int, tuning: bool) -> list[tuple[list[int], list[int]]]:
    """`n` (puzzle, solution) pairs of set `name`, checked disjoint from the prior's grids and,
    for the test sets, from the tuning puzzles."""
    from redge_guidance.sudoku import data as sd

    def make(kind: str, tune: bool, count: int):
        if kind == "minimal":
            return sd.generate_minimal_puzzles(count, TUNING_MINIMAL_SEED if tune else DATA_SEED)
        return sd.generate_puzzles(count, TUNING_STANDARD_SEED if tune else STANDARD_SEED, 26, 38)

    pairs = make(name, tuning, n)
    splits = sd.make_splits(2000, 64, 0, seed=0)  # the prior's training / validation grids
    seen = {tuple(g) for g in splits["train"] + splits["validation"]}
    if not tuning:
        seen |= {tuple(s) for kind in CLUE_GROUPS for _, s in make(kind, True, 64)}
    shared = sum(tuple(s) in seen for _, s in pairs)
    if shared:
        raise SystemExit(f"{shared} {name} grids are training or tuning grids; change the seed")
    return pairs


def correct(pairs, grids: list[list[int]]) -> list[bool]:
    return [list(map(int, g)) == s for g, (_, s) in zip(grids, pairs, strict=True)]


def classical_row(pairs) -> dict:
    from redge_guidance.sudoku import data as sd

    start = time.perf_counter()
    grids = [sd.solve(p) or [0] * 81 for p, _ in pairs]
    seconds = time.perf_counter() - start
    return {"method": "classical", "solved": correct(pairs, grids), "seconds": seconds}


def rules_row(pairs) -> dict:
    from redge_guidance.sudoku.rules import propagate

    puzzles = torch.tensor([p for p, _ in pairs])
    start = time.perf_counter()
    grids = propagate(puzzles, puzzles == 0, "units")
    seconds = time.perf_counter() - start
    return {"method": "rules alone", "solved": correct(pairs, grids.tolist()), "seconds": seconds}


def solver_row(name: str, pairs, args, *, model: str = "shipped", num_samples: int = 1, **opts):
    """Solve `pairs` with a solver built from `opts`; `model="uniform"`: no learned prior."""
    from redge_guidance.sudoku import SudokuSolver, default_guidance

    if model == "uniform":
        guidance = opts.pop("guidance", "default")
        guidance = default_guidance() if guidance == "default" else guidance
        solver = SudokuSolver(None, guidance=guidance, **opts)
    else:
        solver = SudokuSolver.from_pretrained(**opts)
    puzzles = torch.tensor([p for p, _ in pairs])
    start = time.perf_counter()
    result = solver.solve(
        puzzles,
        generator=torch.Generator().manual_seed(args.seed),
        batch_size=args.batch_size,
        num_samples=num_samples,
    )
    seconds = time.perf_counter() - start
    ok = correct(pairs, result.solutions.tolist())
    row = {
        "method": name,
        "solved": [bool(a) and b for a, b in zip(result.solved, ok, strict=True)],
        "violations": sum(result.violations) / len(pairs),
        "seconds": seconds,
        "settings": result.extras["settings"],
    }
    if "search" in result.extras:
        row["search"] = result.extras["search"]
    return row


def test_rows(set_name: str, pairs, args, emit) -> None:
    """The rows of one test set, each handed to `emit` when done."""
    costly = pairs[: args.n_costly]
    emit(classical_row(pairs))
    emit(rules_row(pairs))
    new = emit(solver_row("new default (search through the prior)", pairs, args))
    prior = {"guidance": None, "decode": "sample", "search": "none"}
    emit(solver_row("prior alone (sampled commits, 4 restarts)", costly, args, **prior))
    # best-of-N at equal time: time one unguided sampled pass, then the smallest N that reaches
    # the new default's time per puzzle
    single = {**prior, "restarts": 0}
    one = solver_row("best-of-1", costly, args, **single)
    per_pass = one["seconds"] / len(costly)
    n = max(1, math.ceil(new["seconds"] / len(pairs) / per_pass))
    row = one if n == 1 else solver_row("best-of-N", costly, args, num_samples=n, **single)
    row["method"] = f"best-of-N at equal time (N = {n} unguided passes)"
    emit(row)
    old = "old default (guided pass, 4 restarts, no search)"
    emit(solver_row(old, costly, args, search="none"))
    emit(solver_row(UNIFORM, pairs, args, model="uniform"))


UNIFORM = "search, uniform prior (no learned ranking)"


def tuning_rows(set_name: str, pairs, args, emit) -> None:
    """The candidates of the default (the other search options are the default's)."""
    emit(rules_row(pairs))
    emit(solver_row("search, pruning='units' (candidate default)", pairs, args))
    emit(solver_row(UNIFORM, pairs, args, model="uniform"))
    emit(solver_row("search, pruning='peers'", pairs, args, pruning="peers"))
    peers = "search, uniform prior, pruning='peers'"
    emit(solver_row(peers, pairs, args, model="uniform", pruning="peers"))
    emit(solver_row("search, guided nodes", pairs, args, search_guidance=True))
    emit(solver_row("search, pruning='units', max_prior_calls=16", pairs, args, max_prior_calls=16))


# ------------------------------------------------------------------------------------ report


def _cells(r: dict, clues: list[int], groups) -> list[str]:
    by_group = defaultdict(list)
    for ok, c in zip(r["solved"], clues, strict=False):  # pass-based rows: the first puzzles
        for lo, hi in groups:
            if lo <= c <= hi:
                by_group[(lo, hi)].append(ok)
    return [
        f"{100 * sum(v) / len(v):.0f}% (n={len(v)})" if (v := by_group[g]) else "-" for g in groups
    ]


def render(result: dict) -> str:
    m = result["machine"]
    title = "Sudoku search through the prior" + (" (tuning puzzles)" if result["tuning"] else "")
    lines = [
        f"# {title}",
        "",
        f"Command: `{result['command']}`. Solver seed {result['seed']}. Machine: "
        f"{m['processor']}, {m['cpu_count']} cores, torch {m['torch']}, "
        f"{m['torch_threads']} thread(s), load average {m.get('load_average')} at the start.",
        "",
    ]
    for set_name, data in result["sets"].items():
        clues, groups = data["clues"], [tuple(g) for g in CLUE_GROUPS[set_name]]
        lines += [
            f"## {set_name} puzzles: {len(clues)} puzzles (data seed {data['data_seed']}, "
            f"{min(clues)}-{max(clues)} clues, mean {sum(clues) / len(clues):.1f})",
            "",
        ]
        header = ["method", "puzzles", "solved", "s / puzzle", "prior calls / puzzle"]
        header += ["dead ends / puzzle"]
        header += [f"solved, {lo}-{hi} clues" for lo, hi in groups]
        rows = []
        for r in data["rows"]:
            n = len(r["solved"])
            calls = r.get("search", {}).get("prior_calls")
            dead = r.get("search", {}).get("backtracks")
            rows.append(
                [
                    r["method"],
                    n,
                    f"{100 * sum(r['solved']) / n:.1f}%",
                    f"{r['seconds'] / n:.4f}",
                    "-" if calls is None else f"{sum(calls) / n:.2f} (max {max(calls)})",
                    "-" if dead is None else f"{sum(dead) / n:.2f}",
                    *_cells(r, clues, groups),
                ]
            )
        lines += [*_common.md_table(header, rows), ""]
    lines += [
        "The solvers batch the puzzles (`classical`, where present, is the backtracking search of "
        "the data generator, one puzzle at a time in Python). A solve counts when the grid is the "
        "puzzle's unique solution. Prior calls: search nodes scored by the prior, or by the "
        "uniform denoiser in the uniform-prior rows (the search rows only; a puzzle the search "
        "leaves goes to the guided denoising pass, 12 prior calls and more). Dead ends: digits the "
        "search tried that the rules then ruled out.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    _common.set_threads(args.threads)
    name = "sudoku_search_tuning" if args.tuning else "sudoku_minimal"
    result = {
        "machine": _common.machine_info("cpu"),
        "command": _common.command_line("sudoku_minimal", argv),
        "seed": args.seed,
        "tuning": args.tuning,
        "sets": {},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for set_name in args.sets:
        n = args.n_minimal if set_name == "minimal" else args.n_standard
        pairs = puzzle_set(set_name, n, args.tuning)
        seeds = {"minimal": (DATA_SEED, TUNING_MINIMAL_SEED)}
        seeds["standard"] = (STANDARD_SEED, TUNING_STANDARD_SEED)
        data = {
            "data_seed": seeds[set_name][args.tuning],
            "clues": [sum(1 for d in p if d) for p, _ in pairs],
            "rows": [],
        }
        result["sets"][set_name] = data

        def emit(row: dict, data=data) -> dict:
            data["rows"].append(row)
            _common.write_results(args.out, name, result, render(result))
            return row

        (tuning_rows if args.tuning else test_rows)(set_name, pairs, args, emit)
    print(render(result))
    return result


if __name__ == "__main__":
    main()
