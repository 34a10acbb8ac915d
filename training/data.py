"""Training data: pack's shards through Megatron's BlendedMegatronDatasetBuilder + GPTDataset, and a
data position of our own (megatron-core 0.16 ships no sampler that resumes at consumed samples).

Each shard folder's manifest gives its blend (prefixes weighted by tokens; for shards of a remix
output, the remix mixture: each group's share spread over its shards, pipeline/pack/mixture.py); folders are blended with `data.weights` (default: their token counts). The
split (train, valid, test) and the shuffling follow `data.split` and `data.seed`, so the same
config gives the same samples in the same order on every run.

The position is one number, the samples consumed: step s of a run with global batch G reads train
samples s·G ... (s+1)·G − 1, and data-parallel rank r of R takes its contiguous share of them, in
micro batches. A resumed run therefore continues with exactly the next sample, on any number of
ranks, as long as the order is the same: each checkpoint records what decides it (`data_order`),
and a resume with other shard content, split, seed, sequence length, batch or run length is
refused (`check_resume_order`; `data.check_on_resume: false` accepts it). Validation reads the
first `eval.iters` global batches of the valid split each time. How many epochs the run reads of
each blended group, and a warning past the mixture's cap: epochs.py (`ShardData.epochs`).

Shard folders may be URLs: each machine reads a cached local copy of what it trains on
(runstore.local_shards: manifest, .bin and .idx of every blended shard, downloaded once).

Damaged or foreign data is a ShardError naming the file before Megatron reads it: a manifest that
is not JSON or lacks what training reads (`check_manifest`), a missing `.bin`, an `.idx` that does
not describe its `.bin` (`check_shards`: the .idx walked in bounded memory, the .bin only sized), a
manifest whose token or document counts are not its shards' (`check_counts`: the blend weighs
folders by them), and, in each micro batch as it is made, a token id outside the tokenizer's vocabulary (which the embedding
would turn into an IndexError on CPU, a device-side assert on GPU); `crawlmill shards verify`
checks every token of a folder before a run.

    data = ShardData(config, cache_dir=run_dir / "data_cache", train_samples=steps * batch)
    for batch in data.micro_batches("train", step, rank, world, micro_batch_size, global_batch): ...
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crawlmill.files import as_path, file_size, sha256_file
from crawlmill.shards.manifest import MANIFEST, is_count, load_manifest, megatron_blend, tokenizer_folder
from crawlmill.shards.mmidx import ShardError, check_index, read_index

from .config import TrainConfig, not_pack_output
from .epochs import BlendedShard, GroupEpochs, data_epochs
from .index_cache import machine_by_machine
from .runstore import local_file, local_shards


@dataclass
class TokenIds:
    """What GPTDataset needs of a tokenizer: the end-of-document and padding ids. `vocab_size` None
    lets each IndexedDataset read its token dtype from its own .idx header."""

    eod: int
    pad: int = -1  # no padding in packed shards: -1 matches no token
    vocab_size: int | None = None

    @property
    def unique_identifiers(self) -> dict[str, Any]:
        """Part of GPTDataset's cache key (Megatron's tokenizers have the same property)."""
        return {"class": "crawlmill.training.data.TokenIds", "eod": self.eod, "pad": self.pad}


@dataclass
class ShardFolder:
    path: Path  # local: the folder, or a URL's cached copy
    manifest: dict[str, Any]
    source: str = ""  # the folder as given (a path or URL), for messages; "" for `path`

    @property
    def name(self) -> str:
        return self.source or str(self.path)

    @property
    def tokens(self) -> int:
        return int(self.manifest["tokens"])

    @property
    def content(self) -> str:
        """What the folder holds, not where: its shards' .bin/.idx checksums and its own blend."""
        shards = [[s.get("prefix"), *((s.get("files") or {}).get(kind, {}).get("sha256") for kind in ("bin", "idx"))] for s in self.manifest["shards"]]
        own = self.manifest.get("blend") or {}
        payload = json.dumps([shards, own.get("prefixes"), own.get("weights")], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


class DataOrderChanged(ValueError):
    """A resume whose data settings give another sample order than the checkpoint's run had."""


def data_order(config: TrainConfig, folders: list[ShardFolder], global_batch: int, train_samples: int) -> dict[str, Any]:
    """What decides the sample each step reads: the folders' content and blend weights, the split,
    the shuffling seed, the sequence length, and the batch and sample count GPTDataset's shuffle
    was built for (a run of another length shuffles otherwise). Saved with every checkpoint."""
    return {
        "shards": [folder.content for folder in folders], "weights": config.data.weights, "split": config.data.split,
        "seed": config.data.seed, "seq_length": config.model.seq_length, "global_batch": global_batch, "train_samples": train_samples,
    }  # fmt: skip


def _change(key: str, saved: dict[str, Any], now: dict[str, Any]) -> str:
    if key == "shards":
        return "the content of data.shards (repacked or other folders)"
    text = f"{key} {saved.get(key)!r} → {now[key]!r}"
    batch, samples = saved.get("global_batch"), saved.get("train_samples")
    if key == "train_samples" and batch == now.get("global_batch") and isinstance(batch, int) and isinstance(samples, int) and batch > 0:  # the run's length (max_steps x batch)
        text += f": the run has {samples // batch:,} steps of {batch} sequences: resume it with --max-steps {samples // batch}"
    return text


def check_resume_order(saved: dict[str, Any] | None, now: dict[str, Any], checkpoint: Any) -> None:
    """DataOrderChanged naming each setting that differs from the checkpoint's run (one saved
    before the order was recorded is not checked): the resumed run would read other samples at
    its position, repeating some the run has seen and skipping others."""
    if saved is None:
        return
    now = json.loads(json.dumps(now))  # as saved
    changed = [_change(key, saved, now) for key, value in now.items() if saved.get(key) != value]
    if changed:
        raise DataOrderChanged(
            f"{checkpoint}: the run being resumed read its data in another order ({'; '.join(changed)}): resuming would "
            "repeat samples it has seen and skip others. Resume with the run's settings (run.json), start a new run "
            "from its weights (--init-from), or set data.check_on_resume: false to accept the new order"
        )


def open_folders(paths: list[str]) -> list[ShardFolder]:
    """Pack output folders with their manifests (a URL's: its local copy); all must share one tokenizer."""
    if not paths:
        raise ValueError("data.shards: no shard folder given (pack output folders; in a run, pack's)")
    folders = []
    for path in paths:
        try:
            manifest = load_manifest(path)
        except (OSError, ValueError) as exc:  # not JSON, not UTF-8, a name outside the folder...
            raise ShardError(as_path(path) / MANIFEST, f"unreadable manifest: {exc}") from None
        if manifest is None:
            raise not_pack_output(path)
        check_manifest(manifest, as_path(path) / MANIFEST)
        folder = ShardFolder(local_shards(path, manifest), manifest, str(path))
        check_counts(folder)
        folders.append(folder)
    digests = {f.manifest["tokenizer"]["sha256"] for f in folders}
    if len(digests) > 1:
        raise ValueError(f"data.shards: the folders were packed with {len(digests)} different tokenizers; one model needs one")
    return folders


def check_manifest(manifest: Any, path: Any) -> None:
    """ShardError naming the manifest `path` unless what training reads of it has the types and
    ranges pack writes (a damaged or hand-edited manifest would otherwise raise KeyError, TypeError
    or ZeroDivisionError deep in blend() and ShardData)."""

    def bad(problem: str) -> ShardError:
        return ShardError(path, f"not a pack manifest training can use: {problem}")

    if not isinstance(manifest, dict):
        raise bad("expected a JSON object")
    tokenizer = manifest.get("tokenizer")
    if not isinstance(tokenizer, dict):
        raise bad("no `tokenizer` object")
    for key in ("path", "sha256"):
        if not isinstance(tokenizer.get(key), str):
            raise bad(f"tokenizer.{key} {tokenizer.get(key)!r} is not a string")
    vocab, padded, eod = (tokenizer.get(key) for key in ("vocab_size", "padded_vocab_size", "eod_id"))
    if not is_count(vocab) or vocab < 1:
        raise bad(f"tokenizer.vocab_size {vocab!r} is not a positive count")
    if not is_count(padded) or padded < vocab:
        raise bad(f"tokenizer.padded_vocab_size {padded!r} is not a count of at least vocab_size {vocab}")
    if not is_count(eod) or eod >= vocab:
        raise bad(f"tokenizer.eod_id {eod!r} is not a token id below vocab_size {vocab}")
    if not is_count(manifest.get("tokens")) or manifest["tokens"] < 1:
        raise bad(f"tokens {manifest.get('tokens')!r} is not a positive count (a folder without tokens has nothing to train on)")
    shards = manifest.get("shards")
    if not isinstance(shards, list):
        raise bad("`shards` is not a list")
    for i, entry in enumerate(shards):
        if not isinstance(entry, dict) or not isinstance(entry.get("prefix"), str) or not entry["prefix"]:
            raise bad(f"shards[{i}] is not an object with a prefix")
        for key in ("documents", "tokens"):
            if key in entry and not is_count(entry[key]):
                raise bad(f"shards[{i}].{key} {entry[key]!r} is not a count")
    mix = manifest.get("blend")
    prefixes, weights = (mix.get("prefixes"), mix.get("weights")) if isinstance(mix, dict) else (None, None)
    if not isinstance(prefixes, list) or not prefixes or not all(isinstance(p, str) and p for p in prefixes):
        raise bad("blend.prefixes is not a list of shard prefixes")
    numbers = isinstance(weights, list) and all(isinstance(w, (int, float)) and not isinstance(w, bool) and 0 <= w <= 1e300 for w in weights)
    if not numbers or len(weights) != len(prefixes) or not sum(weights) > 0:
        raise bad(f"blend.weights {weights!r}: need one finite weight >= 0 for each of the {len(prefixes)} prefixes, with a positive sum")


def check_shards(prefixes: list[str]) -> list[tuple[int, int]]:
    """Each shard's .idx against itself and its .bin's size (mmidx.check_index: the .idx walked in
    bounded memory, the .bin only sized): a missing .bin, a cut one, an .idx of another shard are a
    ShardError naming the file here, not an AssertionError or a wrong-shaped sample in Megatron.
    Returns each shard's documents and tokens, as its .idx counts them."""
    counts = []
    for prefix in prefixes:
        bin_path = as_path(f"{prefix}.bin")
        index = read_index(f"{prefix}.idx")
        try:
            size = file_size(bin_path)
        except OSError as exc:
            raise ShardError(bin_path, f"cannot read: {exc.strerror or exc}") from None
        counts.append((index.documents, check_index(index, size, bin_path)))
    return counts


def check_counts(folder: ShardFolder) -> None:
    """ShardError unless the manifest's counts are its shards' own: each listed shard's documents
    and tokens (where its entry has them) against its .idx, and the folder's `tokens` against their
    sum, by which blend() weighs folders. Each blended shard is checked whole on the way
    (check_shards: the one walk of its .idx), a listed shard the blend leaves out (a remix group of
    share 0) by its .idx alone, read where the folder is (a URL's local copy has blended shards only)."""
    manifest, root = folder.manifest, as_path(folder.name)
    blended = list(dict.fromkeys(manifest["blend"]["prefixes"]))
    entries = {entry["prefix"]: entry for entry in manifest["shards"]}
    counts = dict(zip(blended, check_shards([str(folder.path / prefix) for prefix in blended])))
    for prefix in [p for p in entries if p not in counts]:
        index = read_index(root / f"{prefix}.idx")
        counts[prefix] = index.documents, check_index(index)
    for prefix, entry in entries.items():
        documents, tokens = counts[prefix]
        if entry.get("documents", documents) != documents or entry.get("tokens", tokens) != tokens:
            raise ShardError(
                root / f"{prefix}.idx",
                f"holds {documents:,} documents and {tokens:,} tokens, its entry in {root / MANIFEST} says "
                f"{entry.get('documents', documents):,} and {entry.get('tokens', tokens):,} (a damaged or hand-edited manifest, "
                f"or shards replaced after packing: `crawlmill shards verify {folder.name}`)",
            )
    held = sum(tokens for _, tokens in counts.values())
    if held != manifest["tokens"]:
        raise ShardError(
            root / MANIFEST,
            f"says {manifest['tokens']:,} tokens, its shards hold {held:,} (their .idx files): a damaged or hand-edited "
            f"manifest, which would skew the blend (training weighs shard folders by their tokens); repack the folder, "
            f"or see `crawlmill shards verify {folder.name}`",
        )


def blend_entries(folders: list[ShardFolder], weights: list[float] | None) -> list[BlendedShard]:
    """Every blended shard with its share: the folder's weight split by its own blend."""
    folder_weights = weights if weights is not None else [float(f.tokens) for f in folders]
    total = sum(folder_weights)
    entries = []
    for folder, weight in zip(folders, folder_weights):
        if weight == 0:
            continue
        folder_prefixes, folder_shares = megatron_blend(folder.path)
        inside = sum(folder_shares)
        for own, prefix, share in zip(folder.manifest["blend"]["prefixes"], folder_prefixes, folder_shares):
            entries.append(BlendedShard(folder.name, folder.manifest, own, prefix, weight / total * share / inside))
    return entries


def blend(folders: list[ShardFolder], weights: list[float] | None) -> tuple[list[str], list[float]]:
    """Every shard prefix with its share: the folder's weight split by its own blend."""
    entries = blend_entries(folders, weights)
    return [entry.path for entry in entries], [entry.share for entry in entries]


def check_split(prefixes: list[str], split: str) -> dict[str, int]:
    """Every split with a share must get documents in every shard: Megatron's GPTDataset loops
    forever on an empty split (it keeps adding epochs of zero tokens). Same rounding as Megatron.
    Returns each shard's tokens in the train split, the epoch GPTDataset repeats (epochs.py)."""
    shares = [float(x) for x in split.split(",")]
    bounds = [sum(shares[:i]) / sum(shares) for i in range(4)]
    train = {}
    for prefix in prefixes:
        index = read_index(f"{prefix}.idx")
        documents = index.documents
        for name, share, start, end in zip(("train", "valid", "test"), shares, bounds, bounds[1:]):
            if share > 0 and round(end * documents) - round(start * documents) == 0:
                raise ValueError(
                    f"data.split {split!r}: {prefix} has {documents} document(s), none for its {name} share; "
                    f"give larger shards or a split whose shares each take a document (e.g. 90,10,0)"
                )
        train[prefix] = int(np.asarray(index.lengths[: round(bounds[1] * documents)], dtype=np.int64).sum())
    return train


def token_bytes(tokenizer_path: str, eod: int, sha256: str | None = None) -> tuple[np.ndarray | None, str]:
    """(bytes of text each token id stands for, "") for the tokenizer folder `tokenizer_path` (a path
    or URL): exact for byte-level BPE, 0 for the end-of-document token (shards.tokenbytes); (None, why)
    when they would not be exact, the tokenizer is not there, or its tokenizer.json is not the one of
    digest `sha256` (the manifest's: another tokenizer at the packing machine's path would give
    bits per byte silently wrong). What bits per byte divide by."""
    from crawlmill.shards.tokenbytes import TokenBytesError, token_byte_lengths

    path = as_path(tokenizer_path) / "tokenizer.json"
    if not path.is_file():
        return None, f"{path} not found"
    local = local_file(str(path))  # a URL's tokenizer: copied once
    if sha256 is not None and sha256_file(local) != sha256:
        return None, f"{path} is not the tokenizer.json the shards were packed with (the manifest's sha256 {sha256[:12]}…)"
    try:
        return token_byte_lengths(local, eod_id=eod), ""
    except TokenBytesError as exc:
        return None, str(exc)


def collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([s[key] for s in samples]) for key in ("tokens", "labels", "loss_mask", "position_ids")}


class ShardData:
    """The train and validation datasets of a config (see the module docstring)."""

    def __init__(self, config: TrainConfig, cache_dir: Path, train_samples: int, valid_samples: int) -> None:
        from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
        from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

        self.folders = open_folders(config.data.shards)
        tokenizer = self.folders[0].manifest["tokenizer"]
        self.eod = int(tokenizer["eod_id"])
        self.tokenizer_vocab = int(tokenizer["vocab_size"])
        self.padded_vocab = int(tokenizer["padded_vocab_size"])
        self.tokenizer_path, self.tokenizer_sha256 = tokenizer_folder(self.folders[0].manifest, config.data.shards[0]), tokenizer["sha256"]
        self.blended = blend_entries(self.folders, config.data.weights)  # every shard checked by open_folders
        prefixes, weights = [entry.path for entry in self.blended], [entry.share for entry in self.blended]
        self.train_split = check_split(prefixes, config.data.split)
        self.train_tokens = train_samples * config.model.seq_length
        gpt_config = GPTDatasetConfig(
            random_seed=config.data.seed,
            sequence_length=config.model.seq_length,
            blend=(prefixes, weights),
            split=config.data.split,
            path_to_cache=str(cache_dir),
            tokenizer=TokenIds(eod=self.eod),
            reset_position_ids=False,
            reset_attention_mask=False,
            eod_mask_loss=False,
            create_attention_mask=False,  # the model gets one causal mask (compat.causal_mask)
        )
        builder = BlendedMegatronDatasetBuilder(GPTDataset, [train_samples, valid_samples, 0], lambda: True, gpt_config)
        self.train, self.valid, _ = machine_by_machine(builder.build, cache_dir)
        if self.train is None:
            raise ValueError(f"data.split {config.data.split!r} leaves no training documents")

    def epochs(self) -> list[GroupEpochs]:
        """How many epochs the run reads of each blended group (epochs.py; rank 0 asks, once)."""
        return data_epochs(self.blended, self.train_split, self.train_tokens)

    def micro_batches(self, split: str, step: int, rank: int, world: int, micro_batch_size: int, global_batch: int) -> list[dict[str, torch.Tensor]]:
        """This rank's micro batches of global batch number `step` of `split` ("train" or "valid")."""
        dataset = self.train if split == "train" else self.valid
        per_rank = global_batch // world
        first = step * global_batch + rank * per_rank
        samples = [dataset[i] for i in range(first, first + per_rank)]
        batches = [collate(samples[i : i + micro_batch_size]) for i in range(0, per_rank, micro_batch_size)]
        for number, batch in enumerate(batches):  # two reductions a micro batch; the culprit looked for only on failure
            if int(batch["tokens"].min()) < 0 or int(batch["labels"].min()) < 0 or max(int(batch["tokens"].max()), int(batch["labels"].max())) >= self.tokenizer_vocab:
                first_of_batch = number * micro_batch_size
                bad = next(k for k in range(micro_batch_size) if not self._in_vocab(samples[first_of_batch + k]))
                self._refuse(dataset, samples[first_of_batch + bad], first + first_of_batch + bad, split)
        return batches

    def _in_vocab(self, sample: dict[str, torch.Tensor]) -> bool:
        ids = torch.cat([sample["tokens"], sample["labels"]])
        return int(ids.min()) >= 0 and int(ids.max()) < self.tokenizer_vocab

    def _refuse(self, dataset: Any, sample: dict[str, torch.Tensor], index: int, split: str) -> None:
        """A ShardError naming the shard sample `index` came from and the id outside the vocabulary: an
        id pack never writes (a damaged shard, or one packed with another tokenizer)."""
        ids = torch.cat([sample["tokens"], sample["labels"]])
        low, high = int(ids.min()), int(ids.max())
        member = dataset.datasets[int(sample["dataset_id"])] if "dataset_id" in sample else dataset  # a blend's, or the only one
        prefix = getattr(getattr(member, "dataset", None), "path_prefix", None) or "a shard of data.shards"
        raise ShardError(
            f"{prefix}.bin",
            f"{split} sample {index} holds token id {low if low < 0 else high}, outside the tokenizer's "
            f"{self.tokenizer_vocab:,} ids (a damaged shard, or one packed with another tokenizer; "
            f"`crawlmill shards verify` finds every such token)",
        )
