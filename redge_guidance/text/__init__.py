"""Text generation tooling of `redge-guidance generate`: the embedded generator and named rewards.

- `redge_guidance.text.models`: load the embedded Shakespeare generator (or any masked LM), its
  tokenizer and BERT id map, all-MiniLM-L6-v2 and the committed sentiment head.
- `redge_guidance.text.specs`: the ``--reward NAME[:ARGUMENT][=WEIGHT]`` grammar and
  `build_reward`, which turns specs into one `rewards.Reward` for the generator's vocabulary.

Importing this package costs torch only; transformers is imported when a model is loaded.
"""

from __future__ import annotations

from .models import (
    BERT_IDS_FILENAME,
    DEFAULT_MODEL_DIR,
    EMBEDDED_MODEL_NAMES,
    SENTIMENT_HEAD_DIR,
    SentimentHeadReward,
    TextModel,
    check_model_source,
    find_minilm_dir,
    load_bert_ids,
    load_minilm,
    load_sentiment_head,
    load_text_model,
    load_text_tokenizer,
    resolve_model_source,
    sentiment_reward,
)
from .specs import (
    REWARD_NAMES,
    RewardSpec,
    build_reward,
    check_reward_dependencies,
    parse_reward_spec,
    valid_reward_specs,
)

__all__ = [
    "BERT_IDS_FILENAME",
    "DEFAULT_MODEL_DIR",
    "EMBEDDED_MODEL_NAMES",
    "REWARD_NAMES",
    "SENTIMENT_HEAD_DIR",
    "RewardSpec",
    "SentimentHeadReward",
    "TextModel",
    "build_reward",
    "check_model_source",
    "check_reward_dependencies",
    "find_minilm_dir",
    "load_bert_ids",
    "load_minilm",
    "load_sentiment_head",
    "load_text_model",
    "load_text_tokenizer",
    "parse_reward_spec",
    "resolve_model_source",
    "sentiment_reward",
    "valid_reward_specs",
]
