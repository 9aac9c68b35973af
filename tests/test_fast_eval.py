"""The fast GPU evaluator: its code path on CPU, config selection, the bench end to end; GPU-only parts skipped."""
from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from tiny import evaluator, tiny_config
from torch import nn

from nas.config import Config, ConfigError, TrainConfig, load_config
from nas.fast import resolve_evaluator
from nas.fast.augment import BatchMaker, to_device_images
from nas.fast.plan import make_plan
from nas.fast.sgd import ForeachSGD
from nas.train import lr_factor
from search_space import parse

G = [parse("relu_r8:stem_c8_k3_s1:ir_r1_k3_s2_e3_c12_se0.25:ds_r2_k3_s2_c16:head_c32"),
     parse("relu_r8:stem_c8_k3_s1:cn_r1_k3_s2_c12:ir_r1_k5_s2_e6_c16_se0.25:head_c32"),
     parse("relu_r8:stem_c8_k3_s1:ds_r1_k3_s2_c8:ir_r2_k3_s2_e3_c16:head_c32")]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


_evaluator = evaluator


def _config(**train) -> Config:
    return tiny_config(**{"evaluator": "fast", "crop_pad": 1, "flip": True, "label_smoothing": 0.1, "warmup": 0.1,
                          **train})


def test_plan_is_fixed_by_the_seed_and_follows_the_schedule():
    cfg = TrainConfig(epochs=2.5, batch_size=32, lr=0.4, warmup=0.2, flip=True, crop_pad=3)
    a, b, c = make_plan(100, cfg, 7), make_plan(100, cfg, 7), make_plan(100, cfg, 8)
    assert a.steps == 8 and a.batch_size == 32  # 3 full batches per epoch, 2.5 epochs
    assert torch.equal(a.index, b.index) and torch.equal(a.offset, b.offset) and not torch.equal(a.index, c.index)
    assert len(set(a.index[:3].flatten().tolist())) == 96  # an epoch draws without replacement
    assert int(a.offset.min()) >= 0 and int(a.offset.max()) <= 6 and a.flip.dtype == torch.bool
    f = lr_factor("cosine", 8, 0.2)
    assert a.lr.tolist() == pytest.approx([0.4 * f(s) for s in range(8)])


def test_batch_maker_crops_flips_and_normalises_like_the_definition():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (6, 3, 5, 7), dtype=torch.uint8, generator=g)
    y = torch.arange(6)
    mean, std, pad = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), 2
    im = to_device_images(x, y, mean, std, pad, torch.device("cpu"))
    idx = torch.tensor([4, 0, 4, 2])
    flip = torch.tensor([True, False, False, True])
    off = torch.tensor([[0, 4], [2, 2], [4, 0], [1, 3]])
    out, labels = BatchMaker(im, channels_last=True)(idx, flip, off)
    assert out.shape == (4, 3, 5, 7) and out.is_contiguous(memory_format=torch.channels_last)
    assert labels.tolist() == [4, 0, 4, 2]
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    for k in range(4):
        ref = padded[int(idx[k])]
        if flip[k]:
            ref = ref[:, :, ::-1]
        dy, dx = off[k].tolist()
        ref = ref[:, dy:dy + 5, dx:dx + 7].astype(np.float32) / 255.0
        ref = (ref - np.array(mean, np.float32)[:, None, None]) / np.array(std, np.float32)[:, None, None]
        np.testing.assert_allclose(out[k].numpy(), ref, rtol=1e-5, atol=1e-5)


def test_foreach_sgd_matches_torch_sgd():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    m2 = copy.deepcopy(m)
    ours = ForeachSGD(m, momentum=0.9, weight_decay=5e-4)
    decay = [p for p in m2.parameters() if p.ndim > 1]
    rest = [p for p in m2.parameters() if p.ndim <= 1]
    ref = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": rest, "weight_decay": 0.0}],
                          lr=0.1, momentum=0.9, nesterov=True)
    x, y = torch.randn(5, 3, 8, 8), torch.randint(0, 3, (5,))
    for lr in (0.1, 0.05, 0.2):
        ours.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
        ours.step(torch.tensor(lr))
        for group in ref.param_groups:
            group["lr"] = lr
        ref.zero_grad()
        nn.functional.cross_entropy(m2(x), y).backward()
        ref.step()
    for a, b in zip(m.parameters(), m2.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_fast_path_on_cpu_is_sane_and_deterministic():
    ev = _evaluator(_config())
    assert ev.kind == "fast"
    a = ev.evaluate_many(G, [1, 2, 3])
    assert [r.status for r in a] == ["ok"] * 3
    assert all(0.0 <= r.accuracy <= 1.0 and r.steps == 12 and r.device == "cpu" for r in a)
    assert all(r.final_loss is not None and np.isfinite(r.final_loss) for r in a)
    b = _evaluator(_config(concurrent=1)).evaluate_many(G, [1, 2, 3])  # interleaving does not change a candidate
    assert [r.final_loss for r in a] == [r.final_loss for r in b] and [r.accuracy for r in a] == [r.accuracy for r in b]
    one = ev.evaluate(G[1], 2)
    assert one.final_loss == a[1].final_loss and one.accuracy == a[1].accuracy
    assert ev.evaluate(G[1], 9).final_loss != one.final_loss  # the seed matters


def test_fast_path_learns_as_well_as_the_standard_one():
    cfg = dict(steps=None, epochs=2, batch_size=32, lr=0.1, crop_pad=0, flip=False)
    fast_cfg, std_cfg = _config(**cfg), _config(evaluator="standard", **cfg)
    fast_cfg.data.subset = std_cfg.data.subset = None  # all 1,797 digits: ~90 steps each
    fast = _evaluator(fast_cfg).evaluate_many(G[:2], [1, 2])
    std = _evaluator(std_cfg).evaluate_many(G[:2], [1, 2])
    assert all(r.ok for r in fast + std)
    mean_fast = sum(r.accuracy for r in fast) / 2
    mean_std = sum(r.accuracy for r in std) / 2
    assert mean_fast > 0.5 and abs(mean_fast - mean_std) < 0.15  # same recipe, different random streams


def test_failures_become_statuses_and_the_rest_goes_on(monkeypatch):
    res = _evaluator(_config(lr=1e12, label_smoothing=0.0, warmup=0.0)).evaluate_many(G[:1], [1])
    assert res[0].status == "diverged" and res[0].accuracy == 0.0
    import nas.fast.session as session_mod

    real = session_mod.build_model

    def flaky(g, **kw):
        if g is G[1]:
            raise RuntimeError("boom")
        return real(g, **kw)

    monkeypatch.setattr(session_mod, "build_model", flaky)
    res = _evaluator(_config()).evaluate_many(G, [1, 2, 3])
    assert [r.status for r in res] == ["ok", "error", "ok"] and "boom" in res[1].reason


def test_auto_picks_standard_on_cpu_and_fast_on_cuda():
    cfg = TrainConfig()
    assert cfg.evaluator == "auto" and cfg.concurrent >= 1 and cfg.cuda_graphs
    assert resolve_evaluator(cfg, torch.device("cpu")) == "standard"
    assert resolve_evaluator(cfg, torch.device("cuda")) == "fast"
    assert resolve_evaluator(TrainConfig(optimizer="adamw"), torch.device("cuda")) == "standard"
    assert resolve_evaluator(TrainConfig(evaluator="fast"), torch.device("cpu")) == "fast"
    assert resolve_evaluator(TrainConfig(evaluator="standard"), torch.device("cuda")) == "standard"
    ev = _evaluator(_config(evaluator="auto"))
    assert ev.kind == "standard"
    ev.evaluate(G[0], 1)
    assert ev._fast == {}  # the fast path was not touched


def test_config_keys_are_validated(tmp_path):
    p = tmp_path / "c.yaml"
    (tmp_path / "s.yaml").write_text("x: 1\n")
    p.write_text("space: s.yaml\nobjective: {kind: accuracy}\ntrain: {evaluator: fast, optimizer: adamw}\n")
    with pytest.raises(ConfigError, match="train.evaluator"):
        load_config(p)
    p.write_text("space: s.yaml\ntrain: {evaluator: fastest}\n")
    with pytest.raises(ConfigError, match="evaluator"):
        load_config(p)
    p.write_text("space: s.yaml\ntrain: {concurrent: 0}\n")
    with pytest.raises(ConfigError, match="concurrent"):
        load_config(p)


@cuda
def test_graph_replay_matches_eager_steps_on_cuda():
    cfg = _config(device="cuda", amp=False, concurrent=2)
    ev = _evaluator(cfg)
    graphed = ev.evaluate_many(G, [1, 2, 3])
    session = next(iter(ev._fast.values()))
    assert session.stats["captured"] == 3 and not session.stats["capture_failures"]
    eager = _evaluator(_config(device="cuda", amp=False, cuda_graphs=False)).evaluate_many(G, [1, 2, 3])
    for a, b in zip(graphed, eager):
        assert a.ok and b.ok
        assert a.final_loss == pytest.approx(b.final_loss, rel=2e-2)


@cuda
def test_many_candidates_at_once_on_cuda_in_bf16():
    gs = G * 3
    res = _evaluator(_config(device="cuda", concurrent=4, steps=30)).evaluate_many(gs, list(range(9)))
    assert all(r.ok and 0.0 <= r.accuracy <= 1.0 and r.device.startswith("cuda") for r in res)


def _synthetic_cifar(path, n_train=400, n_test=200, size=16):
    rng = np.random.default_rng(0)

    def part(n):
        y = (np.arange(n) % 10).astype(np.uint8)
        x = (rng.integers(0, 60, (n, size, size, 3)) + y[:, None, None, None] * 18).astype(np.uint8)
        return x, y

    (xa, ya), (xb, yb) = part(n_train), part(n_test)
    np.savez(path, x_train=xa, y_train=ya, x_test=xb, y_test=yb)


def test_bench_tiny_runs_end_to_end_on_cpu(tmp_path, root):
    data = tmp_path / "syn.npz"
    _synthetic_cifar(data)
    subset = tmp_path / "sub.npz"
    r = subprocess.run([sys.executable, str(root / "bench" / "make_cifar_subset.py"), "--src", str(data), "--out",
                        str(subset), "--train", "300", "--test", "100"], capture_output=True, text=True, cwd=root)
    assert r.returncode == 0, r.stderr
    with np.load(subset) as z:
        assert z["x_train"].shape == (300, 16, 16, 3) and z["x_test"].shape == (100, 16, 16, 3)
        assert np.bincount(z["y_train"]).tolist() == [30] * 10 and np.bincount(z["y_test"]).tolist() == [10] * 10
    out = tmp_path / "res.json"
    r = subprocess.run([sys.executable, str(root / "bench" / "proxy_throughput.py"), "--tiny", "--data", str(subset),
                        "--json", str(out), "--device", "cpu", "--threads", "1"],
                       capture_output=True, text=True, cwd=root, timeout=300)
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    assert len(rep["candidates"]) == 2 and rep["train_images"] == 256 and rep["test_images"] == 100
    for key in ("fast", "naive"):
        s = rep[key]
        assert s["candidates"] == 2 and s["candidates_per_hour"] > 0 and s["train_images_per_s"] > 0
        assert 0.0 <= s["mean_test_accuracy"] <= 1.0
    assert rep["fast"]["statuses"] == ["ok", "ok"] and rep["ratio_candidates_per_hour"] > 0
    assert "ratio (candidates/hour" in r.stdout
