"""`benchmarks/support.py` (the top-k support's quality trade-off) and the cheaper guided SMC
proposal of `benchmarks/scaling.py`: argument checks, the report's arithmetic and its committed
markdown. The real runs load the embedded model, MiniLM and the Sudoku prior (`-m slow`)."""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from _support import load_module, skip_unless_slow_selected

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
RESULTS = BENCH / "results"


@pytest.fixture(scope="module")
def support():
    """`benchmarks/support.py` as a module, `benchmarks/` at the end of `sys.path` (first, its
    rewards.py would shadow the `rewards` package)."""
    sys.path.append(str(BENCH))
    yield load_module(BENCH / "support.py", "bench_support")
    sys.path.remove(str(BENCH))


def test_top_k_values_parse_full_and_integers(support):
    assert support.top_k_value("full") is None and support.top_k_value("None") is None
    assert support.top_k_value("64") == 64
    for bad in ("0", "-3", "sixty", "2.5"):
        with pytest.raises(argparse.ArgumentTypeError, match="integer >= 1 or 'full'"):
            support.top_k_value(bad)


def test_defaults_are_the_issue_grid(support):
    args = support.parse_args([])
    assert args.top_k == [16, 64, 256, None] and args.sudoku_top_k == [2, 3, 5, None]
    assert args.estimators == ["redge", "straight_through"] and args.seeds == [0, 1, 2]
    assert args.out == RESULTS


def test_bad_arguments_name_the_flag(support, capsys):
    with pytest.raises(SystemExit):
        support.parse_args(["--inner-steps", "0"])
    assert "--inner-steps must be >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        support.parse_args(["--top-k", "0"])
    assert "integer >= 1 or 'full'" in capsys.readouterr().err


def _cell(target, method, k, seed, vader, ppl):
    return dict(
        target=target,
        method=method,
        top_k=k,
        seed=seed,
        cpu_s=1.0 + seed,
        reward=0.5,
        vader=vader,
        vader_on_target=0.5,
        ppl=ppl,
        pll=-4.0,
        d1=0.5,
        d2=0.9,
    )


def test_text_rows_average_over_seeds_in_order(support):
    cells = {
        "a": _cell("negative", "redge", "full", 0, -0.2, 400.0),
        "b": _cell("negative", "redge", "full", 1, -0.4, 600.0),
        "c": _cell("negative", "redge", "16", 0, -0.1, 200.0),
        "d": _cell("positive", "straight_through", "64", 0, 0.3, 300.0),
        "e": _cell("positive", "unguided", "-", 0, 0.1, 300.0),
        "f": {"puzzles": "tuning", "top_k": "full"},  # a Sudoku cell is not a text row
    }
    rows = support.text_rows(cells)
    order = [(r["target"], r["method"], r["top_k"]) for r in rows]
    assert order == [
        ("positive", "unguided", "-"),
        ("positive", "straight_through", "64"),
        ("negative", "redge", "16"),
        ("negative", "redge", "full"),
    ]
    full = rows[-1]
    assert full["seeds"] == 2 and full["ppl"] == pytest.approx(500.0)
    assert full["vader_se"] == pytest.approx(0.1)  # stdev 0.1414 / sqrt(2)
    assert math.isnan(rows[0]["ppl_se"])  # one seed: no standard error


def test_markdown_signs_vader_toward_the_target(support):
    cells = {
        "a": _cell("negative", "redge", "full", 0, -0.25, 400.0),
        "s": dict(
            puzzles="minimal", top_k="3", n=4, solved=0.75, violations=0.5, cpu_s_per_puzzle=0.9
        ),
    }
    data = dict(
        command="python benchmarks/support.py",
        machine=dict(processor="cpu", cpu_count=2, torch="2", load_average=[1.0, 1.0, 1.0]),
        settings=support.settings_of(support.parse_args([])),
        cells=cells,
    )
    md = support.markdown(data)
    assert "| negative | redge | full | 0.50 | 0.25 | 0.50 | 400.0 |" in md
    assert "| minimal | 3 | 4 | 75.0% | 0.50 | 0.900 |" in md


def test_committed_markdown_is_what_the_script_renders(support, tmp_path):
    shutil.copy(RESULTS / "support.json", tmp_path / "support.json")
    support.main(["--report-only", "--out", str(tmp_path)])
    assert (tmp_path / "support.md").read_text() == (RESULTS / "support.md").read_text()


def test_the_lite_proposal_is_a_valid_cheaper_guidance(support):
    import _scaling_methods as scaling

    from redge_guidance import GuidanceConfig

    lite = GuidanceConfig(lr=scaling.GUIDE_LR, kl_weight=scaling.LAMBDA, **scaling.LITE_GUIDANCE)
    assert lite.top_k == 64 and lite.n_opt_steps == 1
    guided = [i for i in range(4) if lite.is_guided_step(i, 4)]
    assert guided == [0, 2]  # half of the scaling benchmark's 4 denoising steps
    assert "smc_guided_lite" in scaling.METHODS and scaling.KNOB["smc_guided_lite"] == "K"


@pytest.mark.slow
def test_support_tiny_run(request, tmp_path):  # loads the text model, MiniLM, the prior: ~1 min
    skip_unless_slow_selected(request)
    cmd = [sys.executable, str(BENCH / "support.py"), "--tiny", "--out", str(tmp_path)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    cells = json.loads((tmp_path / "support.json").read_text())["cells"]
    assert {c.get("method") for c in cells.values()} == {
        "unguided",
        "truncated",
        "redge",
        "straight_through",
        None,
    }
    sudoku = [c for c in cells.values() if "puzzles" in c]
    assert {(c["puzzles"], c["top_k"]) for c in sudoku} == {
        (s, k) for s in ("tuning", "minimal") for k in ("3", "full")
    }
