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
        ("ingest: {}\n", r"c.yaml: .*output_dir"),
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
