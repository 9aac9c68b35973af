"""The Ray executor on a local cluster of 2 CPUs: full budget, and a killed actor retried (skipped without ray)."""
from __future__ import annotations

import os

import pytest
from _scale import DATA, TRAIN, check_journal, write_config

from nas.config import DataConfig, TrainConfig, load_config
from nas.evaluate import Evaluator
from nas.executors.worker import FAULT_ENV
from nas.search import run_search

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local Ray cluster; its workers inherit the fault-injection folder from this environment."""
    fault = tmp_path_factory.mktemp("fault")
    old = os.environ.get(FAULT_ENV)
    os.environ[FAULT_ENV] = str(fault)
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 1024**2, log_to_driver=False)
    try:
        yield fault
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop(FAULT_ENV, None)
        else:
            os.environ[FAULT_ENV] = old


def test_ray_search_runs_to_its_budget_on_two_actors(cluster, tmp_path):
    cfg = load_config(write_config(tmp_path, 6, executor={"kind": "ray", "num_cpus": 1}))
    summary = run_search(cfg, progress=False)
    assert summary.evaluations == 6
    records = check_journal(tmp_path / "run", 6)
    assert all(r["status"] == "ok" and r["accuracy"] > 0 for r in records)
    # A result depends on genotype and seed only, not on the worker that trained it.
    r = records[0]
    mine = Evaluator(DataConfig(**DATA), TrainConfig(**TRAIN)).evaluate(r["genotype"], r["seed"])
    assert mine.accuracy == r["accuracy"] and mine.final_loss == r["final_loss"]
    assert ray.is_initialized()  # a cluster the search did not start is left running


def test_ray_search_survives_killed_actors(cluster, tmp_path):
    for i in (1, 2):
        (cluster / f"kill-{i}").touch()  # two actors die (SIGKILL) on the next jobs they take
    cfg = load_config(write_config(tmp_path, 6, executor={"kind": "ray", "workers": 2}))
    summary = run_search(cfg, progress=False)
    assert summary.evaluations == 6 and not list(cluster.iterdir())
    records = check_journal(tmp_path / "run", 6)
    assert all(r["status"] == "ok" for r in records)
