"""Tokenizer folders for packing: EOD, padded vocabulary, dtype; and encoding parity with Megatron's
HuggingFaceTokenizer as tools/preprocess_data.py uses it (tokenize(text) + [eod], no BOS)."""

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from crawlmill.corpora.edge_documents import EDGE_TEXTS, EOS
from crawlmill.pipeline.pack.tokenizer import DocumentEncoder, TokenizerError, inspect_tokenizer_dir


def folder_with(tmp_path, tokenizer_dir, config=None, crawlmill=None):
    folder = tmp_path / "tok"
    folder.mkdir()
    os.symlink(tokenizer_dir / "tokenizer.json", folder / "tokenizer.json")
    if config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
    if crawlmill is not None:
        (folder / "crawlmill.json").write_text(json.dumps(crawlmill))
    return folder


def test_released_deepseek_folder(tokenizer_dir):
    info = inspect_tokenizer_dir(tokenizer_dir)
    assert (info.vocab_size, info.eod_id, info.eod_token, info.dtype) == (100002, 100001, EOS, "int32")
    assert info.padded_vocab_size == 100096 and "rounded up" in info.padded_from
    assert len(info.sha256) == 64


def test_padded_vocab_from_crawlmill_json_or_option(tmp_path, tokenizer_dir):
    folder = folder_with(tmp_path, tokenizer_dir, {"eos_token": EOS}, {"padded_vocab_size": 102400, "other": 1})
    info = inspect_tokenizer_dir(folder)
    assert (info.padded_vocab_size, info.padded_from) == (102400, "crawlmill.json")
    assert inspect_tokenizer_dir(folder, padded_vocab_size=102400).padded_vocab_size == 102400
    with pytest.raises(TokenizerError, match="disagrees"):
        inspect_tokenizer_dir(folder, padded_vocab_size=100352)
    (folder / "crawlmill.json").unlink()
    assert inspect_tokenizer_dir(folder, padded_vocab_size=100352).padded_vocab_size == 100352
    with pytest.raises(TokenizerError, match="below the vocabulary size"):
        inspect_tokenizer_dir(folder, padded_vocab_size=1000)


def test_eod_from_config_or_option(tmp_path, tokenizer_dir):
    folder = folder_with(tmp_path, tokenizer_dir)
    with pytest.raises(TokenizerError, match="--eod-token"):
        inspect_tokenizer_dir(folder)
    assert inspect_tokenizer_dir(folder, eod_token="<｜begin▁of▁sentence｜>").eod_id == 100000
    with pytest.raises(TokenizerError, match="not in the vocabulary"):
        inspect_tokenizer_dir(folder, eod_token="</s>")
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": EOS}))  # a plain string
    assert inspect_tokenizer_dir(folder).eod_id == 100001
    (folder / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="not readable JSON"):
        inspect_tokenizer_dir(folder)


@pytest.mark.parametrize("fast", [True, False], ids=["fast-encode", "tokenizers-only"])
def test_encoding_matches_megatrons_preprocess_data(tokenizer_dir, megatron_tokenizer, pack_inputs, fast):
    texts = list(EDGE_TEXTS)
    texts += pq.read_table(pack_inputs[0] / "part-00000.parquet", columns=["text"]).column("text").to_pylist()
    texts += ["\r\n\r\n", "tab\there", "<｜begin▁of▁sentence｜>start", "ﬁ ligature, Ａ fullwidth, é vs é"]
    encoder = DocumentEncoder(inspect_tokenizer_dir(tokenizer_dir), fast=fast)
    assert (encoder.chunked is not None) == fast, encoder.chunked_off
    tokens, lengths = encoder.encode_documents(texts)
    assert tokens.dtype == np.int32 and len(lengths) == len(texts)
    expected = []
    for text, length in zip(texts, lengths.tolist()):
        ids = megatron_tokenizer.tokenize(text)
        ids = ids + [megatron_tokenizer.eod] if ids else []  # as preprocess_data.py's Encoder.encode
        assert length == len(ids)
        expected += ids
    assert tokens.tolist() == expected
    assert 100000 not in tokens[: lengths[1]].tolist()  # no BOS although tokenizer_config.json says add_bos_token
