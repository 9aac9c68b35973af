"""The config names of NNI's strategies (a leaf: the config validator reads them without loading the bridge)."""
from __future__ import annotations

PREFIX = "nni:"
STRATEGIES = ("RegularizedEvolution", "PolicyBasedRL", "TPE", "Random")
NAMES = tuple(PREFIX + s for s in STRATEGIES)

__all__ = ["PREFIX", "STRATEGIES", "NAMES"]
