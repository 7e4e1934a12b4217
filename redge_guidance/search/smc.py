"""Sequential Monte Carlo with (optionally guided) proposals inside the pipeline's own loop.

K particles per prompt run as one batch of ``B·K`` rows through ``MaskedDiffusionPipeline``;
the pipeline calls :class:`~._runner.StepRecorder` as its guidance (it keeps ℓ and φ of the
step) and :class:`SMCStep` as its ``callback_on_step_end``, which reweights the particles and
hands back a resampled ``sample``. The maths is in ``docs/search.md``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..guidance.inner import WarmStart
from . import resampling
from ._runner import Inputs, StepRecorder, score
from .accounting import CountingReward, Meter
from .config import SMCConfig
from .result import SearchResult

__all__ = ["SMCStep", "proposal_log_ratio", "run_smc"]


def proposal_log_ratio(
    before: torch.Tensor,
    after: torch.Tensor,
    prior: torch.Tensor,
    guided: torch.Tensor,
    mask_id: int,
    temperature: float,
) -> torch.Tensor:
    """``Σ_{l committed} log p_l(x_l) − log q_l(x_l)`` per row, float64 ``(R,)``.

    ``p = softmax(prior / temperature)`` is the unguided sampler's law of a token,
    ``q = softmax(guided / temperature)`` the guided one; committed = masked in ``before``
    (R, L), a token in ``after``. Masked vocabulary entries (the mask token, support
    restrictions) are at ``finfo.min`` or ``-inf`` in both, so both give them probability 0 and
    a drawn token has a finite ratio.
    """
    committed = (before == mask_id) & (after != mask_id)  # (R, L)
    rows = committed.nonzero()  # (M, 2)
    out = torch.zeros(before.shape[0], dtype=torch.float64, device=before.device)
    if rows.shape[0] == 0:
        return out
    tok = after[committed].unsqueeze(-1)  # (M, 1)
    logp = torch.log_softmax(prior[committed].double() / temperature, dim=-1).gather(-1, tok)
    logq = torch.log_softmax(guided[committed].double() / temperature, dim=-1).gather(-1, tok)
    return out.index_add(0, rows[:, 0], (logp - logq).squeeze(-1))


class SMCStep:
    """The pipeline's ``callback_on_step_end`` during SMC: reweight, record, resample.

    Holds every per-particle quantity (log-weights, the potential's memory) and permutes them,
    the sequence and the hook's warm-start state together when a prompt resamples.
    """

    def __init__(
        self,
        config: SMCConfig,
        recorder: StepRecorder,
        reward: CountingReward,
        attention_mask: torch.Tensor,
        *,
        num_prompts: int,
        num_steps: int,
        mask_id: int,
        sampler_temperature: float,
        generator: torch.Generator,
    ) -> None:
        self.cfg, self.recorder, self.reward = config, recorder, reward
        self.am = attention_mask  # (R, L)
        self.B, self.K = num_prompts, config.num_particles
        self.num_steps, self.mask_id = num_steps, mask_id
        self.tau = sampler_temperature
        self.generator = generator
        device = attention_mask.device
        self.log_w = torch.zeros(self.B, self.K, dtype=torch.float64, device=device)
        self.log_z = torch.zeros(self.B, dtype=torch.float64, device=device)
        self.memory: torch.Tensor | None = None  # (B, K) last (difference) or best (max) r̂
        self.ess: list[torch.Tensor] = []
        self.resampled: list[torch.Tensor] = []
        self.final_rewards: torch.Tensor | None = None

    def _log_potential(self, r: torch.Tensor) -> torch.Tensor:
        """Incremental log-potential from this step's predicted reward ``r`` (B, K)."""
        lam, kind, memory = self.cfg.temperature, self.cfg.potential, self.memory
        if kind == "sum":
            return r / lam
        if kind == "difference":
            self.memory = r  # r̂_0 = 0: the product telescopes to exp(R(x) / λ)
            return (r - (memory if memory is not None else 0.0)) / lam
        best = r if memory is None else torch.maximum(memory, r)
        self.memory = best
        return (best - (memory if memory is not None else 0.0)) / lam

    def _predicted_reward(self, after: torch.Tensor, prior: torch.Tensor, last: bool):
        """r̂: the reward of the committed tokens plus the model's argmax at masked positions."""
        pred = after if last else torch.where(after == self.mask_id, prior.argmax(-1), after)
        return score(self.reward, pred, self.am, prior.shape[-1]).view(self.B, self.K)

    def __call__(self, pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]):
        after = kwargs["sample"]  # (R, L)
        rec = self.recorder
        last = step == self.num_steps - 1
        r = self._predicted_reward(after, rec.prior, last)
        log_g = self._log_potential(r)
        if self.cfg.proposal_correction and rec.guided is not rec.prior:
            ratio = proposal_log_ratio(
                rec.before, after, rec.prior, rec.guided, self.mask_id, self.tau
            )
            log_g = log_g + ratio.view(self.B, self.K)
        self.log_w = self.log_w + log_g
        ess = resampling.effective_sample_size(self.log_w)
        self.ess.append(ess)
        if last:
            self.final_rewards = r
            self.resampled.append(torch.zeros_like(ess, dtype=torch.bool))
            return None
        need = ess < self.cfg.ess_threshold * self.K
        every = self.cfg.resample_every
        if every > 0 and (step + 1) % every == 0:
            need = torch.ones_like(need)
        self.resampled.append(need)
        return {"sample": self._resample(after, need)}

    def _resample(self, after: torch.Tensor, need: torch.Tensor) -> torch.Tensor:
        B, K = self.B, self.K
        drawn = resampling.resample(self.log_w, self.cfg.scheme, self.generator)
        keep = torch.arange(K, device=drawn.device).expand(B, K)
        ancestors = torch.where(need.unsqueeze(-1), drawn, keep)  # (B, K)
        self.log_z = self.log_z + torch.where(
            need, resampling.log_mean_weight(self.log_w), torch.zeros_like(self.log_z)
        )
        self.log_w = torch.where(need.unsqueeze(-1), torch.zeros_like(self.log_w), self.log_w)
        if self.memory is not None:
            self.memory = self.memory.gather(1, ancestors)
        flat = (ancestors + K * torch.arange(B, device=drawn.device).unsqueeze(-1)).flatten()
        _permute_warm_start(self.recorder.hook, flat)
        return after[flat]

    def evidence(self) -> torch.Tensor:
        """``log Ẑ`` per prompt: the resampling steps' log mean weights plus the final one."""
        return self.log_z + resampling.log_mean_weight(self.log_w)


def _permute_warm_start(hook: Any, flat: torch.Tensor) -> None:
    """Reorder the hook's warm-start state (``RewardGuidance._warm``) with the particles, so a
    copy continues from its ancestor's φ. Its rows stay; only the position→row index moves."""
    warm = getattr(hook, "_warm", None)
    if isinstance(warm, WarmStart):
        hook._warm = dataclasses.replace(warm, index=warm.index[flat.to(warm.index.device)])


def run_smc(
    pipe: Any,
    recorder: StepRecorder,
    reward: CountingReward,
    inputs: Inputs,
    config: SMCConfig,
    *,
    num_inference_steps: int,
    generator: torch.Generator,
    meter: Meter,
) -> SearchResult:
    """One SMC run of ``K = config.num_particles`` particles per prompt (see :func:`search`)."""
    B, K = inputs.batch_size, config.num_particles
    _, am, _ = inputs.repeat(K)
    smc = SMCStep(
        config,
        recorder,
        reward,
        am,
        num_prompts=B,
        num_steps=num_inference_steps,
        mask_id=pipe.mask_token_id,
        sampler_temperature=float(pipe.scheduler.config.temperature),
        generator=generator,
    )
    out = pipe(
        **inputs.pipe_kwargs(),
        num_samples=K,
        num_inference_steps=num_inference_steps,
        guidance=recorder,
        generator=generator,
        output_type="ids",
        callback_on_step_end=smc,
        callback_on_step_end_tensor_inputs=["sample"],
    )
    particles = out.sequences.view(B, K, -1)
    weights = resampling.normalised_weights(smc.log_w)  # (B, K)
    rewards = smc.final_rewards  # (B, K) float64
    if config.pick == "weight":
        best = weights.argmax(dim=-1)
    elif config.pick == "reward":
        best = rewards.argmax(dim=-1)
    else:
        best = resampling.resample(smc.log_w, "multinomial", generator)[:, 0]
    rows = torch.arange(B, device=best.device)
    keep = config.return_particles
    return SearchResult(
        method=config.method,
        sequences=particles[rows, best],
        rewards=rewards[rows, best].float(),
        spent=meter.spent,
        particles=particles if keep else None,
        particle_rewards=rewards.float() if keep else None,
        weights=weights if keep else None,
        ess_history=torch.stack(smc.ess),
        resampled=torch.stack(smc.resampled),
        log_evidence=smc.evidence(),
        config=config.to_dict(),
    )


def check_smc(pipe: Any, hook: Any | None, config: SMCConfig, order: str) -> None:
    """The SMC-specific refusals, before any work."""
    sched = pipe.scheduler.config
    if sched.get("decode", "sample") == "argmax" or float(sched.get("temperature", 1.0)) == 0.0:
        raise ValueError(
            f"SMC needs a stochastic sampler, got a scheduler with decode={sched.get('decode')!r} "
            f"and temperature={sched.get('temperature')!r}: every particle would be the same. "
            "Use `decode='sample'` and a temperature > 0."
        )
    if hook is None or not config.proposal_correction:
        return
    if order == "confidence":
        raise ValueError(
            "SMC with guided proposals needs random-order unmasking, got the scheduler's "
            "unmasking order 'confidence': confidence ranks positions by the guided logits, so "
            "the choice of positions would be part of the proposal and its weight is not "
            "corrected. Build the scheduler with random order, or run SMC without guidance."
        )
    if hook.config.handoff == "argmax":
        raise ValueError(
            "SMC with guided proposals needs `handoff='logits'` in the GuidanceConfig, got "
            "'argmax': an argmax proposal does not cover the model's support, so no weight can "
            "correct it. Use `GuidanceConfig(handoff='logits')`."
        )
