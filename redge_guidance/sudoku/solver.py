"""Sudoku solving with the shipped masked-diffusion prior, steered by the constraint reward.

The solver is the library's own pieces put together, no decoding loop of its own:

- the denoiser: the shipped `ModernBertForMaskedLM` prior (``redge_guidance/assets/sudoku_prior``),
  wrapped so that only digit tokens can be proposed at solution cells;
- the sampler: :class:`pipelines.MaskedDiffusionPipeline` with a
  :class:`pipelines.MaskedDiffusionScheduler` (clue cells fixed, blank cells generated);
- the guidance: :class:`redge_guidance.RewardGuidance` around :class:`rewards.SudokuReward`, which
  fits the logits of the still-blank cells to the Sudoku rules at every denoising step;
- in front of them (``search="backtrack"``, the default), the backtracking search of
  :mod:`redge_guidance.sudoku.search`: the same prior ranks the moves, the rules prune them, and
  only the puzzles it leaves within ``max_prior_calls`` go through the guided denoising pass.

    from redge_guidance.sudoku import SudokuSolver

    solver = SudokuSolver.from_pretrained()  # shipped prior, default guidance, CPU
    puzzle = "..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3.."
    result = solver.solve([puzzle], generator=torch.Generator().manual_seed(0))
    result.solved, result.solution_strings()[0]

:func:`solve_without_prior` is the paper's other setting: no denoiser at all, the logits of the
blank cells optimised directly from zero (uniform) by the same guidance loop with the clues clamped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch

from . import layout as sl
from ._defaults import GUIDANCE, NO_PRIOR, SOLVER
from ._options import (
    _batch_generators,
    _check_positive_int,
    _check_remask,
    _check_sampler,
    _check_search,
    _make_generator,
    _parse_device,
    _resolve_unmasking,
)
from .data import Puzzle
from .prior import DEFAULT_PRIOR_PATH, DigitDenoiser
from .prior import load_prior as _load_prior
from .results import SudokuResult, puzzles_to_tensor, score_grids
from .search import BacktrackSearch, SearchOutcome

if TYPE_CHECKING:  # pragma: no cover
    from ..guidance import GuidanceConfig

__all__ = [
    "DEFAULT_PRIOR_PATH",
    "DigitDenoiser",
    "SudokuResult",
    "SudokuSolver",
    "default_guidance",
    "puzzles_to_tensor",
    "solve_without_prior",
]


def default_guidance(**overrides: Any) -> GuidanceConfig:
    """The solver's default guidance, chosen by the tuning in docs/sudoku.md.

    Straight-through relaxation, 20 Adam steps at lr 0.1 per denoising step, KL weight 0.3, 16
    relaxed samples per Adam step. Keyword arguments override any :class:`GuidanceConfig` field,
    e.g. ``default_guidance(estimator="redge", n_opt_steps=100)``.
    """
    from ..guidance import GuidanceConfig

    options = {**GUIDANCE, **overrides}
    return GuidanceConfig(**options)


# ---------------------------------------------------------------------------------------------
# The solver


class SudokuSolver:
    r"""Solve Sudoku puzzles with a masked-diffusion prior and reward guidance.

    Build it with :meth:`from_pretrained`. Each call of :meth:`solve` first searches the puzzles
    (``search="backtrack"``), then runs :class:`pipelines.MaskedDiffusionPipeline` over those the
    search left (clues and the separator fixed, the blank solution cells generated in
    ``num_inference_steps`` denoising steps), with :class:`redge_guidance.RewardGuidance` on
    :class:`rewards.SudokuReward` between the model call and the scheduler step when
    ``guidance`` is set.

    Args:
        model (`torch.nn.Module`): the masked LM (``input_ids`` `(B, 163)` -> `.logits`
            `(B, 163, 15)`), or None for the uniform no-prior denoiser.
        guidance (`GuidanceConfig`, *optional*): guidance settings; None runs the prior alone.
        num_inference_steps (`int`): denoising steps (one prior call each).
        unmasking (`"confidence"` or `"random"`): which blank cells are committed at each step:
            the most confident first (MaskGIT), or at random (MDLM).
        remask (`"none"`, `"cap"`, `"rescale"` or `float`): ReMDM remasking of committed cells.
        remask_eta (`float`): the ``eta`` of the ``"cap"`` / ``"rescale"`` remasking schedules.
        decode (`"argmax"` or `"sample"`): how the scheduler reads a cell from the (guided)
            logits: their argmax, or a draw from their softmax at ``temperature``.
        temperature (`float`): sampling temperature of ``decode="sample"``.
        restarts (`int`): grids that still break a rule after the denoising pass are solved
            again from their clues (every blank cell masked again, fresh noise), up to this many
            times; the first valid grid is kept, else the one with the fewest violations. Only
            the failing grids pay for it. 0 = a single pass.
        search (`"backtrack"` or `"none"`): `"backtrack"` first solves each puzzle by
            :class:`~redge_guidance.sudoku.search.BacktrackSearch`, a depth-first search whose
            moves the prior ranks and the rules prune; only the puzzles it leaves unsolved within
            ``max_prior_calls`` go through the (guided) denoising pass and its restarts. `"none"`:
            the denoising pass alone.
        pruning (`"units"` or `"peers"`): the rules the search applies
            (:mod:`redge_guidance.sudoku.rules`).
        max_prior_calls (`int`): prior calls (search nodes) per puzzle before the search hands the
            puzzle to the denoising pass.
        search_guidance (`bool`): steer the prior's scores at each search node with ``guidance``
            (off by default: on the tuning puzzles it cost more prior calls, not fewer).
        device (`str` or `torch.device`): where the model and the sampling run.
        order (`"confidence"` or `"random"`, *optional*): deprecated name of `unmasking`, read
            with a `FutureWarning` for one release.
    """

    def __init__(
        self,
        model: torch.nn.Module | None,
        *,
        guidance: GuidanceConfig | None = None,
        num_inference_steps: int = SOLVER.num_inference_steps,
        unmasking: Literal["confidence", "random"] = SOLVER.unmasking,
        remask: Literal["none", "cap", "rescale"] | float = SOLVER.remask,
        remask_eta: float = SOLVER.remask_eta,
        decode: Literal["argmax", "sample"] = SOLVER.decode,
        temperature: float = SOLVER.temperature,
        restarts: int = SOLVER.restarts,
        search: Literal["backtrack", "none"] = SOLVER.search,
        pruning: Literal["units", "peers"] = SOLVER.pruning,
        max_prior_calls: int = SOLVER.max_prior_calls,
        search_guidance: bool = SOLVER.search_guidance,
        device: str | torch.device = SOLVER.device,
        order: Literal["confidence", "random"] | None = None,
    ):
        from pipelines import MaskedDiffusionPipeline
        from rewards import SudokuReward

        from ..guidance import GuidanceConfig, RewardGuidance

        if guidance is not None and not isinstance(guidance, GuidanceConfig):
            raise ValueError(
                f"`guidance` must be a GuidanceConfig or None, got {type(guidance).__name__}. "
                "Use `default_guidance()` or `GuidanceConfig(...)`; None runs the prior alone."
            )
        unmasking = _resolve_unmasking(unmasking, order)
        _check_sampler(num_inference_steps, restarts, unmasking, decode, temperature)
        _check_search(search, pruning, max_prior_calls, search_guidance, guidance is not None)
        self.device = _parse_device(device)
        self.denoiser = DigitDenoiser(model).to(self.device).eval()
        self.pipeline = MaskedDiffusionPipeline.from_model(
            self.denoiser,
            mask_token_id=sl.MASK_ID,
            unmasking=unmasking,
            remask=remask,  # validated by the scheduler
            remask_eta=remask_eta,
            decode=decode,
            temperature=float(temperature),
        )
        self.pipeline.set_progress_bar_config(disable=True)
        self.reward = SudokuReward(sl.SOLUTION_POSITIONS, sl.DIGIT_TOKEN_IDS, sl.VOCAB_SIZE).to(
            self.device
        )
        self.guidance_config = guidance
        self.guidance = (
            RewardGuidance(self.reward, guidance, mask_token_id=sl.MASK_ID)
            if guidance is not None
            else None
        )
        self.searcher = (
            BacktrackSearch(
                self.denoiser,
                pruning=pruning,
                max_prior_calls=max_prior_calls,
                guidance=self.guidance if search_guidance else None,
            )
            if search == "backtrack"
            else None
        )
        self.num_inference_steps = num_inference_steps
        self.restarts = restarts
        self.settings = {
            "search": search,
            "pruning": pruning,
            "max_prior_calls": max_prior_calls,
            "search_guidance": search_guidance,
            "num_inference_steps": num_inference_steps,
            "restarts": restarts,
            "unmasking": unmasking,
            "remask": remask,
            "remask_eta": remask_eta,
            "decode": decode,
            "temperature": float(temperature),
            "guidance": guidance.to_dict() if guidance is not None else None,
        }

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        guidance: GuidanceConfig | None | Literal["default"] = "default",
        num_inference_steps: int = SOLVER.num_inference_steps,
        unmasking: Literal["confidence", "random"] = SOLVER.unmasking,
        remask: Literal["none", "cap", "rescale"] | float = SOLVER.remask,
        remask_eta: float = SOLVER.remask_eta,
        decode: Literal["argmax", "sample"] = SOLVER.decode,
        temperature: float = SOLVER.temperature,
        restarts: int = SOLVER.restarts,
        search: Literal["backtrack", "none"] = SOLVER.search,
        pruning: Literal["units", "peers"] = SOLVER.pruning,
        max_prior_calls: int = SOLVER.max_prior_calls,
        search_guidance: bool = SOLVER.search_guidance,
        device: str | torch.device = SOLVER.device,
        order: Literal["confidence", "random"] | None = None,
    ) -> SudokuSolver:
        """Load a prior (default: the shipped one) and build a solver around it.

        Args:
            path (`str`, *optional*): folder of a saved `ModernBertForMaskedLM` / `BertForMaskedLM`
                with the Sudoku vocabulary; None = ``DEFAULT_PRIOR_PATH``.
            guidance (`GuidanceConfig`, `"default"` or None): `"default"` =
                :func:`default_guidance`; None = the prior alone (unguided).
            num_inference_steps, unmasking, remask, remask_eta, decode, temperature, restarts,
                search, pruning, max_prior_calls, search_guidance, device, order: see the class
                docstring.
        """
        from ..guidance import GuidanceConfig

        unmasking = _resolve_unmasking(unmasking, order)
        if isinstance(guidance, str):
            if guidance != "default":
                raise ValueError(
                    f"`guidance` must be a GuidanceConfig, 'default' or None, got {guidance!r}."
                )
            guidance = default_guidance()
        if guidance is not None and not isinstance(guidance, GuidanceConfig):
            raise ValueError(
                f"`guidance` must be a GuidanceConfig, 'default' or None, got "
                f"{type(guidance).__name__}."
            )
        # every option before the prior loads (the constructor checks them again)
        _check_sampler(num_inference_steps, restarts, unmasking, decode, temperature)
        _check_remask(remask, remask_eta)
        _check_search(search, pruning, max_prior_calls, search_guidance, guidance is not None)
        dev = _parse_device(device)
        model = _load_prior(path, dev)
        return cls(
            model,
            guidance=guidance,
            num_inference_steps=num_inference_steps,
            unmasking=unmasking,
            remask=remask,
            remask_eta=remask_eta,
            decode=decode,
            temperature=temperature,
            restarts=restarts,
            search=search,
            pruning=pruning,
            max_prior_calls=max_prior_calls,
            search_guidance=search_guidance,
            device=dev,
        )

    def solve(
        self,
        puzzles: Sequence[str | Sequence[int] | Puzzle] | torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        batch_size: int = 256,
        num_samples: int = 1,
        progress: bool = False,
    ) -> SudokuResult:
        """Solve a batch of puzzles.

        Args:
            puzzles (`list[str | list[int] | Puzzle]` or `torch.LongTensor` of shape `(B, 81)`):
                81-character strings (`0` or `.` blanks), digit lists, or a digit tensor.
            generator (`torch.Generator`, *optional*): one seeded CPU generator reproduces the call
                (each batch gets a generator seeded from it).
            batch_size (`int`): puzzles per pipeline call (times `num_samples` rows).
            num_samples (`int`): candidates per puzzle; the one with the highest Sudoku reward is
                kept (best-of-N). 1 = a single sample.
            progress (`bool`): show a progress bar over batches.

        Returns:
            :class:`SudokuResult`.

        Raises:
            `ValueError` (`PuzzleError`) for a malformed or contradictory puzzle, before any work.
        """
        grid = puzzles_to_tensor(puzzles)  # (B, 81)
        _check_positive_int("batch_size", batch_size, "256")
        _check_positive_int("num_samples", num_samples, "1")
        generator = _make_generator(generator)
        start = time.perf_counter()
        B = grid.shape[0]
        chunks = [grid[i : i + batch_size] for i in range(0, B, batch_size)]
        gens = _batch_generators(generator, len(chunks))
        solutions, rewards, searched = [], [], []
        from tqdm.auto import tqdm

        self.pipeline.set_progress_bar_config(disable=not progress, leave=False, desc="denoising")
        for chunk, gen in tqdm(
            list(zip(chunks, gens, strict=True)),
            desc="sudoku batches",
            disable=not progress or len(chunks) == 1,
        ):
            sol, rew, outcome = self._solve_chunk(chunk, gen, num_samples)
            solutions.append(sol)
            rewards.append(rew)
            searched.append(outcome)
        seconds = time.perf_counter() - start
        extras: dict[str, Any] = {"settings": self.settings}
        if self.searcher is not None:
            extras["search"] = {  # per puzzle
                "found": torch.cat([o.found for o in searched]).tolist(),
                "prior_calls": torch.cat([o.prior_calls for o in searched]).tolist(),
                "backtracks": torch.cat([o.backtracks for o in searched]).tolist(),
            }
        return score_grids(
            grid, torch.cat(solutions), torch.cat(rewards), seconds, num_samples, extras
        )

    @torch.no_grad()
    def _solve_chunk(
        self, grid: torch.Tensor, generator: torch.Generator | None, num_samples: int
    ) -> tuple[torch.Tensor, torch.Tensor, SearchOutcome | None]:
        """`(b, 81)` puzzles -> `(b, 81)` grids, their rewards and the search's outcome: the
        search's solutions, and the best of `num_samples` denoising passes for the rest."""
        grid = grid.to(self.device)
        solutions = grid.clone()
        outcome = None
        rest = torch.arange(grid.shape[0], device=self.device)  # rows the denoising pass solves
        if self.searcher is not None:
            outcome = self.searcher.run(grid, generator=generator)
            solutions[outcome.found] = outcome.grids[outcome.found]
            rest = (~outcome.found).nonzero().flatten()
        if rest.numel():
            solutions[rest] = self._denoise(grid[rest], generator, num_samples)
        one_hot = torch.nn.functional.one_hot(sl.encode_pairs(grid, solutions), sl.VOCAB_SIZE)
        return solutions.cpu(), self.reward(one_hot.float()).cpu(), outcome

    def _denoise(
        self, grid: torch.Tensor, generator: torch.Generator | None, num_samples: int
    ) -> torch.Tensor:
        """`(b, 81)` puzzles -> the best (by reward) of `num_samples` denoising passes, each
        with its restarts, `(b, 81)`."""
        b = grid.shape[0]
        ids = sl.encode_puzzles(grid)  # (b, 163)
        out = self.pipeline(
            input_ids=ids,
            fixed_mask=sl.fixed_positions(grid),
            num_samples=num_samples,
            num_inference_steps=self.num_inference_steps,
            guidance=self.guidance,
            generator=generator,
            output_type="ids",
        )
        seqs = out.sequences  # (b * num_samples, 163), rows grouped per puzzle
        if self.restarts:
            seqs = self._restart(seqs, ids.repeat_interleave(num_samples, dim=0), generator)
        one_hot = torch.nn.functional.one_hot(seqs, sl.VOCAB_SIZE).float()
        reward = self.reward(one_hot).view(b, num_samples)  # (b, S)
        best = reward.argmax(dim=1)  # (b,) first best on ties
        rows = torch.arange(b, device=seqs.device) * num_samples + best
        return sl.decode_solutions(seqs[rows])

    def _restart(
        self, seqs: torch.Tensor, start: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Solve the invalid grids of `seqs` again from `start`, up to `restarts` times."""
        from rewards import sudoku_violations

        seqs = seqs.clone()
        viol = sudoku_violations(sl.decode_solutions(seqs))
        for _ in range(self.restarts):
            rows = (viol > 0).nonzero().flatten()
            if rows.numel() == 0:
                break
            # A generator per round, seeded from the caller's: each round draws new noise for the
            # scheduler and the guidance, and the whole call stays reproducible from one seed.
            gen = None
            if generator is not None:
                seed = int(torch.randint(0, 2**62, (1,), generator=generator))
                gen = torch.Generator().manual_seed(seed)
            out = self.pipeline(
                input_ids=start[rows],
                fixed_mask=start[rows] != sl.MASK_ID,
                num_inference_steps=self.num_inference_steps,
                guidance=self.guidance,
                generator=gen,
                output_type="ids",
            )
            new = sudoku_violations(sl.decode_solutions(out.sequences))
            better = new < viol[rows]
            seqs[rows[better]] = out.sequences[better]
            viol[rows[better]] = new[better]
        return seqs


def solve_without_prior(
    puzzles: Sequence[str | Sequence[int] | Puzzle] | torch.Tensor,
    estimator: str = NO_PRIOR.estimator,
    n_steps: int = NO_PRIOR.n_steps,
    lr: float = NO_PRIOR.lr,
    generator: torch.Generator | None = None,
    *,
    estimator_options: dict[str, Any] | None = None,
    batch_size: int = 1024,
    device: str | torch.device = "cpu",
) -> SudokuResult:
    """Solve puzzles with no prior: the blank cells' logits optimised directly for the reward.

    The paper's other Sudoku setting, run with the library's pieces: a uniform denoiser (logits 0
    on the nine digits), one denoising step of :class:`pipelines.MaskedDiffusionPipeline`, and
    :class:`redge_guidance.RewardGuidance` with ``kl_weight=0`` and ``n_steps`` Adam steps, so the
    logits start from zero, the clues are clamped (they are committed context the reward reads as
    exact one-hots) and the blanks are decoded by argmax at the end.

    Args:
        puzzles: as in :meth:`SudokuSolver.solve`.
        estimator (`str`): a key of ``redge_guidance.estimators.ESTIMATORS``.
        n_steps (`int`): Adam steps (the reference uses 2000).
        lr (`float`): Adam learning rate on the logits.
        generator (`torch.Generator`, *optional*): seeds the relaxation noise.
        estimator_options (`dict`, *optional*): the estimator's options (e.g. ``{"n_steps": 3}``).
        batch_size (`int`): puzzles per optimisation batch (puzzles do not interact).
        device (`str` or `torch.device`): where to run.

    Returns:
        :class:`SudokuResult`.
    """
    from ..guidance import GuidanceConfig

    _check_positive_int("n_steps", n_steps, "2000")
    config = GuidanceConfig(
        estimator=estimator,
        estimator_options=dict(estimator_options or {}),
        n_opt_steps=n_steps,
        lr=lr,
        kl_weight=0.0,  # no prior to stay close to
        handoff="argmax",
        record_rewards=False,
    )
    solver = SudokuSolver(
        None,
        guidance=config,
        num_inference_steps=1,
        unmasking="random",
        decode="argmax",
        restarts=0,
        search="none",  # the optimised logits alone, no search
        device=device,
    )
    result = solver.solve(puzzles, generator=generator, batch_size=batch_size)
    result.extras["settings"] = {"no_prior": True, **solver.settings}
    return result
