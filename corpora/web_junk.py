"""Low-quality web documents in English and Chinese, generated from real text: the negatives of the
semantic quality classifier; and "clean" documents, whole real paragraphs as an article has them.

`junk_documents(paragraphs, lang, n, seed)` writes `n` pages, the kinds (`KINDS`) taken in turn, so
every kind is there once `n >= len(KINDS)`:

| kind | the page |
|---|---|
| `boilerplate` | menu, breadcrumb, byline and share buttons around one or two real sentences; related posts, categories, archives, tags, footer |
| `cookie_wall` | cookie-consent text and buttons, a teaser of a real sentence, paywall and newsletter prompts |
| `keyword_stuffing` | SEO templates repeating keywords taken from the real text, a real sentence with a keyword pushed in, tag lists |
| `product_listing` | a shop page: filters, products named from the text's words with prices, ratings and badges |
| `comment_spam` | a short post (a real sentence or two) under many spam comments with links, QQ and WeChat numbers |
| `link_farm` | link lists and "friendly links" (友情链接) of keyword anchors and made-up hosts, domain mirror lists |
| `sentence_salad` | an auto-generated "article": real sentences from unrelated paragraphs strung together with connectives (Chinese: some sentences bracketed character by character, 【字】, a real spam pattern) |
| `teaser_list` | a list page of truncated teasers ("Read more »", [详细]) with dates and pagination |
| `listicle` | clickbait headlines numbered, made from the text's keywords and truncated sentences; sponsored blocks |
| `word_salad` | real sentences through an article spinner / poor machine translation: wrong-sense synonyms, dropped articles, swapped words |
| `notice` | an error or notice page (404, removed, maintenance, login or region wall, domain for sale): a line or two of notice, sometimes repeated, under a heading (as a main-text extractor leaves it) or in the site's menu, related posts and footer |

Real vocabulary: keywords are the most frequent content words and adjacent content-word pairs of
the paragraphs a page draws (English: regex words, stop words out; Chinese: jieba words of 2+ Han
characters), and the real sentences come from those paragraphs. Everything else comes from the
phrase banks of corpora/web_junk_phrases.py (written for crawlmill). Pages are text as a WET
record or an HTML extractor gives it: lines, blank lines between blocks. The share of real text
differs by kind on purpose: a salad or spun page is mostly real words, a shop or link page hardly
any; how separable that makes them is for the classifier to show, not tuned here.

`clean_documents(paragraphs, lang, n, seed)` cuts the paragraphs, in order, into windows of 1-5
consecutive paragraphs that never cross an empty string (a document boundary marker, so a caller can
pass several articles at once) and returns `n` of the windows (all of them when there are fewer),
joined by newlines, in corpus order.

Each document carries `sources`: the indices of the paragraphs it used. Deterministic: a page's
random generator is seeded by (seed, lang, its index), so the same inputs give the same documents,
and the first k of n documents are the k documents. Library use, or a command::

    python -m crawlmill.corpora.web_junk samples/quality/reference_en.txt --lang en -n 10 --seed 0  # JSONL to stdout
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from typing import Any, Callable, Sequence

from crawlmill.corpora.web_junk_page import EN_TOKENS, HAN_WORD, Page, jieba_segmenter, sentences, title_case

__all__ = ["KINDS", "LANGS", "clean_documents", "junk_documents", "sentences"]

KINDS: tuple[str, ...] = (
    "boilerplate", "cookie_wall", "keyword_stuffing", "product_listing", "comment_spam",
    "link_farm", "sentence_salad", "teaser_list", "listicle", "word_salad", "notice",
)  # fmt: skip
LANGS = ("en", "zh")
MAX_CLEAN_WINDOW = 5

# -- the kinds ------------------------------------------------------------------------------------


def _boilerplate(p: Page) -> list[str]:
    s = p.sentences(p.rng.randint(1, 2), per_paragraph=2)
    p.title = p.headline(s[0])
    lines = p.header((6, 14)) + ["", p.fill(p.pick("breadcrumb")), p.title, p.fill(p.pick("bylines")), ""]
    lines.append(("" if p.lang == "zh" else " ").join(s) if p.rng.random() < 0.5 else p.fragment(" ".join(s), 60, 200) + "…")
    lines += ["", p.fill(p.pick("share"))] + p.related(p.rng.randint(3, 6))
    counts = [f"{c} ({p.rng.randint(1, 240)})" for c in p.picks("categories", p.rng.randint(5, 9))]
    lines += ["", "Categories" if p.lang == "en" else "文章分类"] + counts
    if p.lang == "en":
        months = p.bank["archives_months"]
        lines += ["", "Archives"] + [f"{p.rng.choice(months)} {p.rng.randint(2016, 2024)}" for _ in range(p.rng.randint(4, 9))]
    else:
        lines += ["", "文章归档"] + [f"{p.rng.randint(2016, 2024)}年{p.rng.randint(1, 12)}月" for _ in range(p.rng.randint(4, 9))]
    lines += ["", ("Tags: " if p.lang == "en" else "标签：") + p.fill("{tags}")]
    return lines + p.footer()


def _cookie_wall(p: Page) -> list[str]:
    lines = p.fills("cookie", p.rng.randint(1, 3)) + [" ".join(p.picks("cookie_buttons", p.rng.randint(2, 4))), ""]
    lines += p.header((3, 7))
    s = p.sentences(1)[0]
    p.title = p.headline(s)
    lines += ["", p.title, p.fill(p.pick("bylines")), "", p.fragment(s, 40, 160) + ("……" if p.lang == "zh" else "...")]
    lines += [""] + p.fills("paywall", p.rng.randint(2, 4)) + [""] + p.fills("newsletter", p.rng.randint(2, 5))
    if p.rng.random() < 0.5:
        lines += [""] + p.fills("cookie", 1) + [" ".join(p.picks("cookie_buttons", 3))]
    return lines + p.footer()


def _keyword_stuffing(p: Page) -> list[str]:
    p.title = p.fill(p.pick("seo_titles"))
    lines = [p.title] + p.header((4, 9)) + ["", p.fill(p.pick("tag_variants"))]
    glue = "" if p.lang == "zh" else " "
    for _ in range(p.rng.randint(3, 6)):
        lines += ["", glue.join(p.fills("seo", p.rng.randint(2, 5)))]
    # one real sentence with the keyword pushed in, as keyword-density "optimised" copy does
    s = p.sentences(1)[0]
    lines += ["", p.fill(p.pick("salad_inserts")) + (s if p.lang == "zh" else _lower_first(s))]
    variants = [p.fill(t, kw=p.rng.choice(p.kws[:4])) for t in p.rng.choices(p.bank["tag_variants"], k=p.rng.randint(10, 25))]
    lines += ["", ("Related searches: " if p.lang == "en" else "相关搜索：") + ("、" if p.lang == "zh" else ", ").join(variants)]
    return lines + p.footer((2, 4))


def _product_listing(p: Page) -> list[str]:
    lines = p.header((5, 10)) + ["", p.fill(p.pick("breadcrumb"), title=p.kw)]
    lines += p.fills("shop_chrome", p.rng.randint(3, 7)) + [""]
    for _ in range(p.rng.randint(8, 16)):
        word = p.rng.choice(p.kws)
        if p.lang == "zh":
            name = f"{p.pick('product_adjectives')}{word}{p.pick('product_types')} {p.pick('product_suffixes')}".strip()
            was = p.rng.randint(30, 600)
            now = round(was * p.rng.uniform(0.3, 0.9), 1)
            lines += [name, f"￥{now}  ￥{was}", p.fill(p.pick("shop_labels")) + "  " + p.fill(p.pick("shop_labels")), p.fill(p.pick("shops"))]
        else:
            name = f"{p.pick('product_adjectives')} {title_case(word)} {p.pick('product_types')} {p.pick('product_suffixes')}".strip()
            was = p.rng.randint(15, 150) + 0.99
            now = round(was * p.rng.uniform(0.3, 0.9), 0) - 0.01
            stars = p.rng.randint(3, 5)
            lines += [name, "★" * stars + "☆" * (5 - stars) + f" ({p.rng.randint(2, 2400)})", f"${now:.2f}  ${was:.2f}  -{round(100 * (1 - now / was))}%", p.fill(p.pick("shop_labels"))]
        lines.append("")
    if p.rng.random() < 0.6:
        lines += [("About " + title_case(p.kw) + ": " if p.lang == "en" else "商品详情：") + p.sentences(1)[0]]
    lines += [p.fill(p.pick("pagination"))]
    return lines + p.footer()


def _comment_spam(p: Page) -> list[str]:
    s = p.sentences(p.rng.randint(1, 2), per_paragraph=2)
    p.title = p.headline(s[0])
    lines = p.header((4, 8)) + ["", p.title, p.fill(p.pick("bylines")), ("" if p.lang == "zh" else " ").join(s), ""]
    count = p.rng.randint(8, 18)
    lines.append(p.fill("{n} Comments" if p.lang == "en" else "共有{n}条评论", n=str(count + p.rng.randint(0, 40))))
    for _ in range(count):
        name = p.pick("comment_names")
        if p.lang == "zh":
            name = name if p.rng.random() < 0.6 else f"{p.fill('{city}')}网友{p.rng.randint(100, 9999)}"
            lines += [f"{name}  发表于 {p.date()} {p.fill('{time}')}", p.fill(p.pick("comments"), kw=p.rng.choice(p.kws))]
        else:
            lines += [f"{name} says:", f"{p.date()} at {p.fill('{time}')}", p.fill(p.pick("comments"), kw=p.rng.choice(p.kws))]
        lines.append(p.fill(p.pick("comment_actions")))
        lines.append("")
    lines += p.fills("comment_chrome", p.rng.randint(3, 6))
    return lines + p.footer((2, 4))


def _link_farm(p: Page) -> list[str]:
    lines = p.header((3, 7))
    if p.rng.random() < 0.5:
        lines += ["", p.sentences(1)[0]]
    for _ in range(p.rng.randint(2, 5)):
        lines += ["", p.fill(p.pick("link_headers"))]
        k = p.rng.randint(8, 20)
        if p.lang == "zh":
            names = [p.fill(p.pick("link_variants"), kw=p.rng.choice(p.kws)) for _ in range(k)]
            lines.append("    ".join(names) if p.rng.random() < 0.5 else "\n".join(f"{n} {p.url()}" for n in names))
        else:
            for _ in range(k):
                anchor = p.fill(p.pick("tag_variants"), kw=p.rng.choice(p.kws))
                lines.append(f"{title_case(anchor)} - {p.url()}" if p.rng.random() < 0.6 else title_case(anchor))
    # the same site under many host names, as doorway networks list themselves
    base = p.host.removeprefix("www.")
    prefixes = p.rng.sample(["www", "m", "wap", "web", "ios", "app", "news", "bbs", "book", "vip"], p.rng.randint(5, 9))
    lines += ["", " | ".join(f"http://{x}.{base}" for x in prefixes)]
    return lines + p.footer((2, 5))


def _lower_first(sentence: str) -> str:
    first = sentence.split(" ", 1)[0]
    return sentence if first.isupper() or first == "I" else sentence[0].lower() + sentence[1:]


def _obfuscate(sentence: str) -> str:
    return "".join(f"【{c}】" for c in sentence)


def _sentence_salad(p: Page) -> list[str]:
    p.title = p.fill(p.pick("salad_titles"))
    lines = [p.title, p.fill(p.pick("bylines")), ""]
    for _ in range(p.rng.randint(3, 6)):
        parts = []
        for s in p.sentences(p.rng.randint(2, 5)):
            joint = p.pick("connectors")
            if p.rng.random() < 0.15:
                joint = p.fill(p.pick("salad_inserts"))
            piece = joint + (_lower_first(s) if joint and p.lang == "en" else s)
            if p.lang == "zh" and p.rng.random() < 0.08:
                piece = _obfuscate(piece)
            parts.append(piece)
        lines += [("" if p.lang == "zh" else " ").join(parts), ""]
    heads = p.sentences(2)  # one when the pool has a single paragraph
    before, after = heads[0], heads[-1]
    lines += [p.fill(p.bank["prev_next"][0], title=p.headline(before)), p.fill(p.bank["prev_next"][1], title=p.headline(after))]
    lines += p.fills("prev_next", 1, title=p.headline(after))[:1]
    return lines + p.footer((1, 4))


def _teaser_list(p: Page) -> list[str]:
    lines = p.header((5, 10)) + ["", p.pick("headings"), ""]
    for paragraph in p.paragraphs(p.rng.randint(6, 11)):
        found = sentences(paragraph, p.lang)
        teaser = p.fragment(paragraph, 60, 180 if p.lang == "en" else 90)
        more = p.pick("read_more")
        lines += [p.headline(found[0]), p.date(), teaser + ("… " if p.rng.random() < 0.7 else " ") + more, ""]
    lines += [p.fill(p.pick("pagination"))] + p.related(p.rng.randint(3, 5))
    return lines + p.footer()


def _listicle(p: Page) -> list[str]:
    p.title = p.fill(p.pick("listicles"))
    lines = p.header((4, 8)) + ["", p.title, p.fill(p.pick("bylines")), p.fill(p.pick("listicle_chrome")), ""]
    items = p.rng.randint(7, 14)
    heads = p.sentences(items)
    for i in range(items):
        if p.rng.random() < 0.45 and i < len(heads):
            head = p.headline(heads[i]) + p.fill(p.pick("clickbait_tails"))
        else:
            word = p.rng.choice(p.kws)
            head = p.fill(p.pick("listicles"), kw=word, Kw=title_case(word) if p.lang == "en" else word)
        lines.append(f"{i + 1}. {head}")
    lines += ["", p.fill(p.pick("listicle_chrome")), p.fill(p.pick("listicle_chrome"))]
    for _ in range(p.rng.randint(3, 6)):
        word = p.rng.choice(p.kws)
        lines.append(p.fill(p.pick("listicles"), kw=word, Kw=title_case(word) if p.lang == "en" else word) + " · " + p.pick("sponsors"))
    return lines + p.footer((2, 4))


def _spin_en(p: Page, sentence: str) -> str:
    spin, drop = p.bank["spin"], set(p.bank["drop"])
    out: list[str] = []
    for token in EN_TOKENS.findall(sentence):
        low = token.lower()
        if low in drop and p.rng.random() < 0.35:
            continue
        if low in spin and p.rng.random() < 0.7:
            token = spin[low] if token.islower() else spin[low].capitalize()
        out.append(token)
    for i in range(len(out) - 1):  # local word-order slips
        if out[i].isalpha() and out[i + 1].isalpha() and p.rng.random() < 0.07:
            out[i], out[i + 1] = out[i + 1], out[i]
    text = " ".join(out)
    return re.sub(r" ([,.;:!?)\]'\"])", r"\1", re.sub(r"([(\[]) ", r"\1", text))


def _spin_zh(p: Page, sentence: str) -> str:
    spin, particles = p.bank["spin"], p.bank["particles"]
    out: list[str] = []
    for word in jieba_segmenter().lcut(sentence):
        if word in spin and p.rng.random() < 0.7:
            word = spin[word]
        out.append(word)
        if HAN_WORD.match(word) and p.rng.random() < 0.05:
            out.append(p.rng.choice(particles))
    for i in range(len(out) - 1):
        if HAN_WORD.match(out[i]) and HAN_WORD.match(out[i + 1]) and p.rng.random() < 0.06:
            out[i], out[i + 1] = out[i + 1], out[i]
    return "".join(out)


def _notice(p: Page) -> list[str]:
    notices = p.fills("notices", p.rng.randint(1, 2))
    if p.rng.random() < 0.3:  # the notice a template prints once per widget
        notices = notices * p.rng.randint(2, 4)
    p.title = notices[0]
    if p.rng.random() < 0.5:  # as a main-text extractor leaves it: a heading and the notice
        return [p.pick("notice_titles"), ""] + notices
    lines = p.header((3, 9)) + [""] + notices + [""] + [" | ".join(p.picks("notice_links", p.rng.randint(1, 3)))]
    return lines + p.related(p.rng.randint(2, 5)) + p.footer()


def _word_salad(p: Page) -> list[str]:
    p.title = p.fill(p.pick("salad_titles"))
    lines = p.header((3, 7)) + ["", p.title, p.fill(p.pick("bylines")), ""]
    spin = _spin_zh if p.lang == "zh" else _spin_en
    for paragraph in p.paragraphs(p.rng.randint(2, 4)):
        found = sentences(paragraph, p.lang)
        start = p.rng.randrange(max(1, len(found) - 2))
        lines += [("" if p.lang == "zh" else " ").join(spin(p, s) for s in found[start : start + p.rng.randint(2, 5)]), ""]
    return lines + p.footer((2, 4))


_GENERATORS: dict[str, Callable[[Page], list[str]]] = {
    "boilerplate": _boilerplate, "cookie_wall": _cookie_wall, "keyword_stuffing": _keyword_stuffing,
    "product_listing": _product_listing, "comment_spam": _comment_spam, "link_farm": _link_farm,
    "sentence_salad": _sentence_salad, "teaser_list": _teaser_list, "listicle": _listicle, "word_salad": _word_salad,
    "notice": _notice,
}  # fmt: skip


def _tidy(lines: list[str]) -> str:
    text = "\n".join(line.rstrip() for line in "\n".join(lines).split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _check(paragraphs: Sequence[str], lang: str) -> list[str]:
    if lang not in LANGS:
        raise ValueError(f"lang {lang!r}: web_junk writes {', '.join(LANGS)}")
    pool = [p for p in paragraphs if p.strip()]
    if not pool:
        raise ValueError("web_junk needs real paragraphs to draw words and sentences from")
    return pool


def junk_documents(paragraphs: Sequence[str], lang: str, n: int, seed: int, kinds: Sequence[str] = KINDS) -> list[dict[str, Any]]:
    """n low-quality pages ({text, kind, sources}), kinds in turn, drawing real words and sentences
    from paragraphs (empty strings ignored; `sources` index the non-empty paragraphs in order)."""
    pool = _check(paragraphs, lang)
    unknown = [k for k in kinds if k not in _GENERATORS]
    if unknown or not kinds:
        raise ValueError(f"unknown junk kinds {unknown}: choose from {', '.join(KINDS)}")
    docs = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        page = Page(random.Random(f"web_junk|{lang}|{seed}|{i}"), lang, pool)
        docs.append({"text": _tidy(_GENERATORS[kind](page)), "kind": kind, "sources": sorted(page.used)})
    return docs


def clean_documents(paragraphs: Sequence[str], lang: str, n: int, seed: int) -> list[dict[str, Any]]:
    """Up to n documents ({text, sources}) of 1-5 consecutive paragraphs each, windows not overlapping
    and not crossing an empty string; `sources` index paragraphs (boundary markers included)."""
    if lang not in LANGS:
        raise ValueError(f"lang {lang!r}: web_junk writes {', '.join(LANGS)}")
    rng = random.Random(f"clean|{lang}|{seed}")
    windows: list[list[int]] = []
    run: list[int] = []
    for i, paragraph in enumerate(list(paragraphs) + [""]):
        if paragraph.strip():
            run.append(i)
            continue
        while run:
            size = rng.randint(1, MAX_CLEAN_WINDOW)
            windows.append(run[:size])
            run = run[size:]
    chosen = sorted(rng.sample(range(len(windows)), min(n, len(windows))))
    return [{"text": "\n".join(paragraphs[i].strip() for i in windows[w]), "sources": windows[w]} for w in chosen]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print generated low-quality (or clean) web documents as JSONL.")
    parser.add_argument("paragraphs", help="text file: one real paragraph a line")
    parser.add_argument("--lang", choices=LANGS, required=True)
    parser.add_argument("-n", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clean", action="store_true", help="clean documents instead of junk")
    args = parser.parse_args(argv)
    with open(args.paragraphs, encoding="utf-8") as f:
        paragraphs = f.read().splitlines()
    make = clean_documents if args.clean else junk_documents
    for doc in make(paragraphs, args.lang, args.n, args.seed):
        sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
