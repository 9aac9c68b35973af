"""Supernet training (resume after kill -9, torchrun), the supernet evaluator in searches, extraction, proxycheck."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny import write_search_config

from nas.config import ConfigError, load_config
from nas.journal import Journal
from nas.search import prepare, run_search
from nas.supernet.checkpoint import load_supernet
from nas.supernet.train import KILL_ENV, TrainError, train_supernet

ROOT = Path(__file__).resolve().parent.parent
# Every decision type: five ops, two kernels, SE, skip, channels, layers, stem and head widths.
SPACE = """
activation: relu
resolution: 8
stem: {channels: [8, 12], kernel: 3, stride: 1}
head: [24, 32]
defaults: {op: [conv, sepconv, mbconv1, mbconv3, mbconv6], kernel: [3, 5], se: [0.0, 0.25], skip: [identity, none]}
stages:
  - {stride: 2, channels: [8, 12], layers: [1, 2]}
  - {stride: 2, channels: [16], layers: [1, 2]}
"""


def _config(tmp_path: Path, **sections) -> Path:
    base = {"objective": {"target": "100K"}, "train": {"steps": None, "epochs": 1},
            "supernet": {"steps": 12, "num_random": 1, "checkpoint_every": 4, "eval_every": 6, "bn_batches": 2}}
    for k, v in sections.items():
        base[k] = {**base.get(k, {}), **v} if isinstance(v, dict) else v
    return write_search_config(tmp_path, SPACE, **base)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A supernet trained for 12 sandwich steps on 8x8 digits: (config path, checkpoint path)."""
    tmp = tmp_path_factory.mktemp("supernet")
    cfg_path = _config(tmp)
    s = train_supernet(load_config(cfg_path), tmp / "train", progress=False)
    assert s.steps == 12 and s.checkpoint == tmp / "train" / "supernet.pt"
    return cfg_path, s.checkpoint


def test_training_writes_checkpoint_curves_and_summary(trained):
    cfg_path, ckpt = trained
    out = ckpt.parent
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 12 and summary["sampling"] == "sandwich" and summary["distill"] is True
    assert 0.0 <= summary["accuracy"]["largest"] <= 1 and 0.0 <= summary["accuracy"]["smallest"] <= 1
    assert summary["images"] == 12 * 32 * 3  # largest, smallest and one random member per step
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ev = EventAccumulator(str(out / "tensorboard"))
    ev.Reload()
    tags = set(ev.Tags()["scalars"])
    assert {"loss/largest", "loss/smallest", "loss/random", "accuracy/largest", "accuracy/smallest", "lr"} <= tags
    assert [e.step for e in ev.Scalars("accuracy/largest")] == [6, 12]
    net, meta = load_supernet(ckpt)
    assert meta["steps"] == 12 and net.num_classes == 10 and net.in_channels == 1


def _train_cli(cfg: Path, out: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nas.supernet", "train", str(cfg), "--out", str(out),
                           "--no-progress", *extra], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_kill_9_then_resume_gives_the_uninterrupted_weights(tmp_path):
    cfg = _config(tmp_path, supernet={"steps": 8, "checkpoint_every": 3, "eval_every": 100, "sampling": "uniform"},
                  train={"flip": True, "crop_pad": 1})
    whole = train_supernet(load_config(cfg), tmp_path / "whole", progress=False)
    killed = _train_cli(cfg, tmp_path / "cut", env={KILL_ENV: "5"})
    assert killed.returncode == -9, killed.stderr[-2000:]
    state = torch.load(tmp_path / "cut" / "train_state.pt", weights_only=True)
    assert state["step"] == 3 and not (tmp_path / "cut" / "supernet.pt").exists()  # steps 4-5 were lost
    # Another config cannot continue this training; a fresh start into it is refused too.
    with pytest.raises(TrainError, match="train.lr"):
        train_supernet(load_config(cfg, ["train.lr=0.2"]), tmp_path / "cut", resume=True, progress=False)
    with pytest.raises(TrainError, match="supernet.kernel_sharing"):
        train_supernet(load_config(cfg, ["supernet.kernel_sharing=separate"]), tmp_path / "cut", resume=True,
                       progress=False)
    with pytest.raises(TrainError, match="not empty"):
        train_supernet(load_config(cfg), tmp_path / "cut", progress=False)
    again = train_supernet(load_config(cfg), tmp_path / "cut", resume=True, progress=False)
    assert again.steps == 8
    a, _ = load_supernet(whole.checkpoint)
    b, _ = load_supernet(again.checkpoint)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


def test_supernet_lr_wins_over_train_lr(tmp_path):
    cfg = _config(tmp_path, supernet={"steps": 3, "checkpoint_every": 10, "eval_every": 100, "sampling": "uniform"})
    own = train_supernet(load_config(cfg, ["train.lr=0.01", "supernet.lr=0.3"]), tmp_path / "own", progress=False)
    same = train_supernet(load_config(cfg, ["train.lr=0.3"]), tmp_path / "same", progress=False)
    other = train_supernet(load_config(cfg, ["train.lr=0.01"]), tmp_path / "other", progress=False)
    a, b, c = (load_supernet(s.checkpoint)[0].state_dict() for s in (own, same, other))
    assert all(torch.equal(a[k], b[k]) for k in a) and not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.slow  # about 15-30 s: two processes start torch
def test_torchrun_two_processes_with_gloo(tmp_path):
    cfg = _config(tmp_path, supernet={"steps": 4, "eval_every": 100})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "nas.supernet", "train", str(cfg), "--out", str(tmp_path / "ddp"), "--no-progress"],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 4  # and the replicas agreed (checked at the end)
    assert "on 2 process(es)" in r.stdout


@pytest.mark.parametrize("controller", ["ppo", "evolution"])
def test_search_with_the_supernet_evaluator(trained, tmp_path, controller):
    cfg_path, ckpt = trained
    options = {"batch_size": 2} if controller == "ppo" else {"population_size": 3, "sample_size": 2}
    cfg = load_config(cfg_path, [f"controller.name={controller}", f"controller.options={json.dumps(options)}",
                                 "train.evaluator=supernet", f"supernet.checkpoint={ckpt}", "search.budget=6",
                                 f"out={tmp_path / 'run'}"])
    summary = run_search(cfg, progress=False)
    records = Journal(tmp_path / "run" / "journal.jsonl").read()
    assert summary.evaluations == len(records) == 6
    assert all(r["status"] == "ok" and 0 <= r["accuracy"] <= 1 and r["steps"] == 0 for r in records)
    rec = json.loads((tmp_path / "run" / "supernet.json").read_text())
    assert rec["sha256"] == __import__("hashlib").sha256(ckpt.read_bytes()).hexdigest()
    # The evaluator scores a genotype the same way every time (fixed recalibration images).
    ev = prepare(cfg).evaluator
    r0 = records[0]
    assert ev.evaluate(r0["genotype"], 123).accuracy == r0["accuracy"]
    # A resume with another checkpoint is refused; the same file under another path is fine.
    other = tmp_path / "other.pt"
    shutil.copy(ckpt.parent / "train_state.pt", other)
    from nas.errors import UserError
    from nas.search import open_run_dir

    with pytest.raises(UserError, match="another file"):
        bad = load_config(cfg_path, [f"controller.name={controller}", f"controller.options={json.dumps(options)}",
                                     "train.evaluator=supernet", f"supernet.checkpoint={other}",
                                     f"out={tmp_path / 'run'}"])
        open_run_dir(bad, prepare(bad).space, resume=True)
    moved = tmp_path / "moved.pt"
    shutil.copy(ckpt, moved)
    same = load_config(cfg_path, [f"controller.name={controller}", f"controller.options={json.dumps(options)}",
                                  "train.evaluator=supernet", f"supernet.checkpoint={moved}", "search.budget=7",
                                  f"out={tmp_path / 'run'}"])
    assert run_search(same, resume=True, progress=False).evaluations == 7


def test_scoring_at_the_largest_kernel_in_a_search_and_its_resume(trained, tmp_path):
    from nas.errors import UserError
    from nas.search import open_run_dir
    from nas.supernet.train import fingerprint
    from search_space.genotype import parse

    cfg_path, ckpt = trained
    sets = ["train.evaluator=supernet", f"supernet.checkpoint={ckpt}", "search.budget=4", f"out={tmp_path / 'run'}"]
    cfg = load_config(cfg_path, sets + ["supernet.score_kernel=largest"])
    run_search(cfg, progress=False)
    records = Journal(tmp_path / "run" / "journal.jsonl").read()
    own = load_config(cfg_path, sets)
    anchored = prepare(cfg).evaluator.supernet_scorer()
    ev = prepare(own).evaluator
    for r in records:  # each candidate's accuracy is its largest-kernel version's, as the genotype itself is kept
        member = anchored.scored_member(parse(r["genotype"]))
        assert r["status"] == "ok" and ev.evaluate(member.to_string(), r["seed"]).accuracy == r["accuracy"]
    with pytest.raises(UserError, match="supernet.score_kernel"):
        open_run_dir(own, prepare(own).space, resume=True)
    # How the search scores does not change the supernet's weights: a training resumes across it.
    space = prepare(own).space
    assert fingerprint(cfg, space) == fingerprint(own, space)


def test_supernet_evaluator_in_worker_processes(trained, tmp_path):
    cfg_path, ckpt = trained
    sets = ["train.evaluator=supernet", f"supernet.checkpoint={ckpt}", "executor.kind=local", "executor.workers=2",
            "search.budget=4", f"out={tmp_path / 'run'}"]
    cfg = load_config(cfg_path, sets)
    setup = prepare(cfg)
    blob = pickle.dumps(setup.evaluator)
    assert len(blob) < 4000  # configs and a hash: the checkpoint is read lazily in the worker
    g = setup.space.sample(__import__("random").Random(0))
    here = setup.evaluator.evaluate(g, 0)
    assert pickle.loads(blob).evaluate(g, 0).accuracy == here.accuracy
    summary = run_search(cfg, progress=False)
    records = Journal(tmp_path / "run" / "journal.jsonl").read()
    assert summary.evaluations == 4 and all(r["status"] == "ok" for r in records)


def test_config_mistakes(trained, tmp_path):
    cfg_path, ckpt = trained
    with pytest.raises(ConfigError, match="supernet.checkpoint"):
        load_config(cfg_path, ["train.evaluator=supernet"])
    with pytest.raises(ConfigError, match="supernet.sampling"):
        load_config(cfg_path, ["supernet.sampling=sideways"])
    with pytest.raises(ConfigError, match="supernet.kernel_sharing.*not one of .*transform"):
        load_config(cfg_path, ["supernet.kernel_sharing=middle"])
    with pytest.raises(ConfigError, match="does not exist"):
        prepare(load_config(cfg_path, ["train.evaluator=supernet", f"supernet.checkpoint={tmp_path / 'none.pt'}"]))
    (tmp_path / "wide.yaml").write_text(SPACE.replace("[16]", "[16, 20]"))
    with pytest.raises(ConfigError, match="another space"):
        prepare(load_config(cfg_path, ["train.evaluator=supernet", f"supernet.checkpoint={ckpt}",
                                       f"space={tmp_path / 'wide.yaml'}"]))
    with pytest.raises(TrainError, match="not empty"):
        train_supernet(load_config(cfg_path), ckpt.parent, progress=False)


def test_too_few_validation_images_are_named_before_a_search(trained, capsys):
    from nas.supernet.evaluator import MIN_VALIDATION_IMAGES, validation_note

    cfg_path, ckpt = trained
    prepare(load_config(cfg_path, ["train.evaluator=supernet", f"supernet.checkpoint={ckpt}"]))
    err = capsys.readouterr().err
    assert "note: the supernet scores candidates on" in err and "data.val_fraction" in err
    assert "up to 1.6 points" in validation_note(1000) and validation_note(MIN_VALIDATION_IMAGES) is None


def test_extract_cli_weights_load_in_scaling_and_export(trained, tmp_path):
    from nas.supernet.__main__ import main
    from scaling.cli import main as scaling_main
    from scaling.models import build

    cfg_path, ckpt = trained
    from search_space import load_space

    g = load_space(ckpt.parent.parent / "space.yaml").sample(__import__("random").Random(4))
    w = tmp_path / "w.pt"
    assert main(["extract", str(ckpt), g.to_string(), "--out", str(w), "--config", str(cfg_path),
                 "--genotype-out", str(tmp_path / "g.yaml")]) == 0
    model = build(tmp_path / "g.yaml", num_classes=10, in_channels=1, weights=w).eval()
    cfg = load_config(cfg_path, ["train.evaluator=supernet", f"supernet.checkpoint={ckpt}"])
    ev = prepare(cfg).evaluator
    splits = ev.prepare(g.resolution)
    ref = ev.supernet_scorer().model(g, splits, torch.device("cpu"))
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x), atol=1e-5)
    assert scaling_main(["export", str(tmp_path / "g.yaml"), "--weights", str(w), "--classes", "10",
                         "--in-channels", "1", "--format", "torchscript", "--out", str(tmp_path / "m.pt")]) == 0
    assert (tmp_path / "m.pt").stat().st_size > 0
    assert main(["extract", str(ckpt), "efficientnet-b0", "--out", str(tmp_path / "x.pt")]) == 2


def test_proxycheck_compares_the_supernet_with_training(trained):
    from nas.proxycheck import format_report, proxy_check

    cfg_path, ckpt = trained
    cfg = load_config(cfg_path)
    rep = proxy_check(cfg, samples=3, long_epochs=1, seed=0, a=f"supernet:{ckpt}", b="standard")
    assert rep.a_name == "supernet" and rep.b_name == "standard 1ep" and rep.statuses == ["ok"] * 3
    # both estimators' times are reported; which is faster is a benchmark's question (bench/supernet_study.py),
    # not a test's: on tiny data a 1-epoch training can beat a supernet's BatchNorm recalibration
    assert rep.a_time_s > 0 and rep.b_time_s > 0
    text = format_report(rep)
    assert "Kendall tau" in text and "supernet" in text
    with pytest.raises(ConfigError, match="not one of"):
        proxy_check(cfg, samples=2, long_epochs=1, a="oracle")
