"""The per-machine cache of remote files that libraries read only from local paths: models,
tokenizers, shards' `.idx`/`.bin` (`local_copy`), under $CRAWLMILL_CACHE (default
~/.cache/crawlmill). One download per machine and content version, shared by every worker and rank
of the node.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .files import TMP_MARK, as_path, fs_and_path, is_remote

CACHE_ENV = "CRAWLMILL_CACHE"  # where remote models and tokenizers are copied (default ~/.cache/crawlmill)


def cache_root() -> Path:
    """The per-machine cache folder: $CRAWLMILL_CACHE, default ~/.cache/crawlmill."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "crawlmill")


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive lock between the processes of this machine (fcntl; released when the holder
    dies), so that the ranks or workers of a node that need one copy download it once."""
    import fcntl

    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def local_copy(path: Any, names: list[str] | None = None) -> Path:
    """A local file or folder with the content of `path`: the path itself when local; for a URL a
    copy in the local cache ($CRAWLMILL_CACHE, default ~/.cache/crawlmill), downloaded once per
    machine and content version (keyed by the URL and every file's size and ETag or mtime), so
    every worker of a node shares it. Used for models, tokenizers and shards that libraries read
    from local files. `names` (paths relative to a folder `path`) copies only those files (training
    needs a shard folder's .bin/.idx and manifest, not its docs tables); a name that is absent
    raises FileNotFoundError.

    Concurrency: the processes of a machine asking for the same copy take a file lock, so one
    downloads while the others wait; the download goes to a temporary folder renamed into place
    when complete, so a killed download is never taken for a copy (the next holder of the lock
    deletes what it left)."""
    p = as_path(path)
    if not is_remote(p):
        return p
    fs, root = fs_and_path(p)
    root = root.rstrip("/")
    if names is not None:  # one listing, not a request per file (a folder may hold thousands of shards)
        listed = fs.find(root, detail=True)
        files = {f"{root}/{name}": listed.get(f"{root}/{name}") for name in names}
        missing = [name for name, info in zip(names, files.values()) if info is None]
        if missing:
            raise FileNotFoundError(f"{p}: no {', '.join(missing[:5])}")
    else:
        files = {root: fs.info(root)} if fs.isfile(root) else fs.find(root, detail=True)
    version = sorted((name, info.get("size"), str(info.get("ETag") or info.get("mtime") or info.get("LastModified"))) for name, info in files.items())
    key = hashlib.sha256(json.dumps([str(p), version], default=str).encode()).hexdigest()[:24]
    cache = cache_root() / "remote" / key
    target = cache / p.name
    if target.exists():
        return target
    cache.parent.mkdir(parents=True, exist_ok=True)
    with _locked(cache.parent / f"{key}.lock"):
        if target.exists():  # another process downloaded it while this one waited
            return target
        for stale in cache.parent.glob(f"{TMP_MARK}{key}-*"):  # a killed download's folder
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{TMP_MARK}{key}-", dir=cache.parent))
        try:
            for name in files:
                relative = os.path.relpath(name, root) if name != root else p.name
                local = staging / p.name / relative if name != root else staging / p.name
                local.parent.mkdir(parents=True, exist_ok=True)
                fs.get_file(name, str(local))
            os.replace(staging, cache)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target
