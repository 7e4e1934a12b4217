"""`python benchmarks/sudoku.py --tuning`: the settings tried on the tuning puzzles before the test
run (the tuning table of docs/sudoku.md), rerun with the library as it is now.

Tuning puzzles: `generate_puzzles(128, seed=777)` with the test set's clue range (the rows on 32
or 64 puzzles use the first 32 or 64); seed 0, argmax decode, straight-through relaxation,
single pass, unless a row says otherwise. Resumable like the main table: each finished row is
written to `<out>/sudoku_tuning.json` at once and skipped on a rerun (`--force` reruns it).
`--time-limit` stops starting new rows.

Two rows of the original table are not here: re-generating only the conflicting cells (or their
units, or them plus 30% / 60% of the other blanks) between passes; the solver only offers full
restarts.
"""

from __future__ import annotations

import argparse
import sys
import time

import _common
import torch
from _sudoku_data import TUNING_SEED, tuning_puzzles

NAME = "sudoku_tuning"


def _guided(**overrides) -> dict:
    """Guidance overrides of `default_guidance()` for the early rows (1 sample, KL 1)."""
    return {"n_opt_steps": 20, "lr": 0.1, "kl_weight": 1.0, "num_relaxed_samples": 1, **overrides}


_DEFAULT: dict = {}  # `default_guidance()` itself
# (label, puzzles, solver options, guidance overrides or None for the prior alone). Solver
# options: num_inference_steps (12), restarts (0), decode ("argmax"), remask / remask_eta.
ROWS: list[tuple[str, int, dict, dict | None]] = [
    ("prior alone, 12 steps, confidence order", 32, {}, None),
    ("prior alone, 12 steps, confidence order", 64, {}, None),
    ("prior alone, 24 steps", 32, {"num_inference_steps": 24}, None),
    ("guided, 20 inner, lr 0.5, KL 0.1, 1 relaxed sample", 32, {}, _guided(lr=0.5, kl_weight=0.1)),
    ("guided, 20 inner, lr 0.5, KL 1, 1 sample", 32, {}, _guided(lr=0.5)),
    ("guided, 20 inner, lr 0.1, KL 0.1, 1 sample", 32, {}, _guided(kl_weight=0.1)),
    ("guided, 20 inner, lr 0.1, KL 1, 1 sample", 32, {}, _guided()),
    ("guided, 100 inner, lr 0.1, KL 1, 1 sample", 32, {}, _guided(n_opt_steps=100)),
    (
        "guided, 20 inner, lr 0.1, KL 1, 1 sample, 24 steps",
        32,
        {"num_inference_steps": 24},
        _guided(),
    ),
    (
        "guided, 20 inner, lr 0.1, KL 1, 1 sample, ReMDM remasking (cap, eta 0.1)",
        32,
        {"remask": "cap", "remask_eta": 0.1},
        _guided(),
    ),
    ("guided, 20 inner, lr 0.2, KL 3, 1 sample", 32, {}, _guided(lr=0.2, kl_weight=3.0)),
    ("guided, 20 inner, lr 0.1, KL 1, 4 samples", 32, {}, _guided(num_relaxed_samples=4)),
    (
        "guided, 100 inner, lr 0.1, KL 1, 4 samples",
        64,
        {},
        _guided(n_opt_steps=100, num_relaxed_samples=4),
    ),
    ("guided, 20 inner, lr 0.1, KL 1, 16 samples", 64, {}, _guided(num_relaxed_samples=16)),
    ("same, 8 denoising steps", 64, {"num_inference_steps": 8}, _guided(num_relaxed_samples=16)),
    ("same, 16 denoising steps", 64, {"num_inference_steps": 16}, _guided(num_relaxed_samples=16)),
    ("same, warm start 0.5", 64, {}, _guided(num_relaxed_samples=16, warm_start=0.5)),
    ("guided, 20 inner, lr 0.1, KL 0.3, 16 samples (the default)", 64, {}, _DEFAULT),
    ("the default, no restarts", 128, {}, _DEFAULT),
    ("the default + 4 full restarts (the shipped solver)", 128, {"restarts": 4}, _DEFAULT),
    ("the default + 8 full restarts", 128, {"restarts": 8}, _DEFAULT),
    ("same 4 restarts, sample decode", 128, {"restarts": 4, "decode": "sample"}, _DEFAULT),
    (
        "same 4 restarts, 24 denoising steps",
        128,
        {"restarts": 4, "num_inference_steps": 24},
        _DEFAULT,
    ),
    ("prior alone + 4 restarts, argmax decode", 128, {"restarts": 4}, None),
    ("prior alone + 4 restarts, sample decode", 128, {"restarts": 4, "decode": "sample"}, None),
]
# (label, puzzles, solve_without_prior options)
NO_PRIOR_ROWS: list[tuple[str, int, dict]] = [
    (f"no prior, {est}, 2000 steps, lr {lr}", 32, {"estimator": est, "lr": lr})
    for est, lrs in (("straight_through", (0.05, 0.2, 0.5)), ("redge", (0.05, 0.2)))
    for lr in lrs
]


def guidance(overrides: dict | None):
    """`default_guidance(**overrides)`."""
    from redge_guidance.sudoku.solver import default_guidance

    return None if overrides is None else default_guidance(**overrides)


def run_row(model, puzzles, solutions, n: int, solver_opts: dict | None, cfg, args) -> dict:
    from redge_guidance.sudoku.solver import SudokuSolver, solve_without_prior

    P, S = puzzles[:n], solutions[:n]
    gen = torch.Generator().manual_seed(0)
    config = None
    if solver_opts is None:  # no prior: `cfg` holds solve_without_prior's options
        res = solve_without_prior(P, n_steps=2000, generator=gen, device=args.device, **cfg)
    else:
        opts = {"num_inference_steps": 12, "unmasking": "confidence", "restarts": 0, **solver_opts}
        config = guidance(cfg)
        solver = SudokuSolver(model, guidance=config, device=args.device, **opts)
        res = solver.solve(P, generator=gen, batch_size=args.batch_size)
    blank = P == 0
    return {
        "n_puzzles": n,
        "solved": res.solve_rate,
        "violations": res.mean_violations,
        "cell_accuracy": float(((res.solutions == S) & blank).sum() / blank.sum()),
        "seconds_per_puzzle": res.seconds / n,
        "solver": solver_opts,
        "guidance": cfg if config is None else config.to_dict(),
    }


def all_rows() -> list[tuple[str, int, dict | None, dict | None]]:
    """Every row in the table's order: `(label, puzzles, solver options or None, config)`."""
    rows = [(label, n, opts, cfg) for label, n, opts, cfg in ROWS]
    return rows + [(label, n, None, cfg) for label, n, cfg in NO_PRIOR_ROWS]


def row_key(label: str, n: int) -> str:
    return f"{label}|n={n}"


def run_tuning(args: argparse.Namespace, argv: list[str] | None) -> None:
    from redge_guidance.sudoku.solver import _load_prior

    store = _common.CellStore(args.out / f"{NAME}.json", {"meta": {}})
    store.data["meta"].update(
        command=_common.command_line("sudoku", argv),
        puzzles=f"generate_puzzles(128, seed={TUNING_SEED}), {args.min_clues}-{args.max_clues} "
        "clues; a row on n puzzles uses the first n",
        device=args.device,
        torch=torch.__version__,
    )
    puzzles, solutions = tuning_puzzles(args)
    model = _load_prior(None, torch.device(args.device))
    rows = all_rows()
    rows = rows[len(ROWS) :] + rows[: len(ROWS)]  # the cheap no-prior rows first
    start = time.time()
    for i, (label, n, opts, cfg) in enumerate(rows):
        key = row_key(label, n)
        if key in store and not args.force:
            continue
        if args.time_limit is not None and time.time() - start > args.time_limit:
            print(f"time limit reached; {len(rows) - i} rows left for a rerun", file=sys.stderr)
            break
        r = run_row(model, puzzles, solutions, n, opts, cfg, args)
        store.put(key, {"setting": label, **r})
        print(
            f"[{i + 1}/{len(rows)}] {key}: solved {100 * r['solved']:.1f}% viol "
            f"{r['violations']:.2f} {r['seconds_per_puzzle']:.3f} s/puzzle",
            file=sys.stderr,
            flush=True,
        )
    (args.out / f"{NAME}.md").write_text(markdown(store.data))
    print((args.out / f"{NAME}.md").read_text())


def markdown(result: dict) -> str:
    meta = result["meta"]
    table = [
        [
            c["setting"],
            c["n_puzzles"],
            f"{100 * c['solved']:.1f}%",
            f"{c['violations']:.2f}",
            f"{100 * c['cell_accuracy']:.1f}%",
            f"{c['seconds_per_puzzle']:.3f}",
        ]
        for c in (result["cells"].get(row_key(r[0], r[1])) for r in all_rows())
        if c is not None
    ]
    header = ["setting", "puzzles", "solved", "violations / grid", "cell acc.", "s / puzzle"]
    lines = [
        "# Sudoku tuning (tuning puzzles, never the test set)",
        "",
        f"Command: `{meta['command']}`; puzzles: {meta['puzzles']}; device {meta['device']}, "
        f"torch {meta['torch']}. Seed 0, argmax decode, straight-through, single pass, 12 "
        "denoising steps unless the row says otherwise; early rows: 20 inner Adam steps, lr "
        "0.1, KL 1, 1 relaxed sample. No prior: `solve_without_prior`, 2000 Adam steps.",
        "",
        *_common.md_table(header, table, "lrrrrr"),
        "",
    ]
    return "\n".join(lines)
