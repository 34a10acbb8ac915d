"""Training on several processes, each run matched against one process: data parallel on 2 Ray Train
workers (one killed and restarted by Ray Train), tensor and context parallel on torchrun's gloo
ranks (resumed in other layouts), and a run folder the machines do not share refused at start."""

import json
import threading
import time
from pathlib import Path

import pytest
import torch

from crawlmill.pipeline.ray_tasks import RayOptions
from crawlmill.training.launch import launch

from .conftest import final_weights, tiny_config, train_records
from .launchers import cli_errors, launch_nodes, torchrun, torchrun_config

pytestmark = pytest.mark.heavy(180)  # seconds on 2 cores: runs first (tests/conftest.py)


def kill_a_train_worker_once(appears: Path, killed: list[int], timeout_s: float = 300) -> None:
    """SIGKILL one Ray Train worker process of this test's own Ray (its processes descend from this
    one) once `appears` exists; run in a thread. The workers are looked up while waiting, so that the
    kill lands right after `appears` (the run has few steps left after it)."""
    import psutil

    def workers() -> list[psutil.Process]:
        found = []
        for proc in psutil.Process().children(recursive=True):
            try:
                if "RayTrainWorker" in " ".join(proc.cmdline()):
                    found.append(proc)
            except psutil.Error:
                continue
        return found

    deadline, known, looked = time.monotonic() + timeout_s, [], 0.0
    while not appears.exists() and time.monotonic() < deadline:
        if len(known) < 2 and time.monotonic() - looked > 0.25:  # the first attempt's two workers
            known, looked = workers(), time.monotonic()
        time.sleep(0.02)
    for candidates in (known, None):  # the workers found while waiting, else a look now
        for proc in candidates if candidates is not None else workers():
            try:
                if proc.is_running():
                    proc.kill()
                    killed.append(proc.pid)
                    return
            except psutil.Error:
                continue


@pytest.fixture(scope="module")
def one_process(tiny_shards, tmp_path_factory) -> Path:
    """The run the data-parallel (Ray Train) and model-parallel runs below must match: torchrun_config in one plain process."""
    return torchrun(tmp_path_factory.mktemp("one-process"), "one", torchrun_config(tiny_shards), ranks=1)


def test_two_ray_workers_match_one_worker_and_a_killed_worker_is_restarted_from_the_checkpoint(ray_local, tiny_shards, one_process, tmp_path, capfd, monkeypatch):
    """Global batch 8 = 2 workers x 1 micro batch of 4, or 1 worker x 2 micro batches of 4 (the
    one-process run of torchrun_config, clipping on at every step). One of the two workers' processes
    is SIGKILLed once the step-2 checkpoint is complete: Ray Train starts the workers again
    (max_restarts 1), they continue from the run's last checkpoint, and the whole run still matches
    the one worker's, step for step. Ray Train's placement-group cleaner, which asks a dashboard-less
    local Ray's State API every second, warns nothing (a local Ray for training: ray_tasks.RAY_TRAIN_AHEAD)."""
    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")  # the controller's poll of the workers (default 2 s): ends and failures seen sooner
    settings = {k: v for k, v in torchrun_config(tiny_shards).items() if k not in ("base", "data")}  # 6 steps, a checkpoint every 2
    two = tiny_config(tiny_shards, **settings, workers=2, max_restarts=1)
    killed: list[int] = []
    killer = threading.Thread(target=kill_a_train_worker_once, args=(tmp_path / "two/checkpoints/step-00000002/meta.json", killed))
    killer.start()
    try:
        summary = launch(two, tmp_path / "two", ray_options=RayOptions())  # Ray Train's workers trained
    finally:
        killer.join()
    one = one_process
    assert (summary["step"], summary["total_steps"], summary["loss"]) == (6, 6, train_records(tmp_path / "two")[-1]["loss"])
    run = json.loads((tmp_path / "two/run.json").read_text())
    assert run["world_size"] == 2 and run["data_parallel"] == 2
    printed = capfd.readouterr()
    assert "[train] step 6" in printed.out + printed.err  # the workers' lines reach this process
    assert "Failed to query Ray Train Controller" not in printed.out + printed.err
    resumed = train_records(tmp_path / "two", "resumed")
    assert killed and len(resumed) == 1 and 2 <= resumed[0]["step"] < 6, (killed, resumed)  # the kill landed mid-run
    print(f"worker {killed[0]} killed; the restarted workers resumed from step {resumed[0]['step']}")
    a, b = train_records(one), train_records(tmp_path / "two")
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 7))  # each step once
    for x, y in zip(a, b):
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-5) and y["grad_norm"] == pytest.approx(x["grad_norm"], rel=1e-4)
    assert train_records(tmp_path / "two", "valid")[0]["loss"] == pytest.approx(train_records(one, "valid")[0]["loss"], rel=1e-5)
    wa, wb = final_weights(one), final_weights(tmp_path / "two")
    # float sums in another order: Adam turns the embedding rows' near-zero gradients into full steps (lr 3e-3), 1e-5 apart
    assert all(torch.allclose(wa[k], wb[k], rtol=1e-4, atol=3e-5) for k in wa)


def test_torchrun_ranks_train_tensor_parallel_as_one_process(tiny_shards, one_process, tmp_path):
    """`torchrun --nproc-per-node 2 -m crawlmill.cli train ...`: two gloo ranks, tensor parallel,
    stopped after 4 steps and resumed from TP-sharded checkpoints, give the losses, gradient norms
    and final weights and Adam moments of one process (data parallel ranks: the Ray Train test). Clipping is on at every
    step (norms ~0.4 > 0.2): a norm over one TP rank's slices (torch's clip_grad_norm_) is 12% off.
    The resume finds its newest checkpoint damaged in one rank's RNG file only: both ranks go back
    to the same checkpoint before it (one all-reduce), or they would load different steps and
    deadlock or differ (one rank's model file: test_urls.py's two machines)."""
    config = torchrun_config(tiny_shards)

    def run(name: str, parallel: dict, *more: str, ranks: int = 2) -> Path:
        return torchrun(tmp_path, name, {**config, "parallel": parallel}, *more, ranks=ranks)

    def cut(path: Path) -> None:  # a disk fault on one rank's file only
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    one = one_process
    tensor = run("tensor", {"tensor": 2}, "--stop-after", "4")
    assert train_records(tensor)[-1]["step"] == 4
    cut(tensor / "checkpoints/step-00000004/rank-00001.pt")
    run("tensor", {"tensor": 2}, "--resume")  # from step 2
    assert train_records(tensor, "resumed") == [{"kind": "resumed", "step": 2, "checkpoint": "step-00000002", "skipped": ["step-00000004"]}]
    run_info = json.loads((tensor / "run.json").read_text())
    assert (run_info["world_size"], run_info["data_parallel"]) == (2, 1)
    reference, records = train_records(one), train_records(tensor)
    assert [r["step"] for r in records] == [r["step"] for r in reference] == list(range(1, 7))
    for x, y in zip(reference, records):
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-5) and y["grad_norm"] == pytest.approx(x["grad_norm"], rel=1e-4)
    assert train_records(tensor, "valid")[0]["bpb"] == pytest.approx(train_records(one, "valid")[0]["bpb"], rel=1e-5)
    weights, sharded = final_weights(one), final_weights(tensor)  # global tensors: the TP slices joined
    assert weights.keys() == sharded.keys()
    assert all(torch.allclose(weights[k], sharded[k], rtol=1e-3, atol=1e-7) for k in weights), [k for k in weights if not torch.allclose(weights[k], sharded[k], rtol=1e-3, atol=1e-7)]
    # `crawlmill export` joins the TP-sharded checkpoint into the Llama weights of the one-process run
    from safetensors.torch import load_file
    from typer.testing import CliRunner

    from crawlmill.cli import app

    for name, run_dir in (("one", one), ("tensor", tensor)):
        done = CliRunner().invoke(app, ["export", str(run_dir), "--output", str(tmp_path / f"hf-{name}"), "--dtype", "fp32"])
        assert done.exit_code == 0, done.output
    llama_one, llama_tensor = (load_file(tmp_path / f"hf-{name}/model.safetensors") for name in ("one", "tensor"))
    assert llama_one.keys() == llama_tensor.keys() and len(llama_one) == 3 + 2 * 9
    assert all(torch.allclose(llama_one[k], llama_tensor[k], rtol=1e-3, atol=1e-7) for k in llama_one)


def test_torchrun_ranks_train_context_parallel_as_one_process_and_resume_on_other_layouts(tiny_shards, one_process, tmp_path):
    """Two gloo ranks, each holding half of every sequence (context parallelism without Transformer
    Engine: training/context_parallel.py), give the losses, gradient norms (clipping on at every
    step), bits per byte and final weights and Adam moments of one process holding whole sequences,
    in a run that changes layout at each resume (layout.py): one process to step 2, context 2 on two
    ranks to step 4, then tensor 2 on two ranks to the end (a resume in the same layout: the
    tensor-parallel test above), launched as two nodes of one rank each (torchrun --nnodes 2)."""
    config, one = torchrun_config(tiny_shards), one_process
    layouts = [({}, 1, 1, "2"), ({"context": 2}, 2, 1, "2"), ({"tensor": 2}, 2, 2, None)]  # the last on two nodes
    for index, (parallel, ranks, nodes, stop_after) in enumerate(layouts):
        more = [*(["--resume"] if index else []), *(["--stop-after", stop_after] if stop_after else [])]
        run = torchrun(tmp_path, "run", {**config, "parallel": parallel}, *more, ranks=ranks, port=29543, nodes=nodes)
    assert json.loads((run / "checkpoints/step-00000006/meta.json").read_text())["world_size"] == 2  # the two nodes' ranks
    meta = json.loads((run / "checkpoints/step-00000004/meta.json").read_text())
    assert (meta["world_size"], meta["parallel"], meta["optimizer_sharding"]) == (2, {"tensor": 1, "pipeline": 1, "context": 2}, "torch")
    assert [r["step"] for r in train_records(run, "resumed")] == [2, 4]
    reference, records = train_records(one), train_records(run)
    assert [r["step"] for r in records] == [r["step"] for r in reference] == list(range(1, 7))
    for x, y in zip(reference, records, strict=True):
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-5) and y["grad_norm"] == pytest.approx(x["grad_norm"], rel=1e-4)
    assert train_records(run, "valid")[0]["bpb"] == pytest.approx(train_records(one, "valid")[0]["bpb"], rel=1e-5)
    weights, resumed = final_weights(one), final_weights(run)
    assert weights.keys() == resumed.keys()
    assert all(torch.allclose(weights[k], resumed[k], rtol=1e-3, atol=1e-7) for k in weights), [k for k in weights if not torch.allclose(weights[k], resumed[k], rtol=1e-3, atol=1e-7)]


def test_a_run_folder_that_the_machines_do_not_share_is_refused_at_start(tiny_shards, tmp_path):
    """Two nodes whose `--output run` is a folder on each one's own disk (here: each node's own
    working folder): every rank stops at start naming it, before any step, instead of training for
    hours into checkpoints that lack the other machine's shards (found only at the first resume)."""
    machines = [tmp_path / f"machine-{n}" for n in range(2)]
    for machine in machines:
        machine.mkdir()
    config = {**torchrun_config(tiny_shards), "parallel": {"tensor": 2}}
    for code, stderr in launch_nodes(tmp_path, "unshared", config, nodes=2, node_cwd=machines, output="run", port=29563):
        assert code and "1 of 2 ranks do not see this run folder's files" in cli_errors(stderr), stderr[-3000:]
    assert not [p for machine in machines for p in (machine / "run").iterdir()]  # nothing written, the probe removed
