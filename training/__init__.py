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
- planner.py       `crawlmill plan`: Equation 1, allocation, shapes; scaling_fit.py sweeps and fits
"""
