"""A small tokenizer trained once on the WET text that ships in samples/ (no ../shared needed)."""

from pathlib import Path

import pytest

from crawlmill.tokenizer.config import TokenizerConfig
from crawlmill.tokenizer.stage import train_tokenizer

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
SAMPLE_WET = sorted(str(p) for p in SAMPLES.rglob("*.warc.wet.gz"))


@pytest.fixture(scope="session")
def small_tokenizer_dir(ray_local, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("tok") / "small"
    train_tokenizer(TokenizerConfig(inputs=SAMPLE_WET, vocab_size=1000), output)
    return output
