"""Token layout of the Sudoku prior: `[81 clue cells] [SEP] [81 solution cells]`.

Vocabulary (15 ids): `[PAD] [UNK] [CLS] [SEP] [MASK]`, then `0` (blank clue) and digits
`1`..`9`, so digit `d` is token `DIGIT_OFFSET + d`. Clue cells and the separator are never
masked; solution cells whose clue is given are fixed to the clue; only the blank cells of the
solution half are generated.
"""

from __future__ import annotations

import torch

PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = 0, 1, 2, 3, 4
DIGIT_OFFSET = 5  # token id of "0"; digit d has id DIGIT_OFFSET + d
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [str(d) for d in range(10)]
VOCAB_SIZE = len(VOCAB)
SEQ_LEN = 163
SOLUTION_START = 82  # position of the first solution cell
SOLUTION_POSITIONS = list(range(SOLUTION_START, SOLUTION_START + 81))
DIGIT_TOKEN_IDS = [DIGIT_OFFSET + d for d in range(1, 10)]


def encode_puzzles(puzzles: torch.Tensor) -> torch.Tensor:
    """`(B, 81)` digits (0 = blank) -> `(B, 163)` model input with blank solution cells masked."""
    puzzles = puzzles.long()
    B = puzzles.shape[0]
    clue_part = DIGIT_OFFSET + puzzles
    sep = torch.full((B, 1), SEP_ID, dtype=torch.long, device=puzzles.device)
    sol = torch.where(puzzles > 0, DIGIT_OFFSET + puzzles, torch.full_like(puzzles, MASK_ID))
    return torch.cat([clue_part, sep, sol], dim=1)


def encode_pairs(puzzles: torch.Tensor, solutions: torch.Tensor) -> torch.Tensor:
    """`(B, 81)` puzzles and solutions -> `(B, 163)` clean training sequences."""
    x = encode_puzzles(puzzles)
    x[:, SOLUTION_START:] = DIGIT_OFFSET + solutions.long()
    return x


def fixed_positions(puzzles: torch.Tensor) -> torch.Tensor:
    """`(B, 163)` bool: True where the token is given (clues, separator, given solution cells)."""
    B = puzzles.shape[0]
    fixed = torch.ones(B, SEQ_LEN, dtype=torch.bool, device=puzzles.device)
    fixed[:, SOLUTION_START:] = puzzles > 0
    return fixed


def decode_solutions(sequences: torch.Tensor) -> torch.Tensor:
    """`(B, 163)` token ids -> `(B, 81)` digits, 0 where a cell holds no digit token."""
    sol = sequences[:, SOLUTION_START:] - DIGIT_OFFSET
    return torch.where((sol >= 1) & (sol <= 9), sol, torch.zeros_like(sol))


def build_tokenizer():
    """A character-level `PreTrainedTokenizerFast` over `VOCAB` (needs `tokenizers`)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"\[[A-Z]+\]|\S"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
