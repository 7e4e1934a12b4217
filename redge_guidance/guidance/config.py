"""`GuidanceConfig`: the hyper-parameters of reward guidance, immutable, validated once.

Importing this module does not import torch (the CLI builds its `--help` from the fields'
metadata); the estimator is imported and built on construction.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ._options import RENAMED, FrozenOptions, is_int, is_real, thaw, upgrade_names

__all__ = ["GuidanceConfig", "FrozenOptions", "CONFIG_NAME"]

#: File name written by `GuidanceConfig.save_pretrained` and read by `from_pretrained`.
CONFIG_NAME = "guidance_config.json"

_HANDOFFS = ("logits", "argmax")
_SCORE_FUNCTION = ("auto", "always", "never")
_OPT_DTYPES = ("float32", "float64")
_MIXED_PRECISION = ("no", "bf16")


def _help(text: str, **extra: Any) -> dict[str, Any]:
    """Field metadata read by the CLI: the flag's help text (and choices / metavar)."""
    return {"help": text, **extra}


@dataclass(frozen=True)
class GuidanceConfig:
    """Hyper-parameters of :class:`~redge_guidance.RewardGuidance`: immutable, hashable, validated
    once on construction, JSON round-trippable (``save_pretrained`` / ``from_pretrained``).

    Args:
        estimator (`str`): relaxation used for the pathwise gradient, a key of
            ``redge_guidance.estimators.ESTIMATORS``.
        estimator_options (`Mapping[str, Any]`): keyword options of that estimator, validated by
            building it; stored as an immutable :class:`FrozenOptions`.
        n_opt_steps (`int`): Adam steps per guided denoising step; 0 turns guidance off.
        lr (`float`): Adam learning rate on φ (logit units).
        kl_weight (`float`): weight λ of the exact KL(softmax φ ‖ softmax ℓ) summed over editable
            positions. The optimum is the prior tilted by the reward, q ∝ p·exp(reward/λ), so λ
            is in the reward's units: scale the reward or lower λ for a stronger pull. Adam is
            invariant to the scale of the objective, so a huge λ keeps φ only *near* ℓ (the first
            step moves each logit by about ``lr``); ``n_opt_steps=0`` reproduces unguided
            sampling bit for bit.
        warm_start (`float`): in [0, 1]. φ starts at ``(1 − warm_start)·ℓ + warm_start·φ_prev``
            at positions that were editable at the previous guided call too (φ_prev: that call's
            final φ), elsewhere at ℓ. 0 = no memory (the paper's setting).
        num_relaxed_samples (`int`): relaxed draws per inner step; the reward is averaged over
            them (batched as ``S·B`` sequences). The score-function gradient needs at least 2.
        guide_every (`int`): guide one denoising step in ``guide_every``.
        guide_start (`float`): first guided fraction of the trajectory, in [0, 1].
        guide_stop (`float`): end (exclusive) of the guided fraction, in [0, 1]. Step ``i`` of
            ``N`` is guided iff ``guide_start <= i/N < guide_stop`` and ``i % guide_every == 0``.
        handoff (`Literal["logits", "argmax"]`): what the hook hands the sampler at editable
            positions. ``"logits"``: φ itself, so the sampler's own decode (its draw, argmax or
            confidence ranking) applies to softmax(φ) exactly as it would to the model's logits.
            ``"argmax"``: one-hot logits at argmax φ (0 there, ``finfo(dtype).min`` elsewhere), so
            the sampler commits argmax φ wherever it unmasks; confidence-ordered samplers then see
            probability 1 everywhere and fall back to their tie-breaking.
        tol (`float`): minimum improvement of a sample's inner objective that resets its patience.
        patience (`int`): per-sample early stop: a sample whose inner objective has not improved
            by more than ``tol`` for ``patience`` consecutive inner steps stops moving; the loop
            ends when every sample has stopped. 0 = off (no host synchronisation in the loop).
        max_grad_norm (`float | None`): clip the gradient's L2 norm *per sample* (over that
            sample's editable positions) before each Adam step. None = off.
        score_function (`Literal["auto", "always", "never"]`): gradient of the reward term.
            ``"auto"``: pathwise through the relaxation for rewards with ``differentiable=True``,
            score function (REINFORCE, leave-one-out baseline) for black boxes. ``"always"``: score
            function for every reward. ``"never"``: a black-box reward is an error.
        optimize_dtype (`Literal["float32", "float64"]`): dtype of φ and of the inner loop; the
            returned logits are in the input dtype.
        mixed_precision (`Literal["no", "bf16"]`): as accelerate's option of that name. ``"bf16"``:
            the relaxation's input and output, the reward's input and the gradient it returns are
            bfloat16 (half the memory of the (S·B, L, V) reward input, no cast for a bf16
            reward model); φ's master copy, Adam's state, every softmax / log-softmax and the KL
            stay in ``optimize_dtype``. ``"no"``: everything in ``optimize_dtype``.
        compile (`bool`): run the inner step through ``torch.compile`` (no graph breaks; sizes
            that change between guided steps compile once more, as dynamic shapes): the KL, the
            gradient clipping and an Adam update, and for ReDGE / ReinDGE with the pathwise
            gradient the relaxation's forward and backward too. The first guided step pays the
            compilation (tens of seconds on CPU); see ``docs/method.md`` for when it pays.
        top_k (`int | None`): optimise φ only on the model's ``top_k`` most likely tokens at each
            editable position; every other token stays impossible, in the inner loop and in what
            the sampler receives. The KL is still to the full prior (``KL(q ‖ p_S) − log p(S)``).
            Cheaper at large vocabularies (all inner tensors are ``(N, K)``), and a fluency
            control: the reward cannot pull in tokens the model ranks below ``top_k``. None = the
            whole vocabulary (the default). For language models start from ``top_k=256``: on the
            embedded text model it steered as far as the whole vocabulary toward a target the
            model ranks high, at half the judge-LM perplexity; 64 for more fluency, None for
            targets the model ranks low (docs/method.md, "Choosing k").
        top_p (`float | None`): the same with the smallest set of most likely tokens whose mass
            reaches ``top_p`` (in (0, 1]), padded to the widest row of the step; applied within
            ``top_k`` when both are set (a full sort of each row when ``top_k`` is None).
        record_rewards (`bool`): evaluate ``reward_before``/``reward_after`` for the trace (two
            extra reward forwards and a host synchronisation per guided step).
    """

    # ReDGE is the paper's estimator; its defaults (n_steps 3, t_1 0.5) are the reference code's.
    estimator: str = field(
        default="redge",
        metadata=_help(
            "relaxation (an ESTIMATORS key): redge, redge_cov, reindge, "
            "straight_through, gumbel_softmax, reinmax",
            metavar="NAME",
        ),
    )
    # Empty: use the estimator's own validated defaults.
    estimator_options: Mapping[str, Any] = field(
        default_factory=FrozenOptions, metadata={"cli": False}
    )
    # 20 inner steps is the MaskGIT setting of the paper; Sudoku used 1000+ but costs 50x more.
    n_opt_steps: int = field(
        default=20, metadata=_help("Adam steps per guided denoising step (0: no guidance)")
    )
    # Adam lr 0.1 is the paper's Sudoku setting (MaskGIT used 0.5 with a 100x scaled reward).
    lr: float = field(default=0.1, metadata=_help("Adam learning rate on the variational logits"))
    # Weight 1 is the paper's (the objective is then the KL-regularised reward, posterior-like).
    kl_weight: float = field(
        default=1.0, metadata=_help("weight of KL(guided || model) summed over positions")
    )
    # 0 = re-initialise φ from the model's logits at every step, as in the paper.
    warm_start: float = field(
        default=0.0,
        metadata=_help("weight in [0, 1] of the previous step's φ in the new start (0: none)"),
    )
    # One relaxed draw per inner step, as in the paper; more lowers gradient variance linearly.
    num_relaxed_samples: int = field(
        default=1, metadata=_help("relaxed draws per inner step (>= 2 for black-box rewards)")
    )
    # Guide every step by default; larger values trade reward for speed.
    guide_every: int = field(default=1, metadata=_help("guide one denoising step in N"))
    # Guide the whole trajectory by default.
    guide_start: float = field(
        default=0.0, metadata=_help("first guided fraction of the trajectory, in [0, 1]")
    )
    guide_stop: float = field(
        default=1.0, metadata=_help("end (exclusive) of the guided fraction, in [0, 1]")
    )
    # Hand φ to the sampler so its own decode applies, as when unguided (MaskGIT setting).
    handoff: Literal["logits", "argmax"] = field(
        default="logits",
        metadata=_help(
            "what guidance hands the sampler: its logits φ or their argmax", choices=_HANDOFFS
        ),
    )
    # Early stopping is off by default (tol 0, patience 0): a fixed budget is reproducible.
    tol: float = field(default=0.0, metadata=_help("early-stop tolerance of the inner objective"))
    patience: int = field(
        default=0, metadata=_help("per-sample early-stop patience in inner steps (0: off)")
    )
    # No clipping by default: Adam already normalises the step size.
    max_grad_norm: float | None = field(
        default=None, metadata=_help("clip each sample's gradient norm to X (default: off)")
    )
    # Pathwise for differentiable rewards, REINFORCE for black boxes.
    score_function: Literal["auto", "always", "never"] = field(
        default="auto",
        metadata=_help(
            "REINFORCE gradient: auto = for black-box rewards only", choices=_SCORE_FUNCTION
        ),
    )
    # float32: enough for the softmax/KL, half the memory of float64; bf16 logits are upcast.
    optimize_dtype: Literal["float32", "float64"] = field(
        default="float32",
        metadata=_help("dtype of the inner optimisation", choices=_OPT_DTYPES),
    )
    # No mixed precision by default: bf16 pays in memory, not in CPU time (docs/method.md).
    mixed_precision: Literal["no", "bf16"] = field(
        default="no",
        metadata=_help(
            "bf16: relaxation and reward input in bfloat16, φ/Adam/KL in --optimize-dtype",
            choices=_MIXED_PRECISION,
        ),
    )
    # Eager by default: compiling costs tens of seconds once and pays only on long generations.
    compile: bool = field(
        default=False, metadata=_help("torch.compile the inner step (KL, Adam, ReDGE relaxation)")
    )
    # The whole vocabulary by default: no token the model allows is out of the reward's reach, and
    # a support changes what the sampler draws (a top-k truncation), which should be chosen, not
    # inherited. docs/method.md ("Choosing k") recommends 256 (or 64) for language models.
    top_k: int | None = field(
        default=None,
        metadata=_help(
            "optimise only the model's K most likely tokens per position (default: all)"
        ),
    )
    top_p: float | None = field(
        default=None,
        metadata=_help("optimise only the model's nucleus of mass X per position (within --top-k)"),
    )
    # Record before/after rewards in the trace; costs two reward forwards per guided step.
    record_rewards: bool = field(
        default=True,
        metadata=_help("record per-step rewards in the trace (2 reward calls per guided step)"),
    )

    def __post_init__(self) -> None:
        if not isinstance(self.estimator, str):
            raise ValueError(
                f"`estimator` must be a string (an estimator name), got {self.estimator!r}. "
                "Pass e.g. `estimator='redge'`."
            )
        options = self.estimator_options
        if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
            raise ValueError(
                f"`estimator_options` must be a dict with string keys, got {options!r}. "
                "Pass e.g. `estimator_options={'n_steps': 3}`."
            )
        try:
            json.dumps(thaw(options))
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"`estimator_options` must be JSON-serialisable, got {options!r} ({err}). "
                "Use plain numbers, strings and booleans."
            ) from None
        object.__setattr__(self, "estimator_options", FrozenOptions(options))
        self._check_numbers()
        self._check_choices()
        # Validates `estimator` and `estimator_options`; built once, shared by every hook.
        object.__setattr__(self, "_estimator", self._build())

    def _check_numbers(self) -> None:
        for name, low in (
            ("n_opt_steps", 0),
            ("num_relaxed_samples", 1),
            ("guide_every", 1),
            ("patience", 0),
        ):
            value = getattr(self, name)
            if not is_int(value) or value < low:
                fix = {
                    "n_opt_steps": "Use `n_opt_steps=0` to turn guidance off.",
                    "patience": "Use `patience=0` to turn early stopping off.",
                }.get(name, "")
                raise ValueError(
                    f"`{name}` must be an integer >= {low}, got {value!r}. {fix}".rstrip()
                )
        for name in ("lr", "kl_weight", "tol"):
            value = getattr(self, name)
            if not is_real(value) or not math.isfinite(value):
                raise ValueError(f"`{name}` must be a finite number, got {value!r}.")
        if self.lr <= 0:
            raise ValueError(f"`lr` must be > 0, got {self.lr!r}. Try `lr=0.1`.")
        if self.kl_weight < 0:
            raise ValueError(
                f"`kl_weight` must be >= 0, got {self.kl_weight!r}. "
                "Set `kl_weight=0` to disable the KL penalty."
            )
        if self.tol < 0:
            raise ValueError(f"`tol` must be >= 0, got {self.tol!r}. Use `tol=0.0`.")
        for name in ("warm_start", "guide_start", "guide_stop"):
            value = getattr(self, name)
            if not is_real(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"`{name}` must be a number in [0, 1], got {value!r}.")
        if self.guide_start > self.guide_stop:
            raise ValueError(
                f"`guide_start` ({self.guide_start!r}) must be <= `guide_stop` "
                f"({self.guide_stop!r}). Swap them or set `guide_start=0.0`."
            )
        if self.top_k is not None and (not is_int(self.top_k) or self.top_k < 1):
            raise ValueError(
                f"`top_k` must be an integer >= 1 or None, got {self.top_k!r}. "
                "Use `top_k=None` to optimise over the whole vocabulary."
            )
        top_p = self.top_p
        if top_p is not None and (not is_real(top_p) or not 0.0 < top_p <= 1.0):
            raise ValueError(
                f"`top_p` must be a number in (0, 1] or None, got {top_p!r}. "
                "Use e.g. `top_p=0.95`, or `top_p=None` for no nucleus restriction."
            )
        clip = self.max_grad_norm
        if clip is not None and (not is_real(clip) or not math.isfinite(clip) or clip <= 0):
            raise ValueError(
                f"`max_grad_norm` must be a finite number > 0 or None, got {clip!r}. "
                "Use `max_grad_norm=None` to turn clipping off."
            )

    def _check_choices(self) -> None:
        for name, choices in (
            ("handoff", _HANDOFFS),
            ("score_function", _SCORE_FUNCTION),
            ("optimize_dtype", _OPT_DTYPES),
            ("mixed_precision", _MIXED_PRECISION),
        ):
            value = getattr(self, name)
            if value not in choices:
                raise ValueError(f"`{name}` must be one of {list(choices)}, got {value!r}.")
        if self.score_function == "always" and self.num_relaxed_samples < 2:
            raise ValueError(
                "`score_function='always'` needs `num_relaxed_samples` >= 2 for its leave-one-out "
                f"baseline, got {self.num_relaxed_samples!r}. Set `num_relaxed_samples=4`."
            )
        for name in ("record_rewards", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"`{name}` must be a bool, got {getattr(self, name)!r}. "
                    f"Pass `{name}=True` or `{name}=False`."
                )

    def _build(self) -> Callable[..., Any]:
        from ..estimators import get_estimator

        try:
            return get_estimator(self.estimator, **thaw(self.estimator_options))
        except ValueError as err:
            raise ValueError(
                f"Invalid `estimator`={self.estimator!r} or `estimator_options`="
                f"{dict(self.estimator_options)!r}: {err}"
            ) from None

    def build_estimator(self) -> Callable[..., Any]:
        """The configured estimator (built once, on construction; estimators are stateless)."""
        return self._estimator  # type: ignore[attr-defined]

    def is_guided_step(self, step: int, num_steps: int) -> bool:
        """Whether step ``step`` of ``num_steps`` is in the guided range (ignores
        ``n_opt_steps``)."""
        frac = step / num_steps
        return self.guide_start <= frac < self.guide_stop and step % self.guide_every == 0

    def replace(self, **changes: Any) -> GuidanceConfig:
        """A copy with ``changes`` applied (validated; old field names accepted with a warning).
        An unknown name raises a `ValueError` listing the valid ones."""
        return dataclasses.replace(self, **upgrade_names(changes, "GuidanceConfig.replace"))

    # -- serialisation ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain, mutable dict of every field (estimator options as a dict)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["estimator_options"] = thaw(self.estimator_options)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GuidanceConfig:
        """Build from :meth:`to_dict` output. Unknown keys raise a `ValueError` listing the valid
        ones; the pre-0.2 names ``forget`` and ``decode`` are converted with a warning."""
        if not isinstance(data, Mapping):
            raise ValueError(f"`data` must be a dict, got {type(data).__name__}.")
        data = upgrade_names(dict(data), "GuidanceConfig.from_dict")
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ValueError(
                f"`data` has unknown GuidanceConfig keys {unknown}. Valid keys: {valid}."
            )
        return cls(**data)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, one line); :meth:`config_hash` hashes this string."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def to_json_string(self) -> str:
        """Indented JSON with sorted keys and a final newline, as written to files."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, path: str | os.PathLike[str]) -> None:
        """Write the config as JSON to the file ``path``."""
        Path(path).write_text(self.to_json_string(), encoding="utf-8")

    @classmethod
    def from_json_file(cls, path: str | os.PathLike[str]) -> GuidanceConfig:
        """Read a config written by :meth:`to_json_file` (or :meth:`save_pretrained`)."""
        text = Path(path).read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except ValueError as err:
            raise ValueError(f"{os.fspath(path)!r} is not valid JSON ({err}).") from None
        return cls.from_dict(data)

    def save_pretrained(self, save_directory: str | os.PathLike[str]) -> Path:
        """Write ``guidance_config.json`` into ``save_directory`` (created if needed); returns
        the file's path."""
        folder = Path(save_directory)
        if folder.exists() and not folder.is_dir():
            raise ValueError(
                f"`save_directory` {os.fspath(folder)!r} is a file. Pass a folder; the config is "
                f"written to FOLDER/{CONFIG_NAME}."
            )
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / CONFIG_NAME
        self.to_json_file(path)
        return path

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str]) -> GuidanceConfig:
        """Read a config from a folder written by :meth:`save_pretrained`, or from a JSON file."""
        path = Path(path)
        file = path / CONFIG_NAME if path.is_dir() else path
        if not file.is_file():
            raise ValueError(
                f"No guidance config at {os.fspath(path)!r}: expected a folder holding "
                f"{CONFIG_NAME} or a JSON file. Write one with `config.save_pretrained(folder)`."
            )
        return cls.from_json_file(file)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Deprecated: use :meth:`to_json_file` (or :meth:`save_pretrained` for a folder)."""
        warnings.warn(
            "GuidanceConfig.save(path) is deprecated; use `to_json_file(path)` or "
            "`save_pretrained(folder)`.",
            FutureWarning,
            stacklevel=2,
        )
        self.to_json_file(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> GuidanceConfig:
        """Deprecated: use :meth:`from_json_file` (or :meth:`from_pretrained`)."""
        warnings.warn(
            "GuidanceConfig.load(path) is deprecated; use `from_json_file(path)` or "
            "`from_pretrained(folder)`.",
            FutureWarning,
            stacklevel=2,
        )
        return cls.from_json_file(path)

    def config_hash(self) -> str:
        """Stable 12-hex-digit SHA-256 prefix of :meth:`to_json` (same across processes)."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()[:12]


def _accept_old_names(generated: Callable[..., None]) -> Callable[..., None]:
    """Wrap the dataclass ``__init__`` so the pre-0.2 names still work for one release, and an
    unknown name is a `ValueError` that lists the valid ones (not the generated `TypeError`)."""

    @functools.wraps(generated)
    def __init__(self: GuidanceConfig, *args: Any, **kwargs: Any) -> None:
        if kwargs.keys() & RENAMED.keys():
            kwargs = upgrade_names(kwargs, "GuidanceConfig")
        valid = [f.name for f in dataclasses.fields(GuidanceConfig)]
        unknown = sorted(set(kwargs) - set(valid))
        if unknown:
            raise ValueError(f"Unknown GuidanceConfig fields {unknown}. Valid fields: {valid}.")
        generated(self, *args, **kwargs)

    return __init__


GuidanceConfig.__init__ = _accept_old_names(GuidanceConfig.__init__)  # type: ignore[method-assign]


def cli_fields() -> list[dataclasses.Field]:
    """The fields the CLI exposes as flags (every field but ``estimator_options``), in order."""
    return [f for f in dataclasses.fields(GuidanceConfig) if f.metadata.get("cli", True)]
