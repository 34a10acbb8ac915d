"""Imported first in a probe process (never in the test process): Megatron's CUDA-only optimizer
path (DistributedDataParallel, the distributed optimizer) runs on CPU. Every tensor asked for on a
CUDA device is made on the CPU, `.cuda()` is a no-op, streams and synchronisation do nothing, and a
CPU tensor's `.type()` names its CUDA twin (Megatron checks parameter types by those names). What it
shows is the bookkeeping (parameter groups, buffers, state save and load), not CUDA kernels."""

import contextlib

import torch


def _cpu(device):
    if isinstance(device, int) or (device is not None and str(device).startswith("cuda")):
        return "cpu"
    return device


def _on_cpu(factory):
    def make(*args, **kwargs):
        if "device" in kwargs:
            kwargs["device"] = _cpu(kwargs["device"])
        kwargs.pop("pin_memory", None)  # page-locked memory needs CUDA
        return factory(*args, **kwargs)

    return make


for _name in ("tensor", "zeros", "empty", "ones", "full", "arange", "zeros_like", "empty_like", "ones_like", "full_like", "randn", "rand"):
    setattr(torch, _name, _on_cpu(getattr(torch, _name)))

_to, _type = torch.Tensor.to, torch.Tensor.type


def _tensor_to(self, *args, **kwargs):
    if "device" in kwargs:
        kwargs["device"] = _cpu(kwargs["device"])
    return _to(self, *(_cpu(a) if isinstance(a, (str, torch.device)) else a for a in args), **kwargs)


def _tensor_type(self, *args, **kwargs):
    named = _type(self, *args, **kwargs)
    if not args and not kwargs and named.startswith("torch.") and not named.startswith("torch.cuda."):
        return "torch.cuda." + named[len("torch."):]
    return named


class _Stream:
    def wait_stream(self, *args):
        pass

    def synchronize(self):
        pass

    def record_event(self, *args):
        return None


torch.Tensor.to, torch.Tensor.type = _tensor_to, _tensor_type
torch.Tensor.cuda = lambda self, *args, **kwargs: self
torch.cuda.synchronize = lambda *args, **kwargs: None
torch.cuda.current_device = lambda: 0
torch.cuda.current_stream = lambda *args, **kwargs: _Stream()
torch.cuda.Stream = lambda *args, **kwargs: _Stream()
torch.cuda.stream = lambda *args, **kwargs: contextlib.nullcontext()
