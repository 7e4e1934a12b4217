"""Batch encode/decode through a fast tokenizer's backend (same output, no per-item overhead)."""

from __future__ import annotations

from typing import Any


def decode_batch(tokenizer: Any, seqs: list[list[int]]) -> list[str]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # fast path: skip transformers' per-item overhead (same output)
        return backend.decode_batch(seqs, skip_special_tokens=False)
    return tokenizer.batch_decode(seqs, clean_up_tokenization_spaces=False)


def encode_batch(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # A tokenizer.json may switch on padding or truncation (sentence-transformers' do);
        # encode with a copy that has neither, leaving the caller's tokenizer untouched.
        if backend.padding is not None or backend.truncation is not None:
            backend = type(backend).from_str(backend.to_str())
            backend.no_padding()
            backend.no_truncation()
        return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]
