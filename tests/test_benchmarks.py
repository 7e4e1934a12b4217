"""The benchmark scripts' shared helpers (`benchmarks/_common.py`), their rules that decide
published numbers (best-of-N size, seeds), and smoke runs of each script.

`benchmarks/` goes at the end of `sys.path` (first, `benchmarks/rewards.py` would shadow the
`rewards` package), and scripts load from their files under private module names; the tiny runs
go to subprocesses, so their global torch state stays out of this one.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from _support import load_module, skip_unless_slow_selected

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
RESULTS = BENCH / "results"
SCRIPTS = (
    "estimators",
    "guidance_overhead",
    "rewards",
    "sudoku",
    "text_steering",
    "scale",
    "scaling",
    "sudoku_minimal",
)


@pytest.fixture(scope="module")
def bench_path():
    """`benchmarks/` at the end of `sys.path`, so its helper modules import by name."""
    sys.path.append(str(BENCH))
    yield
    sys.path.remove(str(BENCH))


@pytest.fixture
def common(bench_path):
    import _common

    return _common


def load_script(name: str):
    """`benchmarks/NAME.py` as a module (`benchmarks/` must be on `sys.path`)."""
    return load_module(BENCH / f"{name}.py", f"bench_{name}")


def run_script(name: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, str(BENCH / f"{name}.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# ------------------------------------------------------------------------------------ _common


def test_md_table_aligns_and_writes_cells(common):
    lines = common.md_table(["a", "b", "c"], [[1, "x", 2.5], ["-", "y", None]], "lr")
    assert lines == [
        "| a | b | c |",
        "|---|---:|---|",
        "| 1 | x | 2.5 |",
        "| - | y | None |",
    ]


def test_md_table_rejects_unknown_alignment(common):
    with pytest.raises(ValueError, match="`align`.*'c'"):
        common.md_table(["a"], [], "c")


def test_save_and_load_json_round_trip(common, tmp_path):
    path = tmp_path / "sub" / "r.json"
    assert common.load_json(path, {"empty": True}) == {"empty": True}
    common.save_json(path, {"x": [1, 2.5], "y": None})
    assert common.load_json(path) == {"x": [1, 2.5], "y": None}
    assert path.read_text().endswith("\n")
    assert sorted(p.name for p in path.parent.iterdir()) == ["r.json"]  # no temporary left


def test_read_results_names_the_missing_file(common, tmp_path):
    with pytest.raises(SystemExit, match="no results file .*missing.json: run the benchmark"):
        common.read_results(tmp_path / "missing.json")


def test_write_results_writes_json_and_markdown(common, tmp_path, capsys):
    json_path, md_path = common.write_results(tmp_path, "bench", {"rows": [1]}, "# Title\n")
    assert json.loads(json_path.read_text()) == {"rows": [1]}
    assert md_path.read_text() == "# Title\n"
    assert str(json_path) in capsys.readouterr().out


def test_cell_store_saves_every_cell_and_resumes(common, tmp_path):
    path = tmp_path / "cells.json"
    store = common.CellStore(path, {"meta": {"a": 1}})
    assert "k1" not in store and store.data["meta"] == {"a": 1}
    store.put("k1", {"solved": 0.5})
    again = common.CellStore(path)
    assert "k1" in again and again.cells["k1"] == {"solved": 0.5}
    assert again.data["meta"] == {"a": 1}


def test_machine_info_has_the_canonical_keys(common):
    info = common.machine_info()
    for k in ("python", "platform", "processor", "cpu_count", "torch", "torch_threads"):
        assert info[k], k
    assert info["torch"] == torch.__version__
    assert info["torch_threads"] == torch.get_num_threads()
    assert info["device"] == "cpu" and info["device_name"] == "cpu"
    assert "gpu" not in info  # only on CUDA
    assert info["load_average"] is None or len(info["load_average"]) == 3


def test_machine_info_keeps_a_results_file_own_key_names(common):
    info = common.machine_info(keys={"logical_cpus": "cpu_count", "gpu": "gpu", "cpu": "processor"})
    assert list(info) == ["logical_cpus", "cpu"]  # `gpu` left out on a CPU
    assert info["logical_cpus"] == os.cpu_count()
    with pytest.raises(ValueError, match="unknown machine fields \\['nope'\\]"):
        common.machine_info(keys={"x": "nope"})


def test_env_machine_is_the_machine_part_of_env_collect():
    from redge_guidance.cli import env

    host, everything = env.machine(), env.collect()
    assert host.items() <= everything.items()
    assert {"python", "platform", "cpu_count", "torch_threads", "cuda_devices"} <= set(host)


def test_set_threads_and_command_line(common):
    before = torch.get_num_threads()
    try:
        common.set_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="`threads` must be >= 1, got 0"):
        common.set_threads(0)
    assert common.command_line("sudoku", ["--quick"]) == "python benchmarks/sudoku.py --quick"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux /proc only")
def test_rss_bytes_reads_proc(common):
    rss = common.rss_bytes("VmRSS")
    assert isinstance(rss, int) and rss > 2**20
    assert common.rss_bytes("NoSuchField") is None


# ------------------------------------------------------------------------------------ rules


def _sudoku_results(guided_seconds: float, prior_seconds: float) -> dict:
    base = {"n_puzzles": 500, "device": "cpu", "steps": 12, "restarts": 4}
    return {
        "cells": {
            "g": {
                **base,
                "method": "guided",
                "estimator": "straight_through",
                "budget": 20,
                "decode": "argmax",
                "solved": 0.9,
                "seconds": guided_seconds,
            },
            "p": {**base, "method": "prior", "decode": "sample", "seconds": prior_seconds},
        }
    }


@pytest.mark.parametrize(
    ("guided", "prior", "n"),
    [
        (435.76, 308.54, 2),  # the committed 500-puzzle cell: 1.41x (rounding gave N = 1)
        (722.07, 162.21, 5),  # the committed single-pass cell at 100 inner steps (rounding: 4)
        (600.0, 300.0, 2),  # an exact multiple needs no extra sample
        (100.0, 300.0, 1),  # never fewer than one
    ],
)
def test_sudoku_best_of_n_gets_at_least_the_guided_time(bench_path, guided, prior, n):
    sudoku = load_script("sudoku")
    cell = {"budget": 20, "n": 500, "device": "cpu", "steps": 12, "restarts": 4}
    size, extra = sudoku.best_of_n_size(cell, _sudoku_results(guided, prior))
    assert size == n
    assert size * prior >= guided - 1e-6 and (size - 1) * prior < guided
    assert extra["n_rule"] == "reaches"


def test_sudoku_t_1_cells_are_stored_apart(bench_path):
    from _sudoku_report import estimator_label

    sudoku = load_script("sudoku")
    argv = ["--only", "no_prior", "--no-prior-estimators", "straight_through", "redge"]
    default = sudoku.plan(sudoku.parse_args(argv))
    custom = sudoku.plan(sudoku.parse_args([*argv, "--t-1", "0.9"]))
    keys = [sudoku.full_key(c, sudoku.parse_args(argv)) for c in default]
    assert not any("t_1" in k for k in keys)  # keys of the committed cells are unchanged
    redge = next(c for c in custom if c["estimator"] == "redge")
    st = next(c for c in custom if c["estimator"] == "straight_through")
    assert redge["estimator_options"] == {"t_1": 0.9} and st["estimator_options"] == {}
    assert sudoku.full_key(redge, sudoku.parse_args(argv)).endswith("|t_1=0.9")
    assert estimator_label({"estimator": "redge", "estimator_options": {"t_1": 0.9}}) == (
        "redge t_1=0.9"
    )


def test_sudoku_rejects_a_bad_t_1(bench_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_script("sudoku").parse_args(["--t-1", "1.5"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--t-1" in err and "1.5" in err


def test_sudoku_tuning_rows_are_distinct_and_build(bench_path):
    import _sudoku_tuning as tuning

    keys = [tuning.row_key(label, n) for label, n, *_ in tuning.all_rows()]
    assert len(keys) == len(set(keys)) == len(tuning.ROWS) + len(tuning.NO_PRIOR_ROWS)
    config = tuning.guidance({"num_relaxed_samples": 16, "warm_start": 0.5})
    warm = getattr(config, "warm_start", None)
    assert (warm if warm is not None else 1.0 - config.forget) == pytest.approx(0.5)
    assert tuning.guidance(None) is None


def test_text_best_of_n_rounds_never_replay_another_seed(bench_path):
    ts = load_script("text_steering")

    seeds = [0, 1, 2, 100]
    rounds = {s: {ts.bon_round_seed(s, r) for r in range(1, 1000)} for s in seeds}
    for s in seeds:
        assert ts.bon_round_seed(s, 0) == s  # round 0 is the unguided cell
        assert min(rounds[s]) >= ts.SEED_LIMIT
        for t in seeds:
            if t != s:
                assert not rounds[s] & rounds[t]


# ------------------------------------------------------------------------------------ scripts


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_help(bench_path, name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_script(name).parse_args(["--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("name", "json_name", "extra"),
    [
        ("estimators", "estimators", ["--render-only"]),
        ("guidance_overhead", "guidance_overhead", ["--report-only"]),
        ("rewards", "rewards", ["--report-only"]),
        ("rewards", "rewards_cuda", ["--report-only", "--name", "rewards_cuda"]),
        ("sudoku", "sudoku", ["--report-only"]),
        ("text_steering", "text_steering", ["--report-only"]),
        ("scaling", "scaling", ["--report-only"]),  # an older file: the script's own machine keys
    ],
)
def test_committed_markdown_is_what_the_script_renders(
    bench_path, name, json_name, extra, tmp_path, capsys
):
    """The results schema is what the renderer reads: the committed .md is reproduced exactly."""
    shutil.copy(RESULTS / f"{json_name}.json", tmp_path / f"{json_name}.json")
    out = ["--out-dir" if name == "rewards" else "--out", str(tmp_path)]
    load_script(name).main([*extra, *out])
    rendered = (tmp_path / f"{json_name}.md").read_text()
    assert rendered == (RESULTS / f"{json_name}.md").read_text()


@pytest.mark.parametrize(
    ("name", "produced"),
    [
        ("estimators", "estimators"),
        ("guidance_overhead", "guidance_overhead"),
        ("text_steering", "text_steering"),
    ],
)
def test_script_tiny_run(name, produced, tmp_path):
    result = run_script(name, "--tiny", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / f"{produced}.json").read_text())
    assert (tmp_path / f"{produced}.md").read_text().startswith("# ")
    assert data["machine"]["torch"] == torch.__version__


@pytest.mark.slow
def test_rewards_tiny_run(request, tmp_path):  # loads the real MiniLM: ~10 s
    skip_unless_slow_selected(request)
    result = run_script("rewards", "--tiny", "--out-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "rewards.json").read_text())["rows"]
    assert len(rows) == 15 and all(math.isfinite(r["cpu_s_min"]) for r in rows)


@pytest.mark.slow
def test_sudoku_tiny_run(request, tmp_path):  # generates and checks a test set: ~20 s
    skip_unless_slow_selected(request)
    result = run_script("sudoku", "--tiny", "--out", str(tmp_path), timeout=300)
    assert result.returncode == 0, result.stderr
    cells = json.loads((tmp_path / "sudoku.json").read_text())["cells"]
    assert {c["method"] for c in cells.values()} == {"prior", "guided", "best_of_n", "no_prior"}


@pytest.mark.parametrize("name", ["scale", "sudoku_minimal"])
def test_committed_markdown_of_the_newer_scripts_is_what_they_render(bench_path, name):
    result = json.loads((RESULTS / f"{name}.json").read_text())
    assert load_script(name).render(result) == (RESULTS / f"{name}.md").read_text()


def test_scaling_report_states_the_machine_and_load_of_new_runs(bench_path, common):
    """Results recorded through `_common.machine_info` get a "Machine:" sentence with the load;
    the rest of the report is the same as for the older record."""
    old = json.loads((RESULTS / "scaling.json").read_text())
    machine = common.machine_info("cpu")
    machine["load_average"] = [1.5, 2.25, 3.0]
    new = {**old, "machine": machine, "command": common.command_line("scaling", ["--seeds", "0"])}
    new.pop("later_commands")
    scaling = load_script("scaling")
    old_md, new_md = scaling.render(old), scaling.render(new)
    st = old["settings"]
    assert new_md.splitlines()[2].startswith(
        "Command: `python benchmarks/scaling.py --seeds 0`. Machine: "
        f"{machine['processor']}, {machine['cpu_count']} cores (shared; load [1.5, 2.25, 3.0] at "
        f"the last command's start), torch {torch.__version__} on {st['threads']} thread(s). "
        f"{st['prompts']} held-out prompts x {st['samples']} rows, {st['length']} new tokens, "
        f"{st['steps']} denoising steps; unguided batch "
    )
    assert "Machine:" not in old_md
    tail = "; unguided batch"  # from here on the two reports agree
    assert new_md[new_md.index(tail) :] == old_md[old_md.index(tail) :]
