"""The report of `benchmarks/sudoku.py`: its results JSON as a markdown table and a plot."""

from __future__ import annotations

import statistics
from pathlib import Path

import _common

# The shipped solver's denoising steps and restarts: the main table and the plot are about them.
DEFAULT_STEPS = 12
DEFAULT_RESTARTS = 4


def estimator_label(cell: dict) -> str:
    """The cell's estimator with its non-default options, e.g. `redge t_1=0.9`."""
    options = cell.get("estimator_options") or {}
    return cell["estimator"] + "".join(f" {k}={v}" for k, v in options.items())


def summarise(results: dict) -> list[dict]:
    """One row per (method, estimator, budget, n_puzzles, device, steps), decodes side by side."""
    groups: dict[tuple, dict[str, list[dict]]] = {}
    for r in results["cells"].values():
        steps = r.get("steps", 1 if r["method"] == "no_prior" else DEFAULT_STEPS)
        key = (
            r["method"],
            estimator_label(r),
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
        if method == "best_of_n":  # cells from before the rule was recorded rounded N
            row["n_rule"] = next(iter(by_decode.values()))[0].get("n_rule", "nearest")
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
            if not r.get("fixed_n") and r.get("n_rule") == "nearest":
                budget_txt += " (nearest N)"
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
        "the best Sudoku reward kept; N is the smallest number of samples whose time (N x the "
        "prior's own time with sampled commits, same device) reaches the wall time of the "
        "winning estimator's guided run at that budget, so best-of-N never gets less time than "
        "guidance. Rows marked `(nearest N)` ran before this rule, with N rounded to the nearest "
        "integer instead (it can fall short of the guided time). `fixed N` rows: N set by "
        "`--best-of-n-size`. Rows with fewer puzzles/seeds ran on the first puzzles of the test "
        "set.",
        "",
        "Generated by "
        + ", then ".join(f"`{c}`" for c in meta.get("commands", [meta.get("command")]))
        + f" (last cell {meta.get('finished')}).",
        "",
    ]
    path.write_text("\n".join(lines))


def write_plot(results: dict, path: Path) -> str | None:
    plt = _common.pyplot()
    if plt is None:
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
                color = "tab:olive" if " " in r["estimator"] else "tab:brown"  # with options
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
    _common.save_figure(fig, path)
    return None
