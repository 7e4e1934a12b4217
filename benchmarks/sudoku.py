"""The Sudoku headline table: the shipped prior, guided by each estimator, against the baselines.

Test set: `--n-puzzles` (default 500) puzzles with a unique solution, generated with
`--data-seed` (default 2026), clue counts uniform in [`--min-clues`, `--max-clues`] (default 26-38,
the anchor's range); their solution grids are checked disjoint from the prior's 2000 training and
64 validation grids (`make_splits(2000, 64, 0, seed=0)`) and from the tuning puzzles (seed 777).

Methods, all with the same sampler (the shipped solver's: `--steps` denoising steps, confidence
order) unless said otherwise:
- `prior`: the prior alone (unguided);
- `best_of_n`: N unguided samples per puzzle (decode "sample", temperature 1), the one with the
  best Sudoku reward kept; N is chosen so that its wall time matches the guided run of the winning
  estimator at the same inner budget, same seed and device;
- `guided`: RewardGuidance + SudokuReward with each estimator at `--budgets` inner Adam steps per
  denoising step; the largest budget (1000) runs on the first `--large-puzzles` puzzles and
  `--large-seeds` seeds;
- `no_prior`: `solve_without_prior` (logits optimised from zero, clues clamped, `--no-prior-steps`
  Adam steps, no denoiser).

Each is scored with the scheduler's two decodes: `argmax` (commit the argmax of the guided logits)
and `sample` (commit a draw from their softmax), over `--seeds` seeds: solve rate (valid grid that
keeps the clues), mean violations per grid, cell accuracy on blank cells, wall time per puzzle.

Resumable: every finished (method, estimator, budget, decode, seed) cell is written to the JSON at
once and skipped on a rerun with the same settings (`--force` reruns them).

    python benchmarks/sudoku.py                      # the full table (hours on one CPU thread)
    python benchmarks/sudoku.py --device cuda        # minutes on a GPU
    python benchmarks/sudoku.py --quick              # 16 puzzles, 1 seed, small budgets
    python benchmarks/sudoku.py --report-only        # rewrite the .md and .png from the .json

Writes benchmarks/results/sudoku.{json,md,png} (`--out` to change the folder).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import torch  # noqa: E402

ESTIMATORS = ("straight_through", "gumbel_softmax", "reinmax", "redge", "reindge")
TUNING_SEED = 777  # puzzles used to tune the settings (docs/sudoku.md); never in the test set

# The shipped solver's sampler; the guidance is `default_guidance()` with the estimator and the
# inner budget of the cell (tuned on the tuning puzzles, see docs/sudoku.md).
SAMPLER = {"num_inference_steps": 12, "order": "confidence"}
DEFAULT_STEPS = SAMPLER["num_inference_steps"]
# The shipped solver re-solves grids that still break a rule up to 4 times (tuned on the tuning
# puzzles: 93.8% -> 96.9% solved). Cells from before restarts existed count as 0.
DEFAULT_RESTARTS = 4
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
    if args.out is None:
        root = Path(__file__).resolve().parent
        args.out = root / "results" if not args.quick else Path("runs/sudoku_quick")
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
    return args


# ---------------------------------------------------------------------------------------------
# Data


def test_set(args) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """`(puzzles, solutions)` `(n, 81)` and facts about them (cached under `args.cache`)."""
    from redge_guidance.sudoku import data as sd

    args.cache.mkdir(parents=True, exist_ok=True)
    path = (
        args.cache
        / f"test_{args.data_seed}_{args.n_puzzles}_{args.min_clues}_{args.max_clues}.json"
    )
    cached = json.loads(path.read_text()) if path.exists() else None
    if isinstance(cached, dict) and "facts" in cached:  # generated and checked before
        pairs, facts = cached["pairs"], cached["facts"]
    else:
        t0 = time.time()
        pairs = sd.generate_puzzles(args.n_puzzles, args.data_seed, args.min_clues, args.max_clues)
        print(f"generated {len(pairs)} test puzzles in {time.time() - t0:.0f} s", file=sys.stderr)
        splits = sd.make_splits(2000, 64, 0, seed=0)  # the prior's training / validation grids
        seen = {tuple(g) for g in splits["train"] + splits["validation"]}
        tuning = {
            tuple(s)
            for _, s in sd.generate_puzzles(64, TUNING_SEED, args.min_clues, args.max_clues)
        }
        overlap_train = sum(tuple(s) in seen for _, s in pairs)
        overlap_tuning = sum(tuple(s) in tuning for _, s in pairs)
        if overlap_train or overlap_tuning:
            raise SystemExit(
                f"test grids overlap the training/validation grids ({overlap_train}) or the tuning "
                f"puzzles ({overlap_tuning}); choose another --data-seed"
            )
        clues = [sum(1 for d in p if d) for p, _ in pairs]
        facts = {
            "n_puzzles": len(pairs),
            "data_seed": args.data_seed,
            "clues": [args.min_clues, args.max_clues],
            "mean_clues": round(sum(clues) / len(clues), 2),
            "unique_solutions": "by construction (backtracking count == 1 after every removal)",
            "disjoint_from": "2000 training + 64 validation grids of make_splits(2000, 64, 0, "
            f"seed=0) and the 64 tuning puzzles (seed {TUNING_SEED}); checked, 0 shared grids",
        }
        path.write_text(json.dumps({"pairs": pairs, "facts": facts}))
    puzzles = torch.tensor([p for p, _ in pairs])
    solutions = torch.tensor([s for _, s in pairs])
    return puzzles, solutions, facts


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


def guidance_config(estimator: str, budget: int):
    from redge_guidance.sudoku.solver import default_guidance

    return default_guidance(estimator=estimator, n_opt_steps=budget)


def run_cell(cell: dict, model, puzzles, solutions, args, results) -> dict:
    from redge_guidance.sudoku.solver import SudokuSolver, solve_without_prior

    n = cell["n"]
    P, S = puzzles[:n], solutions[:n]
    gen = torch.Generator().manual_seed(cell["seed"])
    bs = args.batch_size
    sampler = {**SAMPLER, "num_inference_steps": args.steps, "restarts": cell["restarts"]}
    method = cell["method"]
    extra: dict = {}
    if method == "no_prior":
        res = solve_without_prior(
            P,
            estimator=cell["estimator"],
            n_steps=cell["budget"],
            lr=NO_PRIOR["lr"],
            generator=gen,
            batch_size=max(bs, 1),
            device=args.device,
        )
    else:
        guidance = (
            guidance_config(cell["estimator"], cell["budget"]) if method == "guided" else None
        )
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
        by_est.setdefault(r["estimator"], []).append(r)
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
    n = max(1, round(target / per_sample))
    return n, {
        "matched_to": f"guided {best} at {cell['budget']} inner steps",
        "target_seconds": target,
    }


def device_name(device: str) -> str:
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


def summarise(results: dict) -> list[dict]:
    """One row per (method, estimator, budget, n_puzzles, device, steps), decodes side by side."""
    groups: dict[tuple, dict[str, list[dict]]] = {}
    for r in results["cells"].values():
        steps = r.get("steps", 1 if r["method"] == "no_prior" else DEFAULT_STEPS)
        key = (
            r["method"],
            r["estimator"],
            r["budget"],
            r["n_puzzles"],
            r["device"],
            steps,
            r.get("restarts", 0),
            r.get("num_samples", 1) if r.get("matched_to") == "fixed N" else 0,
        )
        groups.setdefault(key, {}).setdefault(r["decode"], []).append(r)
    order = {"prior": 0, "best_of_n": 1, "guided": 2, "no_prior": 3}
    rows = []
    for (method, est, budget, n, dev, steps, restarts, fixed_n), by_decode in sorted(
        groups.items(),
        key=lambda kv: (
            section(kv[0][0], kv[0][5], kv[0][6])[0],
            kv[0][5],
            order[kv[0][0]],
            kv[0][2],
            kv[0][1],
            kv[0][3],
            kv[0][5],
        ),
    ):
        row = {
            "method": method,
            "estimator": est,
            "budget": budget,
            "n_puzzles": n,
            "device": dev,
            "steps": steps,
            "restarts": restarts,
            "fixed_n": fixed_n,
        }
        for decode, rs in by_decode.items():
            solved = [r["solved"] for r in rs]
            row[decode] = {
                "seeds": len(rs),
                "solved": statistics.mean(solved),
                "solved_sd": statistics.stdev(solved) if len(solved) > 1 else 0.0,
                "violations": statistics.mean(r["violations"] for r in rs),
                "cell_accuracy": statistics.mean(r["cell_accuracy"] for r in rs),
                "seconds_per_puzzle": statistics.mean(r["seconds_per_puzzle"] for r in rs),
                "num_samples": rs[0].get("num_samples", 1),
            }
        rows.append(row)
    return rows


def section(method: str, steps: int, restarts: int) -> tuple[int, str]:
    """Which table of the report a row goes to: (rank, title)."""
    if method == "no_prior":
        return 1, "No prior (the paper's other setting: logits optimised directly)"
    if restarts == DEFAULT_RESTARTS:
        return 0, f"The shipped solver: {DEFAULT_RESTARTS} restarts"
    return 2, f"Single pass ({restarts} restarts)"


def winners(rows: list[dict]) -> dict[tuple[int, int], tuple[list[str], float]]:
    """Per (restarts, budget), the guided estimator(s) with the highest argmax solve rate on the
    most puzzles run at that setting; ties on the solve rate are broken by fewer violations, and
    estimators tied on both are all listed."""
    most: dict[tuple[int, int], int] = {}
    for r in rows:
        if r["method"] == "guided" and "argmax" in r and r["steps"] == DEFAULT_STEPS:
            k = (r["restarts"], r["budget"])
            most[k] = max(most.get(k, 0), r["n_puzzles"])
    cands: dict[tuple[int, int], list[tuple[tuple[float, float], str, float]]] = {}
    for r in rows:
        if r["method"] != "guided" or "argmax" not in r or r["steps"] != DEFAULT_STEPS:
            continue
        if r["n_puzzles"] != most[(r["restarts"], r["budget"])]:
            continue
        a = r["argmax"]
        cands.setdefault((r["restarts"], r["budget"]), []).append(
            ((round(a["solved"], 6), -round(a["violations"], 6)), r["estimator"], a["solved"])
        )
    out = {}
    for budget, cs in cands.items():
        top = max(c[0] for c in cs)
        tied = sorted(c[1] for c in cs if c[0] == top)
        out[budget] = (tied, next(c[2] for c in cs if c[0] == top))
    return out


def fmt_cell(d: dict | None, field: str) -> str:
    if d is None:
        return "-"
    if field == "solved":
        sd = f" ± {100 * d['solved_sd']:.1f}" if d["seeds"] > 1 else ""
        return f"{100 * d['solved']:.1f}{sd}"
    if field == "violations":
        return f"{d['violations']:.2f}"
    if field == "cell_accuracy":
        return f"{100 * d['cell_accuracy']:.1f}"
    return ""


def write_markdown(results: dict, path: Path) -> None:
    rows = summarise(results)
    win = winners(rows)
    meta = results["meta"]
    lines = [
        "# Sudoku: guided masked diffusion vs the prior alone, best-of-N and no prior",
        "",
        f"Test set: {meta['data']['n_puzzles']} generated puzzles with a unique solution "
        "(a row with fewer puzzles ran on the first K of them), "
        f"{meta['data']['clues'][0]}-{meta['data']['clues'][1]} clues (mean "
        f"{meta['data']['mean_clues']}), data seed {meta['data']['data_seed']}; solution grids "
        f"disjoint from the prior's training/validation grids and the tuning puzzles (checked). "
        f"Prior: the shipped `redge_guidance/assets/sudoku_prior` (ModernBERT, 4.0 M parameters).",
        "",
        f"Sampler: {meta['sampler']['num_inference_steps']} denoising steps, "
        f"{meta['sampler']['order']} order (MaskGIT), no remasking; `restarts` = grids that "
        "still break a rule are solved again from their clues with fresh noise, up to that many "
        "times (the shipped solver: 4; 0 = a single pass). Guidance: "
        f"Adam lr {meta['guidance']['lr']}, KL weight {meta['guidance']['kl_weight']}, "
        f"{meta['guidance']['num_relaxed_samples']} relaxed samples per inner step, each "
        "estimator at its default options ("
        + "; ".join(
            f"{n}: " + (", ".join(f"{k} {v}" for k, v in c.items() if k != "name") or "none")
            for n, c in meta.get("estimators", {}).items()
        )
        + f"). No prior: Adam lr {meta['no_prior']['lr']}, {meta['no_prior']['n_steps']} steps, "
        "logits from 0, clues clamped, argmax decode.",
        "",
        "Solved = complete valid grid that keeps every clue. Mean ± sd over seeds; `argmax` = the "
        "scheduler commits the argmax of the (guided) logits, `sample` = it commits a draw from "
        "their softmax (the committed sample). Violations: repeated digits per row/column/box. "
        "Cell accuracy: blank cells equal to the unique solution. Time: wall seconds per puzzle, "
        "puzzles batched, mean over seeds and decodes (on a shared CPU it varies with the load, "
        "up to 3x between runs of the same cell).",
        "",
    ]
    header = [
        "| method | estimator | inner steps | denoising steps | restarts "
        "| puzzles × seeds (argmax / sample) "
        "| solved % (argmax) | solved % (sample) | violations (argmax / sample) "
        "| cell acc. % (argmax / sample) | s / puzzle | device |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    current = None
    for r in rows:
        title = section(r["method"], r["steps"], r["restarts"])[1]
        if title != current:
            lines += ([""] if current else []) + [f"### {title}", ""] + header
            current = title
        a, s = r.get("argmax"), r.get("sample")
        seeds = " / ".join(str(d["seeds"]) for d in (a, s) if d)
        if a and s and a["seeds"] == s["seeds"]:
            seeds = str(a["seeds"])
        budget = r["budget"]
        if r["method"] == "best_of_n":
            est = f"N = {s['num_samples'] if s else '?'}"
            budget_txt = "fixed N" if r.get("fixed_n") else f"time of {budget}"
        elif r["method"] == "prior":
            est, budget_txt = "-", "0"
        else:
            est = r["estimator"]
            budget_txt = str(budget) if r["method"] == "guided" else f"{budget} (total)"
            if (
                r["method"] == "guided"
                and r["steps"] == DEFAULT_STEPS
                and est in win.get((r["restarts"], budget), ([],))[0]
                and r["n_puzzles"]
                == max(
                    x["n_puzzles"]
                    for x in rows
                    if x["method"] == "guided"
                    and x["restarts"] == r["restarts"]
                    and x["budget"] == budget
                    and x["steps"] == DEFAULT_STEPS
                )
            ):
                est = f"**{est}**"
        tsec = statistics.mean(d["seconds_per_puzzle"] for d in (a, s) if d)
        lines.append(
            f"| {r['method']} | {est} | {budget_txt} | {r['steps']} | "
            f"{r['restarts'] if r['method'] != 'no_prior' else '-'} | {r['n_puzzles']} × {seeds} | "
            f"{fmt_cell(a, 'solved')} | {fmt_cell(s, 'solved')} | "
            f"{fmt_cell(a, 'violations')} / {fmt_cell(s, 'violations')} | "
            f"{fmt_cell(a, 'cell_accuracy')} / {fmt_cell(s, 'cell_accuracy')} | {tsec:.3f} | "
            f"{r['device']} |"
        )
    lines += [
        "",
        "Winner per inner budget (guided, argmax decode, the most puzzles run at that setting; "
        "ties broken by fewer violations): "
        + "; ".join(
            f"{b} inner steps, {rs} restarts: "
            + ", ".join(f"**{e}**" for e in es)
            + (" (tie)" if len(es) > 1 else "")
            + f" ({100 * s:.1f}%)"
            for (rs, b), (es, s) in sorted(win.items(), key=lambda kv: (-kv[0][0], kv[0][1]))
        )
        + ".",
        "",
    ]
    lines += [
        "Best-of-N: N unguided samples (decode `sample`, temperature 1) per puzzle, the one with "
        "the best Sudoku reward kept; N matches the wall time of the winning estimator's guided "
        "run "
        "at that budget on the same device (`fixed N` rows: N set by `--best-of-n-size`). Rows "
        "with fewer puzzles/seeds ran on the first puzzles of the test set.",
        "",
        "Generated by "
        + ", then ".join(f"`{c}`" for c in meta.get("commands", [meta.get("command")]))
        + f" (last cell {meta.get('finished')}).",
        "",
    ]
    path.write_text("\n".join(lines))


def write_plot(results: dict, path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return (
            "matplotlib is not installed (pip install 'redge-guidance[benchmarks]'): plot skipped"
        )
    rows = summarise(results)
    main_n = max(r["n_puzzles"] for r in rows)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ests = sorted({r["estimator"] for r in rows if r["method"] == "guided"})
    budgets: set[int] = set()
    colors = {est: f"C{i}" for i, est in enumerate(ests)}
    for restarts, ls in ((DEFAULT_RESTARTS, "-"), (0, ":")):
        for est in ests:
            best: dict[int, tuple[int, float]] = {}  # budget -> (puzzles, solved %)
            for r in rows:
                if (
                    r["method"] == "guided"
                    and r["estimator"] == est
                    and "argmax" in r
                    and r["steps"] == DEFAULT_STEPS
                    and r["restarts"] == restarts
                    and r["n_puzzles"] >= best.get(r["budget"], (0, 0.0))[0]
                ):
                    best[r["budget"]] = (r["n_puzzles"], 100 * r["argmax"]["solved"])
            pts = sorted((b, v[1]) for b, v in best.items())
            if pts:
                budgets.update(p[0] for p in pts)
                ax.plot(
                    [p[0] for p in pts],
                    [p[1] for p in pts],
                    marker="o" if ls == "-" else ".",
                    ls=ls,
                    lw=1.5 if ls == "-" else 0.8,
                    color=colors[est],
                    label=f"guided, {est}"
                    + ("" if ls == "-" else " (single pass, first 100 / 8 puzzles)"),
                )
    for r in rows:  # mark the subset runs
        if (
            r["method"] == "guided"
            and "argmax" in r
            and r["n_puzzles"] != main_n
            and r["steps"] == DEFAULT_STEPS
            and r["restarts"] == DEFAULT_RESTARTS
        ):
            y = 100 * r["argmax"]["solved"]
            ax.annotate(
                f"n={r['n_puzzles']}",
                (r["budget"], y),
                fontsize=6,
                xytext=(4, -8),
                textcoords="offset points",
            )
    styles = {"prior": ("k", "--"), "no_prior": ("tab:gray", ":")}
    for r in rows:
        if (
            r["method"] in styles
            and "argmax" in r
            and r["n_puzzles"] == main_n
            and r["steps"] in (1, DEFAULT_STEPS)
            and r["restarts"] in (0 if r["method"] == "no_prior" else DEFAULT_RESTARTS,)
        ):
            color, ls = styles[r["method"]]
            if r["method"] == "no_prior" and r["estimator"] != "straight_through":
                color = "tab:brown"
            label = "prior alone" if r["method"] == "prior" else f"no prior ({r['estimator']})"
            ax.axhline(100 * r["argmax"]["solved"], color=color, ls=ls, lw=1, label=label)
    bon = sorted(
        (r["budget"], 100 * r["sample"]["solved"])
        for r in rows
        if r["method"] == "best_of_n"
        and not r.get("fixed_n")
        and "sample" in r
        and r["n_puzzles"] == main_n
        and r["steps"] == DEFAULT_STEPS
        and r["restarts"] == DEFAULT_RESTARTS
    )
    if bon:
        ax.plot(
            *zip(*bon, strict=True),
            color="k",
            marker="x",
            ls="-.",
            label="best-of-N at equal time (sample decode)",
        )
    ax.set_xscale("log")
    if budgets:
        ax.set_xticks(sorted(budgets))
        ax.set_xticklabels([str(b) for b in sorted(budgets)])
        ax.minorticks_off()
    ax.set_xlabel("inner Adam steps per denoising step")
    ax.set_ylabel("puzzles solved (%, argmax decode)")
    ax.set_title(
        f"Sudoku, shipped prior + guidance ({main_n} test puzzles, {DEFAULT_RESTARTS} restarts)"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.batch_size is None:
        args.batch_size = 500 if args.device.startswith("cuda") else 128
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / "sudoku.json"
    results = json.loads(json_path.read_text()) if json_path.exists() else {"meta": {}, "cells": {}}
    for other in args.merge:  # cells run elsewhere (other processes, devices) join this table
        extra = json.loads(other.read_text())
        for key, cell in extra["cells"].items():
            results["cells"].setdefault(key, cell)
        if not results["meta"]:
            results["meta"] = dict(extra["meta"])
        done = [m for m in (results["meta"].get("finished"), extra["meta"].get("finished")) if m]
        if done:
            results["meta"]["finished"] = max(done)
        for command in extra["meta"].get("commands", [extra["meta"].get("command")]):
            commands = results["meta"].setdefault("commands", [])
            if command and command not in commands:
                commands.append(command)
    if not args.report_only:
        from redge_guidance.estimators import get_estimator
        from redge_guidance.sudoku.solver import _load_prior

        puzzles, solutions, facts = test_set(args)
        if args.subset is not None:
            puzzles, solutions = puzzles[: args.subset], solutions[: args.subset]
            args.n_puzzles = puzzles.shape[0]
            facts = {**facts, "subset": f"first {args.n_puzzles} of the {facts['n_puzzles']}"}
        results["meta"].update(
            {
                "data": facts,
                "sampler": {**SAMPLER, "num_inference_steps": args.steps},
                "guidance": guidance_config("straight_through", 20).to_dict(),
                "no_prior": {**NO_PRIOR, "n_steps": args.no_prior_steps},
                "estimators": {e: get_estimator(e).config() for e in ESTIMATORS},
                "torch": torch.__version__,
            }
        )
        command = "python " + " ".join(
            ["benchmarks/sudoku.py"] + (argv if argv is not None else sys.argv[1:])
        )
        commands = results["meta"].setdefault("commands", [])
        if command not in commands:
            commands.append(command)
        model = _load_prior(None, torch.device(args.device))
        # warm-up (CUDA context, kernels): not timed
        from redge_guidance.sudoku.solver import SudokuSolver

        SudokuSolver(
            model,
            guidance=guidance_config("redge", 2),
            device=args.device,
            **{**SAMPLER, "num_inference_steps": 2},
        ).solve(puzzles[:4])
        start = time.time()
        todo = plan(args)
        for i, cell in enumerate(todo):
            key = cell_key(
                cell["method"],
                cell["estimator"],
                cell["budget"],
                cell["decode"],
                cell["seed"],
                cell["n"],
            )
            key += f"|{cell['device']}"
            if args.steps != DEFAULT_STEPS:
                key += f"|steps={args.steps}"
            if cell["restarts"]:
                key += f"|restarts={cell['restarts']}"
            if cell.get("fixed_n"):
                key += f"|N={cell['fixed_n']}"
            if key in results["cells"] and not args.force:
                continue
            if args.time_limit is not None and time.time() - start > args.time_limit:
                print(
                    f"time limit reached; {len(todo) - i} cells left for a rerun", file=sys.stderr
                )
                break
            r = run_cell(cell, model, puzzles, solutions, args, results)
            results["cells"][key] = r
            results["meta"]["finished"] = time.strftime("%Y-%m-%d %H:%M")
            tmp = json_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(results, indent=1))
            os.replace(tmp, json_path)
            print(
                f"[{i + 1}/{len(todo)}] {key}: solved {100 * r['solved']:.1f}% viol "
                f"{r['violations']:.2f} acc {100 * r['cell_accuracy']:.1f}% "
                f"{r['seconds_per_puzzle']:.3f} s/puzzle",
                file=sys.stderr,
                flush=True,
            )
    if args.merge:  # keep the merged table in this folder's JSON
        tmp = json_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1))
        os.replace(tmp, json_path)
    if not results["cells"]:
        print("no results yet", file=sys.stderr)
        return
    write_markdown(results, args.out / "sudoku.md")
    note = write_plot(results, args.out / "sudoku.png")
    if note:
        print(note, file=sys.stderr)
    print((args.out / "sudoku.md").read_text())


if __name__ == "__main__":
    main()
