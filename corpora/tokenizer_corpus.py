"""The corpora of the tokenizer benchmark (bench/tokenizer_bench.py), from the real text in
../shared/data/text: WikiText-2 articles and Tiny Shakespeare speeches (English), CMRC 2018 and
People's Daily paragraphs (Chinese), every non-blank piece stripped (`source_paragraphs`).

`split_held_out` keeps every 10th paragraph apart for evaluation; `write_files` writes one text file
per language (`crawlmill tokenizer train` inputs, "lang=path"); `build_scale_corpus` writes en.txt
and zh.txt of size_mb/2 MB each by resampling paragraphs and replacing 3% of the letters /
ideographs, so that the number of distinct words keeps growing with the corpus as on the web
instead of saturating at the ~10 MB of source text. Byte-identical for the same arguments. A
library module, no command line::

    from pathlib import Path
    from crawlmill.corpora.tokenizer_corpus import build_scale_corpus
    inputs = build_scale_corpus(Path("/tmp/tok-corpus"), size_mb=10)  # ["en=/tmp/tok-corpus/en.txt", "zh=..."]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from crawlmill.corpora import shared_text
from crawlmill.corpora.shared_text import TEXT_DIR

MUTATION_RATE = 0.03


def source_paragraphs(text_dir: Path = TEXT_DIR) -> dict[str, list[str]]:
    """Every non-blank paragraph (English: whole WikiText-2 articles), stripped, per language."""
    return shared_text.paragraphs(text_dir, wikitext="articles")


def split_held_out(paragraphs: dict[str, list[str]]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(train, held out): every 10th paragraph of each language is held out."""
    train = {lang: [p for i, p in enumerate(ps) if i % 10] for lang, ps in paragraphs.items()}
    held = {lang: [p for i, p in enumerate(ps) if not i % 10] for lang, ps in paragraphs.items()}
    return train, held


def write_files(folder: Path, paragraphs: dict[str, list[str]]) -> list[str]:
    """folder/<lang>.txt, one paragraph a line; returns the "lang=path" input specs."""
    folder.mkdir(parents=True, exist_ok=True)
    inputs = []
    for lang, ps in paragraphs.items():
        path = folder / f"{lang}.txt"
        path.write_text("\n".join(ps) + "\n", encoding="utf-8")
        inputs.append(f"{lang}={path}")
    return inputs


def _alphabet(paragraphs: list[str], lo: int, hi: int) -> np.ndarray:
    points = np.frombuffer("".join(paragraphs).encode("utf-32-le"), dtype=np.uint32)
    return np.unique(points[(points >= lo) & (points <= hi)])


def build_scale_corpus(folder: Path, size_mb: float, seed: int = 0, paragraphs: dict[str, list[str]] | None = None) -> list[str]:
    """en.txt and zh.txt of size_mb/2 MB each: paragraphs drawn at random, 3% of letters replaced."""
    rng = np.random.default_rng(seed)
    paragraphs = paragraphs or source_paragraphs()
    scripts = {"en": [(ord("a"), ord("z")), (ord("A"), ord("Z"))], "zh": [(0x4E00, 0x9FA5)]}
    folder.mkdir(parents=True, exist_ok=True)
    inputs = []
    for lang, ps in paragraphs.items():
        alphabets = [(lo, hi, _alphabet(ps, lo, hi)) for lo, hi in scripts[lang]]
        target = int(size_mb * 1e6 / 2)
        path = folder / f"{lang}.txt"
        written = 0
        with open(path, "w", encoding="utf-8") as handle:
            while written < target:
                chosen = rng.integers(0, len(ps), 2000)
                block = "\n".join(ps[i] for i in chosen) + "\n"
                points = np.frombuffer(block.encode("utf-32-le"), dtype=np.uint32).copy()
                for lo, hi, alphabet in alphabets:
                    where = np.flatnonzero((points >= lo) & (points <= hi))
                    where = where[rng.random(len(where)) < MUTATION_RATE]
                    points[where] = alphabet[rng.integers(0, len(alphabet), len(where))]
                text = points.tobytes().decode("utf-32-le")
                data = text.encode("utf-8")[: target - written]
                text = data.decode("utf-8", "ignore")  # the cut may split a character
                handle.write(text)
                written += len(text.encode("utf-8"))
        inputs.append(f"{lang}={path}")
    return inputs
