"""How many epochs a run reads of each blended group of its shards, and a warning past the cap.

Megatron's GPTDataset repeats each blended dataset as many epochs as its weight needs, without a
limit (Megatron-LM #547), so a run longer than the mixture was planned for reads its small groups
again and again without a word. At the start, rank 0 works out for every group

    epochs = train tokens x the group's share of the blend / the group's tokens in the train split

(the train split: data.split's first share of each shard's documents, rounded as Megatron does;
the other splits are never trained on), records them in run.json (`data_epochs`) and says on stderr
which groups go past the cap: the remix mixture's `max_epochs` (the manifest's
blend.mixture), or for a folder without a mixture DEFAULT_MAX_EPOCHS. Training goes on. The cap is
compared with the epochs of the group's whole tokens, as remix and pack plan it (a group remix
capped at 4 epochs is read ~4.1 times over a 97% train split: no warning for that).

A group is a remix group of a folder's mixture (named GROUP, or FOLDER:GROUP with several
folders); the whole folder (FOLDER) when its blend has no mixture and weighs shards by their tokens,
so that every shard is read equally often; else each shard (FOLDER/PREFIX).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

from crawlmill.shards.manifest import MANIFEST

# Muennighoff et al. 2023 (Scaling Data-Constrained Language Models): up to about 4 epochs, repeated
# tokens are worth about as much as unique ones; past that their value falls off fast.
DEFAULT_MAX_EPOCHS = 4.0
MAX_LINES = 20  # warnings printed; run.json has every group


class BlendedShard(NamedTuple):
    """One shard of the blend (data.blend_entries)."""

    folder: str  # its folder as given (a path or URL)
    manifest: dict[str, Any]  # the folder's
    prefix: str  # as the manifest names it
    path: str  # the local prefix Megatron reads
    share: float  # of the training samples


@dataclass
class GroupEpochs:
    name: str  # the key in run.json's data_epochs
    epochs: float
    cap: float
    cap_source: str  # which cap applies, for the warning
    share: float  # of the training samples
    tokens: int  # in the train split of its shards
    whole_tokens: int  # in its shards, every split: what the cap is planned against

    @property
    def whole_epochs(self) -> float:
        return self.epochs * self.tokens / self.whole_tokens if self.whole_tokens and math.isfinite(self.epochs) else self.epochs


def mixture_of(manifest: dict[str, Any]) -> tuple[dict[str, str], float | None]:
    """The manifest's remix groups by shard prefix, and its mixture's max_epochs; ({}, None) for a blend
    without a mixture (or one a hand edit left unreadable)."""
    mixture = (manifest.get("blend") or {}).get("mixture")
    if not isinstance(mixture, dict):
        return {}, None
    cap = mixture.get("max_epochs")
    cap = float(cap) if isinstance(cap, (int, float)) and not isinstance(cap, bool) and cap > 0 else None
    groups = mixture.get("groups")
    group_of: dict[str, str] = {}
    for name, entry in (groups.items() if isinstance(groups, dict) else ()):
        shards = entry.get("shards") if isinstance(entry, dict) else None
        for prefix in shards if isinstance(shards, list) else ():
            if isinstance(prefix, str):
                group_of[prefix] = str(name)
    return group_of, cap


def reads_evenly(manifest: dict[str, Any]) -> bool:
    """Whether the manifest's blend weighs its shards by their tokens (pack's blend without a mixture,
    adopt's by tokens), so that every shard is read equally often and the folder is one group;
    another blend (adopt's equal weights, a hand-written one) reads a small shard more often."""
    tokens = {entry["prefix"]: entry.get("tokens") for entry in manifest["shards"]}
    blend = manifest["blend"]
    ratios = [weight / tokens[prefix] for prefix, weight in zip(blend["prefixes"], blend["weights"]) if tokens.get(prefix)]
    return len(ratios) == len(blend["prefixes"]) and max(ratios) <= min(ratios) * (1 + 1e-9)


def cap_of(folder: str, cap: float | None) -> tuple[float, str]:
    """The cap of a group of `folder` (its mixture's `cap`, None for none) and which one it is."""
    source = f"{folder}/{MANIFEST}"
    if cap is not None:
        return cap, f"the remix mixture's max_epochs in {source}"
    why = "up to about 4 epochs repeated data is worth about as much as new, Muennighoff et al. 2023"
    return DEFAULT_MAX_EPOCHS, f"the default, as {source} has no remix mixture: {why}"


def data_epochs(entries: list[BlendedShard], train_split: dict[str, int], train_tokens: float) -> list[GroupEpochs]:
    """The epochs of every group of the blend `entries`: a remix group, a folder whose blend reads
    every shard equally often, else each shard; `train_split`: each shard's tokens in the train
    split by local prefix (data.check_split's). A shard blended twice (a folder given twice) counts
    its tokens once and its reads twice."""
    several = len({entry.folder for entry in entries}) > 1
    folders: dict[str, tuple[dict[str, str], float | None, bool]] = {}
    read: dict[str, float] = {}
    held: dict[str, dict[str, int]] = {}
    whole: dict[str, dict[str, int]] = {}
    caps: dict[str, tuple[float, str]] = {}
    for folder, manifest, prefix, local, share in entries:
        if folder not in folders:
            folders[folder] = (*mixture_of(manifest), reads_evenly(manifest))
        group_of, cap, even = folders[folder]
        group = group_of.get(prefix)
        name = (f"{folder}:{group}" if several else group) if group is not None else folder if even else f"{folder}/{prefix}"
        if name not in held:
            held[name], whole[name], caps[name] = {}, {}, cap_of(folder, cap)
        held[name][local] = train_split[local]
        whole[name][local] = next((int(e.get("tokens") or 0) for e in manifest["shards"] if e.get("prefix") == prefix), train_split[local])
        read[name] = read.get(name, 0.0) + share
    groups = []
    for name, shares in read.items():
        tokens = sum(held[name].values())
        epochs = train_tokens * shares / tokens if tokens else float("inf")
        groups.append(GroupEpochs(name, epochs, *caps[name], shares, tokens, sum(whole[name].values())))
    return groups


def over_cap(groups: list[GroupEpochs], train_tokens: float, tokens_per_step: int | None = None) -> list[str]:
    """One warning line per group read more epochs than its cap: the group, its epochs, the cap and
    where it comes from, and the most training tokens (and steps) that stay within it; past
    MAX_LINES (a folder of thousands of shards weighted alike) one line says how many more."""
    over = [group for group in groups if group.whole_epochs > group.cap * (1 + 1e-9)]
    lines = []
    for group in over[:MAX_LINES]:
        within = int(group.cap * (group.whole_tokens or group.tokens) / group.share) if group.share else 0
        steps = f" ({within // tokens_per_step:,} steps)" if tokens_per_step else ""
        lines.append(
            f"warning: data: {group.name} will be read {group.epochs:.2f} epochs ({100 * group.share:.1f}% of {train_tokens:,.0f} "
            f"training tokens from its {group.tokens:,} train-split tokens; {group.whole_epochs:.2f} of all its {group.whole_tokens:,}), past the cap of {group.cap:g} epochs "
            f"({group.cap_source}); it stays within the cap up to {within:,} training tokens{steps}. Training goes on"
        )
    if len(over) > MAX_LINES:
        lines.append(f"warning: data: and {len(over) - MAX_LINES:,} more groups past their cap (run.json's data_epochs has every group's epochs)")
    return lines


def epochs_record(groups: list[GroupEpochs]) -> dict[str, float | None]:
    """run.json's `data_epochs`: each group's epochs, rounded for people (None for a group whose train
    split holds no tokens: strict JSON has no infinity)."""
    return {group.name: round(group.epochs, 4) if math.isfinite(group.epochs) else None for group in groups}
