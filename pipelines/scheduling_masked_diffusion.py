"""Ancestral sampler for masked (absorbing-state) discrete diffusion: MDLM, MaskGIT/LLaDA, ReMDM.

The forward process masks each token independently: at time `t` in `[0, 1]` a token is clean with
probability `alpha(t)` and equals `mask_token_id` otherwise (`alpha(0) = 1`, `alpha(1) = 0`). The
reverse step from `t` to `s < t` proposes clean tokens `x0` from the denoiser's logits and decides
which still-masked positions to commit:

- `unmasking="random"`: MDLM's exact posterior, each masked position is committed with probability
  `(alpha_s - alpha_t) / (1 - alpha_t)`;
- `unmasking="confidence"`: MaskGIT / LLaDA low-confidence remasking, the most confident
  proposals are committed, as many as the schedule says should be clean after the step;
- `remask != "none"`: ReMDM, committed tokens are sent back to the mask with probability `sigma_t`
  and the unmasking probability is adjusted so that the marginals of the schedule are kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config

# `SchedulerMixin` in this module's namespace also tells diffusers' loader how to load the class.
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput

from ._checks import (
    check_bool_mask,
    check_choice,
    check_positive_int,
    check_step_inputs,
    check_timestep,
    describe,
    parse_device,
)
from ._checks import is_int as _is_int
from ._checks import is_real as _is_real
from ._deprecated import rename_order, resolve_order
from .sampling import categorical as _categorical
from .sampling import masked_rows
from .sampling import uniform as _uniform
from .scheduling_unmasking import (
    commit_confidence,
    commit_random,
    proposal_confidence,
    remask_sigma,
)

__all__ = ["MaskedDiffusionScheduler", "MaskedDiffusionSchedulerOutput"]

_SCHEDULES = ("linear", "cosine")
_UNMASKINGS = ("random", "confidence")
_REMASK_NAMES = ("none", "cap", "rescale")
_DECODES = ("sample", "argmax")
_RANKINGS = ("proposal", "prior")


@dataclass
class MaskedDiffusionSchedulerOutput(BaseOutput):
    """
    Output of [`MaskedDiffusionScheduler.step`].

    Args:
        prev_sample (`torch.LongTensor` of shape `(B, L)`):
            The sequence at the next (less noisy) time: committed tokens, `mask_token_id` elsewhere.
        pred_original_sample (`torch.LongTensor` of shape `(B, L)`):
            The clean-sequence proposal `x0`: a draw (or argmax) at every position that was masked
            before the step, the current token everywhere else (carry-over).
        unmasked (`torch.BoolTensor` of shape `(B, L)`):
            Positions committed by this step (masked before, a token of
            `pred_original_sample` after).
        remasked (`torch.BoolTensor` of shape `(B, L)`):
            Positions sent back to the mask by this step (only with `remask != "none"`).
    """

    prev_sample: torch.LongTensor
    pred_original_sample: torch.LongTensor
    unmasked: torch.BoolTensor
    remasked: torch.BoolTensor


def _as_time(t: torch.Tensor | float) -> torch.Tensor:
    """`t` as a tensor: float64 unless it is already a floating-point tensor."""
    t = torch.as_tensor(t, dtype=torch.float64) if not torch.is_tensor(t) else t
    return t.to(torch.float64) if not t.is_floating_point() else t


class MaskedDiffusionScheduler(SchedulerMixin, ConfigMixin):
    r"""
    Reverse-process scheduler for masked discrete diffusion (diffusers' scheduler contract).

    Time runs from `t = 1` (everything masked) to `t = 0` (clean). `set_timesteps(N)` builds the
    descending grid `t = 1, (N-1)/N, ..., 1/N`; step `i` moves from `t_i` to `s = t_i - 1/N` and the
    last step (`s = 0`) commits every position that is still masked. Positions marked in
    `fixed_mask` (prompt, clues, padding) are never changed.

    Args:
        num_train_timesteps (`int`, defaults to 1000):
            Resolution of integer training times: [`~MaskedDiffusionScheduler.add_noise`] reads an
            integer `timesteps` tensor as `t = timesteps / num_train_timesteps`.
        mask_token_id (`int`, *optional*):
            Id of the mask token. Required at [`~MaskedDiffusionScheduler.step`] time, here or as
            its `mask_token_id` argument.
        schedule (`"linear"` or `"cosine"`, defaults to `"linear"`):
            Probability that a token is clean at time `t`: `alpha(t) = 1 - t` (linear, MDLM) or
            `alpha(t) = cos(pi/2 * t)` (cosine, MaskGIT).
        unmasking (`"random"` or `"confidence"`, defaults to `"random"`):
            Which masked positions are committed. `"random"`: each with probability
            `(alpha_s - alpha_t) / (1 - alpha_t)` (MDLM). `"confidence"`: the `k` proposals with the
            highest probability under `softmax(model_output)`, where `k` leaves
            `round((1 - alpha_s) * n)` positions masked and `n` is the number of non-fixed positions
            of the row (MaskGIT / LLaDA low-confidence remasking); at least one per step while masks
            remain.
        ranking (`"proposal"` or `"prior"`, defaults to `"proposal"`):
            Under confidence unmasking, whose probabilities rank the proposals. `"proposal"`: those
            of `model_output`, the logits the tokens are drawn from (guided ones when a guidance
            hook rewrote them). `"prior"`: those of the `ranking_logits` handed to `step`;
            [`MaskedDiffusionPipeline`] hands it the model's unguided logits when a guidance hook
            is on, so the ranking rule does not depend on the guided logits (what SMC with guided
            proposals needs). Without a hook, or without `ranking_logits`, both are the same.
            Unused by random unmasking.
        remask (`"none"`, `"cap"`, `"rescale"` or `float`, defaults to `"none"`):
            ReMDM remasking probability `sigma_t` of committed, non-fixed tokens, with
            `sigma_max = min(1, (1 - alpha_s) / alpha_t)`: `"cap"` uses
            `min(remask_eta, sigma_max)`, `"rescale"` uses `remask_eta * sigma_max`, a float `eta`
            in `[0, 1]` uses
            `eta * (1 - alpha_s)` (the constant-sigma bridge of the ReDGE MaskGIT experiment; `1.0`
            re-draws every position). Never applied at the last step.
        remask_eta (`float`, defaults to 0.05):
            The `eta` of the `"cap"` and `"rescale"` schedules, in `[0, 1]`. Small by default so
            that switching remasking on perturbs a run only lightly; ReMDM tunes it per task.
        temperature (`float`, defaults to 1.0):
            `x0` is drawn from `softmax(model_output / temperature)`; `0` means argmax. 1.0 samples
            the model's own distribution.
        decode (`"sample"` or `"argmax"`, defaults to `"sample"`):
            How `x0` is read from the logits at masked positions.
        order (`"random"` or `"confidence"`, *optional*):
            Deprecated name of `unmasking` (it clashed with diffusers' `SchedulerMixin.order`, the
            solver order); read with a `FutureWarning` for one release, here and in saved configs.

    Attributes:
        timesteps (`torch.Tensor` of shape `(N,)`): descending times `t` in `(0, 1]`, float32.
        alphas (`torch.Tensor` of shape `(N + 1,)`): `alphas[i] = alpha(timesteps[i])` and
            `alphas[N] = alpha(0) = 1`, float32.
    """

    # diffusers' solver order (one model call per step); which positions unmask is
    # `config.unmasking`.
    order = 1
    # the deprecated `order=` keyword is not a config key (`config.unmasking` holds its value)
    ignore_for_config = ["order"]

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        mask_token_id: int | None = None,
        schedule: Literal["linear", "cosine"] = "linear",
        unmasking: Literal["random", "confidence"] = "random",
        remask: Literal["none", "cap", "rescale"] | float = "none",
        remask_eta: float = 0.05,
        temperature: float = 1.0,
        decode: Literal["sample", "argmax"] = "sample",
        ranking: Literal["proposal", "prior"] = "proposal",
        *,
        order: Literal["random", "confidence"] | None = None,
    ):
        unmasking = resolve_order(self, unmasking, order)
        check_positive_int("num_train_timesteps", num_train_timesteps, "1000")
        if mask_token_id is not None and (not _is_int(mask_token_id) or mask_token_id < 0):
            raise ValueError(
                f"`mask_token_id` must be a non-negative integer or None, got {mask_token_id!r}. "
                "Pass the tokenizer's `mask_token_id`."
            )
        check_choice("schedule", schedule, _SCHEDULES)
        check_choice("unmasking", unmasking, _UNMASKINGS, " 'confidence' is MaskGIT / LLaDA's.")
        if isinstance(remask, str):
            if remask not in _REMASK_NAMES:
                raise ValueError(
                    f"`remask` must be one of {_REMASK_NAMES} or a float in [0, 1], got {remask!r}."
                )
        elif not _is_real(remask) or not 0.0 <= remask <= 1.0:
            raise ValueError(
                f"`remask` must be one of {_REMASK_NAMES} or a float in [0, 1], got {remask!r}. "
                "Use `remask=1.0` for the constant-sigma bridge or `remask='none'` to switch it "
                "off."
            )
        if not _is_real(remask_eta) or not 0.0 <= remask_eta <= 1.0:
            raise ValueError(f"`remask_eta` must be a float in [0, 1], got {remask_eta!r}.")
        if not _is_real(temperature) or not temperature >= 0.0 or math.isinf(temperature):
            raise ValueError(
                f"`temperature` must be a finite float >= 0, got {temperature!r}. Use "
                "`temperature=0` for argmax decoding."
            )
        check_choice("decode", decode, _DECODES)
        check_choice("ranking", ranking, _RANKINGS, " 'prior' ranks by the unguided logits.")

        self.num_inference_steps: int | None = None
        self.timesteps: torch.Tensor | None = None
        self.alphas: torch.Tensor | None = None
        self._alphas_list: list[float] = []  # float64 values of `alphas`, read by `step`

    @classmethod
    def extract_init_dict(cls, config_dict, **kwargs):
        """Read the deprecated `order` key of configs saved before the rename (and an `order=`
        override of `from_config`) as `unmasking`, with a `FutureWarning`."""
        config_dict = rename_order(config_dict, kwargs)
        return super().extract_init_dict(config_dict, **kwargs)

    # ------------------------------------------------------------------ schedule

    def alpha(self, t: torch.Tensor | float) -> torch.Tensor:
        """
        Probability that a token is clean at time `t`.

        Args:
            t (`torch.Tensor` of any shape, or `float`): times in `[0, 1]`.

        Returns:
            `torch.Tensor` of the shape of `t`: float64 for a non-tensor or integer input, else
            the input's dtype.
        """
        t = _as_time(t)
        if self.config.schedule == "linear":
            return 1.0 - t
        return torch.cos(0.5 * math.pi * t)

    def elbo_weight(self, t: torch.Tensor | float) -> torch.Tensor:
        """
        Weight `-alpha'(t) / (1 - alpha(t))` of the masked-token cross-entropy in the MDLM training
        loss (continuous-time ELBO): `1/t` for the linear schedule.

        Args:
            t (`torch.Tensor` of any shape, or `float`): times in `(0, 1]`.

        Returns:
            `torch.Tensor` of the shape of `t`.
        """
        t = _as_time(t)
        if self.config.schedule == "linear":
            return 1.0 / t
        half_pi = 0.5 * math.pi
        return half_pi * torch.sin(half_pi * t) / (1.0 - torch.cos(half_pi * t))

    def set_timesteps(
        self, num_inference_steps: int, device: str | torch.device | None = None
    ) -> None:
        """
        Build the descending time grid `t = 1, (N-1)/N, ..., 1/N` and its `alphas`.

        Args:
            num_inference_steps (`int`): number of denoising steps `N` (one model call each).
            device (`str` or `torch.device`, *optional*): where `timesteps` and `alphas` live.
        """
        check_positive_int("num_inference_steps", num_inference_steps, "32")
        device = parse_device(device)
        n = num_inference_steps
        grid = torch.arange(n, -1, -1, dtype=torch.float64) / n  # (N + 1,): 1, ..., 1/N, 0
        alphas = self.alpha(grid).clamp(0.0, 1.0)
        alphas[0], alphas[-1] = 0.0, 1.0  # exact ends (cos(pi/2) is 6e-17, not 0)
        self.num_inference_steps = n
        self.timesteps = grid[:-1].to(device=device, dtype=torch.float32)
        self.alphas = alphas.to(device=device, dtype=torch.float32)
        self._alphas_list = alphas.tolist()

    def index_for_timestep(self, timestep: float | torch.Tensor) -> int:
        """Position of `timestep` in `self.timesteps` (ValueError if it is not on the grid)."""
        if self.timesteps is None:
            raise ValueError(
                "`set_timesteps` has not been called. Call "
                "`scheduler.set_timesteps(num_inference_steps)` before `step`."
            )
        timestep = check_timestep(timestep)
        n = self.num_inference_steps
        index = round((1.0 - float(timestep)) * n)
        if not 0 <= index < n or abs(float(timestep) - (n - index) / n) > 0.25 / n:
            raise ValueError(
                f"`timestep` must be one of `scheduler.timesteps` (t = k/{n}, k = {n}..1), got "
                f"{timestep!r}. Iterate over `scheduler.timesteps` after `set_timesteps`."
            )
        return index

    def scale_model_input(self, sample: torch.Tensor, timestep: float | torch.Tensor | None = None):
        """Identity (kept for the diffusers scheduler interface)."""
        return sample

    # ------------------------------------------------------------------ helpers

    def _mask_id(self, mask_token_id: int | None) -> int:
        """The mask id of a call: its `mask_token_id`, else the config's (ValueError if none)."""
        mask_id = self.config.mask_token_id if mask_token_id is None else mask_token_id
        if mask_id is None:
            raise ValueError(
                "`mask_token_id` is None in the scheduler config and was not passed to `step`. "
                "Build the scheduler with "
                "`MaskedDiffusionScheduler(mask_token_id=tokenizer.mask_token_id)`."
            )
        if not _is_int(mask_id) or mask_id < 0:
            raise ValueError(f"`mask_token_id` must be a non-negative integer, got {mask_id!r}.")
        return mask_id

    # ------------------------------------------------------------------ step

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.LongTensor,
        *,
        mask_token_id: int | None = None,
        fixed_mask: torch.BoolTensor | None = None,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
        ranking_logits: torch.Tensor | None = None,
    ) -> MaskedDiffusionSchedulerOutput | tuple:
        """
        One reverse step from `timestep` to the next time of the grid.

        Args:
            model_output (`torch.Tensor` of shape `(B, L, V)`):
                Logits of the clean tokens (the denoiser's output, possibly guided). The mask
                token's logit is set to `finfo.min` here, so it is never proposed.
            timestep (`float` or `torch.Tensor`):
                The current time, an element of `self.timesteps`.
            sample (`torch.LongTensor` of shape `(B, L)`):
                The current sequence, `mask_token_id` at masked positions.
            mask_token_id (`int`, *optional*):
                Overrides `config.mask_token_id`.
            fixed_mask (`torch.BoolTensor` of shape `(B, L)`, *optional*):
                Positions that never change (prompt, clues, padding). Default: none, so every
                non-mask token counts as committed (and may be remasked when remasking is on).
            generator (`torch.Generator`, *optional*):
                Source of all randomness of the step.
            return_dict (`bool`, defaults to `True`):
                Return a [`MaskedDiffusionSchedulerOutput`] instead of a tuple.
            ranking_logits (`torch.Tensor` of shape `(B, L, V)`, *optional*):
                Confidence unmasking only: rank the proposals (drawn from `model_output`) by
                their probability under `softmax(ranking_logits)` instead. Default:
                `model_output`. Unused by random unmasking (checked all the same: float logits of
                `model_output`'s shape, on its device).

        Returns:
            [`MaskedDiffusionSchedulerOutput`] or `tuple` `(prev_sample, pred_original_sample,
            unmasked, remasked)`.
        """
        mask_id = self._mask_id(mask_token_id)
        fixed_mask = check_step_inputs(
            model_output, sample, fixed_mask, mask_id, generator, ranking_logits
        )
        index = self.index_for_timestep(timestep)

        masked = (sample == mask_id) & ~fixed_mask  # (B, L) positions to fill
        committed = ~masked & ~fixed_mask  # (B, L) decoded tokens that remasking may revise
        # x0 at masked positions, carry-over elsewhere; the positions to commit; the new sequence
        rows, pred = self._propose(model_output, sample, masked, mask_id, generator)
        confidence = None
        if self.config.unmasking == "confidence":
            confidence = self._rank(rows, pred, masked, mask_id, ranking_logits)
        unmasked, remasked = self._choose_positions(
            index, masked, committed, fixed_mask, confidence, generator
        )
        prev_sample = torch.where(unmasked, pred, sample)
        prev_sample = prev_sample.masked_fill(remasked, mask_id)

        if not return_dict:
            return prev_sample, pred, unmasked, remasked
        return MaskedDiffusionSchedulerOutput(
            prev_sample=prev_sample, pred_original_sample=pred, unmasked=unmasked, remasked=remasked
        )

    def _propose(
        self,
        model_output: torch.Tensor,
        sample: torch.LongTensor,
        masked: torch.BoolTensor,
        mask_id: int,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.LongTensor]:
        """Sampling: the clean-sequence proposal `x0` of the step.

        Returns:
            `(rows, pred)`: the `(M, V)` mask-suppressed rows of `model_output` at the `M` masked
            positions, and `pred` `(B, L)`, a draw from `softmax(rows / temperature)` (or its
            argmax) at masked positions and the current token everywhere else.
        """
        rows = masked_rows(model_output, masked, mask_id)  # (M, V)
        temperature = float(self.config.temperature)
        pred = sample.clone()
        if rows.shape[0] > 0:
            if self.config.decode == "argmax" or temperature == 0.0:
                proposal = rows.argmax(dim=-1)
            else:
                proposal = _categorical(rows, temperature, generator)
            pred[masked] = proposal
        return rows, pred

    def _rank(
        self,
        rows: torch.Tensor,
        pred: torch.LongTensor,
        masked: torch.BoolTensor,
        mask_id: int,
        ranking_logits: torch.Tensor | None,
    ) -> torch.Tensor:
        """Ranking (confidence unmasking): `(B, L)` probability of each proposal under the
        sampler's `rows`, or under `ranking_logits` (checked with the step's inputs) when given;
        -1 at positions that were not masked."""
        if ranking_logits is not None:
            rows = masked_rows(ranking_logits, masked, mask_id)  # (M, V)
        return proposal_confidence(rows, pred, masked)  # (B, L)

    def _choose_positions(
        self,
        index: int,
        masked: torch.BoolTensor,
        committed: torch.BoolTensor,
        fixed_mask: torch.BoolTensor,
        confidence: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> tuple[torch.BoolTensor, torch.BoolTensor]:
        """Choosing positions: `(unmasked, remasked)`, each `(B, L)`, of step `index` of the grid,
        at random (MDLM) or by `confidence` (MaskGIT / LLaDA), with ReMDM remasking when on. The
        last step commits every masked position and remasks none."""
        last = index == self.num_inference_steps - 1
        alpha_t, alpha_s = self._alphas_list[index], self._alphas_list[index + 1]
        sigma = 0.0 if last else remask_sigma(self.config, alpha_t, alpha_s)
        if self.config.unmasking == "random":
            return commit_random(masked, committed, alpha_t, alpha_s, sigma, last, generator)
        return commit_confidence(
            confidence, masked, committed, fixed_mask, alpha_s, sigma, last, generator
        )

    # ------------------------------------------------------------------ training

    def add_noise(
        self,
        original_samples: torch.LongTensor,
        timesteps: float | torch.Tensor,
        *,
        mask_token_id: int | None = None,
        fixed_mask: torch.BoolTensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.LongTensor:
        """
        Forward process: replace each non-fixed token by the mask with probability `1 - alpha(t)`.

        Args:
            original_samples (`torch.LongTensor` of shape `(B, L)`): clean token ids.
            timesteps (`float` or `torch.Tensor` of shape `()` or `(B,)`):
                Times in `[0, 1]` (float), or integers in `[0, num_train_timesteps]` read as
                `timesteps / num_train_timesteps`.
            mask_token_id (`int`, *optional*): overrides `config.mask_token_id`.
            fixed_mask (`torch.BoolTensor` of shape `(B, L)`, *optional*): positions never masked.
            generator (`torch.Generator`, *optional*): source of the masking noise.

        Returns:
            `torch.LongTensor` of shape `(B, L)`: the noised ids.
        """
        mask_id = self._mask_id(mask_token_id)
        if not torch.is_tensor(original_samples) or original_samples.ndim != 2:
            got = describe(original_samples)
            raise ValueError(f"`original_samples` must be a LongTensor of shape (B, L), got {got}.")
        B, L = original_samples.shape  # batch, length
        device = original_samples.device
        t = torch.as_tensor(timesteps, device=device)
        if not t.is_floating_point():
            t = t.double() / self.config.num_train_timesteps
        t = t.double()
        if t.ndim > 1 or (t.ndim == 1 and t.shape[0] != B):
            raise ValueError(
                f"`timesteps` must be a scalar or have shape ({B},), got shape {tuple(t.shape)}."
            )
        if bool(((t < 0) | (t > 1)).any()):
            raise ValueError(
                f"`timesteps` must lie in [0, 1] (or [0, {self.config.num_train_timesteps}] as "
                f"integers), got values in [{t.min().item()}, {t.max().item()}]."
            )
        p_mask = (1.0 - self.alpha(t)).reshape(-1, 1)  # (B or 1, 1)
        u = _uniform((B, L), generator, device)
        noise = u < p_mask
        if fixed_mask is not None:
            check_bool_mask("fixed_mask", fixed_mask, (B, L), " Mark the positions never masked.")
            noise = noise & ~fixed_mask
        return original_samples.masked_fill(noise, mask_id)
