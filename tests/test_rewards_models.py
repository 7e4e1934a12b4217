"""Model-based rewards on tiny config-built transformers models (no downloads)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rewards import (
    EmbeddingSimilarityReward,
    LanguageModelReward,
    LinearHeadReward,
    SequenceClassifierReward,
)
from rewards.linear_head import load_linear_head, save_linear_head

from _models import TINY_WORDS, tiny_bert, tiny_gpt2, wordpiece_tokenizer

transformers = pytest.importorskip("transformers")

V = len(TINY_WORDS)  # 32
CLS, SEP, MASK = 2, 3, 4
# 24 positions; large weights: outputs that depend visibly on the input
BERT = dict(max_position_embeddings=24, initializer_range=0.5)


@pytest.fixture(scope="module")
def tok():
    return wordpiece_tokenizer()


@pytest.fixture(scope="module")
def classifier():
    labels = {0: "neg", 1: "neu", 2: "pos"}
    return tiny_bert(
        V,
        head="classifier",
        **BERT,
        num_labels=3,
        id2label=labels,
        label2id={name: i for i, name in labels.items()},
    )


@pytest.fixture(scope="module")
def encoder():
    return tiny_bert(V, head="encoder", **BERT)


@pytest.fixture(scope="module")
def mlm():
    return tiny_bert(V, **BERT)


@pytest.fixture(scope="module")
def gpt2():
    return tiny_gpt2(V, n_positions=24, bos_token_id=CLS, eos_token_id=SEP, initializer_range=0.5)


def ids_batch(seed=0, B=3, L=6):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(5, V, (B, L), generator=g)


def one_hot(ids, vocab=V):
    return F.one_hot(ids, vocab).float()


def with_specials(ids):
    B = ids.shape[0]
    return torch.cat([torch.full((B, 1), CLS), ids, torch.full((B, 1), SEP)], 1)


LEFT = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1]])
RIGHT = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])


def unpadded_scores(reward, ids, mask):
    """Score each row alone, without its padding."""
    return torch.cat(
        [reward(one_hot(row[m.bool()][None])) for row, m in zip(ids, mask, strict=True)]
    )


def assert_grad_reaches(reward, x, **kw):
    x = x.clone().requires_grad_()
    reward(x, **kw).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0
    return x.grad


# ----------------------------------------------------------------------------- classifier
def test_classifier_one_hot_equals_input_ids(classifier, tok):
    r = SequenceClassifierReward(classifier, label="pos", tokenizer=tok)
    assert r.prefix_ids.tolist() == [CLS] and r.suffix_ids.tolist() == [SEP]
    ids = ids_batch()
    ref = classifier(input_ids=with_specials(ids)).logits.log_softmax(-1)[:, 2]
    torch.testing.assert_close(r(one_hot(ids)), ref)
    assert ref.std() > 1e-3  # the scores differ between inputs
    logit = SequenceClassifierReward(classifier, label=2, tokenizer=tok, score="logit")
    torch.testing.assert_close(
        logit(one_hot(ids)), classifier(input_ids=with_specials(ids)).logits[:, 2]
    )


@pytest.mark.parametrize("mask", [LEFT, RIGHT], ids=["left", "right"])
def test_classifier_padding_equals_unpadded(classifier, tok, mask):
    r = SequenceClassifierReward(classifier, label=0, tokenizer=tok)
    ids = ids_batch()
    torch.testing.assert_close(r(one_hot(ids), attention_mask=mask), unpadded_scores(r, ids, mask))


def test_classifier_gradient_and_frozen(classifier, tok):
    r = SequenceClassifierReward(classifier, label=1, tokenizer=tok)
    x = torch.randn(2, 5, V, generator=torch.Generator().manual_seed(1)).softmax(-1)
    assert_grad_reaches(r, x)
    assert_grad_reaches(r, x, attention_mask=torch.tensor([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1]]))
    assert not classifier.training
    assert not any(p.requires_grad for p in classifier.parameters())
    assert r.vocab_size == V and r.differentiable


def test_classifier_sub_vocab_equals_full_vocab(classifier, tok):
    sub = torch.tensor([5, 9, 12, 13, 20, 28, 30])
    full = SequenceClassifierReward(classifier, label=2, tokenizer=tok)
    r = SequenceClassifierReward(classifier, label=2, tokenizer=tok, sub_vocab_ids=sub)
    assert r.vocab_size == 7
    cols = torch.randint(0, 7, (2, 5), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(r(one_hot(cols, 7)), full(one_hot(sub[cols])))
    soft = torch.randn(2, 5, 7, generator=torch.Generator().manual_seed(3)).softmax(-1)
    x_full = torch.zeros(2, 5, V).index_copy(-1, sub, soft)
    torch.testing.assert_close(r(soft), full(x_full))
    with pytest.raises(ValueError, match="vocab_size=7 but the last axis of `x` .* has 32 entries"):
        r(one_hot(sub[cols]))


def test_classifier_other_dtype_is_cast(tok):
    model = tiny_bert(V, head="classifier", dtype=torch.float64, **BERT, num_labels=2)
    r = SequenceClassifierReward(model, label=1, tokenizer=tok)
    x = torch.randn(2, 4, V).softmax(-1).requires_grad_()  # float32, model float64
    s = r(x)
    assert s.dtype == torch.float32
    s.sum().backward()
    assert x.grad.dtype == torch.float32 and torch.isfinite(x.grad).all()


def test_classifier_errors(classifier, tok):
    with pytest.raises(ValueError, match=r"`label`='joy' is not a label.*\['neg', 'neu', 'pos'\]"):
        SequenceClassifierReward(classifier, label="joy")
    with pytest.raises(ValueError, match=r"class index in \[0, num_labels=3\)"):
        SequenceClassifierReward(classifier, label=3)
    with pytest.raises(ValueError, match="`score` must be one of"):
        SequenceClassifierReward(classifier, label=0, score="prob")
    reg = tiny_bert(V, head="classifier", **BERT, num_labels=1)
    with pytest.raises(ValueError, match="regression head.*score='logit'"):
        SequenceClassifierReward(reg, label=0)
    with pytest.raises(ValueError, match="needs a transformers model"):
        SequenceClassifierReward(torch.nn.Linear(2, 2), label=0)
    with pytest.raises(ValueError, match=r"`sub_vocab_ids` must lie in \[0, 32\)"):
        SequenceClassifierReward(classifier, label=0, sub_vocab_ids=[1, 40])
    r = SequenceClassifierReward(classifier, label=0, tokenizer=tok)
    with pytest.raises(ValueError, match="has 25 positions.*at most 24"):
        r(one_hot(ids_batch(L=23)))


# ----------------------------------------------------------------------------- similarity
def test_similarity_one_hot_equals_input_ids(encoder, tok):
    r = EmbeddingSimilarityReward(encoder, tok, target_text="the storm sat on the sea")
    texts = ["a cat sat on the mat", "storm sea", "i hate it"]
    batch = tok(texts, add_special_tokens=False, padding=True, return_tensors="pt")
    x, mask = one_hot(batch["input_ids"]), batch["attention_mask"]
    ref = F.cosine_similarity(r.embed_text(texts), r.target_embedding[None], dim=-1)
    torch.testing.assert_close(r(x, attention_mask=mask), ref)
    assert r(x, attention_mask=mask).std() > 1e-3
    assert_grad_reaches(r, x, attention_mask=mask)


def test_similarity_cls_pooling_and_target_embedding(encoder, tok):
    target = torch.randn(16, generator=torch.Generator().manual_seed(0))
    r = EmbeddingSimilarityReward(encoder, tok, target_embedding=target, pooling="cls")
    ids = ids_batch()
    hidden = encoder(input_ids=with_specials(ids)).last_hidden_state[:, 0]
    torch.testing.assert_close(r(one_hot(ids)), F.cosine_similarity(hidden, target[None], dim=-1))


def test_similarity_errors(encoder, tok, mlm):
    with pytest.raises(ValueError, match="exactly one of `target_text` and `target_embedding`"):
        EmbeddingSimilarityReward(encoder, tok)
    with pytest.raises(ValueError, match="needs the encoder's `tokenizer`"):
        EmbeddingSimilarityReward(encoder, target_text="cat")
    with pytest.raises(ValueError, match=r"shape \(16,\).*got \(8,\)"):
        EmbeddingSimilarityReward(encoder, target_embedding=torch.ones(8))
    with pytest.raises(ValueError, match="`pooling` must be one of"):
        EmbeddingSimilarityReward(encoder, tok, target_text="cat", pooling="max")
    r = EmbeddingSimilarityReward(mlm, target_embedding=torch.ones(16))
    with pytest.raises(ValueError, match="last_hidden_state.*model.base_model"):
        r(one_hot(ids_batch()))


# ----------------------------------------------------------------------------- linear head
def test_linear_head_one_hot_equals_head_on_input_ids(encoder, tok):
    g = torch.Generator().manual_seed(1)
    w, b = torch.randn(1, 16, generator=g), torch.randn(1, generator=g)
    r = LinearHeadReward(encoder, w, b, tok)
    texts = ["a cat sat on the mat", "storm sea", "i hate it"]
    batch = tok(texts, add_special_tokens=False, padding=True, return_tensors="pt")
    x, mask = one_hot(batch["input_ids"]), batch["attention_mask"]
    # Reference: the encoder on the token ids with [CLS] ... [SEP], mean over real slots.
    full = tok(texts, padding=True, return_tensors="pt")
    h = encoder(**full).last_hidden_state
    m = full["attention_mask"][..., None].float()
    ref = ((h * m).sum(1) / m.sum(1)) @ w[0] + b
    got = r(x, attention_mask=mask)
    torch.testing.assert_close(got, ref)
    assert got.std() > 1e-3
    negative = LinearHeadReward(encoder, w[0], b.reshape(()), tok, sign=-1.0)  # (H,) and () work
    torch.testing.assert_close(negative(x, attention_mask=mask), -got)
    assert_grad_reaches(r, x, attention_mask=mask)


def test_linear_head_save_load_roundtrip(tmp_path, encoder, tok):
    w, b = torch.arange(16.0)[None] / 16, torch.tensor([0.5])
    path = save_linear_head(tmp_path / "head", w, b)
    assert path.name == "head.safetensors"
    w2, b2 = load_linear_head(tmp_path / "head")
    assert torch.equal(w2, w) and torch.equal(b2, b)
    x = one_hot(ids_batch())
    r = LinearHeadReward.from_pretrained(encoder, tmp_path / "head", tok, sign=-1.0)
    torch.testing.assert_close(r(x), -LinearHeadReward(encoder, w, b, tok)(x))
    with pytest.raises(ValueError, match="has no head.safetensors"):
        load_linear_head(tmp_path)


def test_linear_head_errors(encoder, tok):
    with pytest.raises(ValueError, match=r"`weight` must have shape \(1, 16\).*got \(1, 8\)"):
        LinearHeadReward(encoder, torch.ones(1, 8), torch.zeros(1), tok)
    with pytest.raises(ValueError, match=r"`bias` shape \(1,\).*got \(1, 16\) and \(2,\)"):
        LinearHeadReward(encoder, torch.ones(1, 16), torch.zeros(2), tok)
    with pytest.raises(ValueError, match=r"`sign` must be 1.0 or -1.0, got 2"):
        LinearHeadReward(encoder, torch.ones(1, 16), torch.zeros(1), tok, sign=2)


# ----------------------------------------------------------------------------- language models
def causal_ref(model, ids):
    logp = model(input_ids=ids).logits.log_softmax(-1)
    return logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0].mean(-1)


def test_causal_lm_one_hot_equals_input_ids(gpt2):
    r = LanguageModelReward(gpt2, "causal")
    ids = ids_batch()
    torch.testing.assert_close(r(one_hot(ids)), causal_ref(gpt2, ids))
    # With a BOS prefix the first token is scored too.
    rb = LanguageModelReward(gpt2, "causal", prefix_ids=[CLS])
    bos_ids = torch.cat([torch.full((3, 1), CLS), ids], 1)
    torch.testing.assert_close(rb(one_hot(ids)), causal_ref(gpt2, bos_ids))


@pytest.mark.parametrize("mask", [LEFT, RIGHT], ids=["left", "right"])
def test_causal_lm_padding_equals_unpadded(gpt2, mask):
    r = LanguageModelReward(gpt2, "causal")
    ids = ids_batch()
    torch.testing.assert_close(r(one_hot(ids), attention_mask=mask), unpadded_scores(r, ids, mask))


def test_causal_lm_soft_is_expected_log_likelihood(gpt2):
    # Linear in the scored rows: the soft score of the last position's distribution is the
    # mean of the one-hot scores weighted by it (the context is fixed).
    r = LanguageModelReward(gpt2, "causal")
    ids = ids_batch(B=1)
    p = torch.zeros(V)
    p[7], p[9] = 0.25, 0.75
    x = one_hot(ids)
    x[0, -1] = p
    a, b = ids.clone(), ids.clone()
    a[0, -1], b[0, -1] = 7, 9
    torch.testing.assert_close(r(x), 0.25 * r(one_hot(a)) + 0.75 * r(one_hot(b)))
    assert_grad_reaches(r, torch.randn(2, 5, V).softmax(-1))


def test_masked_lm_single_pass_and_pll(mlm, tok):
    ids = ids_batch(L=5)
    full = with_specials(ids)
    one = LanguageModelReward(mlm, "masked", tok)
    logp = mlm(input_ids=full).logits.log_softmax(-1)
    ref = logp[:, 1:-1].gather(-1, ids[..., None])[..., 0].mean(-1)
    torch.testing.assert_close(one(one_hot(ids)), ref)
    # Exact PLL (pll_passes = L): mask each position in turn.
    L = ids.shape[1]
    pll = torch.zeros(3)
    for i in range(L):
        masked = full.clone()
        masked[:, 1 + i] = MASK
        lp = mlm(input_ids=masked).logits.log_softmax(-1)[:, 1 + i]
        pll += lp.gather(-1, ids[:, i, None])[:, 0] / L
    exact = LanguageModelReward(mlm, "masked", tok, pll_passes=L)
    torch.testing.assert_close(exact(one_hot(ids)), pll)
    # Two passes: positions 0, 2, 4 masked together, then 1, 3.
    two = LanguageModelReward(mlm, "masked", tok, pll_passes=2)
    ref2 = torch.zeros(3)
    for j in range(2):
        masked = full.clone()
        masked[:, 1 + j : 1 + L : 2] = MASK
        lp = mlm(input_ids=masked).logits.log_softmax(-1)
        for i in range(j, L, 2):
            ref2 += lp[:, 1 + i].gather(-1, ids[:, i, None])[:, 0] / L
    torch.testing.assert_close(two(one_hot(ids)), ref2)
    assert (one(one_hot(ids)) != exact(one_hot(ids))).all()


@pytest.mark.parametrize("passes", [None, 2])
def test_masked_lm_padding_equals_unpadded(mlm, tok, passes):
    r = LanguageModelReward(mlm, "masked", tok, pll_passes=passes)
    ids = ids_batch()
    torch.testing.assert_close(r(one_hot(ids), attention_mask=LEFT), unpadded_scores(r, ids, LEFT))
    assert_grad_reaches(r, torch.randn(3, 6, V).softmax(-1), attention_mask=LEFT)


def test_lm_sub_vocab(mlm, tok):
    sub = torch.tensor([5, 6, 7, 8, 9, 10, 11])
    full = LanguageModelReward(mlm, "masked", tok)
    r = LanguageModelReward(mlm, "masked", tok, sub_vocab_ids=sub)
    cols = torch.randint(0, 7, (2, 5), generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(r(one_hot(cols, 7)), full(one_hot(sub[cols])))


def test_lm_errors(mlm, gpt2):
    with pytest.raises(ValueError, match="`kind` must be one of"):
        LanguageModelReward(mlm, "bidirectional")
    with pytest.raises(ValueError, match="applies to kind='masked' only"):
        LanguageModelReward(gpt2, "causal", pll_passes=2)
    with pytest.raises(ValueError, match="needs the mask token"):
        LanguageModelReward(mlm, "masked", pll_passes=2)
    with pytest.raises(ValueError, match="`pll_passes` must be a positive int"):
        LanguageModelReward(mlm, "masked", pll_passes=0, mask_token_id=MASK)
    r = LanguageModelReward(gpt2, "causal")
    with pytest.raises(
        ValueError, match="LanguageModelReward has vocab_size=32 but the last axis of `x` .* has 31"
    ):
        r(torch.ones(1, 3, V - 1) / (V - 1))


class ScaledEmbedding(torch.nn.Embedding):
    def forward(self, ids):
        return super().forward(ids) * 3.0


def test_scaled_input_embeddings_are_honoured(tok):
    model = tiny_bert(V, head="classifier", **BERT, num_labels=2)
    old = model.get_input_embeddings()
    new = ScaledEmbedding(V, 16)
    new.weight.data.copy_(old.weight.data)
    model.set_input_embeddings(new)
    r = SequenceClassifierReward(model, label=1, tokenizer=tok)
    assert r.embed_scale == pytest.approx(3.0)
    ids = ids_batch()
    ref = model(input_ids=with_specials(ids)).logits.log_softmax(-1)[:, 1]
    torch.testing.assert_close(r(one_hot(ids)), ref)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_model_on_cuda_x_on_cpu(tok, dtype):
    model = tiny_bert(V, head="classifier", **BERT, num_labels=2).to("cuda", dtype)
    r = SequenceClassifierReward(model, label=1, tokenizer=tok, sub_vocab_ids=list(range(5, V)))
    x = torch.randn(2, 6, V - 5).softmax(-1).requires_grad_()
    s = r(x, attention_mask=torch.tensor([[1, 1, 1, 1, 0, 0], [0, 1, 1, 1, 1, 1]]))
    assert s.device.type == "cpu" and s.dtype == torch.float32
    s.sum().backward()
    assert x.grad.device.type == "cpu" and torch.isfinite(x.grad).all()
    lm = LanguageModelReward(
        tiny_bert(V, seed=None, **BERT).to("cuda", dtype),  # no reseed: drawn after the above
        "masked",
        tok,
        pll_passes=2,
    )
    s = lm(torch.randn(2, 6, V).softmax(-1))
    assert s.device.type == "cpu" and torch.isfinite(s).all()


def test_relaxed_embedding_lookup_path_is_exact_and_gradchecks():
    from rewards.embedding import RelaxedEmbedding

    g = torch.Generator().manual_seed(0)
    W = torch.randn(V, 5, generator=g, dtype=torch.float64)
    ids = torch.randint(0, V, (2, 4), generator=g)
    hard = one_hot(ids).double()
    soft = torch.randn(2, 4, V, generator=g, dtype=torch.float64).softmax(-1)
    st = hard + soft - soft.detach()  # straight-through: one-hot in value
    assert torch.equal(RelaxedEmbedding.apply(st, W), W[ids])  # lookup path, bit-exact
    torch.testing.assert_close(RelaxedEmbedding.apply(soft, W), soft @ W)
    # Gradients of both paths equal those of the plain product (also w.r.t. W).
    for x in (hard, soft):
        a, wa = x.clone().requires_grad_(), W.clone().requires_grad_()
        b, wb = x.clone().requires_grad_(), W.clone().requires_grad_()
        (RelaxedEmbedding.apply(a, wa) ** 2).sum().backward()
        ((b @ wb) ** 2).sum().backward()
        torch.testing.assert_close(a.grad, b.grad)
        torch.testing.assert_close(wa.grad, wb.grad)
    assert torch.autograd.gradcheck(
        RelaxedEmbedding.apply, (soft.clone().requires_grad_(), W.clone().requires_grad_())
    )
