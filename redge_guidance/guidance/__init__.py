"""Reward guidance for masked diffusion models: the hook the pipelines call.

- :mod:`.config`: :class:`GuidanceConfig`, the hyper-parameters (immutable, validated once).
- :mod:`.hook`: :class:`RewardGuidance`, the protocol pipelines call (``reset``, ``__call__``,
  ``score``, ``trace``).
- :mod:`.inner`: :class:`InnerProblem`, the optimisation of one guided step (what search reuses
  as a proposal).
- :mod:`.gradients`: pathwise and score-function gradients of the reward term.
- :mod:`.optim`: Adam on φ (eager or compiled) and the per-sample early stop.
- :mod:`.compiled`: the inner step as pure functions for ``torch.compile`` (``compile=True``).
- :mod:`.trace`: :class:`GuidanceStepStats`, what one call did.

The maths, as the project implements it, is in ``docs/method.md`` (arXiv 2601.00781 for ReDGE).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports
from .config import CONFIG_NAME, GuidanceConfig

# The torch-backed names load on first access, so importing `.config` (what the CLI's `--help`
# reads) does not import torch.
_LAZY = {
    "RewardGuidance": "redge_guidance.guidance.hook",
    "InnerProblem": "redge_guidance.guidance.inner",
    "WarmStart": "redge_guidance.guidance.inner",
    "TIMING_KEYS": "redge_guidance.guidance.trace",
    "GuidanceStepStats": "redge_guidance.guidance.trace",
}

__all__ = [
    "CONFIG_NAME",
    "GuidanceConfig",
    "GuidanceStepStats",
    "InnerProblem",
    "RewardGuidance",
    "TIMING_KEYS",
    "WarmStart",
]

if TYPE_CHECKING:  # pragma: no cover
    from .hook import RewardGuidance
    from .inner import InnerProblem, WarmStart
    from .trace import TIMING_KEYS, GuidanceStepStats

__getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY, __all__)
