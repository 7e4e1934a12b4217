"""The methods of `benchmarks/scaling.py`: its prompts, each method's run, and the judges.

`Bench` loads the generator, the two steered rewards and the judges once; `Bench.run` runs one
method at one knob on a batch and returns the sequences and the CPU seconds they cost;
`Bench.judge_all` scores finished sequences with every judge.
"""

from __future__ import annotations

import argparse
import math
import re
import time

import torch

from redge_guidance.text.judges import continuation_nll, load_judge_lm, load_vader, vader_compound

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
# The cheaper guided proposal of `smc_guided_lite`: a guided step costs ~5x an unguided one, almost
# all of it the reward's forward and backward, so the saving is in reward calls (1 inner step,
# half the denoising steps); the top-64 support keeps the proposal near the model.
LITE_GUIDANCE = dict(top_k=64, n_opt_steps=1, guide_every=2)


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
