import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


def load_bench(name: str) -> ModuleType:
    """Import `bench/<name>.py` as module `name` (the scripts are not a package); its main() does not run."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(autouse=True)
def _no_latency_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests time models for behaviour, not for figures: no minimum measuring window (seconds each)."""
    import latency.measure

    monkeypatch.setattr(latency.measure, "DEFAULT_WINDOW_S", 0.0)
