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
with the same settings skips it.

    python benchmarks/scaling.py --quick      # a couple of minutes, /tmp/scaling_quick
    python benchmarks/scaling.py              # benchmarks/results/scaling.{json,md,png}
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import os
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Ahead of this folder, whose rewards.py would shadow the `rewards` package.
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from redge_guidance.text.judges import (  # noqa: E402
    JUDGE_LM_DIR as JUDGE_DIR,
)
from redge_guidance.text.judges import (  # noqa: E402
    continuation_nll,
    load_judge_lm,
    load_vader,
    vader_compound,
)

METHODS = (
    "unguided",
    "best_of_n",
    "smc",
    "redge",
    "straight_through",
    "redge_top64",
    "smc_guided",
    "smc_guided_lite",
    "refine",
)
KNOB = {"best_of_n": "N", "smc": "K", "smc_guided": "K", "smc_guided_lite": "K", "refine": "rounds"}
# else: inner steps
TARGETS = ("positive", "negative")
PROMPT_WORDS = 5
LAMBDA = 0.1  # SMC temperature: reward differences between samples are ~0.5 valence units
GUIDE_LR, GUIDE_KL = 3.0, 0.01  # text_steering's tuned values for a few inner steps
CALIBRATION_SEED = 12345
# The cheaper guided proposal of `smc_guided_lite`: a guided step costs ~5x an unguided one, almost
# all of it the reward's forward and backward, so the saving is in reward calls (1 inner step,
# half the denoising steps); the top-64 support keeps the proposal near the model.
LITE_GUIDANCE = dict(top_k=64, n_opt_steps=1, guide_every=2)


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


# ------------------------------------------------------------------------------ prompts, judges


def make_prompts(tokenizer, n: int, length: int) -> list[dict]:
    """`n` held-out speeches at evenly spaced ranks: `SPEAKER: first words` and the true next
    `length` tokens (the reference continuation)."""
    from examples.text_corpus import DEFAULT_HELD_OUT_PLAYS, clean_play, read_plays

    raw, pool = read_plays(), []
    for play in DEFAULT_HELD_OUT_PLAYS:
        parts = re.split(r"^\*\*([^*\n]+?)\*\*[ \t]*$", raw[play], flags=re.MULTILINE)
        for speaker, body in zip(parts[1::2], parts[2::2], strict=True):
            words = " ".join(clean_play(body).split()).split()
            prompt = f"{speaker.strip()}: {' '.join(words[:PROMPT_WORDS])}"
            ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            full = tokenizer(f"{prompt} {' '.join(words[PROMPT_WORDS:])}", add_special_tokens=False)
            full = full["input_ids"]
            if (
                len(words) > PROMPT_WORDS
                and full[: len(ids)] == ids
                and len(full) >= len(ids) + length
            ):
                reference = full[len(ids) : len(ids) + length]
                pool.append(dict(play=play, text=prompt, ids=ids, reference=reference))
    if len(pool) < n:
        raise ValueError(f"`--prompts` {n} exceeds the {len(pool)} usable speeches; ask for fewer.")
    return [pool[int(i * len(pool) / n)] for i in range(n)]


def distinct_n(rows: list[list[int]], n: int) -> float:
    grams = [tuple(r[i : i + n]) for r in rows for i in range(len(r) - n + 1)]
    return len(set(grams)) / len(grams) if grams else float("nan")


class Bench:
    """The generator, its pipeline, the two steered rewards and the judges, loaded once."""

    def __init__(self, args: argparse.Namespace) -> None:
        from pipelines import MaskedDiffusionPipeline
        from redge_guidance.text import build_reward, load_text_model, parse_reward_spec

        self.args = args
        self.tm = load_text_model()
        self.pipe = MaskedDiffusionPipeline.from_model(self.tm.model, self.tm.tokenizer)
        self.pipe.set_progress_bar_config(disable=True)
        self.rewards = {
            t: build_reward([parse_reward_spec(f"sentiment:{t}")], self.tm)[0].eval()
            for t in args.targets
        }
        self.fluency = build_reward([parse_reward_spec("fluency")], self.tm)[0].eval()
        self.judge = load_judge_lm(args.judge)
        self.vader = load_vader()

    def run(
        self, method: str, knob: int, target: str, ids, am, seed: int, *, top_k: int | None = None
    ):
        """`(sequences (B, L), cpu seconds)` of one method on the batch; `top_k` restricts the
        guidance of `redge` / `straight_through` / `smc_guided` to the model's top tokens."""
        from redge_guidance import GuidanceConfig
        from redge_guidance.search import BestOfNConfig, RefineConfig, SMCConfig, search

        g = torch.Generator().manual_seed(seed)
        steps = self.args.steps
        if method == "unguided":
            cpu = time.process_time()
            out = self.pipe(
                input_ids=ids,
                attention_mask=am,
                num_inference_steps=steps,
                generator=g,
                output_type="ids",
            )
            return out.sequences, time.process_time() - cpu
        guide = None
        if method in ("redge", "straight_through", "redge_top64"):
            config = BestOfNConfig(num_candidates=1, batch_size=1, return_candidates=False)
            if method == "redge_top64":
                method, top_k = "redge", 64
            guide = GuidanceConfig(
                estimator=method,
                n_opt_steps=knob,
                lr=GUIDE_LR,
                kl_weight=GUIDE_KL,
                record_rewards=False,
                top_k=top_k,
            )
        elif method == "best_of_n":
            config = BestOfNConfig(num_candidates=knob, batch_size=min(knob, 8))
        elif method in ("smc", "smc_guided", "smc_guided_lite"):
            config = SMCConfig(num_particles=knob, temperature=LAMBDA, return_particles=False)
            # kl_weight = λ: the proposal approximates the per-position tilt
            if method == "smc_guided":
                guide = GuidanceConfig(
                    n_opt_steps=2, lr=GUIDE_LR, kl_weight=LAMBDA, record_rewards=False, top_k=top_k
                )
            elif method == "smc_guided_lite":
                guide = GuidanceConfig(
                    lr=GUIDE_LR, kl_weight=LAMBDA, record_rewards=False, **LITE_GUIDANCE
                )
        else:
            config = RefineConfig(rounds=knob, fraction=0.25, select="gradient")
        res = search(
            self.pipe,
            self.rewards[target],
            ids,
            config,
            guidance=guide,
            attention_mask=am,
            num_inference_steps=steps,
            generator=g,
        )
        return res.sequences, res.spent.cpu_seconds

    @torch.no_grad()
    def judge_all(self, seqs, am, target: str) -> dict:
        """Every judge on finished left-padded sequences (continuation = last `length` columns)."""
        n = self.args.length
        sign = 1.0 if target == "positive" else -1.0
        onehot = torch.nn.functional.one_hot(seqs, self.tm.vocab_size).float()
        reward = self.rewards[target](onehot, attention_mask=am)
        pll = self.fluency(onehot, attention_mask=am)
        prompts = [s[:-n][a[:-n].bool()].tolist() for s, a in zip(seqs, am, strict=True)]
        conts = seqs[:, -n:].tolist()
        nll = continuation_nll(self.judge, prompts, conts)
        texts = self.tm.tokenizer.batch_decode(conts)
        compound = torch.tensor(vader_compound(texts, self.vader))
        return {
            "reward": reward.mean().item(),
            "vader": compound.mean().item(),
            "vader_on_target": (sign * compound > 0).float().mean().item(),
            "ppl": math.exp(nll.sum().item() / (len(conts) * n)),
            "pll": pll.mean().item(),
            "d1": distinct_n(conts, 1),
            "d2": distinct_n(conts, 2),
            "examples": [
                {"prompt": self.tm.tokenizer.decode(p), "continuation": t}
                for p, t in zip(prompts[:2], texts[:2], strict=True)
            ],
        }


# ------------------------------------------------------------------------------ the grid


def save(path: Path, result: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(path)


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


def machine() -> dict:
    import platform

    import transformers

    info = Path("/proc/cpuinfo")
    names = re.findall(r"model name\s*:\s*(.*)", info.read_text()) if info.is_file() else []
    cpu = names[0] if names else platform.processor()
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "load_average": list(os.getloadavg()),
    }


def run_grid(args: argparse.Namespace) -> dict:
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
    command = "python " + " ".join(sys.argv)
    result.update(settings=settings, machine=machine())
    # The first command made the grid; a later one (more methods, seeds) adds cells to it.
    if result.setdefault("command", command) != command:
        later = result.setdefault("later_commands", [])
        later += [] if command in later else [command]
    result["prompts"] = [p["text"] for p in prompts]
    cells = result.setdefault("cells", {})
    cal = calibrate(bench, ids, am, result.setdefault("calibration", {}), log)
    save(path, result)
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
            save(path, result)
            log(
                f"{key} knob {knob}: {c['cost_x']:.1f}x reward {c['reward']:+.2f} vader "
                f"{c['vader']:+.2f} ({c['vader_on_target']:.0%} on target) ppl {c['ppl']:.0f}"
            )
    return result


# ------------------------------------------------------------------------------ reports

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


def markdown(result: dict, rows: list[dict]) -> str:
    st, cal = result["settings"], result["calibration"]
    lines = [
        "# Inference-time scaling, judged by models that did not steer",
        "",
        f"Command: `{result['command']}`"
        + "".join(f", then `{c}`" for c in result.get("later_commands", []))
        + f". {st['prompts']} held-out prompts x {st['samples']} rows, "
        f"{st['length']} new tokens, {st['steps']} denoising steps, torch on {st['threads']} "
        f"thread(s) on {result['machine']['cpu']} ({result['machine']['cpu_count']} CPUs, shared); "
        f"unguided batch {cal['unguided']:.2f} CPU s (the 1x). Knob: N (best-of-N), K "
        "(SMC), inner Adam steps (guidance), rounds (refine). `cost` is the measured CPU time / "
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


def plot(result: dict, rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = parse_args(argv)
    result = run_grid(args)
    rows = aggregate(result)
    result["rows"] = rows
    save(args.out / "scaling.json", result)
    (args.out / "scaling.md").write_text(markdown(result, rows))
    plot(result, rows, args.out / "scaling.png")
    print(f"wrote {args.out}/scaling.json, .md and .png")


if __name__ == "__main__":
    main()
