"""`redge-guidance` CLI: generate (JSONL schema, resume after a real kill, 2-process accelerate run,
streaming, quiet runs), sudoku (streaming, resume), env, prompt files, --config, deprecated flags,
and the named text rewards. Bad input has its own tables: tests/test_bad_inputs_*.py.

Tiny settings throughout (length 8, 4 steps, 2 inner steps) on the embedded Shakespeare model;
lexicon or token rewards where the reward model does not matter, MiniLM where it does.
"""

from __future__ import annotations

import dataclasses
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
from redge_guidance.cli.generate import CLI_GUIDANCE_DEFAULTS, ESTIMATOR_FLAGS
from redge_guidance.cli.io import read_prompts, read_rows, repair_trailing_line

from _models import tiny_bert

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


def _generate(*args: str) -> int:
    """`redge-guidance generate` in-process at the TINY settings, quiet: its exit status."""
    return main(["generate", *TINY, *args, "--quiet"])


def _keys(rows):
    return [(r["prompt_id"], r["sample_id"]) for r in rows]


# ------------------------------------------------------------------------------------- parser


def test_help_is_fast_and_imports_no_torch():
    code = (
        "import sys\n"
        "from redge_guidance.cli import build_parser, main\n"
        "build_parser()\n"
        "assert main(['generate', '--help']) == 0\n"
        "assert main(['sudoku', '--help']) == 0\n"
        "heavy = ('torch', 'transformers', 'datasets', 'diffusers')\n"
        "print('HEAVY', sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout
    assert "--kl-weight" in out.stdout and "sentiment:positive" in out.stdout
    assert "--warm-start" in out.stdout and "--handoff {logits,argmax}" in out.stdout
    assert "--forget" not in out.stdout and "--decode" not in out.stdout  # hidden aliases


def _subparser(name: str):
    import argparse

    from redge_guidance.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def test_guidance_flags_come_from_the_config_fields():
    import argparse

    from redge_guidance.estimators import ESTIMATORS
    from redge_guidance.guidance.config import GuidanceConfig, cli_fields

    by_flag = {a.option_strings[0]: a for a in _subparser("generate")._actions if a.option_strings}
    fields = cli_fields()
    assert {f.name for f in fields} == {f.name for f in dataclasses.fields(GuidanceConfig)} - {
        "estimator_options"
    }
    for f in fields:
        action = by_flag["--" + f.name.replace("_", "-")]
        assert action.dest == f"g_{f.name}" and action.default is None  # unset: config decides
        assert f.metadata["help"] in action.help
        assert action.choices == f.metadata.get("choices")
        if isinstance(f.default, bool):
            assert isinstance(action, argparse.BooleanOptionalAction)
        elif f.default is not None:
            assert action.type is type(f.default)
    assert by_flag["--max-grad-norm"].type is float  # `float | None`
    # The CLI's own defaults are shown where they differ from the config's.
    assert "(default: 0.02)" in by_flag["--kl-weight"].help
    # `sudoku` shares `--estimator` and `--n-opt-steps` through the same code.
    sudoku = {a.option_strings[0]: a for a in _subparser("sudoku")._actions if a.option_strings}
    for flag in ("--estimator", "--n-opt-steps"):
        assert sudoku[flag].dest == by_flag[flag].dest and sudoku[flag].type is by_flag[flag].type
    options = {opt for cls in ESTIMATORS.values() for opt in cls.option_names()}
    assert options == {opt for _, opt, *_ in ESTIMATOR_FLAGS} | {"hard"}
    # The static `--reward` help (no torch at --help time) names every reward.
    from redge_guidance.cli.generate_flags import _REWARD_HELP
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


def test_env_reports_installed_versions_and_devices(capsys):
    from importlib import metadata

    from redge_guidance.cli.env import PACKAGES

    def installed(dist):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    assert main(["env", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["packages"] == {d: installed(d) for d in PACKAGES}
    assert info["cuda_available"] == torch.cuda.is_available()
    assert info["cpu_count"] == os.cpu_count()
    assert info["embedded_model"] is not None and Path(info["embedded_model"]).is_dir()
    assert main(["env"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for dist in ("torch", "transformers", "diffusers", "accelerate", "datasets"):
        (line,) = [ln for ln in lines if ln.split()[0] == dist]
        assert line.split()[1] == (installed(dist) or "not")
    assert any(ln.startswith("cuda") for ln in lines) and any("threads" in ln for ln in lines)


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
# (the tables are tests/test_bad_inputs_generate.py and tests/test_bad_inputs_sudoku.py)


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
    # --resume on a complete file generates nothing and keeps the rows; --quiet prints nothing.
    assert main([*args, "--resume", "--quiet"]) == 0
    assert read_rows(out) == rows
    assert capsys.readouterr().err == ""
    # --overwrite starts over and, seeded per batch, writes the same rows again.
    assert main([*args, "--overwrite", "--quiet"]) == 0
    again = read_rows(out)
    assert [r["token_ids"] for r in again] == [r["token_ids"] for r in rows]
    # --resume with other settings is refused.
    assert main([*args[:-2], "--seed", "1", "--output", str(out), "--resume"]) == 2
    assert "rows of another run" in capsys.readouterr().err


def test_stdout_mode_prints_guided_and_unguided(capsys):
    assert _generate("--prompt", "JULIET:", "--reward", "lexicon:vader") == 0
    out = capsys.readouterr().out
    assert "guided:   JULIET:" in out and "unguided: JULIET:" in out and "reward" in out


def test_config_file_or_folder_then_flags_and_deprecated_flags(tmp_path, capsys):
    from redge_guidance.guidance import GuidanceConfig

    saved = GuidanceConfig(
        estimator="gumbel_softmax", estimator_options={"tau": 0.7}, lr=0.3, n_opt_steps=5
    )
    saved.to_json_file(tmp_path / "g.json")
    saved.save_pretrained(tmp_path / "folder")
    base = ["generate", *TINY, "--prompt", "a", "--reward", "lexicon:vader", "--quiet"]
    expected = saved.replace(n_opt_steps=2, kl_weight=0.5)  # flags (TINY's --n-opt-steps) win
    for i, source in enumerate((tmp_path / "g.json", tmp_path / "folder")):
        out = tmp_path / f"out{i}.jsonl"
        args = [*base, "--config", str(source), "--kl-weight", "0.5", "--output", str(out)]
        assert main(args) == 0
        assert read_rows(out)[0]["config_hash"] == expected.config_hash()
    # The pre-0.2 flags still work for one release: converted, with a one-line warning each.
    out = tmp_path / "old.jsonl"
    assert main([*base, "--forget", "0.25", "--decode", "argmax", "--output", str(out)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "redge-guidance generate: warning: `--forget 0.25` is deprecated and will be removed; "
        "use `--warm-start 0.75`.",
        "redge-guidance generate: warning: `--decode argmax` is deprecated and will be removed; "
        "use `--handoff argmax`.",
    ]
    new = GuidanceConfig(**{**CLI_GUIDANCE_DEFAULTS, "n_opt_steps": 2}).replace(
        warm_start=0.75, handoff="argmax"
    )
    assert read_rows(out)[0]["config_hash"] == new.config_hash()


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
    steps = ["--num-samples", "8", "--n-opt-steps", "3", "--lr", "1.0"]
    reward = ["--reward", "my_rewards_for_cli:love"]
    assert _generate("--prompt", "ROMEO:", *steps, *reward, "--output", str(out)) == 0
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
    rewards = ["--reward", "lexicon:vader=2", "--reward", "fluency:2=0.5"]
    assert _generate("--prompt", "ROMEO:", *rewards, "--output", str(out)) == 0
    (row,) = read_rows(out)
    terms = row["reward_terms"]
    assert set(terms) == {"lexicon:vader", "fluency:2"}
    assert row["reward"] == pytest.approx(
        2 * terms["lexicon:vader"] + 0.5 * terms["fluency:2"], abs=1e-4
    )
    assert terms["fluency:2"] < 0  # a log-likelihood


def test_huge_num_samples_streams_rows_as_batches_finish(tmp_path, monkeypatch):
    # 10**12 samples: the work is planned batch by batch and rows are written as batches finish,
    # so the first rows are on disk long before the end; Ctrl-C (here: the 5th pipeline call,
    # i.e. during batch 2, each batch sampling unguided then guided) keeps them.
    from pipelines import MaskedDiffusionPipeline

    real = MaskedDiffusionPipeline.__call__
    calls = []

    def counting(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MaskedDiffusionPipeline, "__call__", counting)
    out = tmp_path / "out.jsonl"
    args = ["generate", *TINY, "--prompt", "ROMEO:", "--num-samples", str(10**12)]
    args += ["--batch-size", "1", "--reward", "lexicon:vader", "--output", str(out), "--quiet"]
    assert main(args) == 130
    assert _keys(read_rows(out)) == [(0, 0), (0, 1)]


def _puzzle_file(path: Path, n: int, seed: int) -> list[str]:
    from redge_guidance.sudoku import data as sd

    pairs = sd.generate_puzzles(n, seed=seed, min_clues=38, max_clues=40)
    lines = [sd.grid_to_str(p) for p, _ in pairs]
    lines[1:1] = ["# a comment", "12345"]  # copied, and a bad line
    path.write_text("\n".join(lines) + "\n")
    return lines


def test_sudoku_writes_as_it_goes_and_resumes(tmp_path, capsys, monkeypatch):
    from redge_guidance.sudoku import SudokuSolver

    puzzles = tmp_path / "p.txt"
    lines = _puzzle_file(puzzles, 5, seed=7)
    base = ["sudoku", str(puzzles), "--steps", "4", "--n-opt-steps", "2", "--batch-size", "2"]
    full = tmp_path / "full.txt"
    assert main([*base, "--output", str(full), "--quiet"]) == 1  # one bad line
    ref = full.read_text().split("\n")[:-1]
    assert len(ref) == len(lines) and ref[1:3] == [
        "# a comment",
        "# error: expected 81 characters, got 5",
    ]
    assert "solved " in capsys.readouterr().err
    # Interrupted in the 2nd batch: the lines up to the 1st batch's last puzzle are on disk.
    real, solved = SudokuSolver.solve, []

    def counting(self, batch, **kwargs):
        if len(solved) == 1 and stop:
            raise KeyboardInterrupt
        solved.append(len(batch))
        return real(self, batch, **kwargs)

    monkeypatch.setattr(SudokuSolver, "solve", counting)
    part = tmp_path / "part.txt"
    stop = True
    assert main([*base, "--output", str(part), "--quiet"]) == 130
    assert part.read_text() == "".join(line + "\n" for line in ref[:4])  # puzzles 1-2, lines 1-4
    # --resume solves only the batches left (2 of 3) and ends with the uninterrupted output.
    with open(part, "a") as fh:
        fh.write(ref[4][:30])  # and a torn last line
    solved.clear()
    stop = False
    assert main([*base, "--output", str(part), "--resume", "--quiet"]) == 1
    assert solved == [2, 1]
    assert part.read_text() == full.read_text()
    capsys.readouterr()


def test_sudoku_quiet_prints_only_the_summary(tmp_path):
    # A fresh process: no progress bar at all (weight loading included), one summary line.
    puzzles = tmp_path / "p.txt"
    _puzzle_file(puzzles, 2, seed=8)
    out = subprocess.run(
        _cli("sudoku", str(puzzles), "--output", str(tmp_path / "s.txt"), "--steps", "4",
             "--n-opt-steps", "2", "--restarts", "0", "--quiet"),
        capture_output=True, text=True, env=_env(), timeout=300,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert out.stderr.splitlines() == [
        "line 3: expected 81 characters, got 5",
        out.stderr.splitlines()[1],
    ]
    assert out.stderr.splitlines()[1].startswith("solved 2/2 puzzles")
    assert "\r" not in out.stderr and "it/s" not in out.stderr


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
    assert _generate("--output", str(out)) == 0
    rows = read_rows(out)
    assert sorted(_keys(rows)) == [(0, 0), (1, 0)]
    assert all(-5 < r["reward"] < 5 and -5 < r["reward_unguided"] < 5 for r in rows)
    assert rows[0]["prompt"].startswith("ROMEO")


@pytest.mark.integration
def test_foreign_tokenizer_model_goes_through_the_bridge(tmp_path, capsys):
    # A user's masked LM with the full BERT-uncased tokenizer: MiniLM rewards read it through a
    # VocabularyBridge (an exact relabelling here), the lexicon reward directly.
    from transformers import AutoTokenizer

    from redge_guidance.text_rewards import find_minilm_dir

    tok = AutoTokenizer.from_pretrained(str(find_minilm_dir()))
    folder = tmp_path / "tiny-bert"
    tiny_bert(len(tok)).save_pretrained(folder)
    tok.save_pretrained(folder)
    out = tmp_path / "out.jsonl"
    model = ["--model", str(folder)]
    rewards = ["--reward", "sentiment:positive", "--reward", "lexicon:vader"]
    assert _generate(*model, "--prompt", "hello", *rewards, "--output", str(out)) == 0
    (row,) = read_rows(out)
    assert len(row["token_ids"]) == 8 and set(row["reward_terms"]) == {
        "sentiment:positive",
        "lexicon:vader",
    }
    too_long = ["--length", "60", "--output", str(tmp_path / "o2.jsonl")]
    assert main(["generate", *TINY, *model, *too_long]) == 2  # not quiet: the error is printed
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


def _default_sigint() -> None:
    """Ctrl-C's default action in the child: a shell that starts the test run in the background
    (`pytest ... &`, `nohup`) leaves SIGINT ignored, and children inherit that, so without this
    the child would never see the interrupt the test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_interrupt_then_sigkill_then_resume_completes_without_duplicates(tmp_path):
    out = tmp_path / "out.jsonl"
    args = ["generate", *TINY, "--prompt", "ROMEO:", "--prompt", "", "--prompt", "KING:",
            "--num-samples", "4", "--batch-size", "1", "--reward", "lexicon:vader",
            "--output", str(out), "--quiet"]  # fmt: skip
    # Ctrl-C: exit code 130, one line saying how to finish, only whole rows on disk.
    proc = subprocess.Popen(
        _cli(*args), env=_env(), stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint
    )
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
