"""Sequential Monte Carlo with (optionally guided) proposals inside the pipeline's own loop.

K particles per prompt run as one batch of ``B·K`` rows through ``MaskedDiffusionPipeline``;
the pipeline calls :class:`~._runner.StepRecorder` as its guidance (it keeps ℓ and φ of the
step) and :class:`SMCStep` as its ``callback_on_step_end``, which reweights the particles and
hands back a resampled ``sample``. The maths is in ``docs/search.md``.
"""

from __future__ import annotations

from typing import Any

import torch

from ._runner import Inputs, StepRecorder, score, unmasking_order
from .accounting import CountingReward, Meter
from .config import SMCConfig
from .population import Population
from .result import ComputeSpent, SearchResult

__all__ = ["SMCStep", "check_smc", "population_result", "proposal_log_ratio", "run_smc"]


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
    a drawn token has a finite ratio. Passing the step's ``pred_original_sample`` as ``after``
    sums over every token drawn at the step instead, the exact ratio under confidence order
    ranked by the prior (``docs/search.md``).
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

    The :class:`~.population.Population` holds the weights; when a prompt resamples, the
    sequence and the hook's warm-start state are permuted with them.
    """

    def __init__(
        self,
        population: Population,
        recorder: StepRecorder,
        reward: CountingReward,
        attention_mask: torch.Tensor,
        *,
        num_steps: int,
        mask_id: int,
        sampler_temperature: float,
        all_drawn: bool = False,
    ) -> None:
        self.pop, self.recorder, self.reward = population, recorder, reward
        self.am = attention_mask  # (R, L)
        self.num_steps, self.mask_id = num_steps, mask_id
        self.tau = sampler_temperature
        self.all_drawn = all_drawn  # correct every drawn token, not only the committed ones

    def __call__(self, pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]):
        after = kwargs["sample"]  # (R, L)
        rec, pop = self.recorder, self.pop
        last = step == self.num_steps - 1
        # r̂: the committed tokens, the model's argmax at still-masked positions
        pred = after if last else torch.where(after == self.mask_id, rec.prior.argmax(-1), after)
        r = score(self.reward, pred, self.am, rec.prior.shape[-1]).view(pop.B, pop.K)
        ratio = None
        if pop.cfg.proposal_correction and rec.guided is not rec.prior:
            # Random order: the committed tokens. Confidence order ranked by the prior: every
            # token drawn at the step, since which ones are committed depends on all of them.
            drawn = kwargs["pred_original_sample"] if self.all_drawn else after
            ratio = proposal_log_ratio(
                rec.before, drawn, rec.prior, rec.guided, self.mask_id, self.tau
            ).view(pop.B, pop.K)
        pop.reweight(r, ratio)
        flat = pop.resample(allowed=not last)
        if flat is None:
            return None
        reorder = getattr(rec.hook, "reorder", None)
        if callable(reorder):  # a copy continues from its ancestor's warm-start state
            reorder(flat)
        return {"sample": after[flat]}


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
    pop = Population(config, B, generator, am.device)
    smc = SMCStep(
        pop,
        recorder,
        reward,
        am,
        num_steps=num_inference_steps,
        mask_id=pipe.mask_token_id,
        sampler_temperature=float(pipe.scheduler.config.temperature),
        all_drawn=unmasking_order(pipe.scheduler) == "confidence",
    )
    out = pipe(
        **inputs.pipe_kwargs(),
        num_samples=K,
        num_inference_steps=num_inference_steps,
        guidance=recorder,
        generator=generator,
        output_type="ids",
        callback_on_step_end=smc,
        callback_on_step_end_tensor_inputs=["sample", "pred_original_sample"],
    )
    return population_result(config, pop, out.sequences.view(B, K, -1))


def population_result(config: SMCConfig, pop: Population, particles: torch.Tensor):
    """The :class:`SearchResult` of a finished population with its final particles (B, K, L)."""
    best = pop.pick()
    rows = torch.arange(pop.B, device=best.device)
    keep = config.return_particles
    return SearchResult(
        method=config.method,
        sequences=particles[rows, best.to(particles.device)],
        rewards=pop.rewards[rows, best].float(),
        spent=ComputeSpent(),
        particles=particles if keep else None,
        particle_rewards=pop.rewards.float() if keep else None,
        picked=best if keep else None,
        weights=pop.weights() if keep else None,
        ess_history=torch.stack(pop.ess),
        resampled=torch.stack(pop.resampled),
        log_evidence=pop.evidence(),
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
    if hook is None:
        return
    if order == "confidence" and sched.get("ranking", "proposal") != "prior":
        raise ValueError(
            "SMC with guided proposals on confidence-order unmasking needs the positions ranked "
            f"by the model's unguided logits, got the scheduler's ranking "
            f"{sched.get('ranking', 'proposal')!r}: confidence then ranks positions by the guided "
            "logits, so the choice of positions is part of the proposal and its weight is not "
            "corrected. Build the scheduler with `ranking='prior'` (e.g. "
            "`MaskedDiffusionScheduler.from_config(pipe.scheduler.config, ranking='prior')`), "
            "use random-order unmasking, or run SMC without guidance."
        )
    if hook.config.handoff == "argmax":
        raise ValueError(
            "SMC with guided proposals needs `handoff='logits'` in the GuidanceConfig, got "
            "'argmax': an argmax proposal does not cover the model's support, so no weight can "
            "correct it. Use `GuidanceConfig(handoff='logits')`."
        )
