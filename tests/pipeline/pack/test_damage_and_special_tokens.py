"""A finished pack folder that lost a file since is not reported as done; `shards verify` checks the
manifest's byte and per-language counts against docs.parquet and its padded vocabulary; a special
token's spelling in a document's text is counted, and with `--special-tokens-in-text text`
encoded as the ordinary text it is (real pack runs on the sample corpus and the edge documents,
the released DeepSeek tokenizer)."""

import json
import shutil

import numpy as np

from megatron.core.datasets.indexed_dataset import IndexedDataset
from tokenizers import Tokenizer

from crawlmill.corpora.edge_documents import EOS
from tests.pipeline.pack.conftest import SHARD_TOKENS, manifest_of, run_pack
from tests.pipeline.pack.test_cli import invoke

EOD_ID = 100001


def all_documents(output, manifest):
    """Every document's tokens, copied: IndexedDataset's arrays are views of its memory map, gone with it."""
    for shard in manifest["shards"]:
        dataset = IndexedDataset(str(output / shard["prefix"]))
        for d in range(len(dataset)):
            yield np.array(dataset[d])


def test_a_finished_folder_that_lost_a_shard_is_not_done(packed, pack_inputs, tokenizer_dir, tmp_path):
    output, manifest = packed
    copy = tmp_path / "shards"
    shutil.copytree(output, copy)
    lost = manifest["shards"][1]["prefix"] + ".bin"
    (copy / lost).unlink()
    args = ["pack", *pack_inputs, "--tokenizer", tokenizer_dir, "--output", copy, "--shard-tokens", SHARD_TOKENS, "--no-progress"]
    result = invoke(*args)
    assert result.exit_code == 2 and f"finished, but {lost} is missing" in " ".join(result.output.split()) and "--overwrite" in result.output
    (copy / lost).write_bytes(b"x")  # another size than the manifest's
    result = invoke(*args)
    assert result.exit_code == 2 and f"{lost} holds 1 bytes, the manifest says" in " ".join(result.output.split())
    result = invoke(*args, "--overwrite")
    assert result.exit_code == 0, result.output
    assert (copy / lost).read_bytes() == (output / lost).read_bytes()


def test_verify_checks_the_byte_and_language_counts_and_the_padded_vocabulary(packed, tmp_path):
    output, manifest = packed
    assert invoke("shards", "verify", output).exit_code == 0
    lang = next(iter(manifest["by_lang"]))

    def edited(name, change):
        folder = tmp_path / name
        shutil.copytree(output, folder)
        data = json.loads((folder / "manifest.json").read_text())
        change(data)
        (folder / "manifest.json").write_text(json.dumps(data))
        return invoke("shards", "verify", folder)

    result = edited("bytes", lambda m: m.update(bytes=m["bytes"] + 7))
    assert result.exit_code == 2 and f"says bytes {manifest['bytes'] + 7:,}, the shards' docs.parquet give {manifest['bytes']:,}" in " ".join(result.output.split())
    result = edited("shard-bytes", lambda m: m["shards"][0].update(bytes=m["shards"][0]["bytes"] + 7))
    assert result.exit_code == 2 and "its rows give bytes" in result.output
    result = edited("by-lang", lambda m: m["by_lang"][lang].update(tokens=1))
    assert result.exit_code == 2 and "says by_lang" in result.output
    result = edited("padded", lambda m: m["tokenizer"].update(padded_vocab_size=4000))
    assert result.exit_code == 2 and "tokenizer.padded_vocab_size 4000 is not a count at least vocab_size" in " ".join(result.output.split())


def test_a_special_tokens_spelling_in_text_is_counted_and_can_be_text(packed, pack_inputs, tokenizer_dir, tmp_path):
    output, manifest = packed
    stats = json.loads((output / "_stats.json").read_text())
    assert stats["counters"]["special_token_in_text"] == 1  # the edge document that spells EOS
    # As preprocess_data.py: the spelling is the EOD token, mid-document.
    assert sum(int((doc[:-1] == EOD_ID).sum()) for doc in all_documents(output, manifest)) == 1
    as_text = tmp_path / "text"
    assert run_pack(pack_inputs, as_text, tokenizer_dir, shard_tokens=SHARD_TOKENS, special_tokens_in_text="text").ok
    text_manifest = manifest_of(as_text)
    assert json.loads((as_text / "_stats.json").read_text())["counters"]["special_token_in_text"] == 1
    documents = list(all_documents(as_text, text_manifest))
    assert len(documents) == manifest["documents"] and all(doc[-1] == EOD_ID and not (doc[:-1] == EOD_ID).any() for doc in documents)
    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    spelled = [doc for doc in documents if EOS in tokenizer.decode(doc[:-1].tolist(), skip_special_tokens=False)]
    assert len(spelled) == 1 and len(spelled[0]) > 3  # the spelling, as the text's own tokens
    # Every other document is encoded as before.
    before = sorted(doc.tobytes() for doc in all_documents(output, manifest) if not (doc[:-1] == EOD_ID).any())
    assert sorted(doc.tobytes() for doc in documents if doc is not spelled[0]) == before
    result = invoke("pack", *pack_inputs, "--tokenizer", tokenizer_dir, "--output", tmp_path / "bad", "--special-tokens-in-text", "drop")
    assert result.exit_code == 2 and "choose tokens (as preprocess_data.py) or text" in result.output
