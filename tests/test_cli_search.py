"""`redge-guidance generate --search ...`: flags from the search configs, one end-to-end run per
method on the embedded model, the recorded fields, determinism, `--keep-particles`, resume after
an interruption, and `--search none` leaving plain runs unchanged. Bad input: the rows of
tests/test_bad_inputs_generate.py.

Tiny settings: 2 prompts, length 8, 2-4 steps, 2 inner guidance steps, K = 2-3, the lexicon
reward (no reward model to load).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math

import pytest

from redge_guidance.cli import main
from redge_guidance.cli.io import read_rows, row_key
from redge_guidance.cli.search import BUDGET_FLAGS, CLI_SET_FIELDS, METHODS, SEARCH_FLAGS
from redge_guidance.search import Budget

TINY = ["--length", "8", "--n-opt-steps", "2", "--threads", "1", "--quiet"]
BASE = ["generate", *TINY, "--reward", "lexicon:vader", "--batch-size", "2"]
METHOD_ARGS = {
    "best-of-n": ["--search", "best-of-n", "--particles", "3", "--candidates-per-call", "2"],
    "smc": ["--search", "smc", "--particles", "3", "--resample", "residual", "--pick", "reward"],
    "refine": ["--search", "refine", "--rounds", "1", "--remask-fraction", "0.5"],
}
TIMING = ("seconds", "seconds_unguided")


def _untimed(row: dict) -> dict:
    """A row without its clock readings (the only fields that differ between equal runs)."""
    out = {k: v for k, v in row.items() if k not in TIMING}
    for key in ("spent", "spent_unguided"):
        if key in out:
            out[key] = {k: v for k, v in out[key].items() if not k.endswith("seconds")}
    return out


def _run(tmp_path, name: str, *args: str) -> list[dict]:
    out = tmp_path / name
    assert main([*BASE, "--output", str(out), *args]) == 0
    return read_rows(out)


def _parser_actions() -> dict[str, argparse.Action]:
    from redge_guidance.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {a.option_strings[0]: a for a in sub.choices["generate"]._actions if a.option_strings}


def test_search_flags_come_from_the_config_fields():
    actions = _parser_actions()
    assert actions["--search"].choices == ("none", "best-of-n", "smc", "refine")
    exposed = {(m, f) for _, fields, _ in SEARCH_FLAGS for m, f in fields.items()}
    for method, cls in METHODS.items():
        names = {f.name for f in dataclasses.fields(cls)}
        # Every field is a flag, or set by the CLI itself (`--keep-particles`).
        assert {f for m, f in exposed if m == method} | (names & CLI_SET_FIELDS) == names
    assert {name for _, name, _ in BUDGET_FLAGS} == {f.name for f in dataclasses.fields(Budget)}
    for flag, fields, _ in SEARCH_FLAGS:
        action = actions[flag]
        assert action.default is None  # unset: the config's default
        for method, name in fields.items():
            field = next(f for f in dataclasses.fields(METHODS[method]) if f.name == name)
            if isinstance(field.default, bool):
                assert isinstance(action, argparse.BooleanOptionalAction)
            elif isinstance(field.default, str):
                assert field.default in action.choices
            elif field.default is not None:
                assert action.type is type(field.default)
    assert actions["--resample"].choices == ("multinomial", "systematic", "residual")
    assert actions["--refine-steps"].type is int  # `int | None`
    assert actions["--max-search-seconds"].type is float
    assert "(default: smc 8, best-of-n 8)" in actions["--particles"].help


@pytest.mark.parametrize("method", ["best-of-n", "smc", "refine"])
def test_each_method_end_to_end_records_its_fields_and_is_deterministic(tmp_path, method):
    steps = 2 if method == "refine" else 4
    args = [*METHOD_ARGS[method], "--steps", str(steps)]
    rows = _run(tmp_path, "a.jsonl", *args)
    assert sorted(map(row_key, rows)) == [(0, 0), (1, 0)]
    for r in rows:
        assert len(r["token_ids"]) == 8 and 4 not in r["token_ids"]  # no [MASK] left
        assert r["search"]["method"] == method and r["kl"] is None and r["budget"] is None
        assert r["reward_unguided"] is not None and r["text_unguided"]  # --compare: on
        spent = r["spent"]
        assert set(spent) == {
            "denoiser_forwards",
            "reward_forwards",
            "reward_backwards",
            "wall_seconds",
            "cpu_seconds",
        }
        assert spent["reward_backwards"] > 0  # guided (the hook's pathwise inner steps)
        assert r["spent_unguided"]["reward_backwards"] == 0
        assert r["budget_exhausted"] is False
        if method == "best-of-n":
            assert r["search"]["num_candidates"] == 3 and r["search"]["batch_size"] == 2
            assert spent["denoiser_forwards"] == 3 * steps  # per prompt: N candidates x steps
            assert "weight" not in r and "ess_history" not in r
        elif method == "smc":
            assert r["search"]["num_particles"] == 3 and r["search"]["scheme"] == "residual"
            assert r["search"]["pick"] == "reward"
            assert spent["denoiser_forwards"] == 3 * steps  # K particles x steps
            assert 0 < r["weight"] <= 1
            assert len(r["ess_history"]) == steps
            assert all(1 - 1e-6 <= e <= 3 + 1e-6 for e in r["ess_history"])
            assert all(0 <= s < steps - 1 for s in r["resampled_at"])  # never after the last
            assert math.isfinite(r["log_evidence"])
        else:
            assert r["search"]["rounds"] == 1 and r["search"]["fraction"] == 0.5
            assert len(r["round_rewards"]) == 2 and r["round_rewards"][-1] == r["reward"]
            assert r["round_rewards"][1] >= r["round_rewards"][0]  # keep_best
            assert spent["denoiser_forwards"] in (steps, 2 * steps)  # first pass (+ the round)
    # Same seed, same rows.
    again = _run(tmp_path, "b.jsonl", *args)
    assert [_untimed(r) for r in again] == [_untimed(r) for r in rows]
    # --compare is the same search with the same seed and no guidance.
    plain = _run(tmp_path, "c.jsonl", *args, "--n-opt-steps", "0", "--no-compare")
    for r, p in zip(sorted(rows, key=row_key), sorted(plain, key=row_key), strict=True):
        assert (r["text_unguided"], r["reward_unguided"]) == (p["text"], p["reward"])
        assert r["spent_unguided"]["denoiser_forwards"] == p["spent"]["denoiser_forwards"]


def test_keep_particles_rows_weights_and_the_pick(tmp_path):
    smc = [*METHOD_ARGS["smc"][:-2], "--steps", "3"]  # pick by weight
    picks = _run(tmp_path, "picks.jsonl", *smc, "--no-compare")
    rows = _run(tmp_path, "particles.jsonl", *smc, "--keep-particles")
    assert sorted(map(row_key, rows)) == [(p, 0, j) for p in range(2) for j in range(3)]
    for pid in range(2):
        mine = [r for r in rows if r["prompt_id"] == pid]
        assert abs(sum(r["weight"] for r in mine) - 1) < 1e-5  # normalised per prompt
        assert sum(r["picked"] for r in mine) == 1
        picked = next(r for r in mine if r["picked"])
        assert picked["weight"] == max(r["weight"] for r in mine)
        plain = next(r for r in picks if r["prompt_id"] == pid)
        assert picked["token_ids"] == plain["token_ids"] and picked["weight"] == plain["weight"]
        assert "reward_unguided" in picked and picked["reward_unguided"] is None  # compare: off
        assert picked["ess_history"] == plain["ess_history"]
    # Each particle row carries its share: summing over the file gives the batch's total.
    total = sum(r["spent"]["denoiser_forwards"] for r in rows)
    assert total == 2 * 3 * 3  # B x K x steps


def test_resume_after_an_interruption_regenerates_unfinished_batches(tmp_path):
    args = [*METHOD_ARGS["smc"], "--steps", "3", "--keep-particles", "--batch-size", "1"]
    full = _run(tmp_path, "full.jsonl", *args)
    # A killed run: batch 0 complete, one particle row of batch 1, then a torn line.
    out = tmp_path / "part.jsonl"
    lines = (tmp_path / "full.jsonl").read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:4]) + lines[4][:40])
    assert main([*BASE, "--output", str(out), *args, "--resume"]) == 0
    resumed = read_rows(out)
    assert len(resumed) == len(full) == 6  # no duplicates
    assert sorted(map(_untimed, resumed), key=row_key) == sorted(map(_untimed, full), key=row_key)
    # Other search settings are another run.
    assert main([*BASE, "--output", str(out), *args, "--particles", "2", "--resume"]) == 2


def test_search_none_keeps_plain_rows_and_hash(tmp_path, capsys):
    plain = _run(tmp_path, "plain.jsonl", "--steps", "2")
    none = _run(tmp_path, "none.jsonl", "--steps", "2", "--search", "none")
    assert [_untimed(r) for r in none] == [_untimed(r) for r in plain]
    assert list(none[0]) == list(plain[0])  # same fields, same order
    assert not {"search", "spent", "weight", "particle"} & set(plain[0])
    # stdout mode prints each particle with its weight.
    argv = [*BASE, "--steps", "2", "--prompt", "JULIET:", *METHOD_ARGS["smc"][:4]]
    assert main([*argv, "--keep-particles"]) == 0
    out = capsys.readouterr().out
    heads = [line for line in out.splitlines() if line.startswith("--- ")]
    assert sum("particle" in h for h in heads) == 3 and "weight" in out
    assert "unguided:" not in out
    assert json.dumps(none[0], ensure_ascii=False)  # still plain JSON


# ------------------------------------------------------------------------------------- sudoku


def _puzzles(path, n: int = 2) -> None:
    from redge_guidance.sudoku import data as sd

    pairs = sd.generate_puzzles(n, seed=5, min_clues=40, max_clues=40)
    path.write_text("".join(sd.grid_to_str(p) + "\n" for p, _ in pairs))


SUDOKU_ARGS = {
    "smc": ["--particles", "2", "--unmasking", "random", "--temperature", "1"],
    "best-of-n": ["--particles", "2"],
    "refine": ["--rounds", "1"],
}


@pytest.mark.parametrize("method", ["best-of-n", "smc", "refine"])
def test_sudoku_search_end_to_end_deterministic_and_resumable(tmp_path, capsys, method):
    puzzles = tmp_path / "p.txt"
    _puzzles(puzzles)
    base = ["sudoku", str(puzzles), "--steps", "3", "--n-opt-steps", "2", "--batch-size", "1"]
    args = [*base, "--search", method, *SUDOKU_ARGS[method], "--quiet"]
    out = tmp_path / "a.txt"
    assert main([*args, "--output", str(out)]) == 0
    assert f"search {method}: " in capsys.readouterr().err  # what it spent
    lines = out.read_text().splitlines()
    clues = puzzles.read_text().splitlines()
    assert len(lines) == 2
    for grid, puzzle in zip(lines, clues, strict=True):
        assert len(grid) == 81 and grid.isdigit() and "0" not in grid
        assert all(c in ("0", g) for c, g in zip(puzzle, grid, strict=True))  # clues kept
    # Same seed, same grids; a run killed after its first batch resumes to the same file.
    again = tmp_path / "b.txt"
    assert main([*args, "--output", str(again)]) == 0
    assert again.read_text() == out.read_text()
    part = tmp_path / "part.txt"
    part.write_text(lines[0] + "\n" + lines[1][:30])
    assert main([*args, "--output", str(part), "--resume"]) == 0
    assert part.read_text() == out.read_text()


def test_conflicting_cells_marks_the_cells_that_break_a_rule():
    import torch

    from redge_guidance.cli.sudoku_search import conflicting_cells
    from redge_guidance.sudoku import data as sd
    from redge_guidance.sudoku import layout as sl

    grid = sd.generate_grids(1, seed=0)[0]  # a valid solved grid
    solved = torch.tensor([grid])
    seqs = sl.encode_pairs(solved * 0, solved)  # (1, 163): no clue, every cell generated
    assert not conflicting_cells(seqs).any()
    broken = list(grid)
    broken[0] = grid[1]  # cell 0 now repeats cell 1's digit in its row
    broken[80] = 0  # and the last cell holds no digit
    seqs = sl.encode_pairs(solved * 0, torch.tensor([broken]))
    seqs[0, sl.SOLUTION_START + 80] = sl.MASK_ID
    flagged = conflicting_cells(seqs)[0, sl.SOLUTION_START :].nonzero().flatten().tolist()
    peers = {c for unit in sd.units() if 0 in unit for c in unit}
    expected = {0, 80} | {c for c in peers if c != 0 and broken[c] == broken[0]}
    assert set(flagged) == expected and 1 in expected
    assert not conflicting_cells(seqs)[0, : sl.SOLUTION_START].any()  # clue half never


def test_sudoku_refine_remasks_the_broken_cells(tmp_path, capsys):
    """One sampled step of the prior alone breaks rules; refinement rounds that remask the
    broken cells repair most of them (seed 0, 3 puzzles: 7.3 -> 0.7 violations per grid)."""
    from redge_guidance.sudoku import data as sd

    puzzles = tmp_path / "p.txt"
    _puzzles(puzzles, 3)
    base = ["sudoku", str(puzzles), "--steps", "1", "--n-opt-steps", "0", "--temperature", "1"]
    base += ["--unmasking", "random", "--search", "refine", "--quiet"]
    violations = []
    for rounds in ("0", "3"):
        out = tmp_path / f"r{rounds}.txt"
        assert main([*base, "--rounds", rounds, "--output", str(out)]) == 0
        violations.append(sum(sd.violations(g) for g in out.read_text().splitlines()))
    err = capsys.readouterr().err
    assert "search refine: 3 denoiser forwards" in err  # rounds 0: the first pass only
    assert violations[0] >= 6 and violations[1] < violations[0] / 2
