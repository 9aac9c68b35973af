"""The executor section: validation, worker plans, resume across executors, a pool that cannot start."""
from __future__ import annotations

import importlib.util
import subprocess

import pytest
import yaml
from _scale import cli, env, write_config

from nas.config import load_config
from nas.executors import ExecutorError, Job, build_executor, check_executor
from nas.executors.local import LocalExecutor, plan_workers, usable_cores
from nas.schema import ConfigError
from nas.search import open_run_dir, prepare, run_search


def _check(tmp_path, executor, *extra):
    cfg = write_config(tmp_path, 2, executor=executor)
    return subprocess.run(cli(cfg, tmp_path / "run", "--check", *extra), cwd=tmp_path, env=env(),
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("executor, needles", [
    ({"kind": "local", "gpus": [0]}, ["'executor.gpus'", "train.device is 'cpu'"]),
    ({"kind": "local", "gpus": "some"}, ["'executor.gpus'", "'some'", "'all'"]),
    ({"kind": "local", "workers": 0}, ["'executor.workers'", "out of range"]),
    ({"kind": "pool"}, ["'executor.kind'", "'pool'"]),
    ({"kind": "ray", "num_gpus": -1}, ["'executor.num_gpus'", "out of range"]),
])
def test_bad_executor_section_is_one_line_exit_2(tmp_path, executor, needles):
    r = _check(tmp_path, executor)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    for n in needles:
        assert n in r.stderr, (n, r.stderr)


def test_missing_ray_nni_or_gpus_are_config_errors(tmp_path, monkeypatch):
    cfg = load_config(write_config(tmp_path, 2, executor={"kind": "ray"}))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'hwnas\[ray\]'"):
        prepare(cfg)
    nni = load_config(write_config(tmp_path, 2, controller={"name": "nni:PolicyBasedRL"}))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("ray", "tianshou")
                        else real(name, *a))
    with pytest.raises(ConfigError, match=r"'controller.name'.*tianshou.*pip install 'hwnas\[nni\]'"):
        prepare(nni)
    local = load_config(write_config(tmp_path, 2, executor={"kind": "local", "gpus": "all"}))
    local.train.device = "auto"
    monkeypatch.setattr("nas.executors.visible_gpus", lambda: 0)
    with pytest.raises(ConfigError, match="0 visible CUDA"):
        check_executor(local.executor, "auto")


def test_worker_plans(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6")
    specs = plan_workers([0, 2], None, 2)
    assert [s.label for s in specs] == ["cuda:0", "cuda:0", "cuda:2", "cuda:2"]
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in specs] == ["4", "4", "6", "6"]  # indices into the visible list
    assert [s.label for s in plan_workers([0, 1], 3, 1)] == ["cuda:0", "cuda:0", "cuda:1"]  # round-robin
    cpu = plan_workers([], 2, 1)
    assert len(cpu) == 2 and all(s.threads == max(1, usable_cores() // 2) and not s.env for s in cpu)
    assert len(plan_workers([], None, 1)) == usable_cores()


def test_resume_may_change_the_executor(tmp_path):
    cfg = load_config(write_config(tmp_path, 2))
    run_search(cfg, progress=False)
    moved = load_config(write_config(tmp_path, 3, executor={"kind": "local", "workers": 2}))
    run_dir = open_run_dir(moved, prepare(moved).space, resume=True)  # executor (and budget) may differ
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["executor"]["kind"] == "local" and saved["search"]["budget"] == 3


class Unloadable:
    """An evaluator that cannot be rebuilt in a worker (its unpickling fails)."""

    def __getstate__(self):
        return {"broken": True}

    def __setstate__(self, state):
        raise RuntimeError("cannot rebuild the evaluator here")

    def evaluate(self, genotype, seed):  # pragma: no cover - never reached
        raise AssertionError


def test_a_pool_whose_workers_cannot_start_is_an_error_not_a_hang():
    ex = LocalExecutor(Unloadable(), plan_workers([], 1, 1))
    ex.submit(Job("a", "never", 0))
    with pytest.raises(ExecutorError, match="before they are ready"):
        for _ in range(10):  # each wait sees one worker die at start; the third failure raises
            ex.wait(timeout=60)
    assert ex.worker_pids() == []


def test_inline_is_the_default(tmp_path):
    cfg = load_config(write_config(tmp_path, 2))
    ex = build_executor(cfg.executor, object())
    assert ex.slots == 1 and ex.free() == 1 and "inline" in ex.describe()
