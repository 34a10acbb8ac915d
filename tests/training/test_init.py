"""What importing crawlmill.training sets for Megatron-Core (training/__init__.py): its import-time
notices about optional kernels filtered, its INFO logs off unless CRAWLMILL_MEGATRON_LOG asks."""

import os
import subprocess
import sys

import pytest

PROBE = """
import logging, warnings
warnings.simplefilter("default")  # every warning shows, as in a fresh interpreter with -W default
import crawlmill.training
from crawlmill.training.model import transformer_config
from crawlmill.training.model_config import ModelConfig
import megatron.core.optimizer, megatron.core.models.gpt.gpt_layer_specs
transformer_config(ModelConfig(num_layers=1, hidden_size=64, num_attention_heads=1, ffn_hidden_size=128), "fp32")
dataset_log = logging.getLogger("megatron.core.datasets.gpt_dataset")
dataset_log.info("an INFO line of Megatron's")
logging.getLogger("megatron.core.datasets.blended_dataset").warning("Building a BlendedDataset for a single MegatronDataset")
logging.getLogger("megatron.core.datasets.blended_dataset").warning("a warning of Megatron's")
warnings.warn("Please use DTensor instead and we are deprecating ShardedTensor.", FutureWarning)  # as torch warns at a load
print(dataset_log.getEffectiveLevel())
"""


def probe(**env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "CRAWLMILL_MEGATRON_LOG"} | env
    return subprocess.run([sys.executable, "-c", PROBE], env=environment, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("asked, level", [(None, "30"), ("INFO", "20")])
def test_megatron_notices_filtered_and_its_info_logs_off_unless_asked(asked, level):
    done = probe(**({"CRAWLMILL_MEGATRON_LOG": asked} if asked else {}))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [level]
    assert ("an INFO line of Megatron's" in done.stderr) == (asked == "INFO"), done.stderr[-2000:]
    for notice in ("Transformer Engine and Apex are not installed", "Apex is not installed", "full scope is deprecated", "for a single MegatronDataset", "deprecating ShardedTensor"):
        assert notice not in done.stderr, done.stderr[-2000:]
    assert "a warning of Megatron's" in done.stderr  # its other warnings still show
