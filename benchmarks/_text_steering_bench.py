"""What `benchmarks/text_steering.py` measures with: the held-out prompts, the embedded model
with its reward and pipeline (`Bench`), the per-cell metrics (reward, pseudo-log-likelihood,
distinct n-grams) and the guidance settings of a cell."""

from __future__ import annotations

import argparse
import re
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from _text_steering_report import PROMPT_WORDS

REWARD_SPEC = "sentiment:positive"  # the CLI's default reward


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


# Prompt = "SPEAKER: first PROMPT_WORDS words"; a speech qualifies when it has at least `length`
# more tokens, so the held-out continuation (the reference row) stays inside the speech.
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
            self.model, self.tokenizer, schedule="linear", unmasking="random"
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
        handoff="logits",
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
