"""Guidance inside diffusers' `DiffusionGemmaPipeline` (uniform-noise block diffusion), unmodified.

How the pipeline runs (diffusers 0.42): the prompt and finished canvases go through the model's
causal encoder into a KV cache; each canvas of `canvas_length` tokens starts as uniform random
tokens and is denoised by `predictor_steps` calls of
`model(decoder_input_ids=canvas, self_conditioning_logits=..., ...).logits` (plus corrector
sweeps when the scheduler has them), each followed by `scheduler.step(logits, step, canvas)`,
which commits the confident tokens and renoises the rest. Its step-end callback cannot change the
logits, so, as for LLaDA2, [`attach`] wraps `pipe.model` in a proxy that calls the hook on the
logits it returns, and wraps `pipe.scheduler.set_timesteps` to learn when a call starts.

What the hook receives at each decoder call:

- `logits` `(B, C, V)`, `sample` `(B, C)`: the current canvas (the prompt lives in the encoder's
  cache: a reward here sees the canvas only).
- `editable`: every canvas position. There is no mask token: uniform corruption re-decides every
  position at every step, and tokens the scheduler committed earlier are kept by the scheduler,
  whatever the logits say.
- `step`, `num_steps`: the predictor step within the canvas (the first call of a canvas, the one
  without self-conditioning, is step 0; corrector sweeps count as further calls, capped at
  `num_steps - 1`) and the scheduler's predictor steps per canvas.

What the KL means here: at each call it is the KL from the guided distribution of the *clean*
token at each canvas position to the model's prediction of it, as in masked diffusion; but since
no position is ever masked, the hook tilts every position's prediction at every step, and the
scheduler's renoising decides what survives. It is a per-step regulariser, not the KL of the
whole generation to the model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from . import call_guidance, reset_guidance
from .llada2 import GuidedLLaDA2Model, _SetTimestepsWrapper
from .llada2 import detach as detach  # the proxy is a GuidedLLaDA2Model: same restore

__all__ = ["GuidedDiffusionGemmaModel", "attach", "detach"]


class GuidedDiffusionGemmaModel(GuidedLLaDA2Model):
    r"""
    Proxy around a `DiffusionGemmaPipeline`'s model that guides the canvas logits it returns.
    Every attribute the pipeline reads (`model.model.encoder`, `config`, ...) is forwarded to the
    original model, `pipe.model.base`.

    Args:
        base (`torch.nn.Module`): the pipeline's `DiffusionGemmaForBlockDiffusion`.
        guidance (`Callable`): the hook.
        generator (`torch.Generator`, *optional*): passed to the hook.
    """

    def __init__(
        self,
        base: torch.nn.Module,
        guidance: Callable[..., torch.Tensor],
        *,
        generator: torch.Generator | None = None,
    ):
        super().__init__(base, guidance, mask_token_id=-1, generator=generator)

    def begin_generation(self, *, num_steps: int, block_length: int | None = None) -> None:
        """Start of a pipeline call: reset the hook and the step counter."""
        self._num_steps = int(num_steps)
        self._block_length = 0  # marks "inside a pipeline call"
        self._step = 0
        reset_guidance(self.guidance)

    def forward(self, *args: Any, decoder_input_ids: torch.Tensor | None = None, **kwargs: Any):
        out = self.base(*args, decoder_input_ids=decoder_input_ids, **kwargs)
        if self._block_length is None or decoder_input_ids is None:
            return out  # outside a pipeline call, or an encoder-only use
        if kwargs.get("self_conditioning_logits") is None:  # the first call of a canvas
            self._step = 0
        step = min(self._step, self._num_steps - 1)
        self._step += 1
        canvas = decoder_input_ids
        with torch.enable_grad():  # the pipeline's __call__ runs under no_grad
            out.logits = call_guidance(
                self.guidance,
                out.logits,
                canvas,
                editable=torch.ones_like(canvas, dtype=torch.bool),
                step=step,
                num_steps=self._num_steps,
                generator=self.generator,
                attention_mask=None,
                mask_token_id=None,
            )
        return out


def attach(
    pipe: Any,
    guidance: Callable[..., torch.Tensor],
    *,
    mask_token_id: int | None = None,
    generator: torch.Generator | None = None,
) -> Any:
    """See [`redge_guidance.adapters.attach`]. `mask_token_id` must be None: DiffusionGemma
    corrupts with uniform noise and has no mask token."""
    if mask_token_id is not None:
        raise ValueError(
            f"`mask_token_id`={mask_token_id!r}, but DiffusionGemmaPipeline uses uniform noise and "
            "has no mask token. Call `attach(pipe, guidance)` without it."
        )
    detach(pipe)  # attaching twice replaces the guidance
    proxy = GuidedDiffusionGemmaModel(pipe.model, guidance, generator=generator)
    pipe.model = proxy
    pipe.scheduler.set_timesteps = _SetTimestepsWrapper(pipe.scheduler, proxy)
    return pipe
