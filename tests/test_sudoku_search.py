"""The Sudoku search: the rules as tensor operations, the backtracking search through the prior,
and its options on `SudokuSolver`. Tiny budgets and few puzzles; the shipped prior where the test
is about what it ranks."""

from __future__ import annotations

from dataclasses import asdict
from types import SimpleNamespace

import pytest
import torch

from redge_guidance.sudoku import SudokuSolver
from redge_guidance.sudoku import data as sd
from redge_guidance.sudoku import layout as sl
from redge_guidance.sudoku._defaults import SOLVER
from redge_guidance.sudoku.prior import DigitDenoiser
from redge_guidance.sudoku.rules import (
    clashing_cells,
    forced_digits,
    is_dead_end,
    legal_digits,
    propagate,
)
from redge_guidance.sudoku.search import BacktrackSearch

GRID = torch.tensor([sd.generate_grids(1, seed=3)[0]])  # (1, 81) a valid solution grid


def _holes(grid: torch.Tensor, cells: list[int]) -> torch.Tensor:
    out = grid.clone()
    out[:, cells] = 0
    return out


# ----------------------------------------------------------------------------- rules


def test_legal_digits_rule_out_exactly_the_digits_of_the_peers():
    grid = _holes(GRID, [0])  # one blank: its only legal digit is the solution's
    legal = legal_digits(grid)[0, 0]
    assert legal.nonzero().flatten().tolist() == [int(GRID[0, 0]) - 1]
    empty = torch.zeros(1, 81, dtype=torch.long)
    assert legal_digits(empty).all()  # nothing placed: every digit legal everywhere
    one = empty.clone()
    one[0, 40] = 5  # the centre cell
    legal = legal_digits(one)[0]
    peers = [
        c
        for c in range(81)
        if c != 40 and (c // 9 == 4 or c % 9 == 4 or c // 27 == 1 and c % 9 // 3 == 1)
    ]
    assert sorted((~legal[:, 4]).nonzero().flatten().tolist()) == peers  # 5 illegal in 20 peers
    assert legal[40, 4]  # the cell itself does not rule out its own digit


def test_clashes_forced_cells_and_dead_ends():
    bad = torch.zeros(1, 81, dtype=torch.long)
    bad[0, [0, 5, 30]] = 3  # row 1 holds 3 twice; the third 3 clashes with nothing
    assert clashing_cells(bad)[0].nonzero().flatten().tolist() == [0, 5]
    assert is_dead_end(bad).tolist() == [True]
    assert not clashing_cells(GRID).any() and is_dead_end(GRID).tolist() == [False]

    naked = _holes(GRID, [0])
    assert forced_digits(naked, "peers")[0, 0] == GRID[0, 0]
    # a blank with every digit held by a peer and no clash anywhere: a dead end for both levels
    dead = torch.zeros(1, 81, dtype=torch.long)
    dead[0, 1:9] = torch.arange(1, 9)  # row 1: 1..8 after the blank first cell
    dead[0, 27] = 9  # 9 lower in the first column
    assert not clashing_cells(dead).any()
    assert is_dead_end(dead, "peers").tolist() == [True]
    assert is_dead_end(dead, "units").tolist() == [True]


def test_propagation_fills_only_the_solution_on_partial_solution_grids():
    g = torch.Generator().manual_seed(0)
    grids = torch.tensor(sd.generate_grids(8, seed=4))  # (8, 81)
    for pruning in ("peers", "units"):
        part = torch.where(torch.rand(grids.shape, generator=g) < 0.4, grids, 0)
        out = propagate(part, part == 0, pruning)
        assert ((out == grids) | (out == 0)).all()  # never a wrong digit
        assert ((out > 0).sum() >= (part > 0).sum()) and not is_dead_end(out, pruning).any()
    # `free` is respected: nothing is filled where it is False
    part = _holes(GRID, [0, 1, 2])
    assert torch.equal(propagate(part, torch.zeros_like(part, dtype=torch.bool)), part)


# ----------------------------------------------------------------------------- search


class _Adversary(torch.nn.Module):
    """A denoiser that prefers, at every cell, the digits of the cell's row that are already
    placed: illegal digits get the largest logits."""

    def forward(self, input_ids: torch.Tensor):
        B = input_ids.shape[0]
        grid = sl.decode_solutions(input_ids)  # (B, 81)
        logits = torch.zeros(B, sl.SEQ_LEN, sl.VOCAB_SIZE)
        rows = grid.view(B, 9, 9)
        for d in range(1, 10):
            in_row = (rows == d).any(dim=-1, keepdim=True).expand(B, 9, 9).reshape(B, 81)
            logits[:, sl.SOLUTION_START :, sl.DIGIT_OFFSET + d] = 10.0 * in_row.float()
        return SimpleNamespace(logits=logits)


def test_pruning_never_commits_an_illegal_digit():
    pairs = sd.generate_puzzles(3, seed=21, min_clues=30, max_clues=30)
    puzzles = torch.tensor([p for p, _ in pairs])
    search = BacktrackSearch(DigitDenoiser(_Adversary()), pruning="peers", max_prior_calls=200)
    probs = search._score(puzzles, None)  # (3, 81, 9) what the search ranks
    legal = legal_digits(puzzles) & (puzzles == 0).unsqueeze(-1)
    assert (probs[~legal] == 0).all()  # illegal digits, though the adversary's favourites
    assert torch.allclose(probs.sum(-1)[puzzles == 0], torch.ones(1), atol=1e-5)
    out = search.run(puzzles)
    assert out.found.all()
    assert out.grids.tolist() == [s for _, s in pairs]  # unique solutions
    assert not clashing_cells(out.grids).any()


def test_search_keeps_the_clues_and_counts_its_calls():
    pairs = sd.generate_minimal_puzzles(2, seed=31)
    puzzles = torch.tensor([p for p, _ in pairs])
    out = BacktrackSearch(DigitDenoiser(None), max_prior_calls=64).run(puzzles)
    assert out.found.all() and out.grids.tolist() == [s for _, s in pairs]
    assert ((puzzles == 0) | (out.grids == puzzles)).all()
    assert (out.prior_calls <= 64).all() and (out.backtracks >= 0).all()
    # a budget of one prior call: some puzzle is left, and the count never exceeds the budget
    short = BacktrackSearch(DigitDenoiser(None), pruning="peers", max_prior_calls=1).run(puzzles)
    assert (short.prior_calls <= 1).all() and not short.found.all()
    assert ((puzzles == 0) | (short.grids == puzzles)).all()


def test_a_puzzle_without_solution_exhausts_the_search():
    dead = torch.zeros(1, 81, dtype=torch.long)
    dead[0, 1:9] = torch.arange(1, 9)
    dead[0, 27] = 9
    out = BacktrackSearch(DigitDenoiser(None), max_prior_calls=8).run(dead)
    assert out.found.tolist() == [False] and out.prior_calls.tolist() == [0]


# ----------------------------------------------------------------------------- solver


@pytest.fixture(scope="module")
def hard_puzzle() -> tuple[list[int], list[int]]:
    # A minimal puzzle (seeded) that one unguided pass of the shipped prior gets wrong.
    return sd.generate_minimal_puzzles(1, seed=31)[0]


def test_search_solves_a_puzzle_the_single_pass_fails(hard_puzzle):
    puzzle, solution = hard_puzzle
    options = {"guidance": None, "restarts": 0}
    gen = torch.Generator().manual_seed(0)
    single = SudokuSolver.from_pretrained(search="none", **options).solve([puzzle], generator=gen)
    assert single.solved == [False]
    solver = SudokuSolver.from_pretrained(**options)  # search="backtrack", the default
    result = solver.solve([puzzle], generator=torch.Generator().manual_seed(0))
    assert result.solved == [True] and result.solutions.tolist() == [solution]
    assert result.consistent == [True]  # the clues are kept
    assert result.extras["search"]["found"] == [True]
    assert 1 <= result.extras["search"]["prior_calls"][0] <= 64  # the prior ranked its moves
    assert result.rewards.tolist() == [0.0]


def test_seeded_runs_repeat_with_the_guided_pass_behind_the_search(hard_puzzle):
    # One prior call per puzzle: the search leaves the puzzle, the guided pass takes it over.
    from redge_guidance.sudoku import default_guidance

    puzzles = [hard_puzzle[0], *(p for p, _ in sd.generate_puzzles(2, seed=22, min_clues=30))]
    solver = SudokuSolver.from_pretrained(
        guidance=default_guidance(n_opt_steps=2, num_relaxed_samples=2),
        num_inference_steps=3,
        restarts=1,
        max_prior_calls=1,
        pruning="peers",
        decode="sample",
    )
    a = solver.solve(puzzles, generator=torch.Generator().manual_seed(5))
    b = solver.solve(puzzles, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.solutions, b.solutions) and a.extras["search"] == b.extras["search"]
    assert not all(a.extras["search"]["found"])  # the pass ran for some puzzle
    assert all(a.consistent)  # clues kept, by the search and by the pass
    assert a.extras["settings"]["search"] == "backtrack"


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"search": "dfs"}, r"`search` must be one of \['none', 'backtrack'\], got 'dfs'\. Use"),
        ({"pruning": "rows"}, r"`pruning` must be one of \['peers', 'units'\], got 'rows'\. Use"),
        ({"max_prior_calls": 0}, r"`max_prior_calls` must be an integer >= 1, got 0\. Use e\.g\."),
        ({"max_prior_calls": 2.5}, r"`max_prior_calls` must be an integer >= 1, got 2\.5"),
        ({"max_prior_calls": True}, r"`max_prior_calls` must be an integer >= 1, got True"),
        ({"search_guidance": "yes"}, r"`search_guidance` must be a bool, got 'yes'\. Use False"),
    ],
)
def test_bad_search_options_name_the_argument_and_the_fix(options, needle):
    with pytest.raises(ValueError, match=needle):
        SudokuSolver(None, guidance=None, **options)


# ----------------------------------------------------------------------------- command line


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--no-prior", "--pruning", "peers"], "`--pruning` does not combine with `--no-prior`"),
        (["--no-prior", "--no-backtrack"], "`--backtrack/--no-backtrack` does not combine with"),
        (["--search", "smc", "--max-prior-calls", "4"], "`--max-prior-calls` does not combine"),
        (["--max-prior-calls", "0"], "--max-prior-calls: expected an integer >= 1, got '0'"),
        (["--pruning", "rows"], "--pruning: invalid choice: 'rows'"),
    ],
)
def test_cli_backtrack_flags_refuse_what_they_cannot_do(tmp_path, capsys, flags, needle):
    from redge_guidance.cli import main

    (tmp_path / "p.txt").write_text(sd.grid_to_str(sd.generate_puzzles(1, seed=2)[0][0]) + "\n")
    out = tmp_path / "x.txt"
    assert main(["sudoku", str(tmp_path / "p.txt"), "--output", str(out), *flags]) == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()


def test_cli_search_flags_reach_the_solver(tmp_path, monkeypatch):
    from redge_guidance.cli import main
    from redge_guidance.sudoku import solver as solver_module

    seen = {}
    real = solver_module.SudokuSolver.from_pretrained

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(solver_module.SudokuSolver, "from_pretrained", spy)
    pairs = sd.generate_minimal_puzzles(1, seed=31)
    (tmp_path / "p.txt").write_text(sd.grid_to_str(pairs[0][0]) + "\n")
    out = tmp_path / "x.txt"
    argv = ["sudoku", str(tmp_path / "p.txt"), "--output", str(out), "--quiet"]
    assert main([*argv, "--pruning", "units", "--max-prior-calls", "40", "--n-opt-steps", "0"]) == 0
    assert (seen["search"], seen["pruning"], seen["max_prior_calls"]) == ("backtrack", "units", 40)
    assert out.read_text().split("\n")[0] == sd.grid_to_str(pairs[0][1])
    assert main([*argv, "--overwrite", "--no-backtrack", "--n-opt-steps", "0"]) in (0, 1)
    assert seen["search"] == "none"
    # The flags not given take the solver's own defaults (`sudoku._defaults` is their one source).
    assert (seen["pruning"], seen["max_prior_calls"]) == (SOLVER.pruning, SOLVER.max_prior_calls)
    assert (seen["num_inference_steps"], seen["restarts"]) == (
        SOLVER.num_inference_steps,
        SOLVER.restarts,
    )


def test_cli_unset_search_flags_take_the_solver_defaults_and_help_quotes_them():
    from redge_guidance.cli import build_parser
    from redge_guidance.cli.sudoku import backtrack_options

    parser = build_parser()
    args = parser.parse_args(["sudoku", "p.txt", "--output", "x.txt"])
    default = asdict(SOLVER)
    assert default["search"] != "none"  # else `--backtrack` / `--no-backtrack` would not differ
    assert backtrack_options(args) == {
        name: default[name] for name in ("search", "pruning", "max_prior_calls")
    }
    given = ["--no-backtrack", "--pruning", "peers", "--max-prior-calls", "7"]
    args = parser.parse_args(["sudoku", "p.txt", "--output", "x.txt", *given])
    assert backtrack_options(args) == {"search": "none", "pruning": "peers", "max_prior_calls": 7}
    # `--help` states the defaults in words: they must be the solver's.
    sub = next(a for a in parser._actions if a.choices and "sudoku" in a.choices)
    helps = {a.dest: a.help for a in sub.choices["sudoku"]._actions}
    assert f"default {default['num_inference_steps']} " in helps["steps"]
    assert f"default {default['restarts']};" in helps["restarts"]
    assert f"'{default['pruning']}' (default)" in helps["pruning"]
    assert f"(default {default['max_prior_calls']})" in helps["max_prior_calls"]


def test_backtrack_search_validates_its_options():
    with pytest.raises(ValueError, match=r"`pruning` must be one of \['peers', 'units'\], got 'x'"):
        BacktrackSearch(DigitDenoiser(None), pruning="x")
    with pytest.raises(ValueError, match=r"`max_prior_calls` must be an integer >= 1, got -2"):
        BacktrackSearch(DigitDenoiser(None), max_prior_calls=-2)


def test_guided_search_nodes_solve_and_repeat(hard_puzzle):
    from redge_guidance.sudoku import default_guidance

    guidance = default_guidance(n_opt_steps=2, num_relaxed_samples=2)
    solver = SudokuSolver(None, guidance=guidance, search_guidance=True, restarts=0)
    runs = [solver.solve([hard_puzzle[0]], generator=torch.Generator().manual_seed(1))]
    runs.append(solver.solve([hard_puzzle[0]], generator=torch.Generator().manual_seed(1)))
    assert runs[0].solutions.tolist() == [hard_puzzle[1]] and runs[0].extras["search"]["found"]
    assert runs[0].extras["search"] == runs[1].extras["search"]
