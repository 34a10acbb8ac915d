"""Megatron-Core pretraining on packed shards, DeepSeek LLM's schedule, and the scaling-law planner.

- model_config.py  the model's shape and its counts (parameters, DeepSeek's M)
- config.py        the training config (one dataclass per component) and the built-ins in configs/
"""
