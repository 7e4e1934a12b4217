"""The MDLM training loop of `train_text_mdm.py`: objective, held-out evaluation, sampling.

Objective (MDLM): per sequence t ~ U(eps, 1) (stratified across the batch), tokens masked by
`MaskedDiffusionScheduler.add_noise`, loss = sum over masked positions of
`scheduler.elbo_weight(t) * -log p(x_i | x_t)` (1/t for the linear schedule alpha_t = 1 - t),
divided by the number of tokens B * L: the continuous-time ELBO, an upper bound on the NLL in nats
per token. [MASK] is never predicted (its logit is set to finfo.min, as the sampler does).
Samples are drawn with `MaskedDiffusionPipeline`.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import text_corpus
import torch
import torch.nn.functional as F

from pipelines import MaskedDiffusionPipeline, MaskedDiffusionScheduler

PROMPTS = (
    "romeo : o, my love,",
    "hamlet : to be, or not to be",
    "king : my lords,",
    "juliet : what light is this",
)


# --------------------------------------------------------------------------------------------------
# objective, evaluation, sampling


def forward_logits(model, x: torch.Tensor, mask_id: int) -> torch.Tensor:
    """Clean-token logits in float32, `(B, L, V)`, with the [MASK] logit at finfo.min."""
    logits = model(input_ids=x).logits.float()  # (B, L, V)
    return logits.index_fill(
        -1, torch.tensor([mask_id], device=x.device), torch.finfo(torch.float32).min
    )


def stratified_t(batch_size: int, eps: float, generator: torch.Generator, device) -> torch.Tensor:
    """Low-discrepancy t in [eps, 1): one uniform offset, B evenly spaced points. `(B,)`."""
    u = torch.rand((), generator=generator, device=device)
    grid = torch.arange(batch_size, device=device, dtype=torch.float32) / batch_size
    return eps + (1.0 - eps) * torch.remainder(u + grid, 1.0)


def masked_nll(model, x, t, scheduler: MaskedDiffusionScheduler, generator):
    """Noise `x` `(B, L)` at times `t` `(B,)`; `(nll, masked)` of its tokens, both `(B, L)`."""
    mask_id = scheduler.config.mask_token_id
    x_t = scheduler.add_noise(x, t, generator=generator)
    logits = forward_logits(model, x_t, mask_id)  # (B, L, V)
    nll = F.cross_entropy(logits.transpose(1, 2), x, reduction="none")  # (B, L)
    return nll, x_t != x


def mdlm_loss(model, x, scheduler: MaskedDiffusionScheduler, *, eps, generator):
    """MDLM ELBO per token and the plain masked-token CE, both 0-dim tensors."""
    B, L = x.shape  # batch, length
    t = stratified_t(B, eps, generator, x.device)  # (B,)
    nll, masked = masked_nll(model, x, t, scheduler, generator)
    m = masked.float()
    weight = scheduler.elbo_weight(t)[:, None]  # (B, 1): 1/t for the linear schedule
    elbo = (nll * m * weight).sum() / (B * L)
    masked_ce = (nll * m).sum() / m.sum().clamp_min(1.0)
    return elbo, masked_ce


@torch.no_grad()
def evaluate(model, windows, scheduler, *, eps, batch_size, autocast, seed=1234):
    """Held-out metrics with fixed masks (same seed every call, so evals are comparable).

    Returns a dict: `masked_ce@0.15/0.5/0.9` (mean CE over masked tokens at that mask ratio),
    `masked_ce@U` (t ~ U(eps, 1) stratified), `elbo` (MDLM bound, nats/token, t ~ U), `ppl_bound`.
    """
    was_training = model.training
    model.eval()
    device = windows.device
    out = {}
    for ratio in (0.15, 0.5, 0.9, None):
        gen = torch.Generator(device=device).manual_seed(seed)
        zero = torch.zeros((), device=device, dtype=torch.float64)
        tot_nll, tot_w, tot_m = zero, zero, zero  # summed out of place below
        for chunk in windows.split(batch_size):
            B = chunk.shape[0]
            if ratio is None:
                t = stratified_t(B, eps, gen, device)
            else:
                t = torch.full((B,), ratio, device=device)
            with autocast():
                nll, masked = masked_nll(model, chunk, t, scheduler, gen)
            masked_nll_sum = nll.double() * masked.double()
            tot_nll = tot_nll + masked_nll_sum.sum()
            tot_w = tot_w + (masked_nll_sum * scheduler.elbo_weight(t.double())[:, None]).sum()
            tot_m = tot_m + masked.sum()
        key = "U" if ratio is None else f"{ratio:g}"
        out[f"masked_ce@{key}"] = float(tot_nll / tot_m.clamp_min(1))
        if ratio is None:
            out["elbo"] = float(tot_w / windows.numel())
            out["ppl_bound"] = float(math.exp(min(out["elbo"], 50.0)))
    model.train(was_training)
    return out


class NoSpecialTokens:
    """Pipeline guidance hook that only forbids special tokens ([PAD], [CLS], ...) in samples."""

    def __init__(self, token_ids: list[int]):
        self.token_ids = torch.tensor(token_ids, dtype=torch.long)

    def __call__(
        self, logits, sample, *, editable, step, num_steps, generator, attention_mask
    ) -> torch.Tensor:
        ids = self.token_ids.to(logits.device)
        return logits.index_fill(-1, ids, torch.finfo(logits.dtype).min)


@torch.no_grad()
def draw_samples(model, tokenizer, *, num_samples, length, generator, autocast) -> dict:
    """Unconditional and prompted samples: `MaskedDiffusionPipeline`, MDLM order, one step per
    token (at step t -> s each masked token is revealed with probability (t - s) / t)."""
    model.eval()
    scheduler = MaskedDiffusionScheduler(mask_token_id=tokenizer.mask_token_id)
    pipe = MaskedDiffusionPipeline(model=model, scheduler=scheduler, tokenizer=tokenizer)
    pipe.set_progress_bar_config(disable=True)
    hook = NoSpecialTokens(tokenizer.all_special_ids)
    mask_id = tokenizer.mask_token_id
    with autocast():
        ids = pipe(
            input_ids=torch.full((1, length), mask_id, dtype=torch.long),
            num_samples=num_samples,
            num_inference_steps=length,
            guidance=hook,
            generator=generator,
            output_type="ids",
        ).sequences
    samples = {"unconditional": tokenizer.batch_decode(ids.tolist()), "prompted": []}
    for prompt in PROMPTS[: max(1, num_samples)]:
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"][: length - 1]
        with autocast():
            ids = pipe(
                input_ids=[p_ids + [mask_id] * (length - len(p_ids))],
                num_inference_steps=length,
                guidance=hook,
                generator=generator,
                output_type="ids",
            ).sequences
        samples["prompted"].append({"prompt": prompt, "text": tokenizer.decode(ids[0].tolist())})
    return samples


# --------------------------------------------------------------------------------------------------
# training


def lr_at(progress: float, step: int, args) -> float:
    """Linear warmup over `--warmup-steps`, then cosine from lr to min_lr_ratio*lr over progress.

    `progress` in [0, 1] is the budget used: max(step / max_steps, train_seconds / train_budget),
    so a wall-clock budget gets a full decay (torch's schedulers count steps only).
    """
    if args.warmup_steps and step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    cos = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return args.lr * (args.min_lr_ratio + (1.0 - args.min_lr_ratio) * cos)


def build_model(args, tokenizer):
    from transformers import AutoModelForMaskedLM, ModernBertConfig

    config = ModernBertConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden,
        intermediate_size=args.intermediate or 4 * args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        max_position_embeddings=512,
        global_attn_every_n_layers=1,  # full attention in every layer (no sliding windows)
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        cls_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id,
        mask_token_id=tokenizer.mask_token_id,
        embedding_dropout=args.dropout,
        attention_dropout=args.dropout,
        mlp_dropout=args.dropout,
        tie_word_embeddings=True,
    )
    return AutoModelForMaskedLM.from_config(config, attn_implementation="sdpa")


def build_optimizer(model, args, fused: bool) -> torch.optim.AdamW:
    """AdamW, weight decay on matrices only."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": args.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=args.lr,
        betas=(0.9, 0.98),
        eps=1e-8,
        **({"fused": True} if fused else {}),
    )


@dataclass
class Progress:
    """Everything a checkpoint holds besides the model, the optimizer and the RNG states."""

    step: int = 0
    train_seconds: float = 0.0
    tokens_seen: int = 0
    history: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"elbo": float("inf"), "step": None, "state": None})


class Trainer:
    """The model, its optimizer and data, and the training loop with a step or wall budget."""

    def __init__(self, args: argparse.Namespace, data: Any, device: torch.device):
        self.args, self.device, self.data = args, device, data
        self.on_cuda = device.type == "cuda"
        self.batch_size = args.batch_size or (256 if self.on_cuda else 32)
        eval_windows = args.eval_windows or (None if self.on_cuda else 32)
        # The linear schedule alpha_t = 1 - t of MDLM (the scheduler's default).
        self.scheduler = MaskedDiffusionScheduler(mask_token_id=data.tokenizer.mask_token_id)
        self.sampler = text_corpus.WindowSampler(data.train_ids.to(device), args.seq_len)
        held = text_corpus.held_out_windows(data.held_out_ids, args.seq_len, eval_windows)
        self.held = held.to(device)
        torch.manual_seed(args.seed)
        self.model = build_model(args, data.tokenizer).to(device)
        self.n_params = sum(p.numel() for p in self.model.parameters())
        self.optimizer = build_optimizer(self.model, args, fused=self.on_cuda)
        self.fmodel = torch.compile(self.model) if args.compile else self.model
        self.data_gen = torch.Generator(device=device).manual_seed(args.seed)
        self.progress = Progress()
        self.checkpoint_path = Path(args.output) / "checkpoint.pt"

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.on_cuda)

    def log(self, msg: str) -> None:
        if self.args.quiet:
            print(msg, flush=True)
        else:
            from tqdm.auto import tqdm

            tqdm.write(msg)

    def save_checkpoint(self) -> None:
        rng = {"torch": torch.get_rng_state(), "data": self.data_gen.get_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        p = self.progress
        torch.save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "step": p.step,
                "train_seconds": p.train_seconds,
                "tokens_seen": p.tokens_seen,
                "history": p.history,
                "best": p.best,
                "rng": rng,
                "args": vars(self.args),
            },
            self.checkpoint_path,
        )

    def load_checkpoint(self) -> None:
        path = self.checkpoint_path
        if not path.is_file():
            raise SystemExit(f"--resume: no checkpoint at {path}. Run without --resume first.")
        ckpt = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.progress = Progress(
            ckpt["step"], ckpt["train_seconds"], ckpt["tokens_seen"], ckpt["history"], ckpt["best"]
        )
        torch.set_rng_state(ckpt["rng"]["torch"])
        self.data_gen.set_state(ckpt["rng"]["data"])
        if "cuda" in ckpt["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
        print(f"resumed from {path} at step {self.progress.step}", flush=True)

    def run_eval(self, train_loss: float | None) -> float:
        """Evaluate on the held-out windows, record the row; returns the seconds it took."""
        te, p = time.time(), self.progress
        metrics = evaluate(
            self.fmodel,
            self.held,
            self.scheduler,
            eps=self.args.eps,
            batch_size=self.batch_size,
            autocast=self.autocast,
        )
        p.history.append(
            {
                "step": p.step,
                "tokens_seen": p.tokens_seen,
                "train_seconds": round(p.train_seconds, 1),
                "train_elbo": train_loss,
                **{f"heldout_{k}": round(v, 4) for k, v in metrics.items()},
            }
        )
        if metrics["elbo"] < p.best["elbo"]:
            state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            p.best.update(elbo=metrics["elbo"], step=p.step, state=state)
        self.log(
            f"[eval] step {p.step}: held-out elbo {metrics['elbo']:.3f} nats/token, masked CE "
            f"@.15 {metrics['masked_ce@0.15']:.3f} @.5 {metrics['masked_ce@0.5']:.3f} "
            f"@.9 {metrics['masked_ce@0.9']:.3f} @U {metrics['masked_ce@U']:.3f}"
            + (f"; train elbo {train_loss:.3f}" if train_loss is not None else "")
        )
        return time.time() - te

    def train_step(self, lr: float) -> torch.Tensor:
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        x = self.sampler.sample(self.batch_size, generator=self.data_gen)  # (B, L)
        with self.autocast():
            loss, _ = mdlm_loss(
                self.fmodel, x, self.scheduler, eps=self.args.eps, generator=self.data_gen
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.args.grad_clip)
        self.optimizer.step()
        self.progress.step += 1
        self.progress.tokens_seen += x.numel()
        return loss.detach()

    def train(self, t_start: float) -> tuple[str, float | None]:
        """Train until `--max-steps` or the wall deadline (keeping room for the final eval,
        sampling and saving). Returns `(stop_reason, last_train_loss)`."""
        args, p = self.args, self.progress
        deadline = None if args.max_minutes is None else t_start + 60.0 * args.max_minutes
        eval_cost = self.run_eval(None) if p.step == 0 else 5.0
        # final eval + sampling (forward cost scales with tokens processed) + saving
        eval_tokens = 4 * self.held.numel()
        sample_tokens = (args.num_samples + 4) * min(args.sample_len, 512) ** 2
        reserve = eval_cost * (1.5 + sample_tokens / eval_tokens) + (20.0 if self.on_cuda else 15.0)
        budget = None if deadline is None else deadline - reserve - time.time() + p.train_seconds
        train_budget = None if budget is None else max(1.0, budget)

        def used() -> float:
            steps = p.step / args.max_steps if args.max_steps else 0.0
            return max(steps, p.train_seconds / train_budget if train_budget else 0.0)

        from tqdm.auto import tqdm

        self.model.train()
        run_loss, run_n, last_loss = torch.zeros((), device=self.device), 0, None
        bar = tqdm(total=args.max_steps, initial=p.step, disable=args.quiet, desc="train")
        stop_reason = "max_steps"
        try:
            while True:
                if args.max_steps is not None and p.step >= args.max_steps:
                    break
                if deadline is not None and time.time() >= deadline - reserve:
                    stop_reason = "max_minutes"
                    break
                ts = time.time()
                lr = lr_at(used(), p.step, args)
                run_loss += self.train_step(lr)
                run_n += 1
                if p.step % args.log_every == 0:
                    last_loss = float(run_loss / run_n)  # syncs once per log interval
                    run_loss.zero_()
                    run_n = 0
                    bar.set_postfix(loss=f"{last_loss:.3f}", lr=f"{lr:.2e}", refresh=False)
                    if args.quiet:
                        print(f"step {p.step} train elbo {last_loss:.3f} lr {lr:.2e}", flush=True)
                p.train_seconds += time.time() - ts
                bar.update(1)
                if args.eval_every and p.step % args.eval_every == 0:
                    self.run_eval(last_loss)
                if args.checkpoint_every and p.step % args.checkpoint_every == 0:
                    self.save_checkpoint()
        except KeyboardInterrupt:
            stop_reason = "interrupted"
        bar.close()
        if run_n:
            last_loss = float(run_loss / run_n)
        return stop_reason, last_loss

    def finish(self, last_loss: float | None) -> tuple[int, dict, dict]:
        """Final eval and checkpoint; load the selected weights. Returns
        `(selected_step, selected_row, final_row)` of the history."""
        p = self.progress
        if not p.history or p.history[-1]["step"] != p.step:
            self.run_eval(last_loss)
        if self.args.checkpoint_every:
            self.save_checkpoint()
        selected = p.step
        if self.args.select == "best" and p.best["state"] is not None and p.best["step"] != p.step:
            self.model.load_state_dict(p.best["state"])
            selected = p.best["step"]
        row = next(r for r in p.history if r["step"] == selected)
        return selected, row, p.history[-1]
