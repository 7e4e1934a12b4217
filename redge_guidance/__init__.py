"""redge-guidance: reward guidance for masked discrete diffusion models with ReDGE relaxations.

Importing this package is cheap: torch is imported by the estimators, and transformers /
diffusers only when an adapter, a pipeline or the CLI needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports

__version__ = "0.1.0"

# public name -> module that defines it (imported on first access)
_LAZY = {
    "RelaxedSample": "redge_guidance.estimators",
    "ESTIMATORS": "redge_guidance.estimators",
    "get_estimator": "redge_guidance.estimators",
    "redge": "redge_guidance.estimators",
    "GuidanceConfig": "redge_guidance.guidance",
    "RewardGuidance": "redge_guidance.guidance",
    "attach": "redge_guidance.adapters",
    "detach": "redge_guidance.adapters",
    "GuidanceLogitsProcessor": "redge_guidance.adapters",
}

__all__ = [
    "__version__",
    "RelaxedSample",
    "ESTIMATORS",
    "get_estimator",
    "redge",
    "GuidanceConfig",
    "RewardGuidance",
    "attach",
    "detach",
    "GuidanceLogitsProcessor",
]
assert set(__all__) == {"__version__", *_LAZY}

if TYPE_CHECKING:  # pragma: no cover
    from .adapters import GuidanceLogitsProcessor, attach, detach
    from .estimators import ESTIMATORS, RelaxedSample, get_estimator, redge
    from .guidance import GuidanceConfig, RewardGuidance


__getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY, __all__)
