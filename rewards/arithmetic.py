"""Reward arithmetic: weighted sums, clipping and normalisation of `Reward`s.

`0.5 * r1 + r2`, `r1 - r2`, `-r` and `sum([r1, r2])` build a `WeightedSum`. Every wrapper
passes its input, dense or `SparseRows`, to its parts unchanged, so a sum of rewards with sparse
paths is scored sparsely.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

from torch import Tensor, nn

from .base import Reward, _name
from .sparse import SparseRows

__all__ = ["WeightedSum", "Clipped", "Normalized"]


def _common_vocab_size(parts: Sequence[Reward], owner: str) -> int | None:
    sizes = {r.vocab_size for r in parts if r.vocab_size is not None}
    if len(sizes) > 1:
        detail = ", ".join(f"{_name(r)}: {r.vocab_size}" for r in parts)
        raise ValueError(
            f"{owner} combines rewards with different vocab sizes ({detail}). All parts must "
            "score the same vocabulary; put a `rewards.BridgedReward` around the odd one out."
        )
    return sizes.pop() if sizes else None


class WeightedSum(Reward):
    r"""`sum_i weights[i] * rewards[i](x)`: what `0.5 * r1 + r2`, `-r` and `sum([...])` build.

    Nested sums are flattened, so `0.5 * r1 + r2 + r3` is one `WeightedSum` of three parts.
    `differentiable` is the AND of the parts; `vocab_size` is the parts' common size (a
    `ValueError` if two parts disagree).

    Args:
        rewards (`Sequence[Reward]`): the parts (at least one).
        weights (`Sequence[float]`, *optional*): one finite weight per part; all 1 by default.
    """

    def __init__(self, rewards: Sequence[Reward], weights: Sequence[float] | None = None):
        super().__init__()
        rewards = list(rewards)
        if not rewards or not all(isinstance(r, Reward) for r in rewards):
            raise ValueError(
                "WeightedSum needs a non-empty sequence of `Reward`s, got "
                f"{[type(r).__name__ for r in rewards]}. Wrap plain functions in "
                "`rewards.FunctionReward` first."
            )
        if weights is None:
            weights = [1.0] * len(rewards)
        weights = list(weights)
        if len(weights) != len(rewards):
            raise ValueError(
                f"WeightedSum got {len(rewards)} rewards but {len(weights)} weights "
                f"({weights}). Pass one weight per reward."
            )
        for w in weights:
            if not isinstance(w, numbers.Real) or isinstance(w, bool) or not math.isfinite(w):
                raise ValueError(
                    f"WeightedSum weights must be finite real numbers, got {w!r}. "
                    "Pass floats such as 0.5."
                )
        parts: list[Reward] = []
        flat: list[float] = []
        for r, w in zip(rewards, weights, strict=True):
            if isinstance(r, WeightedSum):  # flatten: (a + b) + c -> a + b + c
                parts.extend(r.rewards)
                flat.extend(float(w) * v for v in r.weights)
            else:
                parts.append(r)
                flat.append(float(w))
        self.vocab_size = _common_vocab_size(parts, "WeightedSum")
        self.differentiable = all(r.differentiable for r in parts)
        self.rewards = nn.ModuleList(parts)
        self.weights: tuple[float, ...] = tuple(flat)

    def forward(self, x: Tensor, *, attention_mask: Tensor | None = None) -> Tensor:
        total = None
        for r, w in zip(self.rewards, self.weights, strict=True):
            term = w * r(x, attention_mask=attention_mask)
            total = term if total is None else total + term
        return total

    def forward_sparse(self, x: SparseRows, *, attention_mask: Tensor | None = None) -> Tensor:
        return self.forward(x, attention_mask=attention_mask)  # the parts take `SparseRows`

    @property
    def supports_sparse(self) -> bool:
        return all(r.supports_sparse for r in self.rewards)

    def validate(self, x: Tensor | SparseRows, attention_mask: Tensor | None = None) -> None:
        # Each part runs its own checks (some check more, e.g. positions); called once per
        # generation, so repeating the simplex check per part is affordable.
        for r in self.rewards:
            r.validate(x, attention_mask)

    def extra_repr(self) -> str:
        return f"weights={list(self.weights)}"

    # Keep `a + b + c` flat without building intermediate nests.
    def __add__(self, other: object) -> Reward:
        if isinstance(other, Reward):
            return WeightedSum([*self.rewards, other], [*self.weights, 1.0])
        return NotImplemented


def _optional_float(value: object, arg: str, owner: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or math.isnan(value):
        raise ValueError(f"{owner} `{arg}` must be a real number or None, got {value!r}.")
    return float(value)


class Clipped(Reward):
    r"""`clamp(reward(x), min, max)`.

    Clipping zeroes the gradient of samples outside `[min, max]` (that is the point: stop
    pushing a sample whose score is already high enough, or cap an exploding log-probability).

    Args:
        reward (`Reward`): the reward to clip.
        min (`float`, *optional*): lower bound; None for none.
        max (`float`, *optional*): upper bound; None for none. Must be > `min`.
    """

    def __init__(self, reward: Reward, min: float | None = None, max: float | None = None):  # noqa: A002
        super().__init__()
        if not isinstance(reward, Reward):
            raise ValueError(
                f"Clipped expects a `Reward`, got {type(reward).__name__}. Wrap plain functions "
                "in `rewards.FunctionReward` first."
            )
        lo = _optional_float(min, "min", "Clipped")
        hi = _optional_float(max, "max", "Clipped")
        if lo is None and hi is None:
            raise ValueError("Clipped needs `min`, `max`, or both; got neither.")
        if lo is not None and hi is not None and not lo < hi:
            raise ValueError(f"Clipped needs `min` < `max`, got min={lo}, max={hi}.")
        self.reward = reward
        self.min, self.max = lo, hi
        self.vocab_size = reward.vocab_size
        self.differentiable = reward.differentiable

    def forward(self, x: Tensor, *, attention_mask: Tensor | None = None) -> Tensor:
        return self.reward(x, attention_mask=attention_mask).clamp(self.min, self.max)

    def forward_sparse(self, x: SparseRows, *, attention_mask: Tensor | None = None) -> Tensor:
        return self.forward(x, attention_mask=attention_mask)  # the part takes `SparseRows`

    @property
    def supports_sparse(self) -> bool:
        return self.reward.supports_sparse

    def validate(self, x: Tensor | SparseRows, attention_mask: Tensor | None = None) -> None:
        self.reward.validate(x, attention_mask)

    def extra_repr(self) -> str:
        return f"min={self.min}, max={self.max}"


class Normalized(Reward):
    r"""`(reward(x) - mean) / std`: put rewards of different scales on a common one before adding.

    Args:
        reward (`Reward`): the reward to normalise.
        mean (`float`): subtracted from the score.
        std (`float`): divides the centred score; must be > 0.
    """

    def __init__(self, reward: Reward, mean: float = 0.0, std: float = 1.0):
        super().__init__()
        if not isinstance(reward, Reward):
            raise ValueError(
                f"Normalized expects a `Reward`, got {type(reward).__name__}. Wrap plain "
                "functions in `rewards.FunctionReward` first."
            )
        m = _optional_float(mean, "mean", "Normalized")
        s = _optional_float(std, "std", "Normalized")
        if m is None or not math.isfinite(m):
            raise ValueError(f"Normalized `mean` must be a finite number, got {mean!r}.")
        if s is None or not (math.isfinite(s) and s > 0):
            raise ValueError(
                f"Normalized `std` must be a finite number > 0, got {std!r}. Estimate it from "
                "rewards of unguided samples (e.g. `scores.std()`)."
            )
        self.reward = reward
        self.mean, self.std = m, s
        self.vocab_size = reward.vocab_size
        self.differentiable = reward.differentiable

    def forward(self, x: Tensor, *, attention_mask: Tensor | None = None) -> Tensor:
        return (self.reward(x, attention_mask=attention_mask) - self.mean) / self.std

    def forward_sparse(self, x: SparseRows, *, attention_mask: Tensor | None = None) -> Tensor:
        return self.forward(x, attention_mask=attention_mask)  # the part takes `SparseRows`

    @property
    def supports_sparse(self) -> bool:
        return self.reward.supports_sparse

    def validate(self, x: Tensor | SparseRows, attention_mask: Tensor | None = None) -> None:
        self.reward.validate(x, attention_mask)

    def extra_repr(self) -> str:
        return f"mean={self.mean}, std={self.std}"
