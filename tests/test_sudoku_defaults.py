"""The Sudoku solver's defaults have one source, `redge_guidance.sudoku._defaults`: the solver's
two signatures, `default_guidance`, `solve_without_prior`, and the `sudoku` flags with their help
texts read it. The tests compare against that source (and against altered copies of it), not
against literals."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from redge_guidance.cli import build_parser, main, sudoku_flags
from redge_guidance.guidance import GuidanceConfig
from redge_guidance.sudoku import SudokuSolver, default_guidance, solve_without_prior
from redge_guidance.sudoku import data as sd
from redge_guidance.sudoku import solver as solver_module
from redge_guidance.sudoku._defaults import GUIDANCE, NO_PRIOR, SOLVER


def _keyword_defaults(fn) -> dict:
    params = inspect.signature(fn).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def _sudoku_helps() -> dict[str, str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.choices and "sudoku" in a.choices)
    return {a.dest: a.help for a in sub.choices["sudoku"]._actions}


@pytest.mark.parametrize("from_pretrained", [False, True], ids=["init", "from_pretrained"])
def test_solver_signatures_take_every_default_from_the_source(from_pretrained):
    default = _keyword_defaults(SudokuSolver.from_pretrained if from_pretrained else SudokuSolver)
    assert default.pop("order") is None  # the deprecated name of `unmasking`: no value of its own
    if from_pretrained:
        assert default.pop("path") is None  # the shipped prior
        assert default.pop("guidance") == "default"  # `default_guidance()`
    else:
        assert default.pop("guidance") is None  # the prior alone
    assert default == dataclasses.asdict(SOLVER)


def test_a_default_solver_runs_with_the_sources_settings():
    solver = SudokuSolver(None)  # the uniform denoiser: no weights to load
    expected = dataclasses.asdict(SOLVER)
    assert str(solver.device) == expected.pop("device")
    assert {name: solver.settings[name] for name in expected} == expected


def test_default_guidance_and_solve_without_prior_read_the_source():
    assert default_guidance() == GuidanceConfig(**GUIDANCE)
    assert default_guidance(n_opt_steps=3) == GuidanceConfig(**{**GUIDANCE, "n_opt_steps": 3})
    # Its docstring states the values in words: they must be the source's.
    doc = " ".join(default_guidance.__doc__.split())
    assert GUIDANCE["estimator"] == "straight_through" and doc.startswith(
        "The solver's default guidance, chosen by the tuning in docs/sudoku.md. Straight-through"
    )
    g = GUIDANCE
    assert (
        f"{g['n_opt_steps']} Adam steps at lr {g['lr']} per denoising step, KL weight "
        f"{g['kl_weight']}, {g['num_relaxed_samples']} relaxed samples per Adam step" in doc
    )
    default = _keyword_defaults(solve_without_prior)
    assert {name: default[name] for name in ("estimator", "n_steps", "lr")} == dataclasses.asdict(
        NO_PRIOR
    )
    # The source cannot be changed by accident at run time.
    with pytest.raises(TypeError):
        GUIDANCE["lr"] = 1.0  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        SOLVER.restarts = 0  # type: ignore[misc]


def test_sudoku_help_quotes_the_source():
    helps = _sudoku_helps()
    assert f"default {SOLVER.num_inference_steps} " in helps["steps"]
    assert f"(default {GUIDANCE['n_opt_steps']};" in helps["g_n_opt_steps"]
    assert f"with --no-prior (default {NO_PRIOR.n_steps})" in helps["g_n_opt_steps"]
    # One `--estimator` flag serves both modes, so its one stated default must be both's.
    assert GUIDANCE["estimator"] == NO_PRIOR.estimator
    assert f"(default: {GUIDANCE['estimator']})" in helps["g_estimator"]
    # `--temperature 0` (its default) is argmax, which the help calls the solver's.
    assert SOLVER.decode == "argmax" and "default 0 = argmax" in helps["temperature"]
    assert "the most confident first (default) or at random" in helps["unmasking"]
    assert "backtracking at dead ends (default);" in helps["backtrack"]


def test_sudoku_help_and_flags_follow_a_changed_source(monkeypatch):
    """Rebuilt over an altered source, the parser's defaults and help texts change with it."""
    other = dataclasses.replace(
        SOLVER,
        num_inference_steps=7,
        restarts=2,
        unmasking="random",
        search="none",
        pruning="peers",
        max_prior_calls=9,
    )
    monkeypatch.setattr(sudoku_flags, "SOLVER", other)
    monkeypatch.setattr(
        sudoku_flags, "GUIDANCE", {**GUIDANCE, "estimator": "redge", "n_opt_steps": 5}
    )
    monkeypatch.setattr(sudoku_flags, "NO_PRIOR", dataclasses.replace(NO_PRIOR, n_steps=300))
    helps = _sudoku_helps()
    assert "default 7 " in helps["steps"] and "(default 2;" in helps["restarts"]
    assert "the most confident first or at random (default)" in helps["unmasking"]
    assert "(default)" not in helps["backtrack"]
    assert "'units' or 'peers' (default)" in helps["pruning"]
    assert "(default 9)" in helps["max_prior_calls"]
    assert "(default 5;" in helps["g_n_opt_steps"] and "(default 300)" in helps["g_n_opt_steps"]
    assert "(default: redge)" in helps["g_estimator"]
    args = build_parser().parse_args(["sudoku", "p.txt", "--output", "x.txt"])
    assert args.unmasking == "random"


def test_cli_runs_take_the_sources_defaults(tmp_path, monkeypatch):
    """No flags: the guided run gets `default_guidance()` and the solver's defaults; `--no-prior`
    gets `solve_without_prior`'s (run here with 2 Adam steps, not the default's 2000)."""
    seen: dict = {}
    real_load, real_no_prior = SudokuSolver.from_pretrained, solver_module.solve_without_prior

    def load(*args, **kwargs):
        seen["solver"] = kwargs
        return real_load(*args, **{**kwargs, "guidance": None})  # the search alone: fast

    def no_prior(batch, **kwargs):
        seen["no_prior"] = kwargs
        return real_no_prior(batch, **{**kwargs, "n_steps": 2})

    monkeypatch.setattr(SudokuSolver, "from_pretrained", load)
    monkeypatch.setattr(solver_module, "solve_without_prior", no_prior)
    (tmp_path / "p.txt").write_text(sd.grid_to_str(sd.generate_puzzles(1, seed=2)[0][0]) + "\n")
    argv = ["sudoku", str(tmp_path / "p.txt"), "--quiet", "--output"]
    assert main([*argv, str(tmp_path / "guided.txt")]) == 0
    assert seen["solver"]["guidance"] == default_guidance()
    assert {name: seen["solver"][name] for name in ("num_inference_steps", "restarts")} == {
        "num_inference_steps": SOLVER.num_inference_steps,
        "restarts": SOLVER.restarts,
    }
    assert main([*argv, str(tmp_path / "no_prior.txt"), "--no-prior"]) == 0
    assert (seen["no_prior"]["estimator"], seen["no_prior"]["n_steps"]) == (
        NO_PRIOR.estimator,
        NO_PRIOR.n_steps,
    )
