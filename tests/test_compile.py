"""`GuidanceConfig(compile=True)`: the inner step as `torch.compile(fullgraph=True)` graphs.

The pure functions that get compiled are checked eagerly against the estimators' autograd and
torch's Adam (fast). The compiled run itself is one test, marked slow and run only with
``-m slow``: compiling the three graphs (the chain's draw, its gradient, the KL + Adam step) and
their dynamic-shape versions takes 30-60 s on 2 CPU cores with a cold inductor cache.
"""

from __future__ import annotations

import pytest
import torch

from redge_guidance import RewardGuidance
from redge_guidance.guidance import compiled
from rewards import Reward

from _support import skip_unless_slow_selected

V = 32  # vocabulary
MASK = 3  # mask token id


class LinearReward(Reward):
    vocab_size = V

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("w", torch.randn(V, generator=torch.Generator().manual_seed(1)))

    def forward(self, x, *, attention_mask=None):
        return (x.float() @ self.w).sum(-1)


def _denoise(hook: RewardGuidance, steps: int = 4) -> list[torch.Tensor]:
    """A toy trajectory: at each step two more positions per sample are committed, so the number
    of editable rows N changes at every guided call (12, 8, 4, 2 ... for B = 2, L = 8)."""
    g = torch.Generator().manual_seed(0)
    B, L = 2, 8
    logits = 2.0 * torch.randn(B, L, V, generator=g)
    logits[..., MASK] = torch.finfo(torch.float32).min
    sample = torch.full((B, L), MASK, dtype=torch.long)
    outs = []
    hook.reset()
    for step in range(steps):
        sample[:, : 2 * step] = 10
        editable = sample == MASK
        out = hook(
            logits,
            sample,
            editable=editable,
            step=step,
            num_steps=steps,
            generator=torch.Generator().manual_seed(0),
        )
        outs.append(out)
    return outs


@pytest.mark.parametrize(
    ("estimator", "n_steps", "t_1", "S"),
    [("redge", 3, 0.5, 1), ("redge", 5, 0.3, 2), ("reindge", 5, 0.5, 1), ("redge", 3, 1.0, 1)],
)
def test_chain_functions_match_the_estimators_autograd(estimator, n_steps, t_1, S):
    """`chain_sample` draws what the estimator draws from the same generator, and `chain_grad`
    is the gradient autograd takes through the estimator (summed over S draws)."""
    from redge_guidance.estimators import get_estimator
    from redge_guidance.estimators.sampling import draw_row_uniforms

    est = get_estimator(estimator, n_steps=n_steps, t_1=t_1)
    phi = 2.0 * torch.randn(5, V, generator=torch.Generator().manual_seed(3))
    phi[:, MASK] = torch.finfo(torch.float32).min
    leaf = phi.clone().requires_grad_(True)
    hard = est(leaf.unsqueeze(0).expand(S, 5, V), generator=torch.Generator().manual_seed(4)).hard
    g_hard = torch.randn(S, 5, V, generator=torch.Generator().manual_seed(5))
    (expected,) = torch.autograd.grad(hard, leaf, grad_outputs=g_hard)

    gen = torch.Generator().manual_seed(4)
    theta = phi.unsqueeze(0).expand(S, 5, V)
    uniforms = draw_row_uniforms(theta, gen)
    noise = None if t_1 == 1.0 else torch.randn(theta.shape, generator=gen)
    index = compiled.chain_sample(theta, noise, uniforms, est.schedule)
    assert torch.equal(index, hard.argmax(-1))
    grad = compiled.chain_grad(theta, noise, index, g_hard, est.schedule, estimator == "reindge")
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("max_grad_norm", [None, 0.05])
def test_kl_adam_step_is_torchs_adam_on_the_kl_regularised_gradient(max_grad_norm):
    """Three steps of `kl_adam_step` against `torch.optim.Adam` on the same gradients (the KL's
    in closed form, per-sample clipping, masked entries frozen)."""
    g = torch.Generator().manual_seed(0)
    N, K, B = 6, V, 2
    batch_idx = torch.tensor([0, 0, 0, 1, 1, 1])
    prior = torch.randn(N, K, generator=g)
    prior[:, MASK] = torch.finfo(torch.float32).min
    prior_logp = prior.log_softmax(-1)
    vmask = torch.zeros(N, K, dtype=torch.bool)
    vmask[:, MASK] = True
    phi = prior.clone().requires_grad_(True)
    opt = torch.optim.Adam([phi], lr=0.1)
    state = (prior.clone(), torch.zeros(N, K), torch.zeros(N, K))
    for t in range(1, 4):
        reward_grad = torch.randn(N, K, generator=g)
        logq = phi.log_softmax(-1)
        kl = (logq.exp() * (logq - prior_logp)).nan_to_num().sum(-1)
        (grad,) = torch.autograd.grad(0.7 * kl.sum(), phi)
        grad = grad + reward_grad
        if max_grad_norm is not None:
            norm = torch.zeros(B).index_add(0, batch_idx, grad.pow(2).sum(-1)).sqrt()
            grad = grad * (max_grad_norm / (norm + 1e-12)).clamp(max=1.0)[batch_idx, None]
        phi.grad = grad.masked_fill(vmask, 0.0)
        scalars = torch.tensor([0.1 / (1 - 0.9**t), (1 - 0.999**t) ** 0.5, 0.7])
        new, m, v, kl_b = compiled.kl_adam_step(
            state[0], reward_grad, prior_logp, vmask, batch_idx, state[1], state[2], scalars,
            B=B, use_kl=True, max_grad_norm=max_grad_norm,
        )  # fmt: skip
        expected_kl = torch.zeros(B).index_add(0, batch_idx, kl.detach())
        torch.testing.assert_close(kl_b, expected_kl, rtol=1e-5, atol=1e-6)
        opt.step()
        torch.testing.assert_close(new, phi.detach(), rtol=1e-5, atol=1e-5)
        state = (phi.detach().clone(), m, v)


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["redge", "gumbel_softmax"])
def test_compiled_inner_step_matches_eager_without_breaks_or_unbounded_recompiles(
    estimator, request
):
    """fullgraph=True makes any graph break an error. The compiled step draws the same noise
    from the same generator as the eager one, so the guided logits agree to float32 rounding
    (a draw could flip only at a class boundary: none does here). Each function compiles at
    most twice (static, then dynamic in N) over four calls with four different N."""
    skip_unless_slow_selected(request)
    torch._dynamo.reset()
    compiled.compiled.cache_clear()
    options = dict(n_opt_steps=6, lr=0.2, mask_token_id=MASK, estimator=estimator)
    eager = _denoise(RewardGuidance(LinearReward(), **options))
    frames = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    hook = RewardGuidance(LinearReward(), compile=True, **options)
    fast = _denoise(hook)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"] - frames
    n_functions = 3 if estimator == "redge" else 1  # only ReDGE/ReinDGE's chain compiles
    assert [t["num_editable"] for t in hook.trace] == [16, 12, 8, 4]
    assert n_functions <= graphs <= 2 * n_functions, graphs
    for a, b in zip(eager, fast, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
    again = _denoise(hook)  # a second generation: no new graph
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] - frames == graphs
    for a, b in zip(fast, again, strict=True):
        assert torch.equal(a, b)
