"""The pipeline's stage 2: top-k and reference trained for real, proxy vs final ranks, the baseline by final accuracy."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny import write_search_config

import nas.finalists as finalists_mod
import nas.stage2 as stage2_mod
from nas.config import load_config
from nas.finalists import Final, Finalist, markdown, ranks, summarize_finals
from nas.pipeline import run_pipeline
from nas.stage2 import CHECKPOINT, Stage2Result, setup_from_config, train_genotype
from search_space import Genotype, parse

REF = "relu_r8:stem_c8_k3_s1:ir_r1_k3_s2_e6_c12:ir_r1_k3_s2_e6_c16:head_c32"  # a tiny reference, not B0
STAGE2 = {"top_k": 2, "epochs": 2, "batch_size": 32, "warmup_epochs": 0.5, "optimizer": "sgd", "lr": 0.2,
          "ema_decay": 0.99, "reference": REF}


def _config(tmp_path: Path, **stage2) -> Path:
    return write_search_config(
        tmp_path, controller={"name": "evolution", "options": {"population_size": 2, "sample_size": 2}},
        objective={"kind": "flops", "target": "60K", "preset": "soft"},
        search={"budget": 4, "seed": 0, "reseed_top_k": 0},
        scaling={"max_points": 1, "phis": [1, 2], "divisor": 2, "reseed_top_k": 0}, stage2={**STAGE2, **stage2})


@pytest.fixture
def no_b0_training(monkeypatch):
    """Skip the pipeline's EfficientNet-B0 proxy training (tests/test_pipeline.py covers it): a few seconds here."""
    import nas.pipeline as pipeline

    real = pipeline._proxy_record

    def proxy_record(cfg, g, path):
        if path.name != "efficientnet-b0.json":
            return real(cfg, g, path)
        return {"genotype": g.to_string(), "accuracy": 0.1, "macs": 1, "params": 1, "status": "ok", "reason": "",
                "train_time_s": 0.0, "num_classes": 10, "in_channels": 1}

    monkeypatch.setattr(pipeline, "_proxy_record", proxy_record)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_top_k_and_reference_trained_tau_reported_and_an_interrupted_stage2_resumes(tmp_path, monkeypatch,
                                                                                    no_b0_training):
    cfg = load_config(_config(tmp_path), [f"out={tmp_path / 'run'}"])
    run = tmp_path / "run"
    # Interrupt the second stage-2 training right after its first epoch's checkpoint (a Ctrl-C or a crash there).
    real_save, seen = stage2_mod.save_torch, []

    def save_then_stop(path: Path, obj) -> None:
        real_save(path, obj)
        if path.name == CHECKPOINT:
            seen.append(path.parent.name)
            if len(set(seen)) == 2:
                raise KeyboardInterrupt

    monkeypatch.setattr(stage2_mod, "save_torch", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(cfg, progress=False)
    first, second = dict.fromkeys(seen)
    assert (run / "stage2" / first / "result.json").is_file() and not (run / "stage2" / second / "result.json").exists()
    assert torch.load(run / "stage2" / second / CHECKPOINT, weights_only=True)["epoch"] == 1
    kept = {p: p.stat().st_mtime_ns for p in (run / "stage2" / first).glob("*.*")}
    monkeypatch.setattr(stage2_mod, "save_torch", real_save)

    report = run_pipeline(cfg, resume=True, progress=False).read_text()
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # the finished member was not trained again
    # The interrupted member continued from its checkpoint and ended as an uninterrupted training does.
    g = parse(json.loads((run / "stage2" / second / "result.json").read_text())["genotype"])
    fresh = train_genotype(g, setup_from_config(cfg, "cfg"), tmp_path / "fresh", progress=False)
    for name in ("best.pt", "last.pt"):
        a, b = _weights(fresh.out / name), _weights(run / "stage2" / second / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name

    summary = json.loads((run / "stage2" / "summary.json").read_text())
    models = summary["models"]
    assert [m["kind"] for m in models] == ["candidate", "candidate", "reference"]
    assert [m["name"] for m in models][:2] == [first, second] and models[2]["genotype"] == REF
    for m in models:
        r = json.loads((run / "stage2" / m["name"] / "result.json").read_text())
        assert m["val_accuracy"] == r["val_accuracy"] and m["test_accuracy"] == r["test_accuracy"] is not None
        assert r["epochs"] == 2 and r["genotype"] == m["genotype"]
    assert sorted(m["final_rank"] for m in models)[0] == 1 and all(m["proxy_rank"] for m in models)
    # The baseline is the best candidate by final validation accuracy, and the grid scaled it.
    cands = [m for m in models if m["kind"] == "candidate"]
    best = max(cands, key=lambda m: (m["val_accuracy"], m["proxy_accuracy"]))
    assert summary["chosen"] == best["name"]
    assert json.loads((run / "grid" / "grid.json").read_text())["baseline"] == best["genotype"]
    assert "## Stage 2: the top candidates trained for real" in report
    assert "Kendall tau between proxy and final ranks" in report and "| proxy rank |" in report
    assert "| test accuracy |" in report and "nothing here is chosen by it" in report
    assert f"{best['name'].replace('candidate-', '#')} **(baseline)**" in report
    assert "| stage2 |" in report


def _fake_stage2(vals: dict[str, float]):
    """A train_genotype stand-in: the final validation accuracy of each genotype comes from `vals`."""
    def train(g, setup, out, resume=False, init=None, progress=True):
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        rec = {"genotype": g.to_string(), "val_accuracy": vals.get(g.to_string(), 0.5), "test_accuracy": 0.4,
               "params": 1, "macs": 1}
        (out / "result.json").write_text(json.dumps(rec))
        return Stage2Result(out, rec)
    return train


def test_baseline_is_chosen_by_final_accuracy_not_by_the_proxy(tmp_path, monkeypatch, no_b0_training):
    from nas.journal import Journal
    from nas.proxycheck import rank_correlations

    cfg = load_config(_config(tmp_path, top_k=3, reference=None), [f"out={tmp_path / 'run'}"])
    run = tmp_path / "run"
    order: list[Finalist] = []

    def reversed_finals(g, setup, out, resume=False, init=None, progress=True):
        # Final accuracies in the reverse of the proxy's order: the search's last pick trains best.
        if not order:
            order.extend(finalists_mod.top_candidates(Journal(run / "search" / "journal.jsonl").read(), [], 3))
        i = [f.genotype.to_string() for f in order].index(g.to_string())
        return _fake_stage2({g.to_string(): 0.5 + 0.1 * i})(g, setup, out)

    monkeypatch.setattr(finalists_mod, "train_genotype", reversed_finals)
    text = run_pipeline(cfg, progress=False).read_text()
    assert len(order) == 3
    # The proxy's order starts with the search's own winner.
    assert Genotype.from_yaml((run / "search" / "best.yaml").read_text()) == order[0].genotype
    last = order[-1]
    assert json.loads((run / "grid" / "grid.json").read_text())["baseline"] == last.genotype.to_string()
    assert f"Baseline: candidate {last.label}" in text and "chosen over the search's own pick" in text
    assert f"{last.label} **(baseline)**" in text
    s = json.loads((run / "stage2" / "summary.json").read_text())
    assert [m["final_rank"] for m in s["models"]] == [3, 2, 1] and s["chosen"] == last.name
    want, _ = rank_correlations([f.proxy_accuracy for f in order], [0.5, 0.6, 0.7])
    assert s["kendall_tau"] == want and f"{want:+.2f}" in text
    assert (run / "family" / "discovered-phi1.yaml").is_file()


def _final(label: str, kind: str, proxy: float, val: float | None) -> Final:
    g = parse(REF)
    f = Finalist(name=label, kind=kind, label=label, genotype=g, proxy_accuracy=proxy, proxy_std=None, seeds=1,
                 record={"genotype": REF, "accuracy": proxy, "params": 1, "macs": 1})
    return Final(f, None if val is None else {"val_accuracy": val, "test_accuracy": 0.5, "params": 1, "macs": 1},
                 "" if val is not None else "training diverged: nan")


def test_when_the_reference_wins_the_report_says_so_and_the_policy_decides():
    finals = [_final("#3", "candidate", 0.30, 0.70), _final("#1", "candidate", 0.20, 0.80),
              _final("#2", "candidate", 0.25, None), _final("efficientnet-b0", "reference", 0.10, 0.90)]
    s = summarize_finals(finals, "candidates")
    assert s.reference_wins and s.chosen.finalist.label == "#1" and s.best_candidate is s.chosen
    assert [f.proxy_rank for f in s.finals] == [1, 2, None, 3] and [f.final_rank for f in s.finals] == [3, 2, None, 1]
    assert s.kendall_tau == pytest.approx(-1.0) and s.ranked == 3
    text = "\n".join(markdown(s, "2 epochs"))
    assert "**The reference beats every searched candidate:**" in text and "still the best searched" in text
    assert "failed: training diverged" in text and "efficientnet-b0 (reference) |" in text
    s = summarize_finals(finals, "all")
    assert s.chosen.finalist.kind == "reference" and "the reference is the baseline" in s.reason
    # Ties in final accuracy go to the better proxy.
    tie = summarize_finals([_final("#5", "candidate", 0.2, 0.8), _final("#6", "candidate", 0.3, 0.8)])
    assert tie.chosen.finalist.label == "#6" and tie.reference is None and not tie.reference_wins
    assert ranks([0.5, 0.9, 0.5, 0.1]) == [2, 1, 2, 4]


def test_stage2_keys_are_checked_on_load_and_before_the_search(tmp_path, capsys):
    from nas.pipeline import main

    p = _config(tmp_path)
    for sets, words in ((["stage2.top_k=-1"], ["'stage2.top_k'", "-1", "0 <= value"]),
                        (["stage2.baseline_from=best"], ["'stage2.baseline_from'", "candidates", "all"]),
                        (["stage2.reference=resnet-50"], ["'stage2.reference'", "resnet-50", "mobilenet-v2"]),
                        (["stage2.epochs=1", "stage2.warmup_epochs=1"], ["stage2.warmup_epochs", "stage2.epochs (1)"])):
        capsys.readouterr()
        args = [str(p), "--out", str(tmp_path / "run"), "--no-progress"]
        assert main(args + [a for s in sets for a in ("--set", s)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and all(w in err for w in words), err
        assert not (tmp_path / "run" / "search").exists()  # refused before the search started
    cfg = load_config(p, ["stage2.reference=mobilenet_v2"])
    assert finalists_mod.reference_genotype(cfg.stage2.reference, 8)[0] == "mobilenet-v2"
    (tmp_path / "ref.yaml").write_text(parse(REF).to_yaml(name="mine"))
    cfg = load_config(p, ["stage2.reference=ref.yaml"])
    assert Path(cfg.stage2.reference).is_absolute()
    name, g = finalists_mod.reference_genotype(cfg.stage2.reference, 8)
    assert name == "reference-ref" and g.to_string() == REF


def test_top_candidates_rank_by_the_reseeded_mean_and_skip_failures():
    gs = ["relu_r8:stem_c8_k3_s1:ir_r1_k3_s2_e3_c12:ds_r2_k3_s2_c16:head_c32",
          "relu_r8:stem_c8_k3_s1:ir_r1_k3_s2_e3_c8:ds_r2_k3_s2_c16:head_c32", REF]
    recs = [{"index": 0, "genotype": gs[0], "accuracy": 0.9, "reward": 0.9, "status": "ok"},   # a lucky first seed
            {"index": 1, "genotype": gs[1], "accuracy": 0.8, "reward": 0.8, "status": "ok"},
            {"index": 2, "genotype": gs[2], "accuracy": 0.95, "reward": 0.0, "status": "diverged"}]
    reseeds = [{"genotype": gs[0], "seed": 1, "accuracy": 0.5, "reward": 0.5},
               {"genotype": gs[1], "seed": 1, "accuracy": 0.8, "reward": 0.8}]
    top = finalists_mod.top_candidates(recs, reseeds, 5)
    assert [f.name for f in top] == ["candidate-1", "candidate-0"]
    assert top[1].proxy_accuracy == pytest.approx(0.7) and top[1].seeds == 2 and top[1].proxy_std is not None
    assert top[1].record["first_seed_accuracy"] == 0.9 and top[1].record["accuracy"] == pytest.approx(0.7)
    assert [f.name for f in finalists_mod.top_candidates(recs, [], 1)] == ["candidate-0"]
