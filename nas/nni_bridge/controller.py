"""NNI 3.0 strategies as hwnas controllers: ``controller.name: nni:RegularizedEvolution`` and friends.

The strategy explores `executable_space(decisions)` in a background thread through a
`BridgeEngine`; `ask` takes the next model it submits, `tell` gives it the reward. The search
loop, the executors and the journal are ours, unchanged.

State and resume: NNI strategies cannot serialise themselves to JSON, so the state is the
ordered list of told ``(sample, reward)`` pairs plus the outstanding asks. A resumed controller
starts a fresh strategy with the same seed and replays: every model it submits that is in the
told history is answered at once from it (no training, no journal line), asks that were
outstanding at the kill are held for the driver, which re-submits them and tells them as usual.
With a deterministic strategy (all four here are, given the seed and the order of tells) the
resumed run continues exactly where the killed one stopped.
"""
from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from ..controllers.base import Controller, Indices
from .engine import HOLD, SURFACE, BridgeEngine
from .space import executable_space


class NNIController(Controller):
    """Runs one NNI strategy (built by `_strategy`) against our ask/tell loop."""

    name: ClassVar[str] = "nni"

    def __init__(self, decisions: Iterable[Any], seed: int = 0, **options: Any) -> None:
        super().__init__(decisions, seed, **options)
        self._history: list[tuple[Indices, float]] = []
        self._replay: dict[Indices, deque[float]] = defaultdict(deque)  # told before a resume
        self._held: dict[Indices, int] = defaultdict(int)                # outstanding at the kill
        self._models: dict[Indices, deque[Any]] = defaultdict(deque)     # submitted, awaiting a tell
        self._engine: BridgeEngine | None = None
        self._next: Any = None  # a model the strategy proposed that `ask` has not handed out yet
        self._lock = threading.Lock()

    # ---- the strategy ---------------------------------------------------------------------
    def _strategy(self) -> Any:
        """The NNI strategy object, built from the options and the seed."""
        raise NotImplementedError

    def _start(self) -> BridgeEngine:
        if self._engine is None:
            engine = BridgeEngine(answer=self._answer)
            space = executable_space(self.decisions)
            seed = self.seed

            def body() -> None:
                import numpy as np
                import torch

                # PolicyBasedRL draws its weights and actions from torch's and numpy's global RNGs.
                torch.manual_seed(seed)
                np.random.seed(seed % 2**32)
                strategy = self._strategy()
                strategy.initialize(space, engine)
                strategy.run()

            engine.start(body)
            self._engine = engine
        return self._engine

    def _answer(self, model: Any) -> Any:
        """Replay: a model told before the resume is answered from history; one outstanding then is held."""
        idx = self.encode(model.sample)
        with self._lock:
            if self._replay.get(idx):
                return self._replay[idx].popleft()
            if self._held.get(idx):
                self._held[idx] -= 1
                self._models[idx].append(model)
                return HOLD
        return SURFACE

    # ---- ask / tell ------------------------------------------------------------------------
    def can_ask(self) -> bool:
        """Whether the strategy proposes a model now (False while it waits for results, or after it ended)."""
        engine = self._start()
        if self._next is None:
            self._next = engine.propose()
        return self._next is not None

    def _propose(self) -> tuple[Indices, Any]:
        if not self.can_ask():
            raise RuntimeError(f"{self.name}: the strategy has no model to propose now (it waits for results "
                               f"or has ended); check can_ask() first")
        model, self._next = self._next, None
        idx = self.encode(model.sample)
        self._models[idx].append(model)
        return idx, None

    def _observe(self, idx: Indices, reward: float, aux: Any, asked: bool) -> None:
        self._history.append((idx, reward))
        waiting = self._models.get(idx)
        if waiting:
            self._start().report(waiting.popleft(), reward)
        else:  # told before the strategy (re)submitted it: answer it from here when it does
            with self._lock:
                self._replay[idx].append(reward)

    def entropy(self) -> float:
        """Not tracked for NNI strategies: the uniform entropy of the space."""
        return self.uniform_entropy()

    def close(self) -> None:
        """End the strategy's thread (the budget is spent)."""
        if self._engine is not None:
            self._engine.close()

    # ---- state -----------------------------------------------------------------------------
    def _algorithm_state(self) -> dict[str, Any]:
        return {"history": [[list(idx), r] for idx, r in self._history]}

    def _load_algorithm_state(self, state: Mapping[str, Any]) -> None:
        if self._engine is not None:
            raise ValueError("an NNI controller's state must be loaded before its first ask")
        self._history = [(tuple(int(i) for i in idx), float(r)) for idx, r in state["history"]]
        self._replay = defaultdict(deque)
        for idx, r in self._history:
            self._replay[idx].append(r)
        self._held = defaultdict(int)
        for idx, _ in self._pending:
            self._held[idx] += 1


class NNIRegularizedEvolution(NNIController):
    """NNI's aging evolution (`nni.nas.strategy.RegularizedEvolution`)."""

    name = "nni:RegularizedEvolution"
    OPTIONS: dict[str, Any] = {"population_size": 100, "sample_size": 25, "mutation_prob": 0.05,
                               "crossover": False, "dedup": True}

    @classmethod
    def _check_options(cls, options: dict[str, Any]) -> None:
        if not 1 <= options["sample_size"] <= options["population_size"]:
            raise ValueError(f"option 'sample_size' must be between 1 and population_size "
                             f"({options['population_size']}), got {options['sample_size']}")

    def _strategy(self) -> Any:
        from nni.nas.strategy import RegularizedEvolution

        return RegularizedEvolution(seed=self.seed, **self.options)


class NNIRandom(NNIController):
    """NNI's random search (`nni.nas.strategy.Random`), duplicates skipped by default."""

    name = "nni:Random"
    OPTIONS: dict[str, Any] = {"dedup": True}

    def _strategy(self) -> Any:
        from nni.nas.strategy import Random

        return Random(seed=self.seed, **self.options)


class NNITPE(NNIController):
    """NNI's TPE tuner as a strategy (`nni.nas.strategy.TPE`), maximizing the reward."""

    name = "nni:TPE"
    OPTIONS: dict[str, Any] = {"tpe_args": None}  # e.g. {n_startup_jobs: 5, constant_liar_type: mean}

    def _strategy(self) -> Any:
        from .strategies import FastTPE

        return FastTPE(optimize_mode="maximize", seed=self.seed, tpe_args=self.options["tpe_args"])


class NNIPolicyBasedRL(NNIController):
    """NNI's PPO policy (`nni.nas.strategy.PolicyBasedRL`, tianshou 0.5.1)."""

    name = "nni:PolicyBasedRL"
    OPTIONS: dict[str, Any] = {"samples_per_update": 20, "replay_buffer_size": None, "reward_for_invalid": None,
                               "update_kwargs": None, "lr": 1.0e-4, "hidden_dim": 64}

    def _strategy(self) -> Any:
        from functools import partial

        from nni.nas.strategy import PolicyBasedRL
        from nni.nas.strategy._rl_impl import default_policy_fn

        o = dict(self.options)
        policy_fn = partial(default_policy_fn, lr=o.pop("lr"), hidden_dim=o.pop("hidden_dim"))
        return PolicyBasedRL(policy_fn=policy_fn, **o)


NNI_CONTROLLERS: dict[str, type[NNIController]] = {
    cls.name: cls for cls in (NNIRegularizedEvolution, NNIPolicyBasedRL, NNITPE, NNIRandom)
}
