"""Typed, validated configurations of the search methods and of the compute budget.

Every config is a frozen dataclass, validated on construction (a ``ValueError`` naming the field,
echoing the value and giving the fix), JSON round-trippable through ``to_dict`` / ``from_dict``,
so a command line or a sweep file can build one. Importing this module does not import torch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "BestOfNConfig",
    "Budget",
    "RefineConfig",
    "SMCConfig",
    "SearchConfig",
    "config_from_dict",
]

POTENTIALS = ("difference", "max", "sum")
SCHEMES = ("multinomial", "systematic", "residual")
PICKS = ("weight", "reward", "sample")
SELECTORS = ("confidence", "gradient")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_int(name: str, value: Any, low: int, fix: str) -> None:
    if not _is_int(value) or value < low:
        raise ValueError(f"`{name}` must be an integer >= {low}, got {value!r}. {fix}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}, got {value!r}.")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be True or False, got {value!r}.")


class _Serialisable:
    """``to_dict`` / ``from_dict`` with a named error for unknown keys."""

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-serialisable dict, plus ``"method"`` for search configs."""
        out = dataclasses.asdict(self)  # type: ignore[call-overload]
        method = getattr(type(self), "method", None)
        if method is not None:
            out["method"] = method
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        """Build from ``to_dict``'s output (``"method"``, if present, must match)."""
        if not isinstance(data, Mapping):
            raise ValueError(
                f"`data` must be a dict of {cls.__name__} fields, got {data!r}. Pass e.g. "
                f"`{cls.__name__}.from_dict(config.to_dict())`."
            )
        data = dict(data)
        method = data.pop("method", getattr(cls, "method", None))
        if method != getattr(cls, "method", None):
            raise ValueError(
                f"`method` is {method!r} but {cls.__name__} is {getattr(cls, 'method', None)!r}. "
                "Use `config_from_dict` to pick the class from `method`."
            )
        valid = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ValueError(f"Unknown {cls.__name__} fields {unknown}. Valid fields: {valid}.")
        return cls(**data)


@dataclass(frozen=True)
class Budget(_Serialisable):
    """Upper bounds on what a search may spend; None means unbounded.

    A method checks the budget before each unit of work it can skip (a best-of-N batch, a
    refinement round) and stops starting new units once one bound would be crossed; the unit in
    flight is finished. An SMC run is one unit (its particles move together): its denoiser cost,
    fixed by ``num_particles`` and the number of steps, is checked once before any work, and the
    reward and time bounds do not stop it. Counts are in sequences: a denoiser call on a batch
    of 8 rows is 8 denoiser forwards.

    Args:
        max_denoiser_forwards (`int`, *optional*): denoiser forwards (rows × steps).
        max_reward_forwards (`int`, *optional*): reward forwards (sequences scored, guidance's
            inner steps included).
        max_seconds (`float`, *optional*): wall-clock seconds.
    """

    max_denoiser_forwards: int | None = None
    max_reward_forwards: int | None = None
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_denoiser_forwards", "max_reward_forwards"):
            value = getattr(self, name)
            if value is not None:
                _check_int(name, value, 1, f"Pass a positive count or `{name}=None` (no bound).")
        s = self.max_seconds
        if s is not None and (not _is_real(s) or not math.isfinite(s) or s <= 0):
            raise ValueError(
                f"`max_seconds` must be a finite number > 0 or None, got {s!r}. "
                "Use `max_seconds=None` for no time bound."
            )


@dataclass(frozen=True)
class BestOfNConfig(_Serialisable):
    """Best-of-N: draw ``num_candidates`` sequences per prompt, keep the best by reward.

    Works with black-box rewards (candidates are only scored). With guidance, each candidate is
    a guided generation.

    Args:
        num_candidates (`int`): candidates per prompt (N).
        batch_size (`int`): candidates per prompt in one pipeline call (the denoiser sees
            ``B × batch_size`` rows).
        return_candidates (`bool`): keep every candidate and its reward in the result.
    """

    method = "best-of-n"

    # 8 candidates: a common small-budget setting in the inference-time scaling literature.
    num_candidates: int = 8
    # All 8 in one call: one denoiser batch per step.
    batch_size: int = 8
    # Candidates are (B, N, L) ids: cheap to keep.
    return_candidates: bool = True

    def __post_init__(self) -> None:
        _check_int("num_candidates", self.num_candidates, 1, "Use e.g. `num_candidates=8`.")
        _check_int("batch_size", self.batch_size, 1, "Use e.g. `batch_size=8`.")
        _check_bool("return_candidates", self.return_candidates)


@dataclass(frozen=True)
class SMCConfig(_Serialisable):
    """Sequential Monte Carlo over the denoising path (Feynman-Kac steering), optionally with
    guided proposals.

    Target: ``π*(x) ∝ P(x) · exp(R(x) / temperature)`` with ``P`` the unguided sampler's law and
    ``R`` depending on ``potential``: the final reward (``"difference"``), the largest predicted
    reward along the path (``"max"``) or their sum (``"sum"``).

    Args:
        num_particles (`int`): particles per prompt (K).
        potential (`Literal["difference", "max", "sum"]`): how the reward of the predicted clean
            sequence at each step enters the weights (see ``docs/search.md``).
        temperature (`float`): λ > 0 of the tilt; small concentrates on high reward.
        resample_every (`int`): resample every this many steps; 0 = only when the ESS is low.
        ess_threshold (`float`): resample a prompt's particles when their effective sample size
            falls below ``ess_threshold × K``; 0 = never on ESS, 1 = at every step.
        scheme (`Literal["multinomial", "systematic", "residual"]`): resampling scheme.
        pick (`Literal["weight", "reward", "sample"]`): the returned sequence per prompt: the
            particle of largest final weight, of largest reward, or one drawn by weight (a draw
            from the approximated target).
        proposal_correction (`bool`): add ``log p − log q`` of the committed tokens to the weights
            when guidance proposes. Without it the population targets the guided process, not
            ``π*``; only for ablations.
        return_particles (`bool`): keep every final particle, its weight and reward.
    """

    method = "smc"

    # 8 particles: small enough to batch with any prompt count on one device.
    num_particles: int = 8
    # "difference" telescopes to the final reward: the target is the reward-tilted law itself.
    potential: Literal["difference", "max", "sum"] = "difference"
    # λ = 1 matches GuidanceConfig's kl_weight default (its optimum tilts by exp(r / kl_weight)).
    temperature: float = 1.0
    # Adaptive only by default: resampling adds variance when the weights are still even.
    resample_every: int = 0
    # τ = 0.5, the usual adaptive-resampling threshold.
    ess_threshold: float = 0.5
    # Systematic: one uniform per prompt, lower variance than multinomial.
    scheme: Literal["multinomial", "systematic", "residual"] = "systematic"
    # The best-weighted particle: with the "difference" potential, the largest final reward.
    pick: Literal["weight", "reward", "sample"] = "weight"
    # Correct the guided proposal: this is what keeps the population on target.
    proposal_correction: bool = True
    # (B, K, L) ids and (B, K) weights: cheap to keep.
    return_particles: bool = True

    def __post_init__(self) -> None:
        _check_int("num_particles", self.num_particles, 1, "Use e.g. `num_particles=8`.")
        _check_choice("potential", self.potential, POTENTIALS)
        t = self.temperature
        if not _is_real(t) or not math.isfinite(t) or t <= 0:
            raise ValueError(
                f"`temperature` must be a finite number > 0, got {t!r}. Use e.g. "
                "`temperature=1.0`; larger values stay closer to the model."
            )
        _check_int("resample_every", self.resample_every, 0, "Use 0 for ESS-triggered only.")
        e = self.ess_threshold
        if not _is_real(e) or not 0.0 <= e <= 1.0:
            raise ValueError(
                f"`ess_threshold` must be a number in [0, 1], got {e!r}. Use e.g. 0.5 (0 turns "
                "ESS-triggered resampling off)."
            )
        _check_choice("scheme", self.scheme, SCHEMES)
        _check_choice("pick", self.pick, PICKS)
        _check_bool("proposal_correction", self.proposal_correction)
        _check_bool("return_particles", self.return_particles)


@dataclass(frozen=True)
class RefineConfig(_Serialisable):
    """Reward-driven remasking (ReMDM-style refinement): after a first pass, remask the positions
    the reward likes least and denoise them again, for a number of rounds.

    Args:
        rounds (`int`): refinement rounds after the first pass.
        fraction (`float`): share of each row's generated positions remasked per round, in
            (0, 1] (at least one position).
        select (`Literal["confidence", "gradient"]`): which positions: the lowest probability
            under the logits they were committed from, or the largest first-order reward gain
            of switching token (needs a differentiable reward). A ``remask_fn`` passed to
            :func:`search` replaces both (e.g. Sudoku cells that break a rule).
        num_inference_steps (`int`, *optional*): denoising steps of each re-denoising pass;
            None = the same as the first pass.
        keep_best (`bool`): keep a row's previous sequence when the round lowered its reward.
    """

    method = "refine"

    # Two rounds: most of the gain of remasking comes early.
    rounds: int = 2
    # A quarter of the positions: enough to move, few enough to keep the good context.
    fraction: float = 0.25
    # Confidence needs no extra model or reward call.
    select: Literal["confidence", "gradient"] = "confidence"
    num_inference_steps: int | None = None
    # Greedy acceptance: a round never lowers a row's reward.
    keep_best: bool = True

    def __post_init__(self) -> None:
        _check_int("rounds", self.rounds, 0, "Use e.g. `rounds=2` (0: the first pass only).")
        f = self.fraction
        if not _is_real(f) or not 0.0 < f <= 1.0:
            raise ValueError(f"`fraction` must be a number in (0, 1], got {f!r}. Try 0.25.")
        _check_choice("select", self.select, SELECTORS)
        n = self.num_inference_steps
        if n is not None:
            _check_int("num_inference_steps", n, 1, "Or None to reuse the first pass's count.")
        _check_bool("keep_best", self.keep_best)


SearchConfig = BestOfNConfig | SMCConfig | RefineConfig
_METHODS: dict[str, type] = {c.method: c for c in (BestOfNConfig, SMCConfig, RefineConfig)}


def config_from_dict(data: dict[str, Any]) -> SearchConfig:
    """The search config ``data["method"]`` names (``"best-of-n"``, ``"smc"``, ``"refine"``)."""
    method = data.get("method") if isinstance(data, dict) else None
    if method not in _METHODS:
        raise ValueError(
            f"`method` must be one of {list(_METHODS)}, got {method!r}. "
            'Pass e.g. {"method": "smc", "num_particles": 8}.'
        )
    return _METHODS[method].from_dict(data)
