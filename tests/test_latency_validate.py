"""`validate` knows its own noise: test-retest passes, re-measure or refuse, a verdict, the --strict exit code."""
from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from tiny import LATENCY_SPACE as TINY_SPACE

import latency.build
import latency.validate as lv
from latency import LatencyTable
from latency.build import space_meta
from latency.keys import INVOKE_KEY, space_specs
from latency.measure import Settings, Timing
from search_space.space import SearchSpace

SETTINGS = Settings(runs=3, warmup=0, rounds=1, passes=2)


def tiny_table(tmp_path: Path) -> LatencyTable:
    """A table with made-up entries for every key of the tiny space, drift baseline 1 ms (no runtime needed)."""
    p = tmp_path / "space_tiny.yaml"
    p.write_text(TINY_SPACE)
    sp = SearchSpace.from_yaml(p)
    t = LatencyTable(meta={"resolution": 16, "num_classes": 1000, "in_channels": 3, "space": space_meta(sp),
                           "measurement": {"statistic": "p10", "passes": 2}, "drift": {"baseline_ms": 1.0}})
    for i, s in enumerate(space_specs(sp, 16, 1000, 3)):
        v = 0.001 if s.key == INVOKE_KEY else 0.1 + (i % 7) * 0.05
        t.set(s.key, {"median_ms": v, "p10_ms": v, "count": 5, "ref_ms": 1.0,
                      "passes": [{"p10_ms": v, "ref_ms": 1.0}, {"p10_ms": v * 1.01, "ref_ms": 1.0}]})
    return t


Script = Callable[[int, int], tuple[float, float]]  # (network, its pass number) -> (measured ms, reference ms)


def fake_measuring(monkeypatch: pytest.MonkeyPatch, table: LatencyTable, script: Script) -> list[list[int]]:
    """Measure each network as `script` says, in units of its prediction from `table`; returns the passes' orders."""
    calls: list[list[int]] = []
    seen: dict[int, int] = {}

    def fake(genotypes: Sequence[Any], order: Sequence[int], resolution: int, num_classes: int,
             settings: Settings, batch: int = 8, in_channels: int = 3, bar: Any = None) -> dict[int, Any]:
        calls.append(list(order))
        out = {}
        for j in order:
            k = seen.get(j, 0)
            seen[j] = k + 1
            factor, ref = script(j, k)
            v = table.predict(genotypes[j]) * factor
            out[j] = (Timing(v, 0.0, 0.0, v, 3, v), ref)
        return out

    monkeypatch.setattr(latency.build, "measure_network_pass", fake)
    return calls


@pytest.fixture
def table(tmp_path: Path) -> LatencyTable:
    return tiny_table(tmp_path)


def run(table: LatencyTable, samples: int = 10, **kw: Any) -> lv.ValidationReport:
    return lv.validate(table, samples=samples, settings=SETTINGS, progress=False, **kw)


def test_settle_trusts_two_agreeing_lowest_passes() -> None:
    assert lv.spread(1.0, 1.2) == pytest.approx(0.2 / 1.1)
    assert lv.settle([1.0, 1.5, 1.02], 0.05) == (1.0, pytest.approx(0.02 / 1.01), True)  # one slow outlier is harmless
    assert lv.settle([1.0, 1.2], 0.05)[2] is False


def test_a_calm_run_refuses_none(table: LatencyTable, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_measuring(monkeypatch, table, lambda j, k: (1.0 + 0.01 * k, 1.0))
    rep = run(table)
    assert len(calls) == 2 and all(len(c) == 10 for c in calls)  # two passes, no retries
    assert rep.noise is not None and rep.noise.refused == 0 and rep.noise.remeasured == 0
    assert rep.trustworthy and rep.calibrated is not None and rep.calibrated.networks == 10
    assert rep.calibrated.within_5 == 1.0  # measured = the prediction in the first (lowest) pass
    assert calls[0] == list(range(10)) and sorted(calls[1]) == list(range(10)) and calls[1] != calls[0]
    assert "verdict: trustworthy" in "\n".join(rep.lines())


def test_passes_20pct_apart_are_remeasured_then_refused(table: LatencyTable, monkeypatch: pytest.MonkeyPatch) -> None:
    # network 0: 20% apart every time; network 1: apart, then a retry confirms the calm pass; others calm
    def script(j: int, k: int) -> tuple[float, float]:
        if j == 0:
            return (1.0, 1.2, 1.25, 1.3)[k], 1.0
        if j == 1:
            return (1.0, 1.2, 1.01)[k], 1.0
        return 1.0, 1.0

    calls = fake_measuring(monkeypatch, table, script)
    rep = run(table, retries=2)
    assert [sorted(c) for c in calls[2:]] == [[0, 1], [0]]  # only the disagreeing ones, up to 2 retries
    r0, r1 = rep.rows[0], rep.rows[1]
    assert r0["refused"] and r0["remeasured"] == 2 and len(r0["passes"]) == 4
    assert r0["spread"] == pytest.approx(0.2 / 1.1, abs=1e-5)
    assert not r1["refused"] and r1["remeasured"] == 1 and r1["final_spread"] == pytest.approx(0.01 / 1.005, abs=1e-5)
    assert rep.noise is not None and rep.noise.refused == 1 and rep.noise.remeasured == 2
    assert rep.calibrated is not None and rep.calibrated.networks == 9  # the refused one is left out
    assert rep.including_refused is not None and rep.including_refused.networks == 10
    text = "\n".join(rep.lines())
    assert "refused 1 of 10 networks as noise" in text and "not a figure to quote" in text
    assert rep.trustworthy  # 10% refused is within the default 20%


def test_noise_summary_on_a_fixed_set(table: LatencyTable, monkeypatch: pytest.MonkeyPatch) -> None:
    second = [1.0, 1.02, 1.08, 1.3]  # second pass / first pass per network
    refs = [1.0, 1.1]  # the reference's time in pass 1 and pass 2: 10% drift

    fake_measuring(monkeypatch, table, lambda j, k: ((1.0, second[j])[k], refs[k]))
    rep = run(table, samples=4, retries=0, max_drift=0.2)
    n = rep.noise
    assert n is not None
    spreads = sorted(lv.spread(1.0, s) for s in second)
    assert n.median_spread == pytest.approx((spreads[1] + spreads[2]) / 2, abs=1e-5)
    assert n.median_spread == n.median_spread_uncorrected  # the headline reads measurements as measured
    # drift-corrected, pass 2 reads value / 1.1
    assert n.median_spread_corrected == pytest.approx(statistics.median(lv.spread(1.0, s / 1.1) for s in second),
                                                      abs=1e-5)
    assert (n.agree_5, n.agree_10) == (0.5, 0.75)
    assert n.reference_drift == pytest.approx(0.1) and (n.reference_min_ms, n.reference_max_ms) == (1.0, 1.1)
    assert n.refused == 2 and n.refused_share == 0.5 and not rep.trustworthy
    d = rep.to_dict()
    assert d["noise"]["agree_10"] == 0.75 and d["noise"]["reference_drift"] == pytest.approx(0.1)
    assert [r["refused"] for r in d["rows"]] == [False, False, True, True]
    assert d["rows"][3]["passes"][1]["p10_ms"] == pytest.approx(d["rows"][3]["passes"][0]["p10_ms"] * 1.3, rel=1e-4)
    assert d["table_noise"]["median_spread"] == pytest.approx(0.01 / 1.005, abs=1e-5)


def test_not_trustworthy_past_the_refused_share_or_the_drift(table: LatencyTable,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    fake_measuring(monkeypatch, table, lambda j, k: (1.0 + (0.2 * k if j < 2 else 0.0), 1.0))
    rep = run(table, retries=1)
    assert rep.noise is not None and rep.noise.refused == 2 and rep.trustworthy  # 20%: not more than 20%
    fake_measuring(monkeypatch, table, lambda j, k: (1.0 + (0.2 * k if j < 3 else 0.0), 1.0))
    rep = run(table, retries=1)
    assert not rep.trustworthy and rep.problems == ["30% of the networks were refused as noise (more than 20%)"]
    assert "verdict: NOT TRUSTWORTHY: 30% of the networks" in "\n".join(rep.lines())
    fake_measuring(monkeypatch, table, lambda j, k: (1.0, 1.0 + 0.3 * k))  # networks steady, reference 30% slower later
    rep = run(table)  # the reference is a record, not the gauge (latency.drift)
    assert rep.noise is not None and rep.noise.reference_drift == pytest.approx(0.3) and rep.trustworthy
    fake_measuring(monkeypatch, table, lambda j, k: (1.0 + 0.2 * k, 1.0))  # every network 20% slower later
    rep = run(table, max_spread=0.3)  # passes 20% apart count as agreeing here: only the drift can flag it
    assert rep.noise is not None and rep.noise.refused == 0 and rep.noise.network_drift == pytest.approx(0.2)
    assert not rep.trustworthy and "the median network's time moved by 20.0%" in rep.problems[0]
    fake_measuring(monkeypatch, table, lambda j, k: (1.0 + 0.2 * k, 1.0))
    rep = run(table, samples=3, retries=0)
    assert rep.calibrated is None and not rep.trustworthy and "every one of the 3" in rep.problems[0]
    assert any("NOT TRUSTWORTHY" in line for line in rep.lines())


def test_drift_correction_is_a_choice_and_both_are_reported(table: LatencyTable,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # the reference reads 20% slow in both passes: corrected values come out 1/1.2 of the measured ones
    fake_measuring(monkeypatch, table, lambda j, k: (1.0, 1.2))
    plain, corrected = run(table), run(table, reading="batch")
    assert plain.calibrated is not None and corrected.calibrated is not None
    assert plain.calibrated.within_5 == 1.0 and plain.corrected is not None and plain.corrected.within_10 == 0.0
    assert corrected.calibrated.mean_error_pct == pytest.approx(20.0, abs=0.01)
    assert corrected.uncorrected is not None and corrected.uncorrected.within_5 == 1.0
    assert plain.rows[0]["measured_ms"] == plain.rows[0]["raw_measured_ms"]
    assert corrected.rows[0]["measured_ms"] == corrected.rows[0]["corrected_ms"]


def test_cli_strict_exit_code_and_json(table: LatencyTable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from latency.__main__ import main, parser

    lut = tmp_path / "lut.json"
    table.save(lut)
    a = parser().parse_args(["validate", str(lut)])
    assert (a.max_spread / 100, a.retries, a.max_refused / 100, a.max_drift / 100, a.slow_batch / 100) == (
        lv.MAX_SPREAD, lv.RETRIES, lv.MAX_REFUSED, lv.MAX_DRIFT, latency.build.SLOW_BATCH)
    fake_measuring(monkeypatch, table, lambda j, k: (1.0 + (0.3 * k if j < 2 else 0.0), 1.0))  # 2 of 5 refused
    out = tmp_path / "v.json"
    base = ["validate", str(lut), "--samples", "5", "--quiet", "--json", str(out)]
    assert main(base) == 0  # without --strict the verdict is printed, the command succeeds
    assert "NOT TRUSTWORTHY" in capsys.readouterr().out
    assert main([*base, "--strict"]) == 1
    d = json.loads(out.read_text())
    assert d["trustworthy"] is False and d["noise"]["refused"] == 2 and d["reading"] == "measured"
    assert [len(r["passes"]) for r in d["rows"]] == [4, 4, 2, 2, 2]
    assert {"spread", "spread_corrected", "final_spread", "refused", "remeasured"} <= set(d["rows"][0])
    assert main([*base, "--strict", "--max-refused", "50"]) == 0
    assert main([*base, "--strict", "--max-spread", "40"]) == 0  # 30% apart is then agreement
    assert main([*base, "--max-spread", "nan"]) == 2 and main([*base, "--retries", "-1"]) == 2
    assert main([*base, "--slow-batch", "-2"]) == 2 and main([*base, "--slow-batch", "-1"]) == 0
    assert json.loads(out.read_text())["thresholds"]["slow_batch"] is None


def test_real_validate_on_a_tiny_space(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ai_edge_litert")
    from latency.__main__ import main

    p = tmp_path / "space_tiny.yaml"
    p.write_text(TINY_SPACE)
    lut, out = tmp_path / "lut.json", tmp_path / "v.json"
    args = ["--runs", "3", "--warmup", "1", "--rounds", "1", "--passes", "2"]
    assert main(["build", str(p), "--out", str(lut), "--quiet", "--calibration-networks", "0", *args]) == 0
    code = main(["validate", str(lut), "--samples", "3", "--quiet", "--json", str(out), "--strict"])
    text = capsys.readouterr().out
    assert "noise: test-retest spread" in text and "verdict:" in text and "refused" in text
    d = json.loads(out.read_text())
    assert code == (0 if d["trustworthy"] else 1)  # a real machine may be calm or not; the code must say which
    assert len(d["rows"]) == 3 and all(len(r["passes"]) >= 2 for r in d["rows"])
    assert d["noise"]["networks"] == 3 and d["noise"]["reference_min_ms"] > 0


def test_run_reading_rescales_to_the_calibrations_speed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a table built the current way: entries as measured, the calibration's reference 1.0 ms
    t = tiny_table(tmp_path)
    del t.meta["drift"]["baseline_ms"]
    t.meta["calibration"] = {"scale": 1.0, "reference_ms": 1.0, "networks": []}
    # the machine runs 25% slow during validation (reference 1.25 ms), and measurements with it
    fake_measuring(monkeypatch, t, lambda j, k: (1.25, 1.25))
    rep = run(t, reading="run")
    assert rep.reading == "run" and rep.calibrated is not None and rep.calibrated.within_5 == 1.0
    assert rep.uncorrected is not None and rep.uncorrected.mean_error_pct == pytest.approx(-20.0, abs=0.01)
    assert rep.run_corrected is not None and rep.run_corrected.within_5 == 1.0
    assert rep.noise is not None and rep.noise.run_factor == pytest.approx(0.8)
    assert rep.rows[0]["measured_ms"] == pytest.approx(rep.rows[0]["raw_measured_ms"] * 0.8, rel=1e-4)
    assert any("took +25.0% of its time at the table's calibration" in line for line in rep.lines())
    assert run(t, reading="measured").calibrated.within_10 == 0.0  # type: ignore[union-attr]
    assert rep.to_dict()["reading"] == "run" and run(t).reading == "measured"


def test_drift_is_the_move_of_the_pass_medians_not_of_one_batch(table: LatencyTable,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # one batch reads its reference 2x slow in each pass: the passes' medians do not move
    fake_measuring(monkeypatch, table, lambda j, k: (1.0, 2.0 if j == 3 else 1.0))
    rep = run(table)
    assert rep.noise is not None and (rep.noise.reference_min_ms, rep.noise.reference_max_ms) == (1.0, 2.0)
    assert rep.noise.reference_drift == 0.0 and rep.noise.pass_reference_ms == [1.0, 1.0] and rep.trustworthy


def test_readings_a_table_cannot_give_are_one_line_errors(table: LatencyTable) -> None:
    from latency.errors import LatencyTableError

    assert lv.check_reading(table, "batch") == "batch"
    with pytest.raises(LatencyTableError, match="reading 'run' needs calibration.reference_ms"):
        lv.check_reading(table, "run")
    with pytest.raises(LatencyTableError, match=r"reading 'sometimes': expected one of \['measured'"):
        lv.check_reading(table, "sometimes")
    del table.meta["drift"]["baseline_ms"]
    with pytest.raises(LatencyTableError, match="reading 'batch' needs drift.baseline_ms"):
        lv.check_reading(table, "batch")


def test_passes_in_a_slow_batch_are_set_aside_and_measured_again(table: LatencyTable,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # networks 0-2 share a slow spell in both passes: 25% slow, agreeing, their batches' reference 30% slow
    def script(j: int, k: int) -> tuple[float, float]:
        return (1.25, 1.3) if j < 3 and k < 2 else (1.0, 1.0)

    fake_measuring(monkeypatch, table, script)
    rep = run(table)
    assert rep.noise is not None and rep.noise.set_aside == 6 and rep.noise.refused == 0
    r0 = rep.rows[0]
    assert r0["set_aside"] == 2 and r0["remeasured"] == 2 and [p["slow_batch"] for p in r0["passes"]] == [
        True, True, False, False]
    assert r0["measured_ms"] == pytest.approx(r0["predicted_ms"], rel=1e-4)  # the calm passes, not the slow pair
    assert rep.calibrated is not None and rep.calibrated.within_5 == 1.0
    assert "6 passes set aside" in "\n".join(rep.lines())
    fake_measuring(monkeypatch, table, script)
    off = run(table, slow_batch=None)  # without the alarm the agreeing slow pair is taken
    assert off.rows[0]["measured_ms"] == pytest.approx(off.rows[0]["predicted_ms"] * 1.25, rel=1e-4)
    fake_measuring(monkeypatch, table, lambda j, k: (1.25, 1.3) if j < 3 else (1.0, 1.0))  # slow every time
    stuck = run(table)
    assert stuck.noise is not None and stuck.noise.refused == 3 and stuck.rows[0]["refused"]


def test_anchor_refits_the_calibration_on_networks_timed_in_the_same_passes(table: LatencyTable,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    space = lv.table_space(table)
    nets = [{"genotype": g.to_string(), "measured_ms": table.predict(g), "sum_ms": table.predict(g)}
            for g in latency.build.calibration_genotypes(space, 4)]
    latency.build.set_calibration(table, nets)
    assert table.scale == pytest.approx(1.0)
    # the host is 20% slower than when the table was calibrated, for every network alike
    calls = fake_measuring(monkeypatch, table, lambda j, k: (1.2, 1.0))
    stale = run(table)
    assert stale.calibrated.within_10 == 0.0 and stale.anchor is None
    calls.clear()
    rep = run(table, anchor=True)
    assert [len(c) for c in calls] == [14, 14]  # the 4 calibration networks in both passes, among the 10
    assert rep.anchor["timed"] == 4
    assert rep.anchor["scale"] == pytest.approx(1.2) and rep.anchor["networks"] == 4 and rep.scale == pytest.approx(1.2)
    assert rep.calibrated.within_10 == 1.0 and len(rep.rows) == 10 and table.scale == pytest.approx(1.0)
    assert any("anchored in this run" in line for line in rep.lines())
    assert rep.to_dict()["anchor"]["table_scale"] == pytest.approx(1.0)
    # what it was refitted on is in the report, to refit other calibration models on the same timings
    nets = rep.to_dict()["anchor"]["calibration_networks"]
    assert len(nets) == 4 and all(n["measured_ms"] > 0 and n["genotype"] for n in nets)
    # calibration networks that never repeat cannot anchor anything
    fake_measuring(monkeypatch, table, lambda j, k: (1.2 * (1 + 0.5 * (k % 2)) if j >= 10 else 1.2, 1.0))
    with pytest.raises(lv.LatencyTableError, match="calibration networks settled"):
        run(table, anchor=True, retries=0)
    del table.meta["calibration"]
    with pytest.raises(lv.LatencyTableError, match="has none"):
        run(table, anchor=True)
