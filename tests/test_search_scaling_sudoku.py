"""`benchmarks/scaling_sudoku.py`: budget matching, the report, and the committed results."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
RESULTS = BENCH / "results"


@pytest.fixture(scope="module")
def script():
    sys.path.append(str(BENCH))
    spec = importlib.util.spec_from_file_location(
        "bench_scaling_sudoku", BENCH / "scaling_sudoku.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.path.remove(str(BENCH))


def test_help_and_bad_flags(script, capsys):
    with pytest.raises(SystemExit) as info:
        script.parse_args(["--help"])
    assert info.value.code == 0 and "usage:" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        script.parse_args(["--budgets", "0.5"])
    assert info.value.code == 2 and "--budgets" in capsys.readouterr().err


def test_setting_for_is_the_smallest_that_reaches_the_budget(script):
    cal = {"smc": [[1, 0.3], [2, 0.6]], "refine": [[0, 0.45], [1, 0.75]]}
    assert script.setting_for(cal, "smc", 0.2) == 1  # even the smallest costs more
    assert script.setting_for(cal, "smc", 0.3) == 1
    assert script.setting_for(cal, "smc", 1.2) == 4  # 0.3 + 3 * 0.3 = 1.2 reaches it exactly
    assert script.setting_for(cal, "smc", 1.21) == 5
    assert script.setting_for(cal, "refine", 4.8) == 15  # 0.45 + 14.5 * 0.3 -> 15 rounds
    flat = {"smc": [[1, 0.3], [2, 0.3]]}  # a calibration without a slope still terminates
    assert script.setting_for(flat, "smc", 0.31) > 1


def test_verdict_names_the_best_other_method(script):
    rows = [
        {"method": "guided_smc", "budget": 4.0, "solved": (50.0, 1.0)},
        {"method": "smc", "budget": 4.0, "solved": (60.0, 1.0)},
        {"method": "unguided", "budget": 4.0, "solved": (90.0, 1.0)},  # not a 4x method
    ]
    (line,) = script.verdict(rows, [4.0])
    assert "trails" in line and "SMC (model proposals), 60.0%" in line and "-10.0" in line


@pytest.mark.skipif(not (RESULTS / "scaling_sudoku.json").is_file(), reason="no results yet")
def test_committed_markdown_is_what_the_script_renders(script):
    result = json.loads((RESULTS / "scaling_sudoku.json").read_text())
    assert script.render(result) == (RESULTS / "scaling_sudoku.md").read_text()
