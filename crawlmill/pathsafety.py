"""What a path may hold: no credentials in a URL, and no way out of its folder for a path read
from data. Used by crawlmill/files.py (every path made) and by the readers of data files
(manifests, part markers, `_dumps.json`, checkpoint pointers); messages go through `redact`.

    from crawlmill.pathsafety import inside_folder, redact
    inside_folder("culture-00000", "out/shards/manifest.json", "shards[0].prefix")  # the name, or OutsideFolderError
    redact("s3://KEY:SECRET@bucket/x")  # 's3://KEY:***@bucket/x'
"""

from __future__ import annotations

import re
from typing import Any


# user:password@ in a URL's authority (scheme://user:password@host/...): a password written into a
# path would be printed and recorded wherever the path is (messages, _tasks.json, manifests). The
# password may hold "/" (AWS secret keys do); a port (host:8080/...@) is not taken for one.
_URL_PASSWORD = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@\s:]*):(?!\d+(?:/|$))(?P<password>[^@\s]*)@")


def redact(text: str) -> str:
    """`text` with the password of every URL in it (`scheme://user:password@host`) replaced by ***."""
    return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)


def check_no_credentials(url: str) -> None:
    """ValueError for a URL carrying a password (`s3://KEY:SECRET@bucket/...`), naming it redacted.
    Credentials come only from fsspec's and the SDKs' usual places, never from a path; s3fs
    would take the pair for part of the bucket name and echo it in its errors."""
    if _URL_PASSWORD.search(url):
        raise ValueError(
            f"{redact(url)}: a URL with a password in it is refused (it would be printed and recorded with the path); "
            "give credentials the usual way: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile for s3://, "
            "FSSPEC_<PROTOCOL>_<OPTION> environment variables for any fsspec URL"
        )


class OutsideFolderError(ValueError):
    """A path read from a data file (a manifest, a marker, a record) that leaves the file's folder."""


def inside_folder(name: Any, source: Any, entry: str) -> str:
    """`name`, the entry `entry` of the data file `source`, checked to be a path relative to the
    folder it names things in, and inside it: not absolute, no URL, no `..`; OutsideFolderError
    naming the file and the entry otherwise.

    Only names read from data are checked (manifests, part markers, `_dumps.json`, checkpoint
    pointers): anyone who can write a data location (a shared bucket, a downloaded shard folder)
    wrote them, and a reader following them would read, copy or overwrite files elsewhere with
    this user's rights. Paths the user gives (a run config such as configs/demo.yaml, with its
    `../samples`, or command-line arguments) are the user's instruction and may point anywhere."""
    if not isinstance(name, str) or not name or "\0" in name:
        why = "not a relative path"
    elif "://" in name:
        why = "a URL, not a path in the folder"
    elif name.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:[\\/]", name):
        why = "an absolute path"
    elif ".." in re.split(r"[\\/]", name):
        why = "it leaves the folder (..)"
    else:
        return name
    raise OutsideFolderError(f"{redact(str(source))}: {entry} {name!r} is refused: {why}; a data file names only paths inside its folder")
