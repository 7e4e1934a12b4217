"""The README stays true: its test command is CI's, its main job runs, its Python blocks run, its
Sudoku and CLI commands run (the CLI ones with fast settings appended)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
FAST = ["--length", "4", "--steps", "2", "--n-opt-steps", "1", "--threads", "1", "--quiet"]


def blocks(lang: str) -> list[tuple[str, str]]:
    """`(text before the block, code)` for every fenced block of `lang`."""
    out = []
    for m in re.finditer(rf"^```{lang}\n(.*?)^```", README, flags=re.M | re.S):
        out.append((README[: m.start()], m.group(1)))
    return out


def section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def quick_start_commands() -> list[str]:
    cmds = re.findall(r"^```bash\n(.*?)^```", section("Quick start"), flags=re.M | re.S)
    return [c.strip() for c in cmds]


def env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def test_quick_start_is_two_commands_and_the_test_command_is_what_ci_runs():
    cmds = quick_start_commands()
    assert len(cmds) == 2 and all("\n" not in c for c in cmds)
    main_job, test_cmd = cmds
    assert main_job.endswith(".venv/bin/redge-guidance generate")
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1].strip() == test_cmd  # .ci/run runs exactly the README's test command
    assert test_cmd.startswith("python3 -m venv .venv && ")


@pytest.mark.integration
def test_main_job_prints_steered_shakespeare(tmp_path):
    # The quick start's main job, exactly (defaults), through the installed console script.
    script = Path(sys.executable).with_name("redge-guidance")
    assert script.exists(), "install the package (pip install -e .) to get the console script"
    argv = quick_start_commands()[0].split("&& ")[-1].split()
    assert argv == [".venv/bin/redge-guidance", "generate"]
    proc = subprocess.run(
        [str(script), *argv[1:]], cwd=tmp_path, env=env(), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    guided = re.findall(r"^guided:\s+(ROMEO|HAMLET):", proc.stdout, flags=re.M)
    assert guided == ["ROMEO", "HAMLET"]
    assert len(re.findall(r"^unguided:", proc.stdout, flags=re.M)) == 2
    table = dict(re.findall(r"^(unguided|guided)\s+([+-]\d+\.\d+)", proc.stderr, flags=re.M))
    assert float(table["guided"]) > float(table["unguided"])  # steered toward the reward
    assert not list(tmp_path.iterdir())  # stdout mode writes no file


MAIN_JOB_OUTPUT = re.compile(r"(What the main job prints.*?\n\n```text\n)(.*?)(^```)", re.S | re.M)


@pytest.mark.slow
def test_readme_main_job_output_is_what_the_command_prints(tmp_path):
    """The README's main-job output block is exactly what the command prints on this kind of
    machine (CPU torch; other hardware may differ in the last digits, hence a slow test).
    `REDGE_UPDATE_README=1 pytest -m slow -k main_job_output` rewrites the block."""
    script = Path(sys.executable).with_name("redge-guidance")
    proc = subprocess.run(
        [str(script), "generate"], cwd=tmp_path, env=env(), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    match = MAIN_JOB_OUTPUT.search(README)
    assert match, "README lost its main-job output block"
    if os.environ.get("REDGE_UPDATE_README") == "1":
        text = README[: match.start(2)] + proc.stdout + README[match.end(2) :]
        (ROOT / "README.md").write_text(text, encoding="utf-8")
        return
    assert match.group(2) == proc.stdout, (
        "README main-job block is stale; rerun with REDGE_UPDATE_README=1"
    )


@pytest.mark.integration
@pytest.mark.parametrize(
    "index",
    [
        i
        for i, (before, _) in enumerate(blocks("python"))
        if "readme-test: skip" not in before.rsplit("\n\n", 1)[-1]
    ],
)
def test_python_blocks_run(index, tmp_path):
    code = blocks("python")[index][1]
    proc = subprocess.run(
        [sys.executable, "-c", "import torch; torch.set_num_threads(1)\n" + code],
        cwd=tmp_path,
        env={**env(), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_skipped_python_blocks_say_why():
    skipped = [b for b, _ in blocks("python") if "readme-test: skip" in b.rsplit("\n\n", 1)[-1]]
    assert len(skipped) == 1  # the LLaDA2 block: it needs a Hub download
    assert "downloads" in skipped[0].rsplit("\n\n", 1)[-1]


def test_sudoku_command_solves_a_puzzle_file(tmp_path):
    from redge_guidance.sudoku import data as sd

    (cmd,) = re.findall(
        r"^```bash\n(.*?)\n```", section("Sudoku in one command"), flags=re.M | re.S
    )
    argv = shlex.split(cmd)
    assert argv == [
        ".venv/bin/redge-guidance",
        "sudoku",
        "puzzles.txt",
        "--output",
        "solutions.txt",
    ]
    pairs = sd.generate_puzzles(2, seed=5, min_clues=40, max_clues=40)
    (tmp_path / "puzzles.txt").write_text("".join(sd.grid_to_str(p) + "\n" for p, _ in pairs))
    script = Path(sys.executable).with_name("redge-guidance")
    proc = subprocess.run(
        [str(script), *argv[1:], "--quiet"],
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = (tmp_path / "solutions.txt").read_text().split()
    assert lines == [sd.grid_to_str(s) for _, s in pairs]


@pytest.mark.integration
def test_cli_examples_run_with_fast_settings(tmp_path, monkeypatch):
    from redge_guidance.cli import build_parser, main

    (cmd_block,) = re.findall(
        r"^```bash\n(.*?)^```", section("The command line"), flags=re.M | re.S
    )
    lines = [line for line in cmd_block.strip().splitlines() if line]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "prompts.csv").write_text('prompt\n"KING: My lords,"\n')
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "QUEEN: Come,"}\n')
    ran = 0
    for line in lines:
        argv = shlex.split(line)
        if argv[0] == "accelerate":  # the 2-process run is tests/test_cli.py's; here: it parses
            args = argv[argv.index("redge_guidance.cli") + 1 :]
            build_parser().parse_args(args)
            continue
        assert argv[0] == "redge-guidance"
        if argv[1] == "sudoku":
            from redge_guidance.sudoku import data as sd

            pairs = sd.generate_puzzles(2, seed=6, min_clues=40, max_clues=40)
            Path(argv[2]).write_text("".join(sd.grid_to_str(p) + "\n" for p, _ in pairs))
            argv += ["--steps", "4", "--n-opt-steps", "2", "--quiet"]
        assert main(argv[1:] + (FAST if argv[1] == "generate" else [])) == 0, line
        ran += 1
        if "--output" in argv:
            out = tmp_path / argv[argv.index("--output") + 1]
            assert out.exists() and out.read_text().count("\n") >= 1
    assert ran == len(lines) - 1  # every line but the accelerate one ran
