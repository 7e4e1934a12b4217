"""The Sudoku solver: reward on the prior's token layout, guided solving with the shipped prior,
the no-prior mode, input errors, and the command-line example on a file with bad lines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from redge_guidance.sudoku import data as sd
from redge_guidance.sudoku import layout as sl
from redge_guidance.sudoku.data import PuzzleError
from redge_guidance.sudoku.solver import (
    DigitDenoiser,
    SudokuSolver,
    default_guidance,
    puzzles_to_tensor,
    solve_without_prior,
)

ROOT = Path(__file__).resolve().parents[1]


def easy_pairs(n: int, seed: int, clues: int = 46) -> list[tuple[list[int], list[int]]]:
    """`n` unique-solution puzzles with `clues` clues (generated here, seeded)."""
    return sd.generate_puzzles(n, seed=seed, min_clues=clues, max_clues=clues)


@pytest.fixture(scope="module")
def solver() -> SudokuSolver:
    # Shipped prior, default guidance, few denoising steps to stay fast on one CPU thread; no
    # search, so that the guided pass itself is what solves (tests/test_sudoku_search.py tests
    # the search).
    return SudokuSolver.from_pretrained(num_inference_steps=6, search="none")


# ----------------------------------------------------------------------------- reward


def test_reward_on_the_prior_layout_zero_negative_and_finite_gradient():
    reward = SudokuSolver(None, guidance=None).reward  # built as the solver builds it
    grids = torch.tensor(sd.generate_grids(3, seed=5))  # (3, 81) valid grids
    seqs = sl.encode_pairs(grids, grids)  # all clues given: (3, 163)
    x = torch.nn.functional.one_hot(seqs, sl.VOCAB_SIZE).float()
    assert reward(x).tolist() == [0.0, 0.0, 0.0]  # exactly 0 on solved grids

    bad = grids.clone()
    bad[0, 1] = bad[0, 0]  # repeated digit in row 1 (and its box)
    bad[1, 9] = bad[1, 0]  # repeated digit in column 1
    bad[2, 80] = bad[2, 70]  # repeated digit in the last box
    xb = torch.nn.functional.one_hot(sl.encode_pairs(grids, bad), sl.VOCAB_SIZE).float()
    assert (reward(xb) < 0).all()

    xs = torch.softmax(
        torch.randn(3, sl.SEQ_LEN, sl.VOCAB_SIZE, generator=torch.Generator().manual_seed(0)), -1
    )
    xs.requires_grad_(True)
    reward(xs).sum().backward()
    assert torch.isfinite(xs.grad).all() and xs.grad.abs().sum() > 0


def test_digit_denoiser_allows_digits_only():
    logits = DigitDenoiser(None)(torch.full((2, sl.SEQ_LEN), sl.MASK_ID))
    allowed = logits[0, 0] > torch.finfo(logits.dtype).min
    assert allowed.nonzero().flatten().tolist() == sl.DIGIT_TOKEN_IDS


# ----------------------------------------------------------------------------- solver


def test_shipped_prior_with_guidance_solves_easy_puzzles(solver):
    pairs = easy_pairs(4, seed=11)
    puzzles = [sd.grid_to_str(p).replace("0", ".") for p, _ in pairs]
    result = solver.solve(puzzles, generator=torch.Generator().manual_seed(0))
    assert result.solved == [True] * 4
    assert result.violations == [0] * 4
    assert result.solutions.tolist() == [s for _, s in pairs]  # unique solutions
    assert result.rewards.tolist() == [0.0] * 4


def test_solver_is_reproducible_with_a_seeded_generator():
    s = SudokuSolver.from_pretrained(
        guidance=default_guidance(n_opt_steps=3, num_relaxed_samples=2),
        num_inference_steps=3,
        decode="sample",
        search="none",
    )
    puzzles = torch.tensor([p for p, _ in easy_pairs(2, seed=12, clues=30)])
    a = s.solve(puzzles, generator=torch.Generator().manual_seed(3), batch_size=1)
    b = s.solve(puzzles, generator=torch.Generator().manual_seed(3), batch_size=1)
    assert torch.equal(a.solutions, b.solutions)
    assert all(a.consistent)  # clues are never changed


def test_restarts_only_re_solve_invalid_grids_and_never_make_them_worse():
    # The prior alone in 3 denoising steps with sampled commits: one pass leaves rule breaks.
    puzzles = torch.tensor([p for p, _ in easy_pairs(8, seed=15, clues=32)])
    kwargs = {"guidance": None, "decode": "sample", "num_inference_steps": 3, "search": "none"}
    one = SudokuSolver.from_pretrained(restarts=0, **kwargs).solve(
        puzzles, generator=torch.Generator().manual_seed(0)
    )
    more = SudokuSolver.from_pretrained(restarts=6, **kwargs).solve(
        puzzles, generator=torch.Generator().manual_seed(0)
    )
    assert 0 < sum(one.solved) < 8  # the first pass solved some, not all
    for i in range(8):
        assert more.violations[i] <= one.violations[i]
        if one.solved[i]:  # valid grids are kept as they were
            assert torch.equal(more.solutions[i], one.solutions[i])
    assert sum(more.solved) > sum(one.solved)
    with pytest.raises(ValueError, match="`restarts` must be an integer >= 0, got -1"):
        SudokuSolver(None, restarts=-1)


def test_no_prior_solves_easy_puzzles():
    pairs = easy_pairs(4, seed=13, clues=50)
    result = solve_without_prior(
        [p for p, _ in pairs], n_steps=600, generator=torch.Generator().manual_seed(0)
    )
    assert result.solved == [True] * 4
    assert result.solutions.tolist() == [s for _, s in pairs]


def test_bad_puzzles_raise_before_any_work():
    good = sd.grid_to_str(easy_pairs(1, seed=14)[0][0])
    with pytest.raises(PuzzleError, match=r"`puzzles\[1\]`.*expected 81 characters, got 5"):
        puzzles_to_tensor([good, "12345"])
    contradictory = "11" + good[2:]
    with pytest.raises(PuzzleError, match=r"`puzzles\[0\]`.*contradictory clues: digit 1 twice"):
        puzzles_to_tensor([contradictory])
    with pytest.raises(PuzzleError, match=r"`puzzles\[0\]`.*81 integers in 0..9"):
        puzzles_to_tensor([[10] * 81])
    with pytest.raises(ValueError, match=r"shape \(B, 81\)"):
        puzzles_to_tensor(torch.zeros(2, 80, dtype=torch.long))
    with pytest.raises(ValueError, match="Wrap a single puzzle in a list"):
        puzzles_to_tensor(good)
    s = SudokuSolver(None, guidance=None)
    with pytest.raises(ValueError, match="`batch_size` must be an integer >= 1, got 0"):
        s.solve([good], batch_size=0)
    with pytest.raises(ValueError, match="`unmasking` must be one of"):
        SudokuSolver(None, unmasking="left-to-right")
    with pytest.raises(ValueError, match="`path` must be a folder"):
        SudokuSolver.from_pretrained("/nonexistent/prior")


def test_old_order_keyword_warns_and_sets_the_unmasking():
    with pytest.warns(FutureWarning, match="renamed `unmasking`"):
        s = SudokuSolver(None, guidance=None, order="random")
    assert s.settings["unmasking"] == "random"
    assert s.pipeline.scheduler.config.unmasking == "random"
    assert SudokuSolver(None, guidance=None).pipeline.scheduler.config.unmasking == "confidence"
    with pytest.warns(FutureWarning), pytest.raises(ValueError, match="Pass only `unmasking=`"):
        SudokuSolver(None, unmasking="random", order="confidence")


# ----------------------------------------------------------------------------- command line


def test_cli_reports_bad_lines_and_solves_the_rest(tmp_path):
    pairs = easy_pairs(2, seed=15)
    good = [sd.grid_to_str(p) for p, _ in pairs]
    # Contradictory: copy a clue of some row into a blank of the same row.
    row = next(r for r in range(9) if 0 < good[0][9 * r : 9 * r + 9].count("0") < 9)
    cells = range(9 * row, 9 * row + 9)
    clue, blank = (next(k for k in cells if (good[0][k] == "0") == b) for b in (False, True))
    contradictory = list(good[0])
    contradictory[blank] = good[0][clue]
    lines = [
        good[0].replace("0", "."),
        "12345",  # wrong length
        "",  # blank: copied
        "# a comment: copied",
        good[1][:80] + "x",  # invalid character
        "".join(contradictory),  # contradictory clues
        good[1],
    ]
    src, dst = tmp_path / "puzzles.txt", tmp_path / "solutions.txt"
    src.write_text("\n".join(lines) + "\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "sudoku_solve.py"),
            str(src),
            "--output",
            str(dst),
            "--steps",
            "6",
            "--quiet",
            "--seed",
            "0",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr  # some lines were bad
    out = dst.read_text().split("\n")[:-1]
    assert len(out) == len(lines)  # aligned with the input, line for line
    assert out[0] == sd.grid_to_str(pairs[0][1]) and out[6] == sd.grid_to_str(pairs[1][1])
    assert out[1] == "# error: expected 81 characters, got 5"
    assert out[2] == "" and out[3] == "# a comment: copied"
    assert out[4] == "# error: invalid characters 'x'; use digits 1-9 and 0 or . for blanks"
    assert out[5].startswith("# error: contradictory clues: digit")
    assert "line 2: expected 81 characters, got 5" in proc.stderr
    assert "line 5: invalid characters" in proc.stderr
    assert "line 6: contradictory clues" in proc.stderr
    assert "solved 2/2 puzzles" in proc.stderr


def test_sudoku_subcommand_usage_errors_exit_2_before_any_work(tmp_path, capsys):
    from redge_guidance.cli import main

    assert main(["sudoku", str(tmp_path / "missing.txt"), "--output", "x.txt"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "puzzle file" in err[0] and "does not exist" in err[0]
    (tmp_path / "p.txt").write_text("." * 81 + "\n")
    assert main(["sudoku", str(tmp_path / "p.txt"), "--output", "x.txt", "--restarts", "-1"]) == 2
    assert "--restarts: expected an integer >= 0, got '-1'" in capsys.readouterr().err
    assert not (tmp_path / "x.txt").exists()
