"""What `redge-guidance generate` will do, decided before any model loads.

:func:`make_plan` checks every argument that can be checked without a model (flag combinations,
sizes, the output path, prompts, reward specs, guidance settings, the rows already written) and
returns a :class:`GeneratePlan`: the validated settings and the work, a :class:`Job` of batches of
`(prompt_id, sample_id)` computed on demand (a huge `--num-samples` never materialises its keys).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._seeding import derive_seed
from .checks import check_output_path, has_content
from .io import UsageError, iter_rows, read_prompts, row_key, shard_path, shard_paths
from .judging import resolve_judges
from .options import build_guidance_config, guidance_settings, to_flags
from .search import SearchSettings, check_ranking, check_search, search_settings

__all__ = [
    "CLI_GUIDANCE_DEFAULTS",
    "DEFAULT_PROMPTS",
    "DEFAULT_REWARD",
    "Dist",
    "GeneratePlan",
    "Job",
    "make_plan",
]

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
# Library argument names in messages -> the flags of `generate`.
GENERATE_FLAGS = {
    "num_inference_steps": "--steps",
    "length": "--length",
    "temperature": "--temperature",
    "batch_size": "--batch-size",
}


class Dist:
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


@dataclass(frozen=True)
class Job:
    """The `(prompt_id, sample_id)` pairs in prompt-major order, cut into batches of `batch_size`;
    process `rank` of `world` takes the batches `k` with `k % world == rank`."""

    num_prompts: int
    num_samples: int
    batch_size: int
    rank: int = 0
    world: int = 1

    @property
    def total(self) -> int:
        return self.num_prompts * self.num_samples

    @property
    def num_batches(self) -> int:
        return -(-self.total // self.batch_size)

    def keys(self, k: int) -> list[tuple[int, int]]:
        """The pairs of batch `k`."""
        start = k * self.batch_size
        stop = min(self.total, start + self.batch_size)
        return [divmod(i, self.num_samples) for i in range(start, stop)]

    def my_batches(self) -> range:
        return range(self.rank, self.num_batches, self.world)

    def my_size(self) -> int:
        """Number of pairs in this process's batches."""
        n = len(self.my_batches()) * self.batch_size
        last = self.num_batches - 1
        if last >= 0 and last % self.world == self.rank:
            n -= self.num_batches * self.batch_size - self.total
        return n

    @staticmethod
    def seed(seed: int, k: int) -> int:
        """Seed of batch `k`: a row depends only on `--seed`, `--batch-size` and its batch."""
        return derive_seed("redge-guidance-cli", seed, k)


@dataclass
class GeneratePlan:
    """Validated settings of a `generate` run and the work left (see :func:`make_plan`)."""

    args: argparse.Namespace
    prompts: list[str]
    specs: list[Any]
    config: Any  # GuidanceConfig
    run_hash: str
    job: Job
    dist: Dist
    out_path: Path | None = None
    my_path: Path | None = None
    done: set[tuple[int, ...]] = field(default_factory=set)  # the row keys already written
    search: SearchSettings | None = None
    # Why the judges are off (`--no-judge`, a missing extra, another model); None when on.
    judge_off: str | None = None

    def row_keys(self, key: tuple[int, int]) -> list[tuple[int, ...]]:
        """The row keys a `(prompt_id, sample_id)` writes (one per particle with
        `--keep-particles`)."""
        if self.search is None or not self.search.keep_particles:
            return [key]
        return [(*key, j) for j in range(self.search.rows_per_key)]

    def todo(self) -> Iterator[tuple[int, list[tuple[int, int]]]]:
        """`(k, keys)` of this process's batches with a row still missing."""
        for k in self.job.my_batches():
            keys = self.job.keys(k)
            if any(rk not in self.done for key in keys for rk in self.row_keys(key)):
                yield k, keys

    def n_done_mine(self) -> int:
        """`(prompt_id, sample_id)` pairs of this process with every row written."""
        pairs = {key[:2] for key in self.done}
        complete = [k for k in pairs if all(rk in self.done for rk in self.row_keys(k))]
        return sum(1 for pid, sid in complete if self._mine(pid, sid))

    def _mine(self, pid: int, sid: int) -> bool:
        index = pid * self.job.num_samples + sid
        if not (0 <= pid < self.job.num_prompts and 0 <= sid < self.job.num_samples):
            return False
        return (index // self.job.batch_size) % self.job.world == self.job.rank


def check_arguments(args: argparse.Namespace) -> None:
    """Flag combinations and sizes: everything decidable from the arguments alone."""
    keep = getattr(args, "keep_particles", False)
    if args.compare and keep:
        raise UsageError(
            "`--compare` puts the unguided row beside each row of the same sample, but with "
            "`--keep-particles` rows are particles of two separate populations: nothing to pair. "
            "Drop `--compare` (it is off by default with `--keep-particles`)."
        )
    if args.compare is None:  # on by default, except where it means nothing
        args.compare = not keep
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
            f"`--temperature` must be a finite number >= 0, got {args.temperature}; use 1.0 to "
            "sample the model's distribution."
        )
    if args.steps > args.length:
        raise UsageError(
            f"`--steps` {args.steps} is more than `--length` {args.length}: each step unmasks at "
            f"least one of the {args.length} new tokens, so the extra steps would do nothing. "
            f"Use `--steps {args.length}` or fewer."
        )
    if args.output:
        check_output_path(args.output)


def _run_hash(
    args: argparse.Namespace,
    prompts: list[str],
    specs: list[Any],
    config_json: str,
    search: SearchSettings | None = None,
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
    if args.ranking != "proposal":  # absent by default: earlier runs keep their hash
        payload["ranking"] = args.ranking
    if search is not None:  # absent for `--search none`: the hash of plain runs is unchanged
        payload["search"] = search.to_dict()
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def _read_done(plan: GeneratePlan) -> None:
    """Refuse an existing output without `--resume`/`--overwrite`; with `--resume`, collect the
    keys already written (every file: the output and the shards of any process count)."""
    args, out_path = plan.args, plan.out_path
    assert out_path is not None
    existing = [p for p in [out_path, *shard_paths(out_path)] if has_content(p)]
    if existing and not (args.resume or args.overwrite):
        raise UsageError(
            f"`--output` {str(existing[0])!r} exists; pass `--resume` to complete it or "
            "`--overwrite` to start over."
        )
    if not args.resume:
        return
    for path in existing:
        for row in iter_rows(path, strict=(path == plan.my_path)):
            if row.get("run_hash") != plan.run_hash:
                raise UsageError(
                    f"`--resume`: {str(path)!r} holds rows of another run (run_hash "
                    f"{row.get('run_hash')!r}, this run {plan.run_hash!r}: the prompts, model, "
                    "reward, guidance or generation settings differ). Rerun with the original "
                    "settings, or use a new `--output`."
                )
            plan.done.add(row_key(row))


def make_plan(args: argparse.Namespace, prog: str) -> GeneratePlan:
    """Check the arguments and decide the work, loading no model (`UsageError` on bad input)."""
    check_arguments(args)
    judge_off = resolve_judges(args)
    if args.prompts is not None:
        prompts = read_prompts(args.prompts, args.prompt_column)
    else:
        prompts = list(args.prompt) if args.prompt is not None else list(DEFAULT_PROMPTS)

    from ..text_rewards import (
        check_model_source,
        check_reward_dependencies,
        parse_reward_spec,
        resolve_model_source,
    )

    try:
        specs = [parse_reward_spec(s) for s in (args.reward or [DEFAULT_REWARD])]
        check_reward_dependencies(specs)
        check_model_source(resolve_model_source(args.model))
    except ValueError as err:
        raise UsageError(to_flags(str(err), GENERATE_FLAGS)) from None
    config = build_guidance_config(guidance_settings(args, CLI_GUIDANCE_DEFAULTS, prog), prog)
    check_ranking(args.ranking, args.order)
    search = search_settings(args)
    if search is not None:
        largest = min(args.batch_size, len(prompts) * args.num_samples)
        check_search(
            search,
            guided=config.n_opt_steps > 0,
            handoff=config.handoff,
            argmax_flag=("--temperature 0", "--temperature 1") if args.temperature == 0 else None,
            unmasking=args.order,
            steps=args.steps,
            rows=largest,
            ranking=args.ranking,
        )
    dist = Dist()
    plan = GeneratePlan(
        args=args,
        prompts=prompts,
        specs=specs,
        config=config,
        run_hash=_run_hash(args, prompts, specs, config.to_json(), search),
        job=Job(len(prompts), args.num_samples, args.batch_size, dist.rank, dist.world),
        dist=dist,
        search=search,
        judge_off=judge_off,
    )
    if args.output:
        plan.out_path = Path(args.output)
        plan.my_path = (
            plan.out_path if dist.world == 1 else shard_path(plan.out_path, dist.rank, dist.world)
        )
        _read_done(plan)
    return plan
