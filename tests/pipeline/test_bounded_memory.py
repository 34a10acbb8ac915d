"""Memory bounded by the batch, never by the corpus: a part task of the quality stage (scoring) and of
remix (labelling and writing by group) on an input part of N documents and of 4N documents, each
in a fresh process. What the task holds at its peak (Python objects, traced, plus Arrow's memory
pool) is the same for 4N as for N, far below the 3N documents' extra text it read. (Peak RSS is
not the measure: the allocators' warm-up moves it by tens of MB whatever the input.) This test
found pyarrow 26 keeping every byte it had read of a part (`pre_buffer`; crawlmill.files.parquet_file)."""

import json
import random
import subprocess
import sys
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crawlmill.pipeline.schema import DOCUMENT_SCHEMA, document_id
from tests.conftest import REPO

pytestmark = pytest.mark.heavy(125)  # seconds on 2 cores: runs first (tests/conftest.py)

QUALITY = REPO / "samples/quality"
HOSTS = ["docs.example-dev.io", "www.example-garden.org", "www.example-history.org", "news.example.cn"]


def write_part(path, documents: int, chinese_every: int = 3, seed: int = 0) -> int:
    """A Parquet part of real-text documents (~2,000 characters: reference and web paragraphs of
    samples/quality joined), English and Chinese, URLs on four sites; returns its text bytes."""
    paragraphs = {lang: [*(QUALITY / f"reference_{lang}.txt").read_text().splitlines(), *(QUALITY / f"web_{lang}.txt").read_text().splitlines()] for lang in ("en", "zh")}
    rng = random.Random(seed)
    writer, size = None, 0
    for start in range(0, documents, 1_000):  # row groups of 1,000 rows, as the stages write (2,048)
        rows = []
        for i in range(start, min(documents, start + 1_000)):
            lang = "zh" if i % chinese_every == 0 else "en"
            text = "\n".join(rng.sample(paragraphs[lang], 3))[:2_000]
            size += len(text.encode())
            rows.append({"id": document_id(f"m{i}"), "text": text, "lang": lang, "url": f"https://{HOSTS[i % 4]}/page/{i}", "dump": "CC-MAIN-2024-10"})
        table = pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA)
        writer = writer or pq.ParquetWriter(path, table.schema, compression="zstd")
        writer.write_table(table)
    writer.close()
    return size


def peak_held_mib(setup: str, work: str) -> float:
    """Run `setup` then `work` in a fresh Python; the peak memory `work` held (MiB): traced Python
    allocations plus the peak of Arrow's memory pool."""
    probe = "\n".join([
        textwrap.dedent(setup), "import json, tracemalloc", "import pyarrow as pa", "tracemalloc.start()", textwrap.dedent(work),
        "print(json.dumps((tracemalloc.get_traced_memory()[1] + pa.default_memory_pool().max_memory()) / 2**20))",
    ])  # fmt: skip
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def parts(root, documents: int, chinese_every: int):
    """N and 4N documents; N large enough that every buffer of the task has filled once."""
    small, large = root / "small.parquet", root / "large.parquet"
    return small, large, (write_part(small, documents, chinese_every), write_part(large, 4 * documents, chinese_every))


def assert_bounded(run_small: float, run_large: float, sizes: tuple[int, int]) -> None:
    extra_input_mib = (sizes[1] - sizes[0]) / 2**20
    assert extra_input_mib > 15
    print(f"peak held {run_small:.1f} -> {run_large:.1f} MiB for {extra_input_mib:.1f} MiB more text")
    # holding the documents would add at least their text; a batch-bounded task adds nothing but noise
    assert run_large - run_small < 1 + 0.1 * extra_input_mib, (run_small, run_large, extra_input_mib)


def test_remix_part_task_memory_is_bounded_by_the_batch(tmp_path):
    small, large, sizes = parts(tmp_path, 10_000, chinese_every=3)  # 4 groups: each writer's buffer fills (2,048 rows)
    setup = """
        from crawlmill.pipeline.config import build
        from crawlmill.pipeline.remix.config import RemixConfig
        from crawlmill.pipeline.remix.stage import LabelSettings, label_part
        rules = [{"pattern": "docs.*", "group": "stem"}, {"pattern": "*.example-garden.org", "group": "lifestyle"}, {"pattern": "*.example-history.org", "group": "culture"}]
        config = build(RemixConfig, {"inputs": [], "rules": rules, "batch_rows": 1000}, "remix")
    """
    work = 'label_part(LabelSettings(config, None), 0, "SOURCE", "OUT")'
    peaks = [peak_held_mib(setup, work.replace("SOURCE", str(part)).replace("OUT", str(tmp_path / part.stem))) for part in (small, large)]
    assert_bounded(*peaks, sizes)


def test_quality_scoring_task_memory_is_bounded_by_the_batch(tmp_path):
    from crawlmill.pipeline.quality.config import ClassifierTrainConfig
    from crawlmill.pipeline.quality.train import train_classifier

    q = QUALITY
    config = ClassifierTrainConfig(positive=[f"en={q}/reference_en.txt", f"zh={q}/reference_zh.txt"], negative=[f"en={q}/web_en.txt", f"zh={q}/web_zh.txt"], bucket=200_000)
    train_classifier(config, str(tmp_path / "model"))
    # every token is a traced allocation here, so a smaller part; scoring holds one batch (1,024 rows)
    small, large, sizes = parts(tmp_path, 2_500, chinese_every=20)
    # the token memo is bounded by its own cap (fastinfer.MEMO_LIMIT), lowered here so that N fills it
    setup = f"""
        from crawlmill.pipeline.quality import fastinfer
        from crawlmill.pipeline.quality.stage import load_model, score_part
        fastinfer.MEMO_LIMIT = 5_000
        model = load_model("{tmp_path / 'model'}", "__label__hq", "newlines")
        import jieba
        jieba.initialize()  # its dictionary, a constant of the process, built before tracing starts
    """
    work = 'score_part(model, 0, "SOURCE", "WORK", 1024)'
    peaks = [peak_held_mib(setup, work.replace("SOURCE", str(part)).replace("WORK", str(tmp_path / part.stem))) for part in (small, large)]
    assert_bounded(*peaks, sizes)
