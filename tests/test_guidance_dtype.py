"""`GuidanceConfig(mixed_precision="bf16")`: the relaxation and the reward's input in bfloat16,
φ's master copy, Adam and the KL in float32."""

from __future__ import annotations

import pytest
import torch

from redge_guidance import GuidanceConfig, RewardGuidance
from rewards import Reward

from _models import hook_inputs

V = 32  # vocabulary
MASK = 3  # mask token id
LOW = torch.finfo(torch.float32).min


class LinearReward(Reward):
    """``Σ_l ⟨x_l, w⟩`` with fixed random token weights; records the input dtypes it saw."""

    vocab_size = V

    def __init__(self, seed: int = 1) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("w", torch.randn(V, generator=g))
        self.dtypes: list[torch.dtype] = []

    def forward(self, x, *, attention_mask=None):
        self.dtypes.append(x.dtype)
        return (x.float() @ self.w).sum(-1)


def _guide(reward, logits, sample, editable, **options):
    hook = RewardGuidance(reward, mask_token_id=MASK, **options)
    out = hook(
        logits,
        sample,
        editable=editable,
        step=0,
        num_steps=4,
        generator=torch.Generator().manual_seed(0),
    )
    return out, hook.trace[-1]


def _expected_reward(out, editable, w):
    """E_q[reward] at the editable rows under softmax of the returned logits, per sample."""
    q = out.double().softmax(-1)
    return ((q @ w.double()) * editable).sum(-1)


def test_bf16_tracks_float32_guidance():
    """Same seed, 40 Adam steps, 4 samples x 6 editable positions. bf16 rounds the relaxation's
    input (8 significant bits: ~0.4% of a logit) and the reward's gradient, and can flip a draw
    whose uniform falls within that margin of a class boundary; Adam's steps are lr-sized
    whatever the gradient's scale. So the two runs must end close relative to what guidance
    moves: the expected reward within 2% of the fp32 run's gain and the KL within 2% (measured:
    0.1% and 0.15%; the margin is for draw flips on other platforms)."""
    logits, sample, editable = hook_inputs(batch=4, length=8, committed=2)
    options = dict(n_opt_steps=40, lr=0.1, kl_weight=1.0)
    reward = LinearReward()
    out32, tr32 = _guide(reward, logits, sample, editable, **options)
    out16, tr16 = _guide(reward, logits, sample, editable, mixed_precision="bf16", **options)
    assert out16.dtype == torch.float32 and torch.isfinite(out16[editable][..., :MASK]).all()
    before = _expected_reward(logits, editable, reward.w)
    r32 = _expected_reward(out32, editable, reward.w)
    r16 = _expected_reward(out16, editable, reward.w)
    gain = r32 - before  # (B,)
    assert bool((gain > 0.5).all()), gain  # guidance does move the samples
    assert bool(((r16 - r32).abs() <= 0.02 * gain).all()), (r16 - r32, gain)
    kl32 = torch.tensor(tr32["kl_after_per_sample"])
    kl16 = torch.tensor(tr16["kl_after_per_sample"])
    assert bool(((kl16 - kl32).abs() <= 0.02 * kl32).all()), (kl16, kl32)


def test_bf16_reaches_the_reward_and_the_kl_stays_exact():
    """The reward reads bfloat16 (the buffer itself, no cast by the hook), φ comes back in full
    float32 precision (the master copy: not bf16-rounded) and the trace's KL is the exact KL of
    the returned logits to float32 rounding."""
    logits, sample, editable = hook_inputs(batch=2, length=8, committed=2)
    reward = LinearReward()
    out, trace = _guide(reward, logits, sample, editable, n_opt_steps=5, mixed_precision="bf16")
    assert set(reward.dtypes) == {torch.bfloat16}
    rows = out[editable][:, MASK + 1 :]
    assert (rows != rows.bfloat16().float()).float().mean() > 0.9  # not bf16 values
    q = out.double().log_softmax(-1)
    p = logits.double().log_softmax(-1)
    kl = ((q.exp() * (q - p)).nan_to_num().sum(-1) * editable).sum(-1)
    torch.testing.assert_close(
        torch.tensor(trace["kl_after_per_sample"], dtype=torch.float64), kl, rtol=1e-5, atol=1e-6
    )
    _, fp32 = _guide(LinearReward(), logits, sample, editable, n_opt_steps=5)
    assert trace["reward_before"] == fp32["reward_before"]  # the same prior, decoded


@pytest.mark.parametrize("estimator", ["redge", "reindge", "gumbel_softmax", "straight_through"])
def test_bf16_runs_every_path(estimator):
    """Dense and top-k supports, pathwise and score-function gradients, bf16 logits in."""
    logits, sample, editable = hook_inputs(batch=2, length=8, committed=2, dtype=torch.bfloat16)
    for options in ({}, {"top_k": 5}, {"num_relaxed_samples": 2, "score_function": "always"}):
        reward = LinearReward()
        out, trace = _guide(
            reward,
            logits,
            sample,
            editable,
            n_opt_steps=3,
            estimator=estimator,
            mixed_precision="bf16",
            **options,
        )
        assert out.dtype == torch.bfloat16
        assert torch.equal(out[~editable], logits[~editable])
        assert bool((out[..., MASK] == logits[..., MASK]).all())  # the mask stays masked
        assert trace["guided"] and set(reward.dtypes) == {torch.bfloat16}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("mixed_precision", "fp16", "`mixed_precision` must be one of ['no', 'bf16'], got 'fp16'"),
        ("mixed_precision", "bfloat16", "got 'bfloat16'"),
        ("compile", "yes", "`compile` must be a bool, got 'yes'"),
        ("compile", 1, "`compile` must be a bool, got 1"),
    ],
)
def test_bad_values_raise(field, value, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        GuidanceConfig(**{field: value})


def test_new_fields_round_trip_json(tmp_path):
    config = GuidanceConfig(mixed_precision="bf16", compile=True)
    assert GuidanceConfig.from_pretrained(config.save_pretrained(tmp_path)) == config
    assert GuidanceConfig().mixed_precision == "no" and GuidanceConfig().compile is False
