"""Context parallelism without Transformer Engine (training/context_parallel.py): the layout is
Megatron's, and two gloo ranks that each hold half of every sequence compute the attention, the
outputs and the gradients of one rank holding whole sequences."""

import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from crawlmill.training.context_parallel import rank_chunks, split_sequence


def test_each_rank_holds_an_early_and_a_late_chunk_as_megatron_lays_them_out():
    sequence = torch.arange(16).view(1, 16)
    shares = [split_sequence(sequence, 1, rank, 2).flatten().tolist() for rank in (0, 1)]
    assert shares == [[0, 1, 2, 3, 12, 13, 14, 15], [4, 5, 6, 7, 8, 9, 10, 11]]
    assert [rank_chunks(rank, 4) for rank in range(4)] == [[0, 7], [1, 6], [2, 5], [3, 4]]
    shares = [split_sequence(sequence, 1, rank, 4) for rank in range(4)]
    assert sorted(torch.cat(shares, 1).flatten().tolist()) == list(range(16))  # every position once
    assert torch.equal(split_sequence(sequence, 1, 0, 1), sequence)
    with pytest.raises(ValueError, match="sequence length 16 is not a multiple of 2 x context parallel size \\(12\\)"):
        split_sequence(sequence, 1, 0, 6)


def _attention_and_model(rank: int, root: Path) -> None:
    from megatron.core import parallel_state

    from crawlmill.training.attention import SdpaAttention
    from crawlmill.training.compat import causal_mask, device_scope, seed_model_parallel
    from crawlmill.training.config import ParallelConfig
    from crawlmill.training.model import build_model, transformer_config
    from crawlmill.training.model_config import ModelConfig

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29617")
    dist.init_process_group("gloo", rank=rank, world_size=2)
    report: dict = {}
    try:
        # the reference first: whole sequences on this rank alone (its own copy, no collectives)
        parallel_state.initialize_model_parallel(1, 1)
        seed_model_parallel(0)
        model_config = ModelConfig(num_layers=2, hidden_size=128, num_attention_heads=4, num_query_groups=2, ffn_hidden_size=344, seq_length=64, init_std=0.1)
        torch.manual_seed(0)
        reference = build_model(model_config, 256)
        seq, batch = 64, 2
        generator = torch.Generator().manual_seed(1)
        tokens = torch.randint(0, 256, (batch, seq + 1), generator=generator)
        inputs, labels, positions = tokens[:, :-1], tokens[:, 1:], torch.arange(seq).expand(batch, seq)
        with device_scope():
            full_loss = reference(inputs, positions, causal_mask(seq, torch.device("cpu")), labels=labels)
        full_loss.sum().backward()
        q = torch.randn(seq, batch, 4, 32, generator=generator)
        k, v = (torch.randn(seq, batch, 2, 32, generator=generator) for _ in range(2))
        out_grad = torch.randn(seq, batch, 4 * 32, generator=generator)
        parallel_state.destroy_model_parallel()

        parallel_state.initialize_model_parallel(1, 1, context_parallel_size=2)
        seed_model_parallel(0)
        config = transformer_config(model_config, "fp32", ParallelConfig(context=2))
        from megatron.core.transformer.enums import AttnMaskType

        attention = SdpaAttention(config, 1, AttnMaskType.causal, "self")
        leaves = [split_sequence(t, 0, rank, 2).clone().requires_grad_() for t in (q, k, v)]
        with device_scope():
            out = attention(*leaves, None)
        out.backward(split_sequence(out_grad, 0, rank, 2))
        whole = [t.clone().requires_grad_() for t in (q, k, v)]
        expected = torch.nn.functional.scaled_dot_product_attention(*(t.permute(1, 2, 0, 3) for t in whole), is_causal=True, enable_gqa=True)
        expected = expected.permute(2, 0, 1, 3).reshape(seq, batch, 4 * 32)
        expected.backward(out_grad)
        report["attention"] = bool(torch.allclose(out, split_sequence(expected, 0, rank, 2), rtol=1e-5, atol=1e-6))
        report["attention_grads"] = [bool(torch.allclose(a.grad, split_sequence(b.grad, 0, rank, 2), rtol=1e-4, atol=1e-5)) for a, b in zip(leaves, whole, strict=True)]

        model = build_model(model_config, 256, parallel=ParallelConfig(context=2))
        model.load_state_dict(reference.state_dict())
        share = [split_sequence(t, 1, rank, 2) for t in (inputs, positions, labels)]
        with device_scope():
            losses = model(share[0], share[1], None, labels=share[2])
        losses.sum().backward()
        report["losses"] = bool(torch.allclose(losses, split_sequence(full_loss, 1, rank, 2), rtol=1e-5, atol=1e-5))
        mismatched = []
        for (name, param), ref in zip(model.named_parameters(), reference.parameters(), strict=True):
            grad = param.grad.clone()
            dist.all_reduce(grad)  # the gradient of the whole batch: both ranks' shares summed
            if float((grad - ref.grad).abs().max()) > 1e-5 * float(ref.grad.abs().max()):  # sums in another order
                mismatched.append(name)
        report["mismatched_grads"] = mismatched
    finally:
        parallel_state.destroy_model_parallel()
        dist.destroy_process_group()
    (root / f"rank-{rank}.json").write_text(json.dumps(report))


def test_two_context_parallel_ranks_compute_the_attention_losses_and_gradients_of_one(tmp_path):
    """Grouped-query attention (4 heads, 2 groups); RoPE positions are Megatron's cut of its
    embeddings (on CPU, compat.device_scope's), so a layout that differed from the batch's would
    change every loss past the first chunk."""
    torch.multiprocessing.spawn(_attention_and_model, args=(tmp_path,), nprocs=2)
    for rank in (0, 1):
        report = json.loads((tmp_path / f"rank-{rank}.json").read_text())
        assert report == {"attention": True, "attention_grads": [True, True, True], "losses": True, "mismatched_grads": []}, (rank, report)


def test_megatrons_own_attention_is_refused_with_context_parallelism(model_parallel):
    from crawlmill.training.config import ParallelConfig
    from crawlmill.training.model import build_model
    from crawlmill.training.model_config import ModelConfig

    shape = ModelConfig(num_layers=1, hidden_size=64, num_attention_heads=2, ffn_hidden_size=128, seq_length=32, attention="megatron")
    with pytest.raises(ValueError, match="context parallelism needs Transformer Engine's attention or attention: sdpa"):
        build_model(shape, 256, parallel=ParallelConfig(context=2))
