"""Pack's side of a remix input: one shard prefix per group, and the mixture as the manifest's blend.

When pack's input is a remix output folder (it has _mixture.json, or an earlier version's
mixture.json; pipeline/remix/layout.py), each group's parts (`part-<group>-NNNNN.parquet`,
contiguous in the sorted input) are cut into shards of their own, `<group>-00000`, ..., and the
manifest's blend becomes::

    "blend": {"method": "mixture", "prefixes": [...], "weights": [...], "data_path": [...],
              "mixture": {"remix": the remix folder, "method", "unit", "max_epochs", "allow_shortfall",
                          "budget_per_token": the budget over the corpus's size (1.0: one pass-equivalent),
                          "budget_tokens": that times the packed tokens,
                          "groups": {group: {"share", "target", "documents", "tokens", "epochs",
                                             "remix_epochs", "shards": [prefixes]}}}}

A group's share (_mixture.json's, the target unless capped) is spread over its shards by their
token counts, so Megatron's BlendedMegatronDatasetBuilder draws each group's share of the samples
(every sample is sequence_length tokens, so its share of the tokens) and GPTDataset repeats a
group as often as that needs: `epochs` = share x budget_tokens / tokens, counted in the packed
tokens whatever remix counted in (`remix_epochs`, in remix's unit, may differ by the group's
characters per token). Training for another number of tokens D scales every group's epochs by
D / budget_tokens. Groups with share 0 keep their shards but are left out of the blend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..remix.layout import mixture_path, part_group, read_mixture


@dataclass
class RemixInput:
    folder: str
    mixture: dict[str, Any]  # its _mixture.json (mixture.json in an earlier version's folder)
    groups: list[tuple[str, list[int]]]  # (group, input part numbers), in input order


def remix_input(folders: list[str], parts: list[str]) -> RemixInput | None:
    """The remix input among pack's input folders, with its parts by group; None when there is none."""
    mixtures = [(folder, read_mixture(folder)) for folder in folders]
    found = [(folder, m) for folder, m in mixtures if m is not None]
    if not found:
        return None
    folder, mixture = found[0]
    name = mixture_path(folder).name  # the folder's own file name in messages: an earlier version's has mixture.json
    if len(folders) > 1:
        raise ValueError(
            f"{folder} is remix output (it has {name}): pack it alone, as its mixture sets the blend (got {len(folders)} input folders)"
        )
    groups: list[tuple[str, list[int]]] = []
    for index, part in enumerate(parts):
        group = part_group(part)
        if group not in mixture["groups"]:
            raise ValueError(f"{part}: not a part of a group of {folder}/{name}")
        if not groups or groups[-1][0] != group:
            groups.append((group, []))
        groups[-1][1].append(index)
    if len({g for g, _ in groups}) != len(groups):
        raise ValueError(f"{folder}: a group's parts are not together in name order")
    return RemixInput(folder, mixture, groups)


def mixture_blend(remix: RemixInput, shard_markers: list[dict[str, Any]], shard_groups: list[str]) -> dict[str, Any]:
    """The manifest's blend for a remix input (module docstring)."""
    mixture = remix.mixture
    tokens: dict[str, int] = {}
    documents: dict[str, int] = {}
    shards: dict[str, list[str]] = {}
    for marker, group in zip(shard_markers, shard_groups):
        tokens[group] = tokens.get(group, 0) + marker["tokens"]
        documents[group] = documents.get(group, 0) + marker["documents"]
        shards.setdefault(group, []).append(marker["prefix"])
    prefixes, weights = [], []
    for marker, group in zip(shard_markers, shard_groups):
        share = mixture["groups"][group]["share"]
        if share > 0:
            prefixes.append(marker["prefix"])
            weights.append(float(f"{share * marker['tokens'] / tokens[group]:.12g}"))
    missing = sorted(g for g, entry in mixture["groups"].items() if entry["share"] > 0 and not tokens.get(g))
    if missing:
        raise ValueError(f"{remix.folder}: group(s) {', '.join(missing)} have a share of the mixture but no packed tokens")
    per_token = mixture["budget"] / mixture["size"]
    budget_tokens = per_token * sum(tokens.values())
    groups = {}
    for name, entry in mixture["groups"].items():
        n = tokens.get(name, 0)
        groups[name] = {
            "share": entry["share"],
            "target": entry["target"],
            "documents": documents.get(name, 0),
            "tokens": n,
            "epochs": float(f"{entry['share'] * budget_tokens / n:.12g}") if n else 0.0,
            "remix_epochs": entry["epochs"],
            "shards": shards.get(name, []),
        }
    return {
        "method": "mixture",
        "note": "the remix mixture: each group's share spread over its shards by their tokens; prefixes are relative to this folder",
        "prefixes": prefixes,
        "weights": weights,
        "data_path": [x for w, p in zip(weights, prefixes) for x in (str(w), p)],
        "mixture": {
            "remix": remix.folder,
            "method": mixture["method"],
            "unit": mixture["unit"],
            "max_epochs": mixture["max_epochs"],
            "allow_shortfall": mixture["allow_shortfall"],
            "budget_per_token": float(f"{per_token:.12g}"),
            "budget_tokens": round(budget_tokens),
            "groups": groups,
        },
    }


def mixture_lines(blend: dict[str, Any]) -> list[str]:
    """pack's command-line lines about a mixture blend (none for the token-weighted one)."""
    mixture = blend.get("mixture")
    if not mixture:
        return []
    lines = [f"blend: the remix mixture ({mixture['method']}) at {mixture['budget_tokens']:,} training tokens:"]
    for name, g in mixture["groups"].items():
        over = mixture["max_epochs"] < g["epochs"] * (1 - 1e-9)
        note = f" [yellow]over the cap of {mixture['max_epochs']:g} in tokens[/yellow]" if over else ""
        lines.append(f"  {name}: {len(g['shards'])} shard(s), {g['tokens']:,} tokens, share {100 * g['share']:.1f}%, {g['epochs']:.2f} epochs{note}")
    return lines
