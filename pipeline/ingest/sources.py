"""Where ingest input comes from: local files, folders, globs, fsspec URLs, Common Crawl dump listings.

`expand_inputs` turns command-line INPUTs into a sorted list of sources, refusing (InputError)
before anything runs an input that names nothing: a missing local path, an object-store folder or
prefix with nothing under it, a bucket that does not exist; `dump_listing` resolves
`--dump CC-MAIN-YYYY-WW` through the dump's published `wet.paths.gz` / `warc.paths.gz` under a
base URL (Common Crawl's public HTTPS endpoint by default), without a request per listed file;
`open_source` opens one for streaming, retrying transient failures. A file that turns out missing
or forbidden when its task opens it raises one of `UNREADABLE` (not retried: `unreadable_error`
words it), which fails that task (or, with `unreadable_sources: quarantine`, is quarantined).
"""

from __future__ import annotations

import glob
import gzip
import io
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterator
from urllib.parse import urlsplit

from ..stage import SourceReadError
from .config import CC_BASE_URL, DUMP_ID, FILE_FORMATS, WAT_NO_TEXT, WAT_REFUSED

_DUMP_IN_PATH = re.compile(r"crawl-data/(CC-MAIN-\d{4}-\d{2})/")
_ARCHIVE_SUFFIX = re.compile(r"\.(warc|wet|wat|arc)(\.gz)?$", re.I)  # a file's name, not a folder's
# What a folder search takes: not .wat, whose metadata records hold no page text (a .wat named
# explicitly is still read, and its records are counted as dropped).
_FOLDER_SUFFIX = re.compile(r"\.(warc|wet|arc)(\.gz)?$", re.I)
_WAT_SUFFIX = re.compile(r"\.wat(\.gz)?$", re.I)
_GLOB_CHARS = set("*?[")
# Opening a source failed for good: a retry the same moment cannot help, a rerun later may (the file
# restored, the credentials fixed), or it is gone (unreadable_sources: quarantine).
UNREADABLE = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)
_UNREADABLE_WHAT = {
    FileNotFoundError: "no such file", IsADirectoryError: "it is a folder, not a file",
    NotADirectoryError: "a part of its path is not a folder", PermissionError: "permission denied",
}  # fmt: skip


class InputError(ValueError):
    """Bad command-line input: the message says what and where."""


def is_url(source: str) -> bool:
    return "://" in source


def expand_inputs(inputs: list[str]) -> list[str]:
    """Files, folders (searched recursively for *.warc/.wet[.gz], not .wat), globs and URLs, sorted."""
    from crawlmill.pathsafety import check_no_credentials

    found: set[str] = set()
    buckets: dict[tuple[Any, str], bool] = {}  # (filesystem, bucket) -> missing: one request per bucket
    for item in inputs:
        if is_url(item):
            check_no_credentials(item)
            if item.startswith(("http://", "https://")):
                if urlsplit(item).path.endswith("/") or not urlsplit(item).path:
                    raise InputError(f"{item}: names a folder, and HTTP(S) has no listing to search one: name its files, or give --dump with --base-url")
                found.add(item)  # not looked up: a list of thousands of file URLs costs no request per file
            elif _GLOB_CHARS & set(item):
                import fsspec

                try:
                    fs, _, paths = fsspec.get_fs_token_paths(item)
                except InputError:
                    raise
                except Exception as exc:  # e.g. PermissionError: wrong credentials
                    raise InputError(f"{item}: cannot be listed: {type(exc).__name__}: {exc}") from None
                matches = [fs.unstrip_protocol(p) for p in paths]
                if not matches:
                    raise InputError(f"{item}: the pattern matches no file{_bucket_note(fs, item, buckets)}")
                found.update(matches)
            elif not _ARCHIVE_SUFFIX.search(item):  # a name ending in / included
                found.update(_remote_folder(item, buckets))  # a folder of an object store, like a local one
            else:
                _check_remote_file(item, buckets)
                found.add(item)
        elif os.path.isdir(item):
            files = [p for p in Path(item).rglob("*") if p.is_file()]
            matches = [str(p.resolve()) for p in files if _FOLDER_SUFFIX.search(p.name)]
            if not matches:
                raise InputError(_no_archive(item, sum(bool(_WAT_SUFFIX.search(p.name)) for p in files)))
            found.update(matches)
        elif _GLOB_CHARS & set(item):
            matches = [str(Path(p).resolve()) for p in glob.glob(item, recursive=True) if os.path.isfile(p)]
            if not matches:
                raise InputError(f"{item}: the pattern matches no file")
            found.update(matches)
        elif os.path.isfile(item):
            found.add(str(Path(item).resolve()))
        else:
            raise InputError(f"{item}: no such file or folder")
    return sorted(found)


def _remote_folder(url: str, buckets: dict[tuple[Any, str], bool]) -> list[str]:
    """The .warc/.wet(.gz) files under `url`, searched recursively, when it names a folder of an
    object store; [url] itself when it names some other file (only a name without an archive
    suffix is looked up: a listing of thousands of file URLs costs no request per file). A name
    ending in `/` that is no folder, or a name that is nothing, is refused as a local one is."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    try:
        names = fs.find(path) if fs.isdir(path) else None
    except Exception as exc:  # e.g. PermissionError: wrong credentials; nothing could be listed
        raise InputError(f"{url}: cannot be listed: {type(exc).__name__}: {exc}") from None
    if names is None:
        if url.endswith("/") or _not_found(fs, path):
            raise InputError(f"{url}: no such file or folder{_bucket_note(fs, url, buckets)}")
        return [url]
    matches = [fs.unstrip_protocol(p) for p in names if _FOLDER_SUFFIX.search(p.rsplit("/", 1)[-1])]
    if not matches:
        raise InputError(_no_archive(url, sum(bool(_WAT_SUFFIX.search(p.rsplit("/", 1)[-1])) for p in names)))
    return matches


def _not_found(fs: Any, path: str) -> bool:
    """Whether `path` surely does not exist (another error, e.g. forbidden: left to the task reading it)."""
    try:
        fs.info(path)
    except FileNotFoundError:
        return True
    except Exception:
        return False
    return False


def _bucket_of(fs: Any, path: str) -> str | None:
    """The bucket (container) of an object store's path; None for a store without buckets."""
    split = getattr(fs, "split_path", None)  # s3fs, gcsfs, adlfs
    if split is None:
        return None
    try:
        return split(path)[0] or None
    except Exception:
        return None


def _bucket_missing(fs: Any, path: str, buckets: dict[tuple[Any, str], bool]) -> str | None:
    """The bucket of `path` when it surely does not exist (one request per bucket); else None."""
    bucket = _bucket_of(fs, path)
    if bucket is None:
        return None
    key = (fs, bucket)
    if key not in buckets:
        buckets[key] = _not_found(fs, bucket)
    return bucket if buckets[key] else None


def _bucket_note(fs: Any, url: str, buckets: dict[tuple[Any, str], bool]) -> str:
    bucket = _bucket_missing(fs, fs._strip_protocol(url), buckets)
    return f" (the bucket {bucket} does not exist)" if bucket else ""


def _check_remote_file(url: str, buckets: dict[tuple[Any, str], bool]) -> None:
    """A file URL of an object store, refused when its bucket does not exist (one request per
    bucket, not per file) or, on the local filesystem (`file://`), when it is not there. Whether the
    file itself exists is learnt when its task opens it (a missing one fails that task)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    if getattr(fs, "local_file", False):
        if not fs.isfile(path):
            raise InputError(f"{url}: no such file or folder")
    elif _bucket_missing(fs, path, buckets):
        raise InputError(f"{url}: no such file or folder{_bucket_note(fs, url, buckets)}")


def _no_archive(folder: str, wat_files: int) -> str:
    message = f"{folder}: the folder holds no .warc/.wet(.gz) file"
    if wat_files:
        message += f" ({wat_files} .wat file(s) skipped: {WAT_NO_TEXT})"
    return message


def dump_listing(dump: str, base_url: str = CC_BASE_URL, file_format: str = "wet", max_files: int | None = None) -> list[str]:
    """URLs of a dump's files, in the order of its published paths listing."""
    if not DUMP_ID.match(dump):
        raise InputError(f"--dump {dump!r} is not a Common Crawl dump id like CC-MAIN-2024-22")
    if file_format == "wat":
        raise InputError(f"--format wat: {WAT_REFUSED}")
    if file_format not in FILE_FORMATS:
        raise InputError(f"--format {file_format!r}: choose wet or warc")
    from crawlmill.pathsafety import check_no_credentials

    check_no_credentials(base_url)
    base = base_url.rstrip("/") + "/"
    listing = f"{base}crawl-data/{dump}/{file_format}.paths.gz"
    try:
        with _open_with_retries(listing) as raw:
            lines = gzip.decompress(raw.read()).decode("utf-8").split()
    except Exception as exc:
        raise InputError(f"cannot read the paths listing {listing}: {exc}") from exc
    if max_files is not None:
        lines = lines[:max_files]
    if not lines:
        raise InputError(f"the paths listing {listing} lists no file")
    return [base + line.lstrip("/") for line in lines]


def dump_from_path(source: str) -> str | None:
    match = _DUMP_IN_PATH.search(source.replace("\\", "/"))
    return match.group(1) if match else None


def display_name(source: str) -> str:
    """The name stored in `warc_file`: Common Crawl's bucket-relative path when recognisable."""
    normalized = source.replace("\\", "/")
    at = normalized.find("crawl-data/")
    return normalized[at:] if at >= 0 else source


def _is_transient(exc: BaseException) -> bool:
    return not isinstance(exc, UNREADABLE)


def unreadable_error(source: str, exc: BaseException) -> OSError:
    """The error a task fails with when `source` cannot be opened (`exc`, one of UNREADABLE): of the
    same built-in type, naming the source and the cause."""
    kind: type[OSError] = next((t for t in UNREADABLE if isinstance(exc, t)), OSError)
    said = str(exc).strip()
    bare = source.split("://", 1)[-1].rstrip("/")
    cause = _UNREADABLE_WHAT.get(kind, type(exc).__name__)
    if said and source not in said and bare not in said:  # a path alone (a 404's URL, a missing key) says nothing more
        cause += f" ({said})"
    return kind(f"cannot read {source}: {cause}; if it stays unreadable, the ingest config's unreadable_sources: quarantine records it in _quarantine instead")


def _open_with_retries(source: str, retries: int = 3, backoff_s: float = 1.0) -> BinaryIO:
    for attempt in range(retries + 1):
        try:
            if not is_url(source):
                return open(source, "rb")
            import fsspec

            # block_size=0 streams HTTP(S) in one request instead of many range requests.
            kwargs = {"block_size": 0} if source.startswith(("http://", "https://")) else {}
            return fsspec.open(source, "rb", **kwargs).open()
        except Exception as exc:
            if not _is_transient(exc) or attempt == retries:
                raise
            time.sleep(backoff_s * 2**attempt)
    raise AssertionError("unreachable")


class _ReadErrorsAreTransient(io.RawIOBase):
    """Marks errors of the underlying stream as SourceReadError so Ray retries the part."""

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        self._raw = raw

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        try:
            return self._raw.read(size)
        except Exception as exc:
            raise SourceReadError(f"reading failed: {type(exc).__name__}: {exc}") from exc


@contextmanager
def open_source(source: str) -> Iterator[BinaryIO]:
    """Open a source for streaming; a missing, forbidden or folder one raises one of UNREADABLE
    (FileNotFoundError...: not retried), another failure SourceReadError (Ray retries the task)."""
    try:
        handle = _open_with_retries(source)
    except UNREADABLE:
        raise
    except Exception as exc:
        raise SourceReadError(f"cannot open {source}: {type(exc).__name__}: {exc}") from exc
    try:
        yield _ReadErrorsAreTransient(handle)
    finally:
        handle.close()


def resolve_sources(
    inputs: list[str] | None,
    dump: str | None = None,
    base_url: str | None = None,
    file_format: str = "wet",
    max_files: int | None = None,
    only_dump: str | None = None,
) -> list[str]:
    """INPUTs when given (with `only_dump`: those whose path names that dump), else the files of
    `dump`'s paths listing; InputError if neither."""
    if inputs:
        found = expand_inputs(inputs)
        if only_dump is None:
            return found
        mine = [source for source in found if dump_from_path(source) == only_dump]
        if not mine:
            raise InputError(f"no input file of dump {only_dump} (a path with crawl-data/{only_dump}/) among {len(found)} input file(s)")
        return mine
    if dump:
        return dump_listing(dump, base_url or CC_BASE_URL, file_format, max_files)
    raise InputError("give INPUT files/folders/URLs, or --dump CC-MAIN-YYYY-WW")
