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


def test_no_text_and_too_little_text_are_said_once(tmp_path):
    """Empty inputs say so, naming them (not "the corpus (0 bytes) allows only 256 tokens"); a
    tokenizer error is one `error:` line, not also a "part failed" line with the exception's class."""
    runner = CliRunner()
    (tmp_path / "empty.txt").write_text("")
    result = runner.invoke(app, ["tokenizer", "train", str(tmp_path / "empty.txt"), "--output", str(tmp_path / "o"), "--vocab-size", "300", "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "no text in the inputs" in result.output and "empty.txt" in result.output and "allows only" not in result.output
    assert result.output.count("error:") == 1 and "part failed" not in result.output and "CorpusTooSmall" not in result.output
    (tmp_path / "tiny.txt").write_text("a few words only\n")
    result = runner.invoke(app, ["tokenizer", "train", str(tmp_path / "tiny.txt"), "--output", str(tmp_path / "o"), "--vocab-size", "3000", "--no-progress"])
    assert result.exit_code == 2, result.output
    assert result.output.count("allows only 256 tokens") == 1 and "17 bytes" in result.output and "part failed" not in result.output
    assert not (tmp_path / "o").exists()


def test_a_small_run_shows_its_sizes_and_keeps_to_max_bytes(tmp_path):
    """--max-bytes is a limit (each language's share of it exactly), and a run of kilobytes says
    so instead of "trained on und 0.0 MiB"."""
    out = tmp_path / "tok"
    args = ["tokenizer", "train", *SAMPLE_WET, "--output", str(out), "--vocab-size", "300", "--max-bytes", "20000", "--no-progress"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    report = json.loads((out / "train_report.json").read_text())
    trained = report["corpus_trained"]["bytes"]["und"]
    assert 20_000 - 3 * len(SAMPLE_WET) <= trained <= 20_000
    assert f"trained on und {trained / 1024:.1f} KiB of " in result.output and "0.0 MiB" not in result.output
    stats = json.loads((out / "_stats.json").read_text())
    assert stats["counters"]["bytes_trained:und"] == trained and stats["counters"]["bytes_not_sampled:und"] == stats["counters"]["bytes_read:und"] - trained


def test_vocab_size_help_says_what_is_learned_and_what_is_padded():
    result = CliRunner().invoke(app, ["tokenizer", "train", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    text = " ".join(result.output.replace("│", " ").split())
    assert "102,400 is DeepSeek's padded model vocabulary" in text and "100,000 learned" in text
    assert "--vocab-size 102400 learns 102,400 tokens, padded to 102,528" in text


def test_sizes_are_shown_in_the_unit_that_fits():
    from crawlmill.tokenizer.stage import human_bytes

    shown = [human_bytes(n) for n in (0, 1, 17, 1023, 1024, 20_000, 2**20 - 1, 5_543_424, 2.04 * 2**30)]
    assert shown == ["0 bytes", "1 byte", "17 bytes", "1,023 bytes", "1.0 KiB", "19.5 KiB", "1.0 MiB", "5.3 MiB", "2.04 GiB"]
