"""Guidance as a transformers `LogitsProcessor`, for diffusion models whose `generate()` runs
logits processors at every denoising step.

transformers' `DiffusionGemmaForBlockDiffusion.generate()` (transformers 5.x) generates the
answer canvas by canvas (`config.canvas_length` tokens, a block). Each canvas starts as uniform
random tokens and is denoised for up to `max_denoising_steps` steps; every step calls

    processed = logits_processor(input_ids, raw_logits, cur_step=cur_step)

with

- `input_ids` `(B, P)`: the prompt plus the canvases finished so far (committed tokens);
- `raw_logits` `(B, C, V)`: the decoder's logits for the `C` positions of the current canvas
  (the canvas tokens themselves are not passed);
- `cur_step`: an int32 scalar tensor counting the steps **remaining**, from
  `max_denoising_steps` down to 1 (the loop may stop early on its adaptive criterion).

The processed logits are what the step samples from, what its entropy-bound sampler uses to
accept tokens, what the next step gets as self-conditioning, and their argmax is what the
canvas finally commits. The noise is uniform, not masked: every step re-decides the whole
canvas (accepted tokens are re-chosen each step, the rest renoised), so **every canvas position
is editable** at every step. Processors with an extra argument must name it exactly
(`__call__(self, input_ids, scores, cur_step=None)`): `LogitsProcessorList` checks that each
extra parameter is passed and raises on `**kwargs`. The same check means this processor cannot
run inside autoregressive `generate()`, which passes no `cur_step`.

What the hook receives: the whole sequence, `L = P + C`: `logits` are point masses on the
committed tokens for the first `P` positions (0 at the token, `finfo.min` elsewhere) followed
by the canvas logits; `sample` is `input_ids` followed by `mask_token_id` at the canvas (the
argmax of the canvas logits when `mask_token_id` is None: a valid vocabulary id a
protocol-following hook never reads); `editable` is the canvas; `step = num_steps - cur_step`
runs `0 .. num_steps - 1`; `attention_mask=None` (processors do not see it). The processor
returns the hook's logits for the canvas.

`num_steps` defaults to the first `cur_step` of each canvas, which is `max_denoising_steps`.
`guidance.reset()` is called at the start of each generation, recognised because `input_ids`
is not the previous call's (same canvas, `cur_step` decreasing) nor an extension of it (next
canvas). Call [`GuidanceLogitsProcessor.reset`] yourself to force it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import LogitsProcessor

from . import call_guidance, reset_guidance

__all__ = ["GuidanceLogitsProcessor"]


class GuidanceLogitsProcessor(LogitsProcessor):
    r"""
    [`LogitsProcessor`] that runs a guidance hook on a diffusion model's per-step canvas logits.

    ```python
    from transformers import LogitsProcessorList
    processor = GuidanceLogitsProcessor(RewardGuidance(reward, GuidanceConfig()))
    out = model.generate(input_ids, logits_processor=LogitsProcessorList([processor]))
    ```

    Args:
        guidance (`Callable`):
            The hook: `guidance(logits, sample, *, editable, step, num_steps, generator,
            attention_mask) -> logits`; `guidance.reset()` is called at each new generation.
        mask_token_id (`int`, *optional*):
            For masked block-diffusion models: the mask id placed at the canvas positions of
            `sample`, and whose logit is set to `finfo.min` there. Leave `None` for
            uniform-noise models such as DiffusionGemma.
        num_steps (`int`, *optional*):
            Total denoising steps per canvas (`max_denoising_steps`). Default: the first
            `cur_step` of each canvas. Required when calling the processor without `cur_step`.
        generator (`torch.Generator`, *optional*):
            Passed to the hook as `generator=`.
    """

    def __init__(
        self,
        guidance: Callable[..., torch.Tensor],
        mask_token_id: int | None = None,
        num_steps: int | None = None,
        *,
        generator: torch.Generator | None = None,
    ):
        if not callable(guidance):
            raise ValueError(
                f"`guidance` must be callable as `guidance(logits, sample, *, editable, step, "
                f"num_steps, generator, attention_mask)`, got {type(guidance).__name__}. Pass e.g. "
                "`RewardGuidance(reward, GuidanceConfig())`."
            )
        if mask_token_id is not None and (
            isinstance(mask_token_id, bool)
            or not isinstance(mask_token_id, int)
            or mask_token_id < 0
        ):
            raise ValueError(
                f"`mask_token_id` must be a non-negative int or None, got {mask_token_id!r}. Use "
                "None for uniform-noise models (DiffusionGemma)."
            )
        if num_steps is not None and (
            isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1
        ):
            raise ValueError(
                f"`num_steps` must be a positive int or None, got {num_steps!r}. Pass the "
                "`max_denoising_steps` of the generation config, or None to read it from "
                "`cur_step`."
            )
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ValueError(
                f"`generator` must be a torch.Generator or None, got {type(generator).__name__}."
            )
        self.guidance = guidance
        self.mask_token_id = mask_token_id
        self.num_steps = num_steps
        self.generator = generator
        self.reset()

    def reset(self) -> None:
        """Forget the previous call: the next call starts a new generation (and resets the hook)."""
        self._prev_input_ids: torch.LongTensor | None = None
        self._prev_cur_step: int | None = None
        self._canvas_num_steps: int | None = None  # num_steps of the current canvas
        self._calls_in_canvas = 0

    def _track(self, input_ids: torch.LongTensor, cur_step: int | None) -> None:
        """Classify this call as same canvas / next canvas / new generation and update state."""
        prev = self._prev_input_ids
        same_ids = (
            prev is not None and prev.shape == input_ids.shape and torch.equal(prev, input_ids)
        )
        counting_down = cur_step is None or (
            self._prev_cur_step is not None and cur_step < self._prev_cur_step
        )
        if same_ids and counting_down:
            self._calls_in_canvas += 1  # next step of the same canvas
            return
        extends = (
            prev is not None
            and prev.shape[0] == input_ids.shape[0]
            and input_ids.shape[1] > prev.shape[1]
            and torch.equal(input_ids[:, : prev.shape[1]], prev)
        )
        if not extends:
            reset_guidance(self.guidance)  # a new generation
        self._calls_in_canvas = 0
        self._canvas_num_steps = self.num_steps if self.num_steps is not None else cur_step

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.Tensor, cur_step=None
    ) -> torch.Tensor:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(B, P)`):
                Committed tokens: the prompt and the finished canvases.
            scores (`torch.Tensor` of shape `(B, C, V)`):
                The current canvas's logits.
            cur_step (`int` or scalar `torch.Tensor`, *optional*):
                Denoising steps remaining (`max_denoising_steps` .. 1). Without it, steps are
                counted per canvas and `num_steps` must be set.

        Returns:
            `torch.Tensor` of shape `(B, C, V)`: the guided canvas logits.
        """
        if not torch.is_tensor(scores) or scores.ndim != 3:
            got = tuple(scores.shape) if torch.is_tensor(scores) else type(scores).__name__
            raise ValueError(
                f"`scores` must be canvas logits of shape (B, C, V), got {got}. "
                "GuidanceLogitsProcessor is for diffusion `generate()` (e.g. "
                "DiffusionGemmaForBlockDiffusion), not autoregressive next-token scores."
            )
        B, C, V = scores.shape  # batch, canvas length, vocab
        if input_ids.ndim != 2 or input_ids.shape[0] != B:
            raise ValueError(
                f"`input_ids` must have shape (B, P) with B={B} (the batch of `scores`), got "
                f"{tuple(input_ids.shape)}."
            )
        if input_ids.numel() and int(input_ids.max()) >= V:
            raise ValueError(
                f"`input_ids` holds id {int(input_ids.max())} but `scores` has only V={V} "
                "vocabulary entries; the processor needs ids inside the vocabulary."
            )
        if cur_step is not None:
            cur_step = int(cur_step)
            if self.num_steps is not None and not 1 <= cur_step <= self.num_steps:
                raise ValueError(
                    f"`cur_step` is {cur_step}, outside 1..num_steps={self.num_steps}. Pass "
                    "`num_steps` equal to the generation's `max_denoising_steps`, or None."
                )
        elif self.num_steps is None:
            raise ValueError(
                "`cur_step` is None and `num_steps` is None: the step index is unknown. Pass "
                "`num_steps=` to GuidanceLogitsProcessor (or call it with `cur_step`)."
            )

        self._track(input_ids, cur_step)
        self._prev_input_ids, self._prev_cur_step = input_ids.clone(), cur_step
        num_steps = self._canvas_num_steps
        if cur_step is not None:
            step = num_steps - cur_step
        else:
            step = min(self._calls_in_canvas, num_steps - 1)

        P = input_ids.shape[1]  # committed length
        context = scores.new_full((B, P, V), torch.finfo(scores.dtype).min)
        context.scatter_(-1, input_ids.unsqueeze(-1), 0.0)  # point masses on committed tokens
        logits = torch.cat([context, scores], dim=1)  # (B, P + C, V)
        if self.mask_token_id is not None:
            canvas_ids = torch.full(
                (B, C), self.mask_token_id, dtype=input_ids.dtype, device=input_ids.device
            )
        else:
            canvas_ids = scores.argmax(dim=-1).to(input_ids.dtype)
        sample = torch.cat([input_ids, canvas_ids], dim=1)  # (B, P + C)
        editable = torch.zeros_like(sample, dtype=torch.bool)
        editable[:, P:] = True
        with torch.enable_grad():  # generate() runs under no_grad
            guided = call_guidance(
                self.guidance,
                logits,
                sample,
                editable=editable,
                step=step,
                num_steps=num_steps,
                generator=self.generator,
                attention_mask=None,
                mask_token_id=self.mask_token_id,
            )
        return guided[:, P:].to(scores.dtype)
