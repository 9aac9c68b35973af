"""Proxy training: deterministic on CPU, failures become statuses, the evaluator pickles."""
from __future__ import annotations

import os
import pickle

import pytest
import torch
from tiny import evaluator, tiny_config

from nas.train import augment, lr_factor, physical_cores
from search_space import parse

G = parse("relu_r8:stem_c8_k3_s1:ir_r1_k3_s2_e3_c12_se0.25:ds_r2_k3_s2_c16:head_c32")


_evaluator = evaluator
_config = tiny_config


def test_training_is_deterministic_for_a_seed():
    ev = _evaluator(_config(dropout=0.1, drop_connect=0.1, flip=True, crop_pad=1))
    a = ev.evaluate(G, seed=5)
    b = _evaluator(_config(dropout=0.1, drop_connect=0.1, flip=True, crop_pad=1)).evaluate(G, seed=5)
    assert a.status == "ok" and a.reason == ""
    assert a.accuracy == b.accuracy and a.final_loss == b.final_loss  # bit for bit
    assert a.steps == 12 and a.train_time_s > 0 and a.device == "cpu"
    c = ev.evaluate(G, seed=6)
    assert c.final_loss != a.final_loss  # the seed matters


def test_digits_learn_something_quickly():
    cfg = _config(steps=None, epochs=3)
    cfg.data.subset = None
    r = _evaluator(cfg).evaluate(G, seed=0)
    assert r.status == "ok" and r.accuracy > 0.8, r  # 10 classes: chance is 0.1
    assert r.epochs == pytest.approx(3, abs=0.1)


def test_divergence_is_a_status_not_a_crash():
    r = _evaluator(_config(lr=1e6, optimizer="sgd")).evaluate(G, seed=0)
    assert r.status == "diverged" and r.accuracy == 0.0
    assert "loss became" in r.reason or "NaN" in r.reason


def test_oom_and_errors_are_statuses(monkeypatch):
    import nas.evaluate as ev_mod

    def oom(*a, **k):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(ev_mod, "train_model", oom)
    r = _evaluator(_config()).evaluate(G, seed=0)
    assert (r.status, r.accuracy) == ("oom", 0.0) and "out of memory" in r.reason

    def broken(*a, **k):
        raise ValueError("something\nwent wrong")

    monkeypatch.setattr(ev_mod, "train_model", broken)
    r = _evaluator(_config()).evaluate(G, seed=0)
    assert r.status == "error" and r.reason == "ValueError: something went wrong"


def test_evaluator_pickles_without_its_data():
    ev = _evaluator(_config())
    ev.prepare(8)
    blob = pickle.dumps(ev)
    assert len(blob) < 10_000  # the config only, not the images
    ev2 = pickle.loads(blob)
    assert ev2.evaluate(G, 3).accuracy == ev.evaluate(G, 3).accuracy


def test_schedules_and_augmentation():
    f = lr_factor("cosine", 100, 0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0) and f(99) < 0.01
    assert lr_factor("linear", 10, 0.0)(5) == pytest.approx(0.5)
    assert lr_factor("constant", 10, 0.0)(9) == 1.0
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    gen = torch.Generator().manual_seed(0)
    y = augment(x, gen, flip=True, crop_pad=1)
    assert y.shape == x.shape
    assert torch.equal(augment(x, gen, flip=False, crop_pad=0), x)
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert 1 <= physical_cores() <= logical


def test_evaluation_batch_follows_the_device_unless_set():
    import torch

    from nas.config import TrainConfig
    from nas.train import eval_batch_size

    assert eval_batch_size(TrainConfig(), torch.device("cpu")) == 32
    assert eval_batch_size(TrainConfig(), torch.device("cuda")) == 1024
    assert eval_batch_size(TrainConfig(eval_batch_size=100), torch.device("cpu")) == 100
