"""Fluency reward: mean token log-likelihood under a causal or masked language model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .embedding import AssembledInputs, EmbeddingInputReward
from .sparse import SparseRows

__all__ = ["LanguageModelReward"]

_KINDS = ("causal", "masked")


class LanguageModelReward(EmbeddingInputReward):
    r"""Mean log-likelihood of the relaxed tokens under a language model (higher = more fluent).

    Each real position `l` scores `sum_v x[b, l, v] * log p(v | context)` (the expected
    log-likelihood of its token under `x`); the reward is the mean over scored positions, in
    nats per token (rows with none score 0).

    - `kind="causal"` (GPT-2, Llama, ...): `p(. | tokens before l)`, read from the logits one
      slot earlier. The first token is scored only if the tokenizer adds a BOS prefix.
    - `kind="masked"` (BERT, ModernBERT, ...), one forward (`pll_passes=None`, the default):
      `p(. | the whole sequence, position l included)` from the model fed the relaxed sequence
      itself. This is a cheap, biased stand-in for the pseudo-log-likelihood (PLL): the model
      sees the token it scores, so the values run higher than a PLL and reward copying; use it
      to rank or steer, not as a calibrated likelihood.
    - `kind="masked"`, `pll_passes=k`: real PLL on a budget. Pass `j` replaces the embedding of
      every real position whose rank is `j` mod `k` by the mask token's, and those positions are
      scored from that pass; `k` forwards (one batched call of `k*B` rows). `k = L` is the exact
      PLL; `k = 4` to `8` is a usual compromise.

    For `SparseRows` inputs the expected log-likelihood reads only the k entries of each row
    (`sum_j weight_j * log p(index_j | context)`), exactly; the model's log-softmax over its own
    vocabulary is its output and is computed either way.

    Args:
        model: the language model (frozen in place), returning `.logits` of shape `(B, T, V)`.
        kind (`"causal"` or `"masked"`).
        tokenizer (*optional*): its tokenizer (special tokens; mask id for `pll_passes`).
        pll_passes (`int`, *optional*): see above; masked models only.
        mask_token_id (`int`, *optional*): the mask token; defaults to `tokenizer.mask_token_id`.
        sub_vocab_ids, prefix_ids, suffix_ids, add_special_tokens: see `EmbeddingInputReward`.
            With `sub_vocab_ids`, probabilities are still normalised over the full vocabulary.
    """

    def __init__(
        self,
        model: nn.Module,
        kind: Literal["causal", "masked"],
        tokenizer: Any = None,
        *,
        pll_passes: int | None = None,
        mask_token_id: int | None = None,
        sub_vocab_ids: Sequence[int] | Tensor | None = None,
        prefix_ids: Sequence[int] | None = None,
        suffix_ids: Sequence[int] | None = None,
        add_special_tokens: bool = True,
    ):
        if kind not in _KINDS:
            raise ValueError(
                f"LanguageModelReward `kind` must be one of {_KINDS}, got {kind!r}: 'causal' for "
                "left-to-right models (GPT-2), 'masked' for BERT-style models."
            )
        if pll_passes is not None:
            if kind != "masked":
                raise ValueError(
                    f"LanguageModelReward `pll_passes`={pll_passes} applies to kind='masked' only. "
                    "Drop it for causal models."
                )
            if not isinstance(pll_passes, int) or isinstance(pll_passes, bool) or pll_passes < 1:
                raise ValueError(
                    "LanguageModelReward `pll_passes` must be a positive int or None, got "
                    f"{pll_passes!r}."
                )
            if mask_token_id is None:
                mask_token_id = getattr(tokenizer, "mask_token_id", None)
            if mask_token_id is None:
                raise ValueError(
                    "LanguageModelReward(pll_passes=...) needs the mask token: pass "
                    "`mask_token_id=` or a `tokenizer` with a mask token."
                )
        super().__init__(
            model,
            tokenizer=tokenizer,
            sub_vocab_ids=sub_vocab_ids,
            prefix_ids=prefix_ids,
            suffix_ids=suffix_ids,
            add_special_tokens=add_special_tokens,
        )
        V_model = self.model.get_input_embeddings().weight.shape[0]
        if mask_token_id is not None and not 0 <= int(mask_token_id) < V_model:
            raise ValueError(
                f"LanguageModelReward `mask_token_id` must lie in [0, {V_model}), got "
                f"{mask_token_id!r}."
            )
        self.kind = kind
        self.pll_passes = pll_passes
        self.mask_token_id = None if mask_token_id is None else int(mask_token_id)

    def _log_probs(self, logits: Tensor) -> Tensor:
        logp = logits.float().log_softmax(-1)  # (..., V_model)
        if self.sub_vocab_ids is not None:
            logp = logp.index_select(-1, self.sub_vocab_ids.to(logp.device))
        return logp

    def _masked_pll_log_probs(self, inputs: AssembledInputs) -> Tensor:
        k = self.pll_passes
        embeds, tok = inputs.inputs_embeds, inputs.token_slots  # (B, T, H), (B, T)
        B, T, H = embeds.shape
        P = self.prefix_ids.numel()
        rank = torch.arange(T, device=embeds.device) - P  # rank of each real slot
        group = torch.where(tok, rank.remainder(k).expand(B, T), -1)  # (B, T)
        sel = group[None] == torch.arange(k, device=embeds.device)[:, None, None]  # (k, B, T)
        mask_emb = self._lookup(torch.tensor([self.mask_token_id])).to(embeds.dtype)[0]  # (H,)
        masked = torch.where(sel[..., None], mask_emb, embeds[None])  # (k, B, T, H)
        out = self.model(
            inputs_embeds=masked.reshape(k * B, T, H),
            attention_mask=inputs.attention_mask.repeat(k, 1),
        )
        logp = self._log_probs(out.logits).reshape(k, B, T, -1)
        # Each real slot reads the pass in which it was masked.
        g = group.clamp(min=0)[None, ..., None].expand(1, B, T, logp.shape[-1])
        return logp.gather(0, g)[0]  # (B, T, V)

    def _token_log_probs(self, inputs: AssembledInputs) -> Tensor:
        """`(B, T, V)` float32 log-probabilities over the reward's vocabulary at every slot."""
        if self.pll_passes is not None:
            return self._masked_pll_log_probs(inputs)
        return self._log_probs(self.run_model(inputs).logits)

    def forward(self, x: Tensor, *, attention_mask: Tensor | None = None) -> Tensor:
        inputs = self.assemble(x, attention_mask)
        logp = self._token_log_probs(inputs)  # (B, T, V)
        B, L, V = x.shape
        xf = x.to(device=logp.device, dtype=torch.float32)
        shift = 1 if self.kind == "causal" else 0
        if attention_mask is None:
            # Slots are P + l; position l reads slot P + l - shift (skip it if that is < 0).
            start = self.prefix_ids.numel() - shift
            skip = max(0, -start)
            token_ll = (xf[:, skip:] * logp[:, start + skip : start + L]).sum(-1)  # (B, L - skip)
            return token_ll.mean(-1) if token_ll.shape[1] else token_ll.sum(-1)
        read = inputs.slots - shift  # (B, L)
        scored = (inputs.slots >= 0) & (read >= 0)
        lp = logp.gather(1, read.clamp(min=0)[..., None].expand(B, L, V))  # (B, L, V)
        token_ll = (xf * lp).sum(-1) * scored
        return token_ll.sum(-1) / scored.sum(-1).clamp(min=1)

    def forward_sparse(self, x: SparseRows, *, attention_mask: Tensor | None = None) -> Tensor:
        # The model's log-softmax is over its whole vocabulary either way (its own output); the
        # expected log-likelihood reads only the k entries: sum_j weight_j * logp[slot, index_j].
        inputs = self.assemble(x, attention_mask)
        logp = self._token_log_probs(inputs)  # (B, T, V)
        B, T, V = logp.shape
        L, dev = x.shape[1], logp.device
        shift = 1 if self.kind == "causal" else 0
        if attention_mask is None:
            slots = self.prefix_ids.numel() + torch.arange(L, device=dev).expand(B, L)
        else:
            slots = inputs.slots.to(dev)  # (B, L), -1 on padding
        read = slots - shift  # position l reads this slot's prediction
        scored = (slots >= 0) & (read >= 0)  # (B, L)
        flat = read.clamp(min=0)[..., None] * V + x.index.to(dev)  # (B, L, k) into (T * V)
        lp = logp.reshape(B, T * V).gather(1, flat.reshape(B, -1)).reshape(x.index.shape)
        token_ll = (x.weight.to(device=dev, dtype=torch.float32) * lp).sum(-1) * scored
        return token_ll.sum(-1) / scored.sum(-1).clamp(min=1)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, pll_passes={self.pll_passes}, " + super().extra_repr()
