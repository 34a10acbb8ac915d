"""Where a config's paths point: a relative path is relative to the config file's folder, a local
folder or, for a config read from an fsspec URL, the URL's folder (`data/` in
`s3://bkt/configs/run.yaml` is `s3://bkt/configs/data/`). pipeline/config.py's `build` resolves
every "path" field through `resolve_paths`; the DAGs read a run config's paths the same way.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path
from typing import Any


class RelativeToUrl(ValueError):
    """A relative path (`.path`) that cannot be resolved against the folder of a config read from a URL."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


class UrlFolder:
    """The folder of a config read from a URL (`url`: `s3://bkt/configs/`); `join` resolves a relative path against it. `/`,
    how code written for local folders joins one (train's `base:`, a local file), is refused rather than mangling the URL."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/") + "/"

    def join(self, path: str) -> str:
        scheme, rest = self.url.rstrip("/").split("://", 1)
        root, _, folder = rest.partition("/")
        joined = posixpath.normpath(posixpath.join(folder, path))
        if joined == ".." or joined.startswith("../"):
            raise RelativeToUrl(f"{path}: goes above {scheme}://{root}/ (relative to the config's folder {self.url})", path)
        return f"{scheme}://{root}" + ("" if joined == "." else f"/{joined}{'/' if path.endswith('/') else ''}")

    def __truediv__(self, path: Any) -> Any:
        raise RelativeToUrl(f"{path}: relative to a config read from a URL ({self.url}), but read here only from a local path; give an absolute one", str(path))


def config_file(config: str | Path) -> tuple[str | Path, str]:
    """A config as it is read, a Path or (a `str`) an fsspec URL (`file://`: its local path), and its name."""
    if isinstance(config, str) and "://" in config and not config.startswith("file://"):  # crawlmill.files.is_url
        return config, config.rsplit("/", 1)[-1]
    path = Path(config.removeprefix("file://") if isinstance(config, str) else config)
    return path, path.name


def config_folder(config: str | Path) -> Path | UrlFolder:
    """The folder of a config as config_file gives it: what its relative paths are relative to."""
    return UrlFolder(config.rsplit("/", 1)[0]) if isinstance(config, str) else config.resolve().parent


def resolve_path(path: str, base: Path | UrlFolder | None) -> str:
    """A path of a config, a relative one resolved against `base` (its folder); absolute ones (local under a URL too) and URLs as they are."""
    if base is None or "://" in path or Path(path).is_absolute():
        return path
    return base.join(path) if isinstance(base, UrlFolder) else os.path.normpath(base / path)


def _local_spec(spec: str, base: Path | UrlFolder | None) -> str:
    lang, sep, path = spec.partition("=")
    if sep and lang.replace("_", "").replace("-", "").isalnum():
        return f"{lang}={resolve_path(path, base)}"
    return resolve_path(spec, base)


def resolve_paths(value: Any, kind: Any, base: Path | UrlFolder | None) -> Any:
    local = _local_spec if kind == "spec" else resolve_path
    if isinstance(value, str):
        return local(value, base)
    if isinstance(value, list):
        return [local(v, base) if isinstance(v, str) else v for v in value]
    return value
