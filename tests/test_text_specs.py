"""The `--reward` spec grammar (`redge_guidance.text.specs`) and `build_reward` on tiny models."""

from __future__ import annotations

import re
import textwrap

import pytest
import torch

from redge_guidance.text import (
    REWARD_NAMES,
    TextModel,
    build_reward,
    parse_reward_spec,
    valid_reward_specs,
)

from _models import TINY_WORDS, tiny_bert, wordpiece_tokenizer

transformers = pytest.importorskip("transformers")

TINY_VOCAB = TINY_WORDS[:14]  # [PAD] [UNK] [CLS] [SEP] [MASK] the a cat dog sat on mat good bad


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("sentiment", ("sentiment", "positive", 1.0, "sentiment:positive")),
        ("sentiment:negative=0.5", ("sentiment", "negative", 0.5, "sentiment:negative")),
        (" sentiment : negative ", ("sentiment", "negative", 1.0, "sentiment:negative")),
        ('similarity:"a storm at sea"=2', ("similarity", "a storm at sea", 2.0, None)),
        ("similarity:x = y", ("similarity", "x = y", 1.0, "similarity:x = y")),  # not a weight
        ("similarity:x=1=1", ("similarity", "x=1", 1.0, "similarity:x=1")),
        ("lexicon", ("lexicon", "vader", 1.0, "lexicon:vader")),
        ("lexicon:vader=-1", ("lexicon", "vader", -1.0, "lexicon:vader")),
        ("fluency", ("fluency", "4", 1.0, "fluency")),
        ("fluency:8=0.3", ("fluency", "8", 0.3, "fluency:8")),
        ("fluency=1e-1", ("fluency", "4", 0.1, "fluency")),
        ("rewards:TokenSetReward", ("callable", "TokenSetReward", 1.0, "rewards:TokenSetReward")),
    ],
)
def test_parse_valid_specs(spec, expected):
    s = parse_reward_spec(spec)
    kind, argument, weight, text = expected
    assert (s.kind, s.argument, s.weight) == (kind, argument, weight)
    if text is not None:
        assert s.text == text
    if kind == "callable":
        assert s.module == "rewards"


# Each bad spec fails with its own message: what is wrong, echoing the spec.
BAD_SPECS = [
    ("", r"must be a non-empty spec, got ''"),
    ("   ", r"must be a non-empty spec, got '   '"),
    # the weight is parsed first: a non-number weight is named as such
    ("sentiment:positive=abc", r"'sentiment:positive=abc': the weight 'abc' .* is not a number"),
    ("fluency=abc", r"'fluency=abc': the weight 'abc' .* is not a number"),
    ("lexicon:vader=", r"'lexicon:vader=': the weight '' .* is not a number"),
    ("similarity=abc", r"'similarity=abc': the weight 'abc' .* is not a number"),
    ("rewards:TokenSetReward=x", r"the weight 'x' .* is not a number"),
    ("nope=high", r"'nope=high': the weight 'high' .* is not a number"),
    ("fluency=nan", r"'fluency=nan' has a non-finite weight 'nan'"),
    ("sentiment=inf", r"'sentiment=inf' has a non-finite weight 'inf'"),
    ("sentiment:meh", r"sentiment takes one of \['positive', 'negative'\], got 'meh'"),
    ("lexicon:afinn", r"lexicon takes one of \['vader'\], got 'afinn'"),
    ("fluency:0", r"fluency\[:K\] takes an optional number of masked passes K >= 1, got '0'"),
    ("fluency:many", r"fluency\[:K\] takes .* got 'many'"),
    ("similarity:", r"similarity needs a target text"),
    ("nope", r"Unknown `--reward` 'nope'\. Valid: .*fluency\[:K\]"),
    ("sentimnt:positive", r"no reward named 'sentimnt'.* Did you mean 'sentiment'\?"),
    ("rewards:missing_fn", r"module 'rewards' has no callable 'missing_fn'"),
    ("rewards.no_such_module:fn", r"cannot import module 'rewards.no_such_module'"),
]


@pytest.mark.parametrize(("spec", "message"), BAD_SPECS, ids=[s or "empty" for s, _ in BAD_SPECS])
def test_parse_bad_specs_say_what_is_wrong(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_reward_spec(spec)


def test_documented_syntax_is_what_messages_show():
    assert valid_reward_specs() == (
        "sentiment:positive|negative, similarity:TEXT, lexicon:vader, fluency[:K], "
        "or module.path:callable"
    )
    assert set(REWARD_NAMES) == {"sentiment", "similarity", "lexicon", "fluency"}


def test_callables_are_not_imported_when_asked(tmp_path, monkeypatch):
    # A module that fails on import: parsing without importing must not touch it.
    (tmp_path / "broken_reward_mod.py").write_text("raise RuntimeError('imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    s = parse_reward_spec("broken_reward_mod:make", import_callables=False)
    assert (s.kind, s.module, s.argument) == ("callable", "broken_reward_mod", "make")
    with pytest.raises(ValueError, match=r"cannot import module .*RuntimeError: imported"):
        parse_reward_spec("broken_reward_mod:make")


@pytest.fixture
def tiny_text_model():
    model = tiny_bert(len(TINY_VOCAB), max_position_embeddings=32).eval()
    return TextModel(model, wordpiece_tokenizer(TINY_VOCAB), 4, len(TINY_VOCAB), None, "tiny")


@pytest.fixture
def reward_module(tmp_path, monkeypatch):
    (tmp_path / "my_text_rewards.py").write_text(
        textwrap.dedent(
            """
            from rewards import TokenSetReward

            def good(tokenizer, vocab_size):
                good_id = tokenizer.convert_tokens_to_ids("good")
                return TokenSetReward([good_id], vocab_size=vocab_size)

            def wrong_size(tokenizer, vocab_size):
                return TokenSetReward([5], vocab_size=vocab_size + 3)

            def no_args():
                return TokenSetReward([5], vocab_size=14)

            def not_a_reward(tokenizer, vocab_size):
                return 1.0
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_text_rewards"


def test_build_reward_weighted_sum_of_callables_and_fluency(tiny_text_model, reward_module):
    specs = [
        parse_reward_spec(f"{reward_module}:good=2"),
        parse_reward_spec(f"{reward_module}:no_args"),
        parse_reward_spec("fluency:2=0.5"),
    ]
    reward, parts = build_reward(specs, tiny_text_model)
    assert list(parts) == [f"{reward_module}:good", f"{reward_module}:no_args", "fluency:2"]
    x = torch.nn.functional.one_hot(torch.tensor([[5, 12, 7, 12]]), len(TINY_VOCAB)).float()
    expected = 2 * parts[f"{reward_module}:good"](x) + parts[f"{reward_module}:no_args"](x)
    expected = expected + 0.5 * parts["fluency:2"](x)
    torch.testing.assert_close(reward(x), expected)
    assert reward.vocab_size == len(TINY_VOCAB)
    # a repeated spec gets a distinct label
    _, parts = build_reward(specs[:1] * 2, tiny_text_model)
    assert list(parts) == [f"{reward_module}:good", f"{reward_module}:good'"]


def test_build_reward_vocab_mismatch_uses_the_shared_check(tiny_text_model, reward_module):
    spec = parse_reward_spec(f"{reward_module}:wrong_size")
    message = (
        r"TokenSetReward has vocab_size=17 but the last axis of the generator's logits "
        rf"\(`--reward {reward_module}:wrong_size`\) has 14 entries\. Build the reward for the "
        r"generator's tokenizer .*VocabularyBridge"
    )
    with pytest.raises(ValueError, match=message):
        build_reward([spec], tiny_text_model)


def test_build_reward_errors(tiny_text_model, reward_module):
    with pytest.raises(ValueError, match=r"Pass at least one `--reward`"):
        build_reward([], tiny_text_model)
    spec = parse_reward_spec(f"{reward_module}:not_a_reward")
    with pytest.raises(ValueError, match=re.escape("returned float, not a rewards.Reward")):
        build_reward([spec], tiny_text_model)
