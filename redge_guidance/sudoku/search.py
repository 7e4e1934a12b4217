"""Backtracking search through the prior: the prior ranks the moves, the rules prune them.

:class:`BacktrackSearch` is the ``search="backtrack"`` option of
:class:`~redge_guidance.sudoku.SudokuSolver`. It is a depth-first search whose every choice comes
from the masked-diffusion prior, one prior call per search node:

1. the cells the rules force are filled (:func:`~redge_guidance.sudoku.rules.propagate`, no prior
   call: a forced digit has probability 1 under the pruned logits);
2. the prior (optionally steered by the guidance hook) scores the blank cells of the grid; the
   log of the rule indicator is added to its logits, so illegal digits get ``finfo.min`` and the
   softmax ranks legal digits only;
3. the most confident blank cell (MaskGIT's order) is committed to its most probable legal digit,
   and the search goes on from 1;
4. at a dead end (:func:`~redge_guidance.sudoku.rules.is_dead_end`), the cells committed since the
   last choice are masked again and that cell's next digit in the prior's order is tried; a cell
   whose digits are all spent sends the search one choice further back.

The search is complete (it tries every legal digit before it gives up), so a valid puzzle is
solved within enough prior calls; ``max_prior_calls`` caps the calls per puzzle. Puzzles are
searched as a batch: each prior call scores the current grid of every puzzle still searching.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch

from . import layout as sl
from .rules import PRUNINGS, is_dead_end, legal_digits, propagate

__all__ = ["BacktrackSearch", "SearchOutcome"]


@dataclass
class SearchOutcome:
    """What :meth:`BacktrackSearch.run` returns.

    Args:
        grids (`torch.LongTensor` of shape `(B, 81)`): the solutions found; for a puzzle not
            solved, the grid where the search stopped (0 at the cells still blank).
        found (`torch.BoolTensor` of shape `(B,)`): a complete grid that breaks no rule was found.
        prior_calls (`torch.LongTensor` of shape `(B,)`): search nodes scored by the prior.
        backtracks (`torch.LongTensor` of shape `(B,)`): digits tried that led to a dead end.
    """

    grids: torch.Tensor
    found: torch.Tensor
    prior_calls: torch.Tensor
    backtracks: torch.Tensor


@dataclass
class _Node:
    grid: torch.Tensor  # (81,) the grid the prior scored
    options: list[tuple[int, int]] = field(default_factory=list)  # (cell, digit), best first


class BacktrackSearch:
    """Depth-first search over Sudoku grids, moves ranked by a denoiser, illegal moves pruned.

    Args:
        denoiser (`torch.nn.Module`): maps ``input_ids`` `(B, 163)` to logits `(B, 163, 15)`
            (a :class:`~redge_guidance.sudoku.prior.DigitDenoiser`).
        pruning (`"peers"` or `"units"`): the rules applied, see
            :mod:`redge_guidance.sudoku.rules`.
        max_prior_calls (`int`): prior calls (search nodes) per puzzle before the search gives up.
        guidance (`RewardGuidance`, *optional*): applied to the pruned logits at each node (a
            fresh one-step problem each time: no warm start across nodes).
    """

    def __init__(
        self,
        denoiser: torch.nn.Module,
        *,
        pruning: Literal["peers", "units"] = "units",
        max_prior_calls: int = 64,
        guidance: Callable | None = None,
    ):
        from ._options import _check_positive_int

        if pruning not in PRUNINGS:
            raise ValueError(
                f"`pruning` must be one of {list(PRUNINGS)}, got {pruning!r}. Use 'units' (the "
                "default) or 'peers'."
            )
        _check_positive_int("max_prior_calls", max_prior_calls, "64")
        self.denoiser = denoiser
        self.pruning = pruning
        self.max_prior_calls = max_prior_calls
        self.guidance = guidance

    @torch.no_grad()
    def run(
        self, puzzles: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> SearchOutcome:
        """Search every puzzle of `puzzles` `(B, 81)` (digits, 0 = blank)."""
        B = puzzles.shape[0]
        free = puzzles == 0  # (B, 81) cells the search fills
        grids = propagate(puzzles, free, self.pruning)
        found = ~is_dead_end(grids, self.pruning) & (grids > 0).all(dim=1)
        live = ~is_dead_end(grids, self.pruning) & ~found  # (B,) still searching
        calls = torch.zeros(B, dtype=torch.long, device=puzzles.device)
        backtracks = torch.zeros_like(calls)
        stacks: list[list[_Node]] = [[] for _ in range(B)]
        while bool(live.any()):
            rows = live.nonzero().flatten()
            probs = self._score(grids[rows], generator)  # (A, 81, 9)
            calls[rows] += 1
            for a, i in enumerate(rows.tolist()):
                stacks[i].append(_Node(grids[i].clone(), _options(grids[i], probs[a])))
            self._descend(rows, stacks, grids, free, found, backtracks)
            live = ~found & torch.tensor([bool(s) for s in stacks], device=found.device)
            live &= calls < self.max_prior_calls
        return SearchOutcome(grids, found, calls, backtracks)

    def _score(self, grids: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """`(A, 81)` grids -> `(A, 81, 9)` probabilities of the legal digits of blank cells
        under the (guided) prior, 0 at filled cells and illegal digits."""
        ids = sl.encode_puzzles(grids)  # (A, 163), blanks masked in the solution half
        logits = self.denoiser(ids)  # (A, 163, 15)
        legal = legal_digits(grids) & (grids == 0).unsqueeze(-1)  # (A, 81, 9)
        logits = _prune(logits, legal)
        if self.guidance is not None:
            self.guidance.reset()  # each node is a fresh one-step problem
            editable = ids == sl.MASK_ID
            logits = self.guidance(
                logits, ids, editable=editable, step=0, num_steps=1, generator=generator
            )
            logits = _prune(logits, legal)
        digits = logits[:, sl.SOLUTION_START :, sl.DIGIT_OFFSET + 1 :]  # (A, 81, 9)
        probs = torch.softmax(digits.float(), dim=-1)
        # a legal digit keeps a probability > 0 even where float32 underflows: the search must
        # be able to try it
        return torch.where(legal, probs.clamp(min=1e-30), 0.0)

    def _descend(self, rows, stacks, grids, free, found, backtracks) -> None:
        """Move each row of `rows` to its next live grid: take the best untried option of its
        top node, fill forced cells, and back up past options that end in a dead end."""
        pending = rows.tolist()
        while pending:
            picked, children = [], []
            for i in pending:
                while stacks[i] and not stacks[i][-1].options:
                    stacks[i].pop()  # every digit of this node's cell failed: one level back
                if not stacks[i]:
                    continue  # search space exhausted: the puzzle has no solution
                node = stacks[i][-1]
                cell, digit = node.options.pop(0)
                child = node.grid.clone()
                child[cell] = digit
                picked.append(i)
                children.append(child)
            if not picked:
                return
            idx = torch.tensor(picked, device=grids.device)
            child = propagate(torch.stack(children), free[idx], self.pruning)
            dead = is_dead_end(child, self.pruning)
            grids[idx] = child
            complete = ~dead & (child > 0).all(dim=1)
            found[idx] = complete
            backtracks[idx[dead]] += 1
            pending = idx[dead].tolist()


def _prune(logits: torch.Tensor, legal: torch.Tensor) -> torch.Tensor:
    """A copy of `logits` `(A, 163, 15)` with the illegal digits of the blank solution cells at
    `finfo.min` (the log of the rule indicator); `legal` `(A, 81, 9)` is False at filled cells,
    which keep their logits."""
    logits = logits.clone()
    blank = legal.any(dim=-1, keepdim=True)  # (A, 81, 1): a live grid has a legal digit per blank
    digits = logits[:, sl.SOLUTION_START :, sl.DIGIT_OFFSET + 1 :]  # (A, 81, 9) a view
    digits.masked_fill_(blank & ~legal, torch.finfo(logits.dtype).min)
    return logits


def _options(grid: torch.Tensor, probs: torch.Tensor) -> list[tuple[int, int]]:
    """The moves of one node: the most confident blank cell of `grid` `(81,)` (largest legal
    probability in `probs` `(81, 9)`), with its legal digits in the prior's order."""
    confidence = probs.amax(dim=-1)  # (81,), 0 at filled cells
    cell = int(confidence.argmax())
    order = probs[cell].argsort(descending=True, stable=True)
    return [(cell, int(d) + 1) for d in order.tolist() if probs[cell, d] > 0]
