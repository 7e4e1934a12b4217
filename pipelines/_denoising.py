"""What [`MaskedDiffusionPipeline`] carries through one generation, and the pieces of a denoising
step around the model call and the scheduler step: the guidance hook's call, the step-end
callback, and what a guidance hook adds to the output."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

from ._checks import check_callback_sample


@dataclass
class Generation:
    """
    The state of one generation, read and updated by each denoising step.

    Args:
        sample (`torch.LongTensor` of shape `(B, L)`):
            The current sequence (`B` is the number of prompts times `num_samples`).
        attention_mask (`torch.LongTensor` of shape `(B, L)`):
            1 at real tokens, 0 at left padding.
        fixed (`torch.BoolTensor` of shape `(B, L)`):
            Positions that never change (prompt, constants, padding); the others are generated.
        mask_token_id (`int`):
            The mask id of the run.
        by_name, with_mask (`bool`):
            Whether the model takes `input_ids` by name and accepts `attention_mask`.
        guidance (`Callable`, *optional*):
            The guidance hook.
        rank_by_prior (`bool`):
            Hand the scheduler the unguided logits as `ranking_logits` (a guidance hook is on and
            the scheduler has `ranking="prior"`).
        generator (`torch.Generator`, *optional*):
            Source of the scheduler's and the hook's randomness.
        callback (`Callable`, *optional*):
            `callback_on_step_end`.
        callback_tensor_inputs (`list[str]`):
            The tensors it receives.
        logits (`torch.Tensor` of shape `(B, L, V)`, *optional*):
            The logits the last step sampled from (guided ones under a hook); `None` before the
            first step.
    """

    sample: torch.LongTensor
    attention_mask: torch.LongTensor
    fixed: torch.BoolTensor
    mask_token_id: int
    by_name: bool
    with_mask: bool
    guidance: Callable | None
    rank_by_prior: bool
    generator: torch.Generator | None
    callback: Callable | PipelineCallback | MultiPipelineCallbacks | None
    callback_tensor_inputs: list[str]
    logits: torch.Tensor | None = None


def callback_tensor_inputs(
    callback: Callable | PipelineCallback | MultiPipelineCallbacks | None,
    names: list[str] | None,
) -> list[str]:
    """The tensor names a step-end callback receives: a diffusers `PipelineCallback`'s own
    `tensor_inputs`, else `names`, else `["sample"]`."""
    if callback is not None and isinstance(callback, (PipelineCallback, MultiPipelineCallbacks)):
        names = callback.tensor_inputs
    return ["sample"] if names is None else names


def guided_logits(run: Generation, logits: torch.Tensor, step: int, num_steps: int) -> torch.Tensor:
    """The guidance hook's logits for this step (same shape as `logits`, else ValueError); the
    hook may edit the positions that are still masked and not fixed."""
    guided = run.guidance(
        logits,
        run.sample,
        editable=(run.sample == run.mask_token_id) & ~run.fixed,
        step=step,
        num_steps=num_steps,
        generator=run.generator,
        attention_mask=run.attention_mask,
    )
    if not torch.is_tensor(guided) or guided.shape != logits.shape:
        got = tuple(guided.shape) if torch.is_tensor(guided) else type(guided).__name__
        raise ValueError(
            f"`guidance` returned {got}; it must return logits of shape {tuple(logits.shape)}."
        )
    return guided


def step_end_callback(
    pipe: Any,
    run: Generation,
    step: int,
    timestep: torch.Tensor,
    pred_original_sample: torch.LongTensor,
) -> torch.LongTensor:
    """Call `run.callback(pipe, step, timestep, callback_kwargs)` after a scheduler step, with the
    tensors it asked for among `run.sample`, `run.logits` and the step's `pred_original_sample`;
    returns the sequence to continue from (the one it returned, else `run.sample`)."""
    scope = {
        "sample": run.sample,
        "logits": run.logits,
        "pred_original_sample": pred_original_sample,
    }
    callback_kwargs = {k: scope[k] for k in run.callback_tensor_inputs}
    callback_outputs = run.callback(pipe, step, timestep, callback_kwargs)
    return check_callback_sample(callback_outputs, run.sample)


def guidance_results(run: Generation) -> tuple[torch.Tensor | None, list | None]:
    """`(rewards, trace)` of a finished run: `guidance.score` of the final sequences as one-hots
    and a copy of `guidance.trace`, each `None` without a hook or when the hook has no such
    attribute."""
    guidance, rewards, trace = run.guidance, None, None
    if guidance is not None and callable(getattr(guidance, "score", None)):
        V = run.logits.shape[-1]  # vocab
        one_hot = torch.nn.functional.one_hot(run.sample, num_classes=V).float()
        rewards = torch.as_tensor(guidance.score(one_hot, attention_mask=run.attention_mask))
        rewards = rewards.detach()
    if guidance is not None and getattr(guidance, "trace", None) is not None:
        trace = list(guidance.trace)
    return rewards, trace
