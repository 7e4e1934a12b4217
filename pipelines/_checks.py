"""Argument checks shared by the pipeline and the scheduler (one rule, one place).

Each check raises a `ValueError` that names the argument, echoes what it got and says what to pass.
"""

from __future__ import annotations

import math
from typing import Any

import torch


def is_int(value: Any) -> bool:
    """A Python integer that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """A Python int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def describe(value: Any) -> Any:
    """What an error message echoes: `(shape, dtype)` for a tensor, else the value itself."""
    if torch.is_tensor(value):
        return tuple(value.shape), value.dtype
    return value


def check_positive_int(name: str, value: Any, example: str) -> None:
    """`value` is an integer >= 1."""
    if not is_int(value) or value < 1:
        raise ValueError(
            f"`{name}` must be an integer >= 1, got {value!r}. Use e.g. `{name}={example}`."
        )


def check_bool_mask(name: str, mask: Any, shape: tuple[int, ...], hint: str = "") -> None:
    """`mask` is a bool tensor of exactly `shape`."""
    if not torch.is_tensor(mask) or tuple(mask.shape) != tuple(shape) or mask.dtype != torch.bool:
        raise ValueError(
            f"`{name}` must be a bool tensor of shape {tuple(shape)}, got {describe(mask)}.{hint}"
        )


def check_generator(generator: Any) -> None:
    """`generator` is a `torch.Generator` or `None`."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(
            f"`generator` must be a torch.Generator or None, got {generator!r}. Pass e.g. "
            "`torch.Generator().manual_seed(0)`."
        )


def check_same_device(name: str, tensor: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    """The tensor `name` lives on the device of `ref_name`."""
    if tensor.device != ref.device:
        raise ValueError(
            f"`{name}` is on {tensor.device} but `{ref_name}` is on {ref.device}; they must be on "
            f"the same device. Move it with `{name}.to({ref_name}.device)`."
        )


def check_ids_in_vocab(name: str, ids: Any, vocab_size: int | None) -> None:
    """Every token id of `ids` (a tensor or lists of ints) is in `[0, vocab_size)`, when the
    vocabulary size is known (one pass over the `(B, L)` ids, once per generation)."""
    if vocab_size is None:
        return
    if torch.is_tensor(ids):
        bad = ids[(ids < 0) | (ids >= vocab_size)]
        first = int(bad[0]) if bad.numel() else None
    else:
        first = next((i for row in ids for i in row if not 0 <= i < vocab_size), None)
    if first is not None:
        raise ValueError(
            f"`{name}` holds the token id {first}, outside the model's vocabulary "
            f"[0, {vocab_size}). Pass ids of the model's tokenizer."
        )


def check_guidance_mask_id(guidance: Any, mask_token_id: int) -> None:
    """A guidance hook that knows a mask id knows the pipeline's."""
    hook_mask = getattr(guidance, "mask_token_id", None)
    if is_int(hook_mask) and hook_mask != mask_token_id:
        raise ValueError(
            f"`guidance.mask_token_id` is {hook_mask} but the pipeline's mask token id is "
            f"{mask_token_id}. Build the hook with `mask_token_id={mask_token_id}` (or None)."
        )


def check_logits(name: str, logits: Any, fix: str) -> None:
    """`logits` is a float tensor of shape `(B, L, V)`."""
    if not torch.is_tensor(logits) or logits.ndim != 3 or not logits.is_floating_point():
        got = tuple(logits.shape) if torch.is_tensor(logits) else type(logits).__name__
        raise ValueError(f"`{name}` must be a float tensor of shape (B, L, V), got {got}. {fix}")


def check_token_ids(name: str, ids: Any, fix: str) -> None:
    """`ids` is a LongTensor of shape `(B, L)`."""
    if not torch.is_tensor(ids) or ids.ndim != 2 or ids.dtype != torch.long:
        got = describe(ids) if torch.is_tensor(ids) else type(ids).__name__
        raise ValueError(f"`{name}` must be a LongTensor of shape (B, L), got {got}. {fix}")


def check_mask_id_in_vocab(mask_token_id: int, vocab_size: int, source: str) -> None:
    """The mask id is an entry of a vocabulary of `vocab_size` entries."""
    if mask_token_id >= vocab_size:
        raise ValueError(
            f"`mask_token_id` is {mask_token_id} but {source} has only {vocab_size} vocabulary "
            "entries. Use the mask id of the model's tokenizer."
        )


def check_input_ids(input_ids: Any) -> None:
    """Pipeline `input_ids`: a non-empty LongTensor `(L,)` / `(B, L)` or list of int lists."""
    if torch.is_tensor(input_ids):
        if input_ids.ndim not in (1, 2) or input_ids.dtype != torch.long or input_ids.numel() == 0:
            raise ValueError(
                "`input_ids` must be a non-empty LongTensor of shape (L,) or (B, L), got shape "
                f"{tuple(input_ids.shape)} and dtype {input_ids.dtype}. Use `.long()`."
            )
    elif not (
        isinstance(input_ids, list)
        and input_ids
        and all(isinstance(row, list) and all(is_int(i) for i in row) for row in input_ids)
    ):
        raise ValueError(
            "`input_ids` must be a LongTensor or a non-empty list of lists of ints, got "
            f"{input_ids!r}."
        )


def check_prompt(prompt: Any, tokenizer: Any) -> None:
    """`prompt` of the pipeline: a string or a non-empty list of strings, with a tokenizer."""
    if not (
        isinstance(prompt, str)
        or (isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt))
    ):
        raise ValueError(
            f"`prompt` must be a string or a non-empty list of strings, got {prompt!r}."
        )
    if tokenizer is None:
        raise ValueError(
            f"`prompt` was given ({prompt!r}) but the pipeline has no tokenizer. Pass "
            "`tokenizer=` when building the pipeline, or pass token ids as `input_ids`."
        )


def check_prompt_or_ids(prompt: Any, input_ids: Any, tokenizer: Any) -> None:
    """Exactly one of the pipeline's `prompt` (with a tokenizer) and `input_ids`, well formed."""
    if prompt is None and input_ids is None:
        raise ValueError("Neither `prompt` nor `input_ids` was given. Pass one of them (not both).")
    if prompt is not None and input_ids is not None:
        raise ValueError(
            "Both `prompt` and `input_ids` were given. Pass one of them: text as `prompt`, "
            "token ids as `input_ids`."
        )
    if prompt is not None:
        check_prompt(prompt, tokenizer)
    else:
        check_input_ids(input_ids)


def check_id_masks(
    input_ids: Any, attention_mask: Any, fixed_mask: Any, mask_token_id: int
) -> None:
    """`attention_mask` / `fixed_mask` of the pipeline: only with tensor `input_ids`, same shape."""
    if attention_mask is not None:
        if not torch.is_tensor(input_ids):
            raise ValueError(
                "`attention_mask` is only accepted with tensor `input_ids`; prompts and "
                "lists of ids are padded by the pipeline, which builds the mask itself."
            )
        if not torch.is_tensor(attention_mask) or attention_mask.shape != input_ids.shape:
            got = tuple(attention_mask.shape) if torch.is_tensor(attention_mask) else attention_mask
            raise ValueError(
                "`attention_mask` must have the shape of `input_ids` "
                f"{tuple(input_ids.shape)}, got {got}."
            )
    if fixed_mask is not None:
        if not torch.is_tensor(input_ids):
            raise ValueError(
                "`fixed_mask` is only accepted with tensor `input_ids` (of the same shape)."
            )
        check_bool_mask("fixed_mask", fixed_mask, tuple(input_ids.shape), " Pass it for every id.")
        if bool((fixed_mask & (input_ids == mask_token_id)).any()):
            raise ValueError(
                f"`fixed_mask` marks mask-token positions (id {mask_token_id}) as fixed; "
                "they could never be filled in. Set `fixed_mask` to False wherever "
                "`input_ids` holds the mask."
            )


def check_length(length: Any) -> None:
    """Pipeline `length`: `None` or an integer >= 0."""
    if length is not None and (not is_int(length) or length < 0):
        raise ValueError(
            "`length` must be an integer >= 0 (number of new tokens after each prompt), got "
            f"{length!r}."
        )


def check_guidance_callable(guidance: Any) -> None:
    """Pipeline `guidance`: `None` or a callable hook."""
    if guidance is not None and not callable(guidance):
        raise ValueError(
            "`guidance` must be callable as guidance(logits, sample, editable=..., "
            "step=..., num_steps=..., generator=..., attention_mask=...), got "
            f"{type(guidance).__name__}."
        )


def check_callback_tensor_inputs(names: list[str], allowed: list[str]) -> None:
    """Pipeline `callback_on_step_end_tensor_inputs`: a subset of the names in `allowed`."""
    bad = [k for k in names if k not in allowed]
    if bad:
        raise ValueError(
            f"`callback_on_step_end_tensor_inputs` must be a subset of {allowed}, got unknown "
            f"{bad}."
        )


def check_something_to_generate(
    ids: torch.LongTensor, fixed: torch.BoolTensor, mask_token_id: int, length: Any, source: str
) -> None:
    """Every row of the starting sequence `ids` `(B, L)` has a mask token that is not fixed."""
    empty = ((ids == mask_token_id) & ~fixed).sum(dim=1) == 0
    if bool(empty.any()):
        rows_without = empty.nonzero().flatten().tolist()
        raise ValueError(
            f"Nothing to generate in row(s) {rows_without} of `{source}`: `length` is "
            f"{length!r} and they hold no mask token (id {mask_token_id}). Pass e.g. `length=16` "
            "to append 16 new tokens, or put mask tokens where text should be filled in."
        )


def check_choice(name: str, value: Any, choices: tuple[str, ...], fix: str = "") -> None:
    """`value` is one of the strings `choices`."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}, got {value!r}.{fix}")


def check_reward_vocab(reward: Any, model_vocab: int | None) -> None:
    """The guidance's reward reads the model's vocabulary (when both sizes are known)."""
    if reward is None or model_vocab is None:
        return
    try:
        from rewards import check_vocab_size
    except ImportError:  # a `rewards` without the shared check: the same rule, inline
        reward_vocab = getattr(reward, "vocab_size", None)
        if is_int(reward_vocab) and reward_vocab != model_vocab:
            raise ValueError(
                f"`guidance.reward.vocab_size` is {reward_vocab} but the model's vocabulary "
                f"has {model_vocab} entries. Build the reward for the denoiser's tokenizer "
                "or wrap it in `rewards.VocabularyBridge`."
            ) from None
        return
    check_vocab_size(reward, model_vocab, what="the model's logits")


def check_callback_sample(callback_outputs: Any, sample: torch.LongTensor) -> torch.LongTensor:
    """The `"sample"` a step-end callback returned, if any, else `sample`."""
    if callback_outputs is None or "sample" not in callback_outputs:
        return sample
    new = callback_outputs["sample"]
    if not torch.is_tensor(new) or new.shape != sample.shape or new.dtype != torch.long:
        raise ValueError(
            "`callback_on_step_end` returned a `sample` that is not a LongTensor of shape "
            f"{tuple(sample.shape)}, got {describe(new)}."
        )
    return new


def check_step_inputs(
    model_output: Any,
    sample: Any,
    fixed_mask: Any,
    mask_token_id: int,
    generator: Any = None,
    ranking_logits: Any = None,
) -> torch.BoolTensor:
    """The tensors of a scheduler step: `model_output` `(B, L, V)` float logits with `V >= 2`
    entries including the mask id, `sample` `(B, L)` ids, `fixed_mask` a `(B, L)` bool tensor or
    `None`, `ranking_logits` `None` or float logits of `model_output`'s shape, all on
    `model_output`'s device; `generator` a `torch.Generator` or `None`. Returns `fixed_mask`, all
    False when it is `None`."""
    check_logits("model_output", model_output, "Pass the model's `.logits`.")
    check_token_ids("sample", sample, "Pass token ids.")
    B, L, V = model_output.shape  # batch, length, vocab
    if sample.shape != (B, L):
        raise ValueError(
            f"`sample` has shape {tuple(sample.shape)} but `model_output` has shape "
            f"{(B, L, V)}; they must agree on (B, L)."
        )
    check_same_device("sample", sample, "model_output", model_output)
    check_generator(generator)
    if ranking_logits is not None:
        check_ranking_logits(ranking_logits, model_output)
    check_mask_id_in_vocab(mask_token_id, V, "`model_output`")
    if V < 2:
        raise ValueError(f"`model_output` needs at least 2 vocabulary entries, got V={V}.")
    if fixed_mask is None:
        return torch.zeros_like(sample, dtype=torch.bool)
    check_bool_mask(
        "fixed_mask",
        fixed_mask,
        (B, L),
        " Pass e.g. `attention_mask == 0` or `sample != mask_token_id` at the first step.",
    )
    check_same_device("fixed_mask", fixed_mask, "model_output", model_output)
    return fixed_mask


def check_ranking_logits(ranking_logits: Any, model_output: torch.Tensor) -> None:
    """The `ranking_logits` of a scheduler step: float logits of `model_output`'s shape, on its
    device (any float dtype: only their softmax's order is read)."""
    check_logits("ranking_logits", ranking_logits, "Pass the model's unguided logits.")
    if ranking_logits.shape != model_output.shape:
        raise ValueError(
            f"`ranking_logits` has shape {tuple(ranking_logits.shape)} but `model_output` has "
            f"shape {tuple(model_output.shape)}; they must be equal. Pass the unguided logits of "
            "the step."
        )
    check_same_device("ranking_logits", ranking_logits, "model_output", model_output)


def check_timestep(timestep: Any) -> float:
    """A scheduler `timestep`: a finite real number or a one-element tensor; returns it as a
    float."""
    if torch.is_tensor(timestep):
        if timestep.numel() != 1:
            raise ValueError(
                f"`timestep` must be a scalar, got a tensor of shape {tuple(timestep.shape)}. "
                "Pass one element of `scheduler.timesteps`."
            )
        timestep = timestep.item()
    try:
        value = float(timestep)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(
            f"`timestep` must be one of `scheduler.timesteps` (a number in (0, 1]), got "
            f"{timestep!r}. Iterate over `scheduler.timesteps` after `set_timesteps`."
        )
    return value


def parse_device(device: Any) -> torch.device | None:
    """`device` of `set_timesteps`: `None`, a `torch.device` or a string naming one."""
    if device is None or isinstance(device, torch.device):
        return device
    try:
        return torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(
            f"`device` must name a torch device, got {device!r}. Use e.g. 'cpu' or 'cuda'."
        ) from None
