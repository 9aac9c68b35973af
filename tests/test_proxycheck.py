"""python -m nas.proxycheck: rank correlations, and a whole check on tiny digits."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tiny import SPACE

from nas.config import load_config
from nas.proxycheck import main, proxy_check, rank_correlations


def _config(tmp_path: Path) -> Path:
    (tmp_path / "space.yaml").write_text(SPACE)
    cfg = {"space": "space.yaml", "objective": {"kind": "accuracy"},
           "data": {"source": "digits", "resolution": 8, "subset": 400},
           "train": {"epochs": 1, "batch_size": 32, "lr": 0.1, "threads": 1, "device": "cpu"},
           "search": {"seed": 3}}
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_rank_correlations_known_values():
    assert rank_correlations([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx((1.0, 1.0))
    assert rank_correlations([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx((-1.0, -1.0))
    # one discordant pair of six: tau = (5 - 1) / 6; rho = 1 - 6 * 2 / (4 * 15)
    assert rank_correlations([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx((4 / 6, 0.8))
    assert rank_correlations([1, 1, 1], [1, 2, 3]) == (None, None)  # a constant ranking means nothing
    assert rank_correlations([0.5], [0.7]) == (None, None)


def test_proxy_check_on_digits(tmp_path):
    cfg = load_config(_config(tmp_path))
    rep = proxy_check(cfg, samples=4, long_epochs=3, seed=0)
    assert len(rep.genotypes) == len(set(rep.genotypes)) == 4
    assert rep.statuses == ["ok"] * 4 and rep.long_epochs == 3 and rep.proxy_epochs == pytest.approx(1.0)
    assert all(0.0 <= a <= 1.0 for a in rep.proxy_acc + rep.long_acc)
    assert sum(rep.long_acc) > sum(rep.proxy_acc)  # three times the training helps on average
    for v in (rep.kendall_tau, rep.spearman_rho):
        assert v is not None and -1.0 <= v <= 1.0


def test_cli_prints_and_writes_json(tmp_path, capsys):
    out = tmp_path / "pc.json"
    rc = main([str(_config(tmp_path)), "--samples", "3", "--long-epochs", "2", "--set", "train.epochs=0.5",
               "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "Kendall tau" in text and "Spearman rho" in text and "ranks #" in text
    rep = json.loads(out.read_text())
    assert len(rep["genotypes"]) == 3 and rep["long_epochs"] == 2
    for key in ("kendall_tau", "spearman_rho"):
        assert rep[key] is None or -1.0 <= rep[key] <= 1.0


def test_cli_config_mistake_exits_2(tmp_path, capsys):
    rc = main([str(_config(tmp_path)), "--samples", "3", "--set", "train.evaluator=fastest"])
    assert rc == 2 and "train.evaluator" in capsys.readouterr().err
