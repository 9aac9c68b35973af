"""The reward acc * (cost/target)^w, its presets and the parsing of targets with units."""
from __future__ import annotations

import pytest

from nas.reward import PRESETS, CostModel, Costs, Objective, reward, weights
from nas.units import UnitError, format_macs, parse_macs, parse_ms, parse_target
from search_space import cost, reference


def test_soft_preset_is_mnasnet_minus_0_07():
    assert PRESETS["soft"] == (-0.07, -0.07)
    assert PRESETS["hard"] == (0.0, -1.0)
    assert weights(None, None, None) == (-0.07, -0.07)
    assert weights("hard", None, None) == (0.0, -1.0)
    assert weights(None, -0.1, None) == (-0.1, -0.1)
    assert weights(None, 0.0, -2.0) == (0.0, -2.0)


def test_soft_constraint_doubling_cost_costs_about_five_percent():
    a, b = PRESETS["soft"]
    # MnasNet: with w = -0.07, doubling latency is worth about 5% relative accuracy.
    assert reward(0.8, 2.0, 1.0, a, b) == pytest.approx(0.8 * 2 ** -0.07)
    assert 1 - reward(1.0, 2.0, 1.0, a, b) == pytest.approx(0.0473, abs=1e-4)
    # Under the target the soft constraint rewards being cheaper.
    assert reward(0.8, 0.5, 1.0, a, b) == pytest.approx(0.8 * 0.5 ** -0.07)
    assert reward(0.8, 1.0, 1.0, a, b) == pytest.approx(0.8)


def test_hard_constraint_flat_below_steep_above():
    a, b = PRESETS["hard"]
    assert reward(0.7, 0.25, 1.0, a, b) == pytest.approx(0.7)
    assert reward(0.7, 1.0, 1.0, a, b) == pytest.approx(0.7)  # at the target w = alpha
    assert reward(0.7, 2.0, 1.0, a, b) == pytest.approx(0.35)


def test_objective_kinds_and_failed_candidates():
    c = Costs(params=10, macs=800_000_000, latency_ms=150.0)
    flops = Objective("flops", 400e6, -0.07, -0.07)
    assert flops.cost(c) == 800e6
    assert flops.reward(0.8, c) == pytest.approx(0.8 * 2 ** -0.07)
    lat = Objective("latency", 75.0, 0.0, -1.0)
    assert lat.reward(0.8, c) == pytest.approx(0.8 * 75 / 150)
    acc = Objective("accuracy", None, -0.07, -0.07)
    assert acc.cost(c) is None and acc.reward(0.8, c) == 0.8
    assert flops.reward(0.0, c) == 0.0 and flops.reward(float("nan"), c) == 0.0


def test_cost_model_uses_the_exact_counts():
    g = reference("efficientnet-b0")
    costs = CostModel(in_channels=3, num_classes=1000)(g)
    assert costs.macs == 385_814_752 == cost(g).macs  # docs/reference.md: B0 multiply-adds at 224
    assert costs.params == 5_288_548 and costs.latency_ms is None
    assert CostModel(3, 1000, latency=lambda _: 12.5)(g).latency_ms == 12.5


@pytest.mark.parametrize("text,macs", [
    ("400M", 400e6), ("0.4G", 400e6), ("4e8", 4e8), ("400e6", 400e6), (400_000_000, 4e8), (4e8, 4e8),
    ("0.39B", 390e6), ("400MFLOPs", 400e6), ("0.4 GMACs", 400e6), ("250k", 250e3), ("1.5g", 1.5e9),
])
def test_parse_macs(text, macs):
    assert parse_macs(text) == pytest.approx(macs)
    assert parse_target(text, "flops") == pytest.approx(macs)


@pytest.mark.parametrize("text,ms", [
    ("75ms", 75.0), ("0.075s", 75.0), ("75", 75.0), (75, 75.0), ("75000us", 75.0), ("0.07ms", 0.07),
    (" 12.5 ms ", 12.5),
])
def test_parse_ms(text, ms):
    assert parse_ms(text) == pytest.approx(ms)
    assert parse_target(text, "latency") == pytest.approx(ms)


@pytest.mark.parametrize("text,kind,needle", [
    ("75ms", "flops", "is a time"), ("0.075s", "flops", "is a time"), ("400M", "latency", "MACs count"),
    ("0.4G", "latency", "MACs count"), ("400 parsecs", "flops", "unknown unit"), ("fast", "latency", "not a number"),
    ("-5M", "flops", "positive"), ("75", "flops", "missing unit"), ("4e8", "latency", "looks like a MACs"),
    (True, "flops", "not a number"),
])
def test_unit_mismatch_and_garbage_are_errors(text, kind, needle):
    with pytest.raises(UnitError, match=needle):
        parse_target(text, kind)


def test_format_macs():
    assert format_macs(385_814_752) == "385.8M"
    assert format_macs(1.827e9) == "1.827G"
    assert parse_macs(format_macs(123_456_789)) == pytest.approx(123.5e6)
