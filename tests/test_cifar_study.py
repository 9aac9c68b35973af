"""bench/cifar_study.py without training: skipping, references, the shared queue and the report (seconds)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import load_bench

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cs():
    return load_bench("cifar_study")


def _study(cs, tmp_path: Path, doc: Path | None = None):
    return cs.Study(out=tmp_path, data=tmp_path / "fake.npz", scale=cs.SCALES["tiny"], supernet=tmp_path / "sn.pt",
                    lut=tmp_path / "no-lut.json", doc=doc, own_supernet=True)


def test_skips_without_data(cs, tmp_path, capsys):
    assert cs.main(["--data", str(tmp_path / "absent.npz"), "--out", str(tmp_path / "out")]) == 0
    assert "skipped: CIFAR-10 not found" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


def test_references_are_members_with_the_papers_shapes(cs):
    from search_space import SearchSpace
    from search_space.cost import cost
    from search_space.genotype import parse

    space = SearchSpace.from_yaml(cs.SPACE)
    b0, mbv2 = parse(cs.B0_SHAPED), parse(cs.MBV2_SHAPED)
    assert space.contains(b0) and space.contains(mbv2)
    assert [(s.kernel, s.layers) for s in b0.stages] == [(3, 1), (3, 2), (5, 3), (5, 2), (5, 2)]
    assert all(s.expansion == 6 and s.se == 0.25 for s in b0.stages)
    assert all(s.expansion == 6 and s.kernel == 3 and not s.se for s in mbv2.stages)
    assert cost(mbv2, num_classes=10).macs < cost(b0, num_classes=10).macs
    # The paper's coefficients at phi = 1 on the B0-shaped member: resolution 36, 2.31x its counted MACs.
    big = parse(cs.scaled(cs.B0_SHAPED, *cs.PAPER))
    assert big.resolution == 36
    assert cost(big, num_classes=10).macs / cost(b0, num_classes=10).macs == pytest.approx(2.307, abs=1e-3)


def test_tiny_npz_cuts_a_fake_dataset(cs, tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "fake.npz"
    np.savez(src, x_train=rng.integers(0, 255, (1500, 32, 32, 3), dtype=np.uint8), y_train=np.arange(1500) % 10,
             x_test=rng.integers(0, 255, (400, 32, 32, 3), dtype=np.uint8), y_test=np.arange(400) % 10)
    p = cs.tiny_npz(src, tmp_path)
    with np.load(p) as z:
        assert z["x_train"].shape == (1000, 32, 32, 3) and z["x_test"].shape == (200, 32, 32, 3)
        assert set(z["y_train"].tolist()) == set(range(10))


def test_queue_report_and_goal_from_a_journal(cs, tmp_path, monkeypatch):
    from search_space.cost import cost

    doc = tmp_path / "doc.md"
    doc.write_text(f"# Study\n\nmethod\n\n{cs.BEGIN}\nold\n{cs.END}\ntail\n")
    st = _study(cs, tmp_path, doc)
    st.lut.write_text("{}")
    # No LiteRT here: latency proportional to MACs, the B0-shaped member at the target; no PNG (the text plot).
    monkeypatch.setattr(cs, "predictor", lambda path: lambda g: cost(g, num_classes=10).macs / 21e6)
    monkeypatch.setattr(cs, "plot", lambda res, path: False)
    win = cs.MBV2_SHAPED.replace("ir_r3_k3_s2_e6_c32", "ir_r2_k3_s2_e3_c32")
    st.append({"kind": "lut", "target_ms": 0.86, "target_macs": 18_040_752, "wall_s": 1.0})
    for m, g in (("ppo", win), ("evolution", win), ("random", cs.MBV2_SHAPED)):
        st.append({"kind": "search", "key": m, "genotype": g, "accuracy": 0.3, "reward": 0.31, "latency_ms": 0.7,
                   "macs": 1, "params": 1, "within_target": True, "candidates": 6, "feasible": 6, "best_overall": g,
                   "score_s": 1.0, "wall_s": 5.0})
    items, more = cs.queue(st)
    # Winners equal to an earlier model are trained once: evolution's is PPO's, random's is the MobileNetV2-shaped.
    assert [it.key for it in items] == ["ref-b0-s0", "ref-mbv2-s0", "b0-paper-phi1-s0", "win-ppo-s0",
                                        "ref-b0-s1", "ref-mbv2-s1", "b0-paper-phi1-s1", "win-ppo-s1"]
    assert more  # the grid has not run: the scaled winner is still to come
    assert cs.grid_baseline(st) is None
    acc = {"ref-b0": 0.60, "ref-mbv2": 0.58, "b0-paper-phi1": 0.63, "win-ppo": 0.62}
    for it in items:
        st.append({"kind": "stage2", "key": it.key, "name": it.name, "stage": it.stage, "seed": it.seed,
                   "genotype": it.genotype, "val_accuracy": acc[it.name], "test_accuracy": acc[it.name] + it.seed / 100,
                   "test_images": 200, "train_images": 400, "val_images": 100, "params": 1, "macs": 1,
                   "resolution": 32, "epochs": 1, "train_time_s": 1.0, "wall_s": 2.0})
    assert cs.grid_baseline(st) == win
    assert cs.model_name(st, "win-evolution") == "win-ppo" and cs.model_name(st, "win-random") == "ref-mbv2"
    assert cs.claim(st, "x") and cs.claim(st, "x")  # this process's own claim is still its own
    (tmp_path / "claims" / "y").write_text("999999999\n")
    assert cs.claim(st, "y")  # a dead process's claim is taken over
    assert cs.report(st) == 0
    res = json.loads((tmp_path / "cifar_study.json").read_text())
    met, line = cs.goal(res)
    assert met is True and "ref-b0 +2.00 points" in line and "ref-mbv2 +4.00 points" in line
    text = doc.read_text()
    assert text.startswith("# Study\n\nmethod\n") and text.endswith(f"{cs.END}\ntail\n") and "old" not in text
    assert "**Goal (searched winner >= +1 point over both references at equal or lower latency): met**" in text
