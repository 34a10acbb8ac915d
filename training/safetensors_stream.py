"""A safetensors file written one tensor at a time, for `crawlmill export`'s streaming.

The safetensors library serializes a whole dict of tensors in one call and meanwhile holds a bytes
copy of each (measured: exporting a 1b model in one file peaked at twice the file's size). The
format needs no such thing: an 8-byte little-endian header length, a JSON header giving each
tensor's dtype, shape and byte range, then the bytes, back to back. Knowing every tensor's name,
shape and dtype in advance (meta tensors), the writer writes the header first and then each tensor's
bytes as it arrives, straight from the tensor's memory; memory holds one tensor at a time. The header
is padded with spaces to a multiple of 8 bytes, as the library's own writer does. Files are read by
the safetensors library (tested, with transformers).

    with SafetensorsWriter(path, {"w": torch.empty(4, 4, dtype=torch.bfloat16, device="meta")}, {"format": "pt"}) as out:
        out.write("w", weight)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Mapping

import torch

DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}  # fmt: skip


class SafetensorsWriter:
    """Writes the tensors `planned` names, in its order, into a safetensors file at `path`."""

    def __init__(self, path: Path, planned: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> None:
        if sys.byteorder != "little":
            raise RuntimeError("safetensors stores little-endian bytes; this machine is big-endian")
        header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
        offset = 0
        for name, tensor in planned.items():
            if tensor.dtype not in DTYPES:
                raise ValueError(f"{name}: dtype {tensor.dtype} has no safetensors name")
            nbytes = tensor.numel() * tensor.element_size()
            header[name] = {"dtype": DTYPES[tensor.dtype], "shape": list(tensor.shape), "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)
        self.path, self.size = path, 8 + len(text) + offset
        self._order = [(name, tuple(t.shape), t.dtype) for name, t in planned.items()]
        self._next = 0
        self._file = open(path, "wb")  # noqa: SIM115 - closed by close()
        self._file.write(len(text).to_bytes(8, "little") + text)

    def write(self, name: str, tensor: torch.Tensor) -> None:
        """The next tensor of the plan: its name, shape and dtype must be the planned ones."""
        if self._next >= len(self._order):
            raise ValueError(f"{self.path}: {name} is beyond the {len(self._order)} planned tensors")
        want = self._order[self._next]
        if (name, tuple(tensor.shape), tensor.dtype) != want:
            raise ValueError(f"{self.path}: expected {want[0]} {want[1]} {want[2]}, got {name} {tuple(tensor.shape)} {tensor.dtype}")
        data = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
        self._file.write(memoryview(data.numpy()))
        self._next += 1

    @property
    def complete(self) -> bool:
        return self._next == len(self._order)

    def close(self) -> None:
        """Close the file; one that did not receive every planned tensor is an error (and removed)."""
        if self._file.closed:
            return
        self._file.close()
        if not self.complete:
            os.unlink(self.path)
            raise ValueError(f"{self.path}: {self._next} of {len(self._order)} planned tensors written")
        if os.path.getsize(self.path) != self.size:
            raise OSError(f"{self.path}: {os.path.getsize(self.path)} bytes written, {self.size} planned")

    def __enter__(self) -> SafetensorsWriter:
        return self

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        if kind is None:
            self.close()
        else:
            self._file.close()
            Path(self.path).unlink(missing_ok=True)
