"""The search-facing API: load_predictor, on-the-fly tables, measure_missing, lazy runtime import."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
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


def test_measure_missing_on_the_fly(tmp_path: Path) -> None:
    pytest.importorskip("ai_edge_litert")
    space = tmp_path / "space.yaml"
    space.write_text(TINY_SPACE)
    load_predictor(None, str(space), 16, cache_dir=tmp_path, num_classes=10)
    lut = tmp_path / "lut.json"
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


def test_digits_space_builds_on_the_fly_quickly(tmp_path: Path) -> None:
    """The built-in quick space gets its table within a minute or two on a 2-core machine."""
    pytest.importorskip("ai_edge_litert")
    t0 = time.perf_counter()
    predict = load_predictor(None, "configs/space_digits.yaml", 16, cache_dir=tmp_path, num_classes=10)
    elapsed = time.perf_counter() - t0
    assert elapsed < 120, f"{elapsed:.0f} s"
    sp = load_space("configs/space_digits.yaml")
    assert all(predict(sp.sample(i)) > 0 for i in range(20))
    assert len(LatencyTable.load(tmp_path / "lut.json")) == 584
