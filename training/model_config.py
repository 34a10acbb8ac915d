"""The model's shape: DeepSeek LLM's design (pre-norm RMSNorm, SwiGLU, RoPE, no biases, untied
embeddings), and the counts the scaling-law planner and the MFU figure share.

    from crawlmill.training.model_config import ModelConfig
    m = ModelConfig(num_layers=30, hidden_size=4096, num_attention_heads=32, ffn_hidden_size=11008)
    m.non_embedding_flops_per_token()   # DeepSeek's M = 72·L·d² + 12·L·d·l_seq (Section 3)
    m.parameters()                      # {"embedding", "non_embedding", "total"}

Counts follow the model Megatron-Core builds from this config (GPTModel, local or TE spec): per
layer q/k/v/o projections (k and v shrink with grouped-query attention), the SwiGLU MLP's three
matrices, two RMSNorm weights; a final RMSNorm; input embedding and output layer, untied.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ATTENTION = ("sdpa", "megatron")
RECOMPUTE = ("none", "selective", "full")
# Megatron's selective choices for a dense GPT. Not "layernorm": its CheckpointWithoutOutput takes
# fp8=False for fp8 on and then needs Transformer Engine (megatron-core 0.16 and 0.19 alike).
RECOMPUTE_MODULES = ("core_attn", "mlp")


def sequence_parallel(tensor: int, cuda: bool, transformer_engine: bool) -> bool:
    """Whether a run uses sequence parallelism, which splits the norms' activations over the tensor
    ranks: TE's norms support it, the local spec's torch norms do not (Megatron refuses the pair),
    so without TE it stays off."""
    return tensor > 1 and cuda and transformer_engine


@dataclass
class ModelConfig:
    num_layers: int = 2
    hidden_size: int = 64
    num_attention_heads: int = 4
    ffn_hidden_size: int = 172  # SwiGLU inner size (DeepSeek: ~8/3 x hidden, Table 2)
    num_query_groups: int | None = None  # grouped-query attention's key/value heads; None: as many as heads
    seq_length: int = 4096
    # Padded vocabulary (the model's embedding rows); None: the tokenizer's (crawlmill.json padded_vocab_size,
    # 102,400 for ours), read from the data's manifest.
    vocab_size: int | None = None
    init_std: float = 0.006  # DeepSeek LLM Section 2.3
    rotary_base: int = 10_000
    norm_epsilon: float = 1e-6
    # Core attention of the local (non-Transformer-Engine) spec: "sdpa", torch's fused attention
    # (training/attention.py), or "megatron", Megatron's unfused DotProductAttention. TE's spec has its own.
    attention: str = "sdpa"
    # Megatron's fused kernels where they exist without Transformer Engine: the SwiGLU activation
    # (torch.compile'd, as Megatron-LM's default) and, for bf16 runs, the cross-entropy loss.
    # None: on with CUDA, off on CPU (where compiling costs more than it saves on small models).
    fused_kernels: bool | None = None
    # Activation recomputation, memory for compute (Megatron's): "full" keeps only each layer's input
    # and recomputes the layer in the backward pass (`recompute_layers` layers a checkpoint);
    # "selective" recomputes only `recompute_modules`. Losses and gradients are unchanged (tested).
    recompute: str = "none"
    recompute_layers: int = 1
    recompute_modules: list[str] = field(default_factory=lambda: ["core_attn"])

    def __post_init__(self) -> None:
        for name in ("num_layers", "hidden_size", "num_attention_heads", "ffn_hidden_size", "seq_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} {getattr(self, name)}: must be at least 1")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads {self.num_attention_heads}")
        if (self.hidden_size // self.num_attention_heads) % 2:  # found: an odd one failed inside Megatron's RoPE, mid-forward
            raise ValueError(f"head dimension {self.hidden_size // self.num_attention_heads} (hidden_size {self.hidden_size} / num_attention_heads "
                             f"{self.num_attention_heads}): must be even, RoPE rotates pairs of dimensions")  # fmt: skip
        groups = self.query_groups
        if groups < 1 or self.num_attention_heads % groups:
            raise ValueError(f"num_query_groups {groups} must divide num_attention_heads {self.num_attention_heads}")
        if self.vocab_size is not None and self.vocab_size < 1:
            raise ValueError(f"vocab_size {self.vocab_size}: must be at least 1")
        if not self.init_std > 0:
            raise ValueError(f"init_std {self.init_std}: must be > 0")
        if self.attention not in ATTENTION:
            raise ValueError(f"attention {self.attention!r}: choose one of {', '.join(ATTENTION)}")
        if self.recompute not in RECOMPUTE:
            raise ValueError(f"recompute {self.recompute!r}: choose one of {', '.join(RECOMPUTE)}")
        if not 1 <= self.recompute_layers <= self.num_layers:
            raise ValueError(f"recompute_layers {self.recompute_layers}: between 1 and num_layers ({self.num_layers})")
        if self.recompute == "full" and self.num_layers % self.recompute_layers:  # found: Megatron's uniform method then indexes past the last layer, mid-forward
            raise ValueError(f"recompute_layers {self.recompute_layers}: must divide num_layers ({self.num_layers}), each chunk as long")
        unknown = sorted(set(self.recompute_modules) - set(RECOMPUTE_MODULES))
        if unknown or not self.recompute_modules:
            raise ValueError(f"recompute_modules {self.recompute_modules}: a non-empty list of {', '.join(RECOMPUTE_MODULES)}")

    def fused(self, cuda: bool) -> bool:
        """Whether Megatron's fused kernels are on (`fused_kernels`; None: on with CUDA)."""
        return cuda if self.fused_kernels is None else self.fused_kernels

    @property
    def query_groups(self) -> int:
        return self.num_query_groups or self.num_attention_heads

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def non_embedding_flops_per_token(self, seq_length: int | None = None) -> float:
        """DeepSeek LLM's model scale M: non-embedding FLOPs per token, attention included,
        72·n_layer·d_model² + 12·n_layer·d_model·l_seq (the training FLOPs of one token, 3 x forward)."""
        seq = seq_length or self.seq_length
        return 72.0 * self.num_layers * self.hidden_size**2 + 12.0 * self.num_layers * self.hidden_size * seq

    def layer_matrix_parameters(self) -> int:
        """A layer's weight matrices (what tensor parallelism splits): q, k, v, o and SwiGLU's three."""
        d, kv = self.hidden_size, self.query_groups * self.head_dim
        return 2 * d * d + 2 * d * kv + 3 * d * self.ffn_hidden_size  # q, o; k, v (fewer with GQA); gate, up, down

    def parameters(self, vocab_size: int | None = None) -> dict[str, int]:
        """Parameter counts of the Megatron model built from this config."""
        vocab = vocab_size or self.vocab_size
        if vocab is None:
            raise ValueError("vocab_size unknown: give it, or read it from the tokenizer")
        d = self.hidden_size
        per_layer = self.layer_matrix_parameters() + 2 * d  # two RMSNorm weights
        non_embedding = self.num_layers * per_layer + d  # final RMSNorm
        embedding = 2 * vocab * d  # input embedding and output layer, untied
        return {"embedding": embedding, "non_embedding": non_embedding, "total": embedding + non_embedding}
