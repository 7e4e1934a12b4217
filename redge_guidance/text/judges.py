"""Judges of generated text that did not steer it: two sentiment lexicons and a fluency LM.

A reward that steers a generation is a poor witness of its success: the sampler climbs that
reward's weak spots too. These judges score the continuation (the tokens the run wrote) with
models the guidance never saw:

- :func:`vader_compound`: VADER's compound sentiment score of the decoded text, in `[-1, 1]`
  (rule-based, from the `nltk-vader-sentiment` package of the `text` extra);
- :func:`pattern_polarity`: the polarity of the decoded text under the Pattern lexicon, in
  `[-1, 1]` (TextBlob's `PatternAnalyzer`, from the `textblob` package of the `text` extra):
  De Smedt and Daelemans' lexicon of about 2,900 word senses, mostly adjectives, built apart
  from VADER. The default sentiment reward's head was fitted to VADER's valences, so VADER alone
  could credit the steering for finding VADER's own words; Pattern shares neither its scores nor
  its rules;
- :func:`continuation_perplexity`: perplexity of the continuation, read after its prompt, under
  the shipped judge LM (`redge_guidance/assets/judge_lm`: a 4-layer GPT-2 trained on the
  training plays with the embedded generator's tokenizer, so it reads the generator's token ids
  as they are; lower is more fluent);
- :class:`TextJudges`: all three, loaded once, scoring a batch of continuations.

Importing this module costs torch only: transformers, VADER and TextBlob are imported by the
loaders.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "JUDGE_LM_DIR",
    "JudgeScores",
    "TextJudges",
    "continuation_nll",
    "continuation_perplexity",
    "load_judge_lm",
    "load_pattern",
    "load_vader",
    "missing_judge_dependency",
    "pattern_polarity",
    "vader_compound",
]

#: The shipped judge LM: a small GPT-2 on the embedded generator's tokenizer (package data).
JUDGE_LM_DIR = Path(__file__).resolve().parents[1] / "assets" / "judge_lm"
_VADER_HINT = "`pip install 'redge-guidance[text]'` (or `pip install nltk-vader-sentiment`)"
_PATTERN_HINT = "`pip install 'redge-guidance[text]'` (or `pip install textblob`)"


def missing_judge_dependency() -> str | None:
    """Why the judges cannot run here (a missing package, with the command that installs it), or
    None when they can. Checks without importing anything."""
    if importlib.util.find_spec("vader") is None:
        return f"the VADER judge needs the `text` extra: {_VADER_HINT}"
    if importlib.util.find_spec("textblob") is None:
        return f"the Pattern judge needs the `text` extra: {_PATTERN_HINT}"
    if importlib.util.find_spec("transformers") is None:  # pragma: no cover - a core dependency
        return "the judge LM needs transformers: `pip install transformers`"
    return None


def load_judge_lm(folder: str | Path = JUDGE_LM_DIR, *, device: Any = None):
    """The judge LM (float32, eval mode): a `transformers.GPT2LMHeadModel`.

    Args:
        folder (`str` or `Path`, *optional*): a folder written by `save_pretrained`; default the
            shipped judge, which reads the embedded generator's token ids.
        device (`torch.device` or `str`, *optional*): where to put it (default the CPU).
    """
    from transformers import GPT2LMHeadModel

    if not Path(folder).is_dir():
        raise ValueError(
            f"`folder` {str(folder)!r} is not a folder; pass a judge LM saved with "
            f"`save_pretrained`, or leave it out for the shipped one ({JUDGE_LM_DIR})."
        )
    model = GPT2LMHeadModel.from_pretrained(str(folder), dtype=torch.float32).eval()
    return model if device is None else model.to(device)


def _rows(judge: Any, prompts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]]):
    """Each prompt + continuation, cut to the judge's context from the left."""
    if len(prompts) != len(continuations):
        raise ValueError(
            f"`prompts` and `continuations` must pair up, got {len(prompts)} prompts and "
            f"{len(continuations)} continuations. Pass one prompt (possibly []) per continuation."
        )
    ctx = judge.config.n_positions
    return [(list(p) + list(c))[-ctx:] for p, c in zip(prompts, continuations, strict=True)]


def _scored(row: Sequence[int], continuation: Sequence[int]) -> int:
    """Tokens of `continuation` the judge reads: the row's first token has no context."""
    return min(len(continuation), len(row) - 1)


@torch.no_grad()
def continuation_nll(
    judge: Any, prompts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]]
) -> torch.Tensor:
    """Summed next-token negative log-likelihood (nats) of each continuation after its prompt.

    Rows are right-padded (positions start at 0); a row longer than the judge's context keeps its
    last `n_positions` tokens. A continuation with no prompt loses its first token (nothing to
    read it from).

    Args:
        judge: a causal LM such as :func:`load_judge_lm`'s, reading these token ids.
        prompts (`Sequence[Sequence[int]]`): the prompt ids of each row, without padding.
        continuations (`Sequence[Sequence[int]]`): the generated ids of each row.

    Returns:
        `torch.Tensor` of shape `(B,)`, float32 on the CPU.
    """
    rows = _rows(judge, prompts, continuations)
    if not rows:
        return torch.zeros(0)
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    am = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)], am[i, : len(r)] = torch.tensor(r, dtype=torch.long), 1
    ids, am = ids.to(judge.device), am.to(judge.device)
    logp = judge(input_ids=ids, attention_mask=am).logits[:, :-1].float().log_softmax(-1)
    token_lp = logp.gather(-1, ids[:, 1:, None])[..., 0].cpu()  # (B, width - 1): t+1 given <= t
    out = torch.zeros(len(rows))
    for i, (r, c) in enumerate(zip(rows, continuations, strict=True)):
        n = _scored(r, c)
        out[i] = -token_lp[i, len(r) - 1 - n : len(r) - 1].sum()
    return out


def continuation_perplexity(
    judge: Any, prompts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]]
) -> torch.Tensor:
    """Perplexity of each continuation after its prompt: `exp(NLL / tokens read)`, `(B,)`.

    Same arguments as :func:`continuation_nll`; a row with no token to read gets NaN.
    """
    nll = continuation_nll(judge, prompts, continuations)
    rows = _rows(judge, prompts, continuations)
    counts = torch.tensor(
        [_scored(r, c) for r, c in zip(rows, continuations, strict=True)], dtype=torch.float32
    )
    return torch.where(counts > 0, (nll / counts.clamp(min=1)).exp(), math.nan)


def load_vader():
    """VADER's `SentimentIntensityAnalyzer` (`ImportError` naming the install command when the
    `text` extra is missing)."""
    try:
        from vader.analyzer import SentimentIntensityAnalyzer
    except ImportError:
        raise ImportError(f"The VADER judge needs the VADER lexicon: {_VADER_HINT}.") from None
    return SentimentIntensityAnalyzer()


def vader_compound(texts: Sequence[str], analyzer: Any = None) -> list[float]:
    """VADER's compound score of each text, in `[-1, 1]` (> 0 positive, < 0 negative).

    Args:
        texts (`Sequence[str]`): decoded continuations.
        analyzer (*optional*): a `SentimentIntensityAnalyzer` to reuse (default: a new one).
    """
    if isinstance(texts, str):
        raise ValueError(
            f"`texts` must be a sequence of strings, got one string {texts[:40]!r}; pass `[text]`."
        )
    analyzer = analyzer if analyzer is not None else load_vader()
    return [float(analyzer.polarity_scores(t)["compound"]) for t in texts]


def load_pattern():
    """TextBlob's `PatternAnalyzer` (the Pattern lexicon; no NLTK data to download), or an
    `ImportError` naming the install command when the `text` extra is missing."""
    try:
        from textblob.en.sentiments import PatternAnalyzer
    except ImportError:
        raise ImportError(f"The Pattern judge needs TextBlob: {_PATTERN_HINT}.") from None
    return PatternAnalyzer()


def pattern_polarity(texts: Sequence[str], analyzer: Any = None) -> list[float]:
    """The Pattern lexicon's polarity of each text, in `[-1, 1]` (> 0 positive, < 0 negative).

    Args:
        texts (`Sequence[str]`): decoded continuations.
        analyzer (*optional*): a `PatternAnalyzer` to reuse (default: :func:`load_pattern`'s).
    """
    if isinstance(texts, str):
        raise ValueError(
            f"`texts` must be a sequence of strings, got one string {texts[:40]!r}; pass `[text]`."
        )
    analyzer = analyzer if analyzer is not None else load_pattern()
    return [float(analyzer.analyze(t).polarity) for t in texts]


@dataclass(frozen=True)
class JudgeScores:
    """The judges' scores of one continuation.

    Attributes:
        vader (`float`): VADER compound of the decoded continuation, in `[-1, 1]`.
        pattern (`float`): Pattern polarity of the decoded continuation, in `[-1, 1]`.
        ppl (`float`): judge-LM perplexity of the continuation after its prompt.
        nll (`float`): the summed NLL behind `ppl` (nats).
        tokens (`int`): tokens the judge read (`ppl = exp(nll / tokens)`).
    """

    vader: float
    pattern: float
    ppl: float
    nll: float
    tokens: int


class TextJudges:
    """VADER, Pattern and the judge LM, loaded once; :meth:`score` judges a batch of
    continuations.

    Args:
        judge_lm (*optional*): a causal LM reading the generator's ids (default: the shipped one).
        device (*optional*): where to load the default judge LM.
    """

    def __init__(self, judge_lm: Any = None, *, device: Any = None) -> None:
        reason = missing_judge_dependency()
        if reason is not None:
            raise ImportError(reason[0].upper() + reason[1:] + ".")
        self.vader = load_vader()
        self.pattern = load_pattern()
        self.judge_lm = judge_lm if judge_lm is not None else load_judge_lm(device=device)

    def score(
        self,
        prompts: Sequence[Sequence[int]],
        continuations: Sequence[Sequence[int]],
        texts: Sequence[str],
    ) -> list[JudgeScores]:
        """The scores of each continuation (`texts`: the decoded continuations, for the
        lexicons)."""
        if len(texts) != len(continuations):
            raise ValueError(
                f"`texts` must hold one decoded text per continuation, got {len(texts)} texts "
                f"for {len(continuations)} continuations."
            )
        nll = continuation_nll(self.judge_lm, prompts, continuations)
        rows = _rows(self.judge_lm, prompts, continuations)
        compound = vader_compound(texts, self.vader)
        polarity = pattern_polarity(texts, self.pattern)
        out = []
        for i, (r, c) in enumerate(zip(rows, continuations, strict=True)):
            n = _scored(r, c)
            ppl = math.exp(float(nll[i]) / n) if n > 0 else math.nan
            out.append(JudgeScores(compound[i], polarity[i], ppl, float(nll[i]), n))
        return out
