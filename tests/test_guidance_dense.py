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
    pool.clear()
    pool.give(torch.zeros(4, 4)[:2])  # a view into a larger storage would hold all of it
    assert pool.free == []


@pytest.mark.parametrize("config", [{}, {"num_relaxed_samples": 2}, {"estimator": "reindge"}])
def test_blocked_prior_kl_and_row_moves_change_no_bit(config, monkeypatch):
    """The dense eager path reads the prior from the logits a block of rows at a time and
    moves the reward gradient's rows in place; with blocks of two or three rows (so that every
    case of the block logic runs) the gradients, rewards and KL are those of one block."""
    from redge_guidance.guidance import inner

    ref = _grad(gradients.chain_pathwise, **config)
    ref_kl = _problem(**config).kl_and_grad(_problem(**config).phi0, need_grad=True)
    monkeypatch.setattr(inner, "_BLOCK_ENTRIES", 4 * V)  # blocks 4, 5: no 4, 4, 1
    monkeypatch.setattr(inner, "_MOVE_ENTRIES", 2 * V)
    p = _problem(**config)
    assert p.prior_logp is None  # no (N, V) copy of it
    assert p.vmask.shape == (1, V)  # every row masks entry 7: one row of the mask, which
    assert p.vmask.untyped_storage().nbytes() == V  # does not hold the (N, V) one
    assert p.masked_columns.tolist() == [7]
    for (g1, r1), (g2, r2) in zip(_grad(gradients.chain_pathwise, **config), ref, strict=True):
        assert torch.equal(g1, g2) and torch.equal(r1, r2)
    kl, grad = p.kl_and_grad(p.phi0, need_grad=True)
    assert torch.equal(kl, ref_kl[0]) and torch.equal(grad, ref_kl[1])
    # The same values as the materialised prior of the compiled path.
    kept = _problem(compile=True, **config)
    assert kept.prior_logp is not None
    assert torch.equal(p.prior_logp_rows(0, p.N), kept.prior_logp)
    assert torch.equal(p.vmask, kept.vmask)


def test_blocks_cover_the_rows_without_single_row_blocks():
    from redge_guidance.guidance.inner import _blocks

    for n in range(1, 12):
        for size in range(0, 5):
            blocks = _blocks(n, size)
            assert [i for a, b in blocks for i in range(a, b)] == list(range(n))
            assert all(b - a >= 2 for a, b in blocks) or n == 1


def test_rows_to_front_is_index_select(monkeypatch):
    from redge_guidance.guidance import inner

    monkeypatch.setattr(inner, "_MOVE_ENTRIES", 2 * V)  # blocks of two rows
    for editable_rows in ([0, 1, 2, 4, 5, 9, 10, 11], [3, 4, 7], [0, 1, 2, 3]):
        p = _problem(num_relaxed_samples=2)
        p.editable = torch.zeros(B, L, dtype=torch.bool)
        p.editable.view(-1)[editable_rows] = True
        p.N = len(editable_rows)
        pos = torch.tensor(editable_rows)
        p._flat_rows = torch.cat([pos, pos + B * L]).unsqueeze(-1)
        grad = torch.randn(2 * B, L, V, generator=torch.Generator().manual_seed(2))
        expected = grad.view(-1, V)[p._flat_rows[:, 0]].view(2, p.N, V)
        assert torch.equal(p.read_rows(grad.clone()), expected)
        moved = p.read_rows(grad, consume=True)
        assert torch.equal(moved, expected) and moved.data_ptr() == grad.data_ptr()


@pytest.mark.parametrize("n_steps", [5, 7])
def test_chain_recomputes_its_outputs_beyond_four_steps(n_steps, monkeypatch):
    """With a pool, n_steps > 4 and large logits the chain keeps only its soft sample and
    recomputes the other outputs in the backward from the noise drawn again: the same draws and
    the same gradient, bit for bit, as the chain that keeps all n_steps - 1 outputs (and below
    the size it keeps them)."""
    from redge_guidance.estimators import chain
    from redge_guidance.estimators.buffers import BufferPool
    from redge_guidance.estimators.chain import (
        Schedule,
        _ReplayedOutputs,
        chain_forward,
        chain_vjp,
    )

    g = torch.Generator().manual_seed(4)
    theta = torch.randn(5, V, generator=g) * 2
    monkeypatch.setattr(chain, "_REPLAY_FROM_ENTRIES", theta.numel())  # large enough here
    uniforms = torch.rand(5, dtype=torch.float64, generator=g)
    grad = torch.randn(5, V, generator=g)
    sched = Schedule(n_steps, 0.5)
    index, kept = chain_forward(theta, uniforms, sched, torch.Generator().manual_seed(1))
    pool = BufferPool()
    index_r, replay = chain_forward(theta, uniforms, sched, torch.Generator().manual_seed(1), pool)
    assert isinstance(replay, _ReplayedOutputs) and not isinstance(kept, _ReplayedOutputs)
    small = chain_forward(theta[:4], uniforms[:4], sched, torch.Generator(), BufferPool())[1]
    assert not isinstance(small, _ReplayedOutputs)
    assert torch.equal(index, index_r) and len(kept) == len(replay) == n_steps - 1
    for reinmax_last in (False, True):
        expected = chain_vjp(list(kept), index, grad.clone(), None, sched, reinmax_last)
        if reinmax_last:  # a second replay: each is read once
            _, replay = chain_forward(
                theta, uniforms, sched, torch.Generator().manual_seed(1), pool
            )
        got = chain_vjp(replay, index_r, grad.clone(), None, sched, reinmax_last, pool)
        assert torch.equal(got, expected)
