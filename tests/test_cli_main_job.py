"""What the main job shows: the judges (`--judge/--no-judge`: rows, printout, summary, when and why
they are off), and the unguided comparison of a search that does not guide (the model's own
sample of the same seed).

Tiny settings (length 8, 4 steps, 1-2 inner steps, 2-3 candidates) on the embedded model, the
lexicon reward.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from redge_guidance.cli import build_parser, main
from redge_guidance.cli.io import UsageError, read_rows
from redge_guidance.cli.plan import make_plan

needs_vader = pytest.mark.skipif(
    importlib.util.find_spec("vader") is None or importlib.util.find_spec("textblob") is None,
    reason="needs nltk-vader-sentiment and textblob (text extra)",
)
TINY = ["--length", "8", "--steps", "4", "--threads", "1", "--reward", "lexicon:vader"]
PROMPTS = ["--prompt", "JULIET: o", "--prompt", "ROMEO:"]
BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _plan(*argv: str):
    args = build_parser().parse_args(["generate", "--reward", "lexicon:vader", *argv])
    return make_plan(args, "generate")


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


def test_judges_without_textblob(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "textblob" else real(name, *a),
    )
    args = ["generate", "--reward", "fluency", "--prompt", "a"]
    assert main([*args, "--judge"]) == 2
    err = capsys.readouterr().err
    assert "`--judge`: the Pattern judge needs the `text` extra" in err
    assert "`pip install textblob`" in err


@needs_vader
@pytest.mark.parametrize("search", [[], ["--search", "best-of-n", "--particles", "2"]])
def test_judged_rows_printout_and_summary(tmp_path, capsys, search):
    from transformers import AutoTokenizer

    from redge_guidance.text import judges

    out = tmp_path / "out.jsonl"
    argv = ["generate", *TINY, *PROMPTS, "--n-opt-steps", "1", *search]
    assert main([*argv, "--output", str(out), "--quiet"]) == 0
    rows = read_rows(out)
    tok = AutoTokenizer.from_pretrained(str(judges.JUDGE_LM_DIR))
    lm = judges.load_judge_lm()
    for r in rows:
        prompt = tok(r["prompt"], add_special_tokens=False)["input_ids"]
        for suffix in ("", "_unguided"):
            ids = r["token_ids" + suffix]
            ppl = judges.continuation_perplexity(lm, [prompt], [ids])[0].item()
            assert r["ppl" + suffix] == pytest.approx(ppl, rel=1e-4)
            assert r["vader" + suffix] == pytest.approx(
                judges.vader_compound([r["text" + suffix]])[0], abs=1e-4
            )
            assert r["pattern" + suffix] == pytest.approx(
                judges.pattern_polarity([r["text" + suffix]])[0], abs=1e-4
            )
            assert -1 <= r["vader" + suffix] <= 1 and r["ppl" + suffix] > 1
            assert -1 <= r["pattern" + suffix] <= 1
    # stdout mode: what ran, the judges, one judges line per sample; the summary's columns.
    capsys.readouterr()
    assert main(argv) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    if search:
        assert lines[0].startswith(
            "guided: the best of 2 samples by lexicon:vader, each with redge"
        )
        assert lines[0].endswith("unguided: the same search without guidance")
    else:
        assert lines[0].startswith("guided: redge guidance (1 Adam step of lr 1 per denoising")
        assert lines[0].endswith("toward lexicon:vader; unguided: the same seed without guidance")
    assert lines[1].startswith("judges, none steered: VADER = compound sentiment")
    assert "Pattern = its polarity under TextBlob's Pattern lexicon" in lines[1]
    judged = [x for x in lines if x.startswith("judges:   VADER ")]
    assert len(judged) == 2 and all("(unguided " in x and "perplexity" in x for x in judged)
    r0 = rows[0]
    assert f"VADER {r0['vader']:+.2f} (unguided {r0['vader_unguided']:+.2f})" in judged[0]
    assert f"Pattern {r0['pattern']:+.2f} (unguided {r0['pattern_unguided']:+.2f})" in judged[0]
    assert f"perplexity {r0['ppl']:.1f} (unguided {r0['ppl_unguided']:.1f})" in judged[0]
    summary = captured.err.splitlines()
    head = next(x for x in summary if "mean reward" in x)
    assert head.split()[-3:] == ["VADER", "Pattern", "perplexity"]
    for side, suffix in (("guided", ""), ("unguided", "_unguided")):
        line = next(x for x in summary if x.startswith(side + " "))
        mean_vader = sum(r["vader" + suffix] for r in rows) / len(rows)
        mean_pattern = sum(r["pattern" + suffix] for r in rows) / len(rows)
        geo_ppl = math.exp(sum(math.log(r["ppl" + suffix]) for r in rows) / len(rows))
        expected = [f"{mean_vader:+.2f}", f"{mean_pattern:+.2f}", f"{geo_ppl:.1f}"]
        assert line.split()[-3:] == expected
    # --no-judge: no scores, and the run says the judges are off.
    assert main([*argv, "--no-judge"]) == 0
    captured = capsys.readouterr()
    assert "judges off: `--no-judge`." in captured.err and "VADER" not in captured.out
    assert main([*argv, "--no-judge", "--output", str(tmp_path / "b.jsonl"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""  # --quiet --no-judge: nothing to say
    assert not {"vader", "pattern", "ppl"} & set(read_rows(tmp_path / "b.jsonl")[0])


def test_a_search_without_guidance_is_compared_with_the_models_own_sample(tmp_path):
    # Best-of-N without guidance is compared with the plain sample of the same seed: exactly the
    # unguided row of a plain guided run (same batch, same seed).
    base = ["generate", *TINY, *PROMPTS, "--no-judge", "--quiet"]
    searched = ["--search", "best-of-n", "--particles", "3", "--n-opt-steps", "0"]
    assert main([*base, *searched, "--output", str(tmp_path / "a.jsonl")]) == 0
    plain = ["--search", "none", "--n-opt-steps", "1", "--output", str(tmp_path / "b.jsonl")]
    assert main([*base, *plain]) == 0
    searched, guided = read_rows(tmp_path / "a.jsonl"), read_rows(tmp_path / "b.jsonl")
    for s, g in zip(searched, guided, strict=True):
        for key in ("text_unguided", "token_ids_unguided", "reward_unguided"):
            assert s[key] == g[key]
        assert s["reward"] >= s["reward_unguided"] - 1e-6 or s["text"] != s["text_unguided"]
    # The pick is the best of 3 by reward: never below the plain sample's reward on average.
    assert sum(s["reward"] for s in searched) >= sum(s["reward_unguided"] for s in searched)


def _main_job_script():
    """`benchmarks/main_job.py` as a module (it imports `_common` from its folder)."""
    sys.path.append(str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("bench_main_job", BENCH / "main_job.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


def test_committed_main_job_benchmark_is_what_its_script_renders():
    # docs/cli.md's table of settings comes from benchmarks/results/main_job.md.
    module = _main_job_script()
    result = json.loads((BENCH / "results" / "main_job.json").read_text())
    assert module.markdown(result) == (BENCH / "results" / "main_job.md").read_text()
    assert all(result["unguided_identical"].values())  # one unguided sample per seed and batch


def test_rows_judged_before_pattern_print_without_it():
    # A JSONL written before the Pattern judge (resumed, or read back) has `vader` and `ppl` only.
    from redge_guidance.cli.report import Summary, format_row

    row = {"prompt_id": 0, "sample_id": 0, "prompt": "A:", "text": "b", "reward": 0.5}
    row.update(text_unguided="c", reward_unguided=0.1, vader=0.25, vader_unguided=-0.5)
    row.update(ppl=90.0, ppl_unguided=80.0)
    judges_line = format_row(row, compare=True).splitlines()[1]
    assert judges_line == (
        "judges:   VADER +0.25 (unguided -0.50), perplexity 90.0 (unguided 80.0)"
    )
    new = format_row(dict(row, pattern=0.4, pattern_unguided=0.0), compare=True)
    assert "VADER +0.25 (unguided -0.50), Pattern +0.40 (unguided +0.00), perplexity" in new
    summary = Summary()
    summary.add(row)
    guided = next(x for x in summary.format(1, 1.0, None, 1).splitlines() if x.startswith("guided"))
    assert guided.split()[-3:] == ["+0.25", "-", "90.0"]


def test_main_job_judges_agreement():
    module = _main_job_script()
    vader, pattern = [0.5, 0.2, -0.3, 0.0], [0.4, 0.0, 0.1, 0.2]
    a = module.agreement(vader, pattern, 1.0)
    assert (a["n"], a["both"], a["vader_only"], a["pattern_only"]) == (4, 0.25, 0.25, 0.5)
    mv, mp = sum(vader) / 4, sum(pattern) / 4
    cov = sum((v - mv) * (p - mp) for v, p in zip(vader, pattern, strict=True))
    norm = math.sqrt(sum((v - mv) ** 2 for v in vader) * sum((p - mp) ** 2 for p in pattern))
    assert a["pearson"] == pytest.approx(cov / norm)
    neg = module.agreement(vader, pattern, -1.0)  # toward negative: only -0.3 is on target
    assert (neg["both"], neg["vader_only"], neg["pattern_only"]) == (0.0, 0.25, 0.0)
    assert math.isnan(module.agreement([0.1, 0.1], [0.2, 0.3], 1.0)["pearson"])  # flat judge
