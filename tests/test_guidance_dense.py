"""The eager ReDGE / ReinDGE inner step that keeps the chain from forward to gradient
(`gradients.chain_pathwise`) is the autograd path through the estimator, bit for bit."""

from __future__ import annotations

import pytest
import torch

from redge_guidance.guidance import gradients
from redge_guidance.guidance.config import GuidanceConfig
from redge_guidance.guidance.inner import InnerProblem

V, L, B = 50, 6, 2


def _problem(seed: int = 3, **config) -> InnerProblem:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(B, L, V, generator=g)
    logits[:, :, 7] = torch.finfo(logits.dtype).min  # a masked entry everywhere
    w = torch.randn(V, generator=g)

    def reward_call(x, mask, expected):
        return torch.tanh(x.float() @ w).sum(-1)

    sample = torch.full((B, L), V - 1)
    sample[:, 0] = 3  # one committed position
    editable = sample == V - 1
    editable[1, 2] = False
    return InnerProblem(
        GuidanceConfig(**config), reward_call, "tanh", logits, sample, editable, seed=seed
    )


def _grad(fn, **config):
    p = _problem(**config)
    phi = p.phi0.detach().clone().requires_grad_(True)
    buffer = p.context.repeat(p.S, 1, 1) if p.S > 1 else p.context
    grads = []
    for _ in range(3):  # the generator advances the same way too
        grad, reward = fn(p, phi, buffer)
        grads.append((grad.clone(), reward))
        with torch.no_grad():
            phi.add_(grad, alpha=-0.5)
    return grads


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"estimator": "redge", "estimator_options": {"n_steps": 5, "t_1": 0.3}},
        {"estimator": "reindge"},
        {"estimator": "redge", "estimator_options": {"t_1": 1.0}},
        {"num_relaxed_samples": 3},
        {"estimator": "reindge", "num_relaxed_samples": 2, "mixed_precision": "bf16"},
        {"top_k": 8},
        {"optimize_dtype": "float64"},
    ],
)
def test_chain_pathwise_is_pathwise_bit_for_bit(config):
    assert gradients.choose(_problem(**config)) is gradients.chain_pathwise
    ours = _grad(gradients.chain_pathwise, **config)
    ref = _grad(gradients.pathwise, **config)
    for (g1, r1), (g2, r2) in zip(ours, ref, strict=True):
        assert g1.dtype == g2.dtype and g1.shape == g2.shape
        assert torch.equal(g1, g2)
        assert torch.equal(r1, r2)


def test_write_draws_is_write_rows_of_one_hots():
    for config in ({}, {"top_k": 8}):
        p = _problem(num_relaxed_samples=2, **config)
        index = torch.randint(0, p.K, (2, p.N), generator=torch.Generator().manual_seed(1))
        a = p.context.repeat(2, 1, 1)
        b = a.clone()
        a.view(-1)[::7] = 0.25  # stale values in the editable rows are overwritten
        b.view(-1)[::7] = 0.25
        p.write_draws(a, index)
        p.write_rows(b, torch.nn.functional.one_hot(index, p.K).to(b.dtype))
        assert torch.equal(a, b)


def test_buffer_pool_reuses_by_size_and_caps_what_it_keeps():
    from redge_guidance.estimators.buffers import BufferPool

    pool = BufferPool(limit=2)
    a = pool.take((2, 3), torch.float32, torch.device("cpu"))
    pool.give(a)
    b = pool.take((3, 2), torch.float32, torch.device("cpu"))  # same size: the same storage
    assert b.shape == (3, 2) and b.data_ptr() == a.data_ptr()
    c = pool.take((3, 2), torch.float64, torch.device("cpu"))  # another dtype: a new one
    assert c.data_ptr() != b.data_ptr()
    pool.give(b, c, torch.zeros(4), torch.zeros(5))
    assert len(pool.free) == 2  # the rest is dropped
    pool.give(torch.zeros(4, 4).T)  # not contiguous: never kept
    assert len(pool.free) == 2
