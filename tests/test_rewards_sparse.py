"""The sparse input path of rewards: `SparseRows` scores and gradients equal the dense ones."""

from __future__ import annotations

import functools
import warnings

import pytest
import torch

import rewards.base
from rewards import (
    BridgedReward,
    Clipped,
    EmbeddingSimilarityReward,
    FunctionReward,
    LanguageModelReward,
    LexiconReward,
    LinearHeadReward,
    Normalized,
    Reward,
    SequenceClassifierReward,
    SparseRows,
    SudokuReward,
    TokenSetReward,
    VocabularyBridge,
    WeightedSum,
    finite_checks,
)

from _models import tiny_bert, tiny_gpt2

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

V = 40  # vocabulary of the tiny models
B, L, K = 3, 6, 4  # batch, length, entries per position
CLS, SEP, MASK = 2, 3, 4
# 32 positions; large weights: outputs that depend visibly on the input
BERT = dict(max_position_embeddings=32, initializer_range=0.5)
SUB_IDS = list(range(5, 37))  # a 32-token sub-vocabulary, in model order shifted by 5
MASKS = {
    None: None,
    "padded": torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1]]),
}


# ----------------------------------------------------------------------------- inputs
def random_rows(vocab_size: int, *, length: int = L, k: int = K, seed: int = 0) -> SparseRows:
    """Random float64 rows on the simplex: distinct ids, a few one-hot rows, a few rows whose
    last entry repeats the first with weight 0 (how the hook pads short supports)."""
    g = torch.Generator().manual_seed(seed)
    index = torch.rand(B, length, vocab_size, generator=g).argsort(-1)[..., :k]  # distinct ids
    weight = torch.randn(B, length, k, generator=g, dtype=torch.float64).mul(2).softmax(-1)
    one_hot = torch.rand(B, length, generator=g) < 0.25
    weight[one_hot] = torch.eye(k, dtype=torch.float64)[0]
    repeat = (torch.rand(B, length, generator=g) < 0.3) & ~one_hot
    index[..., -1] = torch.where(repeat, index[..., 0], index[..., -1])
    weight[..., -1] = torch.where(repeat, 0.0, weight[..., -1])
    weight = weight / weight.sum(-1, keepdim=True)
    assert one_hot.any() and repeat.any()
    return SparseRows(index, weight.requires_grad_(), vocab_size)


# ----------------------------------------------------------------------------- rewards
@functools.cache
def bert(head: str):
    labels = {"num_labels": 3} if head == "classifier" else {}
    return tiny_bert(V, head=head, dtype=torch.float64, **BERT, **labels)


@functools.cache
def gpt2():
    return tiny_gpt2(V, n_positions=32, initializer_range=0.5, dtype=torch.float64)


@functools.cache
def bpe_to_wordpiece() -> VocabularyBridge:
    """A spelled (approximate, S > 1) bridge between two tokenizers trained on a tiny corpus."""
    corpus = " ".join(
        ["the cat sat on the mat .", "a happy cat is not a sad dog .", "the storm was bad ."] * 30
    )
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator([corpus], vocab_size=290, min_frequency=2, show_progress=False)
    wp = tokenizers.BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator([corpus], vocab_size=90, min_frequency=1, show_progress=False)
    src = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer)
    tgt = transformers.BertTokenizer(vocab=wp.get_vocab())
    return VocabularyBridge(src, tgt, max_slots=3)


def _classifier(**kw) -> SequenceClassifierReward:
    return SequenceClassifierReward(bert("classifier"), label=2, prefix_ids=[CLS], **kw)


def _bridged(target: str) -> BridgedReward:
    bridge = bpe_to_wordpiece()
    Vt = bridge.target_vocab_size
    if target == "lexicon":
        g = torch.Generator().manual_seed(3)
        return BridgedReward(LexiconReward(torch.randn(Vt, generator=g)), bridge)
    model = tiny_bert(Vt, head="classifier", dtype=torch.float64, initializer_range=0.5)
    return BridgedReward(SequenceClassifierReward(model, label=1, prefix_ids=[CLS]), bridge)


def _sudoku() -> SudokuReward:
    return SudokuReward(range(81), range(1, 10), vocab_size=10)


def _weighted_id_sum(seqs: list[list[int]]) -> list[float]:
    return [float(sum((p + 1) * t for p, t in enumerate(s))) for s in seqs]


def _linear_head() -> LinearHeadReward:
    g = torch.Generator().manual_seed(1)
    return LinearHeadReward(
        bert("encoder"), torch.randn(1, 16, generator=g), torch.tensor([0.3]), sign=-1.0,
        prefix_ids=[CLS], suffix_ids=[SEP],
    )  # fmt: skip


def _similarity(**kw) -> EmbeddingSimilarityReward:
    g = torch.Generator().manual_seed(2)
    return EmbeddingSimilarityReward(
        bert("encoder"), target_embedding=torch.randn(16, generator=g), prefix_ids=[CLS], **kw
    )


def _token_set() -> TokenSetReward:
    return TokenSetReward([5, 7, 11, 30], weights=[1.0, -2.0, 0.5, 3.0], vocab_size=V)


# name -> (factory, sequence length). Every reward class with a sparse path, and its options
# that change what the sparse path reads (sub-vocabularies, special tokens, PLL passes).
CASES = {
    "token_set": (_token_set, L),
    "token_set_rate": (lambda: TokenSetReward([5, 7], vocab_size=V, normalize=True), L),
    "lexicon": (lambda: LexiconReward(torch.randn(V, generator=torch.Generator())), L),
    "sudoku": (_sudoku, 81),
    "function_ids": (lambda: FunctionReward(_weighted_id_sum, on="ids", vocab_size=V), L),
    "classifier": (lambda: _classifier(suffix_ids=[SEP]), L),
    "classifier_sub_vocab": (lambda: _classifier(sub_vocab_ids=SUB_IDS), L),
    "classifier_logit": (lambda: _classifier(score="logit"), L),
    "similarity_mean": (_similarity, L),
    "similarity_cls_sub_vocab": (lambda: _similarity(pooling="cls", sub_vocab_ids=SUB_IDS), L),
    "linear_head": (_linear_head, L),
    "lm_causal": (lambda: LanguageModelReward(gpt2(), "causal"), L),
    "lm_causal_bos": (lambda: LanguageModelReward(gpt2(), "causal", prefix_ids=[CLS]), L),
    "lm_masked": (lambda: LanguageModelReward(bert("mlm"), "masked", prefix_ids=[CLS]), L),
    "lm_masked_pll_sub_vocab": (
        lambda: LanguageModelReward(
            bert("mlm"),
            "masked",
            pll_passes=2,
            mask_token_id=MASK,
            sub_vocab_ids=SUB_IDS,
            prefix_ids=[CLS],
            suffix_ids=[SEP],
        ),
        L,
    ),  # fmt: skip
    "weighted_sum": (lambda: 0.5 * _token_set() - _classifier() + _linear_head(), L),
    "clipped": (lambda: Clipped(_similarity(), min=-0.2, max=0.2), L),
    "normalized": (lambda: Normalized(_classifier(), mean=-1.0, std=2.0), L),
    "bridged_lexicon": (lambda: _bridged("lexicon"), L),
    "bridged_classifier": (lambda: _bridged("classifier"), L),
}


@functools.cache
def build(name: str) -> Reward:
    return CASES[name][0]()


# ----------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("mask", list(MASKS), ids=["no_mask", "padded"])
@pytest.mark.parametrize("name", list(CASES))
def test_sparse_path_equals_dense(name, mask, monkeypatch):
    reward, length = build(name), CASES[name][1]
    assert reward.supports_sparse
    vocab = reward.vocab_size or V
    x = random_rows(vocab, length=length, seed=len(name))
    am = MASKS[mask]
    if am is not None and length != L:
        am = torch.ones(B, length, dtype=torch.long)
    dense = x.to_dense().detach().requires_grad_()
    want = reward(dense, attention_mask=am)
    with monkeypatch.context() as m:  # the sparse path never builds the (B, L, V) tensor
        m.setattr(SparseRows, "to_dense", lambda self: pytest.fail("densified"))
        got = reward(x, attention_mask=am)
    assert got.shape == (B,) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    if reward.differentiable:
        cot = torch.randn(B, generator=torch.Generator().manual_seed(7))
        (g_sparse,) = torch.autograd.grad((got * cot).sum(), x.weight)
        (g_dense,) = torch.autograd.grad((want * cot).sum(), dense)
        # d score / d weight[j] = d score / d x[index[j]]: the dense gradient gathered at index.
        torch.testing.assert_close(g_sparse, g_dense.gather(-1, x.index), rtol=1e-5, atol=1e-7)
        assert g_sparse.abs().sum() > 0


def test_sparse_gradient_scatters_to_dense_gradient():
    """Summing the sparse gradient over repeated ids gives the dense gradient on the support
    (times the multiplicity, since each copy sees the same dense entry)."""
    reward = build("classifier")
    x = random_rows(V, seed=3)
    (g_sparse,) = torch.autograd.grad(reward(x).sum(), x.weight)
    dense = x.to_dense().detach().requires_grad_()
    (g_dense,) = torch.autograd.grad(reward(dense).sum(), dense)
    count = torch.zeros(B, L, V, dtype=torch.float64).scatter_add(
        -1, x.index, torch.ones_like(x.weight)
    )
    summed = torch.zeros_like(count).scatter_add(-1, x.index, g_sparse)
    support = count > 0
    torch.testing.assert_close(summed[support], (g_dense * count)[support], rtol=1e-5, atol=1e-7)


def test_one_hot_rows_score_like_input_ids():
    """k entries with weight on one id only: the classifier scores the ids themselves."""
    reward = build("classifier")
    ids = torch.randint(5, V, (B, L), generator=torch.Generator().manual_seed(0))
    index = torch.stack([ids, torch.full_like(ids, 9), torch.full_like(ids, 9)], -1)
    weight = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64).expand(B, L, 3)
    got = reward(SparseRows(index, weight, V))
    want = reward(torch.nn.functional.one_hot(ids, V).double())
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_bridge_maps_sparse_rows_to_sparse_rows():
    bridge = bpe_to_wordpiece()
    x = random_rows(bridge.source_vocab_size, seed=1)
    bridged = bridge(x)
    assert isinstance(bridged, SparseRows) and bridged.k == K
    assert bridged.shape == (B, L * bridge.slots, bridge.target_vocab_size)
    torch.testing.assert_close(bridged.to_dense(), bridge(x.to_dense()), rtol=0, atol=1e-15)
    am = MASKS["padded"]
    assert torch.equal(bridge.target_mask(x, am), bridge.target_mask(x.to_dense(), am))


# ----------------------------------------------------------------------------- SparseRows
def test_sparse_rows_shape_dense_and_argmax():
    x = random_rows(V, seed=4)
    assert x.shape == (B, L, V) and x.ndim == 3 and x.k == K and x.dtype == torch.float64
    dense = x.to_dense()
    torch.testing.assert_close(dense.sum(-1), torch.ones(B, L, dtype=torch.float64))
    assert torch.equal(x.argmax_ids(), dense.argmax(-1))
    # Repeats are summed, and ties go to the smallest id, as `torch.argmax` does.
    index = torch.tensor([[[7, 3, 7], [9, 4, 2], [6, 1, 0]]])
    weight = torch.tensor([[[0.3, 0.4, 0.3], [0.4, 0.2, 0.4], [0.0, 1.0, 0.0]]])
    rows = SparseRows(index, weight, 10)
    assert rows.argmax_ids().tolist() == [[7, 2, 1]] == rows.to_dense().argmax(-1).tolist()
    assert "k=3" in repr(rows) and rows.detach().weight.requires_grad is False
    assert rows == rows and rows != SparseRows(index, weight, 10)  # identity, not elementwise


def test_arithmetic_wrappers_still_importable_from_base():
    assert rewards.base.WeightedSum is WeightedSum and rewards.base.Clipped is Clipped


def test_sparse_rows_construction_errors():
    idx, w = torch.zeros(2, 3, 4, dtype=torch.long), torch.full((2, 3, 4), 0.25)
    with pytest.raises(ValueError, match=r"`vocab_size` must be a positive int.*got 0"):
        SparseRows(idx, w, 0)
    with pytest.raises(
        ValueError, match=r"`index` must be a torch.LongTensor.*float32.*\.long\(\)"
    ):
        SparseRows(idx.float(), w, 8)
    with pytest.raises(ValueError, match=r"`weight` must be a floating-point tensor.*int64"):
        SparseRows(idx, idx, 8)
    with pytest.raises(ValueError, match=r"same shape.*index \(2, 3, 4\) and weight \(2, 3, 3\)"):
        SparseRows(idx, w[..., :3], 8)
    with pytest.raises(ValueError, match=r"same shape \(B, L, k\).*index \(2, 12\)"):
        SparseRows(idx.reshape(2, 12), w.reshape(2, 12), 8)


def test_reward_rejects_bad_sparse_input():
    reward = build("token_set")
    x = random_rows(V)
    with pytest.raises(ValueError, match=r"TokenSetReward has vocab_size=40 but .*SparseRows.*41"):
        reward(SparseRows(x.index, x.weight, V + 1))
    bad = x.index.clone()
    bad[1, 2, 0] = V
    with pytest.raises(ValueError, match=r"`index` with id 40 outside \[0, vocab_size=40\)"):
        reward(SparseRows(bad, x.weight, V))
    bad[1, 2, 0] = -1
    with pytest.raises(ValueError, match=r"id -1 outside"):
        reward.validate(SparseRows(bad, x.weight, V))
    with pytest.raises(ValueError, match=r"`attention_mask` of shape \(B, L\) = \(3, 6\)"):
        reward(x, attention_mask=torch.ones(3, 5, dtype=torch.long))


def test_validate_checks_sparse_weights():
    reward = WeightedSum([build("token_set"), build("lexicon")])
    x = random_rows(V)
    reward.validate(x, MASKS["padded"])
    w = x.weight.detach().clone()
    w[0, 1] *= 2
    msg = r"rows of `x.weight` on the probability simplex.*x.weight\[0, 1\] sums to 2"
    with pytest.raises(ValueError, match=msg):
        reward.validate(SparseRows(x.index, w, V))
    am = torch.ones(B, L, dtype=torch.long)
    am[0, 1] = 0
    reward.validate(SparseRows(x.index, w, V), am)  # the bad row is padding
    w[2, 3, 0] = float("nan")
    with pytest.raises(ValueError, match=r"got `x.weight` with 1 NaN/inf entries"):
        reward.validate(SparseRows(x.index, w, V), am)


# ----------------------------------------------------------------------------- dense fallback
class SquaredMass(Reward):
    """A reward with no sparse path: sum of squared entries (not linear, so densifying matters)."""

    vocab_size = V

    def forward(self, x, *, attention_mask=None):
        return (x.double() ** 2).sum(dim=(1, 2))


class DoubledTokenSet(TokenSetReward):
    """Changes `forward` only: it must not inherit the parent's sparse path."""

    def forward(self, x, *, attention_mask=None):
        return 2 * super().forward(x, attention_mask=attention_mask)


@pytest.mark.parametrize(
    "make", [SquaredMass, lambda: DoubledTokenSet([5, 9], vocab_size=V)], ids=["plain", "subclass"]
)
def test_reward_without_sparse_path_warns_once_and_densifies(make, monkeypatch):
    monkeypatch.setattr(rewards.base, "_DENSE_FALLBACK_WARNED", set())
    reward = make()
    assert not reward.supports_sparse
    x = random_rows(V, seed=5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = [reward(x) for _ in range(3)]
        make()(x)  # another instance of the same class: still once per class
    msgs = [str(w.message) for w in caught]
    assert len(msgs) == 1 and "has no sparse path" in msgs[0] and "forward_sparse" in msgs[0]
    assert caught[0].filename == __file__  # points at the caller
    dense = x.to_dense().detach().requires_grad_()
    want = reward(dense)
    torch.testing.assert_close(got[0], want)
    (g_sparse,) = torch.autograd.grad(got[0].sum(), x.weight)
    (g_dense,) = torch.autograd.grad(want.sum(), dense)
    torch.testing.assert_close(g_sparse, g_dense.gather(-1, x.index))


def test_wrapper_supports_sparse_only_when_every_part_does(monkeypatch):
    monkeypatch.setattr(rewards.base, "_DENSE_FALLBACK_WARNED", set())
    mixed = build("token_set") + SquaredMass()
    assert not mixed.supports_sparse and not Clipped(SquaredMass(), max=1.0).supports_sparse
    x = random_rows(V, seed=6)
    with pytest.warns(UserWarning, match="SquaredMass has no sparse path"):
        got = mixed(x)
    torch.testing.assert_close(got, mixed(x.to_dense()))


# ----------------------------------------------------------------------------- finite checks
class NaNSparse(Reward):
    vocab_size = V

    def forward(self, x, *, attention_mask=None):
        return torch.full((x.shape[0],), float("nan"))

    def forward_sparse(self, x, *, attention_mask=None):
        return self.forward(x)


class WrongShapeSparse(NaNSparse):
    def forward_sparse(self, x, *, attention_mask=None):
        return torch.zeros(x.shape[0], 1)


def test_finite_checks_switch_covers_sparse_calls():
    reward, x = NaNSparse(), random_rows(V)
    assert reward.supports_sparse
    with pytest.raises(ValueError, match="NaNSparse returned non-finite scores"):
        reward(x)
    with finite_checks(False):
        assert torch.isnan(reward(x)).all()
        # Shapes are checked whatever the switch says.
        with pytest.raises(
            ValueError, match=r"WrongShapeSparse must return .* \(3,\), got \(3, 1\)"
        ):
            WrongShapeSparse()(x)
