"""Solve Sudoku puzzles from a file with the shipped masked-diffusion prior and reward guidance.

    python examples/sudoku_solve.py puzzles.txt --output solutions.txt

The same as `redge-guidance sudoku puzzles.txt --output solutions.txt`: this script runs that
sub-command (`redge_guidance/cli/sudoku.py`, where the input/output format and exit codes are
documented) from a checkout. `--help` lists the options.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from redge_guidance.cli import main as cli_main

    return cli_main(["sudoku", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
