"""Rewards on relaxed one-hot token sequences, for inference-time guidance of discrete diffusion.

Every reward maps `x` of shape `(B, L, V)` (rows on the probability simplex: one-hot, soft or
straight-through) to float32 scores `(B,)`, higher is better; see `rewards.Reward`. Importing
this package imports torch only; transformers is needed only by the objects you pass in.
"""

from __future__ import annotations

from ._embedding import AssembledInputs, EmbeddingInputReward
from .base import Clipped, Normalized, Reward, WeightedSum
from .bridge import BridgedReward, VocabularyBridge
from .classifier import SequenceClassifierReward
from .function import FunctionReward
from .language_model import LanguageModelReward
from .similarity import EmbeddingSimilarityReward
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
    "Normalized",
    "Reward",
    "SequenceClassifierReward",
    "SudokuReward",
    "TokenSetReward",
    "VocabularyBridge",
    "WeightedSum",
    "sudoku_unit_matrix",
    "sudoku_violations",
    "vader_lexicon_scores",
]
