"""Shared bits of the scale-out tests (executors, Ray, NNI): a tiny space and config on 8x8 digits."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml
from tiny import SPACE_K35 as SPACE

from nas.journal import Journal, load_json

ROOT = Path(__file__).resolve().parent.parent
DATA = {"source": "digits", "resolution": 8, "subset": 300}
TRAIN = {"steps": 15, "batch_size": 32, "lr": 0.1, "threads": 1, "device": "cpu"}


def write_config(tmp_path: Path, budget: int, executor: dict[str, Any] | None = None,
                 controller: dict[str, Any] | None = None, seed: int = 7) -> Path:
    """A search config (and its space) in tmp_path; the run folder is tmp_path/run."""
    (tmp_path / "space.yaml").write_text(SPACE)
    cfg = {
        "space": "space.yaml",
        "controller": controller or {"name": "ppo", "options": {"batch_size": 2}},
        "objective": {"kind": "flops", "target": "60K"},
        "data": DATA, "train": TRAIN,
        "search": {"budget": budget, "seed": seed, "reseed_top_k": 0},
        "executor": executor or {"kind": "inline"},
        "out": str(tmp_path / "run"),
    }
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def check_journal(run: Path, budget: int) -> list[dict[str, Any]]:
    """Every evaluation recorded exactly once: `budget` lines, distinct genotypes, indices 0..n-1."""
    records = Journal(run / "journal.jsonl").read()
    assert len(records) == budget, [r["genotype"] for r in records]
    assert len({r["genotype"] for r in records}) == budget
    assert [r["index"] for r in records] == list(range(budget))
    state = load_json(run / "controller.json")
    assert state["journal_len"] == budget and state["state"]["pending"] == []
    return records


def cli(cfg: Path, out: Path, *extra: str) -> list[str]:
    """The search command line."""
    return [sys.executable, "-m", "nas.search", str(cfg), "--out", str(out), "--no-progress", *extra]


def env(**extra: str) -> dict[str, str]:
    """The environment for a search subprocess."""
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}
