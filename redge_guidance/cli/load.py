"""Loading what `redge-guidance generate` runs: tokenizer, text model, rewards, guidance, pipeline.

Called after :func:`~redge_guidance.cli.plan.make_plan` has checked everything that needs no model;
the checks here need the tokenizer (prompt lengths against the model's positions) or the reward
itself (a `module.path:callable` reward is called once on a test input before any output exists).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checks import debug_enabled, quiet_libraries, resolve_device
from .io import UsageError
from .options import to_flags
from .plan import GENERATE_FLAGS, GeneratePlan

__all__ = ["Models", "encode_batch", "load_models", "one_line"]

logger = logging.getLogger("redge_guidance.cli")


@dataclass
class Models:
    """What the loop needs: the text model, rewards, guidance hook and pipeline."""

    tm: Any  # TextModel
    parts: dict[str, Any]
    guidance: Any  # RewardGuidance
    reward: Any  # the (weighted sum of) reward(s), what `--search` scores
    pipe: Any  # MaskedDiffusionPipeline
    device: Any


def _load_tokenizer(plan: GeneratePlan):
    """The tokenizer (left padding), its model config and mask id; checks that the prompts fit."""
    from ..text_rewards import load_text_tokenizer, resolve_model_source

    args = plan.args
    source = resolve_model_source(args.model)
    if Path(source).expanduser().is_dir():
        # Everything is local (the embedded model, MiniLM from its pip package): never wait on
        # the network. A Hub id leaves the user's setting alone.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    quiet_libraries(args.quiet)
    try:
        tokenizer, model_config, mask_id = load_text_tokenizer(
            source, trust_remote_code=args.trust_remote_code
        )
    except ValueError as err:
        raise UsageError(to_flags(str(err), GENERATE_FLAGS)) from None
    tokenizer.padding_side = "left"
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in plan.prompts]
    max_pos = getattr(model_config, "max_position_embeddings", None)
    longest = max(lengths)
    if isinstance(max_pos, int) and longest + args.length > max_pos:
        raise UsageError(
            f"`--length` {args.length} plus the longest prompt ({longest} tokens) exceeds the "
            f"model's {max_pos} positions; use `--length {max(1, max_pos - longest)}` or "
            "shorter prompts."
        )
    if tokenizer.pad_token_id is None and len(set(lengths)) > 1:
        raise UsageError(
            f"the tokenizer of `--model` {args.model!r} has no pad token, so prompts of "
            f"different lengths ({min(lengths)} to {longest} tokens) cannot be batched. Pass "
            "prompts of equal length, or a model whose tokenizer has a pad token."
        )
    return tokenizer, model_config, mask_id


def load_models(plan: GeneratePlan) -> Models:
    """Tokenizer, model, rewards, guidance and pipeline (bad values: one-line `UsageError`)."""
    import torch

    from ..guidance import RewardGuidance
    from ..text_rewards import build_reward, load_text_model

    args = plan.args
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device, plan.dist.state)
    dtype = getattr(torch, args.dtype)
    tokenizer, model_config, mask_id = _load_tokenizer(plan)
    logger.info("loading the model %s", args.model or "embedded")
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
        reward, parts = build_reward(plan.specs, tm, device=device, dtype=dtype)
        _probe_user_rewards(plan, tm, parts, device)
        guidance = RewardGuidance(reward, plan.config, mask_token_id=tm.mask_token_id)
        _check_search_reward(plan, reward)
    except ValueError as err:
        raise UsageError(to_flags(str(err), GENERATE_FLAGS)) from None

    from pipelines import MaskedDiffusionPipeline

    pipe = MaskedDiffusionPipeline.from_model(
        tm.model,
        tm.tokenizer,
        mask_token_id=tm.mask_token_id,
        unmasking=args.order,
        ranking=args.ranking,
        temperature=args.temperature,
    )
    pipe.set_progress_bar_config(disable=True)
    return Models(tm=tm, parts=parts, guidance=guidance, reward=reward, pipe=pipe, device=device)


def _check_search_reward(plan: GeneratePlan, reward: Any) -> None:
    """`--remask-select gradient` needs a reward with a gradient (known once it is built)."""
    config = plan.search.config if plan.search is not None else None
    if getattr(config, "select", None) == "gradient" and not getattr(
        reward, "differentiable", True
    ):
        raise UsageError(
            f"`--remask-select gradient` needs a differentiable reward, but "
            f"{type(reward).__name__} is not. Use `--remask-select confidence`."
        )


def encode_batch(plan: GeneratePlan, m: Models, keys: list[tuple[int, int]]):
    """The prompts of `keys`, left-padded, then `--length` mask tokens: `(ids, am, width)`, ids
    and attention mask `(B, width + L)` on the CPU, `width` the padded prompt length."""
    import torch

    tok = m.tm.tokenizer
    enc = tok(
        [plan.prompts[pid] for pid, _ in keys],
        add_special_tokens=False,
        padding=tok.pad_token_id is not None,  # left padding (`_load_tokenizer`)
        return_tensors="pt",
    )
    B, width, L = len(keys), enc["input_ids"].shape[1], plan.args.length
    mask = torch.full((B, L), m.tm.mask_token_id, dtype=torch.long)
    ids = torch.cat([enc["input_ids"].long(), mask], 1)
    am = torch.cat([enc["attention_mask"].long(), torch.ones((B, L), dtype=torch.long)], 1)
    return ids, am, width


def one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:300] or type(err).__name__


def _probe_user_rewards(plan: GeneratePlan, tm: Any, parts: dict[str, Any], device: Any) -> None:
    """Call each `module.path:callable` reward once on a test input (the first prompt, then uniform
    distributions over the vocabulary) before any output is written: a reward that raises or
    returns non-finite scores is refused in one line naming its spec."""
    import torch

    user = [label for spec, label in zip(plan.specs, parts, strict=True) if spec.kind == "callable"]
    if not user:
        return
    ids = tm.tokenizer(plan.prompts[0], add_special_tokens=False)["input_ids"]
    n, L, V = len(ids), plan.args.length, tm.vocab_size  # prompt, new tokens, vocab
    x = torch.full((1, n + L, V), 1.0 / V, device=device)
    if n:
        x[0, :n] = torch.nn.functional.one_hot(torch.tensor(ids), V).float().to(device)
    am = torch.ones((1, n + L), dtype=torch.long, device=device)
    for label in user:
        try:
            with torch.no_grad():
                score = parts[label](x, attention_mask=am)
        except Exception as err:  # noqa: BLE001 - the user's code: report it in one line
            if debug_enabled(plan.args):
                raise
            raise UsageError(
                f"`--reward {label}` raised {type(err).__name__}: {one_line(err)} (called on a "
                f"test input before generating). Fix the callable; `--debug` shows the traceback."
            ) from None
        if not bool(torch.isfinite(score).all()):
            raise UsageError(
                f"`--reward {label}` returned non-finite scores "
                f"{score.detach().flatten()[:4].tolist()} on a test input (the first prompt, then "
                "uniform tokens). A reward must return finite numbers."
            )
