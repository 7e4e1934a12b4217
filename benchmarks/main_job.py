"""The main job's candidate settings at its own size, scored by judges that did not steer.

`benchmarks/scaling.py` maps the judge/fluency front at 16 new tokens and 4 denoising steps, with
guidance tuned for a few inner steps (lr 3, KL weight 0.01). The main job's default has to sit on
the front where the main job runs: 32 new tokens, 16 denoising steps (the CLI defaults), its own
guidance setting. This script measures the candidates there, through the CLI itself
(`redge-guidance generate --prompts FILE --output FILE --judge`), on held-out prompts (the speaker
and first words of speeches from the held-out plays, as in `scaling.py`), toward positive and
negative sentiment.

Settings (each a `generate` command line; `unguided` is the model's own sample of the same seed,
identical in every cell, from `--compare`):

- `guidance`: `--search none`, the former default (redge, 10 Adam steps of lr 1 per denoising
  step, KL weight 0.02);
- `best-of-16`, `best-of-32`: `--search best-of-n --particles N --candidates-per-call 16
  --n-opt-steps 0`, best-of-N over the model's samples by the reward, no gradient guidance;
- `refine`: `--search refine --rounds 16 --n-opt-steps 0 --remask-select gradient`: 16 rounds of
  remasking the quarter of tokens with the largest reward-gradient gain, re-denoised by the model.

Metrics per cell (over its rows): the steered reward (signed toward the target), two sentiment
judges of the continuation, each as mean ± s.e. and share strictly on the target's side: VADER's
compound and the Pattern lexicon's polarity (TextBlob; built apart from VADER, to which the
reward's head was fitted, so VADER could credit guidance for finding VADER's own words), judge-LM
perplexity (geometric mean over rows: exp of the mean NLL per token), distinct-1/2 of the
continuations' token ids, and wall seconds per sample (from the rows; the machine is shared, see
`load`). Each cell keeps its rows' judge scores, and the report says how far the two sentiment
judges agree: per target, over the unguided samples and over each setting's guided ones, the
share of samples both put on the target's side, the shares only one does, and their Pearson
correlation.

    nice -n 5 python benchmarks/main_job.py            # benchmarks/results/main_job.{json,md}
    python benchmarks/main_job.py --report-only        # rewrite the .md from the .json
    python benchmarks/main_job.py --tiny               # seconds, into /tmp/main_job_tiny
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import statistics
import tempfile
from pathlib import Path

import _common

BEST_OF = ("--search", "best-of-n", "--candidates-per-call", "16", "--n-opt-steps", "0")
SETTINGS: dict[str, list[str]] = {
    "guidance": ["--search", "none"],
    "best-of-16": [*BEST_OF, "--particles", "16"],
    "best-of-32": [*BEST_OF, "--particles", "32"],
    "refine": [
        *("--search", "refine", "--rounds", "16", "--n-opt-steps", "0"),
        *("--remask-select", "gradient", "--remask-fraction", "0.25"),
    ],
}
TARGETS = ("positive", "negative")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--tiny", action="store_true", help="2 prompts, 8 tokens, into /tmp")
    p.add_argument("--prompts", type=int, default=8, help="held-out prompts")
    p.add_argument("--samples", type=int, default=2, help="samples per prompt")
    p.add_argument("--batch-size", type=int, default=4, help="samples per batch")
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    p.add_argument("--out", type=Path, default=None, help="default benchmarks/results")
    p.add_argument("--report-only", action="store_true", help="rewrite the .md from the .json")
    args = p.parse_args(argv)
    args.extra = []
    if args.tiny:
        args.prompts, args.samples = 2, 1
        args.extra = ["--length", "8", "--steps", "4"]
        args.out = args.out or Path(tempfile.gettempdir()) / "main_job_tiny"
    args.out = args.out or _common.RESULTS
    return args


def held_out_prompts(n: int) -> list[str]:
    """`n` held-out speeches' `SPEAKER: first words` (`scaling.py`'s prompts)."""
    from transformers import AutoTokenizer

    from redge_guidance.text import DEFAULT_MODEL_DIR

    spec = importlib.util.spec_from_file_location(
        "_scaling", Path(__file__).with_name("scaling.py")
    )
    scaling = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scaling)
    tok = AutoTokenizer.from_pretrained(str(DEFAULT_MODEL_DIR))
    return [p["text"] for p in scaling.make_prompts(tok, n, 32)]


def distinct(rows: list[list[int]], n: int) -> float:
    grams = [tuple(r[i : i + n]) for r in rows for i in range(len(r) - n + 1)]
    return len(set(grams)) / len(grams) if grams else math.nan


def judged(rows: list[dict], suffix: str, sign: float) -> dict:
    """The metrics of one side (`""` guided, `"_unguided"`) of a cell's rows."""
    vader = [r["vader" + suffix] for r in rows]
    pattern = [r["pattern" + suffix] for r in rows]
    logs = [math.log(r["ppl" + suffix]) for r in rows]
    ids = [r["token_ids" + suffix] for r in rows]
    return {
        "reward": statistics.fmean(r["reward" + suffix] for r in rows),  # already toward target
        "vader": statistics.fmean(vader),
        "vader_se": statistics.stdev(vader) / math.sqrt(len(vader)),
        "on_target": statistics.fmean(float(sign * v > 0) for v in vader),
        "pattern": statistics.fmean(pattern),
        "pattern_se": statistics.stdev(pattern) / math.sqrt(len(pattern)),
        "pattern_on_target": statistics.fmean(float(sign * v > 0) for v in pattern),
        "scores": {"vader": vader, "pattern": pattern},  # per row, for the judges' agreement
        "ppl": math.exp(statistics.fmean(logs)),
        "d1": distinct(ids, 1),
        "d2": distinct(ids, 2),
        "s_per_sample": statistics.fmean(r["seconds" + suffix] for r in rows),
    }


def run_cell(args, prompts_file: Path, setting: str, target: str, work: Path) -> dict:
    from redge_guidance.cli import main

    out = work / f"{setting}_{target}.jsonl"
    argv = [
        *("generate", "--prompts", str(prompts_file), "--num-samples", str(args.samples)),
        *("--batch-size", str(args.batch_size), "--reward", f"sentiment:{target}"),
        *("--output", str(out), "--overwrite", "--judge", "--quiet", *args.extra),
        *SETTINGS[setting],
    ]
    if main(argv) != 0:
        raise SystemExit(f"`redge-guidance {' '.join(argv)}` failed")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    sign = 1.0 if target == "positive" else -1.0
    return {
        "command": "redge-guidance " + " ".join(argv).replace(str(work), "WORK"),
        "guided": judged(rows, "", sign),
        "unguided": judged(rows, "_unguided", sign),
        "unguided_ids": [r["token_ids_unguided"] for r in rows],
        "examples": [
            {"prompt": r["prompt"], "text": r["text"], "text_unguided": r["text_unguided"]}
            for r in rows[:2]
        ],
    }


def markdown(result: dict) -> str:
    st = result["settings"]
    lines = [
        "# The main job's settings at its own size, judged by models that did not steer",
        "",
        f"Command: `{result['command']}`. {st['prompts']} held-out prompts x {st['samples']} "
        f"samples, the CLI's generation defaults (32 new tokens, 16 denoising steps, random "
        f"unmasking, temperature 1{''.join(' ' + a for a in st['extra'])}), through "
        f"`redge-guidance generate --judge` (each cell's command in the JSON); "
        f"{result['machine'].get('processor', '?')}, load average "
        f"{result['machine'].get('load_average')} at the start (shared machine: wall times are "
        "indicative). `reward`: the steered MiniLM reward, signed toward the target; `VADER`: "
        "mean compound of the continuation ± s.e. over samples; `Pattern`: mean polarity of the "
        "continuation under TextBlob's Pattern lexicon ± s.e. (built apart from VADER, to which "
        "the reward's head was fitted); `on target`: share strictly on the target's side, by the "
        "judge to its left; `ppl`: judge-LM perplexity (geometric mean over samples); "
        "`s/sample`: wall seconds per sample.",
        "",
        *[f"Note: {note}\n" for note in result.get("notes", [])],
    ]
    for target in TARGETS:
        cells = {k.split("|")[0]: c for k, c in result["cells"].items() if k.endswith(target)}
        if not cells:
            continue
        header = ["setting", "reward", "VADER", "on target", "Pattern", "on target", "ppl"]
        header += ["d-1", "d-2", "s/sample"]
        rows = []
        first = next(iter(cells.values()))
        sides = [("unguided", first["unguided"])]
        sides += [(name, cells[name]["guided"]) for name in SETTINGS if name in cells]
        for name, m in sides:
            rows.append(
                [
                    name,
                    f"{m['reward']:+.2f}",
                    f"{m['vader']:+.2f} ± {m['vader_se']:.2f}",
                    f"{m['on_target']:.2f}",
                    f"{m['pattern']:+.2f} ± {m['pattern_se']:.2f}",
                    f"{m['pattern_on_target']:.2f}",
                    f"{m['ppl']:.1f}",
                    f"{m['d1']:.2f}",
                    f"{m['d2']:.2f}",
                    f"{m['s_per_sample']:.2f}",
                ]
            )
        lines += [f"## Target: {target}", "", *_common.md_table(header, rows, "lrrrrrrrrr"), ""]
        lines += agreement_lines(target, sides)
    return "\n".join(lines)


def agreement(vader: list[float], pattern: list[float], sign: float) -> dict:
    """How far the two sentiment judges agree on the same samples (`sign`: +1 positive target)."""
    v_on = [sign * v > 0 for v in vader]
    p_on = [sign * p > 0 for p in pattern]
    n = len(vader)
    flat = len(set(vader)) < 2 or len(set(pattern)) < 2
    return {
        "n": n,
        "both": sum(a and b for a, b in zip(v_on, p_on, strict=True)) / n,
        "vader_only": sum(a and not b for a, b in zip(v_on, p_on, strict=True)) / n,
        "pattern_only": sum(b and not a for a, b in zip(v_on, p_on, strict=True)) / n,
        "pearson": math.nan if flat else statistics.correlation(vader, pattern),
    }


def agreement_lines(target: str, sides: list[tuple[str, dict]]) -> list[str]:
    """The judges' agreement table of one target: unguided, each setting, all guided rows."""
    sign = 1.0 if target == "positive" else -1.0
    groups = [(name, m["scores"]["vader"], m["scores"]["pattern"]) for name, m in sides]
    guided = [g for g in groups if g[0] != "unguided"]
    groups.append(
        ("all guided", [v for g in guided for v in g[1]], [p for g in guided for p in g[2]])
    )
    rows = []
    for name, vader, pattern in groups:
        a = agreement(vader, pattern, sign)
        rows.append(
            [
                name,
                a["n"],
                f"{a['both']:.2f}",
                f"{a['vader_only']:.2f}",
                f"{a['pattern_only']:.2f}",
                "-" if math.isnan(a["pearson"]) else f"{a['pearson']:+.2f}",
            ]
        )
    header = ["samples", "n", "both on target", "VADER only", "Pattern only", "Pearson r"]
    return [
        f"Judges' agreement, target {target} (on the same samples; `Pearson r` of the two "
        "scores, `-` where one judge gives every sample the same score):",
        "",
        *_common.md_table(header, rows, "lrrrrr"),
        "",
    ]


def main(argv: list[str] | None = None) -> None:
    _common.use_checkout()
    args = parse_args(argv)
    if args.report_only:
        result = _common.read_results(args.out / "main_job.json")
        _common.write_results(args.out, "main_job", result, markdown(result))
        return
    _common.set_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    prompts = held_out_prompts(args.prompts)
    settings = {
        "prompts": args.prompts,
        "samples": args.samples,
        "batch_size": args.batch_size,
        "extra": args.extra,
        "prompt_texts": prompts,
    }
    store = _common.CellStore(args.out / "main_job.json")
    if store.data.get("settings") not in (None, settings):
        raise SystemExit(f"{store.path} holds other settings; pass --out elsewhere.")
    store.data.update(
        settings=settings,
        command=_common.command_line("main_job", argv),
        machine=_common.machine_info(),
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prompts_file = work / "prompts.txt"
        prompts_file.write_text("\n".join(prompts) + "\n")
        for target in args.targets:
            for setting in args.settings:
                key = f"{setting}|{target}"
                if key in store:
                    continue
                cell = run_cell(args, prompts_file, setting, target, work)
                store.put(key, cell)
                g, u = cell["guided"], cell["unguided"]
                print(
                    f"{key}: reward {g['reward']:+.2f} VADER {g['vader']:+.2f} "
                    f"({g['on_target']:.0%}) Pattern {g['pattern']:+.2f} "
                    f"({g['pattern_on_target']:.0%}) ppl {g['ppl']:.0f} | unguided VADER "
                    f"{u['vader']:+.2f} Pattern {u['pattern']:+.2f} ppl {u['ppl']:.0f} | "
                    f"{g['s_per_sample']:.1f} s/sample",
                    flush=True,
                )
    for target in args.targets:  # the unguided rows are the same sample in every cell
        same = {json.dumps(c["unguided_ids"]) for k, c in store.cells.items() if k.endswith(target)}
        store.data.setdefault("unguided_identical", {})[target] = len(same) == 1
    store.save()
    _common.write_results(args.out, "main_job", store.data, markdown(store.data))


if __name__ == "__main__":
    main()
