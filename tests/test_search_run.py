"""End-to-end searches on a tiny space and 8x8 digits: outputs, caching of repeats, objectives, journal."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tiny import SPACE, write_search_config

from nas.config import load_config
from nas.journal import Journal, load_json, save_json
from nas.results import eval_seed
from nas.reward import ObjectiveUnavailable
from nas.search import RunError, open_run_dir, prepare, run_search
from search_space import Genotype

TINY_SPACE = SPACE.replace("[conv, sepconv, mbconv3]", "[conv]").replace("layers: [1, 2]", "layers: [1]")  # 2 members


def _config(tmp_path: Path, space: str = SPACE, **sections) -> Path:
    base = {"objective": {"preset": "soft"}, "search": {"top_k": 3}, "out": str(tmp_path / "run")}
    for k, v in sections.items():
        base[k] = {**base.get(k, {}), **v} if isinstance(v, dict) else v
    return write_search_config(tmp_path, space, **base)


def test_search_writes_every_output(tmp_path):
    cfg = load_config(_config(tmp_path, controller={"name": "ppo", "options": {"batch_size": 2}}))
    summary = run_search(cfg, progress=False)
    run = Path(cfg.out)
    records = Journal(run / "journal.jsonl").read()
    assert summary.evaluations == len(records) == 5
    assert [r["index"] for r in records] == list(range(5))
    assert len({r["genotype"] for r in records}) == 5  # distinct evaluations
    for r in records:
        assert r["status"] == "ok" and 0 < r["accuracy"] <= 1 and r["macs"] > 0 and r["params"] > 0
        assert r["seed"] == eval_seed(1, r["genotype"])
        assert r["reward"] == pytest.approx(r["accuracy"] * (r["macs"] / 60e3) ** -0.07)
        assert r["latency_ms"] is None and r["entropy"] > 0 and r["train_time_s"] > 0
    best = max(records, key=lambda r: r["reward"])
    g = Genotype.from_yaml((run / "best.yaml").read_text())
    assert g.to_string() == best["genotype"] == summary.best["genotype"]
    report = (run / "report.md").read_text()
    assert "Top 3 candidates" in report and best["genotype"] in report and "pareto.png" in report
    assert (run / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert yaml.safe_load((run / "config.yaml").read_text())["search"]["budget"] == 5
    state = load_json(run / "controller.json")
    assert state["journal_len"] == 5 and state["state"]["controller"] == "ppo"
    # TensorBoard curves, one point per evaluation.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    for tag in ("search/reward", "search/best_reward", "search/accuracy", "cost/macs", "controller/entropy"):
        assert [e.step for e in acc.Scalars(tag)] == list(range(5)), tag
    assert acc.Scalars("search/best_reward")[-1].value == pytest.approx(best["reward"])
    # The report can be rebuilt from the journal alone.
    from nas.report import main as report_main

    (run / "report.md").unlink()
    assert report_main([str(run)]) == 0 and "Top 3 candidates" in (run / "report.md").read_text()
    # A second run into the same folder needs --resume; resuming a finished run adds nothing.
    with pytest.raises(RunError, match="--resume"):
        open_run_dir(cfg, prepare(cfg).space, resume=False)
    again = run_search(cfg, resume=True, progress=False)
    assert again.evaluations == 5 and len(Journal(run / "journal.jsonl").read()) == 5


def test_repeats_are_told_from_the_cache_not_retrained(tmp_path, monkeypatch):
    from nas.evaluate import Evaluator

    calls = []
    real = Evaluator.evaluate

    def counting(self, genotype, seed):
        calls.append(str(genotype))
        return real(self, genotype, seed)

    monkeypatch.setattr(Evaluator, "evaluate", counting)  # the inline executor trains in this process
    # 2 members, budget 2: the random controller repeats itself before it finds both.
    cfg = load_config(_config(tmp_path, space=TINY_SPACE, search={"budget": 2, "seed": 3}))
    summary = run_search(cfg, progress=False)
    assert summary.evaluations == 2 and len(calls) == 2 == len(set(calls))
    assert summary.asks > 2  # some asks were repeats, answered from the journal
    state = load_json(Path(cfg.out) / "controller.json")["state"]
    assert state["num_told"] == state["num_asked"] == summary.asks


def test_gives_up_when_the_controller_only_repeats(tmp_path, monkeypatch):
    from nas import controllers

    class Stuck:
        num_asked = 0

        def ask(self):
            self.num_asked += 1
            return {"s1.channels": 8}

        def tell(self, sample, reward):
            pass

        def outstanding(self):
            return []

        def entropy(self):
            return 0.0

        def state_dict(self):
            return {"num_asked": self.num_asked}

    monkeypatch.setattr(controllers, "build", lambda *a, **k: Stuck())
    cfg = load_config(_config(tmp_path, space=TINY_SPACE, search={"budget": 2, "max_ask_factor": 5}))
    summary = run_search(cfg, progress=False)
    assert summary.gave_up and summary.evaluations == 1 and summary.asks == 10
    assert "gave up" in (Path(cfg.out) / "report.md").read_text()


def test_latency_objective_uses_the_predictor(tmp_path, monkeypatch):
    import latency

    seen = {}

    def fake_predictor(lut, space, resolution, cache_dir, threads=1, num_classes=1000, measure_missing=False,
                       progress=True, in_channels=3):
        seen.update(lut=lut, resolution=resolution, cache_dir=cache_dir, threads=threads, num_classes=num_classes,
                    in_channels=in_channels)
        from search_space import cost

        return lambda g: cost(g, in_channels=1, num_classes=num_classes).macs / 1e6  # "ms"

    monkeypatch.setattr(latency, "load_predictor", fake_predictor)
    cfg = load_config(_config(tmp_path, objective={"kind": "latency", "target": "0.05ms", "preset": "hard", "threads": 2},
                              search={"budget": 3}))
    run_search(cfg, progress=False)
    assert seen == {"lut": None, "resolution": 8, "cache_dir": str(Path(cfg.out)), "threads": 2, "num_classes": 10,
                    "in_channels": 1}  # the data's channels: a table for digits times 1-channel stems
    for r in Journal(Path(cfg.out) / "journal.jsonl").read():
        assert r["latency_ms"] == pytest.approx(r["macs"] / 1e6) and r["cost"] == r["latency_ms"]
        w = 0.0 if r["latency_ms"] <= 0.05 else -1.0
        assert r["reward"] == pytest.approx(r["accuracy"] * (r["latency_ms"] / 0.05) ** w)
    assert "latency (ms)" in (Path(cfg.out) / "report.md").read_text()


def test_latency_without_litert_is_a_clear_error_before_work(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ai_edge_litert" else real(name, *a))
    cfg = load_config(_config(tmp_path, objective={"kind": "latency", "target": "75ms"}))
    with pytest.raises(ObjectiveUnavailable, match="pip install ai-edge-litert"):
        prepare(cfg)
    assert not Path(cfg.out).exists()


def test_accuracy_objective_rewards_accuracy(tmp_path):
    cfg = load_config(_config(tmp_path, objective={"kind": "accuracy", "target": None, "preset": None},
                              search={"budget": 2}))
    run_search(cfg, progress=False)
    for r in Journal(Path(cfg.out) / "journal.jsonl").read():
        assert r["reward"] == r["accuracy"] and r["cost"] is None


def test_journal_survives_a_torn_line_and_state_is_atomic(tmp_path):
    j = Journal(tmp_path / "journal.jsonl")
    j.append({"index": 0, "x": float("nan")})
    j.append({"index": 1})
    with open(j.path, "a") as f:
        f.write('{"index": 2, "genot')  # killed mid-write
    assert [r["index"] for r in j.read()] == [0, 1]
    assert j.read()[0]["x"] is None  # NaN is not JSON: recorded as null
    assert [r["index"] for r in j.read(repair=True)] == [0, 1]
    j.append({"index": 2})
    assert [r["index"] for r in j.read()] == [0, 1, 2]
    save_json(tmp_path / "s.json", {"a": 1})
    save_json(tmp_path / "s.json", {"a": 2})
    assert load_json(tmp_path / "s.json") == {"a": 2}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left
    assert json.loads((tmp_path / "s.json").read_text()) == {"a": 2}


def test_eval_seed_is_stable_and_order_free():
    a = eval_seed(0, "relu_r8:stem_c8_k3_s1:cn_r1_k3_s2_c8:head_c32")
    assert a == eval_seed(0, "relu_r8:stem_c8_k3_s1:cn_r1_k3_s2_c8:head_c32")
    assert a != eval_seed(1, "relu_r8:stem_c8_k3_s1:cn_r1_k3_s2_c8:head_c32")
    assert 0 <= a < 2 ** 31


def test_a_given_latency_table_is_checked_before_work(tmp_path):
    from nas.config import ConfigError

    (tmp_path / "lut.json").write_text("{}")
    cfg = load_config(_config(tmp_path, objective={"kind": "latency", "target": "75ms", "lut": "lut.json"}))
    with pytest.raises(ConfigError, match="key 'objective.lut': .*not a latency table"):
        prepare(cfg)
    assert not Path(cfg.out).exists()


def test_latency_table_built_in_the_run_folder_then_reused(tmp_path):
    pytest.importorskip("ai_edge_litert")
    cfg = load_config(_config(tmp_path, objective={"kind": "latency", "target": "0.003ms", "lut": None},
                              search={"budget": 3}))
    run_search(cfg, progress=False)
    run = Path(cfg.out)
    assert (run / "lut.json").is_file()
    first = Journal(run / "journal.jsonl").read()
    assert all(r["latency_ms"] > 0 and r["cost"] == r["latency_ms"] for r in first)
    # The measured table as a given lut: same predictions, no measuring.
    cfg2 = load_config(_config(tmp_path, objective={"kind": "latency", "target": "0.003ms", "lut": str(run / "lut.json")},
                               search={"budget": 3}, out=str(tmp_path / "run2")))
    run_search(cfg2, progress=False)
    second = Journal(tmp_path / "run2" / "journal.jsonl").read()
    assert [(r["genotype"], r["latency_ms"], r["reward"]) for r in second] == \
           [(r["genotype"], r["latency_ms"], r["reward"]) for r in first]


def test_top_candidates_are_reseeded_and_the_winner_is_the_best_mean(tmp_path):
    from nas.report import main as report_main
    from nas.reseed import RESEED_FILE, auto_top_k, reseed_seeds, summarize

    cfg = load_config(_config(tmp_path, search={"reseed_top_k": None, "reseeds": 2}))
    assert auto_top_k(cfg.search.reseed_top_k, cfg.train) == 3  # on by default for a short proxy
    summary = run_search(cfg, progress=False)
    run = Path(cfg.out)
    records = Journal(run / "journal.jsonl").read()
    reseeds = Journal(run / RESEED_FILE).read()
    top = sorted(records, key=lambda r: (-r["reward"], r["index"]))[:3]
    assert sorted((r["genotype"], r["seed"]) for r in reseeds) == sorted(
        (t["genotype"], s) for t in top for s in reseed_seeds(1, t["genotype"], 2))
    assert all(r["seed"] != eval_seed(1, r["genotype"]) for r in reseeds)  # new seeds, not the search's
    stats = summarize(records, reseeds)
    assert [s.n for s in stats] == [3, 3, 3]
    means = {s.record["genotype"]: sum(s.rewards) / 3 for s in stats}
    winner = max(means, key=means.get)
    assert summary.best["genotype"] == winner and summary.best["seeds"] == 3
    assert summary.best["reward"] == pytest.approx(means[winner])
    best_yaml = yaml.safe_load((run / "best.yaml").read_text())
    assert Genotype.from_yaml((run / "best.yaml").read_text()).to_string() == winner
    assert best_yaml["meta"]["seeds"] == 3 and best_yaml["meta"]["accuracy_std"] >= 0
    report = (run / "report.md").read_text()
    assert "Re-evaluated with 3 seeds each" in report and "+-" in report
    # Resume trains nothing more; the report rebuilt from the files picks the same winner.
    before = (run / RESEED_FILE).read_bytes()
    again = run_search(cfg, resume=True, progress=False)
    assert (run / RESEED_FILE).read_bytes() == before and again.best["genotype"] == winner
    (run / "best.yaml").unlink()
    assert report_main([str(run)]) == 0
    assert Genotype.from_yaml((run / "best.yaml").read_text()).to_string() == winner


def test_noise_verdict_separates_only_clear_winners():
    from nas.reseed import markdown_section, seed_stats, separable

    rec = {"index": 0, "genotype": "g", "accuracy": 0.9, "reward": 0.9}
    clear = seed_stats(rec, (0.90, 0.91, 0.90), (0.90, 0.91, 0.90))
    close = seed_stats(dict(rec, index=1), (0.89, 0.92, 0.86), (0.89, 0.92, 0.86))
    far = seed_stats(dict(rec, index=2), (0.70, 0.71, 0.70), (0.70, 0.71, 0.70))
    assert separable(clear, far) and not separable(clear, close)
    assert "Not separable from noise" in "\n".join(markdown_section([clear, close]))
    assert "Not separable" not in "\n".join(markdown_section([clear, far]))


def test_resume_accepts_an_older_run_without_the_keys_a_newer_version_added(tmp_path):
    cfg = load_config(_config(tmp_path, search={"budget": 2}))
    run_search(cfg, progress=False)
    saved = Path(cfg.out) / "config.yaml"
    old = yaml.safe_load(saved.read_text())
    del old["search"]["reseeds"]
    saved.write_text(yaml.safe_dump(old))
    assert run_search(load_config(_config(tmp_path, search={"budget": 3})), resume=True, progress=False).evaluations == 3
    old = yaml.safe_load(saved.read_text())
    del old["train"]["label_smoothing"]  # absent, and the config asks for a value other than the default
    saved.write_text(yaml.safe_dump(old))
    with pytest.raises(RunError, match="train.label_smoothing"):
        run_search(load_config(_config(tmp_path, search={"budget": 4}, train={"label_smoothing": 0.3})), resume=True,
                   progress=False)
