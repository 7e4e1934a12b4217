"""The inner problem of one guided denoising step, as one object.

Given the denoiser's clean-token logits ``ℓ`` (B, L, V), the current sequence and the editable
positions, :class:`InnerProblem` holds everything the optimisation of the variational logits φ
needs: the N editable rows of φ (the only optimised tensor), the prior's log-probabilities, the
fixed context the reward sees at the other positions, the private generator, and the per-sample
early-stop state. :meth:`InnerProblem.run` takes ``n_opt_steps`` Adam steps on

    maximise over φ:  mean_s reward(x̃⁽ˢ⁾)_b − kl_weight · Σ_l KL(softmax φ_l ‖ softmax ℓ_l)

per sample b (l over its editable positions), with x̃ = relaxation(φ) (arXiv 2601.00781) or
exact draws for the score-function gradient; :meth:`InnerProblem.guided_logits` turns the result
into what the sampler reads. The hook (:mod:`.hook`) builds one per guided step; search methods
can build and run one as a proposal. Samples never interact: reward, KL, clipping and early stop
are all per sample.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..estimators.buffers import BufferPool, rows_to_front
from . import gradients
from .config import GuidanceConfig
from .optim import EarlyStop, make_optimizer
from .support import Support, row_logsumexp
from .trace import Clock

__all__ = ["InnerProblem", "WarmStart", "RewardCall"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Entries per block of the blocked KL (1 MiB of float32: each temporary stays in cache).
_BLOCK_ENTRIES = 1 << 18
# Entries per block when the reward's gradient rows are moved in place (4 MiB of float32).
_MOVE_ENTRIES = 1 << 20

#: ``reward_call(x, attention_mask, expected) -> (expected,) scores``: the reward with its
#: output checked (built by the hook).
RewardCall = Callable[[torch.Tensor, "torch.Tensor | None", int], torch.Tensor]


@dataclass
class WarmStart:
    """The final φ of the previous guided call, for ``GuidanceConfig.warm_start``.

    Args:
        shape (`tuple[int, int, int]`): (B, L, V) of that call.
        index (`torch.Tensor` of shape `(B, L)`, int64): row of ``phi`` of each position, -1 where
            the position was not editable.
        logq (`torch.Tensor` of shape `(N, K)`): log softmax of the final φ rows, detached.
        support (`torch.Tensor` of shape `(N, K)`, *optional*): their vocabulary ids (None:
            the whole vocabulary).
    """

    shape: tuple[int, int, int]
    index: torch.Tensor
    logq: torch.Tensor
    support: torch.Tensor | None = None


@dataclass
class InnerResult:
    """What :meth:`InnerProblem.run` did: the final φ rows ``(N, V)`` (masked entries at the
    dtype's minimum), inner steps run, per-sample stop steps and the last objective estimate."""

    phi: torch.Tensor
    steps_run: int
    steps_per_sample: list[int]
    last_objective: torch.Tensor | None


class InnerProblem:
    """The inner optimisation of one guided step (see the module docstring).

    Args:
        config (`GuidanceConfig`): hyper-parameters.
        reward_call (`RewardCall`): the reward, output checked.
        reward_name (`str`): the reward's name, for messages.
        logits (`torch.Tensor` of shape `(B, L, V)`): the denoiser's clean-token logits; entries
            ``<= finfo(dtype).min`` (or ``-inf``) are masked and stay masked.
        sample (`torch.Tensor` of shape `(B, L)`, int64): the current sequence.
        editable (`torch.Tensor` of shape `(B, L)`, bool): positions φ lives on (at least one).
        attention_mask (`torch.Tensor` of shape `(B, L)`, *optional*): passed to the reward.
        mask_token_id (`int`, *optional*): tells still-masked positions from committed ones.
        seed (`int`): seed of the private generator all the noise comes from.
        score_function (`bool`): REINFORCE instead of the pathwise gradient.
        warm_start (`WarmStart`, *optional*): the previous call's φ.
        profile (`bool`): time the phases (a CUDA synchronisation per phase).
        sparse_reward (`bool`): the reward reads ``rewards.SparseRows``; with a restricted
            support the reward's input is then ``(S·B, L, K)`` weights over fixed indices
            instead of ``(S·B, L, V)``.
    """

    def __init__(
        self,
        config: GuidanceConfig,
        reward_call: RewardCall,
        reward_name: str,
        logits: torch.Tensor,
        sample: torch.Tensor,
        editable: torch.Tensor,
        *,
        attention_mask: torch.Tensor | None = None,
        mask_token_id: int | None = None,
        seed: int = 0,
        score_function: bool = False,
        warm_start: WarmStart | None = None,
        profile: bool = False,
        sparse_reward: bool = False,
    ) -> None:
        self.config = config
        self.reward_call = reward_call
        self.reward_name = reward_name
        self.estimator = config.build_estimator()
        self.score_function = score_function
        self.logits = logits.detach()
        self.editable = editable.detach()
        self.attention_mask = attention_mask
        # The mask of the S·B reward inputs of one inner step (sample-major).
        self.reward_mask = (
            attention_mask.repeat(config.num_relaxed_samples, 1)
            if attention_mask is not None
            else None
        )
        self.device = logits.device
        self.in_dtype = logits.dtype
        self.dtype = _DTYPES[config.optimize_dtype]  # φ's master copy, Adam, softmax, KL
        # The relaxation's input and output and the reward's input (mixed precision: bf16).
        self.work_dtype = torch.bfloat16 if config.mixed_precision == "bf16" else self.dtype
        self.low = torch.finfo(self.dtype).min
        self.B, self.L, self.V = logits.shape  # batch, length, vocab
        self.S = config.num_relaxed_samples
        self.clock = Clock(self.device, profile)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        # Temporaries of the inner steps, reused from one to the next.
        self.workspace = BufferPool()

        # The N editable rows, row-major over (B, L).
        self.batch_idx, self._rows_l = self.editable.nonzero().unbind(-1)  # (N,) sample, position
        self.N = self.batch_idx.numel()
        # φ's support and the model's logits on it: (N, K) rows, K = V (dense) or its top tokens.
        self.support, raw = Support.select(self.logits, self.editable, config.top_k, config.top_p)
        self.K = self.support.K
        self._prior(raw)  # raw_rows, vmask, prior_rows, prior_logp
        # With a sparse-capable reward and a restricted support, the reward reads (B, L, K)
        # weights over fixed vocabulary ids (`context_index`) instead of (B, L, V) rows.
        self.sparse_input = sparse_reward and not self.support.dense
        self.context_index: torch.Tensor | None = None
        self.context = self._context(sample.detach().long(), mask_token_id)  # (B, L, V | K)
        # Flat row ids of the editable positions in the (S·B·L, V) reward input (sparse writes).
        pos = self.batch_idx * self.L + self._rows_l  # (N,), row-major like batch_idx
        offsets = torch.arange(self.S, device=self.device).unsqueeze(-1) * (self.B * self.L)
        self._flat_rows = (offsets + pos).reshape(-1, 1)  # (S·N, 1)
        self._row_pos: list[int] | None = None  # `row_positions`
        self.phi0 = self._start(warm_start)
        self.clock.lap("setup")

    # -- set-up --------------------------------------------------------------------------------

    def _prior(self, raw: torch.Tensor) -> None:
        """The prior on φ's support from the model's logits there, ``raw`` (N, K), input dtype."""
        # The input rows are kept only with a restricted support (small); the dense path reads
        # them from `logits` again at the hand-off instead of holding an (N, V) copy.
        self.raw_rows = None if self.support.dense else raw  # (N, K) in the input dtype
        vmask = raw <= torch.finfo(self.in_dtype).min  # (N, K): masked (or off the nucleus)
        # One host synchronisation here saves a full pass per inner step where nothing is masked.
        self.any_masked = bool(vmask.any())
        rows = raw.to(self.dtype).masked_fill(vmask, self.low)  # finite
        self.prior_rows = rows  # (N, K) the model's logits on the support, finite
        # Masked entries, (N, K) bool; (1, K) when every row masks the same entries (a mask
        # token's column, say), which broadcasts wherever the mask is read.
        same = self.any_masked and bool((vmask == vmask[:1]).all())
        self.vmask = vmask[:1].clone() if same else vmask  # a copy: the view would hold (N, K)
        self.masked_columns = vmask[0].nonzero()[:, 0] if same else None  # their ids then
        # The dense eager path keeps no (N, V) prior log-probabilities: the KL reads the prior
        # a block of rows at a time from `logits` (`prior_logp_rows`). Elsewhere they are kept:
        # (N, K) is small, and the compiled step takes them whole.
        self.prior_logp: torch.Tensor | None = None
        if not self.support.dense:  # log p over the *full* vocabulary, read on the support
            lse = row_logsumexp(self.logits, self.editable).to(self.dtype)  # (N,)
            self.prior_logp = rows - lse.unsqueeze(-1)  # the KL is to the full prior
        elif self.config.compile:
            self.prior_logp = torch.log_softmax(rows, dim=-1)

    def _context(self, sample: torch.Tensor, mask_token_id: int | None) -> torch.Tensor:
        """What the reward sees outside the editable rows: one-hots of committed tokens, the
        model's soft prediction at still-masked, non-editable positions."""
        B, L, V = self.B, self.L, self.V
        in_vocab = (sample >= 0) & (sample < V)
        ids = sample.clamp(0, V - 1).unsqueeze(-1)
        if mask_token_id is not None:
            still_masked = (sample == mask_token_id) | ~in_vocab
        else:  # a position whose current token has a masked logit is still masked
            own = self.logits.gather(-1, ids).squeeze(-1)
            still_masked = (own <= torch.finfo(self.in_dtype).min) | ~in_vocab
        soft_rows = still_masked & ~self.editable
        if self.sparse_input:
            return self._sparse_context(ids.squeeze(-1), soft_rows)
        base = torch.zeros(B, L, V, dtype=self.work_dtype, device=self.device)
        base.scatter_(-1, ids, 1.0)
        if bool(soft_rows.any()):
            ctx = self.logits[soft_rows].to(self.dtype)
            ctx = ctx.masked_fill(ctx <= torch.finfo(self.in_dtype).min, self.low)
            base[soft_rows] = torch.softmax(ctx, dim=-1).to(base.dtype)
        if not self.support.dense:  # editable rows are written entry by entry: start at zero
            base[self.editable] = 0.0
        return base

    def _sparse_context(self, ids: torch.Tensor, soft_rows: torch.Tensor) -> torch.Tensor:
        """The context as K weighted entries per position: a committed token is its id with
        weight 1; a still-masked, non-editable position the model's top K tokens, renormalised
        (the one approximation of the sparse input: it drops the model's mass below its top K);
        an editable row φ's support (weights written by the loop)."""
        K = self.K
        index = ids.unsqueeze(-1).expand(self.B, self.L, K).clone()  # (B, L, K)
        weight = torch.zeros(self.B, self.L, K, dtype=self.work_dtype, device=self.device)
        weight[..., 0] = 1.0
        if bool(soft_rows.any()):
            values, top = self.logits[soft_rows].topk(K, dim=-1)
            values = values.to(self.dtype).masked_fill(
                values <= torch.finfo(values.dtype).min, self.low
            )
            index[soft_rows] = top
            weight[soft_rows] = torch.softmax(values, dim=-1).to(weight.dtype)
        index[self.editable] = self.support.index
        weight[self.editable] = 0.0
        self.context_index = index
        return weight

    def reward_input(self, x: torch.Tensor) -> Any:
        """What the reward is called with: ``x`` itself, or ``rewards.SparseRows`` over the
        context's fixed ids when the input is sparse (``x``: (S·B, L, K) weights)."""
        if not self.sparse_input:
            return x
        from rewards import SparseRows

        S = x.shape[0] // self.B
        index = self.context_index if S == 1 else self.context_index.repeat(S, 1, 1)
        return SparseRows(index=index, weight=x, vocab_size=self.V)

    def _start(self, warm: WarmStart | None) -> torch.Tensor:
        """φ's starting rows: ℓ, or where the row was editable at the previous call too, the
        log-linear mix ``(1 − w) log p + w log q_prev`` (``q_prev``: that call's softmax φ; a
        token outside its support counts as unchanged, ``log q_prev = log p``)."""
        weight = self.config.warm_start
        if weight == 0.0 or warm is None or warm.shape != (self.B, self.L, self.V):
            return self.prior_rows  # shared: `run` hands this storage to φ (no copy)
        rows = warm.index.to(self.device)[self.editable]  # (N,) previous row or -1
        have = rows >= 0
        logp = self.prior_logp_rows(0, self.N)
        previous = warm.logq[rows.clamp_min(0)]  # (N, K_prev)
        if warm.support is None and self.support.dense:
            logq = previous
        else:  # map the previous support's entries onto this one, through the vocabulary
            prev_index = warm.support[rows.clamp_min(0)] if warm.support is not None else None
            dense = Support(prev_index, self.V).scatter(previous, float("nan"))  # (N, V)
            logq = self.support.gather(dense)
            logq = torch.where(torch.isnan(logq), logp, logq)
        mixed = (1.0 - weight) * logp + weight * logq
        phi0 = torch.where(have.unsqueeze(-1), mixed, self.prior_rows)
        return phi0.masked_fill(self.vmask, self.low)

    def warm_state(self, phi: torch.Tensor) -> WarmStart:
        """The warm-start state for the next call, from the final φ rows."""
        index = torch.full((self.B, self.L), -1, dtype=torch.long, device=self.device)
        index[self.editable] = torch.arange(self.N, device=self.device)
        logq = torch.log_softmax(phi, dim=-1).masked_fill(self.vmask, self.low)
        return WarmStart((self.B, self.L, self.V), index, logq, self.support.index)

    # -- reading and writing the reward's input -------------------------------------------------

    def write_rows(self, buffer: torch.Tensor, rows: torch.Tensor) -> None:
        """Write ``rows`` (S, N, K) into the editable positions of the reward's input buffer
        (S·B, L, V), in place (entries outside the support stay zero)."""
        S = rows.shape[0]
        if self.support.dense or self.sparse_input:
            width = self.V if self.support.dense else self.K
            buffer.view(S, self.B, self.L, width)[:, self.editable] = rows.to(buffer.dtype)
        else:
            index = self.support.index.repeat(S, 1)  # (S·N, K)
            flat = buffer.view(-1, self.V)
            flat[self._flat_rows[: S * self.N], index] = rows.reshape(-1, self.K).to(buffer.dtype)

    def write_draws(self, buffer: torch.Tensor, index: torch.Tensor) -> None:
        """Write the one-hots of ``index`` (S, N) (positions in the support) into the editable
        rows of the reward's input buffer, in place: what :meth:`write_rows` writes for
        ``one_hot(index, K)``, without building the (S, N, K) one-hots on the dense path."""
        S = index.shape[0]
        if not self.support.dense:
            self.write_rows(buffer, F.one_hot(index, self.K).to(buffer.dtype))
            return
        flat = buffer.view(-1, self.V)
        rows = self._flat_rows[: S * self.N, 0]
        flat.index_fill_(0, rows, 0.0)
        flat[rows, index.reshape(-1)] = 1.0

    def read_rows(self, grad: torch.Tensor, *, consume: bool = False) -> torch.Tensor:
        """The editable rows' entries (S, N, K) of a gradient with respect to the buffer, a
        tensor callers may overwrite. With ``consume`` (the gradient is the reward's, read by
        nothing else) the dense path moves the rows to the front of ``grad`` itself and
        returns a view of them: no (S·N, V) copy next to the (S·B, L, V) gradient."""
        S = grad.shape[0] // self.B
        if self.support.dense:
            flat = grad.reshape(-1, self.V)  # a view of `grad` (the reward's gradients are dense)
            if consume and flat.data_ptr() == grad.data_ptr():
                return self._rows_to_front(flat, S).view(S, self.N, self.V)
            rows = self._flat_rows[: S * self.N, 0]
            return torch.index_select(flat, 0, rows).view(S, self.N, self.V)
        if self.sparse_input:
            return grad.view(S, self.B, self.L, self.K)[:, self.editable]
        index = self.support.index.repeat(S, 1)
        flat_rows = self._flat_rows[: S * self.N]
        return grad.reshape(-1, self.V)[flat_rows, index].view(S, self.N, self.K)

    def _rows_to_front(self, flat: torch.Tensor, S: int) -> torch.Tensor:
        """Move the editable rows of ``flat`` (S·B·L, V) to its first S·N rows, in place."""
        offsets = range(0, S * self.B * self.L, self.B * self.L)
        positions = [o + r for o in offsets for r in self.row_positions()]
        return rows_to_front(flat, self._flat_rows[: S * self.N, 0], positions, _MOVE_ENTRIES)

    def with_start_probs(self) -> torch.Tensor:
        """The context with a point of the simplex at each editable row: the prior renormalised
        on the support (what the reward's ``validate`` is shown). Written into the context
        itself, no copy: every later reader rewrites the editable rows (call
        :meth:`clear_start_probs` before the loop)."""
        probs = torch.softmax(self.prior_rows, dim=-1).to(self.context.dtype)  # (N, K)
        self.write_rows(self.context, probs.unsqueeze(0))
        return self.context

    def clear_start_probs(self) -> None:
        """Undo :meth:`with_start_probs` where the loop relies on zeros (sparse writes)."""
        if not self.support.dense and not self.sparse_input:
            self.write_rows(self.context, torch.zeros_like(self.prior_rows).unsqueeze(0))

    def release(self) -> None:
        """Drop the reward's context (B, L, V) once no reward is left to evaluate, and the inner
        steps' reused buffers."""
        self.context = None
        self.context_index = None
        self.workspace = BufferPool()

    # -- objective -----------------------------------------------------------------------------

    def per_sample(self, rows: torch.Tensor) -> torch.Tensor:
        """Sum of a per-row quantity ``(N,)`` over each sample's rows, shape (B,)."""
        out = torch.zeros(self.B, dtype=rows.dtype, device=rows.device)
        return out.index_add(0, self.batch_idx, rows)

    def kl(self, phi: torch.Tensor) -> torch.Tensor:
        """Exact ``Σ over a sample's rows of KL(softmax φ ‖ p)``, shape (B,)."""
        return self.kl_and_grad(phi, need_grad=False)[0]

    def kl_and_grad(
        self, phi: torch.Tensor, *, need_grad: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The per-sample KL (B,) and, if asked, its gradient with respect to φ (N, K), in
        closed form: ``q ⊙ (log q − log p − KL_row)``, a block of rows at a time (about 1 MiB
        of each temporary: they stay in cache, and no full-size one is made). The gradient is
        a buffer of :attr:`workspace`: give it back once read.
        """
        N, K = phi.shape
        with torch.no_grad():
            phi = phi.detach()
            grad = self.workspace.take(phi.shape, phi.dtype, phi.device) if need_grad else None
            kl_rows = phi.new_empty(N)
            for start, stop in _blocks(N, _BLOCK_ENTRIES // K):
                logq = torch.log_softmax(phi[start:stop], dim=-1)
                q = torch.exp(logq)
                diff = logq.sub_(self.prior_logp_rows(start, stop))  # log q − log p
                kl = (q.unsqueeze(-2) @ diff.unsqueeze(-1)).reshape(-1)  # row dot products
                kl_rows[start:stop] = kl
                if grad is not None:
                    torch.mul(diff.sub_(kl.unsqueeze(-1)), q, out=grad[start:stop])
        return self.per_sample(kl_rows), grad

    def zero_masked(self, grad: torch.Tensor) -> None:
        """Set a gradient of φ (N, K) to zero at the masked entries, in place: a fill of a few
        columns where every row masks the same entries."""
        if self.masked_columns is not None:
            grad.index_fill_(-1, self.masked_columns, 0.0)
        else:
            grad.masked_fill_(self.vmask, 0.0)

    def row_positions(self) -> list[int]:
        """Where each editable row is in the flattened (B·L) positions, on the host (one
        synchronisation per guided step, taken the first time a caller needs it)."""
        if self._row_pos is None:
            self._row_pos = self._flat_rows[: self.N, 0].tolist()
        return self._row_pos

    def prior_logp_rows(self, start: int, stop: int) -> torch.Tensor:
        """The prior's log-probabilities on φ's support at editable rows ``start:stop``: a
        slice of :attr:`prior_logp`, or on the dense eager path computed from the logits, the
        same values bit for bit."""
        if self.prior_logp is not None:
            return self.prior_logp[start:stop]
        first, last = self.row_positions()[start], self.row_positions()[stop - 1]
        if self.in_dtype == self.dtype:  # masked entries are at the minimum or -inf: clamp them
            if last - first == stop - 1 - start and self.logits.is_contiguous():
                rows = self.logits.view(-1, self.V)[first : last + 1].clamp_min(self.low)
            else:  # a copy of the rows
                rows = self.logits[self.batch_idx[start:stop], self._rows_l[start:stop]]
                rows = rows.clamp_min_(self.low)
        else:
            raw = self.logits[self.batch_idx[start:stop], self._rows_l[start:stop]]
            rows = raw.to(self.dtype).masked_fill_(raw <= torch.finfo(self.in_dtype).min, self.low)
        return torch.log_softmax(rows, dim=-1)

    def decoded_reward(self, rows: torch.Tensor) -> torch.Tensor:
        """Reward (no grad, float32 on the host's device) with the editable positions at the
        one-hot argmax of ``rows`` (N, K): what the sequence would be if decoded greedily now."""
        with torch.no_grad():
            x = self.context.clone()
            if self.sparse_input:  # one-hot over the support
                x[self.editable] = F.one_hot(rows.argmax(-1), self.K).to(x.dtype)
            else:
                ids = self.support.to_vocab(rows.argmax(-1))
                x[self.editable] = F.one_hot(ids, self.V).to(x.dtype)
            scores = self.reward_call(self.reward_input(x), self.attention_mask, self.B)
            return scores.detach().float()

    # -- the loop ------------------------------------------------------------------------------

    def run(self, *, check_output: bool = False) -> InnerResult:
        """``n_opt_steps`` Adam steps on φ (fewer if every sample stops early).

        Args:
            check_output (`bool`): check at the first inner step that the reward's scores are
                finite and carry a gradient (one host synchronisation); the hook asks once per
                generation.
        """
        cfg = self.config
        B = self.B
        grad_fn = gradients.choose(self)
        # The compiled ReDGE relaxation takes its gradient without autograd.
        phi = self.phi0.detach().requires_grad_(grad_fn is not gradients.compiled_pathwise)
        # φ may share storage with the prior's rows (no warm start): Adam then updates it in
        # place, so nothing may read `prior_rows` after this point.
        self.phi0 = self.prior_rows = None
        opt = make_optimizer(self, phi)
        # (S*B, L, V) reward input, sample-major: the context is written once, the editable rows
        # are overwritten in place at each inner step.
        # With S = 1 the context itself is the buffer: only editable rows are written, and every
        # later reader of the context (decoded_reward) rewrites those rows whole.
        buffer = self.context.repeat(self.S, 1, 1) if self.S > 1 else self.context
        early = EarlyStop(cfg, B, self.device, self.dtype) if cfg.patience > 0 else None
        steps_run, last_obj = 0, None
        for t in range(cfg.n_opt_steps):
            grad, reward_b = grad_fn(self, phi, buffer, check=check_output and t == 0)
            kl_b = opt.kl(phi, grad)  # (B,); adds the KL's gradient
            del grad  # the optimiser holds it now, and frees it after the step
            self.clock.lap("kl")
            last_obj = reward_b.to(self.dtype) - cfg.kl_weight * kl_b  # (B,)
            if early is not None and early.update(last_obj, phi, self.batch_idx, t):
                self.clock.lap("optimizer")
                break
            phi = opt.step(phi)
            if early is not None:
                early.restore(phi, self.batch_idx)
            steps_run += 1
            self.clock.lap("optimizer")
        steps = early.steps_per_sample(cfg.n_opt_steps) if early is not None else [steps_run] * B
        return InnerResult(phi.detach(), steps_run, steps, last_obj)

    def guided_logits(self, phi: torch.Tensor) -> torch.Tensor:
        """The logits handed to the sampler: the input outside the editable rows and at masked
        entries (bit for bit); at the editable rows φ (or its one-hot argmax), and the dtype's
        minimum outside φ's support; input dtype."""
        low = torch.finfo(self.in_dtype).min
        raw = self.logits[self.editable] if self.raw_rows is None else self.raw_rows  # (N, K)
        if self.config.handoff == "argmax":
            top = phi.argmax(dim=-1, keepdim=True)  # (N, 1) position in the support
            values = torch.full_like(raw, low).scatter_(-1, top, 0.0)
        else:
            values = phi.to(self.in_dtype)
        values = torch.where(raw <= low, raw, values)  # masked entries keep their value
        out = self.logits.clone()
        if self.support.dense:
            out[self.editable] = values
            return out
        # Every entry of an editable row leaves the support's complement impossible: masked
        # entries keep their value (finfo.min or -inf), all others become finfo.min, in place.
        out.masked_fill_(self.editable.unsqueeze(-1) & (out > low), low)
        out.view(-1, self.V)[self._flat_rows[: self.N], self.support.index] = values
        return out


def _blocks(n: int, size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of consecutive blocks of about ``size`` rows covering ``n``, none of a
    single row unless ``n == 1``: a batch of one row makes ``@`` take another kernel, and the
    row dot products would then differ in the last bit from the unblocked ones."""
    starts = list(range(0, n, max(2, size)))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    return list(zip(starts, starts[1:] + [n], strict=True))
