"""The mixture arithmetic (pipeline/remix/mixture.py): explicit weights, temperature, UniMax, the
repeat cap, the error naming the groups over it, and allow_shortfall's water-filling."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crawlmill.pipeline.remix.mixture import MixtureError, plan_mixture, temperature_shares, water_fill

SIZES = {"code": 5_000.0, "news": 15_000.0, "web": 80_000.0}  # a skewed corpus of 100,000 tokens


def shares(mixture):
    return {g.name: g.share for g in mixture.groups}


def by_name(mixture):
    return {g.name: g for g in mixture.groups}


def test_explicit_weights_are_normalised_and_epochs_follow_from_the_budget():
    mixture = plan_mixture(SIZES, "weights", weights={"code": 1, "news": 1, "web": 8})
    assert shares(mixture) == pytest.approx({"code": 0.1, "news": 0.1, "web": 0.8})
    groups = by_name(mixture)
    # The budget defaults to the corpus (100,000): code is read 10,000 / 5,000 = 2 times.
    assert groups["code"].epochs == pytest.approx(2) and groups["news"].epochs == pytest.approx(2 / 3) and groups["web"].epochs == pytest.approx(1)
    assert mixture.budget == mixture.budget_realised == 100_000 and mixture.shortfall == []
    smaller = by_name(plan_mixture(SIZES, "weights", weights={"code": 1, "news": 1, "web": 8}, budget=20_000))
    assert smaller["code"].epochs == pytest.approx(0.4) and smaller["code"].share == pytest.approx(0.1)


def test_weights_over_the_cap_are_an_error_naming_exactly_those_groups():
    with pytest.raises(MixtureError) as error:
        plan_mixture(SIZES, "weights", weights={"code": 4, "news": 4, "web": 2}, max_epochs=2)
    message = str(error.value)
    # code: 40,000 of 5,000 = 8 epochs; news: 40,000 of 15,000 = 2.67; web: 20,000 of 80,000 is fine.
    assert "max_epochs 2" in message and "code needs 8.00 epochs" in message and "news needs 2.67 epochs" in message
    assert "web" not in message and "--allow-shortfall" in message
    assert plan_mixture(SIZES, "weights", weights={"code": 4, "news": 4, "web": 2}, max_epochs=8)  # a higher cap meets it


def test_allow_shortfall_caps_those_groups_and_gives_the_rest_by_target():
    mixture = plan_mixture(SIZES, "weights", weights={"code": 4, "news": 4, "web": 2}, max_epochs=2, allow_shortfall=True)
    groups = by_name(mixture)
    assert mixture.shortfall == ["code", "news"] and mixture.budget_realised == pytest.approx(100_000)
    # code takes its cap (10,000), news its cap (30,000), web what is left (60,000 of 80,000).
    assert shares(mixture) == pytest.approx({"code": 0.1, "news": 0.3, "web": 0.6})
    assert groups["code"].epochs == pytest.approx(2) and groups["news"].epochs == pytest.approx(2) and groups["web"].epochs == pytest.approx(0.75)
    assert groups["code"].target_epochs == pytest.approx(8) and groups["code"].at_cap and not groups["web"].at_cap
    assert not groups["web"].shortfall and groups["web"].target == pytest.approx(0.2)


def test_temperature_lifts_small_groups_and_its_ends_are_the_corpus_and_uniform():
    assert temperature_shares(SIZES, 1.0) == pytest.approx({"code": 0.05, "news": 0.15, "web": 0.80})
    assert temperature_shares(SIZES, 0.0) == pytest.approx(dict.fromkeys(SIZES, 1 / 3))
    half = temperature_shares(SIZES, 0.5)  # ∝ sqrt(n): 70.71, 122.47, 282.84
    assert half == pytest.approx({"code": 70.71 / 476.02, "news": 122.47 / 476.02, "web": 282.84 / 476.02}, rel=1e-4)
    mixture = plan_mixture(SIZES, "temperature", temperature=0.5)
    assert shares(mixture) == pytest.approx(half) and by_name(mixture)["code"].epochs == pytest.approx(half["code"] * 20)
    with pytest.raises(MixtureError, match="code needs 6.67 epochs"):
        plan_mixture(SIZES, "temperature", temperature=0.0)  # uniform: a third of 100,000 from 5,000 tokens


def test_unimax_is_uniform_under_the_cap():
    mixture = plan_mixture(SIZES, "unimax")
    groups = by_name(mixture)
    # An even third is 33,333: code takes its cap (20,000); news and web split the other 80,000.
    assert shares(mixture) == pytest.approx({"code": 0.2, "news": 0.4, "web": 0.4})
    assert groups["code"].epochs == pytest.approx(4) and groups["code"].at_cap and groups["news"].epochs == pytest.approx(40 / 15)
    assert mixture.shortfall == [] and mixture.budget_realised == pytest.approx(100_000)
    assert shares(plan_mixture({"a": 10.0, "b": 20.0, "c": 30.0}, "unimax")) == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    # A smaller budget leaves every group room: uniform.
    assert shares(plan_mixture(SIZES, "unimax", budget=30_000)) == pytest.approx(dict.fromkeys(SIZES, 1 / 3))


def test_a_budget_no_mixture_can_meet_is_an_error_or_every_group_at_its_cap():
    with pytest.raises(MixtureError, match=r"budget 500,000 tokens is more than max_epochs 4 .* every group \(code, news, web\)"):
        plan_mixture(SIZES, "unimax", budget=500_000)
    capped = plan_mixture(SIZES, "unimax", budget=500_000, allow_shortfall=True)
    assert capped.budget_realised == pytest.approx(400_000) and all(g.epochs == pytest.approx(4) for g in capped.groups)
    assert capped.to_json()["budget_met"] is False


def test_weights_must_cover_every_group_with_documents_and_empty_groups_get_nothing():
    with pytest.raises(MixtureError, match="no weight for group.s. news, web"):
        plan_mixture(SIZES, "weights", weights={"code": 1})
    sizes = {**SIZES, "empty": 0.0}
    assert by_name(plan_mixture(sizes, "temperature", temperature=0.5))["empty"].share == 0
    assert by_name(plan_mixture(sizes, "unimax"))["empty"].share == 0
    with pytest.raises(MixtureError, match="empty needs text it does not have"):
        plan_mixture(sizes, "weights", weights={"code": 1, "news": 1, "web": 8, "empty": 1})
    short = by_name(plan_mixture(sizes, "weights", weights={"code": 1, "news": 1, "web": 8, "empty": 1}, allow_shortfall=True))
    assert short["empty"].share == 0 and short["empty"].shortfall and short["empty"].target_epochs is None
    zero = by_name(plan_mixture(SIZES, "weights", weights={"code": 0, "news": 1, "web": 1}))
    assert zero["code"].share == 0 and zero["code"].epochs == 0 and not zero["code"].shortfall
    with pytest.raises(MixtureError, match="no text"):
        plan_mixture({"a": 0.0}, "unimax")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.01, 1e6), st.one_of(st.just(0.0), st.floats(1e-3, 10.0))), min_size=1, max_size=8),
    st.floats(0.01, 1e7),
)
def test_water_fill_meets_the_budget_under_the_caps_at_one_rate(groups, budget):
    """Every group below its cap gets the same amount per unit of target (λ); a capped group's cap is
    at most λ times its target; the amounts add up to the budget whenever the caps allow it."""
    caps = {f"g{i}": cap for i, (cap, _) in enumerate(groups)}
    targets = {f"g{i}": target for i, (_, target) in enumerate(groups)}
    if sum(targets.values()) == 0:
        return
    amounts = water_fill(targets, caps, budget)
    assert all(amounts[g] <= caps[g] * (1 + 1e-9) for g in caps)
    assert all(amounts[g] == 0 for g in caps if targets[g] == 0)
    room = sum(c for g, c in caps.items() if targets[g] > 0)
    assert sum(amounts.values()) == pytest.approx(min(budget, room), rel=1e-9)
    free = [g for g in caps if targets[g] > 0 and amounts[g] < caps[g] * (1 - 1e-9)]
    if free:
        rate = amounts[free[0]] / targets[free[0]]
        assert all(amounts[g] / targets[g] == pytest.approx(rate, rel=1e-6) for g in free)
        assert all(caps[g] / targets[g] <= rate * (1 + 1e-6) for g in caps if targets[g] > 0 and g not in free)
