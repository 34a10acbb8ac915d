"""Shards and training on object storage, on a real S3 server on loopback (tests/s3server.py):
`crawlmill shards inspect|verify|sample|stats` on an s3:// copy of a pack output print what they
print for the local folder, and verify names a damaged remote .bin; the tiny model trains from
s3:// shards into an s3:// run folder, stops after a checkpoint, resumes with --resume on a
machine with an empty cache (a fresh process and cache folder) and matches a local run bit for
bit. The fake secret key appears in no object and no output."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from crawlmill.cli import app
from crawlmill.training.trainer import train
from tests.conftest import REPO
from tests.s3server import SECRET, moto_s3

from .conftest import common_state_in_shards, common_state_places, final_weights, same_weights, tiny_config, train_records
from .launchers import torchrun, torchrun_config

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")
pytestmark = pytest.mark.heavy(100)  # seconds on 2 cores: the last file otherwise, a long tail on one worker

BUCKET = "crawlmill-train"


@pytest.fixture(scope="module")
def s3(tiny_shards, tmp_path_factory):
    """The S3 server with tiny_shards uploaded to s3://BUCKET/shards; the per-machine cache in a
    fresh folder (CRAWLMILL_CACHE) for the module."""
    saved = os.environ.get("CRAWLMILL_CACHE")
    os.environ["CRAWLMILL_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    try:
        with moto_s3(BUCKET) as (fs, env):
            fs.put(str(tiny_shards), f"{BUCKET}/shards", recursive=True)
            yield fs, env
    finally:
        if saved is None:
            os.environ.pop("CRAWLMILL_CACHE", None)
        else:
            os.environ["CRAWLMILL_CACHE"] = saved


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def test_shards_commands_on_s3_print_what_they_print_locally(s3, tiny_shards, tmp_path):
    fs, _ = s3
    url, local = f"s3://{BUCKET}/shards", str(tiny_shards)
    commands = [
        ("inspect", "--json"), ("inspect",), ("verify",), ("verify", "--json"), ("sample", "--n", "3", "--json"),
        ("sample", "--n", "2", "--decode"), ("stats", "--json", "--top", "5"),
    ]  # fmt: skip
    for command in commands:
        there, here = invoke("shards", command[0], url, *command[1:]), invoke("shards", command[0], local, *command[1:])
        assert here.exit_code == 0, (command, here.output)
        assert there.exit_code == 0, (command, there.output)
        # The same bytes but for the folder's name (a rich table is as wide as its title: not compared).
        if command != ("inspect",):
            assert there.output.replace(url, local) == here.output, command
        assert SECRET not in there.output

    manifest = json.loads((tiny_shards / "manifest.json").read_text())
    prefix = manifest["shards"][0]["prefix"]
    data = bytearray(fs.cat_file(f"{BUCKET}/shards/{prefix}.bin"))
    data[10] ^= 1
    fs.pipe_file(f"{BUCKET}/flipped/{prefix}.bin", bytes(data))
    for name in fs.find(f"{BUCKET}/shards"):
        if not name.endswith(f"{prefix}.bin"):
            fs.copy(name, name.replace(f"{BUCKET}/shards/", f"{BUCKET}/flipped/"))
    result = invoke("shards", "verify", f"s3://{BUCKET}/flipped")
    assert result.exit_code == 2 and f"s3://{BUCKET}/flipped/{prefix}.bin: sha256 differs" in result.output
    assert SECRET not in result.output


def test_training_from_s3_shards_into_an_s3_run_resumes_and_matches_the_local_run(s3, tiny_shards, tmp_path, capfd, monkeypatch):
    fs, env = s3
    shards, run = f"s3://{BUCKET}/shards", f"s3://{BUCKET}/runs/tiny"
    settings = {"max_steps": 20, "eval": {"interval": 10, "iters": 2}, "checkpoint": {"every_steps": 5, "keep": 2}}
    train(tiny_config(tiny_shards, **settings), tmp_path / "straight")

    # First leg in this process: shards copied once into the cache, checkpoints uploaded.
    assert train(tiny_config(shards, **settings), run, stop_after=10)["step"] == 10
    complete = sorted(p.rsplit("/", 2)[-2] for p in fs.glob(f"{BUCKET}/runs/tiny/checkpoints/step-*/_COMPLETE"))
    assert complete == ["step-00000005", "step-00000010"]
    assert fs.cat_file(f"{BUCKET}/runs/tiny/checkpoints/latest") == b"step-00000010"
    cached = list(Path(os.environ["CRAWLMILL_CACHE"], "remote").glob("*/shards"))
    assert len(cached) == 1 and not list(cached[0].glob("*.docs.parquet"))  # only what training reads
    assert not list(Path(os.environ["CRAWLMILL_CACHE"], "runs").glob("*/checkpoints/step-*"))  # uploaded, then dropped

    # A half-uploaded later checkpoint (no marker) is never resumed from, and is deleted.
    fs.pipe_file(f"{BUCKET}/runs/tiny/checkpoints/step-00000015/rank-00000.pt", b"half an upload")

    # Second leg: a new process on a "machine" with an empty cache, through the command.
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"base": "tiny", "log_interval": 1, **settings}))
    command = [sys.executable, "-m", "crawlmill.cli", "train", "--config", str(tmp_path / "run.yaml"), "--data", shards, "--output", run, "--resume", "--no-progress"]
    environment = {**os.environ, **env, "RAY_ADDRESS": "", "CRAWLMILL_CACHE": str(tmp_path / "cache2")}
    resumed = subprocess.run(command, env=environment, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    local_run = tmp_path / "from-s3"
    fs.get(f"{BUCKET}/runs/tiny/", str(local_run), recursive=True)
    key = lambda r: (r["step"], r["loss"], r["grad_norm"], r["lr"])  # noqa: E731
    assert [key(r) for r in train_records(local_run)] == [key(r) for r in train_records(tmp_path / "straight")]  # bit for bit
    assert [r["loss"] for r in train_records(local_run, "valid")] == [r["loss"] for r in train_records(tmp_path / "straight", "valid")]
    assert same_weights(final_weights(local_run), final_weights(tmp_path / "straight"))
    assert sorted(p.name for p in (local_run / "checkpoints").glob("step-*")) == ["step-00000015", "step-00000020"]  # keep 2, remotely
    assert (local_run / "checkpoints/step-00000015/_COMPLETE").is_file() and torch.load(local_run / "checkpoints/step-00000015/rank-00000.pt", weights_only=False)
    model = local_run / "checkpoints/step-00000015/model"
    common = common_state_places(model)
    assert len(common) == 1 and (common != ["common.pt"]) == common_state_in_shards()  # rank 0's common part, once
    # megatron-core 0.16: common.pt and a .distcp from every rank; 0.19: none from a rank of replicas only
    files = {".metadata", "metadata.json", "__0_0.distcp"} | (set() if common_state_in_shards() else {"common.pt", "__0_1.distcp"})
    assert {p.name for p in model.iterdir()} == files
    assert (local_run / "run.json").is_file() and list((local_run / "tensorboard").iterdir())
    assert [r["kind"] for r in map(json.loads, (local_run / "log.jsonl").read_text().splitlines())][-1] == "end"

    # A new local run from the s3 run's weights (its newest checkpoint, downloaded for the machine).
    train(tiny_config(tiny_shards, max_steps=1, checkpoint={"init_from": run}), tmp_path / "warm")
    assert train_records(tmp_path / "warm", "initialized") == [{"kind": "initialized", "step": 0, "checkpoint": f"{run}/checkpoints/step-00000020", "from_step": 20}]
    assert abs(train_records(tmp_path / "warm")[0]["loss"] - train_records(tmp_path / "straight")[-1]["loss"]) < 0.15

    # `crawlmill export` of the s3 run: the local straight run's weights (bit for bit), from the bucket
    from safetensors.torch import load_file

    import s3fs

    from crawlmill.training import checkpoint_weights

    fetched: list[int] = []
    fetch = s3fs.core.S3File._fetch_range
    monkeypatch.setattr(s3fs.core.S3File, "_fetch_range", lambda self, start, end: fetched.append(end - start) or fetch(self, start, end))
    monkeypatch.setattr(checkpoint_weights, "URL_BLOCK_BYTES", 4096)  # the tiny model's tensors are small beside the default
    for source, name in ((run, "hf-s3"), (str(tmp_path / "straight"), "hf-local")):
        done = invoke("export", source, "--output", str(tmp_path / name), "--dtype", "fp32")
        assert done.exit_code == 0, done.output
    # read in place: the weights' ranges, not the optimizer's moments beside them (twice the weights)
    stored = sum(p.stat().st_size for p in (local_run / "checkpoints/step-00000020/model").glob("*.distcp"))
    weights = sum(t.numel() * 4 for k, t in final_weights(tmp_path / "straight").items() if not k.startswith("optimizer."))
    assert weights <= sum(fetched) < 0.5 * stored, (sum(fetched), weights, stored)
    exported, local = (load_file(tmp_path / f"{name}/model.safetensors") for name in ("hf-s3", "hf-local"))
    assert exported.keys() == local.keys() and all(torch.equal(exported[k], local[k]) for k in local)
    assert json.loads((tmp_path / "hf-s3/crawlmill_export.json").read_text())["checkpoint"] == f"{run}/checkpoints/step-00000020"

    # `crawlmill eval` of the s3 run on the s3 shards: the local run's figures on the local shards
    for source, data, name in ((run, shards, "s3"), (str(tmp_path / "straight"), str(tiny_shards), "local")):
        done = invoke("eval", source, "--data", data, "--max-tokens", "512", "--json", str(tmp_path / f"eval-{name}.json"), "--no-progress")
        assert done.exit_code == 0, done.output
    remote, here = (json.loads((tmp_path / f"eval-{name}.json").read_text())["results"][0] for name in ("s3", "local"))
    assert remote["tokens"] >= 512 and (remote["loss"], remote["bpb"], remote["tokens"]) == (here["loss"], here["bpb"], here["tokens"])

    # The secret is in no object and in nothing any leg printed.
    for name in fs.find(f"{BUCKET}/runs"):
        assert SECRET.encode() not in fs.cat_file(name), name
    printed = capfd.readouterr()
    for text in (resumed.stdout, resumed.stderr, printed.out, printed.err):
        assert SECRET not in text

    # The pipeline's train stage on an s3 output_dir: the finished run is resumed, not redone, and
    # its figures are read back from the bucket.
    from crawlmill.training.stage import TrainStage, train_task

    config = tiny_config(shards, **settings)
    assert TrainStage(config).sources() == [f"{shards}/manifest.json"]
    from crawlmill.training.checkpoint import Checkpointer

    monkeypatch.setattr(Checkpointer, "load", lambda *args: pytest.fail("a finished run's checkpoint was loaded"))  # checked in place
    monkeypatch.setenv("CRAWLMILL_CACHE", str(tmp_path / "fresh-machine"))  # no staging folder of the run there yet
    figures = train_task(dataclasses.asdict(config), run, None)
    assert figures["steps"] == 20 and figures["loss"] == train_records(tmp_path / "straight")[-1]["loss"]


def test_two_machines_without_a_shared_disk_train_into_an_s3_run_and_resume_there(s3, tiny_shards, tmp_path):
    """`torchrun --nnodes 2`, one rank on each "machine" (tensor parallel 2), each with its own
    empty disk (CRAWLMILL_CACHE: its copy of the s3 shards, its staging folder, its GPTDataset index
    cache), train into an s3 run folder, stop after 4 steps and resume there: the losses and gradient
    norms of one process on the local shards. Megatron builds the index cache on global rank 0 only
    and the other ranks read it: the second machine's rank found none on its disk. The newest
    checkpoint's model file of the second machine's rank is cut short in the bucket: both machines
    go back to the checkpoint before it (one all-reduce), or they would load different steps. The
    resume is launched as `srun` does, without LOCAL_RANK: each machine's rank still downloads the
    checkpoint for its own disk (it looks which folder it sees; LOCAL_RANK used to decide)."""
    fs, env = s3
    run = f"s3://{BUCKET}/runs/two-machines"
    config = {**torchrun_config(f"s3://{BUCKET}/shards"), "parallel": {"tensor": 2}}
    machines = [{**env, "CRAWLMILL_CACHE": str(tmp_path / f"machine-{n}")} for n in range(2)]
    torchrun(tmp_path, "two", config, "--stop-after", "4", nodes=2, node_env=machines, output=run, port=29561)
    for rank_1s in fs.glob(f"{BUCKET}/runs/two-machines/checkpoints/step-00000004/model/__1_*.distcp"):  # a fault in one rank's files only
        fs.pipe_file(rank_1s, fs.cat_file(rank_1s)[: fs.size(rank_1s) // 2])
    torchrun(tmp_path, "two", config, "--resume", ranks=2, nodes=2, node_env=machines, output=run, port=29561, srun=True)
    one = tmp_path / "one"  # the same settings in this process, on the local shards
    train(tiny_config(tiny_shards, **{k: v for k, v in torchrun_config(tiny_shards).items() if k not in ("base", "data")}), one)
    fs.get(f"{BUCKET}/runs/two-machines/log.jsonl", str(tmp_path / "from-s3/log.jsonl"))
    reference, records = train_records(one), train_records(tmp_path / "from-s3")
    assert [r["step"] for r in records] == [r["step"] for r in reference] == list(range(1, 7))
    for x, y in zip(reference, records, strict=True):
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-5) and y["grad_norm"] == pytest.approx(x["grad_norm"], rel=1e-4)
    assert train_records(tmp_path / "from-s3", "resumed") == [{"kind": "resumed", "step": 2, "checkpoint": "step-00000002", "skipped": ["step-00000004"]}]
    for machine in machines:  # each copied the shards and built the index cache on its own disk, and kept no checkpoint there
        disk = Path(machine["CRAWLMILL_CACHE"])
        assert list(disk.glob("remote/*/shards/*.bin")) and len(list(disk.glob("runs/*/data_cache/*-description.txt"))) >= 2, machine
        assert not list(disk.glob("runs/*/checkpoints/*step-*")), machine


def test_a_new_run_into_a_url_uploads_no_tensorboard_events_of_an_earlier_one(s3):
    """The machine's staging folder of a URL keeps an earlier run's TensorBoard events (that run
    was overwritten, or killed before its first checkpoint): a new run there must not upload them
    as its own; a resumed one keeps its events."""
    from crawlmill.training.runstore import TENSORBOARD, RunStore

    fs, _ = s3
    for run, resumed in (("fresh", False), ("resumed", True)):
        store = RunStore(f"s3://{BUCKET}/runs/{run}")
        if resumed:
            fs.pipe_file(f"{BUCKET}/runs/{run}/log.jsonl", b'{"kind": "train", "step": 1}\n')
        (store.local / TENSORBOARD).mkdir(parents=True, exist_ok=True)
        (store.local / TENSORBOARD / "events.out.tfevents.1.earlier").write_bytes(b"an earlier run's curves")
        store.pull_log()
        store.push_logs()
        assert fs.exists(f"{BUCKET}/runs/{run}/tensorboard/events.out.tfevents.1.earlier") == resumed, run


def test_loads_of_one_url_checkpoint_at_once_on_a_machine_each_keep_their_own_copy(s3, tiny_shards, monkeypatch):
    """Two loads of the same s3 checkpoint at once on one machine (two `crawlmill eval s3://run`, or
    an eval beside a run resuming there) download it into the machine's staging folder: each into a
    copy of its own, and a start's cleanup of killed loads (remove_unfinished) leaves a copy in use
    alone. They used to share one folder, which the first to finish deleted under the other."""
    from crawlmill.training import checkpoint as ckpt
    from crawlmill.training.layout import ResumeLayout
    from crawlmill.training.runstore import RunStore

    run = f"s3://{BUCKET}/runs/loaded-twice"
    train(tiny_config(tiny_shards, max_steps=2, checkpoint={"every_steps": 2}), run)
    from crawlmill.training.checkpoint_source import find_checkpoint

    folder, meta = find_checkpoint(run)
    store = RunStore(run)
    reading, release = threading.Event(), threading.Event()

    def read_model_files(sharded, path, trusted):  # what a load reads, the first one slowly
        if threading.current_thread().name.startswith("first"):
            reading.set()
            release.wait(60)
        return {p.name: p.read_bytes() for p in sorted(Path(path).iterdir())}

    monkeypatch.setattr(ckpt, "load_sharded", read_model_files)

    def load() -> dict:
        reader = ckpt.Checkpointer(store.local, 0, 1, 1, False, lambda: None, remote=store.remote)
        return reader.load(folder, meta, ResumeLayout(optimizer_sharding=None), {})[0]

    with ThreadPoolExecutor(1, thread_name_prefix="first") as pool:
        first = pool.submit(load)
        assert reading.wait(60)
        assert ".metadata" in load()  # the second load, start to end, while the first reads
        ckpt.Checkpointer(store.local, 0, 1, 1, False, lambda: None, remote=store.remote).remove_unfinished()
        release.set()
        assert ".metadata" in first.result(timeout=60)
    assert not list((store.local / "checkpoints").glob(".resume-*"))  # each copy and its lock removed after its load


def test_concurrent_copies_of_a_shard_folder_download_it_once(s3, tiny_shards, tmp_path, monkeypatch):
    """The local ranks of a machine start together: one downloads under the lock, the others wait
    and take its copy; a changed folder (another ETag) is fetched again."""
    import tempfile

    from crawlmill.local_cache import local_copy
    from crawlmill.training.runstore import shard_names

    monkeypatch.setenv("CRAWLMILL_CACHE", str(tmp_path / "cache"))
    downloads: list[str] = []  # local_copy downloads into a fresh temporary folder each time
    original = tempfile.mkdtemp

    def counted(*args, **kwargs):
        downloads.append(kwargs.get("prefix", ""))
        return original(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkdtemp", counted)
    names = shard_names(json.loads((tiny_shards / "manifest.json").read_text()))
    with ThreadPoolExecutor(4) as pool:
        copies = set(pool.map(lambda _: local_copy(f"s3://{BUCKET}/shards", names), range(4)))
    assert len(copies) == 1 and len(downloads) == 1
    copy = copies.pop()
    assert sorted(p.name for p in copy.iterdir()) == sorted(names)
    s3[0].pipe_file(f"{BUCKET}/shards/manifest.json", (tiny_shards / "manifest.json").read_bytes() + b"\n")
    assert local_copy(f"s3://{BUCKET}/shards", names) != copy and len(downloads) == 2
    s3[0].put_file(str(tiny_shards / "manifest.json"), f"{BUCKET}/shards/manifest.json")  # as it was


def test_checkpoint_uploads_run_beside_training_and_their_errors_stop_the_run(s3, monkeypatch):
    """Step 5's upload is held until training has logged step 8: the run only gets there if the
    upload runs beside it (training/checkpoint.py). Then a failed upload fails the run, naming it."""
    import threading

    from crawlmill.training import checkpoint, trainer

    fs, _ = s3
    progressed = threading.Event()
    record = trainer.Reporter.record

    def spying_record(self, kind, **values):
        if kind == "train" and values["step"] == 8:
            progressed.set()
        return record(self, kind, **values)

    real_upload, threads, held = checkpoint.upload, [], []

    def held_upload(local, remote):
        threads.append(threading.current_thread().name)
        if "step-00000005" in str(remote) and not progressed.is_set():
            held.append(progressed.wait(timeout=120))
        return real_upload(local, remote)

    monkeypatch.setattr(trainer.Reporter, "record", spying_record)
    monkeypatch.setattr(checkpoint, "upload", held_upload)
    settings = {"max_steps": 10, "eval": {"interval": 100, "iters": 1}, "checkpoint": {"every_steps": 5, "keep": 2}}
    assert train(tiny_config(f"s3://{BUCKET}/shards", **settings), f"s3://{BUCKET}/runs/beside")["step"] == 10
    assert held and all(held)  # released by training's progress, not by the timeout
    assert set(threads) == {"upload-step-00000005", "upload-step-00000010"}  # never the training thread
    checkpoints = f"{BUCKET}/runs/beside/checkpoints"
    assert sorted(p.rsplit("/", 2)[-2] for p in fs.glob(f"{checkpoints}/step-*/_COMPLETE")) == ["step-00000005", "step-00000010"]
    assert not fs.glob(f"{checkpoints}/step-*/_uploaded/*") and fs.cat_file(f"{checkpoints}/latest") == b"step-00000010"

    def failing_upload(local, remote):
        raise OSError("503 Slow Down")

    monkeypatch.setattr(checkpoint, "upload", failing_upload)
    with pytest.raises(RuntimeError, match=r"uploading step-00000005 to s3://.*/runs/failing/checkpoints failed: OSError: 503 Slow Down"):
        train(tiny_config(f"s3://{BUCKET}/shards", **settings), f"s3://{BUCKET}/runs/failing")
    assert not fs.glob(f"{BUCKET}/runs/failing/checkpoints/step-*/_COMPLETE")


def test_two_ranks_publish_a_checkpoint_through_their_markers(s3, tmp_path):
    """Rank 0 completes a remote checkpoint only once rank 1's files and marker are up (the upload
    threads hold no collective); a rank that never uploads makes rank 0 give up, saying so."""
    import threading
    import time

    from crawlmill.training.checkpoint import Checkpointer

    fs, _ = s3
    staging = tmp_path / "machine"  # one machine's staging folder, both ranks' files in it
    written = ["rank-00000.pt", "rank-00001.pt", "model/__0_0.distcp", "model/__1_0.distcp", "model/.metadata", "model/common.pt", "model/metadata.json"]

    def stage(step: int) -> Path:
        tmp = staging / f"checkpoints/.tmp-step-{step:08d}"
        (tmp / "model").mkdir(parents=True)
        for name in written:
            (tmp / name).write_bytes(name.encode())
        return tmp

    remote = f"s3://{BUCKET}/runs/two-ranks"
    rank0, rank1 = (Checkpointer(staging, rank, 2, 2, False, lambda: None, remote=remote) for rank in (0, 1))
    tmp = stage(5)
    first = threading.Thread(target=rank0._publish_remote, args=(5, {"consumed_samples": 40}), kwargs={"poll_s": 0.05})
    first.start()
    time.sleep(1.0)
    folder = f"{BUCKET}/runs/two-ranks/checkpoints/step-00000005"
    assert first.is_alive() and fs.exists(f"{folder}/rank-00000.pt") and not fs.exists(f"{folder}/_COMPLETE")
    rank1._publish_remote(5, {"consumed_samples": 40})
    first.join(timeout=60)
    assert not first.is_alive()
    assert {name[len(folder) + 1 :] for name in fs.find(folder)} == {*written, "meta.json", "_COMPLETE"}  # markers gone
    assert json.loads(fs.cat_file(f"{folder}/meta.json")) == {"consumed_samples": 40, "step": 5, "world_size": 2}
    assert fs.cat_file(f"{BUCKET}/runs/two-ranks/checkpoints/latest") == b"step-00000005" and not tmp.exists()

    stage(10)
    with pytest.raises(TimeoutError, match=r"step-00000010: 0 of the other 1 ranks uploaded their files within 1 s"):
        rank0._publish_remote(10, {}, poll_s=0.05, timeout_s=1.0)
    assert not fs.exists(f"{BUCKET}/runs/two-ranks/checkpoints/step-00000010/_COMPLETE")


def test_pushing_the_logs_uploads_a_changed_event_file_and_the_log_every_time(s3, monkeypatch):
    from crawlmill.training import runstore

    fs, _ = s3
    store = runstore.RunStore(f"s3://{BUCKET}/runs/pushed")
    store.local.mkdir(parents=True, exist_ok=True)
    (store.local / "log.jsonl").write_text('{"kind": "train"}\n')
    (store.local / "tensorboard").mkdir(exist_ok=True)
    (store.local / "tensorboard/events.out").write_bytes(b"an event")
    (store.local / "profile").mkdir(exist_ok=True)
    (store.local / "profile/rank1-step5.txt").write_text("another rank's table: its rank uploads it")
    uploaded = []
    real_upload = runstore.upload
    monkeypatch.setattr(runstore, "upload", lambda local, remote: uploaded.append(local.name) or real_upload(local, remote))
    store.push_logs()
    store.push_logs()
    assert uploaded == ["log.jsonl", "events.out", "log.jsonl"]
    (store.local / "tensorboard/events.out").write_bytes(b"an event and another")  # changed: uploaded again
    store.push_logs()
    assert uploaded[-1] == "events.out" and fs.cat_file(f"{BUCKET}/runs/pushed/tensorboard/events.out") == b"an event and another"


def test_each_profiled_rank_uploads_its_own_profile_and_a_failed_upload_does_not_stop_it(s3, capfd):
    from crawlmill.training.config import ProfileConfig
    from crawlmill.training.perf import StepProfiler
    from crawlmill.training.runstore import PROFILE, RunStore

    fs, _ = s3
    store = RunStore(f"s3://{BUCKET}/runs/profiled")

    def profile_one_step(rank: int, written) -> None:
        profiler = StepProfiler(ProfileConfig(start_step=3, steps=1, ranks=[1]), rank, store.local / PROFILE, written=written)
        for step in range(5):
            profiler.before(step)
            torch.randn(64, 64) @ torch.randn(64, 64)
            profiler.after(step)
        profiler.close()

    profile_one_step(0, store.push_files)  # not a profiled rank: nothing
    profile_one_step(1, store.push_files)
    remote = f"{BUCKET}/runs/profiled/profile"
    assert sorted(p.rsplit("/", 1)[1] for p in fs.find(remote)) == ["rank1-step3.json.gz", "rank1-step3.txt"]
    assert "aten::mm" in fs.cat_file(f"{remote}/rank1-step3.txt").decode()

    def refused(paths):
        raise PermissionError("AccessDenied")

    profile_one_step(1, refused)
    assert "could not upload the profile (PermissionError: AccessDenied); training goes on" in capfd.readouterr().err
