"""What `redge-guidance generate` prints: each row in stdout mode, and the summary table.

The summary is accumulated row by row (:class:`Summary`), so a job of any size is summarised
without holding its rows in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Summary", "format_row"]


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
    lines = [head, f"guided:   {_join(row['prompt'], row['text'])}"]
    if compare and row.get("text_unguided") is not None:
        lines.append(f"unguided: {_join(row['prompt'], row['text_unguided'])}")
    return "\n".join(lines)


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
class Summary:
    """Running means of the rows' rewards, KL and timings."""

    rows: int = 0
    reward: _Mean = field(default_factory=_Mean)
    reward_unguided: _Mean = field(default_factory=_Mean)
    kl: _Mean = field(default_factory=_Mean)
    seconds: _Mean = field(default_factory=_Mean)
    seconds_unguided: _Mean = field(default_factory=_Mean)
    method: str | None = None  # `--search` method, from the rows
    spent: dict[str, float] = field(default_factory=dict)  # sums of the rows' `spent`

    def add(self, row: dict[str, Any]) -> None:
        self.rows += 1
        for name in ("reward", "reward_unguided", "kl", "seconds", "seconds_unguided"):
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
        return "\n".join(
            [
                f"{self.rows} samples ({n_new} new){procs} in {seconds:.1f} s{where}",
                f"{'':10}{'mean reward':>12}{'mean KL':>10}{'s/sample':>10}",
                f"{'unguided':10}{fmt(u, '+12.3f', 12)}{'-':>10}"
                f"{fmt(self.seconds_unguided, '10.2f', 10)}",
                f"{'guided':10}{fmt(g, '+12.3f', 12)}{fmt(self.kl, '10.2f', 10)}"
                f"{fmt(self.seconds, '10.2f', 10)}",
                *lines,
            ]
        )
