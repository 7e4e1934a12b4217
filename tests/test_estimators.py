"""Contract, validation and special-case tests of `redge_guidance.estimators`.

The statistical tests (law of the hard sample, gradient quality) live in
`tests/test_estimators_gradients.py`.
"""

from __future__ import annotations

import inspect
import json
import math

import pytest
import torch

from redge_guidance.estimators import (
    ESTIMATORS,
    GumbelSoftmax,
    ReDGE,
    ReDGECov,
    ReinDGE,
    ReinMax,
    RelaxedSample,
    StraightThrough,
    get_estimator,
    redge,
)
from redge_guidance.estimators.diffusion import Schedule, _ReDGEFunction
from redge_guidance.estimators.sampling import sample_from_probs

NAMES = sorted(ESTIMATORS)
DTYPES = [torch.float32, torch.float64, torch.bfloat16]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _logits(shape, dtype=torch.float32, seed=0, scale=2.0):
    return (torch.randn(shape, generator=_gen(seed), dtype=torch.float64) * scale).to(dtype)


# --------------------------------------------------------------------------- registry and config


def test_registry_names_and_defaults():
    assert set(ESTIMATORS) == {
        "redge",
        "redge_cov",
        "reindge",
        "straight_through",
        "gumbel_softmax",
        "reinmax",
    }
    assert get_estimator("redge").config() == {"name": "redge", "n_steps": 3, "t_1": 0.5}
    assert get_estimator("redge_cov").config() == {"name": "redge_cov", "n_steps": 5, "t_1": 0.5}
    assert get_estimator("reindge").config() == {"name": "reindge", "n_steps": 5, "t_1": 0.5}
    assert get_estimator("straight_through").config() == {"name": "straight_through"}
    assert get_estimator("gumbel_softmax").config() == {
        "name": "gumbel_softmax",
        "tau": 0.5,
        "hard": True,
    }
    assert get_estimator("reinmax").config() == {"name": "reinmax", "tau": 1.0}


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trips_through_json(name):
    est = get_estimator(name)
    cfg = json.loads(json.dumps(est.config()))
    assert get_estimator(**cfg) == est
    assert type(get_estimator(**cfg)) is ESTIMATORS[name]
    assert est.name == name


def test_options_are_attributes_and_normalised():
    est = get_estimator("redge", n_steps=7, t_1=1)
    assert est.n_steps == 7 and est.t_1 == 1.0 and isinstance(est.t_1, float)
    assert GumbelSoftmax(tau=2).tau == 2.0
    with pytest.raises(dataclass_frozen_error()):
        est.n_steps = 3  # type: ignore[misc]


def dataclass_frozen_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


@pytest.mark.parametrize("name", NAMES)
def test_options_are_keyword_only_and_call_signature(name):
    cls = ESTIMATORS[name]
    for p in inspect.signature(cls).parameters.values():
        assert p.kind is inspect.Parameter.KEYWORD_ONLY
    params = inspect.signature(cls().__call__).parameters
    assert list(params) == ["logits", "generator"]
    assert params["generator"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["generator"].default is None


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("name", "options", "pattern"),
    [
        ("redge", {"n_steps": 1}, r"`n_steps` must be an integer >= 2.*got 1\b"),
        ("redge", {"n_steps": 0}, r"`n_steps`.*got 0\b"),
        ("redge", {"n_steps": 2.5}, r"`n_steps`.*got 2.5"),
        ("redge", {"n_steps": True}, r"`n_steps`.*got True"),
        ("reindge", {"n_steps": 1}, r"`n_steps`.*got 1\b"),
        ("redge_cov", {"n_steps": -3}, r"`n_steps`.*got -3"),
        ("redge", {"t_1": 0.0}, r"`t_1` must be a float in \(0, 1\].*got 0.0"),
        ("redge", {"t_1": 1.5}, r"`t_1`.*got 1.5"),
        ("redge", {"t_1": -0.1}, r"`t_1`.*got -0.1"),
        ("redge", {"t_1": float("nan")}, r"`t_1`.*got nan"),
        ("redge", {"t_1": "0.5"}, r"`t_1`.*got '0.5'"),
        ("reindge", {"t_1": 2}, r"`t_1`.*got 2\b"),
        ("redge_cov", {"t_1": 0}, r"`t_1`.*got 0\b"),
        ("gumbel_softmax", {"tau": 0.0}, r"`tau` must be a finite float > 0.*got 0.0"),
        ("gumbel_softmax", {"tau": -1}, r"`tau`.*got -1"),
        ("reinmax", {"tau": float("inf")}, r"`tau`.*got inf"),
        ("gumbel_softmax", {"hard": "yes"}, r"`hard` must be True or False.*got 'yes'"),
    ],
)
def test_bad_option_values_raise(name, options, pattern):
    with pytest.raises(ValueError, match=pattern):
        get_estimator(name, **options)
    with pytest.raises(ValueError, match=pattern):
        ESTIMATORS[name](**options)


def test_unknown_name_and_option_list_valid_ones():
    with pytest.raises(ValueError, match=r"Unknown estimator `name='redgee'`.*redge, redge_cov"):
        get_estimator("redgee")
    with pytest.raises(ValueError, match=r"Unknown option\(s\) \['tau'\].*\['n_steps', 't_1'\]"):
        get_estimator("redge", tau=0.5)
    with pytest.raises(ValueError, match=r"Unknown option\(s\) \['n_steps'\].*none"):
        get_estimator("straight_through", n_steps=3)
    with pytest.raises(TypeError):  # keyword-only options
        ReDGE(3, 0.5)  # type: ignore[misc]


@pytest.mark.parametrize("name", NAMES)
def test_bad_logits_raise_before_any_work(name):
    est = get_estimator(name)
    g = _gen()
    state = g.get_state()
    bad_cases = [
        (torch.zeros(2, 5, dtype=torch.long), r"`logits` must be a floating-point.*torch.int64"),
        (torch.tensor(1.0), r"`logits` must have shape \(\.\.\., V\)"),
        (torch.zeros(2, 0), r"V >= 1.*\(2, 0\)"),
        ([[0.0, 1.0]], r"`logits` must be a torch.Tensor.*list"),
    ]
    nan = torch.zeros(3, 5)
    nan[1, 2] = math.nan
    bad_cases.append((nan, r"`logits` contains NaN \(in 1 row"))
    pinf = torch.zeros(3, 5)
    pinf[0, 0] = math.inf
    bad_cases.append((pinf, r"\+inf"))
    masked = torch.zeros(3, 5)
    masked[2] = -math.inf
    bad_cases.append((masked, r"1 row\(s\) with every entry masked"))
    fmin = torch.zeros(3, 5)
    fmin[0] = torch.finfo(torch.float32).min
    bad_cases.append((fmin, r"every entry masked"))
    for logits, pattern in bad_cases:
        with pytest.raises(ValueError, match=pattern):
            est(logits, generator=g)
    assert torch.equal(g.get_state(), state), "validation must not consume randomness"
    with pytest.raises(ValueError, match=r"`generator` must be a torch.Generator.*int"):
        est(torch.zeros(2, 3), generator=0)  # type: ignore[arg-type]


def test_redge_function_validates_hard():
    with pytest.raises(ValueError, match=r"`hard` must be True or False, got 1"):
        redge(torch.zeros(2, 3), hard=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`n_steps`.*got 1"):
        redge(torch.zeros(2, 3), n_steps=1)


# --------------------------------------------------------------------------- contract


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_contract(name, dtype):
    est = get_estimator(name)
    shape = (3, 4, 11)
    logits = _logits(shape, dtype).requires_grad_()
    out = est(logits, generator=_gen(1))
    assert isinstance(out, RelaxedSample)
    assert out.hard.shape == shape and out.soft.shape == shape and out.index.shape == shape[:-1]
    assert out.hard.dtype == dtype and out.soft.dtype == dtype and out.index.dtype == torch.int64
    assert out.hard.device == logits.device
    # exact one-hot in value, consistent with index
    assert torch.equal(out.hard.detach(), torch.nn.functional.one_hot(out.index, 11).to(dtype))
    # soft rows on the simplex (bf16 rounding: 11 entries each within 2^-8 relative)
    tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 3e-2}[dtype]
    assert (out.soft >= 0).all()
    torch.testing.assert_close(
        out.soft.detach().double().sum(-1),
        torch.ones(shape[:-1], dtype=torch.float64),
        atol=tol,
        rtol=0,
    )
    # gradients reach the logits through hard and through soft, finite, in the logits' dtype
    w = _logits(shape, dtype, seed=5)
    (out.hard * w).sum().backward(retain_graph=True)
    assert logits.grad is not None and logits.grad.dtype == dtype
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    logits.grad = None
    (out.soft * w).sum().backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_seeded_reproducibility(name):
    est = get_estimator(name)
    results = []
    for _ in range(2):
        logits = _logits((5, 7), seed=3).requires_grad_()
        out = est(logits, generator=_gen(42))
        (out.hard * _logits((5, 7), seed=4)).sum().backward()
        results.append((out.hard.detach(), out.soft.detach(), out.index, logits.grad))
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)
    # generator=None uses the global RNG: torch.manual_seed reproduces it
    torch.manual_seed(7)
    first = est(_logits((5, 7))).index
    torch.manual_seed(7)
    assert torch.equal(est(_logits((5, 7))).index, first)
    # and a different seed gives a different draw
    other = [est(_logits((64, 7)), generator=_gen(s)).index for s in (1, 2)]
    assert not torch.equal(*other)


@pytest.mark.parametrize("mask", ["-inf", "finfo.min"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_masked_entries_never_sampled_and_no_nan(name, dtype, mask):
    est = get_estimator(name)
    R, V = 400, 9
    logits = _logits((R, V), torch.float32, scale=1.0).to(dtype)
    value = -math.inf if mask == "-inf" else torch.finfo(dtype).min
    forbidden = torch.zeros(V, dtype=torch.bool)
    forbidden[[0, 3, 8]] = True
    logits[:, forbidden] = value
    logits[0, :] = value
    logits[0, 5] = 0.0  # a row with a single allowed entry
    logits.requires_grad_()
    out = est(logits, generator=_gen(0))
    assert not forbidden[out.index].any()
    assert out.index[0] == 5
    assert torch.isfinite(out.hard).all() and torch.isfinite(out.soft).all()
    assert (out.soft.detach()[:, forbidden] == 0).all()
    (out.hard * _logits((R, V), seed=2).to(dtype)).sum().backward()
    assert torch.isfinite(logits.grad).all()
    assert (logits.grad[:, forbidden] == 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_no_grad_and_leading_shapes(name):
    est = get_estimator(name)
    with torch.no_grad():
        out = est(_logits((2, 1, 6)), generator=_gen())
    assert out.hard.shape == (2, 1, 6) and out.index.shape == (2, 1)
    assert not out.hard.requires_grad
    # [B, 1, K] with gradient (the reference ReinDGE fails here), and a single row (V,)
    logits = _logits((2, 1, 6)).requires_grad_()
    est(logits, generator=_gen()).hard.sum().backward()
    assert logits.grad.shape == (2, 1, 6)
    one = _logits((6,)).requires_grad_()
    out = est(one, generator=_gen())
    assert out.index.shape == () and out.hard.shape == (6,)
    (out.hard * torch.arange(6.0)).sum().backward()
    assert torch.isfinite(one.grad).all()


@pytest.mark.parametrize("name", NAMES)
def test_autograd_call_order_does_not_matter(name):
    """Gradients of two losses taken separately, in either order, add up to the joint gradient."""
    est = get_estimator(name)
    logits = _logits((4, 6)).requires_grad_()
    out = est(logits, generator=_gen(3))
    w = _logits((4, 6), seed=9)
    reward = (out.hard * w).sum()
    kl = (torch.softmax(logits, -1) * torch.log_softmax(logits, -1)).sum()
    (g_kl,) = torch.autograd.grad(kl, logits, retain_graph=True)
    (g_r,) = torch.autograd.grad(reward, logits, retain_graph=True)
    (g_joint,) = torch.autograd.grad(reward + kl, logits, retain_graph=True)
    (g_r2,) = torch.autograd.grad(reward, logits)
    torch.testing.assert_close(g_r + g_kl, g_joint)
    assert torch.equal(g_r, g_r2)


def test_gumbel_soft_mode_puts_the_soft_sample_in_hard():
    logits = _logits((3, 5)).requires_grad_()
    out = GumbelSoftmax(tau=0.7, hard=False)(logits, generator=_gen())
    assert out.hard is out.soft
    ref = GumbelSoftmax(tau=0.7, hard=True)(logits, generator=_gen())
    assert torch.equal(ref.index, out.index) and torch.equal(ref.soft, out.soft)
    assert torch.equal(out.index, out.soft.argmax(-1))


def test_redge_function_is_the_class():
    logits = _logits((3, 8))
    a = ReDGE(n_steps=4, t_1=0.3)(logits, generator=_gen(5))
    assert torch.equal(redge(logits, 4, 0.3, generator=_gen(5)), a.hard)
    assert torch.equal(redge(logits, n_steps=4, t_1=0.3, hard=False, generator=_gen(5)), a.soft)


# --------------------------------------------------------------------------- categorical sampler


@pytest.mark.parametrize("V", [7, 256, 300, 1024, 1031])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_sampler_is_an_exact_inverse_cdf(V, dtype):
    """With uniforms on the grid (i + ½)/N the inverse CDF gives class k to a fraction of the grid
    within 1/N of p_k (deterministic; covers the one-block path V <= 256 and the two-level path
    with and without a shorter last block). Masked entries are never hit, even at u = 0 and at
    the largest float64 below 1."""
    g = _gen(V)
    logits = torch.randn(V, generator=g, dtype=torch.float64) * 2
    logits[::5] = -math.inf  # masked, including the first entry
    logits[-1] = -math.inf
    probs = torch.softmax(logits, -1).to(dtype)
    N = 20_000
    u = (torch.arange(N, dtype=torch.float64) + 0.5) / N
    index = sample_from_probs(probs.expand(N, V), u)
    frac = torch.bincount(index, minlength=V).double() / N
    target = probs.double() / probs.double().sum()
    assert (frac - target).abs().max() <= 1.5 / N
    assert frac[::5].sum() == 0 and frac[-1] == 0
    edge = torch.tensor([0.0, 1.0 - 2.0**-53], dtype=torch.float64)
    picked = sample_from_probs(probs.expand(2, V), edge)
    assert torch.isfinite(logits[picked]).all()
    assert picked[0] == int(torch.isfinite(logits).nonzero()[0])
    assert picked[1] == int(torch.isfinite(logits).nonzero()[-1])


# --------------------------------------------------------------------------- special cases


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n_steps", [2, 5])
def test_redge_at_t1_one_is_exactly_straight_through(n_steps, dtype):
    """t_1 = 1 gives α_1 = 0 and soft = softmax(θ): identical draws, values and gradients, and
    the same use of the generator (no Gaussian is drawn)."""
    outs, grads, states = [], [], []
    for est in (
        StraightThrough(),
        ReDGE(n_steps=n_steps, t_1=1.0),
        ReDGECov(n_steps=n_steps, t_1=1),
    ):
        logits = _logits((6, 3, 13), dtype).requires_grad_()
        g = _gen(11)
        out = est(logits, generator=g)
        (
            out.hard * _logits((6, 3, 13), dtype, seed=1)
            + out.soft * _logits((6, 3, 13), dtype, seed=2)
        ).sum().backward()
        outs.append(out)
        grads.append(logits.grad)
        states.append(g.get_state())
    st = outs[0]
    for out, grad, state in zip(outs[1:], grads[1:], states[1:], strict=True):
        assert torch.equal(out.index, st.index)
        assert torch.equal(out.hard, st.hard) and torch.equal(out.soft, st.soft)
        assert torch.equal(grad, grads[0])
        assert torch.equal(state, states[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_reindge_at_t1_one_is_reinmax_tau_one(dtype):
    logits = _logits((5, 2, 9), dtype).requires_grad_()
    w_h, w_s = _logits((5, 2, 9), dtype, seed=1), _logits((5, 2, 9), dtype, seed=2)
    grads, index = [], []
    for est in (ReinMax(tau=1.0), ReinDGE(n_steps=2, t_1=1.0), ReinDGE(n_steps=4, t_1=1.0)):
        out = est(logits, generator=_gen(3))
        (g,) = torch.autograd.grad((out.hard * w_h + out.soft * w_s).sum(), logits)
        grads.append(g)
        index.append(out.index)
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    for g, i in zip(grads[1:], index[1:], strict=True):
        assert torch.equal(i, index[0])
        torch.testing.assert_close(g, grads[0], atol=tol, rtol=tol)
    # and ReinMax's gradient differs from Straight-Through's
    out = StraightThrough()(logits, generator=_gen(3))
    (g_st,) = torch.autograd.grad((out.hard * w_h + out.soft * w_s).sum(), logits)
    assert (g_st - grads[0]).abs().max() > 1e-2


def _plain_chain(theta, z, sched):
    """ReDGE's DDIM chain in plain autograd, written from the formulas of redge.md."""
    x = z
    for k in range(sched.n_steps - 1, 1, -1):
        p = torch.softmax(theta + sched.alphas[k] / sched.sigmas[k] ** 2 * x, -1)
        x = (
            sched.alphas[k - 1] * p
            + sched.sigmas[k - 1] * (x - sched.alphas[k] * p) / sched.sigmas[k]
        )
    return x


@pytest.mark.parametrize(("n_steps", "t_1"), [(2, 0.5), (3, 0.5), (5, 0.3), (9, 0.8)])
def test_fused_chain_matches_plain_autograd(n_steps, t_1):
    """The recomputing autograd.Function equals autograd through the chain (ReDGE) and the
    stop-gradient form of ReinDGE (docs/method.md), float64, same draws."""
    shape = (4, 3, 7)
    w_h, w_s = _logits(shape, torch.float64, 1), _logits(shape, torch.float64, 2)
    for cls in (ReDGE, ReinDGE):
        est = cls(n_steps=n_steps, t_1=t_1)
        theta = _logits(shape, torch.float64).requires_grad_()
        out = est(theta, generator=_gen(8))
        (g_fused,) = torch.autograd.grad((out.hard * w_h + out.soft * w_s).sum(), theta)
        # replay the draws: the row uniforms first, then the Gaussian
        g = _gen(8)
        u = torch.rand(shape[:-1], generator=g, dtype=torch.float64)
        z = torch.randn(shape, generator=g, dtype=torch.float64)
        sched = est.schedule
        x1 = _plain_chain(theta, z, sched)
        c1 = sched.alphas[1] / sched.sigmas[1] ** 2
        p1 = torch.softmax(theta + c1 * x1, -1)
        torch.testing.assert_close(p1, out.soft, atol=1e-13, rtol=0)
        assert torch.equal(out.index, sample_from_probs(p1.detach(), u))
        D = torch.nn.functional.one_hot(out.index, shape[-1]).double()
        if cls is ReDGE:
            surrogate = p1
        else:
            q = (p1.detach() + D) / 2
            path = torch.softmax(theta.detach() + c1 * x1, -1)
            direct_q = torch.softmax(
                theta + (q.log() - theta).detach(), -1
            )  # value q, Jacobian J(q)
            direct_p = torch.softmax(theta + c1 * x1.detach(), -1)
            surrogate = path + 2 * direct_q - 0.5 * direct_p
        hard = D + (surrogate - surrogate.detach())
        (g_plain,) = torch.autograd.grad((hard * w_h + p1 * w_s).sum(), theta)
        torch.testing.assert_close(g_fused, g_plain, atol=1e-12, rtol=1e-10)


def test_reinmax_matches_the_reinmax_package():
    """Our ReinMax backward equals Microsoft's `reinmax` package's for the same draw."""
    reinmax_pkg = pytest.importorskip("reinmax.reinmax")
    from types import SimpleNamespace

    logits = _logits((6, 10), torch.float64).requires_grad_()
    w_h, w_s = _logits((6, 10), torch.float64, 1), _logits((6, 10), torch.float64, 2)
    for tau in (1.0, 0.5, 2.0):
        out = ReinMax(tau=tau)(logits, generator=_gen(4))
        (ours,) = torch.autograd.grad((out.hard * w_h + out.soft * w_s).sum(), logits)
        ctx = SimpleNamespace(
            saved_tensors=(
                out.hard.detach(),
                logits.detach(),
                torch.softmax(logits.detach(), -1),
                torch.tensor([tau], dtype=torch.float64),
            )
        )
        theirs, _ = reinmax_pkg.ReinMax_Auto.backward(ctx, w_h, w_s)
        torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("t_1", [0.3, 0.7])
def test_closed_forms_for_two_and_three_grid_points(t_1):
    """n=2: soft = softmax(θ + (1-t_1)/t_1² Z) exactly; n=3: softmax(θ + γ²π + γZ), γ=(1-t_1)/t_1,
    up to the 1e-4 end point of the grid (difference O(1e-4 · γ²))."""
    theta = _logits((50, 6), torch.float64)
    shape = theta.shape
    g = _gen(2)
    torch.rand(shape[:-1], generator=g, dtype=torch.float64)
    z = torch.randn(shape, generator=g, dtype=torch.float64)
    soft2 = ReDGE(n_steps=2, t_1=t_1)(theta, generator=_gen(2)).soft
    torch.testing.assert_close(
        soft2, torch.softmax(theta + (1 - t_1) / t_1**2 * z, -1), atol=1e-13, rtol=0
    )
    gamma = (1 - t_1) / t_1
    soft3 = ReDGE(n_steps=3, t_1=t_1)(theta, generator=_gen(2)).soft
    closed = torch.softmax(theta + gamma**2 * torch.softmax(theta, -1) + gamma * z, -1)
    err = (soft3 - closed).abs().max()
    assert err < 2e-3 * max(1.0, gamma**2)
    assert err > 0  # the chain really ran with α_2 = 1e-4, not a shortcut


def test_schedule_grid():
    s = Schedule(5, 0.5)
    assert s.alphas[0] == 1.0
    torch.testing.assert_close(
        torch.tensor(s.alphas[1:], dtype=torch.float64),
        torch.linspace(0.5, 1e-4, 4, dtype=torch.float64),
    )
    assert s.sigmas == tuple(1 - a for a in s.alphas)
    assert Schedule(2, 0.25).alphas == (1.0, 0.75)
    assert Schedule(3, 1.0).is_straight_through and not Schedule(3, 0.99).is_straight_through


# --------------------------------------------------------------------------- gradcheck


@pytest.mark.parametrize("reinmax_last", [False, True])
@pytest.mark.parametrize(("n_steps", "t_1"), [(2, 0.6), (3, 0.5), (5, 0.3), (4, 1.0)])
def test_gradcheck_redge_function(n_steps, t_1, reinmax_last):
    """The soft output of the fused Function is a true function of the logits (the noise is
    replayed from the generator state): its backward must be its Jacobian."""
    sched = Schedule(n_steps, t_1)
    theta = _logits((3, 5), torch.float64, scale=1.0).requires_grad_()

    def soft(th):
        g = _gen(1)
        u = torch.rand(th.shape[:-1], generator=g, dtype=torch.float64)
        return _ReDGEFunction.apply(th, u, sched, reinmax_last, g)[1]

    assert torch.autograd.gradcheck(soft, (theta,), eps=1e-6, atol=1e-8, rtol=1e-6)


def test_gradcheck_reinmax_function():
    from redge_guidance.estimators.baselines import _ReinMaxFunction

    theta = _logits((3, 5), torch.float64, scale=1.0).requires_grad_()
    u = torch.rand(3, generator=_gen(1), dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda th: _ReinMaxFunction.apply(th, u, 0.5)[1], (theta,), eps=1e-6, atol=1e-8
    )


# --------------------------------------------------------------------------- memory


def _saved_bytes(fn) -> int:
    """Bytes saved for backward by `fn()` (each storage counted once)."""
    seen: set[int] = set()
    total = 0

    def pack(t):
        nonlocal total
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


@pytest.mark.parametrize("n_steps", [3, 5, 9])
def test_redge_saves_only_the_logits_whatever_n_steps(n_steps):
    logits = _logits((64, 1000)).requires_grad_()
    small = 64 * 8 + 4096  # the sampled ids; the generator state is not a saved tensor
    for cls in (ReDGE, ReinDGE):
        saved = _saved_bytes(lambda cls=cls: cls(n_steps=n_steps)(logits, generator=_gen()))
        assert saved <= logits.nbytes + small
    bf16 = logits.detach().bfloat16().requires_grad_()
    assert (
        _saved_bytes(lambda: ReDGE(n_steps=n_steps)(bf16, generator=_gen())) <= bf16.nbytes + small
    )


def test_redge_saves_less_than_the_reference_package():
    ref = pytest.importorskip("redge")
    logits = _logits((64, 1000)).requires_grad_()
    for n_steps in (3, 5):
        ours = _saved_bytes(lambda n=n_steps: ReDGE(n_steps=n)(logits, generator=_gen()))
        theirs = _saved_bytes(lambda n=n_steps: ref.redge(logits, n, 0.5))
        assert ours < theirs
