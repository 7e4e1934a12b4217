"""Reward protocol, composition, validation, and the model-free rewards (no transformers models)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import rewards
from rewards import (
    Clipped,
    FunctionReward,
    LexiconReward,
    Normalized,
    Reward,
    SudokuReward,
    TokenSetReward,
    WeightedSum,
    sudoku_unit_matrix,
    sudoku_violations,
)

from _models import wordpiece_tokenizer

V = 12


@pytest.fixture(scope="module")
def tiny_tokenizer():
    return wordpiece_tokenizer()


def one_hot(ids, vocab=V):
    return F.one_hot(torch.as_tensor(ids), vocab).float()


def soft(B=3, L=5, vocab=V, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, L, vocab, generator=g, dtype=dtype).softmax(-1)


class Linear(Reward):
    """A test reward: sum_l <x_l, w>."""

    def __init__(self, w, vocab_size=None):
        super().__init__()
        self.register_buffer("w", torch.as_tensor(w, dtype=torch.float32))
        self.vocab_size = vocab_size

    def forward(self, x, *, attention_mask=None):
        return (x.float() @ self.w).sum(-1)


class Bad(Reward):
    def __init__(self, out):
        super().__init__()
        self.out = out

    def forward(self, x, *, attention_mask=None):
        return self.out(x)


@pytest.fixture
def r1():
    return Linear(torch.arange(V, dtype=torch.float32), vocab_size=V)


@pytest.fixture
def r2():
    return Linear(torch.linspace(1, -1, V), vocab_size=V)


# ----------------------------------------------------------------------------- composition
def test_arithmetic_matches_the_parts(r1, r2):
    x = soft()
    a, b = r1(x), r2(x)
    torch.testing.assert_close((0.5 * r1 + r2)(x), 0.5 * a + b)
    torch.testing.assert_close((-r1)(x), -a)
    torch.testing.assert_close((r1 * 2)(x), 2 * a)
    torch.testing.assert_close((r1 / 2)(x), a / 2)
    torch.testing.assert_close((r1 - r2)(x), a - b)
    torch.testing.assert_close(sum([r1, r2, r1])(x), 2 * a + b)


def test_sums_are_flat_and_typed(r1, r2):
    total = 0.5 * r1 + r2 + 3 * r2
    assert isinstance(total, WeightedSum)
    assert len(total.rewards) == 3 and total.weights == (0.5, 1.0, 3.0)
    nested = 2 * (r1 + r2)
    assert len(nested.rewards) == 2 and nested.weights == (2.0, 2.0)
    assert sum([r1]) is r1  # sum() starts at 0: 0 + r is r itself


def test_differentiable_is_the_and_of_parts(r1):
    black_box = FunctionReward(lambda seqs: [0.0] * len(seqs), on="ids", vocab_size=V)
    assert (r1 + 2 * r1).differentiable
    assert not (r1 + black_box).differentiable
    assert not Clipped(black_box, min=0).differentiable


def test_composition_errors(r1):
    other = Linear(torch.zeros(V + 1), vocab_size=V + 1)
    with pytest.raises(ValueError, match="different vocab sizes.*Linear: 12.*Linear: 13"):
        r1 + other
    with pytest.raises(ValueError, match="divide Linear by 0"):
        r1 / 0
    with pytest.raises(ValueError, match="finite real numbers, got nan"):
        r1 * float("nan")
    with pytest.raises(TypeError):
        r1 + 1.0
    with pytest.raises(TypeError):
        r1 * "2"
    with pytest.raises(ValueError, match="2 rewards but 1 weights"):
        WeightedSum([r1, r1], [1.0])
    with pytest.raises(ValueError, match="non-empty sequence of `Reward`s"):
        WeightedSum([lambda x: x])


def test_any_vocab_part_composes_with_fixed_vocab(r1):
    anyv = Linear(torch.ones(V))  # vocab_size None
    assert (r1 + anyv).vocab_size == V


def test_clipped_and_normalized(r1):
    x = soft()
    raw = r1(x)
    lo, hi = float(raw.min()) + 1e-3, float(raw.max()) - 1e-3
    torch.testing.assert_close(Clipped(r1, min=lo, max=hi)(x), raw.clamp(lo, hi))
    torch.testing.assert_close(Normalized(r1, mean=2.0, std=4.0)(x), (raw - 2) / 4)
    # Clipping stops the gradient of the clipped samples and only theirs.
    xg = x.clone().requires_grad_()
    Clipped(r1, max=hi)(xg).sum().backward()
    top = int(raw.argmax())
    assert xg.grad[top].abs().sum() == 0 and xg.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="`min` < `max`, got min=2.0, max=1.0"):
        Clipped(r1, min=2, max=1)
    with pytest.raises(ValueError, match="`min`, `max`, or both"):
        Clipped(r1)
    with pytest.raises(ValueError, match="`std` must be a finite number > 0, got 0"):
        Normalized(r1, mean=0, std=0)


# ----------------------------------------------------------------------------- validation
def test_call_checks_structure_and_names_the_class(r1):
    with pytest.raises(
        ValueError, match=r"Linear expects `x` of shape \(B, L, V\).*got shape \(5, 12\)"
    ):
        r1(soft()[0])
    with pytest.raises(
        ValueError, match=r"Linear has vocab_size=12 but the last axis of `x` .* has 7 entries"
    ):
        r1(soft(vocab=7))
    with pytest.raises(ValueError, match="floating-point `x`.*one_hot"):
        r1(torch.zeros(2, 3, V, dtype=torch.long))
    with pytest.raises(
        ValueError, match=r"`attention_mask` of shape \(B, L\) = \(3, 5\), got \(3, 4\)"
    ):
        r1(soft(), attention_mask=torch.ones(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="integer or bool `attention_mask`"):
        r1(soft(), attention_mask=torch.ones(3, 5))


def test_validate_checks_content(r1):
    x = soft()
    r1.validate(x)  # soft rows pass
    r1.validate(one_hot([[1, 2, 3]]))
    logits = torch.randn(3, 5, V)
    with pytest.raises(ValueError, match="Linear expects rows of `x` on the probability simplex"):
        r1.validate(logits)
    bad = x.clone()
    bad[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="Linear got `x` with 1 NaN/inf entries"):
        r1.validate(bad)
    with pytest.raises(ValueError, match="values other than 0 and 1"):
        r1.validate(x, attention_mask=torch.full((3, 5), 2))
    # Padded rows are not checked: zeros at padding are fine.
    padded = x.clone()
    padded[0, :2] = 0
    mask = torch.ones(3, 5, dtype=torch.long)
    mask[0, :2] = 0
    r1.validate(padded, attention_mask=mask)
    with pytest.raises(ValueError, match="simplex"):
        r1.validate(padded)


def test_validate_tolerance_follows_dtype(r1):
    x = soft()
    x[0, 0] *= 1.005  # row sum 1.005: beyond float32's tolerance, inside bfloat16's
    with pytest.raises(ValueError, match="within 0.001"):
        r1.validate(x)
    r1.validate(x.bfloat16())


def test_output_checks_name_the_class():
    x = soft()
    with pytest.raises(
        ValueError, match=r"Bad must return a tensor of shape \(B,\) = \(3,\), got \(3, 1\)"
    ):
        Bad(lambda x: x.sum((1, 2))[:, None])(x)
    with pytest.raises(ValueError, match="Bad returned non-finite scores"):
        Bad(lambda x: x.sum((1, 2)) / 0)(x)
    with pytest.raises(ValueError, match=r"got \(\)"):
        Bad(lambda x: x.sum())(x)


def test_scores_are_float32_on_x_device(r1):
    s = r1(soft(dtype=torch.float64))
    assert s.dtype == torch.float32 and s.device == torch.device("cpu")


def test_validate_of_a_sum_checks_every_part(r1):
    sudoku = SudokuReward(list(range(81)), list(range(1, 10)), vocab_size=V)
    with pytest.raises(ValueError, match="SudokuReward reads cells up to position 80"):
        (r1 + sudoku).validate(soft(L=20))


# ----------------------------------------------------------------------------- FunctionReward
def test_function_reward_ids_one_call_per_batch_without_grad():
    calls = []

    def fn(seqs):
        calls.append((seqs, torch.is_grad_enabled()))
        return [float(s.count(7)) for s in seqs]

    r = FunctionReward(fn, on="ids")
    ids = torch.tensor([[7, 7, 1, 0], [2, 7, 3, 7]])
    x = one_hot(ids).requires_grad_()
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    s = r(x, attention_mask=mask)
    assert s.tolist() == [2.0, 1.0]
    assert len(calls) == 1
    seqs, grad_on = calls[0]
    assert seqs == [[7, 7, 1, 0], [3, 7]] and grad_on is False
    assert not s.requires_grad and not r.differentiable


def test_function_reward_text_skips_special_tokens(tiny_tokenizer):
    tok = tiny_tokenizer
    seen = []
    r = FunctionReward(lambda texts: seen.extend(texts) or [len(t) for t in texts], tok)
    ids = tok(["the cat sat", "a dog"], padding=True, return_tensors="pt")[
        "input_ids"
    ]  # [CLS] ... [SEP] [PAD]
    x = one_hot(ids, len(tok))
    r(x)
    assert seen == ["the cat sat", "a dog"]


def test_function_reward_errors():
    with pytest.raises(ValueError, match="needs a `tokenizer`.*on='ids'"):
        FunctionReward(lambda s: s)
    with pytest.raises(ValueError, match="`on` must be one of"):
        FunctionReward(lambda s: s, on="tokens")
    r = FunctionReward(lambda seqs: [1.0], on="ids")
    with pytest.raises(ValueError, match=r"one number per sample \(2\), got shape \(1,\)"):
        r(one_hot([[1], [2]]))
    r = FunctionReward(lambda seqs: ["a", "b"], on="ids")
    with pytest.raises(ValueError, match="not convertible"):
        r(one_hot([[1], [2]]))
    r = FunctionReward(lambda seqs: [float("inf"), 0.0], on="ids")
    with pytest.raises(ValueError, match="FunctionReward returned non-finite scores"):
        r(one_hot([[1], [2]]))


# ----------------------------------------------------------------------------- token rewards
def test_token_set_reward_counts_and_gradient():
    r = TokenSetReward([3, 5], weights=[1.0, -2.0], vocab_size=V)
    x = one_hot([[3, 3, 5, 0], [1, 1, 1, 1]])
    assert r(x).tolist() == [0.0, 0.0]
    assert r(one_hot([[3, 3, 3, 5]])).tolist() == [1.0]
    mask = torch.tensor([[1, 1, 0, 0]])
    assert r(one_hot([[3, 3, 5, 5]]), attention_mask=mask).tolist() == [2.0]
    rn = TokenSetReward([3], vocab_size=V, normalize=True)
    assert rn(one_hot([[3, 3, 5, 5]]), attention_mask=torch.tensor([[1, 1, 1, 0]])).tolist() == [
        pytest.approx(2 / 3)
    ]
    xg = soft(B=2, L=4, vocab=V, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(r.forward, (xg,))  # forward: __call__ returns float32
    xg.grad = None
    r(xg).sum().backward()
    w = torch.zeros(V, dtype=torch.float64)
    w[3], w[5] = 1, -2
    torch.testing.assert_close(xg.grad, w.expand(2, 4, V))


def test_token_set_reward_errors():
    with pytest.raises(ValueError, match=r"lie in \[0, vocab_size=12\), got \[3, 12\]"):
        TokenSetReward([3, 12], vocab_size=V)
    with pytest.raises(ValueError, match="must not repeat"):
        TokenSetReward([3, 3], vocab_size=V)
    with pytest.raises(ValueError, match="2 finite numbers"):
        TokenSetReward([3, 4], weights=[1.0], vocab_size=V)
    with pytest.raises(ValueError, match="`vocab_size` must be a positive int"):
        TokenSetReward([3], vocab_size=0)


def test_lexicon_reward_is_masked_mean():
    scores = torch.zeros(V)
    scores[2], scores[4] = 1.0, -0.5
    r = LexiconReward(scores)
    x = one_hot([[2, 2, 4, 0], [0, 0, 0, 0]])
    torch.testing.assert_close(r(x), torch.tensor([1.5 / 4, 0.0]))
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]])
    torch.testing.assert_close(r(x, attention_mask=mask), torch.tensor([1.0, 0.0]))  # empty row: 0
    with pytest.raises(ValueError, match="finite numbers"):
        LexiconReward(torch.tensor([0.0, float("nan")]))


def test_vader_lexicon_on_a_wordpiece_tokenizer(tiny_tokenizer):
    pytest.importorskip("vader")
    tok = tiny_tokenizer
    scores = rewards.vader_lexicon_scores(tok)
    vocab = tok.get_vocab()
    assert scores.shape == (len(tok),)
    assert scores[vocab["good"]] > 0 and scores[vocab["happy"]] > 0
    assert scores[vocab["bad"]] < 0 and scores[vocab["hate"]] < 0
    assert scores[vocab["the"]] == 0 and scores[tok.unk_token_id] == 0
    assert scores.abs().max() <= 1.0  # normalised by 4
    raw = rewards.vader_lexicon_scores(tok, normalize=False)
    torch.testing.assert_close(raw, 4 * scores)
    r = LexiconReward.from_vader(tok)
    happy = tok(
        ["i like it , good", "i hate it , bad"], add_special_tokens=False, return_tensors="pt"
    )["input_ids"]
    s = r(one_hot(happy, len(tok)))
    assert s[0] > 0 > s[1]


# ----------------------------------------------------------------------------- Sudoku
def solved_grid() -> torch.Tensor:
    """A valid grid from the shifted-rows pattern: (81,) digits 1..9."""
    r = torch.arange(9)[:, None]
    c = torch.arange(9)[None]
    return ((r * 3 + r // 3 + c) % 9 + 1).reshape(81)


def sudoku_reward(vocab=V, offset=0):
    # Sequence: `offset` other tokens, then 81 cells; digit d has token id d + 1 (id 1 = "1"...).
    return SudokuReward(
        list(range(offset, offset + 81)), [d + 1 for d in range(1, 10)], vocab_size=vocab
    )


def test_unit_matrix():
    U = sudoku_unit_matrix()
    assert U.shape == (27, 81) and (U.sum(1) == 9).all() and (U.sum(0) == 3).all()


def test_sudoku_reward_zero_on_solved_negative_on_repeats():
    g = solved_grid()
    assert sudoku_violations(g[None]).tolist() == [0]
    r = sudoku_reward(offset=2)
    seq = torch.cat([torch.tensor([0, 0]), g + 1])  # token = digit + 1
    assert r(one_hot(seq[None])).tolist() == [0.0]
    bad = g.clone()
    bad[1] = bad[0]  # repeat in row 0, box 0 (and a missing digit)
    seq_bad = torch.cat([torch.tensor([0, 0]), bad + 1])
    assert r(one_hot(seq_bad[None])).item() < 0
    assert sudoku_violations(bad[None]).item() > 0


def test_sudoku_reward_batch_vectorised_and_gradient():
    g = solved_grid()
    grids = torch.stack([g, g.roll(1), torch.where(torch.arange(81) == 40, g[41], g)])
    r = sudoku_reward()
    x = one_hot(grids + 1)
    s = r(x)
    assert s[0] == 0 and (s[1:] < 0).all()
    # On one-hot grids, -reward counts (count - 1)^2; it is zero iff there are no violations.
    assert ((s == 0) == (sudoku_violations(grids) == 0)).all()
    xs = soft(B=1, L=81, vocab=V, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(r.forward, (xs,))
    r(xs).sum().backward()
    assert torch.isfinite(xs.grad).all() and xs.grad.abs().sum() > 0


def test_sudoku_violations_counts_blanks_and_duplicates():
    g = solved_grid()
    blank = g.clone()
    blank[0] = 0
    assert sudoku_violations(blank[None]).tolist() == [3]  # one blank: once per unit
    dup = g.clone()
    dup[1] = dup[0]  # g[0] now twice in row 0, box 0 and column 1 (which held every digit once)
    assert sudoku_violations(dup[None]).tolist() == [3]
    assert sudoku_violations(torch.zeros(2, 81, dtype=torch.long)).tolist() == [243, 243]
    with pytest.raises(ValueError, match=r"shape \(B, 81\), got \(9, 9\)"):
        sudoku_violations(g.reshape(9, 9))
    with pytest.raises(ValueError, match="integer `grid`"):
        sudoku_violations(g[None].float())


def test_sudoku_reward_errors():
    with pytest.raises(ValueError, match="`cell_positions` must be 81 integers"):
        SudokuReward(list(range(80)), list(range(1, 10)), vocab_size=V)
    with pytest.raises(ValueError, match=r"`digit_token_ids` must lie in \[0, vocab_size=12\)"):
        SudokuReward(list(range(81)), list(range(5, 14)), vocab_size=V)
    with pytest.raises(ValueError, match="9 distinct"):
        SudokuReward(list(range(81)), [1] * 9, vocab_size=V)
    with pytest.raises(ValueError, match="length 50"):
        sudoku_reward()(soft(L=50))


def test_check_vocab_size_names_reward_sizes_and_fix():
    r = TokenSetReward([1, 2], vocab_size=V)
    rewards.check_vocab_size(r, V)  # same size: no error
    rewards.check_vocab_size(Bad(lambda x: x.sum((1, 2))), 99)  # vocab_size None: any size
    with pytest.raises(
        ValueError,
        match=r"TokenSetReward has vocab_size=12 but the last axis of the logits has 7 entries\. "
        r".*rewards\.VocabularyBridge.*`sub_vocab_ids=`",
    ):
        rewards.check_vocab_size(r, 7)
    with pytest.raises(ValueError, match=r"of the prior's logits has 7 entries\. Use 12\.$"):
        rewards.check_vocab_size(r, 7, what="the prior's logits", fix="Use 12.")


def test_check_scores_shape_and_finiteness():
    scores = torch.tensor([0.5, -1.0, 2.0])
    assert rewards.check_scores(scores, 3, "MyReward") is scores  # unchanged, same object
    with pytest.raises(
        ValueError, match=r"MyReward must return a tensor of shape \(B,\) = \(2,\), got \(3,\)"
    ):
        rewards.check_scores(scores, 2, "MyReward")
    with pytest.raises(ValueError, match=r"got list"):
        rewards.check_scores([0.5, 1.0], 2, "MyReward")
    bad = torch.tensor([0.0, float("nan")])
    with pytest.raises(ValueError, match=r"MyReward returned non-finite scores \[0.0, nan\]"):
        rewards.check_scores(bad, 2, "MyReward")
    assert rewards.check_scores(bad, 2, "MyReward", finite=False) is bad


def test_public_api_is_exported():
    for name in rewards.__all__:
        assert hasattr(rewards, name), name
