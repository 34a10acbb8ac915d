"""Dedup's text normalisation and script classes: combining marks stay with their letters (text
format 2), scripts without spaces between words are shingled as characters, and format 1 (what an
index built before 2026-12 keeps using) is unchanged."""

import pytest

from crawlmill.pipeline.dedup.shingles import TEXT_FORMAT, check_text_format, normalize, script_unit, shingle_hashes

# Real Thai social-media text, segmented into words by people: wisesight-1000 (PyThaiNLP/
# wisesight-sentiment, word-tokenization/wisesight-1000-samples-tokenised.label, CC0-1.0), four
# messages as they are, "|" between words.
THAI_SEGMENTED = [
    "รถไฟ|ฟ้า|สร้าง|พร้อม|กัน|3|-|4|สาย|แบบ|นี้|คือ|วิกฤติ|รถ|ติด|เลย|นะ| |แต่|ข้อ|ดี|ของ|การ|สร้าง|พร้อม|กัน|คือ|เสร็จ|พร้อม|กัน|เหมือน|เสก|ไเ|ลย|ล่ะ| |กทม.|มี|แผนี|ถไฟ|13|สาย| |เปิด|แล้ว|5| |ถ้า|มัว|แต่|ทำ|ที|ละ|สาย| |กว่า|จะ|ครบ|เรา|คง|ตาย|กัน|หมด|แล้ว",
    "เวลา|เห็น|คน|รุ่น|ใหม่|สมัคร|ลง|เลือกตั้ง|เป็น|ตัว|แทน|พรรค|พลังประชารัฐ|แล้ว|รู้สึก|สิ้นหวัง|ยังไง|ก็|ไม่|รู้| |คือ|พวก|คน|แก่|ๆ|ที่|อยู่|ใน|พรรค|ก็|ยัง|พอ|ทำใจ|ว่า|แม่ง|เปลี่ยน|ยาก| |แต่|คน|รุ่น|ใหม่|วัย|30|ที่|เห็น|ดี|เห็น|งาม|กับ|วิธี|การ|ของ|พรรค|นี้|คือ|ยังไง|อ่ะ",
    "ขอ|แชร์|ประสบการณ์|นะ|คะ| |ฝัง|ยาคุม|ที่|โรงพยาบาล|กรุงเทพ|เมื่อ|ห้า|ปี|ก่อน| |ราคา|ประมาณ|แปด|พัน| |(|แพง|มากกกก|)| |ฝัง|ครบ|สาม|ปี| |ตัว|เรา|ไม่|มี|ผล|ข้างเคียง|อะไร|เลย| |ผ่าตัด|เล็ก|เอา|หลอด|ยา|ออก|มี|แผล|นิด|เดียว",
    "มา|ทาน|ที่|สาขา|นี้|ตาม|ภาพ| |สั่ง|ตั้งแต่| |12.10| |น.| |ได้|รับ|ของ|ที่|สั่ง|ทั้ง|หมด| |13.00| |น.| |ใช้|เวลา|นาน|มากกกกก|กว่า|จะ|ได้|ของ| |คือ| |สั่ง|หมี่|หยก|ต้มยำ|ไ่ข่|ยางมะตูม| |5| |ชาม| |เรา|คิด|ว่า|มัน|นาน|ไป|นะ|คะ| |ไม่|น่า|ชื่อ|ชุด| |Happy| |Lunch| |เลย| |เพราะ|เรา|กับ|เพื่อน|ไม่| |Happy| |เลยยยย",
]


def jaccard(a, b) -> float:
    a, b = set(a.tolist()), set(b.tolist())
    return len(a & b) / len(a | b)


@pytest.mark.parametrize(
    "text, expected, legacy",
    [
        ("नमस्ते दुनिया", "नमस्ते दुनिया", "नमस त द न य"),  # Devanagari vowel signs and virama (Mn, Mc)
        ("مُحَمَّد", "مُحَمَّد", "م ح م د"),  # Arabic harakat
        ("กรุงเทพมหานคร เป็นเมืองหลวง", "กรุงเทพมหานคร เป็นเมืองหลวง", "กร งเทพมหานคร เป นเม องหลวง"),  # Thai vowels, tones
        ("𑀅𑀲𑁆𑀢𑀺 Brahmi", "𑀅𑀲𑁆𑀢𑀺 brahmi", "𑀅𑀲 𑀢 brahmi"),  # marks outside the BMP
        ("I ❤️ NY!", "i ny", "i ny"),  # the emoji's variation selector goes with the emoji
        ("1\ufe0f\u20e3 keycap", "1 keycap", "1 keycap"),  # so do a keycap's selector and enclosing mark
        ("\u0301start snake_case", "start snake case", "start snake case"),  # a mark after nothing, after _
        ("emoji😀\U000110b9 end", "emoji end", "emoji end"),  # an astral mark after a symbol
        ("Tiếng Việt, café", "tiếng việt café", "tiếng việt café"),  # NFKC composes what it can
    ],
)
def test_combining_marks_stay_with_their_letters(text, expected, legacy):
    assert normalize(text) == expected
    assert normalize(text, 1) == legacy


def test_words_that_differ_only_in_marks_stay_different():
    """In format 1 the Hindi postpositions का / की / के all became क: sentences that differ only in
    them were exact duplicates."""
    a, b = "राम का घर बड़ा है", "राम की किताब बड़ी है"
    assert normalize(a, 1).split()[:2] == normalize(b, 1).split()[:2]
    assert normalize(a).split()[1] == "का" and normalize(b).split()[1] == "की"


@pytest.mark.parametrize("path", ["text/en/wikitext-2-valid.articles.jsonl", "text/zh/peoples_daily_199801_raw.txt"])
def test_text_without_marks_normalises_as_before(shared_data, path):
    """English and Chinese: both formats give the same text, so their band keys in an index of
    either format match (real text; the People's Daily file has no combining marks)."""
    text = (shared_data / path).read_text(encoding="utf-8")[:400_000]
    for start in range(0, len(text), 4000):
        doc = text[start : start + 4000]
        assert normalize(doc) == normalize(doc, 1)


def test_script_classes():
    assert script_unit("", "zh") == ("chars", 5) and script_unit("", "ja") == ("chars", 5)
    for lang in ("th", "lo", "km", "my"):
        assert script_unit("", lang) == ("chars", 12)
        assert script_unit("", lang, text_format=1) == ("words", 5)
    assert script_unit("", "hi") == ("words", 5)
    thai = normalize("".join(THAI_SEGMENTED).replace("|", ""))
    assert script_unit(thai) == ("chars", 12)  # no language: most letters are Thai
    assert script_unit(thai, text_format=1) == ("words", 5)
    assert script_unit("นมสด fresh milk brand new bottle") == ("words", 5)  # mostly Latin letters


def test_thai_near_copy_is_as_similar_as_an_english_one():
    """Thai writes no spaces between words: what spaces separate are phrases (~4.5 words). With 2%
    of the words replaced, character 12-grams keep the pair above the 0.8 threshold (English word
    5-grams keep 0.76-0.91 for 3%-1%); phrase 5-grams, and format 1's pieces cut at every mark,
    fall below it: a near copy missed."""
    tokens = [t for line in THAI_SEGMENTED for t in (*line.split("|"), " ")]
    thai_words = [i for i, t in enumerate(tokens) if "\u0e00" <= t[0] <= "\u0e7f"]
    edited = list(tokens)
    for k in range(1, 5):  # 4 of 205 words
        edited[thai_words[k * len(thai_words) // 5]] = "ประเทศ"
    base, copy = "".join(tokens), "".join(edited)
    assert jaccard(shingle_hashes(base, "th"), shingle_hashes(copy, "th")) >= 0.8
    assert jaccard(shingle_hashes(base), shingle_hashes(copy)) >= 0.8  # found by script, without a language
    assert jaccard(shingle_hashes(base, "th", text_format=1), shingle_hashes(copy, "th", text_format=1)) < 0.8
    assert jaccard(shingle_hashes(base, "en"), shingle_hashes(copy, "en")) < 0.5  # phrases as words


def test_unknown_text_format():
    assert check_text_format(TEXT_FORMAT) == TEXT_FORMAT
    with pytest.raises(ValueError, match="text format 9: this crawlmill knows 1, 2"):
        check_text_format(9)
