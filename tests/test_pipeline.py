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
                 "## Step 2: the family", "| discovered-phi3 |"):
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
