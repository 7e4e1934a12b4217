"""One-step smoke run of `examples/search_text.py` (every method on the tiny offline model)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.integration
def test_search_example_runs_every_method(capsys):
    spec = importlib.util.spec_from_file_location(
        "search_text_example", ROOT / "examples" / "search_text.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--length", "4", "--steps", "2", "--particles", "2"])
    out = capsys.readouterr().out
    for method in ("best", "smc", "refine"):
        assert method in out.lower(), out
