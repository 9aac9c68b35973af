"""`python -m nas.pipeline`: search -> B0 comparison -> grid -> family in one resumable run folder."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from nas.config import load_config
from nas.journal import Journal
from nas.pipeline import run_pipeline
from search_space import Genotype

SPACE = """
activation: relu
resolution: 8
stem: {channels: 8, kernel: 3, stride: 1}
head: 32
defaults: {op: [sepconv, mbconv3], kernel: [3], se: [0.0], skip: [identity]}
stages:
  - {stride: 2, channels: [8, 12], layers: [1]}
  - {stride: 2, channels: [16], layers: [1, 2]}
"""


def _config(tmp_path: Path) -> Path:
    (tmp_path / "space.yaml").write_text(SPACE)
    cfg = {
        "space": "space.yaml",
        "controller": {"name": "evolution", "options": {"population_size": 2, "sample_size": 2}},
        "objective": {"kind": "flops", "target": "60K", "preset": "soft"},
        "data": {"source": "digits", "resolution": 8, "subset": 300},
        "train": {"steps": 4, "batch_size": 32, "lr": 0.1, "threads": 1, "device": "cpu"},
        "search": {"budget": 3, "seed": 0, "reseed_top_k": 0},
        "scaling": {"max_points": 2, "phis": [1, 2, 3], "divisor": 2, "reseed_top_k": 0},
    }
    p = tmp_path / "pipe.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_pipeline_end_to_end_and_resume(tmp_path):
    cfg = load_config(_config(tmp_path), [f"out={tmp_path / 'run'}"])
    report = run_pipeline(cfg, progress=False)
    run = tmp_path / "run"
    assert len(Journal(run / "search" / "journal.jsonl").read()) == 3
    assert (run / "search" / "best.yaml").is_file() and (run / "efficientnet-b0.json").is_file()
    grid = Journal(run / "grid" / "journal.jsonl").read()
    assert [r["kind"] for r in grid] == ["baseline", "point", "point"]
    coeff = yaml.safe_load((run / "grid" / "coefficients.yaml").read_text())
    assert abs(coeff["macs_ratio"] - 2) <= 0.1 + 1e-6  # measured at phi = 1, the default rule
    family = sorted((run / "family").glob("*.yaml"))
    assert [f.stem for f in family] == ["discovered-phi1", "discovered-phi2", "discovered-phi3"]
    Genotype.from_yaml(family[0].read_text())
    text = report.read_text()
    for part in ("## Baseline", "EfficientNet-B0 (same budget)", "## Step 1: grid search", "**(chosen)**",
                 "## Step 2: the family", "| discovered-phi3 |", "## What this proxy can and cannot tell",
                 "**Seed noise**: unknown", "**Discovered vs EfficientNet-B0**", "**The grid's choice**"):
        assert part in text, part

    # Resuming a finished pipeline trains nothing again and rebuilds the same report.
    before = {p: p.stat().st_mtime_ns for p in (run / "search" / "journal.jsonl", run / "grid" / "journal.jsonl")}
    report2 = run_pipeline(cfg, resume=True, progress=False)
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert report2.read_text().split("## Time")[0] == text.split("## Time")[0]


def test_pipeline_refuses_a_used_folder_without_resume(tmp_path):
    p = _config(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x").write_text("")
    r = subprocess.run([sys.executable, "-m", "nas.pipeline", str(p), "--out", str(tmp_path / "run")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--resume" in r.stderr and "Traceback" not in r.stderr


def test_proxy_notes_hold_each_decision_against_the_seed_noise():
    from nas.config import DataConfig
    from nas.proxy_notes import native_size, section
    from nas.reseed import seed_stats

    rec = {"genotype": "g", "index": 0, "accuracy": 0.9, "reward": 0.9}
    a = seed_stats(rec, (0.90, 0.92, 0.88), (0.90, 0.92, 0.88))  # std 2 points
    b = seed_stats(dict(rec, index=1), (0.89, 0.91, 0.87), (0.89, 0.91, 0.87))
    grid = [{"alpha": 1.0, "beta": 1.0, "gamma": 1.4, "accuracy": 0.93, "params": 100, "key": "p1"},
            {"alpha": 1.2, "beta": 1.1, "gamma": 1.15, "accuracy": 0.83, "params": 250, "key": "p2"},
            {"alpha": 2.1, "beta": 1.0, "gamma": 1.0, "accuracy": 0.41, "params": 400, "key": "p3"}]
    digits = DataConfig(source="digits", resolution=32)
    assert native_size(digits) == 8
    text = "\n".join(section(digits, 32, [a, b], 0.95, 0.90, grid, grid[0], kendall_tau=-0.2, ranked=4))
    assert "standard deviation of 2.00 points" in text
    assert "vs its runner-up (means over seeds): 1.00 points of accuracy, 0.5x the seed noise: **within noise**" in text
    assert "with the same proxy budget: 5.00 points of accuracy, 2.5x the seed noise: a difference this proxy" in text
    assert "over the next point: 10.00 points" in text and "Capacity is penalised" in text
    assert "images are 8x8, upsampled to 32x32" in text and "did not hold up" in text
    assert "not supported by its proxy" in text
    # Clear differences on real-size images: nothing to doubt.
    text = "\n".join(section(DataConfig(source="digits", resolution=8), 8, [a], 0.99, 0.90, grid[:1], grid[0],
                             kendall_tau=0.8, ranked=4))
    assert "Every decision above stands clear" in text and "upsampled" not in text
