"""The whole-pipeline config (`crawlmill run CONFIG.yaml`): one dataclass per component, strict loading.

A malformed config fails before any work starts, with the key path and what was expected:
unknown keys, wrong types and bad values are all errors, never silently ignored.

Example (configs/demo.yaml)::

    output_dir: ../demo-output        # relative paths are relative to the config file
    ray: {num_cpus: 2}
    ingest:
      inputs: [../samples/crawl-data]
      options: {extractor: resiliparse}
    filter:                           # as configs/filters.yaml; omitted keys keep the defaults
      language_id: {keep: {en: 0.65, zh: 0.65}}
    tokenizer: {vocab_size: 100000}   # or {path: existing/tokenizer}
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .dedup.config import DedupConfig
from .ingest.stage import IngestConfig
from .pack.stage import PackConfig
from .stage import RayOptions


class ConfigError(ValueError):
    pass


@dataclass
class IngestSection:
    inputs: list[str] = field(default_factory=list)  # files, folders, globs, URLs
    dump: str | None = None  # with no inputs: resolve this dump's paths listing
    base_url: str | None = None
    file_format: str = "wet"
    max_files: int | None = None
    options: IngestConfig = field(default_factory=IngestConfig)


@dataclass
class TokenizerSection:
    """`crawlmill run`'s tokenizer stage: trained on the dedup output (plus `extra_inputs`), or
    `path`: an existing tokenizer folder to use instead (nothing is trained)."""

    path: str | None = None
    extra_inputs: list[str] = field(default_factory=list)  # [LANG=]PATH, as `crawlmill tokenizer train`
    vocab_size: int = 100_000
    padded_vocab_size: int | None = None
    mix: dict[str, float] = field(default_factory=dict)
    max_bytes: int | None = None
    min_frequency: int = 2
    seed: int = 0


@dataclass
class RunConfig:
    output_dir: str
    ray: RayOptions = field(default_factory=RayOptions)
    ingest: IngestSection = field(default_factory=IngestSection)
    filter: Any = None  # a filter config mapping (see configs/filters.yaml); null: the defaults
    dedup: DedupConfig = field(default_factory=DedupConfig)
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)
    pack: PackConfig = field(default_factory=PackConfig)


def _check_type(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_type(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        (item,) = typing.get_args(hint)
        return [_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        key_hint, value_hint = typing.get_args(hint)
        return {_check_type(k, key_hint, where): _check_type(v, value_hint, f"{where}.{k}") for k, v in value.items()}
    if hint is typing.Any:
        return value
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {type(value).__name__} {value!r}")
    return value


def build(cls: type, data: Any, where: str = "config") -> Any:
    """Instantiate dataclass `cls` from a mapping, rejecting unknown keys and wrong types."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(fields)}")
    values = {name: _check_type(value, hints[name], f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _local_input(spec: str, local: Any) -> str:
    lang, sep, path = spec.partition("=")
    return f"{lang}={local(path)}" if sep and lang.replace("_", "").replace("-", "").isalnum() else local(spec)


def load_run_config(path: str | Path) -> RunConfig:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    config = build(RunConfig, data, where=path.name)
    base = path.resolve().parent

    def local(p: str) -> str:
        return p if "://" in p or Path(p).is_absolute() else str(base / p)

    config.output_dir = local(config.output_dir)
    config.ingest.inputs = [local(p) for p in config.ingest.inputs]
    if config.tokenizer.path:
        config.tokenizer.path = local(config.tokenizer.path)
    config.tokenizer.extra_inputs = [_local_input(spec, local) for spec in config.tokenizer.extra_inputs]
    from .filter.config import load_filter_config

    config.filter = load_filter_config(config.filter)
    if config.filter.language_id.model_path:
        config.filter.language_id.model_path = local(config.filter.language_id.model_path)
    return config
