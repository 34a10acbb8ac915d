"""The corpus of the ingest benchmark (bench/ingest_bench.py): `repeat` WARC files, each the five real
Common Crawl WARC samples in ../shared/data/cc (resiliparse, whirlwind, cmoncrawl and two
cdx_toolkit files) concatenated, gzip member after gzip member, as one file. A library module, no
command line::

    from pathlib import Path
    from crawlmill.corpora.ingest_corpus import build_corpus
    paths = build_corpus(Path("/tmp/ingest-corpus"), repeat=20)  # bench-000.warc.gz ... bench-019.warc.gz
"""

from __future__ import annotations

from pathlib import Path

from crawlmill.corpora.shared_text import SHARED_DATA

CC_DIR = SHARED_DATA / "cc"
CC_FILES = [
    "resiliparse/warcfile.warc.gz",
    "whirlwind/whirlwind.warc.gz",
    "cmoncrawl/mini.warc.gz",
    "cdx_toolkit/CC-MAIN-20250802220907-20250803010907-00970-06bb8ce9.warc.gz",
    "cdx_toolkit/CC-MAIN-20250804083340-20250804113340-00340-c1c6d636.warc.gz",
]


def build_corpus(folder: Path, repeat: int, cc_dir: Path = CC_DIR) -> list[Path]:
    """`repeat` files, each the concatenation of the real Common Crawl WARC samples (gzip members)."""
    folder.mkdir(parents=True, exist_ok=True)
    blob = b"".join((Path(cc_dir) / f).read_bytes() for f in CC_FILES)
    paths = []
    for i in range(repeat):
        path = folder / f"bench-{i:03d}.warc.gz"
        path.write_bytes(blob)
        paths.append(path)
    return paths
