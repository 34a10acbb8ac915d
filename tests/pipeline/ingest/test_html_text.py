import gzip

import pytest

from crawlmill.pipeline.ingest.html_text import HtmlExtractor, decode_html, normalize_text

ZH = "北京今天天气晴朗，气温二十度。市民纷纷到公园散步。"


def page(charset_meta: str | None, body: str) -> str:
    meta = f'<meta charset="{charset_meta}">' if charset_meta else ""
    return f"<html><head>{meta}<title>t</title></head><body><article><p>{body}</p></article></body></html>"


def test_gb2312_label_decodes_as_gb18030_superset():
    # 镕 is outside GB2312 but inside GBK/GB18030: pages labelled gb2312 use it all the time.
    text = ZH + "朱镕基"
    decoded = decode_html(page("gb2312", text).encode("gb18030"), None)
    assert (decoded.charset, decoded.how) == ("gb18030", "meta")
    assert text in decoded.text


def test_http_charset_wins_over_meta_when_valid():
    decoded = decode_html(page("utf-8", ZH).encode("gbk"), "GBK")
    assert decoded.how == "http" and ZH in decoded.text


def test_wrong_declaration_falls_back_to_detection():
    body = page("utf-8", ZH * 20).encode("gbk")  # declared utf-8, really GBK
    decoded = decode_html(body, "utf-8")
    assert decoded.how == "detected" and ZH in decoded.text


def test_undeclared_legacy_encoding_is_detected():
    decoded = decode_html(page(None, "Привет, мир! Это страница на русском языке. " * 10).encode("cp1251"), None)
    assert decoded.how == "detected" and "Привет" in decoded.text


def test_bom_wins():
    decoded = decode_html(b"\xef\xbb\xbf" + page("gbk", ZH).encode("utf-8"), "gbk")
    assert decoded.how == "bom" and ZH in decoded.text


def test_normalize_text():
    assert normalize_text("a\xa0b \r\n\r\n\r\n\r\nc\x00\t\n") == "a b\n\nc"


@pytest.mark.parametrize("name", ["resiliparse", "trafilatura"])
def test_extractors_keep_main_text_and_drop_boilerplate(name):
    article = " ".join(["The community garden opened its gates on Saturday with forty new raised beds."] * 6)
    html = (
        "<html><head><script>var tracking = 1;</script><style>p{}</style></head><body>"
        "<nav><a href='/'>Home</a> <a href='/about'>About us</a> <a href='/shop'>Shop</a></nav>"
        f"<main><article><h1>Garden opens</h1><p>{article}</p><p>{article}</p></article></main>"
        "<footer>Copyright 2024 Example Garden Club. All rights reserved.</footer></body></html>"
    )
    text = HtmlExtractor(name).extract(html)
    assert "forty new raised beds" in text
    assert "tracking" not in text and "p{}" not in text
    assert "About us" not in text and "All rights reserved" not in text


def test_unknown_extractor_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown extractor"):
        HtmlExtractor("lynx")


def test_one_character_between_tags_is_kept_though_resiliparse_takes_it_for_an_icon():
    """Resiliparse's main-content mode dropped every three-byte text node (、 – 和 m²): it reads the
    bytes as a little-endian integer against the private-use range (html_text module docstring)."""
    extract = HtmlExtractor("resiliparse").extract
    cities = "<html><body><article><p>中国的主要城市有<a href=/bj>北京</a>、<a href=/sh>上海</a>、<a href=/gz>广州</a>和<a href=/sz>深圳</a>。</p></article></body></html>"
    assert extract(cities) == "中国的主要城市有北京、上海、广州和深圳。"
    hours = "<html><body><article><p>Open <b>9</b>–<b>17</b> h, <a href=/w>Monday</a>&ndash;<a href=/f>Friday</a>; a room of 40 <span>m²</span> at 21<span>&deg;</span>, <b> 和 </b>end</p></article></body></html>"
    assert extract(hours) == "Open 9–17 h, Monday–Friday; a room of 40 m² at 21°, 和 end"
    icons = "<html><body><article><p>Share this page<i>\ue001</i><i>&#xe002;</i> and its anchor <a href=#a>¶</a></p></article></body></html>"
    assert extract(icons) == "Share this page and its anchor"  # icon glyphs and a pilcrow anchor still go, as resiliparse means
    assert "\ufdd0" not in extract(cities + hours)


def test_the_real_page_keeps_its_dashes(shared_data):
    """an.wikipedia's Escopete (CC-MAIN-2024-22, whirlwind's WARC): its mayors' terms came out 19791983."""
    record = gzip.open(shared_data / "cc/whirlwind/whirlwind.warc.gz").read()
    body = record[record.index(b"HTTP/1.1 200") :].split(b"\r\n\r\n", 1)[1]  # stored decoded (X-Crawler-content-encoding)
    text = HtmlExtractor("resiliparse").extract(decode_html(body, "utf-8").text)
    assert "1979–1983" in text and "19791983" not in text


def test_a_page_nested_deeper_than_the_limit_is_extracted_whole():
    """50,000 nested <div>s took resiliparse's main-content rules three minutes (quadratic in the
    depth; unclosed <div>s nest too): such a page is extracted whole, in linear time, and counted."""
    from crawlmill.pipeline.ingest.html_text import MAX_DEPTH

    extractor = HtmlExtractor("resiliparse")
    article = "<p>The main text of the page is here, with enough words to be its content.</p>"
    shallow = f"<html><body><nav><a href=/>Home</a> <a href=/shop>Shop</a></nav><main>{article}</main></body></html>"
    assert "Home" not in extractor.extract(shallow) and extractor.whole_pages == 0
    for closed in (True, False):
        deep = "<html><body><nav><a href=/>Home</a> <a href=/shop>Shop</a></nav>" + "<div>" * (3 * MAX_DEPTH) + article + ("</div>" * (3 * MAX_DEPTH) if closed else "") + "</body></html>"
        text = extractor.extract(deep)
        assert "Home" in text and "The main text of the page is here" in text
    assert extractor.whole_pages == 2
