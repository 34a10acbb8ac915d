"""What the remix stage writes about its mixture: `_mixture.json`, `_mixture.png` and the command's lines.

_mixture.json (format crawlmill-mixture/1; no paths, so equal inputs and settings give equal bytes)::

    {"format", "unit": "tokens" | "characters", "tokenizer": {"sha256", "eod_id"} | null,
     "method", "weights" | "temperature" (as given), "max_epochs", "allow_shortfall",
     "budget" (in the unit; default the corpus's size), "budget_realised", "budget_met",
     "documents", "size" (the corpus in the unit), "shortfall": [groups below their target],
     "groups": {group: {"documents", "characters", ["tokens"], "parts" (files),
                        "share_before" (of the corpus), "target" (the method's share), "share" (the
                        mixture's: the target unless capped), "epochs" (share x budget / size),
                        "target_epochs", "shortfall", "at_cap"}}}

Pack reads "groups"/"share" as the blend's weight per group (pipeline/pack/mixture.py).
"""

from __future__ import annotations


from typing import Any

from crawlmill.files import AnyPath, atomic_path, read_json

from ..pack.tokenizer import TokenizerInfo
from .config import RemixConfig
from .layout import FORMAT
from .mixture import Mixture


def mixture_document(config: RemixConfig, mixture: Mixture, totals: dict[str, dict[str, int]], tokenizer: TokenizerInfo | None) -> dict[str, Any]:
    m = config.mixture
    planned = mixture.to_json()
    unit = m.resolved_unit
    size = sum(t[unit] for t in totals.values())
    groups = {}
    for name, counts in totals.items():
        share = planned["groups"][name]
        groups[name] = {
            **counts,
            "share_before": float(f"{counts[unit] / size:.12g}"),
            **{k: v for k, v in share.items() if k != "size"},
        }
    parameters = {"weights": m.weights} if planned["method"] == "weights" else {"temperature": m.temperature} if planned["method"] == "temperature" else {}
    return {
        "format": FORMAT,
        "unit": unit,
        "tokenizer": {"sha256": tokenizer.sha256, "eod_id": tokenizer.eod_id} if tokenizer else None,
        "method": planned["method"],
        **parameters,
        "max_epochs": m.max_epochs,
        "allow_shortfall": m.allow_shortfall,
        "budget": planned["budget"],
        "budget_realised": planned["budget_realised"],
        "budget_met": planned["budget_met"],
        "documents": sum(t["documents"] for t in totals.values()),
        "size": size,
        "shortfall": planned["shortfall"],
        "groups": groups,
    }


def plot_mixture(path: AnyPath, document: dict[str, Any]) -> None:
    """Bars per group: its share of the corpus before, its share of training after, epochs on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(document["groups"])
    groups = [document["groups"][g] for g in names]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(names) + 2), 4), dpi=100)
    ax.bar(x - 0.2, [100 * g["share_before"] for g in groups], width=0.4, label="corpus (before)")
    bars = ax.bar(x + 0.2, [100 * g["share"] for g in groups], width=0.4, label="mixture (after)")
    for bar, g in zip(bars, groups):
        ax.annotate(f"{g['epochs']:.2f}×", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, names, fontsize=8, rotation=30 if len(names) > 8 else 0)
    ax.set_ylabel(f"share of {document['unit']} (%)")
    ax.set_title(f"Remix ({document['method']}, cap {document['max_epochs']:g} epochs): share per group, epochs on top")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def report_lines(path: AnyPath) -> list[str]:
    """One line per group for the command line: size, share before -> after, epochs."""
    document = read_json(path)
    unit = document["unit"]
    lines = [f"mixture ({document['method']}, cap {document['max_epochs']:g} epochs, budget {document['budget']:,.0f} {unit}) → {path}"]
    for name, g in document["groups"].items():
        cap = " (at the cap)" if g["at_cap"] else " (no documents)" if not g["documents"] else ""
        note = f"{cap} [yellow]short of its target share[/yellow]" if g["shortfall"] else cap
        lines.append(
            f"  {name}: {g['documents']:,} documents, {g[unit]:,} {unit}, {100 * g['share_before']:.1f}% → "
            f"{100 * g['share']:.1f}% (target {100 * g['target']:.1f}%), {g['epochs']:.2f} epochs{note}"
        )
    if not document["budget_met"]:
        lines.append(f"  [yellow]budget not met: {document['budget_realised']:,.0f} of {document['budget']:,.0f} {unit}, every group at the cap[/yellow]")
    return lines
