"""Inference-time search with (optionally guided) proposals for masked diffusion models.

- :func:`search`: one call, a typed config, a :class:`SearchResult`.
- :class:`BestOfNConfig`: N candidates per prompt, the best by reward (black boxes fine).
- :class:`SMCConfig`: K particles per prompt through the pipeline's loop, reweighted by reward
  potentials and, with guidance, by the proposal correction ``log p − log q``; resampled on
  low effective sample size or on a fixed period.
- :class:`RefineConfig`: remask the positions the reward likes least, denoise them again.
- :class:`Budget` and :class:`ComputeSpent`: what a search may spend and what it spent.
- :func:`smc_llada2`: SMC with the model's own proposals inside diffusers' ``LLaDA2Pipeline``.
- :mod:`.resampling`: weights, ESS and the resampling schemes as pure functions.

``docs/search.md`` explains the target, the weights and what works where.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports
from .config import BestOfNConfig, Budget, RefineConfig, SearchConfig, SMCConfig, config_from_dict

# The torch-backed names load on first access, so importing `.config` (what the CLI's `--help`
# reads) does not import torch.
_LAZY = {
    "search": "redge_guidance.search.api",
    "smc_llada2": "redge_guidance.search.llada2",
    "RESAMPLERS": "redge_guidance.search.resampling",
    "effective_sample_size": "redge_guidance.search.resampling",
    "normalised_weights": "redge_guidance.search.resampling",
    "resample": "redge_guidance.search.resampling",
    "ComputeSpent": "redge_guidance.search.result",
    "SearchResult": "redge_guidance.search.result",
    "proposal_log_ratio": "redge_guidance.search.smc",
}

__all__ = [
    "BestOfNConfig",
    "Budget",
    "ComputeSpent",
    "RESAMPLERS",
    "RefineConfig",
    "SMCConfig",
    "SearchConfig",
    "SearchResult",
    "config_from_dict",
    "effective_sample_size",
    "normalised_weights",
    "proposal_log_ratio",
    "resample",
    "search",
    "smc_llada2",
]

if TYPE_CHECKING:  # pragma: no cover
    from .api import search
    from .llada2 import smc_llada2
    from .resampling import RESAMPLERS, effective_sample_size, normalised_weights, resample
    from .result import ComputeSpent, SearchResult
    from .smc import proposal_log_ratio

__getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY, __all__)
