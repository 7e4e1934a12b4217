"""Shared machinery of the model-based rewards: relaxed one-hots -> `inputs_embeds`.

`x @ W` (W the model's input-embedding matrix, or its rows `W[sub_vocab_ids]`) replaces the
embedding lookup, so any Hugging Face model that accepts `inputs_embeds` scores relaxed tokens
differentiably, and a one-hot `x` gives exactly the model's output on the matching `input_ids`.
When `x` is exactly one-hot in value (straight-through samples are), the forward product is a
row lookup (`RelaxedEmbedding`); the backward is the dense `grad @ W.T` either way.

Sparse inputs. For `SparseRows` (k weighted entries per position), `inputs_embeds[b, l] =
sum_j weight[b, l, j] * W[index[b, l, j]]` through `torch.nn.functional.embedding_bag`
(`mode="sum"`, `per_sample_weights=weight`): `B * L * k` rows read, no `(B, L, V)` tensor in
the forward or the backward. On one CPU thread at `B * L = 1024`, `k = 64`, forward + backward
took 37-64 ms for hidden sizes 256-768, against 80-240 ms for `weight @ W[index]` (bmm) and
195-515 ms for `(W[index] * weight).sum()`, both of which also build a `(B*L, k, H)` copy.

Sequence layout. The generator produces the text tokens only; the reward model may expect
special tokens around them (`[CLS] ... [SEP]` for BERT, `<s>` for Llama). They are read off the
tokenizer (`tokenizer("a")` with and without special tokens) or given as `prefix_ids` /
`suffix_ids`, and embedded by lookup. With an `attention_mask`, the real positions of each row
are packed to the front, so every row reads `prefix, real tokens, suffix, padding`: exactly
what the tokenizer would produce for that text, right-padded. Left or right padding in `x`
therefore gives the same scores as the unpadded sequence, for any position-embedding scheme.

Device and dtype. `x` is moved to the device and cast to the dtype of the model's embedding
matrix explicitly (a differentiable `.to`; gradients flow back to `x` on its own device);
scores come back on `x`'s device in float32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .base import Reward
from .sparse import SparseRows


@dataclass(frozen=True)
class AssembledInputs:
    """What the wrapped model is fed, plus where each position of `x` went.

    Attributes:
        inputs_embeds (`torch.Tensor` of shape `(B, T, H)`): T = P + L + S (prefix, x, suffix).
        attention_mask (`torch.Tensor` of shape `(B, T)`, long): 1 on real slots.
        slots (`torch.Tensor` of shape `(B, L)`, long): slot in `inputs_embeds` of each position
            of `x`; -1 where `x` is padding.
        token_slots (`torch.Tensor` of shape `(B, T)`, bool): slots that hold a real `x` token.
    """

    inputs_embeds: Tensor
    attention_mask: Tensor
    slots: Tensor
    token_slots: Tensor


class RelaxedEmbedding(torch.autograd.Function):
    r"""`x @ W` whose forward is a row lookup when `x` is exactly one-hot in value.

    Straight-through samples (`hard + soft - soft.detach()`) are exact one-hots in value, and
    then `x @ W == W[x.argmax(-1)]` exactly; the lookup skips the `(B*L, V) x (V, H)` product.
    The backward is always the dense `grad @ W.T` (the gradient reaches every vocabulary entry).
    Checking for one-hot rows costs three passes over `x` and one host sync.
    """

    @staticmethod
    def forward(x: Tensor, weight: Tensor) -> Tensor:
        with torch.no_grad():
            idx = x.argmax(-1)  # (B, L)
            one_hot = bool(
                (x.gather(-1, idx[..., None]) == 1).all()
                and (x.sum(-1) == 1).all()
                and (x.amin(-1) >= 0).all()
            )
        return weight[idx] if one_hot else x @ weight

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight = inputs
        ctx.save_for_backward(x if weight.requires_grad else None, weight)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad @ weight.T if ctx.needs_input_grad[0] else None
        grad_w = None
        if ctx.needs_input_grad[1]:
            grad_w = x.reshape(-1, x.shape[-1]).T @ grad.reshape(-1, grad.shape[-1])
        return grad_x, grad_w


def special_tokens_from_tokenizer(tokenizer: Any, owner: str) -> tuple[list[int], list[int]]:
    """The ids a tokenizer adds before and after a text (`([CLS], [SEP])` for BERT)."""
    probe = "a"
    core = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    full = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
    for i in range(len(full) - len(core) + 1):
        if full[i : i + len(core)] == core:
            return full[:i], full[i + len(core) :]
    raise ValueError(
        f"{owner} could not find where {type(tokenizer).__name__} puts its special tokens "
        f"(tokenizer('a') = {full}, without special tokens {core}). Pass `prefix_ids=` and "
        "`suffix_ids=` explicitly."
    )


def _ids_tensor(ids: Sequence[int] | Tensor | None, limit: int, arg: str, owner: str) -> Tensor:
    t = torch.as_tensor([] if ids is None else ids, dtype=torch.long)
    if t.ndim != 1:
        raise ValueError(
            f"{owner} `{arg}` must be a 1-D sequence of token ids, got shape {tuple(t.shape)}."
        )
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= limit):
        raise ValueError(
            f"{owner} `{arg}` must lie in [0, {limit}) (the model's vocabulary), got "
            f"{t.tolist()[:20]}."
        )
    return t


@contextlib.contextmanager
def onloaded(module: nn.Module) -> Iterator[None]:
    """Inside, `module.weight` holds real values on the device the module computes on.

    Under accelerate's offloading (`cpu_offload`, disk offload) the weight sits on `meta`
    between calls and is brought in by the module's hook only for its own forward; reading it
    directly needs `accelerate.utils.align_module_device`. Tensors taken from the weight inside
    stay valid after the block (autograd keeps the ones it saved)."""
    if not isinstance(module, nn.Module):
        raise ValueError(
            f"`module` must be a torch.nn.Module (the model's input embedding), got "
            f"{type(module).__name__}. Pass `model.get_input_embeddings()`."
        )
    weight = getattr(module, "weight", None)
    if not (isinstance(weight, Tensor) and weight.device.type == "meta"):
        yield
        return
    if getattr(module, "_hf_hook", None) is None:
        raise ValueError(
            f"The input embedding {type(module).__name__} has its weight on the 'meta' device "
            "and no accelerate hook to load it. Load the model with real weights, or place it "
            "with accelerate (`device_map=`, `dispatch_model`, `cpu_offload`)."
        )
    from accelerate.utils import align_module_device

    with align_module_device(module):
        yield


def _embedding_scale(embedding: nn.Module, weight: Tensor, owner: str) -> float:
    """1.0 for a plain lookup; c when the module returns c * W[ids] (Gemma-style scaling)."""
    V = weight.shape[0]
    probe = torch.tensor(sorted({min(1, V - 1), V // 2, V - 1}), device=weight.device)
    with torch.no_grad():
        out = embedding(probe[None])[0].float()
        ref = weight[probe].float()
    if torch.allclose(out, ref, rtol=1e-4, atol=1e-6):
        return 1.0
    c = float((out * ref).sum() / (ref * ref).sum().clamp(min=1e-30))
    if torch.allclose(out, c * ref, rtol=1e-3, atol=1e-5):
        return c
    raise ValueError(
        f"{owner}: the model's input embedding {type(embedding).__name__} is not a (scaled) "
        "lookup of `get_input_embeddings().weight`, so `x @ W` cannot stand in for it. Wrap a "
        "model whose input embedding is a plain `nn.Embedding`."
    )


class EmbeddingInputReward(Reward):
    r"""Base of the rewards that feed `x @ W` to a Hugging Face model as `inputs_embeds`.

    Subclasses implement `score_inputs` (and inherit an exact `SparseRows` path through
    `embed_sparse`), or override `forward` (and then `forward_sparse` too, or `SparseRows` inputs
    are densified).

    Args (shared by `SequenceClassifierReward`, `EmbeddingSimilarityReward`,
    `LanguageModelReward`):
        model (`torch.nn.Module`): a transformers model with `get_input_embeddings()` whose
            forward accepts `inputs_embeds` and `attention_mask`. It is frozen in place
            (`eval()`, `requires_grad_(False)`).
        tokenizer (*optional*): its tokenizer; used to find the special tokens to add.
        sub_vocab_ids (`Sequence[int]`, *optional*): score `x` over these model token ids only
            (`x` then has `len(sub_vocab_ids)` columns, column `j` meaning token
            `sub_vocab_ids[j]`). `W[sub_vocab_ids]` is taken once at construction; a small
            sub-vocabulary makes `x @ W` proportionally cheaper.
        prefix_ids, suffix_ids (`Sequence[int]`, *optional*): special token ids to put before
            and after the text; override what the tokenizer says.
        add_special_tokens (`bool`, defaults to `True`): set `False` when the generator itself
            produces the special tokens.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        tokenizer: Any = None,
        sub_vocab_ids: Sequence[int] | Tensor | None = None,
        prefix_ids: Sequence[int] | None = None,
        suffix_ids: Sequence[int] | None = None,
        add_special_tokens: bool = True,
    ):
        super().__init__()
        owner = type(self).__name__
        get_emb = getattr(model, "get_input_embeddings", None)
        embedding = get_emb() if callable(get_emb) else None
        weight = getattr(embedding, "weight", None)
        if not isinstance(model, nn.Module) or not isinstance(weight, Tensor) or weight.ndim != 2:
            raise ValueError(
                f"{owner} needs a transformers model with `get_input_embeddings()` returning an "
                f"embedding with a 2-D `.weight`, got {type(model).__name__}."
            )
        model.eval()
        model.requires_grad_(False)
        self.model = model
        V_model = weight.shape[0]
        with onloaded(embedding):
            self.embed_scale = _embedding_scale(embedding, embedding.weight, owner)

        if prefix_ids is not None or suffix_ids is not None:
            prefix = [] if prefix_ids is None else prefix_ids
            suffix = [] if suffix_ids is None else suffix_ids
        elif tokenizer is not None and add_special_tokens:
            prefix, suffix = special_tokens_from_tokenizer(tokenizer, owner)
        else:
            prefix, suffix = [], []
        self.register_buffer(
            "prefix_ids", _ids_tensor(prefix, V_model, "prefix_ids", owner), persistent=False
        )
        self.register_buffer(
            "suffix_ids", _ids_tensor(suffix, V_model, "suffix_ids", owner), persistent=False
        )
        self.tokenizer = tokenizer

        if sub_vocab_ids is None:
            self.sub_vocab_ids = None
            self.sub_weight = None
            self.vocab_size = V_model
        else:
            ids = _ids_tensor(sub_vocab_ids, V_model, "sub_vocab_ids", owner)
            if ids.numel() == 0 or ids.unique().numel() != ids.numel():
                raise ValueError(
                    f"{owner} `sub_vocab_ids` must be non-empty and without repeats, got "
                    f"{ids.numel()} ids with {ids.numel() - ids.unique().numel()} repeats."
                )
            self.register_buffer("sub_vocab_ids", ids, persistent=False)
            # Indexed once: (V_sub, H). A copy, so `x` needs only V_sub columns.
            with onloaded(embedding):
                full = embedding.weight.detach()
                self.register_buffer(
                    "sub_weight", full[ids.to(full.device)].clone(), persistent=False
                )
            self.vocab_size = ids.numel()

    # ------------------------------------------------------------------ helpers
    def _weight(self) -> Tensor:
        """The embedding matrix `(V, H)` (the sub-vocabulary's rows with `sub_vocab_ids`). Call
        it inside `onloaded(self.model.get_input_embeddings())` (offloaded models)."""
        full = self.model.get_input_embeddings().weight
        if self.sub_weight is None:
            return full
        if self.sub_weight.device != full.device or self.sub_weight.dtype != full.dtype:
            # The model was moved after construction: follow it once.
            self.sub_weight = self.sub_weight.to(device=full.device, dtype=full.dtype)
            self.sub_vocab_ids = self.sub_vocab_ids.to(full.device)
        return self.sub_weight

    def _lookup(self, ids: Tensor) -> Tensor:
        """Embeddings `(n, H)` of special token ids (full vocabulary), by lookup."""
        emb = self.model.get_input_embeddings()
        with onloaded(emb):  # the device it computes on, also under offloading
            device = emb.weight.device
        return emb(ids.to(device)[None])[0]

    def embed(self, x: Tensor) -> Tensor:
        r"""`x @ W` on the model's device and dtype: `(B, L, V)` -> `(B, L, H)`."""
        with onloaded(self.model.get_input_embeddings()):
            W = self._weight()  # (V, H)
            emb = RelaxedEmbedding.apply(x.to(device=W.device, dtype=W.dtype), W)  # (B, L, H)
        return emb * self.embed_scale if self.embed_scale != 1.0 else emb

    def embed_sparse(self, x: SparseRows) -> Tensor:
        r"""`sum_j x.weight[..., j] * W[x.index[..., j]]`: `(B, L, k)` -> `(B, L, H)`.

        Equals `embed(x.to_dense())` without the dense tensor; the gradient reaches `x.weight`
        only (`B * L * k` entries). With `sub_vocab_ids`, `x.index` are sub-vocabulary columns.
        """
        B, L, k = x.index.shape
        with onloaded(self.model.get_input_embeddings()):
            W = self._weight()  # (V, H)
            emb = torch.nn.functional.embedding_bag(
                x.index.reshape(B * L, k).to(W.device),
                W,
                per_sample_weights=x.weight.reshape(B * L, k).to(device=W.device, dtype=W.dtype),
                mode="sum",
            ).reshape(B, L, W.shape[1])
        return emb * self.embed_scale if self.embed_scale != 1.0 else emb

    def assemble(
        self, x: Tensor | SparseRows, attention_mask: Tensor | None = None
    ) -> AssembledInputs:
        r"""Build the model inputs for `x` (see the module docstring for the layout).

        Args:
            x (`torch.Tensor` of shape `(B, L, V)`, or `SparseRows`): relaxed tokens over the
                reward's vocabulary.
            attention_mask (`torch.Tensor` of shape `(B, L)`, *optional*): 1 = real token.
        """
        emb = self.embed_sparse(x) if isinstance(x, SparseRows) else self.embed(x)
        return self.pack(emb, attention_mask)

    def pack(self, emb: Tensor, attention_mask: Tensor | None = None) -> AssembledInputs:
        r"""Add the special tokens around token embeddings `(B, L, H)` and pack out padding.

        With a mask, slots past the longest row are dropped, so `T <= P + L + S`.
        """
        dev = emb.device
        B, L, H = emb.shape
        P, S = self.prefix_ids.numel(), self.suffix_ids.numel()
        pre = self._lookup(self.prefix_ids).to(emb.dtype).expand(B, P, H)
        suf = self._lookup(self.suffix_ids).to(emb.dtype).expand(B, S, H)
        if attention_mask is None:
            T = P + L + S
            self._check_length(T)
            embeds = torch.cat([pre, emb, suf], dim=1)
            mask = torch.ones(B, T, dtype=torch.long, device=dev)
            slots = (P + torch.arange(L, device=dev)).expand(B, L)
            token_slots = torch.zeros(B, T, dtype=torch.bool, device=dev)
            token_slots[:, P : P + L] = True
            return AssembledInputs(embeds, mask, slots, token_slots)

        m = attention_mask.to(dev).bool()  # (B, L)
        n = m.sum(1, keepdim=True)  # (B, 1) real tokens per row
        T = P + int(n.max()) + S  # packed rows end here (one host sync)
        self._check_length(T)
        order = torch.argsort((~m).to(torch.int8), dim=1, stable=True)  # real positions first
        j = torch.arange(T, device=dev)[None]  # (1, T) output slots
        k = j - P  # rank among real tokens
        token_slots = (k >= 0) & (k < n)  # (B, T)
        pad_slot = P + L + S  # index of the zero row in `pool`
        idx = torch.full((B, T), pad_slot, dtype=torch.long, device=dev)
        idx = torch.where(j < P, j, idx)
        src = P + order.gather(1, k.clamp(0, L - 1).expand(B, T))
        idx = torch.where(token_slots, src, idx)
        if S:
            ks = k - n
            idx = torch.where((ks >= 0) & (ks < S), P + L + ks.clamp(0, S - 1), idx)
        pool = torch.cat([pre, emb, suf, emb.new_zeros(B, 1, H)], dim=1)  # (B, P + L + S + 1, H)
        embeds = pool.gather(1, idx[..., None].expand(B, T, H))
        mask = (j < P + n + S).long()
        slots = torch.where(m, P + m.long().cumsum(1) - 1, -1)
        return AssembledInputs(embeds, mask, slots, token_slots)

    def _check_length(self, T: int) -> None:
        limit = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        if isinstance(limit, int) and T > limit:
            raise ValueError(
                f"{type(self).__name__}: the sequence fed to {type(self.model).__name__} has {T} "
                f"positions (special tokens included) but the model takes at most {limit}. "
                "Score shorter sequences, or lower `max_slots` of a `VocabularyBridge`."
            )

    def run_model(self, inputs: AssembledInputs, **kwargs: Any) -> Any:
        return self.model(
            inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask, **kwargs
        )

    def score_inputs(self, inputs: AssembledInputs) -> Tensor:
        r"""Scores `(B,)` from assembled inputs alone, for rewards that need nothing else.

        `BridgedReward` uses it to skip materialising bridged one-hots: it packs
        `x @ W[spelling]` directly. Rewards that need `x` itself (language models) raise
        `NotImplementedError`.
        """
        raise NotImplementedError

    def forward(self, x: Tensor, *, attention_mask: Tensor | None = None) -> Tensor:
        return self.score_inputs(self.assemble(x, attention_mask))

    def forward_sparse(self, x: SparseRows, *, attention_mask: Tensor | None = None) -> Tensor:
        return self.score_inputs(self.assemble(x, attention_mask))  # `embed_sparse` inside

    def extra_repr(self) -> str:
        sub = "full" if self.sub_vocab_ids is None else f"sub({self.vocab_size})"
        return (
            f"vocab_size={self.vocab_size} ({sub}), prefix_ids={self.prefix_ids.tolist()}, "
            f"suffix_ids={self.suffix_ids.tolist()}"
        )


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of `values` `(B, T, ...)` over the slots where `mask` `(B, T)` is true."""
    m = mask.to(values.dtype)
    while m.ndim < values.ndim:
        m = m[..., None]
    return (values * m).sum(1) / m.sum(1).clamp(min=1)
