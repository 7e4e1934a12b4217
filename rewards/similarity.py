"""Reward from a text encoder: cosine similarity of the pooled embedding to a target."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .embedding import AssembledInputs, EmbeddingInputReward, masked_mean, onloaded

__all__ = ["EmbeddingSimilarityReward"]

_POOLING = ("mean", "cls")


class EmbeddingSimilarityReward(EmbeddingInputReward):
    r"""Cosine similarity between the pooled encoder embedding of `x` and a target embedding.

    Works with any transformers encoder returning `last_hidden_state` (`AutoModel`, e.g.
    sentence-transformers' all-MiniLM-L6-v2 loaded with `AutoModel.from_pretrained(folder)`).
    Mean pooling averages the real slots (special tokens included, as sentence-transformers
    does); `"cls"` takes the first slot. The score lies in [-1, 1].

    Args:
        encoder: the encoder (frozen in place).
        tokenizer (*optional*): its tokenizer; required with `target_text`.
        target_text (`str`, *optional*): the target, embedded once at construction with the same
            pooling (exactly one of `target_text` / `target_embedding`).
        target_embedding (`torch.Tensor` of shape `(H,)`, *optional*): a precomputed target.
        pooling (`"mean"` or `"cls"`, defaults to `"mean"`).
        sub_vocab_ids, prefix_ids, suffix_ids, add_special_tokens: see `EmbeddingInputReward`.
    """

    def __init__(
        self,
        encoder: nn.Module,
        tokenizer: Any = None,
        *,
        target_text: str | None = None,
        target_embedding: Tensor | None = None,
        pooling: Literal["mean", "cls"] = "mean",
        sub_vocab_ids: Sequence[int] | Tensor | None = None,
        prefix_ids: Sequence[int] | None = None,
        suffix_ids: Sequence[int] | None = None,
        add_special_tokens: bool = True,
    ):
        if pooling not in _POOLING:
            raise ValueError(
                f"EmbeddingSimilarityReward `pooling` must be one of {_POOLING}, got {pooling!r}."
            )
        if (target_text is None) == (target_embedding is None):
            raise ValueError(
                "EmbeddingSimilarityReward needs exactly one of `target_text` and "
                f"`target_embedding`, got target_text={target_text!r} and target_embedding of "
                f"type {type(target_embedding).__name__}."
            )
        if target_text is not None and tokenizer is None:
            raise ValueError(
                "EmbeddingSimilarityReward(target_text=...) needs the encoder's `tokenizer` to "
                "embed the target. Pass `tokenizer=`, or a precomputed `target_embedding=`."
            )
        super().__init__(
            encoder,
            tokenizer=tokenizer,
            sub_vocab_ids=sub_vocab_ids,
            prefix_ids=prefix_ids,
            suffix_ids=suffix_ids,
            add_special_tokens=add_special_tokens,
        )
        self.pooling = pooling
        hidden = self.model.get_input_embeddings().weight.shape[1]
        if target_text is not None:
            if not isinstance(target_text, str) or not target_text.strip():
                raise ValueError(
                    "EmbeddingSimilarityReward `target_text` must be a non-empty string, got "
                    f"{target_text!r}."
                )
            target = self.embed_text(target_text)
        else:
            target = torch.as_tensor(target_embedding).detach().float().reshape(-1)
            if not bool(torch.isfinite(target).all()) or float(target.norm()) == 0.0:
                raise ValueError(
                    "EmbeddingSimilarityReward `target_embedding` must be finite and non-zero."
                )
        if target.shape != (hidden,):
            raise ValueError(
                f"EmbeddingSimilarityReward `target_embedding` must have shape ({hidden},) (the "
                f"encoder's hidden size), got {tuple(target.shape)}."
            )
        self.register_buffer("target_embedding", target.float())  # (H,)

    def _pool(self, hidden: Tensor, mask: Tensor) -> Tensor:
        if self.pooling == "cls":
            return hidden[:, 0]
        return masked_mean(hidden, mask.bool())

    @staticmethod
    def _hidden(out: Any) -> Tensor:
        hidden = getattr(out, "last_hidden_state", None)
        if hidden is None:
            raise ValueError(
                "EmbeddingSimilarityReward needs an encoder whose output has `last_hidden_state` "
                f"(an `AutoModel`), got {type(out).__name__}. Pass `model.base_model`."
            )
        return hidden

    @torch.no_grad()
    def embed_text(self, text: str | list[str]) -> Tensor:
        r"""Pooled embeddings via `input_ids`: `(H,)` for a string, `(N, H)` for a list."""
        if self.tokenizer is None:
            raise ValueError(
                "EmbeddingSimilarityReward.embed_text needs the reward built with `tokenizer=`."
            )
        batch = self.tokenizer(
            [text] if isinstance(text, str) else list(text), return_tensors="pt", padding=True
        )
        embedding = self.model.get_input_embeddings()
        with onloaded(embedding):  # the device it computes on, also under offloading
            dev = embedding.weight.device
        mask = batch["attention_mask"].to(dev)
        out = self.model(input_ids=batch["input_ids"].to(dev), attention_mask=mask)
        pooled = self._pool(self._hidden(out).float(), mask).cpu()
        return pooled[0] if isinstance(text, str) else pooled

    def score_inputs(self, inputs: AssembledInputs) -> Tensor:
        hidden = self._hidden(self.run_model(inputs)).float()  # (B, T, H)
        pooled = self._pool(hidden, inputs.attention_mask)  # (B, H)
        target = self.target_embedding.to(pooled.device)
        return torch.nn.functional.cosine_similarity(pooled, target.expand_as(pooled), dim=-1)

    def extra_repr(self) -> str:
        return f"pooling={self.pooling!r}, " + super().extra_repr()
