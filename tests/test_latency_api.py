"""The search-facing API: load_predictor, on-the-fly tables, measure_missing, lazy runtime import."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import latency
from latency import LatencyTable, LatencyTableError, load_predictor
from search_space.space import load_space

ROOT = Path(__file__).resolve().parent.parent

TINY_SPACE = """\
activation: swish
resolution: 16
stem: {channels: 8, kernel: 3, stride: 1}
head: 32
defaults: {op: [mbconv6, conv], kernel: [3], se: [0.25], skip: [identity, none]}
stages:
  - {stride: 2, channels: [8, 16], layers: [1]}
"""


def test_import_latency_without_runtime() -> None:
    """`import latency` works when ai_edge_litert is missing; using the runtime says how to install it."""
    code = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "ai_edge_litert" or name.startswith("ai_edge_litert."):
                    raise ImportError("No module named 'ai_edge_litert'")
        sys.meta_path.insert(0, Block())
        import latency
        from latency.runtime import interpreter_class
        assert latency.LatencyTable and latency.load_predictor and latency.LatencyTableError
        try:
            interpreter_class()
        except latency.RuntimeMissingError as e:
            assert "pip install ai-edge-litert" in str(e) and "[latency]" in str(e), e
            print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_load_predictor_from_file_checks_resolution(tmp_path: Path) -> None:
    sp = load_space("configs/space_digits.yaml")
    from latency.keys import space_specs

    t = LatencyTable(meta={"resolution": 16, "num_classes": 10})
    for s in space_specs(sp, 16, 10):
        t.set(s.key, {"median_ms": 0.01, "count": 1})
    p = t.save(tmp_path / "lut.json")
    predict = load_predictor(str(p), sp, 16, cache_dir=None, num_classes=10)
    g = sp.sample(0)
    assert predict(g) == pytest.approx(t.predict(g)) and predict(g) > 0
    with pytest.raises(LatencyTableError, match="resolution"):
        load_predictor(str(p), sp, 32, cache_dir=None, num_classes=10)
    with pytest.raises(LatencyTableError, match="classes"):
        load_predictor(str(p), sp, 16, cache_dir=None)


def test_load_predictor_builds_and_resumes(tmp_path: Path) -> None:
    pytest.importorskip("ai_edge_litert")
    space = tmp_path / "space.yaml"
    space.write_text(TINY_SPACE)
    predict = load_predictor(None, str(space), 16, cache_dir=tmp_path / "cache", num_classes=10)
    lut = tmp_path / "cache" / "lut.json"
    assert lut.is_file()
    sp = load_space(space)
    values = [predict(sp.sample(i)) for i in range(5)]
    assert all(v > 0 for v in values)
    before = lut.read_text()
    predict2 = load_predictor(None, str(space), 16, cache_dir=tmp_path / "cache", num_classes=10)
    assert json.loads(lut.read_text())["entries"] == json.loads(before)["entries"]  # nothing re-measured
    assert predict2(sp.sample(0)) == pytest.approx(values[0])
    # a cache measured with other settings than today's defaults (an older version) is resumed as it
    # was measured, not refused
    doc = json.loads(lut.read_text())
    doc["measurement"].update(rounds=3, window_s=0.5)
    gone = next(k for k in doc["entries"] if k != "invoke")
    del doc["entries"][gone]
    lut.write_text(json.dumps(doc))
    load_predictor(None, str(space), 16, cache_dir=tmp_path / "cache", num_classes=10)
    doc = json.loads(lut.read_text())
    assert gone in doc["entries"] and doc["measurement"]["rounds"] == 3 and doc["measurement"]["window_s"] == 0.5


def _built(tmp_path: Path) -> tuple[Path, Path]:
    """The tiny space's file and its table, measured here (tmp_path/lut.json)."""
    pytest.importorskip("ai_edge_litert")
    space = tmp_path / "space.yaml"
    space.write_text(TINY_SPACE)
    load_predictor(None, str(space), 16, cache_dir=tmp_path, num_classes=10)
    return space, tmp_path / "lut.json"


def test_measure_missing_on_the_fly(tmp_path: Path) -> None:
    space, lut = _built(tmp_path)
    sp = load_space(space)
    g = sp.sample(3)
    doc = json.loads(lut.read_text())
    gone = latency.LatencyTable.load(lut).keys_for(g)[1]
    del doc["entries"][gone]
    lut.write_text(json.dumps(doc))
    with pytest.raises(LatencyTableError, match=gone):
        load_predictor(str(lut), sp, 16, cache_dir=None, num_classes=10)(g)
    predict = load_predictor(str(lut), sp, 16, cache_dir=None, num_classes=10, measure_missing=True)
    assert predict(g) > 0
    assert gone in json.loads(lut.read_text())["entries"]  # measured and saved


def test_digits_space_builds_on_the_fly(tmp_path: Path) -> None:
    """The built-in quick space gets its whole table on first use (its time: bench/latency_speed.py --build)."""
    pytest.importorskip("ai_edge_litert")
    predict = load_predictor(None, "configs/space_digits.yaml", 16, cache_dir=tmp_path, num_classes=10)
    sp = load_space("configs/space_digits.yaml")
    assert all(predict(sp.sample(i)) > 0 for i in range(20))
    assert len(LatencyTable.load(tmp_path / "lut.json")) == 584


OTHER_SPACE = """\
activation: relu
resolution: 16
stem: {channels: 8, kernel: 3, stride: 2}
head: 32
defaults: {op: [mbconv3], kernel: [3], se: [0.0], skip: [identity]}
stages:
  - {stride: 1, channels: [8], layers: [1]}
"""


def _fake_table(space: object, path: Path, num_classes: int = 10, in_channels: int = 1) -> Path:
    from latency.keys import space_specs

    t = LatencyTable(meta={"resolution": 16, "num_classes": num_classes, "in_channels": in_channels})
    for i, s in enumerate(space_specs(load_space(space), 16, num_classes, in_channels)):
        t.set(s.key, {"median_ms": 0.001 if s.key == "invoke" else 0.01 + 0.001 * (i % 5), "count": 1})
    return t.save(path)


def test_table_of_another_space_is_refused_before_any_work(tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text(OTHER_SPACE)
    lut = _fake_table(other, tmp_path / "lut.json")  # same resolution, classes and channels as digits
    digits = load_space("configs/space_digits.yaml")
    n_missing = len(LatencyTable.load(lut).uncovered(digits, 16, 10, 1))
    assert n_missing > 500
    with pytest.raises(LatencyTableError, match=rf"lacks {n_missing} of the blocks .* e\.g\. 'stem-in16x16x1-"):
        load_predictor(str(lut), digits, 16, cache_dir=None, num_classes=10, in_channels=1)

    from nas.search import main

    run = tmp_path / "run"
    assert main(["configs/mnas.yaml", "--set", f"objective.lut={lut}", "--out", str(run), "--no-progress"]) == 2
    assert not run.exists()  # refused in the checks: no run folder, nothing trained


def test_table_for_one_channel_data_times_a_one_channel_stem(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ai_edge_litert")
    import latency.emit as emit
    from latency.measure import Runner

    space = tmp_path / "space.yaml"
    space.write_text(TINY_SPACE)
    seen: list[int] = []
    real = emit.genotype_tflite

    def spy(*args, **kw):  # the calibration networks must take the table's input too
        seen.append(kw.get("in_channels", 3))
        return real(*args, **kw)

    monkeypatch.setattr(emit, "genotype_tflite", spy)
    predict = load_predictor(None, str(space), 16, cache_dir=tmp_path, num_classes=10, in_channels=1)
    t = LatencyTable.load(tmp_path / "lut.json")
    assert t.in_channels == 1 and [k for k in t.entries if k.startswith("stem-")] == ["stem-in16x16x1-out8-k3-s1-swish"]
    assert seen and set(seen) == {1}
    assert predict(load_space(space).sample(0)) > 0
    model = real(load_space(space).sample(0), 16, 10, in_channels=1)
    assert tuple(Runner(model).interpreter.get_input_details()[0]["shape"]) == (1, 16, 16, 1)


def test_measure_missing_fills_the_space_up_front(tmp_path: Path) -> None:
    space, lut = _built(tmp_path)
    doc = json.loads(lut.read_text())
    gone = sorted(k for k in doc["entries"] if k.startswith(("ir-", "cn-")))[:3]
    for k in gone:
        del doc["entries"][k]
    lut.write_text(json.dumps(doc))
    with pytest.raises(LatencyTableError, match="lacks 3 of the blocks"):
        load_predictor(str(lut), str(space), 16, cache_dir=None, num_classes=10)
    load_predictor(str(lut), str(space), 16, cache_dir=None, num_classes=10, measure_missing=True)
    assert set(gone) <= set(json.loads(lut.read_text())["entries"])  # measured and saved before any prediction


def test_latency_knows_the_shapes_of_the_search_data_sources(tmp_path: Path) -> None:
    """latency may not import nas, so it keeps the sources' shapes itself; they must agree."""
    import numpy as np

    from latency.build import DATA_SHAPES, DEFAULT_DATA_SOURCE
    from nas.config import DataConfig
    from nas.data import digits_source
    from nas.data.cifar import load_npz
    from nas.data.imagefolder import FolderSource

    assert DataConfig().source == DEFAULT_DATA_SOURCE
    d = digits_source()
    assert DATA_SHAPES["digits"] == (d.channels, d.num_classes) == (1, 10)
    npz = tmp_path / "c.npz"
    np.savez(npz, x_train=np.zeros((10, 32, 32, 3), np.uint8), y_train=np.arange(10))
    c = load_npz(npz)
    assert DATA_SHAPES["cifar10"] == (c.channels, c.num_classes)
    assert DATA_SHAPES["imagefolder"] == (FolderSource((), np.zeros(0, np.int64), ()).channels, None)


def test_measure_missing_without_litert_is_a_one_line_search_error(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import latency.build
    from nas.reward import ObjectiveUnavailable, latency_predictor

    other = tmp_path / "other.yaml"
    other.write_text(OTHER_SPACE)
    lut = _fake_table(other, tmp_path / "lut.json")

    def no_runtime(*a, **kw):
        raise latency.RuntimeMissingError("measuring latency needs the LiteRT runtime; pip install ai-edge-litert")

    monkeypatch.setattr(latency.build, "measure_specs", no_runtime)
    with pytest.raises(ObjectiveUnavailable, match="not available: measuring latency needs the LiteRT runtime"):
        latency_predictor(lut, "configs/space_digits.yaml", 16, None, num_classes=10, in_channels=1,
                          measure_missing=True)
