"""What `redge-guidance generate` prints: what ran, each row in stdout mode, and the summary.

The summary is accumulated row by row (:class:`Summary`), so a job of any size is summarised
without holding its rows in memory. Judged rows (`--judge`) carry `vader`, `pattern` and `ppl`
(and their `_unguided` twins): VADER's compound of the continuation, its Pattern polarity and its
perplexity under the judge LM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["JUDGES_LINE", "Summary", "format_row", "setting_lines"]

#: What the judges are (printed once before the rows).
JUDGES_LINE = (
    "judges, none steered: VADER = compound sentiment of the continuation (-1..1; the sentiment "
    "reward's head was fitted to VADER's lexicon); Pattern = its polarity under TextBlob's "
    "Pattern lexicon, built apart from VADER (-1..1); perplexity = of the continuation under the "
    "judge LM, a small GPT-2 trained on the training plays"
)


def _join(prompt: str, text: str) -> str:
    return f"{prompt} {text}".strip() if prompt else text


def format_row(row: dict[str, Any], *, compare: bool) -> str:
    """The stdout block of one row: a header line, the guided text, the unguided one."""
    head = f"--- prompt {row['prompt_id']}, sample {row['sample_id']}"
    if row.get("particle") is not None:
        head += f", particle {row['particle']}"
    head += f": reward {row['reward']:+.3f}"
    if compare and row.get("reward_unguided") is not None:
        head += f" (unguided {row['reward_unguided']:+.3f})"
    if row.get("kl") is not None:
        head += f", KL {row['kl']:.2f}"
    if row.get("weight") is not None:
        head += f", weight {row['weight']:.3f}"
    lines = [head]
    if row.get("vader") is not None:
        lines.append(_judges_line(row, compare=compare))
    lines.append(f"guided:   {_join(row['prompt'], row['text'])}")
    if compare and row.get("text_unguided") is not None:
        lines.append(f"unguided: {_join(row['prompt'], row['text_unguided'])}")
    return "\n".join(lines)


def _ppl(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def _judges_line(row: dict[str, Any], *, compare: bool) -> str:
    """`judges:   VADER +0.62 (unguided -0.10), Pattern +0.25 (unguided +0.00), perplexity 412.3
    (unguided 287.1)` (Pattern left out of rows judged before it was added)."""
    vader, ppl = f"VADER {row['vader']:+.2f}", f"perplexity {_ppl(row.get('ppl'))}"
    pattern = f"Pattern {row['pattern']:+.2f}" if row.get("pattern") is not None else None
    if compare and row.get("vader_unguided") is not None:
        vader += f" (unguided {row['vader_unguided']:+.2f})"
        ppl += f" (unguided {_ppl(row.get('ppl_unguided'))})"
        if pattern is not None and row.get("pattern_unguided") is not None:
            pattern += f" (unguided {row['pattern_unguided']:+.2f})"
    return "judges:   " + ", ".join(x for x in (vader, pattern, ppl) if x is not None)


def _describe(plan: Any) -> tuple[str, str]:
    """What `guided` and `unguided` are in this run, in words."""
    reward = " + ".join(s.text for s in plan.specs)
    cfg = plan.config
    guidance = (
        f"{cfg.estimator} guidance ({cfg.n_opt_steps} Adam step{'s' * (cfg.n_opt_steps != 1)} "
        f"of lr {cfg.lr:g} per denoising step, KL weight {cfg.kl_weight:g})"
    )
    if plan.search is None:
        return f"{guidance} toward {reward}", "the same seed without guidance"
    search = plan.search.config
    if search.method == "best-of-n":
        what = f"the best of {search.num_candidates} samples by {reward}"
    elif search.method == "smc":
        what = f"SMC with {search.num_particles} particles toward {reward}"
    else:
        what = f"{search.rounds} rounds of remasking toward {reward}"
    if cfg.n_opt_steps > 0:
        return f"{what}, each with {guidance}", "the same search without guidance"
    return f"{what}, no gradient guidance", "the model's own sample, same seed"


def setting_lines(plan: Any, *, judged: bool) -> list[str]:
    """The lines printed before the rows: what `guided` and `unguided` are, and the judges."""
    guided, unguided = _describe(plan)
    lines = [f"guided: {guided}" + (f"; unguided: {unguided}" if plan.args.compare else "")]
    if judged:
        lines.append(JUDGES_LINE)
    return lines


@dataclass
class _Mean:
    total: float = 0.0
    count: int = 0

    def add(self, value: Any) -> None:
        if value is not None:
            self.total += float(value)
            self.count += 1

    @property
    def value(self) -> float | None:
        return self.total / self.count if self.count else None


@dataclass
class _GeoMean(_Mean):
    """Geometric mean (of perplexities: the exp of the mean NLL per token when every row reads
    as many tokens)."""

    def add(self, value: Any) -> None:
        if value is not None and value > 0:
            super().add(math.log(float(value)))

    @property
    def value(self) -> float | None:
        v = super().value
        return None if v is None else math.exp(v)


@dataclass
class Summary:
    """Running means of the rows' rewards, KL, timings and judges' scores."""

    rows: int = 0
    reward: _Mean = field(default_factory=_Mean)
    reward_unguided: _Mean = field(default_factory=_Mean)
    kl: _Mean = field(default_factory=_Mean)
    seconds: _Mean = field(default_factory=_Mean)
    seconds_unguided: _Mean = field(default_factory=_Mean)
    vader: _Mean = field(default_factory=_Mean)
    vader_unguided: _Mean = field(default_factory=_Mean)
    pattern: _Mean = field(default_factory=_Mean)
    pattern_unguided: _Mean = field(default_factory=_Mean)
    ppl: _GeoMean = field(default_factory=_GeoMean)
    ppl_unguided: _GeoMean = field(default_factory=_GeoMean)
    method: str | None = None  # `--search` method, from the rows
    spent: dict[str, float] = field(default_factory=dict)  # sums of the rows' `spent`

    def add(self, row: dict[str, Any]) -> None:
        self.rows += 1
        for name in ("reward", "reward_unguided", "kl", "seconds", "seconds_unguided"):
            getattr(self, name).add(row.get(name))
        for judge in ("vader", "pattern", "ppl"):
            for name in (judge, judge + "_unguided"):
                getattr(self, name).add(row.get(name))
        if isinstance(row.get("search"), dict):
            self.method = row["search"].get("method")
        for key, value in (row.get("spent") or {}).items():
            self.spent[key] = self.spent.get(key, 0.0) + value

    def format(self, n_new: int, seconds: float, out_path: Path | None, world: int) -> str:
        """The table printed on stderr at the end of a run."""

        def fmt(mean: _Mean, spec: str, width: int) -> str:
            v = mean.value
            return f"{'-':>{width}}" if v is None else format(v, spec)

        where = f" -> {out_path}" if out_path is not None else ""
        procs = f" on {world} processes" if world > 1 else ""
        u, g = self.reward_unguided, self.reward
        lines = []
        if self.method is not None and self.spent:
            s = self.spent
            lines.append(
                f"search {self.method}: {s['denoiser_forwards']:.0f} denoiser forwards, "
                f"{s['reward_forwards']:.0f} reward forwards ({s['reward_backwards']:.0f} with "
                f"backward), {s['cpu_seconds']:.1f} CPU s (guided run)"
            )
        head = f"{'':10}{'mean reward':>12}{'mean KL':>10}{'s/sample':>10}"
        unguided = (
            f"{'unguided':10}{fmt(u, '+12.3f', 12)}{'-':>10}"
            f"{fmt(self.seconds_unguided, '10.2f', 10)}"
        )
        guided = (
            f"{'guided':10}{fmt(g, '+12.3f', 12)}{fmt(self.kl, '10.2f', 10)}"
            f"{fmt(self.seconds, '10.2f', 10)}"
        )
        if self.vader.count:
            head += f"{'VADER':>8}{'Pattern':>9}{'perplexity':>12}"
            unguided += (
                f"{fmt(self.vader_unguided, '+8.2f', 8)}{fmt(self.pattern_unguided, '+9.2f', 9)}"
                f"{fmt(self.ppl_unguided, '12.1f', 12)}"
            )
            guided += (
                f"{fmt(self.vader, '+8.2f', 8)}{fmt(self.pattern, '+9.2f', 9)}"
                f"{fmt(self.ppl, '12.1f', 12)}"
            )
            lines.append(
                "VADER, Pattern: mean sentiment of the continuations under the two lexicons; "
                "perplexity: their geometric mean under the judge LM; no judge steered"
            )
        return "\n".join(
            [
                f"{self.rows} samples ({n_new} new){procs} in {seconds:.1f} s{where}",
                head,
                unguided,
                guided,
                *lines,
            ]
        )
