"""Black-box rewards: wrap any Python function of texts or token ids."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from .base import Reward
from .sparse import SparseRows

__all__ = ["FunctionReward"]

_ON = ("text", "ids")


class FunctionReward(Reward):
    r"""A non-differentiable reward from a function of decoded texts or token-id lists.

    Each call takes the argmax token of every real position (where `attention_mask` is 1; for
    `SparseRows`, the id of the heaviest entry), and calls `fn` **once per batch**:

    - `on="text"`: `fn(list[str]) -> list[float]`, texts decoded with
      `tokenizer.batch_decode(ids, skip_special_tokens=True)`;
    - `on="ids"`: `fn(list[list[int]]) -> list[float]`, the raw ids (special tokens kept).

    `fn` never sees gradients: it runs under `torch.no_grad()` on a detached input, so guidance
    must use a score-function gradient (`differentiable = False`).

    Args:
        fn (`Callable`): the scoring function; returns one finite number per sample (a list,
            tuple, NumPy array or tensor of length B).
        tokenizer (*optional*): a Hugging Face tokenizer; required for `on="text"`.
        on (`"text"` or `"ids"`, defaults to `"text"`): what `fn` receives.
        vocab_size (`int`, *optional*): the vocabulary size to enforce on `x`; None accepts any.

    Example:

    ```python
    >>> import torch
    >>> from rewards import FunctionReward
    >>> count_sevens = FunctionReward(lambda seqs: [s.count(7) for s in seqs], on="ids")
    >>> x = torch.nn.functional.one_hot(torch.tensor([[7, 7, 1]]), 10).float()
    >>> count_sevens(x)
    tensor([2.])

    ```
    """

    differentiable = False

    def __init__(
        self,
        fn: Callable[[list[Any]], Sequence[float] | Tensor],
        tokenizer: Any = None,
        *,
        on: Literal["text", "ids"] = "text",
        vocab_size: int | None = None,
    ):
        super().__init__()
        if not callable(fn):
            raise ValueError(
                f"FunctionReward `fn` must be callable, got {type(fn).__name__}. Pass a function "
                "from a list of texts (or id lists) to a list of floats."
            )
        if on not in _ON:
            raise ValueError(f"FunctionReward `on` must be one of {_ON}, got {on!r}.")
        if on == "text" and tokenizer is None:
            raise ValueError(
                "FunctionReward(on='text') needs a `tokenizer` to decode the argmax tokens. "
                "Pass `tokenizer=`, or `on='ids'` to receive token-id lists."
            )
        if vocab_size is not None and (not isinstance(vocab_size, int) or vocab_size < 1):
            raise ValueError(
                f"FunctionReward `vocab_size` must be a positive int or None, got {vocab_size!r}."
            )
        self.fn = fn
        self.tokenizer = tokenizer
        self.on = on
        self.vocab_size = vocab_size

    def forward(self, x: Tensor, *, attention_mask: Tensor | None = None) -> Tensor:
        with torch.no_grad():
            ids = x.detach().argmax(-1)  # (B, L)
        return self._score_ids(ids, attention_mask)

    def forward_sparse(self, x: SparseRows, *, attention_mask: Tensor | None = None) -> Tensor:
        return self._score_ids(x.argmax_ids(), attention_mask)  # the heaviest entry's id

    def _score_ids(self, ids: Tensor, attention_mask: Tensor | None) -> Tensor:
        """Call `fn` on the real `ids` `(B, L)` of each row; scores `(B,)` on `ids`' device."""
        B, device = ids.shape[0], ids.device
        with torch.no_grad():
            ids = ids.cpu()
            if attention_mask is None:
                seqs = ids.tolist()
            else:
                keep = attention_mask.detach().cpu().bool()
                seqs = [row[k].tolist() for row, k in zip(ids, keep, strict=True)]
            inputs = (
                self.tokenizer.batch_decode(seqs, skip_special_tokens=True)
                if self.on == "text"
                else seqs
            )
            out = self.fn(inputs)
            try:
                scores = torch.as_tensor(
                    out.detach().cpu() if isinstance(out, Tensor) else out, dtype=torch.float32
                )
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"FunctionReward: `fn` must return {B} numbers, got {type(out).__name__} "
                    f"that is not convertible to a float tensor ({err})."
                ) from None
            if scores.shape != (B,):
                raise ValueError(
                    f"FunctionReward: `fn` must return one number per sample ({B}), got shape "
                    f"{tuple(scores.shape)} from {str(out)[:80]!r}."
                )
        return scores.to(device)

    def extra_repr(self) -> str:
        return f"fn={getattr(self.fn, '__name__', type(self.fn).__name__)}, on={self.on!r}"
