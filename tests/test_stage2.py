"""Stage 2 (`python -m nas.train`): exact resume after kill -9, loadable and exportable weights, the test split rule."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tiny import SPACE

from nas.config import DataConfig
from nas.data import load_splits
from nas.data.split import DataError
from nas.data.test_split import DIGITS_TEST_FRACTION, digits_test_indices, load_test
from nas.stage2 import CHECKPOINT, KILL_ENV, load_stage2_config, main, make_model, parse_init, recipe
from nas.train import WeightEMA, accuracy, cutout
from search_space import parse

ROOT = Path(__file__).resolve().parent.parent
G = "relu_r8:stem_c8_k3_s1:ir_r1_k3_s2_e3_c12:ds_r2_k3_s2_c16:head_c32"  # a member of tests/tiny.py's space
# Every random path but flips (digits are not mirror-symmetric): batch order, crops, cutout, dropout,
# drop-connect; EMA on.
SETS = ["train.threads=1", "train.device=cpu", "stage2.epochs=3", "stage2.batch_size=32", "stage2.optimizer=sgd",
        "stage2.lr=0.2", "stage2.warmup_epochs=1", "stage2.bn_momentum=0.1", "stage2.ema_decay=0.99",
        "stage2.dropout=0.1", "stage2.drop_connect=0.2", "stage2.flip=false", "stage2.crop_pad=1", "stage2.cutout=2",
        "stage2.data.resolution=8"]


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("cfg") / "s2.yaml"
    p.write_text("data: {source: digits}\n")
    return p


def _args(config: Path, out: Path, *extra: str) -> list[str]:
    args = [G, "--config", str(config), "--out", str(out), "--quiet"]
    for s in SETS:
        args += ["--set", s]
    return args + list(extra)


@pytest.fixture(scope="module")
def full_run(config, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("full") / "run"
    assert main(_args(config, out)) == 0
    return out


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_kill_9_then_resume_ends_bit_identical(config, full_run, tmp_path, capsys):
    out = tmp_path / "run"
    env = {**os.environ, KILL_ENV: "2"}
    r = subprocess.run([sys.executable, "-m", "nas.train", *_args(config, out)], env=env, capture_output=True,
                       text=True, cwd=ROOT, timeout=300)
    assert r.returncode == -9, r.stderr  # SIGKILL right after epoch 2's checkpoint
    assert (out / CHECKPOINT).is_file() and not (out / "result.json").exists()
    assert torch.load(out / CHECKPOINT, weights_only=True)["epoch"] == 2
    assert main(_args(config, out, "--resume")) == 0
    for name in ("last.pt", "best.pt"):
        a, b = _state(full_run / name), _state(out / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    ra, rb = (json.loads((d / "result.json").read_text()) for d in (full_run, out))
    strip = ("train_time_s",)
    assert [{k: v for k, v in h.items() if k not in strip} for h in ra["history"]] == \
           [{k: v for k, v in h.items() if k not in strip} for h in rb["history"]]
    assert (ra["val_accuracy"], ra["test_accuracy"]) == (rb["val_accuracy"], rb["test_accuracy"])
    # A finished run resumed again reports its result without training or opening the test split.
    capsys.readouterr()
    assert main(_args(config, out, "--resume")) == 0
    assert "test accuracy" in capsys.readouterr().out


def test_outputs_are_plain_state_dicts_that_score_what_result_says(config, full_run):
    from scaling.models import build

    r = json.loads((full_run / "result.json").read_text())
    assert r["epochs"] == 3 and r["steps"] == 3 * (r["train_images"] // 32) and len(r["history"]) == 3
    assert r["train_images"] + r["val_images"] == 1797 - r["test_images"] and r["test_images"] == 360
    assert r["val_accuracy"] == max(h["val_accuracy"] for h in r["history"]) > 0.5  # chance: 0.1
    assert 0.5 < r["test_accuracy"] <= 1.0
    assert r["history"][-1]["lr"] == pytest.approx(0.0)  # cosine to zero
    model = build(full_run / "genotype.yaml", num_classes=10, in_channels=1, weights=full_run / "best.pt").eval()
    setup = load_stage2_config(config, SETS)
    s = load_splits(setup.data, 8, hold_out_test=True)
    rec = recipe(setup.config)
    assert accuracy(model, s.x_val, s.y_val, s, rec, torch.device("cpu")) == r["val_accuracy"]
    x, y = load_test(setup.data, 8)
    assert accuracy(model, x, y, s, rec, torch.device("cpu")) == r["test_accuracy"]
    assert r["mean"] == list(s.mean) and r["std"] == list(s.std)


@pytest.mark.parametrize("fmt,mods", [("onnx", ("onnxscript", "onnxruntime")), ("tflite", ("ai_edge_litert",))])
def test_trained_weights_export_within_1e_4(full_run, tmp_path, fmt, mods):
    for m in mods:
        pytest.importorskip(m)
    from scaling.export import export, run_exported
    from scaling.models import build

    model = build(full_run / "genotype.yaml", num_classes=10, in_channels=1, weights=full_run / "best.pt").eval()
    x = np.random.default_rng(0).standard_normal((4, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    path = export(model, 8, fmt, tmp_path / f"m.{fmt}", 1)
    assert np.abs(run_exported(path, fmt, x) - ref).max() < 1e-4


def _err(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_mistakes_are_one_line_errors(config, full_run, tmp_path, capsys):
    out = str(tmp_path / "x")
    base = [G, "--config", str(config), "--out", out]
    assert "unknown key 'stage2.epoch'" in _err(capsys, base + ["--set", "stage2.epoch=3"])
    err = _err(capsys, base + ["--set", "stage2.optimizer=adam"])
    assert "'stage2.optimizer'" in err and "rmsprop" in err and "sgd" in err
    assert "stage2.warmup_epochs" in _err(capsys, base + ["--set", "stage2.epochs=2"])
    assert "unknown key 'stage2.data.subsett'" in _err(capsys, base + ["--set", "stage2.data.subsett=10"])
    assert "allowed: scratch, supernet:CHECKPOINT" in _err(capsys, base + ["--init", "imagenet"])
    assert "not empty" in _err(capsys, _args(config, full_run))  # no --resume on a used folder
    assert "does not exist" in _err(capsys, base + ["--init", "supernet:/nonexistent.pt"])
    assert "neither a reference" in _err(capsys, ["no-such-net", "--config", str(config), "--out", out])
    # resume of a finished run with another genotype; of an unfinished one with another recipe
    other = "relu_r8:stem_c8_k3_s1:ir_r1_k3_s2_e3_c8:ds_r2_k3_s2_c16:head_c32"
    assert f"it trained {G}, not {other}" in _err(capsys, [other, *_args(config, full_run, "--resume")[1:]])
    unfinished = tmp_path / "u"
    unfinished.mkdir()
    (unfinished / CHECKPOINT).write_bytes((full_run / CHECKPOINT).read_bytes())
    err = _err(capsys, _args(config, unfinished, "--resume", "--set", "stage2.lr=0.3"))
    assert "differs" in err and "stage2.lr: 0.2 -> 0.3" in err


def test_the_test_split_is_apart_and_opened_by_stage_2_only():
    data = DataConfig(source="digits")
    labels = np.asarray(__import__("sklearn.datasets", fromlist=["x"]).load_digits().target)
    test = digits_test_indices(labels)
    assert len(test) == 360 == math.ceil(DIGITS_TEST_FRACTION * 1797) and np.array_equal(test, digits_test_indices(labels))
    s = load_splits(data, 8, hold_out_test=True)
    x, y = load_test(data, 8)
    assert len(s.y_train) + len(s.y_val) + len(y) == 1797 and tuple(x.shape) == (360, 1, 8, 8)
    # no test image among the training/validation ones (digits are distinct enough to compare pixels)
    seen = {bytes(a.numpy().tobytes()) for a in torch.cat([s.x_train, s.x_val])}
    assert sum(bytes(a.numpy().tobytes()) in seen for a in x) < 5  # a few duplicates exist in the data itself
    assert len(load_splits(data, 8).y_train) + len(load_splits(data, 8).y_val) == 1797  # the search: unchanged
    # Only nas/stage2.py (and the data package defining it) mentions the test loader, and the supernet
    # study's --test-images, which scores fixed random candidates' reference trainings and chooses nothing.
    call = re.compile(r"\bload_test\b\s*\(|import[^\n]*\bload_test\b")
    users = [p.relative_to(ROOT).as_posix() for d in ("nas", "search_space", "latency", "scaling", "bench", "tools")
             for p in (ROOT / d).glob("**/*.py") if call.search(p.read_text())]
    assert sorted(users) == ["bench/supernet_study.py", "nas/data/test_split.py", "nas/stage2.py"]


def test_cifar_npz_test_split(tmp_path):
    rng = np.random.default_rng(0)
    npz = tmp_path / "c.npz"
    np.savez(npz, x_train=rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8), y_train=np.arange(20) % 10,
             x_test=rng.integers(0, 256, (7, 8, 8, 3), dtype=np.uint8), y_test=np.arange(7) % 10)
    x, y = load_test(DataConfig(source="cifar10", path=str(npz)), 4)
    assert tuple(x.shape) == (7, 3, 4, 4) and y.tolist() == list(range(7))
    np.savez(npz, x_train=np.zeros((20, 8, 8, 3), np.uint8), y_train=np.arange(20) % 10)
    with pytest.raises(DataError, match="stage2.test: false"):
        load_test(DataConfig(source="cifar10", path=str(npz)), 4)


def test_cutout_and_ema_numbers():
    gen = torch.Generator().manual_seed(0)
    y = cutout(torch.ones(64, 1, 8, 8), gen, 4)
    holes = (y == 0).sum((1, 2, 3))
    assert holes.max() == 16 and 4 <= holes.min() < 16  # 4x4 squares, clipped at the border
    assert torch.equal(cutout(torch.ones(2, 1, 4, 4), gen, 0), torch.ones(2, 1, 4, 4))
    live = torch.nn.Linear(2, 1)
    ema = WeightEMA(live, 0.5)
    with torch.no_grad():
        start = ema.model.weight.clone()
        live.weight.fill_(1.0)
    ema.update()  # decay min(0.5, 2/11)
    assert torch.allclose(ema.model.weight, start * (2 / 11) + (9 / 11))
    ema.update()  # decay min(0.5, 3/12)
    assert torch.allclose(ema.model.weight, (start * (2 / 11) + (9 / 11)) * 0.25 + 0.75)


def test_init_from_a_supernet_member(tmp_path, config, capsys):
    from nas.supernet.checkpoint import save_supernet
    from nas.supernet.net import build_supernet

    torch.manual_seed(3)
    net = build_supernet(yaml.safe_load(SPACE), num_classes=10, in_channels=1)
    path = save_supernet(tmp_path / "s.pt", net, 0.1)
    setup = load_stage2_config(config, SETS)
    s = load_splits(setup.data, 8, hold_out_test=True)
    model = make_model(parse(G), s, setup.config, parse_init(f"supernet:{path}"))
    want = net.extract(parse(G)).state_dict()
    assert all(torch.equal(v, want[k]) for k, v in model.state_dict().items())
    assert model.blocks[-1].drop_connect > 0  # the stage-2 recipe's options, not the supernet's
    non_member = "relu_r8:stem_c8_k3_s1:ir_r1_k5_s2_e3_c12:ds_r2_k3_s2_c16:head_c32"  # kernel 5
    err = _err(capsys, [non_member, "--config", str(config), "--out", str(tmp_path / "o"),
                        "--init", f"supernet:{path}", "--set", "stage2.data.resolution=8"])
    assert "not a member" in err


def test_a_run_killed_before_its_first_checkpoint_resumes_from_scratch(tmp_path):
    from nas.stage2 import Stage2Error, open_out_dir

    out = tmp_path / "run"
    (out / "tensorboard").mkdir(parents=True)
    (out / "genotype.yaml").write_text("x")
    (out / "config.yaml").write_text("x")
    assert open_out_dir(out, resume=True) is None  # nothing to resume: start anew
    (out / "notes.txt").write_text("mine")
    with pytest.raises(Stage2Error, match="no checkpoint.pt"):
        open_out_dir(out, resume=True)
