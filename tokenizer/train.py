"""Train a byte-level BPE tokenizer with DeepSeek LLM's pre-tokenization and write a loadable folder.

    crawlmill tokenizer train out/dedup en=extra/en.txt --output out/tokenizer --mix en=0.6,zh=0.4
    python -m crawlmill.tokenizer.train INPUT... OUTPUT_DIR     # same, with the defaults

HF `tokenizers` does the counting and merging (Rust, all cores); this module streams the corpus into
it (corpus.py), fixes the vocabulary layout (vocab.py: 100,000 learned tokens with the 256 byte
symbols, then 15 specials, padded to 102,400), and writes the output folder atomically:

- tokenizer.json, tokenizer_config.json, special_tokens_map.json: load with
  `transformers.AutoTokenizer.from_pretrained(DIR)` or Megatron-Core's HuggingFace tokenizer;
- tokenizer_metadata.json: lets `megatron.core.tokenizers.MegatronTokenizer.from_pretrained(DIR)` load it;
- crawlmill.json: the layout (learned, special ids, padded_vocab_size) that `crawlmill pack` and
  training read, and the tokenizer.json hash;
- train_report.json: corpus bytes and documents per language (read and kept), bad records, time,
  peak memory.

The trainer's memory is set by the number of distinct pre-tokenized pieces (a Chinese run between
punctuation is one piece), not by the corpus size; BENCHMARKS.md has the figures.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, trainers

from ..pipeline.ray_tasks import RayOptions
from .corpus import InputSpec, SampledCorpus, count_languages, keep_probabilities, parse_mix
from .pretokenize import deepseek_decoder, deepseek_normalizer, deepseek_post_processor, deepseek_pre_tokenizer
from .vocab import BOS, EOS, PAD, SPECIAL_TOKENS, VocabLayout
from .wordcount import word_table_corpus

MODEL_MAX_LENGTH = 4096  # DeepSeek LLM's training sequence length


class CorpusTooSmall(ValueError):
    pass


@dataclass
class TokenizerTrainConfig:
    inputs: list[str]
    output: Path
    vocab_size: int = 100_000  # learned tokens, the 256 byte symbols included
    padded_vocab_size: int | None = None  # None: 102,400 for 100,000 learned, else a multiple of 128
    min_frequency: int = 2
    max_token_length: int | None = None  # characters; None: no limit, as DeepSeek
    mix: dict[str, float] = field(default_factory=dict)  # language -> share of bytes
    max_bytes: int | None = None  # train on at most this many bytes (sampled evenly)
    seed: int = 0
    # None: stream the corpus into the trainer (exact; memory grows with the distinct words). A
    # number: count words on Ray first and drop the rarest until the trainer fits (wordcount.py).
    max_memory_gib: float | None = None
    count_chunk_mb: float = 64  # plain text is word-counted in chunks of this size
    show_progress: bool = True

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ValueError("no inputs: give pipeline folders, JSONL or text files")
        self.output = Path(self.output)
        self.mix = parse_mix(self.mix)
        self.layout = VocabLayout(self.vocab_size, self.padded_vocab_size)
        if self.min_frequency < 1:
            raise ValueError(f"min_frequency {self.min_frequency}: must be >= 1")
        if self.max_memory_gib is not None and self.max_memory_gib <= 0:
            raise ValueError(f"max_memory_gib {self.max_memory_gib}: must be > 0")
        if self.max_bytes is not None and self.max_bytes <= 0:
            raise ValueError(f"max_bytes {self.max_bytes}: must be > 0")


def new_tokenizer() -> Tokenizer:
    """An empty byte-level BPE with DeepSeek's pre-tokenizer, normalizer, post-processor and decoder."""
    tokenizer = Tokenizer(models.BPE(fuse_unk=False))
    tokenizer.normalizer = deepseek_normalizer()
    tokenizer.pre_tokenizer = deepseek_pre_tokenizer()
    tokenizer.post_processor = deepseek_post_processor()
    tokenizer.decoder = deepseek_decoder()
    return tokenizer


def train_tokenizer(config: TokenizerTrainConfig, ray_options: RayOptions | None = None) -> dict:
    """Train, check the layout, write the folder (tmp name, then rename); returns the report.
    Ray (local unless `ray_options` names a cluster) is used only with `max_memory_gib`."""
    started = time.perf_counter()
    specs = [InputSpec.parse(spec) for spec in config.inputs]
    probabilities = None
    scan = None
    if config.mix or config.max_bytes:
        scan = count_languages(specs)
        probabilities = keep_probabilities(scan.bytes, config.mix, config.max_bytes)
    work = config.output.with_name(f".tmp-words-{config.output.name}")
    word_table = None
    if config.max_memory_gib:
        shutil.rmtree(work, ignore_errors=True)
        corpus, seen, kept, word_table = word_table_corpus(
            specs, probabilities, config.seed, config.max_memory_gib, work, ray_options or RayOptions(), config.show_progress, int(config.count_chunk_mb * 2**20)
        )
    else:
        corpus = SampledCorpus(specs, probabilities, config.seed)
        seen, kept = corpus.seen, corpus.kept

    tokenizer = new_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        min_frequency=config.min_frequency,
        show_progress=config.show_progress,
        special_tokens=[],  # added after training, so they take the ids right after the learned ones
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        max_token_length=config.max_token_length,
    )
    try:
        tokenizer.train_from_iterator(corpus, trainer=trainer)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    learned = tokenizer.get_vocab_size()
    if learned != config.vocab_size:
        raise CorpusTooSmall(
            f"the corpus ({sum(kept.bytes.values()):,} bytes) allows only {learned:,} tokens with "
            f"min_frequency {config.min_frequency}; asked for {config.vocab_size:,}: give more text or a smaller --vocab-size"
        )
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS])
    layout = config.layout
    for token, token_id in layout.special_ids().items():
        assert tokenizer.token_to_id(token) == token_id, (token, tokenizer.token_to_id(token), token_id)

    report = {
        "vocab": {"learned": learned, "specials": len(SPECIAL_TOKENS), "total": layout.total, "padded_vocab_size": layout.padded_size},
        "corpus_read": seen.to_json(),
        "corpus_trained": kept.to_json(),
        "word_table": word_table,
        "language_scan": scan.to_json() if scan else None,
        "keep_probabilities": probabilities,
        "settings": _settings(config),
        "seconds": round(time.perf_counter() - started, 3),
        "peak_rss_mib": _peak_rss_mib(),
    }
    if seen.bad_records:
        print(f"warning: unreadable records {dict(seen.bad_records)}; first: {seen.first_errors[:3]}", file=sys.stderr)
    write_folder(tokenizer, layout, config.output, report)
    return report


def train_or_reuse(config: TokenizerTrainConfig) -> tuple[dict, bool]:
    """Train unless the output folder already holds a tokenizer trained with these settings
    (a pipeline rerun skips finished work); returns (report, trained_now)."""
    report_path = config.output / "train_report.json"
    if report_path.exists() and (config.output / "tokenizer.json").exists():
        report = json.loads(report_path.read_text(encoding="utf-8"))
        if report.get("settings") == json.loads(json.dumps(_settings(config))):
            return report, False
    return train_tokenizer(config), True


def train_as_ray_task(config: TokenizerTrainConfig, ray_options: RayOptions) -> tuple[dict, bool]:
    """`train_or_reuse` as one Ray task (the pipeline's tokenizer stage): on a cluster it runs on a
    worker node, whose cores the Rust trainer then uses, instead of in the job's driver."""
    import ray

    from ..pipeline.ray_tasks import ensure_ray

    ensure_ray(ray_options)
    config.show_progress = False  # a worker has no terminal; the driver shows Ray's task progress
    try:
        return ray.get(ray.remote(num_cpus=1)(train_or_reuse).remote(config))
    except ray.exceptions.RayTaskError as error:
        raise error.cause from None


def _settings(config: TokenizerTrainConfig) -> dict:
    settings = asdict(config)
    settings["output"] = str(config.output)
    settings.pop("show_progress")
    return settings


def _peak_rss_mib() -> int:
    # ru_maxrss is KiB on Linux; the trainer runs in this process, so this is its peak
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def write_folder(tokenizer: Tokenizer, layout: VocabLayout, output: Path, report: dict) -> None:
    """Write the tokenizer folder under a temporary name and rename it into place."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".tmp-{uuid.uuid4().hex}-{output.name}")
    tmp.mkdir()
    tokenizer.save(str(tmp / "tokenizer.json"))
    digest = hashlib.sha256((tmp / "tokenizer.json").read_bytes()).hexdigest()
    special = {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": MODEL_MAX_LENGTH,
        "clean_up_tokenization_spaces": False,
        **special,
        "additional_special_tokens": [t for t in SPECIAL_TOKENS if t not in special.values()],
        "add_bos_token": False,  # documents are separated by EOS when packed, as Megatron does
        "add_eos_token": False,
    }
    _write_json(tmp / "tokenizer_config.json", config)
    _write_json(tmp / "special_tokens_map.json", {**special, "additional_special_tokens": config["additional_special_tokens"]})
    _write_json(
        tmp / "crawlmill.json",
        {
            "learned_vocab_size": layout.learned,
            "special_tokens": layout.special_ids(),
            "vocab_size": layout.total,
            "padded_vocab_size": layout.padded_size,
            "bos_id": layout.special_ids()[BOS],
            "eos_id": layout.special_ids()[EOS],
            "pad_id": layout.special_ids()[PAD],
            "tokenizer_json_sha256": digest,
        },
    )
    # Megatron-Core's MegatronTokenizer.from_pretrained(DIR) reads this (its write_metadata format)
    _write_json(tmp / "tokenizer_metadata.json", {"library": "huggingface", "class_name": None, "class_path": None, "model_type": "gpt", "chat_template": None})
    _write_json(tmp / "train_report.json", report)
    if output.exists():
        shutil.rmtree(output)
    os.replace(tmp, output)


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    print(json.dumps(train_tokenizer(TokenizerTrainConfig(inputs=sys.argv[1:-1], output=Path(sys.argv[-1]))), indent=1))
