"""Former home of the Shakespeare corpus tooling (kept for `load_bert_ids`).

The training-time tooling (corpus cleaning, sub-vocabulary tokenizer, token windows) lives next to
the training script, in `examples/text_corpus.py`; the run-time map of the embedded model's ids to
BERT ids is `redge_guidance.text.load_bert_ids`.
"""

from __future__ import annotations

from .text.models import BERT_IDS_FILENAME, load_bert_ids

__all__ = ["BERT_IDS_FILENAME", "load_bert_ids"]
