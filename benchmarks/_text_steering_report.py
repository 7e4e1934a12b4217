"""The report of `benchmarks/text_steering.py`: per-(method, budget) rows from its results JSON,
the markdown table, and the reward-vs-fluency / reward-vs-compute plot."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import _common

ESTIMATORS = ("straight_through", "gumbel_softmax", "reinmax", "redge")
PROMPT_WORDS = 5  # prompt = "SPEAKER: " + the first PROMPT_WORDS words of a speech


def key(method: str, budget: int, seed: int) -> str:
    """A cell's key in the results JSON."""
    return f"{method}|{budget}|{seed}"


def mean_se(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    m = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return m, se


METRICS = ("reward", "pll", "distinct1", "distinct2", "cpu_s", "wall_s", "frac_positive")


def aggregate(result: dict) -> list[dict]:
    """One row per (method, budget): mean and standard error over the finished seeds."""
    st = result["settings"]
    n_seq = st["prompts"] * st["samples"]
    groups: dict[tuple[str, int], list[dict]] = {}
    for cell in result["cells"].values():
        groups.setdefault((cell["method"], cell["budget"]), []).append(cell)
    order = [("unguided", 0)]
    for b in st["budgets"]:
        order += [("best_of_n", b)] + [(e, b) for e in ESTIMATORS]
    curves = result.get("bon_curves", {})
    rows = []
    unguided = {c["seed"]: c for c in groups.get(("unguided", 0), [])}
    for method, budget in order:
        cells = sorted(groups.get((method, budget), []), key=lambda c: c["seed"])
        if not cells:
            continue
        row: dict[str, Any] = {
            "method": method,
            "budget": budget,
            "seeds": [c["seed"] for c in cells],
        }
        for m in METRICS:
            vals = [c[m] / n_seq if m.endswith("_s") else c[m] for c in cells]
            row[m], row[m + "_se"] = mean_se(vals)
        gains = [
            c["reward"] - unguided[c["seed"]]["reward"] for c in cells if c["seed"] in unguided
        ]
        row["gain"], row["gain_se"] = mean_se(gains)
        dpll = [c["pll"] - unguided[c["seed"]]["pll"] for c in cells if c["seed"] in unguided]
        row["pll_drop"], row["pll_drop_se"] = mean_se([-d for d in dpll])
        if method == "best_of_n":
            row["n"] = [c["n"] for c in cells]
        elif method != "unguided":
            # best-of-N reward at this cell's own CPU time (from the same seed's BoN rounds)
            ns, bon = [], []
            for c in cells:
                curve = curves.get(str(c["seed"]))
                if curve and key(method, budget, c["seed"]) in curve["matched_n"]:
                    n = curve["matched_n"][key(method, budget, c["seed"])]
                    ns.append(n)
                    bon.append(curve["rounds"][n - 1]["reward"])
            row["bon_n"] = ns
            row["bon_reward"], row["bon_reward_se"] = mean_se(bon)
            diff = [c["reward"] - b for c, b in zip(cells, bon, strict=False)]
            row["vs_bon"], row["vs_bon_se"] = (
                mean_se(diff) if len(diff) == len(cells) else (float("nan"), float("nan"))
            )
        rows.append(row)
    return rows


def fmt(m: float, se: float, digits: int = 3) -> str:
    if math.isnan(m):
        return "-"
    if math.isnan(se):
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {se:.{digits}f}"


def markdown(result: dict, rows: list[dict]) -> str:
    st, mc = result["settings"], result["machine"]
    ref = result.get("reference", {})
    ung = next((r for r in rows if r["method"] == "unguided"), None)
    seeds = sorted({s for r in rows for s in r["seeds"]})
    lines = [
        "# Steering the embedded Shakespeare model toward positive sentiment",
        "",
        f"Command: `{result.get('command', '')}`",
        "",
        f"Machine: {mc['processor']}, {mc['cpu_count']} CPUs (shared with other jobs; load average "
        f"{', '.join(f'{x:.1f}' for x in mc['load_average'])} at the last write), "
        f"{mc['platform']}, Python {mc['python']}, torch {mc['torch']} on {mc['threads']} "
        f"thread(s), transformers {mc['transformers']}.",
        "",
        f"Setup: {st['prompts']} prompts (speaker + first {PROMPT_WORDS} words of speeches from "
        f"the held-out plays) x {st['samples']} samples x seeds {seeds}; "
        f"{st['length']} new tokens, {st['steps']} denoising steps (linear schedule, random order, "
        f"temperature 1), all {st['prompts'] * st['samples']} sequences of a seed in one batch; "
        f"reward `--reward {st['reward']}`; guidance on every step, Adam lr "
        f"{st['lr']} and kl_weight {st['kl_weight']} for budgets {st['budgets']}, decode "
        "`sample`, estimators at their default options.",
        "",
        "Mean ± standard error over seeds of the per-seed means. `reward`: sentiment of the whole "
        "sequence (VADER valence units). `PLL`: the prior's pseudo-log-likelihood of the generated "
        "tokens, nats/token (higher = more fluent under the model). `d-1`/`d-2`: distinct uni-/"
        "bigrams of the generated token ids. `CPU s`: process CPU seconds per sample (generation, "
        "and for best-of-N the reward scoring of every candidate); `wall s` likewise in wall time "
        "(inflated by other jobs on the machine). `BoN @ same CPU`: best-of-N with N the smallest "
        "number of unguided rounds whose CPU time reaches that guided cell's, from the same seed. "
        "The reference row scores the held-out continuations (one per prompt, so its d-1/d-2 pool "
        "a quarter as many n-grams as a method's and read higher: compare methods with each "
        "other).",
        "",
        "| method | inner steps | reward | Δ reward | PLL | PLL drop | d-1 | d-2 | CPU s | wall s "
        "| × unguided | BoN @ same CPU: N | BoN reward | guided − BoN |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    if ref:
        lines.append(
            f"| held-out text (reference) | - | {ref['reward']:.3f} | - | {ref['pll']:.3f} | - | "
            f"{ref['distinct1']:.3f} | {ref['distinct2']:.3f} | - | - | - | - | - | - |"
        )
    base_cpu = ung["cpu_s"] if ung else float("nan")
    for r in rows:
        name = {"unguided": "unguided", "best_of_n": "best-of-N"}.get(r["method"], r["method"])
        budget = "-" if r["method"] == "unguided" else str(r["budget"])
        if r["method"] == "best_of_n":
            name = f"best-of-N (N = {'/'.join(map(str, r['n']))}, time of redge)"
        bon = ("-", "-", "-")
        if "bon_n" in r:
            bon = (
                "/".join(map(str, r["bon_n"])) or "-",
                fmt(r["bon_reward"], r["bon_reward_se"]),
                fmt(r["vs_bon"], r["vs_bon_se"]),
            )
        lines.append(
            f"| {name} | {budget} | {fmt(r['reward'], r['reward_se'])} | "
            f"{fmt(r['gain'], r['gain_se']) if r['method'] != 'unguided' else '-'} | "
            f"{fmt(r['pll'], r['pll_se'])} | "
            f"{fmt(r['pll_drop'], r['pll_drop_se']) if r['method'] != 'unguided' else '-'} | "
            f"{fmt(r['distinct1'], r['distinct1_se'])} | "
            f"{fmt(r['distinct2'], r['distinct2_se'])} | "
            f"{r['cpu_s']:.3f} | {r['wall_s']:.3f} | {r['cpu_s'] / base_cpu:.1f} | "
            f"{bon[0]} | {bon[1]} | {bon[2]} |"
        )
    lines += ["", *verdict(rows), ""]
    lines += examples_md(result)
    lines += tuning_md(result)
    return "\n".join(lines) + "\n"


def tuning_md(result: dict) -> list[str]:
    tune = result.get("tuning")
    if not tune:
        return []
    rows = tune["rows"]
    base = next(r for r in rows if r["estimator"] == "unguided")
    lines = [
        "## Tuning (`--tune`)",
        "",
        f"redge only, on {len(tune['prompts'])} other held-out prompts (speeches halfway between "
        f"the benchmark's) x {tune['samples']} samples, seed {tune['seed']}, {tune['length']} "
        f"tokens, {tune['steps']} steps. Rule: per budget, the highest reward whose PLL is at "
        "most 1 nat/token below unguided. `in-step gain`: mean over guided steps of the trace's "
        "`reward_after - reward_before` (editable positions decoded by argmax); `KL`: mean over "
        "guided steps of the summed KL(q || prior) after the inner loop, nats.",
        "",
        f"Unguided: reward {base['reward']:.3f}, PLL {base['pll']:.3f}.",
        "",
        "| inner steps | lr | kl_weight | reward | PLL | PLL drop | in-step gain | KL |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["estimator"] == "unguided":
            continue
        tr = r.get("trace", {})
        lines.append(
            f"| {r['budget']} | {r['lr']:g} | {r['kl_weight']:g} | {r['reward']:.3f} | "
            f"{r['pll']:.3f} | {base['pll'] - r['pll']:.3f} | "
            f"{tr.get('in_step_gain_mean', float('nan')):+.3f} | "
            f"{tr.get('kl_after_mean', float('nan')):.2f} |"
        )
    lines.append("")
    return lines


def verdict(rows: list[dict]) -> list[str]:
    out = []
    for r in rows:
        if r["method"] != "redge" or "vs_bon" not in r or math.isnan(r["vs_bon"]):
            continue
        beats = r["vs_bon"] > 0
        out.append(
            f"Target (redge beats best-of-N on reward at equal compute), {r['budget']} inner "
            f"steps: {'met' if beats else 'not met'}: redge {r['reward']:.3f} vs best-of-N "
            f"{r['bon_reward']:.3f} (difference {fmt(r['vs_bon'], r['vs_bon_se'])}), at a PLL drop "
            f"of {fmt(r['pll_drop'], r['pll_drop_se'])} nats/token vs unguided."
        )
    return out


def examples_md(result: dict) -> list[str]:
    cells = result["cells"]
    seed = min((c["seed"] for c in cells.values()), default=None)
    if seed is None:
        return []
    lines = [f"## Samples (seed {seed}, first two prompts)", ""]
    st = result["settings"]
    picks = [("unguided", 0)] + [(m, st["budgets"][-1]) for m in ("best_of_n", "redge")]
    for method, b in picks:
        c = cells.get(key(method, b, seed))
        if not c:
            continue
        label = method if method == "unguided" else f"{method}, {b} inner steps"
        lines.append(f"**{label}**")
        lines.append("")
        ex = c["examples"]
        for e in ex[:2] + ex[st["samples"] : st["samples"] + 1]:
            lines.append(f"- *{e['prompt']}* {e['continuation']}")
        lines.append("")
    return lines


def plot(result: dict, rows: list[dict], path: Path) -> str | None:
    """Write the two-panel plot; a note instead when matplotlib is missing."""
    plt = _common.pyplot()
    if plt is None:
        return "matplotlib is not installed (pip install 'redge-guidance[benchmarks]'): no plot"
    import matplotlib.ticker

    st = result["settings"]
    n_seq = st["prompts"] * st["samples"]

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 5.8))
    colors = {
        "straight_through": "tab:blue",
        "gumbel_softmax": "tab:orange",
        "reinmax": "tab:green",
        "redge": "tab:red",
        "best_of_n": "tab:purple",
        "unguided": "black",
    }
    markers = {b: mk for b, mk in zip(st["budgets"], "os^D", strict=False)}
    ref = result.get("reference")
    if ref:
        ax.scatter(
            [ref["pll"]], [ref["reward"]], marker="*", s=150, color="gray", label="held-out text"
        )
    for r in rows:
        label = r["method"] if r["method"] == "unguided" else f"{r['method']}, {r['budget']} inner"
        kw = dict(
            color=colors[r["method"]],
            marker=markers.get(r["budget"], "x"),
            capsize=3,
            linestyle="none",
            label=label,
        )
        ax.errorbar(r["pll"], r["reward"], xerr=r["pll_se"], yerr=r["reward_se"], **kw)
        ax2.errorbar(r["cpu_s"], r["reward"], yerr=r["reward_se"], **kw)
    ax.set_xlabel("fluency: PLL of generated tokens under the prior (nats/token)")
    ax.set_ylabel(f"reward ({st['reward']})")
    ax.set_title("reward vs fluency (mean ± s.e. over seeds)")
    ax.grid(alpha=0.3)
    # best-of-N curve: mean over seeds of best-so-far reward vs cumulative CPU time per sample
    curves = [c["rounds"] for c in result.get("bon_curves", {}).values()]
    if curves:
        n = min(len(c) for c in curves)
        xs = [statistics.fmean(c[i]["cpu_s"] for c in curves) / n_seq for i in range(n)]
        ys = [statistics.fmean(c[i]["reward"] for c in curves) for i in range(n)]
        ax2.plot(xs, ys, color=colors["best_of_n"], alpha=0.6, label="best-of-N, N = 1, 2, ...")
    ax2.set_xscale("log")
    ax2.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax2.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax2.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax2.set_xlabel("CPU seconds per sample (1 thread)")
    ax2.set_ylabel(f"reward ({st['reward']})")
    ax2.set_title("reward vs compute")
    ax2.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    extra = [(h, lb) for h, lb in zip(h2, l2, strict=True) if lb not in labels]
    fig.legend(
        handles + [h for h, _ in extra],
        labels + [lb for _, lb in extra],
        loc="lower center",
        ncol=6,
        fontsize=8,
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    _common.save_figure(fig, path)
    return None
