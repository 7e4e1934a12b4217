"""Masked discrete diffusion for diffusers: a scheduler and a pipeline.

Guidance is any callable following the hook protocol of docs/architecture.md; this package does
not import `redge_guidance`.
"""

from .pipeline_masked_diffusion import MaskedDiffusionPipeline, MaskedDiffusionPipelineOutput
from .sampling import suppress_mask_token
from .scheduling_masked_diffusion import MaskedDiffusionScheduler, MaskedDiffusionSchedulerOutput

__all__ = [
    "MaskedDiffusionPipeline",
    "MaskedDiffusionPipelineOutput",
    "MaskedDiffusionScheduler",
    "MaskedDiffusionSchedulerOutput",
    "suppress_mask_token",
]
