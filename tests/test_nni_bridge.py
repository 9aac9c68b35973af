"""NNI 3.0's strategies as controllers of our search, resume by replay, and our space as an NNI ModelSpace."""
from __future__ import annotations

import warnings

import pytest
import yaml
from _scale import DATA, SPACE, TRAIN, check_journal, write_config

from nas.config import Config, DataConfig, TrainConfig, load_config
from nas.journal import Journal, load_json
from nas.search import run_search

pytest.importorskip("nni")
warnings.filterwarnings("ignore", category=RuntimeWarning, module="nni")

STRATEGIES = [
    ("nni:Random", {}),
    ("nni:RegularizedEvolution", {"population_size": 3, "sample_size": 2}),
    ("nni:TPE", {"tpe_args": {"n_startup_jobs": 2}}),
    ("nni:PolicyBasedRL", {"samples_per_update": 2,
                           "update_kwargs": {"batch_size": 4, "repeat": 1, "update_times": 1}}),
]


@pytest.mark.parametrize("name, options", STRATEGIES, ids=[n for n, _ in STRATEGIES])
def test_nni_strategy_drives_a_search(tmp_path, name, options):
    if name.endswith("PolicyBasedRL"):
        pytest.importorskip("tianshou")
    cfg = load_config(write_config(tmp_path, 5, controller={"name": name, "options": options}))
    summary = run_search(cfg, progress=False)
    assert summary.evaluations == 5 and not summary.gave_up
    records = check_journal(tmp_path / "run", 5)
    assert all(r["status"] == "ok" and r["accuracy"] > 0 for r in records)
    state = load_json(tmp_path / "run" / "controller.json")["state"]
    assert state["controller"] == name and len(state["algorithm"]["history"]) == state["num_told"] >= 5


def test_nni_resume_replays_the_strategy_and_continues_like_one_run(tmp_path):
    controller = {"name": "nni:RegularizedEvolution", "options": {"population_size": 3, "sample_size": 2}}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    short = load_config(write_config(tmp_path / "a", 4, controller=controller))
    run_search(short, progress=False)
    longer = load_config(write_config(tmp_path / "a", 8, controller=controller))
    run_search(longer, resume=True, progress=False)  # a fresh strategy replays the 4 told results
    whole = load_config(write_config(tmp_path / "b", 8, controller=controller))
    run_search(whole, progress=False)
    resumed = [(r["genotype"], r["reward"]) for r in Journal(tmp_path / "a" / "run" / "journal.jsonl").read()]
    straight = [(r["genotype"], r["reward"]) for r in Journal(tmp_path / "b" / "run" / "journal.jsonl").read()]
    assert len(resumed) == 8 and resumed == straight


def test_our_space_as_an_nni_model_space_with_our_evaluator():
    import torch
    from nni.nas.execution import SequentialExecutionEngine
    from nni.nas.space import RawFormatModelSpace
    from nni.nas.strategy import Random

    from nas.nni_bridge import model_space, nni_evaluator
    from search_space import SearchSpace

    spec = yaml.safe_load(SPACE)
    space = SearchSpace(spec)
    ms = model_space(spec, num_classes=10, in_channels=1)
    assert set(ms.simplify()) == {d.name for d in space.decisions}
    sample = {d.name: d.choices[-1] for d in space.decisions}
    net = ms.freeze(sample)
    assert net.genotype == space.decode(sample) and net(torch.zeros(2, 1, 8, 8)).shape == (2, 10)

    # NNI's own sequential engine runs a strategy over it, training with our proxy trainer.
    cfg = Config(data=DataConfig(**DATA), train=TrainConfig(**TRAIN))
    engine = SequentialExecutionEngine(max_model_count=2)
    Random(seed=0)(RawFormatModelSpace.from_model(ms, nni_evaluator(cfg)), engine)
    models = list(engine.list_models())
    assert len(models) == 2 and all(0 < m.metric <= 1 for m in models)
