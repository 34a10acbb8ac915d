"""The shard format is its own package: training reads shards without importing the pipeline."""

import subprocess
import sys


def test_reading_shards_imports_nothing_of_the_pipeline():
    code = (
        "import sys, crawlmill.shards.mmidx, crawlmill.shards.shardset, crawlmill.shards.shardstats, crawlmill.shards.manifest, "
        "crawlmill.shards.tokenbytes, crawlmill.shards.adopt; "
        "print(sorted(m for m in sys.modules if m.startswith(('crawlmill.pipeline', 'crawlmill.tokenizer', 'ray'))))"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert found == "[]"
