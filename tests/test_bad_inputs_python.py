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

from _models import llada2_pipeline, tiny_bert

MASK = 3  # the tiny model's mask id


@pytest.fixture(scope="module")
def objects():
    from transformers import AutoTokenizer

    from pipelines import MaskedDiffusionPipeline, MaskedDiffusionScheduler
    from redge_guidance import search
    from redge_guidance.sudoku import SudokuSolver
    from redge_guidance.text_rewards import DEFAULT_MODEL_DIR
    from rewards.embedding import onloaded

    model = tiny_bert(
        16, hidden_size=8, num_attention_heads=1, intermediate_size=16, max_position_embeddings=32
    ).eval()
    scheds = {}
    for unmasking in ("random", "confidence"):
        scheds[unmasking] = MaskedDiffusionScheduler(
            mask_token_id=MASK, unmasking=unmasking, ranking="prior"
        )
        scheds[unmasking].set_timesteps(2)
    return {
        "model": model,
        "Scheduler": MaskedDiffusionScheduler,
        "sched": scheds["random"],
        "csched": scheds["confidence"],
        "t0": scheds["random"].timesteps[0],
        "logits": torch.zeros(1, 4, 16),
        "search": search.search,
        "S": search,
        "tok": AutoTokenizer.from_pretrained(str(DEFAULT_MODEL_DIR)),
        "onloaded": onloaded,
        "llada2": llada2_pipeline(tiny_bert(32).eval(), block_length=4),
        "R32": rewards.TokenSetReward([7], vocab_size=32),
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
        "config-unknown-field",
        "cfg(learning_rate=1)",
        "Unknown GuidanceConfig fields ['learning_rate']. Valid fields: [",
    ),
    (
        "config-replace-unknown",
        "cfg().replace(learning_rate=1)",
        "Unknown GuidanceConfig fields ['learning_rate']. Valid fields: [",
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
    (
        "guidance-sample-device",
        "RewardGuidance(reward)(logits, ids.to('meta'), editable=ids == 3, step=0, num_steps=2)",
        "`sample` is on meta but `logits` is on cpu ... `sample.to(logits.device)`",
    ),
    (
        "guidance-editable-device",
        "RewardGuidance(reward)(logits, ids, editable=(ids == 3).to('meta'), step=0, num_steps=2)",
        "`editable` is on meta but `logits` is on cpu",
    ),
    # MaskedDiffusionScheduler
    (
        "scheduler-generator",
        "sched.step(logits, t0, ids, generator=0)",
        "`generator` must be a torch.Generator or None, got 0",
    ),
    (
        "scheduler-fixed-mask-device",
        "sched.step(logits, t0, ids, fixed_mask=torch.zeros(1, 4, dtype=torch.bool, device='meta'))",
        "`fixed_mask` is on meta but `model_output` is on cpu",
    ),
    (
        "scheduler-ranking-logits-random-order",
        "sched.step(logits, t0, ids, ranking_logits=[0.0])",
        "`ranking_logits` must be a float tensor of shape (B, L, V), got list",
    ),
    (
        "scheduler-ranking-logits-shape",
        "csched.step(logits, t0, ids, ranking_logits=logits[:, :, :15])",
        "`ranking_logits` has shape (1, 4, 15) but `model_output` has shape (1, 4, 16)",
    ),
    (
        "scheduler-ranking-logits-device",
        "csched.step(logits, t0, ids, ranking_logits=logits.to('meta'))",
        "`ranking_logits` is on meta but `model_output` is on cpu",
    ),
    (
        "scheduler-timestep-string",
        "sched.step(logits, 'x', ids)",
        "`timestep` must be one of `scheduler.timesteps` ... got 'x'",
    ),
    (
        "scheduler-timestep-nan",
        "sched.step(logits, float('nan'), ids)",
        "`timestep` must be one of `scheduler.timesteps` ... got nan",
    ),
    (
        "scheduler-set-timesteps-device",
        "Scheduler().set_timesteps(2, device='toaster')",
        "`device` must name a torch device, got 'toaster'",
    ),
    # MaskedDiffusionPipeline
    (
        "pipe-generator",
        "pipe(input_ids=ids, num_inference_steps=2, generator=0)",
        "`generator` must be a torch.Generator or None, got 0",
    ),
    (
        "pipe-id-out-of-vocab",
        "pipe(input_ids=torch.tensor([[50, 6, 3, 3]]), num_inference_steps=2)",
        "`input_ids` holds the token id 50, outside the model's vocabulary [0, 16)",
    ),
    (
        "pipe-id-negative",
        "pipe(input_ids=[[-1, 6, 3, 3]], num_inference_steps=2)",
        "`input_ids` holds the token id -1",
    ),
    (
        "pipe-guidance-mask-id",
        "pipe(input_ids=ids, num_inference_steps=2, guidance=RewardGuidance(reward, mask_token_id=5))",
        "`guidance.mask_token_id` is 5 but the pipeline's mask token id is 3",
    ),
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
        "solver-search-guidance-unguided",
        "Solver(None, guidance=None, search_guidance=True)",
        "`search_guidance=True` steers the backtracking search ... got `guidance=None`",
    ),
    (
        "solver-search-guidance-no-search",
        "Solver(None, search='none', search_guidance=True)",
        "`search_guidance=True` ... got `search='none'`",
    ),
    # options are checked before the prior loads: a bad path would be the error otherwise
    (
        "solver-from-pretrained-search",
        "Solver.from_pretrained('/nonexistent/prior', search='dfs')",
        "`search` must be one of ['none', 'backtrack'], got 'dfs'",
    ),
    (
        "solver-from-pretrained-pruning",
        "Solver.from_pretrained('/nonexistent/prior', pruning='all')",
        "`pruning` must be one of ['peers', 'units'], got 'all'",
    ),
    (
        "solver-from-pretrained-remask",
        "Solver.from_pretrained('/nonexistent/prior', remask='bad')",
        "`remask` must be one of ... got 'bad'",
    ),
    (
        "solver-from-pretrained-guidance",
        "Solver.from_pretrained('/nonexistent/prior', guidance={'lr': 1})",
        "`guidance` must be a GuidanceConfig, 'default' or None, got dict",
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
    # search
    (
        "search-ids-not-ints",
        "search(pipe, reward, [[1.5, 3]], S.BestOfNConfig())",
        "`input_ids` as a list must be a non-empty list of equal-length lists of ints, got [[1.5, 3]]",
    ),
    (
        "search-id-out-of-vocab",
        "search(pipe, reward, torch.tensor([[50, 3]]), S.BestOfNConfig())",
        "`input_ids` holds the token id 50, outside the model's vocabulary [0, 16)",
    ),
    (
        "search-attention-mask-device",
        "search(pipe, reward, ids, S.BestOfNConfig(), attention_mask=torch.ones(1, 4, dtype=torch.long, device='meta'))",
        "`attention_mask` is on meta but `input_ids` is on cpu",
    ),
    (
        "search-fixed-mask-device",
        "search(pipe, reward, ids, S.BestOfNConfig(), fixed_mask=torch.zeros(1, 4, dtype=torch.bool, device='meta'))",
        "`fixed_mask` is on meta but `input_ids` is on cpu",
    ),
    (
        "search-mask-id-with-pipeline",
        "search(pipe, reward, ids, S.BestOfNConfig(), mask_token_id=5)",
        "`mask_token_id` is 5 but the pipeline's is 3",
    ),
    (
        "search-mask-id-out-of-vocab",
        "search(model, reward, [[99, 99]], S.BestOfNConfig(), mask_token_id=99)",
        "`mask_token_id` is 99 but the model has only 16 vocabulary entries",
    ),
    (
        "search-config-from-dict",
        "S.SMCConfig.from_dict(3)",
        "`data` must be a dict of SMCConfig fields, got 3",
    ),
    (
        "resample-log-w-shape",
        "S.resample(torch.zeros(4), 'systematic')",
        "`log_w` must be a float tensor of shape (B, K) ... (4,)",
    ),
    (
        "resample-log-w-ints",
        "S.resample(torch.zeros(1, 4, dtype=torch.long), 'systematic')",
        "`log_w` must be a float tensor of shape (B, K) ... torch.int64",
    ),
    (
        "resample-generator",
        "S.resample(torch.zeros(1, 4), 'systematic', 0)",
        "`generator` must be a torch.Generator or None, got 0",
    ),
    # smc_llada2: every option before the pipeline runs
    (
        "llada2-steps",
        "S.smc_llada2(llada2, R32, ids, S.SMCConfig(2), gen_length=4, mask_token_id=31, num_inference_steps=True)",
        "`num_inference_steps` must be an integer >= 1, got True",
    ),
    (
        "llada2-block-length-0",
        "S.smc_llada2(llada2, R32, ids, S.SMCConfig(2), gen_length=4, mask_token_id=31, block_length=0)",
        "`block_length` must be an integer >= 1, got 0",
    ),
    (
        "llada2-threshold",
        "S.smc_llada2(llada2, R32, ids, S.SMCConfig(2), gen_length=4, mask_token_id=31, threshold='x')",
        "`threshold` must be a finite number >= 0, got 'x'",
    ),
    (
        "llada2-editing-threshold",
        "S.smc_llada2(llada2, R32, ids, S.SMCConfig(2), gen_length=4, mask_token_id=31, editing_threshold=float('nan'))",
        "`editing_threshold` must be a finite number or None, got nan",
    ),
    (
        "llada2-attention-mask",
        "S.smc_llada2(llada2, R32, ids, S.SMCConfig(2), gen_length=4, mask_token_id=31, attention_mask=torch.ones(1, 5))",
        "`attention_mask` must be a tensor of the shape of `input_ids` (1, 4), got (1, 5)",
    ),
    (
        "llada2-generator",
        "S.smc_llada2(llada2, R32, ids, S.SMCConfig(2), gen_length=4, mask_token_id=31, generator=0)",
        "`generator` must be a torch.Generator or None, got 0",
    ),
    (
        "llada2-mask-id",
        "S.smc_llada2(llada2, R32, ids, S.SMCConfig(2), gen_length=4, mask_token_id=99)",
        "`mask_token_id` is 99 but the model has only 32 vocabulary entries",
    ),
    (
        "llada2-id-out-of-vocab",
        "S.smc_llada2(llada2, R32, ids + 40, S.SMCConfig(2), gen_length=4, mask_token_id=31)",
        "`input_ids` holds the token id 45, outside the model's vocabulary [0, 32)",
    ),
    # rewards
    (
        "bridge-tokenizer",
        "rewards.VocabularyBridge(None, tok)",
        "VocabularyBridge `source_tokenizer` must be a Hugging Face tokenizer, got NoneType",
    ),
    (
        "bridge-max-slots-bool",
        "rewards.VocabularyBridge(tok, tok, max_slots=True)",
        "VocabularyBridge `max_slots` must be a positive int or None, got True",
    ),
    (
        "bridge-input-ids",
        "rewards.VocabularyBridge(tok, tok, max_slots=1)(torch.zeros(1, 2, len(tok), dtype=torch.long))",
        "VocabularyBridge expects `x` as a float tensor ... got torch.int64",
    ),
    (
        "onloaded-not-a-module",
        "onloaded(None).__enter__()",
        "`module` must be a torch.nn.Module ... got NoneType",
    ),
]


@pytest.mark.parametrize(("call", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_python_api_bad_input(call, needle, objects):
    scope = {**objects, "torch": torch, "rewards": rewards}
    with pytest.raises(ValueError) as info:
        eval(call, scope)  # noqa: S307 - the table's calls
    message = str(info.value)
    assert "\n" not in message.strip(), message
    pattern = ".*".join(re.escape(piece) for piece in needle.split(" ... "))
    assert re.search(pattern, message), message
