"""Search options of `redge-guidance generate`: flags generated from the search configs' fields.

`--search {none,best-of-n,smc,refine}` picks the method; every other search flag sets one field
of :class:`~redge_guidance.search.BestOfNConfig`, :class:`~redge_guidance.search.SMCConfig`,
:class:`~redge_guidance.search.RefineConfig` or :class:`~redge_guidance.search.Budget`
(:data:`SEARCH_FLAGS`: the flag, the field it sets per method, its help). Type, choices and the
default shown in `--help` come from the field itself. A flag left unset keeps the config's
default; a flag of another method is refused. The config's own validation messages are rewritten
with the flags (`num_particles` -> `--particles`). Importing this module does not import torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..search.config import BestOfNConfig, Budget, RefineConfig, SMCConfig
from .io import UsageError
from .options import to_flags

__all__ = [
    "BUDGET_FLAGS",
    "METHODS",
    "SEARCH_FLAGS",
    "SearchSettings",
    "add_search_flags",
    "check_ranking",
    "check_search",
    "search_settings",
]

#: `--search` value -> config class (`none`: plain generation, today's rows).
METHODS: dict[str, type] = {"best-of-n": BestOfNConfig, "smc": SMCConfig, "refine": RefineConfig}
#: (flag, {method: config field}, help). One flag may set a field of several methods.
SEARCH_FLAGS: tuple[tuple[str, dict[str, str], str], ...] = (
    (
        "--particles",
        {"smc": "num_particles", "best-of-n": "num_candidates"},
        "smc: particles per prompt (K); best-of-n: candidates per prompt (N)",
    ),
    (
        "--candidates-per-call",
        {"best-of-n": "batch_size"},
        "best-of-n: candidates per prompt in one pipeline call",
    ),
    ("--potential", {"smc": "potential"}, "smc: how the predicted reward enters the weights"),
    (
        "--smc-temperature",
        {"smc": "temperature"},
        "smc: λ of the target P(x)·exp(R(x)/λ); small concentrates on high reward",
    ),
    ("--resample", {"smc": "scheme"}, "smc: resampling scheme"),
    (
        "--resample-every",
        {"smc": "resample_every"},
        "smc: resample every N steps; 0 = only when the ESS is low",
    ),
    (
        "--ess-threshold",
        {"smc": "ess_threshold"},
        "smc: resample a prompt's particles when ESS < X·K; 0 = never on ESS",
    ),
    (
        "--pick",
        {"smc": "pick"},
        "smc: the returned particle: largest weight, largest reward, or drawn by weight",
    ),
    (
        "--proposal-correction",
        {"smc": "proposal_correction"},
        "smc: correct the guided proposal by log p - log q (off: for ablations only)",
    ),
    ("--rounds", {"refine": "rounds"}, "refine: rounds of remasking after the first pass"),
    (
        "--remask-fraction",
        {"refine": "fraction"},
        "refine: share of each row's generated tokens remasked per round, in (0, 1]",
    ),
    (
        "--remask-select",
        {"refine": "select"},
        "refine: which tokens: least probable when drawn, or largest reward-gradient gain",
    ),
    (
        "--refine-steps",
        {"refine": "num_inference_steps"},
        "refine: denoising steps of each round (default: --steps)",
    ),
    (
        "--keep-best",
        {"refine": "keep_best"},
        "refine: keep a row's previous tokens when a round lowered its reward",
    ),
)
#: (flag, `Budget` field, help): bounds on each batch's search.
BUDGET_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("--max-denoiser-forwards", "max_denoiser_forwards", "rows x steps through the denoiser"),
    ("--max-reward-forwards", "max_reward_forwards", "sequences scored by the reward"),
    ("--max-search-seconds", "max_seconds", "wall seconds (rows then depend on the machine)"),
)
#: Config fields the CLI sets itself: `--keep-particles` decides whether particles are kept.
CLI_SET_FIELDS = {"return_candidates", "return_particles"}
_METAVARS = {int: "N", float: "X"}


def _dest(flag: str) -> str:
    return "s_" + flag.lstrip("-").replace("-", "_")


def _field(cls: type, name: str) -> tuple[dataclasses.Field, Any]:
    """The dataclass field `name` of `cls` and its resolved type (annotations are strings)."""
    hints = typing.get_type_hints(cls)
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    return field, hints[name]


def _argparse_kwargs(cls: type, name: str) -> dict[str, Any]:
    """`type`/`choices`/`metavar` (or a `--x/--no-x` action) for the field `name` of `cls`."""
    _, hint = _field(cls, name)
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    if typing.get_origin(hint) is typing.Literal:
        return {"type": str, "choices": typing.get_args(hint)}
    if args[0] is bool:
        return {"action": argparse.BooleanOptionalAction}
    return {"type": args[0], "metavar": _METAVARS[args[0]]}


def _default_text(fields: Mapping[str, str]) -> str:
    shown = []
    for method, name in fields.items():
        field, _ = _field(METHODS[method], name)
        value = "off" if field.default is None else field.default
        shown.append(f"{method} {value}" if len(fields) > 1 else str(value))
    return ", ".join(shown)


def add_search_flags(
    parser: argparse.ArgumentParser,
    *,
    none_help: str = "one generation per sample",
    keep_particles: bool = True,
    ranking: bool = False,
) -> None:
    """The "search" argument group: `--search`, :data:`SEARCH_FLAGS`, `--keep-particles` (unless
    `keep_particles=False`), `--ranking` (with `ranking=True`, for hosts whose scheduler the
    search can set) and the budget (dest ``s_<flag>``, default None: unset)."""
    g = parser.add_argument_group("search (redge_guidance.search: best-of-N, SMC, refinement)")
    g.add_argument(
        "--search",
        choices=("none", *METHODS),
        default="none",
        help=f"inference-time search (default none: {none_help})",
    )
    for flag, fields, text in SEARCH_FLAGS:
        method, name = next(iter(fields.items()))
        kwargs = _argparse_kwargs(METHODS[method], name)
        if "default" not in text:
            text += f" (default: {_default_text(fields)})"
        g.add_argument(flag, dest=_dest(flag), default=None, help=text, **kwargs)
    if keep_particles:
        g.add_argument(
            "--keep-particles",
            action="store_true",
            help="smc / best-of-n: one row per particle (with its weight), not only the pick",
        )
    if ranking:
        g.add_argument(
            "--ranking",
            choices=("proposal", "prior"),
            default="proposal",
            help="confidence order: rank the cells to commit by the logits they are drawn from "
            "(proposal, the default: guided ones when guided) or by the model's own (prior: "
            "what `--search smc` with guided proposals needs)",
        )
    for flag, name, text in BUDGET_FLAGS:
        kwargs = _argparse_kwargs(Budget, name)
        g.add_argument(
            flag, dest=_dest(flag), default=None, help=f"per batch: {text} (default: off)", **kwargs
        )


# --------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class SearchSettings:
    """The validated search of a run: its config, budget and whether rows are particles."""

    config: BestOfNConfig | SMCConfig | RefineConfig
    budget: Budget | None
    keep_particles: bool

    @property
    def method(self) -> str:
        return self.config.method

    @property
    def rows_per_key(self) -> int:
        """Rows written per `(prompt_id, sample_id)`: the particles with `--keep-particles`."""
        if not self.keep_particles:
            return 1
        if isinstance(self.config, SMCConfig):
            return self.config.num_particles
        return self.config.num_candidates  # type: ignore[union-attr]

    def to_dict(self) -> dict[str, Any]:
        """What the run hash reads."""
        return {
            "config": self.config.to_dict(),
            "budget": None if self.budget is None else self.budget.to_dict(),
            "keep_particles": self.keep_particles,
        }


def _given(args: argparse.Namespace) -> list[str]:
    """The search flags set on the command line, in table order."""
    flags = [f for f, _, _ in SEARCH_FLAGS] + [f for f, _, _ in BUDGET_FLAGS]
    given = [f for f in flags if getattr(args, _dest(f), None) is not None]
    return given + (["--keep-particles"] if getattr(args, "keep_particles", False) else [])


def _build(cls: type, values: dict[str, Any], names: Mapping[str, str]) -> Any:
    try:
        return cls(**values)
    except (ValueError, TypeError) as err:
        raise UsageError(to_flags(str(err), names)) from None


def search_settings(args: argparse.Namespace) -> SearchSettings | None:
    """The search of `args` (None for `--search none`); `UsageError` naming the flag on a flag
    of another method, a bad value or `--keep-particles` where rows cannot be particles."""
    method = getattr(args, "search", "none")
    given = _given(args)
    if method == "none":
        if given:
            raise UsageError(
                f"`{given[0]}` is a search setting but no search was chosen; pass "
                "`--search best-of-n`, `--search smc` or `--search refine`."
            )
        return None
    values: dict[str, Any] = {}
    names: dict[str, str] = {}
    for flag, fields, _ in SEARCH_FLAGS:
        value = getattr(args, _dest(flag))
        if method in fields:
            names[fields[method]] = flag
            if value is not None:
                values[fields[method]] = value
        elif value is not None:
            takes = " or ".join(f"`--search {m}`" for m in fields)
            raise UsageError(f"`{flag}` applies to {takes}, not `--search {method}`.")
    keep = bool(getattr(args, "keep_particles", False))
    if keep and method == "refine":
        raise UsageError(
            "`--keep-particles` applies to `--search smc` or `--search best-of-n`; refinement "
            "keeps one sequence per sample. Drop `--keep-particles`."
        )
    cls = METHODS[method]
    keep_field = {"smc": "return_particles", "best-of-n": "return_candidates"}.get(method)
    if keep_field is not None:
        # The pick's weight (smc) needs the population too: always kept, the rows decide.
        values[keep_field] = True
    config = _build(cls, values, names)
    budget_values = {
        name: getattr(args, _dest(flag))
        for flag, name, _ in BUDGET_FLAGS
        if getattr(args, _dest(flag)) is not None
    }
    budget = None
    if budget_values:
        budget = _build(Budget, budget_values, {name: flag for flag, name, _ in BUDGET_FLAGS})
        if keep and method == "best-of-n":
            raise UsageError(
                "`--keep-particles` with a budget (`--max-...`): the budget may stop best-of-n "
                "before every candidate is drawn, so a sample's rows would not be known in "
                "advance and `--resume` could not tell a finished sample. Drop one of them."
            )
    return SearchSettings(config=config, budget=budget, keep_particles=keep)


def check_ranking(ranking: str | None, unmasking: str) -> None:
    """`--ranking prior` needs `--unmasking confidence` (random order ranks nothing)."""
    if ranking == "prior" and unmasking != "confidence":
        raise UsageError(
            "`--ranking prior` ranks the positions that confidence order commits, got "
            f"`--unmasking {unmasking}`, which ranks nothing. Add `--unmasking confidence`, or "
            "drop `--ranking`."
        )


def check_search(
    settings: SearchSettings,
    *,
    guided: bool,
    handoff: str,
    argmax_flag: tuple[str, str] | None,
    unmasking: str,
    steps: int,
    rows: int,
    ranking: str | None = None,
) -> None:
    """Refusals that depend on the other flags (before any model loads).

    Args:
        guided (`bool`): whether the guidance changes anything.
        handoff (`str`): the guidance's `handoff`.
        argmax_flag (`tuple[str, str]`, *optional*): the flag that makes the sampler greedy, as
            typed, and the one that samples (`("--temperature 0", "--temperature 1")`); None
            when it samples.
        unmasking (`str`): `random` or `confidence`.
        ranking (`str`, *optional*): `--ranking` (`proposal` or `prior`) where the host has
            the flag; None where it has not (its confidence order ranks by the guided logits).
        steps (`int`): denoising steps per generation.
        rows (`int`): the largest batch, in prompts (for the budget's first unit).
    """
    method, cfg = settings.method, settings.config
    check_ranking(ranking, unmasking)
    if isinstance(cfg, SMCConfig):
        if argmax_flag is not None:
            typed, fix = argmax_flag
            raise UsageError(
                f"`--search smc` needs a stochastic sampler, got `{typed}` (argmax): every "
                f"particle would be the same. Use `{fix}`."
            )
        if guided and unmasking == "confidence" and ranking != "prior":
            fix = "`--ranking prior` (rank by the model's logits), " if ranking is not None else ""
            raise UsageError(
                "`--search smc` with guided proposals needs `--unmasking random`, got "
                "`--unmasking confidence` ranked by the guided logits: the choice of positions "
                f"is then part of the proposal and its weight cannot be corrected. Use {fix}"
                "`--unmasking random`, or `--n-opt-steps 0` for SMC with the model's own "
                "proposals."
            )
        if guided and handoff == "argmax":
            raise UsageError(
                "`--search smc` with guided proposals needs `--handoff logits`, got `--handoff "
                "argmax`: an argmax proposal does not cover the model's support."
            )
    if settings.budget is None or settings.budget.max_denoiser_forwards is None:
        return
    per_row = 1
    if isinstance(cfg, SMCConfig):
        per_row = cfg.num_particles
    elif isinstance(cfg, BestOfNConfig):
        per_row = min(cfg.batch_size, cfg.num_candidates)
    first = rows * per_row * steps
    limit = settings.budget.max_denoiser_forwards
    if first > limit:
        raise UsageError(
            f"`--max-denoiser-forwards` {limit} is less than one unit of `--search {method}`: "
            f"{first} ({rows} prompts x {per_row} rows x {steps} steps per batch). Raise it, "
            "or lower `--batch-size`, `--particles`, `--candidates-per-call` or `--steps`."
        )
