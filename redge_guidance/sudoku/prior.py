"""The Sudoku prior: the shipped masked LM, loading it, and the digit-only denoiser around it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from . import layout as sl

__all__ = ["DEFAULT_PRIOR_PATH", "DigitDenoiser", "load_prior"]

#: Folder of the shipped prior (config, fp16 safetensors, tokenizer, training record).
DEFAULT_PRIOR_PATH = os.path.join(
    os.path.dirname(os.path.dirname(__file__)), "assets", "sudoku_prior"
)


class DigitDenoiser(torch.nn.Module):
    """Wraps a masked LM so that only the digit tokens 1..9 can be proposed.

    Every other vocabulary entry (special tokens, the blank-clue token ``0``) gets logit
    ``finfo.min``: the scheduler then never draws it and the guidance never revives it (the
    estimators skip masked entries). With ``model=None`` the logits are 0 on the digits, the
    uniform "no prior" of :func:`solve_without_prior`.

    Args:
        model (`torch.nn.Module`, *optional*): maps ``input_ids`` `(B, 163)` to `.logits`
            `(B, 163, 15)`.
    """

    def __init__(self, model: torch.nn.Module | None = None):
        super().__init__()
        self.model = model
        allowed = torch.zeros(sl.VOCAB_SIZE, dtype=torch.bool)
        allowed[sl.DIGIT_TOKEN_IDS] = True
        self.register_buffer("allowed", allowed, persistent=False)

    @property
    def config(self) -> Any:  # the pipeline reads `config.vocab_size`
        return getattr(self.model, "config", None) or _VocabConfig()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.model is None:
            B, L = input_ids.shape
            logits = torch.zeros(B, L, sl.VOCAB_SIZE, device=input_ids.device)
        else:
            logits = self.model(input_ids=input_ids).logits.float()
        low = torch.finfo(logits.dtype).min
        return logits.masked_fill(~self.allowed.to(logits.device), low)


@dataclass
class _VocabConfig:
    vocab_size: int = sl.VOCAB_SIZE
    pad_token_id: int = sl.PAD_ID


def load_prior(path: str | os.PathLike[str] | None, device: torch.device) -> torch.nn.Module:
    """The masked LM saved at `path` (None: the shipped prior), float32, in eval mode."""
    from transformers import AutoModelForMaskedLM

    path = os.fspath(path) if path is not None else DEFAULT_PRIOR_PATH
    if not os.path.isdir(path):
        raise ValueError(
            f"`path` must be a folder holding a saved masked LM (config.json, model.safetensors), "
            f"got {path!r}. Pass `path=None` for the shipped prior."
        )
    model = AutoModelForMaskedLM.from_pretrained(path, dtype=torch.float32)
    if getattr(model.config, "vocab_size", None) != sl.VOCAB_SIZE:
        raise ValueError(
            f"The model at `path={path!r}` has vocab_size {model.config.vocab_size}, expected "
            f"{sl.VOCAB_SIZE} (the Sudoku layout of redge_guidance.sudoku.layout)."
        )
    return model.to(device).eval()
