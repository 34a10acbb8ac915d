"""Pack config: the tokenizer, shard size and batching of `crawlmill pack`.

The run config's `pack:` section and `crawlmill pack`'s options (`--no-fast-encode` sets
`fast_encode: false`, the INPUT folders set `inputs`). In a run, `tokenizer` defaults to the
tokenizer stage's folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_SHARD_MB = 1024


@dataclass
class PackConfig:
    inputs: list[str] = field(default_factory=list, metadata={"path": True})  # stage output folders, packed in this order
    tokenizer: str | None = field(default=None, metadata={"path": True})  # Hugging Face tokenizer folder
    shard_tokens: int | None = None  # at most this many tokens per shard (documents are never split)
    shard_size_mb: float | None = None  # or: at most this many MiB of .bin per shard (default 1024)
    eod_token: str | None = None  # default: tokenizer_config.json's eos_token
    padded_vocab_size: int | None = None  # default: crawlmill.json, else vocab rounded up to 128
    batch_rows: int = 1024  # documents per tokenizer batch
    batch_bytes: int = 8 << 20  # and at most this much text per batch
    threads_per_task: int = 1
    domain_partitions: int | None = None  # default: one per 64 input parts (domains.py)
    fast_encode: bool = True  # same ids, cut and memoized (tokenizer/fastencode.py) where the tokenizer allows
    # A special token's spelling in a document's text ("<｜end▁of▁sentence｜>" in a web page): "tokens"
    # encodes it as that special token, as Megatron-LM's preprocess_data.py does (a page can then plant
    # an EOD or BOS inside a document); "text" encodes it as the ordinary text it is. Either way such
    # documents are counted (special_token_in_text).
    special_tokens_in_text: str = "tokens"

    def __post_init__(self) -> None:
        if self.shard_tokens is not None and self.shard_size_mb is not None:
            raise ValueError("give shard_tokens (--shard-tokens) or shard_size_mb (--shard-size-mb), not both")
        if (self.shard_tokens is not None and self.shard_tokens < 1) or (self.shard_size_mb is not None and self.shard_size_mb <= 0):
            raise ValueError("the shard size must be at least one token")
        if self.shard_size_mb is not None and not self.shard_size_mb * (1 << 20) < 2**63:  # inf: resolve_shard_tokens' int() overflows
            raise ValueError(f"shard_size_mb {self.shard_size_mb}: must be finite, below 2**43")
        for name in ("batch_rows", "batch_bytes", "threads_per_task"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} {getattr(self, name)}: must be at least 1")
        if self.domain_partitions is not None and self.domain_partitions < 1:
            raise ValueError(f"domain_partitions {self.domain_partitions}: must be at least 1")
        if self.special_tokens_in_text not in ("tokens", "text"):
            raise ValueError(f"special_tokens_in_text {self.special_tokens_in_text!r}: choose tokens (as preprocess_data.py) or text")
        if self.padded_vocab_size is not None and self.padded_vocab_size < 1:
            raise ValueError(f"padded_vocab_size {self.padded_vocab_size}: must be at least 1")

    def resolve_shard_tokens(self, itemsize: int) -> int:
        if self.shard_tokens is not None:
            return self.shard_tokens
        tokens = int((self.shard_size_mb or DEFAULT_SHARD_MB) * (1 << 20)) // itemsize
        if tokens < 1:
            raise ValueError(f"shard size must be at least one token (got {tokens})")
        return tokens

    def check(self) -> None:
        """The tokenizer folder, when named, must be usable (EOD token, vocabulary sizes)."""
        if self.tokenizer is not None:
            from .tokenizer import inspect_tokenizer_dir

            inspect_tokenizer_dir(self.tokenizer, self.eod_token, self.padded_vocab_size)
