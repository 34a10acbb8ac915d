"""Megatron's dataset index cache (training/index_cache.py): a file cut short by a kill is found and
the cache built again, where Megatron trusted any file that existed (every resume then failed with
`mmap length is greater than file size` until someone deleted the folder)."""

import numpy as np

from crawlmill.training.index_cache import drop_damaged_cache


def test_a_cache_file_cut_short_drops_the_cache_and_a_whole_one_is_kept(tmp_path, capsys):
    cache = tmp_path / "data_cache"
    cache.mkdir()
    for name in ("abc-GPTDataset-train-document_index.npy", "abc-GPTDataset-train-shuffle_index.npy"):
        np.save(cache / name, np.arange(10_000, dtype=np.int64))
    (cache / "abc-GPTDataset-train-description.txt").write_text("{}")
    drop_damaged_cache(cache)
    assert len(list(cache.iterdir())) == 3  # whole: kept
    shuffle = cache / "abc-GPTDataset-train-shuffle_index.npy"
    shuffle.write_bytes(shuffle.read_bytes()[:40_000])  # killed while Megatron wrote it
    drop_damaged_cache(cache)
    assert not cache.exists() and "abc-GPTDataset-train-shuffle_index.npy is damaged" in capsys.readouterr().err
    drop_damaged_cache(cache)  # no cache yet: nothing to do
