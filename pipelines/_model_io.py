"""What the pipeline reads from its denoiser and tokenizer: config sizes, padded token rows (and
the new mask positions appended to them), the logits of a forward call, and the decoded texts."""

from __future__ import annotations

import inspect
from typing import Any

import torch

from ._checks import is_int


def config_int(model: Any, names: tuple[str, ...]) -> int | None:
    """The first integer among the attributes `names` of `model.config`, else `None`."""
    config = getattr(model, "config", None)
    for name in names:
        value = getattr(config, name, None)
        if is_int(value):
            return value
    return None


def pad_token_id(tokenizer: Any, model: Any) -> int | None:
    """The tokenizer's pad id, else the model config's, else `None`."""
    for owner in (tokenizer, getattr(model, "config", None)):
        pad = getattr(owner, "pad_token_id", None) if owner is not None else None
        if is_int(pad):
            return pad
    return None


def left_pad(
    rows: list[list[int]], pad: int | None, what: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad ragged rows: `(ids, attention_mask)`, both `(B, L)` long."""
    width = max(len(r) for r in rows)
    if pad is None and any(len(r) != width for r in rows):
        raise ValueError(
            f"`{what}` rows have different lengths {[len(r) for r in rows]} and there is no "
            "pad token (neither `tokenizer.pad_token_id` nor `model.config.pad_token_id`). "
            "Pass rows of equal length or a tokenizer with a pad token."
        )
    ids = torch.full((len(rows), width), pad if pad is not None else 0, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, row in enumerate(rows):
        if row:
            ids[b, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            attention_mask[b, width - len(row) :] = 1
    return ids, attention_mask


def append_masks(
    ids: torch.LongTensor,
    attention_mask: torch.LongTensor,
    fixed: torch.BoolTensor,
    mask_token_id: int,
    n_new: int,
) -> tuple[torch.LongTensor, torch.LongTensor, torch.BoolTensor]:
    """`(ids, attention_mask, fixed)`, each `(B, L)`, with `n_new` positions appended to every row:
    the mask token, attended to, not fixed."""
    if n_new:
        B = ids.shape[0]
        ids = torch.cat([ids, torch.full((B, n_new), mask_token_id, dtype=torch.long)], dim=1)
        attention_mask = torch.cat(
            [attention_mask, torch.ones((B, n_new), dtype=torch.long)], dim=1
        )
        fixed = torch.cat([fixed, torch.zeros((B, n_new), dtype=torch.bool)], dim=1)
    return ids, attention_mask, fixed


def forward_kwargs(model: Any) -> tuple[bool, bool]:
    """Whether `model.forward` takes `input_ids` by name and accepts `attention_mask`."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError, AttributeError):
        return True, True
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return "input_ids" in params or var_kw, "attention_mask" in params or var_kw


def model_logits(
    model: Any,
    sample: torch.LongTensor,
    attention_mask: torch.LongTensor,
    by_name: bool,
    with_mask: bool,
) -> torch.Tensor:
    """`(B, L, V)` float32 logits of one forward call on `sample` `(B, L)`."""
    kwargs = {"attention_mask": attention_mask} if with_mask else {}
    out = model(input_ids=sample, **kwargs) if by_name else model(sample, **kwargs)
    if torch.is_tensor(out):
        logits = out
    elif getattr(out, "logits", None) is not None:
        logits = out.logits
    elif isinstance(out, (tuple, list)) and out and torch.is_tensor(out[0]):
        logits = out[0]
    else:
        raise ValueError(
            f"The model returned {type(out).__name__}; expected a logits tensor (B, L, V) or "
            "an output with `.logits`."
        )
    B, L = sample.shape
    if logits.ndim != 3 or logits.shape[:2] != (B, L):
        raise ValueError(
            f"The model's logits have shape {tuple(logits.shape)}; expected ({B}, {L}, V) for "
            f"`input_ids` of shape {(B, L)}."
        )
    return logits.float()


def decode_texts(
    tokenizer: Any,
    sample: torch.LongTensor,
    attention_mask: torch.LongTensor,
    generated: torch.BoolTensor,
) -> list[str]:
    """Per row, the text from the first generated position on, special tokens skipped."""
    texts = []
    for b in range(sample.shape[0]):
        start = int(generated[b].nonzero()[0]) if bool(generated[b].any()) else sample.shape[1]
        keep = attention_mask[b, start:].bool()
        texts.append(tokenizer.decode(sample[b, start:][keep].tolist(), skip_special_tokens=True))
    return texts
