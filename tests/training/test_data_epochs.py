"""What training reads of each blended group, and manifests whose counts are not their shards'.

Epochs (training/epochs.py): Megatron's GPTDataset repeats a blended group as often as its weight
needs, with no cap; the run says at its start how many epochs it reads of each group (run.json's
`data_epochs`, the figures GPTDataset's own sampling gives) and warns, once, for every group past
the remix mixture's max_epochs (else the default of 4). Counts (data.check_counts): a manifest
whose `tokens` or a shard entry's counts differ from the .idx files' is refused (exit status 2 from
`crawlmill train`), a URL's folder alike, instead of silently skewing the blend of several folders.

The mixture folder is pack's: shard files from pack's own writer (tests/shards/shard_folder.py) and
the blend pack writes for remix output (pipeline/pack/mixture.py, `mixture_blend`), with a group of
share 0 whose shard is listed but not blended, as pack leaves it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from crawlmill.pipeline.pack.mixture import RemixInput, mixture_blend
from crawlmill.shards.manifest import MANIFEST
from crawlmill.shards.mmidx import ShardError
from crawlmill.training.config import load_train_config
from crawlmill.training.data import ShardData, open_folders
from tests.shards.shard_folder import write_shard_folder

GROUPS = {"web": (2, 40, 0.5), "other": (1, 10, 0.5), "spare": (1, 6, 0.0)}  # shards, documents each, share


def write_mixture_folder(folder: Path) -> Path:
    """Shards per remix group (`<group>-NNNNN`) and the manifest pack writes for them."""
    entries, groups = [], []
    for seed, (group, (shards, documents, _)) in enumerate(GROUPS.items()):
        written = json.loads((write_shard_folder(folder, shards, documents, seed=seed, name=group) / MANIFEST).read_text())
        entries += written["shards"]
        groups += [group] * shards
    mixture = {"groups": {g: {"share": s, "target": s, "epochs": 1.0} for g, (_, _, s) in GROUPS.items()}, "budget": 1.0, "size": 1.0,
               "method": "unimax", "unit": "tokens", "max_epochs": 4.0, "allow_shortfall": False}  # fmt: skip
    manifest = {**written, "shards": entries, "shards_count": len(entries), "documents": sum(e["documents"] for e in entries),
                "tokens": sum(e["tokens"] for e in entries), "bytes": sum(e["bytes"] for e in entries),
                "blend": mixture_blend(RemixInput("remix", mixture, []), entries, groups)}  # fmt: skip
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return folder


@pytest.fixture(scope="module")
def mixture_shards(tmp_path_factory) -> Path:
    return write_mixture_folder(tmp_path_factory.mktemp("mixture") / "shards")




def edited(source: Path, parent: Path, edit) -> Path:
    """A copy of shard folder `source` with its manifest changed by `edit(manifest)`."""
    folder = Path(shutil.copytree(source, parent / f"edited-{len(list(parent.iterdir()))}"))
    manifest = json.loads((folder / MANIFEST).read_text())
    edit(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return folder


# --- epochs -------------------------------------------------------------------------------------


def test_epochs_are_what_gpt_dataset_reads_of_each_group(mixture_shards, tmp_path, process_group):
    """The figures match GPTDataset's own sampling: the samples its blend draws from each group's
    shards, in tokens, over the tokens of their train split (90% of the documents here, as Megatron
    splits them), not the manifest's tokens: the split changes the arithmetic."""
    config = load_train_config("tiny", {"data": {"shards": [str(mixture_shards)]}})
    samples, seq = 40, config.model.seq_length
    data = ShardData(config, tmp_path / "cache", train_samples=samples, valid_samples=8)
    epochs = {g.name: g for g in data.epochs()}
    assert set(epochs) == {"web", "other"}  # the group of share 0 is not blended
    manifest = json.loads((mixture_shards / MANIFEST).read_text())
    read = dict.fromkeys(epochs, 0)
    for i in range(samples):
        member = data.train.datasets[int(data.train.dataset_index[i])]
        read[Path(member.dataset.path_prefix).name.split("-")[0]] += seq
    split_tokens = dict.fromkeys(epochs, 0)
    for member in data.train.datasets:  # the tokens of one epoch, as GPTDataset counts them
        split_tokens[Path(member.dataset.path_prefix).name.split("-")[0]] += member._get_num_tokens_per_epoch()
    for name, group in epochs.items():
        assert group.tokens == split_tokens[name] < manifest["blend"]["mixture"]["groups"][name]["tokens"]
        assert group.epochs == pytest.approx(read[name] / split_tokens[name], rel=0.01)
        assert group.epochs == pytest.approx(samples * seq * 0.5 / split_tokens[name]) and group.cap == 4.0
    assert epochs["other"].epochs > 4 > epochs["web"].epochs


def test_a_run_past_the_cap_says_so_once_and_records_the_epochs(mixture_shards, tmp_path, capsys):
    """Four tiny steps read the small group `other` about 7 times (the mixture's cap: 4): one warning
    line naming it, its epochs, the cap, whose cap it is and the tokens and steps within it; run.json
    holds every group's epochs; the run trains to its end all the same."""
    from crawlmill.training.trainer import train

    config = load_train_config("tiny", {"data": {"shards": [str(mixture_shards)]}, "max_steps": 4, "eval": {"iters": 1}})
    summary = train(config, tmp_path / "run")
    assert summary["step"] == 4
    run = json.loads((tmp_path / "run/run.json").read_text())
    epochs = run["data_epochs"]
    assert set(epochs) == {"web", "other"} and epochs["other"] > 4 > epochs["web"] > 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: data:")]
    assert len(warnings) == 1, warnings
    shape = (
        r"warning: data: other will be read (\d+\.\d\d) epochs \(50.0% of 4,096 training tokens from its ([\d,]+) train-split "
        r"tokens; (\d+\.\d\d) of all its ([\d,]+)\), "
        rf"past the cap of 4 epochs \(the remix mixture's max_epochs in {re.escape(str(mixture_shards))}/manifest.json\); "
        r"it stays within the cap up to ([\d,]+) training tokens \((\d+) steps\). Training goes on"
    )
    found = re.fullmatch(shape, warnings[0])
    assert found, warnings[0]
    assert float(found[1]) == pytest.approx(epochs["other"], abs=0.006)
    split_tokens, whole_tokens, within, steps = (int(found[i].replace(",", "")) for i in (2, 4, 5, 6))
    assert split_tokens < whole_tokens == json.loads((mixture_shards / MANIFEST).read_text())["blend"]["mixture"]["groups"]["other"]["tokens"]
    assert epochs["other"] == pytest.approx(4096 * 0.5 / split_tokens, abs=1e-4)
    assert float(found[3]) == pytest.approx(4096 * 0.5 / whole_tokens, abs=0.006)  # the cap is planned on all its tokens (remix, pack)
    assert within == pytest.approx(4 * whole_tokens / 0.5, abs=1) and steps == within // 1024


def test_without_a_mixture_the_default_cap_applies_to_each_folder(tmp_path):
    """Folders whose blend has no mixture (one prefix per shard, by tokens) are a group each, blended
    by data.weights; past 4 epochs the warning names the default and why."""
    from crawlmill.training.data import blend_entries, check_split
    from crawlmill.training.epochs import data_epochs, over_cap

    a = write_shard_folder(tmp_path / "a", shards=2, documents=30, seed=1)
    b = write_shard_folder(tmp_path / "b", shards=1, documents=20, seed=2)
    folders = open_folders([str(a), str(b)])
    entries = blend_entries(folders, [3.0, 1.0])
    split = check_split([entry.path for entry in entries], "90,10,0")  # each shard's train-split tokens
    within = data_epochs(entries, split, 1000.0)
    assert [g.name for g in within] == [str(a), str(b)] and over_cap(within, 1000.0) == []
    held = {g.name: g.tokens for g in within}
    groups = data_epochs(entries, split, 40_000.0)
    assert [g.epochs for g in groups] == pytest.approx([40_000 * 0.75 / held[str(a)], 40_000 * 0.25 / held[str(b)]])
    lines = over_cap(groups, 40_000.0)
    assert len(lines) == sum(g.epochs > 4 for g in groups) >= 1
    assert all("past the cap of 4 epochs (the default, as " in line and "has no remix mixture" in line and "Muennighoff et al. 2023" in line for line in lines)
    twice = data_epochs(blend_entries([folders[0], folders[0]], [1.0, 1.0]), split, 40_000.0)  # one folder given twice: read twice, held once
    assert [(g.name, g.tokens) for g in twice] == [(str(a), held[str(a)])] and twice[0].epochs == pytest.approx(40_000 / held[str(a)])


def test_pack_output_without_a_mixture_is_one_group(tiny_shards):
    """Real pack output (the sample corpus, its blend by tokens): its counts pass, and the folder is
    one group whose tokens are its train split's."""
    from crawlmill.training.data import blend_entries, check_split
    from crawlmill.training.epochs import data_epochs, over_cap

    entries = blend_entries(open_folders([str(tiny_shards)]), None)
    split = check_split([entry.path for entry in entries], "90,10,0")
    held = sum(split.values())
    (group,) = data_epochs(entries, split, 3 * held)
    assert (group.name, group.tokens, group.epochs, group.cap) == (str(tiny_shards), held, pytest.approx(3.0), 4.0)
    assert over_cap([group], 3 * held) == []
    (line,) = over_cap(data_epochs(entries, split, 5 * held), 5 * held)
    assert line.startswith(f"warning: data: {tiny_shards} will be read 5.00 epochs (100.0% of ") and "the default, as" in line


def test_a_blend_not_by_tokens_counts_each_shard(tmp_path, monkeypatch):
    """Shards weighted alike (adopt's `--weights equal`, a hand-written blend): a small shard is read
    more often than the folder's average, so each shard is a group; past MAX_LINES groups over the
    cap, one line says how many more."""
    from crawlmill.training import epochs as module
    from crawlmill.training.data import blend_entries, check_split

    folder = edited(write_shard_folder(tmp_path / "made", shards=3, documents=30, seed=3), tmp_path, lambda m: m["blend"].update(weights=[1, 1, 1]))
    entries = blend_entries(open_folders([str(folder)]), None)
    groups = module.data_epochs(entries, check_split([entry.path for entry in entries], "90,10,0"), 20_000.0)
    assert [g.name for g in groups] == [f"{folder}/shard-0000{i}" for i in range(3)]
    assert [g.epochs for g in groups] == pytest.approx([20_000 / 3 / g.tokens for g in groups]) and len({round(g.epochs, 6) for g in groups}) == 3
    monkeypatch.setattr(module, "MAX_LINES", 1)
    lines = module.over_cap(groups, 20_000.0, 1024)
    assert len(lines) == 2 and lines[0].startswith(f"warning: data: {folder}/shard-00000 will be read ")
    assert lines[1] == "warning: data: and 2 more groups past their cap (run.json's data_epochs has every group's epochs)"


# --- counts -------------------------------------------------------------------------------------


def test_a_manifest_claiming_more_tokens_than_its_shards_is_refused(mixture_shards, tmp_path):
    """The report: a folder whose manifest says 1,000,000,000 tokens would get nearly all of the
    blend beside a true one; its shards' .idx files hold far fewer, and training says so."""
    forged = edited(mixture_shards, tmp_path, lambda m: m.update(tokens=1_000_000_000))
    held = json.loads((mixture_shards / MANIFEST).read_text())["tokens"]
    with pytest.raises(ShardError, match=rf"^{re.escape(str(forged))}/manifest.json: says 1,000,000,000 tokens, its shards hold {held:,} \(their .idx files\)"):
        open_folders([str(mixture_shards), str(forged)])


@pytest.mark.parametrize("key", ["tokens", "documents"])
def test_a_shard_entry_that_is_not_its_idx_is_refused(mixture_shards, tmp_path, key):
    """A blended shard's entry, and the entry of the group of share 0 that is not blended (its .idx
    read alone): the shard is named, with both figures."""
    for shard in (0, 3):  # web-00000, blended; spare-00000, not
        def bump(manifest, shard=shard):
            manifest["shards"][shard][key] += 1

        folder = edited(mixture_shards, tmp_path, bump)
        entry = json.loads((mixture_shards / MANIFEST).read_text())["shards"][shard]
        figures = (entry["documents"] + (key == "documents"), entry["tokens"] + (key == "tokens"))
        where = re.escape(str(folder))
        with pytest.raises(ShardError, match=rf"^{where}/{entry['prefix']}.idx: holds {entry['documents']:,} documents and {entry['tokens']:,} tokens, "
                                              rf"its entry in {where}/manifest.json says {figures[0]:,} and {figures[1]:,}"):  # fmt: skip
            open_folders([str(folder)])


def test_crawlmill_train_refuses_it_with_exit_status_2(mixture_shards, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from crawlmill.cli import app

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    forged = edited(mixture_shards, tmp_path, lambda m: m.update(tokens=1_000_000_000))
    result = CliRunner().invoke(app, ["train", "--config", "tiny", "--data", str(forged), "--output", str(tmp_path / "run"), "--max-steps", "2", "--no-progress"],
                                env={"COLUMNS": "400"})  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "says 1,000,000,000 tokens, its shards hold" in " ".join(result.output.split()) and not (tmp_path / "run/checkpoints").exists()


def test_a_folder_at_a_url_is_checked_against_its_shards(mixture_shards, tmp_path, monkeypatch):
    """On S3: the blended shards' .idx come with the local copy, the unblended one's is read from the
    bucket; a forged figure is refused naming the URL."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    from tests.s3server import moto_s3

    monkeypatch.setenv("CRAWLMILL_CACHE", str(tmp_path / "cache"))
    forged = edited(mixture_shards, tmp_path, lambda m: m.update(tokens=1_000_000_000))
    with moto_s3("epochs") as (fs, _):
        fs.put(str(mixture_shards), "epochs/good", recursive=True)
        fs.put(str(forged), "epochs/forged", recursive=True)
        with pytest.raises(ShardError, match=r"^s3://epochs/forged/manifest.json: says 1,000,000,000 tokens, its shards hold"):
            open_folders(["s3://epochs/forged"])
        (folder,) = open_folders(["s3://epochs/good"])
        assert folder.name == "s3://epochs/good" and not (folder.path / "spare-00000.bin").exists()  # not blended: not copied
