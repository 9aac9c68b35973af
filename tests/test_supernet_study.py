"""bench/supernet_study.py without training: skipping, the standard evaluator's timing, the report (seconds)."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from conftest import load_bench, write_fake_cifar

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def study():
    return load_bench("supernet_study")


def study_tau(scores: list[float]) -> float:
    """Kendall tau of `scores` against the increasing stand-alone order the report test writes."""
    from nas.proxycheck import rank_correlations

    return rank_correlations(scores, list(range(len(scores))))[0]


def test_skips_without_data(study, tmp_path, capsys):
    assert study.main(["--data", str(tmp_path / "absent.npz"), "--out", str(tmp_path / "out")]) == 0
    assert "skipped: CIFAR-10 not found" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


def test_standard_time_is_the_run_itself_when_epochs_match(study):
    runs = [{"wall_s": 100.0, "train_time_s": 80.0, "epochs": 5.0}, {"wall_s": 120.0, "train_time_s": 90.0, "epochs": 5}]
    assert study.standard_seconds(runs, 5.0) == pytest.approx(110.0)


def test_standard_time_cuts_a_longer_reference_to_its_epochs(study):
    # 8 epochs: 20 s of set-up and evaluation, 80 s of training -> 5 epochs: 20 + 50 s
    runs = [{"wall_s": 100.0, "train_time_s": 80.0, "epochs": 8.0}, {"wall_s": 60.0, "train_time_s": 40.0, "epochs": 8.0}]
    assert study.standard_seconds(runs, 5.0) == pytest.approx(((20 + 50) + (20 + 25)) / 2)
    assert study.standard_seconds([], 5.0) is None
    assert study.standard_seconds([{"wall_s": 1.0, "train_time_s": 0.0, "epochs": 0}], 5.0) is None


def test_standard_time_extends_a_shorter_reference_to_its_epochs(study):
    # 2 epochs: 10 s of set-up and evaluation, 40 s of training -> 5 epochs: 10 + 100 s
    assert study.standard_seconds([{"wall_s": 50.0, "train_time_s": 40.0, "epochs": 2.0}], 5.0) == pytest.approx(110.0)


def test_the_ensembles_count_each_checkpoint_once_per_way_of_scoring(study, tmp_path, capsys):
    data = tmp_path / "cifar.npz"
    data.write_bytes(b"")
    out = tmp_path / "out"
    out.mkdir()
    from search_space import SearchSpace

    gs = study._candidates(SearchSpace.from_yaml(ROOT / "configs" / "space_cifar_oneshot.yaml"), 4, 2024)
    # kind -> (spec sets, the rows' recorded score_kernel, accuracies); "supernet" is the main one
    supernets = {"supernet": (None, None, [0.40, 0.41, 0.42, 0.43]),
                 "a_k5": ([], "largest", [0.43, 0.42, 0.41, 0.40]),  # the main checkpoint rescored: rows say so
                 "b": (["supernet.seed=1"], None, [0.41, 0.40, 0.42, 0.43]),
                 "b_again": (["supernet.seed=1"], None, [0.41, 0.40, 0.42, 0.43]),  # the same recipe, scored alike
                 "b_k5": (["supernet.seed=1", "supernet.score_kernel=largest"], None, [0.40, 0.41, 0.43, 0.42])}
    for name, (sets, how, accs) in supernets.items():
        kind = "supernet" if name == "supernet" else f"supernet:{name}"
        if sets is not None:
            (out / f"variant-{name}.json").write_text(json.dumps({"name": name, "sets": sets}))
        with open(out / ("main.jsonl" if sets is None else f"variant-{name}.jsonl"), "a") as f:
            for g, acc in zip(gs, accs):
                f.write(json.dumps({"kind": kind, "genotype": g.to_string(), "accuracy": acc, "status": "ok",
                                    "wall_s": 2.0, **({"score_kernel": how} if how else {})}) + "\n")
    with open(out / "standalone.jsonl", "a") as f:
        for i, g in enumerate(gs):
            f.write(json.dumps({"kind": "standalone", "genotype": g.to_string(), "accuracy": 0.5 + 0.01 * i,
                                "status": "ok", "wall_s": 100.0, "train_time_s": 80.0, "epochs": 5.0}) + "\n")
    assert study.main(["--data", str(data), "--out", str(out), "--candidates", "4", "--report",
                       "--config", str(ROOT / "configs" / "supernet_cifar_oneshot.yaml")]) == 0
    r = json.loads((out / "supernet_study.json").read_text())
    assert {e["kind"]: e["score_kernel"] for e in r["supernets"]} == {
        "supernet": "member", "supernet:a_k5": "largest", "supernet:b": "member", "supernet:b_again": "member",
        "supernet:b_k5": "largest"}
    m = r["supernet_mean"]
    assert m["member"]["supernets"] == ["supernet", "supernet:b"]
    assert m["largest"]["supernets"] == ["supernet:a_k5", "supernet:b_k5"]
    means = [(a + b) / 2 for a, b in zip(supernets["a_k5"][2], supernets["b_k5"][2])]
    assert m["largest"]["vs_standalone"]["kendall_tau"] == pytest.approx(study_tau(means))
    printed = capsys.readouterr().out
    assert "mean score of 2 supernets (largest kernel)" in printed and "mean score of 2 supernets  " in printed
    assert "supernet:b_k5 (?, 0 ep, largest kernel)" in printed


def test_report_from_rows_without_training(study, tmp_path, capsys):
    data = tmp_path / "cifar.npz"
    data.write_bytes(b"")  # never read: the report only needs the candidates, drawn from the space
    out = tmp_path / "out"
    out.mkdir()
    ns = ["--data", str(data), "--out", str(out), "--config", str(ROOT / "configs" / "supernet_cifar_oneshot.yaml"),
          "--candidates", "4", "--standalone-epochs", "8"]
    from search_space import SearchSpace

    gs = study._candidates(SearchSpace.from_yaml(ROOT / "configs" / "space_cifar_oneshot.yaml"), 4, 2024)
    for i, g in enumerate(gs):  # stand-alone accuracy follows the index; the proxy reverses it
        for kind, acc in (("standalone", 0.5 + 0.01 * i), ("proxy", 0.3 - 0.01 * i), ("supernet", 0.4 + 0.01 * i)):
            row = {"kind": kind, "genotype": g.to_string(), "accuracy": acc, "status": "ok", "wall_s": 100.0,
                   "train_time_s": 80.0, "epochs": 8.0 if kind == "standalone" else 1.0}
            with open(out / ("standalone.jsonl" if kind == "standalone" else "main.jsonl"), "a") as f:
                f.write(json.dumps(row) + "\n")
    with open(out / "retest.jsonl", "a") as f:  # the first candidate again, 2 points better
        f.write(json.dumps({"kind": "standalone-retest", "genotype": gs[0].to_string(), "accuracy": 0.52,
                            "status": "ok", "wall_s": 100.0, "train_time_s": 80.0, "epochs": 8.0}) + "\n")
    (out / "variant-b.json").write_text(json.dumps({"name": "b", "sets": ["supernet.seed=1"]}))
    for i, g in enumerate(gs):  # a second supernet that agrees with the first on 5 of 6 pairs
        with open(out / "variant-b.jsonl", "a") as f:
            f.write(json.dumps({"kind": "supernet:b", "genotype": g.to_string(), "accuracy": [0.41, 0.4, 0.42, 0.43][i],
                                "status": "ok", "wall_s": 2.0, "train_time_s": 0.0, "epochs": 0.0}) + "\n")
    assert study.main(ns + ["--report"]) == 0
    r = json.loads((out / "supernet_study.json").read_text())
    assert r["test_reference"] is None
    assert [(c["a"], c["b"], c["n"]) for c in r["supernet_agreement"]] == [("supernet", "supernet:b", 4)]
    assert r["supernet_agreement"][0]["kendall_tau"] == pytest.approx(4 / 6)
    assert "supernet vs supernet:b: +0.667 (n 4)" in capsys.readouterr().out
    # the ensemble ranks by the two supernets' mean score of each candidate
    m = r["supernet_mean"]["member"]
    means = [(0.4 + 0.01 * i + b) / 2 for i, b in enumerate([0.41, 0.4, 0.42, 0.43])]
    assert m["supernets"] == ["supernet", "supernet:b"] and m["vs_standalone"]["n"] == 4
    assert m["vs_standalone"]["kendall_tau"] == pytest.approx(study_tau(means))
    for i, g in enumerate(gs):  # re-run: the same validation accuracy; on test images the order of 3, 2, 0, 1
        with open(out / "test.jsonl", "a") as f:
            f.write(json.dumps({"kind": "standalone-test", "genotype": g.to_string(), "accuracy": 0.5 + 0.01 * i,
                                "test_accuracy": [0.6, 0.55, 0.61, 0.62][i], "test_images": 10000, "status": "ok",
                                "wall_s": 100.0, "train_time_s": 80.0, "epochs": 8.0}) + "\n")
    assert study.main(ns + ["--report"]) == 0
    r = json.loads((out / "supernet_study.json").read_text())
    t = r["test_reference"]
    assert t["images"] == 10000 and t["rerun_max_validation_difference_points"] == pytest.approx(0.0)
    # validation order 0 < 1 < 2 < 3 against test order 1 < 0 < 2 < 3: 5 of 6 pairs agree
    assert t["validation_vs_test"]["kendall_tau"] == pytest.approx(4 / 6)
    assert t["supernets"]["supernet"]["kendall_tau"] == pytest.approx(4 / 6)
    assert t["proxy"]["kendall_tau"] == pytest.approx(-4 / 6) and r["rows"][3]["standalone_test"] == 0.62
    assert r["proxy_vs_standalone"]["kendall_tau"] == pytest.approx(-1.0)
    assert r["supernets"][0]["vs_standalone"]["kendall_tau"] == pytest.approx(1.0)
    assert r["standard_per_candidate_s"] == pytest.approx(20 + 80 * 5 / 8)
    assert r["macs_vs_standalone"]["n"] == 4 and all(row["macs"] > 0 for row in r["rows"])
    assert r["standalone_retest"]["n"] == 1
    assert r["standalone_retest"]["mean_abs_difference_points"] == pytest.approx(2.0)
    assert r["standalone_retest"]["seed_sd_points"] == pytest.approx(2.0 / 2 ** 0.5)
    assert r["standalone_retest"]["vs_first"]["n"] == 1 and r["standalone_retest"]["vs_first"]["kendall_tau"] is None
    # 1.4 points of seed noise against candidates 1 point apart: two trainings agree only in part
    assert 0.2 < r["standalone_retest"]["simulated_self_tau"] < 0.8
    printed = capsys.readouterr().out
    assert "standard 5-epoch proxy (timed from the stand-alone runs)" in printed
    assert "supernet study (4 random members of space_cifar_oneshot.yaml, " in printed and r["sample"] == "random"
    assert study.sample_words(16, True) == "16 members spread over the multiply-add range"
    assert "test-retest (another training seed, 1 candidates)" in printed
    assert "scored on 10000 CIFAR-10 test images" in printed
    assert r["supernets_on_test"] is None
    for i, g in enumerate(gs):  # both supernets scored on test images: the first reversed, the second as on validation
        with open(out / "supernet-test.jsonl", "a") as f:
            for kind, acc in (("supernet@test", 0.5 - 0.01 * i), ("supernet:b@test", [0.41, 0.4, 0.42, 0.43][i])):
                f.write(json.dumps({"kind": kind, "genotype": g.to_string(), "accuracy": acc, "test_images": 5000,
                                    "status": "ok", "wall_s": 3.0}) + "\n")
    assert study.main(ns + ["--report"]) == 0
    r = json.loads((out / "supernet_study.json").read_text())
    t = r["supernets_on_test"]
    assert t["images"] == 5000
    assert t["validation_vs_test"]["supernet"]["kendall_tau"] == pytest.approx(-1.0)
    assert t["validation_vs_test"]["supernet:b"]["kendall_tau"] == pytest.approx(1.0)
    assert t["vs_standalone"]["supernet"]["kendall_tau"] == pytest.approx(-1.0)
    assert t["vs_standalone_test"]["supernet:b"]["kendall_tau"] == pytest.approx(1.0)  # test order 1 < 0 < 2 < 3
    assert [(c["a"], c["b"]) for c in t["agreement"]] == [("supernet", "supernet:b")]
    assert t["agreement"][0]["kendall_tau"] == pytest.approx(-4 / 6)
    assert r["rows"][0]["supernet@test"] == 0.5
    assert "supernet vs supernet:b on test images: -0.667 (n 4)" in capsys.readouterr().out
    with open(out / "estimator-shorter.jsonl", "a") as f:  # an earlier reference: the stand-alone order but 0 <-> 1
        for i, g in enumerate(gs):
            f.write(json.dumps({"kind": "standalone", "genotype": g.to_string(), "accuracy": [0.3, 0.2, 0.4, 0.5][i],
                                "status": "ok"}) + "\n")
    assert study.main(ns + ["--report"]) == 0
    r = json.loads((out / "supernet_study.json").read_text())
    assert r["other_estimators"]["shorter"]["vs_standalone"]["kendall_tau"] == pytest.approx(4 / 6)
    assert r["other_estimators"]["shorter"]["vs_proxy"]["kendall_tau"] == pytest.approx(-4 / 6)
    assert r["rows"][1]["estimator:shorter"] == 0.2
    printed = capsys.readouterr().out
    assert "shorter (estimator-shorter.jsonl)" in printed and "what each estimator rewards" in printed
    props = study.properties(gs)
    depth = props["depth (layers)"]
    assert depth == [float(sum(st.layers for st in g.stages)) for g in gs]
    assert set(r["tastes"]) == {"stand-alone", "proxy", "supernet", "supernet:b", "shorter"}
    expected = {p: study_tau(v) for p, v in props.items()}  # the stand-alone accuracies rise with the index
    assert r["tastes"]["stand-alone"] == pytest.approx(expected)
    # the proxy reverses the stand-alone order, so it rewards every property the opposite way
    assert all(r["tastes"]["proxy"][k] == pytest.approx(-v) for k, v in expected.items() if v is not None)
    kernels = next(v for k, v in props.items() if "kernel" in k)
    assert kernels == [float(sum(st.layers for st in g.stages if st.kernel == 5)) for g in gs]


def test_train_and_test_scores_one_training_on_both_splits(study):
    import random

    from nas.config import DataConfig, TrainConfig
    from nas.evaluate import Evaluator
    from search_space import SearchSpace

    ev = Evaluator(DataConfig(source="digits", subset=300, val_fraction=0.2),
                   TrainConfig(epochs=1, batch_size=32, threads=1, device="cpu"))
    g = SearchSpace.from_yaml(ROOT / "configs" / "space_digits.yaml").sample(random.Random(3))
    splits = ev.prepare(g.resolution)
    plain = ev.evaluate(g, 7)
    r, extra = study._train_and_test(ev, g, 7, (splits.x_val[:10], splits.y_val[:10]))
    # the same training as the standard evaluator's (same seed, same accuracy), scored on the extra images too
    assert r.accuracy == plain.accuracy and r.steps == plain.steps and extra["test_images"] == 10
    assert 0.0 <= extra["test_accuracy"] <= 1.0 and extra["test_eval_s"] >= 0.0


def test_spread_candidates_cover_the_cost_range(study):
    from search_space import SearchSpace
    from search_space.cost import cost

    space = SearchSpace.from_yaml(ROOT / "configs" / "space_cifar_elastic.yaml")
    plain = study._candidates(space, 8, 2024)
    assert len({g.to_string() for g in plain}) == 8 and plain == study._candidates(space, 8, 2024)
    spread = study._candidates(space, 8, 2024, spread=True)
    macs = [cost(g).macs for g in spread]
    assert len({g.to_string() for g in spread}) == 8 and macs == sorted(macs)
    rng = random.Random(0)
    pool = sorted(cost(space.sample(rng)).macs for _ in range(400))
    # one member from each eighth of the pool: the lowest below the pool's 1/8 quantile, the highest above 7/8
    assert macs[0] <= pool[len(pool) // 6] and macs[-1] >= pool[-len(pool) // 6]



def test_supernet_test_scores_every_supernet_on_test_images(study, tmp_path, capsys):
    import torch

    from nas.supernet import SuperNet
    from nas.supernet.checkpoint import save_supernet
    from search_space import SearchSpace

    data = write_fake_cifar(tmp_path / "cifar.npz")
    out = tmp_path / "out"
    space = SearchSpace.from_yaml(ROOT / "configs" / "space_cifar_elastic.yaml")
    torch.manual_seed(0)
    save_supernet(out / "supernet" / "supernet.pt", SuperNet(space, 10, 3), 0.1)  # untrained: scoring is the point
    (out / "variant-b.json").write_text(json.dumps({"name": "b", "sets": ["supernet.seed=1"]}))
    torch.manual_seed(1)
    save_supernet(out / "supernet-b" / "supernet.pt", SuperNet(space, 10, 3), 0.1)
    ns = ["--data", str(data), "--out", str(out), "--config", str(ROOT / "configs" / "supernet_cifar_elastic.yaml"),
          "--candidates", "3", "--subset", "100", "--supernet-test", "30"]
    assert study.main(ns) == 0
    rows = [json.loads(line) for line in (out / "supernet-test.jsonl").read_text().splitlines()]
    assert sorted({r["kind"] for r in rows}) == ["supernet:b@test", "supernet@test"] and len(rows) == 6
    assert all(r["test_images"] == 30 and 0 <= r["accuracy"] <= 1 and 0 <= r["validation_accuracy"] <= 1
               for r in rows)
    assert study.main(ns) == 0  # resumed: nothing scored twice
    assert len((out / "supernet-test.jsonl").read_text().splitlines()) == 6
    r = json.loads((out / "supernet_study.json").read_text())
    assert r["supernets_on_test"]["images"] == 30 and r["supernets_on_test"]["agreement"][0]["n"] == 3
    assert "on 30 CIFAR-10 test images (Kendall tau)" in capsys.readouterr().out


def test_a_supernet_row_records_how_its_member_was_scored(study, tmp_path):
    from types import SimpleNamespace

    from nas.results import EvalResult
    from search_space import SearchSpace

    gs = study._candidates(SearchSpace.from_yaml(ROOT / "configs" / "space_cifar_oneshot.yaml"), 2, 2024)
    for evaluator in ("supernet", "standard"):
        ev = SimpleNamespace(train_cfg=SimpleNamespace(evaluator=evaluator),
                             supernet_cfg=SimpleNamespace(score_kernel="largest"), prepare=lambda resolution: None,
                             evaluate=lambda g, seed: EvalResult(accuracy=0.5, train_time_s=0.0))
        path = tmp_path / f"{evaluator}.jsonl"
        study._evaluate(evaluator, ev, gs, [0, 1], path)
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        assert len(rows) == 2
        assert [r.get("score_kernel") for r in rows] == (["largest"] * 2 if evaluator == "supernet" else [None] * 2)


def test_the_retest_spreads_its_candidates_and_simulates_the_ceiling(study):
    assert study.retest_picks(16, 6) == [0, 2, 5, 8, 10, 13]
    assert study.retest_picks(16, 16) == list(range(16)) and study.retest_picks(4, 9) == [0, 1, 2, 3]
    accs = [0.70 + 0.01 * i for i in range(16)]
    assert study.self_tau(accs, 0.0) == 1.0 and study.self_tau([0.7], 0.01) is None
    quiet, loud = study.self_tau(accs, 0.0005), study.self_tau(accs, 1.0)
    assert quiet > 0.9 and abs(loud) < 0.2  # noise well under the spacing keeps the order; far above, none of it
    assert study.self_tau(accs, 0.005) == study.self_tau(accs, 0.005)  # seeded: a report is reproducible
