"""An NNI 3.0 execution engine that hands each model to the hwnas search loop instead of training it.

The NNI strategy runs its own ``run()`` loop in a background thread; this engine is the only
place where that thread and the search loop meet, and they take turns (a baton passed under one
condition variable): the driver hands over when it wants a proposal, has a result, or closes; the
strategy thread runs until it must wait for the driver again and hands back. Only one of the two
threads runs at a time, so the strategy sees events in the order the driver told them and a run
with the inline executor is reproducible (no races on the strategy's state or on torch's RNG).
"""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from nni.nas.execution import ExecutionEngine
from nni.nas.execution.event import FinalMetricEvent, TrainingEndEvent
from nni.nas.space import ExecutableModelSpace, ModelStatus

DRIVER, STRATEGY = "driver", "strategy"

# What `answer` may return for a submitted model: surface it as a proposal, or hold it back
# (an ask outstanding from before a resume, whose reward the driver will tell).
SURFACE, HOLD = "surface", "hold"


class BridgeEngine(ExecutionEngine):
    """Proposals out to the driver, rewards back in, one thread running at a time."""

    def __init__(self, answer: Callable[[ExecutableModelSpace], Any] | None = None) -> None:
        super().__init__()
        self._cv = threading.Condition()
        self._turn = DRIVER
        self._want = False               # the driver waits for a proposal
        self._proposals: deque[ExecutableModelSpace] = deque()
        self._results: deque[tuple[ExecutableModelSpace, float]] = deque()
        self._models: list[ExecutableModelSpace] = []
        self._closed = False
        self._done = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        # Called for each submitted model: a float answers it at once (replay after a resume).
        self._answer = answer or (lambda model: SURFACE)

    # ---- the driver's side --------------------------------------------------------------------
    def start(self, body: Callable[[], None]) -> None:
        """Run `body` (the strategy) in a daemon thread that waits for its first turn."""
        def main() -> None:
            with self._cv:
                self._cv.wait_for(lambda: self._turn == STRATEGY)
            try:
                body()
            except BaseException as e:  # noqa: BLE001 - re-raised in the driver
                self._error = e
            finally:
                with self._cv:
                    self._done = True
                    self._turn = DRIVER
                    self._cv.notify_all()

        self._thread = threading.Thread(target=main, name="nni-strategy", daemon=True)
        self._thread.start()

    def _handover(self) -> None:
        # Caller holds the lock. The strategy runs until it parks (or ends) and hands back.
        if self._done:
            return
        self._turn = STRATEGY
        self._cv.notify_all()
        self._cv.wait_for(lambda: self._turn == DRIVER)
        if self._error is not None:
            err, self._error = self._error, None
            raise RuntimeError(f"the NNI strategy failed: {type(err).__name__}: {err}") from err

    def propose(self) -> ExecutableModelSpace | None:
        """The next model the strategy submits, or None while it waits for results (or has ended)."""
        with self._cv:
            if not self._proposals and not self._done:
                self._want = True
                self._handover()
                self._want = False
            return self._proposals.popleft() if self._proposals else None

    def report(self, model: ExecutableModelSpace, reward: float) -> None:
        """Give the strategy a model's reward; returns once the strategy has taken it in."""
        with self._cv:
            self._results.append((model, reward))
            self._handover()

    @property
    def done(self) -> bool:
        """Whether the strategy's run has ended."""
        return self._done

    def close(self, timeout: float = 30.0) -> None:
        """Tell the strategy the budget is spent and let its thread finish."""
        with self._cv:
            self._closed = True
            self._handover_quietly()
        if self._thread is not None:
            self._thread.join(timeout)

    def _handover_quietly(self) -> None:
        try:
            self._handover()
        except RuntimeError:
            pass  # a strategy failing while it winds down does not matter any more

    # ---- the strategy's side (called in its thread) -----------------------------------------
    def _park(self, until: Callable[[], bool]) -> None:
        """Deliver pending results; wait for the driver until `until()` holds or the engine closes."""
        while True:
            with self._cv:
                pending = list(self._results)
                self._results.clear()
                if not pending:
                    if until() or self._closed:
                        return
                    self._turn = DRIVER
                    self._cv.notify_all()
                    self._cv.wait_for(lambda: self._turn == STRATEGY)
                    continue
            for model, reward in pending:  # callbacks change the strategy's state: its own thread runs them
                self.dispatch_model_event(FinalMetricEvent(model, reward))
                self.dispatch_model_event(TrainingEndEvent(model, ModelStatus.Trained))

    def submit_models(self, *models: ExecutableModelSpace) -> None:
        """Queue models for the driver (or answer them at once when replaying a resumed run)."""
        for model in models:
            if not model.status.frozen() or model.status.completed():
                raise RuntimeError(f"model must be frozen before submitting, got {model}")
            model.status = ModelStatus.Training
            self._models.append(model)
            answer = self._answer(model)
            with self._cv:
                if answer == SURFACE:
                    self._proposals.append(model)
                    self._want = False  # one proposal per request: the strategy parks until the next
                elif answer != HOLD:
                    self._results.append((model, float(answer)))

    def idle_worker_available(self) -> bool:
        """True when the driver wants a proposal (blocks until it does, or the engine closes)."""
        self._park(lambda: self._want)
        return not self._closed

    def budget_available(self) -> bool:
        """The budget is the driver's: open until it closes the engine."""
        return not self._closed

    def wait_models(self, *models: ExecutableModelSpace) -> None:
        """Block (handing the turn to the driver) until these models, or all, have results."""
        watched = list(models) or self._models
        self._park(lambda: all(m.status.completed() for m in watched))

    def list_models(self, status: ModelStatus | None = None) -> Iterable[ExecutableModelSpace]:
        """Every model submitted (optionally only those with a status)."""
        return [m for m in self._models if status is None or m.status == status]

    def shutdown(self) -> None:
        """Nothing to release: the driver owns the workers."""

    def state_dict(self) -> dict:
        """The hwnas controller keeps the state (its told history); the engine has none of its own."""
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        """See `state_dict`."""
