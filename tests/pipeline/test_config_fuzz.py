"""Hostile run and training configs fail only with ConfigError, naming the file and, where a key is at
fault, its key path.

The run config loader (`load_run_config`) is fed random YAML documents, configs/demo.yaml with one
key replaced by garbage (wrong types, huge and negative numbers, nested junk), deleted, or joined by
an unknown key, its text with flipped, cut or binary bytes, and YAML oddities (tags, aliases, deep
nesting). The training config loader (`load_train_config`) gets the same treatment from the `tiny`
built-in, plus `base:` chains that loop. Never a TypeError, AttributeError, KeyError, OverflowError
or RecursionError from inside; always quickly.
"""

import copy
import random
from pathlib import Path

import pytest
import yaml
from crawlmill.pipeline.config import ConfigError, load_run_config
from crawlmill.training.config import BUILTIN_DIR, load_train_config
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.conftest import REPO
from tests.fuzzing import fuzz_settings

DEMO_TEXT = (REPO / "configs/demo.yaml").read_text()
DEMO = yaml.safe_load(DEMO_TEXT)
TINY = yaml.safe_load((BUILTIN_DIR / "tiny.yaml").read_text())
FUZZ = fuzz_settings(max_examples=150)
pytestmark = pytest.mark.usefixtures("fuzz_time_limit")

ODD_SCALARS = st.sampled_from(
    [None, True, False, 0, -1, -(2**63), 2**63, 2**64 + 1, 10**400, -(10**400), 1e308, -1e-308, float("inf"), float("-inf"),
     float("nan"), "", "~", "1e999", "-1e999", "nan", "0x10", "-0", "CC-MAIN-2024-10", "../nope", "s3://b/k", "\x00", "中文"]
)  # fmt: skip
SCALARS = ODD_SCALARS | ODD_SCALARS | st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
GARBAGE = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | st.integers(-3, 3), inner, max_size=4),
    max_leaves=12,
)


def key_paths(data, prefix=()):
    """Every key path of a nested mapping (lists are leaves)."""
    for key, value in data.items():
        yield (*prefix, key)
        if isinstance(value, dict):
            yield from key_paths(value, (*prefix, key))


def mutate(data: dict, rng: random.Random, how: str, value):
    """`data` with one key path replaced by `value`, deleted, or joined by an unknown key holding it."""
    data = copy.deepcopy(data)
    path = rng.choice(list(key_paths(data)))
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    if how == "replace":
        parent[path[-1]] = value
    elif how == "delete":
        del parent[path[-1]]
    else:
        path = (*path[:-1], "no_such_key_" + str(rng.randrange(100)))
        parent[path[-1]] = value
    return data, path


def setup_demo(tmp_path: Path) -> Path:
    """configs/demo.yaml's neighbourhood: its relative paths (../samples) resolve from tmp_path/configs."""
    (tmp_path / "configs").mkdir(exist_ok=True)
    if not (tmp_path / "samples").exists():
        (tmp_path / "samples").symlink_to(REPO / "samples")
    return tmp_path / "configs" / "c.yaml"


def load_or_config_error(load, path: Path, key_path=()):
    """Loading succeeds, or raises exactly ConfigError (pytest.raises would also pass a subclass of
    ValueError it should not) naming the file and, when one key was changed, that key's section (a key
    inside a section: the errors of nested dataclasses and __post_init__ checks are the section's) or,
    at the top level, the key."""
    try:
        return load(str(path))
    except ConfigError as exc:
        message = str(exc)
        assert type(exc) is ConfigError and path.name in message, message
        if len(key_path) > 1:
            assert f"{path.name}.{key_path[0]}" in message, (key_path, message)
        elif key_path:
            assert key_path[0] in message, (key_path, message)
        return None


# Values no key of either config may take (each must be refused, naming the key), and odd ones some may.
NEVER_VALID = [10**400, float("nan"), {"nested": [{"junk": None}]}]
SOMETIMES_VALID = [None, -1, float("inf"), "\x00", []]
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's: the YAML writing is not what is timed


def test_every_key_with_every_odd_value(tmp_path):
    """Every key path of configs/demo.yaml and of the tiny built-in, set to each odd value in turn:
    loaded, or refused with ConfigError naming the key's section; the never-valid values always refused."""
    run = setup_demo(tmp_path)
    train = tmp_path / "t.yaml"
    # The run config's loads cost ~4x the train config's (its train: section reads the tiny built-in
    # too): it gets the never-valid values and the numeric odd ones.
    for document, load, path, values in (
        (DEMO, load_run_config, run, NEVER_VALID + SOMETIMES_VALID[1:3]),
        (TINY, load_train_config, train, NEVER_VALID + SOMETIMES_VALID),
    ):
        for key_path in key_paths(document):
            for value in values:
                data = copy.deepcopy(document)
                parent = data
                for key in key_path[:-1]:
                    parent = parent[key]
                parent[key_path[-1]] = value
                path.write_text(yaml.dump(data, Dumper=DUMPER, allow_unicode=True))
                config = load_or_config_error(load, path, key_path)
                assert config is None or not any(value is v for v in NEVER_VALID), (key_path, value)


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), how=st.sampled_from(["replace", "replace", "delete", "unknown"]), value=ODD_SCALARS | GARBAGE)
def test_mutated_demo_config_fails_only_with_config_error_naming_the_key(tmp_path, seed, how, value):
    path = setup_demo(tmp_path)
    data, key_path = mutate(DEMO, random.Random(seed), how, value)
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    config = load_or_config_error(load_run_config, path, key_path)
    if how == "unknown":  # an unknown key is never ignored
        assert config is None


@FUZZ
@given(document=GARBAGE)
def test_random_yaml_documents_fail_only_with_config_error(tmp_path, document):
    path = tmp_path / "random.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    load_or_config_error(load_run_config, path)
    load_or_config_error(load_train_config, path)


YAML_ODDITIES = [
    b"output_dir: !!python/object/apply:os.system ['true']\n",  # safe_load refuses it
    b"output_dir: !!binary aGVsbG8=\n",
    b"output_dir: 2024-01-01\n",  # a date, not a str
    b"output_dir: o\ningest: {inputs: !!set {a: null}}\n",
    b"a: &a [*a]\noutput_dir: o\n",  # a list that holds itself
    b"output_dir: o\nray: &r {num_cpus: 2}\ndumps: *r\n",
    b"output_dir: o\n" + b"ingest: " + b"[" * 5000 + b"]" * 5000 + b"\n",  # deep nesting
    b"output_dir: o\nfilter: " + b"{a: " * 2000 + b"1" + b"}" * 2000 + b"\n",
    b"x: &x [a, a, a, a, a, a, a, a, a]\ny: &y [*x, *x, *x, *x, *x, *x, *x, *x, *x]\nz: &z [*y, *y, *y, *y, *y, *y, *y, *y, *y]\n"
    b"output_dir: o\ningest: {inputs: [*z, *z, *z, *z, *z, *z, *z, *z, *z]}\n",  # aliases: a billion laughs, small
    b"\xff\xfe\x00o\x00u\x00t\x00",
    b"output_dir: \x80\x81\x82\n",
    b"\x00\x01\x02",
    b"? [a, b]\n: c\n",  # a key YAML cannot hash
    b"output_dir: o\noutput_dir: p\n",
    b"output_dir: o\ningest: ../nope.yaml\n",  # a section's file that is not there
    b"output_dir: o\ntrain: {base: c.yaml}\n",  # a train section whose base is this run config
    b"",
]


@settings(FUZZ, max_examples=60)
@given(seed=st.integers(0, 2**32 - 1), op=st.sampled_from(["flip", "cut", "insert", "binary"]))
@example(seed=0, op="oddity")
def test_damaged_config_text_fails_only_with_config_error(tmp_path, seed, op):
    rng = random.Random(seed)
    path = setup_demo(tmp_path)
    if op == "oddity":  # every fixed oddity, in one example
        texts = YAML_ODDITIES
    else:
        data = bytearray(DEMO_TEXT.encode())
        if op == "flip":
            for _ in range(rng.randint(1, 10)):
                data[rng.randrange(len(data))] = rng.choice(b":-[]{}&*!|>'\"#%@`, \n\t\x00\xff" + bytes([rng.randrange(256)]))
        elif op == "cut":
            data = data[: rng.randrange(len(data))]
        elif op == "insert":
            at = rng.randrange(len(data))
            data[at:at] = rng.choice([b"\n  nested: {", b"\n- x\n", b": :", b"\n\t", b"&a ", b"*a", b"!!int ", b"\xef\xbb\xbf"])
        else:
            data = rng.randbytes(rng.randint(1, 200))
        texts = [bytes(data)]
    for text in texts:
        path.write_bytes(text)
        load_or_config_error(load_run_config, path)
        load_or_config_error(load_train_config, path)


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), how=st.sampled_from(["replace", "replace", "delete", "unknown", "base"]), value=ODD_SCALARS | GARBAGE)
def test_mutated_train_config_fails_only_with_config_error_naming_the_key(tmp_path, seed, how, value):
    path = tmp_path / "t.yaml"
    if how == "base":  # `base:` a built-in, garbage, a missing file, a name too long for one, or itself
        data, key_path = {**TINY, "base": random.Random(seed).choice([value, "tiny", "1b", "nope", "x" * 300, str(path)])}, ()
    else:
        data, key_path = mutate(TINY, random.Random(seed), how, value)
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    config = load_or_config_error(load_train_config, path, key_path)
    if how == "unknown":
        assert config is None


def test_looping_base_chains_are_a_config_error(tmp_path):
    """`base:` naming the file itself, or two files naming each other: an error that says so, not a
    RecursionError (nor, deep in it, a misleading YAML error)."""
    (tmp_path / "self.yaml").write_text(f"base: {tmp_path / 'self.yaml'}\nmax_steps: 2\n")
    (tmp_path / "a.yaml").write_text(f"base: {tmp_path / 'b.yaml'}\n")
    (tmp_path / "b.yaml").write_text(f"base: {tmp_path / 'a.yaml'}\n")
    for name, loop in (("self.yaml", "self.yaml -> self.yaml"), ("a.yaml", "a.yaml -> b.yaml -> a.yaml")):
        with pytest.raises(ConfigError, match=f"base: the chain loops \\({loop}\\)"):
            load_train_config(str(tmp_path / name))
    run = tmp_path / "run.yaml"  # the same loop under a run config's train: section names the key
    run.write_text(f"output_dir: out\ntrain: {{base: {tmp_path / 'a.yaml'}}}\n")
    with pytest.raises(ConfigError, match=r"run.yaml.train: .*a.yaml -> b.yaml -> a.yaml"):
        load_run_config(str(run))
    (tmp_path / "c.yaml").write_text("base: no-such-config\n")  # a missing base names the file holding the key
    with pytest.raises(ConfigError, match=r"c.yaml: base: \S*/no-such-config: no such file"):
        load_train_config(str(tmp_path / "c.yaml"))


def test_a_relative_base_is_relative_to_the_config_that_names_it(tmp_path):
    """Like every path in a config: a file's `base:` from that file's folder, a run config's
    `train: {base: ...}` from the run config's folder, wherever the command runs (here: the repo)."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/parent.yaml").write_text("base: tiny\nmax_steps: 7\n")
    (tmp_path / "sub/child.yaml").write_text("base: parent.yaml\nlog_interval: 3\n")
    child = load_train_config(str(tmp_path / "sub/child.yaml"))
    assert (child.max_steps, child.log_interval) == (7, 3)
    (tmp_path / "run.yaml").write_text("output_dir: out\ntrain: {base: sub/child.yaml}\n")
    assert load_run_config(str(tmp_path / "run.yaml")).train.max_steps == 7
