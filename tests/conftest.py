import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(autouse=True)
def _no_latency_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests time models for behaviour, not for figures: no minimum measuring window (seconds each)."""
    import latency.measure

    monkeypatch.setattr(latency.measure, "DEFAULT_WINDOW_S", 0.0)
