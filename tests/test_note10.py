"""The Note10 tables the project ships, and the search config that uses them (configs/note10.yaml)."""
from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from latency.ofa import import_ofa, load_ofa_yaml
from latency.predictor import open_table
from nas.config import load_config
from nas.schema import ConfigError
from search_space import load_space

ROOT = Path(__file__).resolve().parent.parent
TABLES = ROOT / "configs" / "tables" / "ofa_note10"
SHARED = ROOT.parent / "shared" / "datasets" / "ofa_note10"


def test_every_shipped_note10_file_maps_completely_and_covers_the_mbv3_space() -> None:
    space = load_space(ROOT / "configs" / "space_mbv3.yaml")
    files = sorted(TABLES.glob("*_lookup_table.yaml"))
    assert [int(f.name.split("_")[0]) for f in files] == list(range(160, 228, 4))
    for f in files:
        res = int(f.name.split("_")[0])
        table, rep = import_ofa(load_ofa_yaml(f))
        assert (rep.mapped, rep.total) == (96, 96) and table.resolution == res, rep.lines()
        assert table.uncovered(space, res) == []
    ms = open_table(files[-1]).predict(space.sample(random.Random(0)))
    assert 20 < ms < 90  # a member of OFA's space at 224 runs in tens of ms on the Note10


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/datasets/ofa_note10 is not here")
def test_shipped_note10_files_are_unchanged_copies() -> None:
    for f in sorted(SHARED.glob("*.yaml")):
        assert hashlib.sha256((TABLES / f.name).read_bytes()).digest() == hashlib.sha256(f.read_bytes()).digest()


def test_note10_config_predicts_phone_milliseconds_for_the_proxy_data() -> None:
    from nas.search import prepare

    cfg = load_config(ROOT / "configs" / "note10.yaml", ["train.epochs=1"])
    setup = prepare(cfg, "note10.yaml")
    # The proxy trains on grey digits with 10 classes; the table times RGB ImageNet networks.
    assert (setup.in_channels, setup.num_classes) == (1, 10)
    g = setup.space.sample(random.Random(1))
    assert 20 < setup.latency(g) < 90
    assert setup.objective.kind == "latency" and setup.objective.target == pytest.approx(35.0)  # ms


def test_objective_classes_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="objective.classes"):
        load_config(ROOT / "configs" / "note10.yaml", ["objective.classes=0"])
