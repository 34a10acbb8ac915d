"""torch's fused attention in the local spec (training/attention.py) computes what Megatron's
DotProductAttention computes: the same outputs and gradients, with and without grouped-query
attention, in the module and in the whole model; what it does not cover goes to Megatron's own."""

import pytest
import torch

from crawlmill.training.model_config import ModelConfig


def attention_pair(model_config: ModelConfig, mask_type=None):
    from megatron.core.transformer.dot_product_attention import DotProductAttention
    from megatron.core.transformer.enums import AttnMaskType

    from crawlmill.training.attention import SdpaAttention
    from crawlmill.training.model import transformer_config

    config = transformer_config(model_config, "fp32")
    kind = mask_type or AttnMaskType.causal
    return DotProductAttention(config, 1, kind, "self"), SdpaAttention(config, 1, kind, "self")


def forward_backward(module, q, k, v, mask, out_grad):
    from crawlmill.training.compat import device_scope

    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    with device_scope():
        out = module(*leaves, mask)
    out.backward(out_grad)
    return out.detach(), [t.grad for t in leaves]


@pytest.mark.parametrize("groups", [4, 2, 1], ids=["heads", "grouped", "one-group"])
def test_sdpa_gives_megatrons_outputs_and_gradients(model_parallel, groups):
    from crawlmill.training.compat import causal_mask

    model_config = ModelConfig(num_layers=1, hidden_size=128, num_attention_heads=4, num_query_groups=groups, ffn_hidden_size=344, seq_length=96)
    megatron, sdpa = attention_pair(model_config)
    seq, batch, heads, head_dim = 96, 3, 4, 32
    generator = torch.Generator().manual_seed(groups)
    q = torch.randn(seq, batch, heads, head_dim, generator=generator)
    k, v = (torch.randn(seq, batch, groups, head_dim, generator=generator) for _ in range(2))
    out_grad = torch.randn(seq, batch, heads * head_dim, generator=generator)
    mask = causal_mask(seq, torch.device("cpu"))
    expected, expected_grads = forward_backward(megatron, q, k, v, mask, out_grad)
    got, grads = forward_backward(sdpa, q, k, v, mask, out_grad)
    assert got.shape == expected.shape == (seq, batch, heads * head_dim)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    for name, a, b in zip("qkv", grads, expected_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=lambda m, n=name: f"grad of {n}: {m}")  # sums in another order
    # causal: the first position attends to itself only, so its output is its own value
    first = got[0].view(batch, heads, head_dim)
    torch.testing.assert_close(first, v[0].repeat_interleave(heads // groups, dim=1), rtol=1e-5, atol=1e-6)


def test_what_sdpa_does_not_cover_is_megatrons_forward(model_parallel, monkeypatch):
    """A padding mask (not causal) is read as given: Megatron's own forward runs, to the bit."""
    from megatron.core.transformer.enums import AttnMaskType

    from crawlmill.training import attention

    model_config = ModelConfig(num_layers=1, hidden_size=64, num_attention_heads=4, ffn_hidden_size=172, seq_length=16)
    megatron, sdpa = attention_pair(model_config, AttnMaskType.padding)

    def refuse(*args, **kwargs):
        raise AssertionError("SDPA called for a padding mask")

    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", refuse)
    q, k, v = (torch.randn(16, 2, 4, 16) for _ in range(3))
    mask = torch.zeros(2, 1, 16, 16, dtype=torch.bool)
    mask[1, :, :, 12:] = True  # the second sequence's last 4 keys are padding
    out_grad = torch.randn(16, 2, 64)
    expected, _ = forward_backward(megatron, q, k, v, mask, out_grad)
    got, _ = forward_backward(sdpa, q, k, v, mask, out_grad)
    assert torch.equal(got, expected)


def test_a_mask_other_than_the_causal_one_is_applied_as_given(model_parallel, monkeypatch):
    """Attention reset at a document boundary (a causal mask type, but not the plain causal mask):
    Megatron's forward applies it, to the bit; the plain causal mask, per batch row, takes SDPA."""
    from crawlmill.training import attention
    from crawlmill.training.compat import causal_mask

    megatron, sdpa = attention_pair(ModelConfig(num_layers=1, hidden_size=64, num_attention_heads=4, ffn_hidden_size=172, seq_length=16))
    q, k, v = (torch.randn(16, 2, 4, 16) for _ in range(3))
    out_grad = torch.randn(16, 2, 64)
    reset = causal_mask(16, torch.device("cpu")).repeat(2, 1, 1, 1)
    reset[1, :, 10:, :10] = True  # the second row's second document (from position 10) does not see the first
    calls = []
    original = attention.F.scaled_dot_product_attention
    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", lambda *a, **kw: calls.append(1) or original(*a, **kw))
    expected, _ = forward_backward(megatron, q, k, v, reset, out_grad)
    got, _ = forward_backward(sdpa, q, k, v, reset, out_grad)
    assert torch.equal(got, expected) and calls == []
    plain = causal_mask(16, torch.device("cpu")).repeat(2, 1, 1, 1)
    got, _ = forward_backward(sdpa, q, k, v, plain, out_grad)
    torch.testing.assert_close(got, forward_backward(megatron, q, k, v, plain, out_grad)[0], rtol=1e-5, atol=1e-6)
    assert calls == [1]
    assert not torch.allclose(got[10:, 1], expected[10:, 1])  # the reset mask did change the second row


def test_the_model_with_sdpa_matches_the_model_with_megatrons_attention(model_parallel):
    from crawlmill.training.attention import SdpaAttention
    from crawlmill.training.compat import causal_mask, device_scope
    from crawlmill.training.model import build_model
    from crawlmill.training.trainer import seed_everything

    losses, grads = {}, {}
    tokens = torch.randint(0, 512, (2, 64), generator=torch.Generator().manual_seed(0))
    for kind in ("megatron", "sdpa"):
        seed_everything(3)
        model_config = ModelConfig(num_layers=2, hidden_size=128, num_attention_heads=4, num_query_groups=2, ffn_hidden_size=344, seq_length=64, attention=kind)
        model = build_model(model_config, vocab_size=512)
        core = model.decoder.layers[0].self_attention.core_attention
        assert isinstance(core, SdpaAttention) == (kind == "sdpa")
        with device_scope():
            loss = model(tokens, torch.arange(64).expand(2, 64), causal_mask(64, torch.device("cpu")), labels=tokens.roll(-1, 1)).mean()
        loss.backward()
        losses[kind], grads[kind] = loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}
    assert losses["sdpa"] == pytest.approx(losses["megatron"], rel=1e-6)
    assert grads["sdpa"].keys() == grads["megatron"].keys()
    for name in grads["sdpa"]:
        torch.testing.assert_close(grads["sdpa"][name], grads["megatron"][name], rtol=1e-4, atol=1e-7, msg=lambda m, n=name: f"{n}: {m}")


def test_unknown_attention_is_refused():
    with pytest.raises(ValueError, match="attention 'flash': choose one of sdpa, megatron"):
        ModelConfig(attention="flash")
