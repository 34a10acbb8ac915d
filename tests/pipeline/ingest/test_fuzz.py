"""Damaged input never crashes ingest: random cuts, byte flips and insertions into a real sample WARC
(plain and gzip) always end in a finished part whose records are all accounted for."""

import gzip
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crawlmill.pipeline.ingest.config import IngestConfig
from crawlmill.pipeline.ingest.stage import IngestStage
from crawlmill.pipeline.stage import run_part
from tests.conftest import SAMPLES

WARC = gzip.decompress(next((SAMPLES / "crawl-data/CC-MAIN-2024-10").glob("segments/*/warc/*.warc.gz")).read_bytes())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), op=st.sampled_from(["flip", "cut", "insert", "header"]), compress=st.booleans())
def test_damaged_warc_never_crashes_and_every_record_is_accounted_for(tmp_path, seed, op, compress):
    rng = random.Random(seed)
    data = bytearray(WARC)
    if op == "flip":
        for _ in range(rng.randint(1, 30)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif op == "cut":
        data = data[: rng.randrange(len(data))]
    elif op == "insert":
        at = rng.randrange(len(data))
        data[at:at] = rng.randbytes(rng.randint(1, 300))
    else:
        at = rng.randrange(len(data))
        data[at : at + rng.randint(1, 40)] = rng.randbytes(rng.randint(0, 40))
    path = tmp_path / f"{seed}-{op}.warc{'.gz' if compress else ''}"
    path.write_bytes(gzip.compress(bytes(data), mtime=0) if compress else bytes(data))
    stage = IngestStage(IngestConfig(inputs=[str(path)]))
    stats = run_part(stage, stage.tasks()[0], str(tmp_path / f"out-{seed}-{op}-{compress}"))
    assert stats["in"] == stats["kept"] + sum(stats["dropped"].values()) + stats["quarantined"]
    assert stats["in"] >= 1
