"""Damaged and hostile input never crashes ingest.

- Random cuts, byte flips, insertions and rewritten WARC header fields in a real sample WARC and WET
  file (samples/crawl-data, plain and gzip), and in Common Crawl's own WET and WAT files (../shared,
  skipped when absent), always end in a finished part whose records are all accounted for (in = kept
  + dropped + quarantined), each quarantine entry naming its file and error.
- Byte flips in some gzip members of the sample WARC as Common Crawl writes it (a member per record)
  cost exactly those members' records: every other page is read as from the undamaged file.
- Well-framed WARC response records with hostile HTTP inside (odd status lines, charset labels of
  non-text codecs, broken chunked framing, corrupt gzip/deflate/br bodies, <meta> charsets) are each
  kept, dropped or quarantined as `bad_http` (or `bad_encoding`): the framing is intact, so exactly
  every record is seen.
- Every run is bounded in time (an alarm fails the test instead of hanging it) and a brotli bomb is
  refused without inflating it.
"""

import functools
import gzip
import random
import re
import tempfile
import tracemalloc
import zlib
from pathlib import Path

import brotli
import pyarrow.parquet as pq
import pytest
from crawlmill.pipeline.ingest.config import IngestConfig
from crawlmill.pipeline.ingest.html_text import decode_html
from crawlmill.pipeline.ingest.http_payload import HttpPayloadError, parse_http_response
from crawlmill.pipeline.ingest.stage import IngestStage
from crawlmill.pipeline.stage import run_part
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.conftest import SAMPLES
from tests.fuzzing import fuzz_settings, time_limit

from .gzip_members import member_starts

DUMP = SAMPLES / "crawl-data/CC-MAIN-2024-10"
WARC = gzip.decompress(next(DUMP.glob("segments/*/warc/*.warc.gz")).read_bytes())
WET = gzip.decompress(next(DUMP.glob("segments/*/wet/*.warc.wet.gz")).read_bytes())
SOURCES = {"warc": WARC, "wet": WET}
OPS = ["flip", "cut", "insert", "header", "field"]


def field_values(data: bytes) -> list[tuple[int, int]]:
    """Positions of the values of WARC header lines, where a rewritten field lands."""
    return [m.span(1) for m in re.finditer(rb"(?m)^(?:WARC-[A-Za-z-]+|Content-Length|Content-Type): ?([^\r\n]*)", data)]


ODD_VALUES = [
    b"", b"-1", b"0", b"99999999999999999999999", b"18446744073709551616", b"1e9", b" 12 ", b"\xff\xfe",
    b"response", b"conversion", b"revisit", b"request", b"metadata", b"resource", b"warcinfo", b"\x00",
    b"text/html; charset=rot13", b"application/http; msgtype=response", b"<urn:uuid:>", b"not-a-date",
]  # fmt: skip
FUZZ = fuzz_settings(max_examples=150)
pytestmark = pytest.mark.usefixtures("fuzz_time_limit")


def ingest(path) -> tuple[dict, list[dict]]:
    """One part of ingest over `path` (into a fresh folder: hypothesis reuses tmp_path across examples);
    its counts and quarantine rows, after checking every record is accounted for and every quarantine
    entry names the file and an error."""
    out = Path(tempfile.mkdtemp(dir=path.parent))
    stage = IngestStage(IngestConfig(inputs=[str(path)], max_record_mb=1))
    with time_limit(20):
        stats = run_part(stage, stage.tasks()[0], str(out))
    assert stats["in"] == stats["kept"] + sum(stats["dropped"].values()) + stats["quarantined"]
    quarantine = list((out / "_quarantine").glob("*.parquet"))
    rows = pq.read_table(quarantine[0]).to_pylist() if quarantine else []
    assert len(rows) == stats["quarantined"]
    for row in rows:
        assert row["source"] == str(path) and row["error"] and row["detail"], row
    return stats, rows


def damage(data: bytes, seed: int, op: str) -> bytes:
    rng = random.Random(seed)
    data = bytearray(data)
    if op == "flip":
        for _ in range(rng.randint(1, 30)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif op == "cut":
        data = data[: rng.randrange(len(data))]
    elif op == "insert":
        at = rng.randrange(len(data))
        data[at:at] = rng.randbytes(rng.randint(1, 300))
    elif op == "header":
        at = rng.randrange(len(data))
        data[at : at + rng.randint(1, 40)] = rng.randbytes(rng.randint(0, 40))
    else:  # a WARC header field's value rewritten: lengths, record types, ids, content types
        fields = field_values(bytes(data))
        for start, end in sorted(rng.sample(fields, min(len(fields), rng.randint(1, 3))), reverse=True):
            data[start:end] = rng.choice(ODD_VALUES)
    return bytes(data)


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), source=st.sampled_from(sorted(SOURCES)), op=st.sampled_from(OPS), compress=st.booleans())
def test_damaged_warc_and_wet_never_crash_and_every_record_is_accounted_for(tmp_path, seed, source, op, compress):
    data = damage(SOURCES[source], seed, op)
    path = tmp_path / f"{seed}-{op}.{'warc' if source == 'warc' else 'warc.wet'}{'.gz' if compress else ''}"
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    stats, _ = ingest(path)
    assert stats["in"] >= 1


# The sample WARC as Common Crawl lays it out, one gzip member per record, with its compressed bytes
# damaged: a corrupt member costs its own record only; reading resumes at the next member.
WARC_GZ = next(DUMP.glob("segments/*/warc/*.warc.gz")).read_bytes()


def ingest_pages(path: Path) -> tuple[set[tuple], list[dict]]:
    """ingest()'s checks, and the kept pages as (id, offset, url, text)."""
    before = set(path.parent.iterdir())
    _, rows = ingest(path)
    (out,) = [p for p in set(path.parent.iterdir()) - before if p.is_dir()]
    docs = pq.read_table(out / "part-00000.parquet").to_pylist()
    return {(d["id"], d["warc_offset"], d["url"], d["text"]) for d in docs}, rows


@functools.cache
def clean_pages() -> set[tuple]:
    folder = Path(tempfile.mkdtemp())
    (folder / "clean.warc.gz").write_bytes(WARC_GZ)
    pages, rows = ingest_pages(folder / "clean.warc.gz")
    assert pages and not rows
    return pages


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), members=st.integers(1, 3), flips=st.integers(1, 40))
def test_damaged_gzip_members_cost_only_their_own_records(tmp_path, seed, members, flips):
    rng = random.Random(seed)
    starts = member_starts(WARC_GZ) + [len(WARC_GZ)]
    data = bytearray(WARC_GZ)
    damaged = set()
    # Not the last member: damage there that still inflates to the end of the file reads as a cut-off
    # download, whose whole record is kept (with a truncated_gzip entry), as before.
    for k in rng.sample(range(len(starts) - 2), members):
        for _ in range(flips):
            at = rng.randrange(starts[k] + 10, starts[k + 1])  # past the member's gzip header
            data[at] ^= rng.randrange(1, 256)
        damaged.add(starts[k])
    path = tmp_path / f"{seed}.warc.gz"
    path.write_bytes(bytes(data))
    pages, quarantined = ingest_pages(path)
    # Every page of an undamaged member is read as in the undamaged file; none of a damaged one is kept.
    assert pages == {page for page in clean_pages() if page[1] not in damaged}
    assert {row["error"] for row in quarantined} == {"corrupt_gzip"} and 1 <= len(quarantined) <= members


# Common Crawl's own WET and WAT files (third-party, ../shared/data): real headers, real text.
REAL = [
    "cc/npm-warc/CC-MAIN-20140820021334-00006-ip-10-180-136-8.ec2.internal.warc.wet",
    "cc/npm-warc/CC-MAIN-20140820021334-00006-ip-10-180-136-8.ec2.internal.warc.wat",
    "cc/whirlwind/whirlwind.warc.wet.gz",
    "cc/whirlwind/whirlwind.warc.wat.gz",
]


@settings(FUZZ, max_examples=60)
@given(seed=st.integers(0, 2**32 - 1), name=st.sampled_from(REAL), op=st.sampled_from(OPS))
def test_damaged_common_crawl_wet_and_wat_never_crash(shared_data, tmp_path, seed, name, op):
    raw = (shared_data / name).read_bytes()
    data = damage(gzip.decompress(raw) if name.endswith(".gz") else raw, seed, op)
    path = tmp_path / f"{seed}-{op}-{name.rsplit('/', 1)[1]}"
    path.write_bytes(gzip.compress(data, mtime=0) if name.endswith(".gz") else data)
    stats, _ = ingest(path)
    assert stats["in"] >= 1


# Hostile HTTP: status lines, headers, charset labels and bodies, framed in valid WARC records.
STATUS_LINES = st.one_of(
    st.sampled_from([b"HTTP/1.1 200 OK", b"HTTP/1.0 404 Not Found", b"HTTP/1.1 301", b"HTTP/2 200", b"HTTP/1.1 \xb200 OK",
                     b"HTTP/1.1 \xb9\xb2\xb3", b"HTTP/1.1 099 x", b"HTTP/1.1 -200 OK", b"http/1.1 200", b"ICY 200 OK", b""]),
    st.binary(max_size=40).filter(lambda b: b"\n" not in b),
)  # fmt: skip
CHARSETS = st.one_of(
    st.sampled_from(["utf-8", "gb2312", "gbk", "big5", "shift_jis", "latin-1", "utf-16", "utf-32", "utf-7", "rot13",
                     "base64", "hex", "zlib", "bz2", "uu", "quopri", "idna", "punycode", "undefined", "unicode_escape",
                     "raw_unicode_escape", "x-user-defined", "mbcs", "cp65001", "utf_8_sig", "no-such-charset"]),
    st.from_regex(r"[A-Za-z0-9_.:-]{1,20}", fullmatch=True),
)  # fmt: skip
ENCODINGS = st.sampled_from(["", "gzip", "x-gzip", "deflate", "br", "identity", "compress", "gzip, br", "GZIP"])


@st.composite
def http_blocks(draw) -> bytes:
    charset = draw(CHARSETS)
    html = f'<html><head><meta charset="{draw(CHARSETS)}"><title>t</title></head><body><p>{"Text " * 30}ü 中文</p></body></html>'
    body = html.encode(draw(st.sampled_from(["utf-8", "gb18030", "utf-16", "latin-1"])), errors="replace")
    if draw(st.booleans()):
        body = draw(st.binary(max_size=300))
    headers = [b"Content-Type: " + draw(st.sampled_from([b"text/html", b"text/plain", b"application/xhtml+xml", b"image/png", b""]))
               + (b"; charset=" + charset.encode() if draw(st.booleans()) else b"")]  # fmt: skip
    encoding = draw(ENCODINGS)
    if encoding:
        headers.append(b"Content-Encoding: " + encoding.encode())
        packed = {"gzip": lambda b: gzip.compress(b, mtime=0), "x-gzip": lambda b: gzip.compress(b, mtime=0),
                  "deflate": lambda b: zlib.compress(b)[2:-4], "br": brotli.compress}.get(encoding)  # fmt: skip
        if packed is not None and draw(st.booleans()):
            body = packed(body)
        if draw(st.booleans()):  # damaged in transit: cut or flipped
            cut = draw(st.integers(0, len(body)))
            body = body[:cut] + draw(st.binary(max_size=8))
    if draw(st.booleans()):
        headers.append(b"Transfer-Encoding: chunked")
        odd_sizes = st.sampled_from([b"0", b"ffffffffffffffff", b"zz", b"", b"1_0", b"0x5", b"5;ext=1", b" 8 "])
        hex_sizes = st.integers(-24, 40).map(lambda n: ("-" * (n < 0) + format(abs(n), "x")).encode())
        sizes = draw(st.lists(odd_sizes | hex_sizes, max_size=4))
        body = b"".join(size + b"\r\n" + body[:16] + b"\r\n" for size in sizes) + draw(st.sampled_from([b"", b"0\r\n\r\n"]))
    separator = draw(st.sampled_from([b"\r\n\r\n", b"\n\n", b"\r\n"]))
    return draw(STATUS_LINES) + b"\r\n" + b"\r\n".join(headers) + separator + body


def response_record(number: int, block: bytes) -> bytes:
    head = (
        "WARC/1.1\r\nWARC-Type: response\r\nWARC-Date: 2024-02-20T21:12:58Z\r\n"
        f"WARC-Record-ID: <urn:uuid:00000000-0000-0000-0000-{number:012d}>\r\n"
        f"WARC-Target-URI: https://example.org/{number}\r\nContent-Type: application/http; msgtype=response\r\n"
        f"Content-Length: {len(block)}\r\n\r\n"
    )
    return head.encode() + block + b"\r\n\r\n"


@FUZZ
@given(blocks=st.lists(http_blocks(), min_size=1, max_size=4), compress=st.booleans())
def test_hostile_http_and_charsets_are_kept_dropped_or_quarantined(tmp_path, blocks, compress):
    data = b"".join(response_record(i, block) for i, block in enumerate(blocks))
    path = tmp_path / f"http.warc{'.gz' if compress else ''}"
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    stats, quarantined = ingest(path)
    # The WARC framing is intact: every record is read, and any quarantine is of a record's content
    # (its HTTP, or a body no charset decodes), never of the file.
    assert stats["in"] == len(blocks)
    assert {row["error"] for row in quarantined} <= {"bad_http", "bad_encoding"}


@settings(FUZZ, max_examples=300)
@given(block=http_blocks(), charset=st.none() | CHARSETS)
# What this fuzzing found, kept as fixed examples: a latin-1 superscript status passed isdigit() but
# not int(); a negative chunk size sent the chunk loop back to its own line forever; charset labels
# of codecs that are no text encoding made bytes.decode raise LookupError or UnicodeError.
@example(block=b"HTTP/1.1 \xb200 OK\r\nContent-Type: text/html\r\n\r\n<p>x</p>", charset=None)
@example(block=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-4\r\nabcd\r\n0\r\n\r\n", charset=None)
@example(block=b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=rot13\r\n\r\n<p>x</p>", charset=None)
@example(block=b'HTTP/1.1 200 OK\r\n\r\n<meta charset="base64"><p>\xff\xfe</p>', charset="undefined")
@example(block=b"HTTP/1.1 200 OK\r\n\r\n<p>\xff\xfe</p>", charset="punycode")
def test_http_parsing_and_charset_decoding_raise_only_http_payload_error(block, charset):
    """The same hostile blocks, many more of them, straight into the parser and the decoder (no files):
    HttpPayloadError (quarantined as bad_http) or a result, quickly."""
    with time_limit(5):
        try:
            http = parse_http_response(block, 1 << 20)
        except HttpPayloadError as exc:
            assert str(exc)
            return
        decoded = decode_html(http.body, charset or http.charset)
    assert isinstance(decoded.text, str) and decoded.charset


def test_brotli_bomb_is_refused_without_inflating_it():
    """64 MiB of zeros compress to a few KB of br; a 1 MiB limit must stop decoding at 1 MiB."""
    bomb = brotli.compress(b"\x00" * (64 << 20), quality=1)
    block = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: br\r\n\r\n" + bomb
    tracemalloc.start()
    try:
        with pytest.raises(HttpPayloadError, match="exceeds 1048576 bytes"):
            parse_http_response(block, 1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak traced allocation {peak:,} bytes"
