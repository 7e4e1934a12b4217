"""Linear token rewards: soft counts of token sets and per-token lexicon scores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ._tokenizers import encode_batch
from .base import Reward
from .sparse import SparseRows

__all__ = ["TokenSetReward", "LexiconReward", "vader_lexicon_scores"]


def _check_vocab_size(vocab_size: object, owner: str) -> int:
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 1:
        raise ValueError(
            f"{owner} `vocab_size` must be a positive int (the generator's vocabulary size), "
            f"got {vocab_size!r}."
        )
    return vocab_size


def _masked_token_sum(
    x: Tensor | SparseRows, w: Tensor, attention_mask: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Return `(sum_l m_l <x_l, w>, sum_l m_l)`, both `(B,)`, in float32 (float64 for float64 x).

    For `SparseRows`, `<x_l, w> = sum_j weight[l, j] * w[index[l, j]]`: a gather of k entries.
    """
    dtype = torch.promote_types(x.dtype, torch.float32)
    if isinstance(x, SparseRows):
        w_rows = w.to(device=x.device, dtype=dtype)[x.index]  # (B, L, k)
        per_pos = (x.weight.to(dtype) * w_rows).sum(-1)  # (B, L)
    else:
        per_pos = x.to(dtype) @ w.to(device=x.device, dtype=dtype)  # (B, L)
    if attention_mask is None:
        count = torch.full((x.shape[0],), x.shape[1], device=x.device, dtype=dtype)
        return per_pos.sum(-1), count
    m = attention_mask.to(device=x.device, dtype=dtype)
    return (per_pos * m).sum(-1), m.sum(-1)


class TokenSetReward(Reward):
    r"""Soft count of wanted and unwanted tokens: `sum_l sum_v x[b, l, v] * w[v]`.

    `w[v]` is the weight of token `v` (positive: wanted, negative: unwanted, 0 elsewhere).
    Exactly linear in `x`, so the gradient is exact for any relaxation.

    Args:
        token_ids (`Sequence[int]` or 1-D `torch.Tensor`): the scored token ids, no repeats.
        weights (`Sequence[float]`, *optional*): one weight per id; all 1 by default
            (a plain count of wanted tokens).
        vocab_size (`int`): the generator's vocabulary size.
        normalize (`bool`, defaults to `False`): divide by the number of real positions
            (a rate instead of a count).

    Example:

    ```python
    >>> import torch
    >>> from rewards import TokenSetReward
    >>> r = TokenSetReward([3, 5], weights=[1.0, -2.0], vocab_size=8)
    >>> r(torch.nn.functional.one_hot(torch.tensor([[3, 3, 5, 0]]), 8).float())
    tensor([0.])

    ```
    """

    def __init__(
        self,
        token_ids: Sequence[int] | Tensor,
        weights: Sequence[float] | Tensor | None = None,
        *,
        vocab_size: int,
        normalize: bool = False,
    ):
        super().__init__()
        V = _check_vocab_size(vocab_size, "TokenSetReward")
        ids = torch.as_tensor(token_ids)
        if ids.ndim != 1 or ids.numel() == 0 or ids.is_floating_point():
            raise ValueError(
                f"TokenSetReward `token_ids` must be a non-empty 1-D sequence of ints, got "
                f"{token_ids!r}."
            )
        ids = ids.long()
        if int(ids.min()) < 0 or int(ids.max()) >= V:
            raise ValueError(
                f"TokenSetReward `token_ids` must lie in [0, vocab_size={V}), got "
                f"{ids.tolist()[:20]}. Check the tokenizer's ids against the generator's vocab."
            )
        if ids.unique().numel() != ids.numel():
            raise ValueError(
                f"TokenSetReward `token_ids` must not repeat, got {ids.tolist()[:20]}. Give each "
                "token one weight."
            )
        if weights is None:
            w_ids = torch.ones(ids.numel())
        else:
            w_ids = torch.as_tensor(weights, dtype=torch.float32)
            if w_ids.shape != ids.shape or not bool(torch.isfinite(w_ids).all()):
                raise ValueError(
                    f"TokenSetReward `weights` must be {ids.numel()} finite numbers (one per "
                    f"token id), got {weights!r}."
                )
        w = torch.zeros(V)
        w[ids] = w_ids.float()
        self.register_buffer("weight", w)  # (V,)
        self.vocab_size = V
        self.normalize = bool(normalize)

    def forward(self, x: Tensor, *, attention_mask: Tensor | None = None) -> Tensor:
        total, count = _masked_token_sum(x, self.weight, attention_mask)
        return total / count.clamp(min=1) if self.normalize else total

    def forward_sparse(self, x: SparseRows, *, attention_mask: Tensor | None = None) -> Tensor:
        return self.forward(x, attention_mask=attention_mask)  # `_masked_token_sum` gathers

    def extra_repr(self) -> str:
        n = int((self.weight != 0).sum())
        return f"vocab_size={self.vocab_size}, n_tokens={n}, normalize={self.normalize}"


class LexiconReward(Reward):
    r"""Mean per-token score over real positions: `mean_l <x[b, l], scores>`.

    Rows with no real position score 0. Exactly linear in `x`.

    Args:
        scores (`torch.Tensor` of shape `(V,)`): the score of each token (finite); its length is
            the reward's `vocab_size`.

    Build one from the VADER sentiment lexicon with `LexiconReward.from_vader(tokenizer)`.
    """

    def __init__(self, scores: Tensor | Sequence[float]):
        super().__init__()
        s = torch.as_tensor(scores, dtype=torch.float32)
        if s.ndim != 1 or s.numel() == 0 or not bool(torch.isfinite(s).all()):
            raise ValueError(
                "LexiconReward `scores` must be a non-empty 1-D tensor of finite numbers (one per "
                f"vocabulary entry), got shape {tuple(s.shape)}."
            )
        self.register_buffer("scores", s.clone())  # (V,)
        self.vocab_size = s.numel()

    @classmethod
    def from_vader(
        cls, tokenizer: Any, *, normalize: bool = True, vocab_size: int | None = None
    ) -> LexiconReward:
        r"""A sentiment reward from the VADER lexicon (see `vader_lexicon_scores`)."""
        return cls(vader_lexicon_scores(tokenizer, normalize=normalize, vocab_size=vocab_size))

    def forward(self, x: Tensor, *, attention_mask: Tensor | None = None) -> Tensor:
        total, count = _masked_token_sum(x, self.scores, attention_mask)
        return total / count.clamp(min=1)

    def forward_sparse(self, x: SparseRows, *, attention_mask: Tensor | None = None) -> Tensor:
        return self.forward(x, attention_mask=attention_mask)  # `_masked_token_sum` gathers

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, nonzero={int((self.scores != 0).sum())}"


def vader_lexicon_scores(
    tokenizer: Any, *, normalize: bool = True, vocab_size: int | None = None
) -> Tensor:
    r"""Per-token valence from the VADER lexicon, for any Hugging Face tokenizer.

    Each lexicon entry that the tokenizer encodes as a single token (alone, or after a space:
    `"good"` and `" good"`, which are different tokens for byte-level BPE) gives that token the
    entry's valence; entries that map to the unknown token are skipped, and tokens hit by several
    entries get their mean. Uncased tokenizers lower-case through their own normaliser.
    Needs the `nltk-vader-sentiment` package (`pip install nltk-vader-sentiment`, 86 kB).

    Args:
        tokenizer: a Hugging Face tokenizer.
        normalize (`bool`, defaults to `True`): divide VADER's valence (in [-4, 4]) by 4, so
            scores lie in [-1, 1].
        vocab_size (`int`, *optional*): length of the returned vector; `len(tokenizer)` by
            default. Pass the generator's vocabulary size when its embedding is padded.

    Returns:
        `torch.Tensor` of shape `(vocab_size,)`, float32, zero for tokens not in the lexicon.
    """
    try:
        from vader.data.lexicon import LEXICON
    except ImportError as err:  # pragma: no cover - exercised only without the package
        raise ImportError(
            "vader_lexicon_scores needs the VADER lexicon: `pip install nltk-vader-sentiment`."
        ) from err
    V = (
        len(tokenizer)
        if vocab_size is None
        else _check_vocab_size(vocab_size, "vader_lexicon_scores")
    )
    words = list(LEXICON)
    variants = words + [" " + w for w in words]
    encoded = encode_batch(tokenizer, variants)
    unk = getattr(tokenizer, "unk_token_id", None)
    total = torch.zeros(V, dtype=torch.float64)
    hits = torch.zeros(V, dtype=torch.float64)
    for k, ids in enumerate(encoded):
        if len(ids) != 1 or ids[0] == unk or not 0 <= ids[0] < V:
            continue
        word = words[k % len(words)]
        total[ids[0]] += LEXICON[word]
        hits[ids[0]] += 1
    scores = torch.where(hits > 0, total / hits.clamp(min=1), torch.zeros_like(total))
    if normalize:
        scores = scores / 4.0
    return scores.float()
