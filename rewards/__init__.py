"""Rewards on relaxed one-hot token sequences, for inference-time guidance of discrete diffusion.

Every reward maps `x` of shape `(B, L, V)` (rows on the probability simplex: one-hot, soft or
straight-through) to float32 scores `(B,)`, higher is better; see `rewards.Reward`. `x` may also
be a `rewards.SparseRows` (k weighted vocabulary entries per position), which rewards with a
sparse path score without building the `(B, L, V)` tensor. Importing this package imports
torch only; transformers is needed only by the objects you pass in.
"""

from __future__ import annotations

from .arithmetic import Clipped, Normalized, WeightedSum
from .base import Reward, check_scores, check_vocab_size, finite_checks
from .bridge import BridgedReward, VocabularyBridge
from .classifier import SequenceClassifierReward
from .embedding import AssembledInputs, EmbeddingInputReward, masked_mean
from .function import FunctionReward
from .language_model import LanguageModelReward
from .linear_head import LinearHeadReward
from .similarity import EmbeddingSimilarityReward
from .sparse import SparseRows
from .sudoku import SudokuReward, sudoku_unit_matrix, sudoku_violations
from .tokens import LexiconReward, TokenSetReward, vader_lexicon_scores

__all__ = [
    "AssembledInputs",
    "BridgedReward",
    "Clipped",
    "EmbeddingInputReward",
    "EmbeddingSimilarityReward",
    "FunctionReward",
    "LanguageModelReward",
    "LexiconReward",
    "LinearHeadReward",
    "Normalized",
    "Reward",
    "SequenceClassifierReward",
    "SparseRows",
    "SudokuReward",
    "TokenSetReward",
    "VocabularyBridge",
    "WeightedSum",
    "check_scores",
    "check_vocab_size",
    "finite_checks",
    "masked_mean",
    "sudoku_unit_matrix",
    "sudoku_violations",
    "vader_lexicon_scores",
]
