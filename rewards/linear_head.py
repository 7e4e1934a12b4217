"""Reward from a text encoder and a linear head: `sign * (w · mean_pool(encoder(x @ W)) + b)`.

A head fitted on pooled sentence embeddings (a probe: sentiment, toxicity, formality, ...) is a
cheap, differentiable reward. The head is stored as `head.safetensors` with two tensors,
`weight` of shape `(1, H)` and `bias` of shape `(1,)` (`save_linear_head`, `load_linear_head`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .embedding import AssembledInputs, EmbeddingInputReward, masked_mean

__all__ = ["HEAD_FILENAME", "LinearHeadReward", "load_linear_head", "save_linear_head"]

#: File name of a saved head inside its folder.
HEAD_FILENAME = "head.safetensors"


def load_linear_head(folder: str | Path) -> tuple[Tensor, Tensor]:
    """`(weight (1, H), bias (1,))` in float32 from `folder/head.safetensors`."""
    path = Path(folder) / HEAD_FILENAME
    if not path.is_file():
        raise ValueError(
            f"`folder` {str(folder)!r} has no {HEAD_FILENAME}. Pass a folder written by "
            "`rewards.linear_head.save_linear_head` (e.g. examples/fit_sentiment_head.py)."
        )
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    missing = sorted({"weight", "bias"} - set(tensors))
    if missing:
        raise ValueError(
            f"{str(path)!r} lacks the tensors {missing}; a linear head stores `weight` (1, H) "
            "and `bias` (1,)."
        )
    return tensors["weight"].float(), tensors["bias"].float()


def save_linear_head(folder: str | Path, weight: Tensor, bias: Tensor) -> Path:
    """Write `weight (1, H)` and `bias (1,)` as float32 to `folder/head.safetensors`."""
    from safetensors.torch import save_file

    weight = torch.as_tensor(weight, dtype=torch.float32).reshape(1, -1).contiguous()
    bias = torch.as_tensor(bias, dtype=torch.float32).reshape(1).contiguous()
    path = Path(folder) / HEAD_FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"weight": weight, "bias": bias}, str(path))
    return path


class LinearHeadReward(EmbeddingInputReward):
    r"""A linear head on the mean-pooled encoder embedding: `sign * (w · h + b)`.

    `h = mean_pool(encoder(x @ W))`: mean pooling over every real slot, the encoder's special
    tokens (`[CLS]`/`[SEP]`) included, as sentence-transformers pools all-MiniLM-L6-v2 (fit the
    head on embeddings pooled the same way). Differentiable in `x`; for a one-hot `x` it equals
    the head on the encoder's output for the same token ids.

    Args:
        encoder (`torch.nn.Module`): a transformers encoder returning `last_hidden_state`
            (e.g. `AutoModel`); frozen in place.
        weight (`torch.Tensor` of shape `(1, H)` or `(H,)`): the head, `H` the encoder's width.
        bias (`torch.Tensor` of shape `(1,)` or `()`): its bias.
        tokenizer (*optional*): the encoder's tokenizer (finds its special tokens).
        sign (`float`, defaults to 1.0): +1 rewards a high head output, -1 a low one.
        sub_vocab_ids, prefix_ids, suffix_ids, add_special_tokens: see
            `rewards.EmbeddingInputReward`.
    """

    def __init__(
        self,
        encoder: nn.Module,
        weight: Tensor,
        bias: Tensor,
        tokenizer: Any = None,
        *,
        sign: float = 1.0,
        sub_vocab_ids: Sequence[int] | Tensor | None = None,
        prefix_ids: Sequence[int] | None = None,
        suffix_ids: Sequence[int] | None = None,
        add_special_tokens: bool = True,
    ):
        super().__init__(
            encoder,
            tokenizer=tokenizer,
            sub_vocab_ids=sub_vocab_ids,
            prefix_ids=prefix_ids,
            suffix_ids=suffix_ids,
            add_special_tokens=add_special_tokens,
        )
        owner = type(self).__name__
        hidden = self.model.get_input_embeddings().weight.shape[1]
        weight = torch.as_tensor(weight, dtype=torch.float32)
        bias = torch.as_tensor(bias, dtype=torch.float32)
        if weight.ndim == 1:
            weight = weight[None]
        if weight.shape != (1, hidden) or bias.numel() != 1:
            raise ValueError(
                f"{owner} `weight` must have shape (1, {hidden}) and `bias` shape (1,) (the "
                f"encoder's hidden size), got {tuple(weight.shape)} and {tuple(bias.shape)}. "
                "Fit the head on this encoder's pooled embeddings."
            )
        if sign not in (1.0, -1.0):
            raise ValueError(
                f"{owner} `sign` must be 1.0 or -1.0, got {sign!r}. Use -1.0 to reward low head "
                "outputs, and scale the reward (`0.5 * reward`) to change its weight."
            )
        self.register_buffer("head_weight", weight)  # (1, H)
        self.register_buffer("head_bias", bias.reshape(1))  # (1,)
        self.sign = float(sign)

    @classmethod
    def from_pretrained(
        cls, encoder: nn.Module, folder: str | Path, tokenizer: Any = None, **kwargs: Any
    ) -> LinearHeadReward:
        """Build the reward with the head saved in `folder` (`load_linear_head`).

        Args:
            encoder (`torch.nn.Module`): the encoder the head was fitted on.
            folder (`str` or `Path`): holds `head.safetensors`.
            tokenizer (*optional*): the encoder's tokenizer.
            **kwargs: the keyword arguments of `LinearHeadReward` (`sign`, `sub_vocab_ids`, ...).
        """
        weight, bias = load_linear_head(folder)
        return cls(encoder, weight, bias, tokenizer, **kwargs)

    def pooled(self, inputs: AssembledInputs) -> Tensor:
        """Mean-pooled encoder embeddings `(B, H)` in float32."""
        hidden = self.run_model(inputs).last_hidden_state.float()  # (B, T, H)
        return masked_mean(hidden, inputs.attention_mask.bool())

    def score_inputs(self, inputs: AssembledInputs) -> Tensor:
        pooled = self.pooled(inputs)  # (B, H)
        head = pooled @ self.head_weight.to(pooled.device).T + self.head_bias.to(pooled.device)
        return self.sign * head[:, 0]

    def extra_repr(self) -> str:
        return f"sign={self.sign:+g}, " + super().extra_repr()
