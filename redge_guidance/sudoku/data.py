"""Sudoku data made here: valid grids, unique-solution puzzles, splits, parsing.

Pure Python (bitmask backtracking with the most-constrained-cell rule) plus torch for the
symmetry augmentation used in training. Everything random takes a seed or a
`random.Random` / `torch.Generator`, so one seed reproduces a data set.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

__all__ = [
    "ALL_DIGITS",
    "Puzzle",
    "PuzzleError",
    "augment_grids",
    "count_solutions",
    "generate_grid",
    "generate_grids",
    "generate_puzzle",
    "generate_minimal_puzzles",
    "generate_puzzles",
    "grid_to_str",
    "is_minimal",
    "is_valid_grid",
    "make_splits",
    "parse_puzzle",
    "parse_puzzle_file",
    "solve",
    "violations",
]

ALL_DIGITS = 0x3FE  # bits 1..9 set

# Peers of each cell: the 20 other cells in its row, column and box.
_UNITS: list[list[int]] = (
    [[9 * r + c for c in range(9)] for r in range(9)]
    + [[9 * r + c for r in range(9)] for c in range(9)]
    + [
        [9 * (3 * br + r) + 3 * bc + c for r in range(3) for c in range(3)]
        for br in range(3)
        for bc in range(3)
    ]
)
_PEERS: list[tuple[int, ...]] = [
    tuple(sorted({p for u in _UNITS if i in u for p in u} - {i})) for i in range(81)
]


def units() -> list[list[int]]:
    """The 27 units (9 rows, 9 columns, 9 boxes) as lists of cell indices (row-major)."""
    return [list(u) for u in _UNITS]


def _candidates(grid: list[int], i: int) -> int:
    used = 0
    for p in _PEERS[i]:
        used |= 1 << grid[p]
    return ALL_DIGITS & ~used


def _search(grid: list[int], limit: int, rng: random.Random | None, out: list[list[int]]) -> int:
    """Backtracking with the most constrained empty cell first; counts solutions up to `limit`."""
    best, best_cands, best_n = -1, 0, 10
    for i in range(81):
        if grid[i] == 0:
            cands = _candidates(grid, i)
            n = bin(cands).count("1")
            if n < best_n:
                best, best_cands, best_n = i, cands, n
                if n <= 1:
                    break
    if best < 0:
        out.append(list(grid))
        return 1
    if best_n == 0:
        return 0
    digits = [d for d in range(1, 10) if best_cands >> d & 1]
    if rng is not None:
        rng.shuffle(digits)
    found = 0
    for d in digits:
        grid[best] = d
        found += _search(grid, limit - found, rng, out)
        if found >= limit:
            break
    grid[best] = 0
    return found


def count_solutions(puzzle: list[int] | str, limit: int = 2) -> int:
    """Number of solutions of `puzzle` (81 digits, 0 = blank), counted up to `limit`."""
    grid = _as_cells(puzzle)
    if not _clues_consistent(grid):
        return 0
    return _search(grid, limit, None, [])


def solve(puzzle: list[int] | str) -> list[int] | None:
    """One solution of `puzzle` by backtracking, or None when it has none."""
    grid = _as_cells(puzzle)
    if not _clues_consistent(grid):
        return None
    out: list[list[int]] = []
    _search(grid, 1, None, out)
    return out[0] if out else None


def generate_grid(rng: random.Random) -> list[int]:
    """A uniformly shuffled valid solution grid (randomised backtracking from an empty grid)."""
    grid = [0] * 81
    out: list[list[int]] = []
    _search(grid, 1, rng, out)
    return out[0]


def generate_grids(n: int, seed: int) -> list[list[int]]:
    """`n` distinct valid grids from `seed`."""
    rng = random.Random(seed)
    seen: set[tuple[int, ...]] = set()
    grids = []
    while len(grids) < n:
        g = generate_grid(rng)
        if tuple(g) not in seen:
            seen.add(tuple(g))
            grids.append(g)
    return grids


def generate_puzzle(grid: list[int], num_clues: int, rng: random.Random) -> list[int]:
    """Remove clues from `grid` in random order while the solution stays unique.

    Stops at `num_clues` clues, or earlier (more clues) when no further cell can be removed
    without losing uniqueness, so the result always has a unique solution.
    """
    if not 17 <= num_clues <= 81:
        raise ValueError(f"`num_clues` must be in [17, 81], got {num_clues}.")
    puzzle = list(grid)
    order = list(range(81))
    rng.shuffle(order)
    clues = 81
    for i in order:
        if clues <= num_clues:
            break
        d, puzzle[i] = puzzle[i], 0
        if _search(list(puzzle), 2, None, []) == 1:
            clues -= 1
        else:
            puzzle[i] = d
    return puzzle


def generate_puzzles(
    n: int, seed: int, min_clues: int = 24, max_clues: int = 40
) -> list[tuple[list[int], list[int]]]:
    """`n` (puzzle, solution) pairs with unique solutions; clue counts uniform in the range."""
    if not 17 <= min_clues <= max_clues <= 81:
        raise ValueError(
            f"Need 17 <= `min_clues` <= `max_clues` <= 81, got {min_clues} and {max_clues}."
        )
    rng = random.Random(seed)
    pairs = []
    for grid in generate_grids(n, seed=rng.randrange(2**62)):
        pairs.append((generate_puzzle(grid, rng.randint(min_clues, max_clues), rng), grid))
    return pairs


def generate_minimal_puzzles(n: int, seed: int) -> list[tuple[list[int], list[int]]]:
    """`n` (puzzle, solution) pairs of *minimal* puzzles: every clue is needed (removing any one
    makes the solution ambiguous). Greedy removal in random order reaches them; typically 21-27
    clues, the hardest puzzles this generator makes. Deterministic given `seed`."""
    rng = random.Random(seed)
    return [
        (generate_puzzle(grid, 17, rng), grid) for grid in generate_grids(n, rng.randrange(2**62))
    ]


def is_minimal(puzzle: list[int] | str) -> bool:
    """Whether `puzzle` has a unique solution and no clue can be removed keeping it unique."""
    cells = _as_cells(puzzle)
    if count_solutions(cells) != 1:
        return False
    for i, d in enumerate(cells):
        if d:
            cells[i] = 0
            unique = count_solutions(cells) == 1
            cells[i] = d
            if unique:
                return False
    return True


def make_splits(n_train: int, n_val: int, n_test: int, seed: int = 0) -> dict[str, list[list[int]]]:
    """Disjoint train / validation / test grid sets (no grid appears in two splits)."""
    grids = generate_grids(n_train + n_val + n_test, seed)
    return {
        "train": grids[:n_train],
        "validation": grids[n_train : n_train + n_val],
        "test": grids[n_train + n_val :],
    }


def is_valid_grid(grid: list[int] | str) -> bool:
    """True when every cell holds 1..9 and no unit repeats a digit."""
    return violations(grid) == 0 and all(1 <= d <= 9 for d in _as_cells(grid))


def violations(grid: list[int] | str) -> int:
    """Sum over the 27 units and 9 digits of max(count - 1, 0); non-digits count as duplicates."""
    cells = _as_cells(grid)
    total = 0
    for u in _UNITS:
        counts = [0] * 10
        for i in u:
            counts[cells[i]] += 1
        total += sum(max(c - 1, 0) for c in counts[1:]) + counts[0]
    return total


def grid_to_str(grid: list[int]) -> str:
    return "".join(str(d) for d in grid)


def _as_cells(grid: list[int] | str) -> list[int]:
    if isinstance(grid, str):
        return [0 if ch == "." else int(ch) for ch in grid]
    return list(grid)


def _clues_consistent(grid: list[int]) -> bool:
    for u in _UNITS:
        seen = 0
        for i in u:
            d = grid[i]
            if d:
                if seen >> d & 1:
                    return False
                seen |= 1 << d
    return True


class PuzzleError(ValueError):
    """A puzzle line that cannot be solved as given; the message says why."""


@dataclass(frozen=True)
class Puzzle:
    cells: tuple[int, ...]  # 81 digits, 0 = blank

    @property
    def num_clues(self) -> int:
        return sum(1 for d in self.cells if d)


def parse_puzzle(line: str) -> Puzzle:
    """Parse one 81-character puzzle (`0` or `.` for blanks); raise `PuzzleError` if invalid."""
    text = line.strip()
    if len(text) != 81:
        raise PuzzleError(f"expected 81 characters, got {len(text)}")
    bad = sorted({ch for ch in text if ch not in "0123456789."})
    if bad:
        raise PuzzleError(
            f"invalid characters {''.join(bad)!r}; use digits 1-9 and 0 or . for blanks"
        )
    cells = [0 if ch == "." else int(ch) for ch in text]
    for k, u in enumerate(_UNITS):
        seen: dict[int, int] = {}
        for i in u:
            d = cells[i]
            if d and d in seen:
                kind = ("row", "column", "box")[k // 9]
                raise PuzzleError(
                    f"contradictory clues: digit {d} twice in {kind} {k % 9 + 1} "
                    f"(cells {seen[d] + 1} and {i + 1})"
                )
            if d:
                seen[d] = i
    return Puzzle(tuple(cells))


def parse_puzzle_file(path: str) -> list[tuple[int, Puzzle | PuzzleError]]:
    """Parse a file of puzzles, one per line (blank lines and `#` comments skipped).

    Returns `(line_number, Puzzle or PuzzleError)` pairs so that bad lines are reported and
    the rest still run.
    """
    out: list[tuple[int, Puzzle | PuzzleError]] = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                out.append((n, parse_puzzle(line)))
            except PuzzleError as err:
                out.append((n, err))
    return out


def augment_grids(grids: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random validity-preserving symmetries of `grids` (`(B, 81)` digits 1..9).

    Digit relabelling, row permutations inside bands, band permutations, the same for columns
    and stacks, and transposition; each grid gets its own random transform. Runs on the
    grids' device.
    """
    B = grids.shape[0]
    dev = grids.device
    g = grids.view(B, 9, 9)

    def perm(n: int) -> torch.Tensor:  # (B, n) independent random permutations
        return torch.rand(B, n, generator=generator, device=dev).argsort(dim=1)

    def line_perm() -> torch.Tensor:  # (B, 9): permute bands, then lines inside each band
        bands = perm(3)
        inner = torch.stack([perm(3) for _ in range(3)], dim=1)  # (B, 3, 3)
        return (3 * bands.unsqueeze(-1) + inner).reshape(B, 9)

    rows, cols = line_perm(), line_perm()
    g = torch.gather(g, 1, rows.unsqueeze(-1).expand(B, 9, 9))
    g = torch.gather(g, 2, cols.unsqueeze(1).expand(B, 9, 9))
    flip = torch.rand(B, generator=generator, device=dev) < 0.5
    g = torch.where(flip.view(B, 1, 1), g.transpose(1, 2), g)
    relabel = torch.cat([torch.zeros(B, 1, dtype=torch.long, device=dev), perm(9) + 1], dim=1)
    return torch.gather(relabel, 1, g.reshape(B, 81).long())
