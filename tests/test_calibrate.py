"""Device calibration: per-kind factors from whole networks (fit, shrinkage, leave-one-out, kit round trip, errors)."""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from latency import LatencyTable, LatencyTableError
from latency.__main__ import main
from latency.build import space_meta
from latency.calibrate import (
    Measurements,
    calibrate,
    design,
    fit,
    kind_function,
    load_measurements,
    loo,
    loo_one_scale,
    one_scale,
    select_and_fit,
    spread_genotypes,
)
from latency.keys import INVOKE_KEY, genotype_keys, space_specs
from latency.kinds import DEFAULT_KINDS
from search_space.space import SearchSpace, load_space

TINY_SPACE = """\
activation: relu
resolution: 16
stem: {channels: [8, 16], kernel: 3, stride: 2}
head: [32, 48]
defaults: {op: [mbconv3, sepconv], kernel: [3, 5], se: [0.0, 0.25], skip: [identity]}
stages:
  - {stride: 1, channels: [8], layers: [1, 2]}
  - {stride: 2, channels: [16], layers: [1, 2]}
"""
# The device's truth for the synthetic data: a factor per kind (kernel-se kinds of the tiny space).
TRUE = {"stem": 2.0, "head": 2.0, "ir-k3": 3.0, "ir-k5": 1.5, "ir-k3-se": 2.5, "ir-k5-se": 4.0,
        "ds-k3": 1.2, "ds-k5": 0.8, "ds-k3-se": 1.8, "ds-k5-se": 2.2}


def _log(ms: float) -> str:
    us = f"{ms * 1000:.3f}"
    return (f"Num threads: [1]\ncount=50 first={us} curr={us} min={us} max={us} avg={us} std=0\n\n"
            f"Inference timings in us: Init: 10, First inference: {us}, Warmup (avg): {us}, Inference (avg): {us}\n")


@pytest.fixture
def space(tmp_path: Path) -> SearchSpace:
    p = tmp_path / "space.yaml"
    p.write_text(TINY_SPACE)
    return load_space(p)


@pytest.fixture
def host(space: SearchSpace, tmp_path: Path) -> LatencyTable:
    """A host table of the tiny space with made-up but fixed times (no LiteRT needed)."""
    entries = {}
    for s in space_specs(space, 16, 10, 3):
        ms = 0.001 if s.key == INVOKE_KEY else 0.05 + zlib.crc32(s.key.encode()) % 1000 / 2000
        entries[s.key] = {"median_ms": ms, "count": 10}
    t = LatencyTable(entries, {"device": {"source": "host", "cpu": "test cpu", "threads": 1},
                               "measurement": {"statistic": "median", "threads": 1}, "resolution": 16,
                               "num_classes": 10, "in_channels": 3, "space": space_meta(space)})
    t.save(tmp_path / "host.json")
    return t


def _truth(host: LatencyTable, g, overhead: float = 0.0) -> float:
    kind_of = kind_function("kernel-se")
    parts = host.breakdown(host.keys_for(g), kind_of)
    return sum(TRUE[k] * v for k, v in parts.items() if k != INVOKE_KEY) + overhead


def _networks(space: SearchSpace, n: int, seed: int = 1) -> list:
    return spread_genotypes(space, n, seed=seed)


def test_breakdown_adds_up_to_the_prediction(host: LatencyTable, space: SearchSpace) -> None:
    g = space.sample(3)
    keys = host.keys_for(g)
    parts = host.breakdown(keys, kind_function("kernel-se"))
    assert sum(parts.values()) == pytest.approx(host.sum_keys(keys, calibrated=False), rel=1e-12)
    assert parts[INVOKE_KEY] == host.overhead_ms and set(parts) >= {"stem", "head"}
    kinds = kind_function("kernel-se")
    assert kinds("ir-in8x8x8-out16-k5-s2-e3-se0.25-res0-relu") == "ir-k5-se"
    assert kind_function("kernel-se-stride")("ir-in8x8x8-out16-k5-s2-e3-se0-res0-relu") == "ir-k5-s2"
    assert kind_function("block")("ds-in8x8x8-out16-k5-s2-e1-se0-res0-relu") == "ds"
    with pytest.raises(LatencyTableError, match="kinds 'kernal'"):
        kind_function("kernal")


def test_fit_recovers_known_factors_exactly() -> None:
    rng = np.random.default_rng(0)
    kinds = ["a", "b", "c", "d"]
    parts = rng.uniform(0.1, 2.0, size=(12, 4))
    true = np.array([2.0, 0.5, 1.3, 3.0])
    f = fit(parts, parts @ true, kinds, ridge=0.0, overhead=False)
    np.testing.assert_allclose(f.factors, true, rtol=1e-5)
    assert f.overhead_ms == 0.0
    f = fit(parts, parts @ true + 0.7, kinds, ridge=0.0, overhead=True)
    np.testing.assert_allclose(f.factors, true, rtol=1e-4)
    assert f.overhead_ms == pytest.approx(0.7, rel=1e-4)
    # The choice by leave-one-out finds the exact model too (its error is ~0).
    f = select_and_fit(parts, parts @ true + 0.7, kinds)
    np.testing.assert_allclose(f.factors, true, rtol=1e-3)


def test_ridge_shrinks_toward_one_scale_at_small_k() -> None:
    rng = np.random.default_rng(1)
    kinds = ["ir-k3", "ir-k5", "ir-k5-se", "ir-k7", "stem", "head"]
    parts = rng.uniform(0.1, 2.0, size=(3, 6))
    parts[:, 3] = 0.0  # no network has a k7 block
    y = parts @ np.array([2.0, 1.0, 3.0, 9.0, 1.5, 1.5])
    s0 = one_scale(parts.sum(axis=1), y)
    np.testing.assert_allclose(fit(parts, y, kinds, np.inf, False).factors, s0)
    strong, weak = fit(parts, y, kinds, 100.0, False), fit(parts, y, kinds, 1e-4, False)
    assert np.abs(strong.factors - s0).max() < 0.05 * s0 < np.abs(weak.factors - s0).max()
    # A kind no network shows keeps the one scale; factors never fall under the floor.
    assert weak.factors[3] == pytest.approx(s0, rel=1e-3)
    assert (weak.factors >= 0.1 * s0 - 1e-12).all()
    # ir-k5-se shrinks toward its parent ir-k5, not only toward the one scale.
    only_k5 = np.zeros((4, 6))
    only_k5[:, 1] = [1.0, 2.0, 3.0, 4.0]
    only_k5[:, 4] = 1.0
    f = fit(only_k5, only_k5 @ np.array([1, 3.0, 1, 1, 1.0, 1]), kinds, 1e-3, False)
    assert f.factors[1] == pytest.approx(3.0, rel=0.02) and f.factors[2] > 2.0


def test_leave_one_out_is_what_it_says() -> None:
    rng = np.random.default_rng(2)
    kinds = ["a", "b", "c"]
    parts = rng.uniform(0.1, 2.0, size=(7, 3))
    y = parts @ np.array([1.0, 2.0, 0.5]) * rng.uniform(0.9, 1.1, size=7)
    got = loo(parts, y, kinds, ridge=0.01, overhead=False)
    for i in range(7):
        keep = np.arange(7) != i
        want = fit(parts[keep], y[keep], kinds, 0.01, False).predict(parts[i:i + 1])[0]
        assert got[i] == pytest.approx(want, rel=1e-12)
    totals = parts.sum(axis=1)
    one = loo_one_scale(totals, y)
    for i in range(7):
        keep = np.arange(7) != i
        assert one[i] == pytest.approx(one_scale(totals[keep], y[keep]) * totals[i])
    # With the choice left to it, every held-out network is predicted by a choice made without it.
    auto = loo(parts, y, kinds)
    i = 3
    keep = np.arange(7) != i
    assert auto[i] == pytest.approx(select_and_fit(parts[keep], y[keep], kinds).predict(parts[i:i + 1])[0])


def test_spread_genotypes_cover_the_size_range(space: SearchSpace) -> None:
    from search_space.cost import cost

    gs = spread_genotypes(space, 6)
    assert len({g.to_string() for g in gs}) == 6 and all(space.contains(g) for g in gs)
    assert [g.to_string() for g in gs] == [g.to_string() for g in spread_genotypes(space, 6)]
    macs = [cost(g, 16).macs for g in gs]
    assert macs[0] == min(macs) and macs[1] == max(macs)
    with pytest.raises(LatencyTableError, match="has only"):
        spread_genotypes(space, 10_000)


def test_calibrate_device_table_predicts(host: LatencyTable, space: SearchSpace, tmp_path: Path) -> None:
    gs = _networks(space, 12)
    meas = Measurements([{"genotype": g.to_string(), "measured_ms": _truth(host, g, 0.3)} for g in gs],
                        device={"model": "FakePhone"}, resolution=16, num_classes=10, in_channels=3)
    table, rep = calibrate(host, meas, ridge=0.0, overhead=True)
    assert rep.loo["mape_pct"] < 0.1 and rep.fit.overhead_ms == pytest.approx(0.3, rel=1e-3)
    doc = LatencyTable.from_dict(json.loads(json.dumps(table.to_dict())))  # the file form loads back
    assert doc.meta["calibration"]["factors"]["ir-k5-se"] == pytest.approx(TRUE["ir-k5-se"], rel=1e-3)
    assert doc.device["model"] == "FakePhone" and doc.uncovered(space) == []
    for g in [space.sample(i) for i in range(20)]:  # networks it never saw
        assert doc.predict(g) == pytest.approx(_truth(host, g, 0.3), rel=1e-3)
    # What a search config's objective.lut loads: the device table, checked like any table.
    import latency

    table.save(tmp_path / "device.json")
    predict = latency.load_predictor(str(tmp_path / "device.json"), space, 16, None, num_classes=10)
    g = space.sample(99)
    assert predict(g) == pytest.approx(_truth(host, g, 0.3), rel=1e-3)


def test_cli_round_trip_export_fake_logs_ingest_calibrate(host: LatencyTable, space: SearchSpace, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ai_edge_litert")
    kit = tmp_path / "kit"
    space_file = tmp_path / "space.yaml"
    assert main(["export-probes", str(space_file), "--num-classes", "10", "--calibration", "8", "--networks-only",
                 "--out", str(kit), "--quiet"]) == 0
    man = json.loads((kit / "manifest.json").read_text())
    assert len(man["networks"]) == 8 and man["probes"] == [] and not (kit / "probes").exists()
    (kit / "logs").mkdir()
    (kit / "logs" / "device.txt").write_text("model=FakePhone 4\nthreads=1\n")
    from search_space.genotype import parse

    for n in man["networks"]:
        (kit / "logs" / f"{n['name']}.log").write_text(_log(_truth(host, parse(n["genotype"]))))
    meas = tmp_path / "measurements.json"
    assert main(["ingest", str(kit), "--out", str(meas)]) == 0
    assert "8 whole-network measurements" in capsys.readouterr().out
    assert len(load_measurements(meas).networks) == 8
    dev = tmp_path / "device_lut.json"
    assert main(["calibrate", str(host.path), str(meas), "--out", str(dev), "--networks", "6",
                 "--ridge", "0", "--overhead", "off"]) == 0
    out = capsys.readouterr().out
    assert "leave-one-out, per-kind factors" in out and "held out (2)" in out
    table = LatencyTable.load(dev)
    assert table.device["model"] == "FakePhone 4" and table.meta["calibration"]["kinds"] == DEFAULT_KINDS
    fitted = [r for r in table.meta["calibration"]["networks"] if r["fitted"]]
    assert len(fitted) == 6
    for r in fitted:  # six networks cannot pin ten kinds for others, but the table reproduces its own
        assert table.predict(parse(r["genotype"])) == pytest.approx(_truth(host, parse(r["genotype"])), rel=1e-3)


def test_bad_inputs_are_one_line_errors(host: LatencyTable, space: SearchSpace, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    gs = _networks(space, 4)
    rows = [{"genotype": g.to_string(), "measured_ms": _truth(host, g)} for g in gs]
    with pytest.raises(LatencyTableError, match="2 distinct network measurement"):
        calibrate(host, Measurements(rows[:2]))
    with pytest.raises(LatencyTableError, match="--networks 5: expected 3 to the 4"):
        calibrate(host, Measurements(rows), fit_networks=5)
    with pytest.raises(LatencyTableError, match="measured at resolution 32"):
        calibrate(host, Measurements(rows, resolution=32))
    other = gs[0].to_string().replace("c16", "c24")
    with pytest.raises(LatencyTableError, match="is not in the host table's space"):
        calibrate(host, Measurements([{"genotype": other, "measured_ms": 1.0}] + rows))
    cases = {"list.json": [{"genotype": "x"}], "fmt.json": {"format": "something"},
             "neg.json": [{"genotype": gs[0].to_string(), "measured_ms": -1}]}
    for name, doc in cases.items():
        (tmp_path / name).write_text(json.dumps(doc))
        assert main(["calibrate", str(host.path), str(tmp_path / name), "--out", str(tmp_path / "d.json")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
    (tmp_path / "ok.json").write_text(json.dumps(rows))
    for extra in (["--ridge", "-1"], ["--kinds", "nope"], ["--networks", "9"]):
        assert main(["calibrate", str(host.path), str(tmp_path / "ok.json"), "--out", str(tmp_path / "d.json")]
                    + extra) == 2
        assert capsys.readouterr().err.count("\n") == 1
    assert main(["export-probes", str(tmp_path / "space.yaml"), "--calibration", "0", "--networks-only",
                 "--out", str(tmp_path / "k")]) == 2


def test_design_of_keys(host: LatencyTable, space: SearchSpace) -> None:
    gs = _networks(space, 5)
    kinds, parts, totals = design(host, [host.keys_for(g) for g in gs], "kernel-se")
    assert parts.shape == (5, len(kinds)) and "stem" in kinds and INVOKE_KEY not in kinds
    np.testing.assert_allclose(parts.sum(axis=1) + host.overhead_ms,
                               [host.sum_keys(genotype_keys(g, 16, 10, 3), False) for g in gs])
    np.testing.assert_allclose(totals, parts.sum(axis=1) + host.overhead_ms)


def test_weights_term_recovers_a_streaming_cost_and_folds_into_tables(host: LatencyTable, space: SearchSpace,
                                                                      tmp_path: Path) -> None:
    from latency.build import set_calibration
    from latency.keys import key_params
    from search_space.cost import cost

    per_mparam = 40.0  # ms per million weights a network pays beyond its blocks' probe times

    def truth(g) -> float:
        return _truth(host, g) + per_mparam * cost(g, 16, num_classes=10).params / 1e6

    gs = _networks(space, 16)
    kinds = "kernel-se+weights"
    names, parts, _ = design(host, [host.keys_for(g) for g in gs], kinds)
    assert names[-1] == "weights"
    assert parts[:, -1] == pytest.approx([sum(key_params(k) for k in host.keys_for(g)) / 1e6 for g in gs])
    y = np.array([truth(g) for g in gs])
    f = select_and_fit(parts, y, names)
    assert f.with_weights and f.weights_ms_per_mparam == pytest.approx(per_mparam, rel=0.02)
    assert "weights" not in f.factor_map()
    plain = select_and_fit(parts[:, :-1], y, names[:-1])  # the same kinds without the term
    held = [space.sample(100 + i) for i in range(20)]
    hp = design(host, [host.keys_for(g) for g in held], kinds)[1]
    err = np.abs(f.predict(hp) / np.array([truth(g) for g in held]) - 1)
    err_plain = np.abs(plain.predict(hp[:, :-1]) / np.array([truth(g) for g in held]) - 1)
    assert err.max() < 0.02 < err_plain.max()
    # Where the term explains nothing, leave-one-out leaves it out.
    y0 = np.array([_truth(host, g) for g in gs])
    assert select_and_fit(parts, y0, names, ridge=0.0).weights_ms_per_mparam == 0.0
    # The device table folds the term into every entry; a host table applies it at prediction.
    meas = Measurements([{"genotype": g.to_string(), "measured_ms": truth(g)} for g in gs],
                        device={"model": "FakePhone"}, resolution=16, num_classes=10, in_channels=3)
    device, rep = calibrate(host, meas, kinds=kinds)
    assert rep.loo["within_10"] == 1.0
    assert device.meta["calibration"]["weights_ms_per_mparam"] == pytest.approx(per_mparam, rel=0.02)
    nets = [{"genotype": g.to_string(), "measured_ms": truth(g), "sum_ms": host.predict(g, calibrated=False)}
            for g in gs]
    set_calibration(host, nets, kinds)
    by_kind = host.meta["calibration"]["by_kind"]
    assert by_kind["kinds"] == kinds and by_kind["weights_ms_per_mparam"] == pytest.approx(per_mparam, rel=0.02)
    reloaded = LatencyTable.from_dict(json.loads(json.dumps(host.to_dict())))
    for g in held:
        assert device.predict(g) == pytest.approx(truth(g), rel=0.02)
        assert reloaded.predict(g) == pytest.approx(truth(g), rel=0.02)
    bad = reloaded.to_dict()
    bad["calibration"]["by_kind"]["weights_ms_per_mparam"] = -1.0
    with pytest.raises(LatencyTableError, match="weights_ms_per_mparam"):
        LatencyTable.from_dict(bad)
