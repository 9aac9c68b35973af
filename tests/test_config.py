"""Configs: shipped recipes validate; every kind of mistake is one line naming the key, exit code 2."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tiny import SPACE

from nas.config import Config, ConfigError, load_config
from nas.schema import apply_sets, build

ROOT = Path(__file__).resolve().parent.parent
GOOD = {
    "space": "space.yaml",
    "controller": {"name": "random"},
    "objective": {"kind": "flops", "target": "50K"},
    "data": {"source": "digits", "resolution": 8, "subset": 200},
    "train": {"steps": 2, "batch_size": 32, "threads": 1},
    "search": {"budget": 2},
}


def _write(tmp_path: Path, cfg: dict, name: str = "cfg.yaml") -> Path:
    (tmp_path / "space.yaml").write_text(SPACE)
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg))
    return p


def _merge(base: dict, patch: dict) -> dict:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k].update(v)
        else:
            out[k] = v
    return out


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nas.search", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})


BAD = [
    ("unknown key", {"train": {"epoch": 3}}, [], ["'train.epoch'", "did you mean 'epochs'", "allowed:"]),
    ("wrong type", {"train": {"batch_size": "big"}}, [], ["'train.batch_size'", "'big'", "not an integer"]),
    ("out of range", {"data": {"val_fraction": 1.5}}, [], ["'data.val_fraction'", "1.5", "out of range"]),
    ("bad enum", {"controller": {"name": "pp0"}}, [], ["'controller.name'", "'pp0'", "did you mean 'ppo'"]),
    ("bad target unit", {"objective": {"target": "75ms"}}, [], ["'objective.target'", "'75ms'", "is a time"]),
    ("missing space file", {"space": "nope.yaml"}, [], ["'space'", "'nope.yaml'", "not found"]),
    ("bad --set key", {}, ["--set", "train.lrr=0.1"], ["train.lrr", "did you mean 'lr'"]),
    ("bad --set value", {}, ["--set", "train.lr=fast"], ["--set train.lr=fast", "'train.lr'", "not a number"]),
    ("--set without =", {}, ["--set", "train.lr"], ["--set train.lr", "key=value"]),
    ("controller option", {"controller": {"name": "evolution", "options": {"populaton": 4}}}, [],
     ["'controller.options'", "populaton"]),
    ("budget beyond the space", {"search": {"budget": 99}}, [], ["'search.budget'", "99", "36 distinct"]),
    ("missing target", {"objective": {"kind": "latency", "target": None}}, [], ["'objective.target'", "75ms"]),
    ("preset and alpha", {"objective": {"preset": "hard", "alpha": -0.1}}, [], ["'objective.preset'"]),
    ("missing data path", {"data": {"source": "imagefolder"}}, [], ["'data.path'", "imagefolder"]),
]


@pytest.mark.parametrize("what,patch,extra,needles", BAD, ids=[b[0] for b in BAD])
def test_bad_config_is_one_line_exit_2(tmp_path, what, patch, extra, needles):
    cfg = _write(tmp_path, _merge(GOOD, patch))
    r = _cli(str(cfg), "--check", *extra, cwd=tmp_path)
    assert r.returncode == 2, (what, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert not (tmp_path / "runs").exists()  # no work started


def test_good_config_checks_and_existing_run_folder_needs_resume(tmp_path):
    cfg = _write(tmp_path, GOOD)
    r = _cli(str(cfg), "--check", cwd=tmp_path)
    assert r.returncode == 0 and "config ok" in r.stdout, r.stderr
    (tmp_path / "runs" / "cfg").mkdir(parents=True)
    (tmp_path / "runs" / "cfg" / "journal.jsonl").write_text("")
    r = _cli(str(cfg), cwd=tmp_path)
    assert r.returncode == 2 and "--resume" in r.stderr and "--out" in r.stderr and "Traceback" not in r.stderr


def test_invalid_yaml_and_missing_config(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("train: {lr: [1,\n")
    for args in ([str(p)], [str(tmp_path / "absent.yaml")]):
        r = _cli(*args, cwd=tmp_path)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_shipped_configs_validate(tmp_path):
    mnas = load_config(ROOT / "configs" / "mnas.yaml")
    assert mnas.controller.name == "ppo" and mnas.objective.kind in ("latency", "flops")
    o = mnas.reward_objective()
    assert (o.alpha, o.beta) == (-0.07, -0.07) and o.target > 0
    assert mnas.space.endswith("space_digits.yaml") and mnas.data.source == "digits"
    quick = load_config(ROOT / "configs" / "quick.yaml")
    assert quick.search.budget <= 10
    # EfficientNet (CPU scale, the pipeline's default): B0's search at 400M, proxy on digits.
    eff = load_config(ROOT / "configs" / "efficientnet.yaml")
    o = eff.reward_objective()
    assert (o.kind, o.target, o.alpha, o.beta) == ("flops", 400e6, -0.07, -0.07)
    assert eff.space.endswith("space_mnas.yaml") and eff.data.source == "digits"
    assert eff.scaling.max_points and eff.scaling.phis == [1, 2, 3, 4, 5, 6, 7]
    assert load_config(ROOT / "configs" / "efficientnet.yaml",
                       ["objective.target=200M"]).reward_objective().target == 200e6
    # EfficientNet on ImageNet: imagefolder data must exist; point it at a tiny folder.
    (tmp_path / "a").mkdir()
    eff = load_config(ROOT / "configs" / "efficientnet_imagenet.yaml", [f"data.path={tmp_path}"])
    o = eff.reward_objective()
    assert (o.kind, o.target, o.alpha, o.beta) == ("flops", 400e6, -0.07, -0.07)
    assert eff.space.endswith("space_mnas.yaml") and eff.data.resolution == 224
    assert load_config(ROOT / "configs" / "efficientnet_imagenet.yaml",
                       [f"data.path={tmp_path}", "objective.target=200M"]).reward_objective().target == 200e6
    with pytest.raises(ConfigError, match="data.path"):
        load_config(ROOT / "configs" / "efficientnet_imagenet.yaml", ["data.path=/no/such/imagenet"])


def test_sets_parse_yaml_and_blame_the_command_line():
    data, origins = apply_sets(Config, {"train": {"lr": 0.1}},
                               ["train.lr=1e-3", "search.budget=7", "controller.options.population_size=8",
                                "data.mean=[0.5]", "objective.alpha=-0.1"])
    cfg = build(Config, data, "f.yaml", origins=origins)
    assert cfg.train.lr == 1e-3 and cfg.search.budget == 7 and cfg.data.mean == [0.5]
    assert cfg.controller.options == {"population_size": 8} and cfg.objective.alpha == -0.1
    data, origins = apply_sets(Config, {}, ["train.epochs=-1"])
    with pytest.raises(ConfigError, match=r"^--set train.epochs=-1: key 'train.epochs': -1 is out of range"):
        build(Config, data, "f.yaml", origins=origins)
    with pytest.raises(ConfigError, match="has no sub-keys"):
        apply_sets(Config, {}, ["train.lr.x=1"])


def test_defaults_build_and_types():
    cfg = build(Config, {"train": {"lr": "1e-2", "epochs": 2}}, "f.yaml")
    assert cfg.train.lr == 0.01 and isinstance(cfg.train.epochs, float)
    assert cfg.executor.kind == "inline" and cfg.data.source == "digits" and cfg.data.val_fraction == 0.2
    with pytest.raises(ConfigError, match="not a boolean"):
        build(Config, {"train": {"flip": "yes"}}, "f.yaml")
    with pytest.raises(ConfigError, match="'train' must be a mapping"):
        build(Config, {"train": 3}, "f.yaml")
