"""Train the Sudoku masked-diffusion prior (MDLM objective) shipped with redge-guidance.

The model reads `[81 clue cells] [SEP] [81 solution cells]` (see
`redge_guidance/sudoku/layout.py`); clue cells, the separator and given solution cells are never
masked. Grids come from a seeded backtracking generator and are augmented on the fly with
random Sudoku symmetries; clues are random subsets of the cells, or (`--minimal-fraction`) the
clues of *minimal* puzzles made from the training grids, so the model also learns the hardest
clue sets the generator makes. `--init-from` fine-tunes a saved prior instead of starting afresh.

The maths is the library's: `MaskedDiffusionScheduler.add_noise` masks the training batches,
`MaskedDiffusionScheduler.elbo_weight` weights the cross-entropy (MDLM's continuous-time ELBO,
`1/t` for the linear schedule), and the validation puzzles are decoded by
`MaskedDiffusionPipeline` around the solver's digit-only denoiser.

Seeded, resumable (`--resume` continues from `OUTPUT/checkpoint.pt`), bounded by
`--max-minutes`, with a progress bar (`--quiet` turns it off). The final model is written in
Hugging Face layout (config, safetensors, tokenizer) with `training_record.json`.

    python examples/train_sudoku_prior.py --output runs/sudoku --max-minutes 30
    python examples/train_sudoku_prior.py --smoke   # tiny model, 2 steps, temporary folder
    # fine-tune the shipped prior, half of each batch on minimal puzzles (a GPU recipe)
    python examples/train_sudoku_prior.py --output runs/sudoku_ft --max-minutes 8 \
        --init-from redge_guidance/assets/sudoku_prior --lr 3e-4 --warmup 100 \
        --n-train-grids 20000 --minimal-pool 4000 --workers 16 --minimal-fraction 0.5 \
        --eval-minimal 64
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines import MaskedDiffusionPipeline, MaskedDiffusionScheduler  # noqa: E402
from redge_guidance.sudoku import data as sd  # noqa: E402
from redge_guidance.sudoku import layout as sl  # noqa: E402
from redge_guidance.sudoku.prior import DigitDenoiser  # noqa: E402

# The forward process of the training batches (linear schedule: a token is masked w.p. t).
SCHEDULER = MaskedDiffusionScheduler(mask_token_id=sl.MASK_ID, schedule="linear")

# `--smoke`: a tiny model and two steps, to check that the script runs end to end.
SMOKE = {
    "max_steps": 2,
    "max_minutes": 1e6,  # step-bounded: the LR schedule does not depend on wall time
    "batch_size": 4,
    "warmup": 1,
    "hidden": 16,
    "layers": 1,
    "heads": 2,
    "intermediate": 32,
    "n_train_grids": 8,
    "eval_puzzles": 2,
    "eval_every": 1,
    "checkpoint_every": 1,
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", default=None, help="output folder (model + checkpoint + record)")
    p.add_argument("--max-minutes", type=float, default=30.0, help="wall-clock budget")
    p.add_argument("--max-steps", type=int, default=1_000_000)
    p.add_argument("--batch-size", type=int, default=None, help="default 512 on CUDA, 64 on CPU")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--intermediate", type=int, default=512)
    p.add_argument("--n-train-grids", type=int, default=2000, help="base grids before augmentation")
    p.add_argument("--min-clues", type=int, default=17)
    p.add_argument("--max-clues", type=int, default=50)
    p.add_argument(
        "--minimal-pool",
        type=int,
        default=0,
        help="minimal puzzles made from the training grids (every clue needed; 21-27 clues); "
        "augmented with the same symmetry as their solution",
    )
    p.add_argument(
        "--minimal-fraction",
        type=float,
        default=0.0,
        help="share of each batch whose clues are a minimal puzzle instead of a random subset",
    )
    p.add_argument(
        "--init-from",
        default=None,
        help="start from this saved model folder (e.g. redge_guidance/assets/sudoku_prior): "
        "fine-tuning; its config replaces --hidden/--layers/--heads/--intermediate",
    )
    p.add_argument(
        "--eval-minimal",
        type=int,
        default=0,
        help="also validate on this many minimal puzzles from the validation grids",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--workers", type=int, default=1, help="processes making the minimal pool")
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--eval-puzzles", type=int, default=64, help="unique validation puzzles")
    p.add_argument("--checkpoint-every", type=int, default=1000)
    p.add_argument("--save-dtype", choices=["float16", "float32"], default="float16")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--quiet", action="store_true")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="tiny model, 2 steps, a temporary output folder unless --output is given",
    )
    args = p.parse_args(argv)
    if args.smoke:
        for name, value in SMOKE.items():
            if getattr(args, name) == p.get_default(name):
                setattr(args, name, value)
        if args.output is None:
            args.output = tempfile.mkdtemp(prefix="sudoku_prior_smoke_")
    if args.output is None:
        p.error("--output is required (or --smoke for a run in a temporary folder)")
    if not 0.0 <= args.minimal_fraction <= 1.0:
        p.error(f"--minimal-fraction must be in [0, 1], got {args.minimal_fraction}")
    if args.minimal_fraction > 0 and args.minimal_pool < 1:
        p.error(
            f"--minimal-fraction {args.minimal_fraction} needs minimal puzzles to draw from: "
            "pass --minimal-pool N (e.g. 2000)"
        )
    if args.init_from is not None and not (Path(args.init_from) / "config.json").is_file():
        p.error(f"--init-from {args.init_from!r} is not a saved model folder (no config.json)")
    return args


def build_model(args):
    from transformers import ModernBertConfig, ModernBertForMaskedLM

    if args.init_from is not None:  # fine-tuning: the saved model's architecture and weights
        model = ModernBertForMaskedLM.from_pretrained(args.init_from, dtype=torch.float32)
        model.config.mask_token_id = sl.MASK_ID
        return model

    config = ModernBertConfig(
        vocab_size=sl.VOCAB_SIZE,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        max_position_embeddings=256,
        layer_types=["full_attention"] * args.layers,  # transformers >= 5
        global_attn_every_n_layers=1,  # transformers 4.x spelling of the same
        pad_token_id=sl.PAD_ID,
        bos_token_id=sl.CLS_ID,
        eos_token_id=sl.SEP_ID,
        cls_token_id=sl.CLS_ID,
        sep_token_id=sl.SEP_ID,
    )
    config.mask_token_id = sl.MASK_ID
    return ModernBertForMaskedLM(config)


def make_batch(grids, B, args, gen, device, minimal=None):
    """Clean sequences, fixed mask and noised input for one MDLM training batch.

    `minimal`: optional `(puzzles, solutions)` tensors of minimal puzzles; a share
    `args.minimal_fraction` of the batch takes its clues from them (puzzle and solution under the
    same random symmetry, which keeps a puzzle minimal), the rest from random clue subsets."""
    idx = torch.randint(len(grids), (B,), generator=gen, device=device)
    sol = sd.augment_grids(grids[idx], generator=gen)
    k = torch.randint(args.min_clues, args.max_clues + 1, (B, 1), generator=gen, device=device)
    rank = torch.rand(B, 81, generator=gen, device=device).argsort(1).argsort(1)
    puzzles = torch.where(rank < k, sol, torch.zeros_like(sol))
    n_min = round(B * args.minimal_fraction) if minimal is not None else 0
    if n_min:
        pick = torch.randint(len(minimal[0]), (n_min,), generator=gen, device=device)
        state = gen.get_state()  # the same draws give the same symmetry to puzzle and solution
        sol[:n_min] = sd.augment_grids(minimal[1][pick], generator=gen)
        gen.set_state(state)
        puzzles[:n_min] = sd.augment_grids(minimal[0][pick], generator=gen)
    clean = sl.encode_pairs(puzzles, sol)
    fixed = sl.fixed_positions(puzzles)
    # stratified t ~ U(eps, 1): low-variance MDLM estimate
    u = (torch.arange(B, device=device) + torch.rand(B, generator=gen, device=device)) / B
    t = (1e-3 + (1 - 1e-3) * u)[torch.randperm(B, generator=gen, device=device)]
    noisy = SCHEDULER.add_noise(clean, t, fixed_mask=fixed, generator=gen)
    masked = noisy == sl.MASK_ID  # clean sequences hold no mask token
    return clean, noisy, masked, fixed, t


def mdlm_loss(model, clean, noisy, masked, fixed, t):
    logits = model(input_ids=noisy).logits.float()
    ce = F.cross_entropy(logits.transpose(1, 2), clean, reduction="none")  # (B, L)
    weight = masked.float() * SCHEDULER.elbo_weight(t)[:, None].float()
    n_free = (~fixed).sum().clamp(min=1)
    return (ce * weight).sum() / n_free, (ce * masked).sum() / masked.sum().clamp(min=1)


@torch.no_grad()
def sample(model, puzzles, steps, gen, unmasking="confidence"):
    """Unguided argmax decoding of the digit cells with the library's pipeline: `confidence`
    commits the most confident cells first (MaskGIT), `random` is MDLM."""
    denoiser = DigitDenoiser(model).eval()
    pipe = MaskedDiffusionPipeline.from_model(
        denoiser, mask_token_id=sl.MASK_ID, unmasking=unmasking, decode="argmax"
    )
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        input_ids=sl.encode_puzzles(puzzles),
        fixed_mask=sl.fixed_positions(puzzles),
        num_inference_steps=steps,
        generator=gen,
        output_type="ids",
    )
    return sl.decode_solutions(out.sequences)


def evaluate(model, val_pairs, device, gen, val_minimal=()):
    model.eval()
    out = _evaluate(model, val_pairs, device, gen, (("confidence", 81), ("random", 20)))
    if val_minimal:
        out["minimal_confidence"] = _evaluate(
            model, val_minimal, device, gen, (("confidence", 81),)
        )["confidence"]
    model.train()
    return out


def _evaluate(model, val_pairs, device, gen, settings):
    puzzles = torch.tensor([p for p, _ in val_pairs], device=device)
    sols = torch.tensor([s for _, s in val_pairs], device=device)
    out = {}
    for unmasking, steps in settings:
        pred = sample(model, puzzles, steps, gen, unmasking)
        blank = puzzles == 0
        viol = torch.tensor([sd.violations(g.tolist()) for g in pred.cpu()], dtype=torch.float)
        out[unmasking] = {
            "solved": float((pred == sols).all(1).float().mean()),
            "violations": float(viol.mean()),
            "cell_accuracy": float(((pred == sols) & blank).sum() / blank.sum()),
        }
    return out


def _minimal_puzzle(item):
    seed, grid = item
    return sd.generate_puzzle(grid, 17, random.Random(seed)), grid


def minimal_pool(grids, args, out, device):
    """`(puzzles, solutions)` of minimal puzzles made from `grids` (seeded per grid, in
    `--workers` processes: ~0.2 s a puzzle in Python), cached in `out` for reruns and resumes."""
    if not grids:
        return None
    cache = out / "minimal_pool.pt"
    key = {"n": len(grids), "seed": args.seed, "n_train_grids": args.n_train_grids}
    if cache.exists():
        saved = torch.load(cache, weights_only=False)
        if saved["key"] == key:
            return saved["puzzles"].to(device), saved["solutions"].to(device)
    from tqdm.auto import tqdm

    items = [(args.seed * 1_000_003 + i, g) for i, g in enumerate(grids)]
    bar = dict(total=len(items), desc="minimal puzzles", disable=args.quiet)
    if args.workers > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
            pairs = list(tqdm(pool.imap(_minimal_puzzle, items, chunksize=16), **bar))
    else:
        pairs = [_minimal_puzzle(item) for item in tqdm(items, **bar)]
    puzzles, solutions = (torch.tensor(x) for x in zip(*pairs, strict=True))
    torch.save({"key": key, "puzzles": puzzles, "solutions": solutions}, cache)
    return puzzles.to(device), solutions.to(device)


def lr_at(step, args, total):
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    frac = min(1.0, (step - args.warmup) / max(1, total - args.warmup))
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def main(argv=None):
    args = parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for the training record
    torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    B = args.batch_size or (512 if device.type == "cuda" else 64)
    torch.backends.cuda.matmul.allow_tf32 = True
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"

    random.seed(args.seed)
    torch.manual_seed(args.seed)
    splits = sd.make_splits(args.n_train_grids, args.eval_puzzles, 0, seed=args.seed)
    grids = torch.tensor(splits["train"], device=device)
    rng = random.Random(args.seed + 1)
    val_pairs = [(sd.generate_puzzle(g, rng.randint(26, 38), rng), g) for g in splits["validation"]]
    # minimal puzzles (greedy removal to 17 stops where every clue is needed)
    val_minimal = [
        (sd.generate_puzzle(g, 17, rng), g) for g in splits["validation"][: args.eval_minimal]
    ]
    minimal = minimal_pool(splits["train"][: args.minimal_pool], args, out, device)
    model = build_model(args).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "norm" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "norm" not in n)]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": args.weight_decay},
            {"params": no_decay, "weight_decay": 0},
        ],
        lr=args.lr,
        betas=(0.9, 0.98),
    )
    gen = torch.Generator(device=device).manual_seed(args.seed)
    step, history, elapsed_before = 0, [], 0.0
    if args.resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        gen.set_state(ck["generator"].cpu() if device.type == "cpu" else ck["generator"])
        step, history, elapsed_before = ck["step"], ck["history"], ck["elapsed"]
        print(f"resumed from step {step}", file=sys.stderr)
    fwd = torch.compile(model) if args.compile else model
    start = time.time()
    budget_s = args.max_minutes * 60 - elapsed_before
    use_amp = device.type == "cuda"
    from tqdm.auto import tqdm

    bar = tqdm(total=None, disable=args.quiet, desc="train sudoku prior", initial=step)
    model.train()
    run_loss = None
    t_est = None if args.max_minutes < 1e6 else args.max_steps
    step0 = step
    while step < args.max_steps:
        now = time.time() - start
        if now > budget_s:
            break
        if t_est is None and now > 20:  # the cosine decay ends when the time budget does
            rate = (step - step0) / now
            t_est = min(args.max_steps, int(step + rate * (budget_s - now)))
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args, t_est or args.max_steps)
        clean, noisy, masked, fixed, t = make_batch(grids, B, args, gen, device, minimal)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss, ce = mdlm_loss(fwd, clean, noisy, masked, fixed, t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        bar.update(1)
        if step % 10 == 0:  # reading the loss syncs the GPU: not every step
            lv = float(loss.detach())
            run_loss = lv if run_loss is None else 0.9 * run_loss + 0.1 * lv
            bar.set_postfix(loss=f"{run_loss:.3f}", ce=f"{float(ce):.3f}")
        if step % args.eval_every == 0:
            ev = evaluate(model, val_pairs, device, gen, val_minimal)
            history.append(
                {
                    "step": step,
                    "loss": run_loss,
                    "eval": ev,
                    "minutes": (elapsed_before + time.time() - start) / 60,
                }
            )
            print(json.dumps(history[-1]), file=sys.stderr, flush=True)
        if step % args.checkpoint_every == 0:
            save_checkpoint(
                ckpt_path, model, opt, gen, step, history, elapsed_before + time.time() - start
            )
            save_final(
                out,
                model,
                args,
                step,
                history,
                elapsed_before + time.time() - start,
                n_params,
                B,
                device,
                final_eval=None,
            )
    bar.close()
    elapsed = elapsed_before + time.time() - start
    save_checkpoint(ckpt_path, model, opt, gen, step, history, elapsed)
    final_eval = evaluate(model, val_pairs, device, gen, val_minimal)
    print(json.dumps({"step": step, "final_eval": final_eval}), file=sys.stderr)
    save_final(out, model, args, step, history, elapsed, n_params, B, device, final_eval)
    print(f"wrote {out}", file=sys.stderr)
    return out


def save_checkpoint(path, model, opt, gen, step, history, elapsed):
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "generator": gen.get_state(),
            "step": step,
            "history": history,
            "elapsed": elapsed,
        },
        tmp,
    )
    os.replace(tmp, path)


def save_final(out, model, args, step, history, elapsed, n_params, B, device, final_eval):
    dtype = torch.float16 if args.save_dtype == "float16" else torch.float32
    state_model = build_model(args)
    state_model.load_state_dict(model.state_dict())
    state_model.to(dtype).save_pretrained(out)
    sl.build_tokenizer().save_pretrained(out)
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = None
    import transformers

    record = {
        "command": " ".join(["python", "examples/train_sudoku_prior.py", *args.argv]),
        "git_commit": commit,
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "seed": args.seed,
        "steps": step,
        "batch_size": B,
        "sequences_seen": step * B,
        "wall_minutes": round(elapsed / 60, 2),
        "parameters": n_params,
        "saved_dtype": args.save_dtype,
        "args": vars(args),
        "history": history,
        "final_eval": final_eval,
        "eval_protocol": (
            "validation grids disjoint from training grids; unique puzzles with 26-38 clues; "
            "MaskedDiffusionPipeline, digits only, argmax decode: 'confidence' = 81 steps "
            "committing the most confident cell(s) first, 'random' = 20 MDLM steps; "
            "'minimal_confidence' = the confidence setting on minimal puzzles made from the "
            "validation grids (--eval-minimal)"
        ),
    }
    (out / "training_record.json").write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
