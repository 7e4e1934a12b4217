"""What guidance on the model's top-k tokens (`GuidanceConfig(top_k=k)`) does to quality.

Two parts (`--part`):

- `text`: the embedded Shakespeare model steered toward positive and negative sentiment by the
  MiniLM reward, exactly as in `benchmarks/scaling.py` (same held-out prompts, batch, judges and
  guidance settings: lr 3, kl_weight 0.01), with redge and straight-through guidance at a fixed
  number of inner Adam steps (`--inner-steps`, default 5: the 16x column of the scaling
  benchmark) and `top_k` in `--top-k` (default 16 64 256 full; the vocabulary has 12,902
  tokens). Each cell reports the steered reward, VADER (mean compound and share on target), the
  judge LM's perplexity, the generator's pseudo-log-likelihood, distinct-1/2 and CPU seconds;
  `unguided` is the baseline row, and `truncated` the control that separates the two effects of
  a support: the sampler drawing from the model's top k alone, with no reward (guidance with a
  learning rate of 1e-9, so φ stays the model's logits restricted to the support).
- `sudoku`: the shipped solver, `SudokuSolver.from_pretrained(guidance=default_guidance(top_k=k))`
  with `k` in `--sudoku-top-k` (default 2 3 5 full), on the first `--puzzles` tuning puzzles
  (seed 777, 26-38 clues) and as many minimal puzzles (data seed 4242, 22-28 clues): solved rate,
  violations per grid, seconds per puzzle. The digits are the only tokens the prior may propose,
  so any `k >= 9` is the full support.

Every finished cell is written at once and a rerun skips it (other settings are refused;
`--fresh` starts over).

    python benchmarks/support.py --tiny    # seconds to a minute, /tmp/support_tiny
    python benchmarks/support.py           # benchmarks/results/support.{json,md}
    python benchmarks/support.py --report-only    # rewrite support.md from support.json
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
import time
from pathlib import Path

import _common

_common.use_checkout()

import scaling  # noqa: E402
import torch  # noqa: E402

ESTIMATORS = ("redge", "straight_through")
METHODS = ("unguided", "truncated", *ESTIMATORS)
TRUNCATION_LR = 1e-9  # Adam moves φ by ~lr per step: the support restriction without the reward
TEXT_METRICS = ("cpu_s", "reward", "vader", "vader_on_target", "ppl", "pll", "d1", "d2")


def top_k_value(text: str) -> int | None:
    """`"full"` (or `"none"`) is None, the whole vocabulary; else an integer >= 1."""
    if text.lower() in ("full", "none"):
        return None
    try:
        k = int(text)
    except ValueError:
        k = 0
    if k < 1:
        raise argparse.ArgumentTypeError(f"a top-k must be an integer >= 1 or 'full', got {text!r}")
    return k


def k_name(k: int | None) -> str:
    return "full" if k is None else str(k)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--part", nargs="+", default=["text", "sudoku"], choices=["text", "sudoku"])
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--samples", type=int, default=2, help="rows per prompt")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--targets", nargs="+", default=list(scaling.TARGETS), choices=scaling.TARGETS)
    p.add_argument("--estimators", nargs="+", default=list(ESTIMATORS), choices=ESTIMATORS)
    p.add_argument("--top-k", type=top_k_value, nargs="+", default=[16, 64, 256, None])
    p.add_argument("--inner-steps", type=int, default=5, help="Adam steps per denoising step")
    p.add_argument("--length", type=int, default=16, help="new tokens")
    p.add_argument("--steps", type=int, default=4, help="denoising steps")
    p.add_argument("--sudoku-top-k", type=top_k_value, nargs="+", default=[2, 3, 5, None])
    p.add_argument("--puzzles", type=int, default=48, help="per Sudoku puzzle set")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tiny", action="store_true", help="a smoke run into /tmp/support_tiny")
    p.add_argument("--out", type=Path, default=None, help="default benchmarks/results")
    p.add_argument("--fresh", action="store_true", help="drop finished cells")
    p.add_argument("--report-only", action="store_true", help="only rewrite the .md from the .json")
    args = p.parse_args(argv)
    if args.tiny:
        args.prompts, args.samples, args.seeds, args.length, args.inner_steps = 2, 1, [0], 8, 1
        args.top_k, args.sudoku_top_k, args.puzzles = [4, None], [3, None], 2
        args.out = args.out or Path("/tmp/support_tiny")
    args.out = args.out or _common.RESULTS
    for name in ("prompts", "samples", "inner_steps", "length", "steps", "puzzles", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}.")
    args.judge, args.methods = scaling.JUDGE_DIR, list(ESTIMATORS)
    return args


def settings_of(args: argparse.Namespace) -> dict:
    names = ("prompts", "samples", "inner_steps", "length", "steps", "puzzles", "threads")
    return {
        **{name: getattr(args, name) for name in names},
        **dict(guidance_lr=scaling.GUIDE_LR, guidance_kl_weight=scaling.GUIDE_KL),
    }


# ------------------------------------------------------------------------------ the runs


def run_text(args: argparse.Namespace, store: _common.CellStore, log) -> None:
    bench = scaling.Bench(args)
    tok = bench.tm.tokenizer
    prompts = scaling.make_prompts(tok, args.prompts, args.length)
    ids, am = scaling.batch(
        prompts, args.samples, args.length, tok.pad_token_id, bench.tm.mask_token_id
    )
    store.data["prompts"] = [p["text"] for p in prompts]
    ref = ids[:: args.samples].clone()  # one row per prompt, its true continuation
    ref[:, -args.length :] = torch.tensor([p["reference"] for p in prompts])
    refs = store.data.setdefault("reference", {})
    for t in set(args.targets) - set(refs):
        refs[t] = bench.judge_all(ref, am[:: args.samples], t)
    bench.run("unguided", 0, args.targets[0], ids, am, 0)  # warm-up, untimed
    runs = [("unguided", None)] + [("truncated", k) for k in args.top_k if k is not None]
    runs += list(itertools.product(args.estimators, args.top_k))
    for seed, target, (method, k) in itertools.product(args.seeds, args.targets, runs):
        k_label = "-" if method == "unguided" else k_name(k)
        key = f"text|{target}|{method}|{k_label}|{seed}"
        if key in store:
            continue
        knob = 0 if method == "unguided" else args.inner_steps
        if method == "truncated":
            seqs, cpu = truncated_run(bench, k, target, ids, am, seed)
        else:
            seqs, cpu = bench.run(method, knob, target, ids, am, seed, top_k=k)
        cell = dict(target=target, method=method, top_k=k_label, seed=seed, cpu_s=cpu)
        store.put(key, {**cell, **bench.judge_all(seqs, am, target)})
        c = store.cells[key]
        log(
            f"{key}: {cpu:.1f} s reward {c['reward']:+.2f} vader {c['vader']:+.2f} "
            f"({c['vader_on_target']:.0%} on target) ppl {c['ppl']:.0f} pll {c['pll']:.2f}"
        )


def truncated_run(bench, k: int, target: str, ids, am, seed: int):
    """The sampler on the model's top `k` tokens, the reward's pull switched off: one inner step
    at lr 1e-9 (the hook hands back the logits restricted to the support)."""
    from redge_guidance import GuidanceConfig
    from redge_guidance.search import BestOfNConfig, search

    guide = GuidanceConfig(
        estimator="redge", n_opt_steps=1, lr=TRUNCATION_LR, record_rewards=False, top_k=k
    )
    config = BestOfNConfig(num_candidates=1, batch_size=1, return_candidates=False)
    g = torch.Generator().manual_seed(seed)
    res = search(
        bench.pipe,
        bench.rewards[target],
        ids,
        config,
        guidance=guide,
        attention_mask=am,
        num_inference_steps=bench.args.steps,
        generator=g,
    )
    return res.sequences, res.spent.cpu_seconds


def sudoku_sets(n: int) -> dict[str, list[tuple[list[int], list[int]]]]:
    """The first `n` tuning puzzles (26-38 clues) and `n` minimal puzzles, with solutions."""
    import _sudoku_data
    import sudoku_minimal

    cache = argparse.Namespace(
        cache=_common.ROOT / "runs" / "sudoku_cache", min_clues=26, max_clues=38
    )
    puzzles, solutions = _sudoku_data.tuning_puzzles(cache)
    tuning = list(zip(puzzles[:n].tolist(), solutions[:n].tolist(), strict=True))
    return {"tuning": tuning, "minimal": sudoku_minimal.puzzle_set("minimal", n, tuning=False)}


def run_sudoku(args: argparse.Namespace, store: _common.CellStore, log) -> None:
    from redge_guidance.sudoku import SudokuSolver, default_guidance

    for name, pairs in sudoku_sets(args.puzzles).items():
        for k in args.sudoku_top_k:
            key = f"sudoku|{name}|{k_name(k)}|0"
            if key in store:
                continue
            solver = SudokuSolver.from_pretrained(guidance=default_guidance(top_k=k))
            puzzles = torch.tensor([p for p, _ in pairs])
            start = time.process_time()
            result = solver.solve(puzzles, generator=torch.Generator().manual_seed(0))
            seconds = time.process_time() - start
            solved = [
                bool(ok) and g == s
                for ok, g, (_, s) in zip(
                    result.solved, result.solutions.tolist(), pairs, strict=True
                )
            ]
            store.put(
                key,
                dict(
                    puzzles=name,
                    top_k=k_name(k),
                    n=len(pairs),
                    solved=sum(solved) / len(pairs),
                    violations=sum(result.violations) / len(pairs),
                    cpu_s_per_puzzle=seconds / len(pairs),
                ),
            )
            c = store.cells[key]
            log(f"{key}: solved {c['solved']:.1%}, violations {c['violations']:.2f}/grid")


# ------------------------------------------------------------------------------ reports


def mean_se(values: list[float]) -> tuple[float, float]:
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return statistics.fmean(values), se


def text_rows(cells: dict) -> list[dict]:
    """Mean and standard error over seeds per (target, method, top_k)."""
    groups: dict[tuple, list[dict]] = {}
    for c in cells.values():
        if "target" in c:
            groups.setdefault((c["target"], c["method"], c["top_k"]), []).append(c)
    order = {m: i for i, m in enumerate(METHODS)}

    def rank(key: tuple) -> tuple:
        target, method, k = key
        size = math.inf if k == "full" else 0 if k == "-" else int(k)
        return (scaling.TARGETS.index(target), order[method], size)

    rows = []
    for key in sorted(groups, key=rank):
        cs = groups[key]
        row = dict(target=key[0], method=key[1], top_k=key[2], seeds=len(cs))
        for m in TEXT_METRICS:
            row[m], row[m + "_se"] = mean_se([c[m] for c in cs])
        rows.append(row)
    return rows


def fmt(row: dict, m: str, digits: int = 2) -> str:
    se = row[m + "_se"]
    return f"{row[m]:.{digits}f}" + ("" if math.isnan(se) else f" ± {se:.{digits}f}")


def markdown(data: dict) -> str:
    st, m = data["settings"], data["machine"]
    lines = [
        "# Guidance on the model's top-k tokens: the quality trade-off",
        "",
        f"Command: `{data['command']}`"
        + "".join(f", then `{c}`" for c in data.get("later_commands", []))
        + f". Machine: {m['processor']}, {m['cpu_count']} cores "
        f"(shared; load {m.get('load_average')}), torch {m['torch']} on {st['threads']} thread(s).",
        "",
    ]
    rows = text_rows(data["cells"])
    if rows:
        lines += [
            "## Text: sentiment guidance on the embedded model (vocabulary 12,902)",
            "",
            f"{st['prompts']} held-out prompts x {st['samples']} rows, {st['length']} new tokens, "
            f"{st['steps']} denoising steps; guidance with {st['inner_steps']} inner Adam steps, "
            f"lr {st['guidance_lr']:g}, kl_weight {st['guidance_kl_weight']:g}; mean ± s.e. over "
            "seeds. `vader`: mean compound of the continuation, signed toward the target; `on "
            "target`: share of samples on the target side; `ppl`: judge-LM perplexity; `pll`: the "
            "generator's pseudo-log-likelihood (nats/token); `reward`: the steered MiniLM reward "
            "(signed); `cpu s`: the batch's CPU seconds. `truncated` is the control (the sampler "
            "on the model's top k, no reward's pull): its CPU time includes the hook's one reward "
            "forward and backward per step, which a plain top-k sampler would not spend.",
            "",
        ]
        header = ["target", "method", "top_k", "reward", "vader", "on target", "ppl", "pll"]
        header += ["d-1", "d-2", "cpu s"]
        table = []
        for r in rows:
            sign = 1.0 if r["target"] == "positive" else -1.0
            vader = dict(r, vader=sign * r["vader"])
            table.append(
                [r["target"], r["method"], r["top_k"]]
                + [fmt(r, "reward"), fmt(vader, "vader"), fmt(r, "vader_on_target")]
                + [fmt(r, "ppl", 1), fmt(r, "pll"), fmt(r, "d1"), fmt(r, "d2")]
                + [fmt(r, "cpu_s", 1)]
            )
        for target, ref in data.get("reference", {}).items():
            sign = 1.0 if target == "positive" else -1.0
            table.append(
                [target, "held-out text", "-", f"{ref['reward']:.2f}"]
                + [f"{sign * ref['vader']:.2f}", f"{ref['vader_on_target']:.2f}"]
                + [f"{ref['ppl']:.1f}", f"{ref['pll']:.2f}", f"{ref['d1']:.2f}"]
                + [f"{ref['d2']:.2f}", "-"]
            )
        lines += _common.md_table(header, table, "lllrrrrrrrr") + [""]
    sudoku = [c for c in data["cells"].values() if "puzzles" in c]
    if sudoku:
        lines += [
            "## Sudoku: the shipped solver's guidance with `top_k`",
            "",
            "`SudokuSolver.from_pretrained(guidance=default_guidance(top_k=k))`, solver seed 0. "
            "The prior proposes only the 9 digits, so `k >= 9` is the full support (`full`).",
            "",
        ]
        table = [
            [c["puzzles"], c["top_k"], c["n"], f"{100 * c['solved']:.1f}%"]
            + [f"{c['violations']:.2f}", f"{c['cpu_s_per_puzzle']:.3f}"]
            for c in sudoku
        ]
        header = ["puzzles", "top_k", "n", "solved", "violations / grid", "CPU s / puzzle"]
        lines += _common.md_table(header, table, "llrrrr") + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    _common.set_threads(args.threads)
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.0f}s] {msg}", flush=True)

    path = args.out / "support.json"
    if args.report_only:
        data = _common.read_results(path)
        _common.write_results(args.out, "support", data, markdown(data))
        return data
    if args.fresh and path.is_file():
        path.unlink()
    store = _common.CellStore(path)
    settings = settings_of(args)
    if store.data.get("settings", settings) != settings:
        raise SystemExit(f"{path} holds other settings; pass --fresh or --out elsewhere.")
    store.data.update(settings=settings, machine=_common.machine_info("cpu"))
    command = _common.command_line("support", argv)
    # The first command made the file; later ones (another part, more seeds) add cells to it.
    if store.data.setdefault("command", command) != command:
        later = store.data.setdefault("later_commands", [])
        later += [] if command in later else [command]
    if "text" in args.part:
        run_text(args, store, log)
    if "sudoku" in args.part:
        run_sudoku(args, store, log)
    store.data["text_rows"] = text_rows(store.cells)
    store.save()
    _common.write_results(args.out, "support", store.data, markdown(store.data))
    return store.data


if __name__ == "__main__":
    sys.exit(main() and None)
