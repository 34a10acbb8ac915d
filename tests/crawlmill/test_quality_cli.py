"""`crawlmill quality`'s help and option errors, as a user journey found them: `--buckets 0` named
batch_rows, which the user never set, and --help gave no range; `crawlmill quality --help` showed
only `COMMAND [ARGS]...` though its own examples use the bare form `crawlmill quality DIR...`."""

import pytest
from typer.testing import CliRunner

from crawlmill.cli import app
from crawlmill.pipeline.quality.config import QualityConfig


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def test_a_bad_buckets_names_buckets_only_and_help_gives_the_range(tmp_path):
    for buckets in (0, 1, 101):
        with pytest.raises(ValueError, match=rf"^buckets {buckets}: must be in \[2, 100\]") as error:
            QualityConfig(buckets=buckets)
        assert "batch_rows" not in str(error.value)
    with pytest.raises(ValueError, match="^batch_rows 0: must be at least 1$"):
        QualityConfig(batch_rows=0)
    result = invoke("quality", tmp_path, "--model", tmp_path / "m.bin", "--output", tmp_path / "q", "--buckets", "0")
    assert result.exit_code == 2 and "buckets 0: must be in [2, 100]" in result.output and "batch_rows" not in result.output
    assert "2 to 100" in " ".join(invoke("quality", "score", "--help").output.split())


def test_the_group_help_shows_the_bare_form_and_where_its_options_are():
    text = " ".join(invoke("quality", "--help").output.split())
    assert "quality [OPTIONS] DIR... [SCORE OPTIONS] | COMMAND [ARGS]..." in text  # the program name is the runner's
    assert "is crawlmill quality score" in text and "crawlmill quality score --help" in text
    assert "--keep-dropped" in invoke("quality", "score", "--help").output
