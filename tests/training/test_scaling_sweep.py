"""IsoFLOP sweeps (training/scaling_sweep.py, `crawlmill plan sweep`): every written config loads and
trains the budget's M on its D; repeated or too few inputs are said, bad ones refused before a folder
is made; --overwrite replaces an earlier sweep's configs and keeps its runs."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crawlmill.cli import app
from crawlmill.training.config import load_train_config
from crawlmill.training.memory import GIB, estimate_memory
from crawlmill.training.planner import optimum

BUDGETS = [1e17, 3e17, 1e18]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def test_sweep_cli_writes_configs_that_load_and_round_trip(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    result = invoke("plan", "sweep", "--budgets", *BUDGETS, "--points", 5, "--output", tmp_path / "sweep", "--data", shards, "--micro-batch-size", 2)
    assert result.exit_code == 0, result.output
    index = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert index["budgets"] == BUDGETS and len(index["runs"]) == 15
    for budget in BUDGETS:
        best = optimum(budget)
        runs = [r for r in index["runs"] if r["budget"] == budget]
        scales = [r["M"] for r in runs]
        assert len(runs) == 5 and scales == sorted(scales) and len(set(scales)) == 5
        # log-spaced x1/4 .. x4 around M_opt, each snapped to whole layers of a 128-multiple width
        # (at these small budgets, 2-8 layers: a layer more or less is 10-15% of M)
        assert scales[0] / best.model_scale_opt == pytest.approx(0.25, rel=0.15)
        assert scales[-1] / best.model_scale_opt == pytest.approx(4, rel=0.15)
        assert scales[0] < best.model_scale_opt < scales[-1]
        for run in runs:
            config = load_train_config(str(tmp_path / "sweep" / run["file"]))
            assert config.model.non_embedding_flops_per_token() == run["M"]
            assert config.train_tokens == run["D"] and run["compute"] == run["M"] * run["D"]
            assert run["compute"] == pytest.approx(budget, rel=0.01)  # D = C/M, in whole steps
            assert config.optimizer.lr == pytest.approx(best.lr_opt, rel=1e-3)
            assert config.global_batch_size == run["global_batch_size"] and config.global_batch_size % 2 == 0
            assert config.global_batch_size * 4096 == pytest.approx(best.batch_tokens_opt, abs=2 * 4096)
            assert config.train_tokens % (config.global_batch_size * 4096) == 0
            # each run's memory per GPU: the estimate for the config as written (micro batch 2, one rank, bf16)
            estimate = estimate_memory(config, 102_400, 1, cuda=True)  # the config's global batch
            assert run["memory_gib"] == round(estimate.total / GIB, 2) and config.micro_batch_size == 2
            assert config.data.shards == [str(shards.resolve())]
            assert config.output == str(tmp_path / "sweep" / "runs" / run["name"])
            assert config.schedule.warmup_steps <= 2000 and config.schedule.warmup_steps <= 0.05 * run["steps"] + 1
    assert "wrote 15 configs" in result.output and index["warnings"] == [] and "warning" not in result.output


def test_a_budget_too_small_for_its_points_is_warned_of(tmp_path):
    """Targets below the smallest real shape snap to one model: fewer sizes than asked, said (a curve
    of one point cannot be fitted), in the output and in sweep.json."""
    result = invoke("plan", "sweep", "--budgets", "1e11", "1e15", "--points", 3, "--seq-length", 128, "--output", tmp_path / "sweep")
    assert result.exit_code == 0, result.output
    index = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert len({r["M"] for r in index["runs"] if r["budget"] == 1e11}) == 1 and len({r["M"] for r in index["runs"] if r["budget"] == 1e15}) == 3
    assert index["warnings"][0] == "budget 1e11: 1 model size(s) of the 3 asked (targets snapped to the same shapes); an IsoFLOP minimum needs at least 3: raise the budget or --span"
    assert "warning: budget 1e11: 1 model size(s) of the 3 asked" in result.output
    assert index["warnings"][1].startswith("budget(s) 1e11, 1e15 lie below the paper's smallest (1e17 FLOPs)") and len(index["warnings"]) == 2


def test_runs_off_their_budget_and_data_too_small_are_warned_of(tmp_path, tiny_shards):
    """A budget of one step spends 3x its compute; shards of a few thousand tokens read hundreds of
    epochs: both said before a run is launched (and a sweep within the laws' range says nothing)."""
    result = invoke("plan", "sweep", "--budgets", "1e10", "--points", 3, "--output", tmp_path / "a")
    index = json.loads((tmp_path / "a" / "sweep.json").read_text())
    off = [w for w in index["warnings"] if "more than 10% off their budget" in w]
    assert result.exit_code == 0 and len(off) == 1 and "c1e10-m7.47e6: 1 step(s), 3.06e10 FLOPs for 1e10" in off[0]
    assert any("global batch far from B_opt" in w for w in index["warnings"])
    tokens = json.loads((tiny_shards / "manifest.json").read_text())["tokens"]
    result = invoke("plan", "sweep", "--budgets", "1e12", "1e13", "--points", 3, "--seq-length", 128, "--data", tiny_shards, "--output", tmp_path / "b")
    index = json.loads((tmp_path / "b" / "sweep.json").read_text())
    longest = max(index["runs"], key=lambda run: run["D"])
    epochs = [w for w in index["warnings"] if w.startswith(f"--data {tiny_shards} holds {tokens:,} tokens")]
    assert result.exit_code == 0 and len(epochs) == 1 and f"the longest run, {longest['name']}, reads {longest['D'] / tokens:,.1f} epochs" in epochs[0]
    assert not [w for w in json.loads(invoke("plan", "sweep", "--budgets", "1e17", "1e18", "--output", tmp_path / "c", "--json").output)["warnings"] if "budget" in w]


def test_a_sweep_for_tensor_and_pipeline_parallelism_writes_shapes_that_split(tmp_path):
    result = invoke("plan", "sweep", "--budgets", "1e21", "--points", 3, "--tensor-parallel", 4, "--pipeline-parallel", 2, "--data-parallel", 8, "--output", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    for run in json.loads(result.output[result.output.index("{"):])["runs"]:
        config = load_train_config(str(tmp_path / run["file"]))
        assert (config.parallel.tensor, config.parallel.pipeline) == (4, 2)
        assert config.model.num_attention_heads % 4 == 0 and config.model.ffn_hidden_size % 4 == 0 and config.model.num_layers % 2 == 0
        assert run["memory_gib"] == round(estimate_memory(config, 102_400, 8, cuda=True).total / GIB, 2)


def test_sweep_lr_and_batch_factors_make_a_grid(tmp_path):
    result = invoke("plan", "sweep", "--budgets", "1e19", "--points", 3, "--lr-factors", 0.5, 1, 2, "--batch-factors", 0.5, 2, "--output", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    runs = json.loads(result.output)["runs"]
    assert len(runs) == 3 * 3 * 2
    best = optimum(1e19)
    assert sorted({r["lr"] / best.lr_opt for r in runs}) == pytest.approx([0.5, 1, 2], rel=1e-3)
    assert {round(r["batch_factor"], 3) for r in runs} == {0.5, 2.0}
    assert len({r["file"] for r in runs}) == len(runs)


def test_budgets_take_values_in_every_spelling(tmp_path):
    result = invoke("plan", "sweep", "--budgets", "1e17", "--points", 3, "--budgets=3e17", "1e18", "--output", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["budgets"] == [1e17, 3e17, 1e18]


def test_sweep_refuses_to_overwrite_and_checks_its_input(tmp_path):
    assert invoke("plan", "sweep", "--budgets", "1e17", "--output", tmp_path).exit_code == 0
    again = invoke("plan", "sweep", "--budgets", "1e17", "--output", tmp_path)
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert invoke("plan", "sweep", "--budgets", "1e17", "--output", tmp_path, "--overwrite").exit_code == 0
    missing = invoke("plan", "sweep", "--budgets", "1e17", "--output", tmp_path / "x", "--data", tmp_path / "nope")
    assert missing.exit_code == 2 and "no such folder" in missing.output
    negative = invoke("plan", "sweep", "--budgets", "0", "--output", tmp_path / "y")
    assert negative.exit_code == 2 and "positive" in negative.output


def yaml_files(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*.yaml")}


def test_overwrite_leaves_only_the_new_sweeps_configs_and_keeps_runs(tmp_path):
    sweep = tmp_path / "sweep"
    assert invoke("plan", "sweep", "--budgets", *BUDGETS, "--output", sweep).exit_code == 0
    # a config of a still earlier sweep that its sweep.json no longer lists, the user's own file, a trained run
    (sweep / "c9e99-m1e1.yaml").write_text("# crawlmill plan sweep: budget 9e99 FLOPs\nmodel: {}\n")
    (sweep / "notes.yaml").write_text("mine: 1\n")
    (sweep / "runs" / "c1e17-m3.46e7").mkdir(parents=True)
    (sweep / "runs" / "c1e17-m3.46e7" / "run.json").write_text("{}")
    result = invoke("plan", "sweep", "--budgets", "1e18", "--points", 3, "--output", sweep, "--overwrite")
    assert result.exit_code == 0, result.output
    index = json.loads((sweep / "sweep.json").read_text())
    assert yaml_files(sweep) == {run["file"] for run in index["runs"]} | {"notes.yaml"} and len(index["runs"]) == 3
    assert "wrote 3 configs" in result.output
    # runs are never deleted, but said: `plan fit sweep/runs` would mix them with the new sweep's
    assert (sweep / "runs" / "c1e17-m3.46e7" / "run.json").is_file()
    assert "1 run folder(s) of no config of this sweep, kept (c1e17-m3.46e7)" in " ".join(result.output.split())
    assert index["warnings"] and "c1e17-m3.46e7" in index["warnings"][0]


def test_budgets_and_factors_given_twice_are_written_once(tmp_path):
    result = invoke("plan", "sweep", "--budgets", "1e17", "1e17", "3e17", "--lr-factors", 1, 2, 1, "--output", tmp_path)
    assert result.exit_code == 0, result.output
    index = json.loads((tmp_path / "sweep.json").read_text())
    assert index["budgets"] == [1e17, 3e17] and len(index["runs"]) == 2 * 5 * 2
    assert yaml_files(tmp_path) == {run["file"] for run in index["runs"]} and len(yaml_files(tmp_path)) == 20
    assert "wrote 20 configs" in result.output
    text = " ".join(result.output.split())
    assert "warning: --budgets: 1e17 given 2 times: each written once" in text and "--lr-factors: 1 given 2 times" in text


def test_fewer_points_than_a_minimum_needs_are_warned_of(tmp_path):
    result = invoke("plan", "sweep", "--budgets", "1e19", "--points", 2, "--output", tmp_path)
    assert result.exit_code == 0, result.output
    warning = "--points 2: an IsoFLOP minimum needs at least 3 model sizes per budget"
    assert warning in " ".join(result.output.split())
    assert [w for w in json.loads((tmp_path / "sweep.json").read_text())["warnings"] if warning in w]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seq-length", 0], "--seq-length 0: must be at least 1"),
        (["--vocab-size", 0], "--vocab-size 0: must be at least 1"),
        (["--micro-batch-size", -2], "--micro-batch-size -2: must be at least 1"),
        (["--data-parallel", 0], "--data-parallel 0: must be at least 1"),
        (["--points", 0], "--points 0: must be at least 1"),
        (["--split", "90,10"], "split '90,10': expected"),
    ],
)
def test_bad_sweep_options_exit_2_and_create_no_folder(tmp_path, args, message):
    result = invoke("plan", "sweep", "--budgets", "1e17", "--output", tmp_path / "sweep", *args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "sweep").exists()


def test_plans_own_options_before_a_subcommand_are_refused_not_ignored(tmp_path):
    """`plan --seq-length 2048 sweep ...` parses (the option is `plan`'s) but would write 4096-token
    configs: refused by name, nothing written; the same options after `sweep` are its own."""
    result = invoke("plan", "--seq-length", 2048, "--json", "sweep", "--budgets", "1e17", "--output", tmp_path / "sweep")
    message = " ".join(result.output.split())
    assert result.exit_code == 2 and "plan sweep: --seq-length, --json before `sweep` belong to `crawlmill plan` alone" in message, message
    assert not (tmp_path / "sweep").exists()
    fit = invoke("plan", "--compute", "1e20", "fit", tmp_path)
    assert fit.exit_code == 2 and "plan fit: --compute before `fit` belongs to" in " ".join(fit.output.split()), fit.output
    assert invoke("plan", "sweep", "--budgets", "1e17", "--seq-length", 2048, "--output", tmp_path / "sweep").exit_code == 0


def test_split_goes_into_every_config(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    result = invoke("plan", "sweep", "--budgets", "1e17", "--points", 3, "--data", shards, "--split", "90,10,0", "--output", tmp_path / "s")
    assert result.exit_code == 0, result.output
    for run in json.loads((tmp_path / "s" / "sweep.json").read_text())["runs"]:
        config = load_train_config(str(tmp_path / "s" / run["file"]))
        assert config.data.split == "90,10,0" and config.data.shards == [str(shards.resolve())]
    assert invoke("plan", "sweep", "--budgets", "1e17", "--output", tmp_path / "d").exit_code == 0
    assert load_train_config(str(next((tmp_path / "d").glob("*.yaml")))).data.split == "969,30,1"  # the config's default
    assert "--split" in invoke("plan", "sweep", "--help").output
