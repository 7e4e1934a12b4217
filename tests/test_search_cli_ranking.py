"""`redge-guidance sudoku --search smc --ranking prior`: guided SMC on the solver's confidence
order, and the refusals around it (run in-process)."""

from __future__ import annotations

import pytest

from redge_guidance.cli import main
from redge_guidance.cli.search import SearchSettings, UsageError, check_search
from redge_guidance.search import SMCConfig
from redge_guidance.sudoku import data as sd


@pytest.fixture
def puzzles(tmp_path):
    pairs = sd.generate_puzzles(2, seed=5, min_clues=40, max_clues=40)
    path = tmp_path / "good.txt"
    path.write_text("".join(sd.grid_to_str(p) + "\n" for p, _ in pairs))
    return path


def _error(capsys) -> str:
    return capsys.readouterr().err.strip()


def test_guided_smc_on_confidence_is_refused_with_the_ranking_fix(puzzles, tmp_path, capsys):
    argv = ["sudoku", str(puzzles), "--output", str(tmp_path / "out.txt"), "--search", "smc"]
    assert main([*argv, "--temperature", "1"]) == 2
    err = _error(capsys)
    assert "needs `--unmasking random`, got `--unmasking confidence`" in err
    assert "Use `--ranking prior`" in err
    assert not (tmp_path / "out.txt").exists()


def test_ranking_without_a_search_is_refused(puzzles, tmp_path, capsys):
    argv = ["sudoku", str(puzzles), "--output", str(tmp_path / "out.txt"), "--ranking", "prior"]
    assert main(argv) == 2
    assert "`--ranking prior` applies to `--search`" in _error(capsys)


def test_hosts_without_the_flag_are_not_told_to_use_it():
    settings = SearchSettings(config=SMCConfig(num_particles=2), budget=None, keep_particles=False)
    common = {"guided": True, "handoff": "logits", "argmax_flag": None, "steps": 4, "rows": 1}
    with pytest.raises(UsageError) as info:
        check_search(settings, unmasking="confidence", **common)
    assert "--ranking" not in str(info.value)
    check_search(settings, unmasking="confidence", ranking="prior", **common)  # accepted


def test_guided_smc_ranked_by_the_prior_solves_from_the_shell(puzzles, tmp_path):
    out = tmp_path / "out.txt"
    argv = ["sudoku", str(puzzles), "--output", str(out), "--search", "smc", "--ranking", "prior"]
    argv += ["--temperature", "1", "--particles", "2", "--steps", "3", "--n-opt-steps", "2"]
    # `search` itself refuses guided SMC unless the solver's scheduler now ranks by the prior
    assert main([*argv, "--quiet"]) == 0
    rows = out.read_text().splitlines()
    assert len(rows) == 2 and all(len(r) == 81 and r.isdigit() for r in rows)


# ------------------------------------------------------------------------------------ generate


def test_generate_guided_smc_on_confidence_order_ranked_by_the_prior(tmp_path, capsys):
    from redge_guidance.cli.io import read_rows

    base = ["generate", "--prompt", "ROMEO:", "--num-samples", "1", "--length", "4"]
    base += ["--steps", "2", "--n-opt-steps", "1", "--search", "smc", "--particles", "2"]
    base += ["--unmasking", "confidence", "--no-compare", "--no-judge", "--quiet"]
    assert main([*base, "--output", str(tmp_path / "refused.jsonl")]) == 2
    assert "Use `--ranking prior`" in _error(capsys)

    rows = []
    for name in ("a.jsonl", "b.jsonl"):
        out = tmp_path / name
        assert main([*base, "--ranking", "prior", "--output", str(out)]) == 0
        rows.append(read_rows(out))
    assert len(rows[0]) == 1 and rows[0][0]["token_ids"] == rows[1][0]["token_ids"]  # seeded
    assert rows[0][0]["run_hash"] == rows[1][0]["run_hash"]


def test_generate_ranking_prior_needs_confidence_order(tmp_path, capsys):
    argv = ["generate", "--prompt", "ROMEO:", "--ranking", "prior", "--output", str(tmp_path / "x")]
    assert main(argv) == 2
    assert "`--ranking prior` ranks the positions that confidence order commits" in _error(capsys)
    assert not (tmp_path / "x").exists()
