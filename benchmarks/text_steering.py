"""Steering the embedded Shakespeare model toward positive sentiment: reward vs fluency vs time.

Prompts are the speaker and the first words of speeches from the two held-out plays
(`text_data.DEFAULT_HELD_OUT_PLAYS`, never trained on). For each prompt the embedded masked
diffusion model (`redge_guidance/assets/shakespeare_mdm`) writes `--samples` continuations of
`--length` tokens in `--steps` denoising steps (`pipelines.MaskedDiffusionPipeline`, MDLM random
unmasking order, temperature 1), all `prompts x samples` sequences of a seed in one batch, with:

- `unguided`: the prior alone;
- guidance (`redge_guidance.RewardGuidance`, every denoising step guided) with the estimators
  `straight_through`, `gumbel_softmax`, `reinmax`, `redge`, at each budget of `--budgets` inner
  Adam steps per denoising step;
- `best_of_n`: N unguided samples per output slot, the one with the highest reward kept, with N the
  smallest number of rounds whose measured compute time reaches that of the guided run it is
  compared to (so best-of-N never gets less time than guidance).

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

Writes benchmarks/results/text_steering.{json,md,png} (folder: --out).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import os
import platform
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

ESTIMATORS = ("straight_through", "gumbel_softmax", "reinmax", "redge")
REWARD_SPEC = "sentiment:positive"
NAME = "text_steering"
# Prompt = "SPEAKER: first words"; a speech qualifies when it has at least `length` more tokens,
# so the held-out continuation (the reference row) stays inside the speech.
PROMPT_WORDS = 5
# Tuning prompts: speeches between the benchmark's ones (never the same speech).
TUNE_PROMPTS = 8
# Seed of the tuning run (the benchmark seeds are `--seeds`).
TUNE_SEED = 100
# (lr, kl_weight) per budget from `--tune` (see docs/text_steering.md): the highest tuning reward
# whose PLL is at most 1 nat/token below unguided. With one inner step the KL term has no
# gradient at the start point (phi = logits), so kl_weight does not matter there.
TUNED: dict[int, tuple[float, float]] = {1: (10.0, 0.03), 4: (3.0, 0.01)}
TUNED_OTHER = (3.0, 0.01)  # budgets that were not tuned


# --------------------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny smoke run, written to /tmp")
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
    if args.quick:
        args.prompts, args.samples, args.seeds = 4, 2, [0]
        args.length, args.steps, args.budgets, args.max_n = 8, 4, [1, 2], 16
        if args.out is None:
            args.out = Path("/tmp/text_steering_quick")
    if args.out is None:
        args.out = ROOT / "benchmarks" / "results"
    for name in ("threads", "prompts", "samples", "length", "steps", "max_n"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if any(b < 1 for b in args.budgets):
        p.error(f"--budgets must all be >= 1, got {args.budgets}")
    if len(set(args.seeds)) != len(args.seeds):
        p.error(f"--seeds must be distinct, got {args.seeds}")
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


# --------------------------------------------------------------------------------------- data


@dataclass
class Prompt:
    play: str
    speaker: str
    text: str  # "SPEAKER: first words"
    ids: list[int]  # prompt token ids (no special tokens)
    reference: list[int]  # the next `length` tokens of the held-out speech


def held_out_speeches() -> list[tuple[str, str, str]]:
    """`(play, speaker, speech text)` of every speech in the held-out plays, in play order."""
    from examples.text_corpus import DEFAULT_HELD_OUT_PLAYS, clean_play, read_plays

    raw = read_plays()
    speeches = []
    for play in DEFAULT_HELD_OUT_PLAYS:
        # Split the markdown at `**SPEAKER**` lines (clean_play turns them into "SPEAKER:").
        parts = re.split(r"^\*\*([^*\n]+?)\*\*[ \t]*$", raw[play], flags=re.MULTILINE)
        for speaker, body in zip(parts[1::2], parts[2::2], strict=True):
            text = " ".join(clean_play(body).split())
            if text:
                speeches.append((play, speaker.strip(), text))
    return speeches


def make_prompts(tokenizer, n: int, length: int, *, tuning: bool = False) -> list[Prompt]:
    """`n` prompts spread evenly over the held-out speeches long enough for a reference.

    Half from each held-out play (the first play gets the odd one). The benchmark takes the
    speeches at evenly spaced ranks; the tuning set (`tuning=True`) takes speeches halfway between
    two benchmark speeches, so the two sets never share a speech.
    """
    by_play: dict[str, list[Prompt]] = {}
    for play, speaker, text in held_out_speeches():
        words = text.split()
        if len(words) <= PROMPT_WORDS:
            continue
        prompt_text = f"{speaker}: {' '.join(words[:PROMPT_WORDS])}"
        full = tokenizer(f"{speaker}: {text}", add_special_tokens=False)["input_ids"]
        ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
        # The prompt ends at a word boundary, so its ids are a prefix of the speech's ids.
        if full[: len(ids)] != ids or len(full) < len(ids) + length:
            continue
        by_play.setdefault(play, []).append(
            Prompt(play, speaker, prompt_text, ids, full[len(ids) : len(ids) + length])
        )
    plays = sorted(by_play)
    counts = [n // len(plays) + (i < n % len(plays)) for i in range(len(plays))]
    chosen: list[Prompt] = []
    for play, k in zip(plays, counts, strict=True):
        pool = by_play[play]
        if len(pool) < 2 * k + 1:
            raise ValueError(f"only {len(pool)} usable speeches in {play}; ask for fewer prompts")
        step = len(pool) / k
        offset = 0.5 if tuning else 0.0
        chosen += [pool[int((i + offset) * step)] for i in range(k)]
    return chosen


def batch_inputs(prompts: list[Prompt], length: int, pad_id: int, mask_id: int):
    """Left-padded `(P, Lp + length)` ids with `length` mask tokens appended, and the attention
    mask (0 at padding)."""
    width = max(len(p.ids) for p in prompts)
    ids = torch.full((len(prompts), width + length), pad_id, dtype=torch.long)
    am = torch.zeros_like(ids)
    for row, p in enumerate(prompts):
        start = width - len(p.ids)
        ids[row, start:width] = torch.tensor(p.ids)
        am[row, start:] = 1
    ids[:, width:] = mask_id
    return ids, am


# --------------------------------------------------------------------------------------- models


class Bench:
    """The generator, the reward and the pipeline, loaded once."""

    def __init__(self, args: argparse.Namespace) -> None:
        from pipelines import MaskedDiffusionPipeline
        from redge_guidance.text_rewards import build_reward, load_text_model, parse_reward_spec

        self.args = args
        self.tm = load_text_model()
        self.model = self.tm.model
        self.tokenizer = self.tm.tokenizer
        self.mask_id = self.tm.mask_token_id
        self.vocab = self.tm.vocab_size
        self.reward, _ = build_reward([parse_reward_spec(REWARD_SPEC)], self.tm)
        self.reward.eval()
        self.pipe = MaskedDiffusionPipeline.from_model(
            self.model, self.tokenizer, schedule="linear", order="random"
        )
        self.pipe.set_progress_bar_config(disable=True)

    # -- generation ------------------------------------------------------------------------------

    def generate(self, ids, am, seed: int, guidance=None) -> tuple[torch.Tensor, float, float]:
        """`(sequences (P*S, L), cpu_s, wall_s)` for one seeded batch."""
        g = torch.Generator().manual_seed(seed)
        cpu, wall = time.process_time(), time.perf_counter()
        out = self.pipe(
            input_ids=ids,
            attention_mask=am,
            num_samples=self.args.samples,
            num_inference_steps=self.args.steps,
            guidance=guidance,
            generator=g,
            output_type="ids",
        )
        return out.sequences, time.process_time() - cpu, time.perf_counter() - wall

    @torch.no_grad()
    def score(self, seqs: torch.Tensor, am: torch.Tensor) -> torch.Tensor:
        """Reward of finished sequences `(B,)`."""
        return self.reward(F.one_hot(seqs, self.vocab).float(), attention_mask=am).float()

    # -- fluency ---------------------------------------------------------------------------------

    @torch.no_grad()
    def pll(self, seqs: torch.Tensor, am: torch.Tensor, length: int) -> torch.Tensor:
        """Mean pseudo-log-likelihood of the last `length` tokens of each row, `(B,)` nats/token.

        Position `j` is scored by one forward with only `j` masked; the backbone runs on the
        whole sequence, the prediction head only at `j` (same numbers as the full logits)."""
        total = torch.zeros(seqs.shape[0])
        width = seqs.shape[1]
        for j in range(width - length, width):
            x = seqs.clone()
            x[:, j] = self.mask_id
            hidden = self.model.model(input_ids=x, attention_mask=am).last_hidden_state[:, j]
            logits = self.model.decoder(self.model.head(hidden)).float()  # (B, V)
            logits[:, self.mask_id] = float("-inf")
            total += logits.log_softmax(-1).gather(1, seqs[:, j : j + 1])[:, 0]
        return total / length


def distinct_n(rows: list[list[int]], n: int) -> float:
    """Distinct n-grams / all n-grams, n-grams taken inside each row, pooled over rows."""
    grams = [tuple(r[i : i + n]) for r in rows for i in range(len(r) - n + 1)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def evaluate(bench: Bench, seqs: torch.Tensor, am: torch.Tensor, length: int) -> dict[str, Any]:
    """Per-cell metrics of finished sequences (left-padded, generation = last `length` columns)."""
    rewards = bench.score(seqs, am)
    pll = bench.pll(seqs, am, length)
    gen = seqs[:, -length:].tolist()
    return {
        "reward": rewards.mean().item(),
        "reward_std": rewards.std().item(),
        "pll": pll.mean().item(),
        "distinct1": distinct_n(gen, 1),
        "distinct2": distinct_n(gen, 2),
        "frac_positive": (rewards > 0).float().mean().item(),
    }


def examples(bench: Bench, seqs: torch.Tensor, am: torch.Tensor, length: int, rows) -> list:
    tok = bench.tokenizer
    return [
        {
            "prompt": tok.decode(seqs[r, :-length][am[r, :-length].bool()].tolist()),
            "continuation": tok.decode(seqs[r, -length:].tolist()),
        }
        for r in rows
    ]


# --------------------------------------------------------------------------------------- guidance


def guidance_config(estimator: str, budget: int, lr: float, kl_weight: float, record: bool):
    from redge_guidance import GuidanceConfig

    return GuidanceConfig(
        estimator=estimator,
        n_opt_steps=budget,
        lr=lr,
        kl_weight=kl_weight,
        guide_every=1,
        decode="sample",
        record_rewards=record,
    )


def trace_summary(trace: list[dict]) -> dict[str, Any]:
    guided = [t for t in trace if t.get("guided")]
    out: dict[str, Any] = {"guided_steps": len(guided)}
    if guided and guided[0].get("reward_after") is not None:
        gains = [t["reward_after"] - t["reward_before"] for t in guided]
        out["in_step_gain_mean"] = statistics.fmean(gains)
        out["kl_after_mean"] = statistics.fmean(t["kl_after"] for t in guided)
    phases: dict[str, float] = {}
    for t in guided:
        for k, v in t.get("timing", {}).items():
            phases[k] = phases.get(k, 0.0) + v
    out["hook_seconds"] = sum(t.get("seconds", 0.0) for t in guided)
    out["hook_phases"] = phases
    return out


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


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    import transformers

    return {
        "platform": platform.platform(),
        "processor": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "device": "cpu",
        "load_average": list(os.getloadavg()),
    }


def command_line() -> str:
    argv = list(sys.argv)
    try:
        argv[0] = str(Path(argv[0]).resolve().relative_to(ROOT))
    except ValueError:
        pass
    return "python " + " ".join(argv)


def save_json(path: Path, result: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(path)


def key(method: str, budget: int, seed: int) -> str:
    return f"{method}|{budget}|{seed}"


# --------------------------------------------------------------------------------------- runs


def run_benchmark(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{NAME}.json"
    t0 = time.perf_counter()
    bench = Bench(args)
    prompts = make_prompts(bench.tokenizer, args.prompts, args.length)
    settings = settings_of(args, prompts)
    result: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
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
    result.update(settings=settings, machine=machine(), command=command_line())
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
        save_json(path, result)

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
            save_json(path, result)
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
            save_json(path, result)
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
        if missing or str(seed) not in result["bon_curves"]:
            run_best_of_n(bench, args, result, path, ids, am, am_rep, seed, targets, log)
    result.pop("wall_seconds_last_run", None)
    if len(cells) > n_before:  # only a run that computed cells records its time
        result["wall_seconds_last_compute"] = time.perf_counter() - t0
    save_json(path, result)
    return result


def run_best_of_n(bench, args, result, path, ids, am, am_rep, seed, targets, log) -> None:
    """Unguided rounds (round r uses generator seed `1000 * seed + r`; round 0 is the unguided
    cell itself) until the cumulative CPU time reaches the largest guided time of the seed."""
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
        seed_r = seed if r == 0 else 1000 * seed + r
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
    result["bon_curves"][str(seed)] = {"rounds": curve, "matched_n": needed}
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
    save_json(path, result)


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
        "machine": machine(),
        "command": command_line(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{NAME}.json"
    result = json.loads(path.read_text()) if path.is_file() else {}
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
    save_json(path, result)
    print(f"wrote tuning to {path}")
    return out


# --------------------------------------------------------------------------------------- report


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


def plot(result: dict, rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    st = result["settings"]
    n_seq = st["prompts"] * st["samples"]
    import matplotlib.ticker  # noqa: F401

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
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_reports(result: dict, out: Path) -> None:
    rows = aggregate(result)
    result["rows"] = rows
    save_json(out / f"{NAME}.json", result)
    (out / f"{NAME}.md").write_text(markdown(result, rows))
    plot(result, rows, out / f"{NAME}.png")
    print(f"wrote {out / NAME}.json, .md and .png")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.tune:
        run_tuning(args)
        return
    result = run_benchmark(args)
    write_reports(result, args.out)


if __name__ == "__main__":
    main()
