"""The remix config (strict: bad values fail with their key path) and the URL rules' glob semantics."""

import pytest

from crawlmill.pipeline.config import ConfigError, build
from crawlmill.pipeline.remix.config import RemixConfig, Rule
from crawlmill.pipeline.remix.labels import Labeler


def config(**data) -> RemixConfig:
    return build(RemixConfig, data, "remix")


def test_rules_from_the_command_line_and_from_yaml_are_the_same():
    from_cli = config(rules=["*.wikipedia.org=encyclopedia", "*/recipes/*=cooking"])
    from_yaml = config(rules=[{"pattern": "*.wikipedia.org", "group": "encyclopedia"}, {"pattern": "*/recipes/*", "group": "cooking"}])
    assert from_cli == from_yaml and from_cli.rules[0] == Rule("*.wikipedia.org", "encyclopedia")
    assert from_cli.groups == ["cooking", "encyclopedia", "other"]
    assert config(mixture={"weights": "cooking=1,other=3"}, rules=["*/recipes/*=cooking"]).mixture.weights == {"cooking": 1.0, "other": 3.0}


@pytest.mark.parametrize(
    "data,message",
    [
        ({"rules": ["*.wikipedia.org"]}, "expected PATTERN=GROUP"),
        ({"rules": [{"pattern": "https://x.org/*", "group": "a"}]}, "no scheme"),
        ({"rules": ["x.org=Encyclopedia"]}, "group 'Encyclopedia' is not a group name"),
        ({"default_group": "a b"}, "default_group: group 'a b'"),
        ({"mixture": {"method": "softmax"}}, "remix.mixture: mixture.method 'softmax': choose one of weights, temperature, unimax"),
        ({"mixture": {"method": "weights"}}, "needs mixture.weights"),
        ({"mixture": {"method": "temperature"}}, "needs mixture.temperature"),
        ({"mixture": {"weights": {"other": 1}, "temperature": 0.5}}, "weights or temperature, not both"),
        ({"mixture": {"method": "unimax", "temperature": 0.5}}, "temperature is for method temperature, not unimax"),
        ({"mixture": {"method": "unimax", "weights": {"other": 1}}}, r"weights are for method weights, not unimax \(set mixture.method: weights, or --method weights\)"),
        ({"mixture": {"temperature": 2}}, "tau in .0, 1."),
        ({"mixture": {"max_epochs": 0.5}}, "max_epochs 0.5: must be at least 1"),
        ({"mixture": {"unit": "tokens"}}, "unit tokens needs mixture.tokenizer"),
        ({"mixture": {"weights": {"news": 1, "other": 1}}}, "mixture.weights name group.s. news that no rule"),
        ({"mixture": {"weights": "other=x"}}, "weight other=x: not a number"),
        ({"mixture": {"weights": "news=1,other=1,news=2"}, "rules": ["*.news.org=news"]}, "group news given twice .news=1 and news=2.; give each group once"),
        ({"classifier": {"labels": {"__label__a": "a"}}}, "classifier.labels given without classifier.model"),
        ({"classifier": {"model": "m.bin"}}, "classifier.model needs classifier.labels"),
        ({"batch_rows": 0}, "batch_rows 0"),
    ],
)
def test_bad_settings_fail_with_the_key_path(data, message):
    with pytest.raises(ConfigError, match=message):
        config(**data)


def test_the_method_follows_from_what_is_given():
    assert config().mixture.resolved_method == "unimax" and config().mixture.resolved_unit == "characters"
    assert config(mixture={"weights": {"other": 1}}).mixture.resolved_method == "weights"
    assert config(mixture={"temperature": 0.3}).mixture.resolved_method == "temperature"


LABELS = Labeler(
    config(
        rules=[
            "*.wikipedia.org=encyclopedia",  # the domain and every host under it
            "news.*=news",  # a host glob at the front
            "*.example.com/recipes/*=cooking",  # host and path
            "/docs/*=docs",  # any host, a path
            "*.example.com=example",  # after the path rule: first match wins
        ]
    )
)


@pytest.mark.parametrize(
    "url,domain,group,how",
    [
        ("https://en.wikipedia.org/wiki/Tide", "wikipedia.org", "encyclopedia", "rule"),
        ("https://wikipedia.org/", "wikipedia.org", "encyclopedia", "rule"),
        ("https://EN.Wikipedia.ORG./wiki/x", "wikipedia.org", "encyclopedia", "rule"),  # hosts are case-insensitive
        ("https://notwikipedia.org/wiki/x", "notwikipedia.org", "other", "default"),
        ("https://news.bbc.co.uk/a", "bbc.co.uk", "news", "rule"),  # public-suffix aware domain
        ("https://www.example.com/recipes/soup?x=1", "example.com", "cooking", "rule"),
        ("https://www.example.com/Recipes/soup", "example.com", "example", "rule"),  # paths are case-sensitive
        ("https://example.com/about", "example.com", "example", "rule"),
        ("http://a.b.example.com.cn/docs/x/y", "example.com.cn", "docs", "rule"),
        ("http://a.b.example.com.cn/", "example.com.cn", "other", "default"),
        (None, "unknown", "other", "default"),
        ("not a url", "unknown", "other", "default"),
    ],
)
def test_url_rules(url, domain, group, how):
    assert LABELS.label(url, "text") == (domain, group, how)
