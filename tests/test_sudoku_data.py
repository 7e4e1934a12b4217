import random

import pytest
import torch

from redge_guidance.sudoku import data as sd
from redge_guidance.sudoku import layout as sl


def test_grids_are_valid_and_distinct():
    grids = sd.generate_grids(50, seed=1)
    assert all(sd.is_valid_grid(g) for g in grids)
    assert len({tuple(g) for g in grids}) == 50


def test_generation_is_seeded():
    assert sd.generate_grids(5, seed=7) == sd.generate_grids(5, seed=7)
    assert sd.generate_grids(5, seed=7) != sd.generate_grids(5, seed=8)


@pytest.mark.parametrize("clues", [24, 32, 40])
def test_puzzles_have_unique_solution_and_match_grid(clues):
    rng = random.Random(clues)
    grid = sd.generate_grid(rng)
    puzzle = sd.generate_puzzle(grid, clues, rng)
    assert sum(1 for d in puzzle if d) >= clues
    assert all(p in (0, g) for p, g in zip(puzzle, grid, strict=True))
    assert sd.count_solutions(puzzle) == 1
    assert sd.solve(puzzle) == grid


def test_count_solutions_detects_multiple_and_none():
    grid = sd.generate_grid(random.Random(0))
    # a Sudoku with the first two digits' positions in two rows blanked out can have 2 solutions;
    # the empty grid certainly has many
    assert sd.count_solutions([0] * 81) == 2
    bad = list(grid)
    bad[1] = bad[0]  # duplicate in row 1
    assert sd.count_solutions(bad) == 0


def test_splits_are_disjoint():
    splits = sd.make_splits(30, 10, 10, seed=3)
    sets = {k: {tuple(g) for g in v} for k, v in splits.items()}
    assert sets["train"].isdisjoint(sets["validation"])
    assert sets["train"].isdisjoint(sets["test"])
    assert sets["validation"].isdisjoint(sets["test"])


def test_augmentation_preserves_validity_and_is_seeded():
    grids = torch.tensor(sd.generate_grids(20, seed=2))
    a = sd.augment_grids(grids, generator=torch.Generator().manual_seed(0))
    b = sd.augment_grids(grids, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert all(sd.is_valid_grid(g.tolist()) for g in a)
    assert (a != grids).any()


def test_violations_counts_duplicates():
    grid = sd.generate_grid(random.Random(4))
    assert sd.violations(grid) == 0
    bad = list(grid)
    bad[0] = bad[1]  # one duplicate in the row, plus in column / box possibly
    assert sd.violations(bad) > 0
    blank = list(grid)
    blank[0] = 0  # a missing digit counts
    assert sd.violations(blank) > 0


@pytest.mark.parametrize(
    "line, reason",
    [
        ("123", "expected 81 characters, got 3"),
        ("x" + "0" * 80, "invalid characters 'x'"),
        ("11" + "0" * 79, "digit 1 twice in row 1"),
    ],
)
def test_parse_errors_name_the_reason(line, reason):
    with pytest.raises(sd.PuzzleError, match=reason):
        sd.parse_puzzle(line)


def test_parse_file_reports_bad_lines_and_keeps_good(tmp_path):
    good = "".join(str(d) for d in sd.generate_grid(random.Random(0)))
    path = tmp_path / "p.txt"
    path.write_text(f"{good}\n# comment\n\nabc\n{good.replace('1', '.')}\n")
    rows = sd.parse_puzzle_file(str(path))
    assert [n for n, _ in rows] == [1, 4, 5]
    assert isinstance(rows[0][1], sd.Puzzle) and isinstance(rows[2][1], sd.Puzzle)
    assert isinstance(rows[1][1], sd.PuzzleError)


def test_layout_round_trip():
    pairs = sd.generate_puzzles(3, seed=0, min_clues=30, max_clues=30)
    puzzles = torch.tensor([p for p, _ in pairs])
    sols = torch.tensor([s for _, s in pairs])
    x = sl.encode_puzzles(puzzles)
    assert x.shape == (3, sl.SEQ_LEN)
    assert ((x == sl.MASK_ID).sum(1) == (puzzles == 0).sum(1)).all()
    fixed = sl.fixed_positions(puzzles)
    assert not (fixed & (x == sl.MASK_ID)).any()
    clean = sl.encode_pairs(puzzles, sols)
    assert torch.equal(sl.decode_solutions(clean), sols)
    tok = sl.build_tokenizer()
    ids = tok("[SEP]1.2".replace(".", "0"), add_special_tokens=False)["input_ids"]
    assert ids == [sl.SEP_ID, sl.DIGIT_OFFSET + 1, sl.DIGIT_OFFSET, sl.DIGIT_OFFSET + 2]


def test_minimal_puzzles_are_minimal_unique_and_deterministic():
    from redge_guidance.sudoku.data import (
        generate_minimal_puzzles,
        generate_puzzles,
        is_minimal,
        solve,
    )

    pairs = generate_minimal_puzzles(4, seed=11)
    assert pairs == generate_minimal_puzzles(4, seed=11)
    for puzzle, grid in pairs:
        assert is_minimal(puzzle) and solve(puzzle) == grid
        assert 17 <= sum(1 for d in puzzle if d) <= 32
    # A 40-clue puzzle of the ordinary generator keeps removable clues: not minimal.
    puzzle, _ = generate_puzzles(1, seed=3, min_clues=40, max_clues=40)[0]
    assert not is_minimal(puzzle)
