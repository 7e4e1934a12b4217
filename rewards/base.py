"""The `Reward` protocol: dense and sparse inputs, and the checks around every call.

A reward scores relaxed token sequences: `x` of shape `(B, L, V)` whose rows lie on the
probability simplex (exact one-hots, soft distributions, or straight-through sums), and returns
one float32 score per sample, `(B,)`, higher is better. `x` may also be a `SparseRows` (k
weighted vocabulary entries per position); rewards with a sparse path score it without building
the `(B, L, V)` tensor, the others densify it (with a warning, once per class).

Checks are split by cost:

- `Reward.__call__` runs the O(1) structural checks (floating dtype, `x.ndim == 3`, the
  vocabulary size, the `attention_mask` shape) before `forward`, and checks the `(B,)` output
  (shape, finiteness) after it. The finiteness check reads `B` numbers, so it costs one host
  sync; inside `with finite_checks(False):` it is skipped (the guidance hook's inner loop checks
  the first scores of a generation itself and then runs without any sync). For a `SparseRows`
  input the same switch covers a range check of its indices (one more host sync).
- `Reward.validate` adds the O(B·L·V) content checks (O(B·L·k) for `SparseRows`): NaN/inf
  inputs, rows off the simplex, indices out of range, a non-binary `attention_mask`. The
  guidance hook calls it once before its first optimisation step; call it yourself when you feed
  a reward by hand. `__call__` skips these on purpose: an inner optimisation loop calls the
  reward hundreds of times on tensors of up to 10⁸ entries.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import numbers
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from .sparse import SparseRows

if TYPE_CHECKING:
    from .arithmetic import WeightedSum

__all__ = [
    "Reward",
    "SparseRows",
    "check_scores",
    "check_vocab_size",
    "finite_checks",
]

_FINITE_CHECKS = contextvars.ContextVar("rewards_finite_checks", default=True)
# Reward classes already warned that they densify `SparseRows` (the warning is once per class).
_DENSE_FALLBACK_WARNED: set[type] = set()


@contextlib.contextmanager
def finite_checks(enabled: bool) -> Iterator[None]:
    """Turn the per-call checks that cost a host sync on or off inside the block: finiteness of
    `Reward` outputs, and the index range of `SparseRows` inputs. Shape checks always run. For
    hot loops that check the scores themselves (and validate their inputs once)."""
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


def _defining_class(cls: type, attr: str) -> type:
    return next(c for c in cls.__mro__ if attr in vars(c))


@functools.cache
def _has_own_sparse_path(cls: type) -> bool:
    """Whether `cls.forward_sparse` is written for `cls.forward`: defined by the class that
    defines `forward`, or by a subclass of it. A subclass that changes `forward` alone (e.g. of
    `TokenSetReward`) must not inherit a sparse path that computes the parent's score."""
    owner = _defining_class(cls, "forward_sparse")
    return owner is not Reward and issubclass(owner, _defining_class(cls, "forward"))


def __getattr__(name: str) -> object:
    # The arithmetic wrappers moved to `rewards.arithmetic`; `rewards.base.WeightedSum` still works.
    if name in ("WeightedSum", "Clipped", "Normalized"):
        from . import arithmetic

        return getattr(arithmetic, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _weighted_sum(rewards: list[Reward], weights: list[float]) -> WeightedSum:
    from .arithmetic import WeightedSum  # imported here: `arithmetic` imports this module

    return WeightedSum(rewards, weights)


def _check_index_range(x: SparseRows, owner: str) -> None:
    """`ValueError` unless every `x.index` lies in `[0, x.vocab_size)` (one host sync)."""
    if x.index.numel() == 0:
        return
    lo, hi = (int(v) for v in torch.aminmax(x.index))
    if lo < 0 or hi >= x.vocab_size:
        bad = lo if lo < 0 else hi
        raise ValueError(
            f"{owner} got SparseRows `index` with id {bad} outside [0, vocab_size="
            f"{x.vocab_size}). Pass vocabulary ids of the reward's vocabulary (e.g. from "
            "`torch.topk(logits, k).indices`), or fix `vocab_size`."
        )


def _check_simplex(values: Tensor, real: Tensor | None, atol: float, owner: str, arg: str) -> None:
    """`ValueError` unless every real row of `values` (last axis) lies on the simplex."""
    if values.dtype in (torch.float16, torch.bfloat16):
        atol = max(atol, 2e-2)
    row_sum = values.sum(-1, dtype=torch.float32)  # (B, L)
    row_min = values.amin(-1).float()  # (B, L)
    bad = ((row_sum - 1).abs() > atol) | (row_min < -atol)
    if real is not None:
        bad = bad & real
    if bool(bad.any()):
        b, pos = (int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"{owner} expects rows of {arg} on the probability simplex (entries >= 0, each "
            f"row summing to 1 within {atol:g}); {int(bad.sum())} rows are not, e.g. "
            f"{arg.strip('`')}[{b}, {pos}] sums to {float(row_sum[b, pos]):.6g} with minimum "
            f"{float(row_min[b, pos]):.6g}. Pass probabilities (softmax of logits or "
            "one-hots), not logits."
        )


class Reward(nn.Module):
    r"""Base class of every reward: `reward(x, attention_mask=None) -> scores`.

    Subclasses set `vocab_size` and `differentiable` (class or instance attributes) and implement
    `forward`, and `forward_sparse` for a `SparseRows` path that never builds `(B, L, V)`
    (`supports_sparse` then says True). Rewards compose: `0.5 * r1 + r2`, `r1 - r2`, `-r`,
    `r * 2`, `r / 2` and `sum([r1, r2, r3])` build a `WeightedSum`.

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

    def __call__(self, x: Tensor | SparseRows, *, attention_mask: Tensor | None = None) -> Tensor:
        self._check_structure(x, attention_mask)
        if isinstance(x, SparseRows):
            if _FINITE_CHECKS.get():
                _check_index_range(x, _name(self))
            if _has_own_sparse_path(type(self)):
                scores = self.forward_sparse(x, attention_mask=attention_mask)
            else:  # a subclass changed `forward` but not `forward_sparse`: densify
                scores = Reward.forward_sparse(self, x, attention_mask=attention_mask)
        else:
            scores = super().__call__(x, attention_mask=attention_mask)
        return self._check_output(scores, x)

    def forward_sparse(self, x: SparseRows, *, attention_mask: Tensor | None = None) -> Tensor:
        r"""Score a batch given as `SparseRows` (k weighted vocabulary entries per position).

        The default densifies (`x.to_dense()`, a `(B, L, V)` tensor) and calls `forward`,
        warning once per reward class. Rewards override it with a path that reads only the
        `B * L * k` entries; it must return what `forward(x.to_dense())` returns, with the same
        gradient with respect to `x.weight`.

        Args:
            x (`SparseRows` with shape `(B, L, V)`): rows on the probability simplex.
            attention_mask (`torch.Tensor` of shape `(B, L)`, *optional*): 1 = real token.

        Returns:
            `torch.Tensor` of shape `(B,)`.
        """
        cls = type(self)
        if cls not in _DENSE_FALLBACK_WARNED:
            _DENSE_FALLBACK_WARNED.add(cls)
            warnings.warn(
                f"{cls.__name__} has no sparse path: it densifies `SparseRows` to a "
                f"(B, L, V) = {x.shape} tensor on every call. Override `forward_sparse` to read "
                "only the k entries per position, or feed this reward dense inputs.",
                stacklevel=3,
            )
        return self.forward(x.to_dense(), attention_mask=attention_mask)

    @property
    def supports_sparse(self) -> bool:
        """True when `SparseRows` inputs are scored without densifying (the class's own
        `forward_sparse`; wrappers: every part has one)."""
        return _has_own_sparse_path(type(self))

    def validate(self, x: Tensor | SparseRows, attention_mask: Tensor | None = None) -> None:
        r"""Check `x` (and `attention_mask`) fully; raise `ValueError` naming this reward if wrong.

        Checks the structure (as `__call__` does), then the content: no NaN/inf in `x`, every
        real row (where `attention_mask` is 1) on the simplex (entries >= -atol, row sums within
        atol of 1), and `attention_mask` made of 0s and 1s. For `SparseRows` the same checks run
        on `x.weight`, plus indices in `[0, vocab_size)`. Costs a few passes over `x`.

        Args:
            x (`torch.Tensor` of shape `(B, L, V)`, or `SparseRows`): the relaxed sequences.
            attention_mask (`torch.Tensor` of shape `(B, L)`, *optional*): 1 = real token.
        """
        self._check_structure(x, attention_mask)
        name = _name(self)
        sparse = isinstance(x, SparseRows)
        if sparse:
            _check_index_range(x, name)
        values = x.weight if sparse else x  # the last axis holds each row's entries
        arg = "`x.weight`" if sparse else "`x`"
        with torch.no_grad():
            if not bool(torch.isfinite(values).all()):
                n_bad = int((~torch.isfinite(values)).sum())
                raise ValueError(
                    f"{name} got {arg} with {n_bad} NaN/inf entries. Relaxed inputs must be "
                    "finite probabilities; check the logits that produced them (mask with "
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
                real = am.to(device=values.device, dtype=torch.bool)
            _check_simplex(values, real, self.simplex_atol, name, arg)

    # ------------------------------------------------------------------ checks
    def _check_structure(self, x: Tensor | SparseRows, attention_mask: Tensor | None) -> None:
        name = _name(self)
        if not isinstance(x, Tensor | SparseRows):
            raise ValueError(
                f"{name} expects `x` to be a torch.Tensor of shape (B, L, V) or a "
                f"`rewards.SparseRows`, got {type(x).__name__}."
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
        what = f"`x` (shape {tuple(x.shape)})"
        if isinstance(x, SparseRows):
            what = f"`x` (SparseRows of shape {x.shape}: its `vocab_size`)"
        check_vocab_size(self, x.shape[-1], what=what)
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

    def _check_output(self, scores: Tensor, x: Tensor | SparseRows) -> Tensor:
        check_scores(scores, x.shape[0], _name(self), finite=_FINITE_CHECKS.get())
        return scores.to(device=x.device, dtype=torch.float32)

    # ------------------------------------------------------------------ arithmetic
    def __add__(self, other: object) -> Reward:
        if isinstance(other, Reward):
            return _weighted_sum([self, other], [1.0, 1.0])
        return NotImplemented

    def __radd__(self, other: object) -> Reward:
        # `sum(rewards)` starts from the integer 0.
        if isinstance(other, numbers.Number) and other == 0:
            return self
        if isinstance(other, Reward):
            return _weighted_sum([other, self], [1.0, 1.0])
        return NotImplemented

    def __sub__(self, other: object) -> Reward:
        if isinstance(other, Reward):
            return _weighted_sum([self, other], [1.0, -1.0])
        return NotImplemented

    def __neg__(self) -> Reward:
        return _weighted_sum([self], [-1.0])

    def __mul__(self, other: object) -> Reward:
        if isinstance(other, numbers.Real) and not isinstance(other, bool):
            return _weighted_sum([self], [float(other)])
        return NotImplemented

    __rmul__ = __mul__

    def __truediv__(self, other: object) -> Reward:
        if isinstance(other, numbers.Real) and not isinstance(other, bool):
            if other == 0:
                raise ValueError(
                    f"Cannot divide {_name(self)} by 0. Divide by a non-zero number, or drop "
                    "the reward."
                )
            return _weighted_sum([self], [1.0 / float(other)])
        return NotImplemented

    # nn.Module defines __hash__/__eq__ by identity; keep it that way (rewards live in sets/dicts).
    __hash__ = nn.Module.__hash__
