"""Guidance options shared by the sub-commands: flags generated from `GuidanceConfig`'s fields.

Each CLI field of :class:`~redge_guidance.GuidanceConfig` (``cli_fields()``) becomes the flag
``--`` + its name with ``-``: type from its default (or annotation), choices, metavar and help from
``field.metadata``, bools as ``--x/--no-x``. Importing this module (and building the flags) does not
import torch, so `--help` stays fast. The pre-0.2 flags ``--forget X`` and ``--decode`` still work
for one release, hidden from `--help`, with a one-line warning.

Error messages of the library name its arguments (`n_opt_steps`); :func:`to_flags` rewrites them
with the flags the user typed (`--n-opt-steps`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..guidance.config import CONFIG_NAME, cli_fields
from .io import UsageError

__all__ = [
    "DeprecatedAlias",
    "ESTIMATOR_FLAGS",
    "add_estimator_flags",
    "add_guidance_flags",
    "build_guidance_config",
    "check_estimator",
    "flag_name",
    "guidance_settings",
    "load_config_file",
    "to_flags",
]

_METAVARS = {int: "N", float: "X", str: "NAME"}
# Pre-0.2 flags, hidden from --help: (flag, dest, type, choices).
_DEPRECATED = (
    ("--forget", "old_forget", float, None),
    ("--decode", "old_decode", str, ("sample", "argmax")),
)
#: (flag, estimator option, type, help): the estimators' own options.
ESTIMATOR_FLAGS: tuple[tuple[str, str, Any, str], ...] = (
    ("--n-steps", "n_steps", int, "redge / redge_cov / reindge: diffusion steps of the relaxation"),
    ("--t-1", "t_1", float, "redge / redge_cov / reindge: first time of the relaxation schedule"),
    ("--tau", "tau", float, "gumbel_softmax / reinmax: temperature"),
)


class DeprecatedAlias(argparse.Action):
    """A hidden, renamed flag: stores its value under the new flag's dest and warns once."""

    def __init__(self, *args: Any, new_flag: str, **kwargs: Any) -> None:
        self.new_flag = new_flag
        super().__init__(*args, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001
        print(
            f"{parser.prog}: warning: `{option_string}` is deprecated and will be removed; "
            f"use `{self.new_flag}`.",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


def flag_name(field_name: str) -> str:
    """``n_opt_steps`` -> ``--n-opt-steps``."""
    return "--" + field_name.replace("_", "-")


def _field_type(f: dataclasses.Field) -> Any:
    """`int`, `float`, `str` or `bool` for a config field (annotations are strings here)."""
    if f.default is not None and f.default is not dataclasses.MISSING:
        return type(f.default)
    text = str(f.type)
    for name, typ in (("bool", bool), ("int", int), ("float", float)):
        if re.search(rf"\b{name}\b", text):
            return typ
    return str


def _default_text(value: Any) -> str:
    return "off" if value is None else str(value)


def add_guidance_flags(
    group: Any,
    *,
    only: Iterable[str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    helps: Mapping[str, str] | None = None,
) -> None:
    """Add one flag per CLI field of `GuidanceConfig` to `group` (dest ``g_<field>``, default None).

    Args:
        group: an argparse parser or argument group.
        only (`Iterable[str]`, *optional*): the fields to expose (default: every CLI field).
        defaults (`Mapping[str, Any]`, *optional*): the command's own defaults, shown in the help
            (the command applies them); the others show the field's default.
        helps (`Mapping[str, str]`, *optional*): help texts replacing the field's.
    """
    defaults = dict(defaults or {})
    helps = dict(helps or {})
    wanted = None if only is None else set(only)
    for f in cli_fields():
        if wanted is not None and f.name not in wanted:
            continue
        typ = _field_type(f)
        default = defaults.get(f.name, f.default)
        text = helps.get(f.name) or f.metadata["help"]
        if "default" not in text:
            text += f" (default: {_default_text(default)})"
        kwargs: dict[str, Any] = {"dest": f"g_{f.name}", "default": None, "help": text}
        if typ is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = typ
            if "choices" in f.metadata:
                kwargs["choices"] = tuple(f.metadata["choices"])
            else:
                kwargs["metavar"] = f.metadata.get("metavar", _METAVARS[typ])
        group.add_argument(flag_name(f.name), **kwargs)
    if wanted is None:
        for flag, dest, typ, choices in _DEPRECATED:
            group.add_argument(flag, dest=dest, type=typ, choices=choices, help=argparse.SUPPRESS)


def add_estimator_flags(group: Any) -> None:
    """The estimators' own options: `--n-steps`, `--t-1`, `--tau`, `--hard`,
    `--estimator-option`."""
    for flag, option, typ, text in ESTIMATOR_FLAGS:
        group.add_argument(
            flag, dest=f"e_{option}", type=typ, default=None, help=text, metavar=_METAVARS[typ]
        )
    group.add_argument(
        "--hard",
        dest="e_hard",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="gumbel_softmax: straight-through hard samples",
    )
    group.add_argument(
        "--estimator-option",
        action="append",
        metavar="KEY=VALUE",
        default=[],
        help="any estimator option (VALUE read as JSON, else as a string); repeatable",
    )


# --------------------------------------------------------------------------------- settings


def load_config_file(path: str) -> dict[str, Any]:
    """The fields in `--config PATH`: a JSON file, or a folder written by `save_pretrained`."""
    p = Path(path)
    file = p / CONFIG_NAME if p.is_dir() else p
    if not file.is_file():
        raise UsageError(
            f"`--config` {path!r} is neither a JSON file nor a folder holding {CONFIG_NAME}. "
            "Write one with `GuidanceConfig(...).save_pretrained(folder)`."
        )
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except OSError as err:
        raise UsageError(f"`--config` {path!r} cannot be read ({err.strerror or err}).") from None
    except ValueError as err:  # UnicodeDecodeError included
        raise UsageError(f"`--config` {path!r} is not valid JSON ({err}).") from None
    if not isinstance(data, dict):
        raise UsageError(
            f"`--config` {path!r} must hold a JSON object of GuidanceConfig fields, got "
            f"{type(data).__name__}. Write one with `GuidanceConfig(...).to_json_file(path)`."
        )
    return data


def _parse_option_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _deprecated_flags(args: argparse.Namespace, settings: dict[str, Any], prog: str) -> None:
    """Convert `--forget X` / `--decode` to `--warm-start 1-X` / `--handoff`, warning once each."""
    forget, decode = getattr(args, "old_forget", None), getattr(args, "old_decode", None)
    for old, value, new, field in (
        ("--forget", forget, "--warm-start", "warm_start"),
        ("--decode", decode, "--handoff", "handoff"),
    ):
        if value is None:
            continue
        if getattr(args, f"g_{field}", None) is not None:
            raise UsageError(f"pass `{new}` only; `{old}` is its deprecated alias.")
        if field == "warm_start":
            converted: Any = 1.0 - value  # the library's own conversion of `forget`
            shown = f"{converted:g}"
        else:
            converted = shown = {"sample": "logits"}.get(value, value)
        print(
            f"{prog}: warning: `{old} {value}` is deprecated and will be removed; "
            f"use `{new} {shown}`.",
            file=sys.stderr,
        )
        settings[field] = converted


def guidance_settings(
    args: argparse.Namespace, defaults: Mapping[str, Any], prog: str
) -> dict[str, Any]:
    """`defaults`, then `--config`, then explicit flags: a GuidanceConfig dict (unvalidated)."""
    settings: dict[str, Any] = dict(defaults)
    if getattr(args, "config", None) is not None:
        settings.update(load_config_file(args.config))
    options = dict(settings.get("estimator_options") or {})
    for key, value in vars(args).items():
        if key.startswith("g_") and value is not None:
            settings[key[2:]] = value
        elif key.startswith("e_") and value is not None:
            options[key[2:]] = value
    for item in getattr(args, "estimator_option", None) or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(
                f"`--estimator-option` must be KEY=VALUE, got {item!r}; e.g. "
                "`--estimator-option n_steps=5`."
            )
        options[key.strip()] = _parse_option_value(value.strip())
    settings["estimator_options"] = options
    _deprecated_flags(args, settings, prog)
    return settings


def check_estimator(name: Any) -> None:
    """An unknown `--estimator` is a usage error listing the valid ones (imports the registry)."""
    from ..estimators import ESTIMATORS

    if name not in ESTIMATORS:
        raise UsageError(f"unknown `--estimator` {name!r}; valid: {', '.join(sorted(ESTIMATORS))}.")


def build_guidance_config(settings: Mapping[str, Any], prog: str):
    """Validated `GuidanceConfig` from `settings` (`UsageError` naming the flags on bad values)."""
    from ..guidance.config import GuidanceConfig

    check_estimator(settings.get("estimator", "redge"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            config = GuidanceConfig.from_dict(settings)
        except (ValueError, TypeError) as err:
            raise UsageError(to_flags(str(err))) from None
    for w in caught:  # e.g. a saved config with the pre-0.2 names: one line each
        print(f"{prog}: warning: {' '.join(str(w.message).split())}", file=sys.stderr)
    return config


_GUIDANCE_FIELDS = frozenset(f.name for f in cli_fields())


def to_flags(message: str, extra: Mapping[str, str] | None = None) -> str:
    """Rewrite the library's argument names in `message` as the flags the user typed.

    `` `n_opt_steps` `` -> `` `--n-opt-steps` ``, `` `kl_weight=0` `` -> `` `--kl-weight 0` ``;
    `extra` maps other argument names to flags (e.g. ``{"num_inference_steps": "--steps"}``).
    """
    names = {name: flag_name(name) for name in _GUIDANCE_FIELDS}
    names.update(extra or {})

    def assign(match: re.Match[str]) -> str:
        name, value = match.group(1), match.group(2)
        if name not in names:
            return match.group(0)
        return f"`{names[name]} {value.strip(chr(39))}`"

    def plain(match: re.Match[str]) -> str:
        name = match.group(1)
        return f"`{names[name]}`" if name in names else match.group(0)

    message = re.sub(r"`(\w+)=([^`]*)`", assign, message)
    message = re.sub(r"`(\w+)`", plain, message)
    return " ".join(message.split())
