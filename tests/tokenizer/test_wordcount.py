"""Word-count mode (--max-memory-gib): the same tokenizer as streaming when nothing is pruned, the
rarest words dropped to fit a budget, and chunked reading that sees every line exactly once."""

import json
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import pre_tokenizers

from crawlmill.tokenizer.corpus import CorpusCounts
from crawlmill.tokenizer.pretokenize import CUT_PATTERN, text_splits
from crawlmill.pipeline.stage import StageInputError
from crawlmill.tokenizer.config import TokenizerConfig
from crawlmill.tokenizer.stage import train_tokenizer
from crawlmill.tokenizer.wordcount import MIB_BASE, _add_pieces, _range_documents, choose_min_count

from .conftest import SAMPLE_WET
from .test_fastencode import TEXTS

LINES = [f"line {i}: {'深度求索' * (i % 5)} word{i % 97} {'x' * (i % 13)}\n" for i in range(5000)]


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("wc") / "mixed.txt"
    path.write_text("".join(LINES), encoding="utf-8")
    return path


def test_ranges_cover_every_line_once(text_file):
    size = text_file.stat().st_size
    rng = random.Random(0)
    for _ in range(20):
        cuts = sorted({0, size, *(rng.randrange(size) for _ in range(rng.randrange(1, 12)))})
        text = "".join(doc for start, end in zip(cuts, cuts[1:]) for doc in _range_documents(str(text_file), start, end, CorpusCounts()))
        assert text == "".join(LINES)


def test_unpruned_word_table_gives_the_streamed_tokenizer(ray_local, text_file, tmp_path):
    inputs = [*SAMPLE_WET, f"zh={text_file}"]
    streamed = tmp_path / "streamed"
    counted = tmp_path / "counted"
    train_tokenizer(TokenizerConfig(inputs=inputs, vocab_size=800), streamed)
    report = train_tokenizer(TokenizerConfig(inputs=inputs, vocab_size=800, max_memory_gib=8, count_chunk_mb=0.05), counted)
    table = report["word_table"]
    assert table["min_count"] == 1 and table["kept_words"] == table["distinct_words"] > 1000
    assert table["count_tasks"] > len(inputs)  # the text file was counted in chunks
    assert (counted / "tokenizer.json").read_bytes() == (streamed / "tokenizer.json").read_bytes()
    streamed_report = json.loads((streamed / "train_report.json").read_text())
    assert report["corpus_trained"]["bytes"] == streamed_report["corpus_trained"]["bytes"]  # (text blocks differ with chunking)
    assert not (counted / "_work").exists() and not list(tmp_path.rglob(".tmp-*"))  # the word table is deleted


def test_a_small_budget_prunes_the_rarest_words(ray_local, text_file, tmp_path):
    inputs = [*SAMPLE_WET, f"zh={text_file}"]
    unpruned = train_tokenizer(TokenizerConfig(inputs=inputs, vocab_size=800, max_memory_gib=8), tmp_path / "a")["word_table"]
    base = MIB_BASE / 1024
    budget = base + (unpruned["estimated_unpruned_gib"] - base) / 2  # half the words' memory
    report = train_tokenizer(TokenizerConfig(inputs=inputs, vocab_size=800, max_memory_gib=budget), tmp_path / "b")
    table = report["word_table"]
    assert table["min_count"] > 1 and table["kept_words"] < table["distinct_words"]
    assert table["estimated_trainer_gib"] <= budget + 0.001 and 0 < table["dropped_byte_share"] < 0.5
    assert report["vocab"]["learned"] == 800


def test_an_impossible_budget_is_a_clear_error():
    histogram = {"cost_by_count": [0.0] * 64 + [2.0**40], "distinct_by_count": [0] * 64 + [10], "bytes_by_count": [0.0] * 64 + [1.0]}
    with pytest.raises(StageInputError, match="raise --max-memory-gib"):
        choose_min_count([histogram], 1.0)


@settings(max_examples=300, deadline=None)
@given(st.lists(TEXTS, max_size=8))
def test_counting_distinct_cuts_gives_the_pieces_of_the_whole_texts(texts):
    whole = pre_tokenizers.Sequence(text_splits())
    expected = Counter(piece for text in texts for piece, _ in whole.pre_tokenize_str(text))
    cuts = Counter(cut for text in texts for cut in CUT_PATTERN.findall(text))
    words: Counter = Counter()
    _add_pieces(cuts, pre_tokenizers.Sequence(text_splits()[2:]), words)
    assert words == expected and not cuts
