"""Reward from a sequence classifier: log-probability (or logit) of a target label."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .embedding import AssembledInputs, EmbeddingInputReward

__all__ = ["SequenceClassifierReward"]

_SCORES = ("log_prob", "logit")


class SequenceClassifierReward(EmbeddingInputReward):
    r"""Score of a target label under any transformers `AutoModelForSequenceClassification`.

    `x @ W` is fed as `inputs_embeds` (special tokens such as `[CLS]`/`[SEP]` are added by
    lookup, padding is packed away; see `rewards.embedding`). For a one-hot `x` the score equals
    the model's on the matching `input_ids`.

    Args:
        model: the classifier (frozen in place).
        label (`int` or `str`): the target class, as an index or a name in
            `model.config.label2id`.
        tokenizer (*optional*): the classifier's tokenizer (to find its special tokens).
        score (`"log_prob"` or `"logit"`, defaults to `"log_prob"`): `log_softmax(logits)[label]`
            (`logsigmoid(logits[label])` for `problem_type="multi_label_classification"`), or the
            raw logit (required for a one-output regression head).
        sub_vocab_ids, prefix_ids, suffix_ids, add_special_tokens: see `EmbeddingInputReward`.

    Example:

    ```python
    >>> import torch
    >>> from transformers import BertConfig, BertForSequenceClassification
    >>> from rewards import SequenceClassifierReward
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> cfg = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
    ...                  intermediate_size=32, num_labels=2)
    >>> reward = SequenceClassifierReward(BertForSequenceClassification(cfg), label=1)
    >>> x = torch.softmax(torch.randn(3, 7, 40), -1)
    >>> reward(x).shape
    torch.Size([3])

    ```
    """

    def __init__(
        self,
        model: nn.Module,
        label: int | str,
        tokenizer: Any = None,
        *,
        score: Literal["log_prob", "logit"] = "log_prob",
        sub_vocab_ids: Sequence[int] | Tensor | None = None,
        prefix_ids: Sequence[int] | None = None,
        suffix_ids: Sequence[int] | None = None,
        add_special_tokens: bool = True,
    ):
        if score not in _SCORES:
            raise ValueError(
                f"SequenceClassifierReward `score` must be one of {_SCORES}, got {score!r}."
            )
        super().__init__(
            model,
            tokenizer=tokenizer,
            sub_vocab_ids=sub_vocab_ids,
            prefix_ids=prefix_ids,
            suffix_ids=suffix_ids,
            add_special_tokens=add_special_tokens,
        )
        config = getattr(model, "config", None)
        num_labels = getattr(config, "num_labels", None)
        if isinstance(label, str):
            label2id = dict(getattr(config, "label2id", None) or {})
            if label not in label2id:
                raise ValueError(
                    f"SequenceClassifierReward `label`={label!r} is not a label of this model; "
                    f"config.label2id has {sorted(label2id)}. Pass one of those or an int index."
                )
            label = int(label2id[label])
        if (
            not isinstance(label, int)
            or isinstance(label, bool)
            or label < 0
            or (num_labels is not None and label >= num_labels)
        ):
            raise ValueError(
                f"SequenceClassifierReward `label` must be a class index in [0, num_labels="
                f"{num_labels}) or a label name, got {label!r}."
            )
        if score == "log_prob" and num_labels == 1:
            raise ValueError(
                "SequenceClassifierReward: the model has one output (a regression head), so "
                "`score='log_prob'` is meaningless. Pass `score='logit'`."
            )
        self.label = label
        self.score = score
        self.multi_label = getattr(config, "problem_type", None) == "multi_label_classification"

    def score_inputs(self, inputs: AssembledInputs) -> Tensor:
        logits = self.run_model(inputs).logits.float()  # (B, C)
        if self.score == "logit":
            return logits[:, self.label]
        if self.multi_label:
            return torch.nn.functional.logsigmoid(logits[:, self.label])
        return logits.log_softmax(-1)[:, self.label]

    def extra_repr(self) -> str:
        return f"label={self.label}, score={self.score!r}, " + super().extra_repr()
