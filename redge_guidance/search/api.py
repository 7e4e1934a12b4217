"""`search`: one call that runs best-of-N, SMC or reward-driven refinement on a masked diffusion
pipeline, from a typed config, and reports what it spent."""

from __future__ import annotations

from typing import Any

import torch

from ..guidance import GuidanceConfig, RewardGuidance
from ._runner import Inputs, StepRecorder, private_generator, unmasking_order
from .accounting import CountingReward, Meter
from .best_of_n import run_best_of_n
from .config import BestOfNConfig, Budget, RefineConfig, SMCConfig
from .refine import RemaskFn, run_refine
from .result import SearchResult
from .smc import check_smc, run_smc

__all__ = ["search"]


def search(
    pipe_or_model: Any,
    reward: Any,
    input_ids: torch.Tensor | list[list[int]],
    config: BestOfNConfig | SMCConfig | RefineConfig,
    *,
    guidance: GuidanceConfig | None = None,
    length: int | None = None,
    attention_mask: torch.Tensor | None = None,
    fixed_mask: torch.Tensor | None = None,
    num_inference_steps: int = 32,
    budget: Budget | None = None,
    generator: torch.Generator | None = None,
    mask_token_id: int | None = None,
    remask_fn: RemaskFn | None = None,
) -> SearchResult:
    r"""Inference-time search for high-reward sequences.

    Args:
        pipe_or_model (`MaskedDiffusionPipeline` or `torch.nn.Module`): the pipeline, or a
            denoiser to wrap in one (with a random-order `MaskedDiffusionScheduler`;
            ``mask_token_id`` is then required).
        reward (`rewards.Reward` or callable): ``reward(x (R, L, V), attention_mask=) -> (R,)``,
            higher is better. Black boxes (``differentiable=False``) work everywhere except
            ``RefineConfig(select="gradient")``.
        input_ids (`torch.LongTensor` of shape `(B, L)` or `(L,)`, or `list[list[int]]`): one row
            per prompt; mask tokens are generated, other tokens stay.
        config (`BestOfNConfig`, `SMCConfig` or `RefineConfig`): the method and its settings.
        guidance (`GuidanceConfig`, *optional*): guide every generation with
            :class:`~redge_guidance.RewardGuidance` on ``reward``; in SMC the guided logits are
            the proposal and the weights correct for it.
        length (`int`, *optional*): mask tokens appended to each row.
        attention_mask (`torch.Tensor` of shape `(B, L)`, *optional*): 0 at padding (fixed).
        fixed_mask (`torch.BoolTensor` of shape `(B, L)`, *optional*): positions that never change;
            default every non-mask token.
        num_inference_steps (`int`, defaults to 32): denoising steps per generation.
        budget (`Budget`, *optional*): bounds on the compute (see :class:`Budget`).
        generator (`torch.Generator`, *optional*): the run's seed. It is read, never advanced:
            every draw comes from a private generator seeded from its seed and state, so one
            seed reproduces the whole search.
        mask_token_id (`int`, *optional*): needed when ``pipe_or_model`` is a bare model.
        remask_fn (`Callable`, *optional*): refinement only: ``remask_fn(sequences (B, L),
            rewards (B,)) -> (B, L) bool`` picks the positions to remask (e.g. cells breaking a
            rule), instead of ``config.select``.

    Returns:
        [`SearchResult`]: the picked sequence per prompt, its reward, optionally every particle
        with its weight, the ESS history and resampling steps (SMC), and the compute spent.
    """
    pipe = _pipeline(pipe_or_model, mask_token_id)
    _check_args(reward, config, guidance, num_inference_steps, generator, remask_fn, budget)
    inputs = _inputs(pipe, input_ids, length, attention_mask, fixed_mask)
    order = unmasking_order(pipe.scheduler)
    meter = Meter(budget)
    counted = CountingReward(reward, meter)
    hook = None
    if guidance is not None:
        hook = RewardGuidance(counted, guidance, mask_token_id=pipe.mask_token_id)
    B, steps = inputs.batch_size, num_inference_steps
    if isinstance(config, SMCConfig):
        check_smc(pipe, hook, config, order)
        first = B * config.num_particles * steps
    elif isinstance(config, BestOfNConfig):
        first = B * min(config.batch_size, config.num_candidates) * steps
    else:
        first = B * steps
    limit = meter.budget.max_denoiser_forwards
    if limit is not None and first > limit:
        raise ValueError(
            f"`budget.max_denoiser_forwards` is {limit} but the first unit of {config.method} "
            f"needs {first} ({B} prompts × {first // (B * steps)} rows × {steps} steps). Raise "
            "the budget or lower the particles / batch size / steps."
        )
    recorder = StepRecorder(hook, meter)
    rng = private_generator(generator, config.method)
    kwargs = {"num_inference_steps": steps, "generator": rng, "meter": meter}
    if isinstance(config, SMCConfig):
        result = run_smc(pipe, recorder, counted, inputs, config, **kwargs)
    elif isinstance(config, BestOfNConfig):
        result = run_best_of_n(pipe, recorder, counted, inputs, config, **kwargs)
    else:
        result = run_refine(pipe, recorder, counted, inputs, config, remask_fn=remask_fn, **kwargs)
    result.spent = meter.done()
    result.budget_exhausted = result.budget_exhausted or meter.exhausted
    return result


def _pipeline(pipe_or_model: Any, mask_token_id: int | None) -> Any:
    from pipelines import MaskedDiffusionPipeline

    if isinstance(pipe_or_model, MaskedDiffusionPipeline):
        if pipe_or_model.mask_token_id is None:
            raise ValueError(
                "`pipe_or_model` has no mask token id (neither its scheduler nor its tokenizer). "
                "Build it with `MaskedDiffusionPipeline.from_model(model, mask_token_id=...)`."
            )
        if mask_token_id is not None and mask_token_id != pipe_or_model.mask_token_id:
            raise ValueError(
                f"`mask_token_id` is {mask_token_id!r} but the pipeline's is "
                f"{pipe_or_model.mask_token_id}. `mask_token_id` is for a bare model; drop it "
                "when passing a pipeline."
            )
        return pipe_or_model
    if isinstance(pipe_or_model, torch.nn.Module):
        if mask_token_id is None:
            raise ValueError(
                f"`pipe_or_model` is a bare model ({type(pipe_or_model).__name__}), so "
                "`mask_token_id` is needed to build the pipeline, got None. Pass "
                "`mask_token_id=tokenizer.mask_token_id`."
            )
        return MaskedDiffusionPipeline.from_model(pipe_or_model, mask_token_id=mask_token_id)
    raise ValueError(
        "`pipe_or_model` must be a MaskedDiffusionPipeline or a torch.nn.Module denoiser, got "
        f"{type(pipe_or_model).__name__}."
    )


def _check_args(
    reward, config, guidance, num_inference_steps, generator, remask_fn, budget
) -> None:
    if not callable(reward):
        raise ValueError(
            f"`reward` must be callable (a `rewards.Reward`), got {type(reward).__name__}."
        )
    if not isinstance(config, (BestOfNConfig, SMCConfig, RefineConfig)):
        raise ValueError(
            f"`config` must be a BestOfNConfig, SMCConfig or RefineConfig, got "
            f"{type(config).__name__}. Use `config_from_dict(...)` for a dict."
        )
    if guidance is not None and not isinstance(guidance, GuidanceConfig):
        raise ValueError(
            f"`guidance` must be a GuidanceConfig or None, got {type(guidance).__name__}. "
            "Pass `GuidanceConfig(...)`; the search builds the hook on its own reward counter."
        )
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int):
        raise ValueError(
            f"`num_inference_steps` must be an integer >= 1, got {num_inference_steps!r}."
        )
    if num_inference_steps < 1:
        raise ValueError(
            f"`num_inference_steps` must be an integer >= 1, got {num_inference_steps!r}."
        )
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(
            f"`generator` must be a torch.Generator or None, got {type(generator).__name__}."
        )
    if budget is not None and not isinstance(budget, Budget):
        raise ValueError(
            f"`budget` must be a Budget or None, got {type(budget).__name__}. Pass e.g. "
            "`Budget(max_denoiser_forwards=10_000)`."
        )
    if remask_fn is not None and not isinstance(config, RefineConfig):
        raise ValueError(
            f"`remask_fn` is only used by RefineConfig, got it with {type(config).__name__}. "
            "Drop `remask_fn` or pass a RefineConfig."
        )
    if remask_fn is not None and not callable(remask_fn):
        raise ValueError(f"`remask_fn` must be callable, got {type(remask_fn).__name__}.")
    if (
        isinstance(config, RefineConfig)
        and remask_fn is None
        and config.select == "gradient"
        and not getattr(reward, "differentiable", True)
    ):
        raise ValueError(
            f"`select='gradient'` needs a differentiable reward, but {type(reward).__name__} has "
            "`differentiable=False`. Use `select='confidence'` or pass a `remask_fn`."
        )


def _device(pipe: Any) -> torch.device:
    for tensor in (*pipe.model.parameters(), *pipe.model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _inputs(pipe: Any, input_ids, length, attention_mask, fixed_mask) -> Inputs:
    """Validate the rows and build ``(ids, attention_mask, fixed)`` on the model's device."""
    from pipelines._checks import (
        check_ids_in_vocab,
        check_mask_id_in_vocab,
        check_same_device,
        is_int,
    )
    from pipelines._model_io import config_int

    mask_id = pipe.mask_token_id
    if isinstance(input_ids, list):
        widths = {len(row) for row in input_ids if isinstance(row, list)}
        if (
            not input_ids
            or len(widths) != 1
            or not all(isinstance(r, list) and all(is_int(i) for i in r) for r in input_ids)
        ):
            raise ValueError(
                f"`input_ids` as a list must be a non-empty list of equal-length lists of ints, "
                f"got {input_ids!r}. Pad the rows (and pass `attention_mask`) or pass a tensor."
            )
        input_ids = torch.tensor(input_ids, dtype=torch.long)
    if not isinstance(input_ids, torch.Tensor) or input_ids.dtype != torch.long:
        raise ValueError(
            "`input_ids` must be a LongTensor of shape (B, L) or (L,), got "
            f"{getattr(input_ids, 'dtype', type(input_ids).__name__)}. Use `.long()`."
        )
    ids = input_ids.unsqueeze(0) if input_ids.dim() == 1 else input_ids
    if ids.dim() != 2 or ids.numel() == 0:
        raise ValueError(
            f"`input_ids` must have shape (B, L) or (L,), got {tuple(input_ids.shape)}."
        )
    vocab = config_int(pipe.model, ("vocab_size",))
    if vocab is not None:
        check_mask_id_in_vocab(mask_id, vocab, "the model")
    check_ids_in_vocab("input_ids", ids, vocab)
    am = torch.ones_like(ids) if attention_mask is None else attention_mask
    if not isinstance(am, torch.Tensor) or am.shape != ids.shape:
        raise ValueError(
            f"`attention_mask` must be a tensor of the shape of `input_ids` {tuple(ids.shape)}, "
            f"got {getattr(am, 'shape', type(am).__name__)}."
        )
    check_same_device("attention_mask", am, "input_ids", ids)
    if fixed_mask is None:
        fixed = ids != mask_id
    elif (
        not isinstance(fixed_mask, torch.Tensor)
        or fixed_mask.shape != ids.shape
        or fixed_mask.dtype != torch.bool
    ):
        raise ValueError(
            f"`fixed_mask` must be a bool tensor of the shape of `input_ids` {tuple(ids.shape)}, "
            f"got {getattr(fixed_mask, 'shape', type(fixed_mask).__name__)}."
        )
    else:
        check_same_device("fixed_mask", fixed_mask, "input_ids", ids)
        fixed = fixed_mask
    fixed = fixed | (am == 0)
    if length is not None:
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise ValueError(f"`length` must be an integer >= 0 or None, got {length!r}.")
        B = ids.shape[0]
        ids = torch.cat([ids, torch.full((B, length), mask_id, dtype=torch.long)], dim=1)
        am = torch.cat([am.long(), torch.ones(B, length, dtype=torch.long)], dim=1)
        fixed = torch.cat([fixed, torch.zeros(B, length, dtype=torch.bool)], dim=1)
    todo = ((ids == mask_id) & ~fixed).sum(dim=1)
    if bool((todo == 0).any()):
        rows = (todo == 0).nonzero().flatten().tolist()
        raise ValueError(
            f"Nothing to generate in row(s) {rows} of `input_ids`: they hold no free mask token "
            f"(id {mask_id}). Pass `length=16` to append 16 new tokens, or put mask tokens where "
            "text should be filled in."
        )
    device = _device(pipe)
    return Inputs(ids.to(device), am.long().to(device), fixed.to(device))
