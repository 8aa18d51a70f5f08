"""Command-line options generated from a stage's configuration dataclass, so each default and
type is written once (in the dataclass) and every verb's --help shows it.

    add_fields(parser, BuildConfig, HELP, skip=("profile",))
    cfg = from_args(BuildConfig, args)

`HELP` (field name -> text) sits beside the dataclass; a field's --flag is its name with
dashes. bool fields become switches, lists and tuples take several values, `X | None` takes
an X. Torch-free, like every module of the runtime.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing


def _kind(t) -> tuple[type, type | None]:
    """(outer, element) of a field's type with None removed: (int, None), (list, str), ..."""
    args = [a for a in typing.get_args(t) if a is not type(None)]
    if typing.get_origin(t) in (typing.Union, types.UnionType):
        return _kind(args[0])
    origin = typing.get_origin(t)
    if origin in (list, tuple):
        return origin, (args[0] if args else str)
    return t, None


def default_of(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def add_fields(p: argparse.ArgumentParser, cls, help: dict[str, str], *, skip=(), only=None, choices=None,
               metavar=None, positional=()) -> None:
    """One option per field of dataclass `cls` (all of `only`, else all but `skip`)."""
    hints = typing.get_type_hints(cls)
    choices, metavar = choices or {}, metavar or {}
    for f in dataclasses.fields(cls):
        if f.name in skip or (only is not None and f.name not in only):
            continue
        outer, inner = _kind(hints[f.name])
        default = default_of(f)
        text = help.get(f.name, "")
        kw: dict = {"help": text}
        if outer is bool:  # a field on by default is turned off with --no-NAME
            kw["action"] = argparse.BooleanOptionalAction if default is True else "store_true"
        elif outer in (list, tuple):
            kw.update(nargs="+", type=inner)
        else:
            kw["type"] = outer
        if f.name in choices:
            kw["choices"] = list(choices[f.name])
        if f.name in metavar:
            kw["metavar"] = metavar[f.name]
        if default not in (None, [], (), False, "") and "%(default)" not in text:
            kw["help"] = f"{text} (default: %(default)s)".lstrip()
        if f.name in positional:  # a list: one or more values; anything else: exactly one
            p.add_argument(f.name, help=text, **({"nargs": "+", "type": inner} if outer is list else {"type": outer}))
        else:
            p.add_argument("--" + f.name.replace("_", "-"), default=default, **kw)


def from_args(cls, a: argparse.Namespace, **given):
    """The dataclass from parsed options: every field the parser has, then `given`. A value
    the dataclass refuses (its __post_init__ raises ValueError) is a user's mistake: a
    StyleRTError whose message names the option (--dec-dilations, not dec_dilations)."""
    import re

    from .errors import StyleRTError

    values = {f.name: getattr(a, f.name) for f in dataclasses.fields(cls) if hasattr(a, f.name)}
    hints = typing.get_type_hints(cls)
    for k, v in values.items():
        if _kind(hints[k])[0] is tuple and v is not None:
            values[k] = tuple(v)
    try:
        return cls(**{**values, **given})
    except ValueError as e:
        names = sorted(values, key=len, reverse=True)
        msg = re.sub(r"\b(" + "|".join(map(re.escape, names)) + r")\b", lambda m: "--" + m.group(1).replace("_", "-"), str(e)) \
            if names else str(e)
        raise StyleRTError(f"{msg}.", "See the option's meaning and range in --help.") from None
