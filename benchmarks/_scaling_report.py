"""The reports of `benchmarks/scaling.py`: rows averaged over seeds, markdown tables, the plot."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import _common
from _scaling_methods import METHODS, TARGETS

METRICS = ("cost_x", "reward", "vader", "vader_on_target", "ppl", "pll", "d1", "d2")


def aggregate(result: dict) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for c in result["cells"].values():
        groups.setdefault((c["target"], c["method"], c["budget"]), []).append(c)
    rows = []
    for (target, method, budget), cs in sorted(
        groups.items(), key=lambda kv: (kv[0][0], METHODS.index(kv[0][1]), kv[0][2])
    ):
        row = dict(target=target, method=method, budget=budget, seeds=len(cs))
        row["knob"] = sorted({c["knob"] for c in cs})
        for m in METRICS:
            vals = [c[m] for c in cs]
            row[m] = statistics.fmean(vals)
            row[m + "_se"] = (
                statistics.stdev(vals) / math.sqrt(len(vals)) if len(vals) > 1 else float("nan")
            )
        rows.append(row)
    return rows


def fmt(row: dict, m: str, digits: int = 2) -> str:
    se = row[m + "_se"]
    return f"{row[m]:.{digits}f}" + ("" if math.isnan(se) else f" ± {se:.{digits}f}")


def setup_text(result: dict) -> str:
    """The report's first sentences: the command(s), the machine and the grid's size.

    Results written through `_common.machine_info` (a `processor` key) get a "Machine:" sentence
    with the load; older files (the script's own record, a `cpu` key) keep their committed text.
    """
    st, m = result["settings"], result["machine"]
    command = f"Command: `{result['command']}`" + "".join(
        f", then `{c}`" for c in result.get("later_commands", [])
    )
    size = f"{st['prompts']} held-out prompts x {st['samples']} rows, {st['length']} new tokens, "
    if "processor" not in m:
        return (
            f"{command}. {size}{st['steps']} denoising steps, torch on {st['threads']} thread(s) "
            f"on {m['cpu']} ({m['cpu_count']} CPUs, shared)"
        )
    return (
        f"{command}. Machine: {m['processor']}, {m['cpu_count']} cores (shared; load "
        f"{m.get('load_average')} at the last command's start), torch {m['torch']} on "
        f"{st['threads']} thread(s). {size}{st['steps']} denoising steps"
    )


def markdown(result: dict, rows: list[dict]) -> str:
    cal = result["calibration"]
    lines = [
        "# Inference-time scaling, judged by models that did not steer",
        "",
        setup_text(result) + f"; unguided batch {cal['unguided']:.2f} CPU s (the 1x). "
        "Knob: N (best-of-N), K (SMC), inner Adam steps (guidance), rounds (refine). "
        "`cost` is the measured CPU time / "
        "unguided. `vader`: mean compound of the continuation; `on target`: share on the target "
        "side; `ppl`: judge-LM perplexity of the continuation; `pll`: the generator's own "
        "pseudo-log-likelihood (nats/token); `reward`: the steered MiniLM reward (signed).",
        "",
    ]
    for target in TARGETS:
        ref = result.get("reference", {}).get(target)
        sub = [r for r in rows if r["target"] == target]
        if not sub:
            continue
        lines += [
            f"## Target: {target}",
            "",
            "| method | budget | knob | cost | reward | vader | on target | ppl | pll | d-1 "
            "| d-2 |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        if ref:
            lines.append(
                f"| held-out text | - | - | - | {ref['reward']:.2f} | {ref['vader']:.2f} | "
                f"{ref['vader_on_target']:.2f} | {ref['ppl']:.1f} | {ref['pll']:.2f} | "
                f"{ref['d1']:.2f} | {ref['d2']:.2f} |"
            )
        for r in sub:
            lines.append(
                f"| {r['method']} | {r['budget']:g}x | {'/'.join(map(str, r['knob']))} | "
                f"{fmt(r, 'cost_x', 1)} | {fmt(r, 'reward')} | {fmt(r, 'vader')} | "
                f"{fmt(r, 'vader_on_target')} | {fmt(r, 'ppl', 1)} | {fmt(r, 'pll')} | "
                f"{fmt(r, 'd1')} | {fmt(r, 'd2')} |"
            )
        lines.append("")
    return "\n".join(lines)


def pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points (ppl, signed vader) no other point beats on both (lower ppl, higher vader)."""
    front, best = [], -math.inf
    for x, y in sorted(points):
        if y > best:
            front.append((x, y))
            best = y
    return front


def plot(result: dict, rows: list[dict], path: Path) -> str:
    """Draw the judge/cost and judge/fluency panels into `path`; what happened, in a line."""
    plt = _common.pyplot()
    if plt is None:
        return "matplotlib is not installed (pip install 'redge-guidance[benchmarks]'): no plot"
    targets = [t for t in TARGETS if any(r["target"] == t for r in rows)]
    fig, axes = plt.subplots(len(targets), 2, figsize=(12, 4.5 * len(targets)), squeeze=False)
    colors = dict(zip(METHODS, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    for i, target in enumerate(targets):
        sign = 1.0 if target == "positive" else -1.0
        ax, ax2 = axes[i]
        points = []
        for method in METHODS:
            sub = [r for r in rows if r["target"] == target and r["method"] == method]
            if not sub:
                continue
            xs, ys = [r["cost_x"] for r in sub], [sign * r["vader"] for r in sub]
            style = {"color": colors[method], "label": method}
            ax.errorbar(xs, ys, yerr=[r["vader_se"] for r in sub], marker="o", capsize=3, **style)
            ppl = [r["ppl"] for r in sub]
            ax2.scatter(ppl, ys, **style)
            points += list(zip(ppl, ys, strict=True))
        ref = result.get("reference", {}).get(target)
        if ref:
            star = {"marker": "*", "s": 150, "color": "gray", "label": "held-out text"}
            ax2.scatter([ref["ppl"]], [sign * ref["vader"]], **star)
        front = pareto(points)
        if front:
            xs, ys = zip(*front, strict=True)
            ax2.step(xs, ys, where="post", color="black", alpha=0.4, label="Pareto front")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("measured CPU cost (x unguided)")
        ax2.set_xlabel("judge-LM perplexity of the continuation (lower = more fluent)")
        for a in (ax, ax2):
            a.set_ylabel(f"VADER compound toward {target} (signed)")
            a.grid(alpha=0.3)
        ax.set_title(f"{target}: judge vs compute")
        ax2.set_title(f"{target}: judge vs fluency")
    axes[0][1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"wrote {path}"
