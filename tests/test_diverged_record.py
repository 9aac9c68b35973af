"""A diverged candidate records how far its training got, not `steps: 0`."""
from __future__ import annotations

import re

import pytest

import nas.evaluate as evaluate_mod
from nas.config import Config
from nas.evaluate import Evaluator
from nas.results import Diverged
from search_space import parse

G = parse("relu_r8:stem_c8_k3_s1:ir_r1_k3_s2_e3_c12_se0.25:ds_r2_k3_s2_c16:head_c32")


def _config(lr: float) -> Config:
    cfg = Config()
    cfg.data.subset = 300
    cfg.data.resolution = 8
    cfg.train.steps = 12
    cfg.train.batch_size = 32
    cfg.train.lr = lr
    cfg.train.optimizer = "sgd"
    cfg.train.threads = 1
    cfg.train.device = "cpu"
    cfg.train.evaluator = "standard"
    return cfg


def test_diverged_training_records_the_step_it_diverged_at():
    cfg = _config(lr=1e6)
    ev = Evaluator(cfg.data, cfg.train)
    r = ev.evaluate(G, seed=0)
    assert r.status == "diverged" and r.accuracy == 0.0
    m = re.search(r"by step (\d+) of 12", r.reason)
    assert m, r.reason
    step = int(m.group(1))
    n = len(ev.prepare(8).y_train)
    assert 1 <= step <= 12 and r.steps == step
    assert r.epochs == pytest.approx(step * 32 / n)


def test_outputs_diverging_after_training_record_every_step(monkeypatch):
    def nan_outputs(*a, **k):
        raise Diverged("the trained network outputs NaN/inf on the validation split")

    monkeypatch.setattr(evaluate_mod, "accuracy", nan_outputs)
    cfg = _config(lr=0.1)
    r = Evaluator(cfg.data, cfg.train).evaluate(G, seed=0)
    assert r.status == "diverged" and r.steps == 12 and r.epochs > 0
