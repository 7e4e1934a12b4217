"""Search methods on a tiny denoiser: contracts, accounting, reproducibility, refusals."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from pipelines import MaskedDiffusionPipeline, MaskedDiffusionScheduler
from redge_guidance import GuidanceConfig
from redge_guidance.search import (
    BestOfNConfig,
    Budget,
    RefineConfig,
    SMCConfig,
    config_from_dict,
    proposal_log_ratio,
    search,
)
from rewards import FunctionReward, TokenSetReward

VOCAB, MASK = 12, 11  # the mask id is the last vocabulary entry


class TinyDenoiser(nn.Module):
    """Context-dependent logits from an embedding, a mean-pooled mix and a projection; counts
    its forwards (rows)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.emb = nn.Embedding(VOCAB, 16)
        self.mix = nn.Linear(16, 16)
        self.out = nn.Linear(16, VOCAB)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        self.rows = 0

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        self.rows += input_ids.shape[0]
        h = self.emb(input_ids)
        return self.out(torch.tanh(h + self.mix(h.mean(dim=1, keepdim=True))))


def make_scheduler(unmasking: str = "random", **options) -> MaskedDiffusionScheduler:
    """The scheduler under the config key of the day (`unmasking`, formerly `order`)."""
    params = MaskedDiffusionScheduler.__init__.__code__.co_varnames
    key = "unmasking" if "unmasking" in params else "order"
    return MaskedDiffusionScheduler(mask_token_id=MASK, **{key: unmasking}, **options)


def make_pipe(**scheduler_options) -> MaskedDiffusionPipeline:
    pipe = MaskedDiffusionPipeline(
        model=TinyDenoiser().eval(), scheduler=make_scheduler(**scheduler_options)
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def pipe():
    return make_pipe()


@pytest.fixture
def reward():
    return TokenSetReward([3, 5], weights=[1.0, 0.5], vocab_size=VOCAB)


def prompts(B: int = 2, L: int = 6) -> torch.Tensor:
    ids = torch.full((B, L), MASK)
    ids[:, 0] = torch.arange(B) + 1  # a one-token prompt per row
    return ids


GUIDED = GuidanceConfig(n_opt_steps=2, lr=0.5, record_rewards=False)
STEPS = 4


def run(pipe, reward, config, seed=0, **kwargs):
    kwargs.setdefault("num_inference_steps", STEPS)
    return search(
        pipe, reward, prompts(), config, generator=torch.Generator().manual_seed(seed), **kwargs
    )


# -- configs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls, field, value",
    [
        (SMCConfig, "num_particles", 0),
        (SMCConfig, "temperature", 0.0),
        (SMCConfig, "temperature", float("inf")),
        (SMCConfig, "ess_threshold", 1.5),
        (SMCConfig, "resample_every", -1),
        (SMCConfig, "scheme", "stratified"),
        (SMCConfig, "potential", "mean"),
        (SMCConfig, "pick", "best"),
        (SMCConfig, "proposal_correction", 1),
        (BestOfNConfig, "num_candidates", 0),
        (BestOfNConfig, "batch_size", 2.5),
        (RefineConfig, "fraction", 0.0),
        (RefineConfig, "rounds", -1),
        (RefineConfig, "select", "random"),
        (RefineConfig, "num_inference_steps", 0),
        (Budget, "max_seconds", -1.0),
        (Budget, "max_denoiser_forwards", 0),
    ],
)
def test_config_errors_name_the_field_and_echo_the_value(cls, field, value):
    with pytest.raises(ValueError, match=f"`{field}`") as err:
        cls(**{field: value})
    assert repr(value) in str(err.value)


@pytest.mark.parametrize("config", [SMCConfig(num_particles=3), BestOfNConfig(), RefineConfig()])
def test_configs_round_trip_through_json(config):
    data = json.loads(json.dumps(config.to_dict()))
    assert config_from_dict(data) == config
    assert type(config).from_dict(data) == config


def test_config_from_dict_names_unknown_methods_and_fields():
    with pytest.raises(ValueError, match="`method`.*'beam'"):
        config_from_dict({"method": "beam"})
    with pytest.raises(ValueError, match="Unknown SMCConfig fields \\['particles'\\]"):
        config_from_dict({"method": "smc", "particles": 4})


# -- proposal correction ---------------------------------------------------------------------


def test_proposal_log_ratio_matches_hand_computation_and_ignores_masked_entries():
    low = torch.finfo(torch.float32).min
    prior = torch.tensor([[[0.0, 1.0, low], [2.0, 0.0, -float("inf")]]])  # (1, 2, 3)
    guided = torch.tensor([[[1.0, -1.0, low], [0.0, 0.0, -float("inf")]]])
    before = torch.tensor([[2, 2]])  # both masked (mask id 2)
    after = torch.tensor([[1, 2]])  # position 0 committed token 1, position 1 still masked
    got = proposal_log_ratio(before, after, prior, guided, mask_id=2, temperature=1.0)
    logp = torch.log_softmax(torch.tensor([0.0, 1.0]).double(), 0)[1]
    logq = torch.log_softmax(torch.tensor([1.0, -1.0]).double(), 0)[1]
    assert torch.isfinite(got).all()
    assert torch.allclose(got, (logp - logq).reshape(1))
    assert proposal_log_ratio(before, after, prior, prior, 2, 1.0).abs().max() == 0


# -- SMC ---------------------------------------------------------------------------------------


def test_smc_shapes_weights_and_exact_compute_accounting(pipe, reward):
    B, K, L = 2, 3, 6
    res = run(pipe, reward, SMCConfig(num_particles=K), guidance=GUIDED)
    assert res.sequences.shape == (B, L) and res.particles.shape == (B, K, L)
    assert torch.allclose(res.weights.sum(-1), torch.ones(B, dtype=torch.float64))
    assert res.ess_history.shape == (STEPS, B) and res.resampled.shape == (STEPS, B)
    assert ((res.ess_history >= 1 - 1e-9) & (res.ess_history <= K + 1e-9)).all()
    assert not res.resampled[-1].any() and torch.isfinite(res.log_evidence).all()
    assert (res.particles[:, :, 0] == torch.tensor([[1], [2]])).all()  # prompts kept
    assert (res.particles != MASK).all()
    R = B * K
    spent = res.spent
    assert spent.denoiser_forwards == R * STEPS == pipe.model.rows
    # one potential per particle per step, n_opt_steps pathwise inner steps per guided step
    assert spent.reward_forwards == R * STEPS * (1 + GUIDED.n_opt_steps)
    assert spent.reward_backwards == R * STEPS * GUIDED.n_opt_steps
    assert spent.wall_seconds > 0 and spent.cpu_seconds > 0


def test_smc_picks(pipe, reward):
    by_reward = run(pipe, reward, SMCConfig(num_particles=4, pick="reward"))
    assert torch.equal(by_reward.rewards, by_reward.particle_rewards.max(dim=1).values)
    by_weight = run(pipe, reward, SMCConfig(num_particles=4, pick="weight"))
    best = by_weight.weights.argmax(dim=1)
    assert torch.equal(by_weight.sequences, by_weight.particles[torch.arange(2), best])
    drawn = run(pipe, reward, SMCConfig(num_particles=4, pick="sample", return_particles=False))
    assert drawn.particles is None and drawn.sequences.shape == (2, 6)


def test_smc_resampling_schedule(pipe, reward):
    every = run(pipe, reward, SMCConfig(num_particles=4, resample_every=1, ess_threshold=0.0))
    assert every.resampling_steps == list(range(STEPS - 1))
    never = run(pipe, reward, SMCConfig(num_particles=4, ess_threshold=0.0))
    assert never.resampling_steps == [] and not never.resampled.any()


@pytest.mark.parametrize("config", [SMCConfig(num_particles=3), BestOfNConfig(num_candidates=3)])
def test_seeded_search_repeats_and_leaves_the_callers_generator_alone(pipe, reward, config):
    gen = torch.Generator().manual_seed(7)
    state = gen.get_state().clone()
    first = search(
        pipe, reward, prompts(), config, guidance=GUIDED, num_inference_steps=STEPS, generator=gen
    )
    assert torch.equal(gen.get_state(), state)
    again = search(
        pipe,
        reward,
        prompts(),
        config,
        guidance=GUIDED,
        num_inference_steps=STEPS,
        generator=torch.Generator().manual_seed(7),
    )
    assert torch.equal(first.sequences, again.sequences)
    assert torch.equal(first.particles, again.particles)
    if first.weights is not None:
        assert torch.equal(first.weights, again.weights)
    other = [run(pipe, reward, config, seed=s).particles for s in (1, 2, 3)]
    assert any(not torch.equal(o, first.particles) for o in other)


def test_smc_with_warm_start_and_resampling_runs(pipe, reward):
    guided = dataclasses.replace(GUIDED, warm_start=0.5)
    res = run(pipe, reward, SMCConfig(num_particles=3, resample_every=1), guidance=guided)
    assert (res.particles != MASK).all()


def test_smc_black_box_reward_with_guidance(pipe):
    black_box = FunctionReward(lambda seqs: [s.count(3) for s in seqs], on="ids")
    guided = dataclasses.replace(GUIDED, num_relaxed_samples=2)
    res = run(pipe, black_box, SMCConfig(num_particles=2), guidance=guided)
    assert res.spent.reward_backwards == 0 and res.spent.reward_forwards > 0


# -- best-of-N -------------------------------------------------------------------------------


def test_best_of_n_keeps_the_best_candidate_in_batches(pipe):
    black_box = FunctionReward(lambda seqs: [s.count(3) + 0.1 * s[2] for s in seqs], on="ids")
    res = run(pipe, black_box, BestOfNConfig(num_candidates=5, batch_size=2))
    assert res.particles.shape == (2, 5, 6)
    assert torch.equal(res.rewards, res.particle_rewards.max(dim=1).values)
    assert res.spent.denoiser_forwards == 2 * 5 * STEPS
    assert res.spent.reward_forwards == 2 * 5  # scoring only
    assert not res.budget_exhausted


def test_best_of_n_stops_at_the_budget(pipe, reward):
    budget = Budget(max_denoiser_forwards=2 * 2 * STEPS * 2)  # two batches of 2
    res = run(pipe, reward, BestOfNConfig(num_candidates=6, batch_size=2), budget=budget)
    assert res.budget_exhausted and res.particles.shape == (2, 4, 6)
    assert res.spent.denoiser_forwards <= budget.max_denoiser_forwards


# -- refinement --------------------------------------------------------------------------------


@pytest.mark.parametrize("select", ["confidence", "gradient"])
def test_refine_never_lowers_a_rows_reward_and_keeps_the_prompt(pipe, reward, select):
    res = run(pipe, reward, RefineConfig(rounds=3, fraction=0.5, select=select), guidance=GUIDED)
    assert res.round_rewards.shape == (4, 2)
    assert (res.round_rewards.diff(dim=0) >= 0).all()
    assert torch.equal(res.rewards, res.round_rewards[-1])
    assert (res.sequences[:, 0] == torch.tensor([1, 2])).all()
    assert (res.sequences != MASK).all()


def test_refine_remasks_only_where_remask_fn_says(pipe, reward):
    seen = []

    def last_two(seqs, rewards):
        seen.append(seqs.clone())
        chosen = torch.zeros_like(seqs, dtype=torch.bool)
        chosen[:, -2:] = True
        return chosen

    res = run(pipe, reward, RefineConfig(rounds=2, keep_best=False), remask_fn=last_two)
    assert len(seen) == 2
    assert torch.equal(res.sequences[:, :4], seen[0][:, :4])  # untouched positions
    nothing = run(pipe, reward, RefineConfig(rounds=2), remask_fn=lambda s, r: s < 0)
    assert nothing.round_rewards.shape == (1, 2)  # no position to redo: no round
    with pytest.raises(ValueError, match="`remask_fn` must return a bool tensor"):
        run(pipe, reward, RefineConfig(rounds=1), remask_fn=lambda s, r: s)


# -- refusals, all before any model call --------------------------------------------------------


@pytest.mark.parametrize(
    "change, match",
    [
        ({"config": {"method": "smc"}}, "`config` must be a BestOfNConfig"),
        ({"reward": "reward"}, "`reward` must be callable"),
        ({"guidance": {"lr": 0.1}}, "`guidance` must be a GuidanceConfig"),
        ({"num_inference_steps": 0}, "`num_inference_steps`.*0"),
        ({"generator": 0}, "`generator` must be a torch.Generator"),
        ({"input_ids": torch.ones(2, 6)}, "`input_ids` must be a LongTensor"),
        ({"input_ids": torch.ones(2, 6, dtype=torch.long)}, "Nothing to generate in row"),
        ({"input_ids": [[MASK, MASK], [MASK]]}, "equal-length lists"),
        ({"length": -1}, "`length`.*-1"),
        ({"attention_mask": torch.ones(3)}, "`attention_mask` must be a tensor"),
        ({"fixed_mask": torch.ones(2, 6)}, "`fixed_mask` must be a bool tensor"),
        ({"remask_fn": lambda s, r: s}, "`remask_fn` is only used by RefineConfig"),
        ({"budget": Budget(max_denoiser_forwards=5)}, "`budget.max_denoiser_forwards` is 5"),
        ({"budget": {"max_seconds": 1}}, "`budget` must be a Budget"),
        ({"guidance": dataclasses.replace(GUIDED, handoff="argmax")}, "handoff='logits'"),
    ],
)
def test_bad_input_is_refused_before_any_work(pipe, reward, change, match):
    kwargs = {
        "reward": reward,
        "input_ids": prompts(),
        "config": SMCConfig(num_particles=2),
        "guidance": GUIDED,
    }
    kwargs.update(change)
    with pytest.raises(ValueError, match=match):
        search(
            pipe,
            kwargs.pop("reward"),
            kwargs.pop("input_ids"),
            kwargs.pop("config"),
            num_inference_steps=kwargs.pop("num_inference_steps", STEPS),
            **kwargs,
        )
    assert pipe.model.rows == 0


def test_smc_refuses_confidence_order_ranked_by_the_guided_logits(reward):
    pipe = make_pipe(unmasking="confidence")
    with pytest.raises(ValueError, match="ranking 'proposal'.*`ranking='prior'`"):
        run(pipe, reward, SMCConfig(num_particles=2), guidance=GUIDED)
    assert pipe.model.rows == 0
    # without guidance the proposal is the model itself: confidence order is fine
    assert (run(pipe, reward, SMCConfig(num_particles=2)).sequences != MASK).all()


def test_guided_smc_on_confidence_order_ranked_by_the_prior(reward):
    pipe = make_pipe(unmasking="confidence", ranking="prior")
    seen = []
    step = pipe.scheduler.step

    def spy(model_output, timestep, sample, **kwargs):
        seen.append(kwargs.get("ranking_logits"))
        return step(model_output, timestep, sample, **kwargs)

    pipe.scheduler.step = spy
    res = run(pipe, reward, SMCConfig(num_particles=4), guidance=GUIDED)
    assert (res.sequences != MASK).all() and res.weights.shape == (2, 4)
    assert len(seen) == STEPS and all(torch.is_tensor(x) for x in seen)
    # corrected over every drawn token: the weights moved off uniform
    assert not torch.allclose(res.weights, torch.full((2, 4), 0.25, dtype=torch.float64))


# Outputs recorded before the scheduler had a `ranking` option (seeded, 4 steps, 2 samples of
# 2 prompts): the default paths, and the unguided path under `ranking="prior"`, are unchanged.
PINNED = {
    ("confidence", False): [
        [1, 4, 2, 9, 9, 9, 4, 4],
        [1, 4, 9, 0, 9, 4, 10, 9],
        [2, 4, 4, 4, 4, 9, 4, 4],
        [2, 4, 2, 4, 4, 4, 0, 4],
    ],
    ("confidence", True): [
        [1, 3, 3, 5, 3, 6, 5, 4],
        [1, 6, 0, 3, 3, 10, 3, 3],
        [2, 4, 9, 4, 4, 4, 2, 4],
        [2, 4, 2, 4, 3, 4, 0, 4],
    ],
    ("random", False): [
        [1, 9, 4, 7, 1, 7, 4, 0],
        [1, 9, 2, 8, 4, 9, 4, 2],
        [2, 4, 2, 9, 9, 9, 10, 9],
        [2, 9, 4, 4, 4, 9, 7, 4],
    ],
    ("random", True): [
        [1, 6, 3, 7, 1, 7, 5, 2],
        [1, 9, 2, 5, 5, 9, 4, 2],
        [2, 3, 2, 9, 9, 9, 10, 7],
        [2, 7, 4, 4, 4, 6, 7, 4],
    ],
}
PINNED_SMC = [
    [[1, 9, 2, 4, 2, 9, 9, 5], [1, 0, 9, 5, 9, 6, 0, 4], [1, 9, 4, 4, 4, 4, 9, 4]],
    [[2, 9, 10, 2, 4, 2, 9, 9], [2, 4, 4, 4, 9, 9, 3, 4], [2, 4, 9, 4, 4, 9, 9, 9]],
]


@pytest.mark.parametrize("unmasking", ["confidence", "random"])
@pytest.mark.parametrize("guided", [False, True], ids=["unguided", "guided"])
@pytest.mark.parametrize("ranking", ["proposal", "prior"])
def test_default_and_unguided_paths_are_unchanged(reward, unmasking, guided, ranking):
    from redge_guidance import RewardGuidance

    pipe = make_pipe(unmasking=unmasking, ranking=ranking)
    hook = RewardGuidance(reward, GUIDED, mask_token_id=MASK) if guided else None
    out = pipe(
        input_ids=prompts(2, 8),
        num_samples=2,
        num_inference_steps=4,
        guidance=hook,
        generator=torch.Generator().manual_seed(3),
        output_type="ids",
    )
    if guided and ranking == "prior" and unmasking == "confidence":
        # the one path that changes: guided proposals ranked by the model's logits
        assert out.sequences.tolist() != PINNED[(unmasking, guided)]
        return
    assert out.sequences.tolist() == PINNED[(unmasking, guided)]
    if unmasking == "confidence" and not guided:
        res = search(
            pipe,
            reward,
            prompts(2, 8),
            SMCConfig(num_particles=4),
            num_inference_steps=4,
            generator=torch.Generator().manual_seed(5),
        )
        assert res.particles[:, :3].tolist() == PINNED_SMC


@pytest.mark.parametrize("options", [{"decode": "argmax"}, {"temperature": 0.0}])
def test_smc_refuses_deterministic_samplers(reward, options):
    pipe = make_pipe(**options)
    with pytest.raises(ValueError, match="SMC needs a stochastic sampler"):
        run(pipe, reward, SMCConfig(num_particles=2))
    assert pipe.model.rows == 0


def test_gradient_selection_refuses_black_box_rewards(pipe):
    black_box = FunctionReward(lambda seqs: [0.0] * len(seqs), on="ids")
    with pytest.raises(ValueError, match="`select='gradient'` needs a differentiable reward"):
        run(pipe, black_box, RefineConfig(select="gradient"))


def test_a_bare_model_needs_and_gets_a_mask_id(reward):
    model = TinyDenoiser().eval()
    with pytest.raises(ValueError, match="`mask_token_id` is needed"):
        search(model, reward, prompts(), BestOfNConfig(num_candidates=1))
    res = search(
        model,
        reward,
        prompts(),
        BestOfNConfig(num_candidates=2),
        mask_token_id=MASK,
        num_inference_steps=STEPS,
    )
    assert (res.sequences != MASK).all() and model.rows == 2 * 2 * STEPS


@pytest.mark.parametrize(
    "potential, total", [("difference", 2.0), ("max", 5.0), ("sum", 1.0 + 5.0 - 2.0 + 2.0)]
)
def test_potentials_multiply_to_their_targets(potential, total):
    """r̂ along a path 1, 5, −2, 2 (the last is the final reward), λ = 2: the product of the
    increments is exp(R / λ) with R the final reward, the path's max, or its sum."""
    from redge_guidance.search.population import log_potential

    config, memory, log_w = SMCConfig(potential=potential, temperature=2.0), None, 0.0
    for r in (1.0, 5.0, -2.0, 2.0):
        log_g, memory = log_potential(config, torch.tensor([[r]]), memory)
        log_w = log_w + log_g
    assert torch.allclose(log_w, torch.tensor([[total / 2.0]]))


def test_refine_stops_at_the_time_budget(pipe, reward):
    res = run(pipe, reward, RefineConfig(rounds=5), budget=Budget(max_seconds=1e-9))
    assert res.budget_exhausted and res.round_rewards.shape == (1, 2)  # the first pass only


def test_search_result_serialises_to_json(pipe, reward):
    res = run(pipe, reward, SMCConfig(num_particles=2, resample_every=1))
    data = json.loads(json.dumps(res.to_dict()))
    assert data["method"] == "smc" and data["config"]["num_particles"] == 2
    assert data["resampling_steps"] == list(range(STEPS - 1))
    assert data["spent"]["denoiser_forwards"] == 2 * 2 * STEPS


def test_gradient_selection_remasks_where_a_switch_gains_most(reward):
    """Reward: 1 per token 3, 0.5 per token 5. Switching 0 → 3 gains 1, 5 → 3 gains 0.5, a 3
    gains nothing; the mask token (11, gradient 0 here) is never the switch."""
    from redge_guidance.search.accounting import CountingReward, Meter
    from redge_guidance.search.refine import _choose, _gradient_gain

    seq = torch.tensor([[3, 0, 3, 5]])
    counted = CountingReward(reward, Meter(None))
    gain = _gradient_gain(counted, seq, torch.ones_like(seq), VOCAB, MASK)
    assert torch.allclose(gain, torch.tensor([[0.0, 1.0, 0.0, 0.5]]))
    free = torch.ones_like(seq, dtype=torch.bool)
    assert _choose(gain, free, 0.5).tolist() == [[False, True, False, True]]
    assert counted.meter.spent.reward_backwards == 1
