"""Rule settings checked against the rule class's own parameters, before any worker builds the class.

datatrove's filter classes take whatever they are given and fail at the first document
(`min_doc_words: "fifty"` is a TypeError in every worker, hours later). The parameters a class
takes, with their types, are read from its `__init__` (and, where it passes `**params` on, from its
base class's): the annotation where there is one, else the default's type. int is accepted where
float is, bool is not accepted as a number, null where the annotation or the default allows it, a
YAML list where a list or tuple is expected.
"""

from __future__ import annotations

import difflib
import inspect
import json
import math
import types
import typing
from functools import cache
from typing import Any

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
                found[name] = _hint(hints.get(name, _EMPTY), param.default)
        if not passes_on:
            break
    return found


def _hint(annotation: Any, default: Any) -> Any:
    if annotation in (_EMPTY, Any) or isinstance(annotation, str):
        if default is _EMPTY or default is None:
            return Any
        if isinstance(default, (list, tuple)):
            kinds = {type(v) for v in default}
            return list[kinds.pop()] if len(kinds) == 1 else list
        return type(default)
    if default is None and not _allows_none(annotation):
        return typing.Optional[annotation]  # noqa: UP045 - `seed: int = None`; works for any hint
    return annotation


def _allows_none(hint: Any) -> bool:
    return hint is _NONE or hint is None or (_is_union(hint) and _NONE in typing.get_args(hint))


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _sequence_items(hint: Any) -> tuple[Any, ...] | None:
    """The item hints of a list/tuple hint: (item,) for a homogeneous one, one per position for a
    fixed-length tuple; None if `hint` is not a sequence. A one-argument tuple[X] is read as
    homogeneous: datatrove writes `tuple[tuple[int, float]]` for a tuple of any number of pairs."""
    origin = typing.get_origin(hint) or hint
    if origin not in (list, tuple):
        return None
    args = typing.get_args(hint)
    if not args:
        return (Any,)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return (args[0],)
    if origin is tuple and len(args) > 1:
        return args
    return (args[0],)


def _is_fixed(hint: Any) -> bool:
    args = typing.get_args(hint)
    return typing.get_origin(hint) is tuple and len(args) > 1 and Ellipsis not in args


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
    if first is int and isinstance(value, float):
        return "an integer"
    if first in (int, float):
        return "a number"
    if first in _NAMES:
        return _NAMES[first][0]
    items = _sequence_items(first)
    if items is not None:
        return f"a list of {len(items)}" if _is_fixed(first) and isinstance(value, (list, tuple)) else "a list"
    return describe(first)


def _mismatch(value: Any, hint: Any, where: str) -> tuple[str, Any, Any] | None:
    """(where, value, hint) of the first part of `value` that is not of type `hint`; None if it is."""
    if hint is Any:
        return None
    if _is_union(hint):
        if value is None and _allows_none(hint):
            return None
        options = [h for h in typing.get_args(hint) if h is not _NONE]
        if any(_mismatch(value, h, where) is None for h in options):
            return None
        if len(options) == 1 and value is not None:  # a list option: name the item that is wrong
            inner = _mismatch(value, options[0], where)
            if inner is not None and inner[0] != where:
                return inner
        return where, value, hint
    if hint is _NONE or hint is None:
        return None if value is None else (where, value, hint)
    if hint is bool:
        return None if isinstance(value, bool) else (where, value, hint)
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else (where, value, hint)
    if hint is float:
        number = (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, float) and not math.isnan(value))
        return None if number else (where, value, hint)
    items = _sequence_items(hint)
    if items is not None:
        if not isinstance(value, (list, tuple)) or (_is_fixed(hint) and len(value) != len(items)):
            return where, value, hint
        for i, item in enumerate(value):
            if (wrong := _mismatch(item, items[i] if len(items) > 1 else items[0], f"{where}[{i}]")) is not None:
                return wrong
        return None
    if isinstance(hint, type):
        return None if isinstance(value, hint) else (where, value, hint)
    return None  # a typing construct we do not read: accepted


def show(value: Any) -> str:
    """A value as the config would write it: "fifty", 50.5, true, null, [1, 2]."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return repr(value)


def type_error(value: Any, hint: Any, where: str) -> str | None:
    """`where: "fifty" is not a number (expected an integer or null)`, or None when `value` fits `hint`."""
    wrong = _mismatch(value, hint, where)
    if wrong is None:
        return None
    at, part, part_hint = wrong
    message = f"{at}: {show(part)} is not {_noun(part_hint, part)} (expected {describe(part_hint)})"
    if isinstance(part, str) and "e" in part.lower() and _noun(part_hint, part) == "a number" and _looks_numeric(part):
        message += f"; YAML reads {part} as a string: write it with a dot and a signed exponent (1.0e+5) or in full"
    return message


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def settings_errors(cls: type, settings: Any, where: str) -> list[str]:
    """Every setting of `settings` that `cls` does not take, or takes with another type."""
    if not isinstance(settings, dict):
        return [f"{where}: expected a mapping of settings or null, got {show(settings)}"]
    known = parameters(cls)
    errors = []
    unknown = sorted(str(k) for k in settings if k not in known)
    if unknown:
        named = [f"{k} (did you mean {close[0]}?)" if (close := difflib.get_close_matches(k, known, n=1)) else k for k in unknown]
        errors.append(f"{where}: unknown setting(s) {', '.join(named)}; known: {', '.join(known)}")
    for name, value in settings.items():
        if name in known and (message := type_error(value, known[name], f"{where}.{name}")) is not None:
            errors.append(message)
    return errors
