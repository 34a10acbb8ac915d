"""Storage for every crawlmill input and output: local paths and fsspec URLs (`s3://`, `gs://`,
`file://`), files written so that a reader never sees half of one, checksums, and reading Parquet
in bounded memory.

Paths: `as_path(x)` gives a `pathlib.Path` for a local path (and `file://` URLs) and a
`universal_pathlib` UPath for any other URL; both have the pathlib API (`/`, `.name`, `.parent`,
`.exists()`, `.glob()`, `.read_text()`, `.open()`), so stage code is written once. Remote paths
are made with fsspec's listings cache off: another process (a Ray worker) writes the markers the
driver looks for, and a cached listing would hide them. Credentials and endpoints come only from
fsspec's and the cloud SDK's usual places (AWS_* environment, profiles, FSSPEC_<PROTOCOL>_*
environment config); no storage option is ever written to a file or a message: `str(path)` is
the bare URL.

Writing: every output goes through `atomic_path(final)`, which yields a LOCAL temporary file any
writer can write (pyarrow, tokenizers, numpy, open()). Locally it is a temporary name in the same
folder (`.tmp-<random>-NAME`), renamed over NAME on success; a killed run leaves only `.tmp-*`
files, which the runner deletes when it resumes (`remove_temporaries`). For a URL it is a file in
a local temporary folder, uploaded to NAME on success (one PUT, or a multipart upload, which
appears only when complete: nothing half-written is ever visible under NAME). Object stores have
no atomic rename of folders, so a stage's part is committed by its marker, written last
(pipeline/parts.py), and readers trust parts only through their markers.

Write errors name the file: a write that the storage refuses (full disk, quota, read-only, a
failed rename of the temporary) raises an OSError of the same type and errno naming the FINAL
file, e.g. `[Errno 28] No space left on device: 'out/filter/part-00002.parquet'`; pyarrow's and
Python's own errors name no file, or the temporary. `naming_write_errors(final, tmp)` does it for
writers that outlive a `with atomic_path` block (pipeline/parts.py's Parquet writers).

    from crawlmill.files import as_path, atomic_path, atomic_write_json
    out = as_path("s3://bucket/run/filter")
    with atomic_path(out / "part-00000.parquet") as tmp:
        pq.write_table(table, tmp)
    atomic_write_json(out / "_stats.json", stats)
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from stat import S_ISREG
from typing import Any, BinaryIO, Iterator, Union

from .pathsafety import check_no_credentials

TMP_MARK = ".tmp-"
# errnos by which storage refuses a write: raised in a writer's block, they concern the file written,
# whatever the writer (pyarrow's carry the errno and no file name).
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})
# How Rust libraries (tokenizers' save) report an I/O error: a plain Exception, "... (os error 28)".
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")
# A local path or a URL's UPath: both are pathlib-like (upath.UPath subclasses pathlib's ABC).
AnyPath = Union[Path, Any]
STORE_URL = "crawlmill_url"  # the attribute naming_store_errors gives an object store's error: the URL it concerns


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")  # RFC 3986's scheme: `en=s3://b/x` (a LANG= spec) is none


def is_url(path: str | os.PathLike) -> bool:
    """Whether `path` names an object in a remote store (any URL but file://)."""
    text = str(path)
    return _SCHEME.match(text) is not None and not text.startswith("file://")


def is_remote(path: Any) -> bool:
    return not isinstance(path, Path) and is_url(path)


def as_path(path: str | os.PathLike) -> AnyPath:
    """A `pathlib.Path` for a local path or `file://` URL, a UPath (listings cache off) for a URL."""
    if isinstance(path, Path):
        return path
    if not isinstance(path, str) and is_url(path):  # already a UPath
        return path
    text = os.fspath(path) if not isinstance(path, str) else path
    if text.startswith("file://"):
        return Path(text[len("file://") :])
    if not is_url(text):
        return Path(text)
    check_no_credentials(text)
    from upath import UPath

    return UPath(text, use_listings_cache=False)


def fs_and_path(path: Any) -> tuple[Any, str]:
    """(fsspec filesystem, path within it) of a remote path."""
    upath = as_path(path)
    return upath.fs, upath.path


@contextlib.contextmanager
def naming_store_errors(url: Any) -> Iterator[None]:
    """An error raised in the block that names no file (s3fs's bare "Forbidden", botocore's
    NoCredentialsError) gets `url` as its attribute STORE_URL (the innermost block's), which the
    CLI's one-line error names (store_errors.store_error); its type and message stay as they are."""
    try:
        yield
    except Exception as exc:
        if getattr(exc, "filename", None) is None and getattr(exc, STORE_URL, None) is None:
            with contextlib.suppress(AttributeError, TypeError):  # an exception type with __slots__
                setattr(exc, STORE_URL, str(url))
        raise


def resolved(path: str | os.PathLike) -> str:
    """A stable name of `path` for records: the absolute local path, or the URL."""
    p = as_path(path)
    return str(p) if is_remote(p) else str(p.resolve())


def make_dirs(path: Any) -> None:
    """Create a local folder (and its parents); object stores have no folders to create."""
    p = as_path(path)
    if not is_remote(p):
        p.mkdir(parents=True, exist_ok=True)


def list_files(folder: Any, pattern: str = "*") -> list[AnyPath]:
    """Files under `folder` matching `pattern` (a glob relative to it), sorted by name; temporaries
    of killed writers are left out. An absent folder has none."""
    return [path for path, _ in list_file_sizes(folder, pattern)]


def list_file_sizes(folder: Any, pattern: str = "*") -> list[tuple[AnyPath, int]]:
    """(path, size in bytes) of `list_files(folder, pattern)`, from the same one listing (an object
    store's listing has the sizes: no request per file)."""
    folder = as_path(folder)
    if is_remote(folder):
        fs, root = fs_and_path(folder)
        with naming_store_errors(folder):
            found = fs.glob(f"{root.rstrip('/')}/{pattern}", detail=True)
        entries = [(as_path(fs.unstrip_protocol(name)), int(info.get("size") or 0)) for name, info in found.items() if info.get("type") == "file"]
    else:
        entries = []
        for p in folder.glob(pattern) if folder.is_dir() else []:
            if p.name.startswith(TMP_MARK):  # a writer's: it may be renamed away while this lists
                continue
            with contextlib.suppress(FileNotFoundError):
                stat = p.stat()
                if S_ISREG(stat.st_mode):
                    entries.append((p, stat.st_size))
    return sorted(((p, size) for p, size in entries if not p.name.startswith(TMP_MARK)), key=lambda entry: str(entry[0]))


def is_store_root(path: Any) -> bool:
    """Whether a URL names a store's top container (`s3://bucket`, `gs://bucket/`, an Azure
    container), which remove_tree empties but never deletes."""
    p = as_path(path)
    return is_remote(p) and "/" not in fs_and_path(p)[1].strip("/")


def remove_tree(path: Any) -> None:
    """Delete a folder and everything under it; nothing if it is absent. At a store's root
    (`s3://bucket`) the objects in it only: s3fs's recursive rm of a bucket name deletes the bucket
    itself (and whatever policy, versioning and lifecycle rules its owner gave it)."""
    p = as_path(path)
    if not is_remote(p):
        shutil.rmtree(p, ignore_errors=True)
        return
    fs, root = fs_and_path(p)
    root = root.rstrip("/")
    if not root.strip("/"):
        raise ValueError(f"{p}: not a folder or bucket: crawlmill never deletes everything in a store")
    with naming_store_errors(p):
        if not is_store_root(p):
            with contextlib.suppress(FileNotFoundError):
                fs.rm(root, recursive=True)
            return
        # Each folder at the top deleted as any folder is (with the "name/" marker objects some tools
        # write), the files in bulk requests. A folder gone meanwhile (or listed for delete markers
        # alone) is skipped, not the end of the deletion.
        try:
            listed = [entry for entry in fs.ls(root, detail=True) if entry["name"].strip("/") != root.strip("/")]
        except FileNotFoundError:
            return
        files = [entry["name"] for entry in listed if entry.get("type") != "directory"]
        if files:
            fs.rm(files)
        for entry in listed:
            if entry.get("type") == "directory":
                with contextlib.suppress(FileNotFoundError):
                    fs.rm(entry["name"].rstrip("/"), recursive=True)


def remove_file(path: Any) -> None:
    with contextlib.suppress(FileNotFoundError):
        as_path(path).unlink()


def file_size(path: Any) -> int:
    p = as_path(path)
    if is_remote(p):
        fs, key = fs_and_path(p)
        return int(fs.size(key))
    return os.path.getsize(p)


def open_binary(path: Any) -> BinaryIO:
    """A file opened for reading bytes (seekable; remote reads are ranged)."""
    return as_path(path).open("rb")


def temporary_path(final: str | Path) -> Path:
    """A fresh temporary name beside a local `final` (same folder, so the rename is atomic)."""
    final = Path(final)
    return final.with_name(f"{TMP_MARK}{uuid.uuid4().hex}-{final.name}")


def write_error(exc: BaseException, final: Any, tmp: Any = None) -> BaseException:
    """`exc`, raised while `final` was written (through its temporary `tmp`), as an error naming
    `final`: the same type and errno (a Rust library's "(os error N)" Exception: an OSError). Left
    as it is: an error that names another file already (an inner write's, a source's), one that is
    not about writing (e.g. reading a corrupt input in the writer's block), and a subclass of our
    own (SourceReadError: Ray retries it by type)."""
    if not isinstance(exc, OSError):
        found = _RUST_OS_ERROR.search(str(exc)) if type(exc) is Exception else None
        code = int(found.group(1)) if found else None
        return OSError(code, os.strerror(code), str(final)) if code in WRITE_ERRNOS else exc
    if type(exc).__module__ != "builtins":
        return exc
    if exc.filename is not None and (tmp is None or str(exc.filename) != str(tmp)):
        return exc
    if exc.filename is None and exc.errno not in WRITE_ERRNOS:
        return exc
    # pyarrow's text ("Error writing bytes to file. Detail: [errno 28] ...") says no more than the errno
    reason = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
    return type(exc)(exc.errno, reason, str(final))


@contextlib.contextmanager
def naming_write_errors(final: Any, tmp: Any = None) -> Iterator[None]:
    """Errors of writing `final` (through `tmp`) raised in the block name `final` (`write_error`)."""
    try:
        yield
    except Exception as exc:
        named = write_error(exc, final, tmp)
        if named is exc:
            raise
        raise named from exc


@contextlib.contextmanager
def atomic_path(final: Any) -> Iterator[Path]:
    """Yield a local temporary path to write; on success rename it to `final` (local) or upload it
    to `final` (URL); on error delete it. Nested uses finish innermost first, so `final` of the
    outermost appears last. A write error raised in the block names `final` (`write_error`; with
    nested uses, the innermost's: an error without a file name cannot tell which one it was)."""
    final = as_path(final)
    if is_remote(final):
        with _remote_atomic_path(final) as tmp:
            yield tmp
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(final)
    try:
        with naming_write_errors(final, tmp):
            yield tmp
            os.replace(tmp, final)
    except BaseException:
        # Best effort (a read-only disk refuses even this): the writer's error is the one to raise,
        # and a temporary left behind is deleted when the stage resumes (remove_temporaries).
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def _remote_atomic_path(final: Any) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="crawlmill-upload-"))
    try:
        tmp = folder / final.name
        with naming_write_errors(final, tmp):  # the local temporary's disk may be full too
            yield tmp
        fs, key = fs_and_path(final)
        try:
            with naming_store_errors(final):
                fs.put_file(str(tmp), key)
        except OSError as exc:  # every error of the upload is the final file's (a missing bucket, a denied key)
            if exc.filename is not None or type(exc).__module__ != "builtins":
                raise
            raise type(exc)(exc.errno or errno.EIO, exc.strerror or str(exc), str(final)) from exc
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def atomic_write_text(path: Any, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: Any, data: Any) -> None:
    """JSON as every crawlmill marker and report is written: indent 1, non-ASCII kept."""
    atomic_write_text(path, json.dumps(data, indent=1, ensure_ascii=False))


def read_text(path: Any) -> str:
    return as_path(path).read_text(encoding="utf-8")


def read_json(path: Any) -> Any:
    return json.loads(read_text(path))


def remove_temporaries(folder: Any) -> None:
    """Delete what killed writers left under a local `folder` (files named `.tmp-*`). Remote
    writes leave nothing (their temporaries are local, and an unfinished upload is invisible)."""
    if is_remote(as_path(folder)):
        return
    for path in Path(folder).rglob(f"{TMP_MARK}*"):
        if path.is_file():
            path.unlink(missing_ok=True)


def sha256_file(path: Any) -> str:
    """Hex SHA-256 of a file, read in 8 MiB chunks."""
    digest = hashlib.sha256()
    with open_binary(path) as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def parquet_file(path: Any) -> Any:
    """A pyarrow ParquetFile for reading batch by batch in bounded memory. pyarrow 26 opens files
    with `pre_buffer=True`, whose read cache keeps every byte range it has read until the file is
    closed: iterating a part's batches then held the part's compressed size (measured: 99 MB for a
    90 MB part; 11 MB without it; tests/pipeline/test_bounded_memory.py). A remote file is read
    through fsspec (ranged reads, its block cache)."""
    import pyarrow.parquet as pq

    p = as_path(path)
    return pq.ParquetFile(p.open("rb") if is_remote(p) else path, pre_buffer=False)


def read_table(path: Any, **kwargs: Any) -> Any:
    """A whole Parquet file as a pyarrow Table (`pq.read_table`'s keyword arguments)."""
    import pyarrow.parquet as pq

    p = as_path(path)
    if not is_remote(p):
        return pq.read_table(path, **kwargs)
    with p.open("rb") as f:
        return pq.read_table(f, **kwargs)


def read_schema(path: Any) -> Any:
    return parquet_file(path).schema_arrow


def read_range(path: Any, start: int, length: int) -> bytes:
    """`length` bytes of a file from byte `start`: one ranged GET for a URL (nothing more is
    fetched, unlike a buffered remote file, which reads whole blocks), a seek and read locally."""
    return read_ranges(path, [(start, length)])[0] if length > 0 else b""


def read_ranges(path: Any, ranges: list[tuple[int, int]]) -> list[bytes]:
    """The bytes of each (start, length) range of one file (fewer at its end): the file opened once
    locally; for a URL, one ranged GET per range, sent together (fsspec's cat_ranges)."""
    p = as_path(path)
    if is_remote(p):
        fs, key = fs_and_path(p)
        with naming_store_errors(p):
            return [bytes(b) for b in fs.cat_ranges([key] * len(ranges), [s for s, _ in ranges], [s + n for s, n in ranges], on_error="raise")]
    out = []
    with open(p, "rb") as f:
        for start, length in ranges:
            f.seek(start)
            out.append(f.read(length))
    return out
