#!/usr/bin/env python3
"""Regenerate samples/quality/web_en.txt and web_zh.txt, the low-quality web documents of the demo's
quality classifier, from the reference paragraphs beside them.

samples/quality/reference_{en,zh}.txt (one paragraph a line, written for crawlmill) are the
positives; this script writes `WEB_DOCUMENTS` pages per language with crawlmill.corpora.web_junk
(seed `SEED`, every junk kind in turn) drawing their real words and sentences from those paragraphs,
one page a line: a page's line breaks become single spaces, which is how fastText sees a document
anyway (one example a line). Same inputs, same bytes.

Usage (from the repository root, project venv active)::

    python samples/make_quality_samples.py            # rewrite the two web files
    python samples/make_quality_samples.py --check    # exit 1 if they differ from what would be written
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from crawlmill.corpora.web_junk import junk_documents

HERE = Path(__file__).resolve().parent / "quality"
LANGS = ("en", "zh")
WEB_DOCUMENTS = 132  # twelve of every junk kind
SEED = 13  # the issue that asked for this corpus


def web_text(lang: str, folder: Path = HERE) -> str:
    """The content of web_{lang}.txt, generated from reference_{lang}.txt."""
    paragraphs = (folder / f"reference_{lang}.txt").read_text(encoding="utf-8").splitlines()
    docs = junk_documents(paragraphs, lang, WEB_DOCUMENTS, SEED)
    return "".join(re.sub(r"\s*\n\s*", " ", d["text"]) + "\n" for d in docs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for lang in LANGS:
        path = HERE / f"web_{lang}.txt"
        text = web_text(lang)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(path)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path} ({len(text.splitlines())} documents)")
    for path in stale:
        print(f"{path} differs from what samples/make_quality_samples.py writes", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
