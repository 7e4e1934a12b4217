"""Resampling schemes and weight helpers of `redge_guidance.search.resampling`."""

from __future__ import annotations

import math

import pytest
import torch

from redge_guidance.search.resampling import (
    RESAMPLERS,
    effective_sample_size,
    log_mean_weight,
    normalised_weights,
    resample,
)

K = 6
LOG_W = torch.tensor([[2.0, -1.0, 0.0, -3.0, -5.0, 1.0], [0.0] * K], dtype=torch.float64)


def copies(ancestors: torch.Tensor) -> torch.Tensor:
    """Copies of each particle, (N, K) from ancestors (N, K)."""
    out = torch.zeros(ancestors.shape, dtype=torch.float64)
    return out.scatter_add_(1, ancestors, torch.ones_like(out))


@pytest.mark.parametrize("scheme", sorted(RESAMPLERS))
def test_every_scheme_is_unbiased(scheme):
    """n = 20000 resamplings of one weight vector: the mean number of copies of particle k must
    be K·w_k within 4 standard errors of the multinomial count (the largest variance of the
    three schemes), sqrt(K·w_k·(1 − w_k) / n)."""
    n = 20000
    g = torch.Generator().manual_seed(0)
    w = normalised_weights(LOG_W[:1])[0]
    mean = copies(resample(LOG_W[:1].expand(n, K), scheme, g)).mean(0)
    tol = 4 * (K * w * (1 - w) / n).sqrt() + 1e-9
    assert ((mean - K * w).abs() <= tol).all(), (mean, K * w)


def test_systematic_and_residual_copies_stay_within_one_of_k_w():
    g = torch.Generator().manual_seed(1)
    expected = K * normalised_weights(LOG_W[:1])[0]
    for scheme in ("systematic", "residual"):
        c = copies(resample(LOG_W[:1].expand(500, K), scheme, g))
        assert (c >= expected.floor()).all()
        if scheme == "systematic":
            assert (c <= expected.ceil()).all()


def test_residual_is_deterministic_on_multiples_of_one_over_k():
    w = torch.tensor([[3.0, 0.0, 1.0, 2.0, 0.0, 0.0]], dtype=torch.float64) / K
    log_w = w.log()  # -inf for the zero weights
    for seed in range(3):
        a = resample(log_w, "residual", torch.Generator().manual_seed(seed))
        assert torch.equal(a, torch.tensor([[0, 0, 0, 2, 3, 3]]))


def test_prompts_resample_independently_and_reproducibly():
    a = resample(LOG_W, "multinomial", torch.Generator().manual_seed(5))
    b = resample(LOG_W, "multinomial", torch.Generator().manual_seed(5))
    assert a.shape == (2, K) and torch.equal(a, b)
    state = torch.random.get_rng_state()
    resample(LOG_W, "systematic", torch.Generator().manual_seed(5))
    assert torch.equal(torch.random.get_rng_state(), state)  # the global stream is untouched


def test_effective_sample_size_and_log_mean_weight():
    ess = effective_sample_size(torch.tensor([[0.0] * K, [0.0] + [-1e9] * (K - 1)]))
    assert torch.allclose(ess, torch.tensor([float(K), 1.0], dtype=torch.float64))
    lw = torch.tensor([[math.log(2.0), math.log(4.0)]])
    assert torch.allclose(log_mean_weight(lw), torch.tensor([math.log(3.0)], dtype=torch.float64))


def test_unknown_scheme_lists_the_valid_ones():
    with pytest.raises(ValueError, match="`scheme` must be one of.*'stratified'"):
        resample(LOG_W, "stratified")
