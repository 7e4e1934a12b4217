"""Guidance inside diffusers' `LLaDA2Pipeline` (masked, block-wise refinement), unmodified.

How the pipeline runs (diffusers 0.42): for each block it calls
`model(x[:, :window_end], attention_mask=..., position_ids=...).logits` on the whole window
(prompt + finished blocks + the active block, `window_end = (block + 1) * block_length`), then
`BlockRefinementScheduler.step(logits[:, -block_length:], ...)` commits tokens of the active
block. Its `callback_on_step_end` fires after the scheduler and cannot see or change logits, so
guidance goes in between, through two small wrappers that [`attach`] installs:

- `pipe.model` becomes a [`GuidedLLaDA2Model`], an `nn.Module` proxy that calls the original
  model and then the hook on `.logits`. It exposes `device`, `dtype` and `config` and forwards
  every other attribute to the original model, so `pipe._execution_device`, `pipe.to(...)` and
  code that reads `pipe.model.<attr>` keep working. The original is `pipe.model.base`.
- `pipe.scheduler.set_timesteps` (that scheduler instance only) is wrapped to learn when a
  pipeline call starts: the pipeline calls it once per call, with the effective
  `num_inference_steps` and `block_length`. The wrapper resets the hook (`guidance.reset()`)
  and the step counter.

What the hook receives at each model call:

- `logits` `(B, W, V)`, `sample` `(B, W)`: the window the model saw (`W = window_end`);
  `attention_mask` `(B, W)`: the pipeline's (0 at prompt padding and past `gen_length`).
- `editable = (sample == mask_token_id)` restricted to the last `block_length` positions, the
  active block, which is all the scheduler reads. The mask token's logit is set to `finfo.min`
  there (the protocol's convention). The hook returns logits for the whole window; the
  scheduler samples the active block from them.
- `step`, `num_steps`: the pipeline's per-block step counter and steps per block. `num_steps`
  is the `num_inference_steps` the pipeline passed to `set_timesteps` (it caps the request at
  `gen_length // minimal_topk`). `step` counts this block's model calls that saw a mask in the
  active block (a new window length starts a new block at 0), exactly like the pipeline's
  `step_idx`, so it runs `0 .. num_steps - 1`.
- Calls where the active block has no mask left (LLaDA2's optional editing passes, enabled by
  `editing_threshold`) leave the logits untouched and do not call the hook. Editing may then
  replace a guided token the model is confident against; pass `editing_threshold=None` to the
  pipeline to keep every guided commit.

While attached, every forward of `pipe.model` is treated as a step of the current generation;
for other uses, call `pipe.model.base`. `pipe.config["model"]` names the proxy class then, so
[`detach`] before `save_pretrained`. A scheduler swapped in after [`attach`] carries no wrapper:
attach again.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch

from . import call_guidance, reset_guidance

__all__ = ["GuidedLLaDA2Model", "attach", "detach"]


class GuidedLLaDA2Model(torch.nn.Module):
    r"""
    Proxy around the denoiser of a `LLaDA2Pipeline` that guides the logits it returns.

    Args:
        base (`torch.nn.Module`): the pipeline's model; any `model(x, attention_mask=...,
            position_ids=...) -> output with .logits` of shape `(B, W, V)`.
        guidance (`Callable`): the hook (not registered as a submodule: `pipe.to()` does not
            move it and the proxy's `parameters()` are the base model's).
        mask_token_id (`int`): the id the pipeline fills its canvas with.
        generator (`torch.Generator`, *optional*): passed to the hook.
    """

    def __init__(
        self,
        base: torch.nn.Module,
        guidance: Callable[..., torch.Tensor],
        *,
        mask_token_id: int,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.base = base
        # plain attributes (object.__setattr__ keeps an nn.Module hook out of self._modules)
        object.__setattr__(self, "guidance", guidance)
        self.mask_token_id = mask_token_id
        self.generator = generator
        self._block_length: int | None = None  # set by the scheduler wrapper at each pipeline call
        self._num_steps: int | None = None
        self._window: int | None = None  # window length of the current block
        self._step = 0  # model calls with masks left in the current block

    # --- what DiffusionPipeline and user code read from the model ---
    @property
    def device(self) -> torch.device:
        device = getattr(self.base, "device", None)
        if device is None:  # a plain nn.Module: where its weights live
            device = next(self.base.parameters()).device
        return device

    @property
    def dtype(self) -> torch.dtype:
        dtype = getattr(self.base, "dtype", None)
        if dtype is None:
            dtype = next(self.base.parameters()).dtype
        return dtype

    @property
    def config(self) -> Any:
        return self.base.config

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)  # parameters, buffers, submodules (incl. `base`)
        except AttributeError:
            modules = self.__dict__.get("_modules")
            if modules is None or "base" not in modules:  # half-built (copy, unpickling)
                raise
            return getattr(modules["base"], name)

    def begin_generation(self, *, num_steps: int, block_length: int) -> None:
        """Start of a pipeline call: reset the hook and the step counter."""
        self._num_steps = int(num_steps)
        self._block_length = int(block_length)
        self._window = None
        self._step = 0
        reset_guidance(self.guidance)

    def forward(
        self, input_ids: torch.LongTensor, attention_mask=None, position_ids=None, **kwargs
    ):
        out = self.base(
            input_ids, attention_mask=attention_mask, position_ids=position_ids, **kwargs
        )
        if self._block_length is None:  # not inside a pipeline call yet
            return out
        B, W = input_ids.shape  # batch, window length
        if W != self._window:  # a new block
            self._window, self._step = W, 0
        block = min(self._block_length, W)
        editable = torch.zeros_like(input_ids, dtype=torch.bool)
        editable[:, W - block :] = input_ids[:, W - block :] == self.mask_token_id
        if not editable.any():
            return out  # an editing pass after the block is full: the pipeline's step_idx stays
        step = min(self._step, self._num_steps - 1)
        self._step += 1
        with torch.enable_grad():  # the pipeline's __call__ runs under no_grad
            out.logits = call_guidance(
                self.guidance,
                out.logits,
                input_ids,
                editable=editable,
                step=step,
                num_steps=self._num_steps,
                generator=self.generator,
                attention_mask=attention_mask,
                mask_token_id=self.mask_token_id,
            )
        return out


class _SetTimestepsWrapper:
    """Instance-level wrapper of `scheduler.set_timesteps` that tells the proxy a call began."""

    def __init__(self, scheduler: Any, proxy: GuidedLLaDA2Model):
        self.original = scheduler.set_timesteps  # the bound method
        self.scheduler = scheduler
        self.proxy = weakref.ref(proxy)

    def __call__(self, num_inference_steps: int, device=None, block_length: int | None = None):
        self.original(num_inference_steps, device=device, block_length=block_length)
        proxy = self.proxy()
        if proxy is not None:
            if block_length is None:
                block_length = self.scheduler.config.block_length
            proxy.begin_generation(
                num_steps=self.scheduler.num_inference_steps, block_length=block_length
            )


def _unwrap_scheduler(scheduler: Any) -> None:
    if isinstance(scheduler.__dict__.get("set_timesteps"), _SetTimestepsWrapper):
        del scheduler.__dict__["set_timesteps"]


def detach(pipe: Any) -> Any:
    """Restore `pipe.model` and `pipe.scheduler.set_timesteps`; no-op when not attached."""
    model = pipe.model
    if isinstance(model, GuidedLLaDA2Model):
        pipe.model = model.base  # DiffusionPipeline.__setattr__ also restores pipe.config["model"]
    _unwrap_scheduler(pipe.scheduler)
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
        mask_token_id = getattr(pipe, "mask_token_id", None)
    if mask_token_id is None:
        raise ValueError(
            "`mask_token_id` is None and the LLaDA2Pipeline has none (its tokenizer has no "
            "`mask_token_id`). Pass `attach(pipe, guidance, mask_token_id=...)`, the id you pass "
            "to the pipeline call."
        )
    wrapped = pipe.scheduler.__dict__.get("set_timesteps")
    if isinstance(wrapped, _SetTimestepsWrapper) and wrapped.proxy() is not pipe.model:
        raise ValueError(
            "`pipe.scheduler` is already guided through another pipeline that shares it. Give "
            "each pipeline its own scheduler (e.g. `copy.deepcopy(pipe.scheduler)`)."
        )
    detach(pipe)  # attaching twice replaces the guidance
    proxy = GuidedLLaDA2Model(
        pipe.model, guidance, mask_token_id=mask_token_id, generator=generator
    )
    pipe.model = proxy
    pipe.scheduler.set_timesteps = _SetTimestepsWrapper(pipe.scheduler, proxy)
    return pipe
