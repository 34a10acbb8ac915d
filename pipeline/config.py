"""Strict configs: one dataclass per stage, built the same way from a run config's section, a
stage's own `--config FILE` and its command-line options.

`build(cls, data)` rejects unknown keys, wrong types and bad values with the key path and what was
expected; nothing is ignored silently. Field metadata tunes a field:

    "parse": a function applied to the raw value first (e.g. `mix: "en=0.6,zh=0.4"` -> a dict)
    "path":  True: a relative path (or list of them) is relative to the config file's folder (a URL's for a URL config);
             "spec": the same for `LANG=PATH` inputs (the tokenizer's)
    "help":  the command-line help of the option that sets it

The run config (`crawlmill run CONFIG.yaml`) is `output_dir`, `ray` and one section per stage of the
pipeline (definition.py), each that stage's config dataclass; a section may also be the path of a
YAML file holding it. Example (configs/demo.yaml)::

    output_dir: ../demo-output        # relative paths are relative to the config file
    ray: {num_cpus: 2}
    ingest: {inputs: ['../samples/crawl-data/*/segments/*/warc/*.warc.gz'], extractor: resiliparse}
    filter: ../configs/filters.yaml   # a section in its own file
    tokenizer: {vocab_size: 1000}     # or {path: existing/tokenizer}
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import types
import typing
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .dumps import DumpsConfig
from .ray_tasks import RayOptions

if TYPE_CHECKING:
    from .definition import Pipeline


class ConfigError(ValueError):
    pass


class TypeMismatch(ConfigError):
    """A value of the wrong type: `where` it is, the `value` as given and the `hint` it does not fit
    (a union's whole hint where no option fits at that level), for a caller that words it its own way
    (the filter's rule settings: filter/settings.py)."""

    def __init__(self, message: str, where: str, value: Any, hint: Any) -> None:
        super().__init__(message)
        self.where, self.value, self.hint = where, value, hint


from .relative_paths import RelativeToUrl, UrlFolder, config_file, config_folder, resolve_path, resolve_paths

_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def is_number(text: Any) -> bool:
    """`text` is a decimal number ("50", "-0.5", "2e12", "1.0e+9"; not "nan", "inf" or "1_000"): what a
    numeric field also takes as a string (YAML 1.1 reads 2e12, without a dot, as one), and what a
    command line's `-1e3` is rather than an option."""
    return isinstance(text, str) and _NUMBER.match(text.strip()) is not None


def check_type(value: Any, hint: Any, where: str, base: Path | UrlFolder | None) -> Any:
    """`value` as a field or setting of type `hint` holds it, or ConfigError (TypeMismatch for a wrong
    type) naming `where`. The one type check of every config: the stages' dataclasses and the
    filter's rule settings (hints read from the rule classes). Numbers: an int where a float is
    asked for, a whole float (2e9) where an int is, a numeric string ("2e12", "50") for either,
    converted; never a bool, nan or an int beyond 64 bits. A YAML list where a list or tuple is
    asked for (tuple[X, ...]: any length, tuple[X, Y]: exactly two). Typing constructs not read
    here (Literal, Callable...) take any value."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return _check_union(value, hint, where, base)
    if hint is typing.Any:
        return value
    if origin in (list, tuple) or hint in (list, tuple):
        return _check_sequence(value, hint, where, base)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise TypeMismatch(f"{where}: expected a mapping, got {type(value).__name__} {value!r}", where, value, hint)
        key_hint, value_hint = typing.get_args(hint) or (typing.Any, typing.Any)
        return {check_type(k, key_hint, where, base): check_type(v, value_hint, f"{where}.{k}", base) for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where, base)
    if hint in (float, int):
        return _check_number(value, hint, where)
    if isinstance(origin, type):  # set[str], type[X]...: the container, not its items
        hint = origin
    elif not isinstance(hint, type):
        return value
    if not isinstance(value, hint):
        raise TypeMismatch(f"{where}: expected {hint.__name__}, got {type(value).__name__} {value!r}", where, value, hint)
    return value


def _check_union(value: Any, hint: Any, where: str, base: Path | UrlFolder | None) -> Any:
    options = [option for option in typing.get_args(hint) if option is not type(None)]
    if value is None and len(options) < len(typing.get_args(hint)):
        return None
    errors = []
    for option in options:
        try:
            return check_type(value, option, where, base)
        except ConfigError as exc:
            errors.append(exc)
    first = errors[0]
    if len(options) == 1 and (not isinstance(first, TypeMismatch) or first.where != where):
        raise first  # `list[str] | None` given ["a", 3]: the item that is wrong; an int out of range
    raise TypeMismatch(str(first), where, value, hint)


def _check_sequence(value: Any, hint: Any, where: str, base: Path | UrlFolder | None) -> Any:
    args = typing.get_args(hint)
    if not isinstance(value, (list, tuple)):
        raise TypeMismatch(f"{where}: expected a list, got {type(value).__name__} {value!r}", where, value, hint)
    if (typing.get_origin(hint) or hint) is list or not args or args[-1] is Ellipsis:  # list[X], tuple[X, ...]: any length
        items = [args[0] if args else typing.Any] * len(value)
    elif len(value) != len(args):
        raise TypeMismatch(f"{where}: expected a list of {len(args)}, got {len(value)} items {value!r}", where, value, hint)
    else:
        items = list(args)
    checked = [check_type(v, item, f"{where}[{i}]", base) for i, (v, item) in enumerate(zip(value, items))]
    return checked if (typing.get_origin(hint) or hint) is list else tuple(checked)


def _check_number(value: Any, hint: type, where: str) -> Any:
    given = value
    if is_number(value):  # YAML 1.1 reads 2e12 (no dot, no exponent sign) as a string
        try:
            value = int(value)  # "1234567890123456789" exactly, not as a float rounds it
        except ValueError:
            value = float(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            value = float(value)
        except OverflowError:  # 10**400: no float holds it
            raise ConfigError(f"{where}: {len(str(abs(value)))}-digit integer is too large for a float") from None
    if hint is float and isinstance(value, float) and value != value:  # nan passes every `<= 0` check
        raise TypeMismatch(f"{where}: expected a number, got nan", where, given, hint)
    if hint is int and isinstance(value, float) and value.is_integer():
        value = int(value)  # 2e9 from a command line is a whole number
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise TypeMismatch(f"{where}: expected {hint.__name__}, got {type(given).__name__} {given!r}", where, given, hint)
    if hint is int and not -(2**63) <= value < 2**63:  # every count, size and seed ends up in numpy, torch or C
        raise ConfigError(f"{where}: {len(str(abs(value)))}-digit integer is out of range (64-bit)")
    return value


def build(cls: type, data: Any, where: str = "config", base: Path | UrlFolder | None = None) -> Any:
    """Instantiate dataclass `cls` from a mapping, rejecting unknown keys and wrong types; relative
    paths of "path" fields are resolved against `base` (None: left as they are)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__} {data!r}")
    expand = getattr(cls, "expand_config", None)
    if expand is not None:  # e.g. TrainConfig's `base: NAME`, a built-in the mapping is laid over
        try:
            data = expand(data, base=base)
        except RelativeToUrl as exc:  # name the key that holds the path
            keys = [str(k) for k, v in data.items() if str(v) == exc.path]
            raise ConfigError(f"{where}{'.' + keys[0] if keys else ''}: {exc}") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    errors = []  # every one, a line each: a config with three mistakes is fixed in one go, not three
    unknown = sorted(set(map(str, data)) - set(fields))
    required = [name for name, f in fields.items() if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing := [name for name in required if name not in data]:
        errors.append(f"{where}: missing key(s) {', '.join(missing)}")
    if unknown:
        named = [f"{key} (did you mean {close[0]}?)" if (close := difflib.get_close_matches(key, fields, n=1)) else key for key in unknown]
        errors.append(f"{where}: unknown key(s) {', '.join(named)}; known: {', '.join(fields)}")
    values = {}
    for name, value in data.items():
        if name not in fields:
            continue
        meta = fields[name].metadata
        try:
            try:
                if "parse" in meta and value is not None:
                    value = meta["parse"](value)
                if meta.get("path"):  # RelativeToUrl: above the bucket of a URL config
                    value = resolve_paths(value, meta["path"], base)
            except (TypeError, ValueError, AttributeError, OverflowError) as exc:  # e.g. a number where it splits a string
                raise ConfigError(f"{where}.{name}: {exc}") from None
            values[name] = check_type(value, hints[name], f"{where}.{name}", base)
        except ConfigError as exc:
            errors.append(str(exc))
    if errors:
        raise ConfigError("\n".join(errors))
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def read_yaml(path: str | Path) -> Any:
    """A YAML file's data: a local path, or (a `str`) an fsspec URL."""
    from crawlmill.files import is_url, read_text
    from crawlmill.pathsafety import redact

    if isinstance(path, str) and is_url(path):
        try:
            text = read_text(path)
        except Exception as exc:  # noqa: BLE001 - OSError, a store's SDK error (botocore's are not OSError), no fsspec package...
            raise ConfigError(f"cannot read {redact(path)}: {redact(str(exc))}") from None  # read: no password in it
    else:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from None
        except UnicodeDecodeError as exc:  # binary bytes: not a YAML file at all
            raise ConfigError(f"{path} is not UTF-8 text: {exc}") from None
        except ValueError as exc:  # a path with a NUL byte
            raise ConfigError(f"cannot read {str(path)!r}: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    except RecursionError:  # PyYAML composes nested collections recursively: [[[[...]]]] a few thousand deep
        raise ConfigError(f"{path}: collections nested too deeply") from None


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` laid on `base`, nested mappings merged key by key (command-line options on a file)."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_section(cls: type, data: Any, where: str, base: Path | UrlFolder | None) -> Any:
    """One stage's section: a mapping, or the path of a YAML file holding it (paths in that file
    are relative to it)."""
    if isinstance(data, str):
        try:
            path, name = config_file(resolve_path(data, base))
            section = read_yaml(path)
        except (ConfigError, RelativeToUrl) as exc:  # say which key named the file
            raise ConfigError(f"{where}: {exc}") from None
        return build(cls, section, f"{where} ({name})", config_folder(path))
    return build(cls, data, where, base)


def check_section(config: Any, where: str) -> None:
    """Deeper checks of a built section (`config.check()`: files it names, rule settings...)."""
    check = getattr(config, "check", None)
    if check is None:
        return
    try:
        check()
    except (ValueError, OSError) as exc:  # a line per problem, each naming the section
        raise ConfigError("\n".join(f"{where}: {line}" for line in str(exc).splitlines() or [""])) from None


def run_config_type(pipeline: Pipeline) -> type:
    """The run config's dataclass: output_dir, ray, dumps (dumps.py), and one field per stage, of its
    config type."""
    sections = [(spec.name, spec.config, field(default_factory=spec.config)) for spec in pipeline.stages]
    return dataclasses.make_dataclass(
        "RunConfig",
        [
            ("output_dir", str, field(metadata={"path": True})),
            ("ray", RayOptions, field(default_factory=RayOptions)),
            ("dumps", DumpsConfig, field(default_factory=DumpsConfig)),
            *sections,
            ("sections", list[str], field(default_factory=list, init=False)),  # the stage sections the file has
        ],
    )


def load_run_config(path: str | Path, pipeline: Pipeline | None = None) -> Any:
    """Read and validate a whole run config; every section is built and checked before returning."""
    if pipeline is None:
        from .definition import PIPELINE as pipeline
    path, name = config_file(path)  # a local path, or a URL: relative paths are then relative to its folder, a URL
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: expected a mapping, got {type(data).__name__}")
    base = config_folder(path)
    names = {spec.name for spec in pipeline.stages}
    top = {k: v for k, v in data.items() if k not in names}
    errors = []  # every section's, as build does for its keys
    sections = {}
    try:
        config = build(run_config_type(pipeline), top, name, base)
    except ConfigError as exc:
        errors.append(str(exc))
    for spec in pipeline.stages:
        where = f"{name}.{spec.name}"
        try:
            section = load_section(spec.config, data.get(spec.name), where, base)
            if spec.name in data or not spec.optional:  # an optional stage left out never runs: its defaults need not be runnable
                check_section(section, where)
            sections[spec.name] = section
        except ConfigError as exc:
            errors.append(str(exc))
            continue
        if spec.reads and spec.name in data:  # its own extra inputs, read only after the stages before it ran
            errors.extend(f"{where}.{spec.inputs_field}: {item}: no such file or folder" for item in _missing(section, spec.inputs_field))
    if errors:
        raise ConfigError("\n".join(errors))
    for stage, section in sections.items():
        setattr(config, stage, section)
    config.sections = pipeline.sections_in(data)
    return config


def _missing(section: Any, dotted: str) -> list[str]:
    """The paths or URLs of the section's field `dotted` (e.g. `data.shards`) that do not exist;
    globs are left to the stage, which expands them before it writes anything."""
    from crawlmill.files import as_path

    parent, value, spec = None, section, False
    for name in dotted.split("."):
        parent, value = value, getattr(value, name, None)
    if dataclasses.is_dataclass(parent):  # LANG=PATH only where the field says so (the tokenizer's inputs), not in `year=2024/`
        spec = any(f.name == dotted.rsplit(".", 1)[-1] and f.metadata.get("path") == "spec" for f in dataclasses.fields(parent))
    missing = []
    for item in [value] if isinstance(value, str) else list(value or []):
        lang, sep, rest = item.partition("=") if isinstance(item, str) and spec else ("", "", "")
        target = rest if sep and lang.replace("_", "").replace("-", "").isalnum() else item
        if isinstance(item, str) and not any(c in target for c in "*?[") and not as_path(target).exists():
            missing.append(item)
    return missing


def to_json(config: Any) -> Any:
    """A config as JSON data (what `--print-config` shows)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str, ensure_ascii=False))
