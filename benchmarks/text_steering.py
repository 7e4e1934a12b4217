"""Steering the embedded Shakespeare model toward positive sentiment: reward vs fluency vs time.

Prompts are the speaker and the first words of speeches from the two held-out plays
(`examples.text_corpus.DEFAULT_HELD_OUT_PLAYS`, never trained on). For each prompt the embedded
masked diffusion model (`redge_guidance/assets/shakespeare_mdm`) writes `--samples` continuations
of `--length` tokens in `--steps` denoising steps (`pipelines.MaskedDiffusionPipeline`, MDLM random
unmasking order, temperature 1), all `prompts x samples` sequences of a seed in one batch, with:

- `unguided`: the prior alone;
- guidance (`redge_guidance.RewardGuidance`, every denoising step guided) with the estimators
  `straight_through`, `gumbel_softmax`, `reinmax`, `redge`, at each budget of `--budgets` inner
  Adam steps per denoising step;
- `best_of_n`: N unguided samples per output slot, the one with the highest reward kept, with N the
  smallest number of rounds whose measured compute time reaches that of the guided run it is
  compared to (so best-of-N never gets less time than guidance). Round 0 is the seed's unguided
  cell; round r >= 1 draws with seed `(seed + 1) * 2**32 + r`, disjoint from every benchmark
  seed and from the other seeds' rounds.

The reward is the CLI's default `--reward sentiment:positive` (all-MiniLM-L6-v2 + the committed
linear VADER head, `redge_guidance.text_rewards`), read on the whole sequence (prompt and
continuation). Metrics, per (method, budget, seed) over its `prompts x samples` sequences:

- `reward`: mean reward of the final sequences (VADER valence units, about -4 to 4);
- `pll`: fluency, the prior's mean pseudo-log-likelihood of the generated tokens in nats/token:
  `mean_i log p(x_i | x without i)` over the `--length` generated positions, each scored by one
  forward of the embedded model with only that position masked (prompt and the other generated
  tokens visible, the `[MASK]` logit excluded as in sampling). Higher is more fluent under the
  prior; the held-out text itself is scored the same way as a reference;
- `distinct1`, `distinct2`: distinct n-grams / all n-grams of the generated token ids (WordPiece
  ids, n-grams inside each continuation), pooled over the cell's sequences;
- `cpu_s`, `wall_s`: generation time of the cell (for best-of-N: all N rounds of generation and
  reward scoring), process CPU seconds on `--threads` threads (what the equal-time matching uses:
  other processes on a shared machine barely move it) and wall seconds.

Tables report mean +- standard error over seeds (of the per-seed means; the prompts are the same
for every seed). The run is resumable: each finished (method, budget, seed) cell is written to the
JSON at once and skipped when the command is run again with the same settings.

    HF_HUB_OFFLINE=1 python benchmarks/text_steering.py            # the committed table
    HF_HUB_OFFLINE=1 python benchmarks/text_steering.py --quick    # smoke run, 1-2 min, /tmp
    HF_HUB_OFFLINE=1 python benchmarks/text_steering.py --tune     # lr x kl_weight grid (redge)
    python benchmarks/text_steering.py --tiny          # smoke test, seconds, /tmp
    python benchmarks/text_steering.py --report-only   # rewrite the .md and .png from the .json

Writes benchmarks/results/text_steering.{json,md,png} (folder: --out).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import time
from pathlib import Path
from typing import Any

import _common
import torch
from _text_steering_bench import (
    REWARD_SPEC,
    Bench,
    Prompt,
    batch_inputs,
    evaluate,
    examples,
    guidance_config,
    make_prompts,
    trace_summary,
)
from _text_steering_report import ESTIMATORS, aggregate, key, markdown, plot

_common.use_checkout()

NAME = "text_steering"
# Tuning prompts: speeches between the benchmark's ones (never the same speech).
TUNE_PROMPTS = 8
# Seed of the tuning run (the benchmark seeds are `--seeds`).
TUNE_SEED = 100
# (lr, kl_weight) per budget from `--tune` (see docs/text_steering.md): the highest tuning reward
# whose PLL is at most 1 nat/token below unguided. With one inner step the KL term has no
# gradient at the start point (phi = logits), so kl_weight does not matter there.
TUNED: dict[int, tuple[float, float]] = {1: (10.0, 0.03), 4: (3.0, 0.01)}
TUNED_OTHER = (3.0, 0.01)  # budgets that were not tuned
# Generator seed of best-of-N round r >= 1 of benchmark seed s: (s + 1) * 2**32 + r, so rounds
# never replay a benchmark seed (< 2**32) or another seed's rounds. Curves computed before this
# rule (rounds 1000 * s + r, which for s = 0 replayed the unguided cells of seeds 1, 2, ...) lack
# the marker and are recomputed on the next run.
BON_ROUND_SEEDS = "(seed + 1) * 2**32 + r"
SEED_LIMIT = 2**32


# --------------------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small smoke run, written to /tmp")
    p.add_argument(
        "--tiny", action="store_true", help="smoke test of seconds (2 prompts, redge), to /tmp"
    )
    p.add_argument(
        "--report-only", action="store_true", help="rewrite the .md and .png from the .json"
    )
    p.add_argument("--tune", action="store_true", help="lr x kl_weight grid for redge, then exit")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default: 1)")
    p.add_argument("--prompts", type=int, default=50, help="number of prompts (default: 50)")
    p.add_argument("--samples", type=int, default=4, help="samples per prompt (default: 4)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="default: 0 1 2")
    p.add_argument("--length", type=int, default=16, help="new tokens per sample (default: 16)")
    p.add_argument("--steps", type=int, default=4, help="denoising steps (default: 4)")
    p.add_argument(
        "--budgets", type=int, nargs="+", default=[1, 4], help="inner steps (default: 1 4)"
    )
    p.add_argument(
        "--estimators", nargs="+", default=list(ESTIMATORS), help=f"default: {' '.join(ESTIMATORS)}"
    )
    p.add_argument(
        "--lr",
        type=float,
        nargs="+",
        default=None,
        help="Adam lr, one or one per budget (default: the tuned values, TUNED)",
    )
    p.add_argument(
        "--kl-weight",
        type=float,
        nargs="+",
        default=None,
        help="one or one per budget (default: the tuned values, TUNED)",
    )
    p.add_argument("--tune-lr", type=float, nargs="+", default=[0.3, 1.0, 3.0], help="--tune grid")
    p.add_argument("--tune-kl", type=float, nargs="+", default=[0.03, 0.3], help="--tune grid")
    p.add_argument("--max-n", type=int, default=256, help="cap on best-of-N rounds (default: 256)")
    p.add_argument("--out", type=Path, default=None, help="folder (default: benchmarks/results)")
    p.add_argument("--fresh", action="store_true", help="ignore finished cells in the JSON")
    args = p.parse_args(argv)
    args.command = _common.command_line("text_steering", argv)
    if args.quick:
        args.prompts, args.samples, args.seeds = 4, 2, [0]
        args.length, args.steps, args.budgets, args.max_n = 8, 4, [1, 2], 16
        if args.out is None:
            args.out = Path("/tmp/text_steering_quick")
    if args.tiny:
        args.prompts, args.samples, args.seeds, args.estimators = 2, 1, [0], ["redge"]
        args.length, args.steps, args.budgets, args.max_n = 4, 2, [1], 2
        if args.out is None:
            args.out = Path("/tmp/text_steering_tiny")
    if args.out is None:
        args.out = _common.RESULTS
    for name in ("threads", "prompts", "samples", "length", "steps", "max_n"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if any(b < 1 for b in args.budgets):
        p.error(f"--budgets must all be >= 1, got {args.budgets}")
    if len(set(args.seeds)) != len(args.seeds):
        p.error(f"--seeds must be distinct, got {args.seeds}")
    if any(not 0 <= s < SEED_LIMIT for s in args.seeds):
        p.error(f"--seeds must be in [0, 2**32), got {args.seeds}")
    from redge_guidance.estimators import ESTIMATORS as REGISTRY

    bad = [e for e in args.estimators if e not in REGISTRY]
    if bad:
        p.error(f"--estimators {bad} unknown; valid: {', '.join(sorted(REGISTRY))}")
    for i, name in enumerate(("lr", "kl_weight")):
        values = getattr(args, name)
        if values is None:
            values = [TUNED.get(b, TUNED_OTHER)[i] for b in args.budgets]
        if len(values) == 1:
            values = values * len(args.budgets)
        if len(values) != len(args.budgets):
            p.error(
                f"--{name.replace('_', '-')} takes one value or one per budget "
                f"({len(args.budgets)}), got {values}"
            )
        setattr(args, name, values)
    if any(v <= 0 for v in args.lr) or any(v < 0 for v in args.kl_weight):
        p.error(f"--lr must be > 0 and --kl-weight >= 0, got {args.lr} and {args.kl_weight}")
    return args


# --------------------------------------------------------------------------------------- results


def settings_of(args: argparse.Namespace, prompts: list[Prompt]) -> dict[str, Any]:
    """What the cells' numbers depend on; a rerun with other settings refuses to mix them."""
    digest = hashlib.sha256(json.dumps([p.ids for p in prompts]).encode()).hexdigest()[:12]
    return {
        "reward": REWARD_SPEC,
        "prompts": len(prompts),
        "prompt_ids_sha256": digest,
        "samples": args.samples,
        "length": args.length,
        "steps": args.steps,
        "budgets": args.budgets,
        "lr": args.lr,
        "kl_weight": args.kl_weight,
        "max_n": args.max_n,
        "threads": args.threads,
        "scheduler": {"schedule": "linear", "order": "random", "temperature": 1.0},
    }


MACHINE_KEYS = {
    "platform": "platform",
    "processor": "processor",
    "cpu_count": "cpu_count",
    "python": "python",
    "torch": "torch",
    "transformers": "transformers",
    "threads": "torch_threads",
    "device": "device",
    "load_average": "load_average",
}


# --------------------------------------------------------------------------------------- runs


def run_benchmark(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{NAME}.json"
    t0 = time.perf_counter()
    bench = Bench(args)
    prompts = make_prompts(bench.tokenizer, args.prompts, args.length)
    settings = settings_of(args, prompts)
    store = _common.CellStore(path)
    result: dict[str, Any] = store.data
    if args.fresh or not result.get("cells"):
        for k in ("cells", "bon_curves", "reference", "rows", "settings"):
            result.pop(k, None)  # keeps the tuning section
    elif result.get("settings") != settings:
        raise SystemExit(
            f"{path} holds cells from other settings ({result.get('settings')}); pass --fresh "
            "to start over or --out to write elsewhere."
        )
    result.setdefault("cells", {})
    result.setdefault("bon_curves", {})
    machine = _common.machine_info(keys=MACHINE_KEYS)
    result.update(settings=settings, machine=machine, command=args.command)
    result["prompts"] = [{"play": p.play, "text": p.text} for p in prompts]
    cells: dict[str, Any] = result["cells"]
    n_before = len(cells)

    ids, am = batch_inputs(prompts, args.length, bench.tokenizer.pad_token_id, bench.mask_id)
    am_rep = am.repeat_interleave(args.samples, dim=0)
    n_seq = ids.shape[0] * args.samples
    ex_rows = list(range(min(8, n_seq)))
    length = args.length

    if "reference" not in result:
        ref = ids.clone()
        ref[:, -length:] = torch.tensor([p.reference for p in prompts])
        result["reference"] = evaluate(bench, ref, am, length)
        result["reference"]["examples"] = examples(bench, ref, am, length, range(min(4, len(ref))))
        store.save()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:7.0f}s] {msg}", flush=True)

    for seed in args.seeds:
        # 1. unguided
        k = key("unguided", 0, seed)
        if k not in cells:
            seqs, cpu, wall = bench.generate(ids, am, seed)
            cells[k] = {
                "method": "unguided",
                "budget": 0,
                "seed": seed,
                "cpu_s": cpu,
                "wall_s": wall,
                **evaluate(bench, seqs, am_rep, length),
                "examples": examples(bench, seqs, am_rep, length, ex_rows),
            }
            store.save()
        log(
            f"{k}: reward {cells[k]['reward']:+.3f} pll {cells[k]['pll']:.3f} "
            f"cpu {cells[k]['cpu_s']:.1f}s"
        )
        # 2. guided
        from redge_guidance import RewardGuidance

        for (bi, budget), est in itertools.product(enumerate(args.budgets), args.estimators):
            k = key(est, budget, seed)
            if k in cells:
                log(f"{k}: done (reward {cells[k]['reward']:+.3f})")
                continue
            cfg = guidance_config(est, budget, args.lr[bi], args.kl_weight[bi], record=False)
            guide = RewardGuidance(bench.reward, cfg, mask_token_id=bench.mask_id)
            seqs, cpu, wall = bench.generate(ids, am, seed, guidance=guide)
            cells[k] = {
                "method": est,
                "budget": budget,
                "seed": seed,
                "cpu_s": cpu,
                "wall_s": wall,
                "config": cfg.to_dict(),
                **evaluate(bench, seqs, am_rep, length),
                "trace": trace_summary(guide.trace),
                "examples": examples(bench, seqs, am_rep, length, ex_rows),
            }
            store.save()
            log(
                f"{k}: reward {cells[k]['reward']:+.3f} pll {cells[k]['pll']:.3f} "
                f"cpu {cpu:.1f}s wall {wall:.1f}s"
            )
        # 3. best-of-N, matched to every guided cell of this seed
        targets = {
            key(e, b, seed): cells[key(e, b, seed)]["cpu_s"]
            for b in args.budgets
            for e in args.estimators
        }
        missing = [b for b in args.budgets if key("best_of_n", b, seed) not in cells]
        curve = result["bon_curves"].get(str(seed), {})
        if missing or curve.get("round_seeds") != BON_ROUND_SEEDS:
            run_best_of_n(bench, args, store, ids, am, am_rep, seed, targets, log)
    result.pop("wall_seconds_last_run", None)
    if len(cells) > n_before:  # only a run that computed cells records its time
        result["wall_seconds_last_compute"] = time.perf_counter() - t0
    store.save()
    return result


def bon_round_seed(seed: int, r: int) -> int:
    """Generator seed of best-of-N round `r` of benchmark seed `seed` (BON_ROUND_SEEDS)."""
    return seed if r == 0 else (seed + 1) * SEED_LIMIT + r


def run_best_of_n(bench, args, store, ids, am, am_rep, seed, targets, log) -> None:
    """Unguided rounds (round 0 is the seed's unguided cell itself, round r >= 1 draws with
    `bon_round_seed(seed, r)`) until the cumulative CPU time reaches the largest guided time of
    the seed."""
    result = store.data
    cells = result["cells"]
    length = args.length
    goal = max(targets.values())
    best_r = best_seq = None
    cum_cpu = cum_wall = 0.0
    curve = []  # per round: cumulative times and best-so-far mean reward
    snapshots: dict[int, torch.Tensor] = {}
    needed: dict[str, int] = {}
    r = 0
    while True:
        seed_r = bon_round_seed(seed, r)
        seqs, cpu, wall = bench.generate(ids, am, seed_r)
        c0, w0 = time.process_time(), time.perf_counter()
        rew = bench.score(seqs, am_rep)
        cpu += time.process_time() - c0
        wall += time.perf_counter() - w0
        cum_cpu, cum_wall = cum_cpu + cpu, cum_wall + wall
        if best_r is None:
            best_r, best_seq = rew.clone(), seqs.clone()
        else:
            better = rew > best_r
            best_r = torch.where(better, rew, best_r)
            best_seq[better] = seqs[better]
        r += 1
        curve.append({"n": r, "cpu_s": cum_cpu, "wall_s": cum_wall, "reward": best_r.mean().item()})
        for k, t in targets.items():
            if k not in needed and cum_cpu >= t:
                needed[k] = r
        if any(needed.get(key(e, b, seed)) == r for e in ["redge"] for b in args.budgets):
            snapshots[r] = best_seq.clone()
        if cum_cpu >= goal or r >= args.max_n:
            break
    for k in targets:
        needed.setdefault(k, r)  # capped at --max-n
    result["bon_curves"][str(seed)] = {
        "rounds": curve,
        "matched_n": needed,
        "round_seeds": BON_ROUND_SEEDS,
    }
    # Full metrics for best-of-N at the time of redge (the estimator the target is about).
    for b in args.budgets:
        ref_key = key("redge" if "redge" in args.estimators else args.estimators[-1], b, seed)
        n = needed[ref_key]
        seqs = snapshots.get(n, best_seq)
        row = curve[n - 1]
        cells[key("best_of_n", b, seed)] = {
            "method": "best_of_n",
            "budget": b,
            "seed": seed,
            "n": n,
            "matched_to": ref_key,
            "cpu_s": row["cpu_s"],
            "wall_s": row["wall_s"],
            **evaluate(bench, seqs, am_rep, length),
            "examples": examples(bench, seqs, am_rep, length, range(min(8, seqs.shape[0]))),
        }
        log(
            f"best_of_n matched to {ref_key}: N={n} "
            f"reward {cells[key('best_of_n', b, seed)]['reward']:+.3f}"
        )
    store.save()


def run_tuning(args: argparse.Namespace) -> dict:
    """A small lr x kl_weight grid for redge at each budget on the tuning prompts (one seed,
    `record_rewards` on, so the trace shows whether the inner loop moves the reward)."""
    torch.set_num_threads(args.threads)
    bench = Bench(args)
    prompts = make_prompts(bench.tokenizer, TUNE_PROMPTS, args.length, tuning=True)
    ids, am = batch_inputs(prompts, args.length, bench.tokenizer.pad_token_id, bench.mask_id)
    am_rep = am.repeat_interleave(args.samples, dim=0)
    from redge_guidance import RewardGuidance

    rows = []
    seqs, cpu, _ = bench.generate(ids, am, TUNE_SEED)
    base = evaluate(bench, seqs, am_rep, args.length)
    rows.append({"estimator": "unguided", "budget": 0, "cpu_s": cpu, **base})
    print(
        f"unguided: reward {base['reward']:+.3f} pll {base['pll']:.3f} cpu {cpu:.1f}s", flush=True
    )
    lrs = args.tune_lr
    kls = args.tune_kl
    for budget, lr, kl in itertools.product(args.budgets, lrs, kls):
        cfg = guidance_config("redge", budget, lr, kl, record=True)
        guide = RewardGuidance(bench.reward, cfg, mask_token_id=bench.mask_id)
        seqs, cpu, _ = bench.generate(ids, am, TUNE_SEED, guidance=guide)
        m = evaluate(bench, seqs, am_rep, args.length)
        tr = trace_summary(guide.trace)
        rows.append(
            {
                "estimator": "redge",
                "budget": budget,
                "lr": lr,
                "kl_weight": kl,
                "cpu_s": cpu,
                **m,
                "trace": tr,
                "examples": examples(bench, seqs, am_rep, args.length, range(2)),
            }
        )
        print(
            f"redge b={budget} lr={lr:g} kl={kl:g}: reward {m['reward']:+.3f} "
            f"pll {m['pll']:.3f} d2 {m['distinct2']:.3f} in-step gain "
            f"{tr.get('in_step_gain_mean', float('nan')):+.3f} kl {tr.get('kl_after_mean', 0):.2f} "
            f"cpu {cpu:.1f}s",
            flush=True,
        )
    out = {
        "prompts": [p.text for p in prompts],
        "samples": args.samples,
        "seed": TUNE_SEED,
        "length": args.length,
        "steps": args.steps,
        "rows": rows,
        "machine": _common.machine_info(keys=MACHINE_KEYS),
        "command": args.command,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{NAME}.json"
    result = _common.load_json(path, {})
    old = result.get("tuning")
    same = ("prompts", "samples", "seed", "length", "steps")
    if old and all(old[k] == out[k] for k in same):
        # Several grids on the same tuning set: keep the earlier points this run did not redo.
        def point(r):
            return (r["estimator"], r["budget"], r.get("lr"), r.get("kl_weight"))

        done = {point(r) for r in rows}
        out["rows"] = [r for r in old["rows"] if point(r) not in done] + rows
        out["rows"].sort(key=lambda r: (r["budget"], r.get("lr") or 0, r.get("kl_weight") or 0))
        out["command"] = old["command"] + " ; " + out["command"]
    result["tuning"] = out
    _common.save_json(path, result)
    print(f"wrote tuning to {path}")
    return out


def write_reports(result: dict, out: Path) -> None:
    rows = aggregate(result)
    result["rows"] = rows
    _common.save_json(out / f"{NAME}.json", result)
    (out / f"{NAME}.md").write_text(markdown(result, rows))
    note = plot(result, rows, out / f"{NAME}.png")
    print(note or f"wrote {out / NAME}.json, .md and .png")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.report_only:
        write_reports(_common.read_results(args.out / f"{NAME}.json"), args.out)
        return
    if args.tune:
        run_tuning(args)
        return
    result = run_benchmark(args)
    write_reports(result, args.out)


if __name__ == "__main__":
    main()
