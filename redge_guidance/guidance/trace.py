"""Per-step statistics recorded by :class:`redge_guidance.RewardGuidance`.

One :class:`GuidanceStepStats` per call of the hook. The hook stores them as plain dicts
(``RewardGuidance.trace``), the form pipelines copy into their outputs and the CLI writes to JSON;
:meth:`GuidanceStepStats.from_dict` turns one back into the typed record.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["GuidanceStepStats", "TIMING_KEYS", "Clock"]

#: Keys of :attr:`GuidanceStepStats.timing`, in the order the inner loop spends them.
TIMING_KEYS: tuple[str, ...] = ("setup", "relaxation", "reward", "kl", "optimizer", "scoring")


@dataclass
class GuidanceStepStats:
    r"""What one call of the guidance hook did.

    Rewards here are evaluated without gradient on *decoded* sequences: committed positions as
    they are, still-masked positions outside ``editable`` as the model's soft prediction, and every
    ``editable`` position as the one-hot argmax of the logits (``reward_before``) or of the
    optimised variational logits :math:`\varphi` (``reward_after``), i.e. "what the sequence would
    be if everything editable were decoded greedily now". They are a progress signal, not the
    objective the inner loop optimises (that one uses relaxed samples; see ``objective``).

    Args:
        step (`int`): 0-based denoising step index the hook was called with.
        num_steps (`int`): total number of denoising steps.
        guided (`bool`): whether the inner optimisation ran at this step.
        reason (`str`): why the step was not guided (``""`` when it was): ``"outside guided
            range"``, ``"no editable positions"`` or ``"n_opt_steps=0"``.
        num_editable (`int`): number of editable positions in the batch.
        inner_steps (`int`): inner (Adam) steps run; below ``n_opt_steps`` after an early stop.
        inner_steps_per_sample (`list[int]`): inner steps after which each sample stopped moving.
        stopped_early (`bool`): whether every sample stopped before ``n_opt_steps``.
        reward_before (`float | None`): batch mean of ``reward_before_per_sample``.
        reward_before_per_sample (`list[float] | None`): reward with editable positions at the
            argmax of the logits.
        reward_after (`float | None`): batch mean of ``reward_after_per_sample``.
        reward_after_per_sample (`list[float] | None`): reward with editable positions at the
            argmax of phi.
        kl_after (`float | None`): batch mean of ``kl_after_per_sample``.
        kl_after_per_sample (`list[float] | None`): exact ``sum over editable positions of
            KL(softmax(phi) || softmax(logits))`` for the final phi, in nats.
        objective (`float | None`): batch mean of ``reward_after - kl_weight * kl_after``.
        objective_inner_last (`float | None`): batch mean of the inner loop's last (stochastic)
            objective estimate, relaxed-sample reward minus weighted KL.
        score_function (`bool`): whether the score-function (REINFORCE) gradient was used.
        support_size (`int | None`): entries per editable row that φ optimises (the vocabulary
            size unless ``top_k``/``top_p`` restrict it).
        support_mass_per_sample (`list[float] | None`): with a restricted support, the model's
            probability mass on it, averaged over each sample's editable rows (1 − this is what
            the restriction cuts away).
        seed (`int | None`): seed of the private generator the hook drew its noise from.
        seconds (`float`): wall time of the whole call.
        timing (`dict[str, float]`): seconds per phase, keys :data:`TIMING_KEYS`, measured only
            when the hook profiles (``RewardGuidance(profile=True)`` or ``with hook.profiling():``;
            on CUDA each phase then ends with a synchronisation), zeros otherwise: ``setup``
            (checks, composing the fixed context, validation), ``relaxation`` (estimator forward and
            backward, or categorical draws and log-probabilities for the score function),
            ``reward`` (reward forward and backward), ``kl`` (exact KL forward and backward),
            ``optimizer`` (gradient clipping, Adam step, early-stop bookkeeping), ``scoring``
            (``reward_before``/``reward_after``/``kl_after`` and building the returned logits).
    """

    step: int
    num_steps: int
    guided: bool
    reason: str = ""
    num_editable: int = 0
    inner_steps: int = 0
    inner_steps_per_sample: list[int] = field(default_factory=list)
    stopped_early: bool = False
    reward_before: float | None = None
    reward_before_per_sample: list[float] | None = None
    reward_after: float | None = None
    reward_after_per_sample: list[float] | None = None
    kl_after: float | None = None
    kl_after_per_sample: list[float] | None = None
    objective: float | None = None
    objective_inner_last: float | None = None
    score_function: bool = False
    support_size: int | None = None
    support_mass_per_sample: list[float] | None = None
    seed: int | None = None
    seconds: float = 0.0
    timing: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TIMING_KEYS, 0.0))

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dict (a deep copy)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GuidanceStepStats:
        """Inverse of :meth:`to_dict`; unknown keys raise a `ValueError` listing the valid ones."""
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - valid)
        if unknown:
            raise ValueError(
                f"`data` has unknown keys {unknown} for GuidanceStepStats. "
                f"Valid keys: {sorted(valid)}."
            )
        return cls(**data)


class Clock:
    """Seconds per phase (keys :data:`TIMING_KEYS`), or nothing at all when ``enabled`` is False.
    On CUDA each lap synchronises the device so that phases are attributed right: profiling is
    opt-in because of that."""

    def __init__(self, device: torch.device, enabled: bool) -> None:
        self.enabled = enabled
        self.cuda = enabled and device.type == "cuda"
        self.totals = dict.fromkeys(TIMING_KEYS, 0.0)
        self._last = self._now() if enabled else 0.0

    def _now(self) -> float:
        if self.cuda:
            import torch  # only when profiling on CUDA: this module does not import torch

            torch.cuda.synchronize()
        return time.perf_counter()

    def lap(self, phase: str) -> None:
        if self.enabled:
            now = self._now()
            self.totals[phase] += now - self._last
            self._last = now
