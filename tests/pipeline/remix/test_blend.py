"""The mixture at training time: remix (tokens) -> pack (shards per group, the mixture as the blend) ->
training's blend (crawlmill.training.data) -> Megatron's BlendedMegatronDatasetBuilder + GPTDataset.
Drawing the budget's worth of samples, every group's realised token share is within 1 percentage
point of the mixture's share (its target, or the capped share the report gives), and no group is
read more often than the cap allows."""

import numpy as np
import pytest

from crawlmill.training.data import TokenIds, blend, open_folders
from tests.pipeline.remix.conftest import read_json, run_pack, run_remix

SEQUENCE = 16  # short samples: the budget of the 38 sample pages (about 17,000 tokens) is over 1,000 of them


@pytest.mark.parametrize(
    "mixture",
    [
        {"temperature": 0.3},  # lifts the small groups; every target met
        {"weights": {"stem": 1, "lifestyle": 1, "culture": 1, "other": 7}, "max_epochs": 2, "allow_shortfall": True},  # other at its cap
    ],
    ids=["temperature", "shortfall"],
)
def test_gpt_dataset_samples_each_group_at_its_share(remix_input, tokenizer_dir, tmp_path, mixture):
    import torch.distributed as dist
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    assert run_remix([remix_input], tmp_path / "remix", mixture={"tokenizer": str(tokenizer_dir), **mixture}).ok
    planned = read_json(tmp_path / "remix/_mixture.json")
    assert run_pack(tmp_path / "remix", tmp_path / "shards", tokenizer_dir, shard_tokens=2000).ok
    manifest = read_json(tmp_path / "shards/manifest.json")
    groups = manifest["blend"]["mixture"]["groups"]
    assert all(len(groups[g]["shards"]) >= 2 for g in ("stem", "lifestyle", "other"))  # shares spread over several shards

    prefixes, weights = blend(open_folders([str(tmp_path / "shards")]), None)
    group_of = [next(g for g, entry in groups.items() if prefix.rsplit("/", 1)[-1] in entry["shards"]) for prefix in prefixes]
    samples = manifest["blend"]["mixture"]["budget_tokens"] // SEQUENCE  # the budget the mixture is planned for
    config = GPTDatasetConfig(
        random_seed=1234, sequence_length=SEQUENCE, blend=(prefixes, weights), split="1,0,0", path_to_cache=str(tmp_path / "cache"),
        tokenizer=TokenIds(eod=manifest["tokenizer"]["eod_id"]), reset_position_ids=False, reset_attention_mask=False, eod_mask_loss=False,
    )  # fmt: skip
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        train, _, _ = BlendedMegatronDatasetBuilder(GPTDataset, [samples, 0, 0], lambda: True, config).build()
    finally:
        dist.destroy_process_group()

    drawn = dict.fromkeys(groups, 0)
    for i in range(samples):
        drawn[group_of[int(train.dataset_index[i])]] += len(train[i]["tokens"])  # every token of a sample is from one shard
    total = sum(drawn.values())
    assert total == samples * SEQUENCE
    for name, entry in groups.items():
        realised = drawn[name] / total
        assert abs(realised - entry["share"]) < 0.01, (name, realised, entry["share"])
        assert entry["share"] == planned["groups"][name]["share"] and entry["tokens"] == planned["groups"][name]["tokens"]
        # Read as often as the mixture says, and never past the cap (one sample of slack).
        assert drawn[name] / entry["tokens"] == pytest.approx(entry["epochs"], abs=0.02 + SEQUENCE / entry["tokens"])
        assert drawn[name] / entry["tokens"] <= planned["max_epochs"] + SEQUENCE / entry["tokens"]
    print({name: (round(100 * groups[name]["target"], 2), round(100 * groups[name]["share"], 2), round(100 * drawn[name] / total, 2)) for name in groups})
    if "allow_shortfall" in mixture:
        other = planned["groups"]["other"]
        assert planned["shortfall"] == ["other"] and other["at_cap"] and other["share"] < other["target"] - 0.05
        assert drawn["other"] / groups["other"]["tokens"] == pytest.approx(2.0, abs=0.05)  # at its cap, as the report says
    else:
        assert planned["shortfall"] == [] and all(g["share"] == g["target"] for g in planned["groups"].values())
    assert np.isclose(sum(weights), 1.0)
