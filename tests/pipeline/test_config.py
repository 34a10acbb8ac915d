import pytest

from crawlmill.pipeline.config import ConfigError, load_run_config


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_valid_config_resolves_paths_relative_to_the_file(tmp_path):
    config = load_run_config(write(tmp_path, "output_dir: out\nray: {num_cpus: 2}\ningest:\n  inputs: [data/*.warc.gz, 's3://b/x.warc.gz']\n  extractor: trafilatura\n  max_bad_utf8_share: 0\n"))
    assert config.output_dir == str(tmp_path / "out")
    assert config.ingest.inputs == [str(tmp_path / "data/*.warc.gz"), "s3://b/x.warc.gz"]
    assert config.ray.num_cpus == 2 and config.ingest.extractor == "trafilatura"
    assert config.ingest.max_bad_utf8_share == 0.0


@pytest.mark.parametrize(
    "text,message",
    [
        ("output_dir: o\ningest: {inputz: [a]}\n", r"c.yaml.ingest: unknown key\(s\) inputz"),
        ("output_dir: o\nray: {num_cpus: two}\n", r"c.yaml.ray.num_cpus: expected int, got str 'two'"),
        ("output_dir: o\ningest: {inputs: a.warc}\n", r"c.yaml.ingest.inputs: expected a list"),
        ("output_dir: o\ningest: {extractor: lynx}\n", r"c.yaml.ingest: extractor 'lynx'"),
        ("ingest: {}\n", r"^c.yaml: missing key\(s\) output_dir$"),
        ("output_dir: [unclosed\n", r"not valid YAML"),
        ("- a list\n", r"expected a mapping"),
        ("output_dir: o\nray: {num_cpus: true}\n", r"expected int, got bool"),
        ("output_dir: o\nray: {address: 'http://head:8265'}\n", r"c.yaml.ray: address http://head:8265: that is a job server's address.*ray job submit"),
    ],
)
def test_malformed_configs_name_the_key_and_the_problem(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_run_config(write(tmp_path, text))


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_run_config(tmp_path / "nope.yaml")


def test_every_mistake_of_a_config_is_named_at_once(tmp_path):
    """Three mistakes in three sections: one error, a line each, not one at a time over three runs."""
    text = "output_dir: o\nray: {num_cpus: two, adress: x}\ningest: {extractor: lynx}\ndedup: {minhash: {bands: many}}\n"
    with pytest.raises(ConfigError) as error:
        load_run_config(write(tmp_path, text))
    lines = str(error.value).splitlines()
    assert lines[0].startswith("c.yaml.ray: unknown key(s) adress (did you mean address?)")
    assert lines[1] == "c.yaml.ray.num_cpus: expected int, got str 'two'"
    assert lines[2].startswith("c.yaml.ingest: extractor 'lynx'")
    assert lines[3].startswith("c.yaml.dedup.minhash.bands: expected int, got str 'many'") and len(lines) == 4


def test_a_stages_own_inputs_are_checked_before_any_stage_runs(tmp_path):
    """dedup's extra input folders (another run's filter output), the tokenizer's LANG=PATH files and
    training's extra shards are read only after the stages before them ran: a missing one is named
    up front, not after ingest and filter (globs are the stage's own to expand; URLs are looked up)."""
    (tmp_path / "en.txt").write_text("text")
    text = (
        "output_dir: out\n"
        "dedup: {inputs: [other/filter, year=2024/filter]}\n"
        "tokenizer: {inputs: [en=en.txt, zh=zh.txt, 'more/*.txt']}\n"
        "train: {base: tiny, data: {shards: [old/shards]}}\n"
    )
    with pytest.raises(ConfigError) as error:
        load_run_config(write(tmp_path, text))
    assert str(error.value).splitlines() == [
        f"c.yaml.dedup.inputs: {tmp_path / 'other/filter'}: no such file or folder",
        f"c.yaml.dedup.inputs: {tmp_path / 'year=2024/filter'}: no such file or folder",  # a folder's name, not LANG=PATH
        f"c.yaml.tokenizer.inputs: zh={tmp_path / 'zh.txt'}: no such file or folder",
        f"c.yaml.train: data.shards: {tmp_path / 'old/shards'}: no such folder (give `crawlmill pack` output folders)",  # its own check
    ]
    (tmp_path / "other/filter").mkdir(parents=True)
    (tmp_path / "year=2024/filter").mkdir(parents=True)
    (tmp_path / "zh.txt").write_text("文本")
    without_train = text.replace("train: {base: tiny, data: {shards: [old/shards]}}\n", "")
    assert load_run_config(write(tmp_path, without_train)).dedup.inputs == [str(tmp_path / "other/filter"), str(tmp_path / "year=2024/filter")]


def test_fixed_and_any_length_tuples_are_checked_item_by_item():
    """tuple[int, int]: a YAML list of exactly two, each checked as its position's type (numeric
    strings converted as for any number); tuple[str, ...]: any length; a wrong length names the field."""
    from dataclasses import dataclass, field

    from crawlmill.pipeline.config import build

    @dataclass
    class Section:
        pair: tuple[int, float] = (1, 0.5)
        names: tuple[str, ...] = ()
        pairs: list[tuple[int, int]] = field(default_factory=list)

    built = build(Section, {"pair": ["2e3", 1], "names": ["a", "b", "c"], "pairs": [[1, 2], (3, 4)]}, "s")
    assert built.pair == (2000, 1.0) and type(built.pair[1]) is float
    assert built.names == ("a", "b", "c") and built.pairs == [(1, 2), (3, 4)]
    for data, message in [
        ({"pair": [1]}, "s.pair: expected a list of 2, got 1 items [1]"),
        ({"pair": [1, 2, 3]}, "s.pair: expected a list of 2, got 3 items [1, 2, 3]"),
        ({"pair": "1,2"}, "s.pair: expected a list, got str '1,2'"),
        ({"pair": [1.5, 2]}, "s.pair[0]: expected int, got float 1.5"),
        ({"names": ["a", 3]}, "s.names[1]: expected str, got int 3"),
        ({"pairs": [[1, 2], [3]]}, "s.pairs[1]: expected a list of 2, got 1 items [3]"),
    ]:
        with pytest.raises(ConfigError) as failed:
            build(Section, data, "s")
        assert str(failed.value) == message


@pytest.mark.parametrize(
    "text,expected",
    [("2e12", 2 * 10**12), ("50", 50), ("-1.0e+3", -1000), (".5e1", 5), ("1234567890123456789", 1234567890123456789)],
)
def test_numeric_strings_are_numbers(text, expected):
    """YAML 1.1 reads 2e12 (no dot) as a string; a numeric field takes it, as the number it spells
    (an integer string exactly, not through a float)."""
    from dataclasses import dataclass

    from crawlmill.pipeline.config import build

    @dataclass
    class Section:
        count: int = 0
        share: float = 0.0

    built = build(Section, {"count": text, "share": text}, "s")
    assert built.count == expected and type(built.count) is int
    assert built.share == float(expected) and type(built.share) is float


@pytest.mark.parametrize("text", ["2e12", "50", "-1e3", "+.5", "1.0e+9", " 7 ", "3."])
def test_is_number_takes_decimal_numbers(text):
    from crawlmill.pipeline.config import is_number

    assert is_number(text)


@pytest.mark.parametrize("text", ["fifty", "nan", "inf", "-inf", "1_000", "0x10", "", "-", "--points", "1e", "e5", 5, None])
def test_is_number_refuses_words_and_python_only_spellings(text):
    """nan and inf are no threshold or count; 1_000 and 0x10 are Python's, not YAML's or a config's."""
    from crawlmill.pipeline.config import is_number

    assert not is_number(text)
