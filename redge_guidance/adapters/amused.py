"""Guidance inside diffusers' aMUSEd pipelines (masked image-token generation), unmodified.

`AmusedPipeline`, `AmusedImg2ImgPipeline` and `AmusedInpaintPipeline` live in diffusers'
`pipelines/deprecated/` and warn when built (`DeprecatedPipelineMixin`, last supported diffusers
version 0.33.1); they still run in diffusers 0.42. Their only callback is the legacy
`callback(step, timestep, latents)`, which fires after the scheduler and sees no logits.

**Where the hook goes.** [`attach`] wraps `pipe.scheduler.step` (that scheduler instance only).
The pipeline calls it once per step as `step(model_output, timestep, sample, generator=...)`,
with

- `model_output` `(B, codebook, H, W)`: the transformer's logits **after** classifier-free
  guidance has combined them (`uncond + guidance_scale * (cond - uncond)`), codebook on axis 1;
- `sample` `(B, H, W)`: the latent token ids, `scheduler.config.mask_token_id` where masked.

So the hook sees and changes exactly the logits that get sampled. This is the same as wrapping
`pipe.transformer.forward` and adding the hook's change `d` to *both* CFG halves (then
`(u + d) + s * ((c + d) - (u + d)) = u + s * (c - u) + d`), but needs neither `guidance_scale`
(which the transformer never sees) nor a way to tell a CFG batch `2B` from a batch of `2B`
prompts. The wrapper also receives the pipeline's `generator` and `timestep`, so the step index
is exact and one seed reproduces the whole guided generation.

What the hook receives: `logits` `(B, H*W, codebook)` (row-major over the latent grid),
`sample` `(B, H*W)`, `editable = sample == mask_token_id`, `step` = the index of `timestep` in
`scheduler.timesteps` and `num_steps = len(scheduler.timesteps)` (img2img / inpaint start at
`step > 0`, as their timesteps do), `attention_mask=None`. The mask id is not a codebook entry
(aMUSEd's transformer predicts only the codebook), so no logit needs masking. `guidance.reset()`
is called whenever the step index does not increase, i.e. at the first step of every call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from . import call_guidance, reset_guidance

__all__ = ["attach", "detach"]


class _GuidedStep:
    """Instance-level wrapper of `AmusedScheduler.step` that guides `model_output` first."""

    def __init__(
        self,
        scheduler: Any,
        guidance: Callable[..., torch.Tensor],
        *,
        mask_token_id: int,
        generator: torch.Generator | None,
    ):
        self.original = scheduler.step  # the bound method
        self.scheduler = scheduler
        self.guidance = guidance
        self.mask_token_id = mask_token_id
        self.generator = generator
        self._last_step: int | None = None

    def _step_index(self, timestep) -> int:
        timesteps = self.scheduler.timesteps
        hits = (timesteps == timestep).nonzero()
        if hits.numel() != 1:
            raise RuntimeError(
                f"timestep {timestep!r} is not exactly once in `scheduler.timesteps` "
                f"{timesteps.tolist()}; the guidance adapter needs the pipeline's own timesteps."
            )
        return int(hits.item())

    def __call__(
        self,
        model_output: torch.Tensor,
        timestep,
        sample: torch.LongTensor,
        starting_mask_ratio: float = 1.0,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ):
        step = self._step_index(timestep)
        if self._last_step is None or step <= self._last_step:  # first step of a pipeline call
            reset_guidance(self.guidance)
        self._last_step = step

        if model_output.ndim == 4 and sample.ndim == 3:  # (B, C, H, W) logits, (B, H, W) ids
            B, C, H, W = model_output.shape  # batch, codebook, height, width
            logits = model_output.reshape(B, C, H * W).transpose(1, 2)  # (B, H*W, C)
            flat = sample.reshape(B, H * W)
        else:  # the scheduler's flat form: (B, L, C) logits, (B, L) ids
            logits, flat = model_output, sample
        editable = flat == self.mask_token_id
        if editable.any():
            with torch.enable_grad():  # the pipeline's __call__ runs under no_grad
                guided = call_guidance(
                    self.guidance,
                    logits,
                    flat,
                    editable=editable,
                    step=step,
                    num_steps=len(self.scheduler.timesteps),
                    generator=self.generator if self.generator is not None else generator,
                    attention_mask=None,
                    mask_token_id=self.mask_token_id,
                )
            if model_output.ndim == 4 and sample.ndim == 3:
                guided = guided.transpose(1, 2).reshape(B, C, H, W)
            model_output = guided.to(model_output.dtype)
        return self.original(
            model_output,
            timestep,
            sample,
            starting_mask_ratio=starting_mask_ratio,
            generator=generator,
            return_dict=return_dict,
        )


def detach(pipe: Any) -> Any:
    """Restore `pipe.scheduler.step`; no-op when not attached."""
    if isinstance(pipe.scheduler.__dict__.get("step"), _GuidedStep):
        del pipe.scheduler.__dict__["step"]
    return pipe


def attach(
    pipe: Any,
    guidance: Callable[..., torch.Tensor],
    *,
    mask_token_id: int | None = None,
    generator: torch.Generator | None = None,
) -> Any:
    """See [`redge_guidance.adapters.attach`]."""
    if mask_token_id is None:
        mask_token_id = pipe.scheduler.config.mask_token_id
    detach(pipe)  # attaching twice replaces the guidance
    pipe.scheduler.step = _GuidedStep(
        pipe.scheduler, guidance, mask_token_id=mask_token_id, generator=generator
    )
    return pipe
