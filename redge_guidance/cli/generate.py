"""`redge-guidance generate`: steer a masked diffusion text model toward a reward, in batches.

Work plan. The job is the list of `(prompt_id, sample_id)` pairs in prompt-major order, cut into
batches of `--batch-size`. Batch `k` is generated with its own seed, derived from `--seed` and `k`,
and under `accelerate launch` process `r` of `n` takes the batches `k` with `k % n == r`. So a row
depends only on `(--seed, --batch-size, its batch)`: the same command gives the same rows with one
process or many, and after an interruption `--resume` regenerates an unfinished batch exactly and
writes only its missing rows (same machine, same dtype).

"Unguided" means the same batch, same seed, sampled without guidance (`--compare`, on by default):
the scheduler draws the same uniforms, so the two rows differ only by what guidance changed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from .._seeding import derive_seed
from .io import (
    JsonlWriter,
    UsageError,
    int_at_least,
    merge_shards,
    read_prompts,
    read_rows,
    repair_trailing_line,
    row_key,
    shard_path,
    shard_paths,
)

__all__ = ["add_parser", "run", "DEFAULT_PROMPTS", "DEFAULT_REWARD", "CLI_GUIDANCE_DEFAULTS"]

#: Prompts used when neither `--prompt` nor `--prompts` is given.
DEFAULT_PROMPTS = ("ROMEO: O, my love,", "HAMLET: To be, or not to be,")
#: Reward used when no `--reward` is given.
DEFAULT_REWARD = "sentiment:positive"

#: Guidance settings of the CLI where they differ from `GuidanceConfig`'s (sized for a CPU run on
#: the embedded model and a reward in VADER units; see docs/cli.md).
CLI_GUIDANCE_DEFAULTS: dict[str, Any] = {
    # 10 Adam steps per denoising step: half the paper's 20, twice as fast, most of the gain.
    "n_opt_steps": 10,
    # Adam moves each logit by about `lr` per step whatever the reward's scale, so 10 steps of
    # lr 1 can shift a token's logit by up to ~10; sentences differ by ~1 VADER unit while moving
    # a token costs a few nats of KL, hence the light KL weight. Measured on the embedded model
    # (8 samples, length 32, 16 steps): mean sentiment 0.42 unguided; 0.73 at lr 0.5 / KL 0.02;
    # 1.12 at lr 1 / KL 0.02; 0.58 at lr 1 / KL 0.05. Raise --kl-weight to stay closer to the model.
    "lr": 1.0,
    "kl_weight": 0.02,
    # The per-step trace rewards cost two extra reward calls per step; the CLI does not need them.
    "record_rewards": False,
}

# (flag, GuidanceConfig field, type, choices, help). Kept here (not read from the dataclass) so
# that `--help` does not import torch; tests/test_cli.py checks that every field has a flag.
GUIDANCE_FLAGS: tuple[tuple[str, str, Any, tuple[str, ...] | None, str], ...] = (
    (
        "--estimator",
        "estimator",
        str,
        None,
        "relaxation: redge (default), redge_cov, reindge, straight_through, gumbel_softmax, "
        "reinmax",
    ),
    (
        "--n-opt-steps",
        "n_opt_steps",
        int,
        None,
        "Adam steps per guided denoising step (0: no guidance; CLI default 10)",
    ),
    ("--lr", "lr", float, None, "Adam learning rate on the variational logits (CLI default 1.0)"),
    (
        "--kl-weight",
        "kl_weight",
        float,
        None,
        "weight of KL(guided || model) per position (CLI default 0.02)",
    ),
    (
        "--forget",
        "forget",
        float,
        None,
        "warm start in [0, 1]; 1 = restart from the model's logits each step",
    ),
    (
        "--num-relaxed-samples",
        "num_relaxed_samples",
        int,
        None,
        "relaxed draws per inner step (>= 2 for black-box rewards)",
    ),
    ("--guide-every", "guide_every", int, None, "guide one denoising step in N"),
    (
        "--guide-start",
        "guide_start",
        float,
        None,
        "first guided fraction of the trajectory, in [0, 1]",
    ),
    ("--guide-stop", "guide_stop", float, None, "end of the guided fraction, in [0, 1]"),
    ("--decode", "decode", str, ("sample", "argmax"), "what guidance hands to the scheduler"),
    ("--tol", "tol", float, None, "early-stop tolerance of the inner objective"),
    ("--patience", "patience", int, None, "early-stop patience in inner steps (0: off)"),
    (
        "--max-grad-norm",
        "max_grad_norm",
        float,
        None,
        "per-sample gradient clipping (default: off)",
    ),
    (
        "--score-function",
        "score_function",
        str,
        ("auto", "always", "never"),
        "REINFORCE gradient: auto = for black-box rewards",
    ),
    (
        "--optimize-dtype",
        "optimize_dtype",
        str,
        ("float32", "float64"),
        "dtype of the inner optimisation",
    ),
)
# (flag, estimator option, type, help)
ESTIMATOR_FLAGS: tuple[tuple[str, str, Any, str], ...] = (
    ("--n-steps", "n_steps", int, "redge / redge_cov / reindge: diffusion steps of the relaxation"),
    ("--t-1", "t_1", float, "redge / redge_cov / reindge: first time of the relaxation schedule"),
    ("--tau", "tau", float, "gumbel_softmax / reinmax: temperature"),
)

_DTYPES = ("float32", "bfloat16", "float16")
_METAVARS = {int: "N", float: "X", str: "NAME"}
_REWARD_HELP = """\
reward spec NAME[:ARG][=WEIGHT], repeatable (weighted specs add up);
default sentiment:positive.
  sentiment:positive|negative  MiniLM embedding + VADER-fitted head
  similarity:TEXT              MiniLM cosine similarity to TEXT
  lexicon:vader                mean VADER valence of the tokens
  fluency[:K]                  pseudo-log-likelihood under the generator
                               (K masked passes, default 4)
  module.path:callable         callable(tokenizer, vocab_size) or
                               callable() returning a rewards.Reward
e.g. --reward sentiment:positive=1.0 --reward fluency=0.3"""


_positive_int = int_at_least(1)
_nonneg_int = int_at_least(0)


def _length(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of new tokens >= 1, got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"length {value} is too short: generate at least 1 new token, e.g. --length 32"
        )
    return value


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "generate",
        help="generate text steered toward a reward (embedded Shakespeare model by default)",
        description=(
            "Generate text with a masked diffusion model, steered toward a reward by ReDGE\n"
            "guidance. With no arguments: the embedded Shakespeare model, two prompts, reward\n"
            "sentiment:positive; prints guided and unguided texts and a summary."
        ),
        epilog=(
            "examples:\n"
            "  redge-guidance generate\n"
            "  redge-guidance generate --prompt 'JULIET:' --num-samples 4 \\\n"
            "      --reward similarity:'a storm at sea'\n"
            "  redge-guidance generate --prompts prompts.jsonl --output out.jsonl --resume \\\n"
            "      --quiet\n"
            "  accelerate launch --num_processes 2 --cpu -m redge_guidance.cli generate \\\n"
            "      --prompts p.txt --output out.jsonl"
        ),
    )
    g = p.add_argument_group("prompts")
    g.add_argument(
        "--prompt",
        action="append",
        metavar="TEXT",
        help="a prompt (repeatable; '' for unconditional); default: two Shakespeare openings",
    )
    g.add_argument(
        "--prompts",
        metavar="FILE",
        help="prompts file: .txt (one per line), .jsonl/.json, .csv/.tsv or .parquet",
    )
    g.add_argument(
        "--prompt-column",
        metavar="NAME",
        help="column of a table prompts file (default: 'prompt', else 'text')",
    )
    g.add_argument(
        "--num-samples",
        type=_positive_int,
        default=1,
        metavar="N",
        help="samples per prompt (default 1)",
    )

    g = p.add_argument_group("generation")
    g.add_argument(
        "--length", type=_length, default=32, metavar="N", help="new tokens per sample (default 32)"
    )
    g.add_argument(
        "--steps", type=_positive_int, default=16, metavar="N", help="denoising steps (default 16)"
    )
    g.add_argument(
        "--order",
        choices=("random", "confidence"),
        default="random",
        help="which masked positions each step commits (default random: MDLM)",
    )
    g.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="sampling temperature (default 1.0; 0 = argmax)",
    )
    g.add_argument("--seed", type=int, default=0, help="seed of the whole job (default 0)")
    g.add_argument(
        "--batch-size",
        type=_positive_int,
        default=8,
        metavar="N",
        help="samples per batch (default 8)",
    )

    g = p.add_argument_group("reward")
    g.add_argument("--reward", action="append", metavar="SPEC", help=_REWARD_HELP)

    g = p.add_argument_group("guidance (same names as redge_guidance.GuidanceConfig)")
    g.add_argument(
        "--config",
        metavar="JSON",
        help="GuidanceConfig as JSON (GuidanceConfig.save); flags override it",
    )
    for flag, field, typ, choices, text in GUIDANCE_FLAGS:
        g.add_argument(
            flag,
            dest=f"g_{field}",
            type=typ,
            choices=choices,
            default=None,
            help=text,
            metavar=None if choices else _METAVARS[typ],
        )
    g.add_argument(
        "--record-rewards",
        dest="g_record_rewards",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="record per-step rewards in the guidance trace (costs 2 reward calls per step)",
    )
    for flag, option, typ, text in ESTIMATOR_FLAGS:
        g.add_argument(
            flag, dest=f"e_{option}", type=typ, default=None, help=text, metavar=_METAVARS[typ]
        )
    g.add_argument(
        "--hard",
        dest="e_hard",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="gumbel_softmax: straight-through hard samples",
    )
    g.add_argument(
        "--estimator-option",
        action="append",
        metavar="KEY=VALUE",
        default=[],
        help="any estimator option (VALUE read as JSON, else as a string); repeatable",
    )

    g = p.add_argument_group("model and device")
    g.add_argument(
        "--model",
        metavar="PATH_OR_ID",
        help="masked LM folder or Hub id (default: the embedded Shakespeare model)",
    )
    g.add_argument("--trust-remote-code", action="store_true", help="allow the model's custom code")
    g.add_argument(
        "--device",
        default="auto",
        help="auto (cuda if available, the process's GPU under accelerate), cpu, cuda, cuda:1, mps",
    )
    g.add_argument(
        "--dtype",
        choices=_DTYPES,
        default="float32",
        help="weight dtype of the models (default float32)",
    )
    g.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        metavar="N",
        help="torch CPU threads per process (default 1)",
    )

    g = p.add_argument_group("output")
    g.add_argument(
        "--output",
        metavar="FILE",
        help="JSONL file, written as batches finish; default: texts to stdout",
    )
    g.add_argument(
        "--resume",
        action="store_true",
        help="keep the rows already in --output and generate the rest",
    )
    g.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    g.add_argument(
        "--compare",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also sample each batch unguided with the same seed (reward_unguided; default on)",
    )
    g.add_argument("--quiet", action="store_true", help="no progress bar, no summary")
    p.set_defaults(run=run)
    return p


# --------------------------------------------------------------------------------- settings


def _parse_option_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def guidance_settings(args: argparse.Namespace) -> dict[str, Any]:
    """CLI defaults, then `--config`, then explicit flags: a GuidanceConfig dict (unvalidated)."""
    settings: dict[str, Any] = dict(CLI_GUIDANCE_DEFAULTS)
    if args.config is not None:
        path = Path(args.config)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise UsageError(
                f"`--config` {args.config!r} cannot be read ({err.strerror or err})."
            ) from None
        except ValueError as err:
            raise UsageError(f"`--config` {args.config!r} is not valid JSON ({err}).") from None
        if not isinstance(data, dict):
            raise UsageError(
                f"`--config` {args.config!r} must hold a JSON object of GuidanceConfig fields, got "
                f"{type(data).__name__}. Write one with `GuidanceConfig(...).save(path)`."
            )
        settings.update(data)
    options = dict(settings.get("estimator_options") or {})
    for key, value in vars(args).items():
        if key.startswith("g_") and value is not None:
            settings[key[2:]] = value
        elif key.startswith("e_") and value is not None:
            options[key[2:]] = value
    for item in args.estimator_option:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(
                f"`--estimator-option` must be KEY=VALUE, got {item!r}; e.g. "
                "`--estimator-option n_steps=5`."
            )
        options[key.strip()] = _parse_option_value(value.strip())
    settings["estimator_options"] = options
    return settings


def build_guidance_config(args: argparse.Namespace):
    """Validated `GuidanceConfig` from the arguments (`UsageError` on bad values)."""
    from ..estimators import ESTIMATORS
    from ..guidance import GuidanceConfig

    settings = guidance_settings(args)
    name = settings.get("estimator", "redge")
    if name not in ESTIMATORS:
        raise UsageError(f"unknown `--estimator` {name!r}; valid: {', '.join(sorted(ESTIMATORS))}.")
    try:
        return GuidanceConfig.from_dict(settings)
    except (ValueError, TypeError) as err:
        raise UsageError(str(err)) from None


def _batch_seed(seed: int, batch_index: int) -> int:
    return derive_seed("redge-guidance-cli", seed, batch_index)


def _run_hash(
    args: argparse.Namespace, prompts: list[str], specs: list[Any], config_json: str
) -> str:
    """Hash of everything that determines the rows (not device, threads or output options)."""
    payload = {
        "model": args.model or "embedded",
        "dtype": args.dtype,
        "prompts": hashlib.sha256(json.dumps(prompts).encode()).hexdigest(),
        "rewards": [(s.text, s.weight) for s in specs],
        "guidance": config_json,
        "num_samples": args.num_samples,
        "length": args.length,
        "steps": args.steps,
        "order": args.order,
        "temperature": args.temperature,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "compare": args.compare,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


class _Dist:
    """Process index and count; accelerate's PartialState when launched with several processes."""

    def __init__(self) -> None:
        self.state = None
        self.rank, self.world = 0, 1
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            from accelerate import PartialState

            self.state = PartialState()
            self.rank, self.world = self.state.process_index, self.state.num_processes

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()


def _resolve_device(spec: str, dist: _Dist):
    import torch

    if spec == "auto":
        if dist.state is not None:
            return dist.state.device
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UsageError(
            f"`--device` {spec!r} is not a device; use auto, cpu, cuda, cuda:0 or mps."
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"`--device` {spec!r} but CUDA is not available here; use `--device cpu`.")
    if device.type == "cuda" and device.index is None and dist.state is not None:
        device = dist.state.device
    return device


def _quiet_libraries() -> None:
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    dlog.set_verbosity_error()


# --------------------------------------------------------------------------------- run


def run(args: argparse.Namespace) -> int:
    """Run `generate` (see the module docstring); raises `UsageError` on bad input."""
    t_start = time.perf_counter()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # prompts files are local

    # 1. Everything checkable without a model.
    if args.resume and args.overwrite:
        raise UsageError("pass `--resume` or `--overwrite`, not both.")
    if (args.resume or args.overwrite) and not args.output:
        raise UsageError("`--resume` and `--overwrite` need `--output FILE`.")
    if args.prompt is not None and args.prompts is not None:
        raise UsageError("pass prompts with `--prompt` or `--prompts FILE`, not both.")
    if args.prompt_column is not None and args.prompts is None:
        raise UsageError("`--prompt-column` applies to `--prompts FILE` only.")
    if not math.isfinite(args.temperature) or args.temperature < 0:
        raise UsageError(
            f"`--temperature` must be >= 0, got {args.temperature}; use 1.0 to sample the "
            "model's distribution."
        )
    if args.output and Path(args.output).is_dir():
        raise UsageError(
            f"`--output` {args.output!r} is a folder; pass a file path such as "
            f"{args.output.rstrip('/') + '/out.jsonl'!r}."
        )
    if args.prompts is not None:
        prompts = read_prompts(args.prompts, args.prompt_column)
    else:
        prompts = list(args.prompt) if args.prompt is not None else list(DEFAULT_PROMPTS)

    import torch

    from ..text_rewards import (
        check_model_source,
        check_reward_dependencies,
        load_text_tokenizer,
        parse_reward_spec,
        resolve_model_source,
    )

    try:
        specs = [parse_reward_spec(s) for s in (args.reward or [DEFAULT_REWARD])]
        check_reward_dependencies(specs)
        check_model_source(resolve_model_source(args.model))
    except ValueError as err:
        raise UsageError(str(err)) from None
    config = build_guidance_config(args)
    config_hash = config.config_hash()
    run_hash = _run_hash(args, prompts, specs, config.to_json())

    dist = _Dist()
    out_path = Path(args.output) if args.output else None
    my_path = None
    done: set[tuple[int, int]] = set()
    if out_path is not None:
        my_path = out_path if dist.world == 1 else shard_path(out_path, dist.rank, dist.world)
        existing = [p for p in [out_path, *shard_paths(out_path)] if p.exists()]
        if existing and not (args.resume or args.overwrite):
            raise UsageError(
                f"`--output` {str(existing[0])!r} exists; pass `--resume` to complete it or "
                "`--overwrite` to start over."
            )
        if args.resume:
            for path in existing:
                for row in read_rows(path, strict=(path == my_path)):
                    if row.get("run_hash") != run_hash:
                        raise UsageError(
                            f"`--resume`: {str(path)!r} holds rows of another run (run_hash "
                            f"{row.get('run_hash')!r}, this run {run_hash!r}: the prompts, model, "
                            "reward, guidance or generation settings differ). Rerun with the "
                            "original settings, or use a new `--output`."
                        )
                    done.add(row_key(row))

    # 2. Tokenizer, model, reward (ValueError -> one-line usage error).
    torch.set_num_threads(args.threads)
    device = _resolve_device(args.device, dist)
    dtype = getattr(torch, args.dtype)
    source = resolve_model_source(args.model)
    if Path(source).expanduser().is_dir():
        # Everything is local (the embedded model, MiniLM from its pip package): never wait on
        # the network. A Hub id leaves the user's setting alone.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _quiet_libraries()
    try:
        tokenizer, model_config, mask_id = load_text_tokenizer(
            source, trust_remote_code=args.trust_remote_code
        )
    except ValueError as err:
        raise UsageError(str(err)) from None
    prompt_ids = [list(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    max_pos = getattr(model_config, "max_position_embeddings", None)
    longest = max(len(ids) for ids in prompt_ids)
    if isinstance(max_pos, int) and longest + args.length > max_pos:
        raise UsageError(
            f"`--length` {args.length} plus the longest prompt ({longest} tokens) exceeds the "
            f"model's {max_pos} positions; use `--length {max(1, max_pos - longest)}` or "
            "shorter prompts."
        )

    from ..guidance import RewardGuidance
    from ..text_rewards import build_reward, load_text_model

    try:
        tm = load_text_model(
            args.model,
            device=device,
            dtype=dtype,
            trust_remote_code=args.trust_remote_code,
            tokenizer=tokenizer,
            config=model_config,
            mask_token_id=mask_id,
        )
        reward, parts = build_reward(specs, tm, device=device, dtype=dtype)
        guidance = RewardGuidance(reward, config, mask_token_id=tm.mask_token_id)
    except ValueError as err:
        raise UsageError(" ".join(str(err).split())) from None

    from pipelines import MaskedDiffusionPipeline

    pipe = MaskedDiffusionPipeline.from_model(
        tm.model,
        tm.tokenizer,
        mask_token_id=tm.mask_token_id,
        order=args.order,
        temperature=args.temperature,
    )
    pipe.set_progress_bar_config(disable=True)

    # 3. Plan: batches of (prompt_id, sample_id), batch k to process k % world.
    items = [(pid, sid) for pid in range(len(prompts)) for sid in range(args.num_samples)]
    batches = [items[i : i + args.batch_size] for i in range(0, len(items), args.batch_size)]
    mine = [(k, b) for k, b in enumerate(batches) if k % dist.world == dist.rank]
    todo = [(k, b) for k, b in mine if any(key not in done for key in b)]
    n_mine = sum(len(b) for _, b in mine)
    n_todo = sum(1 for _, b in todo for key in b if key not in done)

    if out_path is not None and args.overwrite:
        my_path.unlink(missing_ok=True)
        if dist.main:
            out_path.unlink(missing_ok=True)
            for shard in shard_paths(out_path):
                if dist.world == 1 or not str(shard).endswith(f"-of-{dist.world}.jsonl"):
                    shard.unlink(missing_ok=True)
    if out_path is not None and args.resume:
        repair_trailing_line(my_path)
    dist.barrier()  # every process has checked the output before anyone writes to it

    from tqdm.auto import tqdm

    bar = tqdm(
        total=n_mine,
        initial=n_mine - n_todo,
        unit="sample",
        desc="generate",
        disable=args.quiet or not dist.main,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    writer = JsonlWriter(my_path) if my_path is not None else None
    new_rows: list[dict[str, Any]] = []
    try:
        for k, batch in todo:
            rows = _generate_batch(
                pipe,
                guidance,
                tm,
                parts,
                prompts,
                prompt_ids,
                batch,
                _batch_seed(args.seed, k),
                args,
                device,
                config_hash,
                run_hash,
            )
            rows = [r for r in rows if row_key(r) not in done]
            if writer is not None:
                writer.write_rows(rows)
            else:
                for r in rows:
                    bar.write(_format_row(r, compare=args.compare), file=sys.stdout)
                sys.stdout.flush()
            new_rows.extend(rows)
            bar.update(len(rows))
    finally:
        bar.close()
        if writer is not None:
            writer.close()

    # 4. Merge shards, summary.
    dist.barrier()
    if not dist.main:
        return 0
    # Several processes wrote shards; a single one may find leftovers of an earlier such run.
    if out_path is not None and (dist.world > 1 or shard_paths(out_path)):
        merge_shards(out_path, shard_paths(out_path))
    if not args.quiet:
        all_rows = read_rows(out_path, strict=False) if out_path is not None else new_rows
        print(
            _summary(all_rows, len(new_rows), time.perf_counter() - t_start, out_path, dist.world),
            file=sys.stderr,
        )
    return 0


def _generate_batch(
    pipe, guidance, tm, parts, prompts, prompt_ids, batch, seed, args, device, config_hash, run_hash
) -> list[dict[str, Any]]:
    import torch
    import torch.nn.functional as F

    B, L = len(batch), args.length
    rows = [prompt_ids[pid] for pid, _ in batch]
    width = max(len(r) for r in rows)
    pad = tm.tokenizer.pad_token_id if tm.tokenizer.pad_token_id is not None else 0
    ids = torch.full((B, width + L), pad, dtype=torch.long)
    am = torch.zeros((B, width + L), dtype=torch.long)
    for b, r in enumerate(rows):
        if r:
            ids[b, width - len(r) : width] = torch.tensor(r, dtype=torch.long)
        am[b, width - len(r) :] = 1
    ids[:, width:] = tm.mask_token_id
    am_dev = am.to(device)

    def sample(guided: bool):
        gen = torch.Generator("cpu").manual_seed(seed)
        t0 = time.perf_counter()
        out = pipe(
            input_ids=ids,
            attention_mask=am,
            num_inference_steps=args.steps,
            guidance=guidance if guided else None,
            generator=gen,
            output_type="ids",
        )
        seqs = out.sequences
        with torch.no_grad():
            x = F.one_hot(seqs, tm.vocab_size).float()
            # A guided call already scored its sequences (`out.rewards` = `guidance.score`).
            score = out.rewards if guided else guidance.score(x, attention_mask=am_dev)
            total = score.float().cpu()
            terms = (
                {name: part(x, attention_mask=am_dev).float().cpu() for name, part in parts.items()}
                if len(parts) > 1
                else None
            )
        kl = torch.zeros(B)
        for entry in out.trace or []:
            if entry.get("guided") and entry.get("kl_after_per_sample") is not None:
                kl += torch.tensor(entry["kl_after_per_sample"])
        return seqs.cpu(), total, terms, kl, time.perf_counter() - t0

    unguided = sample(False) if args.compare else None
    seqs, total, terms, kl, seconds = sample(True)

    def decode(row):
        return tm.tokenizer.decode(row.tolist(), skip_special_tokens=True).strip()

    out_rows = []
    for b, (pid, sid) in enumerate(batch):
        gen_ids = seqs[b, width:]
        row: dict[str, Any] = {
            "prompt_id": pid,
            "sample_id": sid,
            "prompt": prompts[pid],
            "text": decode(gen_ids),
            "token_ids": gen_ids.tolist(),
            "reward": round(float(total[b]), 6),
            "reward_unguided": None,
            "kl": round(float(kl[b]), 6),
            "seconds": round(seconds / B, 4),
        }
        if terms is not None:
            row["reward_terms"] = {k: round(float(v[b]), 6) for k, v in terms.items()}
        if unguided is not None:
            u_seqs, u_total, u_terms, _, u_seconds = unguided
            row["reward_unguided"] = round(float(u_total[b]), 6)
            row["text_unguided"] = decode(u_seqs[b, width:])
            row["seconds_unguided"] = round(u_seconds / B, 4)
            if u_terms is not None:
                row["reward_terms_unguided"] = {
                    k: round(float(v[b]), 6) for k, v in u_terms.items()
                }
        row.update({"seed": seed, "config_hash": config_hash, "run_hash": run_hash})
        out_rows.append(row)
    return out_rows


def _join(prompt: str, text: str) -> str:
    return f"{prompt} {text}".strip() if prompt else text


def _format_row(row: dict[str, Any], *, compare: bool) -> str:
    head = f"--- prompt {row['prompt_id']}, sample {row['sample_id']}: reward {row['reward']:+.3f}"
    if compare and row.get("reward_unguided") is not None:
        head += f" (unguided {row['reward_unguided']:+.3f})"
    head += f", KL {row['kl']:.2f}"
    lines = [head, f"guided:   {_join(row['prompt'], row['text'])}"]
    if compare and row.get("text_unguided") is not None:
        lines.append(f"unguided: {_join(row['prompt'], row['text_unguided'])}")
    return "\n".join(lines)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _summary(
    rows: list[dict[str, Any]], n_new: int, seconds: float, out_path: Path | None, world: int
) -> str:
    def fmt(v: float | None, spec: str, width: int) -> str:
        return f"{'-':>{width}}" if v is None else format(v, spec)

    guided = _mean([r["reward"] for r in rows])
    unguided = _mean([r["reward_unguided"] for r in rows if r.get("reward_unguided") is not None])
    kl = _mean([r["kl"] for r in rows])
    sec = _mean([r["seconds"] for r in rows])
    sec_u = _mean([r["seconds_unguided"] for r in rows if r.get("seconds_unguided") is not None])
    where = f" -> {out_path}" if out_path is not None else ""
    procs = f" on {world} processes" if world > 1 else ""
    lines = [
        f"{len(rows)} samples ({n_new} new){procs} in {seconds:.1f} s{where}",
        f"{'':10}{'mean reward':>12}{'mean KL':>10}{'s/sample':>10}",
        f"{'unguided':10}{fmt(unguided, '+12.3f', 12)}{'-':>10}{fmt(sec_u, '10.2f', 10)}",
        f"{'guided':10}{fmt(guided, '+12.3f', 12)}{fmt(kl, '10.2f', 10)}{fmt(sec, '10.2f', 10)}",
    ]
    return "\n".join(lines)
