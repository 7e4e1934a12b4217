"""Prompt reading and crash-safe JSONL output for `redge-guidance generate`.

Output rows are appended one whole line per `os.write` on a file opened with `O_APPEND`, and
`fsync`ed after each batch: a process killed at any instant leaves only whole lines (a trailing
partial line can only come from a full disk or a power cut; `repair_trailing_line` drops it).
`--resume` reads the `(prompt_id, sample_id)` keys already written and skips them.

Imports only the standard library at module level (`datasets` is imported when a prompts file is
read), so `redge-guidance --help` stays fast.
"""

from __future__ import annotations

import glob
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "PROMPT_FILE_FORMATS",
    "UsageError",
    "int_at_least",
    "JsonlWriter",
    "LineWriter",
    "iter_rows",
    "merge_shards",
    "read_prompts",
    "read_rows",
    "repair_trailing_line",
    "shard_path",
    "shard_paths",
]

#: File suffix -> `datasets` builder name.
PROMPT_FILE_FORMATS: dict[str, str] = {
    ".txt": "text",
    ".jsonl": "json",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
}
_DEFAULT_COLUMNS = ("prompt", "text")


class UsageError(ValueError):
    """Bad command-line input: the CLI prints the message as one line and exits with code 2."""


def int_at_least(minimum: int):
    """An argparse `type`: an integer >= `minimum` (else a one-line usage error)."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


# --------------------------------------------------------------------------------- prompts


def read_prompts(path: str | os.PathLike[str], column: str | None = None) -> list[str]:
    """Read prompts from a `.txt` (one per non-empty line), `.jsonl`/`.json`, `.csv`/`.tsv` or
    `.parquet` file with `datasets.load_dataset` (offline: local files only).

    Args:
        path: the file.
        column (`str`, *optional*): the column holding the prompts (tables only); defaults to
            "prompt", else "text".

    Returns:
        `list[str]`: the prompts, in file order.

    Raises:
        `UsageError`: missing or unreadable file, unknown suffix, missing column, non-string
            values, or no prompt at all.
    """
    p = Path(path)
    if not p.is_file():
        raise UsageError(
            f"`--prompts` {str(path)!r} is not a file. Pass an existing .txt, .jsonl, .csv or "
            ".parquet file."
        )
    if not os.access(p, os.R_OK):
        raise UsageError(f"`--prompts` {str(path)!r} is not readable (permission denied).")
    suffix = p.suffix.lower()
    builder = PROMPT_FILE_FORMATS.get(suffix)
    if builder is None:
        raise UsageError(
            f"`--prompts` {str(path)!r} has suffix {suffix or '(none)'!r}; supported: "
            f"{', '.join(PROMPT_FILE_FORMATS)}. Rename the file or convert it."
        )
    import datasets

    kwargs: dict[str, Any] = {}
    if suffix == ".tsv":
        kwargs["delimiter"] = "\t"
    was_verbose = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # we report errors ourselves
    datasets.disable_progress_bars()
    try:
        ds = datasets.load_dataset(builder, data_files=str(p), split="train", **kwargs)
    except Exception as err:  # noqa: BLE001 - any parse failure is the user's file
        root: BaseException = err
        while root.__cause__ is not None or root.__context__ is not None:
            root = root.__cause__ or root.__context__  # the parser's own message is the useful one
        msg = " ".join(str(root).split())[:300] or type(root).__name__
        raise UsageError(
            f"`--prompts` {str(path)!r} cannot be read as {builder} ({msg})."
        ) from None
    finally:
        datasets.logging.set_verbosity(was_verbose)
    if builder == "text":
        prompts = [line.strip() for line in ds["text"]]
        prompts = [line for line in prompts if line]
    else:
        prompts = _column_prompts(ds, path, column)
    if not prompts:
        raise UsageError(
            f"`--prompts` {str(path)!r} holds no prompt. Add at least one line or row."
        )
    return list(prompts)


def _column_prompts(ds: Any, path: str | os.PathLike[str], column: str | None) -> list[str]:
    """The prompts of a table: `column`, else the first of "prompt", "text"."""
    columns = list(ds.column_names)
    if column is None:
        column = next((c for c in _DEFAULT_COLUMNS if c in columns), None)
        if column is None:
            raise UsageError(
                f"`--prompts` {str(path)!r} has no 'prompt' or 'text' column (columns: "
                f"{columns}). Pass `--prompt-column NAME`."
            )
    elif column not in columns:
        raise UsageError(
            f"`--prompt-column` {column!r} is not a column of {str(path)!r} (columns: {columns})."
        )
    prompts = ds[column]
    bad = [i for i, v in enumerate(prompts) if not isinstance(v, str)]
    if bad:
        raise UsageError(
            f"`--prompts` {str(path)!r}: column {column!r} holds non-text values (row "
            f'{bad[0]}: {prompts[bad[0]]!r}). Every prompt must be a string ("" for an '
            "unconditional one)."
        )
    return list(prompts)


# --------------------------------------------------------------------------------- JSONL


def shard_path(output: str | os.PathLike[str], index: int, count: int) -> Path:
    """`OUTPUT.shard-{index}-of-{count}.jsonl`: the file process `index` of `count` writes."""
    return Path(f"{os.fspath(output)}.shard-{index}-of-{count}.jsonl")


def shard_paths(output: str | os.PathLike[str]) -> list[Path]:
    """Every shard file of `output` on disk, whatever the process count that wrote it."""
    pattern = glob.escape(os.fspath(output)) + ".shard-*-of-*.jsonl"
    rx = re.compile(re.escape(os.fspath(output)) + r"\.shard-\d+-of-\d+\.jsonl$")
    return sorted(Path(p) for p in glob.glob(pattern) if rx.match(p))


def repair_trailing_line(path: str | os.PathLike[str]) -> int:
    """Truncate a trailing partial line (no final newline) of `path`; return the bytes dropped.

    Only the process that appends to `path` may call this.
    """
    p = Path(path)
    if not p.is_file():
        return 0
    size = p.stat().st_size
    if size == 0:
        return 0
    with open(p, "rb+") as fh:
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return 0
        # Scan back for the last newline (rows are a few kB: read the tail in chunks).
        end = size
        keep = 0
        while end > 0:
            start = max(0, end - 65536)
            fh.seek(start)
            chunk = fh.read(end - start)
            i = chunk.rfind(b"\n")
            if i >= 0:
                keep = start + i + 1
                break
            end = start
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
    return size - keep


def iter_rows(path: str | os.PathLike[str], *, strict: bool = True) -> Iterator[dict[str, Any]]:
    """Rows of a JSONL file, read one line at a time; a trailing partial line is ignored.

    Args:
        path: the file (a missing file gives no rows).
        strict (`bool`, defaults to `True`): raise `UsageError` on a complete line that is not a
            JSON object (a corrupt file); `False` skips such lines.
    """
    p = Path(path)
    if not p.is_file():
        return
    with open(p, "rb") as fh:
        for n, line in enumerate(fh, 1):
            if not line.endswith(b"\n"):
                return  # a partial last line
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                row = None
            if not isinstance(row, dict):
                if strict:
                    raise UsageError(
                        f"Line {n} of {str(p)!r} is not a JSON object; the file was not written "
                        "by this tool or was edited. Move it away, or pass `--overwrite`."
                    )
                continue
            yield row


def read_rows(path: str | os.PathLike[str], *, strict: bool = True) -> list[dict[str, Any]]:
    """Every row of a JSONL file (see :func:`iter_rows`)."""
    return list(iter_rows(path, strict=strict))


class LineWriter:
    """Append-only text writer: one `os.write` per line, `fsync` per `write_lines` call.

    The file (and its missing parent folders) is created by the first line written, so a run
    that fails before its first row leaves no empty file behind.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._fd = -1
        self.lines_written = 0

    def write_lines(self, lines: Iterable[str]) -> None:
        for line in lines:
            if self._fd < 0:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            view = memoryview((line + "\n").encode("utf-8"))
            while view:  # a short write only happens on a full disk or a signal
                n = os.write(self._fd, view)
                view = view[n:]
            self.lines_written += 1
        if self._fd >= 0:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> LineWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class JsonlWriter(LineWriter):
    """:class:`LineWriter` of JSON objects, one per line."""

    def write_rows(self, rows: Iterable[dict[str, Any]]) -> None:
        self.write_lines(json.dumps(row, ensure_ascii=False) for row in rows)


def row_key(row: dict[str, Any]) -> tuple[int, ...]:
    """`(prompt_id, sample_id)`, plus `particle` for the rows of `--keep-particles`."""
    key = (int(row["prompt_id"]), int(row["sample_id"]))
    return key if row.get("particle") is None else (*key, int(row["particle"]))


def merge_shards(output: str | os.PathLike[str], shards: Sequence[str | os.PathLike[str]]) -> int:
    """Merge `output` (if present) and `shards` into `output`, sorted by `(prompt_id, sample_id)`,
    first copy of each key kept; atomic (`os.replace` of a fsynced temporary); then delete the
    shards. Returns the number of rows."""
    out = Path(output)
    rows: dict[tuple[int, ...], dict[str, Any]] = {}
    for source in [out, *map(Path, shards)]:
        for row in read_rows(source, strict=False):
            rows.setdefault(row_key(row), row)
    tmp = out.with_name(out.name + ".merge-tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for key in sorted(rows):
            fh.write(json.dumps(rows[key], ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, out)
    for shard in shards:
        Path(shard).unlink(missing_ok=True)
    return len(rows)
