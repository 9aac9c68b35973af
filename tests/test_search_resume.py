"""Kill -9 a running search, resume it, and get exactly the uninterrupted run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from tiny import SPACE_K35 as SPACE
from tiny import write_search_config

from nas.journal import Journal

ROOT = Path(__file__).resolve().parent.parent
BUDGET = 10


def _config(tmp_path: Path) -> Path:
    # PPO with small batches: its policy is updated several times during the run, so the
    # resumed run only matches if the controller's state and its pending asks are exact.
    return write_search_config(tmp_path, SPACE, controller={"name": "ppo", "options": {"batch_size": 2}},
                               train={"steps": 15}, search={"budget": BUDGET, "seed": 7})


def _cmd(cfg: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "nas.search", str(cfg), "--out", str(out), "--no-progress", *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _outcome(out: Path) -> list[tuple[str, float, str]]:
    return [(r["genotype"], r["reward"], r["status"]) for r in Journal(out / "journal.jsonl").read()]


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path):
    cfg = _config(tmp_path)
    full, killed = tmp_path / "full", tmp_path / "killed"
    proc = subprocess.Popen(_cmd(cfg, killed), cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    journal = killed / "journal.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and journal.read_bytes().count(b"\n") >= 2:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    done = len(Journal(journal).read())
    assert 2 <= done < BUDGET, f"kill came too late ({done} evaluations)"

    # Without --resume the folder is refused; with it the run goes on.
    r = subprocess.run(_cmd(cfg, killed), cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--resume" in r.stderr
    r = subprocess.run(_cmd(cfg, killed, "--resume"), cwd=tmp_path, env=_env(), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(_cmd(cfg, full), cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr

    resumed, uninterrupted = _outcome(killed), _outcome(full)
    assert len(resumed) == BUDGET and len({g for g, _, _ in resumed}) == BUDGET
    # Same candidates in the same order with the same rewards, so the same best.
    assert resumed == uninterrupted
    best = max(uninterrupted, key=lambda t: t[1])
    assert max(resumed, key=lambda t: t[1]) == best
    best_yaml = yaml.safe_load((killed / "best.yaml").read_text())
    assert best_yaml["genotype"] == best[0] and best_yaml["meta"]["reward"] == best[1]

    # A resume with a different config is refused; a larger budget is allowed and continues.
    r = subprocess.run(_cmd(cfg, killed, "--resume", "--set", "train.lr=0.2"), cwd=tmp_path, env=_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "train.lr" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(_cmd(cfg, killed, "--resume", "--set", f"search.budget={BUDGET + 2}"), cwd=tmp_path,
                       env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert _outcome(killed)[:BUDGET] == uninterrupted and len(_outcome(killed)) == BUDGET + 2
