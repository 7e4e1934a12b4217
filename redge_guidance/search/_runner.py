"""What every search method shares: the validated inputs, the pipeline, the private generator,
the recorder the pipeline calls as its guidance, and scoring of finished sequences."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .._seeding import derive_seed
from .accounting import CountingReward, Meter

__all__ = ["Inputs", "StepRecorder", "private_generator", "score", "unmasking_order"]


@dataclass
class Inputs:
    """The starting rows of a search, one per prompt, on the model's device.

    Args:
        ids (`torch.LongTensor` of shape `(B, L)`): the mask id where text is generated.
        attention_mask (`torch.LongTensor` of shape `(B, L)`): 0 at padding.
        fixed (`torch.BoolTensor` of shape `(B, L)`): positions that never change.
    """

    ids: torch.Tensor
    attention_mask: torch.Tensor
    fixed: torch.Tensor

    @property
    def batch_size(self) -> int:
        return int(self.ids.shape[0])

    def repeat(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each row ``n`` times in a row (``repeat_interleave``, as the pipeline repeats)."""
        return (
            self.ids.repeat_interleave(n, dim=0),
            self.attention_mask.repeat_interleave(n, dim=0),
            self.fixed.repeat_interleave(n, dim=0),
        )

    def pipe_kwargs(self) -> dict[str, torch.Tensor]:
        """The pipeline arguments that start a generation from these rows."""
        return {
            "input_ids": self.ids,
            "attention_mask": self.attention_mask,
            "fixed_mask": self.fixed,
        }


def unmasking_order(scheduler: Any) -> str:
    """The scheduler's unmasking order, read under its new name (``unmasking``) or its old one
    (``order``); ``"random"`` when it has neither."""
    config = getattr(scheduler, "config", {})
    value = config.get("unmasking", None) if hasattr(config, "get") else None
    if value is None and hasattr(config, "get"):
        value = config.get("order", None)
    return value if isinstance(value, str) else "random"


def _source_key(generator: torch.Generator | None) -> str:
    """The caller's seed and stream position, read without drawing (torch's global CPU
    generator when None, so ``torch.manual_seed`` reproduces)."""
    if generator is None:
        generator = torch.default_generator
    state = generator.get_state().cpu().numpy().tobytes()
    return f"{generator.initial_seed()}@{hashlib.blake2b(state, digest_size=8).hexdigest()}"


def private_generator(generator: torch.Generator | None, method: str) -> torch.Generator:
    """A CPU generator seeded from the caller's seed and stream position: every draw of the
    search comes from it, and the caller's generator is never advanced."""
    seed = derive_seed("redge-search", method, _source_key(generator))
    return torch.Generator().manual_seed(seed)


class StepRecorder:
    """What the pipeline calls as its ``guidance``: counts denoiser forwards, keeps the step's
    input sequence, the model's logits ℓ and the logits handed to the sampler (φ, or ℓ itself
    when unguided), and calls the real hook (if any) in between."""

    def __init__(self, hook: Any | None, meter: Meter) -> None:
        self.hook = hook
        self.meter = meter
        self.before: torch.Tensor | None = None  # (R, L) sequence entering the step
        self.prior: torch.Tensor | None = None  # (R, L, V) the model's logits
        self.guided: torch.Tensor | None = None  # (R, L, V) what the scheduler samples from

    @property
    def reward(self) -> Any:  # read by the pipeline's vocabulary check
        return getattr(self.hook, "reward", None)

    def reset(self) -> None:
        if self.hook is not None:
            self.hook.reset()

    def __call__(
        self,
        logits: torch.Tensor,
        sample: torch.Tensor,
        *,
        editable: torch.Tensor,
        step: int,
        num_steps: int,
        generator: torch.Generator | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        self.meter.spent.denoiser_forwards += int(logits.shape[0])
        self.before, self.prior = sample, logits
        guided = logits
        if self.hook is not None:
            guided = self.hook(
                logits,
                sample,
                editable=editable,
                step=step,
                num_steps=num_steps,
                generator=generator,
                attention_mask=attention_mask,
            )
        self.guided = guided
        return guided


@torch.no_grad()
def score(
    reward: CountingReward, ids: torch.Tensor, attention_mask: torch.Tensor, vocab: int
) -> torch.Tensor:
    """Reward of finished (or predicted) sequences ``(R, L)`` as one-hots, float64 ``(R,)``."""
    x = F.one_hot(ids, vocab).float()
    out = reward(x, attention_mask)
    if not isinstance(out, torch.Tensor) or out.shape != (ids.shape[0],):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"Reward {reward.name} must return one score per sequence, shape ({ids.shape[0]},), "
            f"got {got}. Do not sum over the batch."
        )
    return out.detach().double()
