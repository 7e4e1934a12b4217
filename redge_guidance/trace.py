"""Moved to :mod:`redge_guidance.guidance.trace`; this alias stays for one release."""

from .guidance.trace import TIMING_KEYS, GuidanceStepStats

__all__ = ["GuidanceStepStats", "TIMING_KEYS"]
