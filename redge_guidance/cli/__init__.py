"""`redge-guidance`: steer masked diffusion text generation toward a reward from the shell.

    redge-guidance generate                      # embedded Shakespeare model, sentiment:positive
    redge-guidance generate --prompt "ROMEO:" --reward lexicon:vader --output out.jsonl
    redge-guidance env                           # versions and devices, for bug reports

Sub-commands register themselves from their modules (`generate`, `env`). Everything heavy
(torch, transformers, datasets, accelerate) is imported inside the sub-command, so `--help` is
fast. Bad input exits with code 2 and one line on stderr, before any model is loaded; a failure
during the run with code 1 and one line (`--debug` or `REDGE_GUIDANCE_DEBUG=1`: the traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import env as _env
from . import generate as _generate
from . import sudoku as _sudoku
from .checks import debug_enabled
from .generate import RunFailure
from .io import UsageError

__all__ = ["main", "build_parser", "format_reference", "UsageError"]

PROG = "redge-guidance"
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of help texts that have them (tables); wraps the others."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        if "\n" in text:
            return text.splitlines()
        return super()._split_lines(text, width)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) and no option abbreviations."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # noqa: D102 - argparse API
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full `redge-guidance` argument parser (sub-commands included)."""
    from .. import __version__

    parser = _Parser(
        prog=PROG,
        description="Reward guidance for masked discrete diffusion models (ReDGE relaxations).",
        epilog="Run `redge-guidance generate --help` for the main command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in (_generate, _sudoku, _env):
        module.add_parser(sub)
    return parser


def format_reference(width: int = 100) -> str:
    """The `--help` of every command as markdown (the reference section of docs/cli.md)."""
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)  # argparse wraps to $COLUMNS
    try:
        parser = build_parser()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parts = [f"### `{PROG}`\n\n```text\n{parser.format_help().rstrip()}\n```"]
        for name, command in sub.choices.items():
            parts.append(f"### `{PROG} {name}`\n\n```text\n{command.format_help().rstrip()}\n```")
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous
    return "\n\n".join(parts) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `redge-guidance` console script; returns the exit code.

    Args:
        argv (`Sequence[str]`, *optional*): arguments without the program name; `sys.argv[1:]`
            by default.

    Returns:
        `int`: 0 on success; 1 when the run failed after its checks (one line on stderr; the
        output written so far is complete, rerun with `--resume`) or, for `sudoku`, when some
        puzzle line was bad; 2 on bad input (one line on stderr, before any model is loaded,
        nothing written); 130 when interrupted (rerun with `--resume`). `--debug` or
        `REDGE_GUIDANCE_DEBUG=1` shows tracebacks instead of one-line errors.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as done:  # --help, --version, or a one-line argparse error (code 2)
        return int(done.code or 0) if not isinstance(done.code, str) else EXIT_USAGE
    if getattr(args, "run", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    speaks = os.environ.get("RANK", "0") == "0"  # under accelerate, one process says it
    try:
        return int(args.run(args) or 0)
    except UsageError as err:
        if debug_enabled(args):
            raise
        if speaks:
            print(f"{PROG} {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(
            f"{PROG} {args.command}: interrupted; the rows written so far are complete, rerun the "
            "same command with `--resume` to finish.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except Exception as err:
        if debug_enabled(args):
            raise
        if speaks:
            text = " ".join(str(err).split())
            if not isinstance(err, RunFailure):
                text = f"{type(err).__name__}: {text} (`--debug` shows the traceback)"
            print(f"{PROG} {args.command}: error: {text}", file=sys.stderr)
        return EXIT_FAILURE
