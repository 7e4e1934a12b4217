"""The Sudoku headline table: the shipped prior, guided by each estimator, against the baselines.

Test set: `--n-puzzles` (default 500) puzzles with a unique solution, generated with
`--data-seed` (default 2026), clue counts uniform in [`--min-clues`, `--max-clues`] (default 26-38,
the anchor's range); their solution grids are checked disjoint from the prior's 2000 training and
64 validation grids (`make_splits(2000, 64, 0, seed=0)`) and from the tuning puzzles (seed 777).

Methods, all with the same sampler (the shipped solver's: `--steps` denoising steps, confidence
order) unless said otherwise:
- `prior`: the prior alone (unguided);
- `best_of_n`: N unguided samples per puzzle (decode "sample", temperature 1), the one with the
  best Sudoku reward kept; N is the smallest number whose time (N x the prior's own sampled time)
  reaches the wall time of the winning estimator's guided run at the same inner budget, steps,
  restarts and device, so best-of-N never gets less time than guidance;
- `guided`: RewardGuidance + SudokuReward with each estimator at `--budgets` inner Adam steps per
  denoising step; the largest budget (1000) runs on the first `--large-puzzles` puzzles and
  `--large-seeds` seeds;
- `no_prior`: `solve_without_prior` (logits optimised from zero, clues clamped, `--no-prior-steps`
  Adam steps, no denoiser).

`--t-1` sets `t_1` of the ReDGE-family estimators (redge, redge_cov, reindge) in every cell it
runs; such cells are stored and reported apart (`redge t_1=0.9`).

Each is scored with the scheduler's two decodes: `argmax` (commit the argmax of the guided logits)
and `sample` (commit a draw from their softmax), over `--seeds` seeds: solve rate (valid grid that
keeps the clues), mean violations per grid, cell accuracy on blank cells, wall time per puzzle.

Resumable: every finished (method, estimator, budget, decode, seed) cell is written to the JSON at
once and skipped on a rerun with the same settings (`--force` reruns them).

    python benchmarks/sudoku.py                      # the full table (hours on one CPU thread)
    python benchmarks/sudoku.py --device cuda        # minutes on a GPU
    python benchmarks/sudoku.py --quick              # 16 puzzles, 1 seed, small budgets
    python benchmarks/sudoku.py --tiny               # smoke test: 4 puzzles, seconds, to /tmp
    python benchmarks/sudoku.py --report-only        # rewrite the .md and .png from the .json
    python benchmarks/sudoku.py --only no_prior --estimators redge --no-prior-estimators redge \
        --t-1 0.9 --subset 64 --seeds 0              # redge without a prior at t_1 = 0.9
    python benchmarks/sudoku.py --tuning             # the tuning table of docs/sudoku.md

Writes benchmarks/results/sudoku.{json,md,png} (`--out` to change the folder).
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import _common
import torch
from _sudoku_data import test_set
from _sudoku_report import (
    DEFAULT_RESTARTS,
    DEFAULT_STEPS,
    estimator_label,
    write_markdown,
    write_plot,
)

_common.use_checkout()

ESTIMATORS = ("straight_through", "gumbel_softmax", "reinmax", "redge", "reindge")
T_1_ESTIMATORS = ("redge", "redge_cov", "reindge")  # the estimators `--t-1` applies to

# The shipped solver's sampler (12 steps); the guidance is `default_guidance()` with the
# estimator and the inner budget of the cell (tuned on the tuning puzzles, see docs/sudoku.md).
# The shipped solver also re-solves grids that still break a rule up to DEFAULT_RESTARTS = 4
# times (tuning puzzles: 93.8% -> 96.9% solved); cells from before restarts existed count as 0.
# Recorded in the results as "order" (the scheduler's pre-0.2 name); passed as `unmasking`.
SAMPLER = {"num_inference_steps": DEFAULT_STEPS, "order": "confidence"}


def _solver_options() -> dict:
    options = dict(SAMPLER)
    options["unmasking"] = options.pop("order")
    return options


NO_PRIOR = {"lr": 0.05}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n-puzzles", type=int, default=500)
    p.add_argument("--data-seed", type=int, default=2026)
    p.add_argument("--min-clues", type=int, default=26)
    p.add_argument("--max-clues", type=int, default=38)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--budgets", type=int, nargs="+", default=[20, 100, 1000])
    p.add_argument("--estimators", nargs="+", default=list(ESTIMATORS))
    p.add_argument("--decodes", nargs="+", default=["argmax", "sample"])
    p.add_argument("--large-budget", type=int, default=1000, help="budgets >= this run on a subset")
    p.add_argument("--large-puzzles", type=int, default=100, help="puzzles of the large budgets")
    p.add_argument("--large-seeds", type=int, default=1, help="seeds of the large budgets")
    p.add_argument("--no-prior-steps", type=int, default=2000)
    p.add_argument("--no-prior-estimators", nargs="+", default=["straight_through", "redge"])
    p.add_argument(
        "--steps", type=int, default=SAMPLER["num_inference_steps"], help="denoising steps"
    )
    p.add_argument(
        "--restarts",
        type=int,
        default=DEFAULT_RESTARTS,
        help="re-solve invalid grids up to this many times (prior, guided, best-of-N)",
    )
    p.add_argument(
        "--best-of-n-size",
        type=int,
        default=None,
        help="fixed N for best-of-N (default: N matched to the guided run's wall time)",
    )
    p.add_argument("--batch-size", type=int, default=None, help="default 128 on CPU, 500 on CUDA")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--time-limit", type=float, default=None, help="start no cell after this many s")
    p.add_argument("--only", nargs="+", default=None, help="run only these methods")
    p.add_argument("--quick", action="store_true", help="16 puzzles, 1 seed, budgets 5 and 20")
    p.add_argument(
        "--tiny", action="store_true", help="smoke test: 4 puzzles, 2 estimators, to /tmp"
    )
    p.add_argument(
        "--t-1",
        type=float,
        default=None,
        help=f"t_1 of {', '.join(T_1_ESTIMATORS)} in every cell (default: their own default)",
    )
    p.add_argument(
        "--tuning",
        action="store_true",
        help="run the tuning table (tuning puzzles, seed 777) into sudoku_tuning.{json,md}",
    )
    p.add_argument("--force", action="store_true", help="rerun cells already in the JSON")
    p.add_argument("--report-only", action="store_true", help="only rewrite .md/.png from .json")
    p.add_argument(
        "--subset", type=int, default=None, help="use only the first K test puzzles (all cells)"
    )
    p.add_argument(
        "--merge", type=Path, nargs="+", default=[], help="also report the cells of these JSONs"
    )
    p.add_argument("--out", type=Path, default=None, help="folder for sudoku.{json,md,png}")
    p.add_argument("--cache", type=Path, default=Path("runs/sudoku_cache"), help="test-set cache")
    args = p.parse_args(argv)
    if args.quick:
        args.n_puzzles, args.seeds, args.budgets = 16, [0], [5, 20]
        args.large_puzzles, args.no_prior_steps = 16, 300
    if args.tiny:
        args.n_puzzles, args.seeds, args.budgets, args.steps = 4, [0], [2], 2
        args.estimators = args.no_prior_estimators = ["straight_through", "redge"]
        args.decodes, args.no_prior_steps, args.restarts = ["argmax"], 20, 0
        args.cache = Path("/tmp/sudoku_tiny/cache")
    if args.out is None:
        quick = Path("/tmp/sudoku_tiny") if args.tiny else Path("runs/sudoku_quick")
        args.out = quick if args.quick or args.tiny else _common.RESULTS
    if args.restarts < 0:
        p.error(f"--restarts must be >= 0, got {args.restarts}")
    for name in ("n_puzzles", "threads", "steps", "large_puzzles", "large_seeds", "no_prior_steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    bad = [
        e
        for e in args.estimators + args.no_prior_estimators
        if e not in ESTIMATORS + ("redge_cov",)
    ]
    if bad:
        p.error(f"unknown estimator(s) {bad}; choose from {list(ESTIMATORS) + ['redge_cov']}")
    bad = [d for d in args.decodes if d not in ("argmax", "sample")]
    if bad:
        p.error(f"--decodes must be argmax and/or sample, got {bad}")
    if args.t_1 is not None:
        from redge_guidance.estimators import get_estimator

        try:
            get_estimator("redge", t_1=args.t_1)
        except ValueError as err:
            p.error(f"--t-1: {err}")
    return args


def estimator_options(estimator: str, args: argparse.Namespace) -> dict:
    """The non-default estimator options of a cell (`--t-1` for the ReDGE family)."""
    return {"t_1": args.t_1} if args.t_1 is not None and estimator in T_1_ESTIMATORS else {}


# ---------------------------------------------------------------------------------------------
# Cells


def cell_key(method: str, estimator: str, budget: int, decode: str, seed: int, n: int) -> str:
    return f"{method}|{estimator}|{budget}|{decode}|seed={seed}|n={n}"


def metrics(result, puzzles: torch.Tensor, solutions: torch.Tensor) -> dict:
    blank = puzzles == 0
    right = (result.solutions == solutions) & blank
    n = puzzles.shape[0]
    return {
        "solved": result.solve_rate,
        "violations": result.mean_violations,
        "cell_accuracy": float(right.sum() / blank.sum()),
        "seconds": result.seconds,
        "seconds_per_puzzle": result.seconds / n,
        "n_puzzles": n,
        "num_samples": result.num_samples,
    }


def guidance_config(estimator: str, budget: int, options: dict | None = None):
    from redge_guidance.sudoku.solver import default_guidance

    return default_guidance(
        estimator=estimator, n_opt_steps=budget, estimator_options=dict(options or {})
    )


def run_cell(cell: dict, model, puzzles, solutions, args, results) -> dict:
    from redge_guidance.sudoku.solver import SudokuSolver, solve_without_prior

    n = cell["n"]
    P, S = puzzles[:n], solutions[:n]
    gen = torch.Generator().manual_seed(cell["seed"])
    bs = args.batch_size
    sampler = {**_solver_options(), "num_inference_steps": args.steps, "restarts": cell["restarts"]}
    method = cell["method"]
    extra: dict = {}
    if method == "no_prior":
        res = solve_without_prior(
            P,
            estimator=cell["estimator"],
            n_steps=cell["budget"],
            lr=NO_PRIOR["lr"],
            generator=gen,
            estimator_options=cell["estimator_options"],
            batch_size=max(bs, 1),
            device=args.device,
        )
    else:
        guidance = None
        if method == "guided":
            guidance = guidance_config(cell["estimator"], cell["budget"], cell["estimator_options"])
        solver = SudokuSolver(
            model, guidance=guidance, decode=cell["decode"], device=args.device, **sampler
        )
        num_samples = 1
        if method == "best_of_n":
            if cell.get("fixed_n"):
                num_samples, extra = cell["fixed_n"], {"matched_to": "fixed N"}
            else:
                num_samples, extra = best_of_n_size(cell, results)
        res = solver.solve(
            P, generator=gen, batch_size=max(1, bs // num_samples), num_samples=num_samples
        )
    out = metrics(res, P, S)
    out["solved_per_puzzle"] = [int(x) for x in res.solved]
    out.update({k: cell[k] for k in ("method", "estimator", "budget", "decode", "seed")}, **extra)
    if cell["estimator_options"]:
        out["estimator_options"] = cell["estimator_options"]
    out["device"] = device_name(args.device)
    out["steps"] = 1 if method == "no_prior" else args.steps
    out["restarts"] = cell["restarts"]
    out["batch_size"] = bs
    return out


def best_of_n_size(cell: dict, results: dict) -> tuple[int, dict]:
    """N matching the wall time of the best estimator's guided run at this budget and seed."""
    guided = [
        r
        for r in results["cells"].values()
        if r["method"] == "guided"
        and r["budget"] == cell["budget"]
        and r["decode"] == "argmax"
        and r["n_puzzles"] == cell["n"]
        and r["device"] == cell["device"]
        and r.get("steps", DEFAULT_STEPS) == cell["steps"]
        and r.get("restarts", 0) == cell["restarts"]
    ]
    if not guided:
        return 1, {"matched_to": None}
    by_est: dict[str, list[dict]] = {}
    for r in guided:
        by_est.setdefault(estimator_label(r), []).append(r)
    best = max(by_est, key=lambda e: statistics.mean(r["solved"] for r in by_est[e]))
    target = statistics.mean(r["seconds"] for r in by_est[best])
    single = [
        r["seconds"]
        for r in results["cells"].values()
        if r["method"] == "prior"
        and r["decode"] == "sample"
        and r["n_puzzles"] == cell["n"]
        and r["device"] == cell["device"]
        and r.get("steps", DEFAULT_STEPS) == cell["steps"]
        and r.get("restarts", 0) == cell["restarts"]
    ]
    per_sample = statistics.mean(single) if single else target
    # The smallest N whose time reaches the guided time (rounding to the nearest N, as cells
    # before `n_rule` did, gave best-of-N as little as 2/3 of it).
    n = max(1, math.ceil(target / per_sample - 1e-9))
    return n, {
        "matched_to": f"guided {best} at {cell['budget']} inner steps",
        "target_seconds": target,
        "n_rule": "reaches",
    }


def device_name(device: str) -> str:
    """The device as the cells' keys spell it (kept as it was, so reruns find their cells)."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} thread(s)"


def plan(args) -> list[dict]:
    """Cells in priority order (a time-limited run finishes the most important ones first)."""
    dev = device_name(args.device)
    N = args.n_puzzles
    cells: list[dict] = []

    def add(method, estimator, budget, decode, seeds, n):
        for seed in seeds:
            cells.append(
                {
                    "method": method,
                    "estimator": estimator,
                    "budget": budget,
                    "decode": decode,
                    "seed": seed,
                    "n": n,
                    "device": dev,
                    "steps": 1 if method == "no_prior" else args.steps,
                    "restarts": 0 if method == "no_prior" else args.restarts,
                    "estimator_options": estimator_options(estimator, args),
                    **(
                        {"fixed_n": args.best_of_n_size}
                        if method == "best_of_n" and args.best_of_n_size
                        else {}
                    ),
                }
            )

    small = [b for b in args.budgets if b < args.large_budget]
    large = [b for b in args.budgets if b >= args.large_budget]
    # The prior alone; its `sample` decode is also the unit of time of best-of-N. Its argmax
    # decode is deterministic: one seed.
    with_best_of_n = args.only is None or "best_of_n" in args.only
    for decode in sorted(set(args.decodes) | ({"sample"} if with_best_of_n else set())):
        add("prior", "-", 0, decode, args.seeds[:1] if decode == "argmax" else args.seeds, N)
    for decode in args.decodes:
        for b in small:
            for est in args.estimators:
                add("guided", est, b, decode, args.seeds, N)
        if decode == args.decodes[0]:
            for est in args.no_prior_estimators:
                add("no_prior", est, args.no_prior_steps, "argmax", args.seeds, N)
            for b in small:
                add("best_of_n", "-", b, "sample", args.seeds, N)
    for decode in args.decodes:
        for b in large:
            for est in args.estimators:
                add(
                    "guided",
                    est,
                    b,
                    decode,
                    args.seeds[: args.large_seeds],
                    min(N, args.large_puzzles),
                )
        if decode == args.decodes[0]:
            for b in large:
                add(
                    "best_of_n",
                    "-",
                    b,
                    "sample",
                    args.seeds[: args.large_seeds],
                    min(N, args.large_puzzles),
                )
    if args.only:
        cells = [c for c in cells if c["method"] in args.only]
    return cells


# ---------------------------------------------------------------------------------------------
# Report


# ---------------------------------------------------------------------------------------------


def merge(store: _common.CellStore, others: list[Path]) -> None:
    """Add the cells (and commands) of results files run elsewhere (other processes, devices)."""
    meta = store.data.setdefault("meta", {})
    for other in others:
        extra = _common.load_json(other)
        for key, cell in extra["cells"].items():
            store.cells.setdefault(key, cell)
        if not meta:
            meta.update(extra["meta"])
        done = [m for m in (meta.get("finished"), extra["meta"].get("finished")) if m]
        if done:
            meta["finished"] = max(done)
        for command in extra["meta"].get("commands", [extra["meta"].get("command")]):
            commands = meta.setdefault("commands", [])
            if command and command not in commands:
                commands.append(command)


def full_key(cell: dict, args: argparse.Namespace) -> str:
    """The cell's key in the results JSON (settings at their defaults are left out)."""
    key = cell_key(
        cell["method"], cell["estimator"], cell["budget"], cell["decode"], cell["seed"], cell["n"]
    )
    key += f"|{cell['device']}"
    if args.steps != DEFAULT_STEPS:
        key += f"|steps={args.steps}"
    if cell["restarts"]:
        key += f"|restarts={cell['restarts']}"
    if cell.get("fixed_n"):
        key += f"|N={cell['fixed_n']}"
    return key + "".join(f"|{k}={v}" for k, v in cell["estimator_options"].items())


def run_all(store: _common.CellStore, args: argparse.Namespace, argv: list[str] | None) -> None:
    """Run every planned cell not in `store` yet (all with `--force`), saving after each."""
    from redge_guidance.estimators import get_estimator
    from redge_guidance.sudoku.solver import SudokuSolver, _load_prior

    puzzles, solutions, facts = test_set(args)
    if args.subset is not None:
        puzzles, solutions = puzzles[: args.subset], solutions[: args.subset]
        args.n_puzzles = puzzles.shape[0]
        facts = {**facts, "subset": f"first {args.n_puzzles} of the {facts['n_puzzles']}"}
    meta = store.data.setdefault("meta", {})
    meta.update(
        {
            "data": facts,
            "sampler": {**SAMPLER, "num_inference_steps": args.steps},
            "guidance": guidance_config("straight_through", 20).to_dict(),
            "no_prior": {**NO_PRIOR, "n_steps": args.no_prior_steps},
            "estimators": {e: get_estimator(e).config() for e in ESTIMATORS},
            "torch": torch.__version__,
        }
    )
    command = _common.command_line("sudoku", argv)
    commands = meta.setdefault("commands", [])
    if command not in commands:
        commands.append(command)
    model = _load_prior(None, torch.device(args.device))
    # warm-up (CUDA context, kernels): not timed
    SudokuSolver(
        model,
        guidance=guidance_config("redge", 2),
        device=args.device,
        **{**_solver_options(), "num_inference_steps": 2},
    ).solve(puzzles[:4])
    start = time.time()
    todo = plan(args)
    for i, cell in enumerate(todo):
        key = full_key(cell, args)
        if key in store and not args.force:
            continue
        if args.time_limit is not None and time.time() - start > args.time_limit:
            print(f"time limit reached; {len(todo) - i} cells left for a rerun", file=sys.stderr)
            break
        r = run_cell(cell, model, puzzles, solutions, args, store.data)
        meta["finished"] = time.strftime("%Y-%m-%d %H:%M")
        store.put(key, r)
        print(
            f"[{i + 1}/{len(todo)}] {key}: solved {100 * r['solved']:.1f}% viol "
            f"{r['violations']:.2f} acc {100 * r['cell_accuracy']:.1f}% "
            f"{r['seconds_per_puzzle']:.3f} s/puzzle",
            file=sys.stderr,
            flush=True,
        )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    _common.set_threads(args.threads)
    if args.batch_size is None:
        args.batch_size = 500 if args.device.startswith("cuda") else 128
    if args.tuning:
        from _sudoku_tuning import run_tuning

        run_tuning(args, argv)
        return
    store = _common.CellStore(args.out / "sudoku.json", {"meta": {}})
    merge(store, args.merge)
    if not args.report_only:
        run_all(store, args, argv)
    if args.merge:  # keep the merged table in this folder's JSON
        store.save()
    if not store.cells:
        print("no results yet", file=sys.stderr)
        return
    write_markdown(store.data, args.out / "sudoku.md")
    note = write_plot(store.data, args.out / "sudoku.png")
    if note:
        print(note, file=sys.stderr)
    print((args.out / "sudoku.md").read_text())


if __name__ == "__main__":
    main()
