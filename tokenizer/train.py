"""Train a byte-level BPE tokenizer with DeepSeek LLM's pre-tokenization and write a loadable folder.

    crawlmill tokenizer train out/dedup en=extra/en.txt --output out/tokenizer --mix en=0.6,zh=0.4

HF `tokenizers` does the counting and merging (Rust, all cores); this module feeds it a corpus
(corpus.py and sampling.py: streamed and sampled; or wordcount.py's word table), fixes the vocabulary layout
(vocab.py: 100,000 learned tokens with the 256 byte symbols, then 15 specials, padded to 102,400),
and writes the tokenizer files, each atomically, into the output folder:

- tokenizer.json, tokenizer_config.json, special_tokens_map.json: load with
  `transformers.AutoTokenizer.from_pretrained(DIR)` or Megatron-Core's HuggingFace tokenizer;
- tokenizer_metadata.json: lets `megatron.core.tokenizers.MegatronTokenizer.from_pretrained(DIR)` load it;
- crawlmill.json: the layout (learned, special ids, padded_vocab_size) that `crawlmill pack` and
  training read, and the tokenizer.json hash;
- train_report.json: corpus bytes and documents per language (read and trained on; bytes also
  left out by the sampling and pruned), bad records, time, the trainer's peak memory (this
  process's VmHWM from the start of training: a Ray worker may have run other tasks before).

`train` runs in one process (the tokenizer stage's train task, stage.py). The trainer's memory is
set by the number of distinct pre-tokenized pieces (a Chinese run between punctuation is one
piece), not by the corpus size; BENCHMARKS.md has the figures.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, trainers

from crawlmill.files import as_path, atomic_path, atomic_write_text, make_dirs, sha256_file

from ..pipeline.stage import StageInputError
from .config import TokenizerConfig
from .corpus import CorpusCounts
from .human import human_bytes
from .pretokenize import deepseek_decoder, deepseek_normalizer, deepseek_post_processor, deepseek_pre_tokenizer, training_pre_tokenizer
from .vocab import BOS, EOS, PAD, SPECIAL_TOKENS, VocabLayout

MODEL_MAX_LENGTH = 4096  # DeepSeek LLM's training sequence length


class CorpusTooSmall(StageInputError):
    pass


def new_tokenizer() -> Tokenizer:
    """An empty byte-level BPE with DeepSeek's pre-tokenizer, normalizer, post-processor and decoder."""
    tokenizer = Tokenizer(models.BPE(fuse_unk=False))
    tokenizer.normalizer = deepseek_normalizer()
    tokenizer.pre_tokenizer = deepseek_pre_tokenizer()
    tokenizer.post_processor = deepseek_post_processor()
    tokenizer.decoder = deepseek_decoder()
    return tokenizer


def train(
    config: TokenizerConfig, corpus: Iterable[list[str]], seen: CorpusCounts, kept: CorpusCounts, output: Path,
    extra: Callable[[], dict[str, Any]], show_progress: bool = False,
) -> dict[str, Any]:
    """Train on `corpus` (batches of texts; `seen`/`kept` fill as it is read), check the layout and
    write the tokenizer files into `output`; returns the report (train_report.json), with `extra()`
    (called once the corpus is read)."""
    started = time.perf_counter()
    start_rss = _reset_peak_rss()
    tokenizer = new_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        min_frequency=config.min_frequency,
        show_progress=show_progress,
        special_tokens=[],  # added after training, so they take the ids right after the learned ones
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        max_token_length=config.max_token_length,
    )
    tokenizer.pre_tokenizer = training_pre_tokenizer()  # bounded time on a very long piece (pretokenize.py)
    tokenizer.train_from_iterator(_reporting(corpus, kept, started), trainer=trainer)
    tokenizer.pre_tokenizer = deepseek_pre_tokenizer()
    learned = tokenizer.get_vocab_size()
    if learned != config.vocab_size:
        raise CorpusTooSmall(_too_small(config, seen, kept, learned))
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS])
    layout = config.layout
    for token, token_id in layout.special_ids().items():
        assert tokenizer.token_to_id(token) == token_id, (token, tokenizer.token_to_id(token), token_id)
    report = {
        "vocab": {"learned": learned, "specials": len(SPECIAL_TOKENS), "total": layout.total, "padded_vocab_size": layout.padded_size},
        "corpus_read": seen.to_json(),
        "corpus_trained": kept.to_json(),
        **extra(),
        "settings": asdict(config),
        "seconds": round(time.perf_counter() - started, 3),
        "peak_rss_mib": _peak_rss_mib(),
        "start_rss_mib": start_rss,  # this process before training (a Ray worker: ~150 MiB)
    }
    if seen.bad_records:
        print(f"warning: unreadable records {dict(seen.bad_records)}; first: {seen.first_errors[:3]}", file=sys.stderr)
    write_folder(tokenizer, layout, as_path(output), report)
    return report


REPORT_EVERY = 60.0  # seconds: the trainer is one task, which a stage's progress sees only at its end


def _reporting(corpus: Iterable[list[str]], kept: CorpusCounts, started: float) -> Iterator[list[str]]:
    """`corpus`, with a line on stderr a minute while it is read (from a Ray worker Ray copies it
    into the driver's log), and one when it has been read and the merges are being learnt."""
    last = started
    for batch in corpus:
        yield batch
        if time.perf_counter() - last >= REPORT_EVERY:
            last = time.perf_counter()
            print(f"tokenizer train: {_read(kept)} read, {last - started:.0f}s", file=sys.stderr, flush=True)
    if last > started:  # a long read: say what comes next, which takes a while too
        print(f"tokenizer train: {_read(kept)} read in {time.perf_counter() - started:.0f}s; learning the merges", file=sys.stderr, flush=True)


def _read(kept: CorpusCounts) -> str:
    return f"{human_bytes(sum(kept.bytes.values()))} of text"


def _too_small(config: TokenizerConfig, seen: CorpusCounts, kept: CorpusCounts, learned: int) -> str:
    inputs = ", ".join(config.inputs)
    if not sum(seen.bytes.values()):
        found = f"{sum(seen.documents.values()):,} empty documents" if sum(seen.documents.values()) else "nothing to read"
        return f"there is no text in the inputs ({inputs}): {found}"
    if not sum(kept.bytes.values()):
        return f"the sample of the inputs ({inputs}) is empty: --mix and --max-bytes leave no text to train on"
    return (
        f"the text trained on ({human_bytes(sum(kept.bytes.values()))}) allows only {learned:,} tokens with min_frequency {config.min_frequency}; "
        f"asked for --vocab-size {config.vocab_size:,}: give more text or a smaller --vocab-size"
    )


def _reset_peak_rss() -> int | None:
    """Start this process's peak RSS (VmHWM) afresh, as a Ray worker may have run other tasks
    before; returns its RSS now, in MiB (None where /proc has neither)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass
    return _proc_status_mib("VmRSS:")


def _peak_rss_mib() -> int:
    """The trainer's peak: this process's VmHWM since `_reset_peak_rss` (Linux), else ru_maxrss."""
    peak = _proc_status_mib("VmHWM:")
    return peak if peak is not None else int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # KiB on Linux


def _proc_status_mib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def write_folder(tokenizer: Tokenizer, layout: VocabLayout, output: Path, report: dict) -> None:
    """Write the tokenizer files into `output`, each under a temporary name renamed when complete;
    tokenizer.json, the file readers look for, last: a folder cut short by a kill has none, rather
    than one without the crawlmill.json whose padded vocabulary pack reads beside it."""
    make_dirs(output)
    with atomic_path(output / "tokenizer.json") as tmp:
        tokenizer.save(str(tmp))
        _write_companions(output, layout, sha256_file(tmp), report)


def _write_companions(output: Path, layout: VocabLayout, digest: str, report: dict) -> None:
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
    _write_json(output / "tokenizer_config.json", config)
    _write_json(output / "special_tokens_map.json", {**special, "additional_special_tokens": config["additional_special_tokens"]})
    _write_json(
        output / "crawlmill.json",
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
    _write_json(output / "tokenizer_metadata.json", {"library": "huggingface", "class_name": None, "class_path": None, "model_type": "gpt", "chat_template": None})
    _write_json(output / "train_report.json", report)


def _write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
