"""The estimator interface: :class:`RelaxedSample`, the :class:`Estimator` base class and the
input checks every estimator runs before any work."""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor


@dataclass(frozen=True)
class RelaxedSample:
    """A categorical sample together with its differentiable relaxation.

    Args:
        hard (`torch.Tensor` of shape `(..., V)`):
            the sample as an exact one-hot vector in value (input dtype). Its gradient is the
            estimator's: the straight-through gradient of `soft` for ST, Gumbel-Softmax, ReDGE and
            ReDGE-Cov (``hard = D + (soft - soft.detach())``), the ReinMax correction for
            ReinMax and ReinDGE. `GumbelSoftmax(hard=False)` puts the soft sample here.
        soft (`torch.Tensor` of shape `(..., V)`):
            the differentiable relaxation, rows on the probability simplex (input dtype).
        index (`torch.Tensor` of shape `(...)`, int64):
            the sampled class ids, ``hard.argmax(-1)``.
    """

    hard: Tensor
    soft: Tensor
    index: Tensor


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Internal precision: float64 stays float64, everything else runs in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_logits(logits: Any) -> None:
    """Raise a `ValueError` for logits no estimator can relax (before any work is done).

    Accepted: a floating-point tensor of shape `(..., V)` with `V >= 1`, no NaN, no `+inf`, and at
    least one unmasked entry per row (masked entries are `-inf` or `torch.finfo(dtype).min`).
    """
    if not isinstance(logits, Tensor):
        raise ValueError(
            f"`logits` must be a torch.Tensor of shape (..., V), got {type(logits).__name__}. "
            "Wrap it with `torch.as_tensor(logits, dtype=torch.float32)`."
        )
    if not logits.is_floating_point():
        raise ValueError(
            f"`logits` must be a floating-point tensor, got dtype {logits.dtype}. "
            "Cast it with `logits.float()`."
        )
    if logits.dim() == 0 or logits.shape[-1] == 0:
        raise ValueError(
            f"`logits` must have shape (..., V) with V >= 1, got shape {tuple(logits.shape)}. "
            "Add a vocabulary axis with `logits.unsqueeze(-1)` or pass non-empty rows."
        )
    if logits.numel() == 0:
        return
    # One cheap reduction finds every bad row: amax propagates NaN, sees +inf, and is the mask
    # value itself when every entry of the row is masked.
    row_max = logits.detach().amax(dim=-1)
    low = torch.finfo(logits.dtype).min
    if bool(((row_max > low) & (row_max < math.inf)).all()):
        return
    if bool(torch.isnan(row_max).any()):
        raise ValueError(
            f"`logits` contains NaN (in {int(torch.isnan(row_max).sum())} row(s)). "
            "Fix the upstream computation; mask forbidden entries with "
            "`torch.finfo(logits.dtype).min` or -inf, never NaN."
        )
    if bool((row_max == math.inf).any()):
        raise ValueError(
            f"`logits` contains +inf (in {int((row_max == math.inf).sum())} row(s)), which makes "
            "softmax undefined. Clamp the logits, e.g. `logits.clamp_max(1e4)`."
        )
    raise ValueError(
        f"`logits` has {int((row_max <= low).sum())} row(s) with every entry masked (-inf or "
        f"finfo.min = {low}); nothing can be sampled there. Leave at least one entry unmasked "
        "per row."
    )


def check_generator(generator: Any, logits: Tensor) -> None:
    """Raise a `ValueError` unless `generator` is None or a `torch.Generator` on logits' device."""
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise ValueError(
            f"`generator` must be a torch.Generator or None, got {type(generator).__name__}. "
            "Pass `torch.Generator(device=logits.device).manual_seed(seed)`."
        )
    if generator.device.type != logits.device.type:
        raise ValueError(
            f"`generator` is on device {generator.device} but `logits` is on {logits.device}. "
            "Create it with `torch.Generator(device=logits.device)`."
        )


def check_n_steps(n_steps: Any) -> int:
    if isinstance(n_steps, bool) or not isinstance(n_steps, numbers.Integral) or n_steps < 2:
        raise ValueError(
            f"`n_steps` must be an integer >= 2 (time-grid points including the clean one, i.e. "
            f"n_steps - 1 denoiser calls), got {n_steps!r}. Use `n_steps=2` for a single denoiser "
            "call; 3 to 9 are typical."
        )
    return int(n_steps)


def check_t_1(t_1: Any) -> float:
    if (
        isinstance(t_1, bool)
        or not isinstance(t_1, numbers.Real)
        or not (0.0 < float(t_1) <= 1.0)  # also rejects NaN
    ):
        raise ValueError(
            f"`t_1` must be a float in (0, 1], got {t_1!r}. It is the first non-zero time of the "
            "grid and acts as a temperature (t_1=1 is Straight-Through); 0.5 is the default."
        )
    return float(t_1)


def check_tau(tau: Any) -> float:
    if (
        isinstance(tau, bool)
        or not isinstance(tau, numbers.Real)
        or not (0.0 < float(tau) < math.inf)
    ):
        raise ValueError(
            f"`tau` must be a finite float > 0, got {tau!r}. Use e.g. `tau=0.5` (smaller is "
            "sharper and higher-variance)."
        )
    return float(tau)


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be True or False, got {value!r}.")
    return value


@dataclass(frozen=True)
class Estimator:
    """Base class of the relaxation estimators.

    Subclasses are frozen, keyword-only dataclasses: their fields are the validated options, so
    ``est.n_steps`` reads an option and :meth:`config` serialises them. An estimator is stateless;
    call it as ``est(logits, generator=g)`` to get a :class:`RelaxedSample`.
    """

    name: ClassVar[str] = ""

    def __call__(
        self, logits: Tensor, *, generator: torch.Generator | None = None
    ) -> RelaxedSample:
        """Draw one relaxed categorical sample per row of `logits`.

        Args:
            logits (`torch.Tensor` of shape `(..., V)`):
                unnormalised log-probabilities (float16, bfloat16, float32 or float64). Entries at
                `-inf` or `torch.finfo(dtype).min` are masked and never sampled.
            generator (`torch.Generator`, *optional*):
                source of every random draw, on `logits`' device; one seed reproduces the sample.

        Returns:
            [`RelaxedSample`]: `hard` and `soft` of shape `(..., V)` in `logits.dtype` and device,
            `index` of shape `(...)` (int64). Internal maths runs in float32 (float64 for float64
            logits).
        """
        check_logits(logits)
        check_generator(generator, logits)
        return self._relax(logits, generator)

    def _relax(self, logits: Tensor, generator: torch.Generator | None) -> RelaxedSample:
        raise NotImplementedError

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """Names of the keyword options this estimator accepts."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def config(self) -> dict[str, Any]:
        """JSON-serialisable description, ``{"name": ..., **options}``; ``get_estimator(**config)``
        rebuilds the estimator."""
        return {"name": self.name, **{k: getattr(self, k) for k in self.option_names()}}
