"""`crawlmill plan`'s command line: what counts as a number among option values."""

import pytest
from typer.testing import CliRunner

from crawlmill.cli import app
from crawlmill.pipeline.config import ConfigError, check_type


@pytest.mark.parametrize("text", ["-1", "-2.5e-1", "-.5", "-1e3", "-inf", "-nan", "-1_000", "-x"])
def test_a_negative_value_is_a_value_exactly_when_a_config_takes_it_as_a_number(tmp_path, text):
    """`--lr-factors 1 -1e3` gives -1e3 as a second factor (refused as not positive), `-inf` is no
    number in a config either (pipeline/config.py is_number, one rule for both): an unknown option."""
    try:
        check_type(text, float, "f", None)
        a_number = True
    except ConfigError:
        a_number = False
    result = CliRunner().invoke(app, ["plan", "sweep", "--budgets", "1e17", "--lr-factors", "1", text, "--output", str(tmp_path / "s")])
    assert result.exit_code == 2
    if a_number:
        assert "must be positive" in result.output
    else:
        assert "No such option" in result.output
    assert not (tmp_path / "s").exists()
