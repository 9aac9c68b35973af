"""Phone kit: probe export, run_probes.sh (with stand-in benchmark_model and adb), log ingest, OFA import."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from latency import LatencyTable, LatencyTableError
from latency.ingest import ingest, parse_benchmark_log
from latency.keys import BlockSpec, HeadSpec, StemSpec, genotype_keys
from latency.ofa import import_ofa
from search_space.genotype import parse

TINY_SPACE = """\
activation: relu
resolution: 16
stem: {channels: 8, kernel: 3, stride: 2}
head: 32
defaults: {op: [mbconv3, sepconv], kernel: [3], se: [0.0], skip: [identity]}
stages:
  - {stride: 1, channels: [8], layers: [1, 2]}
  - {stride: 2, channels: [16], layers: [1]}
"""

LOG = """STARTING!
Log parameter values verbosely: [0]
Num threads: [1]
Graph: [{graph}]
#threads used for CPU inference: [1]
Loaded model {graph}
INFO: Initialized TensorFlow Lite runtime.
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
The input model file size (MB): 0.01
Initialized session in 2.861ms.
Running benchmark for at least 10 iterations and at least 0 seconds but terminate if exceeding 150 seconds.
count=10 first=11620 curr=6021 min=5890 max=11620 avg=6107.67 std=612

Running benchmark for at least 50 iterations and at least 0 seconds but terminate if exceeding 150 seconds.
count=50 first=5990 curr=5970 min=5890 max=6240 avg={avg} std=80

Inference timings in us: Init: 2861, First inference: 11620, Warmup (avg): 6107.67, Inference (avg): {avg}
Memory footprint delta from the start of the tool (MB): init=3.1 max resident set size=4.2 total malloc-ed=0.7
"""


def test_parse_benchmark_log() -> None:
    r = parse_benchmark_log(LOG.format(graph="/x.tflite", avg="5981.2"))
    assert r is not None
    assert r.inference_avg_us == 5981.2 and r.warmup_avg_us == 6107.67 and r.first_us == 11620
    assert r.init_us == 2861 and r.count == 50 and r.std_us == 80 and r.min_us == 5890 and r.threads == 1
    e = r.entry()
    assert e["median_ms"] == pytest.approx(5.9812) and e["count"] == 50 and e["std_ms"] == pytest.approx(0.08)
    # The one-line form docs/reference.md quotes is enough.
    only = parse_benchmark_log("Inference timings in us: Init: 2861, First inference: 11620, "
                               "Warmup (avg): 6107.67, Inference (avg): 5981.2")
    assert only is not None and only.entry()["median_ms"] == pytest.approx(5.9812)
    assert parse_benchmark_log("ERROR: Could not open 'x.tflite'.\nAborted") is None


def _fake_us(name: str) -> float:
    return 1.0 if name == "invoke" else 100.0 + zlib.crc32(name.encode()) % 5000 / 10


@pytest.fixture
def fake_tools(tmp_path: Path) -> Path:
    """A stand-in benchmark_model (prints a log whose time derives from the graph's name) and adb."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    bench = bindir / "benchmark_model"
    bench.write_text(f"""#!{sys.executable}
import sys, zlib, os
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
assert args["num_threads"] and args["num_runs"] and args["warmup_runs"], args
name = os.path.basename(args["graph"])[:-len(".tflite")]
avg = 1.0 if name == "invoke" else 100.0 + zlib.crc32(name.encode()) % 5000 / 10
sys.stdout.write({LOG!r}.format(graph=args["graph"], avg=avg))
""")
    adb = bindir / "adb"
    # adb stand-in: the "device" is a local folder; shell runs the command with bash.
    adb.write_text("""#!/usr/bin/env bash
[ "$1" = "-s" ] && shift 2
cmd="$1"; shift
case "$cmd" in
  shell)
    case "$*" in getprop*) echo "FakePhone 4";; *) bash -c "$*";; esac ;;
  push) mkdir -p "$2"; cp -r "$1" "$2/" ;;
  pull) cp -r "$1" "$2" ;;
esac
""")
    for f in (bench, adb):
        f.chmod(f.stat().st_mode | stat.S_IEXEC)
    return bindir


@pytest.fixture
def kit(tmp_path: Path) -> Path:
    pytest.importorskip("ai_edge_litert")
    from latency.probes import export_probes

    space = tmp_path / "space.yaml"
    space.write_text(TINY_SPACE)
    out = tmp_path / "kit"
    m = export_probes(space, out, num_classes=10, runs=20, warmup=3, calibration_networks=2, progress=False)
    assert (out / "manifest.json").is_file()
    assert len(m["probes"]) == len(list((out / "probes").glob("*.tflite"))) == 7
    assert len(m["networks"]) == 2
    return out


def test_export_probes_kit(kit: Path) -> None:
    m = json.loads((kit / "manifest.json").read_text())
    assert m["format"] == "hwnas-latency-probes" and m["resolution"] == 16 and m["num_classes"] == 10
    assert {p["key"] for p in m["probes"]} >= {"invoke", "stem-in16x16x3-out8-k3-s2-relu"}
    script = kit / "run_probes.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    for flag in ("--graph=", "--num_threads=", "--num_runs=", "adb", "push", "pull"):
        assert flag in text
    # Probes are real models: each runs in the interpreter.
    from latency.measure import Runner

    for f in list((kit / "probes").glob("*.tflite"))[:3] + list((kit / "networks").glob("*.tflite")):
        Runner(f.read_bytes()).invoke()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_run_probes_local_then_ingest(kit: Path, fake_tools: Path) -> None:
    subprocess.run([str(kit / "run_probes.sh"), "local", "--benchmark", str(fake_tools / "benchmark_model")],
                   check=True, capture_output=True)
    logs = sorted((kit / "logs").glob("*.log"))
    assert len(logs) == 7 + 2
    table, rep = ingest([kit])
    assert rep.entries == 7 and rep.networks == 2 and not rep.failed and not rep.missing
    for k, e in table.entries.items():
        assert e["median_ms"] == pytest.approx(_fake_us(k) / 1000, abs=1e-6)
    assert table.resolution == 16 and table.num_classes == 10 and table.device["threads"] == 1
    assert table.meta["calibration"]["networks"] and table.scale > 0
    g = parse(table.meta["calibration"]["networks"][0]["genotype"])
    assert table.predict(g) > 0


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_run_probes_adb_then_cli_ingest(kit: Path, fake_tools: Path, tmp_path: Path) -> None:
    from latency.__main__ import main

    device_dir = tmp_path / "device"
    env = {**os.environ, "PATH": f"{fake_tools}:{os.environ['PATH']}", "DEVICE_DIR": str(device_dir)}
    subprocess.run([str(kit / "run_probes.sh"), "adb", "--serial", "emulator-5554",
                    "--benchmark", str(fake_tools / "benchmark_model"), "--runs", "7"],
                   check=True, capture_output=True, env=env)
    assert len(list((device_dir / "logs").glob("*.log"))) == 9
    assert "FakePhone" in (kit / "logs" / "device.txt").read_text()
    out = tmp_path / "phone.json"
    assert main(["ingest", str(kit), "--out", str(out)]) == 0
    t = LatencyTable.load(out)
    assert len(t) == 7 and t.device["model"] == "FakePhone 4" and t.device["source"] == "benchmark_model"


def test_ingest_plain_logs_with_flags(tmp_path: Path) -> None:
    keys = [StemSpec(32, 32, 3, 16, 3, 2, "relu").key,
            BlockSpec(16, 16, 16, 24, 3, 2, "ir", 6, 0.0, False, "relu").key, "invoke", "notes"]
    for k in keys:
        (tmp_path / f"{k}.log").write_text(LOG.format(graph=k, avg=_fake_us(k)))
    failed = HeadSpec(4, 4, 16, 32, 10, "relu").key
    (tmp_path / f"{failed}.log").write_text("ERROR: Could not allocate tensors\nSegmentation fault\n")
    table, rep = ingest(sorted(tmp_path.glob("*.log")), device={"model": "Pixel 4"}, threads=4)
    assert rep.entries == 3 and rep.unknown == ["notes.log"] and rep.failed == [f"{failed}.log"]
    assert table.device["model"] == "Pixel 4" and table.device["threads"] == 4 and table.resolution == 32
    (tmp_path / "empty").mkdir()
    with pytest.raises(LatencyTableError, match="no benchmark_model logs"):
        ingest([tmp_path / "empty"])
    with pytest.raises(LatencyTableError, match="no such"):
        ingest([tmp_path / "absent"])


PROXYLESS = """\
Conv-input:224x224x3-output:112x112x32: {count: 50, mean: 4.349, std: 0.2}
expanded_conv-input:112x112x32-output:112x112x16-expand:1-kernel:3-stride:1-idskip:0: {count: 50, mean: 3.1, std: 0.1}
expanded_conv-input:112x112x16-output:56x56x24-expand:6-kernel:5-stride:2-idskip:0: {count: 50, mean: 5.5, std: 0.1}
expanded_conv-input:56x56x24-output:56x56x24-expand:3-kernel:3-stride:1-idskip:1: {count: 50, mean: 2.0, std: 0.1}
expanded_conv-input:56x56x24-output:28x28x40-expand:6-kernel:3-stride:2-idskip:1: {count: 50, mean: 2.0, std: 0.1}
Conv_1-input:7x7x320-output:7x7x1280: {count: 50, mean: 1.5, std: 0.3}
Logits-input:7x7x1280-output:1000: {count: 40, mean: 0.5, std: 0.4}
"""

MBV3 = """\
Conv-input:224x224x3-output:112x112x16: {count: 50, mean: 2.0, std: 0.1}
expanded_conv-input:56x56x32-output:56x56x32-expand:192-kernel:5-stride:1-idskip:1-se:0-hs:0: {count: 50, mean: 3.0, std: 0.1}
expanded_conv-input:56x56x32-output:28x28x40-expand:96-kernel:3-stride:2-idskip:0-se:1-hs:0: {count: 50, mean: 1.0, std: 0.1}
expanded_conv-input:28x28x40-output:28x28x40-expand:240-kernel:3-stride:1-idskip:1-se:1-hs:1: {count: 50, mean: 1.0, std: 0.1}
expanded_conv-input:28x28x40-output:28x28x40-expand:100-kernel:3-stride:1-idskip:1-se:0-hs:0: {count: 50, mean: 1.0, std: 0.1}
Conv_1-input:7x7x160-output:7x7x960: {count: 50, mean: 1.0, std: 0.1}
AvgPool2D-input:7x7x960-output:1x1x960: {count: 50, mean: 0.1, std: 0.0}
Conv_2-input:1x1x960-output:1x1x1280: {count: 50, mean: 0.3, std: 0.0}
Logits-input:1x1x1280-output:1000: {count: 50, mean: 0.2, std: 0.0}
"""


def test_import_proxylessnas_table(tmp_path: Path) -> None:
    from latency.__main__ import main
    from latency.ofa import load_ofa_yaml

    f = tmp_path / "proxyless.yaml"
    f.write_text(PROXYLESS)
    table, rep = import_ofa(load_ofa_yaml(f))
    assert rep.mapped == 6 and sum(rep.skipped.values()) == 1  # idskip on a stride-2 block; Conv_1 + Logits: 2
    assert table.median(StemSpec(224, 224, 3, 32, 3, 2, "relu").key) == 4.349
    assert table.median(BlockSpec(112, 112, 32, 16, 3, 1, "ir", 1, 0.0, False, "relu").key) == 3.1
    assert table.median(BlockSpec(112, 112, 16, 24, 5, 2, "ir", 6, 0.0, False, "relu").key) == 5.5
    assert table.median(BlockSpec(56, 56, 24, 24, 3, 1, "ir", 3, 0.0, True, "relu").key) == 2.0
    head = table.entries[HeadSpec(7, 7, 320, 1280, 1000, "relu").key]
    assert head["median_ms"] == pytest.approx(2.0) and head["count"] == 40
    assert table.resolution == 224 and table.overhead_ms == 0.0

    out = tmp_path / "lut.json"
    assert main(["import-ofa", str(f), "--out", str(out)]) == 0
    assert len(LatencyTable.load(out)) == 5


def test_import_mobilenetv3_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from latency.__main__ import main

    f = tmp_path / "mbv3.yaml"
    f.write_text(MBV3)
    out = tmp_path / "lut.json"
    assert main(["import-ofa", str(f), "--out", str(out), "--resolution", "224"]) == 0
    text = capsys.readouterr().out
    assert "mapped 8 of 9 entries, skipped 1" in text  # expand:100 is no multiple of 40 input channels
    t = LatencyTable.load(out)
    assert t.median(StemSpec(224, 224, 3, 16, 3, 2, "hswish").key) == 2.0
    assert t.median(BlockSpec(56, 56, 32, 32, 5, 1, "ir", 6, 0.0, True, "relu").key) == 3.0
    assert t.median(BlockSpec(56, 56, 32, 40, 3, 2, "ir", 3, 0.25, False, "relu", "hsigmoid").key) == 1.0
    assert t.median(BlockSpec(28, 28, 40, 40, 3, 1, "ir", 6, 0.25, True, "hswish", "hsigmoid").key) == 1.0
    # Conv_1 + AvgPool2D + Conv_2 + Logits: the MobileNetV3 head with its feature mix
    assert t.median(HeadSpec(7, 7, 160, 960, 1000, "hswish", 1280).key) == pytest.approx(1.6)
    assert t.resolution == 224
    assert main(["import-ofa", str(tmp_path / "none.yaml"), "--out", str(out)]) == 2


def test_calibration_networks_use_table_keys(kit: Path) -> None:
    m = json.loads((kit / "manifest.json").read_text())
    probe_keys = {p["key"] for p in m["probes"]}
    for n in m["networks"]:
        assert set(genotype_keys(parse(n["genotype"]), 16, 10)) <= probe_keys


def test_ingest_of_logs_without_results_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from latency.__main__ import main

    logs = tmp_path / "logs"
    logs.mkdir()
    for k in (StemSpec(16, 16, 1, 8, 3, 2, "relu").key, "invoke"):
        (logs / f"{k}.log").write_text("ERROR: Could not allocate tensors\n")
    (logs / "notes.log").write_text(LOG.format(graph="notes", avg=5.0))
    with pytest.raises(LatencyTableError, match=r"no benchmark results in 3 log\(s\) \(2 logs without timings"):
        ingest([logs])
    out = tmp_path / "lut.json"
    assert main(["ingest", str(logs), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no benchmark results") and err.count("\n") == 1
    assert not out.exists()  # no 0-entry table


def test_ingest_takes_input_channels_from_the_stem(tmp_path: Path) -> None:
    for k in (StemSpec(16, 16, 1, 8, 3, 2, "relu").key, "invoke"):
        (tmp_path / f"{k}.log").write_text(LOG.format(graph=k, avg=_fake_us(k)))
    table, _ = ingest([tmp_path])
    assert (table.in_channels, table.resolution) == (1, 16)


def test_export_probes_of_a_search_config_uses_its_data_shape(tmp_path: Path) -> None:
    pytest.importorskip("ai_edge_litert")
    from latency.__main__ import main

    (tmp_path / "space.yaml").write_text(TINY_SPACE)
    cfg = tmp_path / "search.yaml"
    cfg.write_text("space: space.yaml\ndata: {source: digits}\n")
    out = tmp_path / "kit"
    assert main(["export-probes", str(cfg), "--out", str(out), "--calibration-networks", "1", "--quiet"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert (m["in_channels"], m["num_classes"]) == (1, 10)
    assert [p["key"] for p in m["probes"] if p["kind"] == "stem"] == ["stem-in16x16x1-out8-k3-s2-relu"]
    assert any(p["key"].endswith("-cls10-relu") for p in m["probes"] if p["kind"] == "head")
