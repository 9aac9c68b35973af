"""Step 1 of compound scaling on a tiny budget: constraint, files, resume, then emit from its YAML."""
import json
import subprocess
import sys

import pytest
import yaml

from nas.grid import ScalingConfig, grid_points, load_grid_config, run_grid
from nas.schema import ConfigError
from scaling.grid import PAPER_POINT, GridPoint, choose, enumerate_grid, spread
from search_space import Genotype, parse

BASE = parse("relu_r8:stem_c8_k3_s1:ds_r1_k3_s1_c8:ir_r1_k3_s2_e3_c16_se0.25:ir_r2_k3_s1_e3_c16:head_c32")

CONFIG = """
data: {source: digits, resolution: 8, val_fraction: 0.2}
train: {steps: 6, batch_size: 64, lr: 0.05, threads: 1}
scaling: {step: 0.05, tolerance: 0.1, max_points: 2, divisor: 2, phis: [1, 2, 3], reseed_top_k: 0}
"""


def test_enumeration_respects_the_constraint():
    pts = enumerate_grid(0.05, 0.1)
    assert len(pts) == 111
    assert GridPoint(1.2, 1.1, 1.15) in pts
    for p in pts:
        assert min(p.alpha, p.beta, p.gamma) >= 1.0
        assert abs(p.product - 2.0) <= 0.1 + 1e-9
        for v in (p.alpha, p.beta, p.gamma):
            assert abs(round(v / 0.05) * 0.05 - v) < 1e-9  # on the 0.05 grid
    assert len(enumerate_grid(0.05, 0.02)) < len(pts)
    sub = spread(pts, 4, [GridPoint(1.2, 1.1, 1.15)])
    assert len(sub) == 4 and GridPoint(1.2, 1.1, 1.15) in sub


def test_choose_best_accuracy_ties_by_macs():
    rs = [{"key": "a", "accuracy": 0.9, "macs": 10}, {"key": "b", "accuracy": 0.95, "macs": 30},
          {"key": "c", "accuracy": 0.95, "macs": 20}, {"key": "d", "accuracy": 0.99, "macs": 5, "status": "diverged"}]
    assert choose(rs)["key"] == "c"


def test_grid_runs_resumes_and_feeds_emit(tmp_path, monkeypatch):
    (tmp_path / "grid.yaml").write_text(CONFIG)
    cfg = load_grid_config(tmp_path / "grid.yaml")
    out = tmp_path / "run"
    s = run_grid(BASE, cfg.data, cfg.train, cfg.scaling, out, progress=False)
    assert len(s.records) == 2 and s.baseline["kind"] == "baseline"
    for r in s.records:  # the default rule holds the counted MACs, not the formula, to 2x
        assert r["macs_ratio"] == pytest.approx(r["macs"] / s.baseline["macs"], rel=1e-5)
        assert abs(r["macs_ratio"] - 2) <= 0.1 + 1e-6
        assert r["product"] == pytest.approx(r["alpha"] * r["beta"] ** 2 * r["gamma"] ** 2, abs=1e-5)
        assert r["status"] == "ok" and 0.0 <= r["accuracy"] <= 1.0
    for f in ("journal.jsonl", "coefficients.yaml", "grid.md", "grid.json"):
        assert (out / f).is_file()
    assert list((out / "tensorboard").glob("events.*"))
    coeff = yaml.safe_load((out / "coefficients.yaml").read_text())
    assert {coeff["alpha"], coeff["beta"], coeff["gamma"]} and coeff["divisor"] == 2 and coeff["num_classes"] == 10
    lines = (out / "journal.jsonl").read_text().splitlines()
    assert len(lines) == 3

    # a run killed after two records (plus a torn line) resumes without repeating them
    (out / "journal.jsonl").write_text("\n".join(lines[:2]) + "\n" + lines[2][:20])
    calls = []
    from nas import evaluate

    real = evaluate.Evaluator.evaluate

    def counting(self, g, seed):
        calls.append(str(g))
        return real(self, g, seed)

    monkeypatch.setattr(evaluate.Evaluator, "evaluate", counting)
    s2 = run_grid(BASE, cfg.data, cfg.train, cfg.scaling, out, resume=True, progress=False)
    assert len(calls) == 1
    keys = [json.loads(x)["key"] for x in (out / "journal.jsonl").read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 3
    assert s2.best["key"] == s.best["key"] and s2.best["accuracy"] == s.best["accuracy"]  # deterministic on CPU
    with pytest.raises(ConfigError, match="--resume"):
        run_grid(BASE, cfg.data, cfg.train, cfg.scaling, out, progress=False)

    # step 2 takes the coefficients from the grid's YAML
    base_yaml = tmp_path / "base.yaml"
    base_yaml.write_text(BASE.to_yaml(name="base"))
    r = subprocess.run([sys.executable, "-m", "scaling", "emit", str(base_yaml), "--coefficients",
                        str(out / "coefficients.yaml"), "--out", str(tmp_path / "fam"), "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["phi"] for row in rows] == [1, 2, 3]
    assert len(list((tmp_path / "fam").glob("*.yaml"))) == 3
    g1 = Genotype.from_yaml((tmp_path / "fam" / "base-phi1.yaml").read_text())
    assert g1.resolution >= BASE.resolution


def test_grid_config_errors(tmp_path):
    (tmp_path / "g.yaml").write_text(CONFIG + "bogus: 1\n")
    with pytest.raises(ConfigError, match="bogus"):
        load_grid_config(tmp_path / "g.yaml")
    (tmp_path / "g.yaml").write_text(CONFIG)
    with pytest.raises(ConfigError, match="scaling.tolerance"):
        load_grid_config(tmp_path / "g.yaml", ["scaling.tolerance=0.0001", "scaling.step=0.3"])
    with pytest.raises(ConfigError, match=r"scaling.points\[0\]"):
        load_grid_config(tmp_path / "g.yaml", ["scaling.points=[[0.5, 1, 1]]"])
    assert len(grid_points(ScalingConfig(points=[[1.2, 1.1, 1.15]]))) == 1


def test_grid_cli_errors_are_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "nas.grid", "efficientnet-b0", "--config",
                        str(tmp_path / "missing.yaml")], capture_output=True, text=True)
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run([sys.executable, "-m", "nas.grid", "no-such-net", "--config", str(tmp_path / "x.yaml")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "no-such-net" in r.stderr and "Traceback" not in r.stderr


def test_measured_rule_keeps_points_whose_counted_macs_double_and_formula_rule_does_not():
    from nas.grid import measured_ratio
    from search_space import cost

    b0 = parse("swish_r32:stem_c16_k3_s1:ir_r1_k3_s1_e1_c8_se0.25:ir_r2_k3_s2_e6_c16_se0.25:"
               "ir_r2_k5_s2_e6_c24_se0.25:ir_r3_k3_s2_e6_c40_se0.25:head_c320")
    base = cost(b0, num_classes=10).macs
    formula = grid_points(ScalingConfig(rule="formula", divisor=8), b0, num_classes=10)
    ratios = [measured_ratio(b0, p, 8, base, 10) for p in formula]
    assert max(abs(r - 2) for r in ratios) > 0.1  # rounding pushes some "2x" points well off 2x
    measured = grid_points(ScalingConfig(rule="measured", divisor=8), b0, num_classes=10)
    assert measured and all(abs(measured_ratio(b0, p, 8, base, 10) - 2) <= 0.1 + 1e-9 for p in measured)
    assert set(measured) != set(formula)
    paper = measured_ratio(b0, PAPER_POINT, 8, base, 10)
    assert (PAPER_POINT in measured) == (abs(paper - 2) <= 0.1)  # the paper's point only where it qualifies
    capped = grid_points(ScalingConfig(rule="measured", divisor=8, max_points=3), b0, num_classes=10)
    assert len(capped) == 3 and set(capped) <= set(measured)


def test_measured_rule_with_no_qualifying_point_is_a_config_error(tmp_path):
    cfg = load_grid_config(_write(tmp_path, CONFIG.replace("tolerance: 0.1", "tolerance: 0.0")))
    with pytest.raises(ConfigError, match="measured MACs.*scaling.rule: formula"):
        run_grid(BASE, cfg.data, cfg.train, cfg.scaling, tmp_path / "run", progress=False)


def _write(tmp_path, text):
    p = tmp_path / "grid.yaml"
    p.write_text(text)
    return p


def test_grid_reseeds_its_best_points_and_chooses_by_the_mean(tmp_path):
    cfg = load_grid_config(_write(tmp_path, CONFIG.replace("reseed_top_k: 0", "reseed_top_k: 1, reseeds: 2")))
    out = tmp_path / "run"
    s = run_grid(BASE, cfg.data, cfg.train, cfg.scaling, out, progress=False)
    lines = [json.loads(x) for x in (out / "journal.jsonl").read_text().splitlines()]
    reseeds = [r for r in lines if r["kind"] == "reseed"]
    first = {r["key"]: r for r in lines if r["kind"] == "point"}
    assert len(reseeds) == 2 and len({r["seed"] for r in reseeds}) == 2
    top = max(first.values(), key=lambda r: (r["accuracy"], -r["macs"]))
    assert {r["point"] for r in reseeds} == {top["key"]} and all(r["seed"] != cfg.scaling.seed for r in reseeds)
    mean = (top["accuracy"] + sum(r["accuracy"] for r in reseeds)) / 3
    rec = next(r for r in s.records if r["key"] == top["key"])
    assert rec["accuracy"] == pytest.approx(mean) and rec["seeds"] == 3
    assert "Re-evaluated with 3 seeds each" in (out / "grid.md").read_text()
    again = run_grid(BASE, cfg.data, cfg.train, cfg.scaling, out, resume=True, progress=False)
    assert len((out / "journal.jsonl").read_text().splitlines()) == len(lines) and again.best == s.best
