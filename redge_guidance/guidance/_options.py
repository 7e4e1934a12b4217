"""Helpers of :mod:`.config`: type tests, the immutable estimator options and the pre-0.2 field
names. No torch import (the CLI's ``--help`` reads the config)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["FrozenOptions", "freeze", "thaw", "is_int", "is_real", "upgrade_names", "RENAMED"]

# Old field names, read from saved configs and keyword overrides for one release.
RENAMED = {"forget": "warm_start", "decode": "handoff"}


def is_int(value: Any) -> bool:
    """True for Python integers, not for bools."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """True for Python ints and floats, not for bools."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return FrozenOptions(value)
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


class FrozenOptions(Mapping):
    """An immutable, hashable mapping of estimator options (JSON values, lists kept as tuples)."""

    __slots__ = ("_items",)

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        items = dict(data or {})
        object.__setattr__(self, "_items", {k: freeze(v) for k, v in sorted(items.items())})

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(self._items.items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self._items) == dict(other)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("FrozenOptions is immutable; build a new GuidanceConfig instead.")

    def __repr__(self) -> str:
        return repr(self._items)


def upgrade_names(options: dict[str, Any], where: str) -> dict[str, Any]:
    """Convert the pre-0.2 field names (``forget``, ``decode``) to the current ones, warning once
    per call; a name given twice (old and new) is an error."""
    for old, new in RENAMED.items():
        if old not in options:
            continue
        if new in options:
            raise ValueError(
                f"{where} got both `{old}` (deprecated) and `{new}`; pass only `{new}`."
            )
        value = options.pop(old)
        if old == "forget":
            converted = 1.0 - value if is_real(value) else value
        else:
            converted = {"sample": "logits"}.get(value, value)
        warnings.warn(
            f"{where}: `{old}={value!r}` is deprecated; use `{new}={converted!r}`.",
            FutureWarning,
            stacklevel=3,
        )
        options[new] = converted
    return options
