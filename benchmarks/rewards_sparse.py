"""Dense `(B, L, V)` inputs against `SparseRows` (k entries per position) for rewards.

At V = 126,464 (LLaDA's vocabulary), B x L = 8 x 128 = 1024 positions and k = 64 entries per
position, it times forward + backward (to the relaxed input: `x` dense, `x.weight` sparse) of

- `embedding H=768`: the embedding stage alone, `x @ W` against `embedding_bag` (a one-layer
  BERT of hidden size 768 holds `W`);
- `classifier`: `SequenceClassifierReward` on a config-built BERT (hidden 256, 2 layers);
- `lexicon`: `LexiconReward` (a dot product per position);
- `causal_lm`: `LanguageModelReward` on a config-built GPT-2 (hidden 256, 2 layers); its
  log-softmax over the vocabulary is the model's own output, so both paths pay for it;

with soft rows (the top-k softmax of random logits, as the guidance hook's relaxed samples on a
top-k support), and checks that both paths give the same scores.

Run from the repository root:

    python benchmarks/rewards_sparse.py           # about 3 minutes on 1 CPU thread
    python benchmarks/rewards_sparse.py --quick   # B x L = 2 x 128, one run

Writes `benchmarks/results/rewards_sparse.json` and `rewards_sparse.md`. Timing: process CPU
seconds (one thread, so other processes barely move them) and wall seconds, min of the runs
after a warm-up. Peak: rise of the resident set size during the call (VmHWM after resetting it
through /proc/self/clear_refs), allocator slack included.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from rewards import (  # noqa: E402
    LanguageModelReward,
    LexiconReward,
    SequenceClassifierReward,
    SparseRows,
)

VOCAB = 126_464  # LLaDA-8B's vocabulary


def _rss_mib(field: str) -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def measure(fn, repeats: int, warmup: int) -> dict:
    """Min CPU / wall seconds of `fn()` over `repeats` runs, and the peak RSS rise (MiB)."""
    for _ in range(warmup):
        fn()
    cpus, walls, peaks = [], [], []
    for _ in range(repeats):
        gc.collect()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS
        except OSError:
            pass
        base = _rss_mib("VmRSS:")
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpus.append(time.process_time() - c0)
        walls.append(time.perf_counter() - w0)
        peaks.append(_rss_mib("VmHWM:") - base)
    return {"cpu_s": min(cpus), "wall_s": min(walls), "peak_mib": max(peaks)}


def rows(B: int, L: int, k: int, seed: int = 0) -> SparseRows:
    """Soft top-k rows: the softmax over the k largest of random logits (float32)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, L, VOCAB, generator=g) * 3
    top = logits.topk(k, dim=-1)
    return SparseRows(top.indices, top.values.softmax(-1), VOCAB)


def build(name: str):
    import transformers

    torch.manual_seed(0)
    if name in ("embedding H=768", "classifier"):
        hidden, layers = (768, 1) if name.startswith("embedding") else (256, 2)
        cfg = transformers.BertConfig(
            vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers,
            num_attention_heads=4, intermediate_size=4 * hidden, num_labels=2,
        )  # fmt: skip
        return SequenceClassifierReward(
            transformers.BertForSequenceClassification(cfg), label=1, prefix_ids=[101]
        )
    if name == "lexicon":
        return LexiconReward(torch.randn(VOCAB, generator=torch.Generator().manual_seed(1)))
    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_embd=256, n_layer=2, n_head=4)
    return LanguageModelReward(transformers.GPT2LMHeadModel(cfg), "causal", prefix_ids=[0])


def run_case(name: str, x: SparseRows, repeats: int, warmup: int) -> list[dict]:
    reward = build(name)
    dense = x.to_dense().requires_grad_()
    sparse = SparseRows(x.index, x.weight.clone().requires_grad_(), VOCAB)
    H = reward.model.get_input_embeddings().weight.shape[1] if name != "lexicon" else 0
    cot = torch.randn(x.shape[0], x.shape[1], H) if H else None

    def step(inp):
        leaf = inp.weight if isinstance(inp, SparseRows) else inp
        if name.startswith("embedding"):
            emb = reward.embed_sparse(inp) if isinstance(inp, SparseRows) else reward.embed(inp)
            torch.autograd.grad((emb * cot).sum(), leaf)
            return None
        scores = reward(inp)
        torch.autograd.grad(scores.sum(), leaf)
        return scores.detach()

    out = []
    if not name.startswith("embedding"):
        same = torch.allclose(step(dense), step(sparse), rtol=1e-4, atol=1e-4)
    else:
        same = None
    for path, inp in (("dense", dense), ("sparse", sparse)):
        res = measure(lambda inp=inp: step(inp), repeats, warmup)
        out.append({"case": name, "path": path, **res, "same_scores": same})
    out[1]["speedup_cpu"] = out[0]["cpu_s"] / max(out[1]["cpu_s"], 1e-9)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="B x L = 2 x 128, one run")
    parser.add_argument("--k", type=int, default=64, help="entries per position")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    B, L = (2, 128) if args.quick else (8, 128)
    repeats, warmup = (1, 0) if args.quick else (3, 1)
    x = rows(B, L, args.k)
    cases = ("embedding H=768", "classifier", "lexicon", "causal_lm")
    results = [r for name in cases for r in run_case(name, x, repeats, warmup)]
    meta = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.platform()}",
        "torch": torch.__version__,
        "threads": args.threads,
        "B": B,
        "L": L,
        "k": args.k,
        "vocab_size": VOCAB,
        "repeats": repeats,
        "load_average": os.getloadavg(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "rewards_sparse_quick" if args.quick else "rewards_sparse"
    (args.out / f"{stem}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    lines = [
        "# Rewards: dense `(B, L, V)` input vs `SparseRows`",
        "",
        f"V = {VOCAB:,}, B x L = {B} x {L}, k = {args.k}; torch {torch.__version__}, "
        f"{args.threads} thread(s); {meta['machine']}; load average at the end "
        f"{', '.join(f'{v:.1f}' for v in meta['load_average'])}.",
        f"Forward + backward to the input; min of {repeats} run(s). Peak: rise of the resident "
        "set size during the call.",
        "",
        "| case | path | CPU s | wall s | peak MiB | dense / sparse (CPU) | same scores |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        speed = f"{r['speedup_cpu']:.1f}x" if "speedup_cpu" in r else ""
        same = "" if r["same_scores"] is None else str(r["same_scores"])
        lines.append(
            f"| {r['case']} | {r['path']} | {r['cpu_s']:.3f} | {r['wall_s']:.3f} | "
            f"{r['peak_mib']:.0f} | {speed} | {same} |"
        )
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
