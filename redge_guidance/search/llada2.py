"""SMC inside diffusers' ``LLaDA2Pipeline`` through its step-end callback (unguided proposals).

The pipeline refines one block at a time and calls ``callback_on_step_end`` after each
refinement step with the window ``block_x`` (prompt, finished blocks, the active block), which
it reads back from the callback's output. :class:`LLaDA2SMCStep` scores the predicted window,
reweights, and returns the resampled window, so K particles per prompt run as one batch of
``B·K`` rows through the unmodified pipeline.

Proposals are the model's own (Feynman-Kac steering): the pipeline's scheduler picks positions
by the confidence of the logits it samples from, so a guided proposal would make the choice of
positions part of the proposal, which the weights cannot correct (see ``docs/search.md``). With
q = p every move of the pipeline (threshold commits, editing) is the model's process and the
potentials alone carry the weights.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ._runner import private_generator, score
from .accounting import CountingReward, Meter
from .config import Budget, SMCConfig
from .population import Population
from .result import SearchResult
from .smc import population_result

__all__ = ["LLaDA2SMCStep", "smc_llada2"]

_MAX_POST_STEPS = 16  # the pipeline's default cap on editing passes after a block is full


class LLaDA2SMCStep:
    """``callback_on_step_end`` of ``LLaDA2Pipeline`` during SMC: score the window with the
    active block's sampled proposals at its still-masked positions, reweight, resample (never
    once the last block is complete, so the final weights are reported as they are)."""

    def __init__(
        self,
        population: Population,
        reward: CountingReward,
        meter: Meter,
        attention_mask: torch.Tensor,
        *,
        mask_id: int,
        vocab_size: int,
        block_length: int,
    ) -> None:
        self.pop, self.reward, self.meter = population, reward, meter
        self.am = attention_mask  # (R, total length), the pipeline's
        self.mask_id, self.V, self.block = mask_id, vocab_size, block_length

    def __call__(self, pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]):
        block_x, sampled = kwargs["block_x"], kwargs["sampled_tokens"]
        R, W = block_x.shape  # rows, window length
        self.meter.spent.denoiser_forwards += R  # one model call on the window per step
        active = block_x[:, -self.block :]
        predicted = torch.where(active == self.mask_id, sampled, active)
        pred = torch.cat([block_x[:, : W - self.block], predicted], dim=1)
        r = score(self.reward, pred, self.am[:, :W], self.V).view(self.pop.B, self.pop.K)
        self.pop.reweight(r)
        complete = W == self.am.shape[1] and not bool((block_x == self.mask_id).any())
        flat = self.pop.resample(allowed=not complete)
        return {} if flat is None else {"block_x": block_x[flat.to(block_x.device)]}


def smc_llada2(
    pipe: Any,
    reward: Any,
    input_ids: torch.Tensor,
    config: SMCConfig,
    *,
    gen_length: int,
    attention_mask: torch.Tensor | None = None,
    block_length: int | None = None,
    num_inference_steps: int = 32,
    temperature: float = 1.0,
    threshold: float = 0.7,
    editing_threshold: float | None = None,
    mask_token_id: int | None = None,
    budget: Budget | None = None,
    generator: torch.Generator | None = None,
) -> SearchResult:
    r"""SMC (Feynman-Kac steering with the model's own proposals) inside ``LLaDA2Pipeline``.

    Args:
        pipe (`diffusers.LLaDA2Pipeline`): the pipeline, without guidance attached.
        reward (`rewards.Reward` or callable): scores windows of any length
            ``(R, W, V) -> (R,)``; it sees the prompt, the finished blocks and the active block
            (positions past ``gen_length`` have ``attention_mask`` 0).
        input_ids (`torch.LongTensor` of shape `(B, P)`): the prompts.
        config (`SMCConfig`): particles, potential, λ, resampling, pick.
        gen_length (`int`): tokens generated after each prompt.
        attention_mask (`torch.Tensor` of shape `(B, P)`, *optional*): 0 at prompt padding.
        block_length (`int`, *optional*): defaults to the scheduler's.
        num_inference_steps (`int`, defaults to 32): refinement steps per block.
        temperature (`float`, defaults to 1.0): the pipeline's sampling temperature, > 0
            (greedy sampling would make every particle the same).
        threshold (`float`, defaults to 0.7), editing_threshold (`float`, *optional*): passed
            to the pipeline.
        mask_token_id (`int`, *optional*): defaults to the pipeline's.
        budget (`Budget`, *optional*): the run is one unit; its largest possible denoiser cost
            (every block taking all its steps, plus the editing passes when editing is on) must
            fit ``max_denoiser_forwards``, checked before any work.
        generator (`torch.Generator`, *optional*): read, never advanced (see :func:`search`).

    Returns:
        [`SearchResult`]: ``sequences`` are the generated tokens only, shape ``(B, gen_length)``
        (as the pipeline returns them); ``particles`` ``(B, K, gen_length)``.
    """
    mask_id = _check(pipe, reward, input_ids, config, gen_length, temperature, mask_token_id)
    ids = input_ids.unsqueeze(0) if input_ids.dim() == 1 else input_ids
    _check_options(pipe, ids, mask_id, attention_mask, block_length, num_inference_steps)
    _check_thresholds(threshold, editing_threshold, generator)
    block = block_length or int(pipe.scheduler.config.block_length)
    B, K = ids.shape[0], config.num_particles
    am = torch.ones_like(ids) if attention_mask is None else attention_mask.reshape(ids.shape)
    window_mask = _window_mask(am.long().repeat_interleave(K, dim=0), gen_length, block)
    blocks = window_mask.shape[1] // block - ids.shape[1] // block  # blocks the pipeline runs
    per_block = num_inference_steps + (_MAX_POST_STEPS if editing_threshold else 0)
    _check_budget(budget, B * K * blocks * per_block)

    meter = Meter(budget)
    counted = CountingReward(reward, meter)
    rng = private_generator(generator, "smc-llada2")
    device = pipe._execution_device
    pop = Population(config, B, rng, device)
    step = LLaDA2SMCStep(
        pop,
        counted,
        meter,
        window_mask.to(device),
        mask_id=mask_id,
        vocab_size=int(pipe.model.config.vocab_size),
        block_length=block,
    )
    out = pipe(
        input_ids=ids.repeat_interleave(K, dim=0),
        attention_mask=am.repeat_interleave(K, dim=0),
        gen_length=gen_length,
        block_length=block,
        num_inference_steps=num_inference_steps,
        temperature=temperature,
        threshold=threshold,
        editing_threshold=editing_threshold,
        max_post_steps=_MAX_POST_STEPS,
        eos_early_stop=False,  # its per-row end state is not reordered with the rows
        mask_token_id=mask_id,
        generator=rng,
        output_type="seq",
        callback_on_step_end=step,
        callback_on_step_end_tensor_inputs=["block_x", "sampled_tokens"],
    )
    result = population_result(config, pop, out.sequences.view(B, K, -1))
    result.spent = meter.done()
    return result


def _check_budget(budget: Budget | None, most: int) -> None:
    if budget is not None and not isinstance(budget, Budget):
        raise ValueError(f"`budget` must be a Budget or None, got {type(budget).__name__}.")
    limit = None if budget is None else budget.max_denoiser_forwards
    if limit is not None and most > limit:
        raise ValueError(
            f"`budget.max_denoiser_forwards` is {limit} but this run may need up to {most} "
            "(rows × blocks × steps per block). Raise the budget or lower the particles, "
            "`gen_length` or `num_inference_steps`."
        )


def _check_options(pipe, ids, mask_id, attention_mask, block_length, num_inference_steps) -> None:
    """Ids and mask id in the model's vocabulary, the prompt mask, the sizes; before any work."""
    from pipelines._checks import (
        check_ids_in_vocab,
        check_mask_id_in_vocab,
        check_positive_int,
        check_same_device,
        is_int,
    )

    if not is_int(mask_id) or mask_id < 0:
        raise ValueError(
            f"`mask_token_id` must be a non-negative integer, got {mask_id!r}. Pass the "
            "tokenizer's `mask_token_id`."
        )
    vocab = getattr(getattr(pipe.model, "config", None), "vocab_size", None)
    if is_int(vocab):
        check_mask_id_in_vocab(mask_id, vocab, "the model")
        check_ids_in_vocab("input_ids", ids, vocab)
    if attention_mask is not None:
        if not isinstance(attention_mask, torch.Tensor) or attention_mask.numel() != ids.numel():
            got = (
                tuple(attention_mask.shape)
                if isinstance(attention_mask, torch.Tensor)
                else type(attention_mask).__name__
            )
            raise ValueError(
                f"`attention_mask` must be a tensor of the shape of `input_ids` "
                f"{tuple(ids.shape)}, got {got}. Pass 1 at prompt tokens, 0 at padding."
            )
        check_same_device("attention_mask", attention_mask, "input_ids", ids)
    if block_length is not None:
        check_positive_int("block_length", block_length, "32")
    check_positive_int("num_inference_steps", num_inference_steps, "32")


def _check_thresholds(threshold: Any, editing_threshold: Any, generator: Any) -> None:
    """The pipeline's commit and edit thresholds as finite numbers, the generator's type."""
    from pipelines._checks import check_generator, is_real

    if not is_real(threshold) or not 0.0 <= threshold < math.inf:
        raise ValueError(
            f"`threshold` must be a finite number >= 0, got {threshold!r}: in [0, 1] the "
            "confidence that commits a token, above 1 top-k commits only. Use e.g. 0.7."
        )
    e = editing_threshold
    if e is not None and (not is_real(e) or not math.isfinite(e)):
        raise ValueError(
            f"`editing_threshold` must be a finite number or None, got {e!r}. Use e.g. 0.5, "
            "or None (or a value <= 0) to turn editing off."
        )
    check_generator(generator)


def _window_mask(prompt_mask: torch.Tensor, gen_length: int, block: int) -> torch.Tensor:
    """The pipeline's attention mask over its whole canvas ``(R, total)``: the prompt's, then 1
    over the generated tokens, 0 over the block-aligned tail."""
    R, P = prompt_mask.shape  # rows, prompt length
    total = math.ceil((P + gen_length) / block) * block
    out = torch.zeros(R, total, dtype=torch.long)
    out[:, :P] = prompt_mask
    out[:, P : P + gen_length] = 1
    return out


def _check(pipe, reward, input_ids, config, gen_length, temperature, mask_token_id) -> int:
    """The refusals, before any work; returns the mask id."""
    from diffusers import LLaDA2Pipeline

    if not isinstance(pipe, LLaDA2Pipeline):
        raise ValueError(f"`pipe` must be a diffusers LLaDA2Pipeline, got {type(pipe).__name__}.")
    if type(pipe.model).__name__ == "GuidedLLaDA2Model":
        raise ValueError(
            "`pipe` has guidance attached; SMC in LLaDA2Pipeline uses the model's own proposals "
            "(its confidence-based commits would make a guided proposal uncorrectable). Call "
            "`redge_guidance.detach(pipe)` first."
        )
    if not callable(reward):
        raise ValueError(f"`reward` must be callable, got {type(reward).__name__}.")
    if not isinstance(config, SMCConfig):
        raise ValueError(f"`config` must be an SMCConfig, got {type(config).__name__}.")
    if (
        not isinstance(input_ids, torch.Tensor)
        or input_ids.dtype != torch.long
        or input_ids.dim() not in (1, 2)
    ):
        raise ValueError(
            "`input_ids` must be a LongTensor of shape (B, P) or (P,), got "
            f"{getattr(input_ids, 'shape', type(input_ids).__name__)}."
        )
    if isinstance(gen_length, bool) or not isinstance(gen_length, int) or gen_length < 1:
        raise ValueError(f"`gen_length` must be an integer >= 1, got {gen_length!r}.")
    t = temperature
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < math.inf:
        raise ValueError(
            f"`temperature` must be a finite number > 0, got {t!r}: SMC needs a stochastic "
            "sampler (at 0 every particle is the same). Use e.g. `temperature=1.0`."
        )
    mask_id = mask_token_id if mask_token_id is not None else getattr(pipe, "mask_token_id", None)
    if mask_id is None:
        raise ValueError(
            "`mask_token_id` is None and the pipeline has none. Pass `mask_token_id=`."
        )
    return mask_id
