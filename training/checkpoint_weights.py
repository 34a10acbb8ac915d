"""A checkpoint's model weights read one decoder layer at a time, without building the model: what
`crawlmill export` streams into safetensors files, so that its memory is one layer (or the largest
tensor, the embedding), not the whole model twice.

A checkpoint's `model/` folder is a torch.distributed.checkpoint (dist_checkpointing's torch_dist
format) keyed by Megatron's global names. A decoder weight is one tensor for all layers,
[layers, ...], saved in chunks of a layer (and of a tensor-parallel rank). A read asks for the
[1, ...] slice of one layer: torch.distributed.checkpoint reads the saved chunks that overlap it,
whatever parallel layout wrote them, and no others. In one process, without a process group or
megatron-core. Data-only, as every checkpoint read (sharded_io: `.metadata` checked before it is
unpickled, tensors through torch's weights-only loader), unless trusted. A folder at a URL is read
in place through its fsspec filesystem (crawlmill.files): each read fetches the byte ranges of its
chunks, so that nothing else of the checkpoint (the optimizer's state: twice the weights, or six
times bf16 weights) is downloaded. The folder's `.metadata` (which for a large run holds every
chunk's place, optimizer's included) is checked and read once per reader, not once per layer.

    reader = checkpoint_reader("run/checkpoints/step-00000100/model")
    for name, tensor in checkpoint_weights(reader, weight_shapes(reader)):
        ...   # embedding.word_embeddings.weight, decoder.layers.0.self_attention.linear_qkv.weight, ...
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Iterator

import torch

from crawlmill.files import AnyPath, as_path, fs_and_path, is_url

from .sharded_io import check_metadata, load_errors, weights_only_loads

MODEL_PREFIXES = ("embedding.", "decoder.", "output_layer.")  # the rest: optimizer state, Transformer Engine's bytes
LAYERS = "decoder.layers."
# a URL's files read ahead this much past each read (s3fs's default, 50 MiB, would fetch that much of
# the chunks beside each one read: mostly the optimizer's)
URL_BLOCK_BYTES = 1 << 20


def checkpoint_reader(folder: AnyPath, trust: bool = False) -> Any:
    """torch.distributed.checkpoint's reader of a checkpoint's model folder (a local path, or a URL
    read in place) whose metadata is checked (unless `trust`) and read once, then reused by every load."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.filesystem import FileSystemBase

    if not (as_path(folder) / ".metadata").is_file():
        raise FileNotFoundError(f"{folder}: no .metadata (a checkpoint's model folder, written by dist_checkpointing)")
    if not trust:
        check_metadata(as_path(folder))

    class URLFileSystem(FileSystemBase):  # the reading half: the folder's fsspec files, opened for ranges
        @contextlib.contextmanager
        def create_stream(self, path: Any, mode: str) -> Iterator[Any]:
            fs, inner = fs_and_path(path)
            with fs.open(inner, mode, block_size=URL_BLOCK_BYTES) as stream:
                yield stream

        def concat_path(self, path: Any, suffix: str) -> Any:
            return as_path(path) / suffix

        def init_path(self, path: Any) -> Any:
            return as_path(path)

        def exists(self, path: Any) -> bool:
            return as_path(path).exists()

        def rename(self, path: Any, new_path: Any) -> None:
            raise NotImplementedError("a checkpoint at a URL is only read here")

        mkdir = rm_file = rename  # type: ignore[assignment]

        @classmethod
        def validate_checkpoint_id(cls, checkpoint_id: Any) -> bool:
            return is_url(str(checkpoint_id))

    class Reader(dcp.FileSystemReader):
        def __init__(self) -> None:
            super().__init__(str(folder))
            if is_url(str(folder)):
                self.fs, self.path = URLFileSystem(), as_path(folder)
            self.folder, self.trusted = folder, trust
            self._metadata: Any = None

        def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
            if self._metadata is None:
                self._metadata = super().read_metadata(*args, **kwargs)
            return self._metadata

    return Reader()


def weight_shapes(reader: Any) -> dict[str, tuple[torch.Size, torch.dtype]]:
    """The model weights a checkpoint_reader's folder holds: global name -> (global shape, dtype);
    a decoder weight's first dimension is the layer."""
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    metadata = reader.read_metadata()
    shapes = {name: (entry.size, entry.properties.dtype) for name, entry in metadata.state_dict_metadata.items() if isinstance(entry, TensorStorageMetadata) and name.startswith(MODEL_PREFIXES)}
    if not shapes:
        raise ValueError(f"{reader.folder}: no model weights in this checkpoint")
    return shapes


def layer_count(shapes: dict[str, tuple[torch.Size, torch.dtype]]) -> int:
    """The number of decoder layers: the first dimension every decoder weight shares."""
    counts = {shape[0] for name, (shape, _) in shapes.items() if name.startswith(LAYERS)}
    if len(counts) > 1:
        raise ValueError(f"the checkpoint's decoder weights disagree on the number of layers: {sorted(counts)}")
    return counts.pop() if counts else 0


def _slice_planner(offsets: dict[str, tuple[int, ...]]) -> Any:
    """A load planner that reads, for each tensor of the state dict, the slice of the saved tensor
    starting at `offsets[name]` with the state dict tensor's shape (the default planner reads whole
    saved tensors, or the chunks a sharded tensor holds)."""
    from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
    from torch.distributed.checkpoint.metadata import ChunkStorageMetadata
    from torch.distributed.checkpoint.planner import LoadPlan
    from torch.distributed.checkpoint.planner_helpers import create_read_items_for_chunk_list

    class SlicePlanner(DefaultLoadPlanner):
        def create_local_plan(self) -> LoadPlan:
            items = []
            for name, tensor in self.state_dict.items():
                chunk = ChunkStorageMetadata(offsets=torch.Size(offsets[name]), sizes=tensor.size())
                items += create_read_items_for_chunk_list(name, self.metadata.state_dict_metadata[name], [chunk])
            return LoadPlan(items)

        def lookup_tensor(self, index: Any) -> torch.Tensor:
            return self.state_dict[index.fqn]  # a plain tensor standing for the slice: read items' offsets are within it

    return SlicePlanner(flatten_state_dict=False, flatten_sharded_tensors=False)


def read_slices(reader: Any, requests: dict[str, tuple[tuple[int, ...], torch.Size, torch.dtype]]) -> dict[str, torch.Tensor]:
    """name -> the slice of the saved tensor at (offsets, shape), of dtype, for each request."""
    import torch.distributed.checkpoint as dcp

    state = {name: torch.empty(shape, dtype=dtype) for name, (_, shape, dtype) in requests.items()}
    planner = _slice_planner({name: offsets for name, (offsets, _, _) in requests.items()})
    with warnings.catch_warnings(), load_errors(reader.folder), contextlib.nullcontext() if reader.trusted else weights_only_loads():
        warnings.filterwarnings("ignore", message=".*assuming the intent is to load in a single process")
        dcp.load(state, storage_reader=reader, planner=planner, no_dist=True)
    return state


def _reads(shapes: dict[str, tuple[torch.Size, torch.dtype]]) -> Iterator[dict[str, tuple[str, tuple[int, ...], torch.Size, torch.dtype]]]:
    """The reads, in order, each one load: state dict name -> (saved name, offsets, shape read, dtype).
    The embedding first, then each layer's weights together, then the final norm and output layer."""
    top = [name for name in shapes if not name.startswith(LAYERS)]
    first = [name for name in top if name.startswith("embedding.")]
    layered = [name for name in shapes if name.startswith(LAYERS)]

    def whole(name: str) -> dict[str, tuple[str, tuple[int, ...], torch.Size, torch.dtype]]:
        return {name: (name, (0,) * len(shapes[name][0]), *shapes[name])}

    yield from (whole(name) for name in first)
    for layer in range(layer_count(shapes)):
        yield {f"{LAYERS}{layer}.{name[len(LAYERS) :]}": (name, (layer,) + (0,) * (len(shapes[name][0]) - 1), torch.Size((1, *shapes[name][0][1:])), shapes[name][1]) for name in layered}
    yield from (whole(name) for name in top if name not in first)


def checkpoint_weights(reader: Any, shapes: dict[str, tuple[torch.Size, torch.dtype]]) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of every model weight in `shapes` (weight_shapes), named as the model's
    state_dict names them (decoder.layers.N.…), in _reads' order. One layer is read at a time."""
    for group in _reads(shapes):
        loaded = read_slices(reader, {saved: (offsets, shape, dtype) for saved, offsets, shape, dtype in group.values()})
        for name, (saved, _, _, _) in group.items():
            tensor = loaded.pop(saved)
            yield name, (tensor[0] if name != saved else tensor)


def meta_weights(shapes: dict[str, tuple[torch.Size, torch.dtype]]) -> dict[str, torch.Tensor]:
    """What checkpoint_weights yields, in its order, as tensors on the meta device (no memory):
    to plan the output files before any weight is read."""
    return {name: torch.empty(shape[1:] if name != saved else shape, dtype=dtype, device="meta") for group in _reads(shapes) for name, (saved, _, shape, dtype) in group.items()}
