"""`crawlmill tokenizer train|eval` as users run them."""

import json

from typer.testing import CliRunner

from crawlmill.cli import app
from tests.tokenizer.conftest import SAMPLE_WET


def test_train_then_eval_against_the_released_tokenizer(tmp_path):
    out = tmp_path / "tok"
    result = CliRunner().invoke(app, ["tokenizer", "train", *SAMPLE_WET, "--output", str(out), "--vocab-size", "600", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "600 learned + 15 specials, padded 640" in result.output
    result = CliRunner().invoke(app, ["tokenizer", "eval", str(out), *(f"en={p}" for p in SAMPLE_WET), "--reference", "deepseek", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    ours, released = figures["tokenizer"]["by_language"]["en"], figures["reference"]["by_language"]["en"]
    assert ours["bytes"] == released["bytes"] > 100_000
    assert 1.5 < ours["bytes_per_token"] < released["bytes_per_token"]  # 600 tokens compress less than 100,000
    table = CliRunner().invoke(app, ["tokenizer", "eval", str(out), *SAMPLE_WET], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "bytes/token" in table.output and "und" in table.output


def test_bad_input_exits_2_with_a_message(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["tokenizer", "train", str(tmp_path / "missing.txt"), "--output", str(tmp_path / "o")])
    assert result.exit_code == 2 and "no such file or folder" in result.output
    (tmp_path / "a.txt").write_text("some text\n")
    result = runner.invoke(app, ["tokenizer", "train", str(tmp_path / "a.txt"), "--output", str(tmp_path / "o"), "--mix", "en=lots"])
    assert result.exit_code == 2 and "en=lots" in result.output
    result = runner.invoke(app, ["tokenizer", "train", f"en={tmp_path / 'a.txt'}", "--output", str(tmp_path / "o"), "--mix", "en=1,zh=1"])
    assert result.exit_code == 2 and "no text in it" in result.output
    result = runner.invoke(app, ["tokenizer", "train", str(tmp_path / "a.txt"), "--output", str(tmp_path / "o"), "--vocab-size", "100"])
    assert result.exit_code == 2 and "256 byte symbols" in result.output
    result = runner.invoke(app, ["tokenizer", "eval", str(tmp_path), str(tmp_path / "a.txt")])
    assert result.exit_code == 2 and "no tokenizer.json" in result.output
