"""The main job's defaults: `--search auto` (best-of-N without gradient guidance unless a guidance
flag is given), the judges (`--judge/--no-judge`: rows, printout, summary, when and why they are
off), and the unguided comparison of a search that does not guide (the model's own sample).

Tiny settings (length 8, 4 steps, 2 candidates) on the embedded model, the lexicon reward.
"""

from __future__ import annotations

import importlib.util
import math

import pytest

from redge_guidance.cli import build_parser, main
from redge_guidance.cli.io import UsageError, read_rows
from redge_guidance.cli.plan import AUTO_SEARCH, CLI_GUIDANCE_DEFAULTS, make_plan

needs_vader = pytest.mark.skipif(
    importlib.util.find_spec("vader") is None, reason="needs nltk-vader-sentiment (text extra)"
)
TINY = ["--length", "8", "--steps", "4", "--threads", "1", "--reward", "lexicon:vader"]
PROMPTS = ["--prompt", "JULIET: o", "--prompt", "ROMEO:"]


def _plan(*argv: str):
    args = build_parser().parse_args(["generate", "--reward", "lexicon:vader", *argv])
    return make_plan(args, "generate")


# ------------------------------------------------------------------------------- --search auto


def test_auto_search_is_best_of_n_without_guidance():
    plan = _plan()
    assert plan.args.search == "best-of-n" and plan.args.auto_search
    cfg = plan.search.config
    assert (
        (cfg.num_candidates, cfg.batch_size)
        == (32, 16)
        == (
            AUTO_SEARCH["particles"],
            AUTO_SEARCH["candidates_per_call"],
        )
    )
    assert plan.config.n_opt_steps == 0 and plan.args.compare
    # The other guidance defaults stay those of the CLI (shown in --help, used by --search none).
    assert plan.config.lr == CLI_GUIDANCE_DEFAULTS["lr"]
    # Search flags apply to it.
    assert _plan("--particles", "4").search.config.num_candidates == 4
    assert _plan("--search", "auto", "--keep-particles").search.keep_particles


@pytest.mark.parametrize(
    "flag",
    [
        ["--lr", "0.5"],
        ["--n-opt-steps", "3"],
        ["--estimator", "straight_through"],
        ["--n-steps", "4"],
    ],
)
def test_a_guidance_flag_makes_auto_the_former_default(flag):
    plan = _plan(*flag)
    assert plan.args.search == "none" and plan.search is None
    expected = {**CLI_GUIDANCE_DEFAULTS}
    if flag[0] == "--n-opt-steps":
        expected["n_opt_steps"] = 3
    assert plan.config.n_opt_steps == expected["n_opt_steps"]
    assert plan.config.kl_weight == CLI_GUIDANCE_DEFAULTS["kl_weight"]


def test_config_file_makes_auto_none_and_explicit_searches_are_unchanged(tmp_path):
    from redge_guidance.guidance import GuidanceConfig

    GuidanceConfig(n_opt_steps=3).to_json_file(tmp_path / "g.json")
    assert _plan("--config", str(tmp_path / "g.json")).search is None
    # `--search none` alone: the former default job, exactly.
    plain = _plan("--search", "none")
    assert plain.search is None and plain.config.n_opt_steps == CLI_GUIDANCE_DEFAULTS["n_opt_steps"]
    # An explicit `--search best-of-n` guides each candidate, with the config's 8 candidates.
    explicit = _plan("--search", "best-of-n")
    assert explicit.config.n_opt_steps == CLI_GUIDANCE_DEFAULTS["n_opt_steps"]
    assert explicit.search.config.num_candidates == 8
    # A search flag with gradient guidance and no search: refused as before.
    with pytest.raises(UsageError, match="`--particles` is a search setting but no search"):
        _plan("--lr", "0.5", "--particles", "4")


# ------------------------------------------------------------------------------- --judge


@needs_vader
def test_judges_on_by_default_off_when_asked_or_when_they_cannot_read_the_model(tmp_path):
    plan = _plan()
    assert plan.args.judge is True and plan.judge_off is None
    assert _plan("--no-judge").judge_off == "`--no-judge`"
    other = tmp_path / "other_model"
    other.mkdir()
    off = _plan("--model", str(other))
    assert off.args.judge is False and "reads the embedded model's token ids" in off.judge_off
    with pytest.raises(UsageError, match=r"`--judge`: the judge LM reads the embedded model"):
        _plan("--model", str(other), "--judge")
    assert _plan("--model", "embedded").judge_off is None


def test_judges_without_the_text_extra(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "vader" else real(name, *a)
    )
    args = ["generate", "--reward", "fluency", "--prompt", "a"]
    assert main([*args, "--judge"]) == 2
    err = capsys.readouterr().err
    assert "`--judge`: the VADER judge needs the `text` extra" in err
    assert "pip install 'redge-guidance[text]'" in err
    # By default: off, and the run says why (before any model loads).
    plan = make_plan(build_parser().parse_args(args), "generate")
    assert plan.args.judge is False and "pip install" in plan.judge_off


@needs_vader
def test_judged_rows_printout_and_summary(tmp_path, capsys):
    from transformers import AutoTokenizer

    from redge_guidance.text import judges

    out = tmp_path / "out.jsonl"
    argv = ["generate", *TINY, *PROMPTS, "--particles", "2", "--candidates-per-call", "2"]
    assert main([*argv, "--output", str(out), "--quiet"]) == 0
    rows = read_rows(out)
    tok = AutoTokenizer.from_pretrained(str(judges.JUDGE_LM_DIR))
    lm = judges.load_judge_lm()
    for r in rows:
        assert r["search"]["method"] == "best-of-n" and r["search"]["num_candidates"] == 2
        prompt = tok(r["prompt"], add_special_tokens=False)["input_ids"]
        for suffix in ("", "_unguided"):
            ids = r["token_ids" + suffix]
            ppl = judges.continuation_perplexity(lm, [prompt], [ids])[0].item()
            assert r["ppl" + suffix] == pytest.approx(ppl, rel=1e-4)
            assert r["vader" + suffix] == pytest.approx(
                judges.vader_compound([r["text" + suffix]])[0], abs=1e-4
            )
            assert -1 <= r["vader" + suffix] <= 1 and r["ppl" + suffix] > 1
    # stdout mode: what ran, the judges, one judges line per sample; the summary's columns.
    capsys.readouterr()
    assert main(argv) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith("guided: the best of 2 samples by lexicon:vader, no gradient")
    assert lines[0].endswith("unguided: the model's own sample, same seed")
    assert lines[1].startswith("judges (neither steered): VADER")
    judged = [x for x in lines if x.startswith("judges:   VADER ")]
    assert len(judged) == 2 and all("(unguided " in x and "perplexity" in x for x in judged)
    r0 = rows[0]
    assert f"VADER {r0['vader']:+.2f} (unguided {r0['vader_unguided']:+.2f})" in judged[0]
    summary = captured.err.splitlines()
    head = next(x for x in summary if "mean reward" in x)
    assert head.split()[-2:] == ["VADER", "perplexity"]
    guided = next(x for x in summary if x.startswith("guided "))
    mean_vader = sum(r["vader"] for r in rows) / len(rows)
    geo_ppl = math.exp(sum(math.log(r["ppl"]) for r in rows) / len(rows))
    assert guided.split()[-2:] == [f"{mean_vader:+.2f}", f"{geo_ppl:.1f}"]
    # --no-judge: no scores, and the run says the judges are off.
    assert main([*argv, "--no-judge"]) == 0
    captured = capsys.readouterr()
    assert "judges off: `--no-judge`." in captured.err and "VADER" not in captured.out


def test_a_search_without_guidance_is_compared_with_the_models_own_sample(tmp_path):
    # The auto search's unguided row is the plain sample of the same seed: exactly the unguided
    # row of a plain guided run (same batch, same seed).
    base = ["generate", *TINY, *PROMPTS, "--no-judge", "--quiet"]
    assert main([*base, "--particles", "3", "--output", str(tmp_path / "a.jsonl")]) == 0
    plain = ["--search", "none", "--n-opt-steps", "1", "--output", str(tmp_path / "b.jsonl")]
    assert main([*base, *plain]) == 0
    searched, guided = read_rows(tmp_path / "a.jsonl"), read_rows(tmp_path / "b.jsonl")
    for s, g in zip(searched, guided, strict=True):
        for key in ("text_unguided", "token_ids_unguided", "reward_unguided"):
            assert s[key] == g[key]
        assert s["reward"] >= s["reward_unguided"] - 1e-6 or s["text"] != s["text_unguided"]
    # The pick is the best of 3 by reward: never below the plain sample's reward on average.
    assert sum(s["reward"] for s in searched) >= sum(s["reward_unguided"] for s in searched)
