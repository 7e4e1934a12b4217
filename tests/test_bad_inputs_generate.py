# ruff: noqa: E501 - one case per line reads best as a table
"""Bad input to `redge-guidance generate`: one row per case, run in-process.

Each row: the extra arguments, the exit code, a piece of the one-line message (it names the flag
the user typed), and whether the model may be loaded. The test asserts exactly one line on stderr
and no traceback, that the model loader ran only where the row allows it (the CLI logs
"loading the model" on `redge_guidance.cli` right before loading weights), and that no file in the
run's folder was created or changed. Add a case: add a row (and, if it needs files, a setup name).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from redge_guidance.cli import main

from _support import read_only_folder, snapshot

TINY = ["--length", "8", "--steps", "4", "--n-opt-steps", "2", "--threads", "1", "--quiet"]
REWARDS_MODULE = "bad_rewards_for_cli_tests"
REWARDS_SOURCE = """
import torch
import rewards


class _Fn(rewards.Reward):
    def __init__(self, vocab_size, fn):
        super().__init__()
        self.vocab_size = vocab_size
        self.fn = fn
        self.calls = 0

    def forward(self, x, *, attention_mask=None):
        self.calls += 1
        return self.fn(self.calls, x)


def raising(tokenizer, vocab_size):
    return _Fn(vocab_size, lambda n, x: 1 / 0)


def nan(tokenizer, vocab_size):
    return _Fn(vocab_size, lambda n, x: x.sum((1, 2)) * float("nan"))


def black_box(tokenizer, vocab_size):
    reward = _Fn(vocab_size, lambda n, x: x[..., 0].sum(1))
    reward.differentiable = False
    return reward


def late(tokenizer, vocab_size):
    # Fine on the test call before generating, then raises inside the first batch.
    def fn(n, x):
        if n > 1:
            raise RuntimeError("the reward server went away")
        return x[..., 0].sum(1)

    return _Fn(vocab_size, fn)
"""

# (id, extra arguments, exit code, message pieces (" ... " between pieces), model may load)
CASES = [
    # output paths, checked before anything else
    ("output-is-a-folder", ["--output", "{tmp}"], 2, "is a folder; pass a file path", False),
    ("output-parent-is-a-file", ["--output", "{tmp}/afile/o.jsonl"], 2, "is a file, not a folder", False),
    ("output-folder-read-only", ["--output", "{tmp}/ro/o.jsonl"], 2, "is not writable", False),
    ("output-exists", ["--output", "{tmp}/old.jsonl"], 2, "exists; pass `--resume`", False),
    ("resume-other-run", ["--output", "{tmp}/old.jsonl", "--resume"], 2, "rows of another run", False),
    ("resume-and-overwrite", ["--resume", "--overwrite"], 2, "`--resume` or `--overwrite`, not", False),
    ("resume-without-output", ["--resume", "--output", None], 2, "need `--output FILE`", False),
    # sizes
    ("steps-over-length", ["--length", "4", "--steps", "8"], 2, "`--steps` 8 is more than `--length` 4", False),
    ("length-0", ["--length", "0"], 2, "too short", False),
    ("num-samples-0", ["--num-samples", "0"], 2, "--num-samples: expected an integer >= 1", False),
    ("batch-size-0", ["--batch-size", "0"], 2, "--batch-size: expected an integer >= 1", False),
    ("length-over-positions", ["--length", "600"], 2, "exceeds the model's 512 positions", False),
    # generation and guidance values: the message names the flag
    ("temperature-negative", ["--temperature", "-1"], 2, "`--temperature` must be a finite number >= 0, got -1.0", False),
    ("temperature-inf", ["--temperature", "inf"], 2, "`--temperature` must be a finite number >= 0, got inf", False),
    ("ranking-prior-random-order", ["--ranking", "prior", "--unmasking", "random"], 2, "`--ranking prior` ranks the positions that confidence order commits, got `--unmasking random`", False),
    ("n-opt-steps-negative", ["--n-opt-steps", "-1"], 2, "`--n-opt-steps` must be an integer >= 0", False),
    ("lr-zero", ["--lr", "0"], 2, "`--lr` must be > 0, got 0.0. Try `--lr 0.1`", False),
    ("kl-weight-negative", ["--kl-weight", "-1"], 2, "`--kl-weight` must be >= 0", False),
    ("warm-start-2", ["--warm-start", "2"], 2, "`--warm-start` must be a number in [0, 1]", False),
    ("guide-window", ["--guide-start", "0.9", "--guide-stop", "0.1"], 2, "`--guide-start` (0.9) must be <= `--guide-stop`", False),
    ("always-needs-2-draws", ["--score-function", "always"], 2, "`--num-relaxed-samples` >= 2", False),
    ("handoff-choice", ["--handoff", "sample"], 2, "--handoff: invalid choice: 'sample'", False),
    ("old-and-new-flag", ["--forget", "0.5", "--warm-start", "0.5"], 2, "pass `--warm-start` only", False),
    ("estimator-unknown", ["--estimator", "redgee"], 2, "unknown `--estimator` 'redgee'; valid: gumbel_softmax, redge", False),
    ("estimator-option-unknown", ["--estimator", "redge", "--tau", "0.5"], 2, "Unknown option(s) ['tau']", False),
    ("estimator-option-syntax", ["--estimator-option", "n_steps"], 2, "`--estimator-option` must be KEY=VALUE", False),
    ("config-missing", ["--config", "{tmp}/nope.json"], 2, "neither a JSON file nor a folder", False),
    ("config-not-json", ["--config", "{tmp}/bad.json"], 2, "is not valid JSON", False),
    ("config-unknown-key", ["--config", "{tmp}/unknown.json"], 2, "unknown GuidanceConfig keys ['learning_rate']", False),
    ("device-unknown", ["--device", "toaster"], 2, "`--device` 'toaster' is not a device", False),
    ("device-cuda-missing", ["--device", "cuda"], 2, "CUDA is not available here", False),
    # prompts
    ("prompts-missing", ["--prompts", "/nonexistent/prompts.txt"], 2, "is not a file", False),
    ("prompt-and-prompts", ["--prompt", "a", "--prompts", "x.txt"], 2, "not both", False),
    ("prompts-bad-json", ["--prompts", "{tmp}/bad.jsonl"], 2, "cannot be read as json", False),
    ("prompts-no-column", ["--prompts", "{tmp}/cols.csv"], 2, "no 'prompt' or 'text' column", False),
    ("prompts-wrong-column", ["--prompts", "{tmp}/cols.csv", "--prompt-column", "nope"], 2, "is not a column", False),
    ("prompts-suffix", ["--prompts", "{tmp}/p.docx"], 2, "supported: .txt", False),
    # model and rewards
    ("model-missing", ["--model", "/nonexistent/model"], 2, "is not a folder", False),
    ("model-without-mask", ["--model", "{nomask}", "--reward", "lexicon:vader"], 2, "has no mask token", False),
    ("reward-typo", ["--reward", "sentimnt:positive"], 2, "Did you mean 'sentiment'?", False),
    ("reward-argument", ["--reward", "sentiment:happy"], 2, "sentiment takes one of", False),
    ("reward-no-module", ["--reward", "no_such_module_xyz:make"], 2, "no module 'no_such_module_xyz'", False),
    ("reward-import-fails", ["--reward", "os.path_nope:make"], 2, "cannot import module 'os.path_nope'", False),
    ("reward-raises", ["--reward", "{mod}:raising"], 2, "`--reward {mod}:raising` raised ZeroDivisionError", True),
    ("reward-not-finite", ["--reward", "{mod}:nan"], 2, "`--reward {mod}:nan` ... non-finite scores", True),
    # search: flags generated from the search configs, named as typed
    ("search-flag-without-search", ["--particles", "4"], 2, "`--particles` is a search setting but no search was chosen; pass `--search", False),
    ("search-flag-other-method", ["--search", "smc", "--rounds", "2"], 2, "`--rounds` applies to `--search refine`, not `--search smc`", False),
    ("search-choice", ["--search", "beam"], 2, "--search: invalid choice: 'beam'", False),
    ("particles-0", ["--search", "smc", "--particles", "0"], 2, "`--particles` must be an integer >= 1, got 0. Use e.g. `--particles 8`", False),
    ("candidates-0", ["--search", "best-of-n", "--particles", "0"], 2, "`--particles` must be an integer >= 1, got 0", False),
    ("candidates-per-call-0", ["--search", "best-of-n", "--candidates-per-call", "0"], 2, "`--candidates-per-call` must be an integer >= 1", False),
    ("smc-temperature-0", ["--search", "smc", "--smc-temperature", "0"], 2, "`--smc-temperature` must be a finite number > 0, got 0.0. Use e.g. `--smc-temperature 1.0`", False),
    ("ess-threshold-2", ["--search", "smc", "--ess-threshold", "2"], 2, "`--ess-threshold` must be a number in [0, 1], got 2.0", False),
    ("resample-every-negative", ["--search", "smc", "--resample-every", "-1"], 2, "`--resample-every` must be an integer >= 0, got -1", False),
    ("resample-choice", ["--search", "smc", "--resample", "stratified"], 2, "--resample: invalid choice: 'stratified'", False),
    ("particles-not-a-number", ["--search", "smc", "--particles", "many"], 2, "--particles: invalid int value: 'many'", False),
    ("rounds-negative", ["--search", "refine", "--rounds", "-1"], 2, "`--rounds` must be an integer >= 0, got -1", False),
    ("remask-fraction-0", ["--search", "refine", "--remask-fraction", "0"], 2, "`--remask-fraction` must be a number in (0, 1], got 0.0", False),
    ("refine-steps-0", ["--search", "refine", "--refine-steps", "0"], 2, "`--refine-steps` must be an integer >= 1, got 0", False),
    ("smc-argmax-sampler", ["--search", "smc", "--temperature", "0"], 2, "`--search smc` needs a stochastic sampler, got `--temperature 0` (argmax)", False),
    ("smc-guided-confidence", ["--search", "smc", "--unmasking", "confidence"], 2, "needs `--unmasking random`, got `--unmasking confidence`", False),
    ("smc-guided-handoff-argmax", ["--search", "smc", "--handoff", "argmax"], 2, "needs `--handoff logits`, got `--handoff argmax`", False),
    ("keep-particles-refine", ["--search", "refine", "--keep-particles"], 2, "`--keep-particles` applies to `--search smc` or `--search best-of-n`", False),
    ("keep-particles-compare", ["--search", "smc", "--keep-particles", "--compare"], 2, "`--compare` puts the unguided row ... Drop `--compare`", False),
    ("keep-particles-budget", ["--search", "best-of-n", "--keep-particles", "--max-reward-forwards", "9"], 2, "`--keep-particles` with a budget", False),
    ("budget-0", ["--search", "best-of-n", "--max-reward-forwards", "0"], 2, "`--max-reward-forwards` must be an integer >= 1, got 0", False),
    ("budget-seconds-negative", ["--search", "best-of-n", "--max-search-seconds", "-1"], 2, "`--max-search-seconds` must be a finite number > 0", False),
    ("budget-below-one-unit", ["--search", "smc", "--particles", "4", "--max-denoiser-forwards", "8"], 2, "`--max-denoiser-forwards` 8 is less than one unit of `--search smc`: 32 (2 prompts x 4 rows x 4 steps", False),
    ("remask-gradient-black-box", ["--search", "refine", "--remask-select", "gradient", "--num-relaxed-samples", "4", "--reward", "{mod}:black_box"], 2, "`--remask-select gradient` needs a differentiable reward", True),
    ("reward-fails-mid-run", ["--reward", "{mod}:late"], 1, "batch 0 failed with `--reward {mod}:late`: RuntimeError: the reward server went away", True),
]  # fmt: skip


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """Files the cases point at, outside the run folder: the reward module, a model folder."""
    root = tmp_path_factory.mktemp("generate_bad_inputs")
    (root / f"{REWARDS_MODULE}.py").write_text(REWARDS_SOURCE)
    from transformers import AutoTokenizer

    from redge_guidance.text_rewards import DEFAULT_MODEL_DIR

    nomask = root / "nomask"
    AutoTokenizer.from_pretrained(str(DEFAULT_MODEL_DIR)).save_pretrained(nomask)
    cfg = json.loads((nomask / "tokenizer_config.json").read_text())
    cfg.pop("mask_token")
    (nomask / "tokenizer_config.json").write_text(json.dumps(cfg))
    model_cfg = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    model_cfg.pop("mask_token_id")
    (nomask / "config.json").write_text(json.dumps(model_cfg))
    return root


def _setup(run: Path, monkeypatch) -> None:
    """The run folder's files (the snapshot must not change)."""
    (run / "afile").write_text("not a folder\n")
    read_only_folder(run / "ro", monkeypatch)
    (run / "old.jsonl").write_text('{"prompt_id": 0, "sample_id": 0, "run_hash": "other"}\n')
    (run / "bad.json").write_text("{not json")
    (run / "unknown.json").write_text('{"lr": 0.1, "learning_rate": 2}')
    (run / "bad.jsonl").write_text('{"prompt": "a"}\n{not json\n')
    (run / "cols.csv").write_text("id,line\n1,x\n")
    (run / "p.docx").write_text("x")


@pytest.mark.parametrize(
    ("extra", "code", "needle", "loads"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_generate_bad_input(
    extra, code, needle, loads, tmp_path, shared, capsys, caplog, monkeypatch
):
    if "cuda" in extra and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    monkeypatch.syspath_prepend(str(shared))
    run = tmp_path / "run"
    run.mkdir()
    _setup(run, monkeypatch)
    fill = {"tmp": str(run), "mod": REWARDS_MODULE, "nomask": str(shared / "nomask")}
    args = [a.format(**fill) if isinstance(a, str) else a for a in extra]
    if "--reward" not in args:
        args += ["--reward", "lexicon:vader"]  # needs no reward model
    if "--output" not in args:
        args += ["--output", str(run / "out.jsonl")]
    if None in args:  # ("--output", None): no output at all
        i = args.index(None)
        del args[i - 1 : i + 1]
    before = snapshot(run)
    caplog.set_level(logging.INFO, logger="redge_guidance.cli")
    assert main(["generate", *TINY, *args]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    for piece in needle.format(**fill).split(" ... "):
        assert piece in err, err
    assert "Traceback" not in err
    loaded = any(r.getMessage().startswith("loading the model") for r in caplog.records)
    assert loaded == loads, "the model was loaded" if loaded else "the model was not loaded"
    assert snapshot(run) == before  # nothing created, nothing changed
