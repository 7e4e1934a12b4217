"""What every benchmark script shares: the checkout on `sys.path`, threads, machine info, results
files (JSON written atomically, resumable cells), markdown tables and plots.

Not a benchmark itself. The scripts import it as `_common` (their own folder is on `sys.path`
when run as `python benchmarks/NAME.py`) and call `use_checkout()` before importing the project.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

__all__ = [
    "RESULTS",
    "ROOT",
    "CellStore",
    "command_line",
    "cpu_name",
    "load_json",
    "machine_info",
    "md_table",
    "pyplot",
    "read_results",
    "reset_peak_rss",
    "rss_bytes",
    "save_figure",
    "save_json",
    "set_threads",
    "use_checkout",
    "write_results",
]


# ------------------------------------------------------------------------------------ set-up


def use_checkout() -> None:
    """Import the project from this checkout (not an installed copy) and keep the Hub offline.

    Call it before importing `redge_guidance`, `pipelines` or `rewards`, or anything that imports
    transformers (the offline switches are read at import time).
    """
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(name, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if str(ROOT) not in sys.path[:1]:
        sys.path.insert(0, str(ROOT))


def set_threads(threads: int = 1) -> None:
    """`torch.set_num_threads(threads)`: one thread by default, so timings on a shared machine
    measure the method rather than the contention between threads."""
    import torch

    if threads < 1:
        raise ValueError(f"`threads` must be >= 1, got {threads}. Pass `threads=1`.")
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------ machine


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else `platform.processor()`."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str = "cpu", *, keys: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Where a benchmark ran: `redge_guidance.cli.env.machine()` plus what timings depend on.

    Args:
        device (`str`, *optional*, defaults to `"cpu"`):
            The torch device the benchmark ran on.
        keys (`Mapping[str, str]`, *optional*):
            `{name in the result: canonical name}`, to keep a results file's own key names; keys
            whose canonical value is absent (`gpu` on a CPU, `transformers` when not installed)
            are left out. Without it, the canonical dict.

    Canonical keys: those of `env.machine()` (`python`, `platform`, `torch_threads`,
    `cpu_count`, `cuda_devices`, ...), and `processor` (CPU model), `torch`, `transformers`,
    `device`, `device_name` (the GPU's name, or `"cpu"`), `gpu` (CUDA only) and `load_average`
    (1/5/15 min, rounded to 0.01; other processes on a shared machine inflate absolute times).
    """
    import torch

    from redge_guidance.cli.env import machine

    info = machine()
    info.update(processor=cpu_name(), torch=torch.__version__, device=str(device))
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover - transformers is a core dependency
        pass
    dev = torch.device(device)
    info["device_name"] = "cpu"
    if dev.type == "cuda":
        info["gpu"] = info["device_name"] = torch.cuda.get_device_name(dev)
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Windows
        info["load_average"] = None
    if keys is None:
        return info
    unknown = sorted(set(keys.values()) - set(info) - {"gpu", "transformers"})
    if unknown:
        raise ValueError(f"`keys` names unknown machine fields {unknown}; valid: {sorted(info)}.")
    return {name: info[canonical] for name, canonical in keys.items() if canonical in info}


# ------------------------------------------------------------------------------------ memory


def rss_bytes(field: str = "VmRSS") -> int | None:
    """A memory field of /proc/self/status (`VmRSS`, `VmHWM`, ...) in bytes; None off Linux."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset this process's resident-set high-water mark (`VmHWM`) to the current RSS.

    Returns False where Linux does not allow it (then `VmHWM` is the peak since start).
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


# ------------------------------------------------------------------------------------ files


def command_line(script: str, argv: Sequence[str] | None = None) -> str:
    """`python benchmarks/SCRIPT.py ARGS` for the results file (`argv`: default `sys.argv[1:]`)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python", f"benchmarks/{script}.py", *args])


def load_json(path: Path, default: Any = None) -> Any:
    """The parsed JSON at `path`, or `default` when there is no file."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else default


def read_results(path: Path) -> Any:
    """A results JSON that must exist (for `--report-only`): exits with a clear message if not."""
    result = load_json(path)
    if result is None:
        raise SystemExit(f"no results file {path}: run the benchmark first, or pass --out DIR.")
    return result


def save_json(path: Path, obj: Any, *, indent: int = 1) -> None:
    """Write `obj` as JSON through a temporary file, so an interrupted write never leaves half a
    results file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=indent) + "\n")
    os.replace(tmp, path)


def write_results(
    out: Path, name: str, result: Any, markdown: str, *, indent: int = 1, echo: bool = False
) -> tuple[Path, Path]:
    """Write `out/NAME.json` and `out/NAME.md`; print the markdown when `echo`, else the paths."""
    out = Path(out)
    json_path, md_path = out / f"{name}.json", out / f"{name}.md"
    save_json(json_path, result, indent=indent)
    md_path.write_text(markdown)
    print(markdown if echo else f"wrote {json_path} and {md_path}", flush=True)
    return json_path, md_path


class CellStore:
    """A results JSON whose `cells` are saved after every finished cell, so that a rerun of the
    same command skips them (a resumable benchmark).

    Args:
        path (`Path`): the JSON file; read when it exists.
        default (`dict`, *optional*): the content when there is no file (a `cells` dict is added).
        indent (`int`, *optional*, defaults to 1): JSON indentation.
    """

    def __init__(self, path: Path, default: dict | None = None, *, indent: int = 1) -> None:
        self.path, self.indent = Path(path), indent
        self.data: dict[str, Any] = load_json(self.path, None) or dict(default or {})
        self.data.setdefault("cells", {})

    @property
    def cells(self) -> dict[str, Any]:
        return self.data["cells"]

    def __contains__(self, key: str) -> bool:
        return key in self.cells

    def put(self, key: str, cell: dict[str, Any]) -> None:
        """Record one finished cell and save at once."""
        self.cells[key] = cell
        self.save()

    def save(self) -> None:
        save_json(self.path, self.data, indent=self.indent)


# ------------------------------------------------------------------------------------ reports


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str = "") -> list[str]:
    """A markdown table as lines: `align` has one letter per column, `l` (`---`) or `r`
    (`---:`); columns past its end are `l`. Cells are written with `str`."""
    bad = set(align) - {"l", "r"}
    if bad:
        raise ValueError(f"`align` takes letters 'l' and 'r', got {align!r}.")
    rule = ["---:" if a == "r" else "---" for a in align.ljust(len(header), "l")]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def pyplot():
    """`matplotlib.pyplot` on the file-only Agg backend, or None when matplotlib is missing
    (`pip install 'redge-guidance[benchmarks]'`); imported here, never at module import."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_figure(fig, path: Path, *, dpi: int = 120) -> None:
    """Save a figure and close it (figures left open accumulate in long runs)."""
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=dpi)
    plt.close(fig)
