"""The flags of `redge-guidance generate` (its parser; the run is in `generate.py`)."""

from __future__ import annotations

import argparse

from .checks import add_run_flags
from .io import int_at_least
from .options import DeprecatedAlias, add_estimator_flags, add_guidance_flags
from .plan import CLI_GUIDANCE_DEFAULTS
from .search import add_search_flags

__all__ = ["add_generate_flags"]

_DTYPES = ("float32", "bfloat16", "float16")
_REWARD_HELP = """\
reward spec NAME[:ARG][=WEIGHT], repeatable (weighted specs add up);
default sentiment:positive.
  sentiment:positive|negative  MiniLM embedding + VADER-fitted head
  similarity:TEXT              MiniLM cosine similarity to TEXT
  lexicon:vader                mean VADER valence of the tokens
  fluency[:K]                  pseudo-log-likelihood under the generator
                               (K masked passes, default 4)
  module.path:callable         callable(tokenizer, vocab_size) or
                               callable() returning a rewards.Reward
e.g. --reward sentiment:positive=1.0 --reward fluency=0.3"""


_positive_int = int_at_least(1)
_nonneg_int = int_at_least(0)


def _length(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of new tokens >= 1, got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"length {value} is too short: generate at least 1 new token, e.g. --length 32"
        )
    return value


def _add_prompt_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("prompts")
    g.add_argument(
        "--prompt",
        action="append",
        metavar="TEXT",
        help="a prompt (repeatable; '' for unconditional); default: two Shakespeare openings",
    )
    g.add_argument(
        "--prompts",
        metavar="FILE",
        help="prompts file: .txt (one per line), .jsonl/.json, .csv/.tsv or .parquet",
    )
    g.add_argument(
        "--prompt-column",
        metavar="NAME",
        help="column of a table prompts file (default: 'prompt', else 'text')",
    )
    g.add_argument(
        "--num-samples",
        type=_positive_int,
        default=1,
        metavar="N",
        help="samples per prompt (default 1)",
    )


def _add_generation_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("generation")
    g.add_argument(
        "--length", type=_length, default=32, metavar="N", help="new tokens per sample (default 32)"
    )
    g.add_argument(
        "--steps", type=_positive_int, default=16, metavar="N", help="denoising steps (default 16)"
    )
    g.add_argument(
        "--unmasking",
        dest="order",
        choices=("random", "confidence"),
        default="random",
        help="which masked positions each step commits (default random: MDLM)",
    )
    g.add_argument(  # pre-0.2 name of --unmasking (the scheduler's config key was `order`)
        "--order",
        dest="order",
        choices=("random", "confidence"),
        default=argparse.SUPPRESS,
        action=DeprecatedAlias,
        new_flag="--unmasking",
        help=argparse.SUPPRESS,
    )
    g.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        metavar="X",
        help="sampling temperature (default 1.0; 0 = argmax)",
    )
    g.add_argument(
        "--seed", type=int, default=0, metavar="N", help="seed of the whole job (default 0)"
    )
    g.add_argument(
        "--batch-size",
        type=_positive_int,
        default=8,
        metavar="N",
        help="samples per batch (default 8)",
    )


def _add_guidance_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("reward")
    g.add_argument("--reward", action="append", metavar="SPEC", help=_REWARD_HELP)

    g = p.add_argument_group("guidance (same names as redge_guidance.GuidanceConfig)")
    g.add_argument(
        "--config",
        metavar="PATH",
        help="GuidanceConfig as a JSON file or a save_pretrained folder; flags override it",
    )
    add_guidance_flags(g, defaults=CLI_GUIDANCE_DEFAULTS)
    add_estimator_flags(g)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and device")
    g.add_argument(
        "--model",
        metavar="PATH_OR_ID",
        help="masked LM folder or Hub id (default: the embedded Shakespeare model)",
    )
    g.add_argument("--trust-remote-code", action="store_true", help="allow the model's custom code")
    g.add_argument(
        "--device",
        default="auto",
        help="auto (cuda if available, the process's GPU under accelerate), cpu, cuda, cuda:1, mps",
    )
    g.add_argument(
        "--dtype",
        choices=_DTYPES,
        default="float32",
        help="weight dtype of the models (default float32)",
    )
    g.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        metavar="N",
        help="torch CPU threads per process (default 1)",
    )


def _add_output_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output")
    g.add_argument(
        "--output",
        metavar="FILE",
        help="JSONL file, written as batches finish; default: texts to stdout",
    )
    g.add_argument(
        "--resume",
        action="store_true",
        help="keep the rows already in --output and generate the rest",
    )
    g.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    g.add_argument(
        "--compare",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also sample each batch unguided with the same seed (reward_unguided; default on, "
        "off with --keep-particles)",
    )
    g.add_argument(
        "--judge",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="score each continuation with judges that did not steer: VADER compound, Pattern "
        "polarity and perplexity under the shipped judge LM (default on where the text extra is "
        "installed and the embedded model runs; the run says when and why it is off)",
    )
    add_run_flags(g, quiet_help="no progress bar (weight loading included), no summary")


def add_generate_flags(p: argparse.ArgumentParser) -> None:
    """Every flag of `generate`, in the order `--help` lists them."""
    _add_prompt_args(p)
    _add_generation_args(p)
    _add_guidance_args(p)
    add_search_flags(p, ranking=True)
    _add_model_args(p)
    _add_output_args(p)
