"""`redge-guidance` CLI: generate (JSONL schema, resume after a real kill, 2-process accelerate run,
bad input), env, prompt files, --config, and the named text rewards.

Tiny settings throughout (length 8, 4 steps, 2 inner steps) on the embedded Shakespeare model;
lexicon or token rewards where the reward model does not matter, MiniLM where it does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from redge_guidance.cli import main
from redge_guidance.cli.generate import CLI_GUIDANCE_DEFAULTS, ESTIMATOR_FLAGS, GUIDANCE_FLAGS
from redge_guidance.cli.io import read_prompts, read_rows, repair_trailing_line

REPO = Path(__file__).resolve().parents[1]
TINY = ["--length", "8", "--steps", "4", "--n-opt-steps", "2", "--threads", "1"]
KEYS = {
    "prompt_id",
    "sample_id",
    "prompt",
    "text",
    "token_ids",
    "reward",
    "reward_unguided",
    "text_unguided",
    "kl",
    "seconds",
    "seconds_unguided",
    "seed",
    "config_hash",
    "run_hash",
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "redge_guidance.cli", *args]


def _keys(rows):
    return [(r["prompt_id"], r["sample_id"]) for r in rows]


# ------------------------------------------------------------------------------------- parser


def test_help_is_fast_and_imports_no_torch():
    code = (
        "import sys\n"
        "from redge_guidance.cli import main\n"
        "assert main(['generate', '--help']) == 0\n"
        "heavy = ('torch', 'transformers', 'datasets', 'diffusers')\n"
        "print('HEAVY', sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout
    assert "--kl-weight" in out.stdout and "sentiment:positive" in out.stdout


def test_every_guidance_field_and_estimator_option_has_a_flag():
    import dataclasses

    from redge_guidance.estimators import ESTIMATORS
    from redge_guidance.guidance import GuidanceConfig

    flagged = {field for _, field, *_ in GUIDANCE_FLAGS} | {"record_rewards", "estimator_options"}
    assert flagged == {f.name for f in dataclasses.fields(GuidanceConfig)}
    for flag, field, *_ in GUIDANCE_FLAGS:
        assert flag == "--" + field.replace("_", "-")
    options = {opt for cls in ESTIMATORS.values() for opt in cls.option_names()}
    assert options == {opt for _, opt, *_ in ESTIMATOR_FLAGS} | {"hard"}
    # The static `--reward` help (no torch at --help time) names every reward.
    from redge_guidance.cli.generate import _REWARD_HELP
    from redge_guidance.text_rewards import REWARD_NAMES

    assert all(f"  {name}" in _REWARD_HELP for name in REWARD_NAMES)
    # The CLI defaults are valid settings.
    GuidanceConfig.from_dict(dict(CLI_GUIDANCE_DEFAULTS))


def test_docs_reference_is_current():
    from redge_guidance.cli import format_reference

    doc = (REPO / "docs" / "cli.md").read_text()
    begin, end = "<!-- BEGIN REFERENCE -->\n", "<!-- END REFERENCE -->"
    current = doc[doc.index(begin) + len(begin) : doc.index(end)]
    assert current == format_reference(), (
        "docs/cli.md is out of date: regenerate its reference section with "
        "`python -c 'from redge_guidance.cli import format_reference; print(format_reference())'`"
    )


# ------------------------------------------------------------------------------------- env


def test_env_reports_versions_and_devices(capsys):
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    for word in (
        "python",
        "torch",
        "transformers",
        "diffusers",
        "accelerate",
        "datasets",
        "redge-guidance",
        "cuda",
        "threads",
        "embedded model",
    ):
        assert word in out
    assert main(["env", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["packages"]["torch"] is not None and info["packages"]["transformers"] is not None
    assert info["cuda_available"] == torch.cuda.is_available()
    assert info["embedded_model"] is not None


# ------------------------------------------------------------------------------------- prompts


def test_read_prompts_txt_jsonl_csv_parquet(tmp_path):
    (tmp_path / "p.txt").write_text("ROMEO: O,\n\n  JULIET: ay me  \n")
    assert read_prompts(tmp_path / "p.txt") == ["ROMEO: O,", "JULIET: ay me"]
    (tmp_path / "p.jsonl").write_text('{"prompt": "a", "id": 1}\n{"prompt": "", "id": 2}\n')
    assert read_prompts(tmp_path / "p.jsonl") == ["a", ""]
    (tmp_path / "p.csv").write_text("id,text\n1,hello there\n2,good night\n")
    assert read_prompts(tmp_path / "p.csv") == ["hello there", "good night"]
    (tmp_path / "q.csv").write_text("id,line\n1,x\n")
    assert read_prompts(tmp_path / "q.csv", "line") == ["x"]
    import datasets

    datasets.Dataset.from_dict({"prompt": ["p1", "p2"]}).to_parquet(str(tmp_path / "p.parquet"))
    assert read_prompts(tmp_path / "p.parquet") == ["p1", "p2"]


def test_repair_trailing_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": 3, "b"')
    assert [r["a"] for r in read_rows(path)] == [1, 2]  # partial line ignored on read
    assert repair_trailing_line(path) == len('{"a": 3, "b"')
    assert path.read_text() == '{"a": 1}\n{"a": 2}\n'
    assert repair_trailing_line(path) == 0


# ------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (
            ["--reward", "sentimnt:positive"],
            "Did you mean 'sentiment'? Valid: sentiment:positive|negative",
        ),
        (["--reward", "sentiment:happy"], "sentiment takes one of"),
        (["--reward", "no_such_module_xyz:make"], "no module 'no_such_module_xyz'"),
        (["--reward", "os.path_nope:make"], "cannot import module 'os.path_nope'"),
        (["--estimator", "redgee"], "valid: gumbel_softmax, redge, redge_cov"),
        (["--estimator", "redge", "--tau", "0.5"], "Unknown option(s) ['tau']"),
        (["--kl-weight", "-1"], "`kl_weight` must be >= 0"),
        (["--prompts", "/nonexistent/prompts.txt"], "is not a file"),
        (["--length", "0"], "too short"),
        (["--model", "/nonexistent/model"], "is not a folder"),
        (["--prompt", "a", "--prompts", "x.txt"], "not both"),
        (["--resume"], "need `--output FILE`"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, extra, needle):
    out = tmp_path / "out.jsonl"
    args = ["generate", *TINY, *extra]
    if "--resume" not in extra:
        args += ["--output", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert needle in err, err
    assert "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob("out.jsonl*"))


def test_bad_prompt_files_and_model_without_mask(tmp_path, capsys):
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a"}\n{not json\n')
    (tmp_path / "cols.csv").write_text("id,line\n1,x\n")
    (tmp_path / "p.docx").write_text("x")
    from transformers import AutoTokenizer

    from redge_guidance.text_rewards import DEFAULT_MODEL_DIR

    nomask = tmp_path / "nomask"
    AutoTokenizer.from_pretrained(str(DEFAULT_MODEL_DIR)).save_pretrained(nomask)
    cfg = json.loads((nomask / "tokenizer_config.json").read_text())
    cfg.pop("mask_token")
    (nomask / "tokenizer_config.json").write_text(json.dumps(cfg))
    model_cfg = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    model_cfg.pop("mask_token_id")
    (nomask / "config.json").write_text(json.dumps(model_cfg))
    cases = [
        (["--prompts", str(tmp_path / "bad.jsonl")], "cannot be read as json"),
        (["--prompts", str(tmp_path / "cols.csv")], "no 'prompt' or 'text' column"),
        (["--prompts", str(tmp_path / "cols.csv"), "--prompt-column", "nope"], "is not a column"),
        (["--prompts", str(tmp_path / "p.docx")], "supported: .txt"),
        (["--model", str(nomask), "--reward", "lexicon:vader"], "has no mask token"),
        (["--length", "600"], "exceeds the model's 512 positions"),
    ]
    out = tmp_path / "out.jsonl"
    for extra, needle in cases:
        assert main(["generate", *TINY, "--output", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and needle in err and "Traceback" not in err, (extra, err)
        assert not out.exists()


def test_console_script_error_has_no_traceback(tmp_path):
    out = subprocess.run(
        _cli("generate", "--reward", "nope", "--output", str(tmp_path / "o.jsonl")),
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "Unknown `--reward` 'nope'" in out.stderr
    assert not (tmp_path / "o.jsonl").exists()


# ------------------------------------------------------------------------------------- generate


def test_generate_jsonl_schema_and_output_rules(tmp_path, capsys):
    from transformers import AutoTokenizer

    from redge_guidance.guidance import GuidanceConfig
    from redge_guidance.text_rewards import DEFAULT_MODEL_DIR

    out = tmp_path / "out.jsonl"
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "ROMEO: O,"}\n{"prompt": ""}\n{"prompt": "KING: my lords"}\n')
    args = [
        "generate",
        *TINY,
        "--prompts",
        str(prompts),
        "--num-samples",
        "2",
        "--batch-size",
        "4",
        "--reward",
        "lexicon:vader",
        "--output",
        str(out),
    ]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "mean reward" in captured.err and "guided" in captured.err
    rows = read_rows(out)
    assert sorted(_keys(rows)) == [(p, s) for p in range(3) for s in range(2)]
    tok = AutoTokenizer.from_pretrained(str(DEFAULT_MODEL_DIR))
    expected_hash = GuidanceConfig.from_dict(
        {**CLI_GUIDANCE_DEFAULTS, "n_opt_steps": 2}
    ).config_hash()
    for r in rows:
        assert KEYS <= set(r)
        assert len(r["token_ids"]) == 8 and 4 not in r["token_ids"]  # no [MASK] left
        assert r["text"] == tok.decode(r["token_ids"], skip_special_tokens=True).strip()
        assert r["prompt"] == ["ROMEO: O,", "", "KING: my lords"][r["prompt_id"]]
        for key in ("reward", "reward_unguided", "kl", "seconds"):
            assert isinstance(r[key], float) and r[key] == r[key]
        assert r["kl"] >= 0 and r["config_hash"] == expected_hash
    assert len({r["run_hash"] for r in rows}) == 1
    # An existing output is never clobbered silently.
    assert main(args) == 2
    assert "exists; pass `--resume`" in capsys.readouterr().err
    # --resume on a complete file generates nothing and keeps the rows.
    assert main([*args, "--resume", "--quiet"]) == 0
    assert read_rows(out) == rows
    # --overwrite starts over and, seeded per batch, writes the same rows again.
    assert main([*args, "--overwrite", "--quiet"]) == 0
    again = read_rows(out)
    assert [r["token_ids"] for r in again] == [r["token_ids"] for r in rows]
    # --resume with other settings is refused.
    assert main([*args[:-2], "--seed", "1", "--output", str(out), "--resume"]) == 2
    assert "rows of another run" in capsys.readouterr().err


def test_stdout_mode_prints_guided_and_unguided(capsys):
    assert (
        main(["generate", *TINY, "--prompt", "JULIET:", "--reward", "lexicon:vader", "--quiet"])
        == 0
    )
    out = capsys.readouterr().out
    assert "guided:   JULIET:" in out and "unguided: JULIET:" in out and "reward" in out


def test_config_json_then_flags(tmp_path):
    from redge_guidance.guidance import GuidanceConfig

    cfg_path = tmp_path / "g.json"
    GuidanceConfig(
        estimator="gumbel_softmax", estimator_options={"tau": 0.7}, lr=0.3, n_opt_steps=5
    ).save(cfg_path)
    out = tmp_path / "out.jsonl"
    assert (
        main(
            [
                "generate",
                *TINY,
                "--config",
                str(cfg_path),
                "--prompt",
                "a",
                "--reward",
                "lexicon:vader",
                "--kl-weight",
                "0.5",
                "--output",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    expected = GuidanceConfig(
        estimator="gumbel_softmax",
        estimator_options={"tau": 0.7},
        lr=0.3,
        n_opt_steps=2,
        kl_weight=0.5,
    )  # flags (TINY's --n-opt-steps) win
    assert read_rows(out)[0]["config_hash"] == expected.config_hash()
    (tmp_path / "bad.json").write_text('{"lr": 0.1, "learning_rate": 2}')
    assert (
        main(
            [
                "generate",
                *TINY,
                "--config",
                str(tmp_path / "bad.json"),
                "--output",
                str(tmp_path / "b.jsonl"),
            ]
        )
        == 2
    )


def test_user_callable_reward_steers(tmp_path, monkeypatch):
    # A token-count reward from the user's own module: guidance must raise the count of "love".
    (tmp_path / "my_rewards_for_cli.py").write_text(
        "import rewards\n"
        "def love(tokenizer, vocab_size):\n"
        "    ids = tokenizer('love', add_special_tokens=False)['input_ids']\n"
        "    return rewards.TokenSetReward(ids, vocab_size=vocab_size)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "out.jsonl"
    assert (
        main(
            [
                "generate",
                *TINY,
                "--prompt",
                "ROMEO:",
                "--num-samples",
                "8",
                "--n-opt-steps",
                "3",
                "--lr",
                "1.0",
                "--reward",
                "my_rewards_for_cli:love",
                "--output",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    rows = read_rows(out)
    guided = sum(r["reward"] for r in rows) / len(rows)
    unguided = sum(r["reward_unguided"] for r in rows) / len(rows)
    # Seeded (seed 0), 8 samples of 8 new tokens. "love" is rare unguided (0 of 64 tokens here);
    # 3 Adam steps of lr 1 can lift its logit by ~3 at every position, about 20x its odds, and
    # the run shows 4.4 per sample: asking for 2 leaves a wide margin and still fails if the
    # reward's gradient does not reach the logits.
    assert guided >= unguided + 2.0, (guided, unguided)
    assert all(r["text"].count("love") == round(r["reward"]) for r in rows)


def test_weighted_sum_of_rewards(tmp_path):
    out = tmp_path / "out.jsonl"
    assert (
        main(
            [
                "generate",
                *TINY,
                "--prompt",
                "ROMEO:",
                "--reward",
                "lexicon:vader=2",
                "--reward",
                "fluency:2=0.5",
                "--output",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    (row,) = read_rows(out)
    terms = row["reward_terms"]
    assert set(terms) == {"lexicon:vader", "fluency:2"}
    assert row["reward"] == pytest.approx(
        2 * terms["lexicon:vader"] + 0.5 * terms["fluency:2"], abs=1e-4
    )
    assert terms["fluency:2"] < 0  # a log-likelihood


# ------------------------------------------------------------------------------------- rewards


def test_parse_reward_spec():
    from redge_guidance.text_rewards import parse_reward_spec

    s = parse_reward_spec("sentiment:negative=0.5")
    assert (s.kind, s.argument, s.weight) == ("sentiment", "negative", 0.5)
    assert parse_reward_spec("sentiment").argument == "positive"
    s = parse_reward_spec('similarity:"a storm at sea"=2')
    assert (s.kind, s.argument, s.weight) == ("similarity", "a storm at sea", 2.0)
    assert parse_reward_spec("similarity:x = y").argument == "x = y"  # not a weight
    assert parse_reward_spec("fluency").argument == "4"
    assert parse_reward_spec("lexicon:vader=-1").weight == -1.0
    s = parse_reward_spec("rewards:TokenSetReward")
    assert (s.kind, s.module, s.argument) == ("callable", "rewards", "TokenSetReward")


@pytest.mark.integration
def test_sentiment_reward_reads_generator_tokens_exactly():
    # The embedded vocabulary maps into MiniLM's exactly: the relaxed-input reward on one-hots
    # equals the head on MiniLM's own input_ids path for the same text.
    from transformers import AutoTokenizer

    from redge_guidance.text_data import load_bert_ids
    from redge_guidance.text_rewards import (
        DEFAULT_MODEL_DIR,
        TextModel,
        build_reward,
        load_minilm,
        load_sentiment_head,
        parse_reward_spec,
    )

    tok = AutoTokenizer.from_pretrained(str(DEFAULT_MODEL_DIR))
    bert_ids = load_bert_ids(DEFAULT_MODEL_DIR)
    tm = TextModel(
        model=torch.nn.Linear(1, 1),
        tokenizer=tok,
        mask_token_id=4,
        vocab_size=len(bert_ids),
        bert_ids=bert_ids,
        source="embedded",
    )
    reward, _ = build_reward([parse_reward_spec("sentiment:positive")], tm)
    texts = ["my love, thy beauty fills my heart with joy", "thou art a villain and a coward"]
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    n = max(map(len, ids))
    x = torch.zeros(2, n, len(bert_ids))
    am = torch.zeros(2, n, dtype=torch.long)
    for b, row in enumerate(ids):  # left padding
        x[b, n - len(row) + torch.arange(len(row)), torch.tensor(row)] = 1
        x[b, : n - len(row), 0] = 1
        am[b, n - len(row) :] = 1
    got = reward(x, attention_mask=am)
    enc, mtok = load_minilm()
    w, bias = load_sentiment_head()
    with torch.no_grad():
        batch = mtok(texts, padding=True, return_tensors="pt")
        h = enc(**batch).last_hidden_state
        m = batch["attention_mask"][..., None].float()
        ref = ((h * m).sum(1) / m.sum(1)) @ w.T + bias
    torch.testing.assert_close(got, ref[:, 0], atol=1e-4, rtol=1e-4)
    assert got[0] > 1.0 > 0 > got[1]
    negative, _ = build_reward([parse_reward_spec("sentiment:negative")], tm)
    torch.testing.assert_close(negative(x, attention_mask=am), -got)
    sim, _ = build_reward([parse_reward_spec('similarity:"my heart is full of joy"')], tm)
    s = sim(x, attention_mask=am)
    assert s[0] > s[1] and bool(((s > -1) & (s <= 1)).all())


@pytest.mark.integration
def test_default_job_real_sentiment(tmp_path):
    # The default reward (sentiment:positive through MiniLM) end to end, tiny settings.
    out = tmp_path / "out.jsonl"
    assert main(["generate", *TINY, "--output", str(out), "--quiet"]) == 0
    rows = read_rows(out)
    assert sorted(_keys(rows)) == [(0, 0), (1, 0)]
    assert all(-5 < r["reward"] < 5 and -5 < r["reward_unguided"] < 5 for r in rows)
    assert rows[0]["prompt"].startswith("ROMEO")


@pytest.mark.integration
def test_foreign_tokenizer_model_goes_through_the_bridge(tmp_path, capsys):
    # A user's masked LM with the full BERT-uncased tokenizer: MiniLM rewards read it through a
    # VocabularyBridge (an exact relabelling here), the lexicon reward directly.
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    from redge_guidance.text_rewards import find_minilm_dir

    tok = AutoTokenizer.from_pretrained(str(find_minilm_dir()))
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    folder = tmp_path / "tiny-bert"
    BertForMaskedLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    out = tmp_path / "out.jsonl"
    assert (
        main(
            [
                "generate",
                *TINY,
                "--model",
                str(folder),
                "--prompt",
                "hello",
                "--reward",
                "sentiment:positive",
                "--reward",
                "lexicon:vader",
                "--output",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    (row,) = read_rows(out)
    assert len(row["token_ids"]) == 8 and set(row["reward_terms"]) == {
        "sentiment:positive",
        "lexicon:vader",
    }
    assert (
        main(
            [
                "generate",
                *TINY,
                "--model",
                str(folder),
                "--length",
                "60",
                "--output",
                str(tmp_path / "o2.jsonl"),
            ]
        )
        == 2
    )
    assert "exceeds the model's 64 positions" in capsys.readouterr().err


# -------------------------------------------------------------------------------- resume, scale-out


def _wait_for_rows(path: Path, proc: subprocess.Popen, n: int, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and len(read_rows(path)) >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"generate ended before writing {n} rows: {proc.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError(f"no {n} rows in {path} after {timeout} s")


def test_interrupt_then_sigkill_then_resume_completes_without_duplicates(tmp_path):
    out = tmp_path / "out.jsonl"
    args = ["generate", *TINY, "--prompt", "ROMEO:", "--prompt", "", "--prompt", "KING:",
            "--num-samples", "4", "--batch-size", "1", "--reward", "lexicon:vader",
            "--output", str(out), "--quiet"]  # fmt: skip
    # Ctrl-C: exit code 130, one line saying how to finish, only whole rows on disk.
    proc = subprocess.Popen(_cli(*args), env=_env(), stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_rows(out, proc, 1, timeout=300)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert err.count("\n") == 1 and "--resume" in err and "Traceback" not in err, err
    n_interrupted = len(read_rows(out))
    assert out.read_text().endswith("\n") and 1 <= n_interrupted < 12
    # kill -9 of the resumed run once it has added a row.
    proc = subprocess.Popen(_cli(*args, "--resume"), env=_env(), stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_rows(out, proc, n_interrupted + 1, timeout=300)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = read_rows(out)
    assert 1 <= len(before) < 12, "the kill came too late to test anything"
    with open(out, "a") as fh:  # simulate a torn last line too (full disk / power cut)
        fh.write('{"prompt_id": 9, "sam')
    assert main([*args, "--resume"]) == 0
    rows = read_rows(out)
    assert out.read_text().endswith("\n")
    assert len(rows) == 12 and len(set(_keys(rows))) == 12
    assert sorted(_keys(rows)) == [(p, s) for p in range(3) for s in range(4)]
    assert rows[: len(before)] == before  # nothing rewritten
    # Resumed rows are the rows an uninterrupted run writes (per-batch seeds).
    ref = tmp_path / "ref.jsonl"
    assert main([*args[:-3], "--output", str(ref), "--quiet", "--batch-size", "1"]) == 0
    by_key = {(r["prompt_id"], r["sample_id"]): r for r in read_rows(ref)}
    for r in rows:
        assert r["token_ids"] == by_key[(r["prompt_id"], r["sample_id"])]["token_ids"]


def test_accelerate_two_processes_shards_merge_and_resume(tmp_path):
    # One `accelerate launch` of 2 CPU processes, resuming a killed 2-process run: process 0 had
    # written batch 0 (and a torn line) to its shard, process 1 nothing.
    accelerate = Path(sys.executable).with_name("accelerate")
    if not accelerate.exists():
        pytest.skip("accelerate launcher not installed")
    gen = [
        "generate",
        *TINY,
        "--prompt",
        "ROMEO:",
        "--prompt",
        "JULIET:",
        "--prompt",
        "KING:",
        "--num-samples",
        "2",
        "--batch-size",
        "2",
        "--reward",
        "lexicon:vader",
        "--quiet",
    ]
    single = tmp_path / "single.jsonl"
    assert main([*gen, "--output", str(single)]) == 0
    ref = read_rows(single)
    out = tmp_path / "out.jsonl"
    shard0 = Path(f"{out}.shard-0-of-2.jsonl")
    written = [r for r in ref if r["prompt_id"] == 0]  # batch 0 = prompt 0's two samples
    shard0.write_text("".join(json.dumps(r) + "\n" for r in written) + '{"prompt_id": 1, "sa')
    cmd = [
        str(accelerate),
        "launch",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--cpu",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "redge_guidance.cli",
        *gen,
        "--output",
        str(out),
        "--resume",
    ]
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = read_rows(out)
    assert _keys(rows) == [(p, s) for p in range(3) for s in range(2)]  # merged, sorted, unique
    assert not list(tmp_path.glob("out.jsonl.shard-*"))  # shards merged away
    assert rows[:2] == written  # resumed rows kept as written (timings included), not redone
    # Batches 1 and 2 ran on processes 1 and 0 with their own seeds: the same rows as one process.
    assert [r["token_ids"] for r in rows] == [r["token_ids"] for r in ref]
    assert [r["reward"] for r in rows] == [r["reward"] for r in ref]
