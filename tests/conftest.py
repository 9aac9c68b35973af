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


def write_fake_cifar(path: Path, train: int = 100, test: int = 40) -> Path:
    """A file shaped like ../shared/datasets/cifar10_uint8.npz with random images (labels cycle over 10)."""
    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (train, 32, 32, 3), dtype=np.uint8), y_train=np.arange(train) % 10,
             x_test=rng.integers(0, 256, (test, 32, 32, 3), dtype=np.uint8), y_test=np.arange(test) % 10)
    return path


@pytest.fixture(autouse=True)
def _no_latency_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests time models for behaviour, not for figures: no minimum measuring window (seconds each)."""
    import latency.measure

    monkeypatch.setattr(latency.measure, "DEFAULT_WINDOW_S", 0.0)
