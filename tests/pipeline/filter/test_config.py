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


def checked(data, lid_model_path):
    """`data` as the filter section, built and checked as before any stage starts (the packaged lid.176)."""
    data = {**data, "language_id": {"model_path": str(lid_model_path), **data.get("language_id", {})}}
    config = build(FilterConfig, data, "filter")
    check_section(config, "filter")
    return config


@pytest.mark.parametrize(
    "rules,message",
    [
        ({"en": {"gopher_quality": {"min_doc_words": "fifty"}}}, 'rules.en.gopher_quality.min_doc_words: "fifty" is not a number (expected an integer or null)'),
        ({"en": {"gopher_quality": {"min_doc_words": 50.5}}}, "rules.en.gopher_quality.min_doc_words: 50.5 is not an integer (expected an integer or null)"),
        ({"zh": {"gopher_quality": {"min_stop_words": True}}}, "rules.zh.gopher_quality.min_stop_words: true is not a number (expected an integer or null)"),
        ({"en": {"gopher_quality": {"max_non_alpha_words_ratio": "70%"}}}, 'rules.en.gopher_quality.max_non_alpha_words_ratio: "70%" is not a number (expected a number or null)'),
        ({"en": {"gopher_quality": {"min_doc_words": "50.5"}}}, 'rules.en.gopher_quality.min_doc_words: "50.5" is not an integer (expected an integer or null)'),
        ({"en": {"gopher_quality": {"min_doc_words": 2**70}}}, "rules.en.gopher_quality.min_doc_words: 22-digit integer is out of range (64-bit)"),
        ({"zh": {"gopher_repetition": {"top_n_grams": [[2, 0.2, 1]]}}}, r"rules.zh.gopher_repetition.top_n_grams[0]: [2, 0.2, 1] is not a list of 2 (expected [an integer, a number])"),
        ({"en": {"gopher_quality": {"stop_words": ["the", 3]}}}, "rules.en.gopher_quality.stop_words[1]: 3 is not a string (expected a string)"),
        ({"zh": {"gopher_repetition": {"top_n_grams": [[2, 0.2], [3]]}}}, r"rules.zh.gopher_repetition.top_n_grams[1]: [3] is not a list of 2 (expected [an integer, a number])"),
        ({"en": {"gopher_repetition": {"dup_n_grams": [[5.5, 0.1]]}}}, "rules.en.gopher_repetition.dup_n_grams[0][0]: 5.5 is not an integer (expected an integer)"),
        ({"en": {"c4": {"filter_no_terminal_punct": "false"}}}, 'rules.en.c4.filter_no_terminal_punct: "false" is not true or false (expected true or false)'),
        ({"zh": {"c4": {"max_curly_bracket_ratio": [0.02]}}}, "rules.zh.c4.max_curly_bracket_ratio: [0.02] is not a number (expected a number or null)"),
        ({"zh": {"fineweb": {"stop_chars": "。！？"}}}, 'rules.zh.fineweb.stop_chars: "。！？" is not a list (expected a list of strings or null)'),
        ({"en": {"fineweb": {"long_line_length": 1}, "policy": {"min_hits": 1.5}}}, "rules.en.policy.min_hits: 1.5 is not an integer (expected an integer)"),
        # a language no kept language reads is checked too (`default` with the non-CJK classes)
        ({"default": {"gopher_quality": {"max_doc_words": "many"}}}, 'rules.default.gopher_quality.max_doc_words: "many" is not a number (expected an integer or null)'),
        ({"en": {"gopher_quality": {"min_words": 3}}}, "rules.en.gopher_quality: unknown setting(s) min_words (did you mean min_doc_words?)"),
    ],
)
def test_wrong_typed_rule_settings_fail_before_any_work(lid_model_path, rules, message):
    """datatrove's classes take any value and fail on the first document, in every worker (issue:
    `min_doc_words: "fifty"` was 4 failed tasks, exit 1, after ingest had run)."""
    with pytest.raises(ConfigError) as failed:
        checked({"rules": rules}, lid_model_path)
    assert str(failed.value).startswith(f"filter: {message}")


def test_every_rule_setting_is_typed_from_the_rule_class(lid_model_path):
    """No hand list: each family's settings and their types come from its class's signature (its
    base class's where it passes `**params` on), so a number where a list belongs or a string where
    a number belongs fails for every setting of every family, English and Chinese."""
    from crawlmill.pipeline.filter.rules import FAMILIES, rule_class
    from crawlmill.pipeline.filter.settings import parameters

    for lang in ("en", "zh"):
        for family in FAMILIES:
            params = parameters(rule_class(family, lang))
            assert params and not {"language", "exclusion_writer", "self"} & set(params)
            for name in params:
                with pytest.raises(ConfigError, match=rf"rules\.{lang}\.{family}\.{name}: "):
                    checked({"rules": {lang: {family: {name: {"a": 1}}}}}, lid_model_path)
    assert "min_doc_words" in parameters(rule_class("gopher_quality", "en"))  # datatrove's own
    assert {"long_line_length", "line_punct_thr"} <= set(parameters(rule_class("fineweb", "en")))  # ours + datatrove's


def test_right_typed_rule_settings_pass(lid_model_path):
    """int where a number is asked for, null where the annotation or the default allows it, YAML lists for tuples."""
    rules = {
        "en": {
            "gopher_quality": {"max_non_alpha_words_ratio": 1, "min_doc_words": None, "stop_words": ["the", "of"]},
            "gopher_repetition": {"top_n_grams": [[2, 0.2], [3, 1]], "dup_line_frac": None},
            "fineweb": {"stop_chars": [".", "!"], "long_line_length": None},
        },
        "zh": {"c4": {"max_curly_bracket_ratio": None, "line_end": ["。"]}, "policy": {"terms": ["隐私"], "min_per_1000_chars": 5}},
    }
    config = checked({"rules": rules}, lid_model_path)
    assert config.rules["en"]["gopher_quality"]["max_non_alpha_words_ratio"] == 1


def test_numeric_strings_are_numbers_as_in_every_config(lid_model_path, tmp_path):
    """YAML 1.1 reads 2e3 (no dot) as a string: a rule setting takes it as a config field does, and
    the rule classes get the number (they compare it with counts; a string fails at the first document)."""
    rules = {
        "en": {"gopher_quality": {"min_doc_words": "2e3", "max_non_alpha_words_ratio": "0.7", "max_doc_words": "100000"}},
        "zh": {"gopher_repetition": {"top_n_grams": [["2", "2.3e-1"]]}},
    }
    config = checked({"rules": rules}, lid_model_path)
    quality = config.rules["en"]["gopher_quality"]
    assert quality["min_doc_words"] == 2000 and type(quality["min_doc_words"]) is int
    assert quality["max_non_alpha_words_ratio"] == 0.7 and quality["max_doc_words"] == 100000
    assert config.rules["zh"]["gopher_repetition"]["top_n_grams"] == ((2, 0.23),)
    from crawlmill.pipeline.filter.rules import RuleChain

    assert RuleChain("en", config.rules_for("en")).first_failure("word " * 50) == "gopher_quality:gopher_short_doc"

    from crawlmill.pipeline.config import load_run_config

    (tmp_path / "run.yaml").write_text(f"output_dir: out\nfilter:\n  language_id: {{model_path: {lid_model_path}}}\n  rules:\n    en:\n      gopher_quality: {{min_doc_words: 2e3}}\n")
    assert load_run_config(tmp_path / "run.yaml").filter.rules["en"]["gopher_quality"]["min_doc_words"] == 2000


@pytest.mark.parametrize("value", ["2e3", "50", " 50 ", "+7", 50.0, 2e3, "50.5", 50.5, "fifty", "nan", "1_000", True, 2**70, None, [50]])
def test_a_rule_setting_and_a_config_field_of_one_type_take_the_same_values(value):
    """One type check for both: what a dataclass field `int | None` / `float | None` takes, converted
    to what, a rule setting of that type takes, converted to the same (and what one refuses, both do)."""
    from dataclasses import dataclass

    from crawlmill.pipeline.filter.rules import rule_class
    from crawlmill.pipeline.filter.settings import settings_errors

    @dataclass
    class Section:
        min_doc_words: int | None = None
        max_non_alpha_words_ratio: float | None = None

    for name in ("min_doc_words", "max_non_alpha_words_ratio"):
        try:
            field_value, field_error = getattr(build(Section, {name: value}, "rules.en.gopher_quality"), name), None
        except ConfigError as exc:
            field_value, field_error = None, str(exc)
        errors = settings_errors(rule_class("gopher_quality", "en"), {name: value}, "rules.en.gopher_quality")
        assert bool(errors) == bool(field_error), (name, value, errors, field_error)
        if errors:
            assert errors[0].startswith(f"rules.en.gopher_quality.{name}: ")
        else:
            from crawlmill.pipeline.filter.settings import check_settings

            taken = check_settings(rule_class("gopher_quality", "en"), {name: value}, "rules.en.gopher_quality")[0][name]
            assert taken == field_value and type(taken) is type(field_value)


def test_settings_without_annotations_take_their_defaults_type():
    """A parameter with no annotation takes what its default is: an int, a tuple of floats, a bool."""
    from crawlmill.pipeline.filter.settings import check_settings, parameters

    class Rule:
        def __init__(self, n=3, ratios=(0.5, 0.25), flag=False, words=["a"], anything=None):  # noqa: B006
            pass

    assert check_settings(Rule, {"n": "5", "ratios": [1, "2e-1"], "flag": True, "words": ["b"], "anything": {"x": 1}}, "r") == (
        {"n": 5, "ratios": (1.0, 0.2), "flag": True, "words": ["b"], "anything": {"x": 1}},
        [],
    )
    _, errors = check_settings(Rule, {"n": 0.5, "ratios": [1, "x"], "flag": "yes", "words": "b"}, "r")
    assert errors == [
        "r.n: 0.5 is not an integer (expected an integer)",
        'r.ratios[1]: "x" is not a number (expected a number)',
        'r.flag: "yes" is not true or false (expected true or false)',
        'r.words: "b" is not a list (expected a list of strings)',
    ]
    assert parameters(Rule)["ratios"] == tuple[float, ...]


def test_rule_chain_itself_refuses_wrong_types():
    """The same check where a worker builds its rules (a config that skipped check())."""
    from crawlmill.pipeline.filter.rules import RuleChain

    with pytest.raises(ValueError, match='rules.en.gopher_quality.min_doc_words: "fifty" is not a number'):
        RuleChain("en", {"gopher_quality": {"min_doc_words": "fifty"}})


@pytest.mark.parametrize(
    "data,message",
    [
        ({"language_id": {"keep": {"eng": 0.5, "zho": 0.5}}}, "language_id.keep.eng: not a label of lid.176 (did you mean en?)\nfilter: language_id.keep.zho: not a label of lid.176 (did you mean zh?)"),
        ({"language_id": {"keep": {"EN": 0.5}}}, "language_id.keep.EN: not a label of lid.176 (did you mean en?)"),
        ({"language_id": {"keep": {"xx": 0.5}}}, "language_id.keep.xx: not a label of lid.176 (its 176 labels: en, ru, de, fr, it, ja, es, ceb, tr, pt, uk, eo, ...)"),
        ({"language_id": {"keep": {"tl": 0.5}}}, "language_id.keep.tl: no word tokenizer for tl: datatrove assigns none to it"),
        ({"rules": {"cn": {"c4": None}}}, "rules.cn: not a kept language (keep: en, zh); did you mean zh?"),
        ({"language_id": {"keep": {"en": 0.5}}, "rules": {"zh": {"c4": None}}}, "rules.zh: not a kept language (keep: en)"),
    ],
)
def test_languages_the_model_cannot_report_fail_before_any_work(lid_model_path, data, message):
    """lid.176 reports en and zh, never eng or zho: such a keep-set dropped every document as
    lang_not_kept; `rules.cn` (for zh) was silently never used."""
    with pytest.raises(ConfigError) as failed:
        checked(data, lid_model_path)
    assert str(failed.value).startswith(f"filter: {message}")


def test_rules_of_languages_not_kept_are_fine_when_they_are_the_built_in_ones(lid_model_path):
    config = checked({"language_id": {"keep": {"de": 0.6}}, "rules": {"zh": {}}}, lid_model_path)  # zh: the defaults
    assert set(config.rules) == {"en", "zh", "default"}
    all_off = {"language_id": {"keep": {"tl": 0.5}}, "rules": {"tl": dict.fromkeys(["gopher_quality", "gopher_repetition", "c4", "policy", "fineweb"])}}
    checked(all_off, lid_model_path)  # no rule needs tl's (missing) word tokenizer


def test_a_tokenizer_whose_package_is_missing_fails_before_any_work(lid_model_path):
    """datatrove assigns Welsh (cy) a Stanza tokenizer; without stanza every worker would fail."""
    import importlib.util

    if importlib.util.find_spec("stanza") is not None:
        pytest.skip("stanza is installed here: cy's word tokenizer works")
    with pytest.raises(ConfigError, match=r"^filter: language_id.keep.cy: the word tokenizer datatrove assigns to cy needs a package that is not installed: .*stanza"):
        checked({"language_id": {"keep": {"cy": 0.5}}}, lid_model_path)


def test_nearest_languages_reads_iso_639_3_glotlid_labels_and_country_codes():
    from crawlmill.pipeline.filter.langid import nearest_languages

    labels = ("en", "ru", "de", "zh", "nl", "ja")
    assert nearest_languages("eng", labels) == ["en"]
    assert nearest_languages("eng_Latn", labels) == ["en"]
    assert nearest_languages("cmn_Hani", labels) == ["zh"]
    assert nearest_languages("deu", labels) == ["de"]
    assert nearest_languages("jp", labels) == ["ja"]
    assert nearest_languages("xx", labels) == []


def test_the_default_rules_check_no_english_stop_words(lid_model_path):
    """`default` is for any kept language: datatrove's stop words are English (and it ships no other
    language's), so they are no check for it. A language's own rules that would apply them anyway fail."""
    default = FilterConfig().rules["default"]["gopher_quality"]
    assert default["min_stop_words"] is None and "stop_words" not in default
    checked({"language_id": {"keep": {"de": 0.6, "nl": 0.6, "ru": 0.6}}}, lid_model_path)
    with pytest.raises(ConfigError, match=r"^filter: rules.de.gopher_quality: de text would need datatrove's English stop words \(the, be, to, of, and, that, have, with\): give stop_words for de or set min_stop_words: null"):
        checked({"language_id": {"keep": {"de": 0.6}}, "rules": {"de": {"gopher_quality": {"min_doc_words": 30}}}}, lid_model_path)
    own = {"gopher_quality": {"stop_words": ["der", "die", "und", "in", "zu", "den", "das", "nicht"]}}
    checked({"language_id": {"keep": {"de": 0.6}}, "rules": {"de": own}}, lid_model_path)


def test_a_run_config_with_wrong_typed_rules_fails_before_ingest(tmp_path):
    """`crawlmill run` ran ingest, then failed every filter task; now the whole config fails first."""
    from crawlmill.pipeline.config import load_run_config

    (tmp_path / "run.yaml").write_text('output_dir: out\nfilter:\n  rules:\n    en:\n      gopher_quality: {min_doc_words: "fifty"}\n')
    with pytest.raises(ConfigError, match=r'run.yaml.filter: rules.en.gopher_quality.min_doc_words: "fifty" is not a number \(expected an integer or null\)'):
        load_run_config(tmp_path / "run.yaml")


def test_each_kept_language_the_default_rules_cannot_filter_is_named_with_what_to_give(lid_model_path):
    """ja and ko are filtered by the CJK rule classes, which the English default rules do not fit;
    Thai writes no sentence-ending marks, so those rules dropped every clean Thai article (c4's
    too_few_sentences, fineweb's line_punct_ratio). Once the error named `rules.default`, which the
    user never wrote, and only the first of ja and ko (the same text twice was one error)."""
    with pytest.raises(ConfigError) as failed:
        checked({"language_id": {"keep": {"en": 0.5, "ja": 0.5, "ko": 0.5, "th": 0.5}}}, lid_model_path)
    lines = [line.removeprefix("filter: ") for line in str(failed.value).splitlines()]
    assert [line.split(":")[0] for line in lines] == ["language_id.keep.ja", "language_id.keep.ko", "language_id.keep.th"], lines
    assert lines[0].endswith("give rules.ja (configs/filters.yaml's rules.zh is a start)") and lines[1].endswith("give rules.ko (configs/filters.yaml's rules.zh is a start)")
    assert "do not fit the CJK rule classes" in lines[0] and "long_line_length" in lines[0]
    assert "sentence-ending marks that th does not write" in lines[2] and lines[2].endswith("give rules.th (rules.default with c4: null and fineweb: null is a start)")
    # What each message offers as a start is accepted; what may be left is the word tokenizer's
    # package (SudachiPy, kiwipiepy, pythainlp: not installed here).
    zh, default = (FilterConfig().rules[key] for key in ("zh", "default"))
    for data in ({"language_id": {"keep": {"en": 0.5, "ja": 0.5, "ko": 0.5}}, "rules": {"ja": zh, "ko": zh}},
                 {"language_id": {"keep": {"en": 0.5, "th": 0.5}}, "rules": {"th": {**default, "c4": None, "fineweb": None}}}):  # fmt: skip
        try:
            checked(data, lid_model_path)
        except ConfigError as error:
            assert all("the word tokenizer datatrove assigns to" in line for line in str(error).splitlines()), str(error)
