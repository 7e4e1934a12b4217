"""The `Reward` protocol and reward arithmetic (weighted sums, clipping, normalisation).

A reward scores relaxed token sequences: `x` of shape `(B, L, V)` whose rows lie on the
probability simplex (exact one-hots, soft distributions, or straight-through sums), and returns
one float32 score per sample, `(B,)`, higher is better.

Checks are split by cost:

- `Reward.__call__` runs the O(1) structural checks (floating dtype, `x.ndim == 3`, the
  vocabulary size, the `attention_mask` shape) before `forward`, and checks the `(B,)` output
  (shape, finiteness) after it. The finiteness check reads `B` numbers, so it costs one host
  sync; inside `with finite_checks(False):` it is skipped (the guidance hook's inner loop checks
  the first scores of a generation itself and then runs without any sync).
- `Reward.validate` adds the O(B·L·V) content checks (NaN/inf inputs, rows off the simplex,
  a non-binary `attention_mask`). The guidance hook calls it once before its first optimisation
  step; call it yourself when you feed a reward by hand. `__call__` skips these on purpose: an
  inner optimisation loop calls the reward hundreds of times on tensors of up to 10⁸ entries.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import numbers
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "Reward",
    "WeightedSum",
    "Clipped",
    "Normalized",
    "check_scores",
    "check_vocab_size",
    "finite_checks",
]

_FINITE_CHECKS = contextvars.ContextVar("rewards_finite_checks", default=True)


@contextlib.contextmanager
def finite_checks(enabled: bool) -> Iterator[None]:
    """Turn the per-call finiteness check of `Reward` outputs (a host sync) on or off inside the
    block; shape checks always run. For hot loops that check the scores themselves."""
    token = _FINITE_CHECKS.set(bool(enabled))
    try:
        yield
    finally:
        _FINITE_CHECKS.reset(token)


def _name(obj: object) -> str:
    return type(obj).__name__


def check_vocab_size(
    reward: Reward, vocab_size: int, *, what: str = "the logits", fix: str | None = None
) -> None:
    r"""Raise a `ValueError` when `reward` scores another vocabulary than `vocab_size` tokens.

    The one place that says how to fix a vocabulary mismatch: the reward's own input check, the
    guidance hook, the pipeline and the CLI all call it. A reward with `vocab_size=None` accepts
    any size.

    Args:
        reward (`Reward`): the reward (anything with a `vocab_size` attribute).
        vocab_size (`int`): the size of the last axis it is about to be fed.
        what (`str`, defaults to `"the logits"`): names that tensor in the message.
        fix (`str`, *optional*): replaces the default advice (bridge or sub-vocabulary) where the
            caller knows a better one.

    Raises:
        `ValueError`: naming the reward class, both sizes, and the fix (`rewards.VocabularyBridge`
            between tokenizers, `sub_vocab_ids=` for a sub-vocabulary of the reward model).
    """
    expected = getattr(reward, "vocab_size", None)
    if expected is None or expected == vocab_size:
        return
    if fix is None:
        fix = (
            "The generator's vocabulary must be the reward's: wrap the reward in "
            "`rewards.BridgedReward(reward, rewards.VocabularyBridge(...))` between different "
            "tokenizers, or build it with `sub_vocab_ids=` for a sub-vocabulary of the reward "
            "model."
        )
    raise ValueError(
        f"{_name(reward)} has vocab_size={expected} but the last axis of {what} has "
        f"{vocab_size} entries. {fix}"
    )


def check_scores(scores: object, batch_size: int, owner: str, *, finite: bool = True) -> Tensor:
    r"""Check that `scores` is one score per sample; return it unchanged.

    Args:
        scores (`torch.Tensor` of shape `(batch_size,)`): what a reward returned.
        batch_size (`int`): the number of samples `B` it scored.
        owner (`str`): who returned it, for the message (e.g. the reward's class name).
        finite (`bool`, defaults to `True`): also reject NaN/inf entries (one host sync).

    Returns:
        `torch.Tensor`: `scores`, unchanged.

    Raises:
        `ValueError`: not a tensor of shape `(batch_size,)`, or non-finite when `finite=True`.
    """
    if not isinstance(scores, Tensor) or scores.shape != (batch_size,):
        shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise ValueError(
            f"{owner} must return a tensor of shape (B,) = ({batch_size},), got {shape}. Return "
            "one score per sample; do not sum over the batch."
        )
    if finite and not bool(torch.isfinite(scores).all()):
        raise ValueError(
            f"{owner} returned non-finite scores {scores.detach().cpu().tolist()[:8]}. Check the "
            "reward's inputs with `reward.validate(x, attention_mask)`; clip log-probabilities "
            "or use `rewards.Clipped`."
        )
    return scores


class Reward(nn.Module):
    r"""Base class of every reward: `reward(x, attention_mask=None) -> scores`.

    Subclasses set `vocab_size` and `differentiable` (class or instance attributes) and implement
    `forward`. Rewards compose: `0.5 * r1 + r2`, `r1 - r2`, `-r`, `r * 2`, `r / 2` and
    `sum([r1, r2, r3])` build a `WeightedSum`.

    Attributes:
        vocab_size (`int | None`): size of the last axis of `x` the reward accepts; `None` accepts
            any size.
        differentiable (`bool`): `False` for black-box rewards; guidance then uses a
            score-function gradient instead of back-propagating through the reward.
        simplex_atol (`float`): tolerance of `validate` on row sums and negative entries for
            float32/float64 inputs; half-precision inputs get `max(simplex_atol, 2e-2)`.
    """

    vocab_size: int | None = None
    differentiable: bool = True
    simplex_atol: float = 1e-3

    # ------------------------------------------------------------------ protocol
    def forward(self, x: Tensor, *, attention_mask: Tensor | None = None) -> Tensor:
        r"""Score a batch of relaxed sequences.

        Args:
            x (`torch.Tensor` of shape `(B, L, V)`):
                Rows on the probability simplex (one-hot, soft, or straight-through).
            attention_mask (`torch.Tensor` of shape `(B, L)`, *optional*):
                1 for real tokens, 0 for padding to ignore.

        Returns:
            `torch.Tensor` of shape `(B,)`: one score per sample, higher is better.
        """
        raise NotImplementedError(f"{_name(self)} must implement `forward`.")

    def __call__(self, x: Tensor, *, attention_mask: Tensor | None = None) -> Tensor:
        self._check_structure(x, attention_mask)
        scores = super().__call__(x, attention_mask=attention_mask)
        return self._check_output(scores, x)

    def validate(self, x: Tensor, attention_mask: Tensor | None = None) -> None:
        r"""Check `x` (and `attention_mask`) fully; raise `ValueError` naming this reward if wrong.

        Checks the structure (as `__call__` does), then the content: no NaN/inf in `x`, every
        real row (where `attention_mask` is 1) on the simplex (entries >= -atol, row sums within
        atol of 1), and `attention_mask` made of 0s and 1s. Costs a few passes over `x`.

        Args:
            x (`torch.Tensor` of shape `(B, L, V)`): the relaxed sequences.
            attention_mask (`torch.Tensor` of shape `(B, L)`, *optional*): 1 = real token.
        """
        self._check_structure(x, attention_mask)
        name = _name(self)
        with torch.no_grad():
            if not bool(torch.isfinite(x).all()):
                n_bad = int((~torch.isfinite(x)).sum())
                raise ValueError(
                    f"{name} got `x` with {n_bad} NaN/inf entries. Relaxed inputs must be finite "
                    "probabilities; check the logits that produced them (mask with "
                    "`torch.finfo(dtype).min`, not `-inf`, before a softmax)."
                )
            real = None
            if attention_mask is not None:
                am = attention_mask
                if am.dtype != torch.bool and not bool(((am == 0) | (am == 1)).all()):
                    raise ValueError(
                        f"{name} got an `attention_mask` with values other than 0 and 1 "
                        f"(unique values {torch.unique(am)[:8].tolist()}). Pass 1 for real tokens "
                        "and 0 for padding."
                    )
                real = am.to(device=x.device, dtype=torch.bool)
            atol = self.simplex_atol
            if x.dtype in (torch.float16, torch.bfloat16):
                atol = max(atol, 2e-2)
            row_sum = x.sum(-1, dtype=torch.float32)  # (B, L)
            row_min = x.amin(-1).float()  # (B, L)
            bad = ((row_sum - 1).abs() > atol) | (row_min < -atol)
            if real is not None:
                bad = bad & real
            if bool(bad.any()):
                b, pos = (int(i) for i in bad.nonzero()[0])
                raise ValueError(
                    f"{name} expects rows of `x` on the probability simplex (entries >= 0, each "
                    f"row summing to 1 within {atol:g}); {int(bad.sum())} rows are not, e.g. "
                    f"x[{b}, {pos}] sums to {float(row_sum[b, pos]):.6g} with minimum "
                    f"{float(row_min[b, pos]):.6g}. Pass probabilities (softmax of logits or "
                    "one-hots), not logits."
                )

    # ------------------------------------------------------------------ checks
    def _check_structure(self, x: Tensor, attention_mask: Tensor | None) -> None:
        name = _name(self)
        if not isinstance(x, Tensor):
            raise ValueError(
                f"{name} expects `x` to be a torch.Tensor of shape (B, L, V), got "
                f"{type(x).__name__}."
            )
        if not x.is_floating_point():
            raise ValueError(
                f"{name} expects a floating-point `x` (relaxed one-hots), got dtype {x.dtype}. "
                "Turn token ids into one-hots with "
                "`torch.nn.functional.one_hot(ids, vocab_size).float()`."
            )
        if x.ndim != 3:
            raise ValueError(
                f"{name} expects `x` of shape (B, L, V) (batch, length, vocab), got shape "
                f"{tuple(x.shape)}. Add a batch axis with `x[None]` for a single sequence."
            )
        check_vocab_size(self, x.shape[-1], what=f"`x` (shape {tuple(x.shape)})")
        if attention_mask is not None:
            if not isinstance(attention_mask, Tensor) or attention_mask.shape != x.shape[:2]:
                shape = getattr(attention_mask, "shape", type(attention_mask).__name__)
                raise ValueError(
                    f"{name} expects `attention_mask` of shape (B, L) = {tuple(x.shape[:2])}, "
                    f"got {tuple(shape) if isinstance(shape, torch.Size) else shape}. Pass one "
                    "0/1 entry per position of `x`, or None."
                )
            if attention_mask.is_floating_point() or attention_mask.is_complex():
                raise ValueError(
                    f"{name} expects an integer or bool `attention_mask`, got dtype "
                    f"{attention_mask.dtype}. Convert it with `.long()`."
                )

    def _check_output(self, scores: Tensor, x: Tensor) -> Tensor:
        check_scores(scores, x.shape[0], _name(self), finite=_FINITE_CHECKS.get())
        return scores.to(device=x.device, dtype=torch.float32)

    # ------------------------------------------------------------------ arithmetic
    def __add__(self, other: object) -> Reward:
        if isinstance(other, Reward):
            return WeightedSum([self, other], [1.0, 1.0])
        return NotImplemented

    def __radd__(self, other: object) -> Reward:
        # `sum(rewards)` starts from the integer 0.
        if isinstance(other, numbers.Number) and other == 0:
            return self
        if isinstance(other, Reward):
            return WeightedSum([other, self], [1.0, 1.0])
        return NotImplemented

    def __sub__(self, other: object) -> Reward:
        if isinstance(other, Reward):
            return WeightedSum([self, other], [1.0, -1.0])
        return NotImplemented

    def __neg__(self) -> Reward:
        return WeightedSum([self], [-1.0])

    def __mul__(self, other: object) -> Reward:
        if isinstance(other, numbers.Real) and not isinstance(other, bool):
            return WeightedSum([self], [float(other)])
        return NotImplemented

    __rmul__ = __mul__

    def __truediv__(self, other: object) -> Reward:
        if isinstance(other, numbers.Real) and not isinstance(other, bool):
            if other == 0:
                raise ValueError(
                    f"Cannot divide {_name(self)} by 0. Divide by a non-zero number, or drop "
                    "the reward."
                )
            return WeightedSum([self], [1.0 / float(other)])
        return NotImplemented

    # nn.Module defines __hash__/__eq__ by identity; keep it that way (rewards live in sets/dicts).
    __hash__ = nn.Module.__hash__


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

    def validate(self, x: Tensor, attention_mask: Tensor | None = None) -> None:
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

    def validate(self, x: Tensor, attention_mask: Tensor | None = None) -> None:
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

    def validate(self, x: Tensor, attention_mask: Tensor | None = None) -> None:
        self.reward.validate(x, attention_mask)

    def extra_repr(self) -> str:
        return f"mean={self.mean}, std={self.std}"
