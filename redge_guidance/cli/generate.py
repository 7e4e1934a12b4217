"""`redge-guidance generate`: steer a masked diffusion text model toward a reward, in batches.

Work plan (`plan.py`). The job is the list of `(prompt_id, sample_id)` pairs in prompt-major order,
cut into batches of `--batch-size`. Batch `k` is generated with its own seed, derived from `--seed`
and `k`, and under `accelerate launch` process `r` of `n` takes the batches `k` with
`k % n == r`. So a row depends only on `(--seed, --batch-size, its batch)`: the same command gives
the same rows with one process or many, and after an interruption `--resume` regenerates an
unfinished batch exactly and writes only its missing rows (same machine, same dtype). Rows are
written as batches finish; the output file is created by the first row.

"Unguided" means the same batch, same seed, sampled without guidance (`--compare`, on by default):
the scheduler draws the same uniforms, so the two rows differ only by what guidance changed. A
search that does not guide (`--n-opt-steps 0`, e.g. best-of-N over the model's samples) is
compared with the model's own sample of the same seed instead (run again without guidance it
would be itself).

Judges (`--judge`, on where the `text` extra is installed and the embedded model runs): each
guided and unguided continuation is also scored by VADER's compound, by its Pattern polarity and by
its perplexity under the shipped judge LM (`redge_guidance.text.judges`), models that did not steer
it; the rows record `vader`, `pattern`, `ppl` (and `_unguided`), the printout and the summary show
them.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from .checks import debug_enabled
from .generate_flags import add_generate_flags
from .io import (
    JsonlWriter,
    iter_rows,
    merge_shards,
    repair_trailing_line,
    row_key,
    shard_paths,
)
from .judging import judge_rows, load_judges
from .load import Models, encode_batch, load_models, one_line
from .options import (
    ESTIMATOR_FLAGS,
)
from .plan import (
    CLI_GUIDANCE_DEFAULTS,
    DEFAULT_PROMPTS,
    DEFAULT_REWARD,
    GeneratePlan,
    make_plan,
)
from .report import Summary, format_row, setting_lines
from .search_rows import search_rows

__all__ = [
    "add_parser",
    "run",
    "CLI_GUIDANCE_DEFAULTS",
    "DEFAULT_PROMPTS",
    "DEFAULT_REWARD",
    "ESTIMATOR_FLAGS",
]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "generate",
        help="generate text steered toward a reward (embedded Shakespeare model by default)",
        description=(
            "Generate text with a masked diffusion model, steered toward a reward by ReDGE\n"
            "guidance. With no arguments: the embedded Shakespeare model, two prompts, reward\n"
            "sentiment:positive; prints guided and unguided texts with their reward, an\n"
            "independent judges (VADER, Pattern) and fluency (judge-LM perplexity), and a summary."
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
    add_generate_flags(p)
    p.set_defaults(run=run)
    return p


# --------------------------------------------------------------------------------- batches


class RunFailure(RuntimeError):
    """A failure while generating (after the checks): one line, exit status 1."""


@dataclass
class _Sampled:
    seqs: Any  # (B, width + L) ids, on the CPU
    total: Any  # (B,) rewards
    terms: dict[str, Any] | None  # each term's (B,) rewards, with several --reward
    kl: Any  # (B,) KL paid by the guidance
    seconds: float


def _sample(plan: GeneratePlan, m: Models, ids: Any, am: Any, seed: int, guided: bool):
    """One pipeline call on a batch: its sequences, rewards, KL and wall time."""
    import torch
    import torch.nn.functional as F

    args = plan.args
    B = ids.shape[0]
    gen = torch.Generator("cpu").manual_seed(seed)
    t0 = time.perf_counter()
    out = m.pipe(
        input_ids=ids,
        attention_mask=am,
        num_inference_steps=args.steps,
        guidance=m.guidance if guided else None,
        generator=gen,
        output_type="ids",
    )
    seqs = out.sequences
    am_dev = am.to(m.device)
    with torch.no_grad():
        x = F.one_hot(seqs, m.tm.vocab_size).float()
        # A guided call already scored its sequences (`out.rewards` = `guidance.score`).
        score = out.rewards if guided else m.guidance.score(x, attention_mask=am_dev)
        terms = None
        if len(m.parts) > 1:
            terms = {k: p(x, attention_mask=am_dev).float().cpu() for k, p in m.parts.items()}
    kl = torch.zeros(B)
    for entry in out.trace or []:
        if entry.get("guided") and entry.get("kl_after_per_sample") is not None:
            kl += torch.tensor(entry["kl_after_per_sample"])
    return _Sampled(seqs.cpu(), score.float().cpu(), terms, kl, time.perf_counter() - t0)


def _generate_batch(
    plan: GeneratePlan, m: Models, k: int, keys: list[tuple[int, int]]
) -> list[dict[str, Any]]:
    """The rows of batch `k` (guided, and unguided with the same seed under `--compare`)."""
    if plan.search is not None:
        return _search_batch(plan, m, k, keys)
    tok = m.tm.tokenizer
    ids, am, width = encode_batch(plan, m, keys)  # (B, width + L)
    B = len(keys)
    seed = plan.job.seed(plan.args.seed, k)
    unguided = _sample(plan, m, ids, am, seed, guided=False) if plan.args.compare else None
    guided = _sample(plan, m, ids, am, seed, guided=True)

    def decode(row: Any) -> str:
        return tok.decode(row.tolist(), skip_special_tokens=True).strip()

    def terms(t: dict[str, Any], b: int) -> dict[str, float]:
        return {name: round(float(v[b]), 6) for name, v in t.items()}

    rows = []
    for b, (pid, sid) in enumerate(keys):
        gen_ids = guided.seqs[b, width:]
        row: dict[str, Any] = {
            "prompt_id": pid,
            "sample_id": sid,
            "prompt": plan.prompts[pid],
            "text": decode(gen_ids),
            "token_ids": gen_ids.tolist(),
            "reward": round(float(guided.total[b]), 6),
            "reward_unguided": None,
            "kl": round(float(guided.kl[b]), 6),
            "seconds": round(guided.seconds / B, 4),
        }
        if guided.terms is not None:
            row["reward_terms"] = terms(guided.terms, b)
        if unguided is not None:
            _put_unguided(row, unguided, b, width, decode)
        row.update(
            {"seed": seed, "config_hash": plan.config.config_hash(), "run_hash": plan.run_hash}
        )
        rows.append(row)
    return rows


def _put_unguided(row: dict[str, Any], unguided: _Sampled, b: int, width: int, decode) -> None:
    """The unguided sample `b` of a batch into `row` (reward, text, ids, time, terms)."""
    B = unguided.seqs.shape[0]
    row["reward_unguided"] = round(float(unguided.total[b]), 6)
    row["text_unguided"] = decode(unguided.seqs[b, width:])
    row["token_ids_unguided"] = unguided.seqs[b, width:].tolist()
    row["seconds_unguided"] = round(unguided.seconds / B, 4)
    if unguided.terms is not None:
        row["reward_terms_unguided"] = {
            name: round(float(v[b]), 6) for name, v in unguided.terms.items()
        }


def _search_batch(
    plan: GeneratePlan, m: Models, k: int, keys: list[tuple[int, int]]
) -> list[dict[str, Any]]:
    """The rows of batch `k` under `--search`. A search that does not guide is compared with the
    model's own sample of the same seed (the same search without guidance would be itself)."""
    if plan.config.n_opt_steps > 0 or not plan.args.compare:
        return search_rows(plan, m, k, keys)
    args = argparse.Namespace(**{**vars(plan.args), "compare": False})
    rows = search_rows(dataclasses.replace(plan, args=args), m, k, keys)
    ids, am, width = encode_batch(plan, m, keys)
    unguided = _sample(plan, m, ids, am, plan.job.seed(plan.args.seed, k), guided=False)
    tok = m.tm.tokenizer

    def decode(row: Any) -> str:
        return tok.decode(row.tolist(), skip_special_tokens=True).strip()

    for b, row in enumerate(rows):  # one row per key: `--keep-particles` turns `--compare` off
        _put_unguided(row, unguided, b, width, decode)
    return rows


# --------------------------------------------------------------------------------- run


def _prepare_output(plan: GeneratePlan) -> None:
    """`--overwrite`: remove the old output; `--resume`: drop a torn last line of our file."""
    out_path, my_path, dist = plan.out_path, plan.my_path, plan.dist
    if out_path is None or my_path is None:
        return
    if plan.args.overwrite:
        my_path.unlink(missing_ok=True)
        if dist.main:
            out_path.unlink(missing_ok=True)
            for shard in shard_paths(out_path):
                if dist.world == 1 or not str(shard).endswith(f"-of-{dist.world}.jsonl"):
                    shard.unlink(missing_ok=True)
    if plan.args.resume:
        repair_trailing_line(my_path)


def _failure(plan: GeneratePlan, k: int, err: Exception, written: int) -> RunFailure:
    specs = ", ".join(f"`--reward {s.text}`" for s in plan.specs)
    where = (
        f"; the {written} row(s) written so far are complete: fix the cause and rerun with "
        "`--resume`"
        if plan.out_path is not None
        else ""
    )
    return RunFailure(
        f"batch {k} failed with {specs}: {type(err).__name__}: {one_line(err)}{where}. "
        "`--debug` shows the traceback."
    )


def _loop(plan: GeneratePlan, m: Models, summary: Summary, judges: Any = None) -> int:
    """Generate this process's missing rows, writing them as batches finish; returns their count."""
    from tqdm.auto import tqdm

    args = plan.args
    bar = tqdm(
        total=plan.job.my_size(),
        initial=plan.n_done_mine(),
        unit="sample",
        desc="generate",
        disable=args.quiet or not plan.dist.main,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    writer = JsonlWriter(plan.my_path) if plan.my_path is not None else None
    n_new = 0
    try:
        for k, keys in plan.todo():
            try:
                rows = _generate_batch(plan, m, k, keys)
            except Exception as err:
                if debug_enabled(args):
                    raise
                raise _failure(plan, k, err, n_new) from err
            rows = [r for r in rows if row_key(r) not in plan.done]
            if judges is not None and rows:
                judge_rows(judges, m.tm.tokenizer, rows)
            if writer is not None:
                writer.write_rows(rows)
            else:
                for r in rows:
                    bar.write(format_row(r, compare=args.compare), file=sys.stdout)
                    summary.add(r)
                sys.stdout.flush()
            n_new += len(rows)
            bar.update(len(rows))
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    return n_new


def run(args: argparse.Namespace) -> int:
    """Run `generate` (see the module docstring); raises `UsageError` on bad input."""
    t_start = time.perf_counter()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # prompts files are local
    prog = f"redge-guidance {args.command}" if getattr(args, "command", None) else "generate"
    plan = make_plan(args, prog)  # 1. everything checkable without a model
    models = load_models(plan)  # 2. tokenizer, model, rewards, guidance
    judges = load_judges(plan, models)
    _prepare_output(plan)
    plan.dist.barrier()  # every process has checked the output before anyone writes to it
    summary = Summary()
    if plan.dist.main and plan.out_path is None and plan.job.total > len(plan.done):
        print("\n".join(setting_lines(plan, judged=judges is not None)), flush=True)
    n_new = _loop(plan, models, summary, judges)  # 3. the batches
    plan.dist.barrier()
    if not plan.dist.main:
        return 0
    out_path = plan.out_path
    # Several processes wrote shards; a single one may find leftovers of an earlier such run.
    if out_path is not None and (plan.dist.world > 1 or shard_paths(out_path)):
        merge_shards(out_path, shard_paths(out_path))
    if not args.quiet:
        if out_path is not None:
            for row in iter_rows(out_path, strict=False):
                summary.add(row)
        seconds = time.perf_counter() - t_start
        print(summary.format(n_new, seconds, out_path, plan.dist.world), file=sys.stderr)
    return 0
