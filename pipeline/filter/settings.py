"""Rule settings checked against the rule class's own parameters, before any worker builds the class.

datatrove's filter classes take whatever they are given and fail at the first document
(`min_doc_words: "fifty"` is a TypeError in every worker, hours later). The parameters a class
takes, with their types, are read from its `__init__` (and, where it passes `**params` on, from its
base class's): the annotation where there is one, else the default's type. The values are checked
and converted by the config's own type check (pipeline/config.py `check_type`), so a setting takes
what a config field of that type takes: int where float is asked for, a numeric string ("2e3",
YAML 1.1's reading of 2e3) for a number, never a bool for a number, null where the annotation or
the default allows it, a YAML list where a list or tuple is expected. Only the wording of a wrong
type is this module's: `rules.en.gopher_quality.min_doc_words: "fifty" is not a number (expected an
integer or null)`.
"""

from __future__ import annotations

import difflib
import inspect
import json
import types
import typing
from functools import cache
from typing import Any

from ..config import ConfigError, TypeMismatch, check_type, is_number

NOT_SETTINGS = ("self", "language", "exclusion_writer")  # given by the chain, never by a config
_EMPTY = inspect.Parameter.empty
_NONE = type(None)


@cache
def parameters(cls: type) -> dict[str, Any]:
    """{name: type hint} of the keyword arguments `cls(...)` accepts, following `**params` into base classes."""
    found: dict[str, Any] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            hints = typing.get_type_hints(init)
        except Exception:  # noqa: BLE001 - an annotation that cannot be evaluated: the defaults' types decide
            hints = {}
        passes_on = False
        for name, param in inspect.signature(init).parameters.items():
            if param.kind is param.VAR_KEYWORD:
                passes_on = True
            elif param.kind is not param.VAR_POSITIONAL and name not in NOT_SETTINGS and name not in found:
                found[name] = _any_length(_hint(hints.get(name, _EMPTY), param.default))
        if not passes_on:
            break
    return found


def _hint(annotation: Any, default: Any) -> Any:
    """The type a parameter takes: its annotation, else its default's type (Any for no default or None)."""
    if annotation in (_EMPTY, Any) or isinstance(annotation, str):
        if default is _EMPTY or default is None:
            return Any
        if isinstance(default, (list, tuple)):  # a list or tuple of its items' type (any length)
            kinds = {type(v) for v in default}
            item = kinds.pop() if len(kinds) == 1 else Any
            return list[item] if isinstance(default, list) else tuple[item, ...]
        return type(default)
    if default is None and not _allows_none(annotation):
        return typing.Optional[annotation]  # noqa: UP045 - `seed: int = None`; works for any hint
    return annotation


def _any_length(hint: Any) -> Any:
    """`hint` with each one-argument tuple[X] read as tuple[X, ...]: datatrove writes
    `tuple[tuple[int, float]]` for a tuple of any number of pairs."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple and len(args) == 1:
        return tuple[_any_length(args[0]), ...]
    if origin is tuple and args:
        return tuple[tuple(_any_length(a) if a is not Ellipsis else a for a in args)]
    if origin is list and args:
        return list[_any_length(args[0])]
    if _is_union(hint):
        return typing.Union[tuple(_any_length(a) for a in args)]  # noqa: UP007 - built from a tuple of hints
    return hint


def _allows_none(hint: Any) -> bool:
    return hint is _NONE or hint is None or (_is_union(hint) and _NONE in typing.get_args(hint))


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _sequence_items(hint: Any) -> tuple[Any, ...] | None:
    """The item hints of a list/tuple hint: (item,) for one of any length, one per position for a
    fixed-length tuple; None if `hint` is not a sequence."""
    origin = typing.get_origin(hint) or hint
    if origin not in (list, tuple):
        return None
    args = typing.get_args(hint)
    if not args:
        return (Any,)
    return args if _is_fixed(hint) else (args[0],)


def _is_fixed(hint: Any) -> bool:
    args = typing.get_args(hint)
    return typing.get_origin(hint) is tuple and bool(args) and Ellipsis not in args


_NAMES = {int: ("an integer", "integers"), float: ("a number", "numbers"), bool: ("true or false", "true/false values"), str: ("a string", "strings")}


def describe(hint: Any, plural: bool = False) -> str:
    """`hint` in a config's words: "an integer or null", "a list of strings", "a list of [an integer, a number] pairs"."""
    if _is_union(hint):
        return " or ".join(describe(h, plural) for h in sorted(typing.get_args(hint), key=lambda h: h is _NONE))
    if hint is _NONE or hint is None:
        return "nulls" if plural else "null"
    if hint in _NAMES:
        return _NAMES[hint][plural]
    items = _sequence_items(hint)
    if items is not None and _is_fixed(hint):
        shape = "[" + ", ".join(describe(h) for h in items) + "]"
        return f"{shape} {'pairs' if len(items) == 2 else 'lists'}" if plural else shape
    if items is not None:
        inner = "" if items[0] is Any else f" of {describe(items[0], plural=True)}"
        return f"lists{inner}" if plural else f"a list{inner}"
    if hint is Any:
        return "values" if plural else "any value"
    name = getattr(hint, "__name__", str(hint))
    return f"{name} values" if plural else f"a {name}"


def _noun(hint: Any, value: Any) -> str:
    """What `value` failed to be, for "X is not ..."."""
    options = [h for h in typing.get_args(hint) if h is not _NONE] if _is_union(hint) else [hint]
    first = options[0] if options else hint
    if first is int and (isinstance(value, float) or is_number(value)):  # 50.5, "50.5"
        return "an integer"
    if first in (int, float):
        return "a number"
    if first in _NAMES:
        return _NAMES[first][0]
    items = _sequence_items(first)
    if items is not None:
        return f"a list of {len(items)}" if _is_fixed(first) and isinstance(value, (list, tuple)) else "a list"
    return describe(first)


def show(value: Any) -> str:
    """A value as the config would write it: "fifty", 50.5, true, null, [1, 2]."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return repr(value)


def _worded(exc: ConfigError) -> str:
    """The config's error in a rule setting's words: `where: "fifty" is not a number (expected an integer or null)`."""
    if not isinstance(exc, TypeMismatch):  # an integer out of range...: the config's own words
        return str(exc)
    return f"{exc.where}: {show(exc.value)} is not {_noun(exc.hint, exc.value)} (expected {describe(exc.hint)})"


def check_settings(cls: type, settings: Any, where: str) -> tuple[dict[str, Any], list[str]]:
    """`settings` as `cls` takes them (numeric strings as numbers, lists for tuples as tuples), and
    every setting `cls` does not take or takes with another type."""
    if not isinstance(settings, dict):
        return {}, [f"{where}: expected a mapping of settings or null, got {show(settings)}"]
    known = parameters(cls)
    errors = []
    unknown = sorted(str(k) for k in settings if k not in known)
    if unknown:
        named = [f"{k} (did you mean {close[0]}?)" if (close := difflib.get_close_matches(k, known, n=1)) else k for k in unknown]
        errors.append(f"{where}: unknown setting(s) {', '.join(named)}; known: {', '.join(known)}")
    checked = {}
    for name, value in settings.items():
        if name not in known:
            continue
        try:
            checked[name] = check_type(value, known[name], f"{where}.{name}", None)
        except ConfigError as exc:
            errors.append(_worded(exc))
    return checked, errors


def settings_errors(cls: type, settings: Any, where: str) -> list[str]:
    """Every setting of `settings` that `cls` does not take, or takes with another type."""
    return check_settings(cls, settings, where)[1]
