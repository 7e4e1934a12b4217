"""The report of `benchmarks/estimators.py`: its results JSON as markdown."""

from __future__ import annotations

import json

import _common


def label(name: str, options: dict) -> str:
    """`redge n_steps=3 t_1=0.5`: an estimator setting as the tables name it."""
    return name + "".join(f" {k}={v}" for k, v in options.items())


def _load(load) -> str:
    return "n/a" if not load else " / ".join(f"{x:.1f}" for x in load) + " (1/5/15 min)"


def _mib(n):
    return "n/a" if n is None else f"{n / 2**20:.1f}"


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Estimator benchmark",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs (shared), torch {m['torch']}, "
        f"{m['torch_threads']} torch thread(s), Python {m['python']}; reference `redge` "
        f"{m['reference_redge'] or 'not installed'}; load average at start "
        f"{_load(m['load_average_at_start'])}. Wall time {report['wall_s']:.0f} s.",
        "",
    ]
    if report["notes"]:
        lines += [f"- {n}" for n in report["notes"]] + [""]
    lines += [
        "## Gradient quality against exact enumeration",
        "",
        f"{report['gradient_samples']} per-sample gradients per seed, "
        f"{report['gradient_seeds']} seeds "
        "(mean over seeds; ± is the spread across seeds). cos: cosine(mean, exact); bias: "
        "||mean - exact|| / ||exact||; var: per-sample E||g - mean||² / ||exact||².",
        "",
    ]
    problems = report["problems"]
    by_key = {
        (r["source"], r["estimator"], json.dumps(r["options"]), r["problem"]): r
        for r in report["gradient_quality"]
    }
    table = []
    for source, name, options in dict.fromkeys(k[:3] for k in by_key):
        name_ = ("reference " if source == "reference" else "") + label(name, json.loads(options))
        cells = []
        for p in problems:
            r = by_key[source, name, options, p]
            cells.append(
                f"{r['cos']:.2f} / {r['rel_bias']:.2f}±{r['rel_bias_sd']:.2f} / {r['rel_var']:.3g}"
            )
        table.append([name_, *cells])
    lines += _common.md_table(["estimator"] + [f"{p} cos / bias / var" for p in problems], table)
    lines += [
        "",
        "## Forward + backward cost",
        "",
        "Time: median of the repeats (ms), ours and the reference interleaved. saved: MiB kept for "
        "backward (each storage once, logits included). peak: rise of the resident-set high-water "
        "mark during forward + backward (MiB; includes outputs, temporaries and the gradient; "
        "n/a below 32 MiB of logits, where the allocator recycles memory without releasing it). "
        "At the two large sizes only ST, Gumbel-Softmax, ReDGE (3, 0.5) and ReinDGE (5, 0.5) run, "
        "to keep the benchmark near ten minutes. On a busy shared machine absolute times drift "
        "with the load; compare ours and the reference within a row (they are interleaved).",
        "",
    ]
    for B, V in report["sizes"]:
        lines += [f"### logits {B} x {V} (float32)", ""]
        rows = [r for r in report["cost"] if r["B"] == B and r["V"] == V]
        keys = list(dict.fromkeys((r["estimator"], json.dumps(r["options"])) for r in rows))
        table = []
        for key in keys:
            by_source = {
                x["source"]: x for x in rows if (x["estimator"], json.dumps(x["options"])) == key
            }
            o, f = by_source["ours"], by_source.get("reference")
            table.append(
                [
                    label(key[0], json.loads(key[1])),
                    f"{o['time_ms']:.2f}",
                    f"{f['time_ms']:.2f}" if f else "-",
                    _mib(o["saved_bytes"]),
                    _mib(f["saved_bytes"]) if f else "-",
                    _mib(o["peak_rss_bytes"]),
                    _mib(f["peak_rss_bytes"]) if f else "-",
                ]
            )
        header = ["estimator", "ours ms", "reference ms", "ours saved", "reference saved"]
        lines += _common.md_table([*header, "ours peak", "reference peak"], table) + [""]
    lines += [
        "## ReDGE (n_steps=3, t_1=0.5) against the reference and against Gumbel-Softmax",
        "",
    ]

    def fmt(x, spec=".2f"):
        return "-" if x is None else format(x, spec)

    size_order = [tuple(size) for size in report["sizes"]]
    checks = sorted(report["checks"], key=lambda c: size_order.index((c["B"], c["V"])))
    header = ["size", "ours ms", "reference ms", "time ours/ref", "saved ours/ref"]
    header += ["peak ours/ref", "ours / our Gumbel-Softmax time"]
    table = [
        [
            f"{c['B']} x {c['V']}",
            f"{c['redge_ms']:.2f}",
            *(fmt(c.get(k)) for k in ("reference_ms", "time_ratio", "saved_ratio", "peak_ratio")),
            fmt(c.get("ratio_to_gumbel")),
        ]
        for c in checks
    ]
    lines += _common.md_table(header, table) + [""]
    return "\n".join(lines)
