"""The local process pool: inline's results, dead workers replaced and retried, resume after kill -9."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import yaml
from _scale import DATA, SPACE, TRAIN, check_journal, cli, env, write_config

from nas.config import DataConfig, TrainConfig
from nas.evaluate import Evaluator
from nas.executors import InlineExecutor, Job
from nas.executors.local import LocalExecutor, plan_workers
from nas.executors.worker import FAULT_ENV
from nas.journal import Journal
from nas.results import eval_seed
from search_space import SearchSpace


def _run_all(ex, jobs: list[Job]) -> dict:
    for j in jobs:
        ex.submit(j)
    done = {}
    while len(done) < len(jobs):
        for d in ex.wait():
            done[d.job.key] = d
    return done


def test_local_pool_gives_inline_results_and_survives_killed_workers(tmp_path, monkeypatch):
    fault = tmp_path / "fault"
    fault.mkdir()
    monkeypatch.setenv(FAULT_ENV, str(fault))  # spawned workers inherit it
    (fault / "kill-1").touch()  # the first job a worker takes kills that worker (once)
    space = SearchSpace(yaml.safe_load(SPACE))
    genotypes = list(dict.fromkeys(space.sample(i).to_string() for i in range(8)))[:4]
    jobs = [Job(str(i), g, eval_seed(3, g)) for i, g in enumerate(genotypes)]
    evaluator = Evaluator(DataConfig(**DATA), TrainConfig(**TRAIN))

    inline = _run_all(InlineExecutor(evaluator), jobs)
    with LocalExecutor(evaluator, plan_workers([], 2, 1), max_retries=2) as ex:
        assert ex.slots == 2 and ex.free() == 2
        local = _run_all(ex, jobs)
        assert not list(fault.iterdir())
        # The killed worker's job was retried on a fresh worker; every job finished once.
        assert sorted(d.tries for d in local.values()) == [1, 1, 1, 2]
        for key, d in inline.items():
            a, b = d.result, local[key].result
            assert b.status == "ok" and (a.accuracy, a.final_loss, a.steps) == (b.accuracy, b.final_loss, b.steps)

        # With no retries left a lost job comes back failed, with the reason; the pool goes on.
        ex.max_retries = 0
        (fault / "kill-2").touch()
        failed = _run_all(ex, [Job("lost", genotypes[0], 1)])["lost"]
        assert failed.result.status == "failed" and failed.result.accuracy == 0.0
        assert "SIGKILL" in failed.result.reason and "1 try" in failed.result.reason
        again = _run_all(ex, [Job("again", genotypes[1], jobs[1].seed)])["again"]
        assert again.result.accuracy == inline["1"].result.accuracy
    assert ex.worker_pids() == []


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # an orphan nobody reaps stays a zombie: it has exited all the same


def test_resume_with_local_pool_after_driver_sigkill(tmp_path):
    budget = 10
    cfg = write_config(tmp_path, budget, executor={"kind": "local", "workers": 2})
    run = tmp_path / "run"
    proc = subprocess.Popen(cli(cfg, run), cwd=tmp_path, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    journal = run / "journal.jsonl"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and journal.read_bytes().count(b"\n") >= 2:
            break
        time.sleep(0.02)
    workers = _children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    done = len(Journal(journal).read())
    assert 2 <= done < budget, f"kill came too late ({done} evaluations)"
    # Orphaned workers notice their driver is gone and exit (freeing their GPU on a real machine).
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.2)
    assert workers and not any(_alive(p) for p in workers)

    # Resume on the pool again, and lose a worker on the way: still each evaluation exactly once.
    fault = tmp_path / "fault"
    fault.mkdir()
    (fault / "kill-1").touch()
    r = subprocess.run(cli(cfg, run, "--resume"), cwd=tmp_path, env=env(**{FAULT_ENV: str(fault)}),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    records = check_journal(run, budget)
    assert all(r["status"] == "ok" for r in records) and not list(fault.iterdir())


GRID = """
data: {source: digits, resolution: 8, val_fraction: 0.2}
train: {steps: 6, batch_size: 64, lr: 0.05, threads: 1, device: cpu}
scaling: {max_points: 3, divisor: 2, phis: [1], reseed_top_k: 0}
executor: {kind: local, workers: 2}
"""


def test_grid_on_the_pool_matches_the_grid_inline(tmp_path):
    from nas.grid import load_grid_config, run_grid
    from search_space import parse

    base = parse("relu_r8:stem_c8_k3_s1:ds_r1_k3_s1_c8:ir_r1_k3_s2_e3_c16_se0.25:head_c32")
    (tmp_path / "grid.yaml").write_text(GRID)
    cfg = load_grid_config(tmp_path / "grid.yaml")
    pooled = run_grid(base, cfg.data, cfg.train, cfg.scaling, tmp_path / "pool", progress=False,
                      executor=cfg.executor)
    inline = run_grid(base, cfg.data, cfg.train, cfg.scaling, tmp_path / "inline", progress=False)
    assert len(pooled.records) == 3 and len(Journal(tmp_path / "pool" / "journal.jsonl").read()) == 4
    assert [(r["key"], r["accuracy"]) for r in pooled.records] == [(r["key"], r["accuracy"]) for r in inline.records]
    assert pooled.best["key"] == inline.best["key"]
