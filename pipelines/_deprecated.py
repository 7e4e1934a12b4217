"""The scheduler's `order` -> `unmasking` rename: old keyword arguments and saved configs keep
working for one release with a `FutureWarning`. Delete this module when the release is out."""

from __future__ import annotations

import warnings
from typing import Any


def warn_order(where: str) -> None:
    warnings.warn(
        f"{where} `order` of `MaskedDiffusionScheduler` is renamed `unmasking` (the same values, "
        "'random' or 'confidence'); `order` is read for one more release. Use `unmasking=`.",
        FutureWarning,
        stacklevel=5,  # the caller of `MaskedDiffusionScheduler(...)` or `from_config`
    )


def resolve_order(scheduler: Any, unmasking: str, order: str | None) -> str:
    """`unmasking` from the constructor's `unmasking=` and deprecated `order=`; with `order`, the
    scheduler's config is updated (`register_to_config` has already recorded the default)."""
    if order is None:
        return unmasking
    warn_order("The argument")
    if unmasking not in ("random", order):
        raise ValueError(
            f"Both `unmasking={unmasking!r}` and the deprecated `order={order!r}` were given. "
            "Pass only `unmasking=`."
        )
    # store the value, and that it was given (else a reload would take the default again)
    defaults = [k for k in scheduler.config.get("_use_default_values", []) if k != "unmasking"]
    scheduler.register_to_config(unmasking=order, _use_default_values=defaults)
    return order


def rename_order(config_dict: dict[str, Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """A copy of `config_dict` with a saved `order` key read as `unmasking`; `kwargs` (overrides
    of `from_config`) is renamed in place. An explicit `unmasking` wins over `order`."""
    config_dict = dict(config_dict)
    for where, source in (("The saved config key", config_dict), ("The argument", kwargs)):
        if "order" in source:
            warn_order(where)
            value = source.pop("order")
            if "unmasking" not in source or "unmasking" in source.get("_use_default_values", []):
                source["unmasking"] = value
    return config_dict
