"""Sudoku solving with the shipped masked-diffusion prior, steered by the constraint reward.

The solver is the library's own pieces put together, no decoding loop of its own:

- the denoiser: the shipped `ModernBertForMaskedLM` prior (``redge_guidance/assets/sudoku_prior``),
  wrapped so that only digit tokens can be proposed at solution cells;
- the sampler: :class:`pipelines.MaskedDiffusionPipeline` with a
  :class:`pipelines.MaskedDiffusionScheduler` (clue cells fixed, blank cells generated);
- the guidance: :class:`redge_guidance.RewardGuidance` around :class:`rewards.SudokuReward`, which
  fits the logits of the still-blank cells to the Sudoku rules at every denoising step.

    from redge_guidance.sudoku import SudokuSolver

    solver = SudokuSolver.from_pretrained()  # shipped prior, default guidance, CPU
    puzzle = "..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3.."
    result = solver.solve([puzzle], generator=torch.Generator().manual_seed(0))
    result.solved, result.solution_strings()[0]

:func:`solve_without_prior` is the paper's other setting: no denoiser at all, the logits of the
blank cells optimised directly from zero (uniform) by the same guidance loop with the clues clamped.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch

from . import layout as sl
from .data import Puzzle, PuzzleError, parse_puzzle

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

#: Folder of the shipped prior (config, fp16 safetensors, tokenizer, training record).
DEFAULT_PRIOR_PATH = os.path.join(
    os.path.dirname(os.path.dirname(__file__)), "assets", "sudoku_prior"
)

_ORDERS = ("random", "confidence")
_DECODES = ("argmax", "sample")


def default_guidance(**overrides: Any) -> GuidanceConfig:
    """The solver's default guidance, chosen by the tuning in docs/sudoku.md.

    Straight-through relaxation, 20 Adam steps at lr 0.1 per denoising step, KL weight 0.3, 16
    relaxed samples per Adam step. Keyword arguments override any :class:`GuidanceConfig` field,
    e.g. ``default_guidance(estimator="redge", n_opt_steps=100)``.
    """
    from ..guidance import GuidanceConfig

    options: dict[str, Any] = {
        # Straight-through: as good as the others at 20-100 inner steps here and the cheapest.
        "estimator": "straight_through",
        # 20 inner steps per denoising step: 100 gained nothing on the tuning puzzles.
        "n_opt_steps": 20,
        "lr": 0.1,
        # Lower than the paper's 1: the reward's signal must beat an already good prior's KL.
        "kl_weight": 0.3,
        # 16 relaxed draws per inner step: one draw gave noisy gradients and confident wrong
        # commits (90.6% -> 95-97% solved on the tuning puzzles); draws are cheap next to the prior.
        "num_relaxed_samples": 16,
        # Hand the guided logits to the scheduler, whose confidence order then uses them.
        "decode": "sample",
        "record_rewards": False,
    }
    options.update(overrides)
    return GuidanceConfig(**options)


# ---------------------------------------------------------------------------------------------
# Inputs and results


def puzzles_to_tensor(
    puzzles: Sequence[str | Sequence[int] | Puzzle] | torch.Tensor,
) -> torch.Tensor:
    """Validate puzzles and stack them into a `(B, 81)` int64 tensor of digits (0 = blank).

    Args:
        puzzles (`list[str | list[int] | Puzzle]` or `torch.Tensor` of shape `(B, 81)`):
            81-character strings (`0` or `.` for blanks), lists of 81 digits, parsed
            :class:`Puzzle` objects, or an integer tensor.

    Raises:
        `ValueError` (a :class:`PuzzleError` for a bad puzzle) naming the index of the first bad
        puzzle and the reason.
    """
    if isinstance(puzzles, torch.Tensor):
        if puzzles.ndim != 2 or puzzles.shape[1] != 81 or puzzles.is_floating_point():
            raise ValueError(
                f"`puzzles` must be an integer tensor of shape (B, 81), got shape "
                f"{tuple(puzzles.shape)} and dtype {puzzles.dtype}. Use `grids.reshape(-1, 81)`."
            )
        rows: list[Any] = puzzles.long().cpu().tolist()
    elif isinstance(puzzles, (str, bytes)) or not isinstance(puzzles, Sequence):
        raise ValueError(
            f"`puzzles` must be a list of puzzles or a (B, 81) tensor, got "
            f"{type(puzzles).__name__} {str(puzzles)[:90]!r}. Wrap a single puzzle in a list."
        )
    else:
        rows = list(puzzles)
    if not rows:
        raise ValueError("`puzzles` is empty. Pass at least one puzzle.")
    out = torch.empty(len(rows), 81, dtype=torch.long)
    for i, row in enumerate(rows):
        try:
            if isinstance(row, Puzzle):
                cells = list(row.cells)
            elif isinstance(row, str):
                cells = list(parse_puzzle(row).cells)
            else:
                cells = list(row)
                if len(cells) != 81 or not all(
                    isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 9 for d in cells
                ):
                    raise PuzzleError(
                        f"expected 81 integers in 0..9 (0 = blank), got {str(cells)[:90]}"
                    )
                cells = list(parse_puzzle("".join(map(str, cells))).cells)  # clue consistency
        except PuzzleError as err:
            raise PuzzleError(f"`puzzles[{i}]` is not a valid puzzle: {err}.") from None
        except TypeError:
            raise PuzzleError(
                f"`puzzles[{i}]` must be a string, a list of 81 digits or a Puzzle, got "
                f"{type(row).__name__}."
            ) from None
        out[i] = torch.tensor(cells, dtype=torch.long)
    return out


@dataclass
class SudokuResult:
    """What :meth:`SudokuSolver.solve` and :func:`solve_without_prior` return.

    Args:
        puzzles (`torch.LongTensor` of shape `(B, 81)`): the input puzzles, 0 = blank.
        solutions (`torch.LongTensor` of shape `(B, 81)`): the committed grids, digits 1..9 (0 where
            a cell holds no digit, which the digit-only denoiser never produces).
        solved (`list[bool]`): the grid is complete and valid *and* keeps every clue.
        violations (`list[int]`): rule violations per grid (:func:`rewards.sudoku_violations`:
            repeated digits per unit, blanks counted too); 0 for a valid grid.
        consistent (`list[bool]`): the grid keeps every clue of its puzzle.
        rewards (`torch.Tensor` of shape `(B,)`): the Sudoku reward of each grid (0 = valid).
        seconds (`float`): wall time of the whole call.
        num_samples (`int`): candidates drawn per puzzle (the best by reward was kept).
    """

    puzzles: torch.Tensor
    solutions: torch.Tensor
    solved: list[bool]
    violations: list[int]
    consistent: list[bool]
    rewards: torch.Tensor
    seconds: float
    num_samples: int = 1
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def solve_rate(self) -> float:
        """Fraction of puzzles solved."""
        return sum(self.solved) / max(1, len(self.solved))

    @property
    def mean_violations(self) -> float:
        """Mean violations per grid."""
        return sum(self.violations) / max(1, len(self.violations))

    def solution_strings(self) -> list[str]:
        """Each grid as an 81-digit string."""
        return ["".join(str(int(d)) for d in row) for row in self.solutions.tolist()]


def _score(
    puzzles: torch.Tensor,
    solutions: torch.Tensor,
    rewards: torch.Tensor,
    seconds: float,
    num_samples: int,
    extras: dict[str, Any] | None = None,
) -> SudokuResult:
    from rewards import sudoku_violations

    puzzles, solutions = puzzles.cpu(), solutions.cpu()
    viol = sudoku_violations(solutions)
    consistent = ((puzzles == 0) | (puzzles == solutions)).all(dim=1)
    solved = (viol == 0) & consistent
    return SudokuResult(
        puzzles=puzzles,
        solutions=solutions,
        solved=solved.tolist(),
        violations=viol.tolist(),
        consistent=consistent.tolist(),
        rewards=rewards.detach().float().cpu(),
        seconds=seconds,
        num_samples=num_samples,
        extras=extras or {},
    )


# ---------------------------------------------------------------------------------------------
# Denoisers


class DigitDenoiser(torch.nn.Module):
    """Wraps a masked LM so that only the digit tokens 1..9 can be proposed.

    Every other vocabulary entry (special tokens, the blank-clue token ``0``) gets logit
    ``finfo.min``: the scheduler then never draws it and the guidance never revives it (the
    estimators skip masked entries). With ``model=None`` the logits are 0 on the digits, the
    uniform "no prior" of :func:`solve_without_prior`.

    Args:
        model (`torch.nn.Module`, *optional*): maps ``input_ids`` `(B, 163)` to `.logits`
            `(B, 163, 15)`.
    """

    def __init__(self, model: torch.nn.Module | None = None):
        super().__init__()
        self.model = model
        allowed = torch.zeros(sl.VOCAB_SIZE, dtype=torch.bool)
        allowed[sl.DIGIT_TOKEN_IDS] = True
        self.register_buffer("allowed", allowed, persistent=False)

    @property
    def config(self) -> Any:  # the pipeline reads `config.vocab_size`
        return getattr(self.model, "config", None) or _VocabConfig()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.model is None:
            B, L = input_ids.shape
            logits = torch.zeros(B, L, sl.VOCAB_SIZE, device=input_ids.device)
        else:
            logits = self.model(input_ids=input_ids).logits.float()
        low = torch.finfo(logits.dtype).min
        return logits.masked_fill(~self.allowed.to(logits.device), low)


@dataclass
class _VocabConfig:
    vocab_size: int = sl.VOCAB_SIZE
    pad_token_id: int = sl.PAD_ID


def _load_prior(path: str | os.PathLike[str] | None, device: torch.device) -> torch.nn.Module:
    from transformers import AutoModelForMaskedLM

    path = os.fspath(path) if path is not None else DEFAULT_PRIOR_PATH
    if not os.path.isdir(path):
        raise ValueError(
            f"`path` must be a folder holding a saved masked LM (config.json, model.safetensors), "
            f"got {path!r}. Pass `path=None` for the shipped prior."
        )
    model = AutoModelForMaskedLM.from_pretrained(path, dtype=torch.float32)
    if getattr(model.config, "vocab_size", None) != sl.VOCAB_SIZE:
        raise ValueError(
            f"The model at `path={path!r}` has vocab_size {model.config.vocab_size}, expected "
            f"{sl.VOCAB_SIZE} (the Sudoku layout of redge_guidance.sudoku.layout)."
        )
    return model.to(device).eval()


def _make_generator(generator: torch.Generator | None) -> torch.Generator:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(
            f"`generator` must be a torch.Generator or None, got {type(generator).__name__}. "
            "Pass e.g. `torch.Generator().manual_seed(0)`."
        )
    return generator


def _batch_generators(generator: torch.Generator | None, n: int) -> list[torch.Generator | None]:
    """One CPU generator per batch, seeded from `generator` (None: unseeded)."""
    if generator is None:
        return [None] * n
    seeds = torch.randint(0, 2**62, (n,), generator=generator).tolist()
    return [torch.Generator().manual_seed(s) for s in seeds]


def _parse_device(device: str | torch.device) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"`device` must name a torch device, got {device!r}. Use 'cpu' or 'cuda'."
        ) from None


def _check_positive_int(name: str, value: Any, example: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(
            f"`{name}` must be an integer >= 1, got {value!r}. Use e.g. `{name}={example}`."
        )


# ---------------------------------------------------------------------------------------------
# The solver


class SudokuSolver:
    r"""Solve Sudoku puzzles with a masked-diffusion prior and reward guidance.

    Build it with :meth:`from_pretrained`. Each call of :meth:`solve` runs
    :class:`pipelines.MaskedDiffusionPipeline` over the puzzles (clues and the separator fixed, the
    blank solution cells generated in ``num_inference_steps`` denoising steps), with
    :class:`redge_guidance.RewardGuidance` on :class:`rewards.SudokuReward` between the model call
    and the scheduler step when ``guidance`` is set.

    Args:
        model (`torch.nn.Module`): the masked LM (``input_ids`` `(B, 163)` -> `.logits`
            `(B, 163, 15)`), or None for the uniform no-prior denoiser.
        guidance (`GuidanceConfig`, *optional*): guidance settings; None runs the prior alone.
        num_inference_steps (`int`): denoising steps (one prior call each).
        order (`"confidence"` or `"random"`): which blank cells are committed at each step: the most
            confident first (MaskGIT), or at random (MDLM).
        remask (`"none"`, `"cap"`, `"rescale"` or `float`): ReMDM remasking of committed cells.
        remask_eta (`float`): the ``eta`` of the ``"cap"`` / ``"rescale"`` remasking schedules.
        decode (`"argmax"` or `"sample"`): how the scheduler reads a cell from the (guided)
            logits: their argmax, or a draw from their softmax at ``temperature``.
        temperature (`float`): sampling temperature of ``decode="sample"``.
        restarts (`int`): grids that still break a rule after the denoising pass are solved
            again from their clues (every blank cell masked again, fresh noise), up to this many
            times; the first valid grid is kept, else the one with the fewest violations. Only
            the failing grids pay for it. 0 = a single pass.
        device (`str` or `torch.device`): where the model and the sampling run.
    """

    def __init__(
        self,
        model: torch.nn.Module | None,
        *,
        guidance: GuidanceConfig | None = None,
        num_inference_steps: int = 12,
        order: Literal["confidence", "random"] = "confidence",
        remask: Literal["none", "cap", "rescale"] | float = "none",
        remask_eta: float = 0.05,
        decode: Literal["argmax", "sample"] = "argmax",
        temperature: float = 1.0,
        restarts: int = 4,
        device: str | torch.device = "cpu",
    ):
        from pipelines import MaskedDiffusionPipeline
        from rewards import SudokuReward

        from ..guidance import GuidanceConfig, RewardGuidance

        if guidance is not None and not isinstance(guidance, GuidanceConfig):
            raise ValueError(
                f"`guidance` must be a GuidanceConfig or None, got {type(guidance).__name__}. "
                "Use `default_guidance()` or `GuidanceConfig(...)`; None runs the prior alone."
            )
        _check_positive_int("num_inference_steps", num_inference_steps, "12")
        if not isinstance(restarts, int) or isinstance(restarts, bool) or restarts < 0:
            raise ValueError(
                f"`restarts` must be an integer >= 0, got {restarts!r}. Use e.g. `restarts=4`, "
                "or 0 for a single denoising pass per puzzle."
            )
        if order not in _ORDERS:
            raise ValueError(f"`order` must be one of {list(_ORDERS)}, got {order!r}.")
        if decode not in _DECODES:
            raise ValueError(f"`decode` must be one of {list(_DECODES)}, got {decode!r}.")
        if (
            not isinstance(temperature, (int, float))
            or isinstance(temperature, bool)
            or not (math.isfinite(temperature) and temperature > 0)
        ):
            raise ValueError(
                f"`temperature` must be a finite number > 0, got {temperature!r}. "
                "Use `decode='argmax'` for greedy decoding."
            )
        self.device = _parse_device(device)
        self.denoiser = DigitDenoiser(model).to(self.device).eval()
        self.pipeline = MaskedDiffusionPipeline.from_model(
            self.denoiser,
            mask_token_id=sl.MASK_ID,
            order=order,
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
        self.num_inference_steps = num_inference_steps
        self.restarts = restarts
        self.settings = {
            "num_inference_steps": num_inference_steps,
            "restarts": restarts,
            "order": order,
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
        num_inference_steps: int = 12,
        order: Literal["confidence", "random"] = "confidence",
        remask: Literal["none", "cap", "rescale"] | float = "none",
        remask_eta: float = 0.05,
        decode: Literal["argmax", "sample"] = "argmax",
        temperature: float = 1.0,
        restarts: int = 4,
        device: str | torch.device = "cpu",
    ) -> SudokuSolver:
        """Load a prior (default: the shipped one) and build a solver around it.

        Args:
            path (`str`, *optional*): folder of a saved `ModernBertForMaskedLM` / `BertForMaskedLM`
                with the Sudoku vocabulary; None = ``DEFAULT_PRIOR_PATH``.
            guidance (`GuidanceConfig`, `"default"` or None): `"default"` =
                :func:`default_guidance`; None = the prior alone (unguided).
            num_inference_steps, order, remask, remask_eta, decode, temperature, restarts,
                device: see the class docstring.
        """
        if isinstance(guidance, str):
            if guidance != "default":
                raise ValueError(
                    f"`guidance` must be a GuidanceConfig, 'default' or None, got {guidance!r}."
                )
            guidance = default_guidance()
        dev = _parse_device(device)
        model = _load_prior(path, dev)
        return cls(
            model,
            guidance=guidance,
            num_inference_steps=num_inference_steps,
            order=order,
            remask=remask,
            remask_eta=remask_eta,
            decode=decode,
            temperature=temperature,
            restarts=restarts,
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
        solutions, rewards = [], []
        from tqdm.auto import tqdm

        self.pipeline.set_progress_bar_config(disable=not progress, leave=False, desc="denoising")
        for chunk, gen in tqdm(
            list(zip(chunks, gens, strict=True)),
            desc="sudoku batches",
            disable=not progress or len(chunks) == 1,
        ):
            sol, rew = self._solve_chunk(chunk, gen, num_samples)
            solutions.append(sol)
            rewards.append(rew)
        seconds = time.perf_counter() - start
        return _score(
            grid,
            torch.cat(solutions),
            torch.cat(rewards),
            seconds,
            num_samples,
            {"settings": self.settings},
        )

    @torch.no_grad()
    def _solve_chunk(
        self, grid: torch.Tensor, generator: torch.Generator | None, num_samples: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(b, 81)` puzzles -> best-of-`num_samples` `(b, 81)` grids and their rewards."""
        b = grid.shape[0]
        grid = grid.to(self.device)
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
        return sl.decode_solutions(seqs[rows]).cpu(), reward.max(dim=1).values.cpu()

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
    estimator: str = "straight_through",
    n_steps: int = 2000,
    lr: float = 0.05,
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
        decode="argmax",
        record_rewards=False,
    )
    solver = SudokuSolver(
        None,
        guidance=config,
        num_inference_steps=1,
        order="random",
        decode="argmax",
        restarts=0,
        device=device,
    )
    result = solver.solve(puzzles, generator=generator, batch_size=batch_size)
    result.extras["settings"] = {"no_prior": True, **solver.settings}
    return result
