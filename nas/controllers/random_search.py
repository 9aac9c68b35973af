"""Uniform random search: the baseline every other controller has to beat."""
from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Any

from .base import Controller, Indices, random_state_from_json, random_state_to_json


class RandomSearch(Controller):
    """Samples every decision uniformly and independently; rewards are ignored."""

    name = "random"
    OPTIONS: dict[str, Any] = {}

    def __init__(self, decisions: Iterable[Any], seed: int = 0, **options: Any) -> None:
        super().__init__(decisions, seed, **options)
        self._rng = random.Random(self.seed)

    def entropy(self) -> float:
        """Entropy of the uniform distribution over the space (sum of log #choices)."""
        return self.uniform_entropy()

    def _propose(self) -> tuple[Indices, Any]:
        return tuple(self._rng.randrange(n) for n in self.sizes), None

    def _observe(self, idx: Indices, reward: float, aux: Any, asked: bool) -> None:
        pass

    def _algorithm_state(self) -> dict[str, Any]:
        return {"rng": random_state_to_json(self._rng)}

    def _load_algorithm_state(self, state: Mapping[str, Any]) -> None:
        random_state_from_json(self._rng, state["rng"])
