"""The judges of `redge-guidance generate`'s rows: whether they run, loading them, scoring rows.

`--judge` (on by default where it can run) scores each guided and unguided continuation with
models that did not steer it (`redge_guidance.text.judges`): VADER's compound score of the decoded
text, its polarity under the Pattern lexicon (TextBlob; built apart from VADER, to which the
default reward's head was fitted) and the perplexity under the shipped judge LM, which reads the
embedded generator's token ids. Where they cannot run (no `text` extra, another `--model`) they
are off and the run says why; asked for there, they are a `UsageError` before any model loads.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from .io import UsageError

__all__ = ["NO_JUDGE", "judge_rows", "load_judges", "resolve_judges"]

#: Why the judges are off when the user turned them off.
NO_JUDGE = "`--no-judge`"


def resolve_judges(args: argparse.Namespace) -> str | None:
    """Whether to judge the rows (`args.judge` set to a bool); returns why they are off, if off.

    `--judge` (default on where possible) scores each continuation with VADER, Pattern and the
    judge LM. It needs the `text` extra and the embedded model (the judge LM reads its token
    ids): asked for explicitly where it cannot run, it is a `UsageError`; by default it is turned
    off and the reason is returned (the run prints it).
    """
    from ..text.judges import missing_judge_dependency
    from ..text_rewards import DEFAULT_MODEL_DIR, resolve_model_source

    asked = getattr(args, "judge", None)
    if asked is False:
        return NO_JUDGE
    reason = missing_judge_dependency()
    source = Path(resolve_model_source(args.model)).expanduser()
    if reason is None and not (source.is_dir() and source.resolve() == DEFAULT_MODEL_DIR.resolve()):
        reason = (
            f"the judge LM reads the embedded model's token ids, not those of `--model` "
            f"{args.model!r}"
        )
    if reason is not None and asked:
        raise UsageError(f"`--judge`: {reason}. Drop `--judge` (or pass `--no-judge`).")
    args.judge = reason is None
    return reason


def load_judges(plan: Any, m: Any) -> Any:
    """A `TextJudges` for the run (`plan`: its `GeneratePlan`, `m`: its `Models`), or None when
    the judges are off, saying why on stderr (unless `--quiet --no-judge`)."""
    if plan.judge_off is not None:
        if plan.dist.main and not (plan.args.quiet and plan.judge_off == NO_JUDGE):
            print(f"{_prog(plan)}: judges off: {plan.judge_off}.", file=sys.stderr)
        return None
    from ..text.judges import TextJudges

    return TextJudges(device=m.device)


def _prog(plan: Any) -> str:
    command = getattr(plan.args, "command", None)
    return f"redge-guidance {command}" if command else "generate"


def judge_rows(judges: Any, tok: Any, rows: list[dict[str, Any]]) -> None:
    """Add the judges' scores of each row's continuation(s): `vader`, `pattern`, `ppl` (and their
    `_unguided` twins)."""
    prompts = [tok(r["prompt"], add_special_tokens=False)["input_ids"] for r in rows]
    for suffix in ("", "_unguided"):
        todo = [i for i, r in enumerate(rows) if r.get("token_ids" + suffix) is not None]
        if not todo:
            continue
        scores = judges.score(
            [prompts[i] for i in todo],
            [rows[i]["token_ids" + suffix] for i in todo],
            [rows[i]["text" + suffix] for i in todo],
        )
        for i, s in zip(todo, scores, strict=True):
            rows[i]["vader" + suffix] = round(s.vader, 4)
            rows[i]["pattern" + suffix] = round(s.pattern, 4)
            rows[i]["ppl" + suffix] = round(s.ppl, 3) if math.isfinite(s.ppl) else None
