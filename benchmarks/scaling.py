"""Inference-time scaling on the embedded Shakespeare model, scored by judges that did not steer.

Prompts are the speaker and first words of speeches from the held-out plays
(`examples/text_corpus.DEFAULT_HELD_OUT_PLAYS`). Each prompt is continued by `--length` tokens
of the embedded masked diffusion model (`--steps` denoising steps, random unmasking, temperature
1), toward positive and toward negative sentiment, under the MiniLM sentiment reward
(`--reward sentiment:positive` / `sentiment:negative`). Methods (`redge_guidance.search`):

- `unguided`: the model alone (the 1x cost every budget is a multiple of);
- `best_of_n` (knob N), `smc` (K particles, the model's own proposals);
- `redge`, `straight_through`: guidance on every step (knob: inner Adam steps);
- `redge_top64`: redge guidance on the model's top 64 tokens per position (`top_k=64`);
- `smc_guided`: SMC whose proposals are redge-guided (knob K);
- `smc_guided_lite`: the same with a cheaper proposal (`LITE_GUIDANCE`: the model's top 64
  tokens, 1 inner step, every other denoising step guided), so that a budget buys more particles;
- `refine`: a first pass, then rounds of gradient-selected remasking (knob: rounds).

Budgets are multiples of the unguided run's measured CPU seconds (`--budgets`, 1 to 16). A
calibration pass measures every method at knob 1 and 2 on the same batch; a cell runs the smallest
knob whose (linearly interpolated) cost reaches the cell's, and records the cost it really spent. A
method whose smallest knob costs more than sqrt(2) times the cell is left out of it.

Judges, on the continuation (the tokens the method wrote):

- `vader`: VADER's compound score of the decoded continuation (`nltk-vader-sentiment`), its mean
  and the share of samples strictly on the target's side;
- `ppl`: perplexity under the independent judge LM (`redge_guidance/assets/judge_lm`, a small
  GPT-2 trained on the training plays by `examples/train_judge_lm.py`), each continuation read
  after its prompt;
- `pll`: the generator's own pseudo-log-likelihood (the `fluency` reward spec: 4 masked passes,
  nats/token over prompt and continuation);
- `d1`, `d2`: distinct uni-/bigrams of the continuations' token ids, pooled over the cell;
- `reward`: the steered reward itself (signed toward the target), for contrast.

Tables give mean ± standard error over seeds. Every finished cell is written at once; a rerun
with the same settings skips it. The results record the machine, its load and the command
(`_common.machine_info`, `_common.command_line`).

    python benchmarks/scaling.py --quick        # a couple of minutes, /tmp/scaling_quick
    python benchmarks/scaling.py                # benchmarks/results/scaling.{json,md,png}
    python benchmarks/scaling.py --report-only  # rewrite the .md and .png from the .json
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Ahead of this folder, whose rewards.py would shadow the `rewards` package.
sys.path.insert(0, str(ROOT))
# This folder, for the script's private modules also when it is loaded from its file (tests).
if str(HERE) not in sys.path:
    sys.path.append(str(HERE))

import _common  # noqa: E402
import torch  # noqa: E402
from _scaling_methods import (  # noqa: E402
    GUIDE_KL,
    GUIDE_LR,
    LAMBDA,
    METHODS,
    TARGETS,
    Bench,
    make_prompts,
)
from _scaling_report import aggregate, markdown, plot  # noqa: E402

from redge_guidance.text.judges import JUDGE_LM_DIR as JUDGE_DIR  # noqa: E402

CALIBRATION_SEED = 12345


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--quick", action="store_true", help="a couple of minutes, into /tmp")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--samples", type=int, default=2, help="rows per prompt")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--budgets", type=float, nargs="+", default=[1, 2, 4, 8, 16], help="x unguided")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    p.add_argument("--length", type=int, default=16, help="new tokens")
    p.add_argument("--steps", type=int, default=4, help="denoising steps")
    p.add_argument("--max-knob", type=int, default=64, help="cap on N, K, inner steps, rounds")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--judge", type=Path, default=JUDGE_DIR, help="judge LM folder")
    p.add_argument("--out", type=Path, default=None, help="default benchmarks/results")
    p.add_argument("--fresh", action="store_true", help="drop finished cells and calibration")
    p.add_argument(
        "--report-only", action="store_true", help="rewrite the .md and .png from the .json"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.prompts, args.samples, args.seeds, args.budgets = 2, 2, [0], [1.0, 8.0]
        args.length, args.max_knob = 12, 8
        args.out = args.out or Path("/tmp/scaling_quick")
    args.out = args.out or ROOT / "benchmarks" / "results"
    for name in ("prompts", "samples", "length", "steps", "max_knob", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}.")
    if min(args.budgets) < 1:
        p.error(f"--budgets must be >= 1 (multiples of the unguided cost), got {args.budgets}.")
    return args


# ------------------------------------------------------------------------------ the grid


def batch(prompts: list[dict], samples: int, length: int, pad_id: int, mask_id: int):
    """Left-padded `(P * samples, W + length)` ids, mask tokens appended, and attention mask."""
    width = max(len(p["ids"]) for p in prompts)
    rows = [p for p in prompts for _ in range(samples)]
    ids = torch.full((len(rows), width + length), pad_id, dtype=torch.long)
    am = torch.zeros_like(ids)
    for i, p in enumerate(rows):
        ids[i, width - len(p["ids"]) : width] = torch.tensor(p["ids"])
        am[i, width - len(p["ids"]) :] = 1
    ids[:, width:] = mask_id
    return ids, am


def calibrate(bench: Bench, ids, am, cal: dict, log) -> dict:
    """Fills `cal` with the CPU seconds of unguided (median of 3, after a warm-up run) and of each
    method not yet in it at knob 1 and 2."""
    target = bench.args.targets[0]
    if "unguided" not in cal:
        runs = [
            bench.run("unguided", 0, target, ids, am, CALIBRATION_SEED + i)[1] for i in range(4)
        ]
        cal["unguided"] = statistics.median(runs[1:])
    methods = cal.setdefault("methods", {})
    for method in bench.args.methods:
        if method == "unguided" or method in methods:
            continue
        methods[method] = [
            bench.run(method, k, target, ids, am, CALIBRATION_SEED)[1] for k in (1, 2)
        ]
        log(
            f"calibration {method}: knob 1 {methods[method][0]:.2f}s, knob 2 "
            f"{methods[method][1]:.2f}s (unguided {cal['unguided']:.2f}s)"
        )
    return cal


def knob_for(cal: dict, method: str, budget: float, max_knob: int) -> int | None:
    """Smallest knob whose interpolated cost reaches `budget` x unguided; None when even knob 1
    costs more than sqrt(2) times the cell."""
    goal = budget * cal["unguided"]
    c1, c2 = cal["methods"][method]
    if c1 > math.sqrt(2) * goal:
        return None
    if c1 >= goal or c2 <= c1:
        return 1
    return min(max_knob, 1 + math.ceil((goal - c1) / (c2 - c1)))


def settings_of(args: argparse.Namespace, prompts: list[dict]) -> dict:
    """What the cells depend on; a rerun with other settings refuses to mix them."""

    def sha(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()[:12]

    names = ("prompts", "samples", "length", "steps", "threads", "max_knob")
    return {
        **{name: getattr(args, name) for name in names},
        "prompt_ids_sha256": sha(json.dumps([p["ids"] for p in prompts]).encode()),
        "judge_record_sha256": sha((args.judge / "training_record.json").read_bytes()),
        **dict(smc_temperature=LAMBDA, guidance_lr=GUIDE_LR, guidance_kl_weight=GUIDE_KL),
    }


def run_grid(args: argparse.Namespace, argv: list[str] | None = None) -> dict:
    """Calibrate, then run every missing cell of the grid, saving after each; `argv` (default
    `sys.argv[1:]`) is recorded as the command."""
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "scaling.json"
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.0f}s] {msg}", flush=True)

    bench = Bench(args)
    tok = bench.tm.tokenizer
    prompts = make_prompts(tok, args.prompts, args.length)
    ids, am = batch(prompts, args.samples, args.length, tok.pad_token_id, bench.tm.mask_token_id)
    settings = settings_of(args, prompts)
    result = {} if args.fresh or not path.is_file() else json.loads(path.read_text())
    if result and result.get("settings") != settings:
        raise SystemExit(f"{path} holds other settings; pass --fresh or --out elsewhere.")
    command = _common.command_line("scaling", argv)
    # The machine (with its load) of the latest command; a rerun that adds cells replaces it.
    result.update(settings=settings, machine=_common.machine_info("cpu"))
    # The first command made the grid; a later one (more methods, seeds) adds cells to it.
    if result.setdefault("command", command) != command:
        later = result.setdefault("later_commands", [])
        later += [] if command in later else [command]
    result["prompts"] = [p["text"] for p in prompts]
    cells = result.setdefault("cells", {})
    cal = calibrate(bench, ids, am, result.setdefault("calibration", {}), log)
    _common.save_json(path, result)
    ref = ids[:: args.samples].clone()  # one row per prompt, its true continuation
    ref[:, -args.length :] = torch.tensor([p["reference"] for p in prompts])
    refs = result.setdefault("reference", {})
    for t in set(args.targets) - set(refs):
        refs[t] = bench.judge_all(ref, am[:: args.samples], t)
    # Seeds outermost, so that a stopped run holds whole seeds of every target and method.
    for seed, target, method in itertools.product(args.seeds, args.targets, args.methods):
        for budget in [1.0] if method == "unguided" else args.budgets:
            key = f"{target}|{method}|{budget:g}|{seed}"
            knob = 0 if method == "unguided" else knob_for(cal, method, budget, args.max_knob)
            if key in cells or knob is None:
                continue
            seqs, cpu = bench.run(method, knob, target, ids, am, seed)
            cells[key] = c = {
                **dict(target=target, method=method, budget=budget, seed=seed, knob=knob),
                **dict(cpu_s=cpu, cost_x=cpu / cal["unguided"]),
                **bench.judge_all(seqs, am, target),
            }
            _common.save_json(path, result)
            log(
                f"{key} knob {knob}: {c['cost_x']:.1f}x reward {c['reward']:+.2f} vader "
                f"{c['vader']:+.2f} ({c['vader_on_target']:.0%} on target) ppl {c['ppl']:.0f}"
            )
    return result


def render(result: dict) -> str:
    """The markdown report of a results dict (its rows averaged again from its cells)."""
    return markdown(result, aggregate(result))


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = parse_args(argv)
    if args.report_only:
        result = _common.read_results(args.out / "scaling.json")
    else:
        result = run_grid(args, argv)
        result["rows"] = aggregate(result)
    _common.write_results(args.out, "scaling", result, render(result))
    print(plot(result, result["rows"], args.out / "scaling.png"))


if __name__ == "__main__":
    main()
