"""Tokenizer stage config: what to train on and the vocabulary to learn.

The run config's `tokenizer:` section and `crawlmill tokenizer train`'s options (`--mix en=0.6,zh=0.4`
and `mix: {en: 0.6, zh: 0.4}` are the same; the INPUT arguments set `inputs`). In a run, the
remix output comes first (the documents kept, with their groups) and `inputs` are added to it; `path` names an existing tokenizer folder
to use instead of training one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from crawlmill.files import as_path

from .vocab import VocabLayout


def parse_mix(mix: str | dict[str, float] | None) -> dict[str, float]:
    """`en=0.5,zh=0.4` (or a dict) -> shares summing to 1; an error names the bad entry."""
    if not mix:
        return {}
    items = mix.items() if isinstance(mix, dict) else (entry.split("=", 1) for entry in mix.split(",") if entry.strip())
    shares: dict[str, float] = {}
    for item in items:
        if len(item) != 2:
            raise ValueError(f"mix entry {'='.join(item)!r}: expected LANG=SHARE, e.g. en=0.6")
        lang, share = str(item[0]).strip(), item[1]
        try:
            value = float(share)
        except (TypeError, ValueError):
            raise ValueError(f"mix entry {lang}={share}: the share is not a number") from None
        if not lang or not value >= 0 or value == float("inf"):
            raise ValueError(f"mix entry {lang}={share}: needs a language and a finite share >= 0")
        shares[lang] = value
    total = sum(shares.values())
    if total <= 0 or total == float("inf"):
        raise ValueError(f"mix {mix!r}: the shares add up to {'0' if total <= 0 else 'more than a float holds'}")
    return {lang: value / total for lang, value in shares.items()}


def parse_bytes(value: str | int | float) -> int:
    """A byte count as a whole number: 2e9, "2e9" and 2000000000 alike."""
    number = float(value)
    if not number.is_integer():
        raise ValueError(f"{value!r}: expected a whole number of bytes")
    return int(number)


@dataclass
class TokenizerConfig:
    # Pipeline output folders (text, lang columns), Parquet, JSONL (text[, lang]) or text files and
    # folders; `LANG=PATH` sets the language of one input (e.g. `code=src/`).
    inputs: list[str] = field(default_factory=list, metadata={"path": "spec"})
    path: str | None = field(default=None, metadata={"path": True})  # an existing tokenizer folder: nothing is trained
    vocab_size: int = 100_000  # learned tokens, the 256 byte symbols included; 15 specials follow, then padding
    padded_vocab_size: int | None = None  # None: 102,400 for 100,000 learned (DeepSeek's), else learned + 15 rounded up to 128
    min_frequency: int = 2  # a merge needs a pair seen at least this often
    max_token_length: int | None = None  # characters; None: no limit, as DeepSeek
    mix: dict[str, float] = field(default_factory=dict, metadata={"parse": parse_mix})  # language -> share of bytes
    max_bytes: int | None = field(default=None, metadata={"parse": parse_bytes})  # train on at most this many bytes (sampling.py)
    seed: int = 0  # seed of the sampling draws
    # None: stream the corpus into the trainer (exact; memory grows with the distinct words). A
    # number: count words on Ray first and drop the rarest until the trainer's modelled peak fits (wordcount.py).
    max_memory_gib: float | None = None
    count_chunk_mb: float = 64  # plain text, JSONL (byte ranges) and Parquet (row groups) are word-counted in chunks of this size

    def __post_init__(self) -> None:
        self.mix = parse_mix(self.mix)
        VocabLayout(self.vocab_size, self.padded_vocab_size)  # raises for a layout that cannot be
        if self.min_frequency < 1:
            raise ValueError(f"min_frequency {self.min_frequency}: must be >= 1")
        if self.max_memory_gib is not None and self.max_memory_gib <= 0:
            raise ValueError(f"max_memory_gib {self.max_memory_gib}: must be > 0")
        if self.max_bytes is not None and self.max_bytes <= 0:
            raise ValueError(f"max_bytes {self.max_bytes}: must be > 0")
        if self.max_token_length is not None and self.max_token_length < 1:
            raise ValueError(f"max_token_length {self.max_token_length}: must be >= 1")
        if self.seed < 0:  # numpy's seed sequences take no negative numbers: refused here, not after the scan
            raise ValueError(f"seed {self.seed}: must be >= 0")
        if self.count_chunk_mb <= 0:
            raise ValueError(f"count_chunk_mb {self.count_chunk_mb}: must be > 0")

    @property
    def layout(self) -> VocabLayout:
        return VocabLayout(self.vocab_size, self.padded_vocab_size)

    def check(self) -> None:
        if self.path is not None and not (as_path(self.path) / "tokenizer.json").is_file():
            raise FileNotFoundError(f"path {self.path}: no tokenizer.json there")
