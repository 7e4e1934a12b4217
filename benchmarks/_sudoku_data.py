"""The puzzles of `benchmarks/sudoku.py`: the test set (checked disjoint from the prior's
training and validation grids and from the tuning puzzles) and the tuning puzzles."""

from __future__ import annotations

import argparse
import sys
import time

import _common
import torch

TUNING_SEED = 777  # seed of the tuning puzzles (docs/sudoku.md); never in the test set


def test_set(args) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """`(puzzles, solutions)` `(n, 81)` and facts about them (cached under `args.cache`)."""
    from redge_guidance.sudoku import data as sd

    args.cache.mkdir(parents=True, exist_ok=True)
    path = (
        args.cache
        / f"test_{args.data_seed}_{args.n_puzzles}_{args.min_clues}_{args.max_clues}.json"
    )
    cached = _common.load_json(path)
    if isinstance(cached, dict) and "facts" in cached:  # generated and checked before
        pairs, facts = cached["pairs"], cached["facts"]
    else:
        t0 = time.time()
        pairs = sd.generate_puzzles(args.n_puzzles, args.data_seed, args.min_clues, args.max_clues)
        print(f"generated {len(pairs)} test puzzles in {time.time() - t0:.0f} s", file=sys.stderr)
        splits = sd.make_splits(2000, 64, 0, seed=0)  # the prior's training / validation grids
        seen = {tuple(g) for g in splits["train"] + splits["validation"]}
        tuning = {
            tuple(s)
            for _, s in sd.generate_puzzles(64, TUNING_SEED, args.min_clues, args.max_clues)
        }
        overlap_train = sum(tuple(s) in seen for _, s in pairs)
        overlap_tuning = sum(tuple(s) in tuning for _, s in pairs)
        if overlap_train or overlap_tuning:
            raise SystemExit(
                f"test grids overlap the training/validation grids ({overlap_train}) or the tuning "
                f"puzzles ({overlap_tuning}); choose another --data-seed"
            )
        clues = [sum(1 for d in p if d) for p, _ in pairs]
        facts = {
            "n_puzzles": len(pairs),
            "data_seed": args.data_seed,
            "clues": [args.min_clues, args.max_clues],
            "mean_clues": round(sum(clues) / len(clues), 2),
            "unique_solutions": "by construction (backtracking count == 1 after every removal)",
            "disjoint_from": "2000 training + 64 validation grids of make_splits(2000, 64, 0, "
            f"seed=0) and the 64 tuning puzzles (seed {TUNING_SEED}); checked, 0 shared grids",
        }
        _common.save_json(path, {"pairs": pairs, "facts": facts}, indent=None)
    puzzles = torch.tensor([p for p, _ in pairs])
    solutions = torch.tensor([s for _, s in pairs])
    return puzzles, solutions, facts


def tuning_puzzles(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    """The 128 tuning puzzles and their solutions, `(128, 81)` each (cached)."""
    from redge_guidance.sudoku import data as sd

    args.cache.mkdir(parents=True, exist_ok=True)
    path = args.cache / f"tuning_{TUNING_SEED}_128_{args.min_clues}_{args.max_clues}.json"
    pairs = _common.load_json(path)
    if pairs is None:
        pairs = sd.generate_puzzles(128, TUNING_SEED, args.min_clues, args.max_clues)
        _common.save_json(path, pairs, indent=None)
    return torch.tensor([p for p, _ in pairs]), torch.tensor([s for _, s in pairs])
