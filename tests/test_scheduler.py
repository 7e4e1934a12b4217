"""Tests of `pipelines.MaskedDiffusionScheduler` (MDLM / MaskGIT / ReMDM reverse steps)."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch

from pipelines import MaskedDiffusionScheduler, MaskedDiffusionSchedulerOutput

MASK = 3
V = 8  # vocabulary of the synthetic logits


def make(**kwargs) -> MaskedDiffusionScheduler:
    kwargs.setdefault("mask_token_id", MASK)
    return MaskedDiffusionScheduler(**kwargs)


def all_masked(B: int, L: int) -> torch.LongTensor:
    return torch.full((B, L), MASK, dtype=torch.long)


def random_logits(B: int, L: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(B, L, V, generator=torch.Generator().manual_seed(seed)) * 2


def z_tol(p: float, n: int, z: float = 5.0) -> float:
    """Tolerance for an empirical frequency of n Bernoulli(p) draws: z standard errors."""
    return z * math.sqrt(p * (1 - p) / n)


# ---------------------------------------------------------------------------------- schedule


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_set_timesteps_grid_and_alphas(schedule):
    sched = make(schedule=schedule)
    sched.set_timesteps(4)
    assert torch.allclose(sched.timesteps, torch.tensor([1.0, 0.75, 0.5, 0.25]))
    assert sched.alphas.shape == (5,)
    grid = torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0], dtype=torch.float64)
    expected = 1 - grid if schedule == "linear" else torch.cos(math.pi / 2 * grid)
    assert torch.allclose(sched.alphas.double(), expected, atol=1e-6)
    assert sched.alphas[0] == 0 and sched.alphas[-1] == 1
    assert bool((sched.alphas[1:] >= sched.alphas[:-1]).all())  # cleaner as t decreases


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_elbo_weight_is_minus_alpha_prime_over_one_minus_alpha(schedule):
    sched = make(schedule=schedule)
    t = torch.tensor([0.1, 0.4, 0.9], dtype=torch.float64, requires_grad=True)
    (dalpha,) = torch.autograd.grad(sched.alpha(t).sum(), t)
    expected = -dalpha / (1 - sched.alpha(t.detach()))
    assert torch.allclose(sched.elbo_weight(t.detach()), expected)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"num_train_timesteps": 0}, "num_train_timesteps"),
        ({"mask_token_id": -1}, "mask_token_id"),
        ({"schedule": "sqrt"}, "schedule"),
        ({"unmasking": "left_to_right"}, "unmasking"),
        ({"remask": "loop"}, "remask"),
        ({"remask": 1.5}, "remask"),
        ({"remask_eta": -0.1}, "remask_eta"),
        ({"temperature": -1.0}, "temperature"),
        ({"decode": "beam"}, "decode"),
        ({"ranking": "guided"}, "ranking"),
    ],
)
def test_invalid_config_names_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        make(**kwargs)


def test_step_errors():
    logits, sample = random_logits(1, 4), all_masked(1, 4)
    sched = MaskedDiffusionScheduler()  # no mask id
    sched.set_timesteps(2)
    with pytest.raises(ValueError, match="mask_token_id"):
        sched.step(logits, sched.timesteps[0], sample)
    sched = make()
    with pytest.raises(ValueError, match="set_timesteps"):
        sched.step(logits, 1.0, sample)
    with pytest.raises(ValueError, match="num_inference_steps"):
        sched.set_timesteps(0)
    sched.set_timesteps(2)
    with pytest.raises(ValueError, match="timestep"):
        sched.step(logits, 0.3, sample)
    with pytest.raises(ValueError, match="sample"):
        sched.step(logits, 1.0, all_masked(1, 5))
    with pytest.raises(ValueError, match="fixed_mask"):
        sched.step(logits, 1.0, sample, fixed_mask=torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="mask_token_id"):
        sched.step(logits, 1.0, sample, mask_token_id=V)


def test_output_type_and_tuple():
    sched = make()
    sched.set_timesteps(3)
    logits, sample = random_logits(2, 5), all_masked(2, 5)
    out = sched.step(logits, sched.timesteps[0], sample, generator=torch.Generator().manual_seed(0))
    assert isinstance(out, MaskedDiffusionSchedulerOutput)
    for x in (out.prev_sample, out.pred_original_sample):
        assert x.shape == (2, 5) and x.dtype == torch.long
    tup = sched.step(
        logits,
        sched.timesteps[0],
        sample,
        generator=torch.Generator().manual_seed(0),
        return_dict=False,
    )
    assert torch.equal(tup[0], out.prev_sample) and torch.equal(tup[1], out.pred_original_sample)
    assert sched.scale_model_input(sample, sched.timesteps[0]) is sample


# ---------------------------------------------------------------------------------- random order


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_random_order_commit_probability(schedule):
    # Step 1 of 4 (t = 0.75 -> s = 0.5) on 4 x 5000 = 20,000 masked positions, seed 0.
    # Tolerance: 5 standard errors of a Bernoulli frequency (about 0.017 at p = 1/3).
    sched = make(schedule=schedule)
    sched.set_timesteps(4)
    a_t, a_s = sched.alpha(0.75).item(), sched.alpha(0.5).item()
    p = (a_s - a_t) / (1 - a_t)
    B, L = 4, 5000
    out = sched.step(
        random_logits(B, L),
        sched.timesteps[1],
        all_masked(B, L),
        generator=torch.Generator().manual_seed(0),
    )
    freq = out.unmasked.double().mean().item()
    assert abs(freq - p) < z_tol(p, B * L)
    assert torch.equal(out.prev_sample != MASK, out.unmasked)


def test_random_order_full_run_leaves_no_mask_and_keeps_commits():
    sched = make()
    N, B, L = 6, 3, 40
    sched.set_timesteps(N)
    sample, g = all_masked(B, L), torch.Generator().manual_seed(1)
    total = torch.zeros(B, dtype=torch.long)
    for i, t in enumerate(sched.timesteps):
        out = sched.step(random_logits(B, L, seed=i), t, sample, generator=g)
        committed_before = sample != MASK
        assert torch.equal(
            out.prev_sample[committed_before], sample[committed_before]
        )  # never change
        total += out.unmasked.sum(-1)
        sample = out.prev_sample
    assert not bool((sample == MASK).any())
    assert torch.equal(total, torch.full((B,), L))


# ---------------------------------------------------------------------------------- confidence


def test_confidence_order_commits_the_k_most_confident():
    # decode="argmax": the confidence of a position is its max probability; build logits whose
    # max probability increases with the position index.
    B, L = 2, 10
    sched = make(unmasking="confidence", decode="argmax")
    sched.set_timesteps(4)  # step 0: t = 1 -> s = 0.75, keep round(0.75 * 10) = 8 masked (7.5 -> 8)
    logits = torch.zeros(B, L, V)
    perm = torch.stack(
        [torch.randperm(L, generator=torch.Generator().manual_seed(b)) for b in range(B)]
    )
    logits[..., 5] = perm.float()  # row-specific confidence order
    out = sched.step(logits, sched.timesteps[0], all_masked(B, L))
    k = L - round(0.75 * L)
    for b in range(B):
        expected = set(perm[b].argsort(descending=True)[:k].tolist())
        assert set(out.unmasked[b].nonzero().flatten().tolist()) == expected
    assert bool((out.prev_sample[out.unmasked] == 5).all())


def test_ranking_logits_pick_the_positions_and_model_output_the_tokens():
    # Tokens: argmax of model_output (token 5 everywhere, its confidence rising with the index).
    # Positions: ranked by the probability of token 5 under ranking_logits, a row-specific order.
    B, L = 2, 10
    sched = make(unmasking="confidence", decode="argmax", ranking="prior")
    sched.set_timesteps(4)
    logits = torch.zeros(B, L, V)
    logits[..., 5] = 1.0 + torch.arange(L).float()
    perm = torch.stack(
        [torch.randperm(L, generator=torch.Generator().manual_seed(b)) for b in range(B)]
    )
    ranking = torch.zeros(B, L, V)
    ranking[..., 5] = perm.float()
    out = sched.step(logits, sched.timesteps[0], all_masked(B, L), ranking_logits=ranking)
    k = L - round(0.75 * L)
    for b in range(B):
        expected = set(perm[b].argsort(descending=True)[:k].tolist())
        assert set(out.unmasked[b].nonzero().flatten().tolist()) == expected
    assert bool((out.pred_original_sample == 5).all())
    # without ranking_logits the same scheduler ranks by model_output: the last k positions
    own = sched.step(logits, sched.timesteps[0], all_masked(B, L))
    assert own.unmasked[:, L - k :].all() and not own.unmasked[:, : L - k].any()


@pytest.mark.parametrize("unmasking", ["confidence", "random"])
@pytest.mark.parametrize("remask", ["none", 0.5])
def test_ranking_by_model_output_itself_changes_nothing(unmasking, remask):
    """`ranking_logits=model_output` (what the pipeline passes without guidance) and random order
    (which ignores the ranking) reproduce the plain step draw for draw."""
    B, L = 3, 12
    logits, other = random_logits(B, L, 0), random_logits(B, L, 1)
    sched = make(unmasking=unmasking, remask=remask)
    sched.set_timesteps(4)
    sample = all_masked(B, L)
    for i, t in enumerate(sched.timesteps):
        plain = sched.step(logits, t, sample, generator=torch.Generator().manual_seed(i))
        same = sched.step(
            logits, t, sample, generator=torch.Generator().manual_seed(i), ranking_logits=logits
        )
        for a, b in zip(plain.to_tuple(), same.to_tuple(), strict=True):
            assert torch.equal(a, b)
        if unmasking == "random":
            moved = sched.step(
                logits, t, sample, generator=torch.Generator().manual_seed(i), ranking_logits=other
            )
            assert torch.equal(moved.prev_sample, plain.prev_sample)
        sample = plain.prev_sample


def test_ranking_logits_errors_name_the_argument():
    sched = make(unmasking="confidence")
    sched.set_timesteps(4)
    logits = random_logits(2, 5)
    with pytest.raises(ValueError, match="`ranking_logits` has shape \\(2, 4, 8\\)"):
        sched.step(logits, 1.0, all_masked(2, 5), ranking_logits=random_logits(2, 4))
    with pytest.raises(ValueError, match="`ranking_logits` must be a float tensor"):
        sched.step(logits, 1.0, all_masked(2, 5), ranking_logits=torch.zeros(2, 5, 8).long())


@pytest.mark.parametrize("n_free, steps", [(12, 4), (20, 8), (3, 8)])
def test_confidence_counts_follow_schedule_and_sum(n_free, steps):
    # Row 0: every position is generated; row 1: four fixed prompt tokens in front.
    B, L = 2, n_free + 4
    sched = make(unmasking="confidence", schedule="cosine")
    sched.set_timesteps(steps)
    sample = all_masked(B, L)
    fixed = torch.zeros(B, L, dtype=torch.bool)
    fixed[1, :4] = True
    sample[1, :4] = torch.tensor([0, 1, 2, 4])
    n0 = (~fixed).sum(-1)  # (B,)
    g = torch.Generator().manual_seed(0)
    counts = []
    for i, t in enumerate(sched.timesteps):
        out = sched.step(random_logits(B, L, seed=i), t, sample, fixed_mask=fixed, generator=g)
        n_before = ((sample == MASK) & ~fixed).sum(-1)
        k = out.unmasked.sum(-1)
        assert bool(((k >= 1) | (n_before == 0)).all())  # at least one per step while masks remain
        remaining = ((out.prev_sample == MASK) & ~fixed).sum(-1)
        target = torch.round((1 - sched.alphas[i + 1].double()) * n0).long()
        # remaining follows round((1 - alpha_s) * n0) unless "at least one" ran ahead of it
        assert torch.equal(remaining, torch.minimum(target, (n_before - 1).clamp(min=0)))
        counts.append(k)
        sample = out.prev_sample
    assert torch.equal(torch.stack(counts).sum(0), n0)
    assert not bool(((sample == MASK) & ~fixed).any())
    assert torch.equal(sample[1, :4], torch.tensor([0, 1, 2, 4]))


def test_confidence_uses_schedule_exactly_when_enough_tokens():
    sched = make(unmasking="confidence")
    sched.set_timesteps(4)
    sample, n = all_masked(1, 20), 20
    remaining = []
    for i, t in enumerate(sched.timesteps):
        sample = sched.step(random_logits(1, n, seed=i), t, sample).prev_sample
        remaining.append(int((sample == MASK).sum()))
    assert remaining == [15, 10, 5, 0]


# ---------------------------------------------------------------------------------- remasking


def _sigma(remask, eta, a_t, a_s):
    sigma_max = min(1.0, (1 - a_s) / a_t)
    if remask == "cap":
        return min(eta, sigma_max)
    if remask == "rescale":
        return eta * sigma_max
    return remask * (1 - a_s)


@pytest.mark.parametrize("remask", ["cap", "rescale", 1.0, 0.4])
def test_remask_probabilities_and_marginal(remask):
    # Step 2 of 5 (t = 0.6 -> s = 0.4, alpha_t = 0.4, alpha_s = 0.6). Half of 40,000 positions are
    # committed, half masked, a tenth are fixed. Seed 0; tolerance 5 standard errors.
    eta = 0.3
    sched = make(remask=remask, remask_eta=eta)
    sched.set_timesteps(5)
    a_t, a_s = 0.4, 0.6
    sigma = _sigma(remask, eta, a_t, a_s)
    p_unmask = (a_s - (1 - sigma) * a_t) / (1 - a_t)
    B, L = 4, 10_000
    g = torch.Generator().manual_seed(0)
    sample = torch.randint(4, V, (B, L), generator=g)
    sample[:, ::2] = MASK
    fixed = torch.zeros(B, L, dtype=torch.bool)
    fixed[:, ::10] = True  # fixed positions, both masked ones (index % 10 == 0) and tokens
    sample[:, 5::10] = 2
    fixed[:, 5::10] = True
    out = sched.step(random_logits(B, L), sched.timesteps[2], sample, fixed_mask=fixed, generator=g)
    committed = (sample != MASK) & ~fixed
    masked = (sample == MASK) & ~fixed
    assert torch.equal(out.prev_sample[fixed], sample[fixed])
    assert not bool(out.remasked[~committed].any())  # only committed, non-fixed tokens
    f_remask = out.remasked[committed].double().mean().item()
    f_unmask = out.unmasked[masked].double().mean().item()
    assert abs(f_remask - sigma) < z_tol(sigma, int(committed.sum())) + 1e-12
    assert abs(f_unmask - p_unmask) < z_tol(p_unmask, int(masked.sum())) + 1e-12
    # the combination keeps the schedule's marginal: from mask rate 1 - a_t, each position ends up
    # masked with probability exactly 1 - a_s (Bernoulli, same tolerance rule)
    sample2 = torch.randint(4, V, (B, L), generator=g)
    sample2[torch.rand(B, L, generator=g) < 1 - a_t] = MASK
    out2 = sched.step(random_logits(B, L), sched.timesteps[2], sample2, generator=g)
    frac_masked = (out2.prev_sample == MASK).double().mean().item()
    assert abs(frac_masked - (1 - a_s)) < z_tol(1 - a_s, B * L)


@pytest.mark.parametrize("unmasking", ["random", "confidence"])
def test_remask_never_at_last_step_and_run_finishes(unmasking):
    sched = make(remask=1.0, unmasking=unmasking)
    N, B, L = 5, 2, 30
    sched.set_timesteps(N)
    fixed = torch.zeros(B, L, dtype=torch.bool)
    fixed[:, :5] = True
    sample = all_masked(B, L)
    sample[:, :5] = 1
    g = torch.Generator().manual_seed(0)
    n_remasked = 0
    for i, t in enumerate(sched.timesteps):
        out = sched.step(random_logits(B, L, seed=i), t, sample, fixed_mask=fixed, generator=g)
        assert not bool(out.remasked[fixed].any())
        if i == N - 1:
            assert not bool(out.remasked.any())
        n_remasked += int(out.remasked.sum())
        sample = out.prev_sample
        assert torch.equal(sample[:, :5], torch.ones(B, 5, dtype=torch.long))
    assert n_remasked > 0  # remasking did happen between steps
    assert not bool((sample == MASK).any())


def test_no_remask_commits_are_final():
    sched = make(unmasking="confidence")
    sched.set_timesteps(4)
    sample, g = all_masked(2, 12), torch.Generator().manual_seed(0)
    for i, t in enumerate(sched.timesteps):
        out = sched.step(random_logits(2, 12, seed=i), t, sample, generator=g)
        assert not bool(out.remasked.any())
        done = sample != MASK
        assert torch.equal(out.prev_sample[done], sample[done])
        sample = out.prev_sample


# ---------------------------------------------------------------------------------- decoding


def test_temperature_zero_and_argmax_decode_equal_argmax():
    logits = random_logits(3, 7)
    logits[..., MASK] = 100.0  # the mask token would win the argmax: it must be excluded
    expected = logits.clone()
    expected[..., MASK] = -math.inf
    expected = expected.argmax(-1)
    for kwargs in ({"temperature": 0.0}, {"decode": "argmax", "temperature": 3.0}):
        sched = make(**kwargs)
        sched.set_timesteps(2)
        out = sched.step(
            logits,
            sched.timesteps[-1],
            all_masked(3, 7),
            generator=torch.Generator().manual_seed(0),
        )
        assert torch.equal(out.pred_original_sample, expected)
        assert torch.equal(out.prev_sample, expected)  # last step commits all


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_sampling_follows_tempered_softmax(temperature):
    # 40,000 draws at the last step from one fixed row of logits, seed 0;
    # every frequency within 5 standard errors of softmax(logits / T).
    row = torch.tensor([0.5, -1.0, 1.0, 9.0, 0.0, 2.0, -0.5, 1.5])  # index 3 = MASK, never drawn
    n = 40_000
    logits = row.expand(1, n, V)
    sched = make(temperature=temperature)
    sched.set_timesteps(1)
    out = sched.step(
        logits, sched.timesteps[0], all_masked(1, n), generator=torch.Generator().manual_seed(0)
    )
    probs = torch.softmax(torch.cat([row[:MASK], row[MASK + 1 :]]) / temperature, -1).tolist()
    probs.insert(MASK, 0.0)
    freq = torch.bincount(out.prev_sample.flatten(), minlength=V).double() / n
    for j in range(V):
        assert abs(freq[j].item() - probs[j]) < z_tol(probs[j], n) + 1e-12


def test_mask_token_never_produced_even_when_favoured():
    logits = torch.zeros(2, 500, V)
    logits[..., MASK] = 50.0
    for kwargs in ({"temperature": 100.0}, {"decode": "argmax"}, {"unmasking": "confidence"}):
        sched = make(**kwargs)
        sched.set_timesteps(3)
        sample, g = all_masked(2, 500), torch.Generator().manual_seed(0)
        for t in sched.timesteps:
            out = sched.step(logits, t, sample, generator=g)
            assert not bool((out.pred_original_sample[sample == MASK] == MASK).any())
            sample = out.prev_sample
        assert not bool((sample == MASK).any())


def test_half_precision_logits():
    sched = make()
    sched.set_timesteps(2)
    out = sched.step(
        random_logits(2, 6).bfloat16(),
        0.5,
        all_masked(2, 6),
        generator=torch.Generator().manual_seed(0),
    )
    assert out.prev_sample.dtype == torch.long and not bool((out.prev_sample == MASK).any())


@pytest.mark.parametrize(
    "unmasking, remask", [("random", "none"), ("confidence", "cap"), ("random", 1.0)]
)
def test_seeded_reproducibility(unmasking, remask):
    def run(seed):
        sched = make(unmasking=unmasking, remask=remask, remask_eta=0.5)
        sched.set_timesteps(5)
        sample, g = all_masked(2, 16), torch.Generator().manual_seed(seed)
        for i, t in enumerate(sched.timesteps):
            sample = sched.step(random_logits(2, 16, seed=i), t, sample, generator=g).prev_sample
        return sample

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))


# ---------------------------------------------------------------------------------- training


def test_add_noise_rate_fixed_and_integer_timesteps():
    # 8 x 5000 tokens at t = 0.3 (linear: mask rate 0.3), seed 0, tolerance 5 standard errors.
    sched = make()
    B, L = 8, 5000
    x = torch.randint(4, V, (B, L), generator=torch.Generator().manual_seed(0))
    fixed = torch.zeros(B, L, dtype=torch.bool)
    fixed[:, :100] = True
    noisy = sched.add_noise(x, 0.3, fixed_mask=fixed, generator=torch.Generator().manual_seed(0))
    assert torch.equal(noisy[fixed], x[fixed])
    changed = noisy != x
    assert bool((noisy[changed] == MASK).all())
    rate = changed[:, 100:].double().mean().item()
    assert abs(rate - 0.3) < z_tol(0.3, B * (L - 100))
    # integer times on the training grid and per-row times
    same = sched.add_noise(
        x, torch.tensor(300), fixed_mask=fixed, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(same, noisy)
    per_row = sched.add_noise(
        x, torch.tensor([0.0] * 4 + [1.0] * 4), generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(per_row[:4], x[:4]) and bool((per_row[4:] == MASK).all())
    with pytest.raises(ValueError, match="timesteps"):
        sched.add_noise(x, 1.5)
    with pytest.raises(ValueError, match="timesteps"):
        sched.add_noise(x, torch.ones(3))


def test_config_round_trip(tmp_path):
    sched = make(unmasking="confidence", remask=0.7, schedule="cosine", temperature=0.5)
    sched.save_config(tmp_path)
    loaded = MaskedDiffusionScheduler.from_pretrained(tmp_path)
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    assert public(loaded.config) == public(sched.config)
    other = MaskedDiffusionScheduler.from_config(sched.config, decode="argmax")
    assert other.config.decode == "argmax" and other.config.unmasking == "confidence"
    assert sched.order == 1 and "order" not in sched.config  # diffusers' solver order: an int


def _old_config(tmp_path, **changes):
    """A scheduler config saved before the `order` -> `unmasking` rename."""
    sched = make(unmasking="confidence", schedule="cosine")
    sched.save_config(tmp_path)
    path = tmp_path / MaskedDiffusionScheduler.config_name
    config = json.loads(path.read_text())
    config["order"] = config.pop("unmasking")
    config.update(changes)
    path.write_text(json.dumps(config))
    return config


@pytest.fixture
def diffusers_log(caplog):
    """caplog that also sees diffusers' logger (which does not propagate by default)."""
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()  # other tests (the CLI's --quiet) may lower it
    diffusers_logging.set_verbosity_warning()
    diffusers_logging.enable_propagation()
    try:
        with caplog.at_level("WARNING"):
            yield caplog
    finally:
        diffusers_logging.disable_propagation()
        diffusers_logging.set_verbosity(level)


def test_old_order_key_in_a_saved_config_is_read_as_unmasking(tmp_path, diffusers_log):
    config = _old_config(tmp_path)
    with pytest.warns(FutureWarning, match="`order`.*renamed `unmasking`"):
        loaded = MaskedDiffusionScheduler.from_pretrained(tmp_path)
    assert loaded.config.unmasking == "confidence" and loaded.config.schedule == "cosine"
    assert "order" not in loaded.config and loaded.order == 1
    assert "will be ignored" not in diffusers_log.text  # no "unknown key" warning for `order`
    MaskedDiffusionScheduler.from_config({**loaded.config, "colour": 1})
    assert "will be ignored" in diffusers_log.text  # ... which an unknown key does get
    with pytest.warns(FutureWarning, match="renamed `unmasking`"):
        again = MaskedDiffusionScheduler.from_config(config)
    assert again.config.unmasking == "confidence" and "order" not in again.config
    # re-saved, the config has the new key only and loads without a warning
    again.save_config(tmp_path / "new")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = MaskedDiffusionScheduler.from_pretrained(tmp_path / "new")
    assert new.config.unmasking == "confidence"


def test_old_order_keyword_warns_and_survives_a_round_trip(tmp_path):
    with pytest.warns(FutureWarning, match="renamed `unmasking`"):
        sched = make(order="confidence")
    assert sched.config.unmasking == "confidence" and "order" not in sched.config
    sched.save_config(tmp_path)  # the value counts as given, not as the default
    assert MaskedDiffusionScheduler.from_pretrained(tmp_path).config.unmasking == "confidence"
    with pytest.warns(FutureWarning, match="renamed `unmasking`"):
        other = MaskedDiffusionScheduler.from_config(make().config, order="confidence")
    assert other.config.unmasking == "confidence"
    with pytest.warns(FutureWarning), pytest.raises(ValueError, match="Pass only `unmasking=`"):
        make(unmasking="confidence", order="random")
    with pytest.warns(FutureWarning), pytest.raises(ValueError, match="`unmasking`.*'sideways'"):
        make(order="sideways")


@pytest.mark.parametrize("u", [0.0, 1.0 - 2.0**-53])
def test_categorical_draw_extremes_never_hit_zero_probability_entries(monkeypatch, u):
    # Inverse-CDF sampling at the two ends of [0, 1): the mask token sits first (u = 0) or last
    # (u -> 1) in the vocabulary, and neither end may select it.
    import pipelines.sampling as module

    monkeypatch.setattr(module, "uniform", lambda shape, g, device: torch.full(shape, u).double())
    for mask_id in (0, V - 1):
        sched = MaskedDiffusionScheduler(mask_token_id=mask_id)
        sched.set_timesteps(1)
        logits = torch.randn(2, 5, V, generator=torch.Generator().manual_seed(0))
        sample = torch.full((2, 5), mask_id)
        out = sched.step(logits, 1.0, sample)
        assert not bool((out.prev_sample == mask_id).any())
        first, last = (1, V - 1) if mask_id == 0 else (0, V - 2)  # positive-probability ends
        expected = first if u == 0.0 else last
        assert bool((out.prev_sample == expected).all())


def test_float64_logits_match_float32():
    # Same logits in float32 and float64, same seed: same proposals and the same confidence ranking
    # (the float64 input must not be modified in place by the draw).
    sched = make(unmasking="confidence")
    sched.set_timesteps(4)
    logits = random_logits(3, 20)
    outs = [
        sched.step(lg, 1.0, all_masked(3, 20), generator=torch.Generator().manual_seed(0))
        for lg in (logits, logits.double())
    ]
    assert torch.equal(outs[0].prev_sample, outs[1].prev_sample)
    assert torch.equal(outs[0].pred_original_sample, outs[1].pred_original_sample)
