"""Keys, the table format, prediction, and building/resuming a table on a tiny space."""
from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from latency import LatencyTable, LatencyTableError
from latency.keys import (INVOKE_KEY, BlockSpec, HeadSpec, StemSpec, genotype_keys, genotype_specs, parse_key,
                          space_specs)
from search_space.space import load_space

TINY_SPACE = """\
name: tiny
activation: relu
resolution: 16
stem: {channels: 8, kernel: 3, stride: 2}
head: 32
defaults: {op: [mbconv3, sepconv], kernel: [3], se: [0.0, 0.25], skip: [identity]}
stages:
  - {stride: 1, channels: [8], layers: [1, 2]}
  - {stride: 2, channels: [16], layers: [1]}
"""


@pytest.fixture
def tiny_space(tmp_path: Path) -> Path:
    p = tmp_path / "space_tiny.yaml"
    p.write_text(TINY_SPACE)
    return p


def fake_table(space_path: str, resolution: int | None = None, num_classes: int = 1000) -> LatencyTable:
    """A table with a made-up entry for every key of a space (no runtime needed)."""
    sp = load_space(space_path)
    t = LatencyTable(meta={"resolution": resolution or sp.resolution, "num_classes": num_classes})
    for i, s in enumerate(space_specs(sp, resolution, num_classes)):
        t.set(s.key, {"median_ms": 0.01 if s.key == INVOKE_KEY else 0.1 + (i % 7) * 0.05, "count": 5})
    return t


# ---- keys ----------------------------------------------------------------------------------------
def test_keys_round_trip_and_are_file_name_safe() -> None:
    specs = [StemSpec(224, 224, 3, 32, 3, 2, "swish"),
             BlockSpec("ir", 112, 112, 32, 16, 3, 1, 6, 0.25, False, "swish"),
             BlockSpec("cn", 7, 7, 160, 160, 5, 1, 1, 0.0, True, "relu"),
             HeadSpec(7, 7, 320, 1280, 1000, "relu")]
    for s in specs:
        assert parse_key(s.key) == s
        assert all(c.isalnum() or c in "-." for c in s.key)
    assert parse_key(INVOKE_KEY).key == INVOKE_KEY
    with pytest.raises(ValueError):
        parse_key("expanded_conv-input:56x56x32")


@pytest.mark.parametrize("space", ["configs/space_mnas.yaml", "configs/space_digits.yaml",
                                   "configs/space_cifar.yaml"])
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


def test_predictions_are_cheap() -> None:
    from latency import Predictor

    t = fake_table("configs/space_mnas.yaml", 224)
    sp = load_space("configs/space_mnas.yaml")
    rng = random.Random(0)
    gs = [sp.sample(rng) for _ in range(2000)]
    predict = Predictor(t)
    t0 = time.perf_counter()
    for g in gs:
        predict(g)
    rate = len(gs) / (time.perf_counter() - t0)
    assert rate > 1000, f"{rate:.0f} predictions/s"


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


def test_cli_build_and_validate(tmp_path: Path, tiny_space: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ai_edge_litert")
    from latency.__main__ import main

    out = tmp_path / "lut.json"
    args = ["--runs", "3", "--warmup", "1", "--rounds", "1", "--passes", "2"]
    assert main(["build", str(tiny_space), "--out", str(out), "--quiet", "--calibration-networks", "2", *args]) == 0
    assert main(["validate", str(out), "--samples", "3", "--quiet", "--json", str(tmp_path / "v.json")]) == 0
    text = capsys.readouterr().out
    assert "RMSE" in text and "within +-10%" in text and "nn-Meter" in text
    rep = json.loads((tmp_path / "v.json").read_text())
    assert len(rep["rows"]) == 3 and rep["calibrated"]["rmse_ms"] >= 0
