# ruff: noqa: E501 - one case per line reads best as a table
"""Bad input to `redge-guidance sudoku`: one row per case, run in-process.

Each row: the arguments after `sudoku` (`{tmp}` is the run's folder, holding `good.txt` with two
valid puzzles of 41 blanks), the one-line message's pieces (" ... " between them). Every case must
exit with status 2 and one line on stderr, before the prior loads (the CLI logs "loading the Sudoku
prior" on `redge_guidance.cli` right before loading it) and without creating or changing a file.
Add a case: add a row.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from redge_guidance.cli import main
from redge_guidance.sudoku import data as sd

from _support import read_only_folder, snapshot

OUT = ["--output", "{tmp}/out.txt"]
GOOD = "{tmp}/good.txt"

# (id, arguments, message pieces)
CASES = [
    # the puzzles file
    ("file-missing", ["{tmp}/missing.txt", *OUT], "puzzle file ... does not exist"),
    ("file-empty", ["{tmp}/empty.txt", *OUT], "holds no puzzle"),
    ("file-only-comments", ["{tmp}/comments.txt", *OUT], "holds no puzzle"),
    ("file-binary", ["{tmp}/binary.txt", *OUT], "is not a text file (binary data at byte"),
    ("file-not-utf8", ["{tmp}/latin1.txt", *OUT], "is not a text file"),
    ("file-is-a-folder", ["{tmp}", *OUT], "is a folder; pass a text file path"),
    # options, whatever the others say
    (
        "device-cuda-missing",
        [GOOD, *OUT, "--device", "cuda"],
        "`--device` 'cuda' but CUDA is not available here",
    ),
    ("device-unknown", [GOOD, *OUT, "--device", "toaster"], "`--device` 'toaster' is not a device"),
    (
        "n-opt-steps-negative",
        [GOOD, *OUT, "--n-opt-steps", "-3"],
        "`--n-opt-steps` must be an integer >= 0, got -3",
    ),
    (
        "no-prior-zero-steps",
        [GOOD, *OUT, "--no-prior", "--n-opt-steps", "0"],
        "`--no-prior` ... `--n-opt-steps` must be >= 1",
    ),
    (
        "estimator-unknown",
        [GOOD, *OUT, "--estimator", "nope"],
        "unknown `--estimator` 'nope'; valid: gumbel_softmax",
    ),
    (
        "estimator-unknown-unguided",
        [GOOD, *OUT, "--estimator", "nope", "--n-opt-steps", "0"],
        "unknown `--estimator` 'nope'",
    ),
    (
        "estimator-unknown-no-prior",
        [GOOD, *OUT, "--estimator", "nope", "--no-prior"],
        "unknown `--estimator` 'nope'",
    ),
    ("steps-zero", [GOOD, *OUT, "--steps", "0"], "--steps: expected an integer >= 1, got '0'"),
    (
        "steps-over-blanks",
        [GOOD, *OUT, "--steps", "60"],
        "`--steps` 60 is more than the 41 blank cells",
    ),
    (
        "restarts-negative",
        [GOOD, *OUT, "--restarts", "-1"],
        "--restarts: expected an integer >= 0, got '-1'",
    ),
    (
        "batch-size-zero",
        [GOOD, *OUT, "--batch-size", "0"],
        "--batch-size: expected an integer >= 1",
    ),
    ("threads-zero", [GOOD, *OUT, "--threads", "0"], "--threads: expected an integer >= 1"),
    ("output-missing", [GOOD], "the following arguments are required: --output"),
    (
        "bad-lines-and-bad-option",
        ["{tmp}/mixed.txt", *OUT, "--n-opt-steps", "-1"],
        "`--n-opt-steps` must be",
    ),
    (
        "temperature-negative",
        [GOOD, *OUT, "--temperature", "-1"],
        "`--temperature` must be a finite number >= 0, got -1.0",
    ),
    (
        "temperature-inf",
        [GOOD, *OUT, "--temperature", "inf"],
        "`--temperature` must be a finite number >= 0, got inf",
    ),
    (
        "pruning-without-backtrack",
        [GOOD, *OUT, "--pruning", "peers", "--no-backtrack"],
        "`--pruning` sets the backtracking search, got `--no-backtrack`",
    ),
    (
        "max-prior-calls-without-backtrack",
        [GOOD, *OUT, "--max-prior-calls", "5", "--no-backtrack"],
        "`--max-prior-calls` sets the backtracking search, got `--no-backtrack`",
    ),
    # search
    (
        "search-flag-without-search",
        [GOOD, *OUT, "--rounds", "2"],
        "`--rounds` is a search setting but no search was chosen",
    ),
    ("particles-0", [GOOD, *OUT, "--search", "smc", "--particles", "0"], "`--particles` must be"),
    (
        "smc-argmax",
        [GOOD, *OUT, "--search", "smc", "--unmasking", "random"],
        "got `--temperature 0` (argmax) ... Use `--temperature 1`",
    ),
    (
        "smc-guided-confidence",
        [GOOD, *OUT, "--search", "smc", "--temperature", "1"],
        "needs `--unmasking random`, got `--unmasking confidence`",
    ),
    (
        "smc-ranking-prior-random-order",
        [GOOD, *OUT, "--search", "smc", "--ranking", "prior", "--unmasking", "random"],
        "`--ranking prior` ranks the positions that confidence order commits, got `--unmasking "
        "random`",
    ),
    (
        "search-and-restarts",
        [GOOD, *OUT, "--search", "refine", "--restarts", "2"],
        "`--restarts` does not combine with `--search refine`",
    ),
    (
        "search-and-no-prior",
        [GOOD, *OUT, "--search", "best-of-n", "--no-prior"],
        "`--no-prior` does not combine with `--search best-of-n`",
    ),
    (
        "search-budget-below-one-unit",
        [GOOD, *OUT, "--search", "best-of-n", "--max-denoiser-forwards", "5"],
        "`--max-denoiser-forwards` 5 is less than one unit of `--search best-of-n`",
    ),
    # the output path
    ("output-is-a-folder", [GOOD, "--output", "{tmp}"], "is a folder; pass a file path"),
    (
        "output-parent-is-a-file",
        [GOOD, "--output", "{tmp}/afile/out.txt"],
        "is a file, not a folder",
    ),
    ("output-folder-read-only", [GOOD, "--output", "{tmp}/ro/out.txt"], "is not writable"),
    ("output-exists", [GOOD, "--output", "{tmp}/old.txt"], "exists; pass `--resume`"),
    (
        "resume-other-file",
        [GOOD, "--output", "{tmp}/old.txt", "--resume"],
        "`--resume`: line 1 of ... does not match",
    ),
    (
        "resume-and-overwrite",
        [GOOD, "--output", "{tmp}/old.txt", "--resume", "--overwrite"],
        "not both",
    ),
]


def _setup(run: Path, monkeypatch) -> None:
    pairs = sd.generate_puzzles(2, seed=5, min_clues=40, max_clues=40)
    (run / "good.txt").write_text("".join(sd.grid_to_str(p) + "\n" for p, _ in pairs))
    (run / "mixed.txt").write_text(sd.grid_to_str(pairs[0][0]) + "\n12345\n")  # one bad line
    (run / "empty.txt").write_text("")
    (run / "comments.txt").write_text("# nothing\n\n")
    (run / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (run / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (run / "afile").write_text("not a folder\n")
    (run / "old.txt").write_text("9" * 81 + "\n")
    read_only_folder(run / "ro", monkeypatch)


@pytest.mark.parametrize(("argv", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_sudoku_bad_input(argv, needle, tmp_path, capsys, caplog, monkeypatch):
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    run = tmp_path / "run"
    run.mkdir()
    _setup(run, monkeypatch)
    before = snapshot(run)
    caplog.set_level(logging.INFO, logger="redge_guidance.cli")
    assert main(["sudoku", *[a.format(tmp=run) for a in argv], "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    for piece in needle.split(" ... "):
        assert piece in err, err
    assert "Traceback" not in err
    assert not any("loading" in r.getMessage() for r in caplog.records)
    assert snapshot(run) == before  # nothing created, nothing changed
