"""The model configs against the DeepSeek LLM report (Table 2) and the Megatron model built from them."""

import pytest
import torch

from crawlmill.pipeline.config import ConfigError, build
from crawlmill.training.config import TrainConfig, builtin_names, load_train_config
from crawlmill.training.model_config import ModelConfig


def test_deepseek_configs_are_table_2_exactly():
    seven, sixty_seven = load_train_config("deepseek-7b"), load_train_config("deepseek-67b")
    shape = lambda c: (c.model.num_layers, c.model.hidden_size, c.model.num_attention_heads, c.model.query_groups, c.model.ffn_hidden_size, c.model.seq_length, c.model.vocab_size)  # noqa: E731
    assert shape(seven) == (30, 4096, 32, 32, 11008, 4096, 102_400)
    assert shape(sixty_seven) == (95, 8192, 64, 8, 22016, 4096, 102_400)
    assert (seven.global_batch_size, seven.optimizer.lr, seven.train_tokens) == (2304, 4.2e-4, 2.0e12)
    assert (sixty_seven.global_batch_size, sixty_seven.optimizer.lr, sixty_seven.train_tokens) == (4608, 3.2e-4, 2.0e12)
    for config in (seven, sixty_seven):
        o, s = config.optimizer, config.schedule
        assert (o.beta1, o.beta2, o.weight_decay, o.grad_clip, config.model.init_std) == (0.9, 0.95, 0.1, 1.0, 0.006)
        assert (s.kind, s.warmup_steps, s.milestones, s.factors) == ("multistep", 2000, [0.8, 0.9], [0.316, 0.1])


def test_parameter_counts_are_the_papers_7b_and_67b():
    """6.91B and 67.4B parameters, as the released checkpoints have (untied embeddings of 102,400 rows)."""
    seven = load_train_config("deepseek-7b").model.parameters()
    sixty_seven = load_train_config("deepseek-67b").model.parameters()
    assert seven["total"] == pytest.approx(6.91e9, rel=0.002) and seven["embedding"] == 2 * 102_400 * 4096
    assert sixty_seven["total"] == pytest.approx(67.4e9, rel=0.002)
    # M, the paper's model scale, for the 7B: 72·30·4096² + 12·30·4096·4096.
    assert load_train_config("deepseek-7b").model.non_embedding_flops_per_token() == 72 * 30 * 4096**2 + 12 * 30 * 4096 * 4096


@pytest.mark.parametrize("name", builtin_names())
def test_every_builtin_config_is_valid(name):
    config = load_train_config(name)
    assert config.model.hidden_size % config.model.num_attention_heads == 0


def test_a_config_builds_on_a_builtin_and_errors_name_the_key(tmp_path):
    config = build(TrainConfig, {"base": "tiny", "max_steps": 7, "model": {"num_layers": 3}})
    assert config.max_steps == 7 and config.model.num_layers == 3 and config.model.hidden_size == 64
    assert build(TrainConfig, {"train_tokens": "2e12"}).train_tokens == 2e12  # YAML 1.1 reads 2e12 as a string
    with pytest.raises(ConfigError, match=r"train.model: num_query_groups 3 must divide num_attention_heads 4"):
        build(TrainConfig, {"base": "tiny", "model": {"num_query_groups": 3}}, "train")
    with pytest.raises(ConfigError, match=r"train.model: head dimension 25 \(hidden_size 100 / num_attention_heads 4\): must be even, RoPE"):
        build(TrainConfig, {"base": "tiny", "model": {"hidden_size": 100}}, "train")
    with pytest.raises(ConfigError, match=r"train: global_batch_size 0: must be at least 1"):
        build(TrainConfig, {"base": "tiny", "global_batch_size": 0}, "train")
    # found: Megatron's uniform recomputation indexed past the last layer (IndexError mid-forward) when
    # the chunk did not divide the layers; and a pipeline must split the layers evenly (the 67B had 95 over 4)
    with pytest.raises(ConfigError, match=r"train.model: recompute_layers 2: must divide num_layers \(3\)"):
        build(TrainConfig, {"base": "tiny", "model": {"num_layers": 3, "recompute": "full", "recompute_layers": 2}}, "train")
    with pytest.raises(ConfigError, match=r"train: model.num_layers 95 is not a multiple of parallel.pipeline 4"):
        build(TrainConfig, {"base": "deepseek-67b", "parallel": {"pipeline": 4}}, "train")
    with pytest.raises(ConfigError, match=r"train: model.recompute_layers 4 must divide the 2 layers of a pipeline stage"):
        build(TrainConfig, {"base": "tiny", "model": {"num_layers": 4, "recompute": "full", "recompute_layers": 4}, "parallel": {"pipeline": 2}}, "train")
    with pytest.raises(ConfigError, match=r"train: model.seq_length 102 is not a multiple of 2 x parallel.context \(4\)"):
        build(TrainConfig, {"base": "tiny", "model": {"seq_length": 102}, "parallel": {"context": 2}}, "train")
    assert build(TrainConfig, {"base": "tiny", "model": {"seq_length": 102}}, "train").parallel.context == 1
    with pytest.raises(ConfigError, match=r"train.checkpoint: checkpoint.optimizer_sharding: 'dp_reshardable' or 'fully_reshardable', not 'fully_sharded_model_space'"):
        build(TrainConfig, {"base": "tiny", "checkpoint": {"optimizer_sharding": "fully_sharded_model_space"}}, "train")
    assert build(TrainConfig, {"base": "tiny", "checkpoint": {"optimizer_sharding": "fully_reshardable"}}).checkpoint.optimizer_sharding == "fully_reshardable"
    with pytest.raises(ConfigError, match=r"train.schedule: kind 'linear'"):
        build(TrainConfig, {"schedule": {"kind": "linear"}}, "train")
    with pytest.raises(ConfigError, match=r"train: base: nope: no such file, and not a built-in"):
        build(TrainConfig, {"base": "nope"}, "train")


def test_megatron_model_has_deepseeks_design_and_the_counted_parameters(model_parallel):
    """The tiny model built by Megatron-Core: RMSNorm, SwiGLU, GQA, RoPE, no biases, untied, N(0, 0.006²)."""
    from crawlmill.training.model import build_model
    from crawlmill.training.trainer import seed_everything

    model_config = ModelConfig(num_layers=2, hidden_size=256, num_attention_heads=4, num_query_groups=2, ffn_hidden_size=688, seq_length=64)
    seed_everything(1)
    model = build_model(model_config, vocab_size=512)
    params = dict(model.named_parameters())
    assert sum(p.numel() for p in params.values()) == model_config.parameters(512)["total"]
    assert not [n for n in params if n.endswith(".bias")]
    assert params["output_layer.weight"].data_ptr() != params["embedding.word_embeddings.weight"].data_ptr()
    layer = model.decoder.layers[0]
    assert "RMSNorm" in type(layer.input_layernorm).__name__ and "RMSNorm" in type(model.decoder.final_layernorm).__name__
    assert layer.mlp.linear_fc1.weight.shape == (2 * 688, 256)  # gate and up projections: SwiGLU
    assert layer.mlp.config.activation_func is torch.nn.functional.silu and layer.mlp.config.gated_linear_unit
    kv = 2 * 64  # 2 key/value groups of head dim 64
    assert layer.self_attention.linear_qkv.weight.shape == (256 + 2 * kv, 256)
    assert model.position_embedding_type == "rope"
    assert float(params["decoder.layers.0.mlp.linear_fc1.weight"].std()) == pytest.approx(0.006, rel=0.05)
    assert float(params["embedding.word_embeddings.weight"].std()) == pytest.approx(0.006, rel=0.05)


@pytest.mark.parametrize("name", ["deepseek-7b", "deepseek-67b"])
def test_the_paper_configs_give_megatron_a_transformer_config_with_their_parallel_layout(name):
    """Megatron checks its TransformerConfig as it is made: the 67B's 5 pipeline stages need the dtype
    the stages exchange (a GPU-only run would otherwise fail at its first line)."""
    from crawlmill.training.model import transformer_config

    config = load_train_config(name)
    made = transformer_config(config.model, config.precision, config.parallel)
    assert (made.tensor_model_parallel_size, made.pipeline_model_parallel_size) == (config.parallel.tensor, config.parallel.pipeline)
    assert made.pipeline_dtype == (torch.bfloat16 if config.precision == "bf16" else torch.float32)


def test_sequence_parallelism_needs_each_ranks_sequence_to_split_over_the_tensor_ranks(monkeypatch):
    """With Transformer Engine, tensor parallelism splits each rank's sequence (seq_length / context)
    over the tensor ranks: a length that does not divide is refused up front, not at the first step."""
    from crawlmill.training import model
    from crawlmill.training.config import ParallelConfig

    monkeypatch.setattr(model, "sequence_parallel", lambda tensor, cuda, te: tensor > 1)  # as on a GPU with TE
    shape = ModelConfig(num_layers=2, hidden_size=64, num_attention_heads=8, ffn_hidden_size=128, seq_length=80)
    with pytest.raises(ValueError, match="seq_length 80 / context 4 is not a multiple of tensor 8"):
        model.transformer_config(shape, "fp32", ParallelConfig(tensor=8, context=4))
    assert model.transformer_config(shape, "fp32", ParallelConfig(tensor=8, context=2)).sequence_parallel


def test_the_final_norm_is_the_layer_specs_kind_whatever_megatron_would_default_to(model_parallel, monkeypatch):
    """Megatron's default final norm is Transformer Engine's whenever TE imports and Apex's fused
    LayerNorm (which refuses RMSNorm) when only Apex does, whatever the layer spec: a local model is
    given torch's RMSNorm by name (compat.block_spec), also built on the meta device."""
    from megatron.core.fusions.fused_layer_norm import FusedLayerNorm
    from megatron.core.transformer import transformer_block

    from crawlmill.training.model import build_model

    monkeypatch.setattr(transformer_block, "LayerNormImpl", FusedLayerNorm)  # as on a machine with Apex
    shape = ModelConfig(num_layers=2, hidden_size=64, num_attention_heads=2, ffn_hidden_size=128, seq_length=32)
    for meta in (False, True):
        model = build_model(shape, vocab_size=256, meta=meta)
        assert isinstance(model.decoder.final_layernorm, torch.nn.RMSNorm) and len(model.decoder.layers) == 2
        assert all(p.is_meta == meta for p in model.parameters())


def test_fused_kernels_follow_the_device_and_the_precision():
    from crawlmill.training.model import transformer_config

    flags = lambda c: (c.bias_activation_fusion, c.cross_entropy_loss_fusion)  # noqa: E731
    assert flags(transformer_config(ModelConfig(), "fp32")) == (False, False)  # None on CPU: off
    assert flags(transformer_config(ModelConfig(fused_kernels=True), "bf16")) == (True, True)
    assert flags(transformer_config(ModelConfig(fused_kernels=True), "fp32")) == (True, False)  # its gradient is bf16


def test_fused_swiglu_gives_the_unfused_loss_and_gradients(model_parallel, monkeypatch):
    """Megatron's fused SwiGLU path, run eagerly (torch.compile off: the GPU compiles it), against the
    plain activation, on the tiny model."""
    import torch._dynamo
    from megatron.core.transformer import mlp

    from crawlmill.training.compat import causal_mask, device_scope
    from crawlmill.training.model import build_model
    from crawlmill.training.trainer import seed_everything

    calls = []
    fused_impl = mlp.bias_swiglu_impl
    monkeypatch.setattr(mlp, "bias_swiglu_impl", lambda *a, **k: calls.append(1) or fused_impl(*a, **k))

    def loss_and_grads(fused: bool):
        seed_everything(3)
        model = build_model(ModelConfig(num_layers=2, hidden_size=128, num_attention_heads=4, ffn_hidden_size=344, seq_length=64, fused_kernels=fused), vocab_size=512)
        tokens = torch.randint(0, 512, (2, 65), generator=torch.Generator().manual_seed(1))
        with device_scope(), torch._dynamo.config.patch(disable=True):
            loss = model(tokens[:, :-1], torch.arange(64).expand(2, -1), causal_mask(64, tokens.device), labels=tokens[:, 1:]).mean()
            loss.backward()
        return loss.detach(), {n: p.grad for n, p in model.named_parameters()}

    plain_loss, plain = loss_and_grads(False)
    assert not calls
    fused_loss, fused = loss_and_grads(True)
    assert len(calls) == 2  # one a layer
    assert torch.allclose(fused_loss, plain_loss, rtol=1e-6)
    assert all(torch.allclose(fused[k], plain[k], rtol=1e-5, atol=1e-8) for k in plain)


@pytest.mark.parametrize("recompute", [{"recompute": "full"}, {"recompute": "full", "recompute_layers": 2}, {"recompute": "selective", "recompute_modules": ["core_attn", "mlp"]}])
def test_activation_recomputation_changes_no_loss_gradient_or_weight(model_parallel, recompute):
    """One optimizer step of the CPU backend, with and without recomputation: bit for bit the same."""
    from megatron.core import parallel_state

    from crawlmill.training.backends import TorchBackend
    from crawlmill.training.config import OptimizerConfig
    from crawlmill.training.model import build_model
    from crawlmill.training.trainer import seed_everything

    tokens = torch.randint(0, 512, (2, 65), generator=torch.Generator().manual_seed(2))
    batch = {"tokens": tokens[:, :-1], "labels": tokens[:, 1:], "position_ids": torch.arange(64).expand(2, -1), "loss_mask": torch.ones(2, 64)}

    def one_step(**settings):
        seed_everything(5)
        model = build_model(ModelConfig(num_layers=2, hidden_size=128, num_attention_heads=4, ffn_hidden_size=344, seq_length=64, **settings), vocab_size=512)
        calls = {"layer": 0, "attention": 0, "mlp": 0}  # forward passes: recomputation adds some

        def count(kind):
            return lambda *_: calls.__setitem__(kind, calls[kind] + 1)

        for layer in model.decoder.layers:
            layer.register_forward_pre_hook(count("layer"))
            layer.self_attention.core_attention.register_forward_pre_hook(count("attention"))
            layer.mlp.register_forward_pre_hook(count("mlp"))
        backend = TorchBackend(model, OptimizerConfig(), 1e-3, torch.device("cpu"), parallel_state.get_data_parallel_group(), parallel_state.get_model_parallel_group())
        loss, norm = backend.step([batch], 1e-3)
        return loss, norm, {k: v.detach().clone() for k, v in model.state_dict().items() if torch.is_tensor(v)}, calls

    plain, recomputed = one_step(), one_step(**recompute)
    assert recomputed[:2] == plain[:2]
    assert plain[2].keys() == recomputed[2].keys() and all(torch.equal(plain[2][k], recomputed[2][k]) for k in plain[2])
    assert plain[3] == {"layer": 2, "attention": 2, "mlp": 2}
    assert recomputed[3] == {"layer": 4 if recompute["recompute"] == "full" else 2, "attention": 4, "mlp": 4}


def test_recompute_settings_are_checked():
    with pytest.raises(ValueError, match="recompute 'some'"):
        ModelConfig(recompute="some")
    with pytest.raises(ValueError, match="recompute_layers 3: between 1 and num_layers"):
        ModelConfig(num_layers=2, recompute="full", recompute_layers=3)
    for modules in (["attention"], ["layernorm"], []):
        with pytest.raises(ValueError, match=r"recompute_modules \["):
            ModelConfig(recompute="selective", recompute_modules=modules)
