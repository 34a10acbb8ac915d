"""Pack on a remix folder (pipeline/pack/mixture.py) that an earlier version of remix wrote, with
`mixture.json` and `mixture.png` where remix now writes `_mixture.json` and `_mixture.png`: pack
still finds the mixture and packs the folder group by group, with the same shards and blend as the
folder of today's layout."""

import shutil

import pytest

from crawlmill.files import sha256_file
from crawlmill.pipeline.remix.layout import LEGACY_MIXTURE_FILE, LEGACY_MIXTURE_PLOT, MIXTURE_FILE, MIXTURE_PLOT
from tests.pipeline.pack.conftest import folder_bytes, manifest_of, run_pack
from tests.pipeline.remix.conftest import read_json, run_remix


def test_a_remix_folder_of_the_earlier_layout_is_packed_group_by_group(pack_inputs, tokenizer_dir, tmp_path):
    assert run_remix([pack_inputs[0]], tmp_path / "remix").ok  # the demo's URL rules: several groups
    old = tmp_path / "old-remix"
    shutil.copytree(tmp_path / "remix", old)
    (old / MIXTURE_FILE).rename(old / LEGACY_MIXTURE_FILE)
    (old / MIXTURE_PLOT).rename(old / LEGACY_MIXTURE_PLOT)
    mixture = read_json(old / LEGACY_MIXTURE_FILE)
    groups = sorted(g for g, entry in mixture["groups"].items() if entry["documents"])
    assert len(groups) >= 3 and not (old / MIXTURE_FILE).exists()

    assert run_pack([old], tmp_path / "old-shards", tokenizer_dir, shard_tokens=2000).ok
    manifest = manifest_of(tmp_path / "old-shards")
    blend = manifest["blend"]
    assert blend["method"] == "mixture" and blend["mixture"]["remix"] == str(old)
    assert sorted({s["prefix"].rsplit("-", 1)[0] for s in manifest["shards"]}) == groups  # shards of their own per group
    for name, entry in blend["mixture"]["groups"].items():
        assert entry["share"] == mixture["groups"][name]["share"] and entry["documents"] == mixture["groups"][name]["documents"]
        assert all(prefix.startswith(f"{name}-") for prefix in entry["shards"])
    weights = dict(zip(blend["prefixes"], blend["weights"]))
    for name in groups:  # a group's share spread over its shards
        assert sum(w for p, w in weights.items() if p.startswith(f"{name}-")) == pytest.approx(mixture["groups"][name]["share"])
    tasks = read_json(tmp_path / "old-shards/_tasks.json")
    assert tasks["settings"]["mixture_sha256"] == sha256_file(old / LEGACY_MIXTURE_FILE)

    # The same shards and blend as the folder of today's layout (its path aside).
    assert run_pack([tmp_path / "remix"], tmp_path / "shards", tokenizer_dir, shard_tokens=2000).ok
    new = manifest_of(tmp_path / "shards")
    assert new["blend"]["mixture"].pop("remix") == str(tmp_path / "remix") and blend["mixture"].pop("remix") == str(old)
    assert new["blend"] == blend and new["shards"] == manifest["shards"]
    shards = {k: v for k, v in folder_bytes(tmp_path / "shards").items() if k.endswith((".bin", ".idx", ".docs.parquet"))}
    assert shards and shards == {k: v for k, v in folder_bytes(tmp_path / "old-shards").items() if k.endswith((".bin", ".idx", ".docs.parquet"))}
