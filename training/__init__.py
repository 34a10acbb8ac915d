"""Megatron-Core pretraining on packed shards, DeepSeek LLM's schedule, and the scaling-law planner.

- model_config.py  the model's shape and its counts (parameters, DeepSeek's M)
- config.py        the training config (one dataclass per component) and the built-ins in configs/
- compat.py        where Megatron-Core versions and devices differ (CPU shims, layer specs)
- model.py         the Megatron GPTModel of a ModelConfig
- data.py          pack's shards through GPTDataset, and the data position
- schedule.py      multi-step (DeepSeek), cosine and WSD learning rates
- backends.py      one optimizer step: torch AdamW (CPU) or Megatron's distributed optimizer (GPU)
- checkpoint.py    checkpoints with every RNG state; exact resume
- trainer.py       the training loop of one rank; runlog.py its run.json and log.jsonl
- launch.py        torchrun, Ray Train or in-process; stage.py the pipeline's train stage
- planner.py       `crawlmill plan`: Equation 1, allocation, shapes; scaling_sweep.py sweeps, scaling_fit.py fits
"""

import logging as _logging
import os as _os
import warnings as _warnings

# Megatron-Core's import-time notices that no user acts on, filtered before any of our modules imports
# it: the optional kernels' absence (the layer spec in use is printed and in run.json instead), and
# 0.16's own default cuda_graph_scope="full" tripping its own deprecation on every TransformerConfig.
for _notice in ("Transformer Engine and Apex are not installed", "Apex is not installed", "full scope is deprecated"):
    _warnings.filterwarnings("ignore", message=_notice, category=UserWarning)
# and at every checkpoint load: torch's deprecations of the APIs Megatron-Core's loader itself calls
for _notice in ("`load_state_dict` is deprecated", "Please use DTensor instead and we are deprecating ShardedTensor"):
    _warnings.filterwarnings("ignore", message=_notice, category=FutureWarning)

# Megatron-Core's INFO logs (a dozen lines per shard prefix as its datasets build, its FSDP module's
# notices) show wherever a root logger takes INFO, as in every Ray worker; its warnings still show.
# CRAWLMILL_MEGATRON_LOG=INFO (or DEBUG) shows them, on stderr wherever the run is.
_megatron_log, _asked = _logging.getLogger("megatron"), _os.environ.get("CRAWLMILL_MEGATRON_LOG")
_megatron_log.setLevel((_asked or "WARNING").upper())
if _asked:
    _megatron_log.addHandler(_logging.StreamHandler())
    _megatron_log.propagate = False  # once, not again through a root handler
# A warning at every build of one shard folder's data: a blend of one is how every run's data is
# built (data.py), not a mistake to warn of.
_logging.getLogger("megatron.core.datasets.blended_dataset").addFilter(lambda record: "for a single MegatronDataset" not in record.getMessage())
