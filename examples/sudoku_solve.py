"""Solve Sudoku puzzles from a file with the shipped masked-diffusion prior and reward guidance.

    python examples/sudoku_solve.py puzzles.txt --output solutions.txt

The same as `redge-guidance sudoku puzzles.txt --output solutions.txt` (this script runs that
sub-command, `redge_guidance/cli/sudoku.py`, from a checkout); `--help` lists the options.

Input: one puzzle per line, 81 characters, digits 1-9 for clues and `0` or `.` for blanks. Blank
lines and lines starting with `#` are skipped.

Output: exactly one line per input line, so that `paste puzzles.txt solutions.txt` lines them up:
- a puzzle line -> its 81-digit grid (the solver's answer; the summary says which were not solved);
- a bad puzzle line (wrong length, invalid characters, contradictory clues) -> `# error: REASON`,
  and `line N: REASON` on stderr; the other puzzles still run;
- a blank or `#` comment line -> copied unchanged.

The summary (stderr) gives solved / total, mean violations per grid and the wall time. Exit
status 0 when every puzzle line was valid, 1 when some line was bad (the others were still solved
and written), 2 for a usage error (missing file, bad option).
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
