"""`redge_guidance.text.judges`: the judge LM's continuation NLL and perplexity against a by-hand
computation, VADER's and Pattern's signs on clear texts, Pattern needing no NLTK data, and the
errors when the `text` extra is missing."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

from redge_guidance.text import judges

from _models import tiny_gpt2

pytest.importorskip("transformers")
ROOT = Path(__file__).resolve().parents[1]
needs_vader = pytest.mark.skipif(
    importlib.util.find_spec("vader") is None, reason="needs nltk-vader-sentiment (text extra)"
)
needs_textblob = pytest.mark.skipif(
    importlib.util.find_spec("textblob") is None, reason="needs textblob (text extra)"
)
CLEAR = [
    "what a wonderful, lovely and happy day, i love it",
    "this is a terrible, hateful and miserable death",
    "the table has four legs",
]


@pytest.fixture(scope="module")
def tiny_lm():
    return tiny_gpt2(32, n_positions=12).eval()


@pytest.fixture(scope="module")
def shipped_lm():
    return judges.load_judge_lm()


def by_hand_nll(lm, prompt: list[int], continuation: list[int]) -> float:
    """One unpadded row at a time: the summed -log p(token | every token before it)."""
    ids = torch.tensor([prompt + continuation])
    with torch.no_grad():
        logp = lm(input_ids=ids).logits[0].double().log_softmax(-1)
    start = max(len(prompt), 1)  # the first token of a row has no context
    return -sum(float(logp[t - 1, ids[0, t]]) for t in range(start, ids.shape[1]))


def test_nll_and_perplexity_equal_a_by_hand_computation(tiny_lm):
    prompts = [[5, 6, 7], [9], [], [1, 2, 3, 4, 5, 6]]
    conts = [[8, 10, 11], [3, 4], [12, 13, 14], [20]]  # rows of different lengths: padded batch
    nll = judges.continuation_nll(tiny_lm, prompts, conts)
    ppl = judges.continuation_perplexity(tiny_lm, prompts, conts)
    assert nll.shape == ppl.shape == (4,) and nll.dtype == torch.float32
    for i, (p, c) in enumerate(zip(prompts, conts, strict=True)):
        expected = by_hand_nll(tiny_lm, p, c)
        assert nll[i].item() == pytest.approx(expected, rel=1e-5, abs=1e-5)
        n = len(c) if p else len(c) - 1  # no prompt: the first token is context only
        assert ppl[i].item() == pytest.approx(math.exp(expected / n), rel=1e-5)
    # A continuation of one token with no prompt has nothing to be read from.
    assert math.isnan(judges.continuation_perplexity(tiny_lm, [[]], [[3]])[0].item())


def test_rows_longer_than_the_context_keep_their_last_tokens(tiny_lm):
    prompt, cont = list(range(1, 11)), [20, 21, 22, 23]  # 14 tokens, context 12
    got = judges.continuation_nll(tiny_lm, [prompt], [cont])[0].item()
    assert got == pytest.approx(by_hand_nll(tiny_lm, prompt[2:], cont), rel=1e-5)


def test_shipped_judge_prefers_the_true_continuation(shipped_lm):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(judges.JUDGE_LM_DIR))
    prompt = tok("friends, romans, countrymen,", add_special_tokens=False)["input_ids"]
    real = tok("lend me your ears ; i come to bury caesar", add_special_tokens=False)["input_ids"]
    shuffled = [
        real[i] for i in torch.randperm(len(real), generator=torch.Generator().manual_seed(0))
    ]
    ppl = judges.continuation_perplexity(shipped_lm, [prompt, prompt], [real, shuffled])
    assert 1 < ppl[0] < ppl[1] < len(tok)


def test_the_scaling_benchmark_judges_with_this_module():
    # One judge, one place: benchmarks/scaling.py (its methods module) imports these functions
    # (its former copy gave bit-identical NLLs before the switch, so its committed numbers stand).
    spec = importlib.util.spec_from_file_location("_scaling", ROOT / "benchmarks" / "scaling.py")
    scaling = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scaling)
    methods = sys.modules["_scaling_methods"]  # imported by scaling.py
    assert methods.continuation_nll is judges.continuation_nll
    assert methods.load_judge_lm is judges.load_judge_lm
    assert scaling.JUDGE_DIR == judges.JUDGE_LM_DIR


@needs_vader
def test_vader_compound_sign_on_clear_texts():
    scores = judges.vader_compound(CLEAR)
    assert scores[0] > 0.5 and scores[1] < -0.5 and scores[2] == 0.0
    with pytest.raises(ValueError, match=r"`texts` must be a sequence of strings.*\[text\]"):
        judges.vader_compound("one string")


@needs_textblob
def test_pattern_polarity_sign_on_clear_texts_without_nltk_data(monkeypatch):
    import nltk

    # The Pattern lexicon ships in TextBlob's wheel: no NLTK corpus is read, nothing downloaded.
    monkeypatch.setattr(nltk.data, "path", [])

    def no_download(*args, **kwargs):
        raise AssertionError("the Pattern judge tried to download NLTK data")

    monkeypatch.setattr(nltk, "download", no_download)
    scores = judges.pattern_polarity(CLEAR)
    assert scores[0] > 0.5 and scores[1] < -0.5 and scores[2] == 0.0
    assert judges.pattern_polarity(["not good"])[0] < 0  # its rules read negation
    with pytest.raises(ValueError, match=r"`texts` must be a sequence of strings.*\[text\]"):
        judges.pattern_polarity("one string")


@needs_vader
@needs_textblob
def test_pattern_is_another_lexicon_than_vader():
    # Pattern lists mostly adjectives: the nouns and verbs VADER scores are neutral to it, and the
    # words both list have other scores. A guidance that found VADER's words is not credited twice.
    words = ["murder", "villain", "weep", "fair", "cruel"]
    vader, pattern = judges.vader_compound(words), judges.pattern_polarity(words)
    assert all(v < -0.5 for v in vader[:3]) and pattern[:3] == [0.0, 0.0, 0.0]
    assert pattern[3] > 2 * vader[3] > 0 and pattern[4] < vader[4] < 0


@needs_vader
@needs_textblob
def test_text_judges_scores_a_batch(tiny_lm):
    j = judges.TextJudges(tiny_lm)
    scores = j.score([[5, 6], []], [[7, 8, 9], [1, 2]], ["i love you", "i hate you"])
    nll = judges.continuation_nll(tiny_lm, [[5, 6], []], [[7, 8, 9], [1, 2]])
    assert [s.tokens for s in scores] == [3, 1]
    assert scores[0].vader > 0 > scores[1].vader
    assert [s.pattern for s in scores] == judges.pattern_polarity(["i love you", "i hate you"])
    assert scores[0].pattern > 0 > scores[1].pattern
    for s, n in zip(scores, nll, strict=True):
        assert s.nll == pytest.approx(float(n)) and s.ppl == pytest.approx(
            math.exp(s.nll / s.tokens)
        )
    with pytest.raises(ValueError, match="one decoded text per continuation"):
        j.score([[1]], [[2]], [])


def test_missing_text_extra_is_a_clear_error(monkeypatch, tiny_lm):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "vader" else real_find_spec(name, *a),
    )
    monkeypatch.setitem(sys.modules, "vader", None)  # `import vader...` raises ImportError
    monkeypatch.setitem(sys.modules, "vader.analyzer", None)
    reason = judges.missing_judge_dependency()
    assert reason is not None and "pip install 'redge-guidance[text]'" in reason
    with pytest.raises(ImportError, match=r"nltk-vader-sentiment"):
        judges.load_vader()
    with pytest.raises(ImportError, match=r"redge-guidance\[text\]"):
        judges.TextJudges(tiny_lm)


@needs_vader
def test_missing_textblob_is_a_clear_error(monkeypatch, tiny_lm):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "textblob" else real_find_spec(name, *a),
    )
    monkeypatch.setitem(sys.modules, "textblob", None)  # `import textblob...` raises ImportError
    monkeypatch.setitem(sys.modules, "textblob.en.sentiments", None)
    reason = judges.missing_judge_dependency()
    assert reason is not None and reason.startswith("the Pattern judge needs the `text` extra")
    assert "`pip install textblob`" in reason
    with pytest.raises(ImportError, match=r"The Pattern judge needs TextBlob: .*pip install textb"):
        judges.load_pattern()
    with pytest.raises(ImportError, match=r"Pattern judge.*redge-guidance\[text\]"):
        judges.TextJudges(tiny_lm)


def test_bad_arguments_name_themselves(tiny_lm, tmp_path):
    with pytest.raises(ValueError, match=r"`prompts` and `continuations` must pair up, got 1"):
        judges.continuation_nll(tiny_lm, [[1]], [[2], [3]])
    with pytest.raises(ValueError, match=r"`folder` .* is not a folder"):
        judges.load_judge_lm(tmp_path / "nope")
