"""Guidance at the shapes users run: one guided denoising step with a 126,464-token vocabulary.

The generator is a config-built, random-weight causal LM with LLaDA-8B's layer shapes (vocabulary
126,464, hidden 4096, MLP 12288, 32 heads; few layers: what matters here is the vocabulary-sized
work, and a full stack only scales the forward we report beside it). The reward is a config-built
BERT classifier on the same vocabulary (hidden 256, 2 layers: about 1/40-1/50 of the generator),
read through ``inputs_embeds = x @ E`` as every embedding-input reward is. For each cell (length L,
batch B, support: dense or top-k) it times one guided denoising step split into model forward,
the hook's phases (setup, relaxation, reward forward+backward, KL, optimiser, scoring) and the
scheduler step, next to the unguided step, and the peak memory of the hook above what the logits
already take.

    python benchmarks/scale.py                  # the CPU cells that fit a 2-core, 24 GB machine
    python benchmarks/scale.py --device cuda    # the full grid on a GPU, under 8 minutes
    python benchmarks/scale.py --cells 256x1:top64 256x1:top64:bf16 256x1:top64:compile
    python benchmarks/scale.py --render results/B.json --compare results/A.json  # A -> B table

A cell is ``LxB:support`` with optional variants ``:bf16`` (``mixed_precision="bf16"``),
``:compile`` (``compile=True``) and ``:nK`` (ReDGE with ``n_steps=K``; default 3); a compiled
cell's first call (the compilation) is reported apart and the fastest of the later repeats is
kept.

``results/scale_before_3a27d91.*`` is the dense cell of the release before the renovation,
measured with this script's first (stand-alone) version copied into a checkout of 3a27d91; the
script still adapts to that hook's arguments.

Writes ``benchmarks/results/scale[_cuda].{json,md}``. Memory on CPU is the rise of the process's
peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``) over its level before the
hook ran; on CUDA ``torch.cuda.max_memory_allocated`` above the allocated level before the call.
"""

from __future__ import annotations

import argparse
import inspect
import time
from pathlib import Path

import _common
import torch

_common.use_checkout()  # the packages of this checkout, not benchmarks/rewards.py
RESULTS = _common.RESULTS
V = 126_464  # LLaDA's vocabulary
MASK_ID = V - 1
CPU_CELLS = ("256x1:dense", "256x1:top64", "1024x1:top64", "1024x1:dense")
CUDA_CELLS = tuple(
    f"{L}x{B}:{s}" for L in (256, 1024) for B in (1, 8) for s in ("dense", "top64", "top256")
)
HOOK_PHASES = ("setup", "relaxation", "kl", "optimizer", "scoring")  # the hook's own work


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--cells", nargs="*", help="LxB:dense|topK cells (default: per device)")
    p.add_argument("--layers", type=int, default=None, help="generator layers (cpu 1, cuda 2)")
    p.add_argument("--n-opt-steps", type=int, default=10, help="inner Adam steps (default 10)")
    p.add_argument("--repeats", type=int, default=2, help="timed repeats per cell, best kept")
    p.add_argument("--dtype", default=None, help="model dtype (cpu float32, cuda bfloat16)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--output", default=None, help="results stem (default results/scale[_cuda])")
    p.add_argument("--quiet", action="store_true")
    p.add_argument(
        "--render", default=None, help="no run: rewrite the markdown of this results JSON"
    )
    p.add_argument(
        "--compare", default=None, help="with --render: add a before/after table against this JSON"
    )
    args = p.parse_args(argv)
    if args.compare and not args.render:
        p.error("--compare goes with --render RESULT.json (the run to compare)")
    if args.device not in ("cpu", "cuda"):
        p.error(f"--device must be cpu or cuda, got {args.device!r}")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available here")
    for cell in args.cells or ():
        try:
            _parse_cell(cell)
        except ValueError as err:
            p.error(str(err))
    return args


_VARIANTS = {"bf16": ("mixed_precision", "bf16"), "compile": ("compile", True)}


def _parse_cell(cell: str) -> tuple[int, int, int | None, dict]:
    try:
        shape, support, *variants = cell.split(":")
        L, B = (int(x) for x in shape.split("x"))
        top_k = None if support == "dense" else int(support.removeprefix("top"))
        options = dict(_VARIANTS[v] for v in variants if not v.startswith("n"))
        steps = [int(v[1:]) for v in variants if v.startswith("n")]  # ReDGE's n_steps
        if steps:
            options["estimator_options"] = {"n_steps": steps[-1]}
    except (ValueError, KeyError):
        raise ValueError(
            f"cell {cell!r} must look like 256x1:dense, 1024x8:top64, 256x1:top64:bf16:compile "
            "or 256x1:dense:n6 (ReDGE with n_steps=6)"
        ) from None
    return L, B, top_k, options


def _variant_name(options: dict) -> str:
    """`eager`, or the cell's variants joined with `+` (`bf16`, `compile`, `n6`)."""
    names = [k for k, v in _VARIANTS.items() if v[0] in options]
    if "estimator_options" in options:
        names.append(f"n{options['estimator_options']['n_steps']}")
    return "+".join(names) or "eager"


def build_models(device: torch.device, layers: int, dtype: torch.dtype):
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        LlamaConfig,
        LlamaForCausalLM,
    )

    torch.manual_seed(0)
    gen_cfg = LlamaConfig(
        vocab_size=V,
        hidden_size=4096,
        intermediate_size=12288,
        num_attention_heads=32,
        num_key_value_heads=32,
        num_hidden_layers=layers,
        max_position_embeddings=4096,
    )
    generator = LlamaForCausalLM(gen_cfg).to(device=device, dtype=dtype).eval()
    rew_cfg = BertConfig(
        vocab_size=V,
        hidden_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=1024,
        max_position_embeddings=4096,
        num_labels=2,
    )
    classifier = BertForSequenceClassification(rew_cfg).to(device=device, dtype=dtype).eval()
    return generator, classifier


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class Memory:
    """Peak memory above a baseline: CUDA allocator statistics, or the process's peak RSS."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def start(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            if not _common.reset_peak_rss():
                raise SystemExit("scale.py measures CPU memory through /proc (Linux only)")
            self.base = _common.rss_bytes("VmRSS")

    def peak_above_start(self) -> int:
        if self.cuda:
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - self.base
        return _common.rss_bytes("VmHWM") - self.base


def cpu_allocated_peak(call) -> int:
    """The peak of the bytes torch's CPU allocator holds while ``call()`` runs, above what it
    held before: the profiler's memory events, summed in time order. What CUDA's
    ``max_memory_allocated`` measures there; unlike the resident set, blind to the C library's
    caching of freed memory (an untimed run: the profiler slows small operations)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        call()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    held = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        held += e.nbytes()
        peak = max(peak, held)
    return peak


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_cell(cell: str, models, args, device: torch.device) -> dict:
    from pipelines import MaskedDiffusionScheduler
    from redge_guidance import RewardGuidance
    from rewards import SequenceClassifierReward

    L, B, top_k, variant = _parse_cell(cell)
    generator, classifier = models
    reward = SequenceClassifierReward(classifier, label=1, add_special_tokens=False)
    scheduler = MaskedDiffusionScheduler(mask_token_id=MASK_ID)
    scheduler.set_timesteps(8, device=device)
    gen = torch.Generator(device="cpu").manual_seed(0)
    ids = torch.randint(0, V - 1, (B, L), generator=gen).to(device)
    ids[:, L // 4 :] = MASK_ID  # a quarter prompt/committed, the rest still masked
    editable = ids == MASK_ID
    memory = Memory(device)
    best: dict | None = None
    options = {"n_opt_steps": args.n_opt_steps, "record_rewards": False, **variant}
    if top_k is not None:
        options["top_k"] = top_k
    if "profile" in inspect.signature(RewardGuidance).parameters:
        options["profile"] = True  # (releases before 0.2 always timed their phases)
    # A compiled cell pays the compilation at its first call: that call is timed apart.
    repeats = args.repeats + (1 if variant.get("compile") else 0)
    first_hook_s = None
    for repeat in range(repeats):
        hook = RewardGuidance(reward, mask_token_id=MASK_ID, **options)
        with torch.no_grad():
            _sync(device)
            t0 = time.perf_counter()
            logits = generator(input_ids=ids).logits
            logits[..., MASK_ID] = torch.finfo(logits.dtype).min
            _sync(device)
            t_model = time.perf_counter() - t0
            memory.start()
            t0 = time.perf_counter()
            guided = hook(logits, ids, editable=editable, step=0, num_steps=8, generator=gen)
            _sync(device)
            t_hook = time.perf_counter() - t0
            hook_peak = memory.peak_above_start()
            t0 = time.perf_counter()
            scheduler.step(guided, scheduler.timesteps[0], ids, generator=gen)
            _sync(device)
            t_sched = time.perf_counter() - t0
        timing = hook.trace[-1]["timing"]
        if repeat == 0 and variant.get("compile"):
            first_hook_s = t_hook
            del logits, guided, hook
            continue
        row = {
            "cell": cell,
            "L": L,
            "B": B,
            "support": "dense" if top_k is None else f"top-{top_k}",
            "variant": _variant_name(variant),
            "model_forward_s": t_model,
            "scheduler_step_s": t_sched,
            "hook_s": t_hook,
            "hook_phases_s": timing,
            "hook_own_s": sum(timing[k] for k in HOOK_PHASES),
            "reward_fwd_bwd_s": timing["reward"],
            "unguided_step_s": t_model + t_sched,
            "guided_step_s": t_model + t_hook + t_sched,
            "logits_bytes": logits.numel() * logits.element_size(),
            "logits_fp32_bytes": logits.numel() * 4,
            "hook_peak_extra_bytes": hook_peak,
        }
        row["hook_own_share"] = row["hook_own_s"] / row["guided_step_s"]
        row["guided_over_unguided"] = row["guided_step_s"] / row["unguided_step_s"]
        row["hook_peak_in_fp32_logits"] = hook_peak / row["logits_fp32_bytes"]
        if best is None or row["guided_step_s"] < best["guided_step_s"]:
            best = row
        del logits, guided, hook
    best["first_call_hook_s"] = first_hook_s  # compiled cells: the call that compiled
    if device.type == "cpu":  # the allocator's peak too, in one more (untimed) call
        hook = RewardGuidance(reward, mask_token_id=MASK_ID, **options)
        with torch.no_grad():
            logits = generator(input_ids=ids).logits
            logits[..., MASK_ID] = torch.finfo(logits.dtype).min
            peak = cpu_allocated_peak(
                lambda: hook(logits, ids, editable=editable, step=0, num_steps=8, generator=gen)
            )
        best["hook_peak_allocated_bytes"] = peak
        best["hook_peak_allocated_in_fp32_logits"] = peak / best["logits_fp32_bytes"]
    return best


def render(result: dict, before: dict | None = None) -> str:
    m = result["machine"]
    lines = [
        "# One guided denoising step at V = 126,464",
        "",
        f"Machine: {m['device_name'] if m['device'] != 'cpu' else m['processor']}, "
        f"{m['cpu_count']} cores, torch {m['torch']}, "
        f"{m['torch_threads']} thread(s). Generator: {result['generator_params'] / 1e9:.2f} B "
        f"params ({result['layers']} layer(s), LLaDA-8B layer shapes), reward "
        f"{result['reward_params'] / 1e6:.0f} M params, {result['n_opt_steps']} inner steps, "
        f"{result['dtype']}. Command: `{result['command']}`.",
        "",
        "| L x B | support | variant | model fwd s | hook s | reward f+b s | hook own s | "
        "relax + KL + Adam s | hook own % of guided | guided / unguided | "
        "hook peak extra (fp32 logits) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        ph = r["hook_phases_s"]
        inner = ph["relaxation"] + ph["kl"] + ph["optimizer"]
        first = r.get("first_call_hook_s")
        variant = r.get("variant", "eager") + (f" (1st call {first:.1f} s)" if first else "")
        lines.append(
            f"| {r['L']} x {r['B']} | {r['support']} | {variant} | {r['model_forward_s']:.2f} | "
            f"{r['hook_s']:.2f} | {r['reward_fwd_bwd_s']:.2f} | {r['hook_own_s']:.2f} | "
            f"{inner:.2f} | "
            f"{100 * r['hook_own_share']:.1f}% | {r['guided_over_unguided']:.2f} | "
            f"{_memory_cell(r)} |"
        )
    lines += [
        "",
        "Hook own = setup + relaxation + KL + optimiser + scoring (everything but the model and "
        "the reward's forward/backward). Peak extra: the hook's peak memory above what was "
        "allocated before it ran, and in units of one fp32 copy of the logits. Variant: eager "
        "(default), bf16 (`mixed_precision='bf16'`), compile (`compile=True`; its first call, "
        "which compiles, in brackets, and excluded from the other columns). On CUDA, memory is "
        "the allocator's peak (`max_memory_allocated`). On CPU, where a run measured it, the "
        "peak of the bytes torch's allocator held (profiler memory events, one more untimed "
        "call), then the process's peak resident set, which the C library's caching of freed "
        "memory blurs by about ±0.3 copies.",
        "",
    ]
    if before is not None:
        lines += _comparison(before, result)
    return "\n".join(lines)


def _memory_cell(r: dict) -> str:
    """`MiB (copies)` of the allocator's peak, and the resident set's where both exist."""
    rss = f"{r['hook_peak_extra_bytes'] / 2**20:.0f} MiB ({r['hook_peak_in_fp32_logits']:.2f})"
    if "hook_peak_allocated_bytes" not in r:
        return rss
    alloc = r["hook_peak_allocated_bytes"] / 2**20
    return f"{alloc:.0f} MiB ({r['hook_peak_allocated_in_fp32_logits']:.2f}); RSS {rss}"


def _peak(r: dict, allocated: bool) -> float:
    key = "hook_peak_allocated_in_fp32_logits" if allocated else "hook_peak_in_fp32_logits"
    return r[key]


def _at(result: dict) -> str:
    return f" at {result['checkout']}" if result.get("checkout") else ""


def _comparison(before: dict, after: dict) -> list[str]:
    """Before/after table of the cells both runs measured (same cell and variant)."""
    lines = [
        "## Before / after",
        "",
        f"Before: `{before['command']}`{_at(before)}; after: `{after['command']}`{_at(after)}; "
        "run back to back on the same machine.",
        "",
        "| L x B | support | variant | hook s | relax + KL + Adam s | hook own s | "
        "hook peak extra (fp32 logits) |",
        "|---|---|---|---|---|---|---|",
    ]
    old = {(r["cell"], r.get("variant", "eager")): r for r in before["rows"]}
    for r in after["rows"]:
        b = old.get((r["cell"], r.get("variant", "eager")))
        if b is None:
            continue

        def inner(row: dict) -> float:
            ph = row["hook_phases_s"]
            return ph["relaxation"] + ph["kl"] + ph["optimizer"]

        cols = [
            (b["hook_s"], r["hook_s"]),
            (inner(b), inner(r)),
            (b["hook_own_s"], r["hook_own_s"]),
        ]
        cells = [f"{x:.2f} -> {y:.2f} ({x / y:.2f}x)" for x, y in cols]
        allocated = "hook_peak_allocated_bytes" in b and "hook_peak_allocated_bytes" in r
        pb, pa = _peak(b, allocated), _peak(r, allocated)
        what = "" if allocated or "hook_peak_allocated_bytes" not in r else " (RSS)"
        cells.append(f"{pb:.2f} -> {pa:.2f} ({pb / pa:.2f}x){what}")
        lines.append(
            f"| {r['L']} x {r['B']} | {r['support']} | {r.get('variant', 'eager')} | "
            + " | ".join(cells)
            + " |"
        )
    lines += ["", "Ratios are before / after (above 1: faster or leaner).", ""]
    return lines


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.render:
        result = _common.load_json(Path(args.render))
        before = _common.load_json(Path(args.compare)) if args.compare else None
        Path(args.render).with_suffix(".md").write_text(render(result, before))
        return result
    _common.set_threads(args.threads)
    device = torch.device(args.device)
    layers = args.layers or (1 if device.type == "cpu" else 2)
    dtype = getattr(torch, args.dtype or ("float32" if device.type == "cpu" else "bfloat16"))
    cells = args.cells or (CPU_CELLS if device.type == "cpu" else CUDA_CELLS)
    stem = (
        Path(args.output)
        if args.output
        else RESULTS / ("scale" if device.type == "cpu" else "scale_cuda")
    )
    models = build_models(device, layers, dtype)
    result = {
        "machine": _common.machine_info(args.device),
        "command": _common.command_line("scale", argv),
        "layers": layers,
        "dtype": str(dtype).removeprefix("torch."),
        "n_opt_steps": args.n_opt_steps,
        "generator_params": _count(models[0]),
        "reward_params": _count(models[1]),
        "rows": [],
    }
    stem.parent.mkdir(parents=True, exist_ok=True)
    for cell in cells:
        row = run_cell(cell, models, args, device)
        result["rows"].append(row)
        if not args.quiet:
            print(
                f"{cell}: guided {row['guided_step_s']:.2f}s (hook {row['hook_s']:.2f}s, own "
                f"{100 * row['hook_own_share']:.1f}%), unguided {row['unguided_step_s']:.2f}s, "
                f"peak extra {row['hook_peak_in_fp32_logits']:.2f} fp32 logits",
                flush=True,
            )
        # Written after every cell: an interrupted run keeps what it measured.
        _common.save_json(stem.with_suffix(".json"), result, indent=2)
        stem.with_suffix(".md").write_text(render(result))
    return result


if __name__ == "__main__":
    main()
