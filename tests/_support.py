"""Scaffolding several test files share: scripts loaded as modules, a run folder's files, the
gate of the slow tests."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest


def load_module(path: Path, name: str) -> ModuleType:
    """The script at `path` (an example, a benchmark) run as a module named `name` and registered
    in `sys.modules` under it (dataclasses look their module up there)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def skip_unless_slow_selected(request: pytest.FixtureRequest) -> None:
    """`slow` tests run only when asked for (`-m slow`), as the marker's description says."""
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("slow: run with -m slow")


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` and its bytes: equal snapshots, nothing created or changed."""
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def read_only_folder(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `path` a folder nobody may write to (mode 0o555). Root writes anywhere, so under root
    the CLI's writability check (`redge_guidance.cli.checks.os.access`) is told so for it: the
    check sees what a user would."""
    path.mkdir()
    path.chmod(0o555)
    if os.geteuid() == 0:
        real = os.access
        monkeypatch.setattr(
            "redge_guidance.cli.checks.os.access",
            lambda p, mode: False if Path(p) == path else real(p, mode),
        )
