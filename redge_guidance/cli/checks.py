"""Checks every sub-command runs before loading a model: output paths, devices, quietness.

An input that is wrong on its own (a read-only folder, `--device cuda` without CUDA) is refused
with a one-line `UsageError` (exit status 2) before any weight is loaded, so a bad command costs
no time and writes nothing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from .io import UsageError

__all__ = [
    "DEBUG_ENV",
    "add_run_flags",
    "check_output_path",
    "debug_enabled",
    "has_content",
    "quiet_libraries",
    "resolve_device",
]

#: Set to 1 for full tracebacks instead of one-line errors (like `--debug`).
DEBUG_ENV = "REDGE_GUIDANCE_DEBUG"


def add_run_flags(group: Any, *, quiet_help: str) -> None:
    """`--quiet` and `--debug`, shared by the sub-commands that run models."""
    group.add_argument("--quiet", action="store_true", help=quiet_help)
    group.add_argument(
        "--debug",
        action="store_true",
        help=f"full tracebacks instead of one-line errors (or set {DEBUG_ENV}=1)",
    )


def debug_enabled(args: Any = None) -> bool:
    """`--debug` given, or `REDGE_GUIDANCE_DEBUG` set to a true value."""
    if args is not None and getattr(args, "debug", False):
        return True
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def has_content(path: Path) -> bool:
    """An existing, non-empty file (an empty one holds nothing a rerun could lose)."""
    try:
        return path.is_file() and path.stat().st_size > 0
    except OSError:
        return False


def check_output_path(text: str, *, flag: str = "--output", example: str = "out.jsonl") -> Path:
    """Refuse an output path that cannot be written, before any work.

    A folder, a path under a file, a read-only folder or a read-only existing file each raise a
    `UsageError` naming `flag`. Missing parent folders are fine (created on the first write).
    """
    path = Path(text)
    if text.endswith(("/", os.sep)) or path.is_dir():
        raise UsageError(
            f"`{flag}` {text!r} is a folder; pass a file path such as "
            f"{os.path.join(text, example)!r}."
        )
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the nearest existing ancestor (a missing one is created)
    if not folder.is_dir():
        raise UsageError(
            f"`{flag}` {text!r}: {str(folder)!r} is a file, not a folder. Choose a path in a "
            "folder, or move that file away."
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(
            f"`{flag}` {text!r}: folder {str(folder)!r} is not writable (permission denied). "
            "Choose a writable folder."
        )
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(
            f"`{flag}` {text!r} exists and is read-only (permission denied). Choose another "
            "path, or make it writable."
        )
    return path


def resolve_device(spec: str, state: Any = None):
    """`torch.device` for `--device` (auto, cpu, cuda, cuda:N, mps); `UsageError` when it does
    not exist here. `state`: accelerate's `PartialState` under `accelerate launch`."""
    import torch

    if spec == "auto":
        if state is not None:
            return state.device
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError):
        raise UsageError(
            f"`--device` {spec!r} is not a device; use auto, cpu, cuda, cuda:0 or mps."
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(
                f"`--device` {spec!r} but CUDA is not available here; use `--device cpu`."
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(
                f"`--device` {spec!r} but this machine has {torch.cuda.device_count()} CUDA "
                "device(s); use `--device cuda:0`."
            )
        if device.index is None and state is not None:
            device = state.device
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"`--device` {spec!r} but MPS is not available here; use `--device cpu`.")
    return device


def quiet_libraries(quiet: bool) -> None:
    """Library warnings to errors only; with `quiet`, every progress bar off (weight loading
    included: transformers, diffusers, huggingface_hub, datasets)."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    dlog.set_verbosity_error()
    if not quiet:
        return
    dlog.disable_progress_bar()
    try:
        from huggingface_hub.utils import disable_progress_bars
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        pass
    else:
        disable_progress_bars()
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()
