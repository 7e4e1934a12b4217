"""Relaxation estimators: one interface, ``est(logits, *, generator=None) -> RelaxedSample``.

>>> est = get_estimator("redge", n_steps=3, t_1=0.5)
>>> sample = est(logits, generator=torch.Generator().manual_seed(0))
>>> sample.hard, sample.soft, sample.index   # (..., V), (..., V), (...)
"""

from __future__ import annotations

from typing import Any

from .base import Estimator, RelaxedSample
from .baselines import GumbelSoftmax, ReinMax, StraightThrough
from .diffusion import ReDGE, ReDGECov, ReinDGE, Schedule, redge

__all__ = [
    "ESTIMATORS",
    "Estimator",
    "GumbelSoftmax",
    "ReDGE",
    "ReDGECov",
    "ReinDGE",
    "ReinMax",
    "RelaxedSample",
    "Schedule",
    "StraightThrough",
    "get_estimator",
    "redge",
]

# name -> estimator class; the names are the `name` of each class (and of its `config()`).
ESTIMATORS: dict[str, type[Estimator]] = {
    cls.name: cls for cls in (ReDGE, ReDGECov, ReinDGE, StraightThrough, GumbelSoftmax, ReinMax)
}


def get_estimator(name: str, **options: Any) -> Estimator:
    """Build a registered estimator from its name and keyword options.

    Args:
        name (`str`): a key of `ESTIMATORS`.
        **options: that estimator's options (e.g. `n_steps`, `t_1` for "redge"); every name and
            value is validated. ``get_estimator(**est.config())`` rebuilds `est`.

    Raises:
        `ValueError`: unknown name, unknown option, or an option outside its valid range.
    """
    if name not in ESTIMATORS:
        raise ValueError(
            f"Unknown estimator `name={name!r}`. Valid names: {', '.join(sorted(ESTIMATORS))}."
        )
    cls = ESTIMATORS[name]
    valid = cls.option_names()
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"Unknown option(s) {unknown} for estimator {name!r}. Valid options: "
            f"{list(valid) if valid else 'none'}."
        )
    return cls(**options)
