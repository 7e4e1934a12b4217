"""Inference-time scaling on minimal Sudoku puzzles: search, guidance and both, at equal CPU.

The Sudoku half of issue 12 §3 (`benchmarks/scaling.py` is the text half). Test puzzles:
`redge_guidance.sudoku.data.generate_minimal_puzzles(n, 5353)` (every clue needed, 22-28 clues),
a data seed disjoint from `benchmarks/sudoku_minimal.py`'s 4242 and from the tuning seed 777;
their solution grids are checked disjoint from the prior's training / validation grids and from
both of those sets. The pieces are `SudokuSolver`'s (the shipped prior wrapped as a digit-only
denoiser, its pipeline, `rewards.SudokuReward`), sampled commits at temperature 1, 12 denoising
steps, confidence order, run through `redge_guidance.search.search`:

- `unguided`: one pass of the prior (the 1x unit of compute);
- `best-of-N`: N unguided passes, the best by reward;
- `SMC`: K particles, the model's own proposals (FK steering), potential `difference`;
- `guidance`: the solver's default guidance (straight-through, `default_guidance()`), best of N
  guided passes (N = 1: the plain guided solve);
- `guided SMC`: K particles whose proposals are the guided logits, confidence order ranked by the
  prior (`ranking="prior"`), the weights correcting every drawn token;
- `refine`: a guided pass, then rounds that remask the cells breaking a rule and re-denoise them
  with guidance (keep the better grid).

Budgets are 1x, 4x and 16x the measured CPU seconds of an unguided pass. A calibration on the
first 8 puzzles measures each method's CPU seconds at its two smallest settings; a cell runs the
smallest N / K / rounds whose (linearly interpolated) cost reaches the budget, and reports the
cost it measured. Judge: a grid counts as solved when it is the puzzle's unique solution (the
rules, not the optimised reward). SMC's temperature λ (0.5 or 2) and the guided proposals' KL
weight (the solver's 0.3, or λ) are picked by `--tune` on 8 minimal puzzles of the tuning seed
(`scaling_sudoku_tuning.{json,md}`); the main run reads them from there.

    python benchmarks/scaling_sudoku.py --tune     # the SMC settings (~2 CPU min)
    python benchmarks/scaling_sudoku.py            # 20 puzzles, 2 seeds (~21 CPU min, 1 thread)
    python benchmarks/scaling_sudoku.py --tiny     # 3 puzzles, budgets 1x and 2x, to /tmp

Writes ``benchmarks/results/scaling_sudoku.{json,md}``, cell by cell (rerun to resume).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import _common

_common.use_checkout()

import torch  # noqa: E402

DATA_SEED = 5353  # the test puzzles: not sudoku_minimal.py's 4242, not the tuning seed
TUNING_SEED = 777  # the tuning seed of docs/sudoku.md (here: minimal puzzles from it)
STEPS = 12  # the solver's default number of denoising steps
LAMBDAS = (0.5, 2.0)  # SMC temperatures tried by `--tune`
CALIBRATION_PUZZLES = 8
# name: (label, search method, guided, smallest setting, what the setting counts)
METHODS = {
    "unguided": ("unguided (one pass)", "best-of-n", False, 1, "N"),
    "best_of_n": ("best-of-N", "best-of-n", False, 1, "N"),
    "smc": ("SMC (model proposals)", "smc", False, 1, "K"),
    "guidance": ("guidance (straight-through), best of N", "best-of-n", True, 1, "N"),
    "guided_smc": ("SMC with guided proposals", "smc", True, 1, "K"),
    "refine": ("guided pass + rule-driven remasking", "refine", True, 0, "rounds"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-puzzles", type=int, default=20)
    p.add_argument("--seeds", type=int, default=2, help="search seeds 0..S-1 (default 2)")
    p.add_argument("--budgets", type=float, nargs="+", default=[1.0, 4.0, 16.0])
    p.add_argument(
        "--temperature", type=float, default=None, help="both SMC rows' λ (default: --tune's)"
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tune", action="store_true", help="pick λ on tuning puzzles, then stop")
    p.add_argument("--tiny", action="store_true", help="3 puzzles, budgets 1 and 2, to /tmp")
    p.add_argument("--report-only", action="store_true", help="render the JSON in --out")
    p.add_argument("--out", type=Path, default=_common.RESULTS)
    args = p.parse_args(argv)
    if args.n_puzzles < 1 or args.seeds < 1:
        p.error(f"--n-puzzles and --seeds must be >= 1, got {args.n_puzzles}, {args.seeds}")
    if any(b < 1 for b in args.budgets):
        p.error(f"--budgets are multiples of an unguided pass, >= 1, got {args.budgets}")
    if args.temperature is not None and not args.temperature > 0:
        p.error(f"--temperature must be > 0, got {args.temperature}")
    if args.tiny:
        args.n_puzzles, args.seeds, args.budgets = 3, 1, [1.0, 2.0]
        args.out = Path("/tmp/scaling_sudoku_tiny")
    return args


# ------------------------------------------------------------------------------------ data


def minimal_puzzles(n: int, seed: int = DATA_SEED) -> list[tuple[list[int], list[int]]]:
    """`n` minimal (puzzle, solution) pairs; exits if a solution is a training grid or one of
    the other benchmarks' minimal or tuning puzzles."""
    from redge_guidance.sudoku import data as sd

    pairs = sd.generate_minimal_puzzles(n, seed)
    splits = sd.make_splits(2000, 64, 0, seed=0)  # the prior's training / validation grids
    seen = {tuple(g) for g in splits["train"] + splits["validation"]}
    if seed == DATA_SEED:
        others = sd.generate_minimal_puzzles(100, 4242) + sd.generate_minimal_puzzles(8, 777)
        seen |= {tuple(s) for _, s in others}
    shared = sum(tuple(s) in seen for _, s in pairs)
    if shared:
        raise SystemExit(f"{shared} puzzles share a grid with training or tuning; change the seed")
    return pairs


class Pieces:
    """The solver's denoiser and reward, a pipeline ranking by the proposal (the solver's) and
    one ranking by the prior (guided SMC's)."""

    def __init__(self) -> None:
        from pipelines import MaskedDiffusionPipeline, MaskedDiffusionScheduler
        from redge_guidance.sudoku import SudokuSolver, default_guidance

        solver = SudokuSolver.from_pretrained(
            guidance=None, decode="sample", temperature=1.0, restarts=0
        )
        self.reward, self.pipe = solver.reward, solver.pipeline
        config = solver.pipeline.scheduler.config
        scheduler = MaskedDiffusionScheduler.from_config(config, ranking="prior")
        self.prior_pipe = MaskedDiffusionPipeline(model=solver.denoiser, scheduler=scheduler)
        self.prior_pipe.set_progress_bar_config(disable=True)
        self.guidance = default_guidance()


def run_method(pieces: Pieces, name: str, n: int, pairs, seed: int, smc: dict) -> dict:
    """One search of every puzzle of `pairs` with method `name` at setting `n`; `smc` holds the
    SMC rows' λ (`"smc"`, `"guided_smc"`) and the guided proposals' `"kl_weight"`."""
    from redge_guidance.cli.sudoku_search import conflicting_cells
    from redge_guidance.search import BestOfNConfig, RefineConfig, SMCConfig, search
    from redge_guidance.sudoku import layout as sl
    from redge_guidance.sudoku.results import puzzles_to_tensor
    from rewards import sudoku_violations

    _, kind, guided, _, _ = METHODS[name]
    grid = puzzles_to_tensor([p for p, _ in pairs])  # (B, 81)
    pipe, remask_fn = pieces.pipe, None
    if kind == "best-of-n":
        config = BestOfNConfig(num_candidates=n, batch_size=n, return_candidates=False)
    elif kind == "smc":
        lam = smc[name]
        config = SMCConfig(num_particles=n, temperature=lam, pick="reward", return_particles=False)
        pipe = pieces.prior_pipe if guided else pipe
    else:
        config, remask_fn = RefineConfig(rounds=n, keep_best=True), conflicting_cells
    guidance = pieces.guidance if guided else None
    if guided and kind == "smc":
        from redge_guidance.sudoku import default_guidance

        guidance = default_guidance(kl_weight=smc["kl_weight"])
    result = search(
        pipe,
        pieces.reward,
        sl.encode_puzzles(grid),
        config,
        guidance=guidance,
        fixed_mask=sl.fixed_positions(grid),
        num_inference_steps=STEPS,
        generator=torch.Generator().manual_seed(seed),
        remask_fn=remask_fn,
    )
    grids = sl.decode_solutions(result.sequences).cpu()  # (B, 81)
    solutions = torch.tensor([s for _, s in pairs])
    spent = result.spent
    ess = None
    if kind == "smc":  # mean ESS / K over steps and puzzles
        ess = float(result.ess_history.double().mean()) / n
    return {
        "ess_fraction": ess,
        "solved": (grids == solutions).all(dim=1).tolist(),
        "violations": sudoku_violations(grids).float().tolist(),
        "cpu_seconds": spent.cpu_seconds,
        "wall_seconds": spent.wall_seconds,
        "denoiser_forwards": spent.denoiser_forwards,
        "reward_forwards": spent.reward_forwards,
    }


# ------------------------------------------------------------------------------------ budgets


def setting_for(cal: dict, name: str, budget_seconds: float) -> int:
    """The smallest setting of `name` whose cost, interpolated linearly through its two
    calibrated settings (`cal[name] = [[n0, s0], [n1, s1]]`, CPU s per puzzle), reaches
    `budget_seconds` per puzzle (the smallest setting when even it costs more)."""
    (n0, s0), (n1, s1) = cal[name]
    slope = max((s1 - s0) / (n1 - n0), 1e-9)
    if budget_seconds <= s0:
        return n0
    return n0 + math.ceil((budget_seconds - s0) / slope - 1e-9)


def calibrate(pieces: Pieces, pairs, smc: dict) -> dict:
    """CPU seconds per puzzle of every method at its two smallest settings, on `pairs`, and of
    one unguided pass (the median of three, after a warm-up)."""
    run_method(pieces, "unguided", 1, pairs, 0, smc)  # warm-up, not counted
    runs = [run_method(pieces, "unguided", 1, pairs, s, smc)["cpu_seconds"] for s in range(3)]
    cal = {"unguided_seconds": sorted(runs)[1] / len(pairs)}  # the median of three
    for name, (_, _, _, n0, _) in METHODS.items():
        if name == "unguided":
            continue
        points = []
        for n in (n0, n0 + 1):
            row = run_method(pieces, name, n, pairs, 12345, smc)
            points.append([n, row["cpu_seconds"] / len(pairs)])
        cal[name] = points
        print(f"calibration {name}: {points}", flush=True)
    return cal


# ------------------------------------------------------------------------------------ report


def _pm(mean: float, se: float, digits: int) -> str:
    return f"{mean:.{digits}f}" if math.isnan(se) else f"{mean:.{digits}f} ± {se:.{digits}f}"


def _mean_se(values: list[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, float("nan")
    var = sum((v - m) ** 2 for v in values) / (len(values) - 1)
    return m, math.sqrt(var / len(values))


def summarise(result: dict) -> list[dict]:
    """One row per (method, budget) present in the cells: means and s.e. over seeds."""
    rows = []
    for name in METHODS:
        for budget in result["budgets"]:
            cells = [
                c for c in result["cells"].values() if c["method"] == name and c["budget"] == budget
            ]
            if not cells:
                continue
            n_p = len(cells[0]["solved"])
            solved = [100 * sum(c["solved"]) / n_p for c in cells]
            viol = [sum(c["violations"]) / n_p for c in cells]
            cpu = [c["cpu_seconds"] / n_p for c in cells]
            ess = [c["ess_fraction"] for c in cells if c.get("ess_fraction") is not None]
            rows.append(
                {
                    "method": name,
                    "budget": budget,
                    "setting": cells[0]["setting"],
                    "seeds": len(cells),
                    "solved": _mean_se(solved),
                    "violations": _mean_se(viol),
                    "cpu_per_puzzle": _mean_se(cpu)[0],
                    "cost": _mean_se(cpu)[0] / result["unguided_seconds"],
                    "ess": _mean_se(ess)[0] if ess else None,
                }
            )
    return rows


def verdict(rows: list[dict], budgets: list[float]) -> list[str]:
    """Whether guided SMC has the highest solved rate at each budget (issue 12's target)."""
    lines = []
    for budget in budgets:
        at = {r["method"]: r for r in rows if r["budget"] == budget and r["method"] != "unguided"}
        if "guided_smc" not in at or len(at) < 2:
            continue
        mine = at.pop("guided_smc")["solved"][0]
        best = max(at, key=lambda k: at[k]["solved"][0])
        gap = mine - at[best]["solved"][0]
        word = "beats" if gap > 0 else ("ties" if gap == 0 else "trails")
        lines.append(
            f"- {budget:g}x: SMC with guided proposals {mine:.1f}% {word} the best other method "
            f"({METHODS[best][0]}, {at[best]['solved'][0]:.1f}%) by {gap:+.1f} points."
        )
    return lines


def render(result: dict) -> str:
    m = result["machine"]
    rows = summarise(result)
    clues = result["clues"]
    lines = [
        "# Inference-time scaling on minimal Sudoku puzzles",
        "",
        f"Command: `{result['command']}`. {len(clues)} minimal puzzles (data seed "
        f"{result['data_seed']}, {min(clues)}-{max(clues)} clues, mean "
        f"{sum(clues) / len(clues):.1f}), seeds {result['seeds']}, {STEPS} steps, sampled "
        f"commits, confidence order; SMC λ = {result['smc']['smc']:g}, guided SMC λ = "
        f"{result['smc']['guided_smc']:g} with guidance kl_weight {result['smc']['kl_weight']:g} "
        "(from `--tune`). One unguided pass: "
        f"{result['unguided_seconds']:.3f} CPU s per puzzle (calibration). Machine: "
        f"{m['processor']}, {m['cpu_count']} cores, torch {m['torch']}, {m['torch_threads']} "
        f"thread(s), load average at the start {m.get('load_average')}.",
        "",
    ]
    header = ["method", "budget", "setting", "cost (x unguided)", "solved %", "violations / grid"]
    header += ["CPU s / puzzle", "mean ESS / K"]
    table = []
    for r in rows:
        unit = METHODS[r["method"]][4]
        (s, s_se), (v, v_se) = r["solved"], r["violations"]
        table.append(
            [
                METHODS[r["method"]][0],
                f"{r['budget']:g}x",
                f"{unit} = {r['setting']}",
                f"{r['cost']:.1f}",
                _pm(s, s_se, 1),
                _pm(v, v_se, 2),
                f"{r['cpu_per_puzzle']:.2f}",
                "-" if r["ess"] is None else f"{r['ess']:.2f}",
            ]
        )
    lines += _common.md_table(header, table, "llrrrrrr")
    lines += [
        "",
        "Mean ± s.e. over seeds. A cell runs the smallest setting whose calibrated cost reaches "
        "the budget; the cost column is what the cell measured (the smallest guided setting "
        "costs more than 1x; large settings overshoot, since the calibration's slope between "
        "the two smallest settings underestimates them; refinement skips solved grids, so its "
        "rounds cost less than calibrated). Solved: the grid is the puzzle's unique solution. "
        "Mean ESS / K: SMC's effective sample size after each step's reweighting, over steps, "
        "puzzles and seeds. `SMC with guided proposals` at K = 1 is one guided pass whose "
        "positions are ranked by the prior; `guidance` at N = 1 is the solver's guided pass, "
        "ranked by the guided logits.",
        "",
        "Target (issue 12): on minimal puzzles SMC with guided proposals beats every other "
        "method at equal compute.",
        "",
        *verdict(rows, result["budgets"]),
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ runs


def tuned(out: Path) -> dict:
    """The settings of `--tune` that solved the most tuning puzzles: λ of each SMC row, and the
    guided proposals' KL weight (ties: the larger λ, closer to the model, then the default KL)."""
    cells = _common.read_results(out / "scaling_sudoku_tuning.json")["cells"]

    def best(name: str) -> dict:
        mine = [c for c in cells if c["method"] == name]
        return max(mine, key=lambda c: (sum(c["solved"]), c["temperature"], -c["order"]))

    smc, guided = best("smc"), best("guided_smc")
    return {"smc": smc["temperature"], "guided_smc": guided["temperature"], **guided["kl"]}


def tune(args: argparse.Namespace, pieces: Pieces) -> None:
    """λ in `LAMBDAS` for both SMC rows, and the guided proposals' KL weight (the solver's
    0.3, or λ), at K = 4 on 8 minimal puzzles of the tuning seed, search seed 0."""
    pairs = minimal_puzzles(8, TUNING_SEED)
    cells = []
    for lam in LAMBDAS:
        for name, kl in (("smc", 0.3), ("guided_smc", 0.3), ("guided_smc", lam)):
            smc = {"smc": lam, "guided_smc": lam, "kl_weight": kl}
            row = run_method(pieces, name, 4, pairs, 0, smc)
            cell = {"method": name, "temperature": lam, "kl": {"kl_weight": kl}, **row}
            cells.append({**cell, "order": len(cells)})
            print(name, lam, kl, sum(row["solved"]), flush=True)
    lines = ["# SMC settings on tuning puzzles", ""]
    lines += [
        f"Command: `{_common.command_line('scaling_sudoku', args.argv)}`. 8 minimal puzzles of "
        f"seed {TUNING_SEED}, K = 4, search seed 0.",
        "",
    ]
    table = [
        [
            METHODS[c["method"]][0],
            f"{c['temperature']:g}",
            f"{c['kl']['kl_weight']:g}" if c["method"] == "guided_smc" else "-",
            f"{sum(c['solved'])} / 8",
            f"{c['ess_fraction']:.2f}",
        ]
        for c in cells
    ]
    header = ["method", "λ", "guidance kl_weight", "solved", "mean ESS / K"]
    lines += _common.md_table(header, table, "lrrrr") + [""]
    result = {"machine": _common.machine_info("cpu"), "cells": cells}
    _common.write_results(args.out, "scaling_sudoku_tuning", result, "\n".join(lines), echo=True)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    args.argv = argv
    if args.report_only:
        result = _common.read_results(args.out / "scaling_sudoku.json")
        _common.write_results(args.out, "scaling_sudoku", result, render(result), echo=True)
        return result
    _common.set_threads(args.threads)
    pieces = Pieces()
    if args.tune:
        tune(args, pieces)
        return {}
    if args.tiny and not (args.out / "scaling_sudoku_tuning.json").is_file():
        smc = {"smc": LAMBDAS[-1], "guided_smc": LAMBDAS[-1], "kl_weight": 0.3}
    else:
        smc = tuned(args.out)
    if args.temperature is not None:
        smc.update(smc=args.temperature, guided_smc=args.temperature)
    pairs = minimal_puzzles(args.n_puzzles)
    store = _common.CellStore(args.out / "scaling_sudoku.json")
    data = store.data
    data.update(
        command=_common.command_line("scaling_sudoku", argv),
        data_seed=DATA_SEED,
        seeds=list(range(args.seeds)),
        budgets=args.budgets,
        smc=smc,
        clues=[sum(1 for d in p if d) for p, _ in pairs],
    )
    data.setdefault("machine", _common.machine_info("cpu"))
    if "calibration" not in data:
        data["calibration"] = calibrate(pieces, pairs[:CALIBRATION_PUZZLES], smc)
        store.save()
    cal = data["calibration"]
    data["unguided_seconds"] = cal["unguided_seconds"]
    for seed in range(args.seeds):
        for budget in args.budgets:
            for name in METHODS:
                if name == "unguided" and budget != args.budgets[0]:
                    continue
                key = f"{name}|{budget:g}|{seed}"
                if key in store:
                    continue
                n = (
                    1
                    if name == "unguided"
                    else setting_for(cal, name, budget * data["unguided_seconds"])
                )
                row = run_method(pieces, name, n, pairs, seed, smc)
                store.put(
                    key, {"method": name, "budget": budget, "seed": seed, "setting": n, **row}
                )
                print(key, n, sum(row["solved"]), f"{row['cpu_seconds']:.1f}s", flush=True)
                _common.write_results(args.out, "scaling_sudoku", data, render(data))
    _common.write_results(args.out, "scaling_sudoku", data, render(data), echo=True)
    return data


if __name__ == "__main__":
    main()
