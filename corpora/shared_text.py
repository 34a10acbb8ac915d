"""The real English and Chinese text in ../shared/data/text, read once for every corpus built from it.

Four files: WikiText-2 validation (as lines, en/wikitext-2-valid.txt, and as articles,
en/wikitext-2-valid.articles.jsonl), Tiny Shakespeare (en/tinyshakespeare.txt, speeches separated by
blank lines), CMRC 2018 contexts (zh/cmrc2018_contexts.txt, Chinese Wikipedia paragraphs, one a
line) and People's Daily, January 1998 (zh/peoples_daily_199801_raw.txt, which holds a few invalid
UTF-8 bytes: replaced). The readers return the raw pieces; `paragraphs` is the stripped,
length-filtered selection the pack and tokenizer benchmark corpora resample. A library module, no
command line::

    from crawlmill.corpora.shared_text import paragraphs
    pools = paragraphs(wikitext="lines", min_chars={"en": 80, "zh": 40})  # {"en": [...], "zh": [...]}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"  # third-party data beside the checkout (CI has it)
TEXT_DIR = SHARED_DATA / "text"


def wikitext_lines(text_dir: Path = TEXT_DIR) -> list[str]:
    """WikiText-2 validation, line by line (headings `= Title =` included)."""
    return (Path(text_dir) / "en/wikitext-2-valid.txt").read_text(encoding="utf-8").splitlines()


def wikitext_articles(text_dir: Path = TEXT_DIR) -> list[str]:
    """WikiText-2 validation, one string per article (its paragraphs joined by newlines)."""
    lines = (Path(text_dir) / "en/wikitext-2-valid.articles.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines]


def shakespeare_speeches(text_dir: Path = TEXT_DIR) -> list[str]:
    """Tiny Shakespeare cut at blank lines: one speech (speaker line included) per piece."""
    return (Path(text_dir) / "en/tinyshakespeare.txt").read_text(encoding="utf-8").split("\n\n")


def cmrc_paragraphs(text_dir: Path = TEXT_DIR) -> list[str]:
    """CMRC 2018 contexts: Chinese Wikipedia paragraphs, one a line."""
    return (Path(text_dir) / "zh/cmrc2018_contexts.txt").read_text(encoding="utf-8").splitlines()


def peoples_daily_lines(text_dir: Path = TEXT_DIR) -> list[str]:
    """People's Daily, January 1998, line by line; invalid UTF-8 bytes become U+FFFD."""
    return (Path(text_dir) / "zh/peoples_daily_199801_raw.txt").read_bytes().decode("utf-8", errors="replace").splitlines()


def paragraphs(
    text_dir: Path = TEXT_DIR,
    *,
    wikitext: Literal["lines", "articles"] = "lines",
    min_chars: dict[str, int] | None = None,
) -> dict[str, list[str]]:
    """Stripped paragraphs per language, in file order, those shorter than min_chars[lang] (default 1:
    blank ones) left out. English: WikiText-2 lines without headings, or whole articles
    (`wikitext="articles"`), then Tiny Shakespeare speeches; Chinese: CMRC 2018, then People's Daily."""
    least = {"en": 1, "zh": 1, **(min_chars or {})}
    if wikitext == "lines":
        wiki = [line for line in wikitext_lines(text_dir) if not line.strip().startswith("=")]
    elif wikitext == "articles":
        wiki = wikitext_articles(text_dir)
    else:
        raise ValueError(f"wikitext must be 'lines' or 'articles', not {wikitext!r}")
    pieces = {"en": wiki + shakespeare_speeches(text_dir), "zh": cmrc_paragraphs(text_dir) + peoples_daily_lines(text_dir)}
    return {lang: [p.strip() for p in ps if len(p.strip()) >= least[lang]] for lang, ps in pieces.items()}
