import pytest

from crawlmill.pipeline.config import ConfigError, build, check_section, load_section
from crawlmill.pipeline.filter.config import FilterConfig
from tests.conftest import REPO


def test_documented_yaml_equals_the_built_in_defaults():
    documented = load_section(FilterConfig, str(REPO / "configs/filters.yaml"), "filter", None)
    assert documented.rules == FilterConfig().rules
    assert documented.language_id == FilterConfig().language_id


def test_rule_families_given_replace_only_those(tmp_path):
    config = build(FilterConfig, {"rules": {"zh": {"c4": None, "gopher_quality": {"min_doc_words": 10}}}})
    assert config.rules["zh"]["c4"] is None and config.rules["zh"]["gopher_quality"] == {"min_doc_words": 10}
    assert config.rules["zh"]["fineweb"] == FilterConfig().rules["zh"]["fineweb"]


@pytest.mark.parametrize(
    "data,message",
    [
        ({"language_id": {"keep": {"en": 1.5}}}, r"language_id.keep.en: expected a score in \[0, 1\]"),
        ({"language_id": {"keep": ["en"]}}, r"filter.language_id.keep: expected a mapping"),
        ({"rules": {"zh": {"gopher_quality": {"min_words": 3}}}}, r"rules.zh.gopher_quality: .*min_words"),
        ({"rules": {"en": {"bogus": {}}}}, r"rules.en: unknown rule families \['bogus'\]"),
        ({"rules": ["en"]}, r"filter.rules: expected a mapping"),
        ({"keep_droped": True}, r"unknown key\(s\) keep_droped \(did you mean keep_dropped\?\)"),
    ],
)
def test_malformed_filter_configs_fail_before_any_work(tmp_path, data, message):
    with pytest.raises(ConfigError, match=message):
        check_section(build(FilterConfig, data, "filter"), "filter")
