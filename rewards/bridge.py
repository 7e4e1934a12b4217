"""Score a generator's relaxed tokens with a reward model that uses another tokenizer.

`VocabularyBridge(source_tokenizer, target_tokenizer)` precomputes, for every source token id,
its **spelling** in target tokens, then maps `x_source (B, L, Vs)` to `x_target (B, L*S, Vt)`
linearly (so differentiably, and rows stay on the simplex):

    x_target[b, l*S + s, :] = sum_v x_source[b, l, v] * one_hot(spelling[v][s])

Each source position becomes `S` target slots (`S` = the longest spelling, capped by
`max_slots`). Slot `s` carries the expected `s`-th target token of the spelling; slots past a
token's spelling hold the target pad token and are switched off in the target attention mask
(`bridge.target_mask`, computed from the argmax token of each position). The model-based rewards
pack masked slots away, so a one-hot `x` is scored exactly as the concatenated spellings.

Exactness. A source token is *exact* when its spelling is one target token (not the unknown
token): then slot 0 is a 1-to-1 relabelling. When every token is exact (e.g. a generator whose
WordPiece vocabulary is a subset of BERT's) `S = 1`, `L' = L`, and the bridge is a sparse
re-indexing of the columns: bridged scores equal the target reward on the same text.
Otherwise it is an approximation, in two ways:

- spellings are per token, so they can differ from the target's tokenisation of the whole text
  (`"Ġunbelievable"` may be spelled `un ##bel ##ie ##vable` where the target would merge
  differently across token boundaries);
- for a soft `x`, mass on tokens with shorter spellings lands on the pad token in a slot the
  mask (set by the argmax) keeps; the mask itself carries no gradient.

How a source token is spelled: decode it after a one-token anchor (`"a"`) to learn its surface
string and whether it starts a word (`"a the"` vs `"athe"`), then encode `" " + surface` (word
start) or `surface` (continuation; a WordPiece target's `"##" + surface` when that is one token)
with the target tokenizer. Special tokens map by role (`[CLS]` -> `<s>`, pad -> pad, ...),
else by string, else to nothing (an empty spelling: the position disappears).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ._tokenizers import decode_batch as _decode_batch
from ._tokenizers import encode_batch as _encode_batch
from .base import Reward, check_vocab_size
from .embedding import EmbeddingInputReward, onloaded
from .sparse import SparseRows

__all__ = ["VocabularyBridge", "BridgedReward"]

_ROLES = ("pad", "unk", "cls", "sep", "mask", "bos", "eos")


def _role_ids(tokenizer: Any) -> dict[str, int]:
    out = {}
    for role in _ROLES:
        tid = getattr(tokenizer, f"{role}_token_id", None)
        if isinstance(tid, int):
            out[role] = tid
    return out


def _continuation_prefix(tokenizer: Any) -> str | None:
    """The WordPiece continuation prefix (`"##"`) of a fast tokenizer, else None."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    model = getattr(backend, "model", None)
    prefix = getattr(model, "continuing_subword_prefix", None)
    return prefix if type(model).__name__ == "WordPiece" and prefix else None


def _normalize(tokenizer: Any, text: str) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    norm = getattr(backend, "normalizer", None)
    return norm.normalize_str(text) if norm is not None else text


def _surfaces(tokenizer: Any, n: int) -> list[tuple[str, bool] | None]:
    """`(surface, starts_word)` of source ids 0..n-1, from decoding after a one-token anchor."""
    anchor = None
    for word in ("a", "the", "I", "x"):
        ids = _encode_batch(tokenizer, [word])[0]
        if len(ids) == 1:
            anchor = ids[0]
            anchor_text = _decode_batch(tokenizer, [[anchor]])[0]
            break
    if anchor is None:  # no one-token anchor: decode alone, every token starts a word
        texts = [t.strip() for t in _decode_batch(tokenizer, [[i] for i in range(n)])]
        return [(t, True) if t else None for t in texts]
    out: list[tuple[str, bool] | None] = []
    texts = _decode_batch(tokenizer, [[anchor, i] for i in range(n)])
    for i, t in enumerate(texts):
        if t.startswith(anchor_text + " "):
            surface, start = t[len(anchor_text) + 1 :], True
        elif t.startswith(anchor_text):
            surface, start = t[len(anchor_text) :], False
        else:
            surface, start = _decode_batch(tokenizer, [[i]])[0].strip(), True
        out.append((surface, start) if surface.strip() else None)
    return out


def _check_bridge_args(source_tokenizer: Any, target_tokenizer: Any, max_slots: Any) -> None:
    """The tokenizers and `max_slots` of :class:`VocabularyBridge`."""
    for arg, tok in (
        ("source_tokenizer", source_tokenizer),
        ("target_tokenizer", target_tokenizer),
    ):
        if not (hasattr(tok, "get_vocab") and hasattr(tok, "__len__")):
            raise ValueError(
                f"VocabularyBridge `{arg}` must be a Hugging Face tokenizer, got "
                f"{type(tok).__name__}. Pass e.g. `AutoTokenizer.from_pretrained(...)`."
            )
    if max_slots is not None and (
        not isinstance(max_slots, int) or isinstance(max_slots, bool) or max_slots < 1
    ):
        raise ValueError(
            f"VocabularyBridge `max_slots` must be a positive int or None, got {max_slots!r}."
        )


class VocabularyBridge(nn.Module):
    r"""Differentiable map from relaxed source tokens to relaxed target tokens (see module doc).

    Args:
        source_tokenizer: the generator's tokenizer (Hugging Face, fast or slow).
        target_tokenizer: the reward model's tokenizer.
        max_slots (`int` or `None`, defaults to 8): cap on the target slots per source position;
            longer spellings (runs of punctuation such as `"========"` spelled one character per
            BERT token) are truncated. None: the longest spelling. The bridged tensor has
            `L * S` rows of `Vt` entries, so keep `S` small for large target vocabularies.
        source_vocab_size, target_vocab_size (`int`, *optional*): the models' vocabulary sizes
            when they exceed `len(tokenizer)` (padded embeddings); extra source ids spell as
            nothing.

    Attributes:
        spelling (`torch.LongTensor` of shape `(S, Vs)`): target id of slot `s` of each source id
            (the target pad id past the spelling's end).
        lengths (`torch.LongTensor` of shape `(Vs,)`): spelling lengths (0 to S).
        exact (`torch.BoolTensor` of shape `(Vs,)`): one-token spellings.
        exact_fraction (`float`): the fraction of source ids that are exact.
    """

    def __init__(
        self,
        source_tokenizer: Any,
        target_tokenizer: Any,
        *,
        max_slots: int | None = 8,
        source_vocab_size: int | None = None,
        target_vocab_size: int | None = None,
    ):
        super().__init__()
        _check_bridge_args(source_tokenizer, target_tokenizer, max_slots)
        n_src = len(source_tokenizer)
        Vs = n_src if source_vocab_size is None else source_vocab_size
        Vt = len(target_tokenizer) if target_vocab_size is None else target_vocab_size
        for arg, val, least in (
            ("source_vocab_size", Vs, n_src),
            ("target_vocab_size", Vt, len(target_tokenizer)),
        ):
            if not isinstance(val, int) or val < least:
                raise ValueError(
                    f"VocabularyBridge `{arg}` must be an int >= len(tokenizer) = {least}, "
                    f"got {val!r}."
                )
        src_roles, tgt_roles = _role_ids(source_tokenizer), _role_ids(target_tokenizer)
        tgt_unk = tgt_roles.get("unk")
        tgt_pad = tgt_roles.get("pad", tgt_unk if tgt_unk is not None else 0)
        tgt_vocab = target_tokenizer.get_vocab()
        cont = _continuation_prefix(target_tokenizer)

        spellings: list[list[int]] = [[] for _ in range(Vs)]
        special = set(getattr(source_tokenizer, "all_special_ids", []) or [])
        by_role = {sid: tgt_roles[r] for r, sid in src_roles.items() if r in tgt_roles}
        special |= set(src_roles.values())
        to_encode: list[tuple[int, str]] = []
        for i, surf in enumerate(_surfaces(source_tokenizer, n_src)):
            if i in by_role:
                spellings[i] = [by_role[i]]
            elif i in special:
                tok = source_tokenizer.convert_ids_to_tokens(i)
                spellings[i] = [tgt_vocab[tok]] if tok in tgt_vocab else []
            elif surf is not None:
                surface, starts_word = surf
                if not starts_word and cont is not None:
                    piece = cont + _normalize(target_tokenizer, surface)
                    if piece in tgt_vocab:
                        spellings[i] = [tgt_vocab[piece]]
                        continue
                to_encode.append((i, (" " + surface) if starts_word else surface))
        if to_encode:
            encoded = _encode_batch(target_tokenizer, [t for _, t in to_encode])
            for (i, _), ids in zip(to_encode, encoded, strict=True):
                spellings[i] = list(ids)

        src_unk = src_roles.get("unk")
        spellings = [[t for t in ids if 0 <= t < Vt] for ids in spellings]
        exact_list = [
            len(ids) == 1 and (ids[0] != tgt_unk or i == src_unk) for i, ids in enumerate(spellings)
        ]
        longest = max((len(ids) for ids in spellings), default=1)
        S = max(1, min(longest, max_slots) if max_slots is not None else longest)
        table = [ids[:S] + [tgt_pad] * (S - len(ids[:S])) for ids in spellings]  # Vs x S
        spelling = torch.tensor(table, dtype=torch.long).reshape(Vs, S).T.contiguous()
        lengths = torch.tensor([min(len(ids), S) for ids in spellings], dtype=torch.long)
        exact = torch.tensor(exact_list, dtype=torch.bool)
        self.register_buffer("spelling", spelling, persistent=False)  # (S, Vs)
        self.register_buffer("lengths", lengths, persistent=False)  # (Vs,)
        self.register_buffer("exact", exact, persistent=False)  # (Vs,)
        self.source_vocab_size, self.target_vocab_size, self.slots = Vs, Vt, S
        self.exact_fraction = float(exact.float().mean())
        # A pure relabelling keeps the mask: every id spells as exactly one slot.
        self.is_relabelling = S == 1 and bool((lengths == 1).all())

    def forward(self, x: Tensor | SparseRows) -> Tensor | SparseRows:
        r"""Map relaxed source tokens to relaxed target tokens.

        Args:
            x (`torch.Tensor` of shape `(B, L, Vs)`, or `SparseRows`): rows on the simplex.

        Returns:
            `torch.Tensor` of shape `(B, L * S, Vt)`, rows on the simplex, differentiable in `x`;
            for `SparseRows`, `SparseRows` of shape `(B, L * S, Vt)` with the same k entries per
            slot (slot `s` of position `l` holds `spelling[s][x.index[l]]` with `x.weight[l]`).
        """
        if not isinstance(x, (Tensor, SparseRows)) or not x.is_floating_point():
            got = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"VocabularyBridge expects `x` as a float tensor of shape (B, L, "
                f"{self.source_vocab_size}) or SparseRows, got {got}. Pass relaxed one-hots, "
                "e.g. `F.one_hot(ids, V).float()`."
            )
        if x.ndim != 3 or x.shape[-1] != self.source_vocab_size:
            raise ValueError(
                f"VocabularyBridge expects `x` of shape (B, L, {self.source_vocab_size}), got "
                f"{tuple(x.shape)}. Build the bridge with `source_vocab_size=` the generator's "
                "vocabulary size."
            )
        B, L, _ = x.shape
        if isinstance(x, SparseRows):
            S, k = self.slots, x.k
            index = self.spelling.to(x.device)[:, x.index]  # (S, B, L, k): k spelling columns
            index = index.permute(1, 2, 0, 3).reshape(B, L * S, k)
            weight = x.weight[:, :, None].expand(B, L, S, k).reshape(B, L * S, k)
            return SparseRows(index, weight, self.target_vocab_size)
        spelling = self.spelling.to(x.device)
        slots = [
            x.new_zeros(B, L, self.target_vocab_size).index_add(-1, spelling[s], x)
            for s in range(self.slots)
        ]
        return torch.stack(slots, dim=2).reshape(B, L * self.slots, self.target_vocab_size)

    def embed(self, x: Tensor, weight: Tensor) -> Tensor:
        r"""`bridge(x) @ weight` without building the `(B, L*S, Vt)` tensor.

        Args:
            x (`torch.Tensor` of shape `(B, L, Vs)`): relaxed source tokens.
            weight (`torch.Tensor` of shape `(Vt, H)`): a target embedding matrix.

        Returns:
            `torch.Tensor` of shape `(B, L * S, H)` on `weight`'s device and dtype.
        """
        B, L, _ = x.shape
        spelling = self.spelling.to(weight.device)
        xs = x.to(device=weight.device, dtype=weight.dtype)
        slots = [xs @ weight[spelling[s]] for s in range(self.slots)]  # S x (B, L, H)
        return torch.stack(slots, dim=2).reshape(B, L * self.slots, weight.shape[1])

    def target_mask(
        self, x: Tensor | SparseRows, attention_mask: Tensor | None = None
    ) -> Tensor | None:
        r"""Attention mask `(B, L * S)` of the bridged sequence (None when nothing is masked).

        Slot `s` of position `l` is real when `l` is real and the spelling of the argmax token of
        `x[b, l]` (for `SparseRows`, `x.argmax_ids()`) has more than `s` target tokens.
        """
        if self.is_relabelling:
            return attention_mask
        B, L, _ = x.shape
        ids = x.argmax_ids() if isinstance(x, SparseRows) else x.detach().argmax(-1)  # (B, L)
        n = self.lengths.to(x.device)[ids]  # (B, L)
        keep = torch.arange(self.slots, device=x.device) < n[..., None]  # (B, L, S)
        if attention_mask is not None:
            keep = keep & attention_mask.to(x.device).bool()[..., None]
        return keep.reshape(B, L * self.slots).long()

    def extra_repr(self) -> str:
        return (
            f"source_vocab_size={self.source_vocab_size}, "
            f"target_vocab_size={self.target_vocab_size}, "
            f"slots={self.slots}, exact_fraction={self.exact_fraction:.4f}"
        )


class BridgedReward(Reward):
    r"""`reward(bridge(x), attention_mask=bridge.target_mask(x, attention_mask))`.

    Lets a reward over the target vocabulary score the generator's source vocabulary.
    For `SequenceClassifierReward` and `EmbeddingSimilarityReward` over the full target
    vocabulary it takes a fused path with the same result: it packs `bridge.embed(x, W)`
    (`(B, L*S, H)`) instead of building the `(B, L*S, Vt)` bridged one-hots. A `SparseRows`
    input is bridged to `SparseRows` over the target vocabulary (the k spelling columns of each
    slot) and scored by the target reward's own sparse path.

    Args:
        reward (`Reward`): a reward over the bridge's target vocabulary.
        bridge (`VocabularyBridge`): source -> target map.
        materialize (`bool`, defaults to `False`): always build the bridged one-hots (the
            generic path; for checking the fused one).
    """

    def __init__(self, reward: Reward, bridge: VocabularyBridge, *, materialize: bool = False):
        super().__init__()
        if not isinstance(reward, Reward) or not isinstance(bridge, VocabularyBridge):
            raise ValueError(
                f"BridgedReward expects a `Reward` and a `VocabularyBridge`, got "
                f"{type(reward).__name__} and {type(bridge).__name__}."
            )
        check_vocab_size(
            reward,
            bridge.target_vocab_size,
            what="the bridge's output (its target tokens)",
            fix=f"Build the bridge with `target_vocab_size={reward.vocab_size}`.",
        )
        self.reward, self.bridge = reward, bridge
        self.vocab_size = bridge.source_vocab_size
        self.differentiable = reward.differentiable
        self.fused = (
            not materialize
            and isinstance(reward, EmbeddingInputReward)
            and reward.sub_vocab_ids is None
            and type(reward).score_inputs is not EmbeddingInputReward.score_inputs
        )

    def forward(self, x: Tensor, *, attention_mask: Tensor | None = None) -> Tensor:
        mask = self.bridge.target_mask(x, attention_mask)
        if self.fused:
            r = self.reward
            embedding = r.model.get_input_embeddings()
            with onloaded(embedding):
                emb = self.bridge.embed(x, embedding.weight)  # (B, L*S, H)
            if r.embed_scale != 1.0:
                emb = emb * r.embed_scale
            return r.score_inputs(r.pack(emb, mask))
        return self.reward(self.bridge(x), attention_mask=mask)

    def forward_sparse(self, x: SparseRows, *, attention_mask: Tensor | None = None) -> Tensor:
        # Bridged `SparseRows` (k entries per target slot) into the target reward's own path.
        mask = self.bridge.target_mask(x, attention_mask)
        return self.reward(self.bridge(x), attention_mask=mask)

    @property
    def supports_sparse(self) -> bool:
        return self.reward.supports_sparse

    def extra_repr(self) -> str:
        return f"fused={self.fused}"
