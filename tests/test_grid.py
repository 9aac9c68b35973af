"""Step 1 of compound scaling on a tiny budget: constraint, files, resume, then emit from its YAML."""
import json
import subprocess
import sys

import pytest
import yaml

from nas.grid import ScalingConfig, grid_points, load_grid_config, run_grid
from nas.schema import ConfigError
from scaling.grid import GridPoint, choose, enumerate_grid, spread
from search_space import Genotype, parse

BASE = parse("relu_r8:stem_c8_k3_s1:ds_r1_k3_s1_c8:ir_r1_k3_s2_e3_c16_se0.25:ir_r2_k3_s1_e3_c16:head_c32")

CONFIG = """
data: {source: digits, resolution: 8, val_fraction: 0.2}
train: {steps: 6, batch_size: 64, lr: 0.05, threads: 1}
scaling: {step: 0.05, tolerance: 0.1, max_points: 2, divisor: 2, phis: [1, 2, 3]}
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
    for r in s.records:
        assert abs(r["alpha"] * r["beta"] ** 2 * r["gamma"] ** 2 - 2) <= 0.1 + 1e-9
        assert r["macs_ratio"] == pytest.approx(r["macs"] / s.baseline["macs"], rel=1e-5)
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
    r = subprocess.run([sys.executable, "-m", "scaling", "grid", "efficientnet-b0", "--config",
                        str(tmp_path / "missing.yaml")], capture_output=True, text=True)
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
