"""A bad-input set of WARC files for the accounting and fault tests: what real crawls hold besides
clean pages. Every file sits under a Common Crawl-like path of one dump, so it joins a run of the
sample corpus (samples/crawl-data). A library module, no command line::

    from pathlib import Path
    from crawlmill.corpora.bad_input import write_bad_input
    files = write_bad_input(Path("/tmp/bad"), "CC-MAIN-2024-10")  # {kind: path}

What each file holds (and what ingest must make of it):
- `mixed`: readable records of every awkward kind: a page with a few invalid UTF-8 bytes (kept,
  repaired), a page that is mostly invalid bytes, an empty page, a page larger than 1 MB (give
  ingest `max_record_mb: 1`), a PDF, a PNG, a Chinese page in GBK whose header says UTF-8, a page
  in UTF-8 whose header says ISO-8859-1, a GB2312 page declared only in its <meta>, an HTTP 500,
  request and metadata records;
- `corrupt_gzip`: two good records, then a gzip member whose compressed bytes are damaged;
- `truncated`: the file cut in the middle of its third record;
- `bad_records`: an uncompressed file: a record whose Content-Length runs past the end, after a
  record without a WARC-Record-ID;
- `empty`: no bytes; `not_warc`: gzip of a text that is not WARC.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from .warc_records import gzip_members, http_response, record, warcinfo

# Prose written for this file, long enough for the filters (Gopher's 50 words; Chinese by characters).
PROSE_EN = [
    "The river survey began at dawn, when the water was still and the mist had not yet lifted from the reeds. "
    "We counted the birds that nested along the eastern bank and measured the depth at every bend.\n\n"
    "By noon the current had grown stronger, and the team moved upstream to the old mill, where the banks are steep "
    "and the soil is soft. The notes we took there will help the town decide where to plant new trees next spring.",
    "This page repeats one paragraph many times so that the record grows past the limit an operator sets for a single "
    "record, which is how a crawler meets the occasional enormous page of generated text.",
    "The gardens behind the old school were planted by the students of the first class, and every year since then a new "
    "class has added a bed of flowers or a row of vegetables. Visitors are welcome on the first Sunday of each month, "
    "when the gardeners explain how they keep the soil healthy without chemicals and how they save seeds from one year "
    "to the next. The small pond in the corner attracts frogs in the spring and dragonflies in the summer.",
    "A walk around the harbour takes about an hour if you stop to read the signs. They tell the story of the fishing "
    "boats that once filled the water and of the families who built the warehouses along the quay. Today the "
    "warehouses hold a market, a library and a small museum, and the boats that remain take visitors to the islands.",
    "In winter the village kitchens smell of bread and soup. Each family has its own recipe, passed down from the "
    "grandparents, and the recipes are shared at the festival in January, where everyone brings a pot and a story. "
    "The children learn to knead the dough and the older cooks explain why the oven must be hot before the bread goes in.",
]
PROSE_ZH = [
    "城市公园一年四季都有不同的景色。春天，湖边的柳树发出嫩绿的新芽，孩子们在草地上放风筝；夏天，荷花盛开，傍晚常有居民在树荫下乘凉聊天。"
    "\n\n秋天，银杏叶变成金黄色，落满小路，摄影爱好者纷纷前来拍照；冬天，湖面结起薄冰，老人们依旧每天清晨来这里散步、打太极拳，公园成了大家共同的客厅。",
    "图书馆的夜晚总是很安静。灯光洒在长长的书桌上，学生们低头读书，偶尔翻动书页的声音在大厅里回响。管理员说，晚上来借书的人比白天更多，"
    "因为很多人下班以后才有时间。馆里还专门设立了儿童阅览区，每周六下午有志愿者给孩子们讲故事，家长们也可以在旁边一起听。",
    "山间的小路弯弯曲曲，一直通向村子后面的茶园。每年清明前后，村民们天不亮就上山采茶，中午把新鲜的茶叶背回家，晚上再用铁锅慢慢炒制。"
    "一位老茶农告诉我们，好茶要看天气，也要看手上的功夫，火候差一点，味道就完全不一样了。",
]


def _page(title: str, body: str, meta: str = "") -> str:
    paragraphs = "".join(f"<p>{p}</p>" for p in body.split("\n\n"))
    return f"<!doctype html><html><head>{meta}<title>{title}</title></head><body><article><h1>{title}</h1>{paragraphs}</article></body></html>"


def _response(uri: str, body: bytes, content_type: str = "text/html; charset=utf-8", status: str = "200 OK") -> bytes:
    return record("response", http_response(body, content_type, status), uri, extra={"Content-Type": "application/http; msgtype=response"})


def mixed_records() -> list[bytes]:
    """The readable records of the `mixed` file, in order."""
    site = "https://bad-input.example.org"
    repaired = _page("Notes from the river survey", PROSE_EN[0]).encode("utf-8")
    repaired = repaired.replace(b"survey", b"surv\xffey", 2)  # two invalid bytes in a long page
    garbage = b"<html><body><p>" + bytes(range(128, 256)) * 40 + b"</p></body></html>"
    huge = _page("A very long page", (PROSE_EN[1] + "\n\n") * 6000).encode("utf-8")  # > 1 MB
    gbk = _page("城市公园的四季", PROSE_ZH[0]).encode("gbk")
    latin = _page("Ein Bericht über die Gärten", PROSE_EN[2]).encode("utf-8")
    meta_only = _page("图书馆的夜晚", PROSE_ZH[1], meta='<meta charset="gb2312">').encode("gb2312")
    return [
        warcinfo("CC-MAIN-2024-10"),
        record("request", b"GET /survey HTTP/1.1\r\nHost: bad-input.example.org\r\n\r\n", f"{site}/survey"),
        _response(f"{site}/survey", repaired),
        record("metadata", b"fetchTimeMs: 120\r\n", f"{site}/survey", extra={"Content-Type": "application/warc-fields"}),
        _response(f"{site}/garbage", garbage),
        _response(f"{site}/empty", b"<html><head><title></title></head><body></body></html>"),
        _response(f"{site}/huge", huge),
        _response(f"{site}/report.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n", "application/pdf"),
        _response(f"{site}/logo.png", b"\x89PNG\r\n\x1a\n" + bytes(64), "image/png"),
        _response(f"{site}/gongyuan", gbk, "text/html; charset=utf-8"),  # the header lies: the bytes are GBK
        _response(f"{site}/gaerten", latin, "text/html; charset=iso-8859-1"),  # the header lies: UTF-8
        _response(f"{site}/tushuguan", meta_only, "text/html"),
        _response(f"{site}/error", b"<html><body>Internal error</body></html>", status="500 Internal Server Error"),
    ]


def _corrupt_member(data: bytes) -> bytes:
    member = bytearray(gzip.compress(data, compresslevel=1, mtime=0))
    for at in range(len(member) // 3, len(member) // 3 + 24):  # inside the deflate stream
        member[at] ^= 0x5A
    return bytes(member)


def write_bad_input(folder: Path, dump: str = "CC-MAIN-2024-10") -> dict[str, Path]:
    """The bad-input files under folder/crawl-data/<dump>/segments/bad/warc/; returns {kind: path}."""
    warc_dir = folder / "crawl-data" / dump / "segments" / "bad" / "warc"
    warc_dir.mkdir(parents=True, exist_ok=True)
    site = "https://damaged.example.net"
    good = [_response(f"{site}/a", _page("Harbour walks", PROSE_EN[3]).encode()), _response(f"{site}/b", _page("山间小路", PROSE_ZH[2]).encode())]
    third = _response(f"{site}/c", _page("Winter kitchens", PROSE_EN[4]).encode())
    files = {
        "mixed": gzip_members(mixed_records()),
        "corrupt_gzip": gzip_members([warcinfo(dump), *good]) + _corrupt_member(third),
        "truncated": (lambda data: data[: len(data) - len(gzip.compress(third, 1, mtime=0)) // 2])(gzip_members([warcinfo(dump), *good, third])),
        "bad_records": record("response", b"HTTP/1.1 200 OK\r\n\r\nno id", f"{site}/noid").replace(b"WARC-Record-ID", b"WARC-Record-Nil")
        + record("response", http_response(b"<html><p>cut</p></html>"), f"{site}/cut", content_length=5000),
        "empty": b"",
        "not_warc": gzip.compress(b"This is a plain text file that somebody named .warc.gz.\n" * 20, mtime=0),
    }
    paths = {}
    for number, (kind, data) in enumerate(files.items()):
        suffix = ".warc" if kind == "bad_records" else ".warc.gz"
        paths[kind] = warc_dir / f"CC-MAIN-bad-{number:05d}-{kind}{suffix}"
        paths[kind].write_bytes(data)
    return paths
