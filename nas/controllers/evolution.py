"""Regularized (aging) evolution, Real et al. 2019, "Regularized Evolution for Image
Classifier Architecture Search", Algorithm 1."""
from __future__ import annotations

import math
import random
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from typing import Any

from .base import Controller, Indices, random_state_from_json, random_state_to_json


class RegularizedEvolution(Controller):
    """Tournament selection over an aging population with single-decision mutations."""

    name = "evolution"
    OPTIONS: dict[str, Any] = {"population_size": 64, "sample_size": 16}

    def __init__(self, decisions: Iterable[Any], seed: int = 0, **options: Any) -> None:
        super().__init__(decisions, seed, **options)
        self._rng = random.Random(self.seed)
        # (indices, reward), oldest first; aging removes from the left.
        self._population: deque[tuple[Indices, float]] = deque()
        self._mutable = [i for i, n in enumerate(self.sizes) if n > 1]

    @classmethod
    def _check_options(cls, options: dict[str, Any]) -> None:
        p, s = options["population_size"], options["sample_size"]
        if p < 1:
            raise ValueError(f"option 'population_size' must be >= 1, got {p}")
        if not 1 <= s <= p:
            raise ValueError(f"option 'sample_size' must be between 1 and population_size ({p}), got {s}")

    @property
    def population(self) -> list[tuple[dict[str, Any], float]]:
        """The current population as (sample, reward), oldest first."""
        return [(self.decode(idx), r) for idx, r in self._population]

    def entropy(self) -> float:
        """Sum over decisions of the entropy of the population's choice frequencies
        (the uniform entropy while the population is empty)."""
        if not self._population:
            return self.uniform_entropy()
        total = len(self._population)
        h = 0.0
        for k in range(len(self.sizes)):
            for c in Counter(idx[k] for idx, _ in self._population).values():
                h -= c / total * math.log(c / total)
        return h

    def _propose(self) -> tuple[Indices, Any]:
        rng = self._rng
        # The warm-up phase counts tells, not asks: until P results are in, sample at random.
        if self.num_told < self.options["population_size"] or not self._population:
            return tuple(rng.randrange(n) for n in self.sizes), None
        pop = self._population
        # Tournament with replacement, as in the paper's Algorithm 1; ties go to the first drawn.
        contenders = [pop[rng.randrange(len(pop))] for _ in range(self.options["sample_size"])]
        parent = max(contenders, key=lambda m: m[1])[0]
        child = list(parent)
        if self._mutable:
            k = self._mutable[rng.randrange(len(self._mutable))]
            # Draw from the other choices so the child always differs in exactly one decision.
            new = rng.randrange(self.sizes[k] - 1)
            child[k] = new if new < parent[k] else new + 1
        return tuple(child), None

    def _observe(self, idx: Indices, reward: float, aux: Any, asked: bool) -> None:
        self._population.append((idx, reward))
        if len(self._population) > self.options["population_size"]:
            self._population.popleft()

    def _algorithm_state(self) -> dict[str, Any]:
        return {"rng": random_state_to_json(self._rng),
                "population": [[list(idx), r] for idx, r in self._population]}

    def _load_algorithm_state(self, state: Mapping[str, Any]) -> None:
        random_state_from_json(self._rng, state["rng"])
        self._population = deque((tuple(int(i) for i in idx), float(r)) for idx, r in state["population"])
