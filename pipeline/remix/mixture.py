"""The mixture: each group's share of training, from its size, a method and a repeat cap. Pure
functions of a few numbers per group (no I/O), so the driver computes it from the summed counts.

Sizes n_g are tokens (or characters) per group; B is the budget, the training tokens the mixture
is planned for (default: the corpus's own size, Σ n_g); E is the repeat cap (default 4 epochs).
A group given share s_g is read s_g·B / n_g times ("epochs"); no group may go past E.

- `weights`: explicit weights, normalised to shares.
- `temperature`: s_g ∝ n_g^τ (τ = 1 keeps the corpus's shares, τ = 0 is uniform; in between lifts
  the small groups, as multilingual models sample languages).
- `unimax` (Chung et al. 2023): uniform under the cap. Groups are served from the smallest cap
  up; a group whose cap E·n_g is below an even split of what is left takes its cap, the rest share
  the remainder evenly. It meets the budget whenever E·Σ n_g ≥ B, by construction.

For weights and temperature a group whose target needs more than E epochs is a `MixtureError`
naming every such group and what it needs. With `allow_shortfall` those groups are capped and the
budget they leave goes to the others in proportion to their targets (`water_fill`: the same
arithmetic as UniMax with the targets as weights; the shares are the closest to the targets the
cap allows). A budget larger than E·Σ n_g cannot be met by any mixture: an error, or with
`allow_shortfall` every group at its cap and `budget_met` false.

    mixture = plan_mixture({"code": 1e6, "web": 9e6}, "temperature", temperature=0.5)
    mixture.groups[0].share, mixture.groups[0].epochs      # 0.25, 2.5
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..stage import StageInputError

# Relative slack for float comparisons against the cap (a target exactly at the cap is met).
TOLERANCE = 1e-9


class MixtureError(StageInputError):
    """The mixture cannot be met within the cap (the message names the groups)."""


@dataclass(frozen=True)
class GroupShare:
    name: str
    size: float  # tokens or characters before remixing
    target: float  # the method's share of the budget
    share: float  # the share the mixture gives (the target unless capped)
    epochs: float  # passes over the group that share needs at the budget
    target_epochs: float | None  # passes the target would need (None: an empty group with a target)
    shortfall: bool  # the cap keeps it below its target (allow_shortfall)
    at_cap: bool  # its epochs are the cap (below, at or, given others' shortfall, above its target)


@dataclass(frozen=True)
class Mixture:
    method: str
    budget: float
    budget_realised: float  # the budget unless no mixture can meet it (allow_shortfall)
    max_epochs: float
    groups: list[GroupShare]

    @property
    def shortfall(self) -> list[str]:
        return [g.name for g in self.groups if g.shortfall]

    def to_json(self) -> dict[str, Any]:
        """The mixture as _mixture.json holds it (floats to 12 significant digits: no float noise)."""
        return {
            "method": self.method,
            "budget": _round(self.budget),
            "budget_realised": _round(self.budget_realised),
            "budget_met": self.budget_realised >= self.budget * (1 - TOLERANCE),
            "max_epochs": self.max_epochs,
            "shortfall": self.shortfall,
            "groups": {g.name: {k: _round(v) for k, v in asdict(g).items() if k != "name"} for g in self.groups},
        }


def _round(value: Any) -> Any:
    return float(f"{value:.12g}") if isinstance(value, float) else value


def temperature_shares(sizes: dict[str, float], tau: float) -> dict[str, float]:
    """s_g ∝ n_g^τ over the groups with documents (τ = 0: uniform over them)."""
    powered = {g: (n**tau if n > 0 else 0.0) for g, n in sizes.items()}
    total = sum(powered.values())
    return {g: p / total for g, p in powered.items()}


def weight_shares(sizes: dict[str, float], weights: dict[str, float]) -> dict[str, float]:
    """Explicit weights as shares; every group with documents needs one."""
    missing = sorted(g for g, n in sizes.items() if n > 0 and g not in weights)
    if missing:
        raise MixtureError(f"mixture.weights: no weight for group(s) {', '.join(missing)}, which have documents; give every group a weight (0 leaves it out)")
    total = sum(weights.values())
    return {g: weights.get(g, 0.0) / total for g in sizes}


def water_fill(targets: dict[str, float], caps: dict[str, float], budget: float) -> dict[str, float]:
    """Amounts t_g = min(cap_g, λ·target_g) with Σ t_g = budget, when the caps allow it (else
    every group with a target at its cap). Groups go from the smallest cap per unit of target up;
    once one is below its cap the fair rate λ stays the same for all after it."""
    amounts = dict.fromkeys(targets, 0.0)
    active = sorted((g for g, w in targets.items() if w > 0), key=lambda g: (caps[g] / targets[g], g))
    left, weight = budget, sum(targets[g] for g in active)
    for g in active:
        fair = left * targets[g] / weight
        amounts[g] = min(caps[g], fair)
        left -= amounts[g]
        weight -= targets[g]
    return amounts


def plan_mixture(
    sizes: dict[str, float],
    method: str,
    *,
    weights: dict[str, float] | None = None,
    temperature: float | None = None,
    max_epochs: float = 4.0,
    budget: float | None = None,
    allow_shortfall: bool = False,
    unit: str = "tokens",
) -> Mixture:
    """The mixture of `sizes` (group -> tokens or characters) by `method` (module docstring)."""
    total = float(sum(sizes.values()))
    if total <= 0:
        raise MixtureError("remix: the input has no text to mix (every group is empty)")
    budget = float(budget) if budget is not None else total
    caps = {g: max_epochs * n for g, n in sizes.items()}
    if method == "unimax":
        nonempty = [g for g, n in sizes.items() if n > 0]
        amounts = water_fill({g: 1.0 / len(nonempty) if g in nonempty else 0.0 for g in sizes}, caps, budget)
        targets = {g: a / sum(amounts.values()) for g, a in amounts.items()}  # UniMax's own shares
    elif method in ("weights", "temperature"):
        targets = weight_shares(sizes, weights or {}) if method == "weights" else temperature_shares(sizes, float(temperature or 0.0))
        over = {g: t * budget for g, t in targets.items() if t * budget > caps[g] * (1 + TOLERANCE)}
        if over and not allow_shortfall:
            raise MixtureError(_over_cap_message(over, sizes, targets, budget, max_epochs, unit))
        amounts = water_fill(targets, caps, budget) if over else {g: t * budget for g, t in targets.items()}
    else:
        raise ValueError(f"mixture method {method!r}: choose weights, temperature or unimax")
    realised = sum(amounts.values())
    if realised < budget * (1 - TOLERANCE) and not allow_shortfall:
        raise MixtureError(
            f"mixture.budget {budget:,.0f} {unit} is more than max_epochs {max_epochs:g} × the corpus's {total:,.0f} "
            f"allow: every group ({', '.join(sorted(g for g, n in sizes.items() if n > 0))}) would go past the cap; "
            "lower the budget, raise max_epochs, or pass --allow-shortfall to train on every group at its cap"
        )
    groups = []
    for g in sorted(sizes):
        n, need = sizes[g], targets[g] * budget
        groups.append(
            GroupShare(
                name=g, size=float(n), target=targets[g], share=amounts[g] / realised,
                epochs=amounts[g] / n if n > 0 else 0.0,
                target_epochs=(need / n if n > 0 else (0.0 if need == 0 else None)),
                shortfall=amounts[g] < need * (1 - TOLERANCE),
                at_cap=n > 0 and amounts[g] >= caps[g] * (1 - TOLERANCE),
            )
        )  # fmt: skip
    return Mixture(method=method, budget=budget, budget_realised=realised, max_epochs=max_epochs, groups=groups)


def _over_cap_message(over: dict[str, float], sizes: dict[str, float], targets: dict[str, float], budget: float, cap: float, unit: str) -> str:
    parts = []
    for g in sorted(over):
        needs = f"{over[g] / sizes[g]:.2f} epochs" if sizes[g] > 0 else "text it does not have (no documents)"
        parts.append(f"{g} needs {needs} (target {100 * targets[g]:.1f}% of {budget:,.0f} {unit}; it has {sizes[g]:,.0f})")
    return (
        f"the mixture cannot be met within max_epochs {cap:g}: {'; '.join(parts)}. Lower their targets, raise "
        "max_epochs, lower the budget, or pass --allow-shortfall (mixture.allow_shortfall: true) to cap them "
        "and give the rest to the other groups"
    )

