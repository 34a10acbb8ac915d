"""Training and evaluation text for the semantic quality classifier (DCLM's recipe: reference text as
positives against web text as negatives, English and Chinese), built from the real text of
../shared/data/text and checked out of sample on the real Common Crawl pages of ../shared/data/cc.

    python -m crawlmill.corpora.quality_corpus --output /tmp/quality-corpus          # defaults: ../shared/data
    python -m crawlmill.corpora.quality_corpus --text-dir DIR --cc-dir DIR --output DIR --seed 0

Writes, one JSON object a line, byte-identical for the same arguments:

- `positive-{en,zh}.jsonl`: `text`, `lang`, `kind` ("clean"), `source` (the file), `paragraphs`;
- `negative-{en,zh}.jsonl`: `text`, `lang`, `kind` (a web_junk kind), `source` ("web_junk"), `paragraphs`;
- `heldout-real.jsonl`: `text`, `lang`, `label` (good/junk), `reason`, `url`, `file`, `source_format`;
- `_stats.json`: the counts and the arguments (also returned by `build`).

`paragraphs` are the indices of the real paragraphs a document was made from, in the language's
paragraph list (file order, exact duplicates removed): positives and negatives share none.

Choices:

- **Paragraphs.** English: WikiText-2 validation as prose (en/wikitext-2-valid.articles.jsonl, 60
  articles), each article's lines of 200+ characters (headings and short lines are out). Chinese:
  CMRC 2018 contexts (Chinese Wikipedia, each line a paragraph of its own article) then People's
  Daily, January 1998, lines of 200+ characters; People's Daily articles are told apart by their
  headline, caption and byline lines (under 60 characters, not ending in 。！？” or …): an
  approximation, good enough to keep a document inside one article. Tiny Shakespeare is left out:
  verse is neither reference prose nor web text. Exact duplicate paragraphs are dropped (People's
  Daily repeats a few), so "disjoint" holds for text, not just for positions.
- **Positives** are whole paragraphs as an article has them: `web_junk.clean_documents` cuts each
  language's paragraphs into windows of 1-5 consecutive paragraphs inside one article.
- **The split.** Each window goes to the positives or to the negatives' pool with probability 1/2
  (seeded), so both sides cover the same articles and topics: a classifier cannot separate them by
  subject (the lobster article's words are on both sides) and has to learn what a page looks like.
  Positives and negatives never share a paragraph.
- **Negatives** are `web_junk.junk_documents` pages drawn from the pool's paragraphs, as many as
  there are positives in that language (balanced classes), the eleven kinds in turn, so each kind is an
  eleventh. A pool paragraph may feed several junk pages: junk reuses text, and the pool is half the
  real text.
- **Held-out real pages.** Every HTML page of the Common Crawl files in ../shared/data/cc, through the
  pipeline's own ingest (`IngestStage` via `run_part`: WARC response records, HTTP and charset
  handling, resiliparse main-text extraction), labelled by hand in `HELDOUT` below, one reason each.
  Where a page is there as WARC and WET, the WARC extraction is used (the same text the pipeline
  makes). warcio's example.warc.gz is left out (a format fixture, not crawled by Common Crawl).
  Pages in other languages stay in the file with their `lang`, for a language-agnostic look;
  the English and Chinese ones are what an en/zh classifier is checked on. The labels are one
  reader's judgement (would this page be worth training a language model on?) and most real pages
  here are junk: 3 of 23 are good, 1 of them in English and none in Chinese, so this is a sanity
  check of the ranking, not a benchmark.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

from crawlmill.corpora.shared_text import SHARED_DATA, TEXT_DIR, cmrc_paragraphs, peoples_daily_lines, wikitext_articles
from crawlmill.corpora.web_junk import clean_documents, junk_documents

CC_DIR = SHARED_DATA / "cc"
MIN_CHARS = 200
_PD_HEADLINE_CHARS = 60  # People's Daily: shorter lines that do not end a sentence are headlines, captions, bylines
_SENTENCE_END = ("。", "！", "？", "”", "…", "」")

# file (under cc/) | url | lang | label | reason. One reader's judgement of each page as extracted.
HELDOUT = """
cdx_toolkit/CC-MAIN-20250802220907-20250803010907-00970-06bb8ce9.warc.gz | http://www.example.com/ | en | junk | placeholder page: two sentences saying the domain is reserved for examples, nothing to learn
cdx_toolkit/CC-MAIN-20250804083340-20250804113340-00340-c1c6d636.warc.gz | https://www.commoncrawl.org/ | en | good | short but coherent, factual prose about the organisation; dangling "Featured Papers:" headings
cmoncrawl/mini.warc.gz | http://018hs.com/demo87/alzs.html | zh | junk | company site: breadcrumb, truncated news teasers, copyright, phone numbers and WeChat contact
npm-warc/CC-MAIN-20140820021334-00006-ip-10-180-136-8.ec2.internal.warc | http://0pointer.de/photos/?gallery=Australia&photo=496 | en | junk | photo gallery page: camera EXIF line, view counter and comment-form labels
npm-warc/CC-MAIN-20140820021334-00006-ip-10-180-136-8.ec2.internal.warc | http://0pointer.de/photos/?gallery=Thailand%202011-01&photo=726&show_thumbs=yes&exif_style= | en | junk | photo gallery page: camera EXIF line, view counter and comment-form labels
npm-warc/CC-MAIN-20140820021334-00006-ip-10-180-136-8.ec2.internal.warc | http://0x20.be/Special:WhatLinksHere/Thread:Talk:Gentse_feesten/foo | en | junk | wiki special page "What links here" with filter links and no content
resiliparse/warcfile.warc.gz | http://003338.cn/l41/481397.html | zh | junk | SEO spam: mojibake keyword, scraped news sentences strung together, text bracketed character by character
resiliparse/warcfile.warc.gz | http://01spb.ru/company/ | ru | good | coherent company "about" page in full paragraphs (promotional, but well written)
resiliparse/warcfile.warc.gz | http://035.psb556.com/24/i/u_1090813/article.html | zh | junk | 404 text of a car site followed by a farm of gambling-site names
resiliparse/warcfile.warc.gz | http://037426.cn/ | en | junk | trading-company blurb with broken hyphenation and a list of mirror host names
resiliparse/warcfile.warc.gz | http://041696.com/15477/list_6_4.html | zh | junk | steel price notice, contact numbers, pagination and a lottery link
resiliparse/warcfile.warc.gz | http://044545.com/topic/20200207/015849.html | zh | junk | gambling and lottery-tip spam with QQ numbers and betting tables
resiliparse/warcfile.warc.gz | http://0513mt.com/index.php/art/detail/id/8884.html | zh | junk | pornographic story under a porn-site keyword title and link list (fluent, but not training text)
resiliparse/warcfile.warc.gz | http://05925.net/index.php/vod/type/id/53.html | zh | junk | a breadcrumb of a porn video site and nothing else
resiliparse/warcfile.warc.gz | http://06.live-radsport.ch/fahrerstatistik_801/Anthony_Ravard.html | de | junk | database error message and empty statistics table labels
resiliparse/warcfile.warc.gz | http://06.live-radsport.ch/tippspiel/stats_140_petzi.html | de | junk | menu of archive links and empty statistics labels
resiliparse/warcfile.warc.gz | http://0615235.com/02mjqjo%7Bibotij2.btq?odmbtt=106&tdmbtt=121 | zh | junk | product listing of notebooks with model codes and click counts, company footer
resiliparse/warcfile.warc.gz | http://0755krk.com/76104/list_4_1.html | zh | junk | an empty list page: table headers and pagination only
resiliparse/warcfile.warc.gz | http://0760.jxtdw.com/area/sanxiang/ | zh | junk | job-site table headers followed by gambling keyword spam
resiliparse/warcfile.warc.gz | http://077678u.info/erxiaoshujinguang/list_6_2.html | zh | junk | lottery site list of spun, truncated news headlines with dates
resiliparse/warcfile.warc.gz | http://0900-hovenier.nl/gelderland/oosterbeek/ | nl | junk | doorway page of a gardening service: one templated pitch per town, phone number, empty town list
resiliparse/warcfile.warc.gz | http://096355.com/video/11073.html?11073-0-2 | zh | junk | a breadcrumb and title of a porn video page
whirlwind/whirlwind.warc.gz | https://an.wikipedia.org/wiki/Escopete | an | good | encyclopedia article (Aragonese Wikipedia) with infobox residue and section edit links
"""


def heldout_table() -> list[dict[str, str]]:
    rows = []
    for line in HELDOUT.strip().splitlines():
        file, url, lang, label, reason = (part.strip() for part in line.split(" | "))
        assert label in ("good", "junk"), line
        rows.append({"file": file, "url": url, "lang": lang, "label": label, "reason": reason})
    return rows


def english_articles(text_dir: Path = TEXT_DIR) -> list[tuple[str, list[str]]]:
    """(source, paragraphs of 200+ characters) per WikiText-2 article."""
    return [("wikitext-2-valid", [p.strip() for p in article.split("\n") if len(p.strip()) >= MIN_CHARS]) for article in wikitext_articles(text_dir)]


def chinese_articles(text_dir: Path = TEXT_DIR) -> list[tuple[str, list[str]]]:
    """(source, paragraphs of 200+ characters) per article: each CMRC 2018 context alone, People's
    Daily lines grouped into articles at their headline lines."""
    articles = [("cmrc2018", [p.strip()]) for p in cmrc_paragraphs(text_dir) if len(p.strip()) >= MIN_CHARS]
    current: list[str] = []
    for line in peoples_daily_lines(text_dir) + [""]:
        line = line.strip()
        if len(line) < _PD_HEADLINE_CHARS and not line.endswith(_SENTENCE_END):
            if current:
                articles.append(("peoples_daily_199801", current))
            current = []
        elif len(line) >= MIN_CHARS:
            current.append(line)
    return articles


def _paragraph_list(articles: list[tuple[str, list[str]]]) -> tuple[list[str], list[int], list[str]]:
    """The articles' paragraphs with "" between articles (clean_documents' boundary), the paragraph id
    (index among the real paragraphs, duplicates removed) of each position (-1 at a boundary), and
    each paragraph id's source."""
    seen: set[str] = set()
    marked: list[str] = []
    ids: list[int] = []
    sources: list[str] = []
    for source, paragraphs in articles:
        for p in paragraphs:
            if p in seen:
                continue
            seen.add(p)
            marked.append(p)
            ids.append(len(sources))
            sources.append(source)
        marked.append("")
        ids.append(-1)
    return marked, ids, sources


def split_language(articles: list[tuple[str, list[str]]], lang: str, seed: int, per_language: int | None = None) -> tuple[list[dict], list[dict]]:
    """(positive rows, negative rows) of one language."""
    marked, ids, sources = _paragraph_list(articles)
    windows = clean_documents(marked, lang, len(marked), seed)
    rng = random.Random(f"quality_corpus|{lang}|{seed}")
    positives, pool = [], []
    for window in windows:
        if rng.random() < 0.5:
            positives.append(window)
        else:
            pool.extend(ids[i] for i in window["sources"])
    if per_language is not None:
        positives = positives[:per_language]
    text_of = {ids[i]: marked[i] for i in range(len(marked)) if ids[i] >= 0}
    positive_rows = [
        {"text": w["text"], "lang": lang, "kind": "clean", "source": sources[ids[w["sources"][0]]], "paragraphs": [ids[i] for i in w["sources"]]}
        for w in positives
    ]
    junk = junk_documents([text_of[i] for i in pool], lang, len(positive_rows), seed)
    negative_rows = [
        {"text": d["text"], "lang": lang, "kind": d["kind"], "source": "web_junk", "paragraphs": [pool[i] for i in d["sources"]]}
        for d in junk
    ]
    return positive_rows, negative_rows


def heldout_pages(cc_dir: Path) -> list[dict[str, Any]]:
    """The hand-labelled Common Crawl pages, their text extracted by the pipeline's ingest stage."""
    import pyarrow.parquet as pq

    from crawlmill.pipeline.ingest.config import IngestConfig
    from crawlmill.pipeline.ingest.stage import IngestStage
    from crawlmill.pipeline.stage import run_part

    table = heldout_table()
    texts: dict[tuple[str, str], dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="quality-heldout-") as tmp:
        for n, file in enumerate(dict.fromkeys(row["file"] for row in table)):
            stage = IngestStage(IngestConfig(inputs=[str(Path(cc_dir) / file)]))
            out = Path(tmp) / str(n)
            run_part(stage, stage.tasks()[0], str(out))
            for doc in pq.read_table(out / "part-00000.parquet").to_pylist():
                texts[(file, doc["url"])] = doc
    rows = []
    for row in table:
        doc = texts.get((row["file"], row["url"]))
        if doc is None:
            raise ValueError(f"heldout page {row['url']} not extracted from {row['file']}: the ingest stage or the file changed")
        rows.append({"text": doc["text"], **{k: row[k] for k in ("lang", "label", "reason", "url", "file")}, "source_format": doc["source_format"]})
    return rows


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def build(text_dir: Path = TEXT_DIR, out: Path = Path("quality-corpus"), seed: int = 0, per_language: int | None = None, cc_dir: Path | None = CC_DIR) -> dict[str, Any]:
    """Write the positive, negative and held-out files into out (see the module docstring); their
    counts. per_language caps the positives (and so the negatives) of each language; cc_dir None
    leaves out heldout-real.jsonl."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stats: dict[str, Any] = {"seed": seed, "per_language": per_language, "files": {}, "kinds": {}}
    for lang, articles in (("en", english_articles(text_dir)), ("zh", chinese_articles(text_dir))):
        positives, negatives = split_language(articles, lang, seed, per_language)
        for name, rows in ((f"positive-{lang}.jsonl", positives), (f"negative-{lang}.jsonl", negatives)):
            _write_jsonl(out / name, rows)
            stats["files"][name] = {"documents": len(rows), "chars": sum(len(r["text"]) for r in rows)}
        stats["kinds"][lang] = {k: sum(r["kind"] == k for r in negatives) for k in dict.fromkeys(r["kind"] for r in negatives)}
    if cc_dir is not None:
        held = heldout_pages(Path(cc_dir))
        _write_jsonl(out / "heldout-real.jsonl", held)
        stats["files"]["heldout-real.jsonl"] = {
            "documents": len(held),
            "good": sum(r["label"] == "good" for r in held),
            "junk": sum(r["label"] == "junk" for r in held),
        }
    (out / "_stats.json").write_text(json.dumps(stats, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the quality classifier's training and held-out text (see the module docstring).")
    parser.add_argument("--text-dir", type=Path, default=TEXT_DIR, help="../shared/data/text or a copy (en/, zh/)")
    parser.add_argument("--cc-dir", type=Path, default=CC_DIR, help="../shared/data/cc or a copy, for heldout-real.jsonl")
    parser.add_argument("--no-heldout", action="store_true", help="leave out heldout-real.jsonl")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-language", type=int, default=None, help="at most this many positives (and negatives) a language")
    args = parser.parse_args(argv)
    for path in [args.text_dir] + ([] if args.no_heldout else [args.cc_dir]):
        if not path.is_dir():
            parser.error(f"{path} is not a folder")
    stats = build(args.text_dir, args.output, args.seed, args.per_language, None if args.no_heldout else args.cc_dir)
    sys.stdout.write(json.dumps(stats, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
