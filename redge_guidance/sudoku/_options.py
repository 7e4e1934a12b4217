"""Option checks of :class:`~redge_guidance.sudoku.SudokuSolver` (one place for the messages)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from .rules import PRUNINGS

_UNMASKINGS = ("random", "confidence")
_DECODES = ("argmax", "sample")
_SEARCHES = ("none", "backtrack")


def _make_generator(generator: torch.Generator | None) -> torch.Generator:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(
            f"`generator` must be a torch.Generator or None, got {type(generator).__name__}. "
            "Pass e.g. `torch.Generator().manual_seed(0)`."
        )
    return generator


def _batch_generators(generator: torch.Generator | None, n: int) -> list[torch.Generator | None]:
    """One CPU generator per batch, seeded from `generator` (None: unseeded)."""
    if generator is None:
        return [None] * n
    seeds = torch.randint(0, 2**62, (n,), generator=generator).tolist()
    return [torch.Generator().manual_seed(s) for s in seeds]


def _parse_device(device: str | torch.device) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"`device` must name a torch device, got {device!r}. Use 'cpu' or 'cuda'."
        ) from None


def _resolve_unmasking(unmasking: str, order: str | None) -> str:
    """`unmasking`, or the value of the deprecated `order=` keyword (with a FutureWarning)."""
    if order is None:
        return unmasking
    warnings.warn(
        "`order` of `SudokuSolver` is renamed `unmasking` (the same values, 'confidence' or "
        "'random'), like the scheduler's; `order` is read for one more release.",
        FutureWarning,
        stacklevel=3,
    )
    if unmasking not in ("confidence", order):
        raise ValueError(
            f"Both `unmasking={unmasking!r}` and the deprecated `order={order!r}` were given. "
            "Pass only `unmasking=`."
        )
    return order


def _check_sampler(
    num_inference_steps: Any, restarts: Any, unmasking: Any, decode: Any, temperature: Any
) -> None:
    """The sampler options of :class:`SudokuSolver` (remasking is checked by the scheduler)."""
    _check_positive_int("num_inference_steps", num_inference_steps, "12")
    if not isinstance(restarts, int) or isinstance(restarts, bool) or restarts < 0:
        raise ValueError(
            f"`restarts` must be an integer >= 0, got {restarts!r}. Use e.g. `restarts=4`, "
            "or 0 for a single denoising pass per puzzle."
        )
    if unmasking not in _UNMASKINGS:
        raise ValueError(
            f"`unmasking` must be one of {list(_UNMASKINGS)}, got {unmasking!r}. Use "
            "'confidence' (the shipped solver's) or 'random'."
        )
    if decode not in _DECODES:
        raise ValueError(f"`decode` must be one of {list(_DECODES)}, got {decode!r}.")
    if (
        not isinstance(temperature, (int, float))
        or isinstance(temperature, bool)
        or not (math.isfinite(temperature) and temperature > 0)
    ):
        raise ValueError(
            f"`temperature` must be a finite number > 0, got {temperature!r}. "
            "Use `decode='argmax'` for greedy decoding."
        )


def _check_positive_int(name: str, value: Any, example: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(
            f"`{name}` must be an integer >= 1, got {value!r}. Use e.g. `{name}={example}`."
        )


def _check_remask(remask: Any, remask_eta: Any) -> None:
    """`remask` and `remask_eta` by the scheduler's own rule (a scheduler is cheap to build)."""
    from pipelines import MaskedDiffusionScheduler

    MaskedDiffusionScheduler(remask=remask, remask_eta=remask_eta)


def _check_search(
    search: Any, pruning: Any, max_prior_calls: Any, search_guidance: Any, guided: bool = True
) -> None:
    """The search options of :class:`SudokuSolver` (`guided`: the solver has a guidance)."""
    if search not in _SEARCHES:
        raise ValueError(
            f"`search` must be one of {list(_SEARCHES)}, got {search!r}. Use 'backtrack' (search "
            "through the prior, the default) or 'none' (denoising passes only)."
        )
    if pruning not in PRUNINGS:
        raise ValueError(
            f"`pruning` must be one of {list(PRUNINGS)}, got {pruning!r}. Use 'units' (the "
            "default) or 'peers' (only the digits of a cell's peers are ruled out)."
        )
    _check_positive_int("max_prior_calls", max_prior_calls, "64")
    if not isinstance(search_guidance, bool):
        raise ValueError(
            f"`search_guidance` must be a bool, got {search_guidance!r}. Use False (the "
            "default: the search ranks moves by the prior alone) or True."
        )
    if search_guidance and (search != "backtrack" or not guided):
        given = f"`search={search!r}`" if search != "backtrack" else "`guidance=None`"
        raise ValueError(
            f"`search_guidance=True` steers the backtracking search with the guidance, got "
            f"{given}. Pass `search='backtrack'` and a `guidance`, or `search_guidance=False`."
        )
