"""VocabularyBridge / BridgedReward: exact relabelling and the spelled approximation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rewards import BridgedReward, LexiconReward, SequenceClassifierReward, VocabularyBridge

from _models import TINY_WORDS, tiny_bert, wordpiece_tokenizer

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

TARGET_VOCAB = TINY_WORDS
# A sub-vocabulary of the target's, in another order.
SOURCE_VOCAB = "[PAD] [UNK] [CLS] [SEP] [MASK] mat cat the a dog ##s sat on good bad .".split()

CORPUS = " ".join(
    [
        "the cat sat on the mat .",
        "the dog sat on the mat .",
        "a happy cat is not a sad dog .",
        "the storm was very bad .",
        "i like the sea and i hate the storm .",
    ]
    * 40
)


@pytest.fixture(scope="module")
def target_tok():
    return wordpiece_tokenizer(TARGET_VOCAB)


@pytest.fixture(scope="module")
def source_tok():
    return wordpiece_tokenizer(SOURCE_VOCAB)


@pytest.fixture(scope="module")
def bpe_tok():
    """A byte-level BPE (GPT-2 style) tokenizer trained on CORPUS: whole words get one token."""
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        [CORPUS], vocab_size=300, min_frequency=2, special_tokens=["<pad>"], show_progress=False
    )
    return transformers.PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, pad_token="<pad>")


@pytest.fixture(scope="module")
def wordpiece_tok():
    """A WordPiece (BERT-style) tokenizer trained on CORPUS, with characters and ## pieces."""
    wp = tokenizers.BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator([CORPUS], vocab_size=120, min_frequency=1, show_progress=False)
    return transformers.BertTokenizer(vocab=wp.get_vocab())


def classifier_on(vocab_size):
    return tiny_bert(vocab_size, head="classifier", num_labels=2, initializer_range=0.5)


# ----------------------------------------------------------------------------- exact case
def test_sub_vocabulary_bridge_is_exact_relabelling(source_tok, target_tok):
    bridge = VocabularyBridge(source_tok, target_tok)
    assert bridge.exact_fraction == 1.0 and bridge.slots == 1 and bridge.is_relabelling
    expected = torch.tensor([TARGET_VOCAB.index(w) for w in SOURCE_VOCAB])
    assert bridge.spelling[0].tolist() == expected.tolist()
    x = torch.randn(2, 5, len(SOURCE_VOCAB), generator=torch.Generator().manual_seed(0)).softmax(-1)
    xt = bridge(x)
    assert xt.shape == (2, 5, len(TARGET_VOCAB))
    torch.testing.assert_close(xt[..., expected], x)  # the columns move, nothing else
    torch.testing.assert_close(xt.sum(-1), torch.ones(2, 5))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    assert bridge.target_mask(x, mask) is mask and bridge.target_mask(x) is None


def test_exact_bridged_reward_equals_target_reward(source_tok, target_tok):
    model = classifier_on(len(TARGET_VOCAB))
    target_reward = SequenceClassifierReward(model, label=1, tokenizer=target_tok)
    bridged = BridgedReward(target_reward, VocabularyBridge(source_tok, target_tok))
    assert bridged.vocab_size == len(SOURCE_VOCAB) and bridged.fused
    src_ids = source_tok(
        ["the cat sat on the mat", "a dog sat"],
        add_special_tokens=False,
        padding=True,
        return_tensors="pt",
    )
    tgt_ids = target_tok(
        ["the cat sat on the mat", "a dog sat"],
        add_special_tokens=False,
        padding=True,
        return_tensors="pt",
    )
    x = F.one_hot(src_ids["input_ids"], len(SOURCE_VOCAB)).float()
    xt = F.one_hot(tgt_ids["input_ids"], len(TARGET_VOCAB)).float()
    mask = src_ids["attention_mask"]
    ref = target_reward(xt, attention_mask=tgt_ids["attention_mask"])
    torch.testing.assert_close(bridged(x, attention_mask=mask), ref)
    assert ref.std() > 1e-4
    # Fused (packing x @ W[spelling]) and materialised paths agree, gradients too.
    slow = BridgedReward(target_reward, bridged.bridge, materialize=True)
    assert not slow.fused
    xs = torch.randn(2, 6, len(SOURCE_VOCAB), generator=torch.Generator().manual_seed(1)).softmax(
        -1
    )
    a, b = xs.clone().requires_grad_(), xs.clone().requires_grad_()
    bridged(a).sum().backward()
    slow(b).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- approximate case
def test_bpe_to_wordpiece_bridge_spells_tokens(bpe_tok, wordpiece_tok):
    bridge = VocabularyBridge(bpe_tok, wordpiece_tok)
    assert 0.0 < bridge.exact_fraction < 1.0
    assert bridge.slots > 1 and bridge.spelling.shape == (bridge.slots, len(bpe_tok))
    assert (bridge.lengths <= bridge.slots).all()
    text = " the cat sat on the mat ."  # leading space: every BPE token starts a word
    src = bpe_tok(text, add_special_tokens=False)["input_ids"]
    assert all(bridge.exact[src]), bpe_tok.convert_ids_to_tokens(src)  # whole words: exact
    x = F.one_hot(torch.tensor([src]), len(bpe_tok)).float()
    xt = bridge(x)
    mask = bridge.target_mask(x)
    assert (
        xt.shape == (1, len(src) * bridge.slots, len(wordpiece_tok)) and mask.shape == xt.shape[:2]
    )
    torch.testing.assert_close(xt.sum(-1), torch.ones(xt.shape[:2]))
    kept = xt.argmax(-1)[mask.bool()].tolist()
    assert kept == wordpiece_tok(text, add_special_tokens=False)["input_ids"]


def test_bpe_word_pieces_spell_as_several_target_tokens(bpe_tok, wordpiece_tok):
    bridge = VocabularyBridge(bpe_tok, wordpiece_tok)
    src = bpe_tok(" the cats", add_special_tokens=False)["input_ids"]
    x = F.one_hot(torch.tensor([src]), len(bpe_tok)).float()
    kept = bridge(x).argmax(-1)[bridge.target_mask(x).bool()].tolist()
    # Per-token spelling of the concatenation, whatever BPE did with "cats":
    pieces = [bridge.spelling[: int(bridge.lengths[i]), i].tolist() for i in src]
    assert kept == [t for p in pieces for t in p]
    assert "".join(wordpiece_tok.convert_ids_to_tokens(kept)).replace("##", "") == "thecats"
    # A masked source position contributes no target slot.
    m = bridge.target_mask(x, torch.tensor([[1] + [0] * (len(src) - 1)]))
    assert int(m.sum()) == int(bridge.lengths[src[0]])


def test_approximate_bridged_reward_gradient_and_fused_path(bpe_tok, wordpiece_tok):
    bridge = VocabularyBridge(bpe_tok, wordpiece_tok, max_slots=3)
    assert bridge.slots == 3 and int(bridge.lengths.max()) <= 3
    target_reward = SequenceClassifierReward(
        classifier_on(len(wordpiece_tok)), label=0, tokenizer=wordpiece_tok
    )
    fused = BridgedReward(target_reward, bridge)
    slow = BridgedReward(target_reward, bridge, materialize=True)
    x = torch.randn(2, 6, len(bpe_tok), generator=torch.Generator().manual_seed(0)).softmax(-1)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [0, 1, 1, 1, 1, 1]])
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    sa, sb = fused(a, attention_mask=mask), slow(b, attention_mask=mask)
    torch.testing.assert_close(sa, sb)
    (sa.sum() + sb.sum()).backward()
    torch.testing.assert_close(a.grad, b.grad)
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0
    # A linear reward through the bridge: exactly the target reward of the bridged one-hots.
    lex = LexiconReward(torch.randn(len(wordpiece_tok), generator=torch.Generator().manual_seed(5)))
    torch.testing.assert_close(
        BridgedReward(lex, bridge)(x), lex(bridge(x), attention_mask=bridge.target_mask(x))
    )


def test_bridge_errors(bpe_tok, wordpiece_tok):
    with pytest.raises(ValueError, match="`max_slots` must be a positive int or None, got 0"):
        VocabularyBridge(bpe_tok, wordpiece_tok, max_slots=0)
    with pytest.raises(ValueError, match="`target_vocab_size` must be an int >= len"):
        VocabularyBridge(bpe_tok, wordpiece_tok, target_vocab_size=3)
    bridge = VocabularyBridge(bpe_tok, wordpiece_tok, target_vocab_size=len(wordpiece_tok) + 8)
    assert bridge(torch.ones(1, 2, len(bpe_tok)) / len(bpe_tok)).shape[-1] == len(wordpiece_tok) + 8
    lex = LexiconReward(torch.zeros(len(wordpiece_tok)))
    with pytest.raises(
        ValueError,
        match=r"LexiconReward has vocab_size=\d+ but .* bridge's output .*`target_vocab_size=",
    ):
        BridgedReward(lex, bridge)
    with pytest.raises(ValueError, match=r"shape \(B, L, \d+\)"):
        bridge(torch.ones(1, 2, 3))
