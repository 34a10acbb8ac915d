"""Where ingest input comes from: local files, folders, globs, fsspec URLs, Common Crawl dump listings.

`expand_inputs` turns command-line INPUTs (WARC/WET files and your own JSONL/Parquet/text corpus
alike: corpus_files.py says which is which, and what a folder search takes) into a sorted list of
sources (`named_inputs`: each with the name its documents' ids are made from), refusing
(InputError) before anything runs an input that names nothing: a missing local path, an
object-store folder or prefix with nothing under it, a bucket that does not exist; `dump_listing`
resolves `--dump CC-MAIN-YYYY-WW` through the dump's published `wet.paths.gz` / `warc.paths.gz`
under a base URL (Common Crawl's public HTTPS endpoint by default), without a request per listed
file; `open_source` opens one for streaming (or, for Parquet, random access), retrying transient
failures. A file that turns out missing
or forbidden when its task opens it raises one of `UNREADABLE` (not retried: `unreadable_error`
words it), which fails that task (or, with `unreadable_sources: quarantine`, is quarantined).
"""

from __future__ import annotations

import glob
import gzip
import io
import os
import posixpath
import re
import sys
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterator
from urllib.parse import urlsplit

from ..stage import SourceReadError
from .config import CC_BASE_URL, DUMP_ID, FILE_FORMATS, WAT_REFUSED
from .corpus_files import check_unique_names, corpus_beside_archives, corpus_kind, corpus_name, folder_files, glob_root, no_files_message

_DUMP_IN_PATH = re.compile(r"crawl-data/(CC-MAIN-\d{4}-\d{2})/")
_ARCHIVE_SUFFIX = re.compile(r"\.(warc|wet|wat|arc)(\.gz)?$", re.I)  # a file's name, not a folder's
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
    """Files, folders (searched recursively for *.warc/.wet[.gz], not .wat; in a folder without
    them for your own corpus: corpus_files.py), globs and URLs, sorted."""
    return sorted(named_inputs(inputs))


def named_inputs(inputs: list[str]) -> dict[str, str]:
    """expand_inputs' sources, each with its name under its input's folder (corpus_files.corpus_name;
    the first input that finds a file names it)."""
    from crawlmill.pathsafety import check_no_credentials

    found: dict[str, str] = {}
    buckets: dict[tuple[Any, str], bool] = {}  # (filesystem, bucket) -> missing: one request per bucket
    for item in inputs:
        if is_url(item):
            check_no_credentials(item)
            if item.startswith(("http://", "https://")):
                path = urlsplit(item).path
                if path.endswith("/") or not path:
                    raise InputError(f"{item}: names a folder, and HTTP(S) has no listing to search one: name its files, or give --dump with --base-url")
                found.setdefault(item, corpus_name(path, posixpath.dirname(path)))  # not looked up: a list of thousands of file URLs costs no request per file
            elif _GLOB_CHARS & set(item):
                import fsspec

                try:
                    fs, _, paths = fsspec.get_fs_token_paths(item)
                except InputError:
                    raise
                except Exception as exc:  # e.g. PermissionError: wrong credentials
                    raise InputError(f"{item}: cannot be listed: {type(exc).__name__}: {exc}") from None
                if not paths:
                    raise InputError(f"{item}: the pattern matches no file{_bucket_note(fs, item, buckets)}")
                root = glob_root(fs._strip_protocol(item))
                for p in paths:
                    found.setdefault(fs.unstrip_protocol(p), corpus_name(p, root))
            elif item.endswith("/") or not (_ARCHIVE_SUFFIX.search(item) or corpus_kind(item)):
                for url, name in _remote_folder(item, buckets).items():  # a folder of an object store, like a local one
                    found.setdefault(url, name)
            else:
                _check_remote_file(item, buckets)
                path = urlsplit(item).netloc + urlsplit(item).path
                found.setdefault(item, corpus_name(path, posixpath.dirname(path)))
        elif os.path.isdir(item):
            root = Path(os.path.abspath(item))
            files = {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}
            chosen = folder_files(sorted(files))
            if not chosen:
                raise InputError(no_files_message(item, sorted(files)))
            _say_corpus_left_out(item, sorted(files))
            for rel in chosen:
                found.setdefault(str(files[rel].resolve()), corpus_name(f"{root.as_posix()}/{rel}", root.as_posix()))
        elif _GLOB_CHARS & set(item):
            matches = [p for p in glob.glob(item, recursive=True) if os.path.isfile(p)]
            if not matches:
                raise InputError(f"{item}: the pattern matches no file")
            root = Path(os.path.abspath(glob_root(item) or ".")).as_posix()
            for p in matches:
                found.setdefault(str(Path(p).resolve()), corpus_name(Path(os.path.abspath(p)).as_posix(), root))
        elif os.path.isfile(item):
            path = Path(os.path.abspath(item)).as_posix()
            found.setdefault(str(Path(item).resolve()), corpus_name(path, posixpath.dirname(path)))
        else:
            raise InputError(f"{item}: no such file or folder")
    return found


def _say_corpus_left_out(folder: str, names: list[str]) -> None:
    """A folder search reads a crawl folder's WARC/WET files only: say so when corpus files lie beside them."""
    if left := corpus_beside_archives(names):
        example = f"{folder.rstrip('/')}/{left[0]}"
        print(
            f"warning: {folder}: {len(left)} .jsonl/.parquet file(s) beside its WARC/WET files are not read (a folder search takes a crawl "
            f"folder's WARC/WET files only): give them as inputs of their own, e.g. '{example}'",
            file=sys.stderr,
        )  # fmt: skip


def _remote_folder(url: str, buckets: dict[tuple[Any, str], bool]) -> dict[str, str]:
    """The files under `url` a folder search takes (corpus_files.folder_files), searched
    recursively, each with its name, when it names a folder of an object store; url itself when it
    names some other file (only a name without an archive or corpus suffix is looked up: a listing
    of thousands of file URLs costs no request per file). A name ending in `/` that is no folder,
    or a name that is nothing, is refused as a local one is."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    try:
        names = fs.find(path) if fs.isdir(path) else None
    except Exception as exc:  # e.g. PermissionError: wrong credentials; nothing could be listed
        raise InputError(f"{url}: cannot be listed: {type(exc).__name__}: {exc}") from None
    if names is None:
        if url.endswith("/") or _not_found(fs, path):
            raise InputError(f"{url}: no such file or folder{_bucket_note(fs, url, buckets)}")
        return {url: corpus_name(path, posixpath.dirname(path))}
    root = path.rstrip("/")
    relative = {p[len(root) + 1 :]: p for p in names if p.startswith(root + "/")}
    chosen = folder_files(sorted(relative))
    if not chosen:
        raise InputError(no_files_message(url, sorted(relative)))
    _say_corpus_left_out(url, sorted(relative))
    return {fs.unstrip_protocol(relative[rel]): corpus_name(relative[rel], root) for rel in chosen}


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
        from crawlmill.store_errors import root_cause

        raise InputError(f"cannot read the paths listing {listing}: {root_cause(exc)}") from exc
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


def _open_with_retries(source: str, retries: int = 3, backoff_s: float = 1.0, random_access: bool = False) -> BinaryIO:
    for attempt in range(retries + 1):
        try:
            if not is_url(source):
                return open(source, "rb")
            import fsspec

            # block_size=0 streams HTTP(S) in one request instead of many range requests (a Parquet
            # file's footer is read first: it needs them).
            kwargs = {"block_size": 0} if source.startswith(("http://", "https://")) and not random_access else {}
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

    # Random access, for a Parquet file (its footer first, then its row groups).
    def seekable(self) -> bool:
        return self._raw.seekable()

    def seek(self, offset: int, whence: int = 0) -> int:
        try:
            return self._raw.seek(offset, whence)
        except Exception as exc:
            raise SourceReadError(f"seeking failed: {type(exc).__name__}: {exc}") from exc

    def tell(self) -> int:
        return self._raw.tell()


@contextmanager
def open_source(source: str, random_access: bool = False) -> Iterator[BinaryIO]:
    """Open a source for streaming (`random_access`: seekable, for Parquet); a missing, forbidden or
    folder one raises one of UNREADABLE (FileNotFoundError...: not retried), another failure
    SourceReadError (Ray retries the task)."""
    try:
        handle = _open_with_retries(source, random_access=random_access)
    except UNREADABLE:
        raise
    except Exception as exc:
        raise SourceReadError(f"cannot open {source}: {type(exc).__name__}: {exc}") from exc
    try:
        yield _ReadErrorsAreTransient(handle)
    finally:
        handle.close()



def resolve_named_sources(
    inputs: list[str] | None,
    dump: str | None = None,
    base_url: str | None = None,
    file_format: str = "wet",
    max_files: int | None = None,
    only_dump: str | None = None,
    other_dumps: Counter | None = None,
) -> dict[str, str | None]:
    """INPUTs when given (with `only_dump`: those whose path names that dump; `other_dumps`, when
    given, counts the files left to other dumps by dump), else the files of `dump`'s paths listing
    (InputError if neither), in order, each with its name under its input's folder (None for a
    dump listing's files); InputError for two corpus files of the same name (corpus_files.py)."""
    if inputs:
        named = named_inputs(inputs)
        found = sorted(named)
        if only_dump is not None:
            dumps = {source: dump_from_path(source) for source in found}
            # A file whose path names no dump belongs to no dump's run: refused, not left out unsaid.
            if undumped := [source for source in found if dumps[source] is None]:
                what = "this file of your own corpus" if corpus_kind(undumped[0]) else "this file"
                raise InputError(
                    f"{undumped[0]}: a run with a dumps: section ingests each Common Crawl dump's files alone (the dump named by crawl-data/CC-MAIN-.../ in "
                    f"their path), and {what} names no dump ({len(undumped)} such input file(s)): ingest it in a run without dumps:, or with "
                    "`crawlmill ingest` and give its filter output to dedup"
                )  # fmt: skip
            mine = [source for source in found if dumps[source] == only_dump]
            if not mine:
                raise InputError(f"no input file of dump {only_dump} (a path with crawl-data/{only_dump}/) among {len(found)} input file(s)")
            if other_dumps is not None:
                other_dumps.update(dumps[source] for source in found if dumps[source] != only_dump)
            found = mine
        try:
            check_unique_names({source: named[source] for source in found})
        except ValueError as exc:
            raise InputError(str(exc)) from None
        return {source: named[source] for source in found}
    if dump:
        return dict.fromkeys(dump_listing(dump, base_url or CC_BASE_URL, file_format, max_files))
    raise InputError("give INPUT files/folders/URLs, or --dump CC-MAIN-YYYY-WW")
