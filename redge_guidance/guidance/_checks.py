"""Input checks of the guidance hook and the device helpers of its reward call."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import torch

from .config import is_int

__all__ = ["check_inputs", "device_of", "module_device", "to_device"]


def module_device(module: Any) -> torch.device | None:
    """Where a module computes: the execution device of the first accelerate hook found in it
    (``device_map``, ``dispatch_model``, ``cpu_offload``: its weights may sit on ``meta`` or on
    the CPU until the hook moves them), else the device of its first parameter or buffer that is
    not on ``meta``; None for plain callables."""
    if not isinstance(module, torch.nn.Module):
        return None
    for sub in module.modules():
        hook = getattr(sub, "_hf_hook", None)
        for h in getattr(hook, "hooks", None) or (hook,):  # a SequentialHook holds several
            device = getattr(h, "execution_device", None)
            if device is not None:
                return torch.device(device)
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        if tensor.device.type != "meta":
            return tensor.device
    return None


def device_of(x: Any) -> torch.device:
    return x.device if isinstance(x, torch.Tensor) else x.weight.device


def to_device(x: Any, device: torch.device) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(device)
    return dataclasses.replace(x, index=x.index.to(device), weight=x.weight.to(device))


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"shape {tuple(value.shape)} and dtype {value.dtype}."
    return f"{type(value).__name__}."


def check_inputs(
    logits: Any,
    sample: Any,
    editable: Any,
    step: Any,
    num_steps: Any,
    generator: Any,
    attention_mask: Any,
) -> None:
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3 or not logits.is_floating_point():
        raise ValueError(
            f"`logits` must be a float tensor of shape (B, L, V), got {_describe(logits)}"
        )
    B, L, V = logits.shape  # batch, length, vocab
    if (
        not isinstance(sample, torch.Tensor)
        or sample.shape != (B, L)
        or sample.dtype not in (torch.int64, torch.int32)
    ):
        raise ValueError(
            f"`sample` must be an int64 tensor of shape {(B, L)} (the current sequence), got "
            + _describe(sample)
        )
    if (
        not isinstance(editable, torch.Tensor)
        or editable.shape != (B, L)
        or editable.dtype != torch.bool
    ):
        raise ValueError(
            f"`editable` must be a bool tensor of shape {(B, L)}, got {_describe(editable)}"
            " Pass e.g. `editable=sample == mask_token_id`."
        )
    if not is_int(num_steps) or num_steps < 1:
        raise ValueError(f"`num_steps` must be an integer >= 1, got {num_steps!r}.")
    if not is_int(step) or not 0 <= step < num_steps:
        raise ValueError(f"`step` must be an integer in [0, num_steps={num_steps}), got {step!r}.")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(
            f"`generator` must be a torch.Generator or None, got {type(generator).__name__}."
        )
    if attention_mask is not None and (
        not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != (B, L)
    ):
        raise ValueError(
            f"`attention_mask` must be a tensor of shape {(B, L)} or None, got "
            + _describe(attention_mask)
        )
    for name, tensor in (
        ("sample", sample),
        ("editable", editable),
        ("attention_mask", attention_mask),
    ):
        if tensor is not None and tensor.device != logits.device:
            raise ValueError(
                f"`{name}` is on {tensor.device} but `logits` is on {logits.device}; they must be "
                f"on the same device. Move it with `{name}.to(logits.device)`."
            )
