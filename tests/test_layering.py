"""The package layers, checked in fresh interpreters: `rewards` (bottom) imports neither
`pipelines` nor `redge_guidance`; `pipelines` does not import `redge_guidance`; importing
`redge_guidance` (and its adapters) imports neither diffusers nor transformers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WATCHED = ("rewards", "pipelines", "redge_guidance", "diffusers", "transformers")


def loaded_after(code: str) -> list[str]:
    """Which of `WATCHED` are in `sys.modules` after running `code` in a fresh interpreter."""
    probe = (
        f"import sys, json\n{code}\nprint(json.dumps([m for m in {WATCHED!r} if m in sys.modules]))"
    )
    env = {**os.environ, "PYTHONPATH": ROOT}
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "code, absent",
    [
        (
            "import rewards; rewards.TokenSetReward, rewards.SudokuReward",
            ("pipelines", "redge_guidance"),
        ),
        ("import pipelines; pipelines.MaskedDiffusionPipeline", ("redge_guidance",)),
        (
            "import redge_guidance as r; r.GuidanceConfig, r.RewardGuidance; "
            "import redge_guidance.adapters as a; a.attach; "
            "import redge_guidance.adapters.llada2, redge_guidance.adapters.amused; "
            "import redge_guidance.sudoku.solver",
            ("diffusers", "transformers"),
        ),
    ],
    ids=["rewards", "pipelines", "redge_guidance"],
)
def test_imports_respect_the_layers(code, absent):
    loaded = loaded_after(code)
    assert loaded, "the probe saw no module at all"
    assert not set(absent) & set(loaded), f"{code!r} imported {sorted(set(absent) & set(loaded))}"


def test_the_probe_sees_a_layer_violation():
    # The same probe reports the heavy imports when they happen (so the checks above can fail).
    assert {"pipelines", "diffusers"} <= set(loaded_after("import pipelines"))
