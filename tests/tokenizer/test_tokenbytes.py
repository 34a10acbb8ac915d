"""Bytes per token id for a tokenizer we train (crawlmill.shards.tokenbytes): accepted, each id counts
exactly the bytes it decodes to, and over real packed documents (the sample corpus as ingested, and
the edge documents) the table sums to each document's `bytes` in docs.parquet."""

import numpy as np
import pytest
from tokenizers import Tokenizer

from crawlmill.corpora.edge_documents import EOS, write_edge_folder
from crawlmill.pipeline.ingest.config import IngestConfig
from crawlmill.pipeline.ingest.stage import IngestStage
from crawlmill.pipeline.runner import run_stage
from crawlmill.shards.tokenbytes import token_byte_lengths
from crawlmill.tokenizer.codec import decode_bytes
from tests.conftest import SAMPLES
from tests.pipeline.pack.conftest import document_byte_sums, manifest_of, run_pack


@pytest.fixture(scope="module")
def table(small_tokenizer_dir) -> np.ndarray:
    return token_byte_lengths(small_tokenizer_dir / "tokenizer.json")


def test_each_id_counts_the_bytes_it_decodes_to(small_tokenizer_dir, table):
    tokenizer = Tokenizer.from_file(str(small_tokenizer_dir / "tokenizer.json"))
    eod = tokenizer.token_to_id(EOS)
    assert len(table) == tokenizer.get_vocab_size(with_added_tokens=True) == 1015
    assert [int(table[i]) for i in range(len(table))] == [0 if i == eod else len(decode_bytes(tokenizer, [i])) for i in range(len(table))]


def test_token_bytes_sum_to_each_packed_documents_bytes(ray_local, small_tokenizer_dir, table, tmp_path):
    ingest = tmp_path / "ingest"
    assert run_stage(IngestStage(IngestConfig(inputs=[str(SAMPLES / "crawl-data")])), ingest, progress=False).ok
    output = tmp_path / "shards"
    assert run_pack([ingest, write_edge_folder(tmp_path / "edge")], output, small_tokenizer_dir, shard_tokens=20_000).ok
    manifest = manifest_of(output)
    sums = document_byte_sums(output, table)
    assert len(sums) == manifest["documents"] > 50 and manifest["shards_count"] > 1
    # Every document exact but the edge document that spells the EOD token (see tokenbytes' docstring).
    wrong = [d for d in sums if d["counted"] != d["recorded"]]
    assert len(wrong) == 1 and wrong[0]["recorded"] - wrong[0]["counted"] == len(EOS.encode("utf-8")) * wrong[0]["eod_inside"] > 0
    assert sum(d["recorded"] for d in sums) == manifest["bytes"]
