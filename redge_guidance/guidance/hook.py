"""`RewardGuidance`: the hook a pipeline calls between the denoiser and the sampler.

The protocol the pipelines rely on: :meth:`RewardGuidance.reset` at the start of a generation,
``hook(logits, sample, editable=..., step=..., num_steps=..., generator=..., attention_mask=...)``
at every denoising step (guided logits back), :meth:`RewardGuidance.score` for finished
sequences, and :attr:`RewardGuidance.trace` (one statistics dict per call). The optimisation
itself is :class:`~redge_guidance.guidance.inner.InnerProblem`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import time
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from rewards import check_scores, check_vocab_size, finite_checks

from .._seeding import derive_seed
from ._checks import check_inputs, device_of, module_device, to_device
from .config import GuidanceConfig, is_int, upgrade_names
from .inner import InnerProblem, WarmStart
from .trace import GuidanceStepStats

if TYPE_CHECKING:  # pragma: no cover
    from rewards import Reward

__all__ = ["RewardGuidance"]


class RewardGuidance:
    r"""Reward guidance hook for masked diffusion pipelines (``pipelines.MaskedDiffusionPipeline``,
    and upstream pipelines through ``redge_guidance.attach``).

    At each guided step, with ``ℓ`` the denoiser's logits and ``E`` the editable positions, it
    fits variational logits ``φ`` (one row per editable position, float32) by ``n_opt_steps``
    Adam steps (:class:`~redge_guidance.guidance.inner.InnerProblem`) on

        loss(φ) = −Σ_b [mean_s reward(x̃⁽ˢ⁾)_b − kl_weight · Σ_{l∈E_b} KL(q_φ,l ‖ p_ℓ,l)]

    Each sample's objective depends only on its own rows of φ (per-sample reward, per-sample KL,
    per-sample clipping and early stop), so samples in a batch do not interact. What the reward
    sees, ``x̃`` of shape ``(B, L, V)``:

    - editable positions: the relaxed sample ``estimator(φ).hard`` (exact one-hot values carrying
      the relaxation's gradient), or an exact categorical draw for the score-function gradient;
    - committed positions (prompt, clues, tokens already unmasked, padding): the exact one-hot of
      their current token in ``sample``, fixed during the inner loop (carry-over);
    - positions that are still masked but not editable (outside the active block of a block
      diffusion model): the model's own prediction ``softmax(ℓ)``, detached. A one-hot of the mask
      token would show the reward a token it was never trained on; the soft prediction is the
      model's best guess of what will be there. Which positions are "still masked" comes from
      ``mask_token_id`` when given, otherwise from the logits: a position whose current token has
      a masked logit (``<= finfo.min``, the mask token is never predicted), or whose token id is
      outside ``[0, V)`` (a mask id beyond the logits' vocabulary, as in MaskGIT).

    Guarantees:

    - gradients never flow into the denoiser (``logits`` is detached) nor into the reward's
      parameters (gradients are taken with respect to the reward's input only);
    - vocabulary entries masked in ``logits`` (``<= finfo(dtype).min``, including ``-inf``) stay
      masked in φ and come back with their input value, so the mask token is never revived;
    - positions outside ``editable`` come back bit-identical to the input;
    - unguided calls (outside the guided range, no editable position, ``n_opt_steps=0``) return
      ``logits`` itself and draw no random numbers;
    - the hook never draws from the caller's ``generator``: its noise comes from a private
      generator seeded with a hash of the generator's seed and state at the first call since
      :meth:`reset`, ``step``, ``num_steps`` and the calls since :meth:`reset` (torch's global CPU
      generator when ``generator`` is None). So the scheduler's own draws are the same as in the
      unguided run, one seeded generator reproduces a whole guided generation, and a second
      generation with the same (advanced) generator gets fresh guidance noise. Pipelines call
      :meth:`reset` at the start of each generation.
    - half-precision logits are optimised in ``optimize_dtype`` (float32) and returned in their
      own dtype; with ``mixed_precision="bf16"`` the relaxation and the reward's input are
      bfloat16 while φ, Adam and the KL stay in ``optimize_dtype``.
    - the reward is called on the device it computes on (an accelerate hook's execution device,
      else its first parameter's): its input goes there, its scores come back to the logits'.

    Args:
        reward (`rewards.Reward`): maps ``(B, L, V)`` rows on the simplex to ``(B,)`` scores, higher
            is better. Read attributes: ``differentiable`` (default True), ``vocab_size``
            (default None = any) and the optional method ``validate(x)``, called once per
            generation (at the first guided step after :meth:`reset`).
        config (`GuidanceConfig`, *optional*): hyper-parameters; defaults to ``GuidanceConfig()``.
        callback (`Callable[[dict], None]`, *optional*): called with each step's statistics dict
            (the entry appended to :attr:`trace`).
        mask_token_id (`int`, *optional*): the denoiser's mask token id, to tell still-masked
            positions outside ``editable`` from committed ones (inferred from the logits if None).
        profile (`bool`, *optional*, defaults to False): time each phase of the inner loop into the
            trace's ``timing`` (on CUDA every phase then ends with a device synchronisation, so
            it is off by default; see also :meth:`profiling`).
        **overrides: fields of :class:`GuidanceConfig` replacing those of ``config``.

    Attributes:
        trace (`list[dict]`): one :class:`~redge_guidance.trace.GuidanceStepStats` dict per call.
        estimator: the relaxation built from the config.
    """

    def __init__(
        self,
        reward: Reward | Callable[..., torch.Tensor],
        config: GuidanceConfig | None = None,
        *,
        callback: Callable[[dict[str, Any]], None] | None = None,
        mask_token_id: int | None = None,
        profile: bool = False,
        **overrides: Any,
    ) -> None:
        if not callable(reward):
            raise ValueError(
                f"`reward` must be callable (a `rewards.Reward`), got {type(reward).__name__}."
            )
        if config is None:
            config = GuidanceConfig()
        if not isinstance(config, GuidanceConfig):
            raise ValueError(
                f"`config` must be a GuidanceConfig or None, got {type(config).__name__}. "
                "Use `GuidanceConfig.from_dict(...)` for a dict."
            )
        if overrides:
            overrides = upgrade_names(overrides, "RewardGuidance")
            valid = [f.name for f in dataclasses.fields(GuidanceConfig)]
            unknown = sorted(set(overrides) - set(valid))
            if unknown:
                raise ValueError(
                    f"Unknown RewardGuidance options {unknown}. "
                    f"Valid GuidanceConfig fields: {valid}."
                )
            config = dataclasses.replace(config, **overrides)
        if callback is not None and not callable(callback):
            raise ValueError(f"`callback` must be callable or None, got {callback!r}.")
        if mask_token_id is not None and (not is_int(mask_token_id) or mask_token_id < 0):
            raise ValueError(
                f"`mask_token_id` must be a non-negative integer or None, got {mask_token_id!r}."
            )
        if not isinstance(profile, bool):
            raise ValueError(f"`profile` must be a bool, got {profile!r}.")
        self.use_score_function = _uses_score_function(reward, config)
        restricted = config.top_k is not None or config.top_p is not None
        if restricted and not getattr(reward, "supports_sparse", False):
            warnings.warn(
                f"Reward {type(reward).__name__} has no sparse input path, so with `top_k`/"
                "`top_p` it still reads (B, L, V) rows written entry by entry (correct, but each "
                "inner step pays full-vocabulary passes in the reward). Rewards with "
                "`forward_sparse` (every embedding-input reward, token sets, lexicons, the "
                "vocabulary bridge) read only the support.",
                UserWarning,
                stacklevel=2,
            )
        self.reward = reward
        self.config = config
        self.callback = callback
        self.mask_token_id = mask_token_id
        self.profile = profile
        self.estimator = config.build_estimator()
        self.trace: list[dict[str, Any]] = []
        self._calls = 0
        self._source_key = ""  # the caller's seed and stream position, set at the first call
        self._warm: WarmStart | None = None  # the last guided call's φ (detached)
        self._checked = False  # reward validated for this generation

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reward={type(self.reward).__name__}, config={self.config!r})"

    # -- public helpers -------------------------------------------------------------------------

    def reset(self) -> None:
        """Start a generation: clear the trace, the warm-start state, the call counter and the
        once-per-generation reward checks."""
        self.trace = []
        self._calls = 0
        self._warm = None
        self._checked = False

    def reorder(self, ancestors: torch.Tensor) -> None:
        """Reorder the per-sample state (the warm start) after a population of samples was
        resampled: new sample ``b`` continues old sample ``ancestors[b]`` (search methods call
        this; ``ancestors`` is an int64 tensor of shape ``(B,)``)."""
        if self._warm is not None:
            index = self._warm.index[ancestors.to(self._warm.index.device)]
            self._warm = dataclasses.replace(self._warm, index=index)

    @contextlib.contextmanager
    def profiling(self) -> Iterator[RewardGuidance]:
        """``with hook.profiling(): ...`` times the phases of every guided call inside the block
        (see ``profile``)."""
        before, self.profile = self.profile, True
        try:
            yield self
        finally:
            self.profile = before

    @torch.no_grad()
    def score(
        self, sequences: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Reward of finished sequences, without gradient.

        Args:
            sequences (`torch.Tensor` of shape `(B, L, V)` float, or `(B, L)` int64 ids): one-hot
                rows (ids are one-hot encoded with the reward's ``vocab_size``).
            attention_mask (`torch.Tensor` of shape `(B, L)`, *optional*): 0 at padding.

        Returns:
            `torch.Tensor` of shape `(B,)`: the reward per sample.
        """
        if not isinstance(sequences, torch.Tensor):
            raise ValueError(f"`sequences` must be a tensor, got {type(sequences).__name__}.")
        if sequences.dim() == 2 and not sequences.is_floating_point():
            vocab = getattr(self.reward, "vocab_size", None)
            if vocab is None:
                raise ValueError(
                    f"`sequences` are token ids of shape {tuple(sequences.shape)} but reward "
                    f"{type(self.reward).__name__} has no `vocab_size` to one-hot them with. "
                    "Pass one-hot rows of shape (B, L, V)."
                )
            sequences = F.one_hot(sequences, vocab).float()
        if sequences.dim() != 3 or not sequences.is_floating_point():
            raise ValueError(
                f"`sequences` must be float one-hot rows of shape (B, L, V), got shape "
                f"{tuple(sequences.shape)} and dtype {sequences.dtype}."
            )
        check_vocab_size(self.reward, sequences.shape[-1])
        out = self._reward(sequences, attention_mask, sequences.shape[0])
        return check_scores(out, sequences.shape[0], f"Reward {type(self.reward).__name__}")

    # -- the hook -------------------------------------------------------------------------------

    def __call__(
        self,
        logits: torch.Tensor,
        sample: torch.Tensor,
        *,
        editable: torch.Tensor,
        step: int,
        num_steps: int,
        generator: torch.Generator | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Guide one denoising step.

        Args:
            logits (`torch.Tensor` of shape `(B, L, V)`, float): the denoiser's clean-token logits
                (mask id at ``finfo.min``). Never modified in place.
            sample (`torch.Tensor` of shape `(B, L)`, int64): current sequence, the mask id at
                still-masked positions.
            editable (`torch.Tensor` of shape `(B, L)`, bool): positions the hook may change.
            step (`int`): 0-based denoising step index, ``0 <= step < num_steps``.
            num_steps (`int`): total denoising steps.
            generator (`torch.Generator`, *optional*): the caller's generator; only its
                ``initial_seed()`` and, at the first call after :meth:`reset`, its state are read
                (see the class docstring).
            attention_mask (`torch.Tensor` of shape `(B, L)`, *optional*): 1 = real token,
                0 = padding; passed on to the reward.

        Returns:
            `torch.Tensor` of shape `(B, L, V)` in ``logits.dtype``: the guided logits (``logits``
            itself at unguided steps).
        """
        check_inputs(logits, sample, editable, step, num_steps, generator, attention_mask)
        call_index = self._calls
        self._calls += 1
        if call_index == 0:  # where the caller's stream stands at the start of this generation
            self._source_key = _generator_key(generator)
        reason = self._skip_reason(editable, step, num_steps)
        if reason:
            stats = GuidanceStepStats(step=step, num_steps=num_steps, guided=False, reason=reason)
            self._record(stats)
            return logits

        seed = derive_seed("redge-guidance", self._source_key, step, num_steps, call_index)
        start = time.perf_counter()
        # Hosts run under no_grad (or inference_mode): re-enable autograd locally.
        with torch.inference_mode(False), torch.enable_grad():
            out, stats = self._guide(logits, sample, editable, attention_mask, seed)
        stats.step, stats.num_steps, stats.seed = step, num_steps, seed
        stats.seconds = time.perf_counter() - start
        self._record(stats)
        return out

    # -- internals ------------------------------------------------------------------------------

    def _skip_reason(self, editable: torch.Tensor, step: int, num_steps: int) -> str:
        if self.config.n_opt_steps == 0:
            return "n_opt_steps=0"
        if not self.config.is_guided_step(step, num_steps):
            return "outside guided range"
        if not bool(editable.any()):
            return "no editable positions"
        return ""

    def _guide(
        self,
        logits: torch.Tensor,
        sample: torch.Tensor,
        editable: torch.Tensor,
        attention_mask: torch.Tensor | None,
        seed: int,
    ) -> tuple[torch.Tensor, GuidanceStepStats]:
        cfg = self.config
        check_vocab_size(self.reward, logits.shape[-1])
        problem = InnerProblem(
            cfg,
            self._reward,
            type(self.reward).__name__,
            logits,
            sample,
            editable,
            attention_mask=attention_mask,
            mask_token_id=self.mask_token_id,
            seed=seed,
            score_function=self.use_score_function,
            warm_start=self._warm,
            profile=self.profile,
            sparse_reward=bool(getattr(self.reward, "supports_sparse", False)),
        )
        first = not self._checked
        if first:
            self._validate(problem)
        stats = GuidanceStepStats(
            step=0,
            num_steps=1,
            guided=True,
            num_editable=problem.N,
            score_function=self.use_score_function,
            support_size=problem.K,
        )
        if not problem.support.dense:  # prior mass on φ's support, per sample
            mass = problem.per_sample(problem.prior_logp.exp().sum(-1).to(torch.float64))
            rows = problem.per_sample(
                torch.ones_like(problem.prior_logp[:, 0], dtype=torch.float64)
            )
            stats.support_mass_per_sample = (mass / rows.clamp_min(1)).tolist()
        if cfg.record_rewards:
            r_before = problem.decoded_reward(problem.prior_rows)
            stats.reward_before_per_sample = r_before.tolist()
            stats.reward_before = float(r_before.mean())
            problem.clock.lap("scoring")

        # The loop runs without host syncs: the first scores of a generation are checked once.
        with finite_checks(False):
            result = problem.run(check_output=first)
        self._checked = True
        phi = result.phi
        stats.inner_steps = result.steps_run
        stats.inner_steps_per_sample = result.steps_per_sample
        stats.stopped_early = result.steps_run < cfg.n_opt_steps
        if result.last_objective is not None:
            stats.objective_inner_last = float(result.last_objective.mean())

        with torch.no_grad():
            kl_b = problem.kl(phi)
            stats.kl_after_per_sample = kl_b.tolist()
            stats.kl_after = float(kl_b.mean())
            if cfg.record_rewards:
                r_after = problem.decoded_reward(phi)
                stats.reward_after_per_sample = r_after.tolist()
                stats.reward_after = float(r_after.mean())
                stats.objective = float((r_after.to(kl_b.dtype) - cfg.kl_weight * kl_b).mean())
            if cfg.warm_start > 0.0:
                self._warm = problem.warm_state(phi)
            problem.release()  # the reward's (B, L, V) input is no longer needed
            out = problem.guided_logits(phi)
        problem.clock.lap("scoring")
        stats.timing = dict(problem.clock.totals)
        return out, stats

    def _validate(self, problem: InnerProblem) -> None:
        """The reward's own ``validate`` (if any), once per generation, on a point of the
        simplex: the context with the prior's probabilities at the editable rows."""
        validate = getattr(self.reward, "validate", None)
        if not callable(validate):
            return
        x = problem.reward_input(problem.with_start_probs())
        if problem.attention_mask is None:
            validate(x)
        else:
            validate(x, problem.attention_mask)
        problem.clear_start_probs()
        problem.clock.lap("setup")

    def _reward(self, x: Any, attention_mask: torch.Tensor | None, expected: int) -> torch.Tensor:
        """The reward on ``x``, on the reward's own device (a reward model may live on another
        device than the generator: inputs go there, scores and gradients come back)."""
        home = device_of(x)
        device = module_device(self.reward)
        if device is not None and device != home:
            x = to_device(x, device)
            if attention_mask is not None:
                attention_mask = attention_mask.to(device)
        out = (
            self.reward(x)
            if attention_mask is None
            else self.reward(x, attention_mask=attention_mask)
        )
        out = check_scores(out, expected, f"Reward {type(self.reward).__name__}", finite=False)
        return out.to(home) if out.device != home else out

    def _record(self, stats: GuidanceStepStats) -> None:
        entry = stats.to_dict()
        self.trace.append(entry)
        if self.callback is not None:
            self.callback(entry)


def _uses_score_function(reward: Any, config: GuidanceConfig) -> bool:
    """Whether the reward term's gradient is REINFORCE (black box or ``score_function='always'``);
    checks that the configuration allows it."""
    name = type(reward).__name__
    differentiable = getattr(reward, "differentiable", True)
    if config.score_function == "never" and not differentiable:
        raise ValueError(
            f"Reward {name} has `differentiable=False` but `score_function='never'`. "
            "Use `score_function='auto'` (REINFORCE for black boxes)."
        )
    use = config.score_function == "always" or (
        config.score_function == "auto" and not differentiable
    )
    if use and config.num_relaxed_samples < 2:
        raise ValueError(
            f"Reward {name} is a black box (`differentiable=False`), so guidance uses the "
            "score-function gradient, whose leave-one-out baseline needs `num_relaxed_samples` "
            f">= 2; got {config.num_relaxed_samples}. Set `num_relaxed_samples=4` (or more)."
        )
    return use


def _generator_key(generator: torch.Generator | None) -> str:
    """The caller's seed and current stream position, read without drawing from it (torch's
    global CPU generator when `generator` is None, so `torch.manual_seed` still reproduces)."""
    if generator is None:
        generator = torch.default_generator
    state = generator.get_state().cpu().numpy().tobytes()
    position = hashlib.blake2b(state, digest_size=8).hexdigest()
    return f"{generator.initial_seed()}@{position}"
