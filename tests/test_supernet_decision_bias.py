"""bench/supernet_decision_bias.py on a fake CIFAR file: the rewrite of a decision, resume, the tau, the skip."""
from __future__ import annotations

from conftest import load_bench


def _bench():
    return load_bench("supernet_decision_bias")


def test_every_stage_changes_and_the_stem_keeps_its_own():
    from search_space.genotype import parse

    g = parse("swish_r32:stem_c16_k3_s1:ir_r1_k5_s1_e3_c8:ds_r2_k3_s2_c12_se0.25:ir_r1_k3_s2_e6_c16:head_c320")
    five = _bench().with_value(g, "kernel", 5)
    assert five.to_string() == ("swish_r32:stem_c16_k3_s1:ir_r1_k5_s1_e3_c8:ds_r2_k5_s2_c12_se0.25:"
                                "ir_r1_k5_s2_e6_c16:head_c320")
    six = _bench().with_value(g, "expansion", 6)
    assert [s.expansion for s in six.stages] == [6, 1, 6] and six.stem == g.stem  # sepconv has no expansion


def test_skips_without_data(tmp_path, capsys):
    assert _bench().main(["--checkpoint", str(tmp_path / "s.pt"), "--data", str(tmp_path / "none.npz")]) == 0
    assert "skipped: CIFAR-10 not found" in capsys.readouterr().out


def test_scores_three_versions_resumes_and_ranks_them_against_a_study(tmp_path, capsys):
    import json

    import torch
    from conftest import ROOT, write_fake_cifar

    from nas.supernet import SuperNet
    from nas.supernet.checkpoint import save_supernet
    from search_space import SearchSpace

    data = write_fake_cifar(tmp_path / "cifar.npz")
    space = SearchSpace.from_yaml(ROOT / "configs" / "space_cifar_elastic.yaml")
    torch.manual_seed(0)
    ckpt = save_supernet(tmp_path / "s.pt", SuperNet(space, 10, 3, kernel_sharing="transform"), 0.1)
    bench = _bench()
    study = tmp_path / "study"
    study.mkdir()
    gs = __import__("supernet_study")._candidates(space, 3, 2024)
    lines = [json.dumps({"kind": "standalone", "genotype": g.to_string(), "accuracy": 0.5 + i / 100, "status": "ok"})
             + "\n" for i, g in enumerate(gs)]
    (study / "standalone.jsonl").write_text("".join(lines[:2]))
    (study / "main.jsonl").write_text(lines[2])  # the study's main process trains some of the reference too
    args = ["--checkpoint", str(ckpt), "--data", str(data), "--subset", "100", "--candidates", "3",
            "--out", str(tmp_path / "rows.jsonl"), "--study", str(study)]
    assert bench.main(args) == 0
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert [r["genotype"] for r in rows] == [g.to_string() for g in gs]
    assert all(0 <= r[k] <= 1 for r in rows for k in ("drawn", "k3", "k5"))
    out = capsys.readouterr().out
    assert "Kendall tau vs the study's reference, k5:" in out and "3 candidates" in out
    assert bench.main(args) == 0  # a rerun scores nothing again
    assert len((tmp_path / "rows.jsonl").read_text().splitlines()) == 3
    assert bench.main(args + ["--decision", "expansion"]) == 0  # other keys: scored anew, appended
    assert {"e3", "e6"} <= set(json.loads((tmp_path / "rows.jsonl").read_text().splitlines()[-1]))
    assert bench.main(args + ["--decision", "expansion", "--values", "3", "4"]) == 2  # 4 is not a choice
    alone = ["--alone", "2", "--alone-epochs", "0.2", "--alone-out", str(tmp_path / "alone.jsonl")]
    assert bench.main(args + alone) == 0  # the stand-alone side: candidate 2 trained in both versions
    trained = [json.loads(line) for line in (tmp_path / "alone.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in trained] == ["k3", "k5"]
    assert [r["genotype"] for r in trained] == [bench.with_value(gs[1], "kernel", k).to_string() for k in (3, 5)]
    assert "candidate 2 alone (0.2 epochs): k3" in capsys.readouterr().out
    assert bench.main(args + alone) == 0 and len((tmp_path / "alone.jsonl").read_text().splitlines()) == 2
