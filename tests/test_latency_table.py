"""Keys, the table format, prediction, and building/resuming a table on a tiny space."""
from __future__ import annotations

import json
import random
import statistics
from pathlib import Path

import pytest
from tiny import LATENCY_SPACE as TINY_SPACE

from latency import LatencyTable, LatencyTableError
from latency.keys import (
    INVOKE_KEY,
    BlockSpec,
    HeadSpec,
    StemSpec,
    genotype_keys,
    genotype_specs,
    parse_key,
    space_specs,
)
from search_space.genotype import parse
from search_space.space import load_space


@pytest.fixture
def tiny_space(tmp_path: Path) -> Path:
    p = tmp_path / "space_tiny.yaml"
    p.write_text(TINY_SPACE)
    return p


def fake_table(space_path: str | Path, resolution: int | None = None, num_classes: int = 1000,
               in_channels: int = 3) -> LatencyTable:
    """A table with a made-up entry for every key of a space (no runtime needed)."""
    sp = load_space(space_path)
    t = LatencyTable(meta={"resolution": resolution or sp.resolution, "num_classes": num_classes,
                           "in_channels": in_channels})
    for i, s in enumerate(space_specs(sp, resolution, num_classes, in_channels)):
        t.set(s.key, {"median_ms": 0.01 if s.key == INVOKE_KEY else 0.1 + (i % 7) * 0.05, "count": 5})
    return t


# ---- keys ----------------------------------------------------------------------------------------
def test_keys_round_trip_and_are_file_name_safe() -> None:
    specs = [StemSpec(224, 224, 3, 32, 3, 2, "swish"),
             BlockSpec(112, 112, 32, 16, 3, 1, "ir", 6, 0.25, False, "swish"),
             BlockSpec(7, 7, 160, 160, 5, 1, "cn", 1, 0.0, True, "relu"),
             HeadSpec(7, 7, 320, 1280, 1000, "relu"),
             StemSpec(224, 224, 3, 16, 3, 2, "hswish"),
             BlockSpec(14, 14, 80, 80, 3, 1, "ir", 2.3, 0.0, True, "hswish"),
             BlockSpec(14, 14, 96, 136, 5, 1, "ir", 4, 0.25, False, "hswish", "hsigmoid"),
             HeadSpec(7, 7, 192, 1152, 1000, "hswish", 1536)]
    assert [s.key for s in specs[-3:]] == ["ir-in14x14x80-out80-k3-s1-e2.3-se0-res1-hswish",
                                           "ir-in14x14x96-out136-k5-s1-e4-hse0.25-res0-hswish",
                                           "head-in7x7x192-out1152-mix1536-cls1000-hswish"]
    # without SE there is no SE variant: one spec, one key
    assert BlockSpec(7, 7, 8, 8, 3, 1, "ir", 1, 0.0, True, "relu", "hsigmoid") == BlockSpec(
        7, 7, 8, 8, 3, 1, "ir", 1, 0.0, True, "relu")
    for s in specs:
        assert parse_key(s.key) == s
        assert all(c.isalnum() or c in "-." for c in s.key)
    assert parse_key(INVOKE_KEY).key == INVOKE_KEY
    with pytest.raises(ValueError):
        parse_key("expanded_conv-input:56x56x32")


@pytest.mark.parametrize("space", ["configs/space_mnas.yaml", "configs/space_digits.yaml",
                                   "configs/space_cifar.yaml", "configs/space_mbv3.yaml"])
def test_space_specs_cover_every_member(space: str) -> None:
    sp = load_space(space)
    keys = {s.key for s in space_specs(sp)}
    assert len(keys) == len(space_specs(sp))
    rng = random.Random(0)
    for _ in range(300):
        g = sp.sample(rng)
        ks = genotype_keys(g)
        assert set(ks) <= keys
        assert ks == [s.key for s in genotype_specs(g)]


def test_mnas_space_entry_count() -> None:
    kinds: dict[str, int] = {}
    for s in space_specs(load_space("configs/space_mnas.yaml"), 224):
        kinds[s.kind] = kinds.get(s.kind, 0) + 1
    assert kinds == {"invoke": 1, "stem": 1, "block": 2320, "head": 3}


# ---- table format and prediction --------------------------------------------------------------------
def test_predict_is_overhead_plus_blocks_times_scale() -> None:
    t = fake_table("configs/space_digits.yaml")
    g = load_space("configs/space_digits.yaml").sample(1)
    keys = genotype_keys(g)
    o = t.overhead_ms
    raw = o + sum(t.entries[k]["median_ms"] - o for k in keys)
    assert t.predict(g) == pytest.approx(raw)
    t.meta["calibration"] = {"scale": 1.1, "networks": []}
    assert t.predict(g) == pytest.approx(1.1 * raw)
    assert t.predict(g, calibrated=False) == pytest.approx(raw)


def test_overhead_measured_above_tiny_probes_is_capped_and_gross_corruption_refused() -> None:
    """A busy host can time the empty model above the fastest probes: predictions stay positive."""
    t = fake_table("configs/space_digits.yaml")
    g = load_space("configs/space_digits.yaml").sample(3)
    keys = genotype_keys(g)
    fastest = min(e["median_ms"] for k, e in t.entries.items() if k != INVOKE_KEY)
    t.set(INVOKE_KEY, {"median_ms": 2 * fastest, "count": 5})  # above the fastest probes, below the median
    assert t.overhead_ms == fastest
    for k in keys:
        t.set(k, {"median_ms": fastest, "count": 5})  # every block of g as fast as the capped overhead
    assert t.predict(g) == pytest.approx(fastest)
    t = LatencyTable.from_dict(t.to_dict())  # reloads without complaint
    assert t.overhead_ms == fastest
    t.set(INVOKE_KEY, {"median_ms": 100.0, "count": 5})
    with pytest.raises(LatencyTableError, match="per-invoke overhead"):
        LatencyTable.from_dict(t.to_dict())


def test_missing_entry_is_an_error_naming_the_block() -> None:
    t = fake_table("configs/space_digits.yaml")
    g = load_space("configs/space_digits.yaml").sample(2)
    gone = genotype_keys(g)[3]
    del t.entries[gone]
    with pytest.raises(LatencyTableError, match=gone):
        t.predict(g)
    assert t.missing(g) == [gone]


def test_save_load_round_trip_and_schema_errors(tmp_path: Path) -> None:
    t = fake_table("configs/space_digits.yaml")
    p = t.save(tmp_path / "lut.json")
    doc = json.loads(p.read_text())
    assert doc["format"] == "hwnas-latency-table" and doc["schema_version"] == 1
    back = LatencyTable.load(p)
    assert back.entries == t.entries and back.resolution == 16
    assert not list(tmp_path.glob("*.tmp"))  # atomic save leaves no temp file

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**doc, "schema_version": 99}))
    with pytest.raises(LatencyTableError, match="schema_version"):
        LatencyTable.load(bad)
    bad.write_text('{"format": "hwnas-latency-table", "schema_version": 1, "entries": {')
    with pytest.raises(LatencyTableError, match="corrupt"):
        LatencyTable.load(bad)
    bad.write_text(json.dumps({"expanded_conv-input:1x1x1": {"mean": 1}}))
    with pytest.raises(LatencyTableError, match="not a latency table"):
        LatencyTable.load(bad)
    bad.write_text(json.dumps({**doc, "entries": {"invoke": {"median_ms": "fast", "count": 1}}}))
    with pytest.raises(LatencyTableError, match="median_ms"):
        LatencyTable.load(bad)
    with pytest.raises(LatencyTableError, match="does not exist"):
        LatencyTable.load(tmp_path / "nope.json")


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from latency.__main__ import main

    (tmp_path / "bad.json").write_text("{not json")
    assert main(["info", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert main(["info", str(tmp_path / "missing.json")]) == 2
    assert main(["build", str(tmp_path / "no_space.yaml"), "--out", str(tmp_path / "x.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_predictor_agrees_with_the_table_and_caches() -> None:
    """The search's Predictor gives the table's own prediction (speed: bench/latency_speed.py)."""
    from latency import Predictor

    t = fake_table("configs/space_mnas.yaml", 224)
    sp = load_space("configs/space_mnas.yaml")
    rng = random.Random(0)
    gs = [sp.sample(rng) for _ in range(200)]
    predict = Predictor(t, cache_size=50)
    assert [predict(g) for g in gs] == [t.predict(g) for g in gs]
    assert len(predict._cache) == 50 and [predict(g) for g in gs[-50:]] == [t.predict(g) for g in gs[-50:]]


def test_space_from_search_config(tmp_path: Path, tiny_space: Path) -> None:
    from latency.build import resolve_space

    cfg = tmp_path / "sub" / "search.yaml"
    cfg.parent.mkdir()
    cfg.write_text("space: ../space_tiny.yaml\nsearch: {controller: ppo}\n")
    assert resolve_space(cfg).source.endswith("space_tiny.yaml")
    assert resolve_space(tiny_space).num_stages == 2
    cfg.write_text("space: nowhere.yaml\n")
    from search_space.space import SpaceError

    with pytest.raises(SpaceError, match="nowhere.yaml"):
        resolve_space(cfg)


# ---- building with the runtime ----------------------------------------------------------------------
FAST = dict(threads=1, warmup=1, runs=3, rounds=1, passes=1)


def test_build_resume_and_mismatch(tmp_path: Path, tiny_space: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ai_edge_litert")
    import latency.build as build
    from latency.measure import Settings

    out = tmp_path / "lut.json"
    t = build.build_table(tiny_space, out, settings=Settings(**FAST), calibration_networks=2, progress=False)
    want = {s.key for s in space_specs(load_space(tiny_space))}
    assert set(t.entries) == want and len(want) == 11
    doc = json.loads(out.read_text())
    assert doc["schema_version"] == 1 and doc["resolution"] == 16
    assert doc["device"]["cpu"] and doc["device"]["runtime"].startswith("ai-edge-litert")
    assert doc["device"]["threads"] == 1 and doc["device"]["python"] and doc["device"]["date"]
    e = doc["entries"][next(iter(want - {INVOKE_KEY}))]
    assert e["median_ms"] > 0 and e["count"] == 3 and "iqr_ms" in e and "std_ms" in e
    assert len(doc["calibration"]["networks"]) == 2 and doc["calibration"]["scale"] > 0
    # entries as measured; the calibration records the speed it was fitted at (latency.drift)
    assert "baseline_ms" not in doc["drift"] and doc["drift"]["reference_ms"] > 0 and t.baseline_ms is None
    assert doc["calibration"]["reference_ms"] > 0 and doc["measurement"]["window_s"] == 0.0

    # Resume: drop two entries; only those two are measured again.
    gone = sorted(want - {INVOKE_KEY})[:2]
    for k in gone:
        del doc["entries"][k]
    out.write_text(json.dumps(doc))
    measured: list[str] = []
    real = build.measure_specs

    def counting(specs, settings, act, resolution):
        measured.extend(s.key for s in specs)
        return real(specs, settings, act, resolution)

    monkeypatch.setattr(build, "measure_specs", counting)
    t2 = build.build_table(tiny_space, out, settings=Settings(**FAST), calibration_networks=2, progress=False)
    assert sorted(measured) == gone and set(t2.entries) == want

    # --recalibrate: the calibration networks timed again, no entry; the old calibration kept
    measured.clear()
    first = json.loads(out.read_text())["calibration"]
    t3 = build.build_table(tiny_space, out, settings=Settings(**FAST), calibration_networks=2, progress=False,
                           recalibrate=True)
    assert measured == [] and t3.meta["calibration_history"][0]["networks"] == first["networks"]
    assert t3.meta["calibration_history"][0]["replaced"] and len(t3.meta["calibration"]["networks"]) == 2
    assert LatencyTable.load(out).meta["calibration_history"] == t3.meta["calibration_history"]

    with pytest.raises(LatencyTableError, match="runs"):
        build.build_table(tiny_space, out, settings=Settings(**{**FAST, "runs": 4}), progress=False)
    g = load_space(tiny_space).sample(0)
    assert t2.predict(g) > 0


def test_two_passes_keep_the_calmer_one() -> None:
    from latency.drift import merge_pass, passes_done

    first = {"median_ms": 1.2, "p10_ms": 1.1, "count": 9, "ref_ms": 10.0}
    calm = {"median_ms": 1.0, "p10_ms": 0.95, "count": 9, "ref_ms": 9.0}  # 0.95/9 < 1.1/10
    e = merge_pass(merge_pass(None, first, "p10"), calm, "p10")
    assert e["p10_ms"] == 0.95 and e["ref_ms"] == 9.0 and passes_done(e) == 2
    assert merge_pass(e, first, "p10")["p10_ms"] == 0.95 and passes_done(merge_pass(e, first, "p10")) == 3
    t = LatencyTable(meta={"measurement": {"statistic": "p10"}, "drift": {"baseline_ms": 9.5}})
    t.set("invoke", e)
    assert t.value("invoke") == pytest.approx(0.95 * 9.5 / 9.0)
    # read at its batch's reference (legacy tables) a pass can be the calmer one while slower as measured
    slow_batch = {"median_ms": 1.0, "p10_ms": 1.0, "count": 9, "ref_ms": 20.0}
    assert merge_pass(merge_pass(None, calm, "p10", True), slow_batch, "p10", True)["p10_ms"] == 1.0
    assert merge_pass(merge_pass(None, calm, "p10"), slow_batch, "p10")["p10_ms"] == 0.95


def test_cold_reading_keeps_each_passes_calmest_and_refuses_tables_without_it() -> None:
    from latency.drift import merge_pass

    a = {"median_ms": 1.2, "p10_ms": 1.0, "cold_p10_ms": 1.5, "count": 9, "ref_ms": 10.0}
    b = {"median_ms": 1.3, "p10_ms": 1.1, "cold_p10_ms": 1.3, "count": 9, "ref_ms": 10.0}
    e = merge_pass(merge_pass(None, a, "p10"), b, "p10")
    # the warm reading keeps pass a, the cold one its own calmest pass (b): contention only slows
    assert e["p10_ms"] == 1.0 and e["cold_p10_ms"] == 1.3 and [p["cold_p10_ms"] for p in e["passes"]] == [1.5, 1.3]
    # a pass measured before cold runs were timed leaves the entry without a cold value, never a mixed one
    assert "cold_p10_ms" not in merge_pass(e, {"median_ms": 1.0, "p10_ms": 0.9, "count": 9}, "p10")
    t = LatencyTable(meta={"measurement": {"statistic": "p10", "entry_statistic": "cold_p10"}})
    t.set("invoke", e)
    assert t.entry_statistic == "cold_p10" and t.statistic == "p10" and t.value("invoke") == 1.3
    t.set("old", {"median_ms": 1.0, "p10_ms": 0.9, "count": 9})
    with pytest.raises(LatencyTableError, match="'old' has no 'cold_p10_ms'.*rebuild"):
        t.value("old")
    with pytest.raises(LatencyTableError, match="entry_statistic.*warmish.*cold_p10"):
        LatencyTable.from_dict({**t.to_dict(), "measurement": {"entry_statistic": "warmish"}})


def test_build_reads_entries_cold_and_refits_without_timing(tmp_path: Path, tiny_space: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ai_edge_litert")
    import latency.build as build
    from latency.measure import Settings

    out = tmp_path / "lut.json"
    warm = build.build_table(tiny_space, out, settings=Settings(**FAST), calibration_networks=2, progress=False)
    assert warm.entry_statistic == "p10" and all(e["cold_p10_ms"] > 0 for e in warm.entries.values())
    g = load_space(tiny_space).sample(1)

    def no_timing(*a, **k):
        raise AssertionError("a reading change must not time anything")

    monkeypatch.setattr(build, "measure_specs", no_timing)
    monkeypatch.setattr(build, "measure_networks", no_timing)
    cold = build.build_table(tiny_space, out, settings=Settings(**FAST), calibration_networks=2, progress=False,
                             entry_statistic="cold_p10")
    assert LatencyTable.load(out).entry_statistic == "cold_p10"
    cal = cold.meta["calibration"]
    for n in cal["networks"]:  # block sums read cold, the networks' own measurements unchanged
        assert n["sum_ms"] == pytest.approx(cold.sum_keys(cold.keys_for(parse(n["genotype"])), calibrated=False),
                                            abs=1e-6)
    assert cal["scale"] == pytest.approx(statistics.median(n["measured_ms"] / n["sum_ms"] for n in cal["networks"]),
                                         rel=1e-5)
    assert cold.predict(g, calibrated=False) == pytest.approx(
        sum(cold.entries[k]["cold_p10_ms"] - cold.overhead_ms for k in cold.keys_for(g)) + cold.overhead_ms)


def test_a_window_spreads_each_models_runs_over_seconds() -> None:
    pytest.importorskip("ai_edge_litert")
    import time

    from latency.emit import spec_tflite
    from latency.measure import MAX_VISITS, Settings, time_models

    model = spec_tflite(space_specs(load_space("configs/space_digits.yaml"), 16, 10, 1)[0])
    t0 = time.perf_counter()
    short, = time_models([model], Settings(runs=6, rounds=3, warmup=0, window_s=0.0))
    assert short.count == 6
    long, = time_models([model], Settings(runs=6, rounds=3, warmup=0, window_s=0.3))
    # every visit past `rounds` adds runs // rounds runs until the window has passed (or the visits' cap)
    assert long.count > 6 and (long.count - 6) % 2 == 0 and long.count <= 6 + 2 * MAX_VISITS
    assert time.perf_counter() - t0 >= 0.3 or long.count == 6 + 2 * MAX_VISITS
    assert Settings().window_s == 0.0  # tests run without the default window (conftest)


def test_cli_build_and_validate(tmp_path: Path, tiny_space: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ai_edge_litert")
    from latency.__main__ import main

    out = tmp_path / "lut.json"
    args = ["--runs", "3", "--warmup", "1", "--rounds", "1", "--passes", "2"]
    assert main(["build", str(tiny_space), "--out", str(out), "--quiet", "--calibration-networks", "2", *args]) == 0
    # The CLI's figures are what this checks; whether noise is refused is tests/test_latency_validate.py's
    # (with faked timings), so no spread is refused here, however busy the machine.
    assert main(["validate", str(out), "--samples", "3", "--quiet", "--json", str(tmp_path / "v.json"),
                 "--max-spread", "1000"]) == 0
    text = capsys.readouterr().out
    assert "RMSE" in text and "within +-10%" in text and "nn-Meter" in text
    rep = json.loads((tmp_path / "v.json").read_text())
    assert len(rep["rows"]) == 3 and rep["calibrated"]["rmse_ms"] >= 0
    # Per-kind calibration on the built table: more networks timed, the fit and its leave-one-out error printed.
    assert main(["build", str(tiny_space), "--out", str(out), "--quiet", "--calibration-networks", "4",
                 "--calibration-kinds", "kernel-se", *args]) == 0
    assert "leave-one-out within +-10%: per kind" in capsys.readouterr().out
    cal = json.loads(out.read_text())["calibration"]
    assert cal["kinds"] == "kernel-se" and len(cal["networks"]) == 4 and set(cal["leave_one_out"]) == {
        "per_kind", "one_scale"}
    # Without calibration flags a built table keeps its own calibration: today's defaults do not re-time it.
    assert main(["build", str(tiny_space), "--out", str(out), "--quiet", *args]) == 0
    assert json.loads(out.read_text())["calibration"] == cal


def test_calibration_plan_defaults_for_new_tables_only() -> None:
    from latency.build import CALIBRATION_NETWORKS, calibration_plan
    from latency.kinds import DEFAULT_KINDS

    new = fake_table("configs/space_digits.yaml", num_classes=10, in_channels=1)
    assert calibration_plan(new, None, None) == (CALIBRATION_NETWORKS, DEFAULT_KINDS)
    assert calibration_plan(new, 2, None) == (2, "one")  # too few networks to fit per-kind factors
    assert calibration_plan(new, 2, "kernel") == (2, "kernel")  # asked for: refused later, with a message
    new.meta["calibration"] = {"scale": 1.0, "networks": [{}] * 7}
    assert calibration_plan(new, None, None) == (7, "one")
    assert calibration_plan(new, 30, "kernel-se") == (30, "kernel-se")


# ---- every number of a table is checked when it is loaded ---------------------------------------------
def _good_doc() -> dict:
    t = fake_table("configs/space_digits.yaml", num_classes=10, in_channels=1)
    t.meta.update({"measurement": {"statistic": "p10", "threads": 1, "runs": 5, "passes": 2},
                   "drift": {"baseline_ms": 8.0}, "device": {"threads": 1, "cores": 2},
                   "calibration": {"scale": 1.05, "networks": [{"genotype": "g", "measured_ms": 1.0, "sum_ms": 0.9}]}})
    for e in t.entries.values():
        e.update(p10_ms=e["median_ms"] * 0.9, min_ms=e["median_ms"] * 0.8, iqr_ms=0.0, std_ms=0.0, ref_ms=8.0,
                 passes=[{"p10_ms": e["median_ms"], "median_ms": e["median_ms"], "ref_ms": 8.0}])
    return t.to_dict()


BLOCK = "ds-in16x16x8-out16-k3-s2-e1-se0-res0-relu"
NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("path,value,named", [
    (("entries", BLOCK, "p10_ms"), -0.5, "'p10_ms'"),
    (("entries", BLOCK, "p10_ms"), 0.0, "'p10_ms'"),
    (("entries", BLOCK, "p10_ms"), NAN, "'p10_ms'"),
    (("entries", BLOCK, "p10_ms"), 1e308, "'p10_ms'"),
    (("entries", BLOCK, "p10_ms"), "fast", "'p10_ms'"),
    (("entries", BLOCK, "median_ms"), INF, "'median_ms'"),
    (("entries", BLOCK, "min_ms"), -1e-3, "'min_ms'"),
    (("entries", BLOCK, "std_ms"), -1.0, "'std_ms'"),
    (("entries", BLOCK, "iqr_ms"), NAN, "'iqr_ms'"),
    (("entries", BLOCK, "ref_ms"), 1e-300, "'ref_ms'"),
    (("entries", BLOCK, "ref_ms"), 0.001, "drift.baseline_ms"),  # a drift factor of 8000: absurd
    (("entries", BLOCK, "count"), -1, "'count'"),
    (("entries", BLOCK, "count"), 2.5, "'count'"),
    (("entries", BLOCK, "passes", 0, "ref_ms"), NAN, "passes[0]"),
    (("entries", "invoke", "p10_ms"), 50.0, "'invoke'"),  # overhead above the typical entry: negative sums
    (("calibration", "scale"), NAN, "calibration.scale"),
    (("calibration", "scale"), 0.0, "calibration.scale"),
    (("calibration", "scale"), -1.0, "calibration.scale"),
    (("calibration", "scale"), 1e308, "calibration.scale"),
    (("calibration", "networks", 0, "sum_ms"), -0.9, "calibration network 0"),
    (("drift", "baseline_ms"), 0.0, "drift.baseline_ms"),
    (("resolution",), 0, "'resolution'"),
    (("resolution",), 100000, "'resolution'"),
    (("num_classes",), 0, "'num_classes'"),
    (("in_channels",), -1, "'in_channels'"),
    (("measurement", "statistic"), "p99", "measurement.statistic"),
    (("measurement", "runs"), 0, "measurement.runs"),
    (("device", "threads"), True, "device.threads"),
])
def test_load_refuses_any_bad_number_naming_file_field_and_value(tmp_path: Path, path: tuple, value: object,
                                                                 named: str) -> None:
    doc = _good_doc()
    LatencyTable.from_dict(doc)  # the unmodified document is fine
    node = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    f = tmp_path / "lut.json"
    f.write_text(json.dumps(doc))
    with pytest.raises(LatencyTableError) as e:
        LatencyTable.load(f)
    msg = str(e.value)
    assert str(f) in msg and named in msg and repr(value) in msg and "\n" not in msg, msg
    if path[0] == "entries":
        assert repr(path[1]) in msg


def test_zero_spreads_and_counts_are_real_values() -> None:
    doc = _good_doc()
    doc["entries"][BLOCK].update(std_ms=0.0, iqr_ms=0.0, count=0)
    t = LatencyTable.from_dict(doc)
    assert t.entries[BLOCK]["std_ms"] == 0.0 and t.in_channels == 1


def test_cli_predict_prints_no_nan_negative_or_huge_number(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from latency.__main__ import main

    g = load_space("configs/space_digits.yaml").sample(0)
    doc = _good_doc()
    good = tmp_path / "good.json"
    good.write_text(json.dumps(doc))
    assert main(["predict", str(good), g.to_string()]) == 0
    ms = float(capsys.readouterr().out.split()[0])
    assert 0 < ms < 10
    for field, value in (("p10_ms", NAN), ("p10_ms", -1.0), ("p10_ms", 0.0), ("p10_ms", 1e308)):
        bad = json.loads(json.dumps(doc))
        for e in bad["entries"].values():
            e[field] = value
        f = tmp_path / "bad.json"
        f.write_text(json.dumps(bad))
        assert main(["predict", str(f), g.to_string()]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.startswith("error: ") and err.count("\n") == 1 and field in err


def test_prediction_refuses_a_sum_that_is_not_a_latency() -> None:
    # Built in memory, past the load-time checks: the last guard still never returns such a number.
    t = LatencyTable({"a": {"median_ms": 6e5, "count": 1}, "b": {"median_ms": 6e5, "count": 1}})
    with pytest.raises(LatencyTableError, match="predicts 1200000.0 ms"):
        t.sum_keys(["a", "b"])
    # An overhead above every block is capped at the fastest, so the sum cannot go negative.
    t = LatencyTable({"invoke": {"median_ms": 5.0, "count": 1}, "a": {"median_ms": 1.0, "count": 1},
                      "b": {"median_ms": 1.0, "count": 1}})
    assert t.sum_keys(["a", "b"]) == 1.0
    assert LatencyTable({"a": {"median_ms": 1.0, "count": 1}}).sum_keys(["a", "a"]) == 2.0


def test_drift_formula_has_one_home() -> None:
    from latency import drift
    from latency.table import drift_corrected

    assert drift_corrected(2.0, 4.0, 8.0) == 4.0 and drift_corrected(2.0, None, 8.0) == 2.0
    assert drift_corrected(2.0, 4.0, None) == 2.0
    e = {"median_ms": 1.0, "p10_ms": 0.9, "count": 3, "ref_ms": 3.0}
    assert drift._relative(e, "p10") == pytest.approx(0.3)
    t = LatencyTable({"invoke": e}, {"measurement": {"statistic": "p10"}, "drift": {"baseline_ms": 6.0}})
    assert t.value("invoke") == pytest.approx(1.8)
    assert not hasattr(drift, "correct") and not hasattr(drift, "table_act")


def test_block_spec_refuses_arguments_in_another_order() -> None:
    with pytest.raises(ValueError, match="positive integers"):
        BlockSpec("ir", 112, 112, 32, 16, 3, 1, 6, 0.25, False, "swish")  # type: ignore[arg-type]
    s = BlockSpec(112, 112, 32, 16, 3, 1, "ir", 6, 0.25, False, "swish")
    assert s.key == "ir-in112x112x32-out16-k3-s1-e6-se0.25-res0-swish" and s.input_hwc == (112, 112, 32)


# ---- the table's shape follows the search's data ----------------------------------------------------------
def test_search_config_gives_the_table_its_data_shape(tmp_path: Path, tiny_space: Path) -> None:
    from latency.build import data_shape

    cfg = tmp_path / "search.yaml"
    cfg.write_text("space: space_tiny.yaml\n")  # no data section: the search's default, digits
    assert data_shape(cfg) == (1, 10)
    cfg.write_text("space: space_tiny.yaml\ndata: {source: cifar10}\n")
    assert data_shape(cfg) == (3, 10) and data_shape(cfg, num_classes=100) == (3, 100)
    assert data_shape(tiny_space) == (3, 1000) and data_shape(tiny_space, 1, 10) == (1, 10)
    cfg.write_text("space: space_tiny.yaml\ndata: {source: imagefolder, path: imgs}\n")
    with pytest.raises(LatencyTableError, match="--num-classes"):
        data_shape(cfg)
    assert data_shape(cfg, num_classes=7) == (3, 7)


def test_cli_build_of_a_search_config_makes_the_table_its_search_accepts(
        tmp_path: Path, tiny_space: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ai_edge_litert")
    from latency import load_predictor
    from latency.__main__ import main

    cfg = tmp_path / "search.yaml"
    cfg.write_text("space: space_tiny.yaml\ndata: {source: digits}\n")
    out = tmp_path / "lut.json"
    args = ["--runs", "3", "--warmup", "1", "--rounds", "1", "--passes", "1", "--calibration-networks", "1"]
    assert main(["build", str(cfg), "--out", str(out), "--quiet", *args]) == 0
    assert "1 input channel(s), 10 classes" in capsys.readouterr().out
    t = LatencyTable.load(out)
    assert (t.in_channels, t.num_classes) == (1, 10)
    assert [k for k in t.entries if k.startswith("stem-")] == ["stem-in16x16x1-out8-k3-s2-relu"]
    sp = load_space(tiny_space)
    predict = load_predictor(str(out), sp, 16, cache_dir=None, num_classes=10, in_channels=1)
    assert predict(sp.sample(0)) > 0
    with pytest.raises(LatencyTableError, match=r"1 input channel\(s\), asked for 3"):
        load_predictor(str(out), sp, 16, cache_dir=None, num_classes=10, in_channels=3)


def test_cli_numbers_out_of_range_are_one_line(tmp_path: Path, tiny_space: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from latency.__main__ import main

    out = str(tmp_path / "x.json")
    for bad in (["--resolution", "0"], ["--resolution", "100000"], ["--num-classes", "0"], ["--in-channels", "-1"],
                ["--runs", "0"], ["--threads", "0"], ["--window", "-1"], ["--window", "nan"]):
        assert main(["build", str(tiny_space), "--out", out, *bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {bad[0]} {bad[1]}:") and err.count("\n") == 1
    assert not Path(out).exists()
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_good_doc()))
    assert main(["validate", str(good), "--samples", "0"]) == 2
    assert "--samples 0" in capsys.readouterr().err


def test_timing_drops_clock_glitches_below_the_table_resolution() -> None:
    from latency.measure import Timing

    t = Timing.from_samples([0.0, 2e-7, 0.003, 0.004, 0.005])
    assert t.count == 3 and t.min_ms == 0.003
    LatencyTable().set("a", t.to_dict())  # a storable entry, not a 0 ms minimum
    with pytest.raises(RuntimeError, match="clock"):
        Timing.from_samples([0.0, 0.0])


def test_per_kind_calibration_is_kept_when_it_predicts_left_out_networks_better() -> None:
    from latency.build import set_calibration
    from latency.kinds import kind_function

    t = fake_table("configs/space_digits.yaml")
    sp = load_space("configs/space_digits.yaml")
    kind_of = kind_function("kernel-se")
    true = {"stem": 1.0, "head": 1.0}  # what the host really does: k5 blocks 1.6x their probes, the rest 1.0x
    gs = [sp.sample(i) for i in range(24)]

    def measured(g) -> float:
        parts = t.breakdown(t.keys_for(g), kind_of)
        return sum(v * (1.6 if "-k5" in k else true.get(k, 1.0)) for k, v in parts.items() if k != INVOKE_KEY)

    nets = [{"genotype": g.to_string(), "measured_ms": measured(g), "sum_ms": t.predict(g, calibrated=False)}
            for g in gs[:16]]
    set_calibration(t, nets, "kernel-se")
    cal = t.meta["calibration"]
    assert cal["leave_one_out"]["per_kind"]["mape_pct"] < cal["leave_one_out"]["one_scale"]["mape_pct"]
    assert cal["by_kind"]["factors"]["ir-k5"] == pytest.approx(1.6, rel=0.02)
    t = LatencyTable.from_dict(t.to_dict())  # survives a save and load
    for g in gs[16:]:  # networks the fit never saw
        assert t.predict(g) == pytest.approx(measured(g), rel=0.02)
        assert t.predict(g, calibrated=False) == pytest.approx(sum(t.value(k) - t.overhead_ms for k in t.keys_for(g))
                                                               + t.overhead_ms)
    # Where one scale is the truth, the per-kind fit has nothing to add and is not kept.
    nets = [dict(n, measured_ms=1.3 * n["sum_ms"]) for n in nets]
    set_calibration(t, nets, "kernel-se")
    assert "by_kind" not in t.meta["calibration"]
    assert t.predict(gs[20]) == pytest.approx(1.3 * t.predict(gs[20], calibrated=False))
    bad = t.to_dict()
    bad["calibration"]["by_kind"] = {"kinds": "kernal", "factors": {"ir-k3": 1.0}}
    with pytest.raises(LatencyTableError, match="calibration.by_kind.kinds"):
        LatencyTable.from_dict(bad)
