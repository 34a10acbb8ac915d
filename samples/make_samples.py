#!/usr/bin/env python3
"""Generate crawlmill's sample Common-Crawl-style corpus from samples/pages/*.yaml.

The page text in ``samples/pages/`` is original synthetic content written for
crawlmill. This script wraps each page's main content (title + paragraphs) in
realistic site boilerplate (header, nav, cookie banner, related-articles aside,
footer, <script> and <style>), and writes the result the way Common Crawl
publishes a crawl:

    samples/crawl-data/<DUMP>/warc.paths.gz
    samples/crawl-data/<DUMP>/wet.paths.gz
    samples/crawl-data/<DUMP>/segments/<segment>/warc/CC-MAIN-<ts>-<ts>-<nnnnn>.warc.gz
    samples/crawl-data/<DUMP>/segments/<segment>/wet/CC-MAIN-<ts>-<ts>-<nnnnn>.warc.wet.gz

for two dumps, CC-MAIN-2023-50 and CC-MAIN-2024-10, with two WARC files (and
the matching WET files) per dump. It also writes ``samples/manifest.jsonl``:
one JSON line per fetched URL saying which file/record holds it, its kind,
language, charset and HTTP status, so tests can look up the ground truth
(the YAML page with the same ``slug``) for any record.

WARC files contain a ``warcinfo`` record followed by request / response /
metadata records for every fetch (200 HTML pages plus, per dump, one 404, one
301 redirect and one image/png response). WET files contain a ``warcinfo``
record and one ``conversion`` record (plain text, UTF-8) per 200 HTML page.
Every record is its own gzip member, as in Common Crawl.

The output is deterministic: fixed dates, record IDs from uuid5 of
(dump, URL, record type), gzip members written with mtime=0 and a fixed
iteration order. Running the script twice produces byte-identical files.

Usage (from the repository root, with the project's virtualenv active)::

    python samples/make_samples.py

Requires ``fastwarc`` (from the ``resiliparse`` project) and ``PyYAML``.
The work is split into three modules in this directory:

* ``sample_pages.py``: loading/validating the YAML page descriptions, the dump
  definitions, and HTML rendering of every page;
* ``sample_warc.py``: building the gzip-compressed WARC and WET records;
* ``make_samples.py`` (this file): planning the fetches, writing the files and
  the manifest. It re-exports ``load_corpus`` and ``ground_truth_text``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
from datetime import timedelta
from pathlib import Path

from sample_pages import DUMPS, HERE, ground_truth_text, load_corpus
from sample_warc import build_fetch, conversion_record, http_date, warc_date, warcinfo_record

__all__ = ["load_corpus", "ground_truth_text", "plan_fetches", "file_stem", "generate", "main"]

CRAWL_DIR = HERE / "crawl-data"
MANIFEST = HERE / "manifest.jsonl"

FILE_SPAN = timedelta(hours=3)          # second timestamp in a CC file name
FETCH_INTERVAL = timedelta(seconds=97)  # spacing of fetches inside one file
WET_DELAY = timedelta(days=9, hours=4)  # WET extraction date after the crawl


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def plan_fetches(pages: list[dict], specials: list[dict]) -> dict[str, list[list[dict]]]:
    """Assign every fetch of every dump to one of the dump's WARC files.

    Order inside a dump is a stable pseudo-random shuffle (sha1 of dump+URL),
    so files are not sorted by URL, and fetches alternate between the files.
    """
    plan: dict[str, list[list[dict]]] = {}
    for dump, cfg in DUMPS.items():
        fetches = [p for p in pages if dump in p["dumps"]] + [s for s in specials if s["dump"] == dump]
        fetches.sort(key=lambda f: hashlib.sha1(f"{dump}|{f['url']}".encode()).hexdigest())
        n_files = len(cfg["files"])
        plan[dump] = [fetches[i::n_files] for i in range(n_files)]
    return plan


def file_stem(cfg_file: dict) -> str:
    start = cfg_file["start"]
    end = start + FILE_SPAN
    return f"CC-MAIN-{start:%Y%m%d%H%M%S}-{end:%Y%m%d%H%M%S}-{cfg_file['number']:05d}"


def generate(out_root: Path = HERE) -> list[Path]:
    sites, pages, specials = load_corpus()
    plan = plan_fetches(pages, specials)
    crawl_dir = out_root / "crawl-data"
    if crawl_dir.exists():
        shutil.rmtree(crawl_dir)
    written: list[Path] = []
    manifest: list[dict] = []
    first_dump_of = {p["slug"]: p["dumps"][0] for p in pages}

    for dump, cfg in DUMPS.items():
        warc_paths: list[str] = []
        wet_paths: list[str] = []
        for file_cfg, fetches in zip(cfg["files"], plan[dump]):
            stem = file_stem(file_cfg)
            seg = file_cfg["segment"]
            warc_rel = f"crawl-data/{dump}/segments/{seg}/warc/{stem}.warc.gz"
            wet_rel = f"crawl-data/{dump}/segments/{seg}/wet/{stem}.warc.wet.gz"
            start = file_cfg["start"]

            warcinfo, warcinfo_id = warcinfo_record(dump, f"{stem}.warc.gz", start, [
                ("isPartOf", dump),
                ("publisher", "crawlmill project (synthetic sample data, not Common Crawl)"),
                ("description", cfg["description"]),
                ("operator", "crawlmill samples/make_samples.py"),
                ("hostname", "sample-generator.invalid"),
                ("software", "crawlmill sample generator 1.0 (samples/make_samples.py)"),
                ("robots", "not applicable (synthetic pages)"),
                ("format", "WARC File Format 1.1"),
                ("conformsTo", "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/"),
            ])
            wet_date = start + FILE_SPAN + WET_DELAY
            wet_info, _ = warcinfo_record(dump, f"{stem}.warc.wet.gz", wet_date, [
                ("Software-Info", "crawlmill sample generator 1.0 (samples/make_samples.py)"),
                ("Extracted-Date", http_date(wet_date)),
                ("robots", "not applicable (synthetic pages)"),
                ("isPartOf", dump),
                ("operator", "crawlmill samples/make_samples.py"),
                ("description", cfg["description"]),
                ("publisher", "crawlmill project (synthetic sample data, not Common Crawl)"),
            ])
            warc_chunks = [warcinfo]
            wet_chunks = [wet_info]
            for i, fetch in enumerate(fetches):
                date = start + timedelta(minutes=2) + i * FETCH_INTERVAL
                records, info = build_fetch(dump, fetch, date, warcinfo_id, sites, pages)
                warc_chunks.extend(records)
                conv_id = None
                if info["wet_text"] is not None:
                    conv, conv_uuid = conversion_record(dump, fetch["url"], date, info["response_record_id"],
                                                        info["wet_text"], info["languages"])
                    wet_chunks.append(conv)
                    conv_id = f"<urn:uuid:{conv_uuid}>"
                is_page = fetch["kind"] in ("clean", "junk", "near_duplicate")
                manifest.append({
                    "dump": dump,
                    "warc_path": warc_rel,
                    "wet_path": wet_rel if conv_id else None,
                    "position": i,
                    "slug": fetch["slug"],
                    "url": fetch["url"],
                    "kind": fetch["kind"],
                    "junk_type": fetch.get("junk_type"),
                    "lang": fetch.get("lang"),
                    "status": info["status"],
                    "content_type": info["content_type"],
                    "charset": info["charset"],
                    "charset_declared": info["charset_declared"],
                    "duplicate_of": fetch.get("duplicate_of"),
                    "location": info.get("location"),
                    "republished": bool(is_page and first_dump_of[fetch["slug"]] != dump),
                    "warc_date": warc_date(date),
                    "request_record_id": info["request_record_id"],
                    "response_record_id": info["response_record_id"],
                    "metadata_record_id": info["metadata_record_id"],
                    "conversion_record_id": conv_id,
                    "payload_digest": info["payload_digest"],
                })
            for rel, chunks in ((warc_rel, warc_chunks), (wet_rel, wet_chunks)):
                path = out_root / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"".join(chunks))
                written.append(path)
            warc_paths.append(warc_rel)
            wet_paths.append(wet_rel)
        for name, rels in (("warc.paths.gz", warc_paths), ("wet.paths.gz", wet_paths)):
            path = crawl_dir / dump / name
            path.write_bytes(gzip.compress("".join(r + "\n" for r in rels).encode("ascii"),
                                           compresslevel=9, mtime=0))
            written.append(path)

    manifest_path = out_root / "manifest.jsonl"
    manifest_path.write_text(
        "".join(json.dumps(m, ensure_ascii=False, sort_keys=True) + "\n" for m in manifest),
        encoding="utf-8",
    )
    written.append(manifest_path)
    return written


def main() -> None:
    written = generate()
    for path in written:
        print(f"{path.stat().st_size:>9,d}  {os.path.relpath(path, HERE.parent)}")


if __name__ == "__main__":
    main()
