"""The pack stage on real pipeline output with the released DeepSeek tokenizer, checked against
Megatron-Core itself: its tokenizer (as preprocess_data.py builds it), IndexedDatasetBuilder,
IndexedDataset and BlendedMegatronDatasetBuilder -> GPTDataset with the manifest's blend."""

import json
import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from crawlmill.corpora.edge_documents import EDGE_TEXTS
from crawlmill.pipeline.pack.encode import encode_part
from crawlmill.pipeline.parts import input_parts, marker_path
from crawlmill.pipeline.runner import DONE_DIR, run_task
from crawlmill.pipeline.stage import StageInputMismatch
from crawlmill.shards.manifest import locate_token, megatron_blend
from tests.pipeline.pack.conftest import SHARD_TOKENS, folder_bytes, input_texts, manifest_of, run_pack


def test_counts_manifest_and_shard_boundaries(packed, pack_inputs):
    output, manifest = packed
    stats = json.loads((output / "_stats.json").read_text())
    texts = input_texts(pack_inputs)
    # Every input record ends somewhere: packed, or dropped with its reason.
    assert stats["in"] == len(texts) == manifest["counts"]["in"]
    assert stats["dropped"] == {"empty_tokens": 1} == manifest["counts"]["dropped"]
    assert stats["kept"] == manifest["documents"] == len(texts) - 1 == stats["in"] - 1
    assert manifest["megatron"]["dtype"] == "int32" and manifest["tokenizer"]["eod_id"] == 100001
    assert manifest["tokenizer"]["padded_vocab_size"] == 100096  # 100,002 rounded up to a multiple of 128
    assert manifest["inputs"] == [p for folder in pack_inputs for p in input_parts(folder)]
    for key in ("by_dump", "by_lang", "by_domain"):
        assert sum(v["tokens"] for v in manifest[key].values()) == manifest["tokens"]
    assert set(manifest["by_lang"]) == {"en", "zh", "unknown"}
    assert {"CC-MAIN-2025-33", "unknown"} <= set(manifest["by_dump"]) and len(manifest["by_dump"]) >= 3
    assert "example.com.cn" in manifest["by_domain"]  # registered domain, not the host sub3.edge.example.com.cn
    shards = manifest["shards"]
    assert len(shards) >= 3 and manifest["shards_count"] == len(shards)
    for shard in shards:  # at most SHARD_TOKENS, unless one document is larger on its own
        assert shard["tokens"] <= SHARD_TOKENS or shard["documents"] == 1
    assert any(s["tokens"] > SHARD_TOKENS and s["documents"] == 1 for s in shards)
    # The shards cover the input in order: consecutive row ranges, first to last.
    assert shards[0]["source"]["first"]["input"] == 0 and shards[0]["source"]["first"]["row"] == 0
    last = shards[-1]["source"]["last"]
    assert last["input"] == len(manifest["inputs"]) - 1
    blend = manifest["blend"]
    assert blend["prefixes"] == [s["prefix"] for s in shards] and blend["weights"] == [s["tokens"] for s in shards]
    assert not list(output.rglob(".tmp-*")) and not (output / "_work").exists() and (output / "_SUCCESS").exists()


def test_shards_are_byte_identical_to_megatron_indexed_dataset_builder(packed, pack_inputs, megatron_tokenizer, tmp_path):
    """preprocess_data.py's Encoder (tokenizer.tokenize(text) + [eod]) and IndexedDatasetBuilder
    (add_document, finalize), fed the same documents in the same order, shard by shard."""
    from megatron.core.datasets.indexed_dataset import DType, IndexedDatasetBuilder

    output, manifest = packed
    documents = []
    for text in input_texts(pack_inputs):
        ids = megatron_tokenizer.tokenize(text)
        if ids:  # preprocess_data.py writes an empty document as zero sequences; pack drops it
            documents.append(ids + [megatron_tokenizer.eod])
    assert len(documents) == manifest["documents"]
    dtype = DType.optimal_dtype(megatron_tokenizer.vocab_size)
    start = 0
    for shard in manifest["shards"]:
        builder = IndexedDatasetBuilder(str(tmp_path / f"{shard['prefix']}.bin"), dtype=dtype)
        for ids in documents[start : start + shard["documents"]]:
            builder.add_document(ids, [len(ids)])  # a list, as preprocess_data.py passes it
        builder.finalize(str(tmp_path / f"{shard['prefix']}.idx"))
        start += shard["documents"]
        for kind in ("bin", "idx"):
            assert (output / f"{shard['prefix']}.{kind}").read_bytes() == (tmp_path / f"{shard['prefix']}.{kind}").read_bytes(), (shard["prefix"], kind)
    assert start == len(documents)


def test_megatron_reads_the_shards_and_builds_gpt_datasets_from_the_blend(packed, megatron_tokenizer, tmp_path):
    import torch.distributed as dist
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    output, manifest = packed
    for shard in manifest["shards"]:
        dataset = IndexedDataset(str(output / shard["prefix"]))
        assert len(dataset) == shard["documents"]
        assert sum(int(n) for n in dataset.sequence_lengths) == shard["tokens"]
        assert all(dataset[i][-1] == manifest["tokenizer"]["eod_id"] for i in range(len(dataset)))

    prefixes, weights = megatron_blend(output)
    assert weights == [float(s["tokens"]) for s in manifest["shards"]]
    config = GPTDatasetConfig(
        random_seed=1234, sequence_length=64, blend=(prefixes, weights), split="1,0,0", path_to_cache=str(tmp_path / "cache"),
        tokenizer=megatron_tokenizer, reset_position_ids=False, reset_attention_mask=False, eod_mask_loss=False,
    )  # fmt: skip
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        train, _, _ = BlendedMegatronDatasetBuilder(GPTDataset, [300, 0, 0], lambda: True, config).build()
    finally:
        dist.destroy_process_group()
    assert len(train) >= 300 and len(train.datasets) == len(prefixes)
    eod_seen = 0
    for i in range(0, 300, 7):
        sample = train[i]
        assert sample["tokens"].shape == (64,) and int(sample["tokens"].max()) < manifest["tokenizer"]["vocab_size"]
        eod_seen += int((sample["tokens"] == manifest["tokenizer"]["eod_id"]).sum())
    assert eod_seen > 0
    # Samples are drawn from the shards in proportion to their token counts.
    share = np.bincount(train.dataset_index[:300], minlength=len(weights)) / 300
    assert np.abs(share - np.array(weights) / sum(weights)).max() < 0.05


def test_any_token_traces_back_to_its_warc_record(packed, megatron_tokenizer):
    output, manifest = packed
    rng = np.random.default_rng(5)
    for shard_no, shard in enumerate(manifest["shards"]):
        token = int(rng.integers(shard["tokens"]))
        found = locate_token(output, shard_no, token)
        row = pq.read_table(found["input_path"]).slice(found["row"], 1).to_pylist()[0]
        assert (row["id"], row["warc_record_id"], row["warc_offset"]) == (found["id"], found["warc_record_id"], found["warc_offset"])
        tokens = np.fromfile(output / f"{shard['prefix']}.bin", dtype=np.int32)
        ids = megatron_tokenizer.tokenize(row["text"]) + [megatron_tokenizer.eod]
        start = token - found["offset_in_document"]
        assert tokens[start : start + len(ids)].tolist() == ids


def test_same_input_gives_byte_identical_output(packed, pack_inputs, tokenizer_dir, tmp_path):
    output, _ = packed
    again = run_pack(pack_inputs, tmp_path / "again", tokenizer_dir, shard_tokens=SHARD_TOKENS)
    assert again.ok
    assert folder_bytes(tmp_path / "again") == folder_bytes(output)
    # A rerun of a finished folder does nothing; other settings are refused.
    rerun = run_pack(pack_inputs, tmp_path / "again", tokenizer_dir, shard_tokens=SHARD_TOKENS)
    assert rerun.ok and rerun.already_done and rerun.finished_before == len(manifest_of(output)["inputs"])
    assert folder_bytes(tmp_path / "again") == folder_bytes(output)
    with pytest.raises(StageInputMismatch):
        run_pack(pack_inputs, tmp_path / "again", tokenizer_dir, shard_tokens=SHARD_TOKENS + 1)


def test_a_folder_of_the_domain_format_before_shuffle_files_stays_done_or_is_refused(packed, pack_inputs, tokenizer_dir, tmp_path):
    """A pack folder whose record has no `work_format` (its domain counts were a Parquet file per
    part and partition) stays done when finished; unfinished, it is refused (the merge would not
    see the counts of the parts it finished), and --overwrite packs it again."""
    output, _ = packed
    older = tmp_path / "older"
    shutil.copytree(output, older)
    record = json.loads((older / "_tasks.json").read_text())
    record["settings"].pop("work_format")
    (older / "_tasks.json").write_text(json.dumps(record))
    before = folder_bytes(older)
    assert run_pack(pack_inputs, older, tokenizer_dir, shard_tokens=SHARD_TOKENS).already_done and folder_bytes(older) == before
    (older / "_SUCCESS").unlink()
    with pytest.raises(StageInputMismatch, match="earlier version"):
        run_pack(pack_inputs, older, tokenizer_dir, shard_tokens=SHARD_TOKENS)
    assert run_pack(pack_inputs, older, tokenizer_dir, shard_tokens=SHARD_TOKENS, overwrite=True).ok and folder_bytes(older) == folder_bytes(output)


def test_interrupted_run_resumes_to_byte_identical_output(packed, pack_inputs, tokenizer_dir, tmp_path):
    """The two states a killed run can leave, each with half-written temporaries: (a) pass 1 done
    for some parts; (b) pass 1 done, some shards written. Built with the functions the Ray tasks run."""
    from crawlmill.pipeline.pack.encode import PackSettings
    from crawlmill.pipeline.pack.shards import plan_shards, write_shard
    from crawlmill.pipeline.pack.tokenizer import inspect_tokenizer_dir

    output, _ = packed
    settings = PackSettings(inspect_tokenizer_dir(tokenizer_dir))
    parts = [p for folder in pack_inputs for p in input_parts(folder)]

    def encode(out, i):  # as the runner's task does: the part's outputs, then its marker
        run_task(encode_part, (settings,), str(marker_path(out, i)), (i, parts[i], str(out)))

    def shard(out, plan):
        run_task(write_shard, ("int32",), str(out / "_work" / DONE_DIR / "shards" / f"shard-{plan.number:05d}.json"), (plan, str(out)))

    killed_in_pass_1 = tmp_path / "a"
    for i in range(3):
        encode(killed_in_pass_1, i)
    (killed_in_pass_1 / "_work/tokens/.tmp-0123-part-00003.bin").write_bytes(b"half")
    result = run_pack(pack_inputs, killed_in_pass_1, tokenizer_dir, shard_tokens=SHARD_TOKENS)
    assert result.ok and result.finished_before == 3 and result.steps_finished_before["shards"] == 0
    assert folder_bytes(killed_in_pass_1) == folder_bytes(output)

    killed_in_pass_2 = tmp_path / "b"
    for i in range(len(parts)):
        encode(killed_in_pass_2, i)
    shard(killed_in_pass_2, plan_shards(killed_in_pass_2 / "_work", len(parts), SHARD_TOKENS, 4)[0])
    (killed_in_pass_2 / ".tmp-0123-shard-00001.bin").write_bytes(b"half")
    result = run_pack(pack_inputs, killed_in_pass_2, tokenizer_dir, shard_tokens=SHARD_TOKENS)
    assert result.ok and result.finished_before == len(parts) and result.steps_finished_before["shards"] == 1
    assert folder_bytes(killed_in_pass_2) == folder_bytes(output)

    killed_in_pass_3 = tmp_path / "c"  # parts and shards done, the domain counts not merged yet
    for i in range(len(parts)):
        encode(killed_in_pass_3, i)
    for plan in plan_shards(killed_in_pass_3 / "_work", len(parts), SHARD_TOKENS, 4):
        shard(killed_in_pass_3, plan)
    (killed_in_pass_3 / "_work/domains/.tmp-p-00000.parquet").write_bytes(b"half")
    result = run_pack(pack_inputs, killed_in_pass_3, tokenizer_dir, shard_tokens=SHARD_TOKENS)
    assert result.ok and result.steps_finished_before["shards"] == len(manifest_of(output)["shards"])
    assert folder_bytes(killed_in_pass_3) == folder_bytes(output)


def test_domain_counts_do_not_depend_on_the_number_of_partitions(packed, pack_inputs, tokenizer_dir, tmp_path):
    output, _ = packed
    split = tmp_path / "split"
    result = run_pack(pack_inputs, split, tokenizer_dir, shard_tokens=SHARD_TOKENS, domain_partitions=3)
    assert result.ok
    one, three = (json.loads((folder / "manifest.json").read_text()) for folder in (output, split))
    assert one == three and one["domains"] > 10
    def rows(folder):
        return sorted(pq.read_table(folder / "domains.parquet").to_pylist(), key=lambda r: r["domain"])
    assert rows(split) == rows(output) and len(rows(split)) == one["domains"]
    assert sum(r["tokens"] for r in rows(split)) == one["tokens"]
    for shard in one["shards"]:
        for kind in ("bin", "idx"):
            assert (split / f"{shard['prefix']}.{kind}").read_bytes() == (output / f"{shard['prefix']}.{kind}").read_bytes()


def test_bad_inputs_are_refused(pack_inputs, tokenizer_dir, tmp_path):
    from crawlmill.pipeline.pack.tokenizer import TokenizerError

    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    with pytest.raises(FileNotFoundError, match="no _SUCCESS"):
        run_pack([unfinished], tmp_path / "o1", tokenizer_dir)
    with pytest.raises(TokenizerError, match="no tokenizer.json"):
        run_pack(pack_inputs, tmp_path / "o2", tmp_path)
    with pytest.raises(ValueError, match="not both"):
        run_pack(pack_inputs, tmp_path / "o3", tokenizer_dir, shard_tokens=10, shard_size_mb=1)
    assert not os.path.exists(tmp_path / "o1/_SUCCESS")


def test_documents_keep_their_source_rows(packed, pack_inputs):
    """Each shard's docs table lists its documents' input part and row; the empty document's row is
    the one missing, and a document without URL, dump or language is counted as "unknown"."""
    output, manifest = packed
    rows = []
    for shard in manifest["shards"]:
        rows += [(d["input"], d["row"]) for d in pq.read_table(output / f"{shard['prefix']}.docs.parquet").to_pylist()]
    every_row = [(i, r) for i, part in enumerate(manifest["inputs"]) for r in range(pq.ParquetFile(part).metadata.num_rows)]
    edge_part = len(manifest["inputs"]) - 2
    assert rows == [row for row in every_row if row != (edge_part, EDGE_TEXTS.index(""))]
    last = pq.read_table(output / f"{manifest['shards'][-1]['prefix']}.docs.parquet").to_pylist()
    assert last[-2]["url"] is None and last[-2]["domain"] == "unknown" and last[-1]["warc_offset"] == 5000
