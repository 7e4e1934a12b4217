"""Plug a guidance hook into upstream pipelines that users already have, unmodified.

```python
from redge_guidance import attach, detach
pipe = attach(pipe, guidance)   # diffusers LLaDA2Pipeline, DiffusionGemmaPipeline, AmusedPipeline
out = pipe(...)                 # guided
detach(pipe)                    # back to the untouched pipeline
```

For transformers models whose `generate()` runs logits processors at every denoising step
(`DiffusionGemmaForBlockDiffusion`), pass a [`GuidanceLogitsProcessor`] instead.

The hook is any callable with the protocol of `docs/architecture.md`:
`guidance(logits[B, L, V], sample[B, L], *, editable, step, num_steps, generator, attention_mask)
-> logits[B, L, V]`, plus an optional `reset()` that the adapters call once at the start of each
generation. What each adapter passes as `L`, `editable`, `step` and `num_steps` is documented in
its module ([`llada2`], [`amused`], [`logits_processor`]).

Importing this package imports neither diffusers nor transformers: pipelines are recognised by
the names (and modules) of the classes in their MRO, and the LogitsProcessor adapter, which
subclasses transformers' `LogitsProcessor`, is loaded on first access.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # pragma: no cover
    from .logits_processor import GuidanceLogitsProcessor

__all__ = ["attach", "detach", "GuidanceLogitsProcessor", "SUPPORTED_PIPELINES"]

# upstream class name -> adapter module (relative to this package)
_ADAPTERS: dict[str, str] = {
    "LLaDA2Pipeline": "llada2",
    "AmusedPipeline": "amused",
    "AmusedImg2ImgPipeline": "amused",
    "AmusedInpaintPipeline": "amused",
    "DiffusionGemmaPipeline": "diffusion_gemma",
}

#: Names of the diffusers pipeline classes (and their subclasses) that [`attach`] supports.
SUPPORTED_PIPELINES: tuple[str, ...] = tuple(_ADAPTERS)


def _adapter_for(pipe: Any, fn: str):
    """The adapter module for `pipe`, found by walking its MRO (subclasses are supported)."""
    for cls in type(pipe).__mro__:
        if cls.__name__ in _ADAPTERS and cls.__module__.split(".")[0] == "diffusers":
            return importlib.import_module(f"{__name__}.{_ADAPTERS[cls.__name__]}")
    name = type(pipe).__name__
    hint = ""
    if any(c.__name__ == "PreTrainedModel" for c in type(pipe).__mro__):
        hint = (
            " For a transformers model whose `generate()` runs logits processors at every "
            "denoising step (e.g. DiffusionGemmaForBlockDiffusion), pass "
            "`logits_processor=LogitsProcessorList([GuidanceLogitsProcessor(guidance)])` to "
            "`generate()` instead."
        )
    raise ValueError(
        f"`{fn}` got `pipe` of type {name!r}, which has no guidance adapter. Supported diffusers "
        f"pipelines: {', '.join(SUPPORTED_PIPELINES)} (and their subclasses).{hint} For other "
        "pipelines, call the hook yourself between the model call and the scheduler step."
    )


def attach(
    pipe: Any,
    guidance: Callable[..., torch.Tensor],
    *,
    mask_token_id: int | None = None,
    generator: torch.Generator | None = None,
) -> Any:
    r"""
    Make an existing diffusers pipeline call `guidance` at every denoising step, in place.

    The pipeline's own code is not touched: the LLaDA2 adapter wraps `pipe.model` in a proxy
    module, the aMUSEd adapters wrap `pipe.scheduler.step` of that scheduler instance. Calling
    the pipeline afterwards runs guided generation with the pipeline's usual arguments.

    Attaching to a pipeline that is already guided **replaces** the previous guidance (the old
    wrappers are removed first, so wrappers never nest).

    Args:
        pipe (`DiffusionPipeline`):
            The pipeline to guide: a `LLaDA2Pipeline`, `AmusedPipeline`, `AmusedImg2ImgPipeline`
            or `AmusedInpaintPipeline` (subclasses too).
        guidance (`Callable`):
            The hook, e.g. [`RewardGuidance`]: `guidance(logits, sample, *, editable, step,
            num_steps, generator, attention_mask) -> logits`. `guidance.reset()` is called, when
            present, once at the start of each pipeline call.
        mask_token_id (`int`, *optional*):
            The mask id the pipeline fills its canvas with. Defaults to `pipe.mask_token_id`
            (LLaDA2: the tokenizer's) or `pipe.scheduler.config.mask_token_id` (aMUSEd). Give it
            when you pass a different `mask_token_id=` to the LLaDA2 pipeline call.
        generator (`torch.Generator`, *optional*):
            Passed to the hook as `generator=`. LLaDA2's model never sees the pipeline's generator,
            so pass the same generator object here and to the pipeline call to make one seed
            reproduce the whole guided generation. aMUSEd: when `None`, the hook gets the
            generator the pipeline passes to its scheduler.

    Returns:
        The same `pipe`, guided.

    Raises:
        `ValueError`: for an unsupported pipeline type (names the supported ones), a `guidance`
        that is not callable, or a pipeline without a mask id.
    """
    adapter = _adapter_for(pipe, "attach")
    if not callable(guidance):
        raise ValueError(
            "`guidance` must be callable as `guidance(logits, sample, *, editable, step, "
            f"num_steps, generator, attention_mask)`, got {type(guidance).__name__}. Pass e.g. "
            "`RewardGuidance(reward, GuidanceConfig())`."
        )
    if mask_token_id is not None and (
        isinstance(mask_token_id, bool) or not isinstance(mask_token_id, int) or mask_token_id < 0
    ):
        raise ValueError(
            f"`mask_token_id` must be a non-negative int or None, got {mask_token_id!r}. Leave it "
            "None to use the pipeline's own mask id."
        )
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(
            f"`generator` must be a torch.Generator or None, got {type(generator).__name__}."
        )
    return adapter.attach(pipe, guidance, mask_token_id=mask_token_id, generator=generator)


def detach(pipe: Any) -> Any:
    r"""
    Remove the guidance that [`attach`] added, restoring the original model / scheduler method.

    A supported pipeline that is not guided is returned unchanged (no-op), so `detach` is safe in
    a `finally:` block.

    Args:
        pipe: A pipeline of a type [`attach`] supports.

    Returns:
        The same `pipe`, unguided.

    Raises:
        `ValueError`: for an unsupported pipeline type.
    """
    return _adapter_for(pipe, "detach").detach(pipe)


def call_guidance(
    guidance: Callable[..., torch.Tensor],
    logits: torch.Tensor,
    sample: torch.LongTensor,
    *,
    editable: torch.BoolTensor,
    step: int,
    num_steps: int,
    generator: torch.Generator | None,
    attention_mask: torch.Tensor | None,
    mask_token_id: int | None,
) -> torch.Tensor:
    r"""
    Call `guidance` with the protocol's arguments and check what comes back (shared by adapters).

    When `mask_token_id` is a vocabulary entry of `logits`, its logit is set to `finfo.min` at the
    editable positions first (the protocol's convention: guidance never proposes the mask).

    Args:
        logits (`torch.Tensor` of shape `(B, L, V)`): the denoiser's logits.
        sample (`torch.LongTensor` of shape `(B, L)`): the current sequence.
        editable (`torch.BoolTensor` of shape `(B, L)`): positions the hook may change.

    Returns:
        `torch.Tensor` of shape `(B, L, V)`: the guided logits.
    """
    # The rule of `pipelines.suppress_mask_token`, kept inline: importing `pipelines` imports
    # diffusers, which the transformers-only LogitsProcessor adapter must not need.
    if mask_token_id is not None and 0 <= mask_token_id < logits.shape[-1]:
        logits = logits.clone()
        column = logits[..., mask_token_id]
        logits[..., mask_token_id] = column.masked_fill(editable, torch.finfo(logits.dtype).min)
    guided = guidance(
        logits,
        sample,
        editable=editable,
        step=step,
        num_steps=num_steps,
        generator=generator,
        attention_mask=attention_mask,
    )
    if not torch.is_tensor(guided) or guided.shape != logits.shape:
        got = tuple(guided.shape) if torch.is_tensor(guided) else type(guided).__name__
        raise RuntimeError(
            f"The guidance hook {type(guidance).__name__} returned {got}; it must return logits of "
            f"the input's shape {tuple(logits.shape)}."
        )
    return guided


def reset_guidance(guidance: Any) -> None:
    """Call `guidance.reset()` when the hook has one (the protocol makes it optional)."""
    reset = getattr(guidance, "reset", None)
    if callable(reset):
        reset()


def __getattr__(name: str):
    if name == "GuidanceLogitsProcessor":
        value = importlib.import_module(f"{__name__}.logits_processor").GuidanceLogitsProcessor
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
