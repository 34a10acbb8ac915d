"""HTML bytes -> main text: charset decision (declared, then detected) and extraction.

Charset order follows browsers: byte-order mark, HTTP header, <meta> tag; a declared charset is
used only if the bytes decode under it, otherwise uchardet (resiliparse) detects one. Legacy
labels map to the supersets browsers use (gb2312/gbk -> gb18030, latin-1 -> cp1252), which is
what keeps Chinese pages labelled gb2312 readable.

Extraction uses resiliparse's main-content extractor by default (measured ~5-10x faster than
trafilatura on Common Crawl pages at comparable quality; see docs/ingest.md and BENCHMARKS.md);
trafilatura, through datatrove's extractor class, is available for comparison.

Resiliparse's main-content mode (2.0.1, and its main branch) drops a text node, or an element with
one, whose text is exactly three UTF-8 bytes in a wide range it means as "one private-use icon
glyph": it reads the bytes as a little-endian integer, so nearly every one-character node from
U+0800 up (、 。 和 – — between links or tags) and an ASCII character before a two-byte one (m², 1°)
went too: `<a>北京</a>、<a>上海</a>` came out 北京上海, `<b>9</b>–<b>17</b>` 917. Such nodes get a
noncharacter (U+FDD0) appended before parsing, which makes them four bytes and longer, and the
text loses it again; icon glyphs (one character of U+E000-U+F8FF) and a lone pilcrow still go.
"""

from __future__ import annotations

import codecs
import html
import re
from dataclasses import dataclass

from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.encoding import detect_encoding
from resiliparse.parse.html import HTMLTree

from .config import EXTRACTORS
_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "euc-cn": "gb18030",
    "iso-8859-1": "cp1252",
    "latin-1": "cp1252",
    "latin1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "big5": "big5hkscs",
    "shift_jis": "cp932",
    "euc-kr": "cp949",
}
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufdd0]")  # U+FDD0: _keep_short_nodes's mark
_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_BLANK_LINES = re.compile(r"\n{3,}")


@dataclass
class DecodedHtml:
    text: str
    charset: str
    how: str  # bom | http | meta | http_repaired | meta_repaired | utf8_over_label | detected | replaced


# A page declared UTF-8 with at most this share of invalid sequences is decoded as UTF-8 with U+FFFD in
# their place (a few bad bytes in a long page); with more, the declaration is not trusted.
REPAIRABLE_SHARE = 0.01


# Python codecs that a label may name but that are no page charset: domain-name codecs and a sentinel
# that fails on every input (codecs that are not text encodings at all, base64, zlib, rot13, ... are
# refused by their CodecInfo).
_NOT_CHARSETS = {"idna", "punycode", "undefined"}


def _single_byte(codec: str) -> bool:
    """Whether a codec maps every byte to one character (Latin-1, the ISO-8859 and Windows-125x pages)."""
    return codec in ("latin-1", "iso8859-1", "ascii") or codec.startswith(("iso8859-", "cp125"))


def _codec(label: str | None) -> str | None:
    """The Python codec of a charset label, or None when the label names no text encoding."""
    if not label:
        return None
    label = label.strip().lower()
    label = _SUPERSETS.get(label, label)
    try:
        info = codecs.lookup(label)
    except LookupError:
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS:
        return None  # `charset=base64` in a page must not make bytes.decode raise LookupError
    return info.name


def decode_html(body: bytes, http_charset: str | None) -> DecodedHtml:
    """The page's text, by its BOM, its labels (HTTP, then meta), else detection; never a lone
    surrogate (utf-7 and the escape codecs decode `+2AA-` or `\\ud800` to one, which no UTF-8 writer
    takes): each is a U+FFFD, counted as undecodable as any other."""
    decoded = _decode(body, http_charset)
    if _SURROGATE.search(decoded.text):
        decoded.text = _SURROGATE.sub("\ufffd", decoded.text)
    return decoded


def _decode(body: bytes, http_charset: str | None) -> DecodedHtml:
    for bom, name in _BOMS:
        if body.startswith(bom):
            return DecodedHtml(body.decode(name, errors="replace"), name, "bom")
    meta = _META_CHARSET.search(body[:8192])
    declared = [(_codec(http_charset), "http"), (_codec(meta.group(1).decode("ascii")) if meta else None, "meta")]
    named = [charset for charset, _ in declared if charset]
    if named and all(_single_byte(c) for c in named) and not body.isascii():
        # A single-byte label on bytes that are valid UTF-8 is a mislabelled UTF-8 page (seen on CC
        # servers that send charset=ISO-8859-1 by default): real Latin-1 text with its high bytes
        # forming only well-formed UTF-8 sequences is vanishingly rare; decoding it as labelled
        # would turn every accented letter and every CJK character into mojibake.
        try:
            return DecodedHtml(body.decode("utf-8"), "utf-8", "utf8_over_label")
        except UnicodeDecodeError:
            pass
    for charset, how in declared:
        if charset:
            try:
                return DecodedHtml(body.decode(charset), charset, how)
            except UnicodeError:  # UnicodeDecodeError, or a codec's own UnicodeError (utf-7, ...)
                if charset == "utf-8":  # a UTF-8 page with a few bad bytes stays UTF-8, repaired
                    text = body.decode("utf-8", errors="replace")
                    if text.count("\ufffd") <= REPAIRABLE_SHARE * max(len(text), 1):
                        return DecodedHtml(text, charset, f"{how}_repaired")
    detected = _codec(detect_encoding(body)) or "utf-8"
    try:
        return DecodedHtml(body.decode(detected), detected, "detected")
    except UnicodeError:
        fallback = next((c for c, _ in declared if c), detected)
        try:
            return DecodedHtml(body.decode(fallback, errors="replace"), fallback, "replaced")
        except UnicodeError:  # a codec that raises even with errors="replace"
            return DecodedHtml(body.decode("utf-8", errors="replace"), "utf-8", "replaced")


def normalize_text(text: str) -> str:
    """Line endings to \\n, no-break spaces to spaces, no control characters, at most one blank line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " ").replace("\ufeff", "")
    text = _CONTROL.sub("", text)
    # Each pattern only where it can match: `in` scans ~5x faster than the regexes, which cost 80% of
    # ingesting a JSONL corpus (measured on wikitext-2 articles); the result is the same.
    if " \n" in text or "\t\n" in text:
        text = _TRAILING_SPACE.sub("\n", text)
    if "\n\n\n" in text:
        text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()


# A text node between tags (ASCII whitespace around it, as resiliparse strips) that may be three UTF-8
# bytes: one non-ASCII character or character reference, an ASCII character (not `&`) before one.
# Possessive: no backtracking, a quarter of the time of the plain pattern (~0.1 ms a page).
_SHORT_NODE = re.compile(r">[ \t\n\r\f\v]*+([!-%'-;=?-~]?+(?:[^\x00-\x7f]|&#?[A-Za-z0-9]{1,32};))(?=[ \t\n\r\f\v]*+<)")
_MARK = "\ufdd0"  # a noncharacter: no text holds it


def _mark_short_node(match: re.Match) -> str:
    text = html.unescape(match.group(1))
    icon = len(text) == 1 and "\ue000" <= text <= "\uf8ff"
    return match.group(0) + _MARK if len(text.encode("utf-8", "surrogatepass")) == 3 and not icon else match.group(0)


def _keep_short_nodes(page: str) -> str:
    """The page with a mark after each text node resiliparse would drop as an icon glyph (module docstring)."""
    return _SHORT_NODE.sub(_mark_short_node, page)


# Resiliparse's main-content rules read the text under many elements, so their time grows with the
# square of the nesting depth: 2,000 nested elements take 0.1 s, 8,000 3 s, 50,000 three minutes
# (unclosed <div>s nest too: an 83 KB page took 15 s). Pages nested deeper than MAX_DEPTH (normal
# pages: tens) are extracted whole (main_content off, linear time), deterministically, and counted.
MAX_DEPTH = 1000
_DEEPER_THAN = {depth: " > ".join(["*"] * depth) for depth in (64, MAX_DEPTH)}  # an element with that many ancestors


def too_deep(tree: HTMLTree) -> bool:
    """Whether the tree nests elements more than MAX_DEPTH deep. The short selector first (0.1 ms a
    page): the long one costs 0.5 ms to parse, paid only by the rare page deeper than 64."""
    document = tree.document
    return document.query_selector(_DEEPER_THAN[64]) is not None and document.query_selector(_DEEPER_THAN[MAX_DEPTH]) is not None


class HtmlExtractor:
    """Main text of a decoded HTML page with the configured extractor."""

    def __init__(self, name: str = "resiliparse") -> None:
        if name not in EXTRACTORS:
            raise ValueError(f"unknown extractor {name!r}; choose one of {', '.join(EXTRACTORS)}")
        self.name = name
        self.whole_pages = 0  # pages extracted whole for their nesting depth (MAX_DEPTH)
        self._trafilatura = None
        if name == "trafilatura":
            from datatrove.pipeline.extractors import Trafilatura

            self._trafilatura = Trafilatura(favour_precision=True)

    def extract(self, page: str) -> str:
        if self._trafilatura is not None:
            return normalize_text(self._trafilatura.extract(page) or "")
        tree = HTMLTree.parse(_keep_short_nodes(page))
        deep = too_deep(tree)
        self.whole_pages += deep
        text = extract_plain_text(
            tree,
            main_content=not deep,
            preserve_formatting=True,
            list_bullets=True,
            alt_texts=False,
            links=False,
            form_fields=False,
            noscript=False,
        )
        return normalize_text(text)
