# ruff: noqa: E501 - one case per line reads best as a table
"""Bad input to the Python API: `GuidanceConfig`, `RewardGuidance`, `MaskedDiffusionPipeline`,
`SudokuSolver`. One row per case: a call on the fixtures (`cfg`, `reward`, `pipe`, `solver`), and
the pieces of the `ValueError` message (" ... " between them): the argument's name and the value
given. Add a case: add a row.
"""

from __future__ import annotations

import re

import pytest
import torch

import rewards
from redge_guidance import GuidanceConfig, RewardGuidance

from _models import tiny_bert

MASK = 3  # the tiny model's mask id


@pytest.fixture(scope="module")
def objects():
    from pipelines import MaskedDiffusionPipeline
    from redge_guidance.sudoku import SudokuSolver

    model = tiny_bert(
        16, hidden_size=8, num_attention_heads=1, intermediate_size=16, max_position_embeddings=32
    ).eval()
    return {
        "cfg": GuidanceConfig,
        "reward": rewards.TokenSetReward([1], vocab_size=16),
        "pipe": MaskedDiffusionPipeline.from_model(model, mask_token_id=MASK),
        "solver": SudokuSolver(None, guidance=None, num_inference_steps=2, restarts=0),
        "Solver": SudokuSolver,
        "RewardGuidance": RewardGuidance,
        "ids": torch.tensor([[5, 6, MASK, MASK]]),
    }


# (id, call, message pieces)
CASES = [
    # GuidanceConfig: every field is validated on construction
    ("config-n-opt-steps", "cfg(n_opt_steps=-1)", "`n_opt_steps` must be an integer >= 0, got -1"),
    (
        "config-n-opt-steps-float",
        "cfg(n_opt_steps=2.5)",
        "`n_opt_steps` must be an integer >= 0, got 2.5",
    ),
    ("config-lr", "cfg(lr=0)", "`lr` must be > 0, got 0"),
    ("config-lr-nan", "cfg(lr=float('nan'))", "`lr` must be a finite number, got nan"),
    (
        "config-kl-weight",
        "cfg(kl_weight=-0.1)",
        "`kl_weight` must be >= 0, got -0.1 ... `kl_weight=0`",
    ),
    (
        "config-warm-start",
        "cfg(warm_start=1.5)",
        "`warm_start` must be a number in [0, 1], got 1.5",
    ),
    (
        "config-guide-window",
        "cfg(guide_start=0.8, guide_stop=0.2)",
        "`guide_start` (0.8) must be <= `guide_stop` (0.2)",
    ),
    ("config-guide-every", "cfg(guide_every=0)", "`guide_every` must be an integer >= 1, got 0"),
    (
        "config-handoff",
        "cfg(handoff='sample')",
        "`handoff` must be one of ['logits', 'argmax'], got 'sample'",
    ),
    ("config-score-function", "cfg(score_function='sometimes')", "`score_function` must be one of"),
    ("config-always-needs-2", "cfg(score_function='always')", "`num_relaxed_samples` >= 2"),
    (
        "config-dtype",
        "cfg(optimize_dtype='float16')",
        "`optimize_dtype` must be one of ['float32', 'float64'], got 'float16'",
    ),
    (
        "config-clip",
        "cfg(max_grad_norm=0)",
        "`max_grad_norm` must be a finite number > 0 or None, got 0",
    ),
    ("config-record", "cfg(record_rewards='yes')", "`record_rewards` must be a bool, got 'yes'"),
    ("config-estimator", "cfg(estimator='redgee')", "'redgee'"),
    (
        "config-estimator-option",
        "cfg(estimator='redge', estimator_options={'tau': 1.0})",
        "`estimator_options`={'tau': 1.0}",
    ),
    (
        "config-options-json",
        "cfg(estimator_options={'n_steps': object()})",
        "`estimator_options` must be JSON-serialisable",
    ),
    (
        "config-from-dict-unknown",
        "cfg.from_dict({'learning_rate': 1})",
        "unknown GuidanceConfig keys ['learning_rate']",
    ),
    (
        "config-from-pretrained-missing",
        "cfg.from_pretrained('/nonexistent/cfg')",
        "No guidance config at '/nonexistent/cfg'",
    ),
    # RewardGuidance
    ("guidance-reward", "RewardGuidance(3)", "`reward` must be callable ... got int"),
    (
        "guidance-config",
        "RewardGuidance(reward, {'lr': 1})",
        "`config` must be a GuidanceConfig or None, got dict",
    ),
    (
        "guidance-option",
        "RewardGuidance(reward, learning_rate=1)",
        "Unknown RewardGuidance options ['learning_rate']",
    ),
    (
        "guidance-mask",
        "RewardGuidance(reward, mask_token_id=-1)",
        "`mask_token_id` must be a non-negative integer or None, got -1",
    ),
    # MaskedDiffusionPipeline
    (
        "pipe-steps",
        "pipe(input_ids=ids, num_inference_steps=0)",
        "`num_inference_steps` must be an integer >= 1, got 0",
    ),
    (
        "pipe-output-type",
        "pipe(input_ids=ids, num_inference_steps=2, output_type='html')",
        "`output_type` must be one of ... 'html'",
    ),
    (
        "pipe-callback-inputs",
        "pipe(input_ids=ids, num_inference_steps=2, callback_on_step_end_tensor_inputs=['nope'])",
        "`callback_on_step_end_tensor_inputs` must be a subset",
    ),
    (
        "pipe-nothing-to-generate",
        "pipe(input_ids=torch.tensor([[5, 6]]), num_inference_steps=2)",
        "mask",
    ),
    # SudokuSolver
    (
        "solver-steps",
        "Solver(None, num_inference_steps=0)",
        "`num_inference_steps` must be an integer >= 1, got 0",
    ),
    ("solver-restarts", "Solver(None, restarts=-1)", "`restarts` must be an integer >= 0, got -1"),
    (
        "solver-unmasking",
        "Solver(None, unmasking='left-to-right')",
        "`unmasking` must be one of ['random', 'confidence'], got 'left-to-right'",
    ),
    (
        "solver-temperature",
        "Solver(None, temperature=0)",
        "`temperature` must be a finite number > 0, got 0",
    ),
    (
        "solver-device",
        "Solver(None, device='toaster')",
        "`device` must name a torch device, got 'toaster'",
    ),
    (
        "solver-guidance",
        "Solver(None, guidance={'lr': 1})",
        "`guidance` must be a GuidanceConfig or None, got dict",
    ),
    (
        "solver-prior-path",
        "Solver.from_pretrained('/nonexistent/prior')",
        "`path` must be a folder",
    ),
    ("solver-puzzle-length", "solver.solve(['123'])", "expected 81 characters, got 3"),
    (
        "solver-batch-size",
        "solver.solve(['0' * 81], batch_size=0)",
        "`batch_size` must be an integer >= 1, got 0",
    ),
    (
        "solver-generator",
        "solver.solve(['0' * 81], generator=0)",
        "`generator` must be a torch.Generator or None, got int",
    ),
]


@pytest.mark.parametrize(("call", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_python_api_bad_input(call, needle, objects):
    scope = {**objects, "torch": torch}
    with pytest.raises(ValueError) as info:
        eval(call, scope)  # noqa: S307 - the table's calls
    message = str(info.value)
    assert "\n" not in message.strip(), message
    pattern = ".*".join(re.escape(piece) for piece in needle.split(" ... "))
    assert re.search(pattern, message), message
