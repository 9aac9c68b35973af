import json
import subprocess
import sys

import pytest
from test_cost import HOOK_MACS, PARAMS

from scaling import compound, compound_family, official_family
from search_space import Genotype, parse, reference
from search_space.rounding import round_channels, round_layers


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


def test_official_and_compound_share_one_resolution_rule():
    """Issue 10: official() rounded with 8, so at a 16-pixel base B0, B1 and B2 were all 16 px."""
    from scaling import official
    from search_space.rounding import resolution_divisor, scale_resolution

    assert [official(f"b{i}", 16).resolution for i in range(8)] == [16, 17, 19, 21, 27, 33, 38, 43]
    assert [official(f"b{i}", 32).resolution for i in range(8)] == [32, 34, 38, 42, 54, 66, 76, 86]
    assert [compound(1.2, 1.1, 1.15, phi, 16).resolution for phi in range(4)] == [16, 18, 21, 24]
    assert [resolution_divisor(r) for r in (16, 32, 64, 128, 224)] == [1, 2, 4, 8, 8]
    assert official("b2", 16).resolution == scale_resolution(16, 260 / 224)
    assert compound(1.2, 1.1, 1.15, 2, 16).resolution == scale_resolution(16, 1.15 ** 2)
    fam = official_family(parse("relu_r16:stem_c8_k3_s1:ds_r1_k3_s2_c8:ir_r1_k3_s2_e3_c16:head_c32"))
    assert [m.genotype.resolution for m in fam][:3] == [16, 17, 19]


def test_one_spelling_of_the_paper_coefficients_and_divisor():
    from scaling import PAPER_COEFFICIENTS
    from scaling.cli import build_parser
    from scaling.grid import PAPER_POINT
    from search_space.rounding import DIVISOR

    assert PAPER_COEFFICIENTS == (1.2, 1.1, 1.15)
    assert (PAPER_POINT.alpha, PAPER_POINT.beta, PAPER_POINT.gamma) == PAPER_COEFFICIENTS
    assert DIVISOR == 8
    fam = compound_family(reference("efficientnet-b0"), *PAPER_COEFFICIENTS, [3])
    assert all(st.channels % DIVISOR == 0 for st in fam[0].genotype.stages)
    assert set(build_parser()._subparsers._group_actions[0].choices) == {"emit", "export"}


def test_compound_refuses_non_finite_values():
    for args, msg in [((1.2, 1.1, 1.15, float("nan")), "phi must be a finite number"),
                      ((float("inf"), 1.1, 1.15, 1), "alpha must be a finite number >= 1"),
                      ((1.2, 1.1, float("nan"), 1), "gamma"),
                      ((1.2, 1.1, 1.15, 1e5), "overflows")]:
        with pytest.raises(ValueError, match=msg):
            compound(*args)


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


@pytest.mark.parametrize("args,msg", [
    (["emit", "efficientnet-b0", "--phi", "nan"], "--phi nan is not allowed; allowed: finite numbers"),
    (["emit", "efficientnet-b0", "--phi", "1", "inf"], "--phi inf is not allowed"),
    (["emit", "efficientnet-b0", "--classes", "0"], "--classes 0 is not allowed; allowed: an integer >= 1"),
    (["emit", "efficientnet-b0", "--official", "--in-channels", "-1"], "--in-channels -1 is not allowed"),
    (["emit", "efficientnet-b0", "--gamma", "nan"], "--gamma nan is not allowed; allowed: a finite number >= 1"),
    (["emit", "efficientnet-b0", "--phi", "60"], "resolution 982016 is not allowed"),
    (["emit", "swish_r224:stem_c-3_k3_s2:ir_r1_k3_s1_e1_c16:head_c10"], "stem: channels -3 is not allowed"),
    (["export", "efficientnet-b0", "--format", "onnx", "--out", "x.onnx", "--classes", "0"], "--classes 0"),
    (["export", "efficientnet-b0", "--format", "onnx", "--out", "x.onnx", "--in-channels", "-1"],
     "--in-channels -1 is not allowed"),
    (["export", "efficientnet-b0", "--format", "onnx", "--out", "x.onnx", "--resolution", "100000"],
     "--resolution 100000 is not allowed; allowed: an integer in [1, 4096]"),
])
def test_cli_bad_numbers_are_one_line(tmp_path, args, msg):
    r = run(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("text,msg", [
    ("alpha: 1.2\nbeta: [1]\ngamma: 1.15\n", "key 'beta': [1] is not allowed"),
    ("alpha: 1.2\nbeta: 1.1\ngamma: 1.15\ndivisor: .inf\n", "key 'divisor'"),
    ("alpha: 1.2\nbeta: 1.1\ngamma: 1.15\nnum_classes: 0\n", "key 'num_classes': 0 is not allowed"),
    ("alpha: [1.2\n", "not valid YAML"),
])
def test_cli_bad_coefficients_files_are_one_line(tmp_path, text, msg):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    r = run("emit", "efficientnet-b0", "--coefficients", str(p))
    assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_cli_malformed_yaml(tmp_path):
    p = tmp_path / "g.yaml"
    p.write_text("stages: [{op: ir, kernel: 3}]\n")
    r = run("emit", str(p))
    assert r.returncode != 0 and "missing" in r.stderr and "Traceback" not in r.stderr


def test_cli_emit_with_latency_table(tmp_path):
    pytest.importorskip("ai_edge_litert")
    from tiny import SPACE

    from latency.build import build_table
    from latency.measure import Settings
    from latency.table import LatencyTable

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
    after = len(LatencyTable.load(lut))
    assert after > before  # the scaled blocks were measured and added
    again = run("emit", str(tmp_path / "base.yaml"), "--phi", "1", "2", "--classes", "10", "--lut", str(lut), "--json")
    # A second emit only reads the table: the same predictions, nothing measured.
    assert [row["latency_ms"] for row in json.loads(again.stdout)] == [row["latency_ms"] for row in rows]
    assert len(LatencyTable.load(lut)) == after
    r = run("emit", str(tmp_path / "base.yaml"), "--phi", "1", "--classes", "10", "--lut", str(lut))
    assert "latency (ms)" in r.stdout


def test_family_latencies_read_one_state_of_the_table(tmp_path, monkeypatch):
    """A member measured later can lower the table's overhead: every member is predicted after all are measured."""
    import latency.predictor as predictor
    from scaling.family import _TABLES, family_latencies_ms

    measured = []

    def fake_measure(self, keys):  # the blocks the table lacks get times, the last one faster than the invoke
        measured.append(list(keys))
        for i, k in enumerate(keys):
            self.table.set(k, {"median_ms": 0.0005 / len(measured) if i == len(keys) - 1 else 0.02, "count": 3})

    monkeypatch.setattr(predictor.Predictor, "measure", fake_measure)
    from latency.table import LatencyTable

    base = parse("relu_r8:stem_c8_k3_s1:ds_r1_k3_s2_c8:ir_r1_k3_s2_e3_c16:head_c32")
    members = [m.genotype for m in compound_family(base, 1.2, 1.1, 1.15, [1, 2], num_classes=10)]
    table = LatencyTable(entries={"invoke": {"median_ms": 0.001, "count": 3}}, meta={"num_classes": 10})
    monkeypatch.setitem(_TABLES, str(tmp_path / "lut.json"), table)
    first = family_latencies_ms(tmp_path / "lut.json", members)
    assert len(measured) == 1  # one measurement of everything any member lacks
    again = family_latencies_ms(tmp_path / "lut.json", members)
    assert first == again and len(measured) == 1
    assert family_latencies_ms(None, members) is None


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


def test_mobilenet_v3_scales_with_its_activations_se_and_head():
    """Compound scaling keeps per-stage activations, the SE variant, float expansions and the head form."""
    from search_space.model import build_model, count_params
    from search_space.rounding import expanded_channels

    base = reference("mobilenet-v3-large")
    fam = compound_family(base, 1.2, 1.1, 1.15, [1, 2])
    for m in fam:
        g = m.genotype
        assert [st.act for st in g.stages] == [st.act for st in base.stages]
        assert [st.expansion for st in g.stages] == [st.expansion for st in base.stages]
        assert g.se_gate == "hsigmoid" and g.activation == "hswish" and g.head_mix > base.head_mix
        assert count_params(build_model(g)) == m.params
    g = fam[0].genotype  # width 1.1: 80 -> 88 channels, e2.3 -> make_divisible(202.4) = 200
    assert g.stages[6].channels == 88 and expanded_channels(88, 2.3) == 200
    assert g.head_mix == round_channels(1280, 1.1)
