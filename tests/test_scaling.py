import json
import subprocess
import sys

import pytest

from search_space import Genotype, parse, reference
from scaling import compound, compound_family, official_family
from search_space.rounding import round_channels, round_layers

from test_cost import HOOK_MACS, PARAMS


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "scaling", *args], capture_output=True, text=True, cwd=cwd)


def test_rounding_rules():
    assert round_channels(32, 1.1) == 32 and round_channels(1280, 1.1) == 1408
    assert round_channels(24, 0.5) == 16  # 12 -> 16 (8-multiple), not below 0.9 x
    assert round_channels(16, 0.25) == 8  # never below the divisor
    assert round_layers(3, 1.1) == 4 and round_layers(1, 3.1) == 4 and round_layers(2, 1.0) == 2


def test_compound_map():
    m = compound(1.2, 1.1, 1.15, 2, 224)
    assert m.depth == pytest.approx(1.44) and m.width == pytest.approx(1.21)
    assert m.resolution == 296  # 224 * 1.3225 = 296.24 -> nearest multiple of 8
    with pytest.raises(ValueError, match="alpha"):
        compound(0.9, 1.1, 1.15, 1)


def test_official_family_matches_reference_md():
    fam = official_family(reference("efficientnet-b0"))
    assert [m.params for m in fam] == PARAMS
    assert [m.macs for m in fam] == HOOK_MACS
    assert [m.resolution for m in fam] == [224, 240, 260, 300, 380, 456, 528, 600]


def test_any_genotype_scales():
    fam = compound_family(reference("mnasnet-a1"), 1.2, 1.1, 1.15, [1, 2, 3])
    macs = [m.macs for m in fam]
    assert macs == sorted(macs)
    assert all(m.genotype.activation == "relu" for m in fam)


def test_cli_official_json():
    r = run("emit", "efficientnet-b0", "--official", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["name"] for row in rows] == [f"efficientnet-b{i}" for i in range(8)]
    assert [row["params"] for row in rows] == PARAMS
    assert [row["macs"] for row in rows] == HOOK_MACS
    assert [row["phi"] for row in rows] == list(range(8))
    assert {"name", "phi", "width", "depth", "resolution", "params", "macs"} <= set(rows[0])


def test_cli_emit_writes_yaml(tmp_path):
    r = run("emit", "efficientnet-b0", "--alpha", "1.2", "--beta", "1.1", "--gamma", "1.15",
            "--phi", "1", "2", "3", "--out", str(tmp_path / "fam"))
    assert r.returncode == 0, r.stderr
    files = sorted((tmp_path / "fam").glob("*.yaml"))
    assert len(files) == 3
    g = Genotype.from_yaml(files[0].read_text())
    assert g.resolution == 256 and g.stem.channels == 32
    assert "| name |" in r.stdout and "efficientnet-phi3" in r.stdout
    # a written file is itself a valid SOURCE
    r2 = run("emit", str(files[0]), "--phi", "1", "--json")
    assert r2.returncode == 0, r2.stderr


@pytest.mark.parametrize("args,msg", [
    (["emit", "does-not-exist.yaml"], "does not exist"),
    (["emit", "efficientnet-b9"], "neither a reference name"),
    (["emit", "swish_r224:stem_c32_k3_s2:zz_r1:head_c10"], "bad stage token"),
    (["emit", "efficientnet-b0", "--alpha", "0.5"], "alpha"),
])
def test_cli_errors_are_one_line(args, msg):
    r = run(*args)
    assert r.returncode != 0
    assert msg in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_cli_malformed_yaml(tmp_path):
    p = tmp_path / "g.yaml"
    p.write_text("stages: [{op: ir, kernel: 3}]\n")
    r = run("emit", str(p))
    assert r.returncode != 0 and "missing" in r.stderr and "Traceback" not in r.stderr


def test_cli_emit_with_latency_table(tmp_path):
    pytest.importorskip("ai_edge_litert")
    from latency.build import build_table
    from latency.measure import Settings
    from latency.table import LatencyTable
    from tiny import SPACE

    (tmp_path / "space.yaml").write_text(SPACE)
    lut = tmp_path / "lut.json"
    build_table(tmp_path / "space.yaml", lut, num_classes=10,
                settings=Settings(threads=1, warmup=1, runs=3, rounds=1, passes=1), calibration_networks=0,
                progress=False)
    before = len(LatencyTable.load(lut))
    base = parse("relu_r8:stem_c8_k3_s1:ds_r1_k3_s2_c8:ir_r1_k3_s2_e3_c16:head_c32")
    (tmp_path / "base.yaml").write_text(base.to_yaml())
    r = run("emit", str(tmp_path / "base.yaml"), "--phi", "1", "2", "--classes", "10", "--lut", str(lut), "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert all(row["latency_ms"] > 0 for row in rows)
    assert rows[1]["latency_ms"] > rows[0]["latency_ms"] * 0.8  # bigger network, not much faster
    assert len(LatencyTable.load(lut)) > before  # the scaled blocks were measured and added
    r = run("emit", str(tmp_path / "base.yaml"), "--phi", "1", "--classes", "10", "--lut", str(lut))
    assert "latency (ms)" in r.stdout


def test_b0_family_macs_ratios_near_powers_of_two():
    """Issue 5: B1..B7 from B0 with the paper's 1.2 / 1.1 / 1.15 stay within 0.7-1.3 x 2^phi."""
    b0 = reference("efficientnet-b0")
    base = cost_of(b0)
    fam = compound_family(b0, 1.2, 1.1, 1.15, range(1, 8))
    ratios = [m.macs / base / 2 ** m.phi for m in fam]
    assert all(0.7 <= r <= 1.3 for r in ratios), ratios
    # Rounding moves them off 2^phi (1.2 * 1.1^2 * 1.15^2 = 1.92 < 2 pulls the large ones down).
    assert max(abs(r - 1) for r in ratios) > 0.01
    r = run("emit", "efficientnet-b0", "--alpha", "1.2", "--beta", "1.1", "--gamma", "1.15")
    assert r.returncode == 0 and "| 2^phi |" in r.stdout and "| 128 |" in r.stdout


def cost_of(g):
    from search_space import cost

    return cost(g).macs
